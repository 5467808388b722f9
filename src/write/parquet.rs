//! How hls-flow writes parquet, in one place: ZSTD level 1 (Snappy for files of fewer than
//! [`SMALL_FILE_ROWS`] rows, which have no page index: [`for_rows`]), no dictionaries (but in
//! monthly partitions, whose repartition caps them at
//! [`DICTIONARY_BYTES`](crate::write::repartition::DICTIONARY_BYTES) a column chunk), parquet
//! format version 1.0, and row groups of [`FAST_ROW_GROUP_SIZE`] rows for daily files of the
//! fixed-schema writer, [`PARTITION_ROW_GROUP_SIZE`] for monthly partitions and
//! [`DEFAULT_ROW_GROUP_SIZE`] for the generic writer. The three writers (the fixed-schema one in
//! [`hls_arrow`](crate::write::hls_arrow), the generic one in
//! [`stac_arrow`](crate::write::stac_arrow), and the repartition's) take their settings
//! from here; their GeoParquet metadata comes from [`metadata`](crate::write::metadata).

use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{
    EnabledStatistics, WriterProperties, WriterPropertiesBuilder, WriterVersion,
};
use stac::geoparquet::WriterOptions;
use std::sync::{Condvar, LazyLock, Mutex};

/// The ZSTD level. Level 15, the `stac` crate's default, is 2.5× slower than 3 for a 1 %
/// smaller file; level 1 compresses a month's partition 1.6× faster than 3 (ZSTD was 60 % of
/// the repartition's encoding) into a file 2 % *smaller* (84.2 against 85.9 MB for 300,000
/// items, `cargo bench --bench repartition`): HLS columns are short pages of similar strings,
/// which level 3's longer search does not compress better.
pub const ZSTD_LEVEL: i32 = 1;

/// Rows per row group of the generic writer: small enough for readers to prune, large
/// enough to compress well.
pub const DEFAULT_ROW_GROUP_SIZE: usize = 10_000;

/// Rows per row group of monthly partitions. In the spatial order of a partition, a
/// 1°×1° box over a week of a 300,000-item month reads 1 or 2 of its 150 row groups (of
/// 30 at 10,000 rows: up to 4), for a file ~16 % larger (`cargo bench --bench query`).
pub const PARTITION_ROW_GROUP_SIZE: usize = 2_000;

/// Rows per row group of the fixed-schema writer's daily files. Its ~130 columns each hold
/// a zstd compression context (~1 MB) from their first compressed page until the row group
/// ends, and uncompressed page data until then: with 10,000-row groups an open file held
/// ~150 MB of both once its pages filled, and memory grew with the day. At 2,000 rows no
/// page fills before the row group ends (each column is compressed once, at the end, with
/// one short-lived context), an open HLSS30 file holds ~11 MB, and the file is ~7 % larger.
pub const FAST_ROW_GROUP_SIZE: usize = 2_000;

/// Files of fewer rows than this are compressed with Snappy rather than ZSTD. parquet
/// builds a zstd compression and a decompression context for each column chunk it writes
/// or reads, and a file of the HLS layout has ~256 of them: for a file of 10 items that
/// fixed cost is most of the file's cost (writing and reading it take ~1.8× as long with
/// ZSTD as with Snappy) for a file only ~3 % smaller; at 100 items ZSTD's file is ~30 %
/// smaller, and worth it (`cargo bench --bench small_files`). Every reader reads Snappy
/// (it is parquet's default codec).
pub const SMALL_FILE_ROWS: u64 = 50;

/// The compression of files of [`SMALL_FILE_ROWS`] rows or more: ZSTD at [`ZSTD_LEVEL`].
pub fn compression() -> Compression {
    Compression::ZSTD(ZstdLevel::try_new(ZSTD_LEVEL).unwrap_or_default())
}

/// The compression of a file of `rows` rows: [`compression`], or Snappy below
/// [`SMALL_FILE_ROWS`].
pub fn compression_for(rows: u64) -> Compression {
    if rows < SMALL_FILE_ROWS {
        Compression::SNAPPY
    } else {
        compression()
    }
}

/// `builder` set for a file known to hold `rows` rows: its [`compression_for`] them, and,
/// below [`SMALL_FILE_ROWS`], statistics per column chunk only, with no page index (such a
/// file has one page per column chunk, whose page index would tell a reader nothing the
/// chunk's statistics do not; building it was ~9 % of writing a 10-item file).
pub fn for_rows(builder: WriterPropertiesBuilder, rows: u64) -> WriterPropertiesBuilder {
    let builder = builder.set_compression(compression_for(rows));
    if rows < SMALL_FILE_ROWS {
        builder
            .set_statistics_enabled(EnabledStatistics::Chunk)
            .set_offset_index_disabled(true)
    } else {
        builder
    }
}

/// The writer properties of a file with `row_group_rows` rows per row group: the
/// [`compression`], no dictionaries (with parquet's default ones, up to 1 MB a column chunk,
/// a file was ~20 % larger and writing ~10 % slower: the columns of values unique to each
/// item hold most of its bytes; a partition adds dictionaries capped at
/// [`DICTIONARY_BYTES`](crate::write::repartition::DICTIONARY_BYTES) for the columns of
/// repeated values), parquet format version 1.0.
pub fn writer_properties(row_group_rows: usize) -> WriterProperties {
    writer_properties_builder(row_group_rows).build()
}

/// [`writer_properties`], still open to changes (benchmarks and tests compare settings).
pub fn writer_properties_builder(row_group_rows: usize) -> WriterPropertiesBuilder {
    WriterProperties::builder()
        .set_writer_version(WriterVersion::PARQUET_1_0)
        .set_compression(compression())
        .set_dictionary_enabled(false)
        .set_max_row_group_row_count(Some(row_group_rows.max(1)))
}

/// The options of the `stac` crate's generic writer: the [`compression`] and
/// [`DEFAULT_ROW_GROUP_SIZE`]. (That writer has no setting for dictionaries: it keeps
/// parquet's default, which readers do not see.)
pub fn writer_options() -> WriterOptions {
    WriterOptions::new()
        .with_compression(compression())
        .with_max_row_group_row_count(DEFAULT_ROW_GROUP_SIZE)
}

/// Row groups being encoded at once in this process: as many as there are cores. Encoding
/// is CPU work, and while a row group is encoded parquet holds a zstd compression and a
/// decompression context for each of its columns (~40 MB for an HLS file's ~256 columns):
/// with one encoder per harvested day, eight small days finishing together held 8 × 40 MB.
static ENCODERS: LazyLock<Gate> = LazyLock::new(|| Gate::new(crate::cores().clamp(1, 8)));

/// Row groups built from granules' values while they are listed, and encoded, at once in
/// this process: half the cores (at least one, at most four), the other half parsing and
/// fetching. On two cores, a bulk day's two collections building and encoding their rows at
/// the same time peaked 10–15 % higher, for no gain in speed.
static BUILDERS: LazyLock<Gate> =
    LazyLock::new(|| Gate::new(crate::cores().div_ceil(2).clamp(1, 4)));

/// Runs `encode` (the encoding of whole row groups: a blocking call, on a blocking thread)
/// when fewer encodings are under way than this machine has cores (at most 8).
pub fn encoding<T>(encode: impl FnOnce() -> T) -> T {
    let _permit = ENCODERS.enter();
    encode()
}

/// Runs `build` (the building of whole row groups and their encoding, on a blocking thread)
/// when fewer are under way than [`BUILDERS`] allows.
pub fn building<T>(build: impl FnOnce() -> T) -> T {
    let _permit = BUILDERS.enter();
    build()
}

/// A counting gate for blocking threads.
#[derive(Debug)]
struct Gate {
    inside: Mutex<usize>,
    left: Condvar,
    limit: usize,
}

impl Gate {
    fn new(limit: usize) -> Gate {
        Gate {
            inside: Mutex::new(0),
            left: Condvar::new(),
            limit: limit.max(1),
        }
    }

    fn enter(&self) -> Permit<'_> {
        // A poisoned count is still a count: a panic inside a permit has released it.
        let mut inside = self.inside.lock().unwrap_or_else(|p| p.into_inner());
        while *inside >= self.limit {
            inside = self.left.wait(inside).unwrap_or_else(|p| p.into_inner());
        }
        *inside += 1;
        Permit(self)
    }
}

/// One place in a [`Gate`], given back when dropped.
struct Permit<'a>(&'a Gate);

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut inside = self.0.inside.lock().unwrap_or_else(|p| p.into_inner());
        *inside -= 1;
        self.0.left.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn a_gate_lets_no_more_than_its_limit_in_at_once() {
        let gate = Arc::new(Gate::new(2));
        let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (gate, now, most) = (gate.clone(), now.clone(), most.clone());
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        let _p = gate.enter();
                        let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(n, Ordering::SeqCst);
                        std::thread::yield_now();
                        now.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
        assert_eq!(*gate.inside.lock().unwrap(), 0);
    }

    /// Writes `rows` rows of one Int64 column with [`for_rows`]; returns the footer read back.
    fn written(rows: u64) -> parquet::file::metadata::ParquetMetaData {
        use arrow_array::{ArrayRef, Int64Array, RecordBatch};
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let values: ArrayRef = Arc::new(Int64Array::from_iter_values(0..rows as i64));
        let batch = RecordBatch::try_from_iter([("v", values)]).unwrap();
        let props = for_rows(writer_properties_builder(DEFAULT_ROW_GROUP_SIZE), rows).build();
        let mut buf = Vec::new();
        let mut w =
            parquet::arrow::ArrowWriter::try_new(&mut buf, batch.schema(), Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let options = parquet::file::serialized_reader::ReadOptionsBuilder::new()
            .with_page_index()
            .build();
        SerializedFileReader::new_with_options(bytes::Bytes::from(buf), options)
            .unwrap()
            .metadata()
            .clone()
    }

    #[test]
    fn small_files_have_chunk_statistics_and_no_page_index() {
        let small = written(SMALL_FILE_ROWS - 1);
        let chunk = small.row_group(0).column(0);
        assert_eq!(chunk.compression(), Compression::SNAPPY);
        let stats = chunk.statistics().expect("chunk statistics");
        assert_eq!(stats.min_bytes_opt(), Some(&0i64.to_le_bytes()[..]));
        assert!(small.offset_index().is_none() && small.column_index().is_none());

        let large = written(SMALL_FILE_ROWS);
        let chunk = large.row_group(0).column(0);
        assert!(matches!(chunk.compression(), Compression::ZSTD(_)));
        assert!(chunk.statistics().is_some());
        assert!(large.offset_index().is_some() && large.column_index().is_some());
    }
}
