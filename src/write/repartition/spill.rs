//! Spilling rows to bucket files (Arrow IPC streams) by the top bits of their Hilbert key,
//! and reading buckets back sorted.

use super::hilbert::{NO_KEY, bbox_key};
use crate::error::ColumnProblem;
use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::{Array, ArrayRef, RecordBatch, StructArray, UInt32Array};
use arrow_ipc::reader::{StreamDecoder, StreamReader};
use arrow_ipc::writer::StreamWriter;
use arrow_schema::{ArrowError, DataType, SchemaRef};
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

/// Why spilling rows to bucket files, or reading them back, failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpillError {
    /// A bucket file that cannot be created or opened.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The bucket file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A bucket file that cannot be written or read as an Arrow IPC stream.
    #[error("{}: {source}", .path.display())]
    Ipc {
        /// The bucket file.
        path: PathBuf,
        /// Arrow's error.
        #[source]
        source: ArrowError,
    },
    /// Gathering a bucket's rows into one batch failed.
    #[error("gathering rows of bucket {bucket}: {source}")]
    Gather {
        /// The bucket's index.
        bucket: usize,
        /// Arrow's error.
        #[source]
        source: ArrowError,
    },
    /// A batch pushed with a number of keys other than its number of rows.
    #[error("a batch of {rows} rows came with {keys} keys")]
    Keys {
        /// Rows in the batch.
        rows: usize,
        /// Keys given.
        keys: usize,
    },
    /// A thread of the spill (putting rows in bucket order, writing the bucket files)
    /// could not be started.
    #[error("starting a thread of the spill: {0}")]
    Thread(#[source] std::io::Error),
    /// A thread of the spill panicked.
    #[error("a thread of the spill panicked")]
    ThreadPanicked,
    /// A thread of the spill was handed rows after it had stopped on an error (returned
    /// then).
    #[error("the spill stopped on an earlier error")]
    Stopped,
    /// Arrow failed on a bucket's rows (reading a batch back, gathering sorted rows).
    #[error("{0}")]
    Arrow(#[source] ArrowError),
    /// The `id` or `bbox` column of spilled rows cannot be read.
    #[error("{0}")]
    Columns(#[from] ColumnProblem),
}

/// Bits of the key that choose a row's bucket, at each level of spilling.
pub const FANOUT_BITS: u32 = 6;
/// Buckets per spill. 64 rather than 256: with the spill buffer spread over fewer buckets,
/// each IPC message holds 4× the rows, and messages (~250 columns each) cost per message to
/// write and read back; a month's bucket (~30 MB of Arrow data) still sorts in memory.
pub const FANOUT: usize = 1 << FANOUT_BITS;

/// The shift that takes the bits of a key choosing its bucket at `level` (0: the first
/// spill, 1: a bucket split again, …) to the lowest bits.
pub fn shift_of(level: u32) -> u32 {
    32 - FANOUT_BITS * (level + 1)
}

/// The Hilbert keys of a batch's rows, from its `bbox` struct column (`xmin`, `ymin`, `xmax`,
/// `ymax`). Rows with a null or incomplete bbox get [`NO_KEY`].
pub fn batch_keys(batch: &RecordBatch) -> Result<Vec<u32>, ColumnProblem> {
    let bbox = batch.column_by_name("bbox").ok_or(ColumnProblem::NoBbox)?;
    let Some(bbox) = bbox.as_any().downcast_ref::<StructArray>() else {
        return Err(ColumnProblem::BboxNotAStruct(bbox.data_type().clone()));
    };
    let part = |field: &'static str| -> Result<ArrayRef, ColumnProblem> {
        let col = bbox
            .column_by_name(field)
            .ok_or(ColumnProblem::BboxField(field))?;
        arrow_cast::cast(col, &DataType::Float64)
            .map_err(|source| ColumnProblem::BboxCast { field, source })
    };
    let (xmin, ymin, xmax, ymax) = (part("xmin")?, part("ymin")?, part("xmax")?, part("ymax")?);
    let (xmin, ymin, xmax, ymax) = (
        xmin.as_primitive::<Float64Type>(),
        ymin.as_primitive::<Float64Type>(),
        xmax.as_primitive::<Float64Type>(),
        ymax.as_primitive::<Float64Type>(),
    );
    Ok((0..batch.num_rows())
        .map(|i| {
            if bbox.is_null(i)
                || xmin.is_null(i)
                || ymin.is_null(i)
                || xmax.is_null(i)
                || ymax.is_null(i)
            {
                NO_KEY
            } else {
                bbox_key(xmin.value(i), ymin.value(i), xmax.value(i), ymax.value(i))
            }
        })
        .collect())
}

/// The item ids of a batch (its `id` column), as strings; a null id is an error.
pub fn batch_ids(batch: &RecordBatch) -> Result<Vec<&str>, ColumnProblem> {
    let col = batch.column_by_name("id").ok_or(ColumnProblem::NoId)?;
    let ids: Vec<Option<&str>> = match col.data_type() {
        DataType::Utf8 => col.as_string::<i32>().iter().collect(),
        DataType::LargeUtf8 => col.as_string::<i64>().iter().collect(),
        DataType::Utf8View => col.as_string_view().iter().collect(),
        t => return Err(ColumnProblem::IdNotAString(t.clone())),
    };
    ids.into_iter()
        .collect::<Option<Vec<_>>>()
        .ok_or(ColumnProblem::NullId)
}

/// One bucket's spilled rows.
#[derive(Debug)]
pub struct Bucket {
    /// The IPC stream file.
    pub path: PathBuf,
    /// Rows in it.
    pub rows: u64,
    /// Size in bytes of the Arrow data (about the memory it takes back).
    pub bytes: u64,
}

impl Bucket {
    /// A reader of the bucket's batches.
    pub fn reader(&self) -> Result<StreamReader<BufReader<File>>, SpillError> {
        let file = File::open(&self.path).map_err(|source| SpillError::Io {
            path: self.path.clone(),
            source,
        })?;
        StreamReader::try_new(BufReader::with_capacity(1 << 20, file), None)
            .map_err(|source| self.ipc(source))
    }

    /// Reads every batch of the bucket: the file in one read, its batches decoded in place
    /// (their arrays are slices of that one buffer, nothing copied again).
    pub fn read(&self) -> Result<Vec<RecordBatch>, SpillError> {
        let bytes = std::fs::read(&self.path).map_err(|source| SpillError::Io {
            path: self.path.clone(),
            source,
        })?;
        let mut buffer = arrow_buffer::Buffer::from_vec(bytes);
        let mut decoder = StreamDecoder::new();
        let mut batches = Vec::new();
        while !buffer.is_empty() {
            if let Some(batch) = decoder.decode(&mut buffer).map_err(|e| self.ipc(e))? {
                batches.push(batch);
            }
        }
        decoder.finish().map_err(|e| self.ipc(e))?;
        Ok(batches)
    }

    /// An Arrow error reading this bucket's file.
    pub fn ipc(&self, source: ArrowError) -> SpillError {
        SpillError::Ipc {
            path: self.path.clone(),
            source,
        }
    }

    /// Deletes the bucket file.
    pub fn remove(self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::debug!("removing {}: {e}", self.path.display());
        }
    }
}

#[derive(Default)]
struct Slot {
    /// The bucket's rows not yet written: slices of batches already in bucket order.
    pending: Vec<RecordBatch>,
    /// Rows in `pending`, and about the bytes of Arrow data they hold.
    pending_rows: usize,
    pending_bytes: u64,
    /// Rows and bytes handed to the bucket's writer.
    rows: u64,
    bytes: u64,
}

/// A bucket's rows to write out: slices to join into one IPC message.
struct Flush {
    bucket: usize,
    slices: Vec<RecordBatch>,
}

/// The bucket files, written on a thread of their own while the next rows are read and
/// put in bucket order.
struct BucketFiles {
    schema: SchemaRef,
    paths: Vec<PathBuf>,
    writers: Vec<Option<StreamWriter<BufWriter<File>>>>,
}

impl StageWork for BucketFiles {
    type Item = Flush;
    type Output = ();

    fn take(&mut self, flush: Flush) -> Result<(), SpillError> {
        let b = flush.bucket;
        let batch = arrow_select::concat::concat_batches(&self.schema, &flush.slices)
            .map_err(|source| SpillError::Gather { bucket: b, source })?;
        drop(flush.slices);
        let path = &self.paths[b];
        let writer = match &mut self.writers[b] {
            Some(w) => w,
            None => {
                let file = File::create(path).map_err(|source| SpillError::Io {
                    path: path.clone(),
                    source,
                })?;
                let w =
                    StreamWriter::try_new(BufWriter::with_capacity(64 * 1024, file), &self.schema)
                        .map_err(|source| SpillError::Ipc {
                            path: path.clone(),
                            source,
                        })?;
                self.writers[b].insert(w)
            }
        };
        writer.write(&batch).map_err(|source| SpillError::Ipc {
            path: path.clone(),
            source,
        })
    }

    /// Ends every bucket file written to.
    fn end(self) -> Result<(), SpillError> {
        for (writer, path) in self.writers.into_iter().zip(&self.paths) {
            if let Some(mut w) = writer {
                w.finish().map_err(|source| SpillError::Ipc {
                    path: path.clone(),
                    source,
                })?;
            }
        }
        Ok(())
    }
}

/// What runs on the thread of a [`Stage`] of the spill's pipeline.
trait StageWork: Send + 'static {
    /// What it is handed.
    type Item: Send + 'static;
    /// What it gives back once its channel is closed.
    type Output: Send + 'static;
    /// Takes the next item; an error stops the stage.
    fn take(&mut self, item: Self::Item) -> Result<(), SpillError>;
    /// Ends the work once every item was taken.
    fn end(self) -> Result<Self::Output, SpillError>;
}

/// A stage of the spill's pipeline: its work on a thread of its own, fed through a bounded
/// channel. Dropped (a spill given up on an error), it still waits for its thread, so that
/// no bucket file is written after the temporary folder is removed.
struct Stage<W: StageWork> {
    tx: Option<std::sync::mpsc::SyncSender<W::Item>>,
    thread: Option<std::thread::JoinHandle<Result<W::Output, SpillError>>>,
}

impl<W: StageWork> Stage<W> {
    /// Starts `work` on a thread named `name`, with at most `queue` items on their way.
    fn start(name: &str, queue: usize, mut work: W) -> Result<Stage<W>, SpillError> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<W::Item>(queue);
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                for item in rx {
                    work.take(item)?;
                }
                work.end()
            })
            .map_err(SpillError::Thread)?;
        Ok(Stage {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Hands the stage an item; if it stopped, the error it stopped on.
    fn send(&mut self, item: W::Item) -> Result<(), SpillError> {
        let sent = match &self.tx {
            Some(tx) => tx.send(item).is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        Err(self.stop().err().unwrap_or(SpillError::Stopped))
    }

    /// Closes the channel, waits for the work to end, and gives what it ended with.
    fn join(mut self) -> Result<W::Output, SpillError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<W::Output, SpillError> {
        self.tx = None;
        let thread = self.thread.take().ok_or(SpillError::Stopped)?;
        thread.join().unwrap_or(Err(SpillError::ThreadPanicked))
    }
}

impl<W: StageWork> Drop for Stage<W> {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.stop();
        }
    }
}

/// Buckets' rows on their way to the bucket files' writer, at most: all that one
/// [`Distributor::flush_all`] hands over, so that the rows are read and put in bucket order
/// while the writer writes the previous ones out.
const WRITE_QUEUE: usize = FANOUT;

/// Batches on their way to the distributor, at most: a batch of a daily file is ~25 MB of
/// Arrow data.
const DISTRIBUTE_QUEUE: usize = 1;

/// Distributes rows over [`FANOUT`] bucket files by `(key >> shift) % FANOUT`, buffering a
/// little in memory so that each IPC message holds a useful number of rows.
///
/// The rows are held as they come until they pass the budget (a small month is sorted in
/// memory from them and never touches the disk). Past it, the spill is a pipeline of three
/// threads: the caller's reads the rows (and checks them); a [`Distributor`] puts each batch
/// in bucket order by one gather (the batch's columns are small enough to stay in the CPU's
/// caches), so that a bucket's rows in it are one slice; the bucket files' writer joins a
/// bucket's slices (sequential copies) and writes them out. Gathering a bucket's rows
/// straight from every batch held instead took a cache miss per value, and all on one core:
/// half of a month's repartition.
pub struct Spiller {
    schema: SchemaRef,
    paths: Vec<PathBuf>,
    shift: u32,
    budget: usize,
    /// The batches pushed as they came, with their keys, while the spill is in memory.
    held: Vec<(RecordBatch, Vec<u32>)>,
    held_bytes: usize,
    /// The distributor's thread, once the rows passed the budget.
    distributor: Option<Stage<Distributor>>,
}

impl std::fmt::Debug for Spiller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spiller")
            .field("shift", &self.shift)
            .field("held_bytes", &self.held_bytes)
            .field("spilling", &self.distributor.is_some())
            .finish_non_exhaustive()
    }
}

/// Rows a bucket buffers before it is written out.
const FLUSH_ROWS: usize = 4096;

impl Spiller {
    /// A spiller writing `{dir}/{name}-XX.arrows` files, buffering up to `budget` bytes.
    pub fn new(dir: &Path, name: &str, schema: SchemaRef, shift: u32, budget: usize) -> Spiller {
        Spiller {
            schema,
            paths: (0..FANOUT)
                .map(|i| dir.join(format!("{name}-{i:02x}.arrows")))
                .collect(),
            shift,
            budget,
            held: Vec::new(),
            held_bytes: 0,
            distributor: None,
        }
    }

    /// Adds a batch (of the spiller's schema) whose rows have `keys`.
    pub fn push(&mut self, batch: &RecordBatch, keys: &[u32]) -> Result<(), SpillError> {
        let rows = batch.num_rows();
        if keys.len() != rows {
            return Err(SpillError::Keys {
                rows,
                keys: keys.len(),
            });
        }
        if rows == 0 {
            return Ok(());
        }
        let rows = (batch.clone(), keys.to_vec());
        match &mut self.distributor {
            Some(d) => d.send(rows)?,
            None => {
                self.held_bytes += batch.get_array_memory_size();
                self.held.push(rows);
                if self.held_bytes > self.budget {
                    self.distributor = Some(self.start()?);
                }
            }
        }
        Ok(())
    }

    /// Starts the distributor and hands it the rows held.
    fn start(&mut self) -> Result<Stage<Distributor>, SpillError> {
        let files = BucketFiles {
            schema: self.schema.clone(),
            paths: self.paths.clone(),
            writers: (0..FANOUT).map(|_| None).collect(),
        };
        let distributor = Distributor {
            shift: self.shift,
            budget: self.budget,
            slots: (0..FANOUT).map(|_| Slot::default()).collect(),
            pending_bytes: 0,
            writer: Stage::start("repartition-spill", WRITE_QUEUE, files)?,
        };
        let mut d = Stage::start("repartition-distribute", DISTRIBUTE_QUEUE, distributor)?;
        self.held_bytes = 0;
        for rows in std::mem::take(&mut self.held) {
            d.send(rows)?;
        }
        Ok(d)
    }

    /// Ends the spill: the rows as they are held when nothing was written out yet and they
    /// take at most `in_memory_bytes` (a small month never touches the disk), else every
    /// buffered row written out and the non-empty buckets in key order.
    pub fn finish(mut self, in_memory_bytes: usize) -> Result<Spilled, SpillError> {
        let d = match self.distributor.take() {
            Some(d) => d,
            None if self.held_bytes <= in_memory_bytes => {
                let held = std::mem::take(&mut self.held);
                return Ok(Spilled::InMemory(
                    held.into_iter().map(|(b, _)| b).collect(),
                ));
            }
            None => self.start()?,
        };
        let slots = d.join()?;
        Ok(Spilled::Buckets(
            slots
                .into_iter()
                .zip(&self.paths)
                .filter(|(slot, _)| slot.rows > 0)
                .map(|(slot, path)| Bucket {
                    path: path.clone(),
                    rows: slot.rows,
                    bytes: slot.bytes,
                })
                .collect(),
        ))
    }
}

/// Puts batches in bucket order and hands each bucket's rows to the bucket files' writer:
/// the middle of the spill's pipeline, on a thread of its own.
struct Distributor {
    shift: u32,
    budget: usize,
    slots: Vec<Slot>,
    /// Bytes of the rows in the slots.
    pending_bytes: usize,
    /// The bucket files' writer.
    writer: Stage<BucketFiles>,
}

impl StageWork for Distributor {
    type Item = (RecordBatch, Vec<u32>);
    type Output = Vec<Slot>;

    fn take(&mut self, (batch, keys): Self::Item) -> Result<(), SpillError> {
        self.push(&batch, &keys)
    }

    /// Writes out what is pending, waits for the writer, and gives the slots' counts.
    fn end(mut self) -> Result<Vec<Slot>, SpillError> {
        self.flush_all()?;
        self.writer.join()?;
        Ok(self.slots)
    }
}

impl Distributor {
    fn push(&mut self, batch: &RecordBatch, keys: &[u32]) -> Result<(), SpillError> {
        self.pending_bytes += batch.get_array_memory_size();
        self.distribute(batch, keys)?;
        // Half the budget pending, half on its way to the writer.
        if self.pending_bytes > self.budget / 2 {
            self.flush_all()?;
        } else {
            for b in 0..FANOUT {
                if self.slots[b].pending_rows >= FLUSH_ROWS {
                    self.flush(b)?;
                }
            }
        }
        Ok(())
    }

    /// Puts a batch's rows in bucket order (a counting sort of their buckets, then one
    /// gather) and gives each bucket its slice.
    fn distribute(&mut self, batch: &RecordBatch, keys: &[u32]) -> Result<(), SpillError> {
        let rows = batch.num_rows();
        let bucket_of = |key: u32| (key >> self.shift) as usize % FANOUT;
        let mut counts = [0u32; FANOUT];
        for &key in keys {
            counts[bucket_of(key)] += 1;
        }
        let mut next = [0u32; FANOUT];
        let mut start = 0u32;
        for (n, c) in next.iter_mut().zip(&counts) {
            *n = start;
            start += c;
        }
        let starts = next;
        let mut order = vec![0u32; rows];
        for (row, &key) in keys.iter().enumerate() {
            let b = bucket_of(key);
            order[next[b] as usize] = row as u32;
            next[b] += 1;
        }
        let sorted = arrow_select::take::take_record_batch(batch, &UInt32Array::from(order))
            .map_err(SpillError::Arrow)?;
        let per_row = sorted.get_array_memory_size() as u64 / rows.max(1) as u64;
        for (b, slot) in self.slots.iter_mut().enumerate() {
            let n = counts[b] as usize;
            if n > 0 {
                slot.pending.push(sorted.slice(starts[b] as usize, n));
                slot.pending_rows += n;
                slot.pending_bytes += per_row * n as u64;
            }
        }
        Ok(())
    }

    /// Writes out every bucket's pending rows.
    fn flush_all(&mut self) -> Result<(), SpillError> {
        for b in 0..FANOUT {
            self.flush(b)?;
        }
        self.pending_bytes = 0;
        Ok(())
    }

    /// Hands a bucket's pending rows to the writer.
    fn flush(&mut self, b: usize) -> Result<(), SpillError> {
        let slot = &mut self.slots[b];
        if slot.pending.is_empty() {
            return Ok(());
        }
        let flush = Flush {
            bucket: b,
            slices: std::mem::take(&mut slot.pending),
        };
        slot.rows += slot.pending_rows as u64;
        // A slice may share its parent's buffers: its share of them is what it takes back.
        slot.bytes += slot.pending_bytes;
        slot.pending_rows = 0;
        slot.pending_bytes = 0;
        self.writer.send(flush)
    }
}

/// What a spill ended with.
#[derive(Debug)]
pub enum Spilled {
    /// Every row, still in the batches pushed (few enough to sort in memory).
    InMemory(Vec<RecordBatch>),
    /// The bucket files, in key order.
    Buckets(Vec<Bucket>),
}

/// The order in which to write a bucket's rows: `(batch, row)` pairs sorted by Hilbert key,
/// then by id (so that the output does not depend on the order of the inputs).
pub fn sorted_order(batches: &[RecordBatch]) -> Result<Vec<(usize, usize)>, ColumnProblem> {
    let mut keyed: Vec<(u32, usize, usize)> = Vec::new();
    let mut ids: Vec<Vec<&str>> = Vec::with_capacity(batches.len());
    for (b, batch) in batches.iter().enumerate() {
        let keys = batch_keys(batch)?;
        keyed.extend(keys.into_iter().enumerate().map(|(r, k)| (k, b, r)));
        ids.push(batch_ids(batch)?);
    }
    keyed.sort_unstable_by(|x, y| x.0.cmp(&y.0).then_with(|| ids[x.1][x.2].cmp(ids[y.1][y.2])));
    Ok(keyed.into_iter().map(|(_, b, r)| (b, r)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Float64Array, StringArray};
    use arrow_schema::{Field, Fields, Schema};
    use std::sync::Arc;

    fn batch(rows: &[(&str, f64, f64)]) -> RecordBatch {
        let f = |n: &str| Field::new(n, DataType::Float64, false);
        let fields = Fields::from(vec![f("xmin"), f("ymin"), f("xmax"), f("ymax")]);
        let x: Float64Array = rows.iter().map(|r| r.1).collect();
        let y: Float64Array = rows.iter().map(|r| r.2).collect();
        let bbox = StructArray::try_new(
            fields.clone(),
            vec![
                Arc::new(x.clone()) as ArrayRef,
                Arc::new(y.clone()),
                Arc::new(x),
                Arc::new(y),
            ],
            None,
        )
        .unwrap();
        let schema = Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("bbox", DataType::Struct(fields), true),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(bbox),
            ],
        )
        .unwrap()
    }

    /// Pushes `rows` in batches of `chunk`, each with its keys.
    fn push_chunks(spiller: &mut Spiller, rows: &[(&str, f64, f64)], chunk: usize) {
        for chunk in rows.chunks(chunk) {
            let b = batch(chunk);
            spiller.push(&b, &batch_keys(&b).unwrap()).unwrap();
        }
    }

    #[test]
    fn buckets_come_back_in_key_order_with_every_row() {
        let dir = tempfile::tempdir().unwrap();
        // A grid of points over the world, in scrambled order.
        let mut rows = Vec::new();
        for i in 0..2000u32 {
            let j = (i * 7919) % 2000;
            let lon = -179.0 + f64::from(j % 50) * 7.1;
            let lat = -89.0 + f64::from(j / 50) * 4.4;
            rows.push((format!("id{j:04}"), lon, lat));
        }
        let refs: Vec<(&str, f64, f64)> = rows.iter().map(|r| (r.0.as_str(), r.1, r.2)).collect();
        let mut spiller = Spiller::new(
            dir.path(),
            "t",
            batch(&refs[..1]).schema(),
            shift_of(0),
            1 << 20,
        );
        push_chunks(&mut spiller, &refs, 300);
        let Spilled::Buckets(buckets) = spiller.finish(0).unwrap() else {
            panic!("a spill past its in-memory limit ends in buckets");
        };
        assert!(buckets.len() > 30, "{} buckets", buckets.len());
        let mut all_keys = Vec::new();
        let mut ids = Vec::new();
        let mut last_bucket = None;
        for bucket in buckets {
            let batches = bucket.read().unwrap();
            assert_eq!(
                batches.iter().map(|b| b.num_rows() as u64).sum::<u64>(),
                bucket.rows
            );
            let order = sorted_order(&batches).unwrap();
            let mut keys = Vec::new();
            for &(b, r) in &order {
                keys.push(batch_keys(&batches[b]).unwrap()[r]);
                ids.push(batch_ids(&batches[b]).unwrap()[r].to_string());
            }
            // One bucket holds one value of the top bits, later buckets higher ones.
            let top = keys[0] >> shift_of(0);
            assert!(keys.iter().all(|k| k >> shift_of(0) == top));
            assert!(last_bucket.is_none_or(|l| l < top));
            last_bucket = Some(top);
            all_keys.extend(keys);
            bucket.remove();
        }
        assert!(all_keys.is_sorted());
        let in_buckets = ids.clone();
        ids.sort();
        let mut expected: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
        expected.sort();
        assert_eq!(ids, expected);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

        // The same rows, few enough to stay in memory: no file, and the same order.
        let mut spiller = Spiller::new(
            dir.path(),
            "m",
            batch(&refs[..1]).schema(),
            shift_of(0),
            1 << 30,
        );
        push_chunks(&mut spiller, &refs, 300);
        let Spilled::InMemory(batches) = spiller.finish(1 << 30).unwrap() else {
            panic!("a small spill stays in memory");
        };
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let in_memory: Vec<String> = sorted_order(&batches)
            .unwrap()
            .into_iter()
            .map(|(b, r)| batch_ids(&batches[b]).unwrap()[r].to_string())
            .collect();
        assert_eq!(in_memory, in_buckets);
    }

    #[test]
    fn each_bucket_counts_its_share_of_the_bytes_not_its_batches() {
        // 4,000 rows over the globe in batches of 1,000: each batch gives every bucket a
        // slice of itself. A bucket counted by its slices' parents would count ~all of them.
        let dir = tempfile::tempdir().unwrap();
        let rows: Vec<(String, f64, f64)> = (0..4000u32)
            .map(|i| {
                let j = (i * 7919) % 4000;
                (
                    format!("id{j:05}"),
                    -179.0 + f64::from(j % 80) * 4.4,
                    -89.0 + f64::from(j / 80) * 3.5,
                )
            })
            .collect();
        let refs: Vec<(&str, f64, f64)> = rows.iter().map(|r| (r.0.as_str(), r.1, r.2)).collect();
        let batches: Vec<RecordBatch> = refs.chunks(1000).map(batch).collect();
        let total: usize = batches.iter().map(|b| b.get_array_memory_size()).sum();
        let mut spiller = Spiller::new(dir.path(), "s", batches[0].schema(), shift_of(0), 1);
        for b in &batches {
            spiller.push(b, &batch_keys(b).unwrap()).unwrap();
        }
        let Spilled::Buckets(buckets) = spiller.finish(0).unwrap() else {
            panic!("a spill past its budget ends in buckets");
        };
        assert!(buckets.len() > 30, "{} buckets", buckets.len());
        assert_eq!(buckets.iter().map(|b| b.rows).sum::<u64>(), 4000);
        let counted: u64 = buckets.iter().map(|b| b.bytes).sum();
        assert!(
            counted > 0 && counted <= 2 * total as u64,
            "buckets count {counted} bytes for {total} bytes of rows"
        );
    }

    #[test]
    fn a_spill_that_cannot_write_its_buckets_says_which_file_and_stops() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("gone");
        let b = batch(&[("a", 1.0, 2.0), ("b", -50.0, 40.0), ("c", 120.0, -30.0)]);
        let keys = batch_keys(&b).unwrap();
        // A budget of one byte: every push past the first writes out.
        let mut spiller = Spiller::new(&gone, "x", b.schema(), shift_of(0), 1);
        let mut result = Ok(());
        for _ in 0..1000 {
            result = spiller.push(&b, &keys);
            if result.is_err() {
                break;
            }
        }
        let e = match result {
            Err(e) => e,
            Ok(()) => spiller.finish(0).unwrap_err(),
        };
        let SpillError::Io { path, source } = &e else {
            panic!("not an I/O error: {e:?}");
        };
        assert!(path.starts_with(&gone), "{}", path.display());
        assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        assert!(!gone.exists());
    }

    #[test]
    fn keys_that_do_not_match_the_rows_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let b = batch(&[("a", 1.0, 2.0), ("b", 3.0, 4.0)]);
        let mut spiller = Spiller::new(dir.path(), "k", b.schema(), shift_of(0), 0);
        let e = spiller.push(&b, &[1]).unwrap_err();
        assert!(matches!(e, SpillError::Keys { rows: 2, keys: 1 }), "{e:?}");
        assert_eq!(e.to_string(), "a batch of 2 rows came with 1 keys");
    }

    #[test]
    fn ties_are_ordered_by_id() {
        let b1 = batch(&[("c", 1.0, 1.0), ("a", 1.0, 1.0)]);
        let b2 = batch(&[("b", 1.0, 1.0), ("z", -100.0, -80.0)]);
        let order = sorted_order(&[b1, b2]).unwrap();
        assert_eq!(order, vec![(1, 1), (0, 1), (1, 0), (0, 0)]);
    }

    #[test]
    fn unreadable_id_and_bbox_columns_say_why() {
        let b = batch(&[("a", 1.0, 2.0)]);
        let without = |name: &str| {
            let keep: Vec<usize> = (0..b.num_columns())
                .filter(|&i| b.schema().field(i).name() != name)
                .collect();
            b.project(&keep).unwrap()
        };
        assert!(matches!(
            batch_keys(&without("bbox")),
            Err(ColumnProblem::NoBbox)
        ));
        assert!(matches!(
            batch_ids(&without("id")),
            Err(ColumnProblem::NoId)
        ));

        // An integer id column, and a string bbox column.
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("bbox", DataType::Utf8, true),
        ]);
        let odd = RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(arrow_array::Int64Array::from(vec![1])) as ArrayRef,
                Arc::new(StringArray::from(vec!["0,0,1,1"])),
            ],
        )
        .unwrap();
        assert!(matches!(
            batch_ids(&odd),
            Err(ColumnProblem::IdNotAString(DataType::Int64))
        ));
        let e = batch_keys(&odd).unwrap_err();
        assert!(
            matches!(e, ColumnProblem::BboxNotAStruct(DataType::Utf8)),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "bbox column is Utf8, not a struct of xmin, ymin, xmax, ymax"
        );

        // A null id.
        let schema = Schema::new(vec![Field::new("id", DataType::Utf8, true)]);
        let null = RecordBatch::try_new(
            Arc::new(schema),
            vec![Arc::new(StringArray::from(vec![Some("a"), None])) as ArrayRef],
        )
        .unwrap();
        assert!(matches!(batch_ids(&null), Err(ColumnProblem::NullId)));
    }

    #[test]
    fn a_bucket_that_cannot_be_read_names_its_file_and_keeps_the_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let bucket = Bucket {
            path: dir.path().join("gone-00.arrows"),
            rows: 1,
            bytes: 1,
        };
        let e = bucket.read().unwrap_err();
        let SpillError::Io { path, source } = &e else {
            panic!("not an I/O error: {e:?}");
        };
        assert_eq!(path, &bucket.path);
        assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        assert!(std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>()));
        // A file that is not an IPC stream.
        std::fs::write(&bucket.path, b"not arrow").unwrap();
        assert!(matches!(bucket.read(), Err(SpillError::Ipc { .. })));
    }
}
