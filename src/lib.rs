//! hls-flow: a complete, queryable stac-geoparquet cache of NASA's HLS v2.0 STAC items.
//!
//! It asks CMR for every HLSL30 and HLSS30 granule of each UTC day, fetches each granule's
//! STAC item, and writes stac-geoparquet files: daily files, then monthly hive partitions.
//! The layers, each a folder:
//!
//! - [`source`]: where granules and items come from (CMR search, ECHO10 records, the
//!   published `_stac.json` items, and the HTTP, retry and throttle machinery under them);
//! - [`write`](mod@write): how they become files (a day harvested into a daily file, the parquet
//!   writers, the repartition of a month, local folders and object stores);
//! - [`engine`]: the work as tasks (the task model, the DAG, the checkpoint, the scheduler,
//!   the executor that runs harvest and repartition tasks, `status`, workflow files);
//! - [`cli`]: the command line, which only parses and calls the layers.
//!
//! Beside them: the domain's small types ([`Collection`], [`period`], [`bbox`]), the one
//! [`Error`], and [`api`], the library calls of the Python tool hls-flow replaces. The CMR +
//! LP DAAC emulator the tests run against is a crate of its own (`hls-flow-emulator`).

#![warn(missing_docs)]

pub mod api;
pub mod bbox;
pub mod cli;
pub mod collection;
pub mod engine;
pub mod error;
pub mod period;
pub mod progress;
pub mod query;
pub mod source;
pub mod write;

pub use collection::Collection;
pub use error::{Error, Result};

/// The cores this process may use (two if the system does not say): what the pools of
/// encoders, row-group builders and row-group readers are sized by.
pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZero::get)
}
