//! `hls-flow-emulator`: runs the CMR + LP DAAC emulator until Ctrl-C or SIGTERM.
//!
//! Prints exactly one line to stdout, `listening on http://127.0.0.1:PORT`; logs go to
//! stderr (`RUST_LOG` filters them). Exit codes: 0 after a clean stop, 1 when the server
//! cannot start, 2 for bad arguments.

use chrono::NaiveDate;
use clap::Parser;
use hls_flow_emulator::{DataSource, Emulator, EmulatorConfig, FaultKind, Faults, SyntheticConfig};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;

/// Serve NASA CMR's granule search and LP DAAC's HLS `_stac.json` items on a local port,
/// from the real recordings (--replay) or from deterministically generated granules.
#[derive(Debug, Parser)]
#[command(
    name = "hls-flow-emulator",
    version,
    after_help = "Examples:\n  hls-flow-emulator --replay\n  hls-flow-emulator --start 2024-05-01 --end 2024-05-31 --granules-per-day 2000 --seed 7\n  hls-flow-emulator --replay --fault-rate 0.1 --faults 429,503,truncated\n\nFaults can also be changed while it runs: PUT /_emulator/faults with a JSON body such as {\"rate\": 0.1, \"kinds\": [\"429\", \"slow\"], \"slow_ms\": 3000} ({} turns them off; GET shows them).\n\nThe archive changes on demand: PUT /_emulator/changes with a JSON change set such as {\"now\": \"2024-07-01T12:00:00Z\", \"late\": [{\"collection\": \"HLSL30\", \"day\": \"2024-05-31\", \"count\": 2}], \"revise\": {\"random\": 30}, \"delete\": {\"granules\": [\"HLS.L30.T15TVN.2024130T165405.v2.0\"]}} answers what changed (late ingests, revisions, deletions, stamped with the archive's clock; GET shows the clock). Searches take updated_since and revision_date[]; /search/deleted-granules.json?revision_date=RFC3339&provider=LPCLOUD&parent_collection_id=C... lists the deleted granules.\n\nThen search http://127.0.0.1:PORT/search/granules.json?collection_concept_id[]=C2021957657-LPCLOUD&temporal[]=2024-05-01T00:00:00Z,2024-05-01T23:59:59.999Z&page_size=2000"
)]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    bind: IpAddr,
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Serve the real recordings (HLSL30 2025-10-02..04, one HLSS30 item of 2024-06-01).
    #[arg(long, conflicts_with_all = ["start", "end", "granules_per_day", "seed"])]
    replay: bool,
    /// First day of synthetic granules (YYYY-MM-DD).
    #[arg(long, required_unless_present = "replay", requires = "end")]
    start: Option<NaiveDate>,
    /// Last day of synthetic granules, inclusive (YYYY-MM-DD).
    #[arg(long, required_unless_present = "replay", requires = "start")]
    end: Option<NaiveDate>,
    /// Granules a day, HLSL30 and HLSS30 together (~35 % / 65 %).
    #[arg(long, default_value_t = 1000)]
    granules_per_day: u32,
    /// Seed of the generator: the same seed serves the same granules.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Probability (0 to 1) that a request draws a random fault of one of --faults.
    #[arg(
        long,
        value_name = "RATE",
        default_value_t = 0.0,
        help_heading = "Faults"
    )]
    fault_rate: f64,
    /// Kinds of fault to draw from, comma-separated: 429, 500, 502, 503, 504, timed-out,
    /// slow, cut-mid-body, truncated, invalid-json, not-stac, no-stac-link,
    /// duplicate-entry, id-mismatch, hits-changed [default: all]
    #[arg(
        long,
        value_name = "KINDS",
        value_delimiter = ',',
        help_heading = "Faults"
    )]
    faults: Vec<FaultKind>,
    /// Seed of the fault draws.
    #[arg(long, value_name = "N", default_value_t = 0, help_heading = "Faults")]
    fault_seed: u64,
    /// Retry-After of an injected 429, in seconds.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 1,
        help_heading = "Faults"
    )]
    retry_after: u64,
    /// How late a slow answer comes, in milliseconds.
    #[arg(
        long,
        value_name = "MS",
        default_value_t = 5000,
        help_heading = "Faults"
    )]
    slow_ms: u64,
    /// How late every item request is answered, in milliseconds (a network's latency).
    #[arg(long, value_name = "MS", default_value_t = 0)]
    item_latency_ms: u64,
}

/// Prints a clap error as one line (help and version print as usual).
fn usage_error(err: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) {
        let _ = err.print();
        return ExitCode::SUCCESS;
    }
    let text = err.to_string();
    let line = text
        .lines()
        .take_while(|l| !l.starts_with("Usage:"))
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("tip:"))
        .collect::<Vec<_>>()
        .join(" ");
    eprintln!("{line}");
    ExitCode::from(2)
}

fn config(cli: &Cli) -> Result<EmulatorConfig, String> {
    let source = match (cli.replay, cli.start, cli.end) {
        (true, _, _) => DataSource::Replay,
        (false, Some(start), Some(end)) => {
            let s = SyntheticConfig {
                start,
                end,
                granules_per_day: cli.granules_per_day,
                seed: cli.seed,
            };
            s.validate().map_err(|e| format!("error: {e}"))?;
            DataSource::Synthetic(s)
        }
        _ => return Err("error: give --replay, or --start and --end".to_string()),
    };
    let faults = Faults {
        rate: cli.fault_rate,
        kinds: if cli.faults.is_empty() {
            FaultKind::ALL.to_vec()
        } else {
            cli.faults.clone()
        },
        seed: cli.fault_seed,
        retry_after_s: cli.retry_after,
        slow_ms: cli.slow_ms,
        item_latency_ms: cli.item_latency_ms,
        ..Faults::default()
    };
    faults.validate().map_err(|e| format!("error: {e}"))?;
    Ok(EmulatorConfig { source, faults })
}

async fn stopped() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let config = match config(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let addr = SocketAddr::new(cli.bind, cli.port);
    let emulator = match Emulator::start(config, addr).await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: cannot serve on {addr}: {e}");
            return ExitCode::from(1);
        }
    };
    println!("listening on {}", emulator.base_url());
    stopped().await;
    emulator.shutdown().await;
    ExitCode::SUCCESS
}
