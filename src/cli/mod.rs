//! The command line: parsing (clap) and calling the library. One file per subcommand.

mod common;
mod exit;
mod generate_daily;
mod repartition;
mod retry_failed;
mod run;
mod search;
mod serve;
mod status;
mod sync;
mod verify;
mod worker;

pub use exit::ExitStatus;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// hls-flow: a complete, queryable stac-geoparquet cache of NASA's HLS v2.0 STAC items.
#[derive(Debug, Parser)]
#[command(name = "hls-flow", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// More log output on stderr (-v info, -vv debug); HLS_FLOW_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Harvest HLS days from CMR into daily stac-geoparquet files.
    #[command(name = "generate-daily")]
    GenerateDaily(generate_daily::Args),
    /// Harvest and repartition a range as a checkpointed DAG (resumable).
    Run(run::Args),
    /// Show the state of runs: tasks by month, failures, progress and ETA.
    Status(status::Args),
    /// Run failed tasks again, with the repartitions waiting on them.
    #[command(name = "retry-failed")]
    RetryFailed(retry_failed::Args),
    /// Repartition daily files into monthly, spatially sorted hive partitions.
    Repartition(repartition::Args),
    /// Search the cache's partitions (no CMR): items as NDJSON, GeoJSON or stac-geoparquet.
    Search(search::Args),
    /// Serve the cache as a read-only STAC API (pystac-client, QGIS, stackstac, rustac).
    Serve(serve::Args),
    /// Bring the cache up to date with CMR: new, revised and deleted granules.
    Sync(sync::Args),
    /// Compare the cache with CMR day by day: exit 0 when all agree, 3 otherwise.
    Verify(verify::Args),
    /// Run tasks of a PostgreSQL state shared with other workers (many machines, one run).
    Worker(worker::Args),
}

/// A usage error of clap's in one line: its first paragraph (the error, with the arguments
/// it names, which clap may put on lines of their own), then where to look. clap's usage
/// line and hint that follow it are left out.
fn usage_error(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let error: Vec<&str> = text
        .lines()
        .map(str::trim)
        .skip_while(|l| l.is_empty())
        .take_while(|l| !l.is_empty())
        .collect();
    format!("{} (see --help)", error.join(" "))
}

/// Parses the command line, runs the command, and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // `--help` and `--version` print as clap writes them; a usage error in one line.
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitStatus::Ok.into();
        }
        Err(e) => {
            eprintln!("{}", usage_error(&e));
            return ExitStatus::Usage.into();
        }
    };
    common::init_tracing(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitStatus::Runtime.into();
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::GenerateDaily(args) => generate_daily::run(args).await,
            Command::Run(args) => run::run(args).await,
            Command::Status(args) => status::run(args).await,
            Command::RetryFailed(args) => retry_failed::run(args).await,
            Command::Repartition(args) => repartition::run(args).await,
            Command::Search(args) => search::run(args).await,
            Command::Serve(args) => serve::run(args).await,
            Command::Sync(args) => sync::run(args).await,
            Command::Verify(args) => verify::run(args).await,
            Command::Worker(args) => worker::run(args).await,
        }
    });
    match result {
        Ok(status) => status.into(),
        Err(e) => {
            eprintln!("error: {}", e.message());
            e.status().into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn error_of(args: &[&str]) -> String {
        let e = Cli::try_parse_from(args).expect_err("a usage error");
        assert!(e.use_stderr());
        usage_error(&e)
    }

    #[test]
    fn usage_errors_are_one_line_naming_what_is_wrong() {
        let cases: [(&[&str], &str); 4] = [
            (
                &["hls-flow", "search", "--limit", "abc"],
                "error: invalid value 'abc' for '--limit <N>'",
            ),
            // clap puts each missing argument on a line of its own.
            (
                &["hls-flow", "generate-daily"],
                "error: the following required arguments were not provided: <DATES>... <OUT>",
            ),
            (&["hls-flow", "no-such-command"], "'no-such-command'"),
            (
                &["hls-flow", "status", "--no-such-flag"],
                "'--no-such-flag'",
            ),
        ];
        for (args, needle) in cases {
            let line = error_of(args);
            assert!(!line.contains('\n'), "{line:?}");
            assert!(line.starts_with("error: "), "{line}");
            assert!(line.contains(needle), "{needle:?} not in {line:?}");
            assert!(line.ends_with("(see --help)"), "{line}");
            assert!(!line.contains("Usage:") && !line.contains("For more information"));
        }
    }
}
