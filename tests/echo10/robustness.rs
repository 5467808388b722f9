//! Missing, broken and unexpected input: absent fields, errors with reasons, never a panic.

use super::*;
use hls_flow::source::echo10::{Echo10Error, PageReader, item_from_record, parse_granule};
use hls_flow_emulator::echo10::render_page;

fn parse(xml: &str) -> Result<(GranuleMeta, Vec<&'static str>), Echo10Error> {
    parse_granule(xml.as_bytes(), S30_CONCEPT)
}

const S30_ID: &str = "HLS.S30.T35VLJ.2021168T100559.v2.0";

#[test]
fn missing_optional_attribute_is_absent_and_reported() {
    let xml = without_attribute(S30_XML, "CLOUD_COVERAGE");
    let (meta, missing) = parse(&xml).unwrap();
    assert_eq!(meta.cloud_cover, None);
    assert_eq!(missing, ["CLOUD_COVERAGE"]);
    assert_eq!(
        meta,
        GranuleMeta {
            cloud_cover: None,
            ..s30_meta()
        }
    );
    let (item, missing) = item_from_record(xml.as_bytes(), S30_CONCEPT).unwrap();
    assert_eq!(missing, ["CLOUD_COVERAGE"]);
    assert!(item["properties"].get("eo:cloud_cover").is_none());
}

#[test]
fn every_mapped_attribute_is_optional() {
    let mut xml = L30_XML.to_string();
    for name in hls_flow::source::echo10::attr::MAPPED {
        xml = without_attribute(&xml, name);
    }
    let (meta, missing) = parse_granule(xml.as_bytes(), L30_CONCEPT).unwrap();
    assert_eq!(missing, hls_flow::source::echo10::attr::MAPPED);
    assert_eq!(
        meta,
        GranuleMeta {
            cloud_cover: None,
            mgrs_tile: None,
            ulx: None,
            uly: None,
            nrows: None,
            ncols: None,
            resolution: None,
            sun_azimuth: None,
            view_azimuth: None,
            doi: None,
            ..l30_meta()
        }
    );
}

#[test]
fn unparsable_optional_attribute_is_absent_and_reported() {
    let xml = edit(
        S30_XML,
        "<Value>300000.0</Value>",
        "<Value>three hundred km</Value>",
    );
    let xml = edit(&xml, "<Value>53</Value>", "<Value>NaN</Value>");
    let xml = edit(&xml, "<Value>3660</Value>", "<Value>-3660</Value>");
    let (meta, missing) = parse(&xml).unwrap();
    assert_eq!(meta.ulx, None);
    assert_eq!(meta.cloud_cover, None);
    assert_eq!(meta.ncols, None);
    assert_eq!(meta.nrows, Some(3660));
    assert_eq!(missing, ["CLOUD_COVERAGE", "ULX", "NCOLS"]);
}

#[test]
fn element_fallbacks_are_reported() {
    let xml = edit(
        S30_XML,
        "<EndingDateTime>2021-06-17T10:13:17.089940Z</EndingDateTime>",
        "",
    );
    let xml = edit(
        &xml,
        "<LastUpdate>2022-01-08T02:35:22.590029Z</LastUpdate>",
        "",
    );
    let (meta, missing) = parse(&xml).unwrap();
    assert_eq!(meta.end, meta.begin);
    assert_eq!(
        meta.updated,
        utc(2022, 1, 8, 2, 35, 22, 590_022),
        "InsertTime"
    );
    assert_eq!(missing, ["EndingDateTime", "LastUpdate"]);
}

#[test]
fn unknown_attributes_and_elements_are_ignored() {
    let extra = "<AdditionalAttribute><Name>CLOUD_MASKING_CODE</Name><Values><Value>Fmask 4.7</Value></Values></AdditionalAttribute>\
        <AdditionalAttribute><Name>NO_VALUES</Name></AdditionalAttribute>\
        <AdditionalAttribute><Values><Value>no name</Value></Values></AdditionalAttribute>";
    let xml = edit(
        S30_XML,
        "<AdditionalAttributes>",
        &format!("<AdditionalAttributes>{extra}"),
    );
    // Lookalikes outside their place do not count.
    let xml = edit(
        &xml,
        "<OnlineAccessURLs/>",
        "<Decoy><GranuleUR>HLS.L30.X</GranuleUR><AdditionalAttribute><Name>CLOUD_COVERAGE</Name>\
         <Values><Value>99</Value></Values></AdditionalAttribute></Decoy><OnlineAccessURLs/>",
    );
    let xml = edit(
        &xml,
        "<Boundary>",
        "<Boundary><Note><Point><PointLongitude>0</PointLongitude><PointLatitude>0</PointLatitude></Point></Note>",
    );
    let xml = edit(&xml, "<Temporal>", "<Temporal><!-- comment --><?pi x?>");
    let xml = edit(&xml, "</Spatial>", "<Orbit a=\"1\"><X/></Orbit></Spatial>");
    let (meta, missing) = parse(&xml).unwrap();
    assert!(missing.is_empty(), "{missing:?}");
    assert_eq!(meta, s30_meta());
}

#[test]
fn duplicates_keep_the_first_value() {
    let xml = edit(
        S30_XML,
        "<AdditionalAttributes>",
        "<AdditionalAttributes><AdditionalAttribute><Name>CLOUD_COVERAGE</Name><Values><Value>7</Value><Value>8</Value></Values></AdditionalAttribute>",
    );
    let (meta, _) = parse(&xml).unwrap();
    assert_eq!(meta.cloud_cover, Some(7.0));
}

#[test]
fn references_cdata_and_whitespace_are_read() {
    let xml = edit(
        S30_XML,
        "<ShortName>Sentinel-2B</ShortName>",
        "<ShortName>\n  Sentinel&#45;2&#x42;\n</ShortName>",
    );
    let xml = edit(
        &xml,
        "<ShortName>Sentinel-2 MSI</ShortName>",
        "<ShortName><![CDATA[Sentinel-2 MSI]]></ShortName>",
    );
    let xml = edit(
        &xml,
        "10.5067/HLS/HLSS30.002",
        "10.5067/HLS/&lt;HLSS30&gt;&amp;&quot;&apos;",
    );
    let (meta, _) = parse(&xml).unwrap();
    assert_eq!(meta.platform, "Sentinel-2B");
    assert_eq!(meta.instrument, "Sentinel-2 MSI");
    assert_eq!(meta.doi.as_deref(), Some("10.5067/HLS/<HLSS30>&\"'"));
}

#[test]
fn several_polygons_give_several_rings() {
    let polygon = "<GPolygon><Boundary>\
        <Point><PointLongitude>1</PointLongitude><PointLatitude>2</PointLatitude></Point>\
        <Point><PointLongitude>3</PointLongitude><PointLatitude>4</PointLatitude></Point>\
        <Point><PointLongitude>5</PointLongitude><PointLatitude>-6</PointLatitude></Point>\
        </Boundary><ExclusiveZone><Boundary><Point><PointLongitude>9</PointLongitude><PointLatitude>9</PointLatitude></Point></Boundary></ExclusiveZone></GPolygon>";
    let xml = edit(S30_XML, "</Geometry>", &format!("{polygon}</Geometry>"));
    let (meta, _) = parse(&xml).unwrap();
    assert_eq!(meta.polygons.len(), 2);
    assert_eq!(meta.polygons[1], vec![(1.0, 2.0), (3.0, 4.0), (5.0, -6.0)]);
}

fn assert_missing(result: Result<Parsed, Echo10Error>, granule: Option<&str>, field: &str) {
    match result {
        Err(e @ Echo10Error::Missing { .. }) => {
            let Echo10Error::Missing {
                granule: g,
                field: f,
            } = &e
            else {
                unreachable!()
            };
            assert_eq!(g.as_deref(), granule);
            assert_eq!(*f, field);
            assert!(e.to_string().contains(field), "{e}");
            if let Some(id) = granule {
                assert!(e.to_string().contains(id), "{e}");
            }
        }
        other => panic!("expected missing {field}, got {other:?}"),
    }
}

type Parsed = (GranuleMeta, Vec<&'static str>);

fn assert_invalid(result: Result<Parsed, Echo10Error>, field: &str) {
    match result {
        Err(e @ Echo10Error::Invalid { .. }) => {
            let Echo10Error::Invalid {
                granule, field: f, ..
            } = &e
            else {
                unreachable!()
            };
            assert_eq!(*f, field, "{e}");
            assert_eq!(granule.as_deref(), Some(S30_ID), "{e}");
        }
        other => panic!("expected invalid {field}, got {other:?}"),
    }
}

#[test]
fn missing_required_values_are_errors_naming_the_granule() {
    let no_ur = edit(S30_XML, &format!("<GranuleUR>{S30_ID}</GranuleUR>"), "");
    assert_missing(parse(&no_ur), None, "GranuleUR");
    let empty_ur = edit(
        S30_XML,
        &format!("<GranuleUR>{S30_ID}</GranuleUR>"),
        "<GranuleUR> </GranuleUR>",
    );
    assert_missing(parse(&empty_ur), None, "GranuleUR");
    let no_begin = edit(
        S30_XML,
        "<BeginningDateTime>2021-06-17T10:13:17.089940Z</BeginningDateTime>",
        "",
    );
    assert_missing(parse(&no_begin), Some(S30_ID), "BeginningDateTime");
    let start = S30_XML.find("<Spatial>").unwrap();
    let end = S30_XML.find("</Spatial>").unwrap() + "</Spatial>".len();
    let no_geometry = format!("{}{}", &S30_XML[..start], &S30_XML[end..]);
    assert_missing(parse(&no_geometry), Some(S30_ID), "GPolygon");
    let no_platform = edit(S30_XML, "<ShortName>Sentinel-2B</ShortName>", "");
    assert_missing(parse(&no_platform), Some(S30_ID), "Platform/ShortName");
    let no_times = edit(
        S30_XML,
        "<LastUpdate>2022-01-08T02:35:22.590029Z</LastUpdate>",
        "",
    );
    let no_times = edit(
        &no_times,
        "<InsertTime>2022-01-08T02:35:22.590022Z</InsertTime>",
        "",
    );
    assert_missing(parse(&no_times), Some(S30_ID), "LastUpdate");
}

#[test]
fn unusable_required_values_are_errors_with_reasons() {
    let bad_begin = edit(
        S30_XML,
        "<BeginningDateTime>2021-06-17T10:13:17.089940Z",
        "<BeginningDateTime>17 June 2021",
    );
    assert_invalid(parse(&bad_begin), "BeginningDateTime");
    let two_points = edit(
        S30_XML,
        "<Point>\n              <PointLongitude>23.15743429</PointLongitude>\n              <PointLatitude>62.17850011</PointLatitude>\n            </Point>",
        "",
    );
    let two_points = edit(
        &two_points,
        "<Point>\n              <PointLongitude>23.73778725</PointLongitude>\n              <PointLatitude>62.19339089</PointLatitude>\n            </Point>",
        "",
    );
    assert_invalid(parse(&two_points), "GPolygon");
    let bad_lon = edit(
        S30_XML,
        "<PointLongitude>23.2300555<",
        "<PointLongitude>23,2300555<",
    );
    assert_invalid(parse(&bad_lon), "PointLongitude");
    let far_lat = edit(
        S30_XML,
        "<PointLatitude>61.62237083<",
        "<PointLatitude>161.62237083<",
    );
    assert_invalid(parse(&far_lat), "PointLatitude");
    let no_lat = edit(S30_XML, "<PointLatitude>61.62237083</PointLatitude>", "");
    assert_missing(parse(&no_lat), Some(S30_ID), "PointLatitude");
}

#[test]
fn collection_is_checked() {
    let other = S30_XML.replace("HLS.S30.", "HLS.X30.");
    let err = parse(&other).unwrap_err();
    assert!(
        matches!(
            &err,
            Echo10Error::Invalid {
                field: "GranuleUR",
                ..
            }
        ),
        "{err}"
    );
    let wrong_dataset = edit(
        S30_XML,
        Collection::Hlss30.dataset_id(),
        Collection::Hlsl30.dataset_id(),
    );
    let err = parse(&wrong_dataset).unwrap_err();
    assert!(
        matches!(
            &err,
            Echo10Error::CollectionMismatch {
                field: "DataSetId",
                collection: Collection::Hlss30,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.granule(), Some(S30_ID));
    let renamed = edit(
        S30_XML,
        Collection::Hlss30.dataset_id(),
        "HLS S30 v2.0, renamed",
    );
    let (meta, missing) = parse(&renamed).unwrap();
    assert_eq!(meta, s30_meta());
    assert_eq!(missing, ["DataSetId"]);
}

#[test]
fn malformed_xml_is_an_error() {
    let cases: Vec<(&str, String)> = vec![
        ("empty", String::new()),
        ("only a declaration", "<?xml version=\"1.0\"?>".into()),
        ("not xml", "{\"id\": 1}".into()),
        (
            "mismatched end",
            edit(S30_XML, "</GranuleUR>", "</GranuleID>"),
        ),
        ("truncated", S30_XML[..S30_XML.len() / 2].to_string()),
        ("unclosed tag", edit(S30_XML, "<Temporal>", "<Temporal")),
        (
            "unknown entity",
            edit(S30_XML, "Sentinel-2B", "Sentinel&two;B"),
        ),
        (
            "bad char ref",
            edit(S30_XML, "Sentinel-2B", "Sentinel&#xFFFFFFFF;B"),
        ),
        ("other root", S30_XML.replace("Granule>", "Collection>")),
        ("second root", format!("{S30_XML}<Granule/>")),
        ("trailing text", format!("{S30_XML} trailing")),
        (
            "bad attribute",
            edit(S30_XML, "<Temporal>", "<Temporal a=>"),
        ),
    ];
    for (what, xml) in cases {
        let err = parse(&xml).expect_err(what);
        assert!(!err.to_string().is_empty(), "{what}");
    }
    let mut bytes = S30_XML.as_bytes().to_vec();
    let at = S30_XML.find("Sentinel-2B").unwrap();
    bytes[at] = 0xff;
    assert!(parse_granule(&bytes, S30_CONCEPT).is_err(), "invalid UTF-8");
}

#[test]
fn errors_carry_context() {
    let err = parse(&edit(S30_XML, "</Platforms>", "</Platformz>")).unwrap_err();
    assert!(
        matches!(&err, Echo10Error::Xml { position, .. } if *position > 0),
        "{err}"
    );
    assert_eq!(err.granule(), Some(S30_ID), "{err}");
    let err = parse(&S30_XML[..S30_XML.find("<Spatial>").unwrap()]).unwrap_err();
    assert!(
        matches!(
            &err,
            Echo10Error::Truncated {
                inside: "Granule",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains(S30_ID));
}

/// Applies byte-level mutations (delete, insert, overwrite, duplicate, truncate) to `bytes`.
fn mutate(mut bytes: Vec<u8>, mutations: &[(u8, usize, usize, Vec<u8>)]) -> Vec<u8> {
    for (kind, a, b, insert) in mutations {
        let len = bytes.len().max(1);
        let (a, b) = (a % len, b % len);
        let (lo, hi) = (a.min(b).min(bytes.len()), a.max(b).min(bytes.len()));
        match kind % 5 {
            0 => {
                bytes.drain(lo..hi.min(lo + 64));
            }
            1 => {
                let at = lo.min(bytes.len());
                bytes.splice(at..at, insert.iter().copied());
            }
            2 => {
                if let Some(x) = bytes.get_mut(lo) {
                    *x = insert.first().copied().unwrap_or(b'<');
                }
            }
            3 => {
                let piece = bytes[lo..hi.min(lo + 200)].to_vec();
                bytes.splice(hi..hi, piece);
            }
            _ => bytes.truncate(hi),
        }
    }
    bytes
}

fn mutations() -> impl Strategy<Value = Vec<(u8, usize, usize, Vec<u8>)>> {
    let insert = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..8),
        prop_oneof![
            Just(b"<".to_vec()),
            Just(b"</Point>".to_vec()),
            Just(b"<GPolygon>".to_vec()),
            Just(b"&amp;".to_vec()),
            Just(b"&#0;".to_vec()),
            Just(b"<![CDATA[".to_vec()),
            Just(b"<!--".to_vec()),
            Just(b"\"".to_vec()),
            Just(b"</result><result concept-id=\"x\">".to_vec()),
            Just(b"</results>".to_vec()),
        ],
    ];
    proptest::collection::vec((any::<u8>(), any::<usize>(), any::<usize>(), insert), 1..5)
}

/// Drains a page, checking that it ends and that a document error is the last item.
fn drain_page(bytes: &[u8]) {
    let Ok(page) = PageReader::new(bytes) else {
        return;
    };
    let mut n = 0usize;
    let mut failed = false;
    for item in page {
        assert!(!failed, "an item after a document error");
        failed = item.is_err();
        n += 1;
        assert!(n <= bytes.len(), "the page reader does not end");
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = parse_granule(&bytes, "G1-LPCLOUD");
        drain_page(&bytes);
    }

    #[test]
    fn xml_soup_never_panics(soup in "(<|>|/|Granule|GranuleUR|GPolygon|Point|PointLatitude|results|result|hits|&amp;|&#x41;|&|;|\"|=| |HLS\\.S30\\.x|1\\.5|Value|Name|CLOUD_COVERAGE){0,80}") {
        let _ = parse_granule(soup.as_bytes(), "G1-LPCLOUD");
        drain_page(soup.as_bytes());
    }

    #[test]
    fn mutated_records_never_panic(which in any::<bool>(), m in mutations()) {
        let real = if which { S30_XML } else { L30_XML };
        let bytes = mutate(real.as_bytes().to_vec(), &m);
        match parse_granule(&bytes, "G1-LPCLOUD") {
            Ok((meta, _)) => {
                prop_assert!(meta.polygons.iter().all(|r| r.len() >= 3));
                prop_assert!(!meta.granule_ur.is_empty());
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn mutated_pages_never_panic(m in mutations()) {
        let page = render_page(2, 5, &[s30_meta(), l30_meta()]);
        drain_page(&mutate(page.into_bytes(), &m));
    }
}
