//! `hls-flow sync`: bring every day and month the state file covers up to date with CMR.

use super::ExitStatus;
use super::common::{CliError, CliResult, check_reachable, print_lines};
use super::run::{RunOptions, interrupted, report};
use crate::collection::Collection;
use crate::engine::checkpoint::postgres::is_postgres_url;
use crate::engine::checkpoint::stamp;
use crate::engine::sync::SyncOptions;
use chrono::{DateTime, Utc};

/// Ask CMR what changed since the last sync (new, revised and deleted granules) and
/// rewrite exactly the daily files and month partitions they touch. Output and bbox are the
/// state's (a state file, or a PostgreSQL database whose workers share the days to harvest
/// again); run it from cron or a systemd timer.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  hls-flow sync --state hls.sqlite                           every collection the state covers
  hls-flow sync --state hls.sqlite --since 2026-01-01T00:00:00Z   ask from an older instant
  hls-flow sync --state postgres://hls@db:5432/hls           with workers sharing the state")]
pub struct Args {
    /// Ask for changes since this instant (RFC 3339) when it is before the watermark.
    #[arg(long, value_name = "RFC3339")]
    since: Option<String>,
    /// Collections, comma-separated [default: every collection the state covers]
    #[arg(long, value_name = "LIST")]
    collections: Option<String>,
    #[command(flatten)]
    options: RunOptions,
}

/// Runs the command.
pub async fn run(args: Args) -> CliResult {
    let since = args
        .since
        .as_deref()
        .map(|s| {
            DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| CliError::usage(format!("invalid --since {s:?}: {e}")))
        })
        .transpose()?;
    let postgres = is_postgres_url(&args.options.state.to_string_lossy());
    if !postgres && !args.options.state.exists() {
        return Err(CliError::usage(format!(
            "state file {} does not exist: nothing to sync (`hls-flow run` records its tasks there)",
            args.options.state.display()
        )));
    }
    let wf = args.options.workflow()?;
    let mut cfg = args.options.config(&wf)?;
    if let Some(c) = &args.collections {
        cfg.collections = Collection::parse_list(c).map_err(crate::Error::from)?;
    }
    check_reachable(&cfg.endpoints).await?;
    let opts = SyncOptions {
        since,
        ..SyncOptions::default()
    };
    let Some(outcome) = crate::engine::sync::sync(&opts, &cfg, interrupted()).await? else {
        print_lines(&["the state covers no day: nothing to sync".to_string()]);
        return Ok(ExitStatus::Ok);
    };
    let mut lines = Vec::new();
    for c in &outcome.collections {
        lines.push(format!(
            "{}: changes since {}: {} new or revised, {} deleted ({} in the cache), {} applied before; {} days harvested again{}",
            c.collection,
            stamp(c.since),
            c.changed,
            c.deleted,
            c.deleted_held,
            c.already_applied,
            c.days.len(),
            c.watermark
                .map(|w| format!("; watermark now {}", stamp(w)))
                .unwrap_or_default()
        ));
    }
    print_lines(&lines);
    let status = report(&outcome.run);
    if !outcome.completed && status == ExitStatus::Ok {
        // A task waits on one that failed before this sync: the cache is not current.
        eprintln!(
            "the sync did not complete (tasks wait on failed ones): see `hls-flow status`, then `hls-flow retry-failed`"
        );
        return Ok(ExitStatus::TasksFailed);
    }
    Ok(status)
}
