//! `hls-flow generate-daily`: harvest days into daily stac-geoparquet files.

use super::ExitStatus;
use super::common::{CliError, CliResult, EndpointArgs, check_reachable, print_lines};
use crate::api::{DailyOptions, Outcome, get_summary_stats, process_date_range};
use crate::bbox::Bbox;
use crate::collection::Collection;
use crate::engine::workflow::Workflow;
use crate::period::DayRange;
use crate::write::harvest::Source;
use crate::write::output::Output;
use std::path::PathBuf;

/// Harvest HLS days from CMR into daily stac-geoparquet files
/// (OUT/HLSS30_2.0/YYYY/MM/HLSS30_2.0-YYYY-MM-DD.parquet).
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  hls-flow generate-daily 202405 out/              every day of May 2024
  hls-flow generate-daily 20240515 out/            one day
  hls-flow generate-daily 20240510 20240520 s3://bucket/hls --parallel
  hls-flow generate-daily 202405 out/ --workflow workflows/default.toml")]
pub struct Args {
    /// YYYYMM (a month), YYYYMMDD (a day) or YYYYMMDD YYYYMMDD (an inclusive range).
    #[arg(value_name = "DATES", num_args = 1..=2, required = true)]
    dates: Vec<String>,
    /// A local folder or an object store URL (s3://…, file://…).
    #[arg(value_name = "OUT", required = true)]
    out: String,
    /// Work on several days at once (up to --max-concurrent-days).
    #[arg(long)]
    parallel: bool,
    /// Days at once with --parallel [default: 3]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    max_concurrent_days: Option<u32>,
    /// Item fetches at once within a day [default: 50]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    max_concurrent_per_day: Option<u32>,
    /// Harvest days again even when their complete file exists.
    #[arg(long)]
    no_skip_existing: bool,
    /// No progress bars.
    #[arg(long)]
    no_progress: bool,
    /// Collections, comma-separated [default: HLSL30,HLSS30]
    #[arg(long, value_name = "LIST")]
    collections: Option<String>,
    /// Only granules intersecting W,S,E,N (degrees), e.g. --bbox=-93,46,-92,47.
    #[arg(long, value_name = "W,S,E,N", allow_hyphen_values = true)]
    bbox: Option<String>,
    /// Where items come from: `stac-json` (fetch each published item) or `echo10` (build
    /// them from CMR's ECHO10 records, 2,000 granules per request) [default: stac-json]
    #[arg(long, value_name = "SOURCE")]
    source: Option<Source>,
    /// A workflow file (see workflows/default.toml): its collections, source,
    /// output.daily_prefix, concurrency, request retries and endpoints; flags override it.
    /// (Days are not attempted again: its task retries do not apply.)
    #[arg(long, value_name = "FILE")]
    workflow: Option<PathBuf>,
    #[command(flatten)]
    endpoints: EndpointArgs,
}

/// Runs the command.
pub async fn run(args: Args) -> CliResult {
    let range = DayRange::parse(&args.dates)?;
    let wf = match &args.workflow {
        Some(p) => Workflow::load(p)?,
        None => Workflow::default(),
    };
    let d = DailyOptions::default();
    let collections = match &args.collections {
        Some(list) => Collection::parse_list(list).map_err(crate::Error::from)?,
        None => wf.collections()?.unwrap_or(d.collections),
    };
    let bbox = args.bbox.as_deref().map(str::parse::<Bbox>).transpose()?;
    let endpoints = args.endpoints.resolve(&wf)?;
    let source = match args.source {
        Some(s) => s,
        None => wf.source().map_err(CliError::usage)?.unwrap_or(d.source),
    };
    // The workflow's `[output.options]` configure OUT's store, as they do for `run`.
    let output =
        Output::parse_with_options(&args.out, &wf.output.options.clone().unwrap_or_default())?;
    let daily_root = wf
        .output
        .daily_prefix
        .clone()
        .unwrap_or(d.daily_root.clone());
    // Bad input first (exit 2), then whether CMR can be reached (exit 1), unless every day
    // is already on disk and skipped: then CMR is not asked anything, so it works offline.
    let skip_existing = !args.no_skip_existing;
    if !(skip_existing && all_days_exist(&output, &daily_root, &collections, range).await) {
        check_reachable(&endpoints).await?;
    }
    // What killed runs left (upload records, staged files); not those of a process that
    // still writes here, since no lock keeps others out.
    output.clean_leftovers_of_ended_processes().await?;
    let options = DailyOptions {
        collections,
        bbox,
        parallel: args.parallel,
        max_concurrent_days: args
            .max_concurrent_days
            .or(wf.concurrency.days)
            .map_or(d.max_concurrent_days, |n| n as usize),
        max_concurrent_per_day: args
            .max_concurrent_per_day
            .or(wf.concurrency.fetches_per_day)
            .map_or(d.max_concurrent_per_day, |n| n as usize),
        skip_existing,
        show_progress: !args.no_progress,
        daily_root,
        endpoints,
        source,
        ..d
    };
    let summary = process_date_range(range, &output, &options).await?;
    let stats = get_summary_stats(&summary);
    for o in summary
        .outcomes
        .iter()
        .filter(|o| o.status == Outcome::Failed)
    {
        eprintln!(
            "failed: {} {}: {}",
            o.collection,
            o.day,
            o.error.as_deref().unwrap_or("unknown error")
        );
        for (id, reason) in o.missing.iter().take(20) {
            eprintln!("  missing {id}: {reason}");
        }
        if o.missing.len() > 20 {
            eprintln!("  … and {} more", o.missing.len() - 20);
        }
    }
    print_lines(&[format!(
        "days: {} succeeded, {} skipped, {} failed; items written: {} (skipped days hold {}); success rate: {:.1}%",
        stats.succeeded,
        stats.skipped,
        stats.failed,
        stats.items_written,
        stats.items_skipped,
        stats.success_rate
    )]);
    let missing_optional: u64 = summary.outcomes.iter().map(|o| o.missing_optional).sum();
    if missing_optional > 0 {
        print_lines(&[format!(
            "{missing_optional} optional ECHO10 attributes were missing: their item fields are left out"
        )]);
    }
    if stats.failed > 0 {
        return Ok(ExitStatus::TasksFailed);
    }
    Ok(ExitStatus::Ok)
}

/// Whether the daily file of every collection and day of `range` exists and would be
/// skipped (the skip-existing rule of the harvest). The newest days are looked at first:
/// a range extended to new days stops at the first footer read.
async fn all_days_exist(
    output: &Output,
    daily_root: &str,
    collections: &[Collection],
    range: DayRange,
) -> bool {
    let days: Vec<_> = range.days().collect();
    for &day in days.iter().rev() {
        for &c in collections {
            let dest = output.daily_path(daily_root, c, day);
            if crate::engine::pipeline::existing_daily_rows(output, &dest)
                .await
                .is_none()
            {
                return false;
            }
        }
    }
    true
}
