//! `hls-flow worker`: takes ready tasks of a PostgreSQL state shared by many processes.

use super::ExitStatus;
use super::common::{CliError, CliResult, print_lines};
use super::run::{RunOptions, interrupted};
use crate::engine::checkpoint::postgres::is_postgres_url;
use crate::engine::worker::{WorkerSettings, connect, work};

/// Run tasks of runs planned in a PostgreSQL state (`run --state postgres://…`), alongside
/// any number of other workers on any machines: each task runs once (a lease renewed by
/// heartbeats; an expired one returns the task to the others), a month's repartition when
/// all its days succeeded, whoever ran them. The output and bounding box are the state's.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  hls-flow run 202405 --output s3://bucket/hls --state postgres://hls@db:5432/hls   plans, and works
  hls-flow worker --state postgres://hls@db:5432/hls --exit-when-idle      on each machine")]
pub struct Args {
    /// Stop when no task is ready or running anywhere (else wait for more until stopped).
    #[arg(long)]
    exit_when_idle: bool,
    #[command(flatten)]
    options: RunOptions,
}

/// Runs the command.
pub async fn run(args: Args) -> CliResult {
    let state = args.options.state.to_string_lossy().to_string();
    if !is_postgres_url(&state) {
        return Err(CliError::usage(format!(
            "worker needs a PostgreSQL state (--state postgres://user@host:port/db or HLS_FLOW_STATE), not {state:?}"
        )));
    }
    let wf = args.options.workflow()?;
    let cfg = args.options.config(&wf)?;
    let pg = connect(&cfg).await?;
    let settings = WorkerSettings {
        exit_when_idle: args.exit_when_idle,
        ..WorkerSettings::default()
    };
    let command = format!("worker pid {}", std::process::id());
    let report = work(pg, &cfg, &settings, None, &command, interrupted()).await?;
    print_lines(&[format!(
        "worker (run {}): {} tasks done, {} failed, {} attempts given up (lease lost); {} items harvested",
        report.run_id,
        report.succeeded.len(),
        report.failed.len(),
        report.lost,
        report.items_written
    )]);
    if report.interrupted {
        return Ok(ExitStatus::Runtime);
    }
    if !report.failed.is_empty() {
        return Ok(ExitStatus::TasksFailed);
    }
    Ok(ExitStatus::Ok)
}
