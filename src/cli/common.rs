//! What several subcommands share: endpoint options, error plumbing, output helpers.

use super::ExitStatus;
use crate::api::Endpoints;
use crate::cmr::DEFAULT_CMR_URL;
use crate::error::{Error, one_line};
use crate::http::HttpSettings;
use crate::retry::RetryPolicy;
use std::io::Write;
use std::time::Duration;

/// An error at the command line's edge: a message for one line of stderr and an exit code.
#[derive(Debug)]
pub struct CliError {
    message: String,
    status: ExitStatus,
}

impl CliError {
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

/// Where CMR is and how to talk to it.
#[derive(Debug, Clone, clap::Args)]
pub struct EndpointArgs {
    /// CMR base URL (an emulator's, for offline work).
    #[arg(long, env = "HLS_FLOW_CMR_URL", default_value = DEFAULT_CMR_URL, value_name = "URL")]
    pub cmr_url: String,
    /// Client-Id header sent to CMR (say who you are: CMR is shared by everyone).
    #[arg(
        long,
        env = "HLS_FLOW_CLIENT_ID",
        default_value = "hls-flow",
        value_name = "ID"
    )]
    pub client_id: String,
    /// CMR requests at once.
    #[arg(long, default_value_t = 2, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=16))]
    pub max_cmr_requests: u32,
    /// Attempts per request (the first included) before a granule or day fails.
    #[arg(long, default_value_t = 5, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub max_attempts: u32,
    /// Longest time one HTTP request may take, in seconds.
    #[arg(long, default_value_t = 120.0, value_name = "SECONDS")]
    pub request_timeout: f64,
    /// CMR page size (CMR's maximum is 2000).
    #[arg(long, default_value_t = 2000, value_name = "N", hide = true, value_parser = clap::value_parser!(u32).range(1..=2000))]
    pub page_size: u32,
}

impl EndpointArgs {
    /// Validated endpoints.
    pub fn endpoints(&self) -> Result<Endpoints, CliError> {
        let url = url::Url::parse(&self.cmr_url)
            .map_err(|e| CliError::usage(format!("invalid --cmr-url {:?}: {e}", self.cmr_url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(CliError::usage(format!(
                "invalid --cmr-url {:?}: must be http or https",
                self.cmr_url
            )));
        }
        if !(self.request_timeout.is_finite() && self.request_timeout > 0.0) {
            return Err(CliError::usage(
                "--request-timeout must be a positive number of seconds",
            ));
        }
        Ok(Endpoints {
            cmr_url: self.cmr_url.clone(),
            http: HttpSettings {
                client_id: self.client_id.clone(),
                request_timeout: Duration::from_secs_f64(self.request_timeout),
                ..HttpSettings::default()
            },
            page_size: self.page_size,
            max_cmr_requests: self.max_cmr_requests as usize,
            retry: RetryPolicy {
                max_attempts: self.max_attempts,
                ..RetryPolicy::default()
            },
        })
    }
}

/// Sets up logging to stderr.
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
