//! How granules become files.
//!
//! - [`harvest`]: one collection over one UTC day into one daily file, published only when
//!   every granule CMR listed was written;
//! - [`geoparquet`]: the one parquet writer configuration and GeoParquet metadata, batch
//!   writers on a blocking thread, and reading files back;
//! - [`hls_arrow`]: the fast fixed-schema writer for the HLS item shape;
//! - [`repartition`]: a month of daily files into one spatially sorted hive partition;
//! - [`output`]: local folders and object stores, with files published in one step.

pub mod geoparquet;
pub mod harvest;
pub mod hls_arrow;
pub mod output;
pub mod repartition;
