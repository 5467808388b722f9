//! A fast stac-geoparquet write path for the fixed shape of HLS v2.0 items.
//!
//! The `stac` crate writes items through a generic path (`stac::Item` → `serde_json::Value`
//! → arrow-json schema inference → record batch). HLS items all have the same shape, so
//! this module declares that shape once, as a fixed Arrow schema per collection
//! ([`hls_schema`]), and goes from an item's JSON bytes straight into column builders
//! through typed serde structs that borrow their strings from the input.
//!
//! The file it writes has the columns and types the `stac` crate's writer infers for HLS
//! items, the same WKB geometry and `geo` covering, with three differences that keep every
//! item exactly as published: datetimes are `Timestamp(Microsecond, "UTC")` (LP DAAC
//! publishes microseconds; the `stac` writer floors them to milliseconds), `stac_version` is
//! the item's own, and the file metadata is stac-geoparquet 1.1 (`collections` included),
//! in the footer and in the stored Arrow schema alike.
//!
//! Anything outside the fixed shape (an unknown property, asset key or member, a value of
//! the wrong type, a non-MultiPolygon geometry) is refused with an [`HlsArrowError`] that
//! names it and the item, so that the caller can write that file with the generic writer.
//!
//! ```no_run
//! use hls_flow::Collection;
//! use hls_flow::write::hls_arrow::{HlsGeoparquetWriter, HlsWriterOptions};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let file = std::fs::File::create("HLSS30_2.0.parquet")?;
//! let mut writer = HlsGeoparquetWriter::new(file, Collection::Hlss30, HlsWriterOptions::default())?;
//! writer.write_json(br#"{"type": "Feature", "...": "..."}"#)?;
//! let stats = writer.finish()?;
//! println!("{} items, {} bytes", stats.items, stats.bytes);
//! # Ok(())
//! # }
//! ```

mod builder;
mod error;
mod item;
mod json;
mod meta;
mod runs;
mod schema;
mod stac_item;
mod wkb;
mod writer;

#[cfg(test)]
mod tests;

pub use builder::HlsBatchBuilder;
pub use error::{HlsArrowError, Result, ValueProblem};
pub use runs::{Ended, HOLD_BACK_MICROS, RUN_ROWS, SortedRuns};
pub use schema::{AssetSlot, GEOMETRY, THUMBNAIL, asset_slots, geometry_field, hls_schema};
pub use writer::{HlsGeoparquetWriter, HlsWriterOptions, WriteStats};

use crate::Collection;

impl HlsBatchBuilder {
    /// Checks one item's JSON bytes against the collection's fixed shape and appends it as
    /// a row; on error nothing is appended.
    pub fn append_json(&mut self, json: &[u8]) -> Result<()> {
        let item = json::parse_item(json, self.slots(), self.collection_id())?;
        self.append(&item);
        Ok(())
    }

    /// Appends the item of a granule's ECHO10 values as a row, built straight from them
    /// (the row `append_json` makes of `to_stac_item(meta)`). A granule of another
    /// collection, or without geometry, is refused as `append_json` would refuse its item;
    /// on error nothing is appended.
    pub fn append_meta(&mut self, meta: &crate::source::hls::GranuleMeta) -> Result<()> {
        self.check_meta(meta)?;
        self.append_checked_meta(meta);
        Ok(())
    }

    /// The check of [`append_meta`](Self::append_meta), appending nothing.
    pub fn check_meta(&self, meta: &crate::source::hls::GranuleMeta) -> Result<()> {
        let invalid = |field: &str, problem| HlsArrowError::InvalidValue {
            id: Some(meta.granule_ur.clone()),
            field: field.to_string(),
            problem,
        };
        if meta.collection.stac_id() != self.collection_id() {
            return Err(invalid(
                "collection",
                ValueProblem::OtherCollection {
                    found: meta.collection.stac_id().to_string(),
                    expected: self.collection_id(),
                },
            ));
        }
        if meta.polygons.is_empty() || meta.polygons.iter().any(Vec::is_empty) {
            return Err(invalid(
                "geometry.coordinates",
                ValueProblem::Rings("empty MultiPolygon"),
            ));
        }
        Ok(())
    }

    /// Appends the row of a granule that passed [`check_meta`](Self::check_meta).
    pub(crate) fn append_checked_meta(&mut self, meta: &crate::source::hls::GranuleMeta) {
        let item = meta::from_meta(meta, self.slots());
        self.append(&item);
    }

    /// Checks a `stac::Item` against the collection's fixed shape and appends it as a row;
    /// on error nothing is appended.
    pub fn append_item(&mut self, item: &stac::Item) -> Result<()> {
        let item = stac_item::from_stac_item(item, self.slots(), self.collection_id())?;
        self.append(&item);
        Ok(())
    }
}

/// Checks one item's JSON bytes against a collection's fixed shape without writing it: the
/// error a [`HlsGeoparquetWriter`] would return, or `Ok`.
pub fn check_json(json: &[u8], collection: Collection) -> Result<()> {
    json::parse_item(json, &asset_slots(collection), collection.stac_id()).map(|_| ())
}
