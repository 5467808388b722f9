//! The HTTP handlers: CMR granule search, LP DAAC items, counters, 404s.

use super::archive;
use super::counts::bump;
use super::entry;
use super::faults::{FaultKind, Faults, Target};
use super::inject;
use super::search::{self, BadRequest, page_bounds, parse_query, parse_search_after};
use super::store::Granule;
use super::{AppState, rng::Rng};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, Utc};
use hls_flow::collection::Collection;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

const JSON_UTF8: &str = "application/json;charset=utf-8";

pub(super) fn json_response(status: StatusCode, headers: HeaderMap, body: String) -> Response {
    let mut resp = (status, body).into_response();
    resp.headers_mut().extend(headers);
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_UTF8));
    resp
}

pub(super) fn errors_body(msg: &str) -> String {
    serde_json::json!({ "errors": [msg] }).to_string()
}

fn request_id(state: &AppState) -> String {
    let seq = state.request_seq.fetch_add(1, Ordering::Relaxed);
    let mut rng = Rng::from_parts(&[seq, state.started_ns]);
    let (a, b) = (rng.next_u64(), rng.next_u64());
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | ((b >> 48) & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}

fn header_value(s: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(s).ok()
}

fn bad_request(state: &AppState, e: &BadRequest) -> Response {
    bump(&state.counters.bad_requests);
    tracing::debug!(error = %e.0, "400");
    let mut h = HeaderMap::new();
    if let Some(v) = header_value(&request_id(state)) {
        h.insert(HeaderName::from_static("cmr-request-id"), v);
    }
    json_response(StatusCode::BAD_REQUEST, h, errors_body(&e.0))
}

fn not_found_response(state: &AppState, what: &str) -> Response {
    bump(&state.counters.not_found);
    json_response(StatusCode::NOT_FOUND, HeaderMap::new(), errors_body(what))
}

fn injected(state: &AppState) -> Response {
    state.record_fault(None);
    let status =
        StatusCode::from_u16(state.faults().status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    json_response(status, HeaderMap::new(), errors_body("injected fault"))
}

fn day_of_ms(ms: i64) -> Option<chrono::NaiveDate> {
    DateTime::<Utc>::from_timestamp_millis(ms).map(|t| t.date_naive())
}

/// `GET /search/granules.json`.
pub(crate) async fn search(
    State(state): State<Arc<AppState>>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    search_as(state, raw, headers, Format::Json).await
}

/// `GET /search/granules.echo10`: the same search, as CMR's ECHO10 results document.
pub(crate) async fn search_echo10(
    State(state): State<Arc<AppState>>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    search_as(state, raw, headers, Format::Echo10).await
}

#[derive(Clone, Copy, PartialEq)]
enum Format {
    Json,
    Echo10,
}

/// Draws the request's random fault; answers an error-status fault at once and waits out
/// a slow one. `Err` is the response to send instead of the real one.
async fn draw_fault(
    state: &AppState,
    faults: &Faults,
    target: Target,
    n: u64,
) -> Result<Option<FaultKind>, Response> {
    if !faults.strikes(target, n) {
        return Ok(None);
    }
    let turn = bump(&state.counters.fault_turns[target as usize]) - 1;
    let Some(kind) = faults.kind(target, turn) else {
        return Ok(None);
    };
    state.record_fault(Some(kind));
    if kind.status().is_some() {
        return Err(inject::status_response(kind, faults));
    }
    if kind == FaultKind::Slow {
        inject::delay(faults).await;
    }
    Ok(Some(kind))
}

async fn search_as(
    state: Arc<AppState>,
    raw: Option<String>,
    headers: HeaderMap,
    format: Format,
) -> Response {
    let started = Instant::now();
    bump(&state.counters.total);
    let n = bump(&state.counters.search_requests);
    let faults = state.faults();
    if faults.search_fails(n) {
        return injected(&state);
    }
    let target = match format {
        Format::Json => Target::SearchJson,
        Format::Echo10 => Target::SearchEcho10,
    };
    let fault = match draw_fault(&state, &faults, target, n).await {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    let raw = raw.unwrap_or_default();
    let query = match parse_query(&raw) {
        Ok(q) => q,
        Err(e) => return bad_request(&state, &e),
    };
    let after = match headers.get("cmr-search-after") {
        None => None,
        Some(v) => match v
            .to_str()
            .map_err(|_| BadRequest("The search-after value is not ASCII.".into()))
            .and_then(parse_search_after)
        {
            Ok(k) => Some(k),
            Err(e) => return bad_request(&state, &e),
        },
    };

    // Granules can end up to a minute after they begin: look one day back.
    let (lo, hi) = query.time_span();
    let from = lo.and_then(day_of_ms).map(|d| d - Duration::days(1));
    let to = hi.and_then(day_of_ms);
    let days: Vec<_> = query
        .collections
        .iter()
        .filter_map(|id| Collection::from_concept_id(id))
        .flat_map(|c| state.store.days(c, from, to))
        .collect();
    let mut hits: Vec<&Granule> = if query.other_provider {
        Vec::new()
    } else {
        days.iter()
            .flat_map(|d| d.granules.iter())
            .filter(|g| query.matches(g))
            .collect()
    };
    hits.sort_by_key(|g| g.key());
    let bounds = page_bounds(&hits, after, query.page_size);
    let mut page: Vec<&Granule> = hits[bounds.clone()].to_vec();
    let timed_out = fault == Some(FaultKind::TimedOut);
    if timed_out {
        page.truncate(page.len() / 2);
    }
    if fault == Some(FaultKind::DuplicateEntry) {
        // The previous page's last granule again (or, on the first page, its first).
        let again = if bounds.start > 0 {
            Some(hits[bounds.start - 1])
        } else {
            page.first().copied()
        };
        page.splice(0..0, again);
    }

    let (body, content_type) = match format {
        Format::Json => (
            json_page(&state, &raw, &page, fault == Some(FaultKind::NoStacLink)),
            JSON_UTF8,
        ),
        Format::Echo10 => {
            let stripped: Vec<hls_flow::source::hls::GranuleMeta> =
                if faults.echo10_without_cloud_cover {
                    page.iter()
                        .map(|g| hls_flow::source::hls::GranuleMeta {
                            cloud_cover: None,
                            ..g.meta.clone()
                        })
                        .collect()
                } else {
                    Vec::new()
                };
            let rendered: Vec<String> =
                stripped.iter().map(crate::echo10::render_granule).collect();
            let records: Vec<crate::echo10::PageRecord<'_>> = page
                .iter()
                .enumerate()
                .map(|(i, g)| match (stripped.get(i), rendered.get(i)) {
                    (Some(meta), Some(xml)) => crate::echo10::PageRecord {
                        meta,
                        revision_id: g.revision_id,
                        xml,
                    },
                    _ => crate::echo10::PageRecord {
                        meta: &g.meta,
                        revision_id: g.revision_id,
                        xml: g.echo10_record(),
                    },
                })
                .collect();
            let mut xml = crate::echo10::render_page_records(
                hits.len() as u64,
                started.elapsed().as_millis() as u64,
                &records,
            );
            if faults.echo10_broken_record
                && let (Some(a), Some(b)) = (xml.find("<GranuleUR>"), xml.find("</GranuleUR>"))
            {
                xml.replace_range(a..b + "</GranuleUR>".len(), "");
            }
            (xml, "application/echo10+xml;charset=utf-8")
        }
    };
    let mut h = HeaderMap::new();
    let mut put = |name: &'static str, value: &str| {
        if let Some(v) = header_value(value) {
            h.insert(HeaderName::from_static(name), v);
        }
    };
    let reported_hits = hits.len() + usize::from(fault == Some(FaultKind::HitsChanged));
    put("cmr-hits", &reported_hits.to_string());
    put("cmr-took", &started.elapsed().as_millis().to_string());
    put("cmr-request-id", &request_id(&state));
    if let Some(last) = page.last() {
        put("cmr-search-after", &search::search_after_value(last.key()));
    }
    if timed_out {
        put("cmr-timed-out", "true");
    }
    if fault.is_none() {
        match format {
            Format::Json => bump(&state.counters.search_pages),
            Format::Echo10 => bump(&state.counters.echo10_pages),
        };
    }
    inject::body_response(fault, h, content_type, Bytes::from(body))
}

fn json_page(state: &AppState, raw: &str, page: &[&Granule], first_without_link: bool) -> String {
    let mut body = String::with_capacity(256 + page.len() * 14_000);
    body.push_str("{\"feed\":{\"updated\":");
    entry::push_json_str(&mut body, &entry::format_ms(&state.archive.now()));
    body.push_str(",\"id\":");
    let feed_id = if raw.is_empty() {
        format!("{}/search/granules.json", state.base)
    } else {
        format!("{}/search/granules.json?{raw}", state.base)
    };
    entry::push_json_str(&mut body, &feed_id);
    body.push_str(",\"title\":\"ECHO granule metadata\",\"entry\":[");
    for (i, g) in page.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        let at = body.len();
        match &g.entry {
            Some(recorded) => body.push_str(recorded),
            None => entry::render(&mut body, &g.meta, &state.base),
        }
        if i == 0 && first_without_link {
            let entry = body.split_off(at);
            body.push_str(&inject::without_stac_link(&entry));
        }
    }
    body.push_str("]}}");
    body
}

/// `GET /lp-prod-public/{folder}/{id}/{file}`: a granule's `_stac.json`.
pub(crate) async fn item(
    State(state): State<Arc<AppState>>,
    Path((folder, id, file)): Path<(String, String, String)>,
) -> Response {
    bump(&state.counters.total);
    let n = bump(&state.counters.item_requests);
    let faults = state.faults();
    if faults.item_latency_ms > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(faults.item_latency_ms)).await;
    }
    if faults.item_fails(n) {
        return injected(&state);
    }
    let fault = match draw_fault(&state, &faults, Target::Item, n).await {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    if file.strip_suffix("_stac.json") != Some(id.as_str()) {
        return not_found_response(&state, "The specified key does not exist.");
    }
    let Some((day, i)) = state.store.find(&id) else {
        return not_found_response(&state, "The specified key does not exist.");
    };
    let g = &day.granules[i];
    if g.meta.collection.bucket_folder() != folder {
        return not_found_response(&state, "The specified key does not exist.");
    }
    let body = state.edited_item(&id, g.item_body());
    let body = match fault {
        Some(FaultKind::NotStac) => Bytes::from_static(inject::NOT_AN_ITEM.as_bytes()),
        Some(FaultKind::IdMismatch) => {
            Bytes::from(inject::with_other_id(&String::from_utf8_lossy(&body)))
        }
        None => {
            bump(&state.counters.item_fetches);
            body
        }
        _ => body,
    };
    inject::body_response(fault, HeaderMap::new(), "application/json", body)
}

/// `GET /search/deleted-granules.json`: the granules deleted at or after `revision_date`.
pub(crate) async fn deleted_granules(
    State(state): State<Arc<AppState>>,
    RawQuery(raw): RawQuery,
) -> Response {
    bump(&state.counters.total);
    let n = bump(&state.counters.deleted_requests);
    let faults = state.faults();
    if faults.deleted_fails(n) {
        return injected(&state);
    }
    let fault = match draw_fault(&state, &faults, Target::DeletedGranules, n).await {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    let query = match archive::parse_deleted_query(&raw.unwrap_or_default(), state.archive.now()) {
        Ok(q) => q,
        Err(e) => return bad_request(&state, &e),
    };
    let found = match query.collection {
        _ if query.other_provider => Vec::new(),
        Some(None) => Vec::new(),
        Some(Some(c)) => state.archive.deleted_since(query.since, Some(c)),
        None => state.archive.deleted_since(query.since, None),
    };
    let mut h = HeaderMap::new();
    for (name, value) in [
        ("cmr-hits", found.len().to_string()),
        ("cmr-request-id", request_id(&state)),
    ] {
        if let Some(v) = header_value(&value) {
            h.insert(HeaderName::from_static(name), v);
        }
    }
    if fault.is_none() {
        bump(&state.counters.deleted_lists);
    }
    let body = Bytes::from(archive::deleted_body(&found));
    inject::body_response(fault, h, JSON_UTF8, body)
}

/// `GET /search/deleted-granules.xml`: refused, as CMR does.
pub(crate) async fn deleted_granules_xml(State(state): State<Arc<AppState>>) -> Response {
    bump(&state.counters.total);
    bad_request(
        &state,
        &BadRequest(
            "Result format [xml] is not supported by deleted granules search. The only format that is supported is json"
                .into(),
        ),
    )
}

/// `PUT /_emulator/changes`: applies the JSON [`ChangeSet`](crate::ChangeSet) body and
/// answers what changed ([`ChangeReport`](crate::ChangeReport)); 400 with CMR's error body
/// for a change set that cannot be applied (nothing of it is).
pub(crate) async fn put_changes(State(state): State<Arc<AppState>>, body: String) -> Response {
    let set = match serde_json::from_str::<crate::ChangeSet>(&body) {
        Ok(s) => s,
        Err(e) => {
            return json_response(
                StatusCode::BAD_REQUEST,
                HeaderMap::new(),
                errors_body(&e.to_string()),
            );
        }
    };
    match state.archive.apply(&state.store, &set) {
        Ok(report) => json_response(
            StatusCode::OK,
            HeaderMap::new(),
            serde_json::to_string(&report).unwrap_or_default(),
        ),
        Err(e) => json_response(
            StatusCode::BAD_REQUEST,
            HeaderMap::new(),
            errors_body(&e.to_string()),
        ),
    }
}

/// `GET /_emulator/changes`: the archive's clock, `{"now": "…"}`.
pub(crate) async fn get_clock(State(state): State<Arc<AppState>>) -> Response {
    let body = serde_json::json!({ "now": state.archive.now() }).to_string();
    json_response(StatusCode::OK, HeaderMap::new(), body)
}

/// `GET /_emulator/counts` (not counted itself).
pub(crate) async fn counts(State(state): State<Arc<AppState>>) -> Response {
    let body = serde_json::to_string(&state.counters.snapshot()).unwrap_or_default();
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// `GET /_emulator/faults`: the faults in force, as JSON.
pub(crate) async fn get_faults(State(state): State<Arc<AppState>>) -> Response {
    let body = serde_json::to_string(&state.faults()).unwrap_or_default();
    json_response(StatusCode::OK, HeaderMap::new(), body)
}

/// `PUT /_emulator/faults`: replaces the faults in force with the JSON body (fields left
/// out take their defaults; `{}` turns every fault off).
pub(crate) async fn put_faults(State(state): State<Arc<AppState>>, body: String) -> Response {
    let faults = serde_json::from_str::<Faults>(&body)
        .map_err(|e| e.to_string())
        .and_then(|f| f.validate().map(|()| f));
    match faults {
        Ok(f) => {
            let body = serde_json::to_string(&f).unwrap_or_default();
            state.set_faults(f);
            json_response(StatusCode::OK, HeaderMap::new(), body)
        }
        Err(e) => json_response(StatusCode::BAD_REQUEST, HeaderMap::new(), errors_body(&e)),
    }
}

/// Anything else: 404.
pub(crate) async fn fallback(State(state): State<Arc<AppState>>) -> Response {
    bump(&state.counters.total);
    not_found_response(&state, "Not found")
}
