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
    #[error("output {output:?} cannot be used: {reason}")]
    InvalidOutput {
        /// The output given.
        output: String,
        /// Why not.
        reason: String,
    },
    /// A request could not be sent or its answer not read (connection refused, reset, timeout).
    #[error("request to {url} failed: {reason}")]
    Http {
        /// The URL requested.
        url: String,
        /// What happened, with its causes.
        reason: String,
        /// Whether it was a timeout.
        timeout: bool,
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
    #[error("malformed CMR response from {url}: {reason}")]
    CmrMalformed {
        /// The search URL.
        url: String,
        /// What is wrong with it.
        reason: String,
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
    #[error("item {url}: {reason}")]
    BadItem {
        /// The item URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A granule listed by CMR that could not be turned into an item.
    #[error("granule {id}: {reason}")]
    Granule {
        /// Granule id (title).
        id: String,
        /// What went wrong.
        reason: String,
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
    /// Items that do not fit the schema of the file being written.
    #[error("writing {path}: {reason}")]
    Write {
        /// The file being written.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// An item outside the fixed HLS shape of the fast writer (the harvest then writes the
    /// file again with the `stac` crate's generic writer).
    #[error("writing {path}: {reason}")]
    ShapeMismatch {
        /// The file being written.
        path: String,
        /// What does not fit.
        reason: String,
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
    #[error("reading {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
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
    #[error("workflow {path}: {reason}")]
    Workflow {
        /// The workflow file.
        path: String,
        /// What is wrong, with the key and line.
        reason: String,
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
    /// A background task ended abnormally.
    #[error("internal task failed: {0}")]
    Task(String),
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
