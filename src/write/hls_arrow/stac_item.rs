//! From a `&stac::Item` to an [`HlsItem`] (for callers that already have one).
//!
//! The same shape rules as the JSON path: anything the fixed schema has no column for is an
//! error that names it.

use super::error::{HlsArrowError, Result, ValueProblem};
use super::item::{HlsAsset, HlsBand, HlsItem, HlsLink, close_rings, micros};
use super::json::{check_bands, check_stac_version};
use super::schema::AssetSlot;
use serde_json::Value;
use std::borrow::Cow;

/// Checks a `stac::Item` against the fixed shape of a collection and borrows its values.
pub(crate) fn from_stac_item<'a>(
    item: &'a stac::Item,
    slots: &[AssetSlot],
    collection_id: &'static str,
) -> Result<HlsItem<'a>> {
    let id = || Some(item.id.clone());
    let invalid = |field: &str, problem: ValueProblem| HlsArrowError::InvalidValue {
        id: id(),
        field: field.to_owned(),
        problem,
    };
    let unexpected = |field: String| HlsArrowError::UnexpectedField { id: id(), field };

    if let Some(field) = item.additional_fields.keys().next() {
        return Err(HlsArrowError::UnknownField {
            id: id(),
            field: field.clone(),
        });
    }
    let stac_version = check_stac_version(Some(item.version.to_string().as_str()))
        .map_err(|problem| invalid("stac_version", problem))?;
    if let Some(collection) = &item.collection
        && collection != collection_id
    {
        return Err(invalid(
            "collection",
            ValueProblem::OtherCollection {
                found: collection.clone(),
                expected: collection_id,
            },
        ));
    }

    let p = &item.properties;
    for (name, present) in [
        ("title", p.title.is_some()),
        ("description", p.description.is_some()),
        ("created", p.created.is_some()),
        ("updated", p.updated.is_some()),
    ] {
        if present {
            return Err(HlsArrowError::UnknownProperty {
                id: id(),
                key: name.to_owned(),
            });
        }
    }
    let mut out = HlsItem {
        id: Cow::Borrowed(item.id.as_str()),
        stac_version,
        stac_extensions: (!item.extensions.is_empty()).then(|| {
            item.extensions
                .iter()
                .map(|s| Cow::Borrowed(s.as_str()))
                .collect()
        }),
        datetime: p.datetime.as_ref().map(micros),
        start_datetime: p.start_datetime.as_ref().map(micros),
        end_datetime: p.end_datetime.as_ref().map(micros),
        ..HlsItem::default()
    };
    for (key, value) in &p.additional_fields {
        let field = || format!("properties.{key}");
        let wrong = |expected: &'static str| invalid(&field(), ValueProblem::Kind(expected));
        if value.is_null() {
            if !KNOWN_PROPERTIES.contains(&key.as_str()) {
                return Err(HlsArrowError::UnknownProperty {
                    id: id(),
                    key: key.clone(),
                });
            }
            continue;
        }
        match key.as_str() {
            "datetime" | "start_datetime" | "end_datetime" => {
                // Typed fields of `stac::Properties`; never in `additional_fields`.
                return Err(wrong("no duplicate"));
            }
            "platform" => out.platform = Some(str_of(value).ok_or_else(|| wrong("a string"))?),
            "instruments" => {
                out.instruments = Some(strs_of(value).ok_or_else(|| wrong("strings"))?)
            }
            "eo:cloud_cover" => {
                out.cloud_cover = Some(value.as_f64().ok_or_else(|| wrong("a number"))?)
            }
            "proj:transform" => {
                out.proj_transform =
                    Some(array_of(value, Value::as_f64).ok_or_else(|| wrong("numbers"))?)
            }
            "proj:shape" => {
                out.proj_shape =
                    Some(array_of(value, Value::as_i64).ok_or_else(|| wrong("integers"))?)
            }
            "proj:epsg" => out.proj_epsg = Some(value.as_i64().ok_or_else(|| wrong("an integer"))?),
            "view:sun_azimuth" => {
                out.sun_azimuth = Some(value.as_f64().ok_or_else(|| wrong("a number"))?)
            }
            "view:azimuth" => {
                out.view_azimuth = Some(value.as_f64().ok_or_else(|| wrong("a number"))?)
            }
            "sci:doi" => out.sci_doi = Some(str_of(value).ok_or_else(|| wrong("a string"))?),
            _ => {
                return Err(HlsArrowError::UnknownProperty {
                    id: id(),
                    key: key.clone(),
                });
            }
        }
    }

    let geometry = item
        .geometry
        .as_ref()
        .ok_or_else(|| invalid("geometry", ValueProblem::MissingOrNull))?;
    if geometry.bbox.is_some() {
        return Err(unexpected("geometry.bbox".into()));
    }
    if let Some(key) = geometry
        .foreign_members
        .as_ref()
        .and_then(|m| m.keys().next())
    {
        return Err(unexpected(format!("geometry.{key}")));
    }
    let geojson::GeometryValue::MultiPolygon { coordinates } = &geometry.value else {
        return Err(invalid(
            "geometry.type",
            ValueProblem::GeometryType(geometry.value.type_name()),
        ));
    };
    let mut polygons = Vec::with_capacity(coordinates.len());
    for polygon in coordinates {
        let mut rings = Vec::with_capacity(polygon.len());
        for ring in polygon {
            let mut points = Vec::with_capacity(ring.len() + 1);
            for position in ring {
                match position.as_slice() {
                    &[x, y] => points.push([x, y]),
                    other => {
                        return Err(invalid(
                            "geometry.coordinates",
                            ValueProblem::PositionLength(other.len()),
                        ));
                    }
                }
            }
            rings.push(points);
        }
        polygons.push(rings);
    }
    close_rings(&mut polygons)
        .map_err(|r| invalid("geometry.coordinates", ValueProblem::Rings(r)))?;
    out.geometry = polygons;

    out.bbox = match &item.bbox {
        None => None,
        Some(stac::Bbox::TwoDimensional(b)) => Some(*b),
        Some(stac::Bbox::ThreeDimensional(_)) => {
            return Err(invalid("bbox", ValueProblem::BboxLength(6)));
        }
    };

    for (i, link) in item.links.iter().enumerate() {
        if link.title.is_some()
            || link.method.is_some()
            || link.headers.is_some()
            || link.body.is_some()
            || link.merge.is_some()
            || !link.additional_fields.is_empty()
        {
            return Err(unexpected(format!(
                "links[{i}] (a member other than href, rel, type)"
            )));
        }
        out.links.push(HlsLink {
            href: Cow::Borrowed(link.href.as_str()),
            rel: Cow::Borrowed(link.rel.as_str()),
            media_type: link.r#type.as_deref().map(Cow::Borrowed),
        });
    }

    out.assets = vec![None; slots.len()];
    for (key, asset) in &item.assets {
        let Some(index) = slots.iter().position(|s| s.key == key) else {
            return Err(HlsArrowError::UnknownAsset {
                id: id(),
                key: key.clone(),
                collection: collection_id,
            });
        };
        out.assets[index] = Some(asset_of(key, asset, &slots[index], id)?);
    }
    Ok(out)
}

const KNOWN_PROPERTIES: [&str; 9] = [
    "platform",
    "instruments",
    "eo:cloud_cover",
    "proj:transform",
    "proj:shape",
    "proj:epsg",
    "view:sun_azimuth",
    "view:azimuth",
    "sci:doi",
];

fn asset_of<'a>(
    key: &str,
    asset: &'a stac::Asset,
    slot: &AssetSlot,
    id: impl Fn() -> Option<String> + Copy,
) -> Result<HlsAsset<'a>> {
    let unexpected = |name: &str| HlsArrowError::UnexpectedField {
        id: id(),
        field: format!("assets.{key}.{name}"),
    };
    for (name, present) in [
        ("title", asset.title.is_some()),
        ("description", asset.description.is_some()),
        ("created", asset.created.is_some()),
        ("updated", asset.updated.is_some()),
        ("bands", !asset.bands.is_empty()),
        ("nodata", asset.nodata.is_some()),
        ("data_type", asset.data_type.is_some()),
        ("statistics", asset.statistics.is_some()),
        ("unit", asset.unit.is_some()),
    ] {
        if present {
            return Err(unexpected(name));
        }
    }
    let mut bands = None;
    for (name, value) in &asset.additional_fields {
        if name != "eo:bands" {
            return Err(unexpected(name));
        }
        if value.is_null() {
            continue;
        }
        let list = value
            .as_array()
            .ok_or_else(|| unexpected("eo:bands (not a list)"))?;
        let mut parsed = Vec::with_capacity(list.len());
        for (i, band) in list.iter().enumerate() {
            let object = band
                .as_object()
                .ok_or_else(|| unexpected(&format!("eo:bands[{i}] (not an object)")))?;
            let mut b = HlsBand::default();
            for (field, v) in object {
                let wrong = || unexpected(&format!("eo:bands[{i}].{field} (wrong type)"));
                if v.is_null() {
                    continue;
                }
                match field.as_str() {
                    "name" => b.name = Some(str_of(v).ok_or_else(wrong)?),
                    "common_name" => b.common_name = Some(str_of(v).ok_or_else(wrong)?),
                    "center_wavelength" => {
                        b.center_wavelength = Some(v.as_f64().ok_or_else(wrong)?)
                    }
                    "full_width_half_max" => {
                        b.full_width_half_max = Some(v.as_f64().ok_or_else(wrong)?)
                    }
                    other => return Err(unexpected(&format!("eo:bands[{i}].{other}"))),
                }
            }
            parsed.push(b);
        }
        bands = Some(check_bands(slot, parsed, id)?);
    }
    Ok(HlsAsset {
        href: Cow::Borrowed(asset.href.as_str()),
        media_type: asset.r#type.as_deref().map(Cow::Borrowed),
        roles: (!asset.roles.is_empty()).then(|| {
            asset
                .roles
                .iter()
                .map(|r| Cow::Borrowed(r.as_str()))
                .collect()
        }),
        bands,
    })
}

fn str_of(value: &Value) -> Option<Cow<'_, str>> {
    value.as_str().map(Cow::Borrowed)
}

fn strs_of(value: &Value) -> Option<Vec<Cow<'_, str>>> {
    value.as_array()?.iter().map(str_of).collect()
}

fn array_of<T>(value: &Value, f: impl Fn(&Value) -> Option<T>) -> Option<Vec<T>> {
    value.as_array()?.iter().map(f).collect()
}
