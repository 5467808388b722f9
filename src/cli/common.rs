//! What several subcommands share: endpoint options, error plumbing, output helpers.

use super::ExitStatus;
use crate::api::Endpoints;
use crate::engine::workflow::Workflow;
use crate::error::{Error, one_line};
use crate::source::http::HttpSettings;
use crate::source::retry::RetryPolicy;
use std::io::{IsTerminal, Write};
use std::time::Duration;

/// An error at the command line's edge: a message for one line of stderr and an exit code.
#[derive(Debug)]
pub struct CliError {
    message: String,
    status: ExitStatus,
}

impl CliError {
    /// A run-time failure (exit 1).
    pub fn runtime(message: impl Into<String>) -> CliError {
        CliError {
            message: message.into(),
            status: ExitStatus::Runtime,
        }
    }

    /// A usage error (exit 2).
    pub fn usage(message: impl Into<String>) -> CliError {
        CliError {
            message: message.into(),
            status: ExitStatus::Usage,
        }
    }

    /// The one-line message.
    pub fn message(&self) -> String {
        self.message.replace('\n', " ")
    }

    /// The exit status.
    pub fn status(&self) -> ExitStatus {
        self.status
    }
}

impl From<Error> for CliError {
    fn from(e: Error) -> CliError {
        CliError {
            status: if e.is_usage() {
                ExitStatus::Usage
            } else {
                ExitStatus::Runtime
            },
            message: one_line(&e),
        }
    }
}

/// Result of a subcommand.
pub type CliResult = Result<ExitStatus, CliError>;

/// Where CMR is and how to talk to it. Unset flags fall back to the workflow file, then
/// to the built-in defaults (those of `workflows/default.toml`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct EndpointArgs {
    /// CMR base URL (an emulator's, for offline work) [default: https://cmr.earthdata.nasa.gov]
    #[arg(long, env = "HLS_FLOW_CMR_URL", value_name = "URL")]
    pub cmr_url: Option<String>,
    /// Client-Id header sent to CMR (say who you are: CMR is shared by everyone) [default: hls-flow]
    #[arg(long, env = "HLS_FLOW_CLIENT_ID", value_name = "ID")]
    pub client_id: Option<String>,
    /// CMR requests at once [default: 2]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=16))]
    pub max_cmr_requests: Option<u32>,
    /// Attempts per HTTP request (the first included) before a granule or day fails [default: 5]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub max_attempts: Option<u32>,
    /// Longest time one HTTP request may take, in seconds [default: 120]
    #[arg(long, value_name = "SECONDS")]
    pub request_timeout: Option<f64>,
    /// First retry delay in milliseconds (doubles each attempt, with jitter) [default: 500]
    #[arg(long, value_name = "MS")]
    pub retry_min_delay_ms: Option<u64>,
    /// Longest retry delay in milliseconds [default: 30000]
    #[arg(long, value_name = "MS")]
    pub retry_max_delay_ms: Option<u64>,
    /// CMR page size (CMR's maximum is 2000).
    #[arg(long, value_name = "N", hide = true, value_parser = clap::value_parser!(u32).range(1..=2000))]
    pub page_size: Option<u32>,
}

impl EndpointArgs {
    /// Validated endpoints: flags over the workflow over the defaults.
    pub fn resolve(&self, wf: &Workflow) -> Result<Endpoints, CliError> {
        let d = Endpoints::default();
        let cmr_url = self
            .cmr_url
            .clone()
            .or_else(|| wf.endpoints.cmr_url.clone())
            .unwrap_or(d.cmr_url);
        let url = url::Url::parse(&cmr_url)
            .map_err(|e| CliError::usage(format!("invalid CMR URL {cmr_url:?}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(CliError::usage(format!(
                "invalid CMR URL {cmr_url:?}: must be http or https"
            )));
        }
        let timeout = self
            .request_timeout
            .or(wf.endpoints.request_timeout_s)
            .unwrap_or(d.http.request_timeout.as_secs_f64());
        if !(timeout.is_finite() && timeout > 0.0) {
            return Err(CliError::usage(
                "--request-timeout must be a positive number of seconds",
            ));
        }
        let min_delay = self
            .retry_min_delay_ms
            .or(wf.retry.min_delay_ms)
            .map(Duration::from_millis)
            .unwrap_or(d.retry.min_delay);
        let max_delay = self
            .retry_max_delay_ms
            .or(wf.retry.max_delay_ms)
            .map(Duration::from_millis)
            .unwrap_or(d.retry.max_delay);
        if min_delay > max_delay {
            return Err(CliError::usage(
                "the minimum retry delay exceeds the maximum",
            ));
        }
        Ok(Endpoints {
            cmr_url,
            http: HttpSettings {
                client_id: self
                    .client_id
                    .clone()
                    .or_else(|| wf.endpoints.client_id.clone())
                    .unwrap_or(d.http.client_id),
                request_timeout: Duration::from_secs_f64(timeout),
                ..HttpSettings::default()
            },
            page_size: self.page_size.unwrap_or(d.page_size),
            max_cmr_requests: self
                .max_cmr_requests
                .or(wf.concurrency.cmr_requests)
                .map_or(d.max_cmr_requests, |n| n as usize),
            retry: RetryPolicy {
                max_attempts: self
                    .max_attempts
                    .or(wf.retry.request_attempts)
                    .unwrap_or(d.retry.max_attempts),
                min_delay,
                max_delay,
                ..RetryPolicy::default()
            },
        })
    }
}

/// Connection attempts of [`check_reachable`], and the pause after each failed one.
const REACH_ATTEMPTS: [Duration; 3] = [
    Duration::from_millis(200),
    Duration::from_millis(500),
    Duration::ZERO,
];

/// Checks that something listens at CMR's host and port before any work starts, so that a
/// wrong or unreachable `--cmr-url` is one error (exit 1) within a second or two, instead
/// of every day failing after all its request retries. Tries a TCP connection a few times
/// (each within the request timeout); skipped when a proxy is configured (the proxy, not
/// this machine, connects to CMR then).
pub async fn check_reachable(endpoints: &Endpoints) -> Result<(), CliError> {
    let proxied = ["HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some() || std::env::var_os(v.to_lowercase()).is_some());
    if proxied {
        return Ok(());
    }
    let url = &endpoints.cmr_url;
    let unreachable = |why: String| CliError::runtime(format!("cannot reach CMR at {url}: {why}"));
    let parsed = url::Url::parse(url).map_err(|e| unreachable(e.to_string()))?;
    let host = parsed
        .host_str()
        .ok_or_else(|| unreachable("the URL has no host".into()))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = parsed
        .port_or_known_default()
        .ok_or_else(|| unreachable("the URL has no port".into()))?;
    let timeout = endpoints.http.request_timeout;
    let mut last = String::new();
    for pause in REACH_ATTEMPTS {
        let connect = tokio::net::TcpStream::connect((host.as_str(), port));
        match tokio::time::timeout(timeout, connect).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = format!("no connection within {} s", timeout.as_secs_f64()),
        }
        tokio::time::sleep(pause).await;
    }
    Err(unreachable(last))
}

/// Sets up logging to stderr (colours only when stderr is a terminal).
pub fn init_tracing(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info,hls_flow=info",
        _ => "debug,hls_flow=debug,hyper=info,reqwest=info,h2=info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("HLS_FLOW_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

/// Writes lines to stdout; a closed pipe (`| head`) is not an error.
pub fn print_lines(lines: &[String]) {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for line in lines {
        if writeln!(out, "{line}").is_err() {
            return;
        }
    }
    let _ = out.flush();
}
