//! The two real records parse to their values, and their items carry what the mapping defines.

use super::*;
use hls_flow::source::echo10::{item_from_record, parse_granule};
use serde_json::{Value, json};

fn parse(xml: &str, concept: &str) -> GranuleMeta {
    let (meta, missing) = parse_granule(xml.as_bytes(), concept).unwrap();
    assert!(missing.is_empty(), "unexpected missing {missing:?}");
    meta
}

#[test]
fn s30_record_parses_field_by_field() {
    let m = parse(S30_XML, S30_CONCEPT);
    assert_eq!(m.collection, Collection::Hlss30);
    assert_eq!(m.granule_ur, "HLS.S30.T35VLJ.2021168T100559.v2.0");
    assert_eq!(m.concept_id, S30_CONCEPT);
    assert_eq!(m.begin, utc(2021, 6, 17, 10, 13, 17, 89_940));
    assert_eq!(m.begin.timestamp_subsec_micros(), 89_940);
    assert_eq!(m.end, utc(2021, 6, 17, 10, 13, 17, 89_940));
    assert_eq!(
        m.updated,
        utc(2022, 1, 8, 2, 35, 22, 590_029),
        "LastUpdate, not InsertTime"
    );
    assert_eq!(m.platform, "Sentinel-2B");
    assert_eq!(m.instrument, "Sentinel-2 MSI");
    assert_eq!(m.polygons.len(), 1);
    assert_eq!(
        m.polygons[0],
        vec![
            (23.15743429, 62.17850011),
            (23.73778725, 62.19339089),
            (23.2300555, 61.62237083),
            (23.226963, 61.61985876),
        ]
    );
    assert_eq!(m.cloud_cover, Some(53.0));
    assert_eq!(m.mgrs_tile.as_deref(), Some("35VLJ"));
    assert_eq!(m.ulx, Some(300000.0));
    assert_eq!(m.uly, Some(6900000.0));
    assert_eq!(m.nrows, Some(3660));
    assert_eq!(m.ncols, Some(3660));
    assert_eq!(m.resolution, Some(30.0));
    assert_eq!(m.sun_azimuth, Some(174.79055913));
    assert_eq!(m.view_azimuth, Some(300.08037732));
    assert_eq!(m.doi.as_deref(), Some("10.5067/HLS/HLSS30.002"));
    assert_eq!(m, s30_meta());
}

#[test]
fn l30_record_parses_field_by_field() {
    let m = parse(L30_XML, L30_CONCEPT);
    assert_eq!(m.collection, Collection::Hlsl30);
    assert_eq!(m.granule_ur, "HLS.L30.T19LBJ.2020239T144556.v2.0");
    assert_eq!(m.concept_id, L30_CONCEPT);
    assert_eq!(m.begin, utc(2020, 8, 26, 14, 45, 56, 705_922));
    assert_eq!(m.end, utc(2020, 8, 26, 14, 45, 56, 705_922));
    assert_eq!(m.updated, utc(2021, 9, 4, 0, 48, 17, 328_463));
    assert_eq!(m.platform, "LANDSAT-8");
    assert_eq!(m.instrument, "OLI");
    assert_eq!(
        m.polygons,
        vec![vec![
            (-70.85016357, -10.81032658),
            (-70.73701415, -10.2986663),
            (-70.74003191, -10.83510398),
        ]]
    );
    assert_eq!(m.cloud_cover, Some(2.0));
    assert_eq!(m.mgrs_tile.as_deref(), Some("19LBJ"));
    assert_eq!(m.ulx, Some(199980.0));
    assert_eq!(m.uly, Some(-1099980.0));
    assert_eq!(m.nrows, Some(3660));
    assert_eq!(m.ncols, Some(3660));
    assert_eq!(m.resolution, Some(30.0));
    assert_eq!(m.sun_azimuth, Some(55.84072412));
    assert_eq!(m.view_azimuth, Some(98.50384566));
    assert_eq!(m.doi.as_deref(), Some("10.5067/HLS/HLSL30.002"));
    assert_eq!(m, l30_meta());
}

/// `(name, common_name, center_wavelength, full_width_half_max)` as HLS_STAC_ITEM.md states.
type BandRow = (&'static str, Option<&'static str>, Option<f64>, Option<f64>);

pub(crate) const S30_TABLE: [BandRow; 18] = [
    ("B01", Some("coastal"), Some(0.4439), Some(0.027)),
    ("B02", Some("blue"), Some(0.4966), Some(0.098)),
    ("B03", Some("green"), Some(0.56), Some(0.045)),
    ("B04", Some("red"), Some(0.6645), Some(0.038)),
    ("B05", None, Some(0.7039), Some(0.019)),
    ("B06", None, Some(0.7402), Some(0.018)),
    ("B07", None, Some(0.7825), Some(0.028)),
    ("B08", Some("nir"), Some(0.8351), Some(0.145)),
    ("B8A", None, Some(0.8648), Some(0.033)),
    ("B09", None, Some(0.945), Some(0.026)),
    ("B10", Some("cirrus"), Some(1.3735), Some(0.075)),
    ("B11", Some("swir16"), Some(1.6137), Some(0.143)),
    ("B12", Some("swir22"), Some(2.22024), Some(0.242)),
    ("Fmask", None, None, None),
    ("SZA", None, None, None),
    ("SAA", None, None, None),
    ("VZA", None, None, None),
    ("VAA", None, None, None),
];

pub(crate) const L30_TABLE: [BandRow; 15] = [
    ("B01", Some("coastal"), Some(0.48), Some(0.02)),
    ("B02", Some("blue"), Some(0.44), Some(0.06)),
    ("B03", Some("green"), Some(0.56), Some(0.06)),
    ("B04", Some("red"), Some(0.65), Some(0.04)),
    ("B05", Some("nir"), Some(0.86), Some(0.03)),
    ("B06", Some("swir16"), Some(1.6), Some(0.08)),
    ("B07", Some("swir22"), Some(2.2), Some(0.2)),
    ("B09", Some("cirrus"), Some(1.37), Some(0.02)),
    ("B10", Some("lwir11"), Some(10.9), Some(0.8)),
    ("B11", Some("lwir12"), Some(12.0), Some(1.0)),
    ("Fmask", None, None, None),
    ("SZA", None, None, None),
    ("SAA", None, None, None),
    ("VZA", None, None, None),
    ("VAA", None, None, None),
];

/// The `eo:bands[0]` object a table row stands for.
pub(crate) fn band_json(row: &BandRow) -> Value {
    let mut b = serde_json::Map::new();
    b.insert("name".into(), json!(row.0));
    if let Some(c) = row.1 {
        b.insert("common_name".into(), json!(c));
    }
    if let Some(c) = row.2 {
        b.insert("center_wavelength".into(), json!(c));
    }
    if let Some(w) = row.3 {
        b.insert("full_width_half_max".into(), json!(w));
    }
    Value::Object(b)
}

/// Checks the assets of an item: data assets per `table` then the thumbnail, with hrefs.
fn check_assets(item: &Value, folder: &str, id: &str, table: &[BandRow]) {
    let assets = item["assets"].as_object().unwrap();
    let mut keys: Vec<&str> = table.iter().map(|r| r.0).collect();
    keys.push("thumbnail");
    assert_eq!(assets.keys().map(String::as_str).collect::<Vec<_>>(), keys);
    for row in table {
        let a = &assets[row.0];
        assert_eq!(
            a["href"],
            format!(
                "https://data.lpdaac.earthdatacloud.nasa.gov/lp-prod-protected/{folder}/{id}/{id}.{}.tif",
                row.0
            )
        );
        assert_eq!(
            a["type"],
            "image/tiff; application=geotiff; profile=cloud-optimized"
        );
        assert_eq!(a["roles"], json!(["data"]));
        assert_eq!(a["eo:bands"], json!([band_json(row)]), "band {}", row.0);
    }
    let t = &assets["thumbnail"];
    assert_eq!(
        t["href"],
        format!(
            "https://data.lpdaac.earthdatacloud.nasa.gov/lp-prod-public/{folder}/{id}/{id}.jpg"
        )
    );
    assert_eq!(t["type"], "image/jpeg");
    assert_eq!(t["roles"], json!(["thumbnail"]));
}

#[test]
fn s30_item_fields() {
    let (item, missing) = item_from_record(S30_XML.as_bytes(), S30_CONCEPT).unwrap();
    assert!(missing.is_empty());
    let id = "HLS.S30.T35VLJ.2021168T100559.v2.0";
    let p = &item["properties"];
    assert_eq!(item["type"], "Feature");
    assert_eq!(item["stac_version"], "1.0.0");
    assert_eq!(item["id"], id);
    assert_eq!(p["datetime"], "2021-06-17T10:13:17.089940Z");
    assert_eq!(p["start_datetime"], "2021-06-17T10:13:17.089940Z");
    assert_eq!(p["end_datetime"], "2021-06-17T10:13:17.089940Z");
    assert_eq!(p["platform"], "sentinel-2b");
    assert_eq!(p["instruments"], json!(["msi"]));
    assert!(p["eo:cloud_cover"].is_f64());
    assert_eq!(p["eo:cloud_cover"].as_f64(), Some(53.0));
    assert_eq!(p["proj:epsg"], 32635);
    assert_eq!(p["proj:shape"], json!([3660, 3660]));
    assert_eq!(
        p["proj:transform"],
        json!([30.0, 0.0, 300000.0, 0.0, -30.0, 6900000.0, 0.0, 0.0, 1.0])
    );
    assert_eq!(p["view:sun_azimuth"].as_f64(), Some(174.79055913));
    assert_eq!(p["view:azimuth"].as_f64(), Some(300.08037732));
    assert_eq!(p["sci:doi"], "10.5067/HLS/HLSS30.002");
    assert_eq!(item["geometry"]["type"], "MultiPolygon");
    // Rounded to 6 decimals as the generator's `geojson` does (Python's `round(x, 6)`):
    // `23.2300555` is the double `23.230055499999…`, so it becomes `23.230055`, not `…56`.
    assert_eq!(
        item["geometry"]["coordinates"],
        json!([[[
            [23.157434, 62.1785],
            [23.737787, 62.193391],
            [23.230055, 61.622371],
            [23.226963, 61.619859],
            [23.157434, 62.1785]
        ]]])
    );
    // The bbox NASA's generator's own test expects for this granule.
    assert_eq!(
        item["bbox"],
        json!([23.157434, 61.619859, 23.737787, 62.193391])
    );
    assert_eq!(
        item["links"],
        json!([
            {
                "rel": "self",
                "href": format!("https://data.lpdaac.earthdatacloud.nasa.gov/lp-prod-public/HLSS30.020/{id}/{id}_stac.json"),
                "type": "application/json"
            },
            {"rel": "cite-as", "href": "https://doi.org/10.5067/HLS/HLSS30.002"}
        ])
    );
    check_assets(&item, "HLSS30.020", id, &S30_TABLE);
}

#[test]
fn l30_item_fields() {
    let (item, missing) = item_from_record(L30_XML.as_bytes(), L30_CONCEPT).unwrap();
    assert!(missing.is_empty());
    let id = "HLS.L30.T19LBJ.2020239T144556.v2.0";
    let p = &item["properties"];
    assert_eq!(item["id"], id);
    assert_eq!(p["datetime"], "2020-08-26T14:45:56.705922Z");
    assert_eq!(p["start_datetime"], "2020-08-26T14:45:56.705922Z");
    assert_eq!(p["end_datetime"], "2020-08-26T14:45:56.705922Z");
    assert_eq!(p["platform"], "landsat-8");
    assert_eq!(p["instruments"], json!(["oli"]));
    assert!(p["eo:cloud_cover"].is_f64());
    assert_eq!(p["eo:cloud_cover"].as_f64(), Some(2.0));
    assert_eq!(p["proj:epsg"], 32619, "UTM North even south of the equator");
    assert_eq!(p["proj:shape"], json!([3660, 3660]));
    assert_eq!(
        p["proj:transform"],
        json!([30.0, 0.0, 199980.0, 0.0, -30.0, -1099980.0, 0.0, 0.0, 1.0])
    );
    assert_eq!(p["view:sun_azimuth"].as_f64(), Some(55.84072412));
    assert_eq!(p["view:azimuth"].as_f64(), Some(98.50384566));
    assert_eq!(p["sci:doi"], "10.5067/HLS/HLSL30.002");
    assert_eq!(
        item["geometry"],
        json!({"type": "MultiPolygon", "coordinates": [[[
            [-70.850164, -10.810327],
            [-70.737014, -10.298666],
            [-70.740032, -10.835104],
            [-70.850164, -10.810327]
        ]]]})
    );
    // The bbox NASA's generator's own test expects for this granule.
    assert_eq!(
        item["bbox"],
        json!([-70.850164, -10.835104, -70.737014, -10.298666])
    );
    assert_eq!(
        item["links"][0]["href"],
        format!(
            "https://data.lpdaac.earthdatacloud.nasa.gov/lp-prod-public/HLSL30.020/{id}/{id}_stac.json"
        )
    );
    assert_eq!(item["links"][1]["rel"], "cite-as");
    assert_eq!(
        item["links"][1]["href"],
        "https://doi.org/10.5067/HLS/HLSL30.002"
    );
    check_assets(&item, "HLSL30.020", id, &L30_TABLE);
}

#[test]
fn coordinates_round_as_the_emulators_model_of_the_generator_does() {
    use hls_flow::source::hls::round_coordinate;
    use hls_flow_emulator::published::python_round6;
    // Two implementations (exact arithmetic by FMA in hls-flow, decimal digits in the
    // emulator) agree at ~29,000 points over [-180, 180] and next to each.
    let mut x = -180.0_f64;
    while x <= 180.0 {
        for v in [x, x + 5e-8, x - 5e-8, f64::from_bits(x.to_bits() + 1)] {
            assert_eq!(
                round_coordinate(v).to_bits(),
                python_round6(v).to_bits(),
                "{v:?}"
            );
        }
        x += 0.0123457;
    }
}
