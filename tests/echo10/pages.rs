//! CMR echo10 results pages: render, read back one record at a time.

use super::*;
use hls_flow::source::echo10::{Echo10Error, PageReader, PageRecord};
use hls_flow_emulator::echo10::render_page;

/// The items of a page, which must be a well-formed document.
fn read_all(page: &str) -> (Option<u64>, Vec<PageRecord>) {
    let reader = PageReader::new(page.as_bytes()).unwrap();
    let hits = reader.hits();
    let records = reader.collect::<Result<Vec<_>, _>>().unwrap();
    (hits, records)
}

#[test]
fn page_renders_as_cmr_does() {
    let page = render_page(3, 17, &[s30_meta()]);
    assert!(page.starts_with(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><results><hits>3</hits><took>17</took>\
         <result concept-id=\"G2153166491-LPCLOUD\" collection-concept-id=\"C2021957295-LPCLOUD\" \
         revision-id=\"1\" format=\"application/echo10+xml\"><Granule>\n  <GranuleUR>"
    ));
    assert!(page.ends_with("</Granule></result></results>"));
}

#[test]
fn page_round_trips() {
    let mut third = s30_meta();
    third.granule_ur = "HLS.S30.T35VLJ.2021173T100601.v2.0".into();
    third.concept_id = "G3000000003-LPCLOUD".into();
    third.cloud_cover = None;
    let metas = [s30_meta(), l30_meta(), third];
    let page = render_page(4321, 12, &metas);
    let reader = PageReader::new(page.as_bytes()).unwrap();
    assert_eq!(reader.hits(), Some(4321));
    assert_eq!(reader.took(), Some(12));
    let records: Vec<PageRecord> = reader.map(Result::unwrap).collect();
    assert_eq!(records.len(), 3);
    for (record, meta) in records.iter().zip(&metas) {
        assert_eq!(record.concept_id, meta.concept_id);
        let (back, missing) = record.record.as_ref().unwrap();
        assert_eq!(back, meta);
        assert_eq!(missing, &expected_missing(meta));
    }
}

#[test]
fn empty_page() {
    let (hits, records) = read_all(&render_page(0, 3, &[]));
    assert_eq!(hits, Some(0));
    assert!(records.is_empty());
}

#[test]
fn one_broken_record_fails_only_itself() {
    let page = render_page(3, 9, &[s30_meta(), l30_meta(), s30_meta()]);
    // Break the L30 record: it loses its GranuleUR, and its geometry its points.
    let page = page.replacen(
        "<GranuleUR>HLS.L30.T19LBJ.2020239T144556.v2.0</GranuleUR>",
        "",
        1,
    );
    let (hits, records) = read_all(&page);
    assert_eq!(hits, Some(3));
    assert_eq!(records.len(), 3);
    assert!(records[0].record.is_ok());
    assert_eq!(records[1].concept_id, L30_CONCEPT);
    assert!(
        matches!(
            records[1].record,
            Err(Echo10Error::Missing {
                field: "GranuleUR",
                ..
            })
        ),
        "{:?}",
        records[1].record
    );
    assert_eq!(records[2].record.as_ref().unwrap().0, s30_meta());

    let bad_point = render_page(2, 9, &[l30_meta(), s30_meta()]).replacen(
        "<PointLatitude>-10.2986663<",
        "<PointLatitude>south<",
        1,
    );
    let (_, records) = read_all(&bad_point);
    let err = records[0].record.as_ref().unwrap_err();
    assert!(
        matches!(
            err,
            Echo10Error::Invalid {
                field: "PointLatitude",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.granule(), Some("HLS.L30.T19LBJ.2020239T144556.v2.0"));
    assert_eq!(records[1].record.as_ref().unwrap().0, s30_meta());
}

#[test]
fn result_attributes_are_checked() {
    let page = render_page(2, 1, &[s30_meta(), l30_meta()]);
    let no_id = page.replacen(&format!("concept-id=\"{S30_CONCEPT}\""), "", 1);
    let (_, records) = read_all(&no_id);
    assert_eq!(records[0].concept_id, "");
    assert!(matches!(
        records[0].record,
        Err(Echo10Error::Missing {
            field: "concept-id",
            ..
        })
    ));
    assert!(records[1].record.is_ok());

    let swapped = page.replacen(
        Collection::Hlss30.concept_id(),
        Collection::Hlsl30.concept_id(),
        1,
    );
    let (_, records) = read_all(&swapped);
    assert!(matches!(
        records[0].record,
        Err(Echo10Error::CollectionMismatch {
            field: "collection-concept-id",
            ..
        })
    ));
    assert!(records[1].record.is_ok());

    let empty = page.replacen(
        "</result>",
        "</result><result concept-id=\"G9-LPCLOUD\"></result>",
        1,
    );
    let (_, records) = read_all(&empty);
    assert_eq!(records.len(), 3);
    assert_eq!(records[1].concept_id, "G9-LPCLOUD");
    assert!(matches!(
        records[1].record,
        Err(Echo10Error::Missing {
            field: "Granule",
            ..
        })
    ));
}

#[test]
fn unknown_page_elements_are_skipped() {
    let page = render_page(1, 1, &[s30_meta()])
        .replacen(
            "<took>",
            "<facets><facet name=\"x\"><value/></facet></facets><took>",
            1,
        )
        .replacen("<Granule>", "<extra>x</extra><Granule>", 1)
        .replacen("</results>", "<!-- end --></results>\n", 1);
    let (hits, records) = read_all(&page);
    assert_eq!(hits, Some(1));
    assert_eq!(records[0].record.as_ref().unwrap().0, s30_meta());
}

#[test]
fn broken_documents_are_errors() {
    let page = render_page(2, 1, &[s30_meta(), l30_meta()]);
    // Truncated in the second record: the first is read, then the document fails.
    let cut = &page[..page.rfind("<Spatial>").unwrap()];
    let items: Vec<_> = PageReader::new(cut.as_bytes()).unwrap().collect();
    assert_eq!(items.len(), 2);
    assert!(items[0].as_ref().unwrap().record.is_ok());
    assert!(matches!(items[1], Err(Echo10Error::Truncated { .. })));

    // Malformed XML inside a record breaks the document.
    let bad = page.replacen("</Temporal>", "</Temporl>", 1);
    let items: Vec<_> = PageReader::new(bad.as_bytes()).unwrap().collect();
    assert_eq!(items.len(), 1);
    assert!(matches!(items[0], Err(Echo10Error::Xml { .. })));

    for (what, doc) in [
        ("empty", String::new()),
        ("other root", "<feed></feed>".to_string()),
        (
            "bad hits",
            page.replacen("<hits>2</hits>", "<hits>two</hits>", 1),
        ),
        ("no end", page.replacen("</results>", "", 1)),
    ] {
        let err = PageReader::new(doc.as_bytes()).and_then(|p| p.collect::<Result<Vec<_>, _>>());
        assert!(err.is_err(), "{what}");
    }
    let trailing = page.replacen("</results>", "</results><results/>", 1);
    let items: Vec<_> = PageReader::new(trailing.as_bytes()).unwrap().collect();
    assert!(items.last().unwrap().is_err());
}

#[test]
fn cmr_errors_are_reported() {
    let doc = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><errors><error>Parameter [foo] was not recognized.</error><error>Second &amp; last.</error></errors>";
    let Err(err) = PageReader::new(doc.as_bytes()) else {
        panic!("expected an error")
    };
    assert!(
        matches!(&err, Echo10Error::Cmr { message } if message == "Parameter [foo] was not recognized.; Second & last."),
        "{err}"
    );
}

#[test]
fn reads_from_a_buffered_stream() {
    let page = render_page(2, 1, &[s30_meta(), l30_meta()]);
    let stream = std::io::BufReader::with_capacity(7, page.as_bytes());
    let metas: Vec<GranuleMeta> = PageReader::new(stream)
        .unwrap()
        .map(|r| r.unwrap().record.unwrap().0)
        .collect();
    assert_eq!(metas, [s30_meta(), l30_meta()]);
}

proptest! {
    #[test]
    fn arbitrary_pages_round_trip(metas in proptest::collection::vec(arb_meta(), 0..5), hits in any::<u64>()) {
        let page = render_page(hits, 3, &metas);
        let reader = PageReader::new(page.as_bytes()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(reader.hits(), Some(hits));
        let mut n = 0;
        for (item, meta) in reader.zip(&metas) {
            let record = item.map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&record.concept_id, &meta.concept_id);
            let (back, missing) = record.record.map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&back, meta);
            prop_assert_eq!(missing, expected_missing(meta));
            n += 1;
        }
        prop_assert_eq!(n, metas.len());
    }
}
