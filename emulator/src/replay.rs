//! The real recordings: CMR pages of HLSL30 granules (2025-10-02..04) and one real
//! HLSS30 `_stac.json` (2024-06-01), served as recorded.

use super::entry::{parse_ring, rewrite_stac_href};
use super::mgrs;
use super::store::{Day, Granule};
use super::synthetic::sun_azimuth;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use hls_flow::collection::Collection;
use hls_flow::source::hls::GranuleMeta;
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

/// The recorded `/search/granules.json` response bodies (file name, body).
pub const RECORDED_PAGES: [(&str, &str); 5] = [
    (
        "hlsl30_bbox-93_46_-92_47_2025-10-01.page1.json",
        include_str!("../../tests/fixtures/cmr/hlsl30_bbox-93_46_-92_47_2025-10-01.page1.json"),
    ),
    (
        "hlsl30_bbox-93_46_-92_47_2025-10-01_2025-10-10.page1.json",
        include_str!(
            "../../tests/fixtures/cmr/hlsl30_bbox-93_46_-92_47_2025-10-01_2025-10-10.page1.json"
        ),
    ),
    (
        "hlsl30_bbox-93_46_-92_47_2025-10-01_2025-10-10.page2.json",
        include_str!(
            "../../tests/fixtures/cmr/hlsl30_bbox-93_46_-92_47_2025-10-01_2025-10-10.page2.json"
        ),
    ),
    (
        "hlsl30_bbox-93_46_-92_47_2025-10-02.page1.json",
        include_str!("../../tests/fixtures/cmr/hlsl30_bbox-93_46_-92_47_2025-10-02.page1.json"),
    ),
    (
        "hlsl30_bbox-93_46_-92_47_2025-10-02.page2.json",
        include_str!("../../tests/fixtures/cmr/hlsl30_bbox-93_46_-92_47_2025-10-02.page2.json"),
    ),
];

/// The recorded LP DAAC item, served verbatim.
pub const RECORDED_ITEM: &str =
    include_str!("../../tests/fixtures/stac/HLS.S30.T01WEV.2024153T000609.v2.0_stac.json");

/// The concept id given to the recorded item's (synthesized) CMR entry.
pub const RECORDED_ITEM_CONCEPT_ID: &str = "G3076245632-LPCLOUD";

/// A recording that does not have the shape it should.
#[derive(Debug, thiserror::Error)]
#[error("recording {name}: {what}")]
pub struct ReplayError {
    name: String,
    what: String,
}

fn fail(name: &str, what: impl Into<String>) -> ReplayError {
    ReplayError {
        name: name.to_string(),
        what: what.into(),
    }
}

fn time(v: &Value, key: &str, name: &str) -> Result<DateTime<Utc>, ReplayError> {
    v[key]
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| fail(name, format!("bad or missing {key}")))
}

/// A stable hash of a string (for the values a recording does not carry).
fn hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Derives the values of a recorded CMR entry; what the entry does not say (platform,
/// azimuths) is made up deterministically.
pub(crate) fn meta_from_entry(e: &Value, name: &str) -> Result<GranuleMeta, ReplayError> {
    let str_of = |k: &str| {
        e[k].as_str()
            .map(str::to_string)
            .ok_or_else(|| fail(name, format!("entry without {k}")))
    };
    let collection = Collection::from_concept_id(&str_of("collection_concept_id")?)
        .ok_or_else(|| fail(name, "unknown collection"))?;
    let granule_ur = str_of("title")?;
    let mut polygons = Vec::new();
    for poly in e["polygons"].as_array().into_iter().flatten() {
        let outer = poly[0]
            .as_str()
            .and_then(parse_ring)
            .ok_or_else(|| fail(name, format!("bad polygon in {granule_ur}")))?;
        polygons.push(outer);
    }
    let &(lon, lat) = polygons
        .first()
        .and_then(|r| r.first())
        .ok_or_else(|| fail(name, format!("{granule_ur} has no polygon")))?;
    let tile = granule_ur
        .split('.')
        .nth(2)
        .and_then(|t| t.strip_prefix('T'))
        .map(str::to_string);
    let corner = tile.as_deref().and_then(|t| mgrs::tile_corner(t, lat, lon));
    let begin = time(e, "time_start", name)?;
    let h = hash(&granule_ur);
    let platform = match collection {
        Collection::Hlsl30 => ["LANDSAT-8", "LANDSAT-9"][(h % 2) as usize],
        Collection::Hlss30 => ["Sentinel-2A", "Sentinel-2B"][(h % 2) as usize],
    };
    Ok(GranuleMeta {
        collection,
        concept_id: str_of("id")?,
        begin,
        end: time(e, "time_end", name)?,
        updated: time(e, "updated", name)?,
        platform: platform.to_string(),
        instrument: match collection {
            Collection::Hlsl30 => "OLI",
            Collection::Hlss30 => "Sentinel-2 MSI",
        }
        .to_string(),
        polygons,
        cloud_cover: e["cloud_cover"].as_str().and_then(|s| s.parse().ok()),
        mgrs_tile: tile,
        ulx: corner.map(|c| c.0),
        uly: corner.map(|c| c.1),
        nrows: Some(3660),
        ncols: Some(3660),
        resolution: Some(30.0),
        sun_azimuth: Some((sun_azimuth(lat, lon, begin) * 1e8).round() / 1e8),
        view_azimuth: Some(100.0 + (h % 1_000_000_000) as f64 / 1e8),
        doi: Some(collection.doi().to_string()),
        granule_ur,
    })
}

/// Derives the values of a published item (the inverse of `hls::to_stac_item`).
pub(crate) fn meta_from_item(item: &Value, concept_id: &str) -> Result<GranuleMeta, ReplayError> {
    let name = "stac item";
    let id = item["id"]
        .as_str()
        .ok_or_else(|| fail(name, "no id"))?
        .to_string();
    let collection = Collection::from_granule_id(&id).ok_or_else(|| fail(name, "bad id"))?;
    let p = &item["properties"];
    let begin = time(p, "start_datetime", name)?;
    let platform = match p["platform"].as_str().unwrap_or_default() {
        "sentinel-2a" => "Sentinel-2A",
        "sentinel-2b" => "Sentinel-2B",
        "sentinel-2c" => "Sentinel-2C",
        "landsat-8" => "LANDSAT-8",
        "landsat-9" => "LANDSAT-9",
        other => return Err(fail(name, format!("unknown platform {other:?}"))),
    };
    let mut polygons = Vec::new();
    for poly in item["geometry"]["coordinates"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let mut ring: Vec<(f64, f64)> = poly[0]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|pt| Some((pt[0].as_f64()?, pt[1].as_f64()?)))
            .collect();
        if ring.len() > 1 && ring.first() == ring.last() {
            ring.pop();
        }
        polygons.push(ring);
    }
    let transform = &p["proj:transform"];
    let shape = &p["proj:shape"];
    let u32_of = |v: &Value| v.as_u64().and_then(|n| u32::try_from(n).ok());
    Ok(GranuleMeta {
        collection,
        concept_id: concept_id.to_string(),
        begin,
        end: time(p, "end_datetime", name)?,
        updated: begin + Duration::hours(30),
        platform: platform.to_string(),
        instrument: match collection {
            Collection::Hlsl30 => "OLI",
            Collection::Hlss30 => "Sentinel-2 MSI",
        }
        .to_string(),
        polygons,
        cloud_cover: p["eo:cloud_cover"].as_f64(),
        mgrs_tile: id
            .split('.')
            .nth(2)
            .and_then(|t| t.strip_prefix('T'))
            .map(str::to_string),
        ulx: transform[2].as_f64(),
        uly: transform[5].as_f64(),
        nrows: u32_of(&shape[0]),
        ncols: u32_of(&shape[1]),
        resolution: transform[0].as_f64(),
        sun_azimuth: p["view:sun_azimuth"].as_f64(),
        view_azimuth: p["view:azimuth"].as_f64(),
        doi: p["sci:doi"].as_str().map(str::to_string),
        granule_ur: id,
    })
}

/// Every recorded granule, by (collection, day), with entries whose https `_stac.json`
/// link points at `base`.
pub(crate) fn load(base: &str) -> Result<BTreeMap<(Collection, NaiveDate), Arc<Day>>, ReplayError> {
    let mut seen = HashSet::new();
    let mut by_day: BTreeMap<(Collection, NaiveDate), Vec<Granule>> = BTreeMap::new();
    for (name, body) in RECORDED_PAGES {
        let page: Value = serde_json::from_str(body).map_err(|e| fail(name, e.to_string()))?;
        let entries = page["feed"]["entry"]
            .as_array()
            .ok_or_else(|| fail(name, "no feed.entry"))?;
        for e in entries {
            let meta = meta_from_entry(e, name)?;
            if !seen.insert(meta.granule_ur.clone()) {
                continue;
            }
            let mut served = e.clone();
            for l in served["links"].as_array_mut().into_iter().flatten() {
                if let Some(new) = l["href"].as_str().and_then(|h| rewrite_stac_href(h, base)) {
                    l["href"] = Value::String(new);
                }
            }
            let key = (meta.collection, meta.begin.date_naive());
            let mut g = Granule::new(meta).ok_or_else(|| fail(name, "entry without id number"))?;
            g.entry = Some(served.to_string());
            by_day.entry(key).or_default().push(g);
        }
    }
    let item: Value =
        serde_json::from_str(RECORDED_ITEM).map_err(|e| fail("stac item", e.to_string()))?;
    let meta = meta_from_item(&item, RECORDED_ITEM_CONCEPT_ID)?;
    let key = (meta.collection, meta.begin.date_naive());
    let mut g = Granule::new(meta).ok_or_else(|| fail("stac item", "no geometry"))?;
    g.item = Some(RECORDED_ITEM.to_string());
    by_day.entry(key).or_default().push(g);
    Ok(by_day
        .into_iter()
        .map(|(k, v)| (k, Arc::new(Day::new(v))))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::render;
    use hls_flow::source::hls::to_stac_item;

    const BASE: &str = "http://127.0.0.1:1";

    fn recorded_entries() -> Vec<Value> {
        let page: Value = serde_json::from_str(RECORDED_PAGES[1].1).unwrap();
        page["feed"]["entry"].as_array().unwrap().clone()
    }

    #[test]
    fn loads_every_unique_recorded_granule() {
        let days = load(BASE).unwrap();
        let count = |c, d: &str| {
            days.get(&(c, d.parse().unwrap()))
                .map_or(0, |day| day.granules.len())
        };
        assert_eq!(count(Collection::Hlsl30, "2025-10-02"), 3);
        assert_eq!(count(Collection::Hlsl30, "2025-10-03"), 6);
        assert_eq!(count(Collection::Hlsl30, "2025-10-04"), 3);
        assert_eq!(count(Collection::Hlss30, "2024-06-01"), 1);
        assert_eq!(days.len(), 4);
        let day = &days[&(Collection::Hlsl30, "2025-10-02".parse().unwrap())];
        let g = day.get("HLS.L30.T15TVM.2025275T170439.v2.0").unwrap();
        assert_eq!(g.key(), (1_759_424_679_336, 3_790_086_838));
        assert_eq!(
            (g.meta.ulx, g.meta.uly),
            (Some(399_960.0), Some(5_200_020.0))
        );
        let entry: Value = serde_json::from_str(g.entry.as_deref().unwrap()).unwrap();
        let https_stac: Vec<&str> = entry["links"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|l| l["href"].as_str())
            .filter(|h| h.ends_with("_stac.json") && !h.starts_with("s3://"))
            .collect();
        assert_eq!(
            https_stac,
            vec![format!(
                "{BASE}/lp-prod-public/HLSL30.020/{0}/{0}_stac.json",
                g.meta.granule_ur
            )]
        );
    }

    /// The entry renderer, fed what a recorded entry says, writes that entry back: same
    /// keys in the same order, same values, the same links (in another order).
    #[test]
    fn rendering_reproduces_the_recorded_entries() {
        for e in recorded_entries() {
            let meta = meta_from_entry(&e, "test").unwrap();
            let mut s = String::new();
            render(&mut s, &meta, BASE);
            let ours: Value = serde_json::from_str(&s).unwrap();
            let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
            assert_eq!(keys(&ours), keys(&e));
            for k in keys(&e).iter().filter(|k| *k != "links") {
                assert_eq!(ours[k], e[k], "{k} of {}", meta.granule_ur);
            }
            let sorted = |v: &Value| {
                let mut l: Vec<String> = v["links"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|l| {
                        let mut l = l.clone();
                        if let Some(h) = l["href"].as_str().and_then(|h| rewrite_stac_href(h, BASE))
                        {
                            l["href"] = Value::String(h);
                        }
                        l.to_string()
                    })
                    .collect();
                l.sort();
                l
            };
            assert_eq!(sorted(&ours), sorted(&e));
            assert_eq!(ours["links"].as_array().unwrap().len(), 48);
        }
    }

    #[test]
    fn the_recorded_item_is_rebuilt_from_its_values() {
        let item: Value = serde_json::from_str(RECORDED_ITEM).unwrap();
        let meta = meta_from_item(&item, RECORDED_ITEM_CONCEPT_ID).unwrap();
        assert_eq!(to_stac_item(&meta), item);
        assert_eq!(meta.platform, "Sentinel-2B");
        assert_eq!(meta.polygons[0].len(), 6);
        let mut s = String::new();
        render(&mut s, &meta, BASE);
        let entry: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(entry["links"].as_array().unwrap().len(), 54);
        assert_eq!(entry["time_start"], "2024-06-01T00:06:19.072Z");
    }
}
