//! Repartitioning: the daily files of one (collection, month) into one spatially sorted
//! stac-geoparquet file, `{collection}/year=YYYY/month=MM/part-0.parquet`.
//!
//! It works on Arrow record batches, never on whole items, and never holds the month in
//! memory:
//!
//! 1. The footers of the daily files give their schemas, which are merged
//!    ([`schema::merge_schemas`]: a column missing on some days becomes nulls there), and
//!    their `geo` / `stac-geoparquet` metadata, which are combined ([`metadata`]).
//! 2. Each daily file is read batch by batch; every row gets the 32-bit Hilbert key of its
//!    bbox centroid ([`hilbert`]) and goes to one of 64 bucket files (Arrow IPC, in a
//!    temporary folder) by the key's top 6 bits ([`spill`]: rows put in bucket order and
//!    written out by two threads of their own while the next are read). Item ids are
//!    checked on the way: an id found twice in a month's daily files is an error
//!    ([`Error::DuplicateItem`]), not silently dropped, since the two copies may differ and
//!    neither is known to be right.
//! 3. The buckets are taken in key order; each is sorted in memory by key, then id (a bucket
//!    larger than [`RepartitionOptions::bucket_bytes`] is first split again by the next 6 bits
//!    of the key), and written as row groups of [`RepartitionOptions::row_group_size`] rows.
//! 4. The finished file is published in one step ([`Output::publish_file`]): readers see
//!    the old partition or the new one, never a part. The temporary folder, with every
//!    bucket and the unpublished file, is removed whatever happens.

pub mod hilbert;
pub mod schema;
pub mod spill;

use crate::collection::Collection;
use crate::error::{Error, ReadError, RepartitionProblem, Result};
use crate::period::Month;
use crate::progress::UnitBar;
use crate::write::geoparquet::read_metadata;
use crate::write::metadata::{self, FileMetadata};
use crate::write::output::Output;
use crate::write::parquet::{
    PARTITION_ROW_GROUP_SIZE, SMALL_FILE_ROWS, for_rows, writer_properties_builder,
};
use crate::write::recent::{Decoded, RecentFiles};
use arrow_array::RecordBatch;
use arrow_schema::{Schema, SchemaRef};
use bytes::Bytes;
use chrono::NaiveDate;
use futures::StreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use spill::{Bucket, SpillError, Spilled, Spiller};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// Rows per batch read from a daily file. One batch is on its way to the spill's
/// distributor at a time (~25 MB of Arrow data at 4,096 HLS rows; 8,192 cost 90 MB more of
/// peak RSS for no speed).
pub const DEFAULT_BATCH_SIZE: usize = 4096;
/// Largest bucket sorted in memory as is (bytes of Arrow data); larger ones are split again.
pub const DEFAULT_BUCKET_BYTES: usize = 96 * 1024 * 1024;
/// Rows buffered in memory while spilling, at most (bytes of Arrow data).
pub const DEFAULT_SPILL_BUFFER_BYTES: usize = 128 * 1024 * 1024;

/// Rows per data page of a partition, at most. With the page index (the offset index parquet
/// writes by default), a search that keeps a few rows of a row group decodes the pages that
/// hold them, not the whole column chunks of every column.
pub const PAGE_ROWS: usize = 1000;

/// Bytes per data page of a partition, about (before compression; a page is cut after the
/// first batch of [`PAGE_BATCH_ROWS`] rows that passes this). A few rows are read from pages
/// of every column: the wide columns (hrefs, ~150 bytes a row) get pages of ~128 rows, not
/// 1,000, so that a lookup of an id decompresses at most ~0.5 MB (a page of each of the ~30
/// columns written plain, see [`DICTIONARY_BYTES`]) rather than ~5.5 MB.
pub const PAGE_BYTES: usize = 16 * 1024;

/// Rows given to a column's encoder at a time: where a page can be cut.
pub const PAGE_BATCH_ROWS: usize = 128;

/// The columns of a partition with statistics for each page (in the page headers and the
/// column index), for readers that prune pages: those a search filters on. The others have
/// statistics per row group only: the min and max of each page of an href column (64 bytes
/// each, twice) made the partition ~20 % larger once its wide columns had pages of ~128 rows.
pub const PAGE_STATISTICS_COLUMNS: [&str; 8] = [
    "datetime",
    "start_datetime",
    "end_datetime",
    "eo:cloud_cover",
    "bbox.xmin",
    "bbox.ymin",
    "bbox.xmax",
    "bbox.ymax",
];

/// Bytes of a column chunk's dictionary, at most: past them the column is written plain.
/// Most of an HLS partition's columns hold a handful of values in every row group (an asset's
/// `type`, `title`, `roles`, its bands' names: 104 of the 134 columns of an HLSS30 month,
/// 40 % of its bytes before compression); with a dictionary their pages are a few bytes of
/// indices, and a search that keeps a few rows of a row group no longer decompresses a page
/// of each. A column of values unique to each item (ids, hrefs, times, footprints) fills this
/// within its first few dozen rows and is written plain from there.
pub const DICTIONARY_BYTES: usize = 4 * 1024;

/// The writer properties of a partition of `rows` rows in row groups of `row_group_size`.
fn partition_properties(row_group_size: usize, rows: u64) -> WriterProperties {
    let mut props = writer_properties_builder(row_group_size)
        .set_dictionary_enabled(true)
        .set_dictionary_page_size_limit(DICTIONARY_BYTES)
        .set_data_page_row_count_limit(PAGE_ROWS)
        .set_data_page_size_limit(PAGE_BYTES)
        .set_write_batch_size(PAGE_BATCH_ROWS)
        .set_statistics_enabled(EnabledStatistics::Chunk)
        // A bloom filter of the ids in each row group: a lookup by id reads only the row
        // groups that may hold one (ids are spread over the month by the spatial order).
        .set_column_bloom_filter_enabled(ColumnPath::from("id"), true)
        .set_column_bloom_filter_ndv(ColumnPath::from("id"), row_group_size as u64)
        .set_column_bloom_filter_fpp(ColumnPath::from("id"), ID_BLOOM_FPP);
    if rows >= SMALL_FILE_ROWS {
        for column in PAGE_STATISTICS_COLUMNS {
            let path = ColumnPath::new(column.split('.').map(str::to_string).collect());
            props = props.set_column_statistics_enabled(path, EnabledStatistics::Page);
        }
    }
    for_rows(props, rows).build()
}

/// The false positive rate of the `id` bloom filter of each row group.
const ID_BLOOM_FPP: f64 = 0.01;

/// Rows handed to the parquet encoder at a time, at most.
const WRITE_CHUNK_ROWS: usize = 4096;

/// How to repartition a month.
#[derive(Debug, Clone)]
pub struct RepartitionOptions {
    /// Replace an existing partition (without it, an existing one is
    /// [`Error::PartitionExists`]).
    pub overwrite: bool,
    /// Rows per row group of the output.
    pub row_group_size: usize,
    /// Rows per batch read from the daily files.
    pub batch_size: usize,
    /// Largest bucket sorted in memory as is; bounds the memory of the sort.
    pub bucket_bytes: usize,
    /// Rows buffered while spilling, at most, in bytes.
    pub spill_buffer_bytes: usize,
    /// Where the temporary folder goes (the system's if `None`); it needs room for about
    /// the month's data uncompressed.
    pub tmp_dir: Option<PathBuf>,
    /// A bar counting items (read, then written).
    pub progress: UnitBar,
    /// Daily files this process has just written, kept decoded: an input found there
    /// (and unchanged since) is not read again.
    pub recent: Option<Arc<RecentFiles>>,
}

impl Default for RepartitionOptions {
    fn default() -> Self {
        RepartitionOptions {
            overwrite: false,
            row_group_size: PARTITION_ROW_GROUP_SIZE,
            batch_size: DEFAULT_BATCH_SIZE,
            bucket_bytes: DEFAULT_BUCKET_BYTES,
            spill_buffer_bytes: DEFAULT_SPILL_BUFFER_BYTES,
            tmp_dir: None,
            progress: UnitBar::hidden(),
            recent: None,
        }
    }
}

/// What repartitioning a month did.
#[derive(Debug, Clone, PartialEq)]
pub struct RepartitionReport {
    /// The collection.
    pub collection: Collection,
    /// The month.
    pub month: Month,
    /// Items written (all items of the daily files).
    pub rows: u64,
    /// Row groups written.
    pub row_groups: usize,
    /// Size of the partition file.
    pub bytes: u64,
    /// The partition file.
    pub path: Path,
    /// The partition file as shown to users (`DST/HLSS30_2.0/year=2024/month=05/part-0.parquet`).
    pub output: String,
    /// Daily files read.
    pub inputs: usize,
    /// Of those, the ones taken decoded from [`RepartitionOptions::recent`] rather than
    /// read from the output.
    pub inputs_kept: usize,
}

/// The daily files found, by (collection, month), each list sorted.
pub type DailyFiles = BTreeMap<(Collection, Month), Vec<Path>>;

/// Where the partition of a (collection, month) goes, below the output's prefix:
/// `HLSS30_2.0/year=2024/month=05/part-0.parquet`.
pub fn partition_path(dst: &Output, collection: Collection, month: Month) -> Path {
    dst.child(&format!(
        "{}/year={:04}/month={:02}/part-0.parquet",
        collection.stac_id(),
        month.year(),
        month.number()
    ))
}

/// Lists the daily files below `daily_root` of `src` (laid out as
/// [`Output::daily_path`] does: `HLSS30_2.0/2024/05/HLSS30_2.0-2024-05-15.parquet`),
/// grouped by (collection, month). Other objects (partitions, temporary files) are
/// ignored.
pub async fn discover_daily(src: &Output, daily_root: &str) -> Result<DailyFiles> {
    let root = src.child(daily_root);
    let mut listing = if root.as_ref().is_empty() {
        src.store().list(None)
    } else {
        src.store().list(Some(&root))
    };
    let mut found = DailyFiles::new();
    while let Some(meta) = listing.next().await {
        let meta = match meta {
            Ok(m) => m,
            Err(object_store::Error::NotFound { .. }) => continue,
            Err(e) => return Err(Error::store(src.show(&root), e)),
        };
        match parse_daily(&root, &meta.location) {
            Some(key) => found.entry(key).or_default().push(meta.location),
            None => tracing::debug!("not a daily file: {}", meta.location),
        }
    }
    for paths in found.values_mut() {
        paths.sort();
    }
    Ok(found)
}

/// `(collection, month)` of a daily file's path below `root`, if it is one.
fn parse_daily(root: &Path, location: &Path) -> Option<(Collection, Month)> {
    let parts: Vec<String> = location
        .prefix_match(root)?
        .map(|p| p.as_ref().to_string())
        .collect();
    let [c, y, m, file] = parts.as_slice() else {
        return None;
    };
    let collection = Collection::ALL.into_iter().find(|k| k.stac_id() == c)?;
    let day = file
        .strip_prefix(c.as_str())?
        .strip_prefix('-')?
        .strip_suffix(".parquet")?;
    let day = NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()?;
    use chrono::Datelike;
    (format!("{:04}", day.year()) == *y && format!("{:02}", day.month()) == *m)
        .then_some((collection, Month::of(day)))
}

/// One daily file, from its footer.
#[derive(Debug)]
struct Input {
    path: Path,
    shown: String,
    rows: u64,
    rows_from: Rows,
}

/// Where an input's rows come from.
#[derive(Debug, Clone)]
enum Rows {
    /// The file, whose footer was parsed once (with its Arrow schema): reading its rows
    /// reuses it.
    File(ArrowReaderMetadata),
    /// The batches it was written from, kept by this process ([`RecentFiles`]).
    Kept(Arc<Decoded>),
}

impl Rows {
    fn schema(&self) -> &Schema {
        match self {
            Rows::File(meta) => meta.schema().as_ref(),
            Rows::Kept(decoded) => decoded.schema.as_ref(),
        }
    }
}

/// Repartitions the daily files `inputs` of `src` (one collection, one month) into
/// [`partition_path`] of `dst`, spatially sorted, and publishes it atomically. Returns what
/// was written.
///
/// Errors: [`Error::PartitionExists`] without `overwrite` (nothing is read or written);
/// [`Error::DuplicateItem`] if an item id occurs twice; [`Error::SchemaConflict`] if a
/// daily file's columns cannot be merged with the others'; read, write and store errors.
/// Nothing is left behind on error and an existing partition is untouched.
///
/// ```no_run
/// # async fn f() -> hls_flow::Result<()> {
/// use hls_flow::write::output::Output;
/// use hls_flow::write::repartition::{RepartitionOptions, discover_daily, repartition_month};
/// let src = Output::parse("daily/")?;
/// let dst = Output::parse("monthly/")?;
/// for ((collection, month), inputs) in discover_daily(&src, "").await? {
///     let report = repartition_month(
///         &src, &inputs, &dst, collection, month, &RepartitionOptions::default(),
///     )
///     .await?;
///     println!("{}: {} items", report.output, report.rows);
/// }
/// # Ok(())
/// # }
/// ```
pub async fn repartition_month(
    src: &Output,
    inputs: &[Path],
    dst: &Output,
    collection: Collection,
    month: Month,
    options: &RepartitionOptions,
) -> Result<RepartitionReport> {
    let started = Instant::now();
    let dest = partition_path(dst, collection, month);
    let shown = dst.show(&dest);
    let fail = |problem: RepartitionProblem| Error::Repartition {
        partition: shown.clone(),
        problem,
    };
    if inputs.is_empty() {
        return Err(fail(RepartitionProblem::NoInputs));
    }
    if options.row_group_size == 0 || options.batch_size == 0 {
        return Err(fail(RepartitionProblem::ZeroSize));
    }
    if !options.overwrite && dst.size_of(&dest).await?.is_some() {
        return Err(Error::PartitionExists { path: shown });
    }

    // 1. Footers: schemas, metadata, row counts.
    let mut files = Vec::with_capacity(inputs.len());
    let mut file_meta = FileMetadata::default();
    for path in inputs {
        let input_shown = src.show(path);
        if let Some(decoded) = kept(options, src, path, &input_shown).await {
            file_meta
                .add(Some(&decoded.geo), Some(&decoded.stac))
                .map_err(|reason| Error::Read {
                    path: input_shown.clone(),
                    source: ReadError::Metadata(reason),
                })?;
            files.push(Input {
                path: path.clone(),
                shown: input_shown,
                rows: decoded.rows(),
                rows_from: Rows::Kept(decoded),
            });
            continue;
        }
        let meta = read_metadata(src, path).await?.ok_or_else(|| Error::Read {
            path: input_shown.clone(),
            source: ReadError::NotFound,
        })?;
        let fm = meta.file_metadata();
        let kv = fm.key_value_metadata();
        let value = |key: &str| {
            kv.and_then(|kv| kv.iter().find(|e| e.key == key))
                .and_then(|e| e.value.as_deref())
        };
        file_meta
            .add(value(metadata::GEO_KEY), value(metadata::STAC_KEY))
            .map_err(|reason| Error::Read {
                path: input_shown.clone(),
                source: ReadError::Metadata(reason),
            })?;
        let rows = fm.num_rows().max(0) as u64;
        let meta = ArrowReaderMetadata::try_new(Arc::new(meta), ArrowReaderOptions::new())
            .map_err(|e| Error::Read {
                path: input_shown.clone(),
                source: ReadError::Parquet(e),
            })?;
        files.push(Input {
            path: path.clone(),
            shown: input_shown,
            rows,
            rows_from: Rows::File(meta),
        });
    }
    file_meta.add_collection(collection);
    let mut merged: Option<Schema> = None;
    for f in &files {
        let next = match &merged {
            None => schema::merge_schemas([f.rows_from.schema()]),
            Some(m) => schema::merge_schemas([m, f.rows_from.schema()]),
        };
        merged = Some(next.map_err(|c| Error::SchemaConflict {
            path: f.shown.clone(),
            column: c.column,
            problem: c.problem,
        })?);
    }
    let schema: SchemaRef = Arc::new(merged.unwrap_or_else(Schema::empty));
    let expected_rows: u64 = files.iter().map(|f| f.rows).sum();
    options.progress.restart(expected_rows, "reading");

    // 2 and 3, on a blocking thread, fed the daily files' bytes by this task.
    let tmp = match &options.tmp_dir {
        Some(d) => tempfile::Builder::new()
            .prefix(".hls-flow-repartition-")
            .tempdir_in(d),
        None => tempfile::Builder::new()
            .prefix("hls-flow-repartition-")
            .tempdir(),
    }
    .map_err(|e| fail(RepartitionProblem::TempFolder(e)))?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes>>(1);
    let job = Job {
        shown: shown.clone(),
        inputs: files
            .iter()
            .map(|f| (f.shown.clone(), f.rows, f.rows_from.clone()))
            .collect(),
        schema,
        key_values: file_meta.key_values(),
        options: options.clone(),
        dir: tmp.path().to_path_buf(),
    };
    let worker = tokio::task::spawn_blocking(move || job.run(rx));
    for f in files
        .iter()
        .filter(|f| matches!(f.rows_from, Rows::File(_)))
    {
        let bytes = match src.store().get(&f.path).await {
            Ok(r) => r.bytes().await.map_err(|e| Error::store(&f.shown, e)),
            Err(e) => Err(Error::store(&f.shown, e)),
        };
        let failed = bytes.is_err();
        if tx.send(bytes).await.is_err() || failed {
            // The worker stopped (its error says why), or will stop on this error.
            break;
        }
    }
    drop(tx);
    let written = worker.await.map_err(|source| Error::Join {
        task: format!("repartition worker of {shown}"),
        source,
    })??;

    // 4. Publish: without `overwrite`, create-only, so that of two repartitions of the
    // same month only one publishes.
    let bytes = if options.overwrite {
        dst.publish_file(&written.file, &dest).await?
    } else {
        dst.publish_new_file(&written.file, &dest)
            .await?
            .ok_or_else(|| Error::PartitionExists {
                path: shown.clone(),
            })?
    };
    drop(tmp);
    let inputs_kept = files
        .iter()
        .filter(|f| matches!(f.rows_from, Rows::Kept(_)))
        .count();
    let secs = started.elapsed().as_secs_f64();
    tracing::info!(
        "{shown}: {} items from {} daily files ({} of them kept decoded) in {} row groups, {bytes} bytes, {secs:.1} s ({:.0} items/s)",
        written.rows,
        files.len(),
        inputs_kept,
        written.row_groups,
        written.rows as f64 / secs.max(1e-9),
    );
    Ok(RepartitionReport {
        collection,
        month,
        rows: written.rows,
        row_groups: written.row_groups,
        bytes,
        path: dest,
        output: shown,
        inputs: files.len(),
        inputs_kept,
    })
}

/// The rows of the input `path` as this process wrote them, if they are kept and the file
/// is still the one written.
async fn kept(
    options: &RepartitionOptions,
    src: &Output,
    path: &Path,
    shown: &str,
) -> Option<Arc<Decoded>> {
    let recent = options.recent.as_ref()?;
    let meta = src.store().head(path).await.ok()?;
    recent.take(shown, &meta)
}

/// The blocking part of one month's repartition.
struct Job {
    shown: String,
    /// Display name, row count and rows of each input, in order; the bytes of those read
    /// from their files arrive in that order.
    inputs: Vec<(String, u64, Rows)>,
    schema: SchemaRef,
    key_values: Vec<(String, String)>,
    options: RepartitionOptions,
    dir: PathBuf,
}

/// The unpublished output.
struct Written {
    file: PathBuf,
    rows: u64,
    row_groups: usize,
}

/// Where sorted rows go: a thread encoding them into the parquet file, so that encoding
/// (the costliest step) overlaps reading and sorting the next bucket.
struct Sink {
    tx: std::sync::mpsc::SyncSender<RecordBatch>,
    rows: u64,
}

type EncodeResult =
    std::result::Result<parquet::file::metadata::ParquetMetaData, parquet::errors::ParquetError>;

impl Job {
    fn fail(&self, problem: RepartitionProblem) -> Error {
        Error::Repartition {
            partition: self.shown.clone(),
            problem,
        }
    }

    fn run(self, mut rx: tokio::sync::mpsc::Receiver<Result<Bytes>>) -> Result<Written> {
        let bar = &self.options.progress;
        let started = Instant::now();
        // Pass 1: spill every row to its bucket.
        let mut spiller = Spiller::new(
            &self.dir,
            "b",
            self.schema.clone(),
            spill::shift_of(0),
            self.options.spill_buffer_bytes,
        );
        let mut seen: HashMap<Box<str>, u32> = HashMap::new();
        let mut rows_in = 0u64;
        for (index, (shown, rows, rows_from)) in self.inputs.iter().enumerate() {
            let read_err = |source: ReadError| Error::Read {
                path: shown.clone(),
                source,
            };
            let batches: Box<dyn Iterator<Item = Result<RecordBatch>>> = match rows_from {
                Rows::Kept(decoded) => Box::new(decoded.batches.iter().cloned().map(Ok)),
                Rows::File(meta) => {
                    let bytes = rx
                        .blocking_recv()
                        .ok_or_else(|| self.fail(RepartitionProblem::InputsStopped))??;
                    let reader =
                        ParquetRecordBatchReaderBuilder::new_with_metadata(bytes, meta.clone())
                            .with_batch_size(self.options.batch_size)
                            .build()
                            .map_err(|e| read_err(ReadError::Parquet(e)))?;
                    Box::new(reader.map(|b| b.map_err(|e| read_err(ReadError::Arrow(e)))))
                }
            };
            let mut file_rows = 0u64;
            for batch in batches {
                let batch = batch?;
                let batch =
                    schema::conform(&batch, &self.schema).map_err(|c| Error::SchemaConflict {
                        path: shown.clone(),
                        column: c.column,
                        problem: c.problem,
                    })?;
                for id in spill::batch_ids(&batch).map_err(|e| read_err(ReadError::Columns(e)))? {
                    if let Some(first) = seen.insert(id.into(), index as u32) {
                        return Err(Error::DuplicateItem {
                            id: id.to_string(),
                            first: self.inputs[first as usize].0.clone(),
                            second: shown.clone(),
                        });
                    }
                }
                let keys =
                    spill::batch_keys(&batch).map_err(|e| read_err(ReadError::Columns(e)))?;
                spiller
                    .push(&batch, &keys)
                    .map_err(|e| self.fail(RepartitionProblem::Spill(e)))?;
                file_rows += batch.num_rows() as u64;
                bar.inc(batch.num_rows() as u64);
            }
            if file_rows != *rows {
                return Err(read_err(ReadError::RowCount {
                    read: file_rows,
                    footer: *rows,
                }));
            }
            rows_in += file_rows;
        }
        drop(seen);
        let spilled = spiller
            .finish(self.options.bucket_bytes)
            .map_err(|e| self.fail(RepartitionProblem::Spill(e)))?;
        if let Spilled::Buckets(buckets) = &spilled {
            tracing::debug!(
                "{}: {rows_in} rows spilled into {} buckets ({} bytes) in {:.2} s",
                self.shown,
                buckets.len(),
                buckets.iter().map(|b| b.bytes).sum::<u64>(),
                started.elapsed().as_secs_f64()
            );
        }
        let started = Instant::now();

        // Pass 2: the buckets in key order, each sorted, into one file.
        bar.restart(rows_in, "writing");
        let file = self.dir.join("part-0.parquet");
        let out = File::create(&file).map_err(|e| Error::io(file.display(), e))?;
        let props = partition_properties(self.options.row_group_size, rows_in);
        // The file metadata goes into the stored Arrow schema too (GeoPandas reads `geo`
        // from there when given a partition folder).
        let stored = self
            .schema
            .as_ref()
            .clone()
            .with_metadata(metadata::schema_metadata(
                self.key_values
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            ));
        let mut writer: ArrowWriter<BufWriter<File>> = ArrowWriter::try_new(
            BufWriter::with_capacity(1 << 20, out),
            Arc::new(stored),
            Some(props),
        )
        .map_err(|e| self.fail(RepartitionProblem::Parquet(e)))?;
        for (key, value) in &self.key_values {
            writer.append_key_value_metadata(KeyValue::new(key.clone(), value.clone()));
        }
        let (tx, rx) = std::sync::mpsc::sync_channel::<RecordBatch>(1);
        let encoder = std::thread::Builder::new()
            .name("repartition-encoder".into())
            .spawn(move || -> EncodeResult {
                for rows in rx {
                    writer.write(&rows)?;
                }
                writer.close()
            })
            .map_err(|e| self.fail(RepartitionProblem::EncoderThread(e)))?;
        let mut sink = Sink { tx, rows: 0 };
        let drained = self.drain_all(spilled, 0, &mut sink);
        drop(sink.tx);
        let encoded = encoder
            .join()
            .map_err(|_| self.fail(RepartitionProblem::EncoderPanicked))?;
        // The encoder's own error explains a failed send better than the send does.
        let meta = encoded.map_err(|e| self.fail(RepartitionProblem::Parquet(e)))?;
        drained?;
        tracing::debug!(
            "{}: {} rows sorted and written in {:.2} s",
            self.shown,
            sink.rows,
            started.elapsed().as_secs_f64()
        );
        if sink.rows != rows_in {
            return Err(self.fail(RepartitionProblem::RowsLost {
                read: rows_in,
                written: sink.rows,
            }));
        }
        Ok(Written {
            file,
            rows: sink.rows,
            row_groups: meta.num_row_groups(),
        })
    }

    /// Writes a bucket's rows in order, splitting it first if it is too large to sort in
    /// memory (`level` is how many times its rows were split already).
    fn drain(&self, bucket: Bucket, level: u32, sink: &mut Sink) -> Result<()> {
        let label = bucket.path.clone();
        let fail = |source: SpillError| {
            self.fail(RepartitionProblem::Bucket {
                bucket: label.clone(),
                source,
            })
        };
        if bucket.bytes > self.options.bucket_bytes as u64 && level < 3 {
            let shift = spill::shift_of(level + 1);
            let name = bucket
                .path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            tracing::debug!(
                "{}: splitting bucket {name} ({} rows, {} bytes)",
                self.shown,
                bucket.rows,
                bucket.bytes
            );
            let mut sub = Spiller::new(
                &self.dir,
                &name,
                self.schema.clone(),
                shift,
                self.options.spill_buffer_bytes,
            );
            for batch in bucket.reader().map_err(fail)? {
                let batch = batch.map_err(|e| fail(SpillError::Arrow(e)))?;
                let keys = spill::batch_keys(&batch).map_err(|e| fail(e.into()))?;
                sub.push(&batch, &keys).map_err(fail)?;
            }
            bucket.remove();
            let spilled = sub
                .finish(self.options.bucket_bytes)
                .map_err(|e| self.fail(RepartitionProblem::Spill(e)))?;
            return self.drain_all(spilled, level + 1, sink);
        }
        let batches = bucket.read().map_err(fail)?;
        self.write_sorted(&batches, sink, fail)?;
        drop(batches);
        bucket.remove();
        Ok(())
    }

    /// Writes the rows of a spill in order: sorted in memory, or bucket by bucket.
    fn drain_all(&self, spilled: Spilled, level: u32, sink: &mut Sink) -> Result<()> {
        match spilled {
            Spilled::InMemory(batches) => {
                self.write_sorted(&batches, sink, |e| self.fail(RepartitionProblem::Spill(e)))
            }
            Spilled::Buckets(buckets) => {
                for bucket in buckets {
                    self.drain(bucket, level, sink)?;
                }
                Ok(())
            }
        }
    }

    /// Sorts rows held in memory (by Hilbert key, then id) and sends them to the encoder;
    /// `fail` says where they came from.
    fn write_sorted(
        &self,
        batches: &[RecordBatch],
        sink: &mut Sink,
        fail: impl Fn(SpillError) -> Error,
    ) -> Result<()> {
        let order = spill::sorted_order(batches).map_err(|e| fail(e.into()))?;
        let refs: Vec<&RecordBatch> = batches.iter().collect();
        // Chunks smaller than a row group keep the rows in flight to the encoder few.
        for chunk in order.chunks(self.options.row_group_size.min(WRITE_CHUNK_ROWS)) {
            let rows = arrow_select::interleave::interleave_record_batch(&refs, chunk)
                .map_err(|e| fail(SpillError::Arrow(e)))?;
            let n = rows.num_rows() as u64;
            sink.tx
                .send(rows)
                .map_err(|_| self.fail(RepartitionProblem::EncoderStopped))?;
            sink.rows += n;
            self.options.progress.inc(n);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_paths_are_hive_style() {
        let out = Output::from_store(
            Arc::new(object_store::memory::InMemory::new()),
            "cache/monthly",
            "memory://cache/monthly",
        );
        let p = partition_path(&out, Collection::Hlss30, Month::new(2024, 5).unwrap());
        assert_eq!(
            p.as_ref(),
            "cache/monthly/HLSS30_2.0/year=2024/month=05/part-0.parquet"
        );
        assert_eq!(
            out.show(&p),
            "memory://cache/monthly/HLSS30_2.0/year=2024/month=05/part-0.parquet"
        );
    }

    /// A column of few values is written with a dictionary (its pages are indices), one of
    /// values unique to each row falls back to plain pages once its dictionary is full.
    #[test]
    fn repeated_values_get_a_dictionary_unique_ones_plain_pages() {
        use arrow_array::{RecordBatch, StringArray};
        use parquet::basic::{Encoding, PageType};
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let rows = 4000;
        let href = |i: usize| {
            format!(
                "https://data.lpdaac.earthdatacloud.nasa.gov/lp-prod-protected/HLSS30.020/\
                 HLS.S30.T{i:05}.2024125T221320.v2.0/HLS.S30.T{i:05}.2024125T221320.v2.0.B01.tif"
            )
        };
        let batch = RecordBatch::try_from_iter([
            (
                "type",
                Arc::new(StringArray::from_iter_values(
                    (0..rows).map(|_| "image/tiff; application=geotiff"),
                )) as arrow_array::ArrayRef,
            ),
            (
                "href",
                Arc::new(StringArray::from_iter_values((0..rows).map(href))),
            ),
        ])
        .unwrap();
        let mut file = Vec::new();
        let props = partition_properties(2000, rows as u64);
        let mut writer = ArrowWriter::try_new(&mut file, batch.schema(), Some(props)).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();

        let file = bytes::Bytes::from(file);
        let reader = SerializedFileReader::new(file.clone()).unwrap();
        let meta = reader.metadata();
        assert_eq!(meta.num_row_groups(), 2);
        let is_dictionary =
            |e: Encoding| matches!(e, Encoding::RLE_DICTIONARY | Encoding::PLAIN_DICTIONARY);
        for i in 0..meta.num_row_groups() {
            let rg = reader.get_row_group(i).unwrap();
            // Data pages with dictionary indices, and plain ones.
            let data_pages = |column: usize| {
                let (mut dictionary, mut plain) = (0, 0);
                for page in rg.get_column_page_reader(column).unwrap() {
                    let page = page.unwrap();
                    if page.page_type() == PageType::DATA_PAGE {
                        if is_dictionary(page.encoding()) {
                            dictionary += 1;
                        } else {
                            plain += 1;
                        }
                    }
                }
                (dictionary, plain)
            };
            let (dictionary, plain) = data_pages(0);
            assert!(
                dictionary > 0 && plain == 0,
                "type: {dictionary} dictionary, {plain} plain pages"
            );
            let (dictionary, plain) = data_pages(1);
            assert!(
                plain > 10 * dictionary,
                "href: {dictionary} dictionary, {plain} plain pages"
            );
        }
        // Both read back as written.
        let back: Vec<RecordBatch> =
            parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(file, rows)
                .unwrap()
                .collect::<std::result::Result<_, _>>()
                .unwrap();
        assert_eq!(back, vec![batch]);
    }

    #[test]
    fn recognises_daily_file_paths_only() {
        let root = Path::from("daily");
        let p = |s: &str| parse_daily(&root, &Path::from(s));
        assert_eq!(
            p("daily/HLSS30_2.0/2024/05/HLSS30_2.0-2024-05-15.parquet"),
            Some((Collection::Hlss30, Month::new(2024, 5).unwrap()))
        );
        assert_eq!(
            p("daily/HLSL30_2.0/2023/12/HLSL30_2.0-2023-12-31.parquet"),
            Some((Collection::Hlsl30, Month::new(2023, 12).unwrap()))
        );
        // Wrong folder for the date, other collections, other names, partitions.
        assert_eq!(
            p("daily/HLSS30_2.0/2024/06/HLSS30_2.0-2024-05-15.parquet"),
            None
        );
        assert_eq!(
            p("daily/HLSS30_2.0/2024/05/HLSL30_2.0-2024-05-15.parquet"),
            None
        );
        assert_eq!(p("daily/HLSS30/2024/05/HLSS30-2024-05-15.parquet"), None);
        assert_eq!(
            p("daily/HLSS30_2.0/2024/05/HLSS30_2.0-2024-05-32.parquet"),
            None
        );
        assert_eq!(
            p("daily/HLSS30_2.0/2024/05/.tmp-HLSS30_2.0-2024-05-15.parquet"),
            None
        );
        assert_eq!(
            p("daily/HLSS30_2.0/year=2024/month=05/part-0.parquet"),
            None
        );
        assert_eq!(
            p("other/HLSS30_2.0/2024/05/HLSS30_2.0-2024-05-15.parquet"),
            None
        );
    }
}
