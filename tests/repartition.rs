//! Repartitioning daily stac-geoparquet files into monthly, spatially sorted partitions.

use assert_cmd::Command;
use chrono::{Datelike, NaiveDate, TimeZone, Utc};
use hls_flow::Collection;
use hls_flow::period::Month;
use hls_flow::source::hls::{GranuleMeta, to_stac_item};
use hls_flow::write::geoparquet::{BatchWriter, ItemRow, WriterKind, writer_options};
use hls_flow::write::output::Output;
use hls_flow::write::recent::{Decoded, RecentFiles};
use hls_flow::write::repartition::hilbert::bbox_key;
use hls_flow::write::repartition::{
    RepartitionOptions, discover_daily, partition_path, repartition_month,
};
use object_store::ObjectStoreExt;
use parquet::file::reader::{FileReader, SerializedFileReader};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

/// A granule of `collection` on `day`, number `i`, somewhere on the globe.
fn granule(collection: Collection, day: NaiveDate, i: u32) -> GranuleMeta {
    let h = u64::from(i).wrapping_mul(2_654_435_761) ^ (u64::from(day.ordinal()) * 40_503);
    let lon = -179.0 + (h % 35_700) as f64 / 100.0;
    let lat = -80.0 + ((h / 35_700) % 16_000) as f64 / 100.0;
    let zone = ((lon + 180.0) / 6.0) as u32 % 60 + 1;
    let begin = Utc
        .with_ymd_and_hms(day.year(), day.month(), day.day(), 0, 0, 0)
        .unwrap()
        + chrono::Duration::seconds(i64::from(i))
        + chrono::Duration::microseconds(123_456);
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
        platform: match collection {
            Collection::Hlsl30 => "LANDSAT-9".into(),
            Collection::Hlss30 => "Sentinel-2B".into(),
        },
        instrument: match collection {
            Collection::Hlsl30 => "OLI".into(),
            Collection::Hlss30 => "Sentinel-2 MSI".into(),
        },
        polygons: vec![vec![
            (lon, lat),
            (lon + 0.9, lat),
            (lon + 0.9, lat + 0.9),
            (lon, lat + 0.9),
        ]],
        cloud_cover: Some(f64::from(i % 100) + 0.5),
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

/// How a day's items differ from the usual ones.
#[derive(Clone, Copy, PartialEq)]
enum Variant {
    Usual,
    /// No `view:azimuth` and integer cloud covers: a column missing, a type to widen.
    Drift,
    /// `view:azimuth` as text: cannot be merged with the numbers of other days.
    Conflict,
}

fn items(
    collection: Collection,
    day: NaiveDate,
    ids: std::ops::Range<u32>,
    v: Variant,
) -> Vec<stac::Item> {
    ids.map(|i| {
        let mut g = granule(collection, day, i);
        if v == Variant::Drift {
            g.view_azimuth = None;
        }
        let mut json = to_stac_item(&g);
        match v {
            Variant::Drift => json["properties"]["eo:cloud_cover"] = Value::from(i % 100),
            Variant::Conflict => json["properties"]["view:azimuth"] = Value::from("west"),
            Variant::Usual => {}
        }
        let mut item: stac::Item = serde_json::from_value(json).unwrap();
        item.collection = Some(collection.stac_id().to_string());
        item
    })
    .collect()
}

/// Writes a daily file as `generate-daily` lays it out (with small row groups).
fn write_daily(
    root: &FsPath,
    items: Vec<stac::Item>,
    collection: Collection,
    day: NaiveDate,
) -> PathBuf {
    let out = Output::parse(root.to_str().unwrap()).unwrap();
    let rel = out.daily_path("", collection, day);
    let path = root.join(rel.as_ref());
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let file = std::fs::File::create(&path).unwrap();
    stac::geoparquet::WriterBuilder::new(file)
        .writer_options(writer_options().with_max_row_group_row_count(500))
        .build(items)
        .unwrap()
        .finish()
        .unwrap();
    path
}

/// Items of a stac-geoparquet file as the `stac` crate reads them, as JSON, in file order.
fn read_json(path: &FsPath) -> Vec<Value> {
    let file = std::fs::File::open(path).unwrap();
    stac::geoparquet::from_reader(file)
        .unwrap()
        .items
        .into_iter()
        .map(|i| normalize(serde_json::to_value(i).unwrap()))
        .collect()
}

/// Numbers as floats (a widened integer column reads back as floats).
fn normalize(v: Value) -> Value {
    match v {
        Value::Number(n) => Value::from(n.as_f64().unwrap()),
        Value::Array(a) => Value::Array(a.into_iter().map(normalize).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, normalize(v))).collect()),
        other => other,
    }
}

fn by_id(items: Vec<Value>) -> BTreeMap<String, Value> {
    let n = items.len();
    let map: BTreeMap<String, Value> = items
        .into_iter()
        .map(|v| (v["id"].as_str().unwrap().to_string(), v))
        .collect();
    assert_eq!(map.len(), n, "ids are not unique");
    map
}

fn key_values(path: &FsPath) -> BTreeMap<String, String> {
    let reader = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    reader
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .unwrap()
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.clone().unwrap_or_default()))
        .collect()
}

fn row_group_sizes(path: &FsPath) -> Vec<i64> {
    let reader = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    reader
        .metadata()
        .row_groups()
        .iter()
        .map(|g| g.num_rows())
        .collect()
}

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2024, 5, d).unwrap()
}

/// May 2024 of both collections (S30 with a drifting schema on one day), and one S30 day of
/// June. Returns the daily files by (collection, month).
fn build_month(root: &FsPath) -> BTreeMap<(Collection, u32), Vec<PathBuf>> {
    let s = Collection::Hlss30;
    let l = Collection::Hlsl30;
    let mut files: BTreeMap<(Collection, u32), Vec<PathBuf>> = BTreeMap::new();
    for (c, d, n, v) in [
        (s, day(1), 700, Variant::Usual),
        (s, day(2), 650, Variant::Drift),
        (s, day(15), 900, Variant::Usual),
        (s, day(31), 250, Variant::Usual),
        (l, day(2), 300, Variant::Usual),
        (l, day(20), 420, Variant::Usual),
    ] {
        let p = write_daily(root, items(c, d, 0..n, v), c, d);
        files.entry((c, 5)).or_default().push(p);
    }
    let june = NaiveDate::from_ymd_opt(2024, 6, 1).unwrap();
    let p = write_daily(root, items(s, june, 0..40, Variant::Usual), s, june);
    files.entry((s, 6)).or_default().push(p);
    files
}

#[tokio::test]
async fn repartition_sorts_a_month_spatially_and_keeps_every_item() {
    let dir = tempfile::tempdir().unwrap();
    let daily_root = dir.path().join("daily");
    let files = build_month(&daily_root);
    let src = Output::parse(daily_root.to_str().unwrap()).unwrap();
    let dst_root = dir.path().join("monthly");
    let dst = Output::parse(dst_root.to_str().unwrap()).unwrap();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();

    let found = discover_daily(&src, "").await.unwrap();
    let keys: Vec<_> = found.keys().copied().collect();
    assert_eq!(
        keys,
        [
            (Collection::Hlsl30, may()),
            (Collection::Hlss30, may()),
            (Collection::Hlss30, Month::new(2024, 6).unwrap())
        ]
    );
    assert_eq!(found[&(Collection::Hlss30, may())].len(), 4);

    for ((collection, month), inputs) in &found {
        let (year, month_no) = (month.year(), month.number());
        let options = RepartitionOptions {
            row_group_size: 300,
            batch_size: 128,
            // Tiny buckets: every bucket of S30 gets split again by the next key byte.
            bucket_bytes: if *collection == Collection::Hlss30 {
                16 * 1024
            } else {
                1 << 30
            },
            spill_buffer_bytes: 256 * 1024,
            tmp_dir: Some(tmp.clone()),
            ..RepartitionOptions::default()
        };
        let report = repartition_month(&src, inputs, &dst, *collection, *month, &options)
            .await
            .unwrap();
        let out_path = dst_root.join(format!(
            "{}/year={year}/month={month_no:02}/part-0.parquet",
            collection.stac_id()
        ));
        assert_eq!(report.path, partition_path(&dst, *collection, *month));
        assert_eq!(
            report.output,
            format!("{}/{}", dst_root.display(), report.path)
        );
        assert_eq!(report.bytes, std::fs::metadata(&out_path).unwrap().len());
        let daily = &files[&(*collection, month_no)];
        assert_eq!(report.inputs, daily.len());

        // Exactly the items of the daily files, each once, as the stac crate reads them.
        let expected = by_id(daily.iter().flat_map(|p| read_json(p)).collect());
        let written = read_json(&out_path);
        assert_eq!(report.rows as usize, written.len());
        assert_eq!(written.len(), expected.len());
        let written_by_id = by_id(written.clone());
        assert_eq!(
            written_by_id.keys().collect::<Vec<_>>(),
            expected.keys().collect::<Vec<_>>()
        );
        for (id, item) in &expected {
            assert_eq!(&written_by_id[id], item, "item {id} differs");
        }

        // In Hilbert order of the bbox centroids, and spread over the globe.
        let hkeys: Vec<u32> = written
            .iter()
            .map(|v| {
                let b: Vec<f64> = v["bbox"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap())
                    .collect();
                bbox_key(b[0], b[1], b[2], b[3])
            })
            .collect();
        assert!(hkeys.is_sorted(), "rows are not in Hilbert order");
        if written.len() > 100 {
            assert!(hkeys.iter().map(|k| k >> 28).collect::<BTreeSet<_>>().len() > 8);
        }

        // Row groups of the requested size.
        let groups = row_group_sizes(&out_path);
        assert_eq!(groups.len(), written.len().div_ceil(300));
        assert!(groups[..groups.len() - 1].iter().all(|&n| n == 300));
        assert_eq!(report.row_groups, groups.len());

        // The stac-geoparquet file metadata, with the bbox of all footprints.
        let kv = key_values(&out_path);
        let stac_meta: Value = serde_json::from_str(&kv["stac-geoparquet"]).unwrap();
        // stac-geoparquet 1.1: the version and each collection's JSON, from the daily files.
        assert_eq!(stac_meta["version"], "1.1.0");
        let collections = stac_meta["collections"].as_object().unwrap();
        assert!(!collections.is_empty(), "{stac_meta}");
        for (id, c) in collections {
            assert_eq!(c["id"], id.as_str());
            assert_eq!(c["type"], "Collection");
        }
        let geo: Value = serde_json::from_str(&kv["geo"]).unwrap();
        assert_eq!(geo["primary_column"], "geometry");
        let col = &geo["columns"]["geometry"];
        assert_eq!(col["encoding"], "WKB");
        assert_eq!(
            col["covering"]["bbox"]["xmin"],
            serde_json::json!(["bbox", "xmin"])
        );
        let mut union = [f64::MAX, f64::MAX, f64::MIN, f64::MIN];
        for v in expected.values() {
            let b = v["bbox"].as_array().unwrap();
            for i in 0..4 {
                let x = b[i].as_f64().unwrap();
                union[i] = if i < 2 {
                    union[i].min(x)
                } else {
                    union[i].max(x)
                };
            }
        }
        let geo_bbox: Vec<f64> = col["bbox"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert_eq!(geo_bbox, union);
    }
    // The drifting day's items lack view:azimuth and keep it lacking.
    let drift = read_json(&dst_root.join("HLSS30_2.0/year=2024/month=05/part-0.parquet"));
    let drifted = drift
        .iter()
        .filter(|v| v["properties"].get("view:azimuth").is_none())
        .count();
    assert_eq!(drifted, 650);
    // Nothing left in the temporary folder.
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
}

#[tokio::test]
async fn repartition_refuses_duplicates_and_unmergeable_days_leaving_the_old_partition() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("daily");
    let c = Collection::Hlss30;
    write_daily(&root, items(c, day(3), 0..50, Variant::Usual), c, day(3));
    let src = Output::parse(root.to_str().unwrap()).unwrap();
    let dst_root = dir.path().join("monthly");
    let dst = Output::parse(dst_root.to_str().unwrap()).unwrap();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let options = RepartitionOptions {
        tmp_dir: Some(tmp.clone()),
        ..RepartitionOptions::default()
    };
    let inputs = |found: &hls_flow::write::repartition::DailyFiles| found[&(c, may())].clone();
    let found = discover_daily(&src, "").await.unwrap();
    let first = repartition_month(&src, &inputs(&found), &dst, c, may(), &options)
        .await
        .unwrap();
    assert_eq!(first.rows, 50);
    let out_path = dst_root.join("HLSS30_2.0/year=2024/month=05/part-0.parquet");
    let before = std::fs::read(&out_path).unwrap();

    // Again without overwrite: refused.
    let e = repartition_month(&src, &inputs(&found), &dst, c, may(), &options)
        .await
        .unwrap_err();
    assert!(matches!(e, hls_flow::Error::PartitionExists { .. }), "{e}");
    assert!(e.is_usage());

    // The same granules on another day: an error naming the id and both files.
    let dup_path = write_daily(&root, items(c, day(3), 10..12, Variant::Usual), c, day(4));
    let found = discover_daily(&src, "").await.unwrap();
    let overwrite = RepartitionOptions {
        overwrite: true,
        ..options.clone()
    };
    let e = repartition_month(&src, &inputs(&found), &dst, c, may(), &overwrite)
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, hls_flow::Error::DuplicateItem { .. }), "{msg}");
    assert!(
        msg.contains("HLS.S30.T") && msg.contains("2024124T000010"),
        "{msg}"
    );
    assert!(msg.contains("HLSS30_2.0-2024-05-03.parquet"), "{msg}");
    assert!(msg.contains("HLSS30_2.0-2024-05-04.parquet"), "{msg}");
    std::fs::remove_file(&dup_path).unwrap();

    // A day whose column cannot be merged: an error naming the column and the file.
    write_daily(
        &root,
        items(c, day(5), 100..110, Variant::Conflict),
        c,
        day(5),
    );
    let found = discover_daily(&src, "").await.unwrap();
    let e = repartition_month(&src, &inputs(&found), &dst, c, may(), &overwrite)
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, hls_flow::Error::SchemaConflict { .. }), "{msg}");
    assert!(
        msg.contains("view:azimuth") && msg.contains("2024-05-05"),
        "{msg}"
    );

    // The old partition is untouched and nothing is left over.
    assert_eq!(std::fs::read(&out_path).unwrap(), before);
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
    assert_eq!(
        std::fs::read_dir(out_path.parent().unwrap())
            .unwrap()
            .count(),
        1
    );
}

#[test]
fn repartition_cli_writes_hive_partitions_and_needs_overwrite_to_replace() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("daily");
    for (c, d, n) in [
        (Collection::Hlss30, day(1), 30),
        (Collection::Hlss30, day(9), 20),
        (Collection::Hlsl30, day(9), 25),
    ] {
        write_daily(&src, items(c, d, 0..n, Variant::Usual), c, d);
    }
    let dst = dir.path().join("monthly");
    let run = |extra: &[&str]| {
        Command::cargo_bin("hls-flow")
            .unwrap()
            .arg("repartition")
            .arg(&src)
            .arg(&dst)
            .arg("--no-progress")
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stdout.contains("partitions: 2") && stdout.contains("items: 75"),
        "{stdout}"
    );
    let s30 = dst.join("HLSS30_2.0/year=2024/month=05/part-0.parquet");
    let l30 = dst.join("HLSL30_2.0/year=2024/month=05/part-0.parquet");
    assert_eq!(read_json(&s30).len(), 50);
    assert_eq!(read_json(&l30).len(), 25);
    let before = std::fs::read(&s30).unwrap();

    let out = run(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("exists already") && stderr.contains("--overwrite"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
    assert_eq!(std::fs::read(&s30).unwrap(), before);

    let out = run(&["--overwrite"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(read_json(&s30).len(), 50);

    // A source without daily files is a usage error.
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = Command::cargo_bin("hls-flow")
        .unwrap()
        .args(["repartition", "--no-progress"])
        .arg(&empty)
        .arg(&dst)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

fn may() -> Month {
    Month::new(2024, 5).unwrap()
}

/// Writes `items` as the harvest does (the fixed-schema writer, rows in (datetime, id)
/// order) and publishes the file as the daily file of `day`; returns its path and the rows
/// the writer kept decoded.
async fn harvest_like(
    out: &Output,
    collection: Collection,
    day: NaiveDate,
    items: Vec<stac::Item>,
) -> (object_store::path::Path, Option<Decoded>) {
    let mut writer = BatchWriter::start(format!("{day}"), None, WriterKind::Fast(collection));
    let rows = items
        .iter()
        .map(|item| ItemRow::Json {
            json: serde_json::to_vec(item).unwrap().into(),
            key: None,
        })
        .collect();
    writer.write(rows).await.unwrap();
    let finished = writer.finish().await.unwrap().unwrap();
    let dest = out.daily_path("", collection, day);
    out.publish(&finished.data, &dest).await.unwrap();
    (dest, finished.decoded)
}

/// A month's repartition that takes small daily files decoded from the process's
/// `RecentFiles` (as `run` does) writes the very bytes of one that reads every file; a file
/// replaced since it was kept is read from the output, not taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_files_kept_decoded_give_the_partition_read_from_the_files() {
    let tmp = tempfile::tempdir().unwrap();
    let daily = Output::parse(tmp.path().join("daily").to_str().unwrap()).unwrap();
    let c = Collection::Hlss30;
    let recent = Arc::new(RecentFiles::default());
    let mut paths = Vec::new();
    for d in [1, 2, 9, 30] {
        let (dest, decoded) = harvest_like(
            &daily,
            c,
            day(d),
            items(c, day(d), 0..8 + d, Variant::Usual),
        )
        .await;
        let decoded = decoded.expect("a small day's rows are kept");
        assert_eq!(decoded.rows(), u64::from(8 + d));
        let meta = daily.store().head(&dest).await.unwrap();
        recent.keep(daily.show(&dest), &meta, decoded);
        paths.push(dest);
    }
    // Day 9 is harvested again (other items) after its first file was kept: the kept rows
    // are no longer the file's.
    let (_, _) = harvest_like(
        &daily,
        c,
        day(9),
        items(c, day(9), 100..104, Variant::Drift),
    )
    .await;
    assert_eq!(recent.len(), 4);

    let kept_out = Output::parse(tmp.path().join("kept").to_str().unwrap()).unwrap();
    let options = RepartitionOptions {
        recent: Some(recent.clone()),
        ..Default::default()
    };
    let kept = repartition_month(&daily, &paths, &kept_out, c, may(), &options)
        .await
        .unwrap();
    assert_eq!((kept.inputs, kept.inputs_kept), (4, 3), "day 9 was read");
    assert!(recent.is_empty(), "every kept file was taken");

    let read_out = Output::parse(tmp.path().join("read").to_str().unwrap()).unwrap();
    let read = repartition_month(&daily, &paths, &read_out, c, may(), &Default::default())
        .await
        .unwrap();
    assert_eq!((read.inputs, read.inputs_kept), (4, 0));
    assert_eq!(kept.rows, 9 + 10 + 4 + 38);
    assert_eq!(kept.rows, read.rows);
    let kept_bytes = kept_out
        .store()
        .get(&kept.path)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let read_bytes = read_out
        .store()
        .get(&read.path)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(
        kept_bytes == read_bytes,
        "the partitions differ byte for byte"
    );
}
