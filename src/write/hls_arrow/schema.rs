//! The fixed Arrow schema of one HLS collection's stac-geoparquet file.
//!
//! It is, field for field, the schema the `stac` crate's writer infers for a batch of HLS
//! items whose first item has every optional field, in the published key order. That order
//! is `stac::FlatItem`'s (`type`, `stac_version`, `stac_extensions`, `id`, `geometry`,
//! `bbox`, `links`, `assets`, `collection`, then the properties: `datetime`,
//! `start_datetime`, `end_datetime`, then as published), rearranged by how the `stac`
//! writer takes the geometry and bbox out of the flattened item: `serde_json::Map::remove`
//! is a `swap_remove` (the crate enables `preserve_order`), so the last property
//! (`sci:doi`) takes the place of `geometry` and the next-to-last (`view:azimuth`) that of
//! `bbox`, and `bbox` is re-inserted at the end; `geometry` (WKB) comes last. Every field
//! is nullable, as arrow-json infers them.

use crate::Collection;
use crate::source::hls::{Band, bands};
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use std::collections::HashMap;
use std::sync::Arc;

/// The asset key of the browse image, present in both collections after the data assets.
pub const THUMBNAIL: &str = "thumbnail";

/// Name of the geometry column (WKB).
pub const GEOMETRY: &str = "geometry";

/// One asset key of a collection and the band it carries (`None` for the thumbnail).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AssetSlot {
    /// The asset key (`B01`, …, `thumbnail`).
    pub key: &'static str,
    /// The data asset's band; `None` for the thumbnail, which has no `eo:bands`.
    pub band: Option<&'static Band>,
}

/// The asset keys of a collection's items, in the published order: the data assets, then
/// the thumbnail.
pub fn asset_slots(collection: Collection) -> Vec<AssetSlot> {
    bands(collection)
        .iter()
        .map(|band| AssetSlot {
            key: band.name,
            band: Some(band),
        })
        .chain(std::iter::once(AssetSlot {
            key: THUMBNAIL,
            band: None,
        }))
        .collect()
}

fn utf8(name: &str) -> Field {
    Field::new(name, DataType::Utf8, true)
}

fn f64_field(name: &str) -> Field {
    Field::new(name, DataType::Float64, true)
}

fn list_of(name: &str, item: DataType) -> Field {
    Field::new(name, DataType::new_list(item, true), true)
}

fn dictionary(name: &str) -> Field {
    Field::new(
        name,
        DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
        true,
    )
}

fn timestamp(name: &str) -> Field {
    Field::new(
        name,
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        true,
    )
}

/// The struct fields of one `eo:bands` entry: `name`, then whichever of `common_name`,
/// `center_wavelength`, `full_width_half_max` the band has.
pub fn band_fields(band: &Band) -> Fields {
    let mut fields = vec![utf8("name")];
    if band.common_name.is_some() {
        fields.push(utf8("common_name"));
    }
    if band.center_wavelength.is_some() {
        fields.push(f64_field("center_wavelength"));
    }
    if band.full_width_half_max.is_some() {
        fields.push(f64_field("full_width_half_max"));
    }
    fields.into()
}

/// The struct fields of one asset: `href`, `type`, `roles`, and `eo:bands` for data assets.
pub fn asset_fields(slot: &AssetSlot) -> Fields {
    let mut fields = vec![utf8("href"), utf8("type"), list_of("roles", DataType::Utf8)];
    if let Some(band) = slot.band {
        fields.push(list_of("eo:bands", DataType::Struct(band_fields(band))));
    }
    fields.into()
}

/// The struct fields of the `assets` column.
pub fn assets_fields(collection: Collection) -> Fields {
    asset_slots(collection)
        .iter()
        .map(|slot| Field::new(slot.key, DataType::Struct(asset_fields(slot)), true))
        .collect()
}

/// The struct fields of one link: `href`, `rel`, `type`.
pub fn link_fields() -> Fields {
    vec![utf8("href"), utf8("rel"), utf8("type")].into()
}

/// The struct fields of the `bbox` column.
pub fn bbox_fields() -> Fields {
    ["xmin", "ymin", "xmax", "ymax"]
        .into_iter()
        .map(f64_field)
        .collect()
}

/// The geometry field: WKB binary with the `geoarrow.wkb` extension name (and no extension
/// metadata, no CRS), as the `stac` writer's file declares it.
pub fn geometry_field() -> Field {
    Field::new(GEOMETRY, DataType::Binary, true).with_metadata(HashMap::from([(
        "ARROW:extension:name".to_string(),
        "geoarrow.wkb".to_string(),
    )]))
}

/// The fixed Arrow schema of a stac-geoparquet file of one HLS collection.
pub fn hls_schema(collection: Collection) -> SchemaRef {
    Arc::new(Schema::new(vec![
        dictionary("type"),
        dictionary("stac_version"),
        list_of("stac_extensions", DataType::Utf8),
        utf8("id"),
        // Where the `stac` writer's `Map::remove("geometry")` / `remove("bbox")` (a
        // `swap_remove` with serde_json's `preserve_order`) moves the last two properties.
        utf8("sci:doi"),
        f64_field("view:azimuth"),
        list_of("links", DataType::Struct(link_fields())),
        Field::new("assets", DataType::Struct(assets_fields(collection)), true),
        dictionary("collection"),
        timestamp("datetime"),
        timestamp("start_datetime"),
        timestamp("end_datetime"),
        utf8("platform"),
        list_of("instruments", DataType::Utf8),
        f64_field("eo:cloud_cover"),
        list_of("proj:transform", DataType::Float64),
        list_of("proj:shape", DataType::Int64),
        Field::new("proj:epsg", DataType::Int64, true),
        f64_field("view:sun_azimuth"),
        // Re-inserted at the end by the `stac` writer after it converts the bbox to a struct.
        Field::new("bbox", DataType::Struct(bbox_fields()), true),
        geometry_field(),
    ]))
}
