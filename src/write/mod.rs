//! How granules become files.
//!
//! - [`harvest`]: one collection over one UTC day into one daily file, published only when
//!   every granule CMR listed was written;
//! - [`parquet`]: how every file is written (compression, row groups, no dictionaries);
//! - [`metadata`]: the GeoParquet `geo` and `stac-geoparquet` file metadata, built and merged;
//! - [`geoparquet`]: batch writers on a blocking thread (the fixed-schema one, falling back
//!   to the generic one from a spill of the fetched items), and reading files back;
//! - [`hls_arrow`]: the fast fixed-schema writer for the HLS item shape;
//! - [`stac_arrow`]: the generic writer, for items of any shape;
//! - [`repartition`]: a month of daily files into one spatially sorted hive partition;
//! - [`output`]: local folders and object stores, with files published in one step;
//! - [`scratch`]: a file being written, in memory while small, then in the scratch folder;
//! - [`recent`]: small daily files just written, kept decoded for their month's repartition.

pub mod fence;
pub mod geoparquet;
pub mod harvest;
pub mod hls_arrow;
pub mod metadata;
pub mod output;
pub mod parquet;
pub mod recent;
pub mod repartition;
pub mod scratch;
pub mod stac_arrow;
