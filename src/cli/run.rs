//! `hls-flow run`: the checkpointed DAG of harvests and monthly repartitions.

use super::ExitStatus;
use super::common::{CliError, CliResult, EndpointArgs, check_reachable, print_lines};
use crate::bbox::Bbox;
use crate::collection::Collection;
use crate::engine::checkpoint::sqlite::StateStore;
use crate::engine::dag::Dag;
use crate::engine::pipeline::{DEFAULT_STATE, RunConfig};
use crate::engine::report::{Outcome, RunReport};
use crate::engine::scheduler::SchedulerSettings;
use crate::engine::task::{TaskKind, TaskState};
use crate::engine::workflow::Workflow;
use crate::period::DayRange;
use crate::write::harvest::Source;
use crate::write::output::Output;
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

/// Options shared by `run` and `retry-failed`: state, workflow, limits, retries, endpoints.
#[derive(Debug, Clone, clap::Args)]
pub struct RunOptions {
    /// The checkpoint of this output: an SQLite file, or a PostgreSQL database shared by
    /// workers (postgres://user@host:port/db).
    #[arg(long, value_name = "PATH|URL", env = "HLS_FLOW_STATE", default_value = DEFAULT_STATE)]
    pub state: PathBuf,
    /// A workflow file (see workflows/default.toml); flags override it.
    #[arg(long, value_name = "FILE")]
    pub workflow: Option<PathBuf>,
    /// Days (harvest tasks) at once [default: 3]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub max_concurrent_days: Option<u32>,
    /// Item fetches at once within a day [default: 50]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub max_concurrent_per_day: Option<u32>,
    /// Attempts per task (the first included) before it is marked failed [default: 3]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub task_attempts: Option<u32>,
    /// Time limit of one task attempt, in seconds [default: 3600]
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub task_timeout: Option<u64>,
    /// Where items come from: `stac-json` (each published item) or `echo10` (CMR's ECHO10
    /// records, 2,000 granules per request) [default: stac-json]
    #[arg(long, value_name = "SOURCE")]
    pub source: Option<Source>,
    /// No progress bars.
    #[arg(long)]
    pub no_progress: bool,
    #[command(flatten)]
    pub endpoints: EndpointArgs,
}

impl RunOptions {
    /// Loads the workflow file, if any.
    pub fn workflow(&self) -> Result<Workflow, CliError> {
        match &self.workflow {
            Some(p) => Ok(Workflow::load(p)?),
            None => Ok(Workflow::default()),
        }
    }

    /// Resolves a run configuration: flags over the workflow over the defaults.
    pub fn config(&self, wf: &Workflow) -> Result<RunConfig, CliError> {
        let d = RunConfig::default();
        let endpoints = self.endpoints.resolve(wf)?;
        let scheduler = SchedulerSettings {
            max_concurrent_days: self
                .max_concurrent_days
                .or(wf.concurrency.days)
                .map_or(d.scheduler.max_concurrent_days, |n| n as usize),
            task_attempts: self
                .task_attempts
                .or(wf.retry.task_attempts)
                .unwrap_or(d.scheduler.task_attempts),
            min_delay: endpoints.retry.min_delay,
            max_delay: endpoints.retry.max_delay,
            task_timeout: self
                .task_timeout
                .or(wf.retry.task_timeout_s)
                .map_or(d.scheduler.task_timeout, Duration::from_secs),
            ..d.scheduler.clone()
        };
        Ok(RunConfig {
            output: wf.output.path.clone().unwrap_or(d.output),
            daily_prefix: wf.output.daily_prefix.clone().unwrap_or(d.daily_prefix),
            output_options: wf.output.options.clone().unwrap_or_default(),
            collections: wf.collections()?.unwrap_or(d.collections),
            bbox: None,
            fetches_per_day: self
                .max_concurrent_per_day
                .or(wf.concurrency.fetches_per_day)
                .map_or(d.fetches_per_day, |n| n as usize),
            endpoints,
            scheduler,
            state: self.state.clone(),
            show_progress: !self.no_progress,
            tmp_dir: None,
            source: match self.source {
                Some(s) => s,
                None => wf.source().map_err(CliError::usage)?.unwrap_or(d.source),
            },
            skip_existing: false,
        })
    }
}

/// Harvest a range into daily files and monthly hive partitions, checkpointed to SQLite.
/// Run the same command again to resume after a crash; `status` shows where it is.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  hls-flow run 202405 --output out/                          a month, both collections
  hls-flow run 20240510 20240520 --output s3://bucket/hls --collections HLSS30
  hls-flow run 202405 --workflow workflows/default.toml      settings from a workflow file")]
pub struct Args {
    /// YYYYMM (a month), YYYYMMDD (a day) or YYYYMMDD YYYYMMDD (an inclusive range).
    #[arg(value_name = "DATES", num_args = 1..=2, required = true)]
    dates: Vec<String>,
    /// Output: a local folder or an object store URL [default: the workflow's, else out]
    #[arg(long, short, value_name = "OUT")]
    output: Option<String>,
    /// Collections, comma-separated [default: HLSL30,HLSS30]
    #[arg(long, value_name = "LIST")]
    collections: Option<String>,
    /// Only granules intersecting W,S,E,N (degrees), e.g. --bbox=-93,46,-92,47.
    #[arg(long, value_name = "W,S,E,N", allow_hyphen_values = true)]
    bbox: Option<String>,
    #[command(flatten)]
    options: RunOptions,
}

/// Runs the command.
pub async fn run(args: Args) -> CliResult {
    let range = DayRange::parse(&args.dates)?;
    let wf = args.options.workflow()?;
    let mut cfg = args.options.config(&wf)?;
    if let Some(o) = args.output {
        cfg.output = o;
    }
    if let Some(c) = &args.collections {
        cfg.collections = Collection::parse_list(c).map_err(crate::Error::from)?;
    }
    cfg.bbox = args.bbox.as_deref().map(str::parse::<Bbox>).transpose()?;
    // Check the output and the state file before anything else happens (bad input is
    // exit 2), then, if a day is still to be harvested, whether CMR can be reached (exit 1;
    // no state file is made). A rerun of a finished range asks CMR nothing, so it works
    // offline.
    Output::parse(&cfg.output)?;
    if crate::engine::checkpoint::postgres::is_postgres_url(&cfg.state.to_string_lossy()) {
        check_reachable(&cfg.endpoints).await?;
        let outcome = crate::engine::worker::run(range, &cfg, interrupted()).await?;
        return Ok(report(&outcome));
    }
    if harvest_pending(range, &cfg)? {
        check_reachable(&cfg.endpoints).await?;
    }
    let outcome = crate::engine::pipeline::run(range, &cfg, interrupted()).await?;
    Ok(report(&outcome))
}

/// Whether a harvest task of `range` is not done yet by the state file (every one when there
/// is no state file yet): the only tasks that ask CMR.
fn harvest_pending(range: DayRange, cfg: &RunConfig) -> Result<bool, CliError> {
    if !cfg.state.exists() {
        return Ok(true);
    }
    let done: HashSet<String> = StateStore::open_read_only(&cfg.state)?
        .tasks()?
        .into_iter()
        .filter(|t| t.state == TaskState::Succeeded)
        .map(|t| t.key)
        .collect();
    let (tasks, _) = Dag::plan(&cfg.collections, range, &done).ordered();
    Ok(tasks
        .iter()
        .any(|t| t.kind == TaskKind::Harvest && !done.contains(&t.key())))
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn interrupted() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Prints a run's summary (stdout) and failures (stderr); returns the exit status.
pub fn report(r: &RunReport) -> ExitStatus {
    for t in r.failed() {
        eprintln!(
            "failed: {} after {} attempts: {}",
            t.key,
            t.attempts,
            t.last_error.as_deref().unwrap_or("unknown error")
        );
        for (id, reason) in t.missing.iter().take(10) {
            eprintln!("  missing {id}: {reason}");
        }
        if t.missing.len() > 10 {
            eprintln!(
                "  … and {} more (hls-flow status --json lists them all)",
                t.missing.len() - 10
            );
        }
    }
    print_lines(&[format!(
        "run {}: {} tasks: {} done now, {} done before, {} failed, {} waiting on failures; {} items harvested",
        r.run_id,
        r.tasks.len(),
        r.done_now(),
        r.count(Outcome::AlreadyDone),
        r.count(Outcome::Failed),
        r.count(Outcome::NotRun),
        r.items_written
    )]);
    if r.interrupted {
        eprintln!("interrupted: run the same command again to resume");
        return ExitStatus::Runtime;
    }
    if r.count(Outcome::Failed) > 0 {
        eprintln!("some tasks failed: see `hls-flow status`, then `hls-flow retry-failed`");
        return ExitStatus::TasksFailed;
    }
    ExitStatus::Ok
}
