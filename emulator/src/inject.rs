//! Turning a drawn fault into what the client receives: an error status, a late answer,
//! a body cut short (with or without the connection), or content that is wrong.

use super::faults::{FaultKind, Faults};
use super::handlers::{errors_body, json_response};
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::time::Duration;

/// The response of an error-status fault, `Retry-After` on a 429.
pub(crate) fn status_response(kind: FaultKind, faults: &Faults) -> Response {
    let status = kind
        .status()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let mut headers = HeaderMap::new();
    if kind == FaultKind::RateLimited {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(faults.retry_after_s));
    }
    json_response(
        status,
        headers,
        errors_body(&format!("injected fault: {kind}")),
    )
}

/// Waits out a slow fault.
pub(crate) async fn delay(faults: &Faults) {
    tokio::time::sleep(Duration::from_millis(faults.slow_ms)).await;
}

/// A proxy's error page served with status 200: not JSON at all.
pub(crate) const HTML_PAGE: &str =
    "<html><head><title>502 Bad Gateway</title></head><body>Bad Gateway</body></html>";

/// Valid JSON that is not a STAC item.
pub(crate) const NOT_AN_ITEM: &str = r#"{"type":"FeatureCollection","features":[]}"#;

/// Applies a body fault (truncated, invalid, cut mid-body) to a finished 200 response's
/// `body`; other kinds leave it whole.
pub(crate) fn body_response(
    kind: Option<FaultKind>,
    headers: HeaderMap,
    content_type: &'static str,
    body: Bytes,
) -> Response {
    let (content_type, body) = match kind {
        Some(FaultKind::Truncated) => (content_type, body.slice(..body.len() / 2)),
        Some(FaultKind::InvalidJson) => ("text/html", Bytes::from_static(HTML_PAGE.as_bytes())),
        _ => (content_type, body),
    };
    let mut resp = if kind == Some(FaultKind::CutMidBody) {
        cut_mid_body(body)
    } else {
        (StatusCode::OK, body).into_response()
    };
    resp.headers_mut().extend(headers);
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// Announces the whole body, sends half of it, then fails the stream: hyper closes the
/// connection, and the client sees it end early.
fn cut_mid_body(body: Bytes) -> Response {
    let full = body.len();
    let half = body.slice(..full / 2);
    use futures::StreamExt;
    // The pause lets the head and the first half go out before the connection is cut.
    let cut = futures::stream::once(async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "injected fault: connection closed mid-body",
        ))
    });
    let chunks = futures::stream::iter([Ok::<Bytes, std::io::Error>(half)]).chain(cut);
    let mut resp = Response::new(Body::from_stream(chunks));
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(full));
    resp
}

/// The item with another `id` (its own with `.other` appended).
pub(crate) fn with_other_id(item: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(item) {
        Ok(mut v) => {
            let other = v["id"]
                .as_str()
                .map(|id| format!("{id}.other"))
                .unwrap_or_else(|| "other".to_string());
            v["id"] = serde_json::Value::String(other);
            v.to_string()
        }
        Err(_) => item.to_string(),
    }
}

/// A CMR entry (JSON) without its `_stac.json` links.
pub(crate) fn without_stac_link(entry: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(entry) {
        Ok(mut v) => {
            if let Some(links) = v.get_mut("links").and_then(|l| l.as_array_mut()) {
                links.retain(|l| {
                    !l["href"]
                        .as_str()
                        .is_some_and(|h| h.ends_with("_stac.json"))
                });
            }
            v.to_string()
        }
        Err(_) => entry.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_id_and_missing_link_change_only_that() {
        let item = r#"{"type":"Feature","id":"HLS.S30.T01WEV.2024153T000609.v2.0","x":1}"#;
        let v: serde_json::Value = serde_json::from_str(&with_other_id(item)).unwrap();
        assert_eq!(v["id"], "HLS.S30.T01WEV.2024153T000609.v2.0.other");
        assert_eq!(v["x"], 1);
        let entry = r#"{"title":"t","links":[{"href":"https://x/a.tif"},{"href":"https://x/t_stac.json"},{"href":"s3://x/t_stac.json"}]}"#;
        let v: serde_json::Value = serde_json::from_str(&without_stac_link(entry)).unwrap();
        assert_eq!(v["links"].as_array().unwrap().len(), 1);
        assert_eq!(v["links"][0]["href"], "https://x/a.tif");
    }
}
