//! Spilling rows to bucket files (Arrow IPC streams) by the top bits of their Hilbert key,
//! and reading buckets back sorted.

use super::hilbert::{NO_KEY, bbox_key};
use crate::error::ColumnProblem;
use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::{Array, ArrayRef, RecordBatch, StructArray};
use arrow_ipc::reader::StreamReader;
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
    /// Arrow failed on a bucket's rows (reading a batch back, gathering sorted rows).
    #[error("{0}")]
    Arrow(#[source] ArrowError),
    /// The `id` or `bbox` column of spilled rows cannot be read.
    #[error("{0}")]
    Columns(#[from] ColumnProblem),
}

/// Buckets per spill: one byte of the key.
pub const FANOUT: usize = 256;

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

    /// Reads every batch of the bucket.
    pub fn read(&self) -> Result<Vec<RecordBatch>, SpillError> {
        self.reader()?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| self.ipc(source))
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

struct Slot {
    path: PathBuf,
    writer: Option<StreamWriter<BufWriter<File>>>,
    /// The bucket's rows not yet written: (index in `Spiller::held`, row).
    pending: Vec<(usize, usize)>,
    rows: u64,
    bytes: u64,
}

/// Distributes rows over [`FANOUT`] bucket files by `(key >> shift) & 0xff`, buffering a
/// little in memory so that each IPC message holds a useful number of rows.
///
/// The batches pushed are held as they are and each bucket notes its rows in them; a
/// bucket's rows are gathered into one batch (one copy) only when it is written out.
pub struct Spiller {
    schema: SchemaRef,
    shift: u32,
    slots: Vec<Slot>,
    /// The batches with rows not yet written, and their bytes.
    held: Vec<RecordBatch>,
    pending_bytes: usize,
    budget: usize,
}

impl std::fmt::Debug for Spiller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spiller")
            .field("shift", &self.shift)
            .field("pending_bytes", &self.pending_bytes)
            .finish_non_exhaustive()
    }
}

/// Rows a bucket buffers before it is written out.
const FLUSH_ROWS: usize = 4096;

impl Spiller {
    /// A spiller writing `{dir}/{name}-XX.arrows` files, buffering up to `budget` bytes.
    pub fn new(dir: &Path, name: &str, schema: SchemaRef, shift: u32, budget: usize) -> Spiller {
        let slots = (0..FANOUT)
            .map(|i| Slot {
                path: dir.join(format!("{name}-{i:02x}.arrows")),
                writer: None,
                pending: Vec::new(),
                rows: 0,
                bytes: 0,
            })
            .collect();
        Spiller {
            schema,
            shift,
            slots,
            held: Vec::new(),
            pending_bytes: 0,
            budget,
        }
    }

    /// The bucket of a key.
    pub fn bucket_of(&self, key: u32) -> usize {
        ((key >> self.shift) & 0xff) as usize
    }

    /// Adds a batch (of the spiller's schema) whose rows have `keys`.
    pub fn push(&mut self, batch: &RecordBatch, keys: &[u32]) -> Result<(), SpillError> {
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(());
        }
        let index = self.held.len();
        self.held.push(batch.clone());
        self.pending_bytes += batch.get_array_memory_size();
        for (row, &key) in keys.iter().enumerate().take(rows) {
            let b = self.bucket_of(key);
            self.slots[b].pending.push((index, row));
        }
        if self.pending_bytes > self.budget {
            self.flush_all()?;
        } else {
            for b in 0..FANOUT {
                if self.slots[b].pending.len() >= FLUSH_ROWS {
                    self.flush(b)?;
                }
            }
        }
        Ok(())
    }

    /// Writes out every bucket's pending rows and lets go of the batches held.
    fn flush_all(&mut self) -> Result<(), SpillError> {
        for b in 0..FANOUT {
            self.flush(b)?;
        }
        self.held.clear();
        self.pending_bytes = 0;
        Ok(())
    }

    fn flush(&mut self, b: usize) -> Result<(), SpillError> {
        let slot = &mut self.slots[b];
        if slot.pending.is_empty() {
            return Ok(());
        }
        // Gather from the batches this bucket's rows come from only: interleave compares
        // the (deeply nested) type of every source array, so passing all held batches to
        // each of the 256 buckets made the gather cost buckets × batches × schema size.
        let mut local: Vec<usize> = slot.pending.iter().map(|&(batch, _)| batch).collect();
        local.sort_unstable();
        local.dedup();
        let sources: Vec<&RecordBatch> = local.iter().map(|&i| &self.held[i]).collect();
        let indices: Vec<(usize, usize)> = slot
            .pending
            .iter()
            .map(|&(batch, row)| (local.binary_search(&batch).unwrap_or_default(), row))
            .collect();
        let batch = arrow_select::interleave::interleave_record_batch(&sources, &indices)
            .map_err(|source| SpillError::Gather { bucket: b, source })?;
        slot.pending.clear();
        let writer = match &mut slot.writer {
            Some(w) => w,
            None => {
                let file = File::create(&slot.path).map_err(|source| SpillError::Io {
                    path: slot.path.clone(),
                    source,
                })?;
                let w =
                    StreamWriter::try_new(BufWriter::with_capacity(64 * 1024, file), &self.schema)
                        .map_err(|source| SpillError::Ipc {
                            path: slot.path.clone(),
                            source,
                        })?;
                slot.writer.insert(w)
            }
        };
        writer.write(&batch).map_err(|source| SpillError::Ipc {
            path: slot.path.clone(),
            source,
        })?;
        slot.rows += batch.num_rows() as u64;
        // The gathered batch owns its buffers: its size is the bucket's share.
        slot.bytes += batch.get_array_memory_size() as u64;
        Ok(())
    }

    /// Ends the spill: the rows as they are held when nothing was written out yet and they
    /// take at most `in_memory_bytes` (a small month never touches the disk), else every
    /// buffered row written out and the non-empty buckets in key order.
    pub fn finish(mut self, in_memory_bytes: usize) -> Result<Spilled, SpillError> {
        let written = self.slots.iter().any(|s| s.writer.is_some());
        if !written && self.pending_bytes <= in_memory_bytes {
            return Ok(Spilled::InMemory(std::mem::take(&mut self.held)));
        }
        self.flush_all()?;
        let mut out = Vec::new();
        for slot in self.slots {
            if let Some(mut w) = slot.writer {
                w.finish().map_err(|source| SpillError::Ipc {
                    path: slot.path.clone(),
                    source,
                })?;
                out.push(Bucket {
                    path: slot.path,
                    rows: slot.rows,
                    bytes: slot.bytes,
                });
            }
        }
        Ok(Spilled::Buckets(out))
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
        let mut spiller = Spiller::new(dir.path(), "t", batch(&refs[..1]).schema(), 24, 1 << 20);
        for chunk in refs.chunks(300) {
            let b = batch(chunk);
            let keys = batch_keys(&b).unwrap();
            spiller.push(&b, &keys).unwrap();
        }
        let Spilled::Buckets(buckets) = spiller.finish(0).unwrap() else {
            panic!("a spill past its in-memory limit ends in buckets");
        };
        assert!(buckets.len() > 50, "{} buckets", buckets.len());
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
            // One bucket holds one top byte, later buckets higher ones.
            let top = keys[0] >> 24;
            assert!(keys.iter().all(|k| k >> 24 == top));
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
        let mut spiller = Spiller::new(dir.path(), "m", batch(&refs[..1]).schema(), 24, 1 << 30);
        for chunk in refs.chunks(300) {
            let b = batch(chunk);
            let keys = batch_keys(&b).unwrap();
            spiller.push(&b, &keys).unwrap();
        }
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
