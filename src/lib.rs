//! hls-flow: a complete, queryable stac-geoparquet cache of NASA's HLS v2.0 STAC items.

#![warn(missing_docs)]

pub mod collection;
pub mod emulator;
pub mod hls;

pub use collection::Collection;
