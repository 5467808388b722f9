//! What an HLS v2.0 granule is made of, and the STAC item LP DAAC publishes for it.
//!
//! [`GranuleMeta`] holds the values of one granule's ECHO10 record that the published
//! `_stac.json` is generated from; [`to_stac_item`] applies the mapping stated in
//! `HLS_STAC_ITEM.md` (the emulator serves what it returns, and the ECHO10 source builds
//! items with it).

use crate::collection::Collection;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

/// Host and path prefix of LP DAAC's public files (`_stac.json`, browse `.jpg`).
pub const LPDAAC_PUBLIC: &str = "https://data.lpdaac.earthdatacloud.nasa.gov/lp-prod-public";
/// Host and path prefix of LP DAAC's protected files (the COGs).
pub const LPDAAC_PROTECTED: &str = "https://data.lpdaac.earthdatacloud.nasa.gov/lp-prod-protected";

/// The `stac_extensions` of every HLS item, in the published order.
pub const STAC_EXTENSIONS: [&str; 4] = [
    "https://stac-extensions.github.io/eo/v1.0.0/schema.json",
    "https://stac-extensions.github.io/projection/v1.0.0/schema.json",
    "https://stac-extensions.github.io/view/v1.0.0/schema.json",
    "https://stac-extensions.github.io/scientific/v1.0.0/schema.json",
];

/// The media type of every COG asset.
pub const COG_MEDIA_TYPE: &str = "image/tiff; application=geotiff; profile=cloud-optimized";

/// One data asset's band: name, common name, center wavelength and FWHM in µm.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Band {
    /// Asset key and band name (`B01`, `Fmask`, …).
    pub name: &'static str,
    /// `eo:common_name`, where the band has one.
    pub common_name: Option<&'static str>,
    /// Center wavelength (µm), where published.
    pub center_wavelength: Option<f64>,
    /// Full width at half maximum (µm), where published.
    pub full_width_half_max: Option<f64>,
}

const fn band(name: &'static str, common: Option<&'static str>, c: f64, w: f64) -> Band {
    Band {
        name,
        common_name: common,
        center_wavelength: Some(c),
        full_width_half_max: Some(w),
    }
}

const fn angle(name: &'static str) -> Band {
    Band {
        name,
        common_name: None,
        center_wavelength: None,
        full_width_half_max: None,
    }
}

/// The 18 data assets of an HLSS30 item, in the published order.
pub const S30_BANDS: [Band; 18] = [
    band("B01", Some("coastal"), 0.4439, 0.027),
    band("B02", Some("blue"), 0.4966, 0.098),
    band("B03", Some("green"), 0.56, 0.045),
    band("B04", Some("red"), 0.6645, 0.038),
    band("B05", None, 0.7039, 0.019),
    band("B06", None, 0.7402, 0.018),
    band("B07", None, 0.7825, 0.028),
    band("B08", Some("nir"), 0.8351, 0.145),
    band("B8A", None, 0.8648, 0.033),
    band("B09", None, 0.945, 0.026),
    band("B10", Some("cirrus"), 1.3735, 0.075),
    band("B11", Some("swir16"), 1.6137, 0.143),
    band("B12", Some("swir22"), 2.22024, 0.242),
    angle("Fmask"),
    angle("SZA"),
    angle("SAA"),
    angle("VZA"),
    angle("VAA"),
];

/// The 15 data assets of an HLSL30 item, in the published order.
/// (B01/B02 wavelengths are as LP DAAC publishes them.)
pub const L30_BANDS: [Band; 15] = [
    band("B01", Some("coastal"), 0.48, 0.02),
    band("B02", Some("blue"), 0.44, 0.06),
    band("B03", Some("green"), 0.56, 0.06),
    band("B04", Some("red"), 0.65, 0.04),
    band("B05", Some("nir"), 0.86, 0.03),
    band("B06", Some("swir16"), 1.6, 0.08),
    band("B07", Some("swir22"), 2.2, 0.2),
    band("B09", Some("cirrus"), 1.37, 0.02),
    band("B10", Some("lwir11"), 10.9, 0.8),
    band("B11", Some("lwir12"), 12.0, 1.0),
    angle("Fmask"),
    angle("SZA"),
    angle("SAA"),
    angle("VZA"),
    angle("VAA"),
];

/// The data assets of a collection's items.
pub fn bands(collection: Collection) -> &'static [Band] {
    match collection {
        Collection::Hlsl30 => &L30_BANDS,
        Collection::Hlss30 => &S30_BANDS,
    }
}

/// The values of one HLS granule's ECHO10 record that its STAC item and its CMR entry are
/// made from. Optional fields are the additional attributes an item can do without.
#[derive(Debug, Clone, PartialEq)]
pub struct GranuleMeta {
    /// HLSL30 or HLSS30.
    pub collection: Collection,
    /// `GranuleUR`, e.g. `HLS.S30.T35VLJ.2021168T100559.v2.0`: the item id.
    pub granule_ur: String,
    /// CMR concept id, e.g. `G3789984495-LPCLOUD`.
    pub concept_id: String,
    /// `Temporal/RangeDateTime/BeginningDateTime` (microseconds kept).
    pub begin: DateTime<Utc>,
    /// `Temporal/RangeDateTime/EndingDateTime`.
    pub end: DateTime<Utc>,
    /// `LastUpdate` (CMR entry `updated`).
    pub updated: DateTime<Utc>,
    /// `Platforms/Platform/ShortName` as recorded (`Sentinel-2B`, `LANDSAT-8`).
    pub platform: String,
    /// `Instrument/ShortName` as recorded (`Sentinel-2 MSI`, `OLI`).
    pub instrument: String,
    /// One ring per `GPolygon`: its `Boundary/Point`s as `(lon, lat)`, not closed.
    pub polygons: Vec<Vec<(f64, f64)>>,
    /// `CLOUD_COVERAGE` (percent).
    pub cloud_cover: Option<f64>,
    /// `MGRS_TILE_ID`, e.g. `35VLJ`.
    pub mgrs_tile: Option<String>,
    /// `ULX` (m).
    pub ulx: Option<f64>,
    /// `ULY` (m; negative south of the equator).
    pub uly: Option<f64>,
    /// `NROWS`.
    pub nrows: Option<u32>,
    /// `NCOLS`.
    pub ncols: Option<u32>,
    /// `SPATIAL_RESOLUTION` (m).
    pub resolution: Option<f64>,
    /// `MEAN_SUN_AZIMUTH_ANGLE`.
    pub sun_azimuth: Option<f64>,
    /// `MEAN_VIEW_AZIMUTH_ANGLE`.
    pub view_azimuth: Option<f64>,
    /// `IDENTIFIER_PRODUCT_DOI`.
    pub doi: Option<String>,
}

/// Formats a timestamp as LP DAAC does: microseconds and `Z`.
pub fn format_datetime(dt: &DateTime<Utc>) -> String {
    dt.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// Decimals of the published coordinates: LP DAAC's generator builds the geometry with
/// Python's `geojson`, whose default precision is 6.
pub const COORDINATE_DECIMALS: i32 = 6;

/// Rounds a coordinate to 6 decimals exactly as Python's `round(x, 6)` does (what `geojson`
/// applies to every coordinate): the exact binary value of `x` is rounded to the nearest
/// multiple of 10⁻⁶, ties to even, and the result is the double nearest that decimal.
/// So `23.2300555` (stored as `23.230055499999998…`) becomes `23.230055`, and `0.0078125`
/// (an exact tie) becomes `0.007812`; the sign of a value rounded to zero is kept.
pub fn round_coordinate(x: f64) -> f64 {
    const SCALE: f64 = 1e6;
    if !x.is_finite() || x.abs() >= 1e9 {
        // Far outside any coordinate (and where x·10⁶ nears 2⁵³): kept as it is.
        return x;
    }
    // x·10⁶ exactly is y + e: y the rounded product, e its rounding error (exact by FMA).
    let y = x * SCALE;
    let e = x.mul_add(SCALE, -y);
    let floor = y.floor();
    // y - floor and that minus one half are exact (|y| < 2⁵³, the fraction in [0, 1)).
    let above_half = (y - floor) - 0.5;
    // Above the half: up; below: down; exactly the half: to the even neighbour.
    let up = above_half > -e || (above_half == -e && floor % 2.0 != 0.0);
    let n = if up { floor + 1.0 } else { floor };
    (n / SCALE).copysign(x)
}

/// Lower-cased instrument name, the part after a space if there is one
/// (`Sentinel-2 MSI` → `msi`, `OLI` → `oli`).
pub fn instrument_name(instrument: &str) -> String {
    let part = instrument.rsplit(' ').next().unwrap_or(instrument);
    part.to_ascii_lowercase()
}

/// `326` + the UTM zone of an MGRS tile id (always the northern code, as LP DAAC does).
pub fn epsg_of_tile(tile: &str) -> Option<i64> {
    let zone: i64 = tile.get(..2)?.parse().ok()?;
    (1..=60).contains(&zone).then_some(32600 + zone)
}

impl GranuleMeta {
    /// The published geometry's rings: each ring closed by repeating its first point (when
    /// the record did not), then every coordinate rounded as [`round_coordinate`] does.
    pub fn closed_rings(&self) -> Vec<Vec<[f64; 2]>> {
        self.polygons
            .iter()
            .map(|ring| {
                let open = ring.len() > 1 && ring.first() != ring.last();
                ring.iter()
                    .chain(ring.first().filter(|_| open))
                    .map(|&(x, y)| [round_coordinate(x), round_coordinate(y)])
                    .collect()
            })
            .collect()
    }

    /// The published `bbox`: the bounds of the rounded geometry (so each bound is the
    /// recorded one rounded as [`round_coordinate`] does), or `None` without any point.
    pub fn published_bbox(&self) -> Option<[f64; 4]> {
        self.bbox().map(|b| b.map(round_coordinate))
    }

    /// `[minx, miny, maxx, maxy]` of the recorded points (not rounded: CMR's own spatial
    /// extent), or `None` without any.
    pub fn bbox(&self) -> Option<[f64; 4]> {
        let mut pts = self.polygons.iter().flatten();
        let &(x0, y0) = pts.next()?;
        let mut b = [x0, y0, x0, y0];
        for &(x, y) in pts {
            b[0] = b[0].min(x);
            b[1] = b[1].min(y);
            b[2] = b[2].max(x);
            b[3] = b[3].max(y);
        }
        Some(b)
    }

    /// The https URL LP DAAC publishes this granule's `_stac.json` at.
    pub fn stac_json_href(&self) -> String {
        format!(
            "{LPDAAC_PUBLIC}/{}/{id}/{id}_stac.json",
            self.collection.bucket_folder(),
            id = self.granule_ur
        )
    }

    /// The href of the asset of band `band` (`B01`, `Fmask`, …): a COG in LP DAAC's
    /// protected bucket.
    pub fn band_href(&self, band: &str) -> String {
        format!(
            "{LPDAAC_PROTECTED}/{}/{id}/{id}.{band}.tif",
            self.collection.bucket_folder(),
            id = self.granule_ur
        )
    }

    /// The href of the `thumbnail` asset: a JPEG in LP DAAC's public bucket.
    pub fn thumbnail_href(&self) -> String {
        format!(
            "{LPDAAC_PUBLIC}/{}/{id}/{id}.jpg",
            self.collection.bucket_folder(),
            id = self.granule_ur
        )
    }

    /// The href of the `cite-as` link, when the record has a DOI.
    pub fn doi_href(&self) -> Option<String> {
        self.doi
            .as_ref()
            .map(|doi| format!("https://doi.org/{doi}"))
    }

    /// `proj:transform`, when the resolution and the upper left corner are known.
    pub fn proj_transform(&self) -> Option<[f64; 9]> {
        let (res, ulx, uly) = (self.resolution?, self.ulx?, self.uly?);
        Some([res, 0.0, ulx, 0.0, -res, uly, 0.0, 0.0, 1.0])
    }

    /// `proj:shape` (rows, columns), when both are known.
    pub fn proj_shape(&self) -> Option<[u32; 2]> {
        Some([self.nrows?, self.ncols?])
    }
}

/// Builds the STAC item LP DAAC publishes for a granule, key for key in the published order.
/// Optional attributes that are missing leave their fields out.
pub fn to_stac_item(meta: &GranuleMeta) -> Value {
    let c = meta.collection;
    let id = meta.granule_ur.as_str();
    let mut props = Map::new();
    props.insert("start_datetime".into(), json!(format_datetime(&meta.begin)));
    props.insert("end_datetime".into(), json!(format_datetime(&meta.end)));
    props.insert("platform".into(), json!(meta.platform.to_ascii_lowercase()));
    props.insert(
        "instruments".into(),
        json!([instrument_name(&meta.instrument)]),
    );
    if let Some(cc) = meta.cloud_cover {
        props.insert("eo:cloud_cover".into(), json!(cc));
    }
    if let Some(transform) = meta.proj_transform() {
        props.insert("proj:transform".into(), json!(transform));
    }
    if let Some(shape) = meta.proj_shape() {
        props.insert("proj:shape".into(), json!(shape));
    }
    if let Some(epsg) = meta.mgrs_tile.as_deref().and_then(epsg_of_tile) {
        props.insert("proj:epsg".into(), json!(epsg));
    }
    if let Some(v) = meta.sun_azimuth {
        props.insert("view:sun_azimuth".into(), json!(v));
    }
    if let Some(v) = meta.view_azimuth {
        props.insert("view:azimuth".into(), json!(v));
    }
    if let Some(doi) = &meta.doi {
        props.insert("sci:doi".into(), json!(doi));
    }
    props.insert("datetime".into(), json!(format_datetime(&meta.begin)));

    let mut links = vec![json!({
        "rel": "self",
        "href": meta.stac_json_href(),
        "type": "application/json",
    })];
    if let Some(href) = meta.doi_href() {
        links.push(json!({"rel": "cite-as", "href": href}));
    }

    let mut assets = Map::new();
    for b in bands(c) {
        let mut eo_band = Map::new();
        eo_band.insert("name".into(), json!(b.name));
        if let Some(cn) = b.common_name {
            eo_band.insert("common_name".into(), json!(cn));
        }
        if let Some(w) = b.center_wavelength {
            eo_band.insert("center_wavelength".into(), json!(w));
        }
        if let Some(w) = b.full_width_half_max {
            eo_band.insert("full_width_half_max".into(), json!(w));
        }
        assets.insert(
            b.name.into(),
            json!({
                "href": meta.band_href(b.name),
                "type": COG_MEDIA_TYPE,
                "eo:bands": [Value::Object(eo_band)],
                "roles": ["data"],
            }),
        );
    }
    assets.insert(
        "thumbnail".into(),
        json!({
            "href": meta.thumbnail_href(),
            "type": "image/jpeg",
            "roles": ["thumbnail"],
        }),
    );

    let rings: Vec<Value> = meta
        .closed_rings()
        .into_iter()
        .map(|r| json!([r]))
        .collect();
    let mut item = Map::new();
    item.insert("type".into(), json!("Feature"));
    item.insert("stac_version".into(), json!("1.0.0"));
    item.insert("id".into(), json!(id));
    item.insert("properties".into(), Value::Object(props));
    item.insert(
        "geometry".into(),
        json!({"type": "MultiPolygon", "coordinates": rings}),
    );
    item.insert("links".into(), Value::Array(links));
    item.insert("assets".into(), Value::Object(assets));
    if let Some(b) = meta.published_bbox() {
        item.insert("bbox".into(), json!(b));
    }
    item.insert("stac_extensions".into(), json!(STAC_EXTENSIONS));
    Value::Object(item)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// The values of the real item `HLS.S30.T01WEV.2024153T000609.v2.0` (tests/fixtures/stac).
    pub(crate) fn t01wev() -> GranuleMeta {
        let t = Utc.with_ymd_and_hms(2024, 6, 1, 0, 6, 19).unwrap()
            + chrono::Duration::microseconds(72460);
        GranuleMeta {
            collection: Collection::Hlss30,
            granule_ur: "HLS.S30.T01WEV.2024153T000609.v2.0".into(),
            concept_id: "G3000000001-LPCLOUD".into(),
            begin: t,
            end: t,
            updated: t,
            platform: "Sentinel-2B".into(),
            instrument: "Sentinel-2 MSI".into(),
            polygons: vec![vec![
                (-177.000554, 71.115154),
                (-177.000575, 71.841919),
                (-175.544595, 71.573861),
                (-173.959239, 71.242815),
                (-173.940843, 71.2374),
                (-173.963758, 71.090475),
            ]],
            cloud_cover: Some(18.0),
            mgrs_tile: Some("01WEV".into()),
            ulx: Some(499980.0),
            uly: Some(8000040.0),
            nrows: Some(3660),
            ncols: Some(3660),
            resolution: Some(30.0),
            sun_azimuth: Some(187.71039035),
            view_azimuth: Some(296.0704673),
            doi: Some("10.5067/HLS/HLSS30.002".into()),
        }
    }

    #[test]
    fn rebuilds_the_real_item_exactly() {
        let real: Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/stac/HLS.S30.T01WEV.2024153T000609.v2.0_stac.json"
        ))
        .unwrap();
        let built = to_stac_item(&t01wev());
        assert_eq!(built, real);
        // Same key order too, at every level that LP DAAC orders.
        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&built), keys(&real));
        assert_eq!(keys(&built["properties"]), keys(&real["properties"]));
        assert_eq!(keys(&built["assets"]), keys(&real["assets"]));
        assert_eq!(keys(&built["assets"]["B05"]), keys(&real["assets"]["B05"]));
    }

    #[test]
    fn missing_optional_attributes_leave_fields_out() {
        let mut m = t01wev();
        m.cloud_cover = None;
        m.ulx = None;
        m.doi = None;
        let item = to_stac_item(&m);
        let props = item["properties"].as_object().unwrap();
        assert!(!props.contains_key("eo:cloud_cover"));
        assert!(!props.contains_key("proj:transform"));
        assert!(!props.contains_key("sci:doi"));
        assert!(props.contains_key("proj:shape"));
        assert_eq!(item["links"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn landsat_has_fifteen_data_assets() {
        let mut m = t01wev();
        m.collection = Collection::Hlsl30;
        m.granule_ur = "HLS.L30.T01WEV.2024153T000609.v2.0".into();
        let item = to_stac_item(&m);
        let assets = item["assets"].as_object().unwrap();
        assert_eq!(assets.len(), 16);
        assert!(!assets.contains_key("B08"));
        assert_eq!(assets["B10"]["eo:bands"][0]["common_name"], "lwir11");
    }

    /// `(x, round(x, 6))` as CPython 3 computes them: values whose decimal spelling is a
    /// tie but whose double is not (`23.2300555` is `23.23005549999…`), exact binary ties
    /// (odd multiples of 1/128, rounded to even), signed zeros, the real records' values.
    const PYTHON_ROUND_6: [(f64, f64); 35] = [
        (23.2300555, 23.230055),
        (0.0078125, 0.007812),
        (0.0234375, 0.023438),
        (-0.0078125, -0.007812),
        (-0.0234375, -0.023438),
        (1.0000005, 1.000001),
        (2.6750005, 2.675),
        (-2.6750005, -2.675),
        (-1e-07, -0.0),
        (4e-07, 0.0),
        (5e-07, 0.0),
        (-5e-07, -0.0),
        (6e-07, 1e-06),
        (23.15743429, 23.157434),
        (62.17850011, 62.1785),
        (-70.85016357, -70.850164),
        (-10.2986663, -10.298666),
        (179.9999995, 180.0),
        (-179.9999995, -180.0),
        (0.5000005, 0.5),
        (1.5000005, 1.500001),
        (89.99999949999999, 89.999999),
        (61.61985876, 61.619859),
        (0.0, 0.0),
        (-0.0, -0.0),
        (12345.0000005, 12345.000001),
        (0.04296875, 0.042969),
        (-135.192863671875, -135.192864),
        (78.318197265625, 78.318197),
        (136.756042578125, 136.756043),
        (0.9921875, 0.992188),
        (-0.9921875, -0.992188),
        (1.0078125, 1.007812),
        (96.4453125, 96.445312),
        (-96.4453125, -96.445312),
    ];

    #[test]
    fn coordinates_round_as_python_does() {
        for (x, expected) in PYTHON_ROUND_6 {
            let got = round_coordinate(x);
            assert_eq!(
                got.to_bits(),
                expected.to_bits(),
                "round({x:?}, 6) = {expected:?}, got {got:?}"
            );
        }
        assert!(round_coordinate(f64::NAN).is_nan());
    }

    /// Python's rounding from its definition: the exact decimal expansion of the double
    /// (Rust prints it exactly), rounded at the 6th decimal half to even, parsed back.
    fn round6_by_digits(x: f64) -> f64 {
        let exact = format!("{:.80}", x.abs());
        let (int, frac) = exact.split_once('.').unwrap();
        let (kept, rest) = frac.split_at(6);
        let mut n: u64 = format!("{int}{kept}").parse().unwrap();
        let rest = rest.trim_end_matches('0');
        let up = match rest.as_bytes().first() {
            Some(b'5') if rest.len() == 1 => n % 2 == 1,
            Some(d) => *d >= b'5',
            None => false,
        };
        n += u64::from(up);
        let s = format!("{}.{:06}", n / 1_000_000, n % 1_000_000);
        s.parse::<f64>().unwrap().copysign(x)
    }

    #[test]
    fn coordinates_round_as_their_exact_decimal_expansion_does() {
        // A fixed pseudo-random walk over [-180, 180], at 5 to 10 decimals and in binary.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for i in 0..200_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let unit = (state >> 11) as f64 / (1u64 << 53) as f64;
            let raw = unit * 360.0 - 180.0;
            let x = match i % 4 {
                0 => raw,
                1 => (raw * 1e7).round() / 1e7,
                2 => (raw * 1e8).round() / 1e8,
                _ => ((raw * 128.0e6).round() + 64.0) / 128.0e6,
            };
            assert_eq!(
                round_coordinate(x).to_bits(),
                round6_by_digits(x).to_bits(),
                "{x:?}"
            );
        }
    }

    #[test]
    fn the_published_geometry_and_bbox_are_rounded() {
        let mut m = t01wev();
        m.polygons = vec![vec![
            (23.15743429, 62.17850011),
            (23.73778725, 62.19339089),
            (23.2300555, 61.62237083),
            (23.226963, 61.61985876),
        ]];
        let rings = m.closed_rings();
        assert_eq!(
            rings,
            vec![vec![
                [23.157434, 62.1785],
                [23.737787, 62.193391],
                [23.230055, 61.622371],
                [23.226963, 61.619859],
                [23.157434, 62.1785],
            ]]
        );
        assert_eq!(
            m.published_bbox(),
            Some([23.157434, 61.619859, 23.737787, 62.193391])
        );
        assert_eq!(
            m.bbox(),
            Some([23.15743429, 61.61985876, 23.73778725, 62.19339089])
        );
        // A ring is closed by its recorded first point, even when its rounded last point
        // is already the same.
        m.polygons = vec![vec![(1.0, 1.0), (2.0, 1.0), (2.0, 2.0), (1.0000001, 1.0)]];
        assert_eq!(m.closed_rings()[0].len(), 5);
        m.polygons = vec![vec![(1.0, 1.0), (2.0, 1.0), (2.0, 2.0), (1.0, 1.0)]];
        assert_eq!(m.closed_rings()[0].len(), 4);
    }

    #[test]
    fn helpers() {
        assert_eq!(instrument_name("Sentinel-2 MSI"), "msi");
        assert_eq!(instrument_name("OLI"), "oli");
        assert_eq!(epsg_of_tile("35VLJ"), Some(32635));
        assert_eq!(epsg_of_tile("19LBJ"), Some(32619));
        assert_eq!(epsg_of_tile("xx"), None);
    }
}
