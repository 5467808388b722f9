//! `hls-flow retry-failed`: run failed tasks again, with the tasks that depend on them.

use super::ExitStatus;
use super::common::{CliError, CliResult, print_lines};
use super::run::{RunOptions, interrupted, report};
use crate::collection::Collection;
use crate::engine::checkpoint::postgres::is_postgres_url;
use crate::engine::pipeline::RetryFilter;
use crate::period::parse_day;

/// Re-queue failed tasks (all, or those of a collection, day or month) and run them, with
/// the monthly repartitions waiting on them. Output and bbox are the state's (a state file,
/// or a PostgreSQL database: the retried tasks are then shared with its workers).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only tasks of this collection.
    #[arg(long, value_name = "COLLECTION")]
    collection: Option<String>,
    /// Only the task of this day (YYYYMMDD).
    #[arg(long, value_name = "YYYYMMDD")]
    day: Option<String>,
    /// Only tasks of this month (YYYYMM).
    #[arg(long, value_name = "YYYYMM")]
    month: Option<String>,
    #[command(flatten)]
    options: RunOptions,
}

/// Runs the command.
pub async fn run(args: Args) -> CliResult {
    let filter = RetryFilter {
        collection: args
            .collection
            .as_deref()
            .map(str::parse::<Collection>)
            .transpose()
            .map_err(crate::Error::from)?,
        day: args.day.as_deref().map(parse_day).transpose()?,
        month: args.month.as_deref().map(str::parse).transpose()?,
    };
    let postgres = is_postgres_url(&args.options.state.to_string_lossy());
    if !postgres && !args.options.state.exists() {
        return Err(CliError::usage(format!(
            "state file {} does not exist: nothing to retry (`hls-flow run` records its tasks there)",
            args.options.state.display()
        )));
    }
    let wf = args.options.workflow()?;
    let cfg = args.options.config(&wf)?;
    let retried = if postgres {
        crate::engine::worker::retry_failed(&filter, &cfg, interrupted()).await?
    } else {
        crate::engine::pipeline::retry_failed(&filter, &cfg, interrupted()).await?
    };
    match retried {
        None => {
            print_lines(&["no failed task matches: nothing to retry".to_string()]);
            Ok(ExitStatus::Ok)
        }
        Some(outcome) => Ok(report(&outcome)),
    }
}
