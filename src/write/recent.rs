//! Daily files this process has just written, kept decoded: the Arrow record batches they
//! were encoded from, their schema and their file metadata. A month's repartition in the
//! same run takes them from here instead of reading and decoding each file again, which
//! for a small day is most of what its repartition costs (a file of the HLS layout has
//! ~256 column chunks, each with a fixed cost to decode).
//!
//! An entry is used only if the file is still the one written: its size and ETag (on a
//! local output the file's inode, size and modification time) are what they were when it
//! was published. Only small files are kept ([`RecentFiles::MAX_FILE_BYTES`] of Arrow data),
//! within a budget ([`RecentFiles::BUDGET_BYTES`]), the oldest dropped first; a file not
//! kept is read from the output as before.

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use object_store::ObjectMeta;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// A daily file as it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The Arrow schema stored in the file (with its `geo` and `stac-geoparquet` metadata).
    pub schema: SchemaRef,
    /// The rows, in file order.
    pub batches: Vec<RecordBatch>,
    /// The footer's `geo` metadata.
    pub geo: String,
    /// The footer's `stac-geoparquet` metadata.
    pub stac: String,
}

impl Decoded {
    /// Rows in all batches.
    pub fn rows(&self) -> u64 {
        self.batches.iter().map(|b| b.num_rows() as u64).sum()
    }

    /// Bytes of Arrow data held.
    pub fn memory(&self) -> usize {
        self.batches.iter().map(|b| b.get_array_memory_size()).sum()
    }
}

/// One published file: what it was when published, and its rows.
#[derive(Debug)]
struct Entry {
    size: u64,
    e_tag: Option<String>,
    decoded: Arc<Decoded>,
    memory: usize,
}

/// The decoded daily files of this process, by their full location (`Output::show`).
#[derive(Debug, Default)]
pub struct RecentFiles {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    /// Locations in the order they were kept, oldest first (some may be gone already).
    order: VecDeque<String>,
    memory: usize,
}

impl RecentFiles {
    /// The most rows of one file kept (a writer decides before it writes).
    pub const MAX_FILE_ROWS: usize = 256;
    /// The most Arrow data of one file kept.
    pub const MAX_FILE_BYTES: usize = 2 * 1024 * 1024;
    /// The most Arrow data kept in all.
    pub const BUDGET_BYTES: usize = 32 * 1024 * 1024;

    /// Keeps `decoded`, the rows of the file published at `location` as `meta` says it is
    /// now, if it is small enough (dropping the oldest files beyond the budget).
    pub fn keep(&self, location: String, meta: &ObjectMeta, decoded: Decoded) {
        let memory = decoded.memory();
        if memory > Self::MAX_FILE_BYTES {
            self.forget(&location);
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = inner.entries.remove(&location) {
            inner.memory -= old.memory;
        }
        inner.memory += memory;
        inner.order.push_back(location.clone());
        inner.entries.insert(
            location,
            Entry {
                size: meta.size,
                e_tag: meta.e_tag.clone(),
                decoded: Arc::new(decoded),
                memory,
            },
        );
        while inner.memory > Self::BUDGET_BYTES {
            let Some(oldest) = inner.order.pop_front() else {
                break;
            };
            if let Some(gone) = inner.entries.remove(&oldest) {
                inner.memory -= gone.memory;
            }
        }
        if inner.order.len() > 4 * inner.entries.len() + 64 {
            let Inner { entries, order, .. } = &mut *inner;
            order.retain(|l| entries.contains_key(l));
        }
    }

    /// Takes the rows of the file at `location` if they are kept and the file is still the
    /// one they were written to (`meta`, as the output says it is now). The entry is gone
    /// after this either way.
    pub fn take(&self, location: &str, meta: &ObjectMeta) -> Option<Arc<Decoded>> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let entry = inner.entries.remove(location)?;
        inner.memory -= entry.memory;
        let same = entry.size == meta.size && entry.e_tag.is_some() && entry.e_tag == meta.e_tag;
        same.then_some(entry.decoded)
    }

    /// Drops what is kept of `location`.
    pub fn forget(&self, location: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(gone) = inner.entries.remove(location) {
            inner.memory -= gone.memory;
        }
    }

    /// Files kept.
    pub fn len(&self) -> usize {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.entries.len()
    }

    /// Whether no file is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{ArrayRef, Int64Array};
    use arrow_schema::{DataType, Field, Schema};

    fn decoded(rows: usize) -> Decoded {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        let values: ArrayRef = Arc::new(Int64Array::from_iter_values(0..rows as i64));
        Decoded {
            schema: schema.clone(),
            batches: vec![RecordBatch::try_new(schema, vec![values]).unwrap()],
            geo: "{}".into(),
            stac: "{}".into(),
        }
    }

    fn meta(size: u64, e_tag: &str) -> ObjectMeta {
        ObjectMeta {
            location: "a".into(),
            last_modified: chrono::DateTime::UNIX_EPOCH,
            size,
            e_tag: Some(e_tag.into()),
            version: None,
        }
    }

    #[test]
    fn a_file_is_taken_once_and_only_while_unchanged() {
        let recent = RecentFiles::default();
        recent.keep("out/a".into(), &meta(10, "x"), decoded(3));
        assert_eq!(recent.take("out/a", &meta(10, "x")).unwrap().rows(), 3);
        assert!(recent.take("out/a", &meta(10, "x")).is_none(), "taken once");

        recent.keep("out/a".into(), &meta(10, "x"), decoded(3));
        assert!(
            recent.take("out/a", &meta(10, "y")).is_none(),
            "another ETag"
        );
        recent.keep("out/a".into(), &meta(10, "x"), decoded(3));
        assert!(
            recent.take("out/a", &meta(11, "x")).is_none(),
            "another size"
        );
        assert!(recent.is_empty());

        let no_tag = ObjectMeta {
            e_tag: None,
            ..meta(10, "x")
        };
        recent.keep("out/b".into(), &no_tag, decoded(3));
        assert!(recent.take("out/b", &no_tag).is_none(), "no ETag, no proof");
    }

    #[test]
    fn big_files_are_not_kept_and_the_budget_drops_the_oldest() {
        let recent = RecentFiles::default();
        let big = RecentFiles::MAX_FILE_BYTES / 8 + 1;
        recent.keep("big".into(), &meta(1, "x"), decoded(big));
        assert!(recent.is_empty());

        let each = decoded(RecentFiles::MAX_FILE_BYTES / 8 / 2);
        let fits = RecentFiles::BUDGET_BYTES / each.memory();
        for i in 0..fits + 3 {
            recent.keep(format!("f{i}"), &meta(1, "x"), each.clone());
        }
        assert!(recent.len() <= fits);
        assert!(
            recent.take("f0", &meta(1, "x")).is_none(),
            "the oldest went"
        );
        let last = format!("f{}", fits + 2);
        assert!(
            recent.take(&last, &meta(1, "x")).is_some(),
            "the newest stayed"
        );
    }
}
