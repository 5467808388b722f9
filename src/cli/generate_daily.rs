//! `hls-flow generate-daily`: harvest days into daily stac-geoparquet files.

use super::ExitStatus;
use super::common::{CliResult, EndpointArgs, print_lines};
use crate::api::{DailyOptions, DayStatus, get_summary_stats, process_date_range};
use crate::bbox::Bbox;
use crate::collection::Collection;
use crate::period::DayRange;
use crate::write::harvest::Source;
use crate::write::output::Output;

/// Harvest HLS days from CMR into daily stac-geoparquet files
/// (OUT/HLSS30_2.0/YYYY/MM/HLSS30_2.0-YYYY-MM-DD.parquet).
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  hls-flow generate-daily 202405 out/              every day of May 2024
  hls-flow generate-daily 20240515 out/            one day
  hls-flow generate-daily 20240510 20240520 s3://bucket/hls --parallel")]
pub struct Args {
    /// YYYYMM (a month), YYYYMMDD (a day) or YYYYMMDD YYYYMMDD (an inclusive range),
    /// then OUT: a local folder or an object store URL (s3://…, file://…).
    #[arg(value_name = "DATES… OUT", num_args = 2..=3, required = true)]
    args: Vec<String>,
    /// Work on several days at once (up to --max-concurrent-days).
    #[arg(long)]
    parallel: bool,
    /// Days (of one collection) at once with --parallel.
    #[arg(long, default_value_t = 3, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    max_concurrent_days: u32,
    /// Item fetches at once within a day.
    #[arg(long, default_value_t = 50, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    max_concurrent_per_day: u32,
    /// Harvest days again even when their complete file exists.
    #[arg(long)]
    no_skip_existing: bool,
    /// No progress bars.
    #[arg(long)]
    no_progress: bool,
    /// Collections, comma-separated.
    #[arg(long, default_value = "HLSL30,HLSS30", value_name = "LIST")]
    collections: String,
    /// Only granules intersecting W,S,E,N (degrees), e.g. --bbox=-93,46,-92,47.
    #[arg(long, value_name = "W,S,E,N", allow_hyphen_values = true)]
    bbox: Option<String>,
    /// Where items come from: `stac-json` (fetch each published item) or `echo10` (build
    /// them from CMR's ECHO10 records, 2,000 granules per request).
    #[arg(long, value_name = "SOURCE", default_value = "stac-json")]
    source: Source,
    #[command(flatten)]
    endpoints: EndpointArgs,
}

/// Runs the command.
pub async fn run(args: Args) -> CliResult {
    let (dates, out) = args.args.split_at(args.args.len() - 1);
    let range = DayRange::parse(dates)?;
    let collections = Collection::parse_list(&args.collections).map_err(crate::Error::from)?;
    let bbox = args.bbox.as_deref().map(str::parse::<Bbox>).transpose()?;
    let endpoints = args
        .endpoints
        .resolve(&crate::engine::workflow::Workflow::default())?;
    let output = Output::parse(&out[0])?;
    let options = DailyOptions {
        collections,
        bbox,
        parallel: args.parallel,
        max_concurrent_days: args.max_concurrent_days as usize,
        max_concurrent_per_day: args.max_concurrent_per_day as usize,
        skip_existing: !args.no_skip_existing,
        show_progress: !args.no_progress,
        endpoints,
        source: args.source,
        ..DailyOptions::default()
    };
    let summary = process_date_range(range, &output, &options).await?;
    let stats = get_summary_stats(&summary);
    for o in summary
        .outcomes
        .iter()
        .filter(|o| o.status == DayStatus::Failed)
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
