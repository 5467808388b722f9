//! Synthetic HLS items for the benchmarks that call the writers in-process: the JSON of the
//! `_stac.json` LP DAAC would publish for `n` deterministic granules.

use chrono::{Duration, TimeZone, Utc};
use hls_flow::Collection;
use hls_flow::source::hls::{GranuleMeta, to_stac_item};

/// The JSON of `n` synthetic items of `collection`.
pub fn hls_items(collection: Collection, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| serde_json::to_vec(&to_stac_item(&meta(collection, i))).unwrap())
        .collect()
}

/// The metadata of synthetic granule `i` of `collection`: spread over the globe and the day.
fn meta(collection: Collection, i: usize) -> GranuleMeta {
    let begin = Utc.with_ymd_and_hms(2025, 6, 1, 0, 0, 0).unwrap()
        + Duration::microseconds(i as i64 * 4_321_987);
    let lon = -177.0 + (i as f64 * 0.37) % 350.0;
    let lat = -60.0 + (i as f64 * 0.13) % 130.0;
    let zone = 1 + i % 60;
    GranuleMeta {
        collection,
        granule_ur: format!(
            "HLS.{}.T{zone:02}WEV.{}.v2.0",
            collection.product(),
            begin.format("%Y%jT%H%M%S")
        ),
        concept_id: format!("G{}-LPCLOUD", 3_000_000_000u64 + i as u64),
        begin,
        end: begin,
        updated: begin,
        platform: match collection {
            Collection::Hlsl30 => "LANDSAT-9".into(),
            Collection::Hlss30 => "Sentinel-2B".into(),
        },
        instrument: match collection {
            Collection::Hlsl30 => "OLI".into(),
            Collection::Hlss30 => "Sentinel-2 MSI".into(),
        },
        polygons: vec![vec![
            (lon, lat),
            (lon, lat + 0.72),
            (lon + 1.45, lat + 0.46),
            (lon + 1.46, lat + 0.13),
            (lon + 1.47, lat + 0.01),
        ]],
        cloud_cover: Some((i % 101) as f64),
        mgrs_tile: Some(format!("{zone:02}WEV")),
        ulx: Some(499_980.0),
        uly: Some(if lat < 0.0 { -3_700_020.0 } else { 8_000_040.0 }),
        nrows: Some(3660),
        ncols: Some(3660),
        resolution: Some(30.0),
        sun_azimuth: Some(187.71039035 - (i % 1000) as f64 * 0.031),
        view_azimuth: Some(296.0704673 - (i % 1000) as f64 * 0.017),
        doi: Some(collection.doi().to_string()),
    }
}
