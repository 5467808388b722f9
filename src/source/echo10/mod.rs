//! ECHO10, the native metadata format of HLS granules in CMR.
//!
//! Bulk mode builds STAC items from CMR's ECHO10 records (`/search/granules.echo10`, 2,000
//! granules a page) instead of fetching one `_stac.json` per granule. This module is that
//! layer (the emulator crate renders the records and pages it reads; its tests check that
//! rendering then parsing gives back an equal [`GranuleMeta`]):
//!
//! - [`parse_granule`]: one `<Granule>` record → [`GranuleMeta`] (streaming, no DOM), plus
//!   the names of the optional values that were missing or unusable ([`Missing`]);
//! - [`PageReader`]: CMR's echo10 results pages, read one `<result>` at a time;
//! - [`read_page`]: a page's records parsed while its body downloads (never held whole), one
//!   record at a time by a scanner of our own for the plain XML CMR writes (`scan`), the
//!   rest of a page outside it by [`PageReader`];
//! - [`item_from_record`]: a record straight to the STAC item, through
//!   [`hls::to_stac_item`](crate::source::hls::to_stac_item) (the one item builder).

mod builder;
mod error;
mod page;
mod parse;
mod scan;
mod stream;

pub use error::Echo10Error;
pub use page::{PageReader, PageRecord};
pub use parse::parse_granule;
pub use stream::read_page;

use crate::source::hls::{GranuleMeta, to_stac_item};

/// Names of the optional values a record lacked or carried in an unusable form, in the order
/// they were checked: additional attribute names (`CLOUD_COVERAGE`, …) and, where a fallback
/// was used, `EndingDateTime` / `LastUpdate`, or `DataSetId` when it names neither collection.
/// Callers count them in the day's stats.
pub type Missing = Vec<&'static str>;

/// A parsed record: its values and what was missing from it.
pub type Parsed = (GranuleMeta, Missing);

/// The additional attributes that the STAC item is made from (all optional).
pub mod attr {
    /// `CLOUD_COVERAGE` → `eo:cloud_cover`.
    pub const CLOUD_COVERAGE: &str = "CLOUD_COVERAGE";
    /// `MGRS_TILE_ID` → `proj:epsg`.
    pub const MGRS_TILE_ID: &str = "MGRS_TILE_ID";
    /// `ULX` → `proj:transform[2]`.
    pub const ULX: &str = "ULX";
    /// `ULY` → `proj:transform[5]`.
    pub const ULY: &str = "ULY";
    /// `NROWS` → `proj:shape[0]`.
    pub const NROWS: &str = "NROWS";
    /// `NCOLS` → `proj:shape[1]`.
    pub const NCOLS: &str = "NCOLS";
    /// `SPATIAL_RESOLUTION` → `proj:transform[0]`, `[4]`.
    pub const SPATIAL_RESOLUTION: &str = "SPATIAL_RESOLUTION";
    /// `MEAN_SUN_AZIMUTH_ANGLE` → `view:sun_azimuth`.
    pub const MEAN_SUN_AZIMUTH_ANGLE: &str = "MEAN_SUN_AZIMUTH_ANGLE";
    /// `MEAN_VIEW_AZIMUTH_ANGLE` → `view:azimuth`.
    pub const MEAN_VIEW_AZIMUTH_ANGLE: &str = "MEAN_VIEW_AZIMUTH_ANGLE";
    /// `IDENTIFIER_PRODUCT_DOI` → `sci:doi`.
    pub const IDENTIFIER_PRODUCT_DOI: &str = "IDENTIFIER_PRODUCT_DOI";

    /// All of them, in the order [`Missing`](super::Missing) reports them.
    pub const MAPPED: [&str; 10] = [
        CLOUD_COVERAGE,
        MGRS_TILE_ID,
        ULX,
        ULY,
        NROWS,
        NCOLS,
        SPATIAL_RESOLUTION,
        MEAN_SUN_AZIMUTH_ANGLE,
        MEAN_VIEW_AZIMUTH_ANGLE,
        IDENTIFIER_PRODUCT_DOI,
    ];
}

/// Builds the STAC item of one ECHO10 `<Granule>` record: [`parse_granule`] then
/// [`to_stac_item`]. `concept_id` is the granule's CMR concept id (it is not in the record).
pub fn item_from_record(
    xml: &[u8],
    concept_id: &str,
) -> Result<(serde_json::Value, Missing), Echo10Error> {
    let (meta, missing) = parse_granule(xml, concept_id)?;
    Ok((to_stac_item(&meta), missing))
}
