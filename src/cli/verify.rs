//! `hls-flow verify`: compare the cache with CMR, day by day.

use super::ExitStatus;
use super::common::{CliError, CliResult, EndpointArgs, check_reachable, print_lines};
use crate::engine::pipeline::{DEFAULT_STATE, RunConfig};
use crate::engine::workflow::Workflow;
use crate::period::DayRange;
use std::path::PathBuf;

/// For each day and collection the state file covers, compare the number of granules CMR
/// has with the rows of the daily file, and each month partition with its month; print
/// what differs. Exit 0 when everything agrees, 3 otherwise.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// YYYYMM, YYYYMMDD or YYYYMMDD YYYYMMDD [default: every day the state covers]
    #[arg(value_name = "DATES", num_args = 0..=2)]
    dates: Vec<String>,
    /// The SQLite checkpoint of the cache.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_STATE)]
    state: PathBuf,
    /// Print every day and month checked as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    endpoints: EndpointArgs,
}

/// Runs the command.
pub async fn run(args: Args) -> CliResult {
    let range = if args.dates.is_empty() {
        None
    } else {
        Some(DayRange::parse(&args.dates)?)
    };
    let endpoints = args.endpoints.resolve(&Workflow::default())?;
    let cfg = RunConfig {
        state: args.state,
        endpoints,
        ..RunConfig::default()
    };
    if !cfg.state.exists() {
        return Err(CliError::usage(format!(
            "state file {} does not exist: nothing to verify",
            cfg.state.display()
        )));
    }
    check_reachable(&cfg.endpoints).await?;
    let report = crate::engine::sync::verify(range, &cfg).await?;
    if args.json {
        let text = serde_json::to_string_pretty(&report).map_err(|source| crate::Error::Json {
            what: "the verify report",
            source,
        })?;
        print_lines(&[text]);
    } else {
        let mut lines: Vec<String> = report
            .differing_days()
            .map(|d| {
                format!(
                    "{} {}: CMR has {} granules, the daily file {} rows{}",
                    d.collection,
                    d.day,
                    d.cmr,
                    d.daily,
                    d.partition
                        .map(|p| format!(", the partition {p}"))
                        .unwrap_or_default()
                )
            })
            .collect();
        lines.extend(report.differing_months().map(|m| {
            format!(
                "{} {}: CMR has {} granules, the partition {}",
                m.collection,
                m.month,
                m.cmr,
                m.partition
                    .map_or_else(|| "is not built".to_string(), |n| format!("{n} rows"))
            )
        }));
        lines.push(format!(
            "verified {} days and {} month partitions: {} days and {} partitions differ from CMR",
            report.days.len(),
            report.months.len(),
            report.differing_days().count(),
            report.differing_months().count()
        ));
        print_lines(&lines);
    }
    Ok(if report.agrees() {
        ExitStatus::Ok
    } else {
        ExitStatus::TasksFailed
    })
}
