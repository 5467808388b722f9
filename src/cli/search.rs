//! `hls-flow search`: items of the cache matching a filter, as NDJSON, GeoJSON or
//! stac-geoparquet.

use super::ExitStatus;
use super::common::{CliError, CliResult};
use crate::bbox::Bbox;
use crate::collection::Collection;
use crate::engine::checkpoint::sqlite::StateStore;
use crate::error::{Error, StateProblem, WriteError};
use crate::query::{Cql2Filter, FOOTER_CACHE_BYTES, Query, SearchOptions, Searcher};
use serde_json::{Map, Value};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::PathBuf;

/// Search the cache's partitions (local folder or object store) without CMR.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  hls-flow search --output cache/ --bbox -93.5,44.5,-92.5,45.5 --datetime 2024-05-01/2024-05-07
  hls-flow search --output s3://bucket/hls --ids HLS.S30.T15TWN.2024125T170851.v2.0
  hls-flow search --output cache/ --tile T15TWN --max-cloud-cover 20 --format geojson
  hls-flow search --state state/hls.sqlite --filter \"eo:cloud_cover < 20 and platform = 'sentinel-2b'\"")]
pub struct Args {
    #[command(flatten)]
    source: Source,
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
    /// A CQL2 filter, as text (`eo:cloud_cover < 20 and platform = 'sentinel-2b'`) or JSON
    /// (starting with `{`), on id, collection, geometry, datetime and the item properties.
    #[arg(long, value_name = "CQL2")]
    filter: Option<String>,
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

/// Where the partitions are: `--output OUT`, or `--state S` (the output a run's state file
/// records). Exactly one of them.
#[derive(Debug, Clone, clap::Args)]
pub struct Source {
    /// The output the partitions are in: a local folder or an object store URL.
    #[arg(long, value_name = "OUT")]
    output: Option<String>,
    /// A run's state file: its output is searched (instead of --output).
    #[arg(long, value_name = "S")]
    state: Option<PathBuf>,
}

impl Source {
    /// The output named (the state's, with `--state`).
    pub fn output(&self) -> Result<String, CliError> {
        match (&self.output, &self.state) {
            (Some(o), None) => Ok(o.clone()),
            (None, Some(s)) => {
                let state = StateStore::open_read_only(s)?;
                state.meta("output")?.ok_or_else(|| {
                    Error::State {
                        path: s.display().to_string(),
                        problem: StateProblem::NoOutput,
                    }
                    .into()
                })
            }
            (Some(_), Some(_)) => Err(CliError::usage("give --output OUT or --state S, not both")),
            (None, None) => Err(CliError::usage(
                "give --output OUT (the cache's folder or URL) or --state S (a run's state file)",
            )),
        }
    }

    /// A searcher over the output named, keeping up to `footer_cache` bytes of footers.
    pub fn open(&self, footer_cache: usize) -> Result<(Searcher, String), CliError> {
        let output = self.output()?;
        let searcher = Searcher::open(&output)?.with_footer_cache(footer_cache);
        Ok((searcher, output))
    }
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
    if let Some(f) = &args.filter {
        // Last: the bounds it implies narrow those set above.
        q = q.with_filter(Cql2Filter::parse(f)?);
    }
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
    let (searcher, _) = args.source.open(FOOTER_CACHE_BYTES)?;
    let mut printer = Printer::new(std::io::BufWriter::new(std::io::stdout()), args.format);
    let mut sorter = args.sort.map(|_| Sorter::new(args.limit));
    let options = SearchOptions {
        skip: 0,
        // Sorted output needs every match before the first is written (it keeps the
        // `--limit` first ones only, or spills sorted runs to disk).
        limit: if args.sort.is_some() {
            None
        } else {
            args.limit
        },
    };
    let stats = searcher
        .search(&q, options, |item| {
            let line = serde_json::to_vec(&item).map_err(|e| Error::Write {
                path: "stdout".into(),
                source: WriteError::NotAnItem(e),
            })?;
            match sorter.as_mut() {
                Some(sorter) => sorter.push(sort_key(&item), line),
                None => printer.item(&line),
            }
        })
        .await?;
    tracing::info!(?stats, "search");
    if let Some(sorter) = sorter {
        sorter.finish(|line| printer.item(line))?;
    }
    let count = printer.finish()?;
    eprintln!(
        "{count} items; row groups read: {} of {} in {} of {} partitions",
        stats.row_groups_read, stats.row_groups, stats.partitions_read, stats.partitions
    );
    Ok(ExitStatus::Ok)
}

fn stdout_error(source: std::io::Error) -> Error {
    Error::Io {
        path: "stdout".into(),
        source,
    }
}

fn spill_error(source: std::io::Error) -> Error {
    Error::Io {
        path: "a temporary file of the sort".into(),
        source,
    }
}

/// Writes items (as JSON) to stdout as they come: NDJSON lines, or one FeatureCollection
/// written feature by feature. stac-geoparquet is the exception: its schema is that of all
/// the items, so they are kept until the end.
struct Printer<W: Write> {
    out: W,
    format: Format,
    count: usize,
    items: Vec<stac::Item>,
}

/// How a GeoJSON output begins, before its first feature.
const GEOJSON_HEAD: &[u8] = br#"{"type":"FeatureCollection","features":["#;

impl<W: Write + Send> Printer<W> {
    fn new(out: W, format: Format) -> Printer<W> {
        Printer {
            out,
            format,
            count: 0,
            items: Vec::new(),
        }
    }

    fn item(&mut self, json: &[u8]) -> Result<(), Error> {
        self.count += 1;
        match self.format {
            Format::Ndjson => self
                .out
                .write_all(json)
                .and_then(|()| self.out.write_all(b"\n"))
                .map_err(stdout_error),
            Format::Geojson => {
                let head = if self.count == 1 { GEOJSON_HEAD } else { b"," };
                self.out
                    .write_all(head)
                    .and_then(|()| self.out.write_all(json))
                    .map_err(stdout_error)
            }
            Format::Parquet => {
                let item =
                    serde_json::from_slice::<stac::Item>(json).map_err(|e| Error::Write {
                        path: "stdout".into(),
                        source: WriteError::NotAnItem(e),
                    })?;
                self.items.push(item);
                Ok(())
            }
        }
    }

    /// Ends the output; the number of items written.
    fn finish(mut self) -> Result<usize, CliError> {
        match self.format {
            Format::Ndjson => {}
            Format::Geojson => {
                let head = if self.count == 0 { GEOJSON_HEAD } else { b"" };
                self.out
                    .write_all(head)
                    .and_then(|()| self.out.write_all(b"]}\n"))
                    .map_err(stdout_error)?;
            }
            Format::Parquet => {
                if self.items.is_empty() {
                    return Err(CliError::usage(
                        "no items match: no stac-geoparquet file written",
                    ));
                }
                stac::geoparquet::into_writer(&mut self.out, std::mem::take(&mut self.items))
                    .map_err(|e| Error::Write {
                        path: "stdout".into(),
                        source: WriteError::Stac(e),
                    })?;
            }
        }
        self.out.flush().map_err(stdout_error)?;
        Ok(self.count)
    }
}

/// The sort key of an item: its datetime (UTC, microseconds, fixed width: text order is
/// time order; none first), then its id.
fn sort_key(item: &Map<String, Value>) -> String {
    let datetime = item
        .get("properties")
        .and_then(|p| p.get("datetime"))
        .and_then(Value::as_str)
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.to_utc().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
        .unwrap_or_default();
    let id = item.get("id").and_then(Value::as_str).unwrap_or_default();
    format!("{datetime} {id}")
}

/// Bytes of items a sort holds in memory before it writes them to disk as a sorted run.
const SORT_RUN_BYTES: usize = 64 * 1024 * 1024;

/// Sorts items by key in bounded memory: with a limit, only the `limit` first are kept (a
/// heap); without one, sorted runs of [`SORT_RUN_BYTES`] are written to temporary files
/// (`key TAB json` lines) and merged.
struct Sorter {
    limit: Option<usize>,
    seq: u64,
    heap: BinaryHeap<(String, u64, Vec<u8>)>,
    run: Vec<(String, Vec<u8>)>,
    run_bytes: usize,
    runs: Vec<std::fs::File>,
}

impl Sorter {
    fn new(limit: Option<usize>) -> Sorter {
        Sorter {
            limit,
            seq: 0,
            heap: BinaryHeap::new(),
            run: Vec::new(),
            run_bytes: 0,
            runs: Vec::new(),
        }
    }

    fn push(&mut self, key: String, json: Vec<u8>) -> Result<(), Error> {
        if let Some(limit) = self.limit {
            // Ties keep the search's order: the sequence number breaks them.
            self.seq += 1;
            self.heap.push((key, self.seq, json));
            if self.heap.len() > limit {
                self.heap.pop();
            }
            return Ok(());
        }
        self.run_bytes += key.len() + json.len();
        self.run.push((key, json));
        if self.run_bytes >= SORT_RUN_BYTES {
            self.spill()?;
        }
        Ok(())
    }

    fn spill(&mut self) -> Result<(), Error> {
        self.run.sort_by(|a, b| a.0.cmp(&b.0));
        let mut file = tempfile::tempfile().map_err(spill_error)?;
        {
            let mut w = std::io::BufWriter::new(&mut file);
            for (key, json) in self.run.drain(..) {
                w.write_all(key.as_bytes())
                    .and_then(|()| w.write_all(b"\t"))
                    .and_then(|()| w.write_all(&json))
                    .and_then(|()| w.write_all(b"\n"))
                    .map_err(spill_error)?;
            }
            w.flush().map_err(spill_error)?;
        }
        file.seek(SeekFrom::Start(0)).map_err(spill_error)?;
        self.runs.push(file);
        self.run_bytes = 0;
        Ok(())
    }

    /// Calls `each` with every item kept, in key order.
    fn finish(mut self, mut each: impl FnMut(&[u8]) -> Result<(), Error>) -> Result<(), Error> {
        if self.limit.is_some() {
            for (_, _, json) in self.heap.into_sorted_vec() {
                each(&json)?;
            }
            return Ok(());
        }
        if self.runs.is_empty() {
            self.run.sort_by(|a, b| a.0.cmp(&b.0));
            for (_, json) in &self.run {
                each(json)?;
            }
            return Ok(());
        }
        if !self.run.is_empty() {
            self.spill()?;
        }
        let mut readers: Vec<_> = self.runs.into_iter().map(BufReader::new).collect();
        let next = |r: &mut BufReader<std::fs::File>| -> Result<Option<(String, Vec<u8>)>, Error> {
            let mut line = Vec::new();
            if r.read_until(b'\n', &mut line).map_err(spill_error)? == 0 {
                return Ok(None);
            }
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            let tab = line.iter().position(|&b| b == b'\t').unwrap_or(0);
            let json = line.split_off(tab + 1);
            line.truncate(tab);
            Ok(Some((String::from_utf8_lossy(&line).into_owned(), json)))
        };
        // The smallest head of the runs first; ties by run (the earlier run came first).
        let mut heads = BinaryHeap::new();
        for (i, r) in readers.iter_mut().enumerate() {
            if let Some((key, json)) = next(r)? {
                heads.push(Reverse((key, i, json)));
            }
        }
        while let Some(Reverse((_, i, json))) = heads.pop() {
            each(&json)?;
            if let Some((key, json)) = next(&mut readers[i])? {
                heads.push(Reverse((key, i, json)));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_in_runs_on_disk_as_in_memory() {
        let items: Vec<(String, Vec<u8>)> = (0..500u32)
            .map(|i| {
                let key = format!("2024-05-{:02}T00:00:00.000000Z {i:05}", (i * 7919) % 28 + 1);
                (key.clone(), format!("{{\"k\":\"{key}\"}}").into_bytes())
            })
            .collect();
        let want: Vec<Vec<u8>> = {
            let mut v = items.clone();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v.into_iter().map(|(_, j)| j).collect()
        };
        for limit in [None, Some(17)] {
            let mut sorter = Sorter::new(limit);
            for (i, (key, json)) in items.iter().enumerate() {
                sorter.push(key.clone(), json.clone()).unwrap();
                // Small runs: several of them on disk.
                if limit.is_none() && i % 60 == 59 {
                    sorter.spill().unwrap();
                }
            }
            assert!(limit.is_some() || sorter.runs.len() >= 8);
            let mut got = Vec::new();
            sorter
                .finish(|j| {
                    got.push(j.to_vec());
                    Ok(())
                })
                .unwrap();
            let n = limit.unwrap_or(items.len());
            assert_eq!(got, want[..n].to_vec(), "limit {limit:?}");
        }
    }

    #[test]
    fn geojson_is_one_feature_collection() {
        for n in [0usize, 1, 3] {
            let mut buf = Vec::new();
            let mut p = Printer::new(&mut buf, Format::Geojson);
            for i in 0..n {
                p.item(format!("{{\"id\":\"{i}\"}}").as_bytes()).unwrap();
            }
            assert_eq!(p.finish().unwrap(), n);
            let v: Value = serde_json::from_slice(&buf).unwrap();
            assert_eq!(v["type"], "FeatureCollection");
            assert_eq!(v["features"].as_array().unwrap().len(), n);
        }
    }

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
