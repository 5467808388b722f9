//! The CMR + LP DAAC emulator, exercised over HTTP as a client would.

use chrono::{DateTime, NaiveDate, Utc};
use hls_flow::Collection;
use hls_flow::source::hls::{GranuleMeta, to_stac_item};
use hls_flow_emulator::{
    DataSource, Emulator, EmulatorConfig, Faults, RequestCounts, SyntheticConfig,
};
use serde_json::Value;
use std::path::PathBuf;

const L30: &str = "C2021957657-LPCLOUD";
const S30: &str = "C2021957295-LPCLOUD";

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn day(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

async fn replay() -> Emulator {
    Emulator::start(
        EmulatorConfig {
            source: DataSource::Replay,
            faults: Faults::default(),
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap()
}

async fn synthetic(granules_per_day: u32, seed: u64) -> Emulator {
    Emulator::start(
        EmulatorConfig {
            source: DataSource::Synthetic(SyntheticConfig {
                start: day("2024-05-01"),
                end: day("2024-05-05"),
                granules_per_day,
                seed,
            }),
            faults: Faults::default(),
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap()
}

/// One search page: status, CMR-Hits, CMR-Search-After, body.
struct Page {
    status: u16,
    hits: Option<u64>,
    after: Option<String>,
    body: Value,
}

impl Page {
    fn entries(&self) -> &Vec<Value> {
        self.body["feed"]["entry"].as_array().unwrap()
    }

    fn ids(&self) -> Vec<String> {
        self.entries()
            .iter()
            .map(|e| e["title"].as_str().unwrap().to_string())
            .collect()
    }
}

async fn get_page(client: &reqwest::Client, url: &str, after: Option<&str>) -> Page {
    let mut req = client.get(url);
    if let Some(a) = after {
        req = req.header("cmr-search-after", a);
    }
    let resp = req.send().await.unwrap();
    let h = |name: &str| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    let hits = h("cmr-hits").map(|v| v.parse().unwrap());
    let after = h("cmr-search-after");
    let status = resp.status().as_u16();
    let body = resp.json().await.unwrap();
    Page {
        status,
        hits,
        after,
        body,
    }
}

/// Every page of a query, following CMR-Search-After until an empty page.
async fn all_pages(client: &reqwest::Client, url: &str) -> Vec<Page> {
    let mut pages: Vec<Page> = Vec::new();
    loop {
        let after = pages.last().and_then(|p| p.after.clone());
        if !pages.is_empty() && after.is_none() {
            return pages;
        }
        let page = get_page(client, url, after.as_deref()).await;
        assert_eq!(page.status, 200, "{}", page.body);
        pages.push(page);
        assert!(pages.len() < 1000, "paging does not end");
    }
}

fn search_url(emu: &Emulator, query: &str) -> String {
    format!("{}/search/granules.json?{query}", emu.base_url())
}

/// Granules of both `days` of `c` that intersect `[s, t]`, in CMR order.
fn expected(emu: &Emulator, c: Collection, days: &[&str], s: &str, t: &str) -> Vec<GranuleMeta> {
    let s: DateTime<Utc> = s.parse().unwrap();
    let t: DateTime<Utc> = t.parse().unwrap();
    days.iter()
        .flat_map(|d| emu.granules(c, day(d)))
        .filter(|g| g.begin <= t && g.end >= s)
        .collect()
}

fn https_stac_link(entry: &Value) -> String {
    entry["links"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["href"].as_str())
        .find(|h| h.starts_with("http") && h.ends_with("_stac.json"))
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn emulator_replays_every_recorded_request() {
    let emu = replay().await;
    let client = reqwest::Client::new();
    let mut checked = 0;
    for f in std::fs::read_dir(fixtures().join("cmr")).unwrap() {
        let path = f.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let Some(stem) = name.strip_suffix(".meta.json") else {
            continue;
        };
        let meta: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let recorded: Value = serde_json::from_str(
            &std::fs::read_to_string(path.with_file_name(format!("{stem}.json"))).unwrap(),
        )
        .unwrap();
        let uri = meta["request"]["uri"].as_str().unwrap();
        let url = uri.replace("https://cmr.earthdata.nasa.gov", &emu.base_url());
        let mut req = client.get(&url);
        for (k, vs) in meta["request"]["headers"].as_object().unwrap() {
            if ["host", "connection", "accept-encoding"].contains(&k.as_str()) {
                continue;
            }
            for v in vs.as_array().unwrap() {
                req = req.header(k.as_str(), v.as_str().unwrap());
            }
        }
        let resp = req.send().await.unwrap();
        let rec = &meta["response"];
        let rec_header = |n: &str| rec["headers"][n][0].as_str().map(str::to_string);
        let header = |n: &str| {
            resp.headers()
                .get(n)
                .map(|v| v.to_str().unwrap().to_string())
        };
        assert_eq!(
            u64::from(resp.status().as_u16()),
            rec["status"]["code"],
            "{name}"
        );
        assert_eq!(header("cmr-hits"), rec_header("CMR-Hits"), "{name}");
        assert_eq!(
            header("cmr-search-after"),
            rec_header("CMR-Search-After"),
            "{name}"
        );
        assert_eq!(header("content-type"), rec_header("Content-Type"), "{name}");
        assert!(header("cmr-took").is_some() && header("cmr-request-id").is_some());
        let body: Value = resp.json().await.unwrap();
        let ours = body["feed"]["entry"].as_array().unwrap();
        let theirs = recorded["feed"]["entry"].as_array().unwrap();
        assert_eq!(ours.len(), theirs.len(), "{name}");
        assert_eq!(body["feed"]["title"], recorded["feed"]["title"]);
        for (o, t) in ours.iter().zip(theirs) {
            let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
            assert_eq!(keys(o), keys(t));
            assert_eq!(o["id"], t["id"]);
            let mut t = t.clone();
            let id = t["title"].as_str().unwrap().to_string();
            let mut rewritten = 0;
            for l in t["links"].as_array_mut().unwrap() {
                let href = l["href"].as_str().unwrap();
                if href.starts_with("https://") && href.ends_with("_stac.json") {
                    l["href"] = Value::String(format!(
                        "{}/lp-prod-public/HLSL30.020/{id}/{id}_stac.json",
                        emu.base_url()
                    ));
                    rewritten += 1;
                }
            }
            assert_eq!(rewritten, 1);
            assert_eq!(o, &t, "{name}: {id}");
            assert_eq!(o["links"].as_array().unwrap().len(), 48);
        }
        checked += 1;
    }
    assert_eq!(checked, 5);
    emu.shutdown().await;
}

#[tokio::test]
async fn emulator_serves_replayed_items() {
    let emu = replay().await;
    let client = reqwest::Client::new();
    // The real item, byte for byte.
    let real = std::fs::read_to_string(
        fixtures().join("stac/HLS.S30.T01WEV.2024153T000609.v2.0_stac.json"),
    )
    .unwrap();
    let page = get_page(
        &client,
        &search_url(
            &emu,
            &format!(
                "collection_concept_id[]={S30}&temporal[]=2024-06-01T00:00:00Z,2024-06-01T23:59:59Z"
            ),
        ),
        None,
    )
    .await;
    assert_eq!(page.hits, Some(1));
    assert_eq!(page.ids(), vec!["HLS.S30.T01WEV.2024153T000609.v2.0"]);
    assert_eq!(page.entries()[0]["links"].as_array().unwrap().len(), 54);
    let link = https_stac_link(&page.entries()[0]);
    assert!(link.starts_with(&emu.base_url()));
    let served = client
        .get(&link)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(served, real);
    // A replayed Landsat item is the mapping of its values.
    let metas = emu.granules(Collection::Hlsl30, day("2025-10-02"));
    assert_eq!(metas.len(), 3);
    for m in &metas {
        let url = format!(
            "{}/lp-prod-public/HLSL30.020/{id}/{id}_stac.json",
            emu.base_url(),
            id = m.granule_ur
        );
        let item: Value = client.get(&url).send().await.unwrap().json().await.unwrap();
        assert_eq!(item, to_stac_item(m));
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn emulator_page_size_limits_and_default() {
    let emu = synthetic(200, 1).await;
    let client = reqwest::Client::new();
    let q = format!(
        "collection_concept_id[]={S30}&temporal[]=2024-05-02T00:00:00Z,2024-05-02T23:59:59.999Z"
    );
    for bad in ["2001", "ten", "-1"] {
        let p = get_page(
            &client,
            &search_url(&emu, &format!("{q}&page_size={bad}")),
            None,
        )
        .await;
        assert_eq!(p.status, 400, "{bad}");
        assert!(p.body["errors"][0].as_str().unwrap().contains("page_size"));
        assert_eq!(p.hits, None);
    }
    let p = get_page(
        &client,
        &search_url(&emu, &format!("{q}&page_size=2000")),
        None,
    )
    .await;
    assert_eq!(p.status, 200);
    let p = get_page(&client, &search_url(&emu, &q), None).await;
    assert_eq!(p.entries().len(), 10);
    assert!(p.hits.unwrap() > 10);
    assert!(p.after.is_some());
    let p = get_page(
        &client,
        &search_url(&emu, &format!("{q}&page_size=0")),
        None,
    )
    .await;
    assert!(p.entries().is_empty() && p.after.is_none() && p.hits.unwrap() > 10);
    // A malformed search-after header is a 400 too.
    let p = get_page(&client, &search_url(&emu, &q), Some("[\"lpcloud\",\"x\"]")).await;
    assert_eq!(p.status, 400);
    assert!(p.body["errors"].is_array());
    let p = get_page(
        &client,
        &search_url(&emu, &format!("{q}&bounding_box=1,2,3")),
        None,
    )
    .await;
    assert_eq!(p.status, 400);
    emu.shutdown().await;
}

#[tokio::test]
async fn emulator_pages_a_day_exactly_once_in_order() {
    let emu = synthetic(700, 2).await;
    let client = reqwest::Client::new();
    let (s, t) = ("2024-05-03T00:00:00Z", "2024-05-03T23:59:59.999Z");
    let url = search_url(
        &emu,
        &format!("collection_concept_id%5B%5D={S30}&temporal%5B%5D={s},{t}&page_size=100"),
    );
    let pages = all_pages(&client, &url).await;
    let want = expected(
        &emu,
        Collection::Hlss30,
        &["2024-05-02", "2024-05-03"],
        s,
        t,
    );
    // The day's own granules plus the previous day's one that ends after midnight.
    assert_eq!(
        want.len(),
        emu.granules(Collection::Hlss30, day("2024-05-03")).len() + 1
    );
    let got: Vec<String> = pages.iter().flat_map(|p| p.ids()).collect();
    let want_ids: Vec<String> = want.iter().map(|g| g.granule_ur.clone()).collect();
    assert_eq!(got, want_ids);
    assert_eq!(pages.len(), want.len().div_ceil(100) + 1);
    for p in &pages {
        assert_eq!(p.hits, Some(want.len() as u64));
    }
    let last = pages.last().unwrap();
    assert!(last.entries().is_empty() && last.after.is_none());
    // Each page's CMR-Search-After is the key of its last entry.
    let first = &pages[0];
    let e = first.entries().last().unwrap();
    let begin: DateTime<Utc> = e["time_start"].as_str().unwrap().parse().unwrap();
    let num: u64 = e["id"].as_str().unwrap()[1..11].parse().unwrap();
    assert_eq!(
        first.after.as_deref(),
        Some(format!("[\"lpcloud\",{},{num}]", begin.timestamp_millis()).as_str())
    );
    // Entries look like CMR's.
    for e in first.entries() {
        assert_eq!(e["links"].as_array().unwrap().len(), 54);
        assert_eq!(e["collection_concept_id"], S30);
        assert!(e["polygons"][0][0].as_str().unwrap().split(' ').count() >= 10);
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn emulator_temporal_ends_are_inclusive() {
    let emu = synthetic(60, 3).await;
    let client = reqwest::Client::new();
    let ids = |c: Collection, d: &str, t: &str| -> String {
        emu.granules(c, day(d))
            .into_iter()
            .find(|g| g.begin.format("%H:%M:%S%.6f").to_string() == t)
            .unwrap()
            .granule_ur
    };
    let midnight = ids(Collection::Hlsl30, "2024-05-04", "00:00:00.000000");
    let last = ids(Collection::Hlsl30, "2024-05-03", "23:59:59.950000");
    let late = ids(Collection::Hlsl30, "2024-05-03", "23:59:50.000000");
    let search = |temporal: String| {
        let url = search_url(
            &emu,
            &format!("collection_concept_id[]={L30}&temporal[]={temporal}&page_size=2000"),
        );
        let client = client.clone();
        async move {
            all_pages(&client, &url)
                .await
                .iter()
                .flat_map(|p| p.ids())
                .collect::<Vec<_>>()
        }
    };
    let got = search("2024-05-03T00:00:00Z,2024-05-04T00:00:00Z".into()).await;
    assert!(got.contains(&midnight) && got.contains(&last) && got.contains(&late));
    let got = search("2024-05-03T00:00:00Z,2024-05-03T23:59:59Z".into()).await;
    assert!(!got.contains(&midnight) && !got.contains(&last) && got.contains(&late));
    let got = search("2024-05-03T12:00:00Z,2024-05-03T23:59:59.950Z".into()).await;
    assert!(got.contains(&last));
    // Starting at midnight still finds the granule that began before and ends after it.
    let got = search("2024-05-04T00:00:00Z,".into()).await;
    assert!(got.contains(&late) && got.contains(&midnight) && !got.contains(&last));
    assert_eq!(
        got.len(),
        expected(
            &emu,
            Collection::Hlsl30,
            &["2024-05-03", "2024-05-04", "2024-05-05"],
            "2024-05-04T00:00:00Z",
            "2100-01-01T00:00:00Z"
        )
        .len()
    );
    // Several ranges are OR-ed.
    let got = search("2024-05-01T00:00:00Z,2024-05-01T00:00:00Z&temporal[]=2024-05-04T00:00:00Z,2024-05-04T00:00:00Z".into()).await;
    assert!(got.contains(&midnight));
    assert!(got.len() >= 2);
    emu.shutdown().await;
}

#[tokio::test]
async fn emulator_filters_by_bounding_box() {
    let emu = synthetic(300, 4).await;
    let client = reqwest::Client::new();
    let d = "2024-05-02";
    let metas = emu.granules(Collection::Hlss30, day(d));
    let target = &metas[metas.len() / 2];
    let [w, s, e, n] = target.bbox().unwrap();
    let (cx, cy) = ((w + e) / 2.0, (s + n) / 2.0);
    let q = |bbox: &str| {
        search_url(
            &emu,
            &format!(
                "collection_concept_id[]={S30}&temporal[]={d}T00:00:00Z,{d}T23:59:59.999Z&bounding_box={bbox}&page_size=2000"
            ),
        )
    };
    let box_ = [cx - 0.01, cy - 0.01, cx + 0.01, cy + 0.01];
    let p = get_page(
        &client,
        &q(&format!("{},{},{},{}", box_[0], box_[1], box_[2], box_[3])),
        None,
    )
    .await;
    assert!(p.ids().contains(&target.granule_ur));
    let (s0, t0) = (format!("{d}T00:00:00Z"), format!("{d}T23:59:59.999Z"));
    let candidates = expected(&emu, Collection::Hlss30, &["2024-05-01", d], &s0, &t0);
    let want: Vec<&GranuleMeta> = candidates
        .iter()
        .filter(|g| {
            let b = g.bbox().unwrap();
            b[0] <= box_[2] && b[2] >= box_[0] && b[1] <= box_[3] && b[3] >= box_[1]
        })
        .collect();
    assert_eq!(
        p.ids(),
        want.iter()
            .map(|g| g.granule_ur.clone())
            .collect::<Vec<_>>()
    );
    assert!(p.hits.unwrap() < metas.len() as u64);
    // Open ocean: nothing.
    let p = get_page(&client, &q("-150,-40,-140,-30"), None).await;
    assert_eq!((p.status, p.hits), (200, Some(0)));
    // Crossing the antimeridian: only granules east of 170 or west of -170.
    let p = get_page(&client, &q("170,-90,-170,90"), None).await;
    for id in p.ids() {
        let g = candidates.iter().find(|m| m.granule_ur == id).unwrap();
        let b = g.bbox().unwrap();
        assert!(b[2] >= 170.0 || b[0] <= -170.0, "{id}");
    }
    let west_of: usize = candidates
        .iter()
        .filter(|g| {
            let b = g.bbox().unwrap();
            b[2] >= 170.0 || b[0] <= -170.0
        })
        .count();
    assert_eq!(p.ids().len(), west_of);
    let p = get_page(&client, &q("0,10,1,5"), None).await;
    assert_eq!(p.status, 400);
    emu.shutdown().await;
}

#[tokio::test]
async fn emulator_searches_two_collections_at_once() {
    let emu = synthetic(100, 5).await;
    let client = reqwest::Client::new();
    let (s, t) = ("2024-05-02T06:00:00Z", "2024-05-02T18:00:00Z");
    let url = search_url(
        &emu,
        &format!(
            "collection_concept_id[]={L30}&collection_concept_id[]={S30}&temporal[]={s},{t}&page_size=7"
        ),
    );
    let pages = all_pages(&client, &url).await;
    let mut want: Vec<GranuleMeta> = Collection::ALL
        .iter()
        .flat_map(|&c| expected(&emu, c, &["2024-05-01", "2024-05-02"], s, t))
        .collect();
    want.sort_by_key(|g| {
        (
            g.begin.timestamp_millis(),
            g.concept_id[1..11].parse::<u64>().unwrap(),
        )
    });
    let got: Vec<String> = pages.iter().flat_map(|p| p.ids()).collect();
    assert_eq!(
        got,
        want.iter()
            .map(|g| g.granule_ur.clone())
            .collect::<Vec<_>>()
    );
    assert!(
        got.iter().any(|id| id.starts_with("HLS.L30"))
            && got.iter().any(|id| id.starts_with("HLS.S30"))
    );
    assert_eq!(pages[0].hits, Some(want.len() as u64));
    emu.shutdown().await;
}

#[tokio::test]
async fn emulator_items_equal_the_mapping_and_the_real_shape() {
    let emu = synthetic(100, 6).await;
    let client = reqwest::Client::new();
    let real: Value = serde_json::from_str(
        &std::fs::read_to_string(
            fixtures().join("stac/HLS.S30.T01WEV.2024153T000609.v2.0_stac.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    let p = get_page(
        &client,
        &search_url(&emu, &format!("collection_concept_id[]={S30}&collection_concept_id[]={L30}&temporal[]=2024-05-05T00:00:00Z,2024-05-05T23:59:59.999Z&page_size=40")),
        None,
    )
    .await;
    assert_eq!(p.entries().len(), 40);
    for e in p.entries() {
        let id = e["title"].as_str().unwrap();
        let c = Collection::from_granule_id(id).unwrap();
        let meta = emu
            .granules(c, day("2024-05-05"))
            .into_iter()
            .chain(emu.granules(c, day("2024-05-04")))
            .find(|m| m.granule_ur == id)
            .unwrap();
        let item: Value = client
            .get(https_stac_link(e))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(item, to_stac_item(&meta));
        assert_eq!(keys(&item), keys(&real));
        assert_eq!(keys(&item["properties"]), keys(&real["properties"]));
        if c == Collection::Hlss30 {
            assert_eq!(keys(&item["assets"]), keys(&real["assets"]));
        }
        assert_eq!(item["properties"]["datetime"].as_str().unwrap().len(), 27);
    }
    // Unknown ids and wrong folders are 404s.
    let some = &emu.granules(Collection::Hlss30, day("2024-05-01"))[0].granule_ur;
    for path in [
        "HLSS30.020/HLS.S30.T35VLJ.2024122T100559.v2.0/HLS.S30.T35VLJ.2024122T100559.v2.0_stac.json".to_string(),
        format!("HLSL30.020/{some}/{some}_stac.json"),
        format!("HLSS30.020/{some}/{some}.jpg"),
    ] {
        let r = client.get(format!("{}/lp-prod-public/{path}", emu.base_url())).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
        let body: Value = r.json().await.unwrap();
        assert!(body["errors"].is_array());
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn emulator_counts_requests() {
    let emu = synthetic(50, 7).await;
    let client = reqwest::Client::new();
    assert_eq!(emu.counts(), RequestCounts::default());
    let q = search_url(
        &emu,
        &format!(
            "collection_concept_id[]={L30}&temporal[]=2024-05-01T00:00:00Z,2024-05-01T23:59:59Z"
        ),
    );
    let p = get_page(&client, &q, None).await;
    let link = https_stac_link(&p.entries()[0]);
    client.get(&link).send().await.unwrap();
    client.get(&link).send().await.unwrap();
    client
        .get(format!("{}/nope", emu.base_url()))
        .send()
        .await
        .unwrap();
    get_page(&client, &format!("{q}&page_size=5000"), None).await;
    let c = emu.counts();
    assert_eq!(
        c,
        RequestCounts {
            search_pages: 1,
            echo10_pages: 0,
            item_fetches: 2,
            deleted_lists: 0,
            not_found: 1,
            bad_requests: 1,
            faults_injected: 0,
            total: 5,
        }
    );
    let remote: RequestCounts = client
        .get(format!("{}/_emulator/counts", emu.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(remote, c);
    assert_eq!(emu.counts(), c, "the counts endpoint is not counted");
    emu.shutdown().await;
}

#[tokio::test]
async fn emulator_injects_configured_faults() {
    let emu = Emulator::start(
        EmulatorConfig {
            source: DataSource::Replay,
            faults: Faults {
                fail_every_nth_search: std::num::NonZeroU64::new(2),
                ..Faults::default()
            },
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let client = reqwest::Client::new();
    let q = search_url(&emu, &format!("collection_concept_id[]={L30}"));
    let statuses: Vec<u16> = futures_statuses(&client, &q, 4).await;
    assert_eq!(statuses, vec![200, 503, 200, 503]);
    assert_eq!(emu.counts().faults_injected, 2);
    assert_eq!(emu.counts().search_pages, 2);
    emu.shutdown().await;
}

async fn futures_statuses(client: &reqwest::Client, url: &str, n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(client.get(url).send().await.unwrap().status().as_u16());
    }
    out
}

/// Rough throughput of item fetches and 2000-entry pages (run with `--ignored --nocapture`;
/// numbers depend on the profile and the machine, so nothing is asserted about them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn emulator_throughput() {
    let emu = synthetic(20_000, 8).await;
    let client = reqwest::Client::new();
    let url = search_url(
        &emu,
        &format!(
            "collection_concept_id[]={S30}&temporal[]=2024-05-02T00:00:00Z,2024-05-02T23:59:59.999Z&page_size=2000"
        ),
    );
    get_page(&client, &url, None).await; // generates the day
    let t = std::time::Instant::now();
    let pages = all_pages(&client, &url).await;
    let n: usize = pages.iter().map(|p| p.entries().len()).sum();
    println!(
        "{n} entries in {} pages: {:.0} entries/s",
        pages.len(),
        n as f64 / t.elapsed().as_secs_f64()
    );
    let links: Vec<String> = pages
        .iter()
        .flat_map(|p| p.entries().iter().map(https_stac_link))
        .take(8000)
        .collect();
    let t = std::time::Instant::now();
    let chunks: Vec<Vec<String>> = links.chunks(500).map(<[String]>::to_vec).collect();
    let tasks: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            let client = client.clone();
            tokio::spawn(async move {
                for l in chunk {
                    let body = client.get(&l).send().await.unwrap().bytes().await.unwrap();
                    assert!(body.len() > 1000);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    println!(
        "{} items: {:.0} items/s",
        links.len(),
        links.len() as f64 / t.elapsed().as_secs_f64()
    );
    emu.shutdown().await;
}

/// `PUT /_emulator/faults` switches faults on a running emulator, and each kind looks on
/// the wire as the README says.
#[tokio::test]
async fn faults_are_set_over_http_and_look_as_documented() {
    let emu = Emulator::start(EmulatorConfig::default(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let control = format!("{}/_emulator/faults", emu.base_url());
    let set = |body: &'static str| {
        let client = client.clone();
        let control = control.clone();
        async move { client.put(&control).body(body).send().await.unwrap() }
    };
    let get_json = |url: String| {
        let client = client.clone();
        async move {
            client
                .get(&url)
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    let q = search_url(
        &emu,
        &format!(
            "collection_concept_id[]={L30}&temporal[]=2025-10-02T00:00:00Z,2025-10-03T00:00:00Z"
        ),
    );
    let honest = client.get(&q).send().await.unwrap();
    let hits: u64 = honest.headers()["cmr-hits"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let entries = honest.json::<serde_json::Value>().await.unwrap()["feed"]["entry"]
        .as_array()
        .unwrap()
        .len();

    // Bad settings are refused and change nothing.
    let r = set(r#"{"rate": 3}"#).await;
    assert_eq!(r.status(), 400);
    let r = set(r#"{"kinds": ["418"]}"#).await;
    assert_eq!(r.status(), 400);
    let shown: serde_json::Value = get_json(control.clone()).await;
    assert_eq!(shown["rate"], 0.0);

    assert_eq!(
        set(r#"{"rate": 1, "kinds": ["429"], "retry_after_s": 7}"#)
            .await
            .status(),
        200
    );
    let r = client.get(&q).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "7");

    set(r#"{"rate": 1, "kinds": ["hits-changed"]}"#).await;
    let r = client.get(&q).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cmr-hits"], (hits + 1).to_string().as_str());

    set(r#"{"rate": 1, "kinds": ["duplicate-entry"]}"#).await;
    let page: serde_json::Value = get_json(q.clone()).await;
    let page = page["feed"]["entry"].as_array().unwrap().clone();
    assert_eq!(page.len(), entries + 1);
    assert_eq!(page[0]["id"], page[1]["id"]);

    set(r#"{"rate": 1, "kinds": ["no-stac-link"]}"#).await;
    let page: serde_json::Value = get_json(q.clone()).await;
    let stac_links = |e: &serde_json::Value| {
        e["links"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["href"].as_str().unwrap().ends_with("_stac.json"))
            .count()
    };
    assert_eq!(stac_links(&page["feed"]["entry"][0]), 0);
    assert!(stac_links(&page["feed"]["entry"][1]) > 0);

    set(r#"{"rate": 1, "kinds": ["timed-out"]}"#).await;
    let r = client.get(&q).send().await.unwrap();
    assert_eq!(r.headers()["cmr-timed-out"], "true");

    set(r#"{"rate": 1, "kinds": ["truncated"]}"#).await;
    let r = client.get(&q).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(serde_json::from_slice::<serde_json::Value>(&r.bytes().await.unwrap()).is_err());

    set(r#"{"rate": 1, "kinds": ["cut-mid-body"]}"#).await;
    let r = client.get(&q).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.is_err(), "the body ends early");

    set(r#"{"rate": 1, "kinds": ["slow"], "slow_ms": 400}"#).await;
    let started = std::time::Instant::now();
    let r = client
        .get(&q)
        .timeout(std::time::Duration::from_millis(100))
        .send()
        .await;
    assert!(r.is_err_and(|e| e.is_timeout()));
    assert!(started.elapsed() >= std::time::Duration::from_millis(100));

    let item = format!(
        "{}/lp-prod-public/HLSS30.020/HLS.S30.T01WEV.2024153T000609.v2.0/HLS.S30.T01WEV.2024153T000609.v2.0_stac.json",
        emu.base_url()
    );
    set(r#"{"rate": 1, "kinds": ["not-stac"]}"#).await;
    let v: serde_json::Value = get_json(item.clone()).await;
    assert_eq!(v["type"], "FeatureCollection");
    set(r#"{"rate": 1, "kinds": ["id-mismatch"]}"#).await;
    let v: serde_json::Value = get_json(item.clone()).await;
    assert_ne!(v["id"], "HLS.S30.T01WEV.2024153T000609.v2.0");
    set(r#"{"rate": 1, "kinds": ["invalid-json"]}"#).await;
    let r = client.get(&item).send().await.unwrap();
    assert!(r.text().await.unwrap().starts_with("<html>"));

    // `{}` turns them off.
    set("{}").await;
    assert_eq!(client.get(&item).send().await.unwrap().status(), 200);
    let injected = emu.fault_counts();
    assert_eq!(injected.values().sum::<u64>(), 11, "{injected:?}");
    emu.shutdown().await;
}
