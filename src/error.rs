//! The one error type of the library: every variant says what it concerns (URL, day, path).

use crate::collection::{Collection, UnknownCollection};
use chrono::NaiveDate;
use std::time::Duration;

/// Result with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in hls-flow.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A date, month or range on the command line or in the API is not valid.
    #[error("invalid date {input:?}: {reason}")]
    InvalidDate {
        /// What was given.
        input: String,
        /// Why it is not valid.
        reason: String,
    },
    /// A range whose start comes after its end.
    #[error("invalid date range: start {start} is after end {end}")]
    ReversedRange {
        /// The start given.
        start: NaiveDate,
        /// The end given.
        end: NaiveDate,
    },
    /// A bounding box that is not `W,S,E,N` with valid coordinates.
    #[error("invalid bounding box {input:?}: {reason}")]
    InvalidBbox {
        /// What was given.
        input: String,
        /// Why it is not valid.
        reason: String,
    },
    /// A collection name that is not HLSL30 or HLSS30.
    #[error(transparent)]
    UnknownCollection(#[from] UnknownCollection),
    /// An output location that cannot be used.
    #[error("output {output:?} cannot be used: {problem}")]
    InvalidOutput {
        /// The output given.
        output: String,
        /// Why not.
        #[source]
        problem: OutputProblem,
    },
    /// A request could not be sent or its answer not read (connection refused, reset, timeout).
    #[error("request to {url} failed: {}", one_line(.source))]
    Http {
        /// The URL requested.
        url: String,
        /// The HTTP client's error (its causes say what happened).
        #[source]
        source: reqwest::Error,
    },
    /// The HTTP client could not be built (TLS setup, bad settings).
    #[error("cannot build the HTTP client: {}", one_line(.source))]
    HttpClient {
        /// The HTTP client's error.
        #[source]
        source: reqwest::Error,
    },
    /// The limit on concurrent requests was closed while a request waited for it.
    #[error("request to {url} abandoned: {source}")]
    RequestsClosed {
        /// The URL that was to be requested.
        url: String,
        /// The semaphore's error.
        #[source]
        source: tokio::sync::AcquireError,
    },
    /// A server answered with an error status.
    #[error("{url} answered HTTP {status}: {body}")]
    Status {
        /// The URL requested.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// The start of the response body.
        body: String,
        /// The server's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
    },
    /// CMR flagged its answer with `CMR-Timed-Out: true`: partial results, never complete.
    #[error("CMR timed out on {url} (CMR-Timed-Out: true): its partial results were discarded")]
    CmrTimedOut {
        /// The search URL.
        url: String,
    },
    /// A CMR page that is not what CMR sends.
    #[error("malformed CMR response from {url}: {problem}")]
    CmrMalformed {
        /// The search URL.
        url: String,
        /// What is wrong with it.
        #[source]
        problem: CmrProblem,
    },
    /// `CMR-Hits` changed between the pages of one search: the listing may be incomplete.
    #[error("CMR-Hits changed from {before} to {after} while paging {url}")]
    HitsChanged {
        /// The search URL.
        url: String,
        /// Hits on the first page.
        before: u64,
        /// Hits on a later page.
        after: u64,
    },
    /// A search's pages, followed to the end, listed another number of distinct granules
    /// than its `CMR-Hits`.
    #[error("CMR reported {hits} hits but its pages listed {listed} distinct granules for {url}")]
    ListingIncomplete {
        /// The search URL.
        url: String,
        /// `CMR-Hits`.
        hits: u64,
        /// Distinct granules on the pages.
        listed: u64,
    },
    /// A fetched `_stac.json` that is not the item it should be.
    #[error("item {url}: {problem}")]
    BadItem {
        /// The item URL.
        url: String,
        /// What is wrong with it.
        #[source]
        problem: ItemProblem,
    },
    /// A granule listed by CMR that could not be turned into an item.
    #[error("granule {id}: {problem}")]
    Granule {
        /// Granule id (title).
        id: String,
        /// What went wrong.
        #[source]
        problem: GranuleProblem,
    },
    /// A day (of one collection) that did not end with every listed granule written.
    #[error(
        "{collection} {day}: {failed} of {listed} granules could not be written; first: {first}"
    )]
    IncompleteDay {
        /// The collection.
        collection: Collection,
        /// The day.
        day: NaiveDate,
        /// Granules CMR listed for the day.
        listed: u64,
        /// Granules that failed.
        failed: u64,
        /// The first failure, `id: reason`.
        first: String,
        /// Every failed granule with its reason.
        missing: Vec<(String, String)>,
    },
    /// Writing a file failed.
    #[error("writing {path}: {source}")]
    Write {
        /// The file being written.
        path: String,
        /// What went wrong.
        #[source]
        source: WriteError,
    },
    /// A file's writer thread ended without finishing the file or saying why.
    #[error("writing {path}: the writer stopped")]
    WriterStopped {
        /// The file being written.
        path: String,
    },
    /// A background task of the write path panicked or was cancelled.
    #[error("{task}: {source}")]
    Join {
        /// What the task was doing, and for which file or day.
        task: String,
        /// The runtime's error.
        #[source]
        source: tokio::task::JoinError,
    },
    /// An object store operation that failed.
    #[error("object store, {path}: {source}")]
    Store {
        /// The object path.
        path: String,
        /// The store's error.
        #[source]
        source: object_store::Error,
    },
    /// A local file operation that failed.
    #[error("{path}: {source}")]
    Io {
        /// The local path.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Reading a parquet file back failed.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// What went wrong.
        #[source]
        source: ReadError,
    },
    /// The state file cannot be used: not SQLite, another schema version, damaged.
    #[error("state file {path}: {reason}")]
    State {
        /// The state file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// Another live process holds the state file.
    #[error("state file {path} is in use by a live run{}; wait for it to end or use another --state", pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    Locked {
        /// The state file.
        path: String,
        /// The process holding it, if known.
        pid: Option<u32>,
    },
    /// A workflow file that cannot be used.
    #[error("workflow {path}: {problem}")]
    Workflow {
        /// The workflow file.
        path: String,
        /// What is wrong, with the key and line.
        #[source]
        problem: WorkflowProblem,
    },
    /// A task that exceeded its time limit.
    #[error("task {task} timed out after {seconds} s")]
    TaskTimeout {
        /// The task key.
        task: String,
        /// The limit.
        seconds: u64,
    },
    /// A monthly partition that exists already (repartitioning without overwrite).
    #[error("{path} exists already (use --overwrite to replace it)")]
    PartitionExists {
        /// The partition file.
        path: String,
    },
    /// The same item id in two daily files (or twice in one) of a month.
    #[error("item {id} is in the month's daily files twice: in {first} and in {second}")]
    DuplicateItem {
        /// The item id.
        id: String,
        /// The file it was first seen in.
        first: String,
        /// The file it was seen in again.
        second: String,
    },
    /// A daily file whose schema cannot be merged with the others of its month.
    #[error("{path}: column {column:?} cannot be merged with the other daily files: {reason}")]
    SchemaConflict {
        /// The daily file.
        path: String,
        /// The column (`assets.B01.href`), empty if not about one column.
        column: String,
        /// What differs.
        reason: String,
    },
    /// Repartitioning a month failed for another reason.
    #[error("repartitioning into {partition}: {reason}")]
    Repartition {
        /// The partition being written.
        partition: String,
        /// What went wrong.
        reason: String,
    },
    /// A task of the engine panicked or was cancelled.
    #[error("task {task} ended abnormally")]
    TaskJoin {
        /// The task key.
        task: String,
        /// What the runtime says.
        #[source]
        source: tokio::task::JoinError,
    },
    /// A move of a task that its state does not allow (another actor moved it first).
    #[error(transparent)]
    IllegalTransition(#[from] crate::engine::task::IllegalTransition),
    /// A report could not be written as JSON.
    #[error("cannot write {what} as JSON")]
    Json {
        /// What was written.
        what: &'static str,
        /// serde_json's error.
        #[source]
        source: serde_json::Error,
    },
}

/// Why writing a file failed (the source of [`Error::Write`]).
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The temporary file of the output could not be made or written.
    #[error("temporary file: {0}")]
    TempFile(#[source] std::io::Error),
    /// The spill of the fetched items could not be written or read back.
    #[error("spill file: {0}")]
    Spill(#[source] std::io::Error),
    /// An item's JSON that does not parse as a STAC item.
    #[error("not a STAC item: {0}")]
    NotAnItem(#[source] serde_json::Error),
    /// The `stac` crate's writer failed.
    #[error("{0}")]
    Stac(#[source] stac::Error),
    /// The fixed-schema writer failed.
    #[error("{0}")]
    Hls(#[source] crate::write::hls_arrow::HlsArrowError),
    /// The generic writer failed.
    #[error("{0}")]
    Generic(#[source] crate::write::stac_arrow::GenericError),
    /// An item with a field the first batch of the `stac` writer did not have.
    #[error("item {id} has field {field:?} that earlier items of the file lack")]
    LateField {
        /// The item.
        id: String,
        /// The field, `properties.…` or `assets.…`.
        field: String,
    },
    /// Fewer or more items written than granules listed.
    #[error("{written} items written but {listed} granules listed")]
    Count {
        /// Items written.
        written: u64,
        /// Granules listed.
        listed: u64,
    },
    /// A finished file whose row count is not the number of items written.
    #[error("{rows} rows in the file, {written} items written")]
    Rows {
        /// Rows in the file.
        rows: u64,
        /// Items written.
        written: u64,
    },
}

/// Why reading a parquet file failed (the source of [`Error::Read`]).
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file is not there.
    #[error("not found")]
    NotFound,
    /// Fewer bytes than a parquet file has.
    #[error("too small to be a parquet file")]
    TooSmall,
    /// No `PAR1` at the end.
    #[error("no parquet footer (truncated or not parquet)")]
    NoFooter,
    /// A footer length beyond the file.
    #[error("footer length exceeds the file")]
    FooterTooLong,
    /// The parquet reader failed.
    #[error("{0}")]
    Parquet(#[source] parquet::errors::ParquetError),
    /// Decoding a record batch failed.
    #[error("{0}")]
    Arrow(#[source] arrow_schema::ArrowError),
    /// The `stac` crate's reader failed.
    #[error("{0}")]
    Stac(#[source] stac::Error),
    /// `geo` or `stac-geoparquet` metadata that is missing, not JSON, or cannot be merged.
    #[error("{0}")]
    Metadata(String),
    /// The `id`, `geometry` or `bbox` column cannot be read as the repartition needs.
    #[error("{0}")]
    Columns(String),
    /// A file whose rows are not as many as its footer says.
    #[error("{read} rows read, the footer says {footer}")]
    RowCount {
        /// Rows read.
        read: u64,
        /// Rows in the footer.
        footer: u64,
    },
}

/// What is wrong with a CMR answer ([`Error::CmrMalformed`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CmrProblem {
    /// No `CMR-Hits` header.
    #[error("no CMR-Hits header")]
    NoHits,
    /// A `CMR-Hits` header that is not a count.
    #[error("CMR-Hits is not a number: {0}")]
    HitsNotANumber(#[source] std::num::ParseIntError),
    /// A JSON body that is not a granule feed.
    #[error("not a CMR granule feed: {0}")]
    NotAFeed(#[source] serde_json::Error),
    /// An ECHO10 page that cannot be read.
    #[error("{0}")]
    Echo10(#[source] crate::source::echo10::Echo10Error),
}

/// What is wrong with a fetched `_stac.json` ([`Error::BadItem`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ItemProblem {
    /// Not JSON at all (most likely cut short).
    #[error("invalid JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// JSON that is not a STAC item.
    #[error("not a STAC item: {0}")]
    NotStac(#[source] serde_json::Error),
    /// No `"type": "Feature"`.
    #[error("not a STAC item (no \"type\": \"Feature\")")]
    NotAFeature,
    /// No `"id"`.
    #[error("not a STAC item: no \"id\"")]
    NoId,
    /// Another item than the granule's.
    #[error("item id {found:?} differs from the granule's title {expected:?}")]
    OtherId {
        /// The item's id.
        found: String,
        /// The granule's title.
        expected: String,
    },
    /// No geometry.
    #[error("item has no geometry")]
    NoGeometry,
}

/// Why a granule listed by CMR could not be turned into an item ([`Error::Granule`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GranuleProblem {
    /// Its ECHO10 record cannot be read.
    #[error("{0}")]
    Record(#[source] crate::source::echo10::Echo10Error),
    /// A record of another collection than the one searched.
    #[error("record of {found} in a {searched} search")]
    OtherCollection {
        /// The record's collection.
        found: Collection,
        /// The collection searched.
        searched: Collection,
    },
    /// The item built from it does not serialize.
    #[error("built item does not serialize: {0}")]
    Serialize(#[source] serde_json::Error),
    /// The item built from it is not a STAC item.
    #[error("built item is not a STAC item: {0}")]
    NotStac(#[source] serde_json::Error),
}

/// Why an output location cannot be used ([`Error::InvalidOutput`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutputProblem {
    /// Nothing given.
    #[error("empty path")]
    Empty,
    /// Not a URL.
    #[error("{0}")]
    Url(#[source] url::ParseError),
    /// A `file://` URL that is not a local path.
    #[error("not a local file URL")]
    NotLocalFile,
    /// A path that exists and is not a folder.
    #[error("exists and is not a folder")]
    NotAFolder,
    /// The folder cannot be created, written or resolved.
    #[error("{0}")]
    Io(#[source] std::io::Error),
    /// The folder cannot be written.
    #[error("not writable: {0}")]
    NotWritable(#[source] std::io::Error),
    /// The store cannot be configured from the URL, environment and options.
    #[error("{0}")]
    Store(#[source] object_store::Error),
    /// A store option that is not one of the store's configuration keys.
    #[error("unknown option {key:?} for {scheme}:// outputs")]
    UnknownOption {
        /// The option's key.
        key: String,
        /// The URL scheme.
        scheme: String,
    },
    /// A URL scheme without a store.
    #[error(
        "unsupported URL scheme {0:?} (use a local path, file://, memory://, s3://, gs:// or az://)"
    )]
    Scheme(String),
    /// No daily files where some were expected.
    #[error("no daily files (COLLECTION/YYYY/MM/COLLECTION-YYYY-MM-DD.parquet) found")]
    NoDailyFiles,
    /// A local folder to read from that is not there.
    #[error("no such folder")]
    NoSuchFolder,
    /// The STAC API cannot be built over the output.
    #[error("{0}")]
    Api(#[source] stac_server::Error),
}

/// What is wrong with a workflow file ([`Error::Workflow`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkflowProblem {
    /// The file cannot be read.
    #[error("{0}")]
    Read(#[source] std::io::Error),
    /// Not TOML of the workflow's shape (an unknown key, a value of the wrong type).
    #[error("{}{}", .line.map(|l| format!("line {l}: ")).unwrap_or_default(), .source.message().replace('\n', " "))]
    Toml {
        /// The line of the problem, if known.
        line: Option<usize>,
        /// The TOML reader's error.
        #[source]
        source: Box<toml::de::Error>,
    },
    /// A collection name that is not one.
    #[error("collections: {0}")]
    Collections(#[source] UnknownCollection),
    /// A `source` that is not one.
    #[error("source: unknown source {0:?}: expected stac-json or echo10")]
    UnknownSource(String),
    /// A count or time limit that must be positive.
    #[error("{key} must be at least 1")]
    Zero {
        /// The key.
        key: &'static str,
    },
    /// A time in seconds that must be a positive number.
    #[error("{key} must be a positive number")]
    NotPositive {
        /// The key.
        key: &'static str,
    },
}

impl Error {
    /// Whether trying the same operation again may succeed: connection trouble, timeouts,
    /// 429 and 5xx answers, CMR time-outs, and bodies that arrived broken.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Http { .. } | Error::CmrTimedOut { .. } | Error::CmrMalformed { .. } => true,
            Error::Status { status, .. } => *status == 429 || *status == 408 || *status >= 500,
            Error::BadItem { .. } | Error::HitsChanged { .. } | Error::ListingIncomplete { .. } => {
                true
            }
            _ => false,
        }
    }

    /// The delay a server asked for with `Retry-After`.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether this error is the caller's input being wrong (exit code 2) rather than
    /// something failing at run time (exit code 1).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            Error::InvalidDate { .. }
                | Error::ReversedRange { .. }
                | Error::InvalidBbox { .. }
                | Error::UnknownCollection(_)
                | Error::InvalidOutput { .. }
                | Error::State { .. }
                | Error::Workflow { .. }
                | Error::PartitionExists { .. }
        )
    }

    pub(crate) fn io(path: impl std::fmt::Display, source: std::io::Error) -> Error {
        Error::Io {
            path: path.to_string(),
            source,
        }
    }

    pub(crate) fn store(path: impl std::fmt::Display, source: object_store::Error) -> Error {
        Error::Store {
            path: path.to_string(),
            source,
        }
    }
}

/// Formats an error with all its causes on one line.
pub fn one_line(err: &(dyn std::error::Error + 'static)) -> String {
    let mut s = err.to_string();
    let mut cur = err.source();
    while let Some(c) = cur {
        let cs = c.to_string();
        if !s.contains(&cs) {
            s.push_str(": ");
            s.push_str(&cs);
        }
        cur = c.source();
    }
    s.replace('\n', " ")
}
