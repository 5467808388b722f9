//! Tests of the ECHO10 layer against the real records and items in `tests/fixtures/`.

mod fidelity;
mod pages;
mod robustness;
mod roundtrip;
mod shape;

use chrono::{DateTime, TimeZone, Utc};
use hls_flow::collection::Collection;
use hls_flow::source::hls::GranuleMeta;
use proptest::prelude::*;

/// The real HLSS30 record.
pub(crate) const S30_XML: &str =
    include_str!("../fixtures/echo10/HLS.S30.T35VLJ.2021168T100559.v2.0.cmr.xml");
/// The real HLSL30 record.
pub(crate) const L30_XML: &str =
    include_str!("../fixtures/echo10/HLS.L30.T19LBJ.2020239T144556.v2.0.cmr.xml");
/// A real LP DAAC item (of another granule than the records).
pub(crate) const S30_ITEM: &str =
    include_str!("../fixtures/stac/HLS.S30.T01WEV.2024153T000609.v2.0_stac.json");

pub(crate) const S30_CONCEPT: &str = "G2153166491-LPCLOUD";
pub(crate) const L30_CONCEPT: &str = "G2144009349-LPCLOUD";

/// A UTC time from its parts, built independently of the parser.
pub(crate) fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32, micros: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap() + chrono::Duration::microseconds(micros)
}

/// The values of the real S30 record, typed in from the XML.
pub(crate) fn s30_meta() -> GranuleMeta {
    let t = utc(2021, 6, 17, 10, 13, 17, 89_940);
    GranuleMeta {
        collection: Collection::Hlss30,
        granule_ur: "HLS.S30.T35VLJ.2021168T100559.v2.0".into(),
        concept_id: S30_CONCEPT.into(),
        begin: t,
        end: t,
        updated: utc(2022, 1, 8, 2, 35, 22, 590_029),
        platform: "Sentinel-2B".into(),
        instrument: "Sentinel-2 MSI".into(),
        polygons: vec![vec![
            (23.15743429, 62.17850011),
            (23.73778725, 62.19339089),
            (23.2300555, 61.62237083),
            (23.226963, 61.61985876),
        ]],
        cloud_cover: Some(53.0),
        mgrs_tile: Some("35VLJ".into()),
        ulx: Some(300000.0),
        uly: Some(6900000.0),
        nrows: Some(3660),
        ncols: Some(3660),
        resolution: Some(30.0),
        sun_azimuth: Some(174.79055913),
        view_azimuth: Some(300.08037732),
        doi: Some("10.5067/HLS/HLSS30.002".into()),
    }
}

/// The values of the real L30 record, typed in from the XML.
pub(crate) fn l30_meta() -> GranuleMeta {
    let t = utc(2020, 8, 26, 14, 45, 56, 705_922);
    GranuleMeta {
        collection: Collection::Hlsl30,
        granule_ur: "HLS.L30.T19LBJ.2020239T144556.v2.0".into(),
        concept_id: L30_CONCEPT.into(),
        begin: t,
        end: t,
        updated: utc(2021, 9, 4, 0, 48, 17, 328_463),
        platform: "LANDSAT-8".into(),
        instrument: "OLI".into(),
        polygons: vec![vec![
            (-70.85016357, -10.81032658),
            (-70.73701415, -10.2986663),
            (-70.74003191, -10.83510398),
        ]],
        cloud_cover: Some(2.0),
        mgrs_tile: Some("19LBJ".into()),
        ulx: Some(199980.0),
        uly: Some(-1099980.0),
        nrows: Some(3660),
        ncols: Some(3660),
        resolution: Some(30.0),
        sun_azimuth: Some(55.84072412),
        view_azimuth: Some(98.50384566),
        doi: Some("10.5067/HLS/HLSL30.002".into()),
    }
}

/// Text without surrounding whitespace, with XML specials and non-ASCII characters.
pub(crate) fn arb_text() -> impl Strategy<Value = String> {
    "[A-Za-z0-9&<>\"'._é→-]([A-Za-z0-9&<>\"'/ ._é→;#-]{0,10}[A-Za-z0-9&<>\"'._é→-])?"
}

/// A finite float of any magnitude, or a typical one.
pub(crate) fn arb_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("finite", |v| v.is_finite()),
        -1e7..1e7f64,
        (0..=100i32).prop_map(f64::from),
        (-100_000_000..100_000_000i64).prop_map(|n| n as f64 / 1e4),
    ]
}

/// A time with microseconds, between 1900 and 2200.
pub(crate) fn arb_time() -> impl Strategy<Value = DateTime<Utc>> {
    (-2_208_988_800_000_000i64..7_258_118_400_000_000i64)
        .prop_map(|us| DateTime::from_timestamp_micros(us).unwrap())
}

/// A coordinate within `[-limit, limit]`, arbitrary or with 8 decimals as LP DAAC writes them.
fn arb_coord(limit: f64) -> impl Strategy<Value = f64> {
    let n = (limit * 1e8) as i64;
    prop_oneof![
        -limit..=limit,
        (-n..=n).prop_map(|v| v as f64 / 1e8),
        Just(limit),
        Just(-limit),
    ]
}

/// A ring of 3 to 7 points that does not collapse below 3 distinct points.
fn arb_ring() -> impl Strategy<Value = Vec<(f64, f64)>> {
    proptest::collection::vec((arb_coord(180.0), arb_coord(90.0)), 3..8)
        .prop_filter("3 points at least", |r| {
            r.len() > 3 || r.first() != r.last()
        })
}

/// An arbitrary granule, every optional field present or absent.
pub(crate) fn arb_meta() -> impl Strategy<Value = GranuleMeta> {
    let ids = (
        prop_oneof![Just(Collection::Hlss30), Just(Collection::Hlsl30)],
        prop_oneof![
            arb_text(),
            "T[0-6][0-9][C-X][A-Z]{2}\\.20[0-9]{2}[0-3][0-9]{2}T[0-2][0-9][0-5][0-9]{3}\\.v2\\.0",
        ],
        "G[0-9]{1,10}-LPCLOUD",
        arb_time(),
        0..86_400_000_000i64,
        arb_time(),
        arb_text(),
        arb_text(),
        proptest::collection::vec(arb_ring(), 1..4),
    );
    let optional = (
        proptest::option::of(arb_f64()),
        proptest::option::of(prop_oneof!["[0-6][0-9][C-X][A-Z]{2}", arb_text()]),
        proptest::option::of(arb_f64()),
        proptest::option::of(arb_f64()),
        proptest::option::of(any::<u32>()),
        proptest::option::of(any::<u32>()),
        proptest::option::of(arb_f64()),
        proptest::option::of(arb_f64()),
        proptest::option::of(arb_f64()),
        proptest::option::of(prop_oneof!["10\\.5067/HLS/HLS[SL]30\\.002", arb_text()]),
    );
    (ids, optional).prop_map(
        |(
            (collection, suffix, concept_id, begin, span, updated, platform, instrument, polygons),
            (cloud_cover, mgrs_tile, ulx, uly, nrows, ncols, resolution, sun, view, doi),
        )| GranuleMeta {
            collection,
            granule_ur: format!("HLS.{}.{suffix}", collection.product()),
            concept_id,
            begin,
            end: begin + chrono::Duration::microseconds(span),
            updated,
            platform,
            instrument,
            polygons,
            cloud_cover,
            mgrs_tile,
            ulx,
            uly,
            nrows,
            ncols,
            resolution,
            sun_azimuth: sun,
            view_azimuth: view,
            doi,
        },
    )
}

/// The names [`parse_granule`](super::parse_granule) must report for a meta's absent fields.
pub(crate) fn expected_missing(m: &GranuleMeta) -> Vec<&'static str> {
    use hls_flow::source::echo10::attr::*;
    [
        (CLOUD_COVERAGE, m.cloud_cover.is_none()),
        (MGRS_TILE_ID, m.mgrs_tile.is_none()),
        (ULX, m.ulx.is_none()),
        (ULY, m.uly.is_none()),
        (NROWS, m.nrows.is_none()),
        (NCOLS, m.ncols.is_none()),
        (SPATIAL_RESOLUTION, m.resolution.is_none()),
        (MEAN_SUN_AZIMUTH_ANGLE, m.sun_azimuth.is_none()),
        (MEAN_VIEW_AZIMUTH_ANGLE, m.view_azimuth.is_none()),
        (IDENTIFIER_PRODUCT_DOI, m.doi.is_none()),
    ]
    .into_iter()
    .filter_map(|(name, absent)| absent.then_some(name))
    .collect()
}

/// The record with the first occurrence of `from` replaced by `to` (which must exist).
pub(crate) fn edit(xml: &str, from: &str, to: &str) -> String {
    assert!(xml.contains(from), "fixture lacks {from:?}");
    xml.replacen(from, to, 1)
}

/// The record without the `AdditionalAttribute` named `name`.
pub(crate) fn without_attribute(xml: &str, name: &str) -> String {
    let at = xml
        .find(&format!("<Name>{name}</Name>"))
        .unwrap_or_else(|| panic!("fixture lacks {name}"));
    let start = xml[..at].rfind("<AdditionalAttribute>").unwrap();
    let end =
        at + xml[at..].find("</AdditionalAttribute>").unwrap() + "</AdditionalAttribute>".len();
    format!("{}{}", &xml[..start], &xml[end..])
}
