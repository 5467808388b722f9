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
    #[error("invalid date {input:?}: {problem}")]
    InvalidDate {
        /// What was given.
        input: String,
        /// Why it is not valid.
        #[source]
        problem: DateProblem,
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
    #[error("invalid bounding box {input:?}: {problem}")]
    InvalidBbox {
        /// What was given.
        input: String,
        /// Why it is not valid.
        #[source]
        problem: BboxProblem,
    },
    /// A CQL2 filter (`search --filter`, the API's `filter`) that cannot be used.
    #[error("invalid filter {input:?}: {problem}")]
    InvalidFilter {
        /// The filter given (as CQL2 text or JSON).
        input: String,
        /// Why it cannot be used.
        #[source]
        problem: FilterProblem,
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
    #[error("state file {path}: {problem}")]
    State {
        /// The state file.
        path: String,
        /// What is wrong.
        #[source]
        problem: StateProblem,
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
    /// The PostgreSQL state cannot be used: cannot connect, a statement failed, a newer
    /// schema.
    #[error("state {url}: {problem}")]
    Postgres {
        /// The state's URL, without its password.
        url: String,
        /// What is wrong.
        #[source]
        problem: crate::engine::checkpoint::postgres::PgProblem,
    },
    /// An attempt whose lease was lost (its worker hung past it, another attempt took
    /// over): it publishes nothing and records nothing.
    #[error(
        "task {task}: attempt {attempt} lost its lease (the task is at attempt {current}); nothing published"
    )]
    LeaseLost {
        /// The task key.
        task: String,
        /// The attempt that lost it.
        attempt: u32,
        /// The task's attempt now.
        current: u32,
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
    #[error("{path}: column {column:?} cannot be merged with the other daily files: {problem}")]
    SchemaConflict {
        /// The daily file.
        path: String,
        /// The column (`assets.B01.href`), empty if not about one column.
        column: String,
        /// What differs.
        #[source]
        problem: SchemaProblem,
    },
    /// Repartitioning a month failed for another reason.
    #[error("repartitioning into {partition}: {problem}")]
    Repartition {
        /// The partition being written.
        partition: String,
        /// What went wrong.
        #[source]
        problem: RepartitionProblem,
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
    Metadata(#[source] MetadataProblem),
    /// The `id` or `bbox` column cannot be read as the repartition needs.
    #[error("{0}")]
    Columns(#[source] ColumnProblem),
    /// A file whose rows are not as many as its footer says.
    #[error("{read} rows read, the footer says {footer}")]
    RowCount {
        /// Rows read.
        read: u64,
        /// Rows in the footer.
        footer: u64,
    },
}

/// Why a date, month or range is not valid ([`Error::InvalidDate`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DateProblem {
    /// Neither one nor two arguments.
    #[error("expected YYYYMM, YYYYMMDD, or two YYYYMMDD")]
    Arguments,
    /// Not eight digits (dashes aside).
    #[error("expected YYYYMMDD")]
    NotADay,
    /// Not six digits (dashes aside).
    #[error("expected YYYYMM")]
    NotAMonth,
    /// A year that does not parse.
    #[error("bad year")]
    Year(#[source] std::num::ParseIntError),
    /// A month that does not parse.
    #[error("bad month")]
    Month(#[source] std::num::ParseIntError),
    /// A day that does not parse.
    #[error("bad day")]
    Day(#[source] std::num::ParseIntError),
    /// A month number outside 1–12.
    #[error("month must be 01 to 12")]
    MonthOutOfRange,
    /// A day the month does not have (`20240230`).
    #[error("no such day in that month")]
    NoSuchDay,
    /// A month chrono cannot represent.
    #[error("no such month")]
    NoSuchMonth,
    /// One end of a STAC `datetime` that is not RFC 3339.
    #[error("{part:?} is not an RFC 3339 datetime: {source}")]
    NotRfc3339 {
        /// The end as given.
        part: String,
        /// chrono's error.
        #[source]
        source: chrono::ParseError,
    },
    /// A STAC `datetime` with more than one `/`.
    #[error("more than one '/'")]
    TooManySlashes,
    /// A STAC `datetime` interval open at both ends (`../..`).
    #[error("an open interval needs one end")]
    OpenAtBothEnds,
    /// A STAC `datetime` interval whose start is after its end.
    #[error("start is after end")]
    StartAfterEnd,
    /// A time window whose start is not before its end.
    #[error("the temporal range is empty or reversed")]
    EmptyWindow,
}

/// Why a bounding box is not valid ([`Error::InvalidBbox`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BboxProblem {
    /// Not four comma-separated values.
    #[error("expected four numbers W,S,E,N")]
    NotFour,
    /// A value that is not a number.
    #[error("{text:?} is not a number")]
    NotANumber {
        /// The value as given.
        text: String,
        /// The float parser's error.
        #[source]
        source: std::num::ParseFloatError,
    },
    /// NaN or infinity.
    #[error("coordinates must be finite numbers")]
    NotFinite,
    /// A longitude outside -180..180.
    #[error("longitudes must be within -180..180")]
    Longitude,
    /// A latitude outside -90..90.
    #[error("latitudes must be within -90..90")]
    Latitude,
    /// West greater than east (a box across the antimeridian).
    #[error("west is greater than east")]
    WestOfEast,
    /// South greater than north.
    #[error("south is greater than north")]
    SouthOfNorth,
    /// NaN or infinity in a STAC API search's bbox.
    #[error("not finite")]
    SearchNotFinite,
    /// A longitude outside [-180, 180] in a STAC API search's bbox.
    #[error("longitudes must be within [-180, 180]")]
    SearchLongitude,
    /// A latitude outside [-90, 90] in a STAC API search's bbox.
    #[error("latitudes must be within [-90, 90]")]
    SearchLatitude,
    /// West east of east, or south north of north, in a STAC API search's bbox.
    #[error("west must not be east of east, south not north of north")]
    SearchReversed,
    /// A STAC API search's `intersects` that is not a geometry.
    #[error("{0}")]
    Intersects(#[source] geojson::Error),
}

/// Why a state file cannot be used ([`Error::State`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateProblem {
    /// Its folder cannot be created.
    #[error("cannot create its folder: {0}")]
    CreateFolder(#[source] std::io::Error),
    /// Its lock file cannot be opened or created.
    #[error("cannot open the lock file: {0}")]
    OpenLock(#[source] std::io::Error),
    /// Its lock file cannot be locked (for another reason than another process holding it).
    #[error("cannot lock: {0}")]
    Lock(#[source] std::io::Error),
    /// A file to read that is not there.
    #[error("no such file (nothing has run with this --state yet)")]
    NoSuchFile,
    /// A file that does not start with the SQLite header.
    #[error("not an SQLite database")]
    NotSqlite,
    /// An SQLite database with tables but no schema version: another program's.
    #[error("an SQLite database, but not an hls-flow state file")]
    OtherDatabase,
    /// A state file of another schema version.
    #[error("schema version {found}; this hls-flow reads version {expected}")]
    SchemaVersion {
        /// The file's `user_version`.
        found: i64,
        /// The version this build reads.
        expected: i64,
    },
    /// A database with a schema version but without hls-flow's mark.
    #[error("not an hls-flow state file")]
    NotHlsFlow,
    /// SQLite would not switch to write-ahead logging.
    #[error("could not switch to WAL mode (journal_mode is {journal_mode})")]
    NotWal {
        /// The journal mode SQLite reports instead.
        journal_mode: String,
    },
    /// SQLite failed (a damaged file, a full disk, a busy database).
    #[error("{0}")]
    Sqlite(#[source] rusqlite::Error),
    /// A state file that records no output (no run has started with it).
    #[error("it records no output (no run has started with it)")]
    NoOutput,
    /// A thread panicked while it held the connection.
    #[error("state connection poisoned")]
    Poisoned,
    /// A PostgreSQL URL given to a command that only takes a state file.
    #[error(
        "a PostgreSQL state is not supported by this command yet (run, status and worker take one)"
    )]
    PostgresUrl,
    /// A task key the state does not have.
    #[error("{key}: no such task")]
    NoSuchTask {
        /// The task key.
        key: String,
    },
    /// A setting of the run that differs from the one the state records.
    #[error("it records {key} {stored:?}, not {given:?}; use another --state for another {key}")]
    OtherSetting {
        /// The setting (`output`, `bbox`, `daily_prefix`).
        key: &'static str,
        /// Its value in the state.
        stored: String,
        /// Its value now.
        given: String,
    },
    /// A stored setting that cannot be read (a sync watermark that is not a time, say).
    #[error("its setting {key} = {value:?} cannot be read")]
    BadSetting {
        /// The setting.
        key: String,
        /// Its stored value.
        value: String,
    },
}

/// Why a daily file's column cannot be merged with the others' ([`Error::SchemaConflict`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaProblem {
    /// Two types that no widening reconciles.
    #[error("{a} in one file, {b} in another")]
    Types {
        /// The type so far.
        a: arrow_schema::DataType,
        /// The type in this file.
        b: arrow_schema::DataType,
    },
    /// A column that should become a struct and is not one.
    #[error("{0} cannot become a struct")]
    NotAStruct(arrow_schema::DataType),
    /// A cast to the merged type that failed.
    #[error("{from} to {to}: {source}")]
    Cast {
        /// The column's type in the file.
        from: Box<arrow_schema::DataType>,
        /// The merged type.
        to: Box<arrow_schema::DataType>,
        /// Arrow's error.
        #[source]
        source: arrow_schema::ArrowError,
    },
    /// Arrow refused the conformed column or batch.
    #[error("{0}")]
    Arrow(#[source] arrow_schema::ArrowError),
}

/// Why repartitioning a month failed ([`Error::Repartition`]), other than reading, writing
/// and store errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepartitionProblem {
    /// No daily files given.
    #[error("no daily files to read")]
    NoInputs,
    /// A row group or batch size of zero.
    #[error("row group and batch sizes must be positive")]
    ZeroSize,
    /// The temporary folder cannot be made.
    #[error("temporary folder: {0}")]
    TempFolder(#[source] std::io::Error),
    /// The task feeding the daily files' bytes stopped before the last file.
    #[error("the daily files stopped arriving")]
    InputsStopped,
    /// Spilling rows to bucket files, or reading them back, failed.
    #[error("spilling: {0}")]
    Spill(#[source] crate::write::repartition::spill::SpillError),
    /// A bucket that could not be split, sorted or written.
    #[error("bucket {}: {source}", .bucket.display())]
    Bucket {
        /// The bucket file.
        bucket: std::path::PathBuf,
        /// What went wrong.
        #[source]
        source: crate::write::repartition::spill::SpillError,
    },
    /// The encoder thread cannot be started.
    #[error("starting the encoder thread: {0}")]
    EncoderThread(#[source] std::io::Error),
    /// The encoder thread panicked.
    #[error("the encoder thread panicked")]
    EncoderPanicked,
    /// The encoder thread stopped taking rows (its own error, if any, is reported instead).
    #[error("the parquet encoder stopped")]
    EncoderStopped,
    /// The parquet writer failed.
    #[error("{0}")]
    Parquet(#[source] parquet::errors::ParquetError),
    /// Fewer or more rows written than read.
    #[error("{read} rows read but {written} written")]
    RowsLost {
        /// Rows read from the daily files.
        read: u64,
        /// Rows written to the partition.
        written: u64,
    },
}

/// Why the `id` or `bbox` column of a batch cannot be read ([`ReadError::Columns`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ColumnProblem {
    /// No `bbox` column.
    #[error("no bbox column: rows cannot be sorted spatially")]
    NoBbox,
    /// A `bbox` column that is not a struct.
    #[error("bbox column is {0}, not a struct of xmin, ymin, xmax, ymax")]
    BboxNotAStruct(arrow_schema::DataType),
    /// A `bbox` struct without one of its fields.
    #[error("bbox column has no {0}")]
    BboxField(&'static str),
    /// A `bbox` field that is not a number.
    #[error("bbox.{field}: {source}")]
    BboxCast {
        /// `xmin`, `ymin`, `xmax` or `ymax`.
        field: &'static str,
        /// Arrow's error.
        #[source]
        source: arrow_schema::ArrowError,
    },
    /// No `id` column.
    #[error("no id column")]
    NoId,
    /// An `id` column that is not a string.
    #[error("id column is {0}, not a string")]
    IdNotAString(arrow_schema::DataType),
    /// A row without an id.
    #[error("an item has a null id")]
    NullId,
}

/// Why the `geo` or `stac-geoparquet` metadata of daily files cannot be merged
/// ([`ReadError::Metadata`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetadataProblem {
    /// No `geo` metadata.
    #[error("no GeoParquet (geo) metadata: not a stac-geoparquet file")]
    NoGeo,
    /// A value that is not JSON.
    #[error("{key} metadata is not valid JSON: {source}")]
    NotJson {
        /// The metadata key.
        key: &'static str,
        /// serde_json's error.
        #[source]
        source: serde_json::Error,
    },
    /// JSON that is not an object.
    #[error("{key} metadata is not a JSON object")]
    NotAnObject {
        /// The metadata key.
        key: &'static str,
    },
    /// `geo` metadata without `columns`.
    #[error("geo metadata has no columns")]
    NoColumns,
    /// Another primary geometry column than an earlier file's.
    #[error("geo metadata: primary column {} here, {} in an earlier file", show_json(.here), show_json(.earlier))]
    PrimaryColumn {
        /// This file's.
        here: Option<Box<serde_json::Value>>,
        /// The earlier files'.
        earlier: Option<Box<serde_json::Value>>,
    },
    /// A geometry column whose encoding, CRS, edges, orientation or epoch differ from an
    /// earlier file's.
    #[error("geo metadata: column {column:?} has {key} {} here, {} in an earlier file", show_json(.here), show_json(.earlier))]
    ColumnDiffers {
        /// The geometry column.
        column: String,
        /// The key that differs.
        key: &'static str,
        /// This file's value.
        here: Option<Box<serde_json::Value>>,
        /// The earlier files' value.
        earlier: Option<Box<serde_json::Value>>,
    },
}

/// A JSON value as metadata messages show it: its JSON text, or `none`.
fn show_json(v: &Option<Box<serde_json::Value>>) -> String {
    v.as_ref()
        .map_or_else(|| "none".to_string(), |v| v.to_string())
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
    /// A `deleted-granules.json` body that is not its list of deleted granules.
    #[error("not a list of deleted granules: {0}")]
    NotADeletedList(#[source] serde_json::Error),
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

/// Why a CQL2 filter cannot be used ([`Error::InvalidFilter`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FilterProblem {
    /// Not CQL2 text or JSON.
    #[error("{0}")]
    Parse(#[source] Box<cql2::Error>),
    /// A property the cache cannot filter on.
    #[error("property {name:?} is not supported (queryables: {known})")]
    UnsupportedProperty {
        /// The property named.
        name: String,
        /// The properties that can be filtered on.
        known: String,
    },
    /// A filter whose evaluation failed on an item (an operator applied to values of the
    /// wrong types).
    #[error("cannot evaluate it on item {item}: {source}")]
    Evaluate {
        /// The item.
        item: String,
        /// What failed.
        #[source]
        source: Box<cql2::Error>,
    },
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
    /// `HLS_FLOW_PART_SIZE` is not a positive number of bytes.
    #[error("HLS_FLOW_PART_SIZE {value:?} is not a positive number of bytes: {source}")]
    PartSize {
        /// The value given.
        value: String,
        /// Why it is not a number.
        #[source]
        source: std::num::ParseIntError,
    },
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
                | Error::InvalidFilter { .. }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::checkpoint::lock::lock_path;
    use crate::engine::checkpoint::sqlite::{SCHEMA_VERSION, StateStore};

    /// The causes of an error, outermost first (the error itself excluded).
    fn causes<'a>(
        e: &'a (dyn std::error::Error + 'static),
    ) -> Vec<&'a (dyn std::error::Error + 'static)> {
        let mut out = Vec::new();
        let mut cur = e.source();
        while let Some(c) = cur {
            out.push(c);
            cur = c.source();
        }
        out
    }

    #[test]
    fn a_damaged_state_file_keeps_the_sqlite_error_as_its_source() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        // The SQLite header, then pages of garbage.
        let mut bytes = b"SQLite format 3\0".to_vec();
        bytes.extend(std::iter::repeat_n(0xA5u8, 8192));
        std::fs::write(&path, bytes).unwrap();
        let e = StateStore::open_read_only(&path).unwrap_err();
        assert!(e.is_usage(), "{e}");
        let Error::State {
            path: shown,
            problem: StateProblem::Sqlite(sqlite),
        } = &e
        else {
            panic!("not an SQLite problem: {e:?}");
        };
        assert_eq!(shown, &path.display().to_string());
        assert_eq!(
            sqlite.sqlite_error_code(),
            Some(rusqlite::ErrorCode::NotADatabase),
            "{sqlite:?}"
        );
        let chain = causes(&e);
        assert!(chain[0].is::<StateProblem>(), "{chain:?}");
        assert!(chain[1].is::<rusqlite::Error>(), "{chain:?}");
        // The message is SQLite's, after the path, as it always was.
        assert_eq!(
            e.to_string(),
            format!("state file {}: {sqlite}", path.display())
        );
    }

    #[test]
    fn a_state_file_of_another_schema_version_says_which() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        drop(StateStore::open_exclusive(&path).unwrap());
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let e = StateStore::open_read_only(&path).unwrap_err();
        assert!(
            matches!(
                e,
                Error::State {
                    problem: StateProblem::SchemaVersion { found: 99, expected },
                    ..
                } if expected == SCHEMA_VERSION
            ),
            "{e:?}"
        );
        assert!(e.to_string().ends_with(&format!(
            "schema version 99; this hls-flow reads version {SCHEMA_VERSION}"
        )));
    }

    #[test]
    fn an_unusable_lock_file_keeps_the_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        // A folder where the lock file should be: it cannot be opened for writing.
        std::fs::create_dir(lock_path(&path)).unwrap();
        let e = StateStore::open_exclusive(&path).unwrap_err();
        let Error::State {
            path: shown,
            problem: StateProblem::OpenLock(io),
        } = &e
        else {
            panic!("not a lock file problem: {e:?}");
        };
        assert_eq!(shown, &lock_path(&path).display().to_string());
        assert_eq!(io.kind(), std::io::ErrorKind::IsADirectory);
        assert!(causes(&e)[1].is::<std::io::Error>());
        assert!(e.is_usage());
    }

    #[test]
    fn a_state_folder_that_cannot_be_made_keeps_the_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        let e = StateStore::open_exclusive(&file.join("s.sqlite")).unwrap_err();
        assert!(
            matches!(
                &e,
                Error::State {
                    problem: StateProblem::CreateFolder(_),
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(causes(&e)[1].is::<std::io::Error>());
        assert!(e.to_string().contains("cannot create its folder: "), "{e}");
    }

    #[test]
    fn a_bbox_that_is_not_a_number_keeps_the_float_error() {
        let e = "1,x,3,4".parse::<crate::bbox::Bbox>().unwrap_err();
        assert!(
            matches!(&e, Error::InvalidBbox { problem: BboxProblem::NotANumber { text, .. }, .. } if text == "x"),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            r#"invalid bounding box "1,x,3,4": "x" is not a number"#
        );
        assert!(causes(&e)[1].is::<std::num::ParseFloatError>());
        assert!(e.is_usage());
        // Checks after parsing name the box as given.
        let e = "10, 0, 5, 1".parse::<crate::bbox::Bbox>().unwrap_err();
        assert!(
            matches!(&e, Error::InvalidBbox { input, problem: BboxProblem::WestOfEast } if input == "10, 0, 5, 1"),
            "{e:?}"
        );
    }

    #[test]
    fn dates_say_what_is_wrong_with_them() {
        let day = |s: &str| crate::period::parse_day(s).unwrap_err();
        assert!(matches!(
            day("20240230"),
            Error::InvalidDate {
                problem: DateProblem::NoSuchDay,
                ..
            }
        ));
        assert!(matches!(
            day("20241301"),
            Error::InvalidDate {
                problem: DateProblem::MonthOutOfRange,
                ..
            }
        ));
        assert_eq!(
            day("2024").to_string(),
            r#"invalid date "2024": expected YYYYMMDD"#
        );
        let e = crate::query::filter::Query::default()
            .with_datetime("2024-05-01T00:00:00Z/yesterday")
            .unwrap_err();
        assert!(
            matches!(&e, Error::InvalidDate { problem: DateProblem::NotRfc3339 { part, .. }, .. } if part == "yesterday"),
            "{e:?}"
        );
        assert!(causes(&e)[1].is::<chrono::ParseError>());
        assert!(e.is_usage());
    }
}
