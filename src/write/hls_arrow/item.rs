//! The validated, typed form of one HLS item: what the column builders take.
//!
//! Both entry points (JSON bytes, `&stac::Item`) produce an [`HlsItem`] that borrows from
//! their input; everything that could fail has been checked by then, so appending it to the
//! builders cannot fail half-way.

use std::borrow::Cow;

/// One item, checked against the fixed HLS shape of its collection.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct HlsItem<'a> {
    pub id: Cow<'a, str>,
    /// The item's `stac_version`, as published (`1.0.0` or `1.1.0`).
    pub stac_version: &'static str,
    /// `None` when absent or empty (the `stac` crate drops an empty list).
    pub stac_extensions: Option<Vec<Cow<'a, str>>>,
    pub bbox: Option<[f64; 4]>,
    /// Polygons → rings → `[x, y]`, every ring closed.
    pub geometry: Vec<Vec<Vec<[f64; 2]>>>,
    pub links: Vec<HlsLink<'a>>,
    /// One entry per asset slot of the collection (see [`super::schema::asset_slots`]).
    pub assets: Vec<Option<HlsAsset<'a>>>,
    pub datetime: Option<i64>,
    pub start_datetime: Option<i64>,
    pub end_datetime: Option<i64>,
    pub platform: Option<Cow<'a, str>>,
    pub instruments: Option<Vec<Cow<'a, str>>>,
    pub cloud_cover: Option<f64>,
    pub proj_transform: Option<Vec<f64>>,
    pub proj_shape: Option<Vec<i64>>,
    pub proj_epsg: Option<i64>,
    pub sun_azimuth: Option<f64>,
    pub view_azimuth: Option<f64>,
    pub sci_doi: Option<Cow<'a, str>>,
}

/// One link (`href`, `rel`, optional `type`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HlsLink<'a> {
    pub href: Cow<'a, str>,
    pub rel: Cow<'a, str>,
    pub media_type: Option<Cow<'a, str>>,
}

/// One asset (`href`, optional `type`, `roles`, `eo:bands`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HlsAsset<'a> {
    pub href: Cow<'a, str>,
    pub media_type: Option<Cow<'a, str>>,
    /// `None` when absent or empty (the `stac` crate drops an empty list).
    pub roles: Option<Vec<Cow<'a, str>>>,
    pub bands: Option<Vec<HlsBand<'a>>>,
}

/// One `eo:bands` entry.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct HlsBand<'a> {
    pub name: Option<Cow<'a, str>>,
    pub common_name: Option<Cow<'a, str>>,
    pub center_wavelength: Option<f64>,
    pub full_width_half_max: Option<f64>,
}

/// Closes every ring as `geo_types::Polygon::new` does (repeat the first point when the
/// last differs), and rejects the degenerate shapes the fixed path does not write.
pub(crate) fn close_rings(
    geometry: &mut [Vec<Vec<[f64; 2]>>],
) -> std::result::Result<(), &'static str> {
    const MAX: usize = u32::MAX as usize;
    if geometry.is_empty() {
        return Err("empty MultiPolygon");
    }
    if geometry.len() > MAX {
        return Err("too many polygons for WKB");
    }
    for polygon in geometry.iter_mut() {
        if polygon.is_empty() {
            return Err("polygon without rings");
        }
        if polygon.len() > MAX {
            return Err("too many rings for WKB");
        }
        for ring in polygon.iter_mut() {
            let (Some(&first), Some(&last)) = (ring.first(), ring.last()) else {
                return Err("empty ring");
            };
            if first != last {
                ring.push(first);
            }
            if ring.len() > MAX {
                return Err("too many points for WKB");
            }
        }
    }
    Ok(())
}

/// Microseconds since the epoch: the unit of the datetime columns, which is the precision
/// LP DAAC publishes (`2024-06-01T00:06:19.072460Z`). Nanoseconds, never published, are
/// floored.
pub(crate) fn micros(dt: &chrono::DateTime<chrono::Utc>) -> i64 {
    dt.timestamp_micros()
}

/// Parses a datetime exactly as `stac::Item` deserialization does, to microseconds.
pub(crate) fn parse_micros(s: &str) -> Option<i64> {
    stac::datetime::parse_datetime_permissively(s)
        .ok()
        .map(|dt| micros(&dt))
}
