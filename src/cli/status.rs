//! `hls-flow status`: what the state file says, for people or (`--json`) scripts.

use super::ExitStatus;
use super::common::{CliResult, print_lines};
use crate::engine::checkpoint::sqlite::TaskState;
use crate::engine::pipeline::DEFAULT_STATE;
use crate::engine::status::StatusReport;
use std::path::PathBuf;

/// Show tasks by collection and month, failures with their errors and missing granules,
/// and the progress and ETA of a live run.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The checkpoint: an SQLite file, or a PostgreSQL database (postgres://…).
    #[arg(long, value_name = "PATH|URL", env = "HLS_FLOW_STATE", default_value = DEFAULT_STATE)]
    state: PathBuf,
    /// Print JSON (for scripts).
    #[arg(long)]
    json: bool,
    /// List every missing granule of failed tasks (the default shows 10 per task).
    #[arg(long)]
    all_missing: bool,
}

/// Runs the command.
pub async fn run(args: Args) -> CliResult {
    let url = args.state.to_string_lossy();
    let report = if crate::engine::checkpoint::postgres::is_postgres_url(&url) {
        let lease = crate::engine::checkpoint::postgres::LeaseSettings::from_env();
        let pg = crate::engine::checkpoint::postgres::PgCheckpoint::connect(&url, lease).await?;
        crate::engine::status::status_postgres(&pg).await?
    } else {
        crate::engine::status::status(&args.state)?
    };
    if args.json {
        let text = serde_json::to_string_pretty(&report).map_err(|source| crate::Error::Json {
            what: "the status report",
            source,
        })?;
        print_lines(&[text]);
    } else {
        print_lines(&render(&report, args.all_missing));
    }
    Ok(ExitStatus::Ok)
}

fn state_name(s: Option<TaskState>) -> &'static str {
    s.map_or("-", TaskState::as_str)
}

fn render(r: &StatusReport, all_missing: bool) -> Vec<String> {
    let mut out = vec![format!(
        "state: {}  output: {}{}",
        r.state_file,
        r.output.as_deref().unwrap_or("?"),
        r.bbox
            .as_deref()
            .map(|b| format!("  bbox: {b}"))
            .unwrap_or_default()
    )];
    match (&r.live_run, &r.last_run) {
        (Some(live), _) => out.push(format!(
            "live run {} (pid {}, started {}): {} tasks done, {} to go, ETA {}",
            live.run.id,
            live.run.pid,
            live.run.started_at,
            live.done,
            live.remaining,
            live.eta_seconds
                .map(|s| format!("{}m{:02}s", s / 60, s % 60))
                .unwrap_or_else(|| "unknown".into())
        )),
        (None, Some(last)) => out.push(format!(
            "no live run; last run {} ({}) started {}: {}",
            last.id, last.command, last.started_at, last.status
        )),
        (None, None) => out.push("no run yet".into()),
    }
    if !r.sync.watermarks.is_empty() {
        let marks: Vec<String> = r
            .sync
            .watermarks
            .iter()
            .map(|(c, w)| format!("{} {w}", c.short_name()))
            .collect();
        out.push(format!(
            "synced with CMR as of: {}{}",
            marks.join(", "),
            r.sync
                .unfinished_since
                .as_deref()
                .map(|s| format!(" (a sync begun {s} has not completed)"))
                .unwrap_or_default()
        ));
    }
    if !r.sync.changes.is_empty() {
        let states: Vec<String> = r
            .sync
            .changes
            .iter()
            .map(|(c, s)| format!("{} {s}", c.short_name()))
            .collect();
        out.push(format!(
            "changes tasks (CMR queries of the latest sync): {}",
            states.join(", ")
        ));
    }
    out.push(format!(
        "tasks: {} succeeded, {} failed, {} pending, {} running; {} items in daily files",
        r.totals.succeeded, r.totals.failed, r.totals.pending, r.totals.running, r.items_written
    ));
    out.push(String::new());
    out.push(format!(
        "{:<8} {:<8} {:>5} {:>5} {:>5} {:>5}  {:<12} {:>10} {:>10}",
        "coll.", "month", "done", "fail", "wait", "run", "repartition", "items", "partition"
    ));
    for m in &r.months {
        out.push(format!(
            "{:<8} {:<8} {:>5} {:>5} {:>5} {:>5}  {:<12} {:>10} {:>10}",
            m.collection.short_name(),
            m.month,
            m.harvest.succeeded,
            m.harvest.failed,
            m.harvest.pending,
            m.harvest.running,
            state_name(m.repartition),
            m.items_written,
            m.partition_rows
                .map(|n| n.to_string())
                .unwrap_or_else(|| "-".into())
        ));
    }
    if !r.failed.is_empty() {
        out.push(String::new());
        out.push(format!("failed tasks ({}):", r.failed.len()));
        for t in &r.failed {
            out.push(format!(
                "  {} ({} attempts): {}",
                t.key,
                t.attempts,
                t.last_error.as_deref().unwrap_or("?")
            ));
            let shown = if all_missing { t.missing.len() } else { 10 };
            for (id, reason) in t.missing.iter().take(shown) {
                out.push(format!("    missing {id}: {reason}"));
            }
            if t.missing.len() > shown {
                out.push(format!(
                    "    … and {} more (--all-missing)",
                    t.missing.len() - shown
                ));
            }
        }
        out.push("run `hls-flow retry-failed` to try them again".into());
    }
    if !r.workers.is_empty() {
        out.push(String::new());
        out.push(format!(
            "{:<6} {:<20} {:>8}  {:<24} {:>8}  tasks",
            "run", "host", "pid", "last heartbeat", "age"
        ));
        for w in &r.workers {
            let tasks = if w.stopped {
                "(stopped)".to_string()
            } else if w.tasks.is_empty() {
                "(idle)".to_string()
            } else {
                w.tasks.join(", ")
            };
            out.push(format!(
                "{:<6} {:<20} {:>8}  {:<24} {:>7.1}s  {tasks}",
                w.run_id, w.host, w.pid, w.last_heartbeat, w.heartbeat_age_s
            ));
        }
    }
    out
}
