//! One row group of a partition, fetched in one read and decoded on a blocking thread, its
//! ZSTD pages decompressed with a context of that thread's own.
//!
//! parquet's reader makes a ZSTD codec for each column chunk it reads, and each codec creates
//! a compression and a decompression context. Creating a context runs the `cpuid`
//! instruction three times, which on a virtual machine traps to the hypervisor: a search that
//! keeps a few rows of a row group reads all ~134 of its column chunks, and in `serve` the
//! contexts took 31 % of the CPU (perf, `cargo bench --bench query`). Here the page reader is
//! given the column chunk's metadata marked uncompressed, so it makes no codec, and
//! [`Decompressing`] decompresses each page it returns with the thread's context, made once.
//! Other codecs (Snappy, in files of few rows) are left to parquet.

use bytes::Bytes;
use parquet::arrow::FieldLevels;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, RowSelection};
use parquet::basic::Compression;
use parquet::column::page::{Page, PageMetadata, PageReader};
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::{FileMetaData, ParquetMetaData, RowGroupMetaData};
use parquet::file::reader::{ChunkReader, FileReader, Length, RowGroupReader};
use parquet::file::serialized_reader::SerializedPageReader;
use parquet::record::reader::RowIter;
use parquet::schema::types::Type as SchemaType;
use std::cell::RefCell;
use std::ops::Range;
use std::sync::Arc;

/// The bytes of a row group's column chunks: `start..start + len` of the file.
pub(crate) fn byte_range(meta: &ParquetMetaData, row_group: usize) -> Range<u64> {
    let chunks = meta.row_group(row_group).columns().iter().map(|c| {
        let (start, len) = c.byte_range();
        start..start + len
    });
    chunks
        .reduce(|a, b| a.start.min(b.start)..a.end.max(b.end))
        .unwrap_or(0..0)
}

/// A row group whose bytes ([`byte_range`]) are in memory, read as a file of that one row
/// group (the form parquet's record batch reader takes).
pub(crate) struct FetchedRowGroup {
    /// The file's metadata with this row group only.
    meta: ParquetMetaData,
    /// The whole file's metadata (its offset index says where each column's pages are).
    file: Arc<ParquetMetaData>,
    index: usize,
    bytes: Arc<ChunkBytes>,
}

impl FetchedRowGroup {
    /// Row group `index` of the file of `file` metadata, whose bytes from offset `start` on
    /// are `bytes`.
    pub(crate) fn new(
        file: Arc<ParquetMetaData>,
        index: usize,
        start: u64,
        bytes: Bytes,
    ) -> Arc<FetchedRowGroup> {
        let group = file.row_group(index).clone();
        let f = file.file_metadata();
        let file_meta = FileMetaData::new(
            f.version(),
            group.num_rows(),
            f.created_by().map(str::to_string),
            None,
            f.schema_descr_ptr(),
            f.column_orders().cloned(),
        );
        Arc::new(FetchedRowGroup {
            meta: ParquetMetaData::new(file_meta, vec![group]),
            file,
            index,
            bytes: Arc::new(ChunkBytes { start, bytes }),
        })
    }

    /// Reads the columns of `levels`, the rows of `selection` (all: `None`), in batches of
    /// `batch_size` rows.
    pub(crate) fn read(
        self: &Arc<Self>,
        levels: &FieldLevels,
        selection: Option<RowSelection>,
        batch_size: usize,
    ) -> Result<ParquetRecordBatchReader> {
        let file: Arc<dyn FileReader> = self.clone();
        ParquetRecordBatchReader::try_new_with_row_groups(levels, &file, batch_size, selection)
    }
}

impl FileReader for FetchedRowGroup {
    fn metadata(&self) -> &ParquetMetaData {
        &self.meta
    }

    fn num_row_groups(&self) -> usize {
        1
    }

    fn get_row_group(&self, i: usize) -> Result<Box<dyn RowGroupReader + '_>> {
        if i != 0 {
            return Err(ParquetError::IndexOutOfBound(i, 1));
        }
        Ok(Box::new(GroupReader { fetched: self }))
    }

    fn get_row_iter(&self, _projection: Option<SchemaType>) -> Result<RowIter<'_>> {
        Err(ParquetError::NYI(
            "row iteration over a fetched row group".into(),
        ))
    }
}

/// The row group of a [`FetchedRowGroup`].
struct GroupReader<'a> {
    fetched: &'a FetchedRowGroup,
}

impl RowGroupReader for GroupReader<'_> {
    fn metadata(&self) -> &RowGroupMetaData {
        self.fetched.meta.row_group(0)
    }

    fn num_columns(&self) -> usize {
        self.metadata().num_columns()
    }

    fn get_column_page_reader(&self, i: usize) -> Result<Box<dyn PageReader>> {
        let column = self.metadata().column(i);
        let rows = usize::try_from(self.metadata().num_rows())?;
        let fetched = self.fetched;
        let locations = fetched
            .file
            .offset_index()
            .and_then(|all| all.get(fetched.index)?.get(i))
            .map(|c| c.page_locations().clone());
        if !matches!(column.compression(), Compression::ZSTD(_)) {
            let pages =
                SerializedPageReader::new(self.fetched.bytes.clone(), column, rows, locations)?;
            return Ok(Box::new(pages));
        }
        // Marked uncompressed, the page reader makes no codec and returns the pages as stored.
        let stored = column
            .clone()
            .into_builder()
            .set_compression(Compression::UNCOMPRESSED)
            .build()?;
        let pages =
            SerializedPageReader::new(self.fetched.bytes.clone(), &stored, rows, locations)?;
        Ok(Box::new(Decompressing { pages }))
    }

    fn get_column_bloom_filter(&self, _i: usize) -> Option<&parquet::bloom_filter::Sbbf> {
        None
    }

    fn get_row_iter(&self, _projection: Option<SchemaType>) -> Result<RowIter<'_>> {
        Err(ParquetError::NYI(
            "row iteration over a fetched row group".into(),
        ))
    }
}

/// Bytes of a file from offset `start` on.
struct ChunkBytes {
    start: u64,
    bytes: Bytes,
}

impl ChunkBytes {
    fn slice(&self, start: u64, len: Option<usize>) -> Result<Bytes> {
        let from = start
            .checked_sub(self.start)
            .and_then(|s| usize::try_from(s).ok())
            .filter(|&s| s <= self.bytes.len());
        let to = from.map(|f| len.map_or(self.bytes.len(), |l| f + l));
        match (from, to) {
            (Some(from), Some(to)) if to <= self.bytes.len() => Ok(self.bytes.slice(from..to)),
            _ => Err(ParquetError::EOF(format!(
                "bytes {start}+{len:?} are not in the row group's {}+{}",
                self.start,
                self.bytes.len()
            ))),
        }
    }
}

impl Length for ChunkBytes {
    fn len(&self) -> u64 {
        self.start + self.bytes.len() as u64
    }
}

impl ChunkReader for ChunkBytes {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> Result<Self::T> {
        Ok(bytes::Buf::reader(self.slice(start, None)?))
    }

    fn get_bytes(&self, start: u64, length: usize) -> Result<Bytes> {
        self.slice(start, Some(length))
    }
}

/// The pages of a ZSTD column chunk, each decompressed as it is returned.
struct Decompressing<R: ChunkReader> {
    pages: SerializedPageReader<R>,
}

impl<R: ChunkReader> Iterator for Decompressing<R> {
    type Item = Result<Page>;

    fn next(&mut self) -> Option<Self::Item> {
        self.get_next_page().transpose()
    }
}

impl<R: ChunkReader> PageReader for Decompressing<R> {
    fn get_next_page(&mut self) -> Result<Option<Page>> {
        let Some(mut page) = self.pages.get_next_page()? else {
            return Ok(None);
        };
        match &mut page {
            Page::DataPage { buf, .. } | Page::DictionaryPage { buf, .. } => {
                *buf = decompress(buf, 0)?;
            }
            Page::DataPageV2 {
                buf,
                def_levels_byte_len,
                rep_levels_byte_len,
                is_compressed,
                ..
            } => {
                if *is_compressed {
                    let levels = usize::try_from(*def_levels_byte_len + *rep_levels_byte_len)?;
                    *buf = decompress(buf, levels)?;
                    *is_compressed = false;
                }
            }
        }
        Ok(Some(page))
    }

    fn peek_next_page(&mut self) -> Result<Option<PageMetadata>> {
        self.pages.peek_next_page()
    }

    fn skip_next_page(&mut self) -> Result<()> {
        self.pages.skip_next_page()
    }

    fn at_record_boundary(&mut self) -> Result<bool> {
        self.pages.at_record_boundary()
    }
}

/// Spare bytes after a decompressed page (ZSTD's `WILDCOPY_OVERLENGTH` is 32).
const SLACK: usize = 64;

thread_local! {
    /// This thread's ZSTD decompression context.
    static CONTEXT: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// `page` with its bytes after the first `keep` (a v2 page's levels, never compressed)
/// decompressed.
fn decompress(page: &Bytes, keep: usize) -> Result<Bytes> {
    let (levels, compressed) = page
        .split_at_checked(keep)
        .ok_or_else(|| ParquetError::General("page levels longer than the page".into()))?;
    if compressed.is_empty() {
        // A page of nulls only: nothing was compressed.
        return Ok(page.clone());
    }
    let bad = |e: std::io::Error| ParquetError::External(Box::new(e));
    // Every ZSTD frame parquet writes says its size; a frame that does not is decompressed by
    // a stream (rare: another writer's file).
    let Ok(Some(size)) = zstd::zstd_safe::get_frame_content_size(compressed) else {
        let mut out = levels.to_vec();
        out.extend(zstd::stream::decode_all(compressed).map_err(bad)?);
        return Ok(out.into());
    };
    let size = usize::try_from(size)?;
    // Room past the end lets ZSTD copy its last matches in wide strides.
    let mut out = Vec::with_capacity(size + SLACK);
    CONTEXT.with_borrow_mut(|context| {
        let context = match context {
            Some(c) => c,
            None => context.insert(zstd::bulk::Decompressor::new().map_err(bad)?),
        };
        let n = context
            .decompress_to_buffer(compressed, &mut out)
            .map_err(bad)?;
        if n != size {
            return Err(ParquetError::General(format!(
                "a page decompressed to {n} bytes, its frame says {size}"
            )));
        }
        Ok(())
    })?;
    if levels.is_empty() {
        return Ok(out.into());
    }
    let mut page = Vec::with_capacity(levels.len() + out.len());
    page.extend_from_slice(levels);
    page.extend_from_slice(&out);
    Ok(page.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::builder::{ListBuilder, StringBuilder};
    use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray, StructArray};
    use arrow_schema::{DataType, Field};
    use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
    use parquet::arrow::{ArrowWriter, ProjectionMask, parquet_to_arrow_field_levels};
    use parquet::basic::ZstdLevel;
    use parquet::file::metadata::{PageIndexPolicy, ParquetMetaDataReader};
    use parquet::file::properties::{WriterProperties, WriterVersion};

    /// 1,000 rows of the shapes an HLS partition has: long unique strings, numbers with
    /// nulls, a list of strings, a struct.
    fn batch() -> RecordBatch {
        let n = 1000;
        let hrefs =
            StringArray::from_iter_values((0..n).map(|i| {
                format!("https://data.example/HLS.S30.T{i:05}.2024130T103021.v2.0.B04.tif")
            }));
        let numbers = Int64Array::from_iter((0..n).map(|i| (i % 7 != 0).then_some(i * 3)));
        let mut roles = ListBuilder::new(StringBuilder::new());
        for i in 0..n {
            roles.values().append_value("data");
            if i % 3 == 0 {
                roles.values().append_value("reflectance");
            }
            roles.append(i % 11 != 0);
        }
        let inner = StructArray::from(vec![
            (
                Arc::new(Field::new("xmin", DataType::Int64, true)),
                Arc::new(Int64Array::from_iter_values(0..n)) as ArrayRef,
            ),
            (
                Arc::new(Field::new("name", DataType::Utf8, true)),
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| format!("n{}", i % 5)),
                )) as ArrayRef,
            ),
        ]);
        RecordBatch::try_from_iter([
            ("href", Arc::new(hrefs) as ArrayRef),
            ("number", Arc::new(numbers) as ArrayRef),
            ("roles", Arc::new(roles.finish()) as ArrayRef),
            ("bbox", Arc::new(inner) as ArrayRef),
        ])
        .unwrap()
    }

    fn file(props: WriterProperties) -> Bytes {
        let batch = batch();
        let mut out = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), Some(props)).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        out.into()
    }

    fn zstd() -> parquet::file::properties::WriterPropertiesBuilder {
        WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).unwrap()))
            .set_max_row_group_row_count(Some(400))
            .set_data_page_row_count_limit(50)
            .set_write_batch_size(50)
    }

    /// Every row group of `bytes` read with `selection` through [`FetchedRowGroup`] (from
    /// the row group's bytes only) and through parquet's own reader.
    fn both(bytes: &Bytes, selection: impl Fn(usize) -> Option<RowSelection>) {
        let meta = ParquetMetaDataReader::new()
            .with_offset_index_policy(PageIndexPolicy::Optional)
            .parse_and_finish(bytes)
            .map(Arc::new)
            .unwrap();
        let options = ArrowReaderOptions::new().with_offset_index_policy(PageIndexPolicy::Optional);
        let arrow =
            parquet::arrow::arrow_reader::ArrowReaderMetadata::load(bytes, options).unwrap();
        let descr = meta.file_metadata().schema_descr();
        let levels = parquet_to_arrow_field_levels(
            descr,
            ProjectionMask::all(),
            Some(arrow.schema().fields()),
        )
        .unwrap();
        for g in 0..meta.num_row_groups() {
            let range = byte_range(&meta, g);
            let part = bytes.slice(range.start as usize..range.end as usize);
            let ours: Vec<RecordBatch> = FetchedRowGroup::new(meta.clone(), g, range.start, part)
                .read(&levels, selection(g), 64)
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let mut builder =
                ParquetRecordBatchReaderBuilder::new_with_metadata(bytes.clone(), arrow.clone())
                    .with_row_groups(vec![g])
                    .with_batch_size(64);
            if let Some(s) = selection(g) {
                builder = builder.with_row_selection(s);
            }
            let theirs: Vec<RecordBatch> = builder.build().unwrap().map(Result::unwrap).collect();
            let concat = |b: &[RecordBatch]| {
                arrow_select::concat::concat_batches(&arrow.schema().clone(), b).unwrap()
            };
            assert_eq!(concat(&ours), concat(&theirs), "row group {g}");
            assert!(concat(&ours).num_rows() > 0);
        }
    }

    /// A few rows of each row group, in pages of their own and in shared ones.
    fn some_rows(g: usize) -> Option<RowSelection> {
        let rows = if g == 2 { 200 } else { 400 };
        let keep: Vec<bool> = (0..rows)
            .map(|i| i == 3 || i == 4 || i == 177 || i + 1 == rows)
            .collect();
        Some(RowSelection::from_filters(&[
            arrow_array::BooleanArray::from(keep),
        ]))
    }

    #[test]
    fn zstd_pages_read_from_the_row_group_alone_equal_parquets_reading() {
        let bytes = file(zstd().set_dictionary_enabled(false).build());
        both(&bytes, |_| None);
        both(&bytes, some_rows);
    }

    #[test]
    fn dictionary_pages_and_v2_pages_are_decompressed_too() {
        for version in [WriterVersion::PARQUET_1_0, WriterVersion::PARQUET_2_0] {
            let bytes = file(
                zstd()
                    .set_dictionary_enabled(true)
                    .set_writer_version(version)
                    .build(),
            );
            both(&bytes, |_| None);
            both(&bytes, some_rows);
        }
    }

    #[test]
    fn other_codecs_and_files_without_a_page_index_are_read_by_parquets_codec() {
        let bytes = file(
            zstd()
                .set_compression(Compression::SNAPPY)
                .set_offset_index_disabled(true)
                .set_statistics_enabled(parquet::file::properties::EnabledStatistics::Chunk)
                .build(),
        );
        both(&bytes, |_| None);
        let bytes = file(
            zstd()
                .set_offset_index_disabled(true)
                .set_statistics_enabled(parquet::file::properties::EnabledStatistics::Chunk)
                .build(),
        );
        both(&bytes, some_rows);
    }

    #[test]
    fn bytes_outside_the_row_group_are_an_error() {
        let chunk = ChunkBytes {
            start: 100,
            bytes: Bytes::from_static(b"0123456789"),
        };
        assert_eq!(chunk.get_bytes(102, 3).unwrap(), Bytes::from_static(b"234"));
        assert_eq!(chunk.get_bytes(110, 0).unwrap(), Bytes::new());
        assert!(chunk.get_bytes(99, 2).is_err());
        assert!(chunk.get_bytes(108, 3).is_err());
        assert!(chunk.get_read(111).is_err());
        assert_eq!(chunk.len(), 110);
    }

    #[test]
    fn a_damaged_page_is_an_error() {
        let page = Bytes::from(zstd::bulk::compress(&[7u8; 5000], 1).unwrap());
        assert_eq!(decompress(&page, 0).unwrap(), Bytes::from(vec![7u8; 5000]));
        let mut bad = page.to_vec();
        let last = bad.len() - 1;
        bad[last / 2] ^= 0xff;
        bad.truncate(last);
        assert!(decompress(&Bytes::from(bad), 0).is_err());
        // Levels kept as they are, ahead of the decompressed values.
        let mut v2 = b"LEVELS".to_vec();
        v2.extend_from_slice(&page);
        let out = decompress(&Bytes::from(v2), 6).unwrap();
        assert_eq!(&out[..6], b"LEVELS");
        assert_eq!(out.len(), 5006);
        assert!(decompress(&page, page.len() + 1).is_err());
    }
}
