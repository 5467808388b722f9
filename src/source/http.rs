//! One HTTP client for everything (connection reuse, keep-alive, HTTP/2 where offered),
//! and the mapping of transport and status failures onto [`Error`].

use crate::error::{Error, Result};
use reqwest::{Client, Response, header::HeaderMap};
use std::time::Duration;

/// Settings of the shared HTTP client.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Sent as `Client-Id` to CMR, and as part of the user agent.
    pub client_id: String,
    /// Longest time one request (headers and body) may take.
    pub request_timeout: Duration,
    /// Longest time to open a connection.
    pub connect_timeout: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            client_id: "hls-flow".into(),
            request_timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(15),
        }
    }
}

/// Builds the shared client.
pub fn client(settings: &HttpSettings) -> Result<Client> {
    Client::builder()
        .user_agent(format!(
            "hls-flow/{} ({})",
            env!("CARGO_PKG_VERSION"),
            settings.client_id
        ))
        .timeout(settings.request_timeout)
        .connect_timeout(settings.connect_timeout)
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true)
        .build()
        .map_err(|source| Error::HttpClient { source })
}

/// Turns a transport error into [`Error::Http`].
pub fn transport_error(url: &str, e: reqwest::Error) -> Error {
    Error::Http {
        url: url.to_string(),
        source: e,
    }
}

/// Reads a response's body into one buffer sized from its `Content-Length`, releasing each
/// chunk as it is copied. (`Response::bytes` keeps every chunk of a large body, each a slice
/// of the connection's read buffer, until it copies them all into one: twice the memory of
/// a 30 MB CMR page at its peak.)
pub async fn body_bytes(url: &str, mut resp: Response) -> Result<bytes::Bytes> {
    let capacity = resp.content_length().unwrap_or(0).min(256 << 20) as usize;
    let mut body = Vec::with_capacity(capacity);
    while let Some(chunk) = resp.chunk().await.map_err(|e| transport_error(url, e))? {
        body.extend_from_slice(&chunk);
    }
    Ok(body.into())
}

/// Returns the response if its status is a success, else [`Error::Status`] with the start
/// of its body and its `Retry-After`.
pub async fn check_status(url: &str, resp: Response) -> Result<Response> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let retry_after = retry_after(resp.headers());
    let body = resp.text().await.unwrap_or_default();
    let mut body: String = body.chars().take(300).collect();
    body = body.replace(['\n', '\r'], " ");
    Err(Error::Status {
        url: url.to_string(),
        status: status.as_u16(),
        body,
        retry_after,
    })
}

/// `Retry-After` in seconds, if present and numeric.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}
