//! The state of one `<Granule>` record being read, fed element by element.
//!
//! The XML readers ([`parse`](super::parse), [`page`](super::page)) turn reader events into
//! [`GranuleBuilder::start`], [`GranuleBuilder::text`] and [`GranuleBuilder::end`] calls; the
//! builder keeps only what the [`GranuleMeta`] needs, and [`GranuleBuilder::finish`] checks
//! and converts it. A problem found while streaming (a bad point, a short ring) is kept and
//! reported by `finish`, so that the reader can still consume the rest of the record.

use super::attr;
use super::error::{Echo10Error, clip};
use super::{Missing, Parsed};
use crate::collection::Collection;
use crate::source::hls::GranuleMeta;
use chrono::{DateTime, NaiveDateTime, Utc};

/// The ECHO10 elements the builder tells apart; everything else is [`Tag::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tag {
    Granule,
    GranuleUR,
    InsertTime,
    LastUpdate,
    Collection,
    DataSetId,
    ShortName,
    Temporal,
    RangeDateTime,
    BeginningDateTime,
    EndingDateTime,
    Spatial,
    HorizontalSpatialDomain,
    Geometry,
    GPolygon,
    Boundary,
    Point,
    PointLongitude,
    PointLatitude,
    Platforms,
    Platform,
    Instruments,
    Instrument,
    AdditionalAttributes,
    AdditionalAttribute,
    Name,
    Values,
    Value,
    Other,
}

impl Tag {
    #[cfg(test)]
    const NAMED: [Tag; 28] = [
        Tag::Granule,
        Tag::GranuleUR,
        Tag::InsertTime,
        Tag::LastUpdate,
        Tag::Collection,
        Tag::DataSetId,
        Tag::ShortName,
        Tag::Temporal,
        Tag::RangeDateTime,
        Tag::BeginningDateTime,
        Tag::EndingDateTime,
        Tag::Spatial,
        Tag::HorizontalSpatialDomain,
        Tag::Geometry,
        Tag::GPolygon,
        Tag::Boundary,
        Tag::Point,
        Tag::PointLongitude,
        Tag::PointLatitude,
        Tag::Platforms,
        Tag::Platform,
        Tag::Instruments,
        Tag::Instrument,
        Tag::AdditionalAttributes,
        Tag::AdditionalAttribute,
        Tag::Name,
        Tag::Values,
        Tag::Value,
    ];

    /// The tag of an element's local name.
    pub(crate) fn of(local_name: &str) -> Tag {
        match local_name {
            "Granule" => Tag::Granule,
            "GranuleUR" => Tag::GranuleUR,
            "InsertTime" => Tag::InsertTime,
            "LastUpdate" => Tag::LastUpdate,
            "Collection" => Tag::Collection,
            "DataSetId" => Tag::DataSetId,
            "ShortName" => Tag::ShortName,
            "Temporal" => Tag::Temporal,
            "RangeDateTime" => Tag::RangeDateTime,
            "BeginningDateTime" => Tag::BeginningDateTime,
            "EndingDateTime" => Tag::EndingDateTime,
            "Spatial" => Tag::Spatial,
            "HorizontalSpatialDomain" => Tag::HorizontalSpatialDomain,
            "Geometry" => Tag::Geometry,
            "GPolygon" => Tag::GPolygon,
            "Boundary" => Tag::Boundary,
            "Point" => Tag::Point,
            "PointLongitude" => Tag::PointLongitude,
            "PointLatitude" => Tag::PointLatitude,
            "Platforms" => Tag::Platforms,
            "Platform" => Tag::Platform,
            "Instruments" => Tag::Instruments,
            "Instrument" => Tag::Instrument,
            "AdditionalAttributes" => Tag::AdditionalAttributes,
            "AdditionalAttribute" => Tag::AdditionalAttribute,
            "Name" => Tag::Name,
            "Values" => Tag::Values,
            "Value" => Tag::Value,
            _ => Tag::Other,
        }
    }

    /// The element name (`"element"` for [`Tag::Other`]).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Tag::Granule => "Granule",
            Tag::GranuleUR => "GranuleUR",
            Tag::InsertTime => "InsertTime",
            Tag::LastUpdate => "LastUpdate",
            Tag::Collection => "Collection",
            Tag::DataSetId => "DataSetId",
            Tag::ShortName => "ShortName",
            Tag::Temporal => "Temporal",
            Tag::RangeDateTime => "RangeDateTime",
            Tag::BeginningDateTime => "BeginningDateTime",
            Tag::EndingDateTime => "EndingDateTime",
            Tag::Spatial => "Spatial",
            Tag::HorizontalSpatialDomain => "HorizontalSpatialDomain",
            Tag::Geometry => "Geometry",
            Tag::GPolygon => "GPolygon",
            Tag::Boundary => "Boundary",
            Tag::Point => "Point",
            Tag::PointLongitude => "PointLongitude",
            Tag::PointLatitude => "PointLatitude",
            Tag::Platforms => "Platforms",
            Tag::Platform => "Platform",
            Tag::Instruments => "Instruments",
            Tag::Instrument => "Instrument",
            Tag::AdditionalAttributes => "AdditionalAttributes",
            Tag::AdditionalAttribute => "AdditionalAttribute",
            Tag::Name => "Name",
            Tag::Values => "Values",
            Tag::Value => "Value",
            Tag::Other => "element",
        }
    }

    /// Whether the text of this element can be a value the builder keeps.
    fn is_value_leaf(self) -> bool {
        matches!(
            self,
            Tag::GranuleUR
                | Tag::InsertTime
                | Tag::LastUpdate
                | Tag::DataSetId
                | Tag::ShortName
                | Tag::BeginningDateTime
                | Tag::EndingDateTime
                | Tag::PointLongitude
                | Tag::PointLatitude
                | Tag::Name
                | Tag::Value
        )
    }
}

use Tag::*;

/// Path of a `Boundary/Point` inside a `<Granule>`.
const POINT: [Tag; 7] = [
    Granule,
    Spatial,
    HorizontalSpatialDomain,
    Geometry,
    GPolygon,
    Boundary,
    Point,
];

/// One `<Granule>` record being read.
#[derive(Debug, Default)]
pub(crate) struct GranuleBuilder {
    path: Vec<Tag>,
    text: String,
    granule_ur: Option<String>,
    insert_time: Option<String>,
    last_update: Option<String>,
    dataset_id: Option<String>,
    collection_short_name: Option<String>,
    begin: Option<String>,
    end: Option<String>,
    platform: Option<String>,
    instrument: Option<String>,
    polygons: Vec<Vec<(f64, f64)>>,
    ring: Vec<(f64, f64)>,
    lon: Option<String>,
    lat: Option<String>,
    attr_name: Option<String>,
    attr_value: Option<String>,
    attrs: [Option<String>; attr::MAPPED.len()],
    error: Option<Echo10Error>,
}

impl GranuleBuilder {
    /// A builder before the `<Granule>` start tag.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Depth of the element being read (0 before `<Granule>` and after `</Granule>`).
    pub(crate) fn depth(&self) -> usize {
        self.path.len()
    }

    /// The innermost open element.
    pub(crate) fn innermost(&self) -> &'static str {
        self.path.last().map_or("Granule", |t| t.name())
    }

    /// The `GranuleUR`, once read.
    pub(crate) fn granule_ur(&self) -> Option<&str> {
        self.granule_ur.as_deref()
    }

    /// An element starts.
    pub(crate) fn start(&mut self, tag: Tag) {
        self.text.clear();
        self.path.push(tag);
        match self.path.as_slice() {
            [
                Granule,
                Spatial,
                HorizontalSpatialDomain,
                Geometry,
                GPolygon,
            ] => self.ring.clear(),
            [.., GPolygon, Boundary, Point] if self.in_boundary() => {
                self.lon = None;
                self.lat = None;
            }
            [Granule, AdditionalAttributes, AdditionalAttribute] => {
                self.attr_name = None;
                self.attr_value = None;
            }
            _ => {}
        }
    }

    /// Whether character data here can be part of a value kept ([`text`](Self::text)
    /// ignores it otherwise).
    pub(crate) fn wants_text(&self) -> bool {
        self.path.last().is_some_and(|t| t.is_value_leaf())
    }

    /// Character data (entities already resolved).
    pub(crate) fn text(&mut self, text: &str) {
        if self.wants_text() {
            self.text.push_str(text);
        }
    }

    /// The innermost element ends.
    pub(crate) fn end(&mut self) {
        // The buffer is given back (cleared) below: it is reused for every element.
        let mut text = std::mem::take(&mut self.text);
        let value = text.trim();
        match self.path.as_slice() {
            [Granule, GranuleUR] => set_once(&mut self.granule_ur, value),
            [Granule, InsertTime] => set_once(&mut self.insert_time, value),
            [Granule, LastUpdate] => set_once(&mut self.last_update, value),
            [Granule, Collection, DataSetId] => set_once(&mut self.dataset_id, value),
            [Granule, Collection, ShortName] => set_once(&mut self.collection_short_name, value),
            [Granule, Temporal, RangeDateTime, BeginningDateTime] => {
                set_once(&mut self.begin, value)
            }
            [Granule, Temporal, RangeDateTime, EndingDateTime] => set_once(&mut self.end, value),
            [Granule, Platforms, Platform, ShortName] => set_once(&mut self.platform, value),
            [
                Granule,
                Platforms,
                Platform,
                Instruments,
                Instrument,
                ShortName,
            ] => set_once(&mut self.instrument, value),
            [.., Point, PointLongitude] if self.in_point() => set_once(&mut self.lon, value),
            [.., Point, PointLatitude] if self.in_point() => set_once(&mut self.lat, value),
            [.., Boundary, Point] if self.in_boundary() => self.end_point(),
            [
                Granule,
                Spatial,
                HorizontalSpatialDomain,
                Geometry,
                GPolygon,
            ] => self.end_ring(),
            [Granule, AdditionalAttributes, AdditionalAttribute, Name] => {
                set_once(&mut self.attr_name, value)
            }
            [
                Granule,
                AdditionalAttributes,
                AdditionalAttribute,
                Values,
                Value,
            ] => set_once(&mut self.attr_value, value),
            [Granule, AdditionalAttributes, AdditionalAttribute] => self.end_attribute(),
            _ => {}
        }
        self.path.pop();
        text.clear();
        self.text = text;
    }

    /// Whether the path is `Granule/…/GPolygon/Boundary/Point`.
    fn in_boundary(&self) -> bool {
        self.path.as_slice() == POINT
    }

    /// Whether the path is `Granule/…/GPolygon/Boundary/Point/<leaf>`.
    fn in_point(&self) -> bool {
        self.path.len() == POINT.len() + 1 && self.path[..POINT.len()] == POINT
    }

    fn end_point(&mut self) {
        let lon = coordinate(self.lon.take(), "PointLongitude", 180.0);
        let lat = coordinate(self.lat.take(), "PointLatitude", 90.0);
        match (lon, lat) {
            (Ok(lon), Ok(lat)) => self.ring.push((lon, lat)),
            (Err(e), _) | (_, Err(e)) => self.fail(e),
        }
    }

    fn end_ring(&mut self) {
        let ring = std::mem::take(&mut self.ring);
        let closed = ring.len() > 1 && ring.first() == ring.last();
        let distinct = ring.len() - usize::from(closed);
        if distinct < 3 {
            self.fail(Echo10Error::Invalid {
                granule: None,
                field: "GPolygon",
                value: format!("{distinct} points"),
                reason: "a boundary needs at least 3 points",
            });
        } else {
            self.polygons.push(ring);
        }
    }

    fn end_attribute(&mut self) {
        let (Some(name), Some(value)) = (self.attr_name.take(), self.attr_value.take()) else {
            return;
        };
        if let Some(i) = attr::MAPPED.iter().position(|n| *n == name)
            && self.attrs[i].is_none()
        {
            self.attrs[i] = Some(value);
        }
    }

    /// Keeps the first problem found while streaming.
    fn fail(&mut self, error: Echo10Error) {
        if self.error.is_none() {
            self.error = Some(error);
        }
    }

    /// Checks and converts what was read into a [`GranuleMeta`] and what was missing.
    pub(crate) fn finish(self, concept_id: &str) -> Result<Parsed, Echo10Error> {
        let id = self.granule_ur;
        if let Some(mut e) = self.error {
            e.set_granule_if_unknown(id.as_deref());
            return Err(e);
        }
        let Some(id) = id else {
            return Err(Echo10Error::Missing {
                granule: None,
                field: "GranuleUR",
            });
        };
        let granule = Some(id.clone());
        let missing_field = |field| Echo10Error::Missing {
            granule: granule.clone(),
            field,
        };
        let invalid = |field, value: &str, reason| Echo10Error::Invalid {
            granule: granule.clone(),
            field,
            value: clip(value),
            reason,
        };
        let mut missing = Missing::new();

        let collection = Collection::from_granule_id(&id).ok_or_else(|| {
            invalid(
                "GranuleUR",
                &id,
                "not an HLS v2.0 granule id (HLS.L30.… or HLS.S30.…)",
            )
        })?;
        let other = match collection {
            Collection::Hlsl30 => Collection::Hlss30,
            Collection::Hlss30 => Collection::Hlsl30,
        };
        let mismatch = |field, value: &str| Echo10Error::CollectionMismatch {
            granule: granule.clone(),
            field,
            value: clip(value),
            collection,
        };
        if let Some(ds) = &self.dataset_id
            && ds != collection.dataset_id()
        {
            if ds == other.dataset_id() {
                return Err(mismatch("DataSetId", ds));
            }
            missing.push("DataSetId");
        }
        if let Some(sn) = &self.collection_short_name
            && sn.eq_ignore_ascii_case(other.short_name())
        {
            return Err(mismatch("ShortName", sn));
        }

        let time = |field, value: &str| {
            parse_time(value).ok_or_else(|| invalid(field, value, "not an ISO 8601 date-time"))
        };
        let begin = match &self.begin {
            Some(v) => time("BeginningDateTime", v)?,
            None => return Err(missing_field("BeginningDateTime")),
        };
        let end = match &self.end {
            Some(v) => time("EndingDateTime", v)?,
            None => {
                missing.push("EndingDateTime");
                begin
            }
        };
        let updated = match (&self.last_update, &self.insert_time) {
            (Some(v), _) => time("LastUpdate", v)?,
            (None, Some(v)) => {
                missing.push("LastUpdate");
                time("InsertTime", v)?
            }
            (None, None) => return Err(missing_field("LastUpdate")),
        };
        let platform = self
            .platform
            .ok_or_else(|| missing_field("Platform/ShortName"))?;
        let instrument = self
            .instrument
            .ok_or_else(|| missing_field("Instrument/ShortName"))?;
        if self.polygons.is_empty() {
            return Err(missing_field("GPolygon"));
        }

        let [cc, tile, ulx, uly, nrows, ncols, res, sun, view, doi] = self.attrs;
        let m = &mut missing;
        let cloud_cover = optional(m, attr::CLOUD_COVERAGE, cc, parse_f64);
        let mgrs_tile = optional(m, attr::MGRS_TILE_ID, tile, |s| Some(s.to_string()));
        let ulx = optional(m, attr::ULX, ulx, parse_f64);
        let uly = optional(m, attr::ULY, uly, parse_f64);
        let nrows = optional(m, attr::NROWS, nrows, parse_u32);
        let ncols = optional(m, attr::NCOLS, ncols, parse_u32);
        let resolution = optional(m, attr::SPATIAL_RESOLUTION, res, parse_f64);
        let sun_azimuth = optional(m, attr::MEAN_SUN_AZIMUTH_ANGLE, sun, parse_f64);
        let view_azimuth = optional(m, attr::MEAN_VIEW_AZIMUTH_ANGLE, view, parse_f64);
        let doi = optional(m, attr::IDENTIFIER_PRODUCT_DOI, doi, |s| {
            Some(s.to_string())
        });

        Ok((
            GranuleMeta {
                collection,
                granule_ur: id,
                concept_id: concept_id.to_string(),
                begin,
                end,
                updated,
                platform,
                instrument,
                polygons: self.polygons,
                cloud_cover,
                mgrs_tile,
                ulx,
                uly,
                nrows,
                ncols,
                resolution,
                sun_azimuth,
                view_azimuth,
                doi,
            },
            missing,
        ))
    }
}

/// Keeps the first non-empty value of an element.
fn set_once(slot: &mut Option<String>, value: &str) {
    if slot.is_none() && !value.is_empty() {
        *slot = Some(value.to_string());
    }
}

/// Converts an optional attribute; reports it when absent or unusable.
fn optional<T>(
    missing: &mut Missing,
    name: &'static str,
    value: Option<String>,
    convert: impl FnOnce(&str) -> Option<T>,
) -> Option<T> {
    let converted = value.as_deref().and_then(convert);
    if converted.is_none() {
        if let Some(v) = &value {
            tracing::debug!(attribute = name, value = %clip(v), "unusable ECHO10 attribute value");
        }
        missing.push(name);
    }
    converted
}

/// A finite number.
fn parse_f64(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// A non-negative integer (`3660`, or an integral `3660.0`).
fn parse_u32(s: &str) -> Option<u32> {
    s.parse::<u32>().ok().or_else(|| {
        let v = parse_f64(s)?;
        (v.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&v)).then_some(v as u32)
    })
}

/// A point coordinate within `[-limit, limit]`.
fn coordinate(value: Option<String>, field: &'static str, limit: f64) -> Result<f64, Echo10Error> {
    let value = value.ok_or(Echo10Error::Missing {
        granule: None,
        field,
    })?;
    parse_f64(&value)
        .filter(|v| v.abs() <= limit)
        .ok_or_else(|| Echo10Error::Invalid {
            granule: None,
            field,
            value: clip(&value),
            reason: "not a number in range",
        })
}

/// An ECHO10 date-time: RFC 3339, or without an offset (taken as UTC).
pub(crate) fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_times() {
        assert_eq!(parse_f64("53"), Some(53.0));
        assert_eq!(parse_f64("-1099980.0"), Some(-1099980.0));
        assert_eq!(parse_f64("NaN"), None);
        assert_eq!(parse_f64("inf"), None);
        assert_eq!(parse_f64(""), None);
        assert_eq!(parse_u32("3660"), Some(3660));
        assert_eq!(parse_u32("3660.0"), Some(3660));
        assert_eq!(parse_u32("3660.5"), None);
        assert_eq!(parse_u32("-1"), None);
        let t = parse_time("2021-06-17T10:13:17.089940Z").unwrap();
        assert_eq!(t.timestamp_subsec_micros(), 89940);
        assert_eq!(parse_time("2021-06-17T10:13:17.089940"), Some(t));
        assert_eq!(parse_time("2021-06-17T12:13:17.089940+02:00"), Some(t));
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn tags_round_trip_their_names() {
        for t in Tag::NAMED {
            assert_eq!(Tag::of(t.name()), t);
        }
        assert_eq!(Tag::of("OnlineResources"), Tag::Other);
    }
}
