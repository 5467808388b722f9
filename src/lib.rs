//! hls-flow: a complete, queryable stac-geoparquet cache of NASA's HLS v2.0 STAC items.
//!
//! It asks CMR for every HLSL30 and HLSS30 granule of each UTC day, fetches each granule's
//! STAC item, and writes stac-geoparquet files. The modules, each with one job:
//! [`cmr`] (granule search), [`items`] (item fetches), [`harvest`] (one day into one file),
//! [`geoparquet`] (writing and reading files), [`output`] (local folders and object stores),
//! [`api`] (the library calls), [`emulator`] (a CMR + LP DAAC stand-in for offline work).

#![warn(missing_docs)]

pub mod api;
pub mod bbox;
pub mod cli;
pub mod cmr;
pub mod collection;
pub mod dag;
pub mod echo10;
pub mod emulator;
pub mod error;
pub mod geoparquet;
pub mod harvest;
pub mod hls;
pub mod hls_arrow;
pub mod http;
pub mod items;
pub mod output;
pub mod period;
pub mod pipeline;
pub mod progress;
pub mod repartition;
pub mod retry;
pub mod scheduler;
pub mod state;
pub mod status;
pub mod throttle;
pub mod workflow;

pub use collection::Collection;
pub use error::{Error, Result};
