//! The emulator as a changing archive, over HTTP: change sets by `PUT /_emulator/changes`,
//! `updated_since` / `revision_date[]` searches, `deleted-granules.json`, and the items and
//! ECHO10 records of revised and deleted granules.

use chrono::{DateTime, NaiveDate, Utc};
use hls_flow::collection::Collection;
use hls_flow_emulator::{
    ChangeReport, ChangeSet, DataSource, Emulator, EmulatorConfig, Faults, Late, Pick, Revise,
    SyntheticConfig,
};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::num::NonZeroU64;

const L30: &str = "C2021957657-LPCLOUD";
const S30: &str = "C2021957295-LPCLOUD";

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

async fn may_2024() -> Emulator {
    let config = EmulatorConfig {
        source: DataSource::Synthetic(SyntheticConfig {
            start: day(2024, 5, 1),
            end: day(2024, 5, 31),
            granules_per_day: 30,
            seed: 11,
        }),
        faults: Faults::default(),
    };
    Emulator::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

/// Every granule id a JSON search finds (paging with `cmr-search-after`), and its hits.
async fn search_ids(client: &reqwest::Client, url: &str) -> (Vec<String>, Vec<Value>) {
    let mut after: Option<String> = None;
    let (mut ids, mut entries) = (Vec::new(), Vec::new());
    loop {
        let mut req = client.get(url);
        if let Some(a) = &after {
            req = req.header("cmr-search-after", a);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200, "{url}");
        after = resp
            .headers()
            .get("cmr-search-after")
            .map(|v| v.to_str().unwrap().to_string());
        let body: Value = resp.json().await.unwrap();
        let page = body["feed"]["entry"].as_array().unwrap().clone();
        if page.is_empty() {
            return (ids, entries);
        }
        ids.extend(
            page.iter()
                .map(|e| e["title"].as_str().unwrap().to_string()),
        );
        entries.extend(page);
    }
}

fn truth(emu: &Emulator, c: Collection, from: NaiveDate, to: NaiveDate) -> BTreeSet<String> {
    from.iter_days()
        .take_while(|d| *d <= to)
        .flat_map(|d| emu.granules(c, d))
        .map(|g| g.granule_ur)
        .collect()
}

#[tokio::test]
async fn a_change_set_over_http_moves_the_archive_forward() {
    let emu = may_2024().await;
    let base = emu.base_url();
    let client = reqwest::Client::new();
    let month = format!(
        "{base}/search/granules.json?collection_concept_id[]={L30}&temporal[]=2024-05-01T00:00:00Z,2024-05-31T23:59:59.999Z&page_size=50"
    );
    let (before, _) = search_ids(&client, &month).await;
    let l30 = |d| emu.granules(Collection::Hlsl30, d);
    let revised_twice = l30(day(2024, 5, 7))[2].granule_ur.clone();
    let deleted = l30(day(2024, 5, 8))[0].granule_ur.clone();
    let body = json!({
        "now": "2024-07-01T12:00:00Z",
        "seed": 3,
        "late": [
            {"collection": "HLSL30", "day": "2024-05-01", "count": 1},
            {"collection": "HLSL30", "day": "2024-05-31", "times": ["2024-05-31T23:59:59Z"]}
        ],
        "revise": {"granules": [revised_twice, revised_twice], "random": 4, "collections": ["HLSL30"]},
        "delete": {"granules": [deleted], "random": 2, "collections": ["HLSL30"], "from": "2024-05-20"}
    });
    let resp = client
        .put(format!("{base}/_emulator/changes"))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let report: ChangeReport = resp.json().await.unwrap();
    assert_eq!(report.now, at("2024-07-01T12:00:00Z"));
    assert_eq!(
        (
            report.added.len(),
            report.revised.len(),
            report.deleted.len()
        ),
        (2, 6, 3)
    );
    assert_eq!(report.revised[1].granule_ur, revised_twice);
    assert_eq!(report.revised[1].revision_id, 3);
    assert_eq!(emu.revision_id(&revised_twice), Some(3));
    assert_eq!(emu.now(), report.now);

    // The search finds the archive as it is now, and it is what granules() says.
    let (after, _) = search_ids(&client, &month).await;
    let after_set: BTreeSet<String> = after.iter().cloned().collect();
    assert_eq!(after.len(), after_set.len(), "each granule once");
    assert_eq!(
        after_set,
        truth(&emu, Collection::Hlsl30, day(2024, 5, 1), day(2024, 5, 31))
    );
    let gone: BTreeSet<String> = report
        .deleted
        .iter()
        .map(|c| c.granule_ur.clone())
        .collect();
    // (A late granule may have been drawn for deletion too.)
    let added: BTreeSet<String> = report
        .added
        .iter()
        .map(|c| c.granule_ur.clone())
        .filter(|id| !gone.contains(id))
        .collect();
    let expected: BTreeSet<String> = before
        .iter()
        .filter(|id| !gone.contains(*id))
        .cloned()
        .chain(added.iter().cloned())
        .collect();
    assert_eq!(after_set, expected);

    // updated_since finds exactly the new and revised granules, with their new `updated`.
    let since = format!("{month}&updated_since=2024-07-01T12:00:00Z");
    let (changed, entries) = search_ids(&client, &since).await;
    let revised: BTreeSet<String> = report
        .revised
        .iter()
        .map(|c| c.granule_ur.clone())
        .filter(|id| !gone.contains(id))
        .collect();
    let changed: BTreeSet<String> = changed.into_iter().collect();
    assert_eq!(changed, revised.union(&added).cloned().collect());
    assert!(
        entries
            .iter()
            .all(|e| e["updated"] == "2024-07-01T12:00:00.000Z")
    );
    // revision_date[] ranges: before the change set, nothing of it.
    let old = format!("{month}&revision_date[]=2024-05-01T00:00:00Z,2024-07-01T11:59:59.999Z");
    let (untouched, _) = search_ids(&client, &old).await;
    assert!(untouched.iter().all(|id| !changed.contains(id)));
    assert_eq!(untouched.len() + changed.len(), after.len());

    // A deleted granule's item is 404; a revised one's item carries its new values.
    let item = |id: &str| format!("{base}/lp-prod-public/HLSL30.020/{id}/{id}_stac.json");
    assert_eq!(
        client.get(item(&deleted)).send().await.unwrap().status(),
        404
    );
    let revised_meta = emu
        .granules(Collection::Hlsl30, day(2024, 5, 7))
        .into_iter()
        .find(|g| g.granule_ur == revised_twice)
        .unwrap();
    let served: Value = client
        .get(item(&revised_twice))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        served["properties"]["eo:cloud_cover"].as_f64(),
        revised_meta.cloud_cover
    );
    // The footprint changed: the item's bbox is the new one (6 decimals).
    let west = revised_meta.bbox().unwrap()[0];
    assert!((served["bbox"][0].as_f64().unwrap() - west).abs() <= 1e-6);

    // ECHO10: the revision id and LastUpdate.
    let xml = client
        .get(format!(
            "{base}/search/granules.echo10?collection_concept_id[]={L30}&temporal[]=2024-05-07T00:00:00Z,2024-05-07T23:59:59.999Z&page_size=2000"
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let record = xml
        .split("<result ")
        .find(|r| r.contains(&format!("<GranuleUR>{revised_twice}</GranuleUR>")))
        .unwrap();
    assert!(record.contains(r#"revision-id="3""#), "{record}");
    assert!(
        record.contains("<LastUpdate>2024-07-01T12:00:00.000000Z</LastUpdate>"),
        "{record}"
    );
    assert!(xml.contains(r#"revision-id="1""#));

    // deleted-granules.json lists the three, once each.
    let resp = client
        .get(format!(
            "{base}/search/deleted-granules.json?revision_date=2024-07-01T00:00:00Z&provider=LPCLOUD&parent_collection_id={L30}"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cmr-hits"], "3");
    let list: Vec<Value> = resp.json().await.unwrap();
    let listed: BTreeSet<String> = list
        .iter()
        .map(|d| d["granule-ur"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, gone);
    let concepts: BTreeSet<&str> = report
        .deleted
        .iter()
        .map(|c| c.concept_id.as_str())
        .collect();
    assert!(
        list.iter()
            .all(|d| concepts.contains(d["concept-id"].as_str().unwrap())
                && d["provider-id"] == "LPCLOUD"
                && d["parent-collection-id"] == L30)
    );
    let dates: Vec<&str> = list
        .iter()
        .map(|d| d["revision-date"].as_str().unwrap())
        .collect();
    assert_eq!(
        dates,
        [
            "2024-07-01T12:00:00.000Z",
            "2024-07-01T12:00:00+0000",
            "2024-07-01T12:00:00.000Z"
        ]
    );
    // Nothing deleted in HLSS30, nor after the change set.
    for query in [
        format!("revision_date=2024-07-01T00:00:00Z&parent_collection_id={S30}"),
        "revision_date=2024-07-01T12:00:00.001Z".to_string(),
        "revision_date=2024-07-01T00:00:00Z&provider=POCLOUD".to_string(),
    ] {
        let list: Vec<Value> = client
            .get(format!("{base}/search/deleted-granules.json?{query}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(list.is_empty(), "{query}");
    }
    assert_eq!(emu.counts().deleted_lists, 4);
    let clock: Value = client
        .get(format!("{base}/_emulator/changes"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(clock["now"], "2024-07-01T12:00:00Z");
    emu.shutdown().await;
}

#[tokio::test]
async fn deleted_granules_refuses_what_cmr_refuses() {
    let emu = may_2024().await;
    let base = emu.base_url();
    let client = reqwest::Client::new();
    let set = ChangeSet {
        now: Some(at("2026-01-01T00:00:00Z")),
        ..ChangeSet::default()
    };
    emu.apply_changes(&set).unwrap();
    for (query, error) in [
        (
            "revision_date=2024-12-31T23:59:59Z",
            "Revision date must be within one year of today.",
        ),
        (
            "provider=LPCLOUD",
            "One revision date is required for deleted granules search.",
        ),
        (
            "revision_date=2025-12-01T00:00:00Z&page_size=10",
            "Parameter [page_size] was not recognized.",
        ),
    ] {
        let resp = client
            .get(format!("{base}/search/deleted-granules.json?{query}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{query}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body, json!({ "errors": [error] }), "{query}");
    }
    let resp = client
        .get(format!(
            "{base}/search/deleted-granules.xml?revision_date=2025-12-01T00:00:00Z"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    // A year back from the archive's clock is accepted.
    let ok = format!("{base}/search/deleted-granules.json?revision_date=2025-01-01T00:00:00Z");
    assert_eq!(client.get(&ok).send().await.unwrap().status(), 200);
    // Faults: every n-th deleted-granules request fails.
    emu.set_faults(Faults {
        fail_every_nth_deleted: NonZeroU64::new(1),
        ..Faults::default()
    });
    assert_eq!(client.get(&ok).send().await.unwrap().status(), 503);
    emu.set_faults(Faults::default());
    assert_eq!(client.get(&ok).send().await.unwrap().status(), 200);
    assert_eq!(emu.counts().deleted_lists, 2);
    emu.shutdown().await;
}

#[tokio::test]
async fn a_bad_change_set_is_refused_whole() {
    let emu = may_2024().await;
    let base = emu.base_url();
    let client = reqwest::Client::new();
    let d = day(2024, 5, 12);
    let before = emu.granules(Collection::Hlss30, d);
    let put = |body: String| {
        client
            .put(format!("{base}/_emulator/changes"))
            .body(body)
            .send()
    };
    for (body, why) in [
        (
            json!({"late": [{"collection": "HLSS30", "day": "2024-05-12", "count": 2}],
                   "delete": {"granules": ["HLS.S30.T10SEG.2024133T184512.v2.0"]}}),
            "is not in the archive",
        ),
        (json!({"revise": {"randm": 2}}), "unknown field"),
        (
            json!({"late": [{"collection": "HLSX30", "day": "2024-05-12"}]}),
            "unknown collection",
        ),
        (
            json!({"late": [{"collection": "HLSS30", "day": "2024-06-12", "count": 1}]}),
            "outside the days",
        ),
    ] {
        let resp = put(body.to_string()).await.unwrap();
        assert_eq!(resp.status(), 400, "{body}");
        let err: Value = resp.json().await.unwrap();
        assert!(err["errors"][0].as_str().unwrap().contains(why), "{err}");
    }
    assert_eq!(emu.granules(Collection::Hlss30, d), before);
    // In-process, the same change set without the unknown granule goes through.
    let report = emu
        .apply_changes(&ChangeSet {
            late: vec![Late {
                collection: Collection::Hlss30,
                day: d,
                count: 2,
                times: vec![],
            }],
            revise: Revise {
                granules: vec![before[0].granule_ur.clone()],
                ..Revise::default()
            },
            delete: Pick {
                granules: vec![before[1].granule_ur.clone()],
                ..Pick::default()
            },
            ..ChangeSet::default()
        })
        .unwrap();
    let now = emu.granules(Collection::Hlss30, d);
    assert_eq!(now.len(), before.len() + 1);
    assert!(
        report
            .added
            .iter()
            .all(|a| now.iter().any(|g| g.granule_ur == a.granule_ur))
    );
    assert!(!now.iter().any(|g| g.granule_ur == before[1].granule_ur));
    // Stamped with the system's clock (no `now` given).
    assert!((report.now - Utc::now()).num_seconds().abs() < 60);
    emu.shutdown().await;
}

#[tokio::test]
async fn recorded_granules_can_be_revised_too() {
    let emu = Emulator::start(EmulatorConfig::default(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let base = emu.base_url();
    let client = reqwest::Client::new();
    let d = day(2025, 10, 3);
    let id = emu.granules(Collection::Hlsl30, d)[0].granule_ur.clone();
    let report = emu
        .apply_changes(&ChangeSet {
            revise: Revise {
                granules: vec![id.clone()],
                ..Revise::default()
            },
            ..ChangeSet::default()
        })
        .unwrap();
    let since = report.now.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    let (ids, entries) = search_ids(
        &client,
        &format!(
            "{base}/search/granules.json?collection_concept_id[]={L30}&temporal[]=2025-10-01T00:00:00Z,2025-10-10T00:00:00Z&updated_since={since}"
        ),
    )
    .await;
    assert_eq!(ids, vec![id.clone()]);
    assert_eq!(entries[0]["updated"], since);
    // Its _stac.json link still points at the emulator, and the item is the new one.
    let href = entries[0]["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["href"].as_str().unwrap())
        .find(|h| h.starts_with(&base) && h.ends_with("_stac.json"))
        .unwrap()
        .to_string();
    let item: Value = client.get(href).send().await.unwrap().json().await.unwrap();
    let meta = emu
        .granules(Collection::Hlsl30, d)
        .into_iter()
        .find(|g| g.granule_ur == id)
        .unwrap();
    assert_eq!(
        item["properties"]["eo:cloud_cover"].as_f64(),
        meta.cloud_cover
    );
    assert_eq!(
        entries[0]["cloud_cover"]
            .as_str()
            .map(|s| s.parse::<f64>().unwrap()),
        meta.cloud_cover
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn item_latency_delays_every_item_answer_and_changes_nothing_else() {
    let emu = may_2024().await;
    let client = reqwest::Client::new();
    let url = format!(
        "{}/search/granules.json?collection_concept_id[]={L30}&temporal[]=2024-05-02T00:00:00Z,2024-05-02T23:59:59.999Z&page_size=5",
        emu.base_url()
    );
    let (_, entries) = search_ids(&client, &url).await;
    let item_url = entries[0]["links"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["href"].as_str())
        .find(|h| h.ends_with("_stac.json") && h.starts_with(&emu.base_url()))
        .expect("an item link on the emulator")
        .to_string();
    let fetch = || async {
        let t = std::time::Instant::now();
        let resp = client.get(&item_url).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        (t.elapsed(), resp.bytes().await.unwrap())
    };
    let (_, plain) = fetch().await;
    emu.set_faults(Faults {
        item_latency_ms: 300,
        ..Faults::default()
    });
    let (took, late) = fetch().await;
    assert!(took >= std::time::Duration::from_millis(300), "{took:?}");
    assert_eq!(late, plain, "the same item, only later");
    assert_eq!(emu.counts().item_fetches, 2);
    assert!(emu.fault_counts().is_empty(), "a latency is not a fault");
}
