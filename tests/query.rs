//! Querying the cache: `hls-flow search` against DuckDB (+ shapely for the exact footprint
//! test) over the same files, and `hls-flow serve` through pystac-client.

use crate::common::{hls_flow, one_line_error, python};
use chrono::{Datelike, NaiveDate, TimeZone, Utc};
use hls_flow::Collection;
use hls_flow::source::hls::{GranuleMeta, to_stac_item};
use hls_flow::write::geoparquet::writer_options;
use hls_flow::write::output::Output;
use hls_flow::write::repartition::{RepartitionOptions, discover_daily, repartition_month};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// Footprint `i` of a day: squares and triangles all over the globe, with footprints that
/// touch the antimeridian from both sides, one that crosses it (two polygons), and tiles
/// near the poles.
fn polygons(i: u32, day: u32) -> Vec<Vec<(f64, f64)>> {
    let h = u64::from(i).wrapping_mul(2_654_435_761) ^ (u64::from(day) * 40_503);
    let lon = -179.0 + (h % 35_700) as f64 / 100.0;
    let lat = -80.0 + ((h / 35_700) % 16_200) as f64 / 100.0;
    match i % 10 {
        0 => vec![vec![
            (179.1, lat),
            (180.0, lat),
            (180.0, lat + 0.9),
            (179.1, lat + 0.9),
        ]],
        1 => vec![vec![
            (-180.0, lat),
            (-179.1, lat),
            (-179.1, lat + 0.9),
            (-180.0, lat + 0.9),
        ]],
        2 => vec![
            vec![
                (179.5, lat),
                (180.0, lat),
                (180.0, lat + 0.9),
                (179.5, lat + 0.9),
            ],
            vec![
                (-180.0, lat),
                (-179.6, lat),
                (-179.6, lat + 0.9),
                (-180.0, lat + 0.9),
            ],
        ],
        3 => {
            let lat = 81.0 + f64::from(i % 7) * 0.2;
            vec![vec![
                (lon, lat),
                (lon + 2.5, lat),
                (lon + 2.5, lat + 0.9),
                (lon, lat + 0.9),
            ]]
        }
        4 | 5 => vec![vec![(lon, lat), (lon + 0.9, lat), (lon, lat + 0.9)]],
        _ => vec![vec![
            (lon, lat),
            (lon + 0.9, lat),
            (lon + 0.9, lat + 0.9),
            (lon, lat + 0.9),
        ]],
    }
}

fn granule(collection: Collection, day: NaiveDate, i: u32) -> GranuleMeta {
    let begin = Utc
        .with_ymd_and_hms(day.year(), day.month(), day.day(), 0, 0, 0)
        .unwrap()
        + chrono::Duration::seconds(i64::from(i) * 20)
        + chrono::Duration::milliseconds(123);
    let zone = i % 60 + 1;
    GranuleMeta {
        collection,
        granule_ur: format!(
            "HLS.{}.T{zone:02}ABC.{}{:03}T{:06}.v2.0",
            collection.product(),
            day.year(),
            day.ordinal(),
            i
        ),
        concept_id: format!("G{i}-LPCLOUD"),
        begin,
        end: begin,
        updated: begin,
        platform: "Sentinel-2B".into(),
        instrument: "Sentinel-2 MSI".into(),
        polygons: polygons(i, day.ordinal()),
        cloud_cover: Some(f64::from(i % 101)),
        mgrs_tile: Some(format!("{zone:02}ABC")),
        ulx: Some(499_980.0),
        uly: Some(8_000_040.0),
        nrows: Some(3660),
        ncols: Some(3660),
        resolution: Some(30.0),
        sun_azimuth: Some(187.7),
        view_azimuth: Some(296.1),
        doi: Some(collection.doi().into()),
    }
}

/// A cache with May 2024 (both collections, 8 days) and June 2024 (S30, 2 days), in
/// 100-row groups; returns its folder.
async fn build_cache(dir: &Path) -> PathBuf {
    let daily = dir.join("daily");
    let src = Output::parse(daily.to_str().unwrap()).unwrap();
    let days: Vec<(Collection, NaiveDate, u32)> = [1, 4, 7, 8, 9, 15, 22, 31]
        .iter()
        .flat_map(|&d| {
            let day = NaiveDate::from_ymd_opt(2024, 5, d).unwrap();
            [
                (Collection::Hlss30, day, 400),
                (Collection::Hlsl30, day, 150),
            ]
        })
        .chain([1, 2].map(|d| {
            (
                Collection::Hlss30,
                NaiveDate::from_ymd_opt(2024, 6, d).unwrap(),
                300,
            )
        }))
        .collect();
    for (c, day, n) in days {
        let items: Vec<stac::Item> = (0..n)
            .map(|i| {
                let mut item: stac::Item =
                    serde_json::from_value(to_stac_item(&granule(c, day, i))).unwrap();
                item.collection = Some(c.stac_id().to_string());
                item
            })
            .collect();
        let path = daily.join(src.daily_path("", c, day).as_ref());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        stac::geoparquet::WriterBuilder::new(std::fs::File::create(&path).unwrap())
            .writer_options(writer_options())
            .build(items)
            .unwrap()
            .finish()
            .unwrap();
    }
    let cache = dir.join("cache");
    let dst = Output::parse(cache.to_str().unwrap()).unwrap();
    for ((c, month), inputs) in discover_daily(&src, "").await.unwrap() {
        let options = RepartitionOptions {
            row_group_size: 100,
            ..RepartitionOptions::default()
        };
        repartition_month(&src, &inputs, &dst, c, month, &options)
            .await
            .unwrap();
    }
    cache
}

/// The reference: DuckDB filters the partitions' columns, shapely tests the footprints.
const DUCKDB: &str = r#"
import json, sys, duckdb, shapely
root, f = sys.argv[1], json.loads(sys.argv[2])
where = ["true"]
if f.get("bbox"):
    w, s, e, n = f["bbox"]
    where.append(f"bbox.xmin <= {e} and bbox.xmax >= {w} and bbox.ymin <= {n} and bbox.ymax >= {s}")
if f.get("start"):
    where.append(f"datetime >= TIMESTAMPTZ '{f['start']}'")
if f.get("end"):
    where.append(f"datetime <= TIMESTAMPTZ '{f['end']}'")
if f.get("ids"):
    where.append("id in (" + ",".join(f"'{i}'" for i in f["ids"]) + ")")
if f.get("max_cloud_cover") is not None:
    where.append(f'"eo:cloud_cover" <= {f["max_cloud_cover"]}')
if f.get("collections"):
    where.append("collection in (" + ",".join(f"'{c}'" for c in f["collections"]) + ")")
if f.get("tile"):
    where.append(f"id like '%.{f['tile']}.%'")
if f.get("sql"):
    where.append(f"({f['sql']})")
sql = f"select id, geometry from read_parquet('{root}/*/year=*/month=*/*.parquet', union_by_name=true) where {' and '.join(where)}"
rows = duckdb.sql(sql).fetchall()
box = shapely.box(*f["bbox"]) if f.get("bbox") else None
if f.get("shapely"):
    box = eval(f["shapely"], {"box": shapely.box})
print(json.dumps(sorted(i for i, g in rows if box is None or shapely.from_wkb(bytes(g)).intersects(box))))
"#;

fn duckdb_ids(cache: &Path, filter: &Value) -> BTreeSet<String> {
    let out = std::process::Command::new(python())
        .args(["-c", DUCKDB])
        .arg(cache)
        .arg(filter.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `hls-flow search` with the filter's flags: ids found, and (read, total) row groups.
fn search_ids(cache: &Path, filter: &Value) -> (BTreeSet<String>, (u64, u64)) {
    let mut cmd = hls_flow();
    cmd.arg("search").arg("--output").arg(cache);
    if let Some(b) = filter.get("bbox") {
        let b: Vec<String> = b
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.to_string())
            .collect();
        cmd.arg(format!("--bbox={}", b.join(",")));
    }
    if filter.get("start").is_some() || filter.get("end").is_some() {
        let part = |k: &str| {
            filter
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or("..")
                .to_string()
        };
        cmd.arg("--datetime")
            .arg(format!("{}/{}", part("start"), part("end")));
    }
    // A JSON list of strings, as the command line takes it: comma-separated.
    let joined = |list: &Value| {
        list.as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect::<Vec<_>>()
            .join(",")
    };
    if let Some(ids) = filter.get("ids") {
        cmd.arg("--ids").arg(joined(ids));
    }
    if let Some(cc) = filter.get("max_cloud_cover") {
        cmd.arg("--max-cloud-cover").arg(cc.to_string());
    }
    if let Some(cs) = filter.get("collections") {
        cmd.arg("--collections").arg(joined(cs));
    }
    if let Some(t) = filter.get("tile") {
        cmd.arg("--tile").arg(t.as_str().unwrap());
    }
    if let Some(f) = filter.get("filter") {
        cmd.arg("--filter")
            .arg(f.as_str().map_or_else(|| f.to_string(), str::to_string));
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["id"].as_str().unwrap().to_string()
        })
        .collect();
    let set: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(set.len(), ids.len(), "an item returned twice");
    // "N items; row groups read: R of T in P of Q partitions"
    let words: Vec<&str> = stderr.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "read:").expect(&stderr);
    let read: u64 = words[at + 1].parse().unwrap();
    let total: u64 = words[at + 3].parse().unwrap();
    (set, (read, total))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_finds_what_duckdb_finds_and_reads_few_row_groups() {
    let dir = tempfile::tempdir().unwrap();
    let cache = build_cache(dir.path()).await;
    let some_ids = [
        "HLS.S30.T08ABC.2024128T000007.v2.0",
        "HLS.L30.T11ABC.2024153T000010.v2.0",
        "HLS.S30.T02ABC.2024153T000001.v2.0",
        "HLS.S30.T99ABC.2024128T000001.v2.0",
    ];
    let filters = [
        json!({"bbox": [-100.0, 30.0, -80.0, 50.0], "start": "2024-05-01T00:00:00Z", "end": "2024-05-07T23:59:59Z"}),
        json!({"bbox": [10.0, 40.0, 11.0, 41.0]}),
        // Touching and crossing the antimeridian, from both sides.
        json!({"bbox": [179.95, -90.0, 180.0, 90.0]}),
        json!({"bbox": [-180.0, -30.0, -179.7, 30.0], "start": "2024-05-08T00:00:00Z"}),
        json!({"bbox": [179.0, -90.0, 179.4, 90.0], "end": "2024-05-09T12:00:00Z"}),
        // Poles-ward tiles.
        json!({"bbox": [-180.0, 81.5, 180.0, 90.0]}),
        json!({"bbox": [-60.0, -90.0, 60.0, -79.0], "collections": ["HLSS30_2.0"]}),
        json!({"ids": some_ids}),
        json!({"ids": some_ids, "collections": ["HLSL30_2.0"]}),
        json!({"max_cloud_cover": 3.0, "start": "2024-05-31T00:00:00Z", "end": "2024-06-01T10:00:00Z"}),
        json!({"tile": "T07ABC", "bbox": [-180.0, -90.0, 0.0, 90.0]}),
        json!({"start": "2024-06-02T00:00:00Z", "end": "2024-06-02T00:00:40.123Z"}),
    ];
    for f in &filters {
        let expected = duckdb_ids(&cache, f);
        let (found, _) = search_ids(&cache, f);
        assert_eq!(found, expected, "filter {f}");
    }
    // The filters are not vacuous: most find something, and the exact footprint test
    // rejects some items whose bbox meets the box (the triangles).
    let nonempty = filters
        .iter()
        .filter(|f| !duckdb_ids(&cache, f).is_empty())
        .count();
    assert!(nonempty >= 9, "{nonempty} filters found items");
    // A small box over one week reads a small part of the row groups.
    let (found, (read, total)) = search_ids(
        &cache,
        &json!({"bbox": [10.0, 40.0, 20.0, 50.0], "start": "2024-05-01T00:00:00Z", "end": "2024-05-07T23:59:59Z"}),
    );
    assert!(!found.is_empty());
    assert!(read * 5 < total, "read {read} of {total} row groups");
    // A lookup by id reads the row groups whose `id` bloom filter may hold one of the ids,
    // though the spatial order spreads the ids of a month over every row group.
    let ids = json!({ "ids": some_ids });
    let (found, (read, total)) = search_ids(&cache, &ids);
    assert_eq!(found, duckdb_ids(&cache, &ids));
    assert_eq!(found.len(), 2, "two of the ids are in the cache: {found:?}");
    assert!(read * 5 < total, "ids: read {read} of {total} row groups");

    // A searcher whose footer cache holds less than one footer keeps only the last one
    // read, and finds the same; one with the default budget keeps the three partitions'.
    let everything = |searcher: hls_flow::query::Searcher| async move {
        let mut all = BTreeSet::new();
        for q in [
            hls_flow::query::Query::default(),
            hls_flow::query::Query {
                ids: some_ids.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            },
        ] {
            searcher
                .search(&q, Default::default(), |item| {
                    all.insert(item["id"].as_str().unwrap().to_string());
                    Ok(())
                })
                .await
                .unwrap();
        }
        (all, searcher.footers_kept())
    };
    let output = || Output::parse(cache.to_str().unwrap()).unwrap();
    let (small, (kept, bytes)) =
        everything(hls_flow::query::Searcher::new(output()).with_footer_cache(1)).await;
    assert_eq!(kept, 1, "{bytes} bytes kept");
    let (default, (kept, _)) = everything(hls_flow::query::Searcher::new(output())).await;
    assert_eq!(kept, 3);
    assert_eq!(small, default);
    assert_eq!(small, duckdb_ids(&cache, &json!({})));
}

#[test]
fn search_refuses_bad_input_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 7] = [
        (&["--bbox", "10,0,5,1"], "bounding box"),
        (
            &["--filter", "nope < 3"],
            "property \"nope\" is not supported",
        ),
        (&["--filter", "eo:cloud_cover <"], "invalid filter"),
        (
            &["--filter", "{\"op\": \"<\", \"args\": 3}"],
            "invalid filter",
        ),
        (&["--datetime", "yesterday"], "invalid date"),
        (&["--collections", "HLSX30"], "unknown collection"),
        (
            &["--datetime", "2024-05-02/2024-05-01"],
            "start is after end",
        ),
    ];
    for (args, needle) in cases {
        let out = hls_flow()
            .arg("search")
            .arg("--output")
            .arg(dir.path())
            .args(args)
            .output()
            .unwrap();
        one_line_error(&out, 2, needle);
        assert!(out.stdout.is_empty());
    }
    let out = hls_flow()
        .args(["search", "--output"])
        .arg(dir.path().join("nowhere"))
        .output()
        .unwrap();
    one_line_error(&out, 2, "no such folder");
}

/// A running `hls-flow serve`, killed when dropped.
struct Server {
    child: std::process::Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(cache: &Path) -> Server {
    serve_with(&["--output".as_ref(), cache.as_os_str()], &[])
}

/// `hls-flow serve` with `args` (where the cache is) and environment `env`.
fn serve_with(args: &[&std::ffi::OsStr], env: &[(&str, String)]) -> Server {
    let bin = assert_cmd::cargo::cargo_bin("hls-flow");
    let mut child = std::process::Command::new(bin)
        .args(["serve", "--bind", "127.0.0.1:0"])
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .trim_end_matches('/')
        .to_string();
    Server { child, url }
}

const CLIENT: &str = r#"
import json, sys, requests, pystac_client
import pyarrow.parquet as pq, stac_geoparquet.arrow as sga
url, cache = sys.argv[1], sys.argv[2]
client = pystac_client.Client.open(url)
out = {"collections": sorted(c.id for c in client.get_collections())}
pages = []
search = client.search(bbox=[-100, 30, -80, 50], datetime="2024-05-01T00:00:00Z/2024-05-07T23:59:59Z", limit=2)
ids = []
for page in search.pages():
    pages.append(len(page.items))
    ids += [i.id for i in page.items]
out["pages"], out["bbox_ids"] = pages, ids
want = ids[:3]
out["ids_search"] = sorted(i.id for i in client.search(ids=want).items())
out["ids_wanted"] = sorted(want)
out["collection_search"] = sorted({i.collection_id for i in client.search(collections=["HLSL30_2.0"], datetime="2024-05-01T00:00:00Z/2024-05-01T01:00:00Z", limit=50).items()})
post = client.search(bbox=[-100, 30, -80, 50], datetime="2024-05-01T00:00:00Z/2024-05-07T23:59:59Z", limit=5, method="POST")
out["post_ids"] = [i.id for i in post.items()]
# CQL2 filters, by GET (cql2-text) and POST (cql2-json), paged.
conf = requests.get(f"{url}/conformance").json()["conformsTo"]
out["filter_conformance"] = any(c.endswith("/conf/cql2-text") for c in conf) and any(c.endswith("/conf/cql2-json") for c in conf)
out["queryables"] = sorted(requests.get(f"{url}/queryables").json()["properties"])
f_get = client.search(bbox=[-100, 30, -80, 50], datetime="2024-05-01T00:00:00Z/2024-05-31T23:59:59Z", filter="eo:cloud_cover <= 40 and collection = 'HLSS30_2.0'", limit=2, method="GET")
out["filter_get_ids"] = [i.id for i in f_get.items()]
f_post = client.search(bbox=[-100, 30, -80, 50], datetime="2024-05-01T00:00:00Z/2024-05-31T23:59:59Z", filter={"op": "and", "args": [{"op": "<=", "args": [{"property": "eo:cloud_cover"}, 40]}, {"op": "=", "args": [{"property": "collection"}, "HLSS30_2.0"]}]}, filter_lang="cql2-json", limit=2, method="POST")
out["filter_post_ids"] = [i.id for i in f_post.items()]
# Items served equal the stored items (as stac-geoparquet reads them), links aside.
stored = {}
for f in ["HLSS30_2.0/year=2024/month=05/part-0.parquet", "HLSL30_2.0/year=2024/month=05/part-0.parquet"]:
    for it in sga.stac_table_to_items(pq.read_table(f"{cache}/{f}")):
        stored[it["id"]] = it
def norm(d):
    d = dict(d); d.pop("links", None)
    d["properties"] = {k: v for k, v in d["properties"].items() if k not in ("datetime", "start_datetime", "end_datetime")}
    return json.loads(json.dumps(d, sort_keys=True))
def times(d):
    import pystac.utils as u
    return [u.str_to_datetime(d["properties"][k]).isoformat() for k in ("datetime", "start_datetime", "end_datetime")]
mismatch = []
for item in search.items():
    served = requests.get(f"{url}/search", params={"ids": item.id}).json()["features"][0]
    one = requests.get(f"{url}/collections/{item.collection_id}/items/{item.id}").json()
    for d in (served, one):
        if norm(d) != norm(stored[item.id]) or times(d) != times(stored[item.id]):
            mismatch.append([item.id, {k: [d.get(k), stored[item.id].get(k)] for k in d if k != "links" and d.get(k) != stored[item.id].get(k)}])
out["mismatch"] = mismatch
out["missing_item"] = requests.get(f"{url}/collections/HLSS30_2.0/items/nope").status_code
bad = {}
for q in ["bbox=1,2", "bbox=10,0,5,x", "bbox=-200,0,5,1", "datetime=yesterday", "datetime=2024-05-02T00:00:00Z/2024-05-01T00:00:00Z", "limit=-3", "intersects=nope", "filter=nope%20%3C%203", "filter=eo%3Acloud_cover%20%3C"]:
    r = requests.get(f"{url}/search?{q}")
    body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
    bad[q] = [r.status_code, sorted(body)]
r = requests.post(f"{url}/search", data="{not json", headers={"content-type": "application/json"})
bad["post"] = [r.status_code, sorted(r.json())]
r = requests.post(f"{url}/search", json={"filter-lang": "cql2-json", "filter": {"op": "<", "args": [{"property": "nope"}, 3]}})
bad["post filter"] = [r.status_code, sorted(r.json())]
r = requests.post(f"{url}/search", json={"bbox": [-200, 0, 5, 1]})
bad["post bbox"] = [r.status_code, sorted(r.json())]
r = requests.get(f"{url}/collections/HLSS30_2.0/items?filter=nope%20%3C%203")
bad["items filter"] = [r.status_code, sorted(r.json())]
out["bad"] = bad
print(json.dumps(out))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_pystac_client_with_what_duckdb_finds() {
    let dir = tempfile::tempdir().unwrap();
    let cache = build_cache(dir.path()).await;
    let server = serve(&cache);
    let out = std::process::Command::new(python())
        .args(["-c", CLIENT, &server.url])
        .arg(&cache)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["collections"], json!(["HLSL30_2.0", "HLSS30_2.0"]));
    let expected = duckdb_ids(
        &cache,
        &json!({"bbox": [-100.0, 30.0, -80.0, 50.0], "start": "2024-05-01T00:00:00Z", "end": "2024-05-07T23:59:59Z"}),
    );
    let ids: Vec<String> = serde_json::from_value(got["bbox_ids"].clone()).unwrap();
    let set: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(set.len(), ids.len(), "an item on two pages");
    assert_eq!(set, expected);
    let pages: Vec<usize> = serde_json::from_value(got["pages"].clone()).unwrap();
    assert!(pages.len() >= 3, "pages: {pages:?}");
    assert!(pages.iter().all(|&n| n <= 2), "pages: {pages:?}");
    assert_eq!(got["ids_search"], got["ids_wanted"]);
    assert_eq!(got["ids_search"].as_array().unwrap().len(), 3);
    assert_eq!(got["collection_search"], json!(["HLSL30_2.0"]));
    let post: Vec<String> = serde_json::from_value(got["post_ids"].clone()).unwrap();
    assert_eq!(post.iter().cloned().collect::<BTreeSet<_>>(), expected);
    assert_eq!(got["mismatch"], json!([]));
    assert_eq!(got["filter_conformance"], json!(true));
    assert!(
        got["queryables"]
            .as_array()
            .unwrap()
            .contains(&json!("eo:cloud_cover"))
    );
    let expected = duckdb_ids(
        &cache,
        &json!({"bbox": [-100.0, 30.0, -80.0, 50.0], "start": "2024-05-01T00:00:00Z", "end": "2024-05-31T23:59:59Z", "max_cloud_cover": 40.0, "collections": ["HLSS30_2.0"]}),
    );
    assert!(expected.len() > 4, "{expected:?}");
    for key in ["filter_get_ids", "filter_post_ids"] {
        let ids: Vec<String> = serde_json::from_value(got[key].clone()).unwrap();
        let set: BTreeSet<String> = ids.iter().cloned().collect();
        assert_eq!(set.len(), ids.len(), "{key}: an item on two pages");
        assert_eq!(set, expected, "{key}");
    }
    assert_eq!(got["missing_item"], json!(404));
    for (q, answer) in got["bad"].as_object().unwrap() {
        assert_eq!(answer, &json!([400, ["code", "description"]]), "{q}");
    }
}

/// A CQL2 filter (as `search --filter`) and the reference's conditions for the same items.
fn filter_cases() -> Vec<(Value, Value)> {
    let cc = r#""eo:cloud_cover""#;
    vec![
        (
            json!("eo:cloud_cover < 7"),
            json!({"sql": format!("{cc} < 7")}),
        ),
        (
            json!(
                "eo:cloud_cover between 10 and 12 and datetime >= TIMESTAMP('2024-05-09T00:00:00Z')"
            ),
            json!({"sql": format!("{cc} between 10 and 12 and datetime >= TIMESTAMPTZ '2024-05-09T00:00:00Z'")}),
        ),
        (
            json!("not (eo:cloud_cover >= 3) or id = 'HLS.L30.T11ABC.2024153T000010.v2.0'"),
            json!({"sql": format!("not ({cc} >= 3) or id = 'HLS.L30.T11ABC.2024153T000010.v2.0'")}),
        ),
        (
            json!("collection = 'HLSL30_2.0' and eo:cloud_cover in (1, 50, 99)"),
            json!({"sql": format!("collection = 'HLSL30_2.0' and {cc} in (1, 50, 99)")}),
        ),
        (
            json!(
                "t_intersects(datetime, INTERVAL('2024-05-08T00:00:00Z', '2024-05-08T00:30:00Z'))"
            ),
            json!({"start": "2024-05-08T00:00:00Z", "end": "2024-05-08T00:30:00Z"}),
        ),
        (
            json!("s_intersects(geometry, BBOX(10, 40, 20, 50)) and eo:cloud_cover <= 60"),
            json!({"bbox": [10.0, 40.0, 20.0, 50.0], "sql": format!("{cc} <= 60")}),
        ),
        // Across the antimeridian's neighbours and the poles-ward tiles.
        (
            json!(
                "s_intersects(geometry, BBOX(179.5, -90, 180, 90)) or s_intersects(geometry, BBOX(-180, 81.5, 180, 90))"
            ),
            json!({"sql": "(bbox.xmin <= 180 and bbox.xmax >= 179.5) or bbox.ymax >= 81.5", "shapely": "box(179.5, -90, 180, 90).union(box(-180, 81.5, 180, 90))"}),
        ),
        (
            json!({"op": "<=", "args": [{"property": "eo:cloud_cover"}, 2]}),
            json!({"sql": format!("{cc} <= 2")}),
        ),
        (
            json!("platform = 'sentinel-2b' and eo:cloud_cover = 40 and view:sun_azimuth > 100"),
            json!({"sql": format!("platform = 'sentinel-2b' and {cc} = 40 and \"view:sun_azimuth\" > 100")}),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_filter_equals_duckdb_sql() {
    let dir = tempfile::tempdir().unwrap();
    let cache = build_cache(dir.path()).await;
    let mut sizes = Vec::new();
    for (filter, reference) in filter_cases() {
        let expected = duckdb_ids(&cache, &reference);
        let (found, _) = search_ids(&cache, &json!({ "filter": filter }));
        assert_eq!(found, expected, "filter {filter}");
        sizes.push(expected.len());
    }
    // Not vacuous: every filter finds some items, none finds them all.
    let all = duckdb_ids(&cache, &json!({})).len();
    assert!(
        sizes.iter().all(|&n| n > 0 && n < all),
        "{sizes:?} of {all}"
    );
    // The bounds a filter implies prune: a datetime in May skips June's partition.
    let out = hls_flow()
        .args(["search", "--output"])
        .arg(&cache)
        .args([
            "--filter",
            "datetime >= TIMESTAMP('2024-05-08T00:00:00Z') and datetime <= TIMESTAMP('2024-05-08T23:00:00Z') and eo:cloud_cover < 2",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("in 2 of 3 partitions"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_and_serve_read_the_output_of_a_state_file() {
    use hls_flow::engine::checkpoint::sqlite::StateStore;
    let dir = tempfile::tempdir().unwrap();
    let cache = build_cache(dir.path()).await;
    let state = dir.path().join("state.sqlite");
    StateStore::open_exclusive(&state)
        .unwrap()
        .set_meta("output", cache.to_str().unwrap())
        .unwrap();
    let search = |source: &[&std::ffi::OsStr]| {
        hls_flow()
            .arg("search")
            .args(source)
            .args([
                "--bbox=-100,30,-80,50",
                "--datetime",
                "2024-05-01/2024-05-07",
            ])
            .output()
            .unwrap()
    };
    let by_output = search(&["--output".as_ref(), cache.as_os_str()]);
    let by_state = search(&["--state".as_ref(), state.as_os_str()]);
    assert!(
        by_state.status.success(),
        "{}",
        String::from_utf8_lossy(&by_state.stderr)
    );
    assert!(!by_output.stdout.is_empty());
    assert_eq!(by_state.stdout, by_output.stdout);

    let server = serve_with(&["--state".as_ref(), state.as_os_str()], &[]);
    let get = |url: String| async move {
        let page: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
        page
    };
    let page = get(format!(
        "{}/search?ids=HLS.S30.T08ABC.2024128T000007.v2.0",
        server.url
    ))
    .await;
    assert_eq!(
        page["features"][0]["id"],
        json!("HLS.S30.T08ABC.2024128T000007.v2.0")
    );
    // The ids of a search over every partition.
    let everything = |url: String| async move {
        let page = get(format!("{url}/search?limit=10000")).await;
        let ids: Vec<Value> = page["features"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["id"].clone())
            .collect();
        ids
    };
    let all = everything(server.url.clone()).await;
    assert!(all.len() > 10);
    drop(server);

    // No footer kept between searches (each partition's read again every time): the same
    // answers.
    let server = serve_with(
        &[
            "--state".as_ref(),
            state.as_os_str(),
            "--footer-cache-mb".as_ref(),
            "0".as_ref(),
        ],
        &[],
    );
    for _ in 0..2 {
        assert_eq!(everything(server.url.clone()).await, all);
    }
    drop(server);

    let both = search(&[
        "--output".as_ref(),
        cache.as_os_str(),
        "--state".as_ref(),
        state.as_os_str(),
    ]);
    one_line_error(&both, 2, "not both");
    one_line_error(&search(&[]), 2, "--state S");
    let empty = dir.path().join("empty.sqlite");
    drop(StateStore::open_exclusive(&empty).unwrap());
    one_line_error(
        &search(&["--state".as_ref(), empty.as_os_str()]),
        2,
        "records no output",
    );
    let nowhere = dir.path().join("nowhere.sqlite");
    one_line_error(
        &search(&["--state".as_ref(), nowhere.as_os_str()]),
        2,
        "no such file",
    );
    assert!(!nowhere.exists());
    let out = hls_flow()
        .args(["serve", "--bind", "127.0.0.1:0"])
        .output()
        .unwrap();
    one_line_error(&out, 2, "--state S");
    let out = hls_flow()
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--footer-cache-mb",
            "lots",
        ])
        .arg("--output")
        .arg(dir.path())
        .output()
        .unwrap();
    one_line_error(&out, 2, "--footer-cache-mb");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_and_serve_answer_from_s3_as_from_the_local_copy() {
    use crate::common::Moto;
    use object_store::{ObjectStoreExt, PutPayload};
    let dir = tempfile::tempdir().unwrap();
    let cache = build_cache(dir.path()).await;
    let moto = Moto::start();
    moto.create_bucket("cache");
    let store = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name("cache")
        .with_endpoint(&moto.endpoint)
        .with_allow_http(true)
        .with_access_key_id("testing")
        .with_secret_access_key("testing")
        .with_region("us-east-1")
        .build()
        .unwrap();
    let mut stack = vec![cache.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(&cache).unwrap().to_str().unwrap();
                let key = object_store::path::Path::from(format!("hls/{rel}"));
                store
                    .put(&key, PutPayload::from(std::fs::read(&path).unwrap()))
                    .await
                    .unwrap();
            }
        }
    }
    let env = moto.env();
    let search = |output: &std::ffi::OsStr, args: &[&str]| {
        let out = hls_flow()
            .args(["search", "--output"])
            .arg(output)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let s3 = std::ffi::OsString::from("s3://cache/hls");
    let filters: [&[&str]; 4] = [
        &[
            "--bbox=-100,30,-80,50",
            "--datetime",
            "2024-05-01/2024-05-07",
        ],
        &[
            "--ids",
            "HLS.S30.T08ABC.2024128T000007.v2.0,HLS.L30.T11ABC.2024153T000010.v2.0",
        ],
        &[
            "--filter",
            "eo:cloud_cover < 3 and collection = 'HLSL30_2.0'",
        ],
        &["--bbox=179.95,-90,180,90"],
    ];
    for args in filters {
        let local = search(cache.as_os_str(), args);
        assert!(!local.is_empty(), "{args:?}");
        assert_eq!(search(&s3, args), local, "{args:?}");
    }
    // serve over S3 answers as over the folder.
    let query =
        "/search?bbox=-100,30,-80,50&datetime=2024-05-01T00:00:00Z/2024-05-07T23:59:59Z&limit=1000";
    let ids = |url: String| async move {
        let page: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
        page["features"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let remote = serve_with(&["--output".as_ref(), s3.as_os_str()], &env);
    let from_s3 = ids(format!("{}{query}", remote.url)).await;
    let local = serve(&cache);
    let from_folder = ids(format!("{}{query}", local.url)).await;
    assert!(!from_folder.is_empty());
    assert_eq!(from_s3, from_folder);
}
