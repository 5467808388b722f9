//! The rows of one file put in (`datetime`, `id`) order while they arrive.
//!
//! A daily file's rows are written sorted, but they arrive in fetch order. Rather than wait
//! for the last one and only then encode them all, [`SortedRuns`] appends each row to the
//! column builders as it comes (so parsing overlaps fetching), cuts the rows into runs of
//! [`RUN_ROWS`], sorts each run, keeps the runs in memory up to [`MEMORY_LIMIT`] and spills
//! them as Arrow IPC to the scratch folder past it, and at the end merges the runs into the
//! writer in order, in batches of the writer's own batch size: the same batches, so the same
//! file bytes, as appending the sorted rows one by one; the merge of each batch overlaps the
//! encoding of the one before, on a second thread. A small day is one run, sorted and written
//! without a merge.
//!
//! Bulk mode's rows arrive nearly in order: CMR lists a day's granules by start time. There
//! the runs are not needed. With [`write_early`](SortedRuns::write_early), granules' values
//! ([`push_granule`](SortedRuns::push_granule)) are held as they are (~10× smaller than their
//! rows), and once twice [`RUN_ROWS`] are held they are sorted, and those more than
//! [`HOLD_BACK_MICROS`] before the newest are built into rows and written to the file, a whole
//! row group at a time ([`building`](crate::write::parquet::building): on two cores, one
//! file's rows built at a time). Each time the first granule held is checked against the last
//! row written: if it precedes it (CMR listed out of order), the file written so far is
//! finished in the scratch folder as a run of its own, read back by the merge, and every
//! later row goes to runs. Either way the file has the same rows in the same order, and
//! memory does not grow with the day (no runs, no merge).

use super::builder::HlsBatchBuilder;
use super::error::{HlsArrowError, Result};
use super::item::micros;
use super::writer::{HlsGeoparquetWriter, HlsWriterOptions};
use crate::Collection;
use crate::source::hls::GranuleMeta;
use crate::write::scratch::{Scratch, Scratched};
use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use arrow_array::{Array, RecordBatch, StringArray, TimestampMicrosecondArray, UInt32Array};
use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::StreamWriter;
use arrow_schema::SchemaRef;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::file::reader::ChunkReader;
use std::cmp::Ordering;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::PathBuf;
use tempfile::NamedTempFile;

/// Rows per run: the builders hold at most this many rows before they are sorted.
pub const RUN_ROWS: usize = 2_000;

/// Bytes of sorted runs kept in memory; past it the runs go to the scratch folder. (With
/// 24 MB, a bulk day of 40,000 peaked 18 % above a day of 15,000, whose smaller collection's
/// runs all fitted; with 12 MB both days spill, +5–10 %.)
pub const MEMORY_LIMIT: usize = 12 << 20;

/// Rows per IPC batch of a spilled run: what the merge holds of each spilled run at once.
const SPILL_BATCH_ROWS: usize = 256;

/// How far before the newest granule held a granule must start to be written early (the
/// others are held back for the next write): a granule listed later is expected to start
/// before none of the rows written (one second, where CMR lists by start time).
pub const HOLD_BACK_MICROS: i64 = 1_000_000;

/// The parts a row group written early is built in (a row group's rows as Arrow arrays are
/// ~10 MB for an HLSS30 day's 2,000).
const GROUP_PARTS: usize = 4;

/// The rows of one file, in sorted runs (see the module doc).
pub struct SortedRuns {
    builder: HlsBatchBuilder,
    collection: Collection,
    tmp_dir: Option<PathBuf>,
    run_rows: usize,
    memory_limit: usize,
    runs: Vec<Run>,
    in_memory: usize,
    rows: u64,
    early: Option<Early>,
    /// Granules checked and not written yet, while written early (in arrival order).
    #[expect(
        clippy::vec_box,
        reason = "the granules come boxed from the listing, and sorting moves pointers"
    )]
    pending: Vec<Box<GranuleMeta>>,
    /// How many granules held make the next write: at least a run's worth more than the
    /// last write left (so that granules of one second, held back together, are not sorted
    /// again at every arrival).
    next_write: usize,
}

impl std::fmt::Debug for SortedRuns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SortedRuns")
            .field("collection", &self.collection)
            .field("rows", &self.rows)
            .field("runs", &self.runs.len())
            .field("early", &self.early.is_some())
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

/// What [`SortedRuns::finish_early`] ends with.
#[derive(Debug)]
pub enum Ended {
    /// Every row was written early: the file's writer, to be finished.
    Written(Box<HlsGeoparquetWriter<Scratch>>),
    /// The rows are in runs (none written early), for [`SortedRuns::write_into`].
    Runs(Box<SortedRuns>),
}

/// Rows written as they come ([`SortedRuns::write_early`]).
enum Early {
    /// Asked for: the first row group opens the file.
    Waiting(HlsWriterOptions),
    /// The file is being written.
    Writing(Box<Direct>),
}

/// A file written while its rows arrive in order.
struct Direct {
    writer: HlsGeoparquetWriter<Scratch>,
    /// Rows per row group of the file.
    group_rows: usize,
    /// The key of the last row written: no later row may precede it.
    last: Option<(i64, String)>,
}

/// A granule's place in the file: its start time (the item's `datetime`) and id.
fn meta_key(meta: &GranuleMeta) -> (i64, &str) {
    (micros(&meta.begin), meta.granule_ur.as_str())
}

/// One sorted run.
enum Run {
    Memory(RecordBatch),
    Spilled(NamedTempFile),
    /// A file written early, up to the run that broke the order.
    Written(Scratched),
}

impl SortedRuns {
    /// Empty runs of `collection`'s rows; spilled runs go to `tmp_dir` (the system's
    /// temporary folder if `None`).
    pub fn new(collection: Collection, tmp_dir: Option<PathBuf>) -> SortedRuns {
        SortedRuns::with_limits(collection, tmp_dir, RUN_ROWS, MEMORY_LIMIT)
    }

    /// [`new`](Self::new) with other run sizes and memory limit (tests use small ones).
    pub fn with_limits(
        collection: Collection,
        tmp_dir: Option<PathBuf>,
        run_rows: usize,
        memory_limit: usize,
    ) -> SortedRuns {
        SortedRuns {
            builder: HlsBatchBuilder::new(collection),
            collection,
            tmp_dir,
            run_rows: run_rows.max(1),
            memory_limit,
            runs: Vec::new(),
            in_memory: 0,
            rows: 0,
            early: None,
            pending: Vec::new(),
            next_write: 2 * run_rows.max(1),
        }
    }

    /// Writes the rows early (see the module doc), into a file opened with `options` when
    /// the first row group is ready; rows are written a whole row group at a time.
    pub fn write_early(mut self, options: HlsWriterOptions) -> SortedRuns {
        self.early = Some(Early::Waiting(options));
        self
    }

    /// Checks a granule's values as [`HlsBatchBuilder::append_meta`] checks them, taking
    /// nothing.
    pub fn check_granule(&self, meta: &GranuleMeta) -> Result<()> {
        self.builder.check_meta(meta)
    }

    /// Takes a granule's values that passed [`check_granule`](Self::check_granule): written
    /// early if asked for ([`write_early`](Self::write_early)), else appended to the runs.
    pub fn push_granule(&mut self, meta: Box<GranuleMeta>) -> Result<()> {
        if self.early.is_none() {
            self.builder.append_checked_meta(&meta);
            return self.after_append();
        }
        self.rows += 1;
        self.pending.push(meta);
        if self.pending.len() >= self.next_write {
            self.write_pending(false)?;
            self.next_write = self.pending.len() + self.run_rows;
        }
        Ok(())
    }

    /// Writes the granules held (all of them if `all`, else those more than
    /// [`HOLD_BACK_MICROS`] before the newest, in whole row groups); if one precedes a row
    /// already written, the rows go to runs instead.
    fn write_pending(&mut self, all: bool) -> Result<()> {
        self.pending
            .sort_unstable_by(|a, b| meta_key(a).cmp(&meta_key(b)));
        let direct = match self.early.take() {
            Some(Early::Writing(direct)) => direct,
            Some(Early::Waiting(options)) => Box::new(Direct {
                writer: HlsGeoparquetWriter::new(
                    Scratch::new(self.tmp_dir.clone()),
                    self.collection,
                    options,
                )?,
                group_rows: options.max_row_group_row_count,
                last: None,
            }),
            None => return Ok(()),
        };
        let in_order = match (&direct.last, self.pending.first()) {
            (Some(last), Some(first)) => meta_key(first) >= (last.0, last.1.as_str()),
            _ => true,
        };
        if !in_order {
            return self.stop_early(*direct);
        }
        let mut direct = direct;
        let write = if all {
            self.pending.len()
        } else {
            let newest = self.pending.last().map_or(i64::MIN, |m| micros(&m.begin));
            let before = newest.saturating_sub(HOLD_BACK_MICROS);
            let released = self.pending.partition_point(|m| micros(&m.begin) < before);
            released / direct.group_rows * direct.group_rows
        };
        // Two collections' rows built at once would be held at once.
        let (builder, pending) = (&mut self.builder, &self.pending);
        // A row group is built in parts: the builders hold a part of it, the encoder the rest.
        let part = direct.group_rows.div_ceil(GROUP_PARTS);
        crate::write::parquet::building(|| -> Result<()> {
            for rows in pending[..write].chunks(part) {
                for meta in rows {
                    builder.append_checked_meta(meta);
                }
                direct.writer.write_batch(&builder.finish()?)?;
            }
            Ok(())
        })?;
        if let Some(m) = write.checked_sub(1).map(|i| &self.pending[i]) {
            direct.last = Some((micros(&m.begin), m.granule_ur.clone()));
        }
        self.pending.drain(..write);
        self.early = Some(Early::Writing(direct));
        Ok(())
    }

    /// Ends the rows: the file with every row written, if they were written early and
    /// stayed in order, else the runs.
    pub fn finish_early(mut self) -> Result<Ended> {
        match self.early {
            Some(Early::Writing(_)) => self.write_pending(true)?,
            // Fewer rows than make a write: the file is written with the settings of its
            // number of rows (a small one is written differently).
            Some(Early::Waiting(_)) => {
                self.early = None;
                self.pending_to_runs()?;
            }
            None => {}
        }
        match self.early.take() {
            Some(Early::Writing(mut direct)) => {
                direct.writer.include_bounds(self.builder.bounds());
                Ok(Ended::Written(Box::new(direct.writer)))
            }
            _ => Ok(Ended::Runs(Box::new(self))),
        }
    }

    /// Finishes the file written early as a run of its own; the granules not written go to
    /// runs, as every later row does.
    fn stop_early(&mut self, direct: Direct) -> Result<()> {
        if direct.last.is_some() {
            let (out, _) = direct.writer.finish_into_inner()?;
            let written = out.finish().map_err(|source| HlsArrowError::Spill {
                path: self.tmp_dir.clone(),
                source,
            })?;
            self.runs.push(Run::Written(written));
        }
        self.pending_to_runs()
    }

    /// Appends the granules not written to the runs.
    fn pending_to_runs(&mut self) -> Result<()> {
        for meta in std::mem::take(&mut self.pending) {
            self.builder.append_checked_meta(&meta);
            self.after_append_counted()?;
        }
        Ok(())
    }

    /// Rows appended so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Runs spilled to the scratch folder so far.
    pub fn spilled_runs(&self) -> usize {
        self.runs
            .iter()
            .filter(|r| matches!(r, Run::Spilled(_)))
            .count()
    }

    /// `[minx, miny, maxx, maxy]` of every geometry appended so far.
    pub fn bounds(&self) -> Option<[f64; 4]> {
        self.builder.bounds()
    }

    /// Checks one item's JSON bytes against the collection's fixed shape and appends it;
    /// on a shape error nothing is appended (see [`HlsArrowError::is_shape_mismatch`]).
    pub fn push_json(&mut self, json: &[u8]) -> Result<()> {
        self.builder.append_json(json)?;
        // Rows are written early only from granules' values.
        match self.early.take() {
            Some(Early::Writing(direct)) => self.stop_early(*direct)?,
            Some(Early::Waiting(_)) => self.pending_to_runs()?,
            None => {}
        }
        self.after_append()
    }

    fn after_append(&mut self) -> Result<()> {
        self.rows += 1;
        self.after_append_counted()
    }

    /// Seals a run once the builder holds enough rows.
    fn after_append_counted(&mut self) -> Result<()> {
        if self.builder.len() >= self.run_rows {
            self.seal()?;
        }
        Ok(())
    }

    /// Sorts the buffered rows into a run.
    fn seal(&mut self) -> Result<()> {
        if self.builder.is_empty() {
            return Ok(());
        }
        let batch = sort(&self.builder.finish()?)?;
        self.push_run(batch)
    }

    /// Keeps a sorted run, spilling the runs in memory past the limit.
    fn push_run(&mut self, batch: RecordBatch) -> Result<()> {
        self.in_memory += batch.get_array_memory_size();
        self.runs.push(Run::Memory(batch));
        if self.in_memory > self.memory_limit {
            self.spill()?;
        }
        Ok(())
    }

    /// Moves every run held in memory to the scratch folder.
    fn spill(&mut self) -> Result<()> {
        for run in &mut self.runs {
            if let Run::Memory(batch) = run {
                let file = spill_run(batch, &self.tmp_dir)?;
                *run = Run::Spilled(file);
            }
        }
        self.in_memory = 0;
        Ok(())
    }

    /// Writes every row, in (`datetime`, `id`) order, into `writer` (a writer of the same
    /// collection), in batches of `batch_rows`; the writer encodes a batch on a scoped thread
    /// while the next one is merged.
    pub fn write_into<W: Write + Send>(
        mut self,
        writer: &mut HlsGeoparquetWriter<W>,
        batch_rows: usize,
    ) -> Result<()> {
        self.seal()?;
        writer.include_bounds(self.builder.bounds());
        let batch_rows = batch_rows.max(1);
        if let [Run::Memory(batch)] = self.runs.as_slice() {
            // One run (a small day): already in order.
            let mut at = 0;
            while at < batch.num_rows() {
                let n = batch_rows.min(batch.num_rows() - at);
                writer.write_batch(&batch.slice(at, n))?;
                at += n;
            }
            return Ok(());
        }
        // The merge of a batch overlaps the encoding of the one before (on another thread):
        // the same batches in the same order, so the same file.
        std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<RecordBatch>(1);
            let encoder = scope.spawn(move || -> Result<()> {
                for batch in rx {
                    writer.write_batch(&batch)?;
                }
                Ok(())
            });
            // A send fails only once the encoder has stopped on an error, reported below.
            let merged = self.merge(batch_rows, |batch| tx.send(batch).is_ok());
            drop(tx);
            let encoded = encoder
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            encoded.and(merged)
        })
    }

    /// Merges the runs (sealed) into batches of `batch_rows` rows in order, given to `emit`
    /// until it answers `false`.
    fn merge(
        &mut self,
        batch_rows: usize,
        mut emit: impl FnMut(RecordBatch) -> bool,
    ) -> Result<()> {
        let mut cursors = Vec::with_capacity(self.runs.len());
        let schema = self.builder.schema();
        for run in self.runs.drain(..) {
            if let Some(c) = Cursor::open(run, &schema)? {
                cursors.push(c);
            }
        }
        let mut sources: Vec<RecordBatch> = Vec::new();
        let mut indices: Vec<(usize, usize)> = Vec::with_capacity(batch_rows);
        while let Some(next) = smallest(&cursors) {
            let cursor = &mut cursors[next];
            let slot = match cursor.slot {
                Some(slot) => slot,
                None => {
                    sources.push(cursor.batch.clone());
                    cursor.slot = Some(sources.len() - 1);
                    sources.len() - 1
                }
            };
            indices.push((slot, cursor.row));
            if !cursor.advance()? {
                cursors.swap_remove(next);
            }
            if indices.len() == batch_rows
                && !emit(gather(&mut sources, &mut indices, &mut cursors)?)
            {
                return Ok(());
            }
        }
        if !indices.is_empty() {
            emit(gather(&mut sources, &mut indices, &mut cursors)?);
        }
        Ok(())
    }
}

/// The gathered rows as one batch; forgets the batches they came from.
fn gather(
    sources: &mut Vec<RecordBatch>,
    indices: &mut Vec<(usize, usize)>,
    cursors: &mut [Cursor],
) -> Result<RecordBatch> {
    let refs: Vec<&RecordBatch> = sources.iter().collect();
    let batch = arrow_select::interleave::interleave_record_batch(&refs, indices)?;
    sources.clear();
    indices.clear();
    for c in cursors {
        c.slot = None;
    }
    Ok(batch)
}

/// The index of the cursor whose current row comes first.
fn smallest(cursors: &[Cursor]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, c) in cursors.iter().enumerate() {
        best = match best {
            Some(b) if cursors[b].cmp_row(c) != Ordering::Greater => Some(b),
            _ => Some(i),
        };
    }
    best
}

/// A run's rows sorted by `datetime` (a row without one first), then `id`.
fn sort(batch: &RecordBatch) -> Result<RecordBatch> {
    let (datetime, id) = keys(batch)?;
    let key = |i: u32| {
        let i = i as usize;
        let t = (!datetime.is_null(i)).then(|| datetime.value(i));
        (t, id.value(i))
    };
    let rows = u32::try_from(batch.num_rows()).map_err(|_| {
        arrow_schema::ArrowError::InvalidArgumentError("more than 2^32 rows in a run".into())
    })?;
    let mut order: Vec<u32> = (0..rows).collect();
    order.sort_unstable_by(|&a, &b| key(a).cmp(&key(b)));
    let order = UInt32Array::from(order);
    Ok(arrow_select::take::take_record_batch(batch, &order)?)
}

fn datetime_column(batch: &RecordBatch) -> Result<usize> {
    Ok(batch.schema().index_of("datetime")?)
}

fn id_column(batch: &RecordBatch) -> Result<usize> {
    Ok(batch.schema().index_of("id")?)
}

/// Writes a sorted run to a temporary file as an Arrow IPC stream of small batches.
fn spill_run(batch: &RecordBatch, tmp_dir: &Option<PathBuf>) -> Result<NamedTempFile> {
    let file =
        crate::write::scratch::temp_file(tmp_dir).map_err(|source| HlsArrowError::Spill {
            path: tmp_dir.clone(),
            source,
        })?;
    let path = Some(file.path().to_path_buf());
    let out = file.reopen().map_err(|source| HlsArrowError::Spill {
        path: path.clone(),
        source,
    })?;
    let mut w = StreamWriter::try_new(BufWriter::with_capacity(256 << 10, out), &batch.schema())?;
    let mut at = 0;
    while at < batch.num_rows() {
        let n = SPILL_BATCH_ROWS.min(batch.num_rows() - at);
        w.write(&batch.slice(at, n))?;
        at += n;
    }
    w.finish()?;
    w.into_inner()?
        .flush()
        .map_err(|source| HlsArrowError::Spill { path, source })?;
    Ok(file)
}

/// Where the merge is in one run.
struct Cursor {
    rest: Rest,
    batch: RecordBatch,
    datetime: TimestampMicrosecondArray,
    id: StringArray,
    row: usize,
    /// The index of `batch` in the batch being gathered, once a row of it was taken.
    slot: Option<usize>,
}

/// The batches of a run after the current one.
enum Rest {
    Memory(VecDeque<RecordBatch>),
    Spilled {
        reader: Box<StreamReader<BufReader<File>>>,
        _file: NamedTempFile,
    },
    Written {
        reader: Box<ParquetRecordBatchReader>,
        /// The batches' schema (the file's has its metadata).
        schema: SchemaRef,
        _data: Scratched,
    },
}

impl Rest {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        match self {
            Rest::Memory(batches) => Ok(batches.pop_front()),
            Rest::Spilled { reader, .. } => Ok(reader.next().transpose()?),
            Rest::Written { reader, schema, .. } => match reader.next().transpose()? {
                Some(b) => Ok(Some(RecordBatch::try_new(
                    schema.clone(),
                    b.columns().to_vec(),
                )?)),
                None => Ok(None),
            },
        }
    }
}

/// The batches of a file written early, read back as a run.
fn read_back<T: ChunkReader + 'static>(file: T) -> Result<ParquetRecordBatchReader> {
    Ok(ParquetRecordBatchReaderBuilder::try_new(file)?
        .with_batch_size(SPILL_BATCH_ROWS)
        .build()?)
}

impl Cursor {
    /// A cursor at the first row of a run of rows of `schema`; `None` if the run is empty.
    fn open(run: Run, schema: &SchemaRef) -> Result<Option<Cursor>> {
        let mut rest = match run {
            Run::Memory(batch) => Rest::Memory(VecDeque::from([batch])),
            Run::Spilled(file) => {
                let path = Some(file.path().to_path_buf());
                let f = file
                    .reopen()
                    .map_err(|source| HlsArrowError::Spill { path, source })?;
                let reader = StreamReader::try_new(BufReader::with_capacity(256 << 10, f), None)?;
                Rest::Spilled {
                    reader: Box::new(reader),
                    _file: file,
                }
            }
            Run::Written(data) => {
                let reader = match &data {
                    Scratched::Memory(bytes) => read_back(bytes.clone())?,
                    Scratched::File(file) => {
                        let path = Some(file.path().to_path_buf());
                        read_back(
                            file.reopen()
                                .map_err(|source| HlsArrowError::Spill { path, source })?,
                        )?
                    }
                };
                Rest::Written {
                    reader: Box::new(reader),
                    schema: schema.clone(),
                    _data: data,
                }
            }
        };
        loop {
            match rest.next_batch()? {
                None => return Ok(None),
                Some(b) if b.num_rows() == 0 => continue,
                Some(batch) => {
                    let (datetime, id) = keys(&batch)?;
                    return Ok(Some(Cursor {
                        rest,
                        batch,
                        datetime,
                        id,
                        row: 0,
                        slot: None,
                    }));
                }
            }
        }
    }

    /// Moves to the next row; false at the end of the run.
    fn advance(&mut self) -> Result<bool> {
        self.row += 1;
        if self.row < self.batch.num_rows() {
            return Ok(true);
        }
        loop {
            match self.rest.next_batch()? {
                None => return Ok(false),
                Some(b) if b.num_rows() == 0 => continue,
                Some(batch) => {
                    (self.datetime, self.id) = keys(&batch)?;
                    self.batch = batch;
                    self.row = 0;
                    self.slot = None;
                    return Ok(true);
                }
            }
        }
    }

    fn key(&self) -> (Option<i64>, &str) {
        let t = (!self.datetime.is_null(self.row)).then(|| self.datetime.value(self.row));
        (t, self.id.value(self.row))
    }

    fn cmp_row(&self, other: &Cursor) -> Ordering {
        self.key().cmp(&other.key())
    }
}

fn keys(batch: &RecordBatch) -> Result<(TimestampMicrosecondArray, StringArray)> {
    let datetime = batch
        .column(datetime_column(batch)?)
        .as_primitive::<TimestampMicrosecondType>()
        .clone();
    let id = batch.column(id_column(batch)?).as_string::<i32>().clone();
    Ok((datetime, id))
}
