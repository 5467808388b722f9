//! `sync` and `verify` against the emulator as a changing archive: late ingests, revisions
//! and deletions after a month was harvested; a sync rewrites exactly what changed, a
//! second one nothing; a killed sync completes when started again; faults lose nothing; a
//! month across LP DAAC's thumbnail change reads with one schema.

use crate::common::{hls_flow, one_line_error, python};
use crate::harvest::{day, synthetic};
use crate::run::{Paths, paths, status_json, stderr};
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use hls_flow::Collection;
use hls_flow::engine::checkpoint::sqlite::{StateStore, TaskKind, TaskState};
use hls_flow_emulator::{ChangeReport, ChangeSet, Emulator, FaultKind, Faults, Late, Pick, Revise};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant, SystemTime};

fn cmd(emu: &Emulator, p: &Paths, sub: &str) -> assert_cmd::Command {
    let mut c = hls_flow();
    c.arg(sub)
        .arg("--state")
        .arg(&p.state)
        .args(["--cmr-url", &emu.base_url()])
        .args(["--retry-min-delay-ms", "5", "--retry-max-delay-ms", "20"]);
    if sub != "verify" {
        c.arg("--no-progress");
    }
    c
}

fn run(emu: &Emulator, p: &Paths, dates: &[&str]) {
    let o = cmd(emu, p, "run")
        .args(dates)
        .arg("--output")
        .arg(&p.out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

fn sync(emu: &Emulator, p: &Paths, extra: &[&str]) -> Output {
    cmd(emu, p, "sync").args(extra).output().unwrap()
}

fn verify(emu: &Emulator, p: &Paths) -> Output {
    cmd(emu, p, "verify").output().unwrap()
}

fn month_days(first: NaiveDate, last: NaiveDate) -> impl Iterator<Item = NaiveDate> {
    first.iter_days().take_while(move |d| *d <= last)
}

/// The items of one parquet file: id → item JSON; each id once.
fn items_of(path: &Path) -> BTreeMap<String, Value> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = BTreeMap::new();
    for item in stac::geoparquet::from_reader(file).unwrap().items {
        let v = serde_json::to_value(&item).unwrap();
        assert!(
            out.insert(item.id.clone(), v).is_none(),
            "{} twice in {}",
            item.id,
            path.display()
        );
    }
    out
}

fn daily_file(out: &Path, c: Collection, d: NaiveDate) -> PathBuf {
    out.join(format!(
        "daily/{}/{}/{}-{d}.parquet",
        c.stac_id(),
        d.format("%Y/%m"),
        c.stac_id()
    ))
}

fn partition(out: &Path, c: Collection, d: NaiveDate) -> PathBuf {
    out.join(format!(
        "{}/year={}/month={}/part-0.parquet",
        c.stac_id(),
        d.format("%Y"),
        d.format("%m")
    ))
}

/// Every daily file and month partition of `first..=last` (whole months) holds exactly the
/// emulator's granules as they are now: each id once, none deleted, the revised cloud cover
/// and footprint.
pub(crate) fn assert_cache_is_the_archive(
    emu: &Emulator,
    out: &Path,
    first: NaiveDate,
    last: NaiveDate,
) {
    for c in Collection::ALL {
        let mut month: BTreeMap<NaiveDate, BTreeMap<String, Value>> = BTreeMap::new();
        for d in month_days(first, last) {
            let truth = emu.granules(c, d);
            let file = daily_file(out, c, d);
            let items = if file.exists() {
                items_of(&file)
            } else {
                BTreeMap::new()
            };
            let ids: BTreeSet<&String> = items.keys().collect();
            let want: BTreeSet<&String> = truth.iter().map(|g| &g.granule_ur).collect();
            assert_eq!(
                ids, want,
                "{c} {d}: the daily file holds the archive's granules"
            );
            for g in &truth {
                let item = &items[&g.granule_ur];
                assert_eq!(
                    item["properties"]["eo:cloud_cover"].as_f64(),
                    g.cloud_cover,
                    "{c} {d} {}: the latest cloud cover",
                    g.granule_ur
                );
                let west = g.bbox().unwrap()[0];
                let got = item["bbox"][0].as_f64().unwrap();
                assert!(
                    (got - west).abs() <= 1e-6,
                    "{}: the latest footprint",
                    g.granule_ur
                );
            }
            month
                .entry(d.with_day(1).unwrap())
                .or_default()
                .extend(items);
        }
        for (m, daily) in month {
            let part = items_of(&partition(out, c, m));
            assert_eq!(
                part.keys().collect::<Vec<_>>(),
                daily.keys().collect::<Vec<_>>(),
                "{c} {m}: the partition holds the month's daily rows"
            );
            for (id, item) in &part {
                assert_eq!(
                    item["properties"]["eo:cloud_cover"], daily[id]["properties"]["eo:cloud_cover"],
                    "{id}"
                );
            }
        }
    }
}

/// The change set of the issue: late granules on ten days (the first and last of the month,
/// one at the month's last second), 30 revisions (one granule twice, one revised then
/// deleted), 20 deletions.
pub(crate) fn month_of_changes(emu: &Emulator) -> ChangeSet {
    let may = |d| day(2024, 5, d);
    let twice = emu.granules(Collection::Hlsl30, may(7))[2]
        .granule_ur
        .clone();
    let doomed = emu.granules(Collection::Hlss30, may(12))[1]
        .granule_ur
        .clone();
    let mut late: Vec<Late> = [1, 3, 6, 9, 14, 17, 20, 24, 28]
        .into_iter()
        .enumerate()
        .map(|(i, d)| Late {
            collection: Collection::ALL[i % 2],
            day: may(d),
            count: 1 + (i as u32 % 2),
            times: vec![],
        })
        .collect();
    late.push(Late {
        collection: Collection::Hlss30,
        day: may(31),
        count: 1,
        times: vec!["2024-05-31T23:59:59Z".parse().unwrap()],
    });
    ChangeSet {
        seed: 5,
        late,
        revise: Revise {
            granules: vec![twice.clone(), twice, doomed.clone()],
            random: 27,
            ..Revise::default()
        },
        delete: Pick {
            granules: vec![doomed],
            random: 19,
            ..Pick::default()
        },
        ..ChangeSet::default()
    }
}

/// Modification times of every file below `dir`.
pub(crate) fn mtimes(dir: &Path) -> BTreeMap<PathBuf, SystemTime> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let t = std::fs::metadata(&p).unwrap().modified().unwrap();
                out.insert(p, t);
            }
        }
    }
    out
}

/// What `status` prints for the state file.
fn status_text(p: &Paths) -> String {
    let o = hls_flow()
        .args(["status", "--state"])
        .arg(&p.state)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn watermark(p: &Paths, c: Collection) -> Option<String> {
    StateStore::open_read_only(&p.state)
        .unwrap()
        .meta(&format!("sync.watermark.{c}"))
        .unwrap()
}

/// The days a change set touched: late granules, revisions and deletions.
pub(crate) fn touched(report: &ChangeReport) -> BTreeSet<(Collection, NaiveDate)> {
    report
        .added
        .iter()
        .chain(&report.revised)
        .chain(&report.deleted)
        .map(|c| (c.collection, c.day))
        .collect()
}

/// A harvested May 2024, then the change set.
async fn may_changed(per_day: u32) -> (Emulator, Paths, ChangeReport) {
    let emu = synthetic(day(2024, 5, 1), day(2024, 5, 31), per_day).await;
    let p = paths();
    run(&emu, &p, &["202405"]);
    let report = emu.apply_changes(&month_of_changes(&emu)).unwrap();
    (emu, p, report)
}

const FIRST: (i32, u32, u32) = (2024, 5, 1);
const LAST: (i32, u32, u32) = (2024, 5, 31);

fn first() -> NaiveDate {
    day(FIRST.0, FIRST.1, FIRST.2)
}

fn last() -> NaiveDate {
    day(LAST.0, LAST.1, LAST.2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_rewrites_what_changed_and_verify_proves_the_cache_current() {
    let (emu, p, report) = may_changed(20).await;
    assert_eq!(report.added.len(), 15);
    assert_eq!(report.revised.len(), 30);
    assert_eq!(report.deleted.len(), 20);
    // Days the change set did not touch.
    let touched = touched(&report);
    let before = mtimes(&p.out);

    let o = verify(&emu, &p);
    assert_eq!(
        o.status.code(),
        Some(3),
        "verify before the sync: {}",
        stderr(&o)
    );
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(text.contains("HLSS30 2024-05-31: CMR has"), "{text}");

    let stale = tempfile::tempdir().unwrap();
    let stale_partition = stale.path().join("part-0.parquet");
    std::fs::copy(
        partition(&p.out, Collection::Hlsl30, first()),
        &stale_partition,
    )
    .unwrap();
    let items_before = emu.counts().item_fetches;
    let o = sync(&emu, &p, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(text.contains("watermark now"), "{text}");
    assert_cache_is_the_archive(&emu, &p.out, first(), last());
    // Only the touched days were harvested again: their items were fetched, no other.
    let refetched = emu.counts().item_fetches - items_before;
    let expected: usize = touched
        .iter()
        .map(|(c, d)| emu.granules(*c, *d).len())
        .sum();
    assert_eq!(refetched, expected as u64, "items of the touched days only");
    // Untouched daily files were not rewritten; the partitions were.
    let after = mtimes(&p.out);
    for c in Collection::ALL {
        for d in month_days(first(), last()) {
            let f = daily_file(&p.out, c, d);
            let same = before.get(&f) == after.get(&f);
            assert_eq!(same, !touched.contains(&(c, d)), "{c} {d}");
        }
        let part = partition(&p.out, c, first());
        assert_ne!(
            before[&part], after[&part],
            "{c}: the month is repartitioned"
        );
    }
    let o = verify(&emu, &p);
    assert_eq!(
        o.status.code(),
        Some(0),
        "verify after the sync: {}",
        stderr(&o)
    );
    let o = cmd(&emu, &p, "verify").arg("--json").output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["days"].as_array().unwrap().len(), 62);
    assert_eq!(v["months"].as_array().unwrap().len(), 2);
    // A stale partition beside current daily files: verify counts the partition's rows day
    // by day, and names the days.
    let current = partition(&p.out, Collection::Hlsl30, first());
    std::fs::copy(&stale_partition, &current).unwrap();
    let o = cmd(&emu, &p, "verify").arg("--json").output().unwrap();
    assert_eq!(o.status.code(), Some(3));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let stale_days: Vec<&Value> = v["days"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["partition"] != d["cmr"])
        .collect();
    let l30_touched = touched
        .iter()
        .filter(|(c, _)| *c == Collection::Hlsl30)
        .count();
    assert!(
        !stale_days.is_empty() && stale_days.len() <= l30_touched,
        "{v}"
    );
    assert!(
        stale_days
            .iter()
            .all(|d| d["collection"] == "HLSL30" && d["daily"] == d["cmr"]),
        "{v}"
    );
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sync_right_after_fetches_no_item_and_rewrites_no_file() {
    let (emu, p, _) = may_changed(12).await;
    let o = sync(&emu, &p, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let first_mark = watermark(&p, Collection::Hlsl30).unwrap();
    let files = mtimes(&p.out);
    let before = emu.counts();
    let o = sync(&emu, &p, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let after = emu.counts();
    assert_eq!(after.item_fetches, before.item_fetches, "no item fetched");
    assert_eq!(after.echo10_pages, before.echo10_pages);
    // Per collection: one page of changes (all applied already) and one deleted list.
    assert_eq!(after.search_pages - before.search_pages, 2);
    assert_eq!(after.deleted_lists - before.deleted_lists, 2);
    assert_eq!(after.total - before.total, 4, "four CMR requests in all");
    assert_eq!(mtimes(&p.out), files, "no file rewritten");
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(text.contains("0 days harvested again"), "{text}");
    // The watermark moved forward (never back).
    let second_mark = watermark(&p, Collection::Hlsl30).unwrap();
    assert!(second_mark >= first_mark, "{second_mark} < {first_mark}");

    // `--since` forces an older watermark: asked from before the month's granules were
    // ingested, CMR lists every granule of the month as changed, so every day is harvested
    // again (items fetched), and the cache still is the archive.
    let before = emu.counts();
    let o = sync(&emu, &p, &["--since", "2024-05-01T00:00:00Z"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let after = emu.counts();
    assert!(
        after.item_fetches > before.item_fetches,
        "--since asked again from an older instant"
    );
    assert_cache_is_the_archive(&emu, &p.out, first(), last());
    let third_mark = watermark(&p, Collection::Hlsl30).unwrap();
    assert!(third_mark >= second_mark, "{third_mark} < {second_mark}");
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_killed_with_sigkill_completes_when_started_again() {
    let emu = synthetic(first(), last(), 60).await;
    let p = paths();
    run(&emu, &p, &["202405"]);
    let mark = watermark(&p, Collection::Hlss30);
    emu.apply_changes(&ChangeSet {
        seed: 9,
        revise: Revise {
            random: 50,
            ..Revise::default()
        },
        delete: Pick {
            random: 10,
            ..Pick::default()
        },
        ..ChangeSet::default()
    })
    .unwrap();
    let bin = assert_cmd::cargo::cargo_bin("hls-flow");
    let mut child = std::process::Command::new(&bin)
        .arg("sync")
        .arg("--state")
        .arg(&p.state)
        .args(["--no-progress", "--max-concurrent-days", "1"])
        .args(["--source", "echo10", "--cmr-url", &emu.base_url()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let done = StateStore::open_read_only(&p.state).ok().and_then(|s| {
            let run = s.last_run().ok()??;
            (run.command == "sync").then_some(())?;
            let tasks = s.tasks().ok()?;
            Some(
                // Harvests: the changes tasks come first, the kill falls among the days.
                tasks
                    .iter()
                    .filter(|t| t.run_id == Some(run.id) && t.state == TaskState::Succeeded)
                    .filter(|t| t.spec.kind == TaskKind::Harvest)
                    .count(),
            )
        });
        if done.unwrap_or(0) >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "the sync made no progress");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the sync ended too early"
        );
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // Killed before it completed: the watermark is the one the sync began with.
    assert!(mark.is_none(), "no sync before: no watermark");
    let killed_mark = watermark(&p, Collection::Hlss30);
    assert!(killed_mark.is_some());
    let o = sync(&emu, &p, &["--source", "echo10"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_ne!(
        watermark(&p, Collection::Hlss30),
        killed_mark,
        "advanced now"
    );
    assert_cache_is_the_archive(&emu, &p.out, first(), last());
    let o = verify(&emu, &p);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_during_a_sync_lose_nothing_and_a_failed_deleted_list_keeps_the_watermark() {
    let (emu, p, _) = may_changed(12).await;
    let kinds = [
        FaultKind::InternalError,
        FaultKind::Unavailable,
        FaultKind::NotStac,
        FaultKind::IdMismatch,
        FaultKind::TimedOut,
        FaultKind::Truncated,
        FaultKind::InvalidJson,
        FaultKind::CutMidBody,
        FaultKind::DuplicateEntry,
        FaultKind::HitsChanged,
    ];
    emu.set_faults(Faults::random(0.1, &kinds, 11));
    let o = sync(&emu, &p, &["--task-attempts", "5", "--max-attempts", "8"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!emu.fault_counts().is_empty(), "faults were injected");
    emu.set_faults(Faults::default());
    assert_cache_is_the_archive(&emu, &p.out, first(), last());

    // A deletion, then a deleted-granules list that fails: the sync fails, the watermark
    // stays, and the next sync finds the deletion.
    let gone = emu.granules(Collection::Hlsl30, day(2024, 5, 20))[0]
        .granule_ur
        .clone();
    emu.apply_changes(&ChangeSet {
        delete: Pick {
            granules: vec![gone.clone()],
            ..Pick::default()
        },
        ..ChangeSet::default()
    })
    .unwrap();
    let marks = [
        watermark(&p, Collection::Hlsl30),
        watermark(&p, Collection::Hlss30),
    ];
    emu.set_faults(Faults {
        fail_every_nth_deleted: NonZeroU64::new(1),
        ..Faults::default()
    });
    let o = sync(&emu, &p, &["--max-attempts", "2"]);
    // The changes tasks failed (tasks failed: exit code 3), naming the query.
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("failed: changes/HLSL30") && err.contains("deleted-granules.json"),
        "{err}"
    );
    assert_eq!(
        [
            watermark(&p, Collection::Hlsl30),
            watermark(&p, Collection::Hlss30)
        ],
        marks,
        "the watermark did not advance"
    );
    // `status` says so.
    let status = status_json(&p);
    assert_eq!(
        status["sync"]["watermarks"]["HLSL30"],
        marks[0].clone().unwrap().as_str()
    );
    assert!(status["sync"]["unfinished_since"].is_string(), "{status}");
    let text = status_text(&p);
    assert!(text.contains("synced with CMR as of: HLSL30 "), "{text}");
    assert!(text.contains("has not completed"), "{text}");
    emu.set_faults(Faults::default());
    let o = sync(&emu, &p, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let file = daily_file(&p.out, Collection::Hlsl30, day(2024, 5, 20));
    assert!(
        !items_of(&file).contains_key(&gone),
        "the deletion is applied"
    );
    assert_cache_is_the_archive(&emu, &p.out, first(), last());
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_changes_task_shows_in_status_and_retry_failed_completes_the_sync() {
    let (emu, p, _) = may_changed(8).await;
    let began = hls_flow::engine::checkpoint::sqlite::parse_time(
        &Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    )
    .unwrap();
    emu.set_faults(Faults {
        fail_every_nth_deleted: NonZeroU64::new(1),
        ..Faults::default()
    });
    let before = emu.counts();
    let o = sync(&emu, &p, &["--max-attempts", "1", "--task-attempts", "2"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert_eq!(
        emu.counts().item_fetches,
        before.item_fetches,
        "no day harvested: the changes query failed"
    );
    let status = status_json(&p);
    let failed: BTreeSet<&str> = status["failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["key"].as_str().unwrap())
        .collect();
    assert_eq!(failed, BTreeSet::from(["changes/HLSL30", "changes/HLSS30"]));
    for t in status["failed"].as_array().unwrap() {
        assert_eq!(t["kind"], "changes");
        assert_eq!(t["attempts"], 2);
        let e = t["last_error"].as_str().unwrap();
        assert!(e.contains("deleted-granules.json"), "{e}");
    }
    assert_eq!(status["sync"]["changes"]["HLSL30"], "failed", "{status}");
    assert!(status["sync"]["unfinished_since"].is_string(), "{status}");
    // The first sync's watermark (before the harvest began), not advanced.
    let marks = [
        watermark(&p, Collection::Hlsl30).unwrap(),
        watermark(&p, Collection::Hlss30).unwrap(),
    ];
    for m in &marks {
        let m = hls_flow::engine::checkpoint::sqlite::parse_time(m).unwrap();
        assert!(
            m < began - chrono::Duration::minutes(30),
            "{m} not advanced"
        );
    }
    let text = status_text(&p);
    assert!(text.contains("changes/HLSL30 (2 attempts)"), "{text}");
    assert!(text.contains("HLSL30 failed"), "{text}");

    // `retry-failed` runs the queries again, the days they requeue, and completes the sync.
    emu.set_faults(Faults::default());
    let o = cmd(&emu, &p, "retry-failed").output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_cache_is_the_archive(&emu, &p.out, first(), last());
    let status = status_json(&p);
    assert_eq!(status["failed"].as_array().unwrap().len(), 0, "{status}");
    assert_eq!(status["sync"]["changes"]["HLSS30"], "succeeded", "{status}");
    assert!(status["sync"]["unfinished_since"].is_null(), "{status}");
    for (c, old) in [Collection::Hlsl30, Collection::Hlss30]
        .into_iter()
        .zip(&marks)
    {
        let new = watermark(&p, c).unwrap();
        assert!(new > *old, "{c}: {new} advanced");
        let new = hls_flow::engine::checkpoint::sqlite::parse_time(&new).unwrap();
        assert!(new >= began - chrono::Duration::hours(1), "{c}: {new}");
    }
    let o = verify(&emu, &p);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    // The sync is complete: the next one finds every change applied.
    let before = emu.counts();
    let o = sync(&emu, &p, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(emu.counts().item_fetches, before.item_fetches);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_month_across_the_thumbnail_change_reads_with_one_schema_after_a_sync() {
    let (start, end) = (day(2026, 5, 1), day(2026, 6, 30));
    let emu = synthetic(start, end, 8).await;
    let p = paths();
    run(&emu, &p, &["20260501", "20260630"]);
    emu.apply_changes(&ChangeSet {
        seed: 3,
        late: vec![
            Late {
                collection: Collection::Hlss30,
                day: day(2026, 6, 10),
                count: 2,
                times: vec![],
            },
            Late {
                collection: Collection::Hlss30,
                day: day(2026, 6, 20),
                count: 2,
                times: vec![],
            },
        ],
        revise: Revise {
            random: 10,
            collections: vec![Collection::Hlss30],
            from: Some(day(2026, 6, 1)),
            ..Revise::default()
        },
        ..ChangeSet::default()
    })
    .unwrap();
    let before = mtimes(&p.out);
    let o = sync(&emu, &p, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_cache_is_the_archive(&emu, &p.out, start, end);
    // May did not change: none of its files, partitions included, was rewritten.
    let after = mtimes(&p.out);
    let may: Vec<&PathBuf> = before
        .keys()
        .filter(|f| {
            let f = f.to_string_lossy();
            f.contains("/2026/05/") || f.contains("month=05")
        })
        .collect();
    assert_eq!(may.len(), 2 * 31 + 2);
    assert!(may.iter().all(|f| before[*f] == after[*f]));
    let june = partition(&p.out, Collection::Hlss30, day(2026, 6, 1));
    assert_ne!(before[&june], after[&june]);
    // Items after 2026-06-16 come without a thumbnail, the others with one.
    let june = items_of(&partition(&p.out, Collection::Hlss30, day(2026, 6, 1)));
    let cut: DateTime<Utc> = "2026-06-17T00:00:00Z".parse().unwrap();
    let mut with = 0;
    for (id, item) in &june {
        let at: DateTime<Utc> = item["properties"]["datetime"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let has = item["assets"].get("thumbnail").is_some();
        assert_eq!(has, at < cut, "{id} at {at}");
        with += usize::from(has);
    }
    assert!(with > 0 && with < june.len(), "both shapes in the month");
    // DuckDB reads both months' partitions with one schema (no union_by_name).
    let glob = p.out.join("HLSS30_2.0/year=*/month=*/*.parquet");
    let script = format!(
        "import duckdb\nprint(duckdb.connect().execute(\"SELECT count(*) FROM read_parquet('{}')\").fetchone()[0])",
        glob.display()
    );
    let out = std::process::Command::new(python())
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: usize = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let truth: usize = month_days(start, end)
        .map(|d| emu.granules(Collection::Hlss30, d).len())
        .sum();
    assert_eq!(rows, truth);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_and_verify_refuse_bad_input_in_one_line() {
    let emu = synthetic(first(), day(2024, 5, 3), 6).await;
    let p = paths();
    // No state file yet: nothing to sync or verify (exit 2), and none is made.
    one_line_error(&sync(&emu, &p, &[]), 2, "does not exist");
    one_line_error(&verify(&emu, &p), 2, "does not exist");
    assert!(!p.state.exists());
    run(&emu, &p, &["20240501", "20240503"]);
    one_line_error(&sync(&emu, &p, &["--since", "yesterday"]), 2, "--since");
    one_line_error(
        &cmd(&emu, &p, "verify").arg("20240599").output().unwrap(),
        2,
        "20240599",
    );
    // Three days, no whole month: verify checks the days, and no partition.
    let o = cmd(&emu, &p, "verify").arg("--json").output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["days"].as_array().unwrap().len(), 6);
    assert!(v["months"].as_array().unwrap().is_empty());
    assert!(
        v["days"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["partition"].is_null())
    );
    // A stored watermark that is not a time is named (exit 2), and nothing is asked.
    StateStore::open_exclusive(&p.state)
        .unwrap()
        .set_meta("sync.watermark.HLSL30", "soon")
        .unwrap();
    let before = emu.counts().total;
    one_line_error(&sync(&emu, &p, &[]), 2, "sync.watermark.HLSL30");
    assert_eq!(emu.counts().total, before);
    emu.shutdown().await;
}
