//! From an item's JSON bytes to an [`HlsItem`], through typed serde structs that borrow
//! their strings from the input (no `serde_json::Value`, no `stac::Item`).
//!
//! Unknown top-level members, properties and asset keys are collected while parsing and
//! reported by name afterwards (with the item id); wrong JSON types fail the parse with the
//! path of the field in the message.

use super::error::{HlsArrowError, Result, ValueProblem};
use super::item::{HlsAsset, HlsBand, HlsItem, HlsLink, close_rings, parse_micros};
use super::schema::AssetSlot;
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

/// A string borrowed from the input when it has no escapes, owned otherwise.
#[derive(Debug)]
pub(crate) struct Str<'a>(pub Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrVisitor<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for StrVisitor<'a> {
            type Value = Str<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(StrVisitor(PhantomData))
    }
}

fn cow(s: Str<'_>) -> Cow<'_, str> {
    s.0
}

fn cows(v: Vec<Str<'_>>) -> Vec<Cow<'_, str>> {
    v.into_iter().map(cow).collect()
}

/// Reads the next map value; a failure names `path` (the parser adds the position).
fn value<'de, A, T>(map: &mut A, path: impl FnOnce() -> String) -> Result<T, A::Error>
where
    A: MapAccess<'de>,
    T: Deserialize<'de>,
{
    map.next_value().map_err(|e| {
        let message = e.to_string();
        let message = message
            .split(" at line ")
            .next()
            .unwrap_or(message.as_str());
        de::Error::custom(format_args!("{}: {message}", path()))
    })
}

#[derive(Default)]
struct RawItem<'a> {
    kind: Option<Str<'a>>,
    stac_version: Option<Str<'a>>,
    stac_extensions: Option<Vec<Str<'a>>>,
    id: Option<Str<'a>>,
    properties: Option<RawProperties<'a>>,
    geometry: Option<RawGeometry<'a>>,
    links: Option<Vec<RawLink<'a>>>,
    assets: Option<RawAssets<'a>>,
    bbox: Option<Vec<f64>>,
    collection: Option<Str<'a>>,
    unknown: Vec<String>,
}

impl<'de> Deserialize<'de> for RawItem<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ItemVisitor;
        impl<'de> Visitor<'de> for ItemVisitor {
            type Value = RawItem<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a STAC item object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut item = RawItem::default();
                while let Some(key) = map.next_key::<Str<'de>>()? {
                    match key.0.as_ref() {
                        "type" => item.kind = value(&mut map, || "type".to_owned())?,
                        "stac_version" => {
                            item.stac_version = value(&mut map, || "stac_version".to_owned())?
                        }
                        "stac_extensions" => {
                            item.stac_extensions = value(&mut map, || "stac_extensions".to_owned())?
                        }
                        "id" => item.id = value(&mut map, || "id".to_owned())?,
                        "properties" => {
                            // Nested visitors name the full path of their fields.
                            item.properties = map.next_value()?
                        }
                        "geometry" => item.geometry = map.next_value()?,
                        "links" => item.links = value(&mut map, || "links".to_owned())?,
                        "assets" => item.assets = map.next_value()?,
                        "bbox" => item.bbox = value(&mut map, || "bbox".to_owned())?,
                        "collection" => {
                            item.collection = value(&mut map, || "collection".to_owned())?
                        }
                        other => {
                            item.unknown.push(other.to_owned());
                            let _: IgnoredAny = map.next_value()?;
                        }
                    }
                }
                Ok(item)
            }
        }
        deserializer.deserialize_map(ItemVisitor)
    }
}

#[derive(Default)]
struct RawProperties<'a> {
    datetime: Option<Str<'a>>,
    start_datetime: Option<Str<'a>>,
    end_datetime: Option<Str<'a>>,
    platform: Option<Str<'a>>,
    instruments: Option<Vec<Str<'a>>>,
    cloud_cover: Option<f64>,
    proj_transform: Option<Vec<f64>>,
    proj_shape: Option<Vec<i64>>,
    proj_epsg: Option<i64>,
    sun_azimuth: Option<f64>,
    view_azimuth: Option<f64>,
    sci_doi: Option<Str<'a>>,
    unknown: Vec<String>,
}

impl<'de> Deserialize<'de> for RawProperties<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PropertiesVisitor;
        impl<'de> Visitor<'de> for PropertiesVisitor {
            type Value = RawProperties<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of properties")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut p = RawProperties::default();
                while let Some(key) = map.next_key::<Str<'de>>()? {
                    let key = key.0;
                    let path = || format!("properties.{key}");
                    match key.as_ref() {
                        "datetime" => p.datetime = value(&mut map, path)?,
                        "start_datetime" => p.start_datetime = value(&mut map, path)?,
                        "end_datetime" => p.end_datetime = value(&mut map, path)?,
                        "platform" => p.platform = value(&mut map, path)?,
                        "instruments" => p.instruments = value(&mut map, path)?,
                        "eo:cloud_cover" => p.cloud_cover = value(&mut map, path)?,
                        "proj:transform" => p.proj_transform = value(&mut map, path)?,
                        "proj:shape" => p.proj_shape = value(&mut map, path)?,
                        "proj:epsg" => p.proj_epsg = value(&mut map, path)?,
                        "view:sun_azimuth" => p.sun_azimuth = value(&mut map, path)?,
                        "view:azimuth" => p.view_azimuth = value(&mut map, path)?,
                        "sci:doi" => p.sci_doi = value(&mut map, path)?,
                        other => {
                            p.unknown.push(other.to_owned());
                            let _: IgnoredAny = map.next_value()?;
                        }
                    }
                }
                Ok(p)
            }
        }
        deserializer.deserialize_map(PropertiesVisitor)
    }
}

/// A GeoJSON geometry; only `MultiPolygon` of 2D positions is parsed.
#[derive(Default)]
struct RawGeometry<'a> {
    kind: Option<Str<'a>>,
    coordinates: Option<Vec<Vec<Vec<[f64; 2]>>>>,
    unknown: Vec<String>,
}

impl<'de> Deserialize<'de> for RawGeometry<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct GeometryVisitor;
        impl<'de> Visitor<'de> for GeometryVisitor {
            type Value = RawGeometry<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a GeoJSON geometry object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut g = RawGeometry::default();
                while let Some(key) = map.next_key::<Str<'de>>()? {
                    match key.0.as_ref() {
                        "type" => g.kind = value(&mut map, || "geometry.type".to_owned())?,
                        "coordinates" if g.kind.as_ref().is_none_or(|k| k.0 == "MultiPolygon") => {
                            g.coordinates = value(&mut map, || "geometry.coordinates".to_owned())?
                        }
                        other => {
                            // Coordinates of another geometry type are reported through
                            // `geometry.type`; anything else is a foreign member.
                            if other != "coordinates" {
                                g.unknown.push(other.to_owned());
                            }
                            let _: IgnoredAny = map.next_value()?;
                        }
                    }
                }
                Ok(g)
            }
        }
        deserializer.deserialize_map(GeometryVisitor)
    }
}

/// The `assets` object, as (key, asset) pairs in document order.
struct RawAssets<'a>(Vec<(Cow<'a, str>, RawAsset<'a>)>);

impl<'de> Deserialize<'de> for RawAssets<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AssetsVisitor;
        impl<'de> Visitor<'de> for AssetsVisitor {
            type Value = RawAssets<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of assets")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut assets = Vec::with_capacity(map.size_hint().unwrap_or(20));
                while let Some(key) = map.next_key::<Str<'de>>()? {
                    let asset = value(&mut map, || format!("assets.{}", key.0))?;
                    assets.push((key.0, asset));
                }
                Ok(RawAssets(assets))
            }
        }
        deserializer.deserialize_map(AssetsVisitor)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAsset<'a> {
    #[serde(borrow)]
    href: Str<'a>,
    #[serde(rename = "type", default, borrow)]
    media_type: Option<Str<'a>>,
    #[serde(default, borrow)]
    roles: Option<Vec<Str<'a>>>,
    #[serde(rename = "eo:bands", default, borrow)]
    bands: Option<Vec<RawBand<'a>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBand<'a> {
    #[serde(default, borrow)]
    name: Option<Str<'a>>,
    #[serde(default, borrow)]
    common_name: Option<Str<'a>>,
    #[serde(default)]
    center_wavelength: Option<f64>,
    #[serde(default)]
    full_width_half_max: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLink<'a> {
    #[serde(borrow)]
    href: Str<'a>,
    #[serde(borrow)]
    rel: Str<'a>,
    #[serde(rename = "type", default, borrow)]
    media_type: Option<Str<'a>>,
}

/// Only the id, for the context of a parse error.
#[derive(Deserialize)]
struct IdOnly {
    id: Option<String>,
}

/// Parses one item's JSON and checks it against the fixed shape of a collection (its asset
/// `slots` and STAC id).
pub(crate) fn parse_item<'a>(
    json: &'a [u8],
    slots: &[AssetSlot],
    collection_id: &'static str,
) -> Result<HlsItem<'a>> {
    let raw: RawItem<'a> = serde_json::from_slice(json).map_err(|source| {
        let id = serde_json::from_slice::<IdOnly>(json)
            .ok()
            .and_then(|i| i.id);
        HlsArrowError::Json { id, source }
    })?;
    raw.into_item(slots, collection_id)
}

impl<'a> RawItem<'a> {
    fn into_item(self, slots: &[AssetSlot], collection_id: &'static str) -> Result<HlsItem<'a>> {
        let id = self.id.map(cow);
        let id_for_error = || id.as_ref().map(|s| s.to_string());
        let invalid = |field: &str, problem: ValueProblem| HlsArrowError::InvalidValue {
            id: id_for_error(),
            field: field.to_owned(),
            problem,
        };
        if let Some(field) = self.unknown.into_iter().next() {
            return Err(HlsArrowError::UnknownField {
                id: id_for_error(),
                field,
            });
        }
        let Some(id) = id.clone() else {
            return Err(invalid("id", ValueProblem::Missing));
        };
        match self.kind.as_ref().map(|k| k.0.as_ref()) {
            Some("Feature") => {}
            other => {
                return Err(invalid(
                    "type",
                    ValueProblem::Other {
                        expected: "\"Feature\"",
                        found: other.map(str::to_owned),
                    },
                ));
            }
        }
        let stac_version = check_stac_version(self.stac_version.as_ref().map(|v| v.0.as_ref()))
            .map_err(|problem| invalid("stac_version", problem))?;
        if let Some(collection) = &self.collection
            && collection.0 != collection_id
        {
            return Err(invalid(
                "collection",
                ValueProblem::OtherCollection {
                    found: collection.0.to_string(),
                    expected: collection_id,
                },
            ));
        }
        let Some(props) = self.properties else {
            return Err(invalid("properties", ValueProblem::Missing));
        };
        if let Some(key) = props.unknown.into_iter().next() {
            return Err(HlsArrowError::UnknownProperty {
                id: id_for_error(),
                key,
            });
        }
        let time = |s: Option<Str<'a>>, field: &str| -> Result<Option<i64>> {
            match s {
                None => Ok(None),
                Some(s) => parse_micros(&s.0)
                    .map(Some)
                    .ok_or_else(|| invalid(field, ValueProblem::NotADatetime(s.0.to_string()))),
            }
        };
        let datetime = time(props.datetime, "properties.datetime")?;
        let start_datetime = time(props.start_datetime, "properties.start_datetime")?;
        let end_datetime = time(props.end_datetime, "properties.end_datetime")?;

        let geometry = self
            .geometry
            .ok_or_else(|| invalid("geometry", ValueProblem::MissingOrNull))?;
        if let Some(key) = geometry.unknown.into_iter().next() {
            return Err(HlsArrowError::UnexpectedField {
                id: id_for_error(),
                field: format!("geometry.{key}"),
            });
        }
        match geometry.kind.as_ref().map(|k| k.0.as_ref()) {
            Some("MultiPolygon") => {}
            other => {
                return Err(invalid(
                    "geometry.type",
                    ValueProblem::Other {
                        expected: "\"MultiPolygon\"",
                        found: other.map(str::to_owned),
                    },
                ));
            }
        }
        let mut polygons = geometry
            .coordinates
            .ok_or_else(|| invalid("geometry.coordinates", ValueProblem::Missing))?;
        close_rings(&mut polygons)
            .map_err(|r| invalid("geometry.coordinates", ValueProblem::Rings(r)))?;

        let bbox = match self.bbox {
            None => None,
            Some(b) => Some(
                <[f64; 4]>::try_from(b.as_slice())
                    .map_err(|_| invalid("bbox", ValueProblem::BboxLength(b.len())))?,
            ),
        };

        let links = self
            .links
            .unwrap_or_default()
            .into_iter()
            .map(|l| HlsLink {
                href: l.href.0,
                rel: l.rel.0,
                media_type: l.media_type.map(cow),
            })
            .collect();

        let mut assets: Vec<Option<HlsAsset<'a>>> = vec![None; slots.len()];
        for (key, raw) in self.assets.map(|a| a.0).unwrap_or_default() {
            let Some(index) = slots.iter().position(|s| s.key == key) else {
                return Err(HlsArrowError::UnknownAsset {
                    id: id_for_error(),
                    key: key.into_owned(),
                    collection: collection_id,
                });
            };
            let bands = raw
                .bands
                .map(|bands| {
                    bands
                        .into_iter()
                        .map(|b| HlsBand {
                            name: b.name.map(cow),
                            common_name: b.common_name.map(cow),
                            center_wavelength: b.center_wavelength,
                            full_width_half_max: b.full_width_half_max,
                        })
                        .collect::<Vec<_>>()
                })
                .map(|bands| check_bands(&slots[index], bands, id_for_error))
                .transpose()?;
            assets[index] = Some(HlsAsset {
                href: raw.href.0,
                media_type: raw.media_type.map(cow),
                roles: raw.roles.map(cows).filter(|r| !r.is_empty()),
                bands,
            });
        }

        Ok(HlsItem {
            id,
            stac_version,
            stac_extensions: self.stac_extensions.map(cows).filter(|e| !e.is_empty()),
            bbox,
            geometry: polygons,
            links,
            assets,
            datetime,
            start_datetime,
            end_datetime,
            platform: props.platform.map(cow),
            instruments: props.instruments.map(cows),
            cloud_cover: props.cloud_cover,
            proj_transform: props.proj_transform,
            proj_shape: props.proj_shape,
            proj_epsg: props.proj_epsg,
            sun_azimuth: props.sun_azimuth,
            view_azimuth: props.view_azimuth,
            sci_doi: props.sci_doi.map(cow),
        })
    }
}

/// The `stac_version`s the fast path accepts (and stores as published).
pub(crate) fn check_stac_version(
    version: Option<&str>,
) -> std::result::Result<&'static str, ValueProblem> {
    match version {
        Some("1.0.0") => Ok("1.0.0"),
        Some("1.1.0") => Ok("1.1.0"),
        other => Err(ValueProblem::Other {
            expected: "\"1.0.0\" or \"1.1.0\"",
            found: other.map(str::to_owned),
        }),
    }
}

/// Checks an asset's `eo:bands` against the band fields its slot has columns for.
pub(crate) fn check_bands<'a>(
    slot: &AssetSlot,
    bands: Vec<HlsBand<'a>>,
    id: impl Fn() -> Option<String>,
) -> Result<Vec<HlsBand<'a>>> {
    let Some(spec) = slot.band else {
        return Err(HlsArrowError::UnexpectedField {
            id: id(),
            field: format!("assets.{}.eo:bands", slot.key),
        });
    };
    for (i, band) in bands.iter().enumerate() {
        let extra = [
            (
                "common_name",
                band.common_name.is_some() && spec.common_name.is_none(),
            ),
            (
                "center_wavelength",
                band.center_wavelength.is_some() && spec.center_wavelength.is_none(),
            ),
            (
                "full_width_half_max",
                band.full_width_half_max.is_some() && spec.full_width_half_max.is_none(),
            ),
        ];
        if let Some((name, _)) = extra.iter().find(|(_, extra)| *extra) {
            return Err(HlsArrowError::UnexpectedField {
                id: id(),
                field: format!("assets.{}.eo:bands[{i}].{name}", slot.key),
            });
        }
    }
    Ok(bands)
}
