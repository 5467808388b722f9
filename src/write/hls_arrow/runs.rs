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

use super::builder::HlsBatchBuilder;
use super::error::{HlsArrowError, Result};
use super::writer::HlsGeoparquetWriter;
use crate::Collection;
use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use arrow_array::{Array, RecordBatch, StringArray, TimestampMicrosecondArray, UInt32Array};
use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::StreamWriter;
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
}

impl std::fmt::Debug for SortedRuns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SortedRuns")
            .field("collection", &self.collection)
            .field("rows", &self.rows)
            .field("runs", &self.runs.len())
            .finish_non_exhaustive()
    }
}

/// One sorted run.
enum Run {
    Memory(RecordBatch),
    Spilled(NamedTempFile),
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
        }
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
        self.after_append()
    }

    /// Appends the row of a granule's ECHO10 values, built straight from them (see
    /// [`HlsBatchBuilder::append_meta`]).
    pub fn push_meta(&mut self, meta: &crate::source::hls::GranuleMeta) -> Result<()> {
        self.builder.append_meta(meta)?;
        self.after_append()
    }

    fn after_append(&mut self) -> Result<()> {
        self.rows += 1;
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
        for run in self.runs.drain(..) {
            if let Some(c) = Cursor::open(run)? {
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
}

impl Rest {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        match self {
            Rest::Memory(batches) => Ok(batches.pop_front()),
            Rest::Spilled { reader, .. } => Ok(reader.next().transpose()?),
        }
    }
}

impl Cursor {
    /// A cursor at the first row of a run; `None` if the run is empty.
    fn open(run: Run) -> Result<Option<Cursor>> {
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
