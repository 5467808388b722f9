//! Rendering then parsing gives back the same `GranuleMeta`; rendered records look like the
//! real ones.

use super::*;
use hls_flow::source::echo10::parse_granule;
use hls_flow_emulator::echo10::render_granule;
use quick_xml::Reader;
use quick_xml::events::Event;

/// Every element of a record in document order, as `(path, text)`; the text of a
/// `Values/Value` path is prefixed with its attribute's name (`[ULX] 300000.0`).
fn leaves(xml: &str) -> Vec<(String, String)> {
    let mut reader = Reader::from_str(xml);
    let mut path: Vec<String> = Vec::new();
    let mut text = String::new();
    let mut attr = String::new();
    let mut out = Vec::new();
    loop {
        match reader.read_event().unwrap() {
            Event::Start(e) => {
                path.push(e.name().as_ref().to_string());
                text.clear();
            }
            Event::Empty(e) => {
                let name = e.name().as_ref().to_string();
                out.push((format!("{}/{name}", path.join("/")), String::new()));
            }
            Event::Text(t) => text.push_str(&t),
            Event::GeneralRef(r) => text.push_str(&format!("&{};", &*r)),
            Event::End(_) => {
                let p = path.join("/");
                let t = text.trim().to_string();
                if p.ends_with("AdditionalAttribute/Name") {
                    attr = t.clone();
                }
                let t = if p.ends_with("Values/Value") {
                    format!("[{attr}] {t}")
                } else {
                    t
                };
                out.push((p, t));
                path.pop();
                text.clear();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    out
}

/// Values the renderer derives (plausibly, not exactly) instead of taking from the meta.
const DERIVED: [&str; 8] = [
    "InsertTime",
    "DataGranuleSizeInBytes",
    "ProductionDateTime",
    "[PRODUCT_URI]",
    "[LANDSAT_PRODUCT_ID]",
    "[SPATIAL_COVERAGE]",
    "[HLS_PROCESSING_TIME]",
    "[SENSING_TIME]",
];

fn same_as_real_record(real: &str, meta: &GranuleMeta) {
    let rendered = render_granule(meta);
    let (r, b) = (leaves(real), leaves(&rendered));
    let paths = |v: &[(String, String)]| v.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>();
    assert_eq!(paths(&b), paths(&r), "same elements in the same order");
    for ((path, real_text), (_, text)) in r.iter().zip(&b) {
        let derived = DERIVED
            .iter()
            .any(|d| path.ends_with(d) || real_text.starts_with(d))
            || (real_text.starts_with('[') && real_text.contains("_ZENITH"));
        if derived {
            assert_eq!(text.is_empty(), real_text.is_empty(), "{path}");
            continue;
        }
        assert_eq!(text, real_text, "{path}");
    }
}

#[test]
fn rendered_s30_record_matches_the_real_one() {
    same_as_real_record(S30_XML, &s30_meta());
}

#[test]
fn rendered_l30_record_matches_the_real_one() {
    same_as_real_record(L30_XML, &l30_meta());
}

#[test]
fn rendering_is_deterministic() {
    assert_eq!(render_granule(&s30_meta()), render_granule(&s30_meta()));
    let r = render_granule(&s30_meta());
    assert!(
        r.contains("<Value>S2B_MSIL1C_20210617T100559_N0300_R"),
        "{r}"
    );
    assert!(r.contains("_T35VLJ_"));
    let r = render_granule(&l30_meta());
    assert!(r.contains("<Value>LC08_L1TP_"));
    assert!(r.contains("_20200826_20200905_02_T1</Value>"));
    assert!(r.contains("<ProducerGranuleId>HLS.L30.T19LBJ.2020239T144556</ProducerGranuleId>"));
}

#[test]
fn real_metas_round_trip() {
    for meta in [s30_meta(), l30_meta()] {
        let xml = render_granule(&meta);
        let (back, missing) = parse_granule(xml.as_bytes(), &meta.concept_id).unwrap();
        assert_eq!(back, meta);
        assert!(missing.is_empty());
    }
}

#[test]
fn text_is_escaped() {
    let mut m = s30_meta();
    m.platform = "A&B <C> \"D\" 'E'".into();
    m.doi = Some("10.5067/<&>".into());
    let xml = render_granule(&m);
    assert!(xml.contains("<ShortName>A&amp;B &lt;C&gt; &quot;D&quot; &apos;E&apos;</ShortName>"));
    let (back, _) = parse_granule(xml.as_bytes(), S30_CONCEPT).unwrap();
    assert_eq!(back, m);
}

#[test]
fn absent_optionals_are_not_rendered() {
    let mut m = l30_meta();
    m.mgrs_tile = None;
    m.cloud_cover = None;
    m.doi = None;
    let xml = render_granule(&m);
    for name in [
        "MGRS_TILE_ID",
        "CLOUD_COVERAGE",
        "IDENTIFIER_PRODUCT_DOI",
        "HORIZONTAL_CS_NAME",
    ] {
        assert!(!xml.contains(&format!("<Name>{name}")), "{name}");
    }
    let (back, missing) = parse_granule(xml.as_bytes(), L30_CONCEPT).unwrap();
    assert_eq!(back, m);
    assert_eq!(
        missing,
        ["CLOUD_COVERAGE", "MGRS_TILE_ID", "IDENTIFIER_PRODUCT_DOI"]
    );
}

proptest! {
    #[test]
    fn arbitrary_metas_round_trip(meta in arb_meta()) {
        let xml = render_granule(&meta);
        let (back, missing) = parse_granule(xml.as_bytes(), &meta.concept_id)
            .map_err(|e| TestCaseError::fail(format!("{e}\n{xml}")))?;
        prop_assert_eq!(&back, &meta);
        // Bit-exact floats, not just `==` (which equates 0.0 and -0.0).
        for (a, b) in back.polygons.iter().flatten().zip(meta.polygons.iter().flatten()) {
            prop_assert_eq!(a.0.to_bits(), b.0.to_bits());
            prop_assert_eq!(a.1.to_bits(), b.1.to_bits());
        }
        prop_assert_eq!(back.ulx.map(f64::to_bits), meta.ulx.map(f64::to_bits));
        prop_assert_eq!(back.sun_azimuth.map(f64::to_bits), meta.sun_azimuth.map(f64::to_bits));
        prop_assert_eq!(missing, expected_missing(&meta));
    }
}
