//! `hls-flow search`: items of the cache matching a filter, as NDJSON, GeoJSON or
//! stac-geoparquet.

use super::ExitStatus;
use super::common::{CliError, CliResult};
use crate::bbox::Bbox;
use crate::collection::Collection;
use crate::error::{Error, WriteError};
use crate::query::{Query, SearchOptions, Searcher};
use serde_json::{Map, Value};
use std::io::Write;

/// Search the cache's partitions (local folder or object store) without CMR.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  hls-flow search --output cache/ --bbox -93.5,44.5,-92.5,45.5 --datetime 2024-05-01/2024-05-07
  hls-flow search --output s3://bucket/hls --ids HLS.S30.T15TWN.2024125T170851.v2.0
  hls-flow search --output cache/ --tile T15TWN --max-cloud-cover 20 --format geojson")]
pub struct Args {
    /// The output the partitions are in: a local folder or an object store URL.
    #[arg(long, value_name = "OUT")]
    output: String,
    /// Collections to search (HLSL30,HLSS30) [default: both].
    #[arg(long, value_name = "LIST")]
    collections: Option<String>,
    /// Footprints intersecting this box: W,S,E,N in degrees (west ≤ east).
    #[arg(long, value_name = "W,S,E,N", allow_hyphen_values = true)]
    bbox: Option<String>,
    /// A datetime or an interval (RFC 3339, or a date): A, A/B, A/.., ../B.
    #[arg(long, value_name = "A/B")]
    datetime: Option<String>,
    /// Item ids, comma-separated.
    #[arg(long, value_name = "ID,…", value_delimiter = ',')]
    ids: Vec<String>,
    /// eo:cloud_cover at most N (percent).
    #[arg(long, value_name = "N")]
    max_cloud_cover: Option<f64>,
    /// The MGRS tile (T15TWN).
    #[arg(long, value_name = "T")]
    tile: Option<String>,
    /// At most N items.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Output format (on stdout).
    #[arg(long, value_enum, default_value_t = Format::Ndjson)]
    format: Format,
    /// Order of the items: datetime (then id). Without it, the cache's order
    /// (collection, month, then spatial).
    #[arg(long, value_enum)]
    sort: Option<Sort>,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One item per line.
    Ndjson,
    /// A FeatureCollection.
    Geojson,
    /// stac-geoparquet (binary: redirect stdout to a file).
    Parquet,
}

/// Sort orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Sort {
    /// By datetime, then id.
    Datetime,
}

/// The query of the arguments.
fn query(args: &Args) -> Result<Query, Error> {
    let mut q = Query::default();
    if let Some(list) = &args.collections {
        q.collections = Collection::parse_list(list)?;
    }
    if let Some(b) = &args.bbox {
        let b: Bbox = b.parse()?;
        q = q.with_bbox([b.west, b.south, b.east, b.north])?;
    }
    if let Some(d) = &args.datetime {
        q = q.with_datetime(&date_or_datetime(d))?;
    }
    q.ids = args.ids.iter().map(|s| s.trim().to_string()).collect();
    q.max_cloud_cover = args.max_cloud_cover;
    q.tile = args.tile.as_ref().map(|t| {
        let t = t.trim().to_ascii_uppercase();
        if t.starts_with('T') {
            t
        } else {
            format!("T{t}")
        }
    });
    Ok(q)
}

/// Dates as intervals: `2024-05-01` is the whole day, `2024-05-01/2024-05-07` up to the end
/// of the 7th.
fn date_or_datetime(s: &str) -> String {
    let one = |part: &str, end: bool| {
        if part.len() == 10 && chrono::NaiveDate::parse_from_str(part, "%Y-%m-%d").is_ok() {
            if end {
                format!("{part}T23:59:59.999999Z")
            } else {
                format!("{part}T00:00:00Z")
            }
        } else {
            part.to_string()
        }
    };
    match s.split_once('/') {
        Some((a, b)) => format!("{}/{}", one(a, false), one(b, true)),
        None if s.len() == 10 => format!("{}/{}", one(s, false), one(s, true)),
        None => s.to_string(),
    }
}

/// Runs the command.
pub async fn run(args: Args) -> CliResult {
    let q = query(&args)?;
    let searcher = Searcher::open(&args.output)?;

    let mut out = std::io::BufWriter::new(std::io::stdout());
    let write_error = |e: std::io::Error| Error::Io {
        path: "stdout".into(),
        source: e,
    };
    let streaming = args.format == Format::Ndjson && args.sort.is_none();
    let mut kept: Vec<Map<String, Value>> = Vec::new();
    let mut count = 0usize;
    let options = SearchOptions {
        skip: 0,
        // Sorted output needs every match before the first is written.
        limit: if args.sort.is_some() {
            None
        } else {
            args.limit
        },
    };
    let stats = searcher
        .search(&q, options, |item| {
            count += 1;
            if streaming {
                serde_json::to_writer(&mut out, &item)
                    .map_err(std::io::Error::from)
                    .and_then(|()| out.write_all(b"\n"))
                    .map_err(write_error)?;
            } else {
                kept.push(item);
            }
            Ok(())
        })
        .await?;
    tracing::info!(?stats, "search");
    if args.sort == Some(Sort::Datetime) {
        let key = |i: &Map<String, Value>| {
            (
                i.get("properties")
                    .and_then(|p| p.get("datetime"))
                    .and_then(Value::as_str)
                    .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok()),
                i.get("id").and_then(Value::as_str).map(str::to_string),
            )
        };
        kept.sort_by_cached_key(key);
        if let Some(l) = args.limit {
            kept.truncate(l);
        }
    }
    match args.format {
        Format::Ndjson if !streaming => {
            for item in &kept {
                serde_json::to_writer(&mut out, item)
                    .map_err(std::io::Error::from)
                    .and_then(|()| out.write_all(b"\n"))
                    .map_err(write_error)?;
            }
        }
        Format::Ndjson => {}
        Format::Geojson => {
            let fc = serde_json::json!({"type": "FeatureCollection", "features": kept});
            serde_json::to_writer(&mut out, &fc)
                .map_err(std::io::Error::from)
                .and_then(|()| out.write_all(b"\n"))
                .map_err(write_error)?;
        }
        Format::Parquet => {
            let items = kept
                .into_iter()
                .map(|i| serde_json::from_value::<stac::Item>(Value::Object(i)))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Error::Write {
                    path: "stdout".into(),
                    source: WriteError::NotAnItem(e),
                })?;
            if items.is_empty() {
                return Err(CliError::usage(
                    "no items match: no stac-geoparquet file written",
                ));
            }
            let mut buf = Vec::new();
            stac::geoparquet::into_writer(&mut buf, items).map_err(|e| Error::Write {
                path: "stdout".into(),
                source: WriteError::Stac(e),
            })?;
            out.write_all(&buf).map_err(write_error)?;
        }
    }
    out.flush().map_err(write_error)?;
    eprintln!(
        "{count} items; row groups read: {} of {} in {} of {} partitions",
        stats.row_groups_read, stats.row_groups, stats.partitions_read, stats.partitions
    );
    Ok(ExitStatus::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_become_whole_days() {
        assert_eq!(
            date_or_datetime("2024-05-01/2024-05-07"),
            "2024-05-01T00:00:00Z/2024-05-07T23:59:59.999999Z"
        );
        assert_eq!(
            date_or_datetime("2024-05-01"),
            "2024-05-01T00:00:00Z/2024-05-01T23:59:59.999999Z"
        );
        assert_eq!(date_or_datetime("2024-05-01/.."), "2024-05-01T00:00:00Z/..");
        assert_eq!(
            date_or_datetime("2024-05-01T10:00:00Z"),
            "2024-05-01T10:00:00Z"
        );
    }
}
