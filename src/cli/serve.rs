//! `hls-flow serve`: a read-only STAC API over the cache (rustac's stac-server routes, with
//! hls-flow's own backend).

use super::ExitStatus;
use super::common::CliResult;
use crate::error::one_line;
use crate::error::{Error, OutputProblem};
use crate::query::backend::{CacheBackend, query_of};
use crate::query::cql::QUERYABLES;
use crate::query::{FOOTER_CACHE_BYTES, Searcher};
use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header::CONTENT_TYPE};
use axum::middleware::Next;
use axum::response::Response;
use stac::api::{GetItems, GetSearch, Items, Search};
use std::net::SocketAddr;

/// Serve the cache as a STAC API (landing page, conformance, collections, items, item search
/// by GET and POST), read-only, until interrupted.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  hls-flow serve --output cache/
  hls-flow serve --output s3://bucket/hls --bind 0.0.0.0:8080 --footer-cache-mb 4096
  hls-flow serve --state state/hls.sqlite")]
pub struct Args {
    #[command(flatten)]
    source: super::search::Source,
    /// Address to listen on (port 0: any free port; the address is printed).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    bind: SocketAddr,
    /// Megabytes of partition footers kept between searches (a month of 300,000 items has
    /// ~14 MB: its page index and id bloom filters); the least recently used go first
    #[arg(long, value_name = "MB", default_value_t = FOOTER_CACHE_BYTES >> 20)]
    footer_cache_mb: usize,
}

/// Runs the command.
pub async fn run(args: Args) -> CliResult {
    let footer_cache = args.footer_cache_mb.saturating_mul(1 << 20);
    let (searcher, output) = args.source.open(footer_cache)?;
    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .map_err(|source| Error::Io {
            path: format!("listening on {}", args.bind),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| Error::Io {
        path: format!("listening on {}", args.bind),
        source,
    })?;
    let router = router(searcher, &format!("http://{addr}"))?;
    println!("serving {output} at http://{addr}/");
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|source| Error::Io {
            path: format!("serving on {addr}"),
            source,
        })?;
    Ok(ExitStatus::Ok)
}

/// The STAC API routes over `searcher`'s output, with the API's root at `root_url`.
pub fn router(searcher: Searcher, root_url: &str) -> Result<axum::Router, Error> {
    let api = stac_server::Api::new(CacheBackend::new(searcher), root_url)
        .map_err(|e| Error::InvalidOutput {
            output: root_url.to_string(),
            problem: OutputProblem::Api(e),
        })?
        .id("hls-flow")
        .description("The HLS v2.0 STAC items of an hls-flow cache");
    Ok(stac_server::routes::from_api(api.clone())
        .layer(axum::middleware::from_fn_with_state(api, get_search))
        .layer(axum::middleware::from_fn(check_input))
        .layer(axum::middleware::map_response(error_body)))
}

/// Largest POST body read.
const MAX_BODY: usize = 1024 * 1024;

/// Searches the cache cannot answer (a bbox out of range, a filter on a property it does
/// not have) are bad requests: a 400 with a STAC error body before the search is run, not
/// the 500 the backend's error would be. Also answers `/queryables` with the properties a
/// filter may use.
async fn check_input(request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    if request.method() == Method::GET && path == "/queryables" {
        return queryables();
    }
    if request.method() == Method::POST && path == "/search" {
        let (parts, body) = request.into_parts();
        let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
            Ok(b) => b,
            Err(e) => return stac_error(StatusCode::BAD_REQUEST, "BadRequest", &e.to_string()),
        };
        // A body that is not a search: stac-server says so.
        if let Ok(search) = serde_json::from_slice::<Search>(&bytes)
            && let Err(e) = query_of(&search)
        {
            return stac_error(StatusCode::BAD_REQUEST, "BadRequest", &one_line(&e));
        }
        return next
            .run(Request::from_parts(parts, Body::from(bytes)))
            .await;
    }
    if request.method() == Method::GET
        && path.starts_with("/collections/")
        && path.ends_with("/items")
        && let Ok(Query(items)) = Query::<GetItems>::try_from_uri(request.uri())
        && let Ok(items) = Items::try_from(items)
    {
        let search = Search {
            items,
            ..Search::default()
        };
        if let Err(e) = query_of(&search) {
            return stac_error(StatusCode::BAD_REQUEST, "BadRequest", &one_line(&e));
        }
    }
    next.run(request).await
}

/// The JSON schema of the properties a filter may use.
fn queryables() -> Response {
    let properties: serde_json::Map<String, serde_json::Value> = QUERYABLES
        .iter()
        .map(|name| {
            let schema = match *name {
                "eo:cloud_cover" | "view:sun_azimuth" | "view:azimuth" => {
                    serde_json::json!({"type": "number"})
                }
                "proj:epsg" => serde_json::json!({"type": "integer"}),
                "geometry" => {
                    serde_json::json!({"$ref": "https://geojson.org/schema/Geometry.json"})
                }
                "datetime" | "start_datetime" | "end_datetime" => {
                    serde_json::json!({"type": "string", "format": "date-time"})
                }
                _ => serde_json::json!({"type": "string"}),
            };
            (name.to_string(), schema)
        })
        .collect();
    let body = serde_json::json!({
        "$schema": "https://json-schema.org/draft/2019-09/schema",
        "type": "object",
        "title": "Queryables of the hls-flow cache",
        "properties": properties,
        "additionalProperties": false,
    });
    Response::builder()
        .header(CONTENT_TYPE, "application/schema+json")
        .body(Body::from(body.to_string()))
        .unwrap_or_default()
}

type CacheApi = stac_server::Api<CacheBackend>;

/// GET `/search`, answered here: stac-server builds the `next` link of a GET search by
/// URL-encoding the search, which fails ("unsupported value", a 500) as soon as it holds
/// `collections` or `ids` (lists). The search is run as a POST one, and its links are
/// turned into GET links with the search in its GET form (comma-separated lists).
async fn get_search(State(api): State<CacheApi>, request: Request, next: Next) -> Response {
    if request.method() != Method::GET || request.uri().path() != "/search" {
        return next.run(request).await;
    }
    let search = Query::<GetSearch>::try_from_uri(request.uri())
        .map_err(|e| e.body_text())
        .and_then(|q| {
            Search::try_from(q.0)
                .and_then(Search::valid)
                .map_err(|e| e.to_string())
        });
    let search = match search {
        Ok(s) => s,
        Err(e) => return stac_error(StatusCode::BAD_REQUEST, "BadRequest", &e),
    };
    if let Err(e) = query_of(&search) {
        return stac_error(StatusCode::BAD_REQUEST, "BadRequest", &one_line(&e));
    }
    let mut page = match api.search(search, Method::POST).await {
        Ok(page) => page,
        Err(e) => {
            return stac_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
                &e.to_string(),
            );
        }
    };
    for link in page.links.iter_mut() {
        let Some(body) = link.body.take() else {
            continue;
        };
        let query = serde_json::from_value::<Search>(serde_json::Value::Object(body))
            .map_err(|e| e.to_string())
            .and_then(|s| GetSearch::try_from(s).map_err(|e| e.to_string()))
            .and_then(|g| serde_urlencoded::to_string(g).map_err(|e| e.to_string()));
        match query {
            Ok(query) => {
                let base = link.href.split('?').next().unwrap_or_default().to_string();
                link.href = format!("{base}?{query}");
                link.method = Some("GET".into());
            }
            Err(e) => {
                return stac_error(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError", &e);
            }
        }
    }
    match serde_json::to_vec(&page) {
        Ok(body) => Response::builder()
            .header(CONTENT_TYPE, "application/geo+json")
            .body(Body::from(body))
            .unwrap_or_default(),
        Err(e) => stac_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            &e.to_string(),
        ),
    }
}

fn stac_error(status: StatusCode, code: &str, description: &str) -> Response {
    let body = serde_json::json!({"code": code, "description": description});
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// stac-server answers errors as plain text; the STAC API wants `{"code", "description"}`.
async fn error_body(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let code = match status {
        StatusCode::BAD_REQUEST => "BadRequest",
        StatusCode::NOT_FOUND => "NotFound",
        StatusCode::METHOD_NOT_ALLOWED => "MethodNotAllowed",
        StatusCode::UNSUPPORTED_MEDIA_TYPE | StatusCode::UNPROCESSABLE_ENTITY => "BadRequest",
        _ if status.is_client_error() => "BadRequest",
        _ => "InternalServerError",
    };
    // A body the client sent that is not a search is a bad request, whatever axum says.
    if status == StatusCode::UNPROCESSABLE_ENTITY || status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
        parts.status = StatusCode::BAD_REQUEST;
    }
    let body = serde_json::json!({"code": code, "description": text});
    parts
        .headers
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body.to_string()))
}
