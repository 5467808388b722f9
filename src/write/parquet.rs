//! How hls-flow writes parquet, in one place: ZSTD level 3, no dictionaries, parquet
//! format version 1.0, and row groups of [`FAST_ROW_GROUP_SIZE`] rows for daily files of the
//! fixed-schema writer and [`DEFAULT_ROW_GROUP_SIZE`] for monthly partitions (and the
//! generic writer). The three writers (the fixed-schema one in
//! [`hls_arrow`](crate::write::hls_arrow), the generic one in
//! [`stac_arrow`](crate::write::stac_arrow), and the repartition's) take their settings
//! from here; their GeoParquet metadata comes from [`metadata`](crate::write::metadata).

use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{WriterProperties, WriterPropertiesBuilder, WriterVersion};
use stac::geoparquet::WriterOptions;

/// The ZSTD level: level 15, the `stac` crate's default, is 2.5× slower for a 1 % smaller
/// file.
pub const ZSTD_LEVEL: i32 = 3;

/// Rows per row group of monthly partitions and of the generic writer: small enough for
/// readers to prune, large enough to compress well.
pub const DEFAULT_ROW_GROUP_SIZE: usize = 10_000;

/// Rows per row group of the fixed-schema writer's daily files. Its ~130 columns each hold
/// a zstd compression context (~1 MB) from their first compressed page until the row group
/// ends, and uncompressed page data until then: with 10,000-row groups an open file held
/// ~150 MB of both once its pages filled, and memory grew with the day. At 2,000 rows no
/// page fills before the row group ends (each column is compressed once, at the end, with
/// one short-lived context), an open HLSS30 file holds ~11 MB, and the file is ~7 % larger.
pub const FAST_ROW_GROUP_SIZE: usize = 2_000;

/// The compression of every file: ZSTD at [`ZSTD_LEVEL`].
pub fn compression() -> Compression {
    Compression::ZSTD(ZstdLevel::try_new(ZSTD_LEVEL).unwrap_or_default())
}

/// The writer properties of a file with `row_group_rows` rows per row group: the
/// [`compression`], no dictionaries (nearly every HLS column is unique per item: with them a
/// file is ~20 % larger and writing ~10 % slower), parquet format version 1.0.
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
