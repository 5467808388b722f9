//! [`HlsGeoparquetWriter`]: HLS items in, a stac-geoparquet file out.

use super::builder::HlsBatchBuilder;
use super::error::{HlsArrowError, Result};
use crate::Collection;
use crate::write::metadata;
use crate::write::recent::Decoded;
use parquet::arrow::arrow_writer::ArrowWriterOptions;
use parquet::arrow::{ARROW_SCHEMA_META_KEY, ArrowWriter, encode_arrow_schema};
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use std::io::Write;

/// Options of [`HlsGeoparquetWriter`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HlsWriterOptions {
    /// Parquet compression codec (default ZSTD at [`ZSTD_LEVEL`](crate::write::parquet::ZSTD_LEVEL)).
    pub compression: Compression,
    /// Maximum number of rows in a row group (default 150,000, as the `stac` writer).
    pub max_row_group_row_count: usize,
    /// Rows buffered before they are encoded as one record batch (default 1,000): bounds the
    /// memory held in builders.
    pub batch_rows: usize,
    /// Dictionary-encode columns (default `false`). Most HLS columns are unique per item
    /// (ids, hrefs, geometries, times, angles), so the dictionaries only cost: with them, a
    /// file is ~20 % larger, writing ~10 % slower, and each open writer holds up to ~1 MB
    /// of dictionary per column.
    pub dictionary: bool,
    /// The rows the file will hold, when known ([`with_rows`](Self::with_rows)).
    pub rows: Option<u64>,
}

impl Default for HlsWriterOptions {
    fn default() -> Self {
        HlsWriterOptions {
            compression: crate::write::parquet::compression(),
            max_row_group_row_count: stac::geoparquet::DEFAULT_STAC_MAX_ROW_GROUP_ROW_COUNT,
            batch_rows: 1_000,
            dictionary: false,
            rows: None,
        }
    }
}

impl HlsWriterOptions {
    /// Sets the compression codec.
    pub fn with_compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Sets the settings of a file known to hold `rows` rows, its compression among them
    /// ([`for_rows`](crate::write::parquet::for_rows)).
    pub fn with_rows(mut self, rows: u64) -> Self {
        self.compression = crate::write::parquet::compression_for(rows);
        self.rows = Some(rows);
        self
    }

    /// Sets the maximum number of rows in a row group.
    pub fn with_max_row_group_row_count(mut self, rows: usize) -> Self {
        self.max_row_group_row_count = rows.max(1);
        self
    }

    /// Sets the number of rows buffered per record batch.
    pub fn with_batch_rows(mut self, rows: usize) -> Self {
        self.batch_rows = rows.max(1);
        self
    }

    /// Turns dictionary encoding on or off.
    pub fn with_dictionary(mut self, dictionary: bool) -> Self {
        self.dictionary = dictionary;
        self
    }

    fn writer_properties(&self) -> WriterProperties {
        let builder =
            crate::write::parquet::writer_properties_builder(self.max_row_group_row_count);
        let builder = match self.rows {
            Some(rows) => crate::write::parquet::for_rows(builder, rows),
            None => builder,
        };
        builder
            .set_compression(self.compression)
            .set_dictionary_enabled(self.dictionary)
            .build()
    }
}

/// What [`HlsGeoparquetWriter::finish`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriteStats {
    /// Items (rows) written.
    pub items: u64,
    /// Record batches encoded.
    pub batches: u64,
    /// Parquet row groups written.
    pub row_groups: usize,
    /// Bytes of the whole file.
    pub bytes: u64,
}

/// Writes the items of one HLS collection as stac-geoparquet, with the fixed schema of
/// [`hls_schema`](super::hls_schema) and the same file metadata (`geo`, `stac-geoparquet`)
/// as the `stac` crate's writer.
///
/// An item outside the fixed shape is refused with an error that names what is wrong, and
/// nothing of it is buffered; see [`HlsArrowError::is_shape_mismatch`].
pub struct HlsGeoparquetWriter<W: Write + Send> {
    writer: ArrowWriter<Counting<W>>,
    collection: Collection,
    builder: HlsBatchBuilder,
    batch_rows: usize,
    items: u64,
    batches: u64,
    /// The batches written, when they are kept ([`keep_batches`](Self::keep_batches)).
    kept: Option<Vec<arrow_array::RecordBatch>>,
    /// Bounds of rows written as whole batches ([`write_batch`](Self::write_batch)).
    extra_bounds: Option<[f64; 4]>,
}

impl<W: Write + Send> std::fmt::Debug for HlsGeoparquetWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HlsGeoparquetWriter")
            .field("collection", &self.builder.collection_id())
            .field("items", &self.items)
            .field("batches", &self.batches)
            .finish_non_exhaustive()
    }
}

impl<W: Write + Send> HlsGeoparquetWriter<W> {
    /// A writer of `collection`'s items into `writer`. The Arrow schema stored in the file is
    /// written with the footer, so that its `geo` metadata has the `bbox` of every row
    /// written, as the footer's has.
    pub fn new(writer: W, collection: Collection, options: HlsWriterOptions) -> Result<Self> {
        let builder = HlsBatchBuilder::new(collection);
        let writer = ArrowWriter::try_new_with_options(
            Counting {
                inner: writer,
                bytes: 0,
            },
            builder.schema(),
            ArrowWriterOptions::new()
                .with_properties(options.writer_properties())
                .with_skip_arrow_metadata(true),
        )?;
        Ok(HlsGeoparquetWriter {
            writer,
            collection,
            builder,
            batch_rows: options.batch_rows.max(1),
            items: 0,
            batches: 0,
            kept: None,
            extra_bounds: None,
        })
    }

    /// Keeps the record batches written (they share their buffers with what was
    /// encoded), so that [`finish_decoded`](Self::finish_decoded) gives the file's rows
    /// back without decoding it.
    pub fn keep_batches(&mut self) {
        self.kept.get_or_insert_with(Vec::new);
    }

    /// Adds one item from its JSON bytes (as fetched).
    pub fn write_json(&mut self, json: &[u8]) -> Result<()> {
        self.builder.append_json(json)?;
        self.after_append()
    }

    /// Adds one `stac::Item`.
    pub fn write_item(&mut self, item: &stac::Item) -> Result<()> {
        self.builder.append_item(item)?;
        self.after_append()
    }

    /// Adds rows built by an [`HlsBatchBuilder`](super::HlsBatchBuilder) of the same
    /// collection, as one record batch (after the rows buffered so far). Their geometries'
    /// bounds must be given to [`include_bounds`](Self::include_bounds).
    pub fn write_batch(&mut self, batch: &arrow_array::RecordBatch) -> Result<()> {
        self.flush_batch()?;
        if batch.num_rows() == 0 {
            return Ok(());
        }
        crate::write::parquet::encoding(|| self.writer.write(batch))?;
        if let Some(kept) = &mut self.kept {
            kept.push(batch.clone());
        }
        self.items += batch.num_rows() as u64;
        self.batches += 1;
        Ok(())
    }

    /// Widens the bounds written in the footer's `geo` metadata to include `bounds`.
    pub fn include_bounds(&mut self, bounds: Option<[f64; 4]>) {
        self.extra_bounds = crate::bbox::union_bounds(self.extra_bounds, bounds);
    }

    /// Items accepted so far.
    pub fn items(&self) -> u64 {
        self.items
    }

    fn after_append(&mut self) -> Result<()> {
        self.items += 1;
        if self.builder.len() >= self.batch_rows {
            self.flush_batch()?;
        }
        Ok(())
    }

    /// Encodes the buffered rows as a record batch into the current row group.
    fn flush_batch(&mut self) -> Result<()> {
        if self.builder.is_empty() {
            return Ok(());
        }
        let batch = self.builder.finish()?;
        crate::write::parquet::encoding(|| self.writer.write(&batch))?;
        if let Some(kept) = &mut self.kept {
            kept.push(batch);
        }
        self.batches += 1;
        Ok(())
    }

    /// Writes the buffered rows, the metadata and the footer; returns what was written.
    pub fn finish(self) -> Result<WriteStats> {
        self.finish_into_inner().map(|(_, stats)| stats)
    }

    /// Like [`finish`](Self::finish), and gives the underlying writer back.
    pub fn finish_into_inner(self) -> Result<(W, WriteStats)> {
        self.finish_decoded()
            .map(|(inner, stats, _)| (inner, stats))
    }

    /// Like [`finish_into_inner`](Self::finish_into_inner), and gives the file's rows as
    /// written if they were kept ([`keep_batches`](Self::keep_batches)).
    pub fn finish_decoded(mut self) -> Result<(W, WriteStats, Option<Decoded>)> {
        self.flush_batch()?;
        crate::write::parquet::encoding(|| self.writer.flush())?;
        let row_groups = self.writer.flushed_row_groups().len();
        let geo = metadata::wkb_multipolygons(
            super::schema::GEOMETRY,
            crate::bbox::union_bounds(self.builder.bounds(), self.extra_bounds),
            self.items > 0,
        )
        .map_err(HlsArrowError::Metadata)?;
        let stac =
            metadata::stac_geoparquet(&[self.collection]).map_err(HlsArrowError::Metadata)?;
        // The Arrow schema stored in the file is the rows' (the builder's) with the file
        // metadata too (GeoPandas reads `geo` from there when given a folder of files).
        let stored = std::sync::Arc::new(self.builder.schema().as_ref().clone().with_metadata(
            metadata::schema_metadata([
                (metadata::GEO_KEY, geo.as_str()),
                (metadata::STAC_KEY, stac.as_str()),
            ]),
        ));
        self.writer.append_key_value_metadata(KeyValue::new(
            ARROW_SCHEMA_META_KEY.to_string(),
            encode_arrow_schema(&stored),
        ));
        self.writer
            .append_key_value_metadata(KeyValue::new(metadata::GEO_KEY.to_string(), geo.clone()));
        self.writer
            .append_key_value_metadata(KeyValue::new(metadata::STAC_KEY.to_string(), stac.clone()));
        let counting = self.writer.into_inner()?;
        let decoded = self.kept.map(|batches| Decoded {
            schema: stored,
            batches,
            geo,
            stac,
        });
        Ok((
            counting.inner,
            WriteStats {
                items: self.items,
                batches: self.batches,
                row_groups,
                bytes: counting.bytes,
            },
            decoded,
        ))
    }
}

/// Counts the bytes written through it.
struct Counting<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
