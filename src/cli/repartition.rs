//! `hls-flow repartition`: daily files into monthly, spatially sorted hive partitions.

use super::ExitStatus;
use super::common::{CliError, CliResult, print_lines};
use crate::error::Error;
use crate::progress::Progress;
use crate::write::output::Output;
use crate::write::repartition::{
    RepartitionOptions, discover_daily, partition_path, repartition_month,
};

/// Repartition daily stac-geoparquet files (SRC/HLSS30_2.0/YYYY/MM/…parquet) into one
/// spatially sorted file per collection and month
/// (DST/HLSS30_2.0/year=YYYY/month=MM/part-0.parquet).
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  hls-flow repartition daily/ monthly/
  hls-flow repartition s3://bucket/daily s3://bucket/monthly --overwrite")]
pub struct Args {
    /// Where the daily files are: a local folder or an object store URL.
    #[arg(value_name = "SRC")]
    src: String,
    /// Where the partitions go: a local folder or an object store URL.
    #[arg(value_name = "DST")]
    dst: String,
    /// Replace partitions that exist already (without it, an existing one is an error and
    /// nothing is written).
    #[arg(long)]
    overwrite: bool,
    /// No progress bars.
    #[arg(long)]
    no_progress: bool,
}

/// Runs the command.
pub async fn run(args: Args) -> CliResult {
    // A source is read, never made: a local folder that is not there is an error, and
    // nothing is created (neither it nor DST).
    if !args.src.contains("://") && !std::path::Path::new(&args.src).is_dir() {
        return Err(CliError::usage(format!(
            "source {:?} cannot be used: no such folder",
            args.src
        )));
    }
    let src = Output::parse(&args.src)?;
    let dst = Output::parse(&args.dst)?;
    let months = discover_daily(&src, "").await?;
    if months.is_empty() {
        return Err(Error::InvalidOutput {
            output: args.src.clone(),
            problem: crate::error::OutputProblem::NoDailyFiles,
        }
        .into());
    }
    if !args.overwrite {
        // All or nothing: refuse before writing any partition.
        for &(collection, month) in months.keys() {
            let dest = partition_path(&dst, collection, month);
            if dst.size_of(&dest).await?.is_some() {
                return Err(Error::PartitionExists {
                    path: dst.show(&dest),
                }
                .into());
            }
        }
    }
    // What killed runs left (upload records, staged files); not those of a process that
    // still writes here, since no lock keeps others out.
    dst.clean_leftovers_of_ended_processes().await?;
    let progress = Progress::new(!args.no_progress, months.len() as u64, "months");
    let (mut items, mut bytes, mut files) = (0u64, 0u64, 0usize);
    for ((collection, month), inputs) in &months {
        let bar = progress.unit(&format!("{collection} {month}"));
        let options = RepartitionOptions {
            overwrite: args.overwrite,
            progress: bar.clone(),
            ..RepartitionOptions::default()
        };
        let result = repartition_month(&src, inputs, &dst, *collection, *month, &options).await;
        bar.done();
        let report = match result {
            Ok(r) => r,
            Err(e) => {
                progress.finish();
                return Err(e.into());
            }
        };
        items += report.rows;
        bytes += report.bytes;
        files += report.inputs;
        progress.unit_done();
    }
    progress.finish();
    print_lines(&[format!(
        "partitions: {} written to {}; items: {items} from {files} daily files; bytes: {bytes}",
        months.len(),
        dst.display(),
    )]);
    Ok(ExitStatus::Ok)
}
