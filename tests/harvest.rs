//! The harvest end to end against the emulator: replayed real pages, synthetic days with
//! granules at the edges of days, skip-existing, and every `generate-daily` form.

use crate::common::hls_flow;
use chrono::{NaiveDate, SecondsFormat, Timelike};
use hls_flow::Collection;
use hls_flow::api::{DailyOptions, Endpoints, Outcome, process_date_range};
use hls_flow::period::DayRange;
use hls_flow::write::output::Output;
use hls_flow_emulator::{DataSource, Emulator, EmulatorConfig, SyntheticConfig};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::path::Path;

pub fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

pub async fn synthetic(start: NaiveDate, end: NaiveDate, per_day: u32) -> Emulator {
    Emulator::start(
        EmulatorConfig {
            source: DataSource::Synthetic(SyntheticConfig {
                start,
                end,
                granules_per_day: per_day,
                seed: 42,
            }),
            faults: Default::default(),
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap()
}

pub fn options(emu: &Emulator) -> DailyOptions {
    let mut endpoints = Endpoints::with_cmr(&emu.base_url());
    endpoints.retry.min_delay = std::time::Duration::from_millis(5);
    endpoints.retry.max_delay = std::time::Duration::from_millis(20);
    DailyOptions {
        endpoints,
        max_concurrent_per_day: 8,
        ..DailyOptions::default()
    }
}

/// Reads every parquet file below `dir` with the stac crate: item id → (file, item JSON).
pub fn read_all(dir: &Path) -> HashMap<String, (String, Value)> {
    let mut out = HashMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                let file = std::fs::File::open(&p).unwrap();
                let items = stac::geoparquet::from_reader(file).unwrap().items;
                for item in items {
                    let v = serde_json::to_value(&item).unwrap();
                    let prev = out.insert(item.id.clone(), (p.display().to_string(), v));
                    assert!(prev.is_none(), "{} is written twice", item.id);
                }
            }
        }
    }
    out
}

/// Compares an item read back from parquet with the item the emulator serves: every field,
/// times at the millisecond precision stac-geoparquet stores.
pub fn assert_same_item(read: &Value, served: &Value, collection: Collection) {
    let ms = |v: &Value| {
        chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap())
            .unwrap()
            .with_timezone(&chrono::Utc)
            .with_nanosecond(0)
            .map(|t| t.timestamp_millis())
    };
    let id = served["id"].as_str().unwrap();
    assert_eq!(read["id"], served["id"]);
    assert_eq!(read["collection"], collection.stac_id(), "{id}");
    assert_eq!(read["geometry"], served["geometry"], "{id}");
    assert_eq!(read["bbox"], served["bbox"], "{id}");
    assert_eq!(read["assets"], served["assets"], "{id}");
    assert_eq!(read["links"], served["links"], "{id}");
    let rp = read["properties"].as_object().unwrap();
    let sp = served["properties"].as_object().unwrap();
    assert_eq!(
        rp.keys().collect::<BTreeSet<_>>(),
        sp.keys().collect::<BTreeSet<_>>(),
        "{id}"
    );
    for (k, v) in sp {
        if k.ends_with("datetime") {
            let served_ms = chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap())
                .unwrap()
                .timestamp_millis();
            let read_ms = chrono::DateTime::parse_from_rfc3339(rp[k].as_str().unwrap())
                .unwrap()
                .timestamp_millis();
            assert_eq!(read_ms, served_ms, "{id} {k}");
            let _ = ms;
        } else {
            assert_eq!(&rp[k], v, "{id} {k}");
        }
    }
    let mut ext: Vec<&Value> = read["stac_extensions"].as_array().unwrap().iter().collect();
    let mut sext: Vec<&Value> = served["stac_extensions"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    ext.sort_by_key(|v| v.to_string());
    sext.sort_by_key(|v| v.to_string());
    assert_eq!(ext, sext, "{id}");
}

async fn served_item(emu: &Emulator, collection: Collection, id: &str) -> Value {
    let url = format!(
        "{}/lp-prod-public/{}/{id}/{id}_stac.json",
        emu.base_url(),
        collection.bucket_folder()
    );
    reqwest::get(&url).await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn replays_the_recorded_pages_end_to_end() {
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
    let out = Output::parse(dir.path().to_str().unwrap()).unwrap();
    let opts = DailyOptions {
        collections: vec![Collection::Hlsl30],
        bbox: Some("-93,46,-92,47".parse().unwrap()),
        ..options(&emu)
    };
    let summary = process_date_range(
        DayRange::parse(&["20251001", "20251010"]).unwrap(),
        &out,
        &opts,
    )
    .await
    .unwrap();
    assert!(
        summary
            .outcomes
            .iter()
            .all(|o| o.status == Outcome::Succeeded),
        "{summary:?}"
    );

    // The recorded 10-day search lists 12 entries: exactly those are written, each in the
    // file of its start day.
    let page: Value = serde_json::from_str(include_str!(
        "fixtures/cmr/hlsl30_bbox-93_46_-92_47_2025-10-01_2025-10-10.page1.json"
    ))
    .unwrap();
    let mut recorded: HashMap<String, String> = HashMap::new();
    for e in page["feed"]["entry"].as_array().unwrap() {
        recorded.insert(
            e["title"].as_str().unwrap().to_string(),
            e["time_start"].as_str().unwrap()[..10].to_string(),
        );
    }
    assert_eq!(recorded.len(), 12);
    let written = read_all(dir.path());
    assert_eq!(
        written.keys().collect::<BTreeSet<_>>(),
        recorded.keys().collect::<BTreeSet<_>>()
    );
    for (id, (file, item)) in &written {
        assert!(
            file.ends_with(&format!("HLSL30_2.0-{}.parquet", recorded[id])),
            "{id} in {file}"
        );
        assert_same_item(
            item,
            &served_item(&emu, Collection::Hlsl30, id).await,
            Collection::Hlsl30,
        );
    }
    let days_with_items: usize = summary.outcomes.iter().filter(|o| o.items > 0).count();
    assert_eq!(days_with_items, 3);
    assert_eq!(summary.outcomes.iter().map(|o| o.items).sum::<u64>(), 12);
}

#[tokio::test]
async fn every_granule_once_across_days_including_the_edges_of_days() {
    let emu = synthetic(day(2024, 5, 30), day(2024, 6, 2), 40).await;
    let dir = tempfile::tempdir().unwrap();
    let out = Output::parse(dir.path().to_str().unwrap()).unwrap();
    let mut opts = options(&emu);
    opts.endpoints.page_size = 7; // many pages per day
    opts.parallel = true;
    let range = DayRange::parse(&["20240531", "20240601"]).unwrap();
    let summary = process_date_range(range, &out, &opts).await.unwrap();
    assert!(
        summary
            .outcomes
            .iter()
            .all(|o| o.status == Outcome::Succeeded),
        "{summary:?}"
    );

    let written = read_all(dir.path());
    let mut expected = 0;
    for c in Collection::ALL {
        for d in range.days() {
            let granules = emu.granules(c, d);
            expected += granules.len();
            let ids: BTreeSet<String> = granules.iter().map(|g| g.granule_ur.clone()).collect();
            let in_file: BTreeSet<String> = written
                .iter()
                .filter(|(_, (f, _))| f.ends_with(&format!("{}-{d}.parquet", c.stac_id())))
                .map(|(id, _)| id.clone())
                .collect();
            assert_eq!(in_file, ids, "{c} {d}");
            // The edges: the last 50 ms of the day and midnight itself.
            let times: Vec<String> = granules
                .iter()
                .map(|g| g.begin.to_rfc3339_opts(SecondsFormat::Millis, true))
                .collect();
            assert!(
                times.contains(&format!("{d}T23:59:59.950Z")),
                "{c} {d}: {times:?}"
            );
            assert!(times.contains(&format!("{d}T00:00:00.000Z")), "{c} {d}");
            let o = summary
                .outcomes
                .iter()
                .find(|o| o.collection == c && o.day == d)
                .unwrap();
            assert_eq!(o.items as usize, granules.len());
        }
    }
    assert_eq!(written.len(), expected, "every granule exactly once");
    // Spot-check item contents.
    for c in Collection::ALL {
        let g = &emu.granules(c, day(2024, 5, 31))[0];
        let (_, item) = &written[&g.granule_ur];
        assert_same_item(item, &served_item(&emu, c, &g.granule_ur).await, c);
    }
}

#[tokio::test]
async fn complete_days_are_skipped_without_a_request() {
    let emu = synthetic(day(2024, 5, 1), day(2024, 5, 3), 12).await;
    let dir = tempfile::tempdir().unwrap();
    let out = Output::parse(dir.path().to_str().unwrap()).unwrap();
    let opts = options(&emu);
    let range = DayRange::parse(&["20240501", "20240502"]).unwrap();
    process_date_range(range, &out, &opts).await.unwrap();
    let before = emu.counts();
    let again = process_date_range(range, &out, &opts).await.unwrap();
    assert!(again.outcomes.iter().all(|o| o.status == Outcome::Skipped));
    assert_eq!(emu.counts(), before, "no request at all");
    let forced = process_date_range(
        range,
        &out,
        &DailyOptions {
            skip_existing: false,
            ..opts.clone()
        },
    )
    .await
    .unwrap();
    assert!(
        forced
            .outcomes
            .iter()
            .all(|o| o.status == Outcome::Succeeded)
    );
    assert!(emu.counts().item_fetches > before.item_fetches);
}

#[tokio::test]
async fn a_skipped_day_in_a_range_makes_no_request_and_the_others_run() {
    let emu = synthetic(day(2024, 5, 1), day(2024, 5, 3), 12).await;
    let dir = tempfile::tempdir().unwrap();
    let out = Output::parse(dir.path().join("mixed").to_str().unwrap()).unwrap();
    let opts = DailyOptions {
        collections: vec![Collection::Hlsl30],
        ..options(&emu)
    };
    let first = DayRange::parse(&["20240501"]).unwrap();
    process_date_range(first, &out, &opts).await.unwrap();
    // What harvesting May 2 alone asks for, in another output.
    let alone = Output::parse(dir.path().join("alone").to_str().unwrap()).unwrap();
    let before = emu.counts();
    let second = DayRange::parse(&["20240502"]).unwrap();
    process_date_range(second, &alone, &opts).await.unwrap();
    let between = emu.counts();
    let may2 = emu.granules(Collection::Hlsl30, day(2024, 5, 2)).len() as u64;
    assert_eq!(between.item_fetches - before.item_fetches, may2);
    // May 1 and 2 into the output that has May 1: only May 2's requests are made.
    let both = DayRange::parse(&["20240501", "20240502"]).unwrap();
    let summary = process_date_range(both, &out, &opts).await.unwrap();
    let after = emu.counts();
    assert_eq!(after.item_fetches - between.item_fetches, may2);
    assert_eq!(
        after.search_pages - between.search_pages,
        between.search_pages - before.search_pages
    );
    let status: Vec<(NaiveDate, Outcome, u64)> = summary
        .outcomes
        .iter()
        .map(|o| (o.day, o.status, o.items))
        .collect();
    let may1 = emu.granules(Collection::Hlsl30, day(2024, 5, 1)).len() as u64;
    assert_eq!(
        status,
        vec![
            (day(2024, 5, 1), Outcome::Skipped, may1),
            (day(2024, 5, 2), Outcome::Succeeded, may2),
        ]
    );
}

fn run_cli(emu: &Emulator, args: &[&str]) -> std::process::Output {
    hls_flow()
        .arg("generate-daily")
        .args(args)
        .args([
            "--no-progress",
            "--cmr-url",
            &emu.base_url(),
            "--retry-min-delay-ms",
            "5",
        ])
        .output()
        .unwrap()
}

fn files_below(dir: &Path) -> BTreeSet<String> {
    read_all(dir)
        .values()
        .map(|(f, _)| {
            Path::new(f)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_generate_daily_form_and_option() {
    let emu = synthetic(day(2024, 2, 1), day(2024, 3, 1), 4).await;
    let dir = tempfile::tempdir().unwrap();

    // A month, both collections, in parallel.
    let month = dir.path().join("month");
    let o = run_cli(
        &emu,
        &[
            "202402",
            month.to_str().unwrap(),
            "--parallel",
            "--max-concurrent-days",
            "4",
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("58 succeeded, 0 skipped, 0 failed"),
        "{stdout}"
    );
    assert!(stdout.contains("success rate: 100.0%"), "{stdout}");
    assert_eq!(files_below(&month).len(), 58);
    // Again: everything skipped.
    let o = run_cli(&emu, &["202402", month.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("0 succeeded, 58 skipped"));

    // One day, one collection, few fetches at once.
    let one = dir.path().join("one");
    let o = run_cli(
        &emu,
        &[
            "20240229",
            one.to_str().unwrap(),
            "--collections",
            "HLSS30",
            "--max-concurrent-per-day",
            "2",
        ],
    );
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        files_below(&one),
        BTreeSet::from(["HLSS30_2.0-2024-02-29.parquet".to_string()])
    );
    // Same day again with --no-skip-existing: written again, not skipped.
    let o = run_cli(
        &emu,
        &[
            "20240229",
            one.to_str().unwrap(),
            "--collections",
            "HLSS30",
            "--no-skip-existing",
        ],
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("1 succeeded, 0 skipped"));

    // An inclusive range across a month boundary, within a box.
    let range = dir.path().join("range");
    let o = run_cli(
        &emu,
        &[
            "20240228",
            "20240301",
            range.to_str().unwrap(),
            "--collections",
            "HLSL30",
            "--bbox=-180,-90,0,90",
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let written = read_all(&range);
    let mut west = 0;
    for d in [day(2024, 2, 28), day(2024, 2, 29), day(2024, 3, 1)] {
        west += emu
            .granules(Collection::Hlsl30, d)
            .iter()
            .filter(|g| g.bbox().is_some_and(|b| b[0] <= 0.0))
            .count();
    }
    assert_eq!(written.len(), west);
    assert!(
        written
            .values()
            .all(|(_, v)| v["bbox"][0].as_f64().unwrap() <= 0.0)
    );
}

#[tokio::test]
async fn the_low_level_call_writes_one_window_to_any_store() {
    use hls_flow::api::{GeoparquetRequest, hls_to_stac_geoparquet};
    use object_store::ObjectStoreExt;
    let emu = synthetic(day(2024, 5, 1), day(2024, 5, 2), 10).await;
    let store = std::sync::Arc::new(object_store::memory::InMemory::new());
    let (start, _) = hls_flow::period::day_window(day(2024, 5, 1));
    let (_, end) = hls_flow::period::day_window(day(2024, 5, 2));
    let report = hls_to_stac_geoparquet(
        GeoparquetRequest {
            output_path: "two-days.parquet".into(),
            collection: Collection::Hlss30,
            bbox: None,
            temporal: (start, end),
            max_concurrent: 4,
            show_progress: false,
            store: store.clone(),
        },
        &options(&emu).endpoints,
    )
    .await
    .unwrap();
    let expected = emu.granules(Collection::Hlss30, day(2024, 5, 1)).len()
        + emu.granules(Collection::Hlss30, day(2024, 5, 2)).len();
    assert_eq!(report.written as usize, expected);
    let bytes = store
        .get(&"two-days.parquet".into())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let items = stac::geoparquet::from_reader(bytes).unwrap().items;
    assert_eq!(items.len(), expected);
}

#[tokio::test]
async fn a_page_flagged_cmr_timed_out_fails_the_day_never_counts_as_complete() {
    let emu = synthetic(day(2024, 5, 1), day(2024, 5, 1), 40).await;
    // Every search page answers with half its entries and `CMR-Timed-Out: true`.
    emu.set_faults(hls_flow_emulator::Faults::random(
        1.0,
        &[hls_flow_emulator::FaultKind::TimedOut],
        0,
    ));
    let dir = tempfile::tempdir().unwrap();
    let out = Output::parse(dir.path().to_str().unwrap()).unwrap();
    let mut opts = options(&emu);
    opts.collections = vec![Collection::Hlss30];
    opts.endpoints.retry.max_attempts = 2;
    let range = DayRange::parse(&["20240501"]).unwrap();
    let summary = process_date_range(range, &out, &opts).await.unwrap();
    let o = &summary.outcomes[0];
    assert_eq!(o.status, Outcome::Failed);
    assert!(
        o.error.as_deref().unwrap().contains("CMR-Timed-Out"),
        "{o:?}"
    );
    assert!(read_all(dir.path()).is_empty(), "nothing published");
    // Once CMR answers in time, the day is complete.
    emu.set_faults(Default::default());
    let summary = process_date_range(range, &out, &opts).await.unwrap();
    assert_eq!(summary.outcomes[0].status, Outcome::Succeeded);
    assert_eq!(
        read_all(dir.path()).len(),
        emu.granules(Collection::Hlss30, day(2024, 5, 1)).len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_daily_takes_a_workflow_file_and_flags_override_it() {
    let emu = synthetic(day(2024, 2, 28), day(2024, 3, 1), 3).await;
    let dir = tempfile::tempdir().unwrap();
    let wf = dir.path().join("w.toml");
    std::fs::write(
        &wf,
        "collections = [\"HLSS30\"]\n[output]\ndaily_prefix = \"days\"\n[concurrency]\nfetches_per_day = 2\n",
    )
    .unwrap();
    // The file's collections and daily prefix are used.
    let out = dir.path().join("wf");
    let o = run_cli(
        &emu,
        &[
            "20240229",
            out.to_str().unwrap(),
            "--workflow",
            wf.to_str().unwrap(),
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("1 succeeded, 0 skipped, 0 failed"));
    assert_eq!(
        files_below(&out.join("days")),
        BTreeSet::from(["HLSS30_2.0-2024-02-29.parquet".to_string()])
    );
    assert_eq!(files_below(&out), files_below(&out.join("days")));
    // A flag overrides the file: --collections.
    let o = run_cli(
        &emu,
        &[
            "20240229",
            out.to_str().unwrap(),
            "--workflow",
            wf.to_str().unwrap(),
            "--collections",
            "HLSL30",
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        files_below(&out.join("days")),
        BTreeSet::from([
            "HLSL30_2.0-2024-02-29.parquet".to_string(),
            "HLSS30_2.0-2024-02-29.parquet".to_string()
        ])
    );
    // A bad file: a one-line usage error, nothing written.
    std::fs::write(&wf, "[concurrency]\ndays = 0\n").unwrap();
    let bad = dir.path().join("bad");
    let o = run_cli(
        &emu,
        &[
            "20240229",
            bad.to_str().unwrap(),
            "--workflow",
            wf.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("concurrency.days"));
    assert!(!bad.exists());
}
