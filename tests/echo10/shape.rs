//! The item built from a record has exactly the structure of LP DAAC's published items.

use super::fidelity::{L30_TABLE, band_json};
use super::*;
use hls_flow::source::echo10::item_from_record;
use serde_json::{Value, json};

fn keys(v: &Value) -> Vec<&str> {
    v.as_object().unwrap().keys().map(String::as_str).collect()
}

#[test]
fn s30_item_has_the_published_structure() {
    let real: Value = serde_json::from_str(S30_ITEM).unwrap();
    let (built, _) = item_from_record(S30_XML.as_bytes(), S30_CONCEPT).unwrap();
    let real_id = real["id"].as_str().unwrap();
    let id = built["id"].as_str().unwrap();
    assert_ne!(
        real_id, id,
        "a different granule, so that values cannot just be copied"
    );
    let subst = |v: &Value| v.as_str().unwrap().replace(real_id, id);

    assert_eq!(keys(&built), keys(&real));
    assert_eq!(keys(&built["properties"]), keys(&real["properties"]));
    assert_eq!(built["stac_extensions"], real["stac_extensions"]);
    assert_eq!(keys(&built["geometry"]), keys(&real["geometry"]));
    assert_eq!(built["geometry"]["type"], real["geometry"]["type"]);
    assert_eq!(built["bbox"].as_array().unwrap().len(), 4);
    for (name, v) in real["properties"].as_object().unwrap() {
        let b = &built["properties"][name];
        assert_eq!(
            std::mem::discriminant(b),
            std::mem::discriminant(v),
            "property {name} has another JSON type"
        );
        if let (Some(b), Some(v)) = (b.as_array(), v.as_array()) {
            assert_eq!(b.len(), v.len(), "property {name}");
            for (x, y) in b.iter().zip(v) {
                assert_eq!(x.is_f64(), y.is_f64(), "property {name}: float vs integer");
            }
        }
        if v.is_number() {
            assert_eq!(b.is_f64(), v.is_f64(), "property {name}: float vs integer");
        }
    }

    let (bl, rl) = (
        built["links"].as_array().unwrap(),
        real["links"].as_array().unwrap(),
    );
    assert_eq!(bl.len(), rl.len());
    for (b, r) in bl.iter().zip(rl) {
        assert_eq!(keys(b), keys(r));
        assert_eq!(b["rel"], r["rel"]);
        assert_eq!(b["type"], r["type"]);
        assert_eq!(b["href"], subst(&r["href"]), "link {}", r["rel"]);
    }

    assert_eq!(keys(&built["assets"]), keys(&real["assets"]));
    for (name, r) in real["assets"].as_object().unwrap() {
        let b = &built["assets"][name];
        assert_eq!(keys(b), keys(r), "asset {name}");
        assert_eq!(b["type"], r["type"], "asset {name}");
        assert_eq!(b["roles"], r["roles"], "asset {name}");
        assert_eq!(b["href"], subst(&r["href"]), "asset {name}");
        assert_eq!(b["eo:bands"], r["eo:bands"], "asset {name}");
    }
}

#[test]
fn l30_item_has_the_l30_asset_set() {
    let real: Value = serde_json::from_str(S30_ITEM).unwrap();
    let (built, _) = item_from_record(L30_XML.as_bytes(), L30_CONCEPT).unwrap();
    assert_eq!(keys(&built), keys(&real));
    assert_eq!(keys(&built["properties"]), keys(&real["properties"]));
    assert_eq!(built["stac_extensions"], real["stac_extensions"]);
    let assets = built["assets"].as_object().unwrap();
    assert_eq!(
        keys(&built["assets"]),
        [
            "B01",
            "B02",
            "B03",
            "B04",
            "B05",
            "B06",
            "B07",
            "B09",
            "B10",
            "B11",
            "Fmask",
            "SZA",
            "SAA",
            "VZA",
            "VAA",
            "thumbnail"
        ]
    );
    let data: Vec<_> = assets
        .values()
        .filter(|a| a["roles"] == json!(["data"]))
        .collect();
    assert_eq!(data.len(), 15);
    for row in &L30_TABLE {
        let a = &assets[row.0];
        assert_eq!(keys(a), keys(&real["assets"]["B01"]), "asset {}", row.0);
        assert_eq!(a["eo:bands"], json!([band_json(row)]), "asset {}", row.0);
    }
    assert_eq!(
        keys(&assets["thumbnail"]),
        keys(&real["assets"]["thumbnail"])
    );
}
