//! Items of a new shape against the emulator: a day whose items lack optional fields and
//! assets goes through the fast writer; a day with an item the fast writer cannot hold (an
//! unknown property) is written by the generic writer from the bytes already fetched. In
//! both, every item is fetched once and every CMR page listed once, and the file holds the
//! items the emulator served.

use crate::harvest::{day, synthetic};
use chrono::{DateTime, NaiveDate, Utc};
use hls_flow::Collection;
use hls_flow::api::Endpoints;
use hls_flow::progress::UnitBar;
use hls_flow::write::geoparquet::read_items;
use hls_flow::write::harvest::{HarvestSettings, WindowReport};
use hls_flow::write::output::Output;
use hls_flow_emulator::{Emulator, RequestCounts};
use object_store::path::Path;
use serde_json::Value;
use std::collections::BTreeMap;

const DAY: (i32, u32, u32) = (2024, 7, 2);

fn the_day() -> NaiveDate {
    day(DAY.0, DAY.1, DAY.2)
}

/// Harvests the HLSS30 day with small CMR pages; the items read back by id, the report,
/// and the requests it took. The scratch folder is left empty.
async fn harvest(emu: &Emulator) -> (BTreeMap<String, Value>, WindowReport, RequestCounts) {
    let mut endpoints = Endpoints::with_cmr(&emu.base_url());
    endpoints.page_size = 7;
    let scratch = tempfile::tempdir().unwrap();
    let harvester = endpoints
        .harvester(HarvestSettings {
            tmp_dir: Some(scratch.path().to_path_buf()),
            max_concurrent_fetches: 4,
            ..HarvestSettings::default()
        })
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let output = Output::parse(dir.path().to_str().unwrap()).unwrap();
    let dest = Path::from("day.parquet");
    let before = emu.counts();
    let report = harvester
        .harvest_day(
            Collection::Hlss30,
            the_day(),
            &output,
            &dest,
            &UnitBar::hidden(),
        )
        .await
        .unwrap();
    let after = emu.counts();
    assert_eq!(
        std::fs::read_dir(scratch.path()).unwrap().count(),
        0,
        "nothing left in the scratch folder"
    );
    let items = read_items(&output, &dest)
        .await
        .unwrap()
        .into_iter()
        .map(|i| (i.id.clone(), serde_json::to_value(i).unwrap()))
        .collect();
    let used = RequestCounts {
        search_pages: after.search_pages - before.search_pages,
        echo10_pages: after.echo10_pages - before.echo10_pages,
        item_fetches: after.item_fetches - before.item_fetches,
        deleted_lists: after.deleted_lists - before.deleted_lists,
        not_found: after.not_found - before.not_found,
        bad_requests: after.bad_requests - before.bad_requests,
        faults_injected: after.faults_injected - before.faults_injected,
        total: after.total - before.total,
    };
    (items, report, used)
}

/// What the emulator serves for the day's granules (after `edit` for the edited ones), as
/// the file reads it back: the collection set, `stac_version` as the writers store it, and
/// datetimes to the millisecond.
fn served(emu: &Emulator, edits: &BTreeMap<String, fn(&mut Value)>) -> BTreeMap<String, Value> {
    emu.granules(Collection::Hlss30, the_day())
        .iter()
        .map(|meta| {
            let mut v = hls_flow::source::hls::to_stac_item(meta);
            if let Some(edit) = edits.get(&meta.granule_ur) {
                edit(&mut v);
            }
            v["collection"] = Value::from("HLSS30_2.0");
            (meta.granule_ur.clone(), normal(v))
        })
        .collect()
}

/// An item's JSON with what the writers change on purpose (`stac_version`, sub-millisecond
/// digits of datetimes) made the same.
fn normal(mut v: Value) -> Value {
    v["stac_version"] = Value::from("any");
    if let Some(props) = v["properties"].as_object_mut() {
        for key in ["datetime", "start_datetime", "end_datetime"] {
            if let Some(t) = props.get(key).and_then(Value::as_str) {
                let t: DateTime<Utc> = t.parse().unwrap();
                props.insert(key.into(), Value::from(t.timestamp_millis()));
            }
        }
    }
    v
}

/// Harvests the day twice on one emulator, before and after `edits`: the second harvest
/// takes exactly the requests of the first (each CMR page once, each item once), and the
/// file holds what the emulator served.
async fn edited_day_is_written_with_one_fetch_each(edits: BTreeMap<String, fn(&mut Value)>) {
    let emu = synthetic(the_day(), the_day(), 60).await;
    let (_, plain, plain_used) = harvest(&emu).await;
    assert!(plain.listed > 7, "several pages: {plain:?}");
    assert_eq!(plain_used.item_fetches, plain.listed);
    for (id, edit) in &edits {
        emu.edit_item(id, *edit);
    }
    let (items, report, used) = harvest(&emu).await;
    assert_eq!(
        used, plain_used,
        "the edited day took the requests of the plain one"
    );
    assert_eq!(used.item_fetches, report.listed, "each item fetched once");
    assert_eq!(
        (report.listed, report.written),
        (plain.listed, plain.listed)
    );
    let items: BTreeMap<String, Value> = items.into_iter().map(|(k, v)| (k, normal(v))).collect();
    let expected = served(&emu, &edits);
    assert_eq!(items.len(), expected.len());
    for (id, want) in &expected {
        assert_eq!(items.get(id), Some(want), "item {id}");
    }
}

/// The ids of the day's first `n` HLSS30 granules.
async fn first_ids(n: usize) -> Vec<String> {
    let emu = synthetic(the_day(), the_day(), 60).await;
    emu.granules(Collection::Hlss30, the_day())
        .into_iter()
        .take(n)
        .map(|g| g.granule_ur)
        .collect()
}

#[tokio::test]
async fn a_day_with_an_unknown_property_is_written_from_the_bytes_fetched_once() {
    let ids = first_ids(usize::MAX).await;
    let last = ids.last().unwrap().clone();
    let edits: BTreeMap<String, fn(&mut Value)> = [(
        last,
        (|v: &mut Value| {
            v["properties"]["hls:new_property"] = Value::from(7);
        }) as fn(&mut Value),
    )]
    .into();
    edited_day_is_written_with_one_fetch_each(edits).await;
}

#[tokio::test]
async fn items_without_thumbnail_or_optional_properties_go_through_the_fast_writer() {
    let ids = first_ids(usize::MAX).await;
    let no_thumbnail: fn(&mut Value) = |v| {
        v["assets"].as_object_mut().unwrap().remove("thumbnail");
    };
    let no_optional: fn(&mut Value) = |v| {
        let props = v["properties"].as_object_mut().unwrap();
        props.remove("eo:cloud_cover");
        props.remove("view:azimuth");
        props.remove("view:sun_azimuth");
    };
    let mut edits: BTreeMap<String, fn(&mut Value)> = BTreeMap::new();
    for (i, id) in ids.iter().enumerate() {
        // Most items lack the thumbnail (as after LP DAAC stopped publishing it), one
        // lacks optional properties too.
        if i % 4 != 0 {
            edits.insert(id.clone(), no_thumbnail);
        }
    }
    edits.insert(ids[0].clone(), no_optional);
    edited_day_is_written_with_one_fetch_each(edits).await;
}
