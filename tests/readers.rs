//! The files as the real readers take them: every item of a synthetic month, rebuilt by
//! `stac_geoparquet` (Python) from the month partitions, equals the `_stac.json` the
//! emulator served; pyarrow finds `geo` in the schema metadata and stac-geoparquet 1.1 file
//! metadata; DuckDB and GeoPandas (a whole partition folder) read them; pystac takes the
//! rebuilt items. The real LP DAAC item of the fixtures round-trips the same way, and a
//! day harvested twice gives byte-identical daily files.

use crate::common::{hls_flow, python};
use crate::harvest::{day, synthetic};
use hls_flow_emulator::{DataSource, Emulator, EmulatorConfig};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// One Python run over a cache: `roots` are the partition folders (or single files) to
/// read, `base` the emulator that served the items. Prints a JSON report.
const READERS: &str = r#"
import glob, json, os, sys, urllib.request
import duckdb, geopandas, pyarrow, pyarrow.parquet as pq, pystac, stac_geoparquet

cfg = json.loads(sys.argv[1])
base = cfg["base"]
report = {"versions": {"pyarrow": pyarrow.__version__, "duckdb": duckdb.__version__,
                       "geopandas": geopandas.__version__,
                       "stac_geoparquet": stac_geoparquet.__version__,
                       "pystac": pystac.__version__},
          "files": 0, "rows": 0, "items": 0, "mismatches": [], "no_geo_in_schema": [],
          "stac_metadata": [], "duckdb_rows": 0, "geopandas_rows": {},
          "sub_ms_datetimes": 0, "long_floats": 0, "null_link_types": 0,
          "untyped_links": 0}

def diff(a, b, path, out):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                out.append(f"{path}.{k}: {'missing' if k not in a else 'extra'}")
            else:
                diff(a[k], b[k], f"{path}.{k}", out)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            diff(x, y, f"{path}[{i}]", out)
    elif a != b or type(a) != type(b):
        out.append(f"{path}: {a!r} != {b!r}")

def drop_null_link_types(item, served):
    # `links` is a list of structs: every link has every field of the struct type, so a
    # link without `type` (LP DAAC's `cite-as`) comes back with `"type": null`.
    # stac_geoparquet does the same to items it writes itself (parse_stac_items_to_arrow,
    # then stac_table_to_items): no file can avoid it. Exactly that null is dropped, and
    # only where the served link has no `type`; any other null is a mismatch.
    served_links = served.get("links", [])
    for i, link in enumerate(item.get("links", [])):
        if link.get("type", 0) is None and i < len(served_links) and "type" not in served_links[i]:
            del link["type"]
            report["null_link_types"] += 1

def floats(v):
    if isinstance(v, float):
        yield v
    elif isinstance(v, dict):
        for x in v.values():
            yield from floats(x)
    elif isinstance(v, list):
        for x in v:
            yield from floats(x)

files = []
for root in cfg["roots"]:
    files += sorted(glob.glob(os.path.join(root, "**", "*.parquet"), recursive=True)) \
        if os.path.isdir(root) else [root]
report["files"] = len(files)
for f in files:
    meta = pq.read_schema(f).metadata or {}
    if b"geo" not in meta:
        report["no_geo_in_schema"].append(f)
    report["stac_metadata"].append(json.loads(meta.get(b"stac-geoparquet", b"{}")))
    table = pq.read_table(f)
    report["rows"] += table.num_rows
    for item in stac_geoparquet.arrow.stac_table_to_items(table):
        item = json.loads(json.dumps(item))
        report["items"] += 1
        folder = item["collection"].replace("_2.0", ".020")
        url = f"{base}/lp-prod-public/{folder}/{item['id']}/{item['id']}_stac.json"
        served = json.load(urllib.request.urlopen(url))
        report["untyped_links"] += sum(1 for link in served.get("links", []) if "type" not in link)
        drop_null_link_types(item, served)
        pystac.Item.from_dict(item)
        dt = served["properties"]["datetime"]
        if len(dt) == 27 and dt[-4:-1] != "000":
            report["sub_ms_datetimes"] += 1
        report["long_floats"] += sum(1 for x in floats(served) if len(repr(abs(x)).replace(".", "").lstrip("0")) >= 16)
        del item["collection"]
        out = []
        diff(item, served, item["id"], out)
        report["mismatches"] += out[:5]

con = duckdb.connect()
for root in cfg["roots"]:
    pattern = os.path.join(root, "**", "*.parquet") if os.path.isdir(root) else root
    report["duckdb_rows"] += con.execute(
        f"SELECT count(*) FROM read_parquet('{pattern}', hive_partitioning = true)").fetchone()[0]
for folder in cfg["folders"]:
    gdf = geopandas.read_parquet(folder)
    report["geopandas_rows"][folder] = [len(gdf), sorted(set(gdf.geometry.geom_type))]
print(json.dumps(report))
"#;

fn readers(base: &str, roots: &[PathBuf], folders: &[PathBuf]) -> Value {
    let cfg = json!({"base": base, "roots": roots, "folders": folders});
    let out = std::process::Command::new(python())
        .args(["-c", READERS])
        .arg(cfg.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn run(emu: &Emulator, args: &[&str], out: &Path, state: &Path) {
    let o = hls_flow()
        .args(args)
        .arg("--output")
        .arg(out)
        .arg("--state")
        .arg(state)
        .args(["--no-progress", "--cmr-url", &emu.base_url()])
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn assert_files_every_reader_takes(report: &Value, rows: u64) {
    assert_eq!(report["items"], rows, "{report}");
    assert_eq!(report["rows"], rows, "{report}");
    assert_eq!(report["duckdb_rows"], rows, "{report}");
    assert_eq!(report["mismatches"], json!([]), "{report}");
    // The one tolerated difference (see `drop_null_link_types`): each served link without
    // `type`, and nothing else.
    assert_eq!(
        report["null_link_types"], report["untyped_links"],
        "{report}"
    );
    assert_eq!(report["no_geo_in_schema"], json!([]), "{report}");
    for m in report["stac_metadata"].as_array().unwrap() {
        assert_eq!(m["version"], "1.1.0", "{report}");
        let collections = m["collections"].as_object().unwrap();
        assert_eq!(collections.len(), 1, "{report}");
        for (id, c) in collections {
            assert_eq!(c["id"], id.as_str());
            assert_eq!(c["type"], "Collection");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_synthetic_month_reads_back_exactly_in_every_reader() {
    let emu = synthetic(day(2024, 5, 1), day(2024, 5, 31), 8).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    run(
        &emu,
        &["run", "202405"],
        &out,
        &dir.path().join("state.sqlite"),
    );
    let folders = vec![out.join("HLSL30_2.0"), out.join("HLSS30_2.0")];
    let report = readers(&emu.base_url(), &folders, &folders);
    let rows = report["rows"].as_u64().unwrap();
    assert!(rows >= 200, "{report}");
    assert_eq!(report["files"], 2, "{report}");
    assert_files_every_reader_takes(&report, rows);
    // The month has what truncation would change: sub-millisecond datetimes and numbers
    // that need all 17 significant digits.
    assert!(report["sub_ms_datetimes"].as_u64().unwrap() > 0, "{report}");
    assert!(report["long_floats"].as_u64().unwrap() > 0, "{report}");
    let by_folder = report["geopandas_rows"].as_object().unwrap();
    let total: u64 = by_folder.values().map(|v| v[0].as_u64().unwrap()).sum();
    assert_eq!(total, rows, "{report}");
    for v in by_folder.values() {
        assert_eq!(v[1], json!(["MultiPolygon"]), "{report}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_real_lp_daac_item_round_trips_exactly() {
    let emu = Emulator::start(
        EmulatorConfig {
            source: DataSource::Replay,
            faults: Default::default(),
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    run(
        &emu,
        &["run", "202406", "--collections", "HLSS30"],
        &out,
        &dir.path().join("state.sqlite"),
    );
    let folder = out.join("HLSS30_2.0");
    let folders = [folder];
    let report = readers(&emu.base_url(), &folders, &folders);
    assert_files_every_reader_takes(&report, 1);
    // And it is the fixture, byte for byte as LP DAAC published it.
    let fixture: Value = serde_json::from_str(include_str!(
        "fixtures/stac/HLS.S30.T01WEV.2024153T000609.v2.0_stac.json"
    ))
    .unwrap();
    assert_eq!(
        fixture["properties"]["datetime"],
        "2024-06-01T00:06:19.072460Z"
    );
    let served: Value = reqwest::get(format!(
        "{}/lp-prod-public/HLSS30.020/HLS.S30.T01WEV.2024153T000609.v2.0/HLS.S30.T01WEV.2024153T000609.v2.0_stac.json",
        emu.base_url()
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(served, fixture);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_day_harvested_twice_is_the_same_bytes() {
    let emu = synthetic(day(2024, 5, 14), day(2024, 5, 14), 60).await;
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for n in 0..2 {
        let out = dir.path().join(format!("out{n}"));
        let o = hls_flow()
            .args(["generate-daily", "20240514"])
            .arg(&out)
            .args(["--no-progress", "--cmr-url", &emu.base_url()])
            .output()
            .unwrap();
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let mut found = Vec::new();
        let mut stack = vec![out.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    found.push((
                        p.strip_prefix(&out).unwrap().to_path_buf(),
                        std::fs::read(&p).unwrap(),
                    ));
                }
            }
        }
        found.sort();
        files.push(found);
    }
    assert_eq!(files[0].len(), 2, "one daily file per collection");
    let names = |f: &Vec<(PathBuf, Vec<u8>)>| f.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>();
    assert_eq!(names(&files[0]), names(&files[1]));
    for ((path, a), (_, b)) in files[0].iter().zip(&files[1]) {
        assert!(
            a == b,
            "{} differs between two harvests of the day",
            path.display()
        );
    }
    // And the rows are in (datetime, id) order.
    for (path, _) in &files[0] {
        let file = std::fs::File::open(dir.path().join("out0").join(path)).unwrap();
        let items = stac::geoparquet::from_reader(file).unwrap().items;
        assert!(items.len() > 10);
        let keys: Vec<_> = items
            .iter()
            .map(|i| (i.properties.datetime, i.id.clone()))
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted, "{}", path.display());
    }
}
