//! The checkpointed DAG end to end: `run`, resume after SIGKILL, outages and
//! `retry-failed`, the state lock, and `status --json`.

use crate::common::{hls_flow, one_line_error};
use crate::harvest::{day, read_all, synthetic};
use hls_flow::Collection;
use hls_flow::engine::checkpoint::sqlite::StateStore;
use hls_flow_emulator::{Emulator, Faults};
use serde_json::Value;
use std::collections::BTreeSet;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

pub struct Paths {
    _dir: tempfile::TempDir,
    pub out: PathBuf,
    pub state: PathBuf,
}

pub fn paths() -> Paths {
    let dir = tempfile::tempdir().unwrap();
    Paths {
        out: dir.path().join("out"),
        state: dir.path().join("state").join("hls.sqlite"),
        _dir: dir,
    }
}

fn cmd(emu: &Emulator, p: &Paths, sub: &str) -> assert_cmd::Command {
    let mut c = hls_flow();
    c.arg(sub)
        .arg("--state")
        .arg(&p.state)
        .args(["--no-progress", "--cmr-url", &emu.base_url()])
        .args(["--retry-min-delay-ms", "5", "--retry-max-delay-ms", "20"]);
    c
}

fn run_month(emu: &Emulator, p: &Paths) -> Output {
    cmd(emu, p, "run")
        .arg("202502")
        .arg("--output")
        .arg(&p.out)
        .output()
        .unwrap()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

pub fn status_json(p: &Paths) -> Value {
    let o = hls_flow()
        .args(["status", "--json", "--state"])
        .arg(&p.state)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

pub fn ids_in(dir: &Path) -> BTreeSet<String> {
    read_all(dir).into_keys().collect()
}

pub fn emulator_ids(
    emu: &Emulator,
    c: Collection,
    days: impl Iterator<Item = chrono::NaiveDate>,
) -> BTreeSet<String> {
    days.flat_map(|d| emu.granules(c, d))
        .map(|g| g.granule_ur)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_month_ends_in_hive_partitions_and_a_second_run_does_nothing() {
    let emu = synthetic(day(2025, 2, 1), day(2025, 2, 28), 6).await;
    let p = paths();
    let o = run_month(&emu, &p);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let feb = hls_flow::period::DayRange::parse(&["202502"]).unwrap();
    for c in Collection::ALL {
        let part = p.out.join(c.stac_id()).join("year=2025").join("month=02");
        let expected = emulator_ids(&emu, c, feb.days());
        let read = read_all(&part);
        assert_eq!(
            read.keys().cloned().collect::<BTreeSet<_>>(),
            expected,
            "{c}"
        );
        assert!(read.values().all(|(_, v)| v["collection"] == c.stac_id()));
        // The daily files hold the same granules.
        assert_eq!(ids_in(&p.out.join("daily").join(c.stac_id())), expected);
    }

    // status --json matches the files.
    let s = status_json(&p);
    assert_eq!(s["totals"]["succeeded"], 58);
    assert_eq!(s["totals"]["failed"], 0);
    for m in s["months"].as_array().unwrap() {
        let c: Collection = m["collection"].as_str().unwrap().parse().unwrap();
        let expected = emulator_ids(&emu, c, feb.days()).len() as u64;
        assert_eq!(m["items_written"], expected, "{m}");
        assert_eq!(m["partition_rows"], expected, "{m}");
        assert_eq!(m["harvest"]["succeeded"], 28);
        assert_eq!(m["repartition"], "succeeded");
    }

    // Over a complete range: no network work at all.
    let before = emu.counts();
    let o = run_month(&emu, &p);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("0 done now, 58 done before"));
    assert_eq!(emu.counts(), before);

    // A daily file deleted or damaged (cut short: no footer) behind hls-flow's back is
    // noticed, and rebuilt with its month.
    let daily = |c: Collection, d: u32| {
        p.out.join(format!(
            "daily/{0}/2025/02/{0}-2025-02-{d:02}.parquet",
            c.stac_id()
        ))
    };
    let deleted = daily(Collection::Hlss30, 14);
    std::fs::remove_file(&deleted).unwrap();
    let damaged = daily(Collection::Hlsl30, 20);
    let bytes = std::fs::read(&damaged).unwrap();
    std::fs::write(&damaged, &bytes[..bytes.len() / 2]).unwrap();
    let o = run_month(&emu, &p);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("4 done now"), "{stdout}");
    assert!(deleted.exists());
    for c in Collection::ALL {
        for dir in [format!("daily/{}", c.stac_id()), c.stac_id().to_string()] {
            assert_eq!(ids_in(&p.out.join(dir)), emulator_ids(&emu, c, feb.days()));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_with_sigkill_completes_when_started_again() {
    let emu = synthetic(day(2024, 9, 1), day(2024, 9, 12), 60).await;
    let p = paths();
    let args = |c: &mut std::process::Command| {
        c.arg("run")
            .args([
                "20240901",
                "20240912",
                "--no-progress",
                "--max-concurrent-days",
                "1",
            ])
            .arg("--output")
            .arg(&p.out)
            .arg("--state")
            .arg(&p.state)
            .args(["--cmr-url", &emu.base_url()]);
    };
    let bin = assert_cmd::cargo::cargo_bin("hls-flow");
    let mut first = std::process::Command::new(&bin);
    args(&mut first);
    let mut child = first
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until a few days are done, then kill it without warning.
    let deadline = Instant::now() + Duration::from_secs(60);
    let done_before_kill = loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let done = StateStore::open_read_only(&p.state)
            .ok()
            .and_then(|s| s.tasks().ok())
            .map(|t| {
                t.into_iter()
                    .filter(|t| {
                        t.state == hls_flow::engine::checkpoint::sqlite::TaskState::Succeeded
                    })
                    .map(|t| t.key)
                    .collect::<BTreeSet<_>>()
            })
            .unwrap_or_default();
        if done.len() >= 4 {
            // `status` reads the live run: its progress and an ETA.
            let s = status_json(&p);
            let live = &s["live_run"];
            assert!(live.is_object(), "a live run: {s}");
            assert!(live["done"].as_u64().unwrap() >= 4, "{live}");
            assert!(live["remaining"].as_u64().unwrap() > 0, "{live}");
            assert!(live["eta_seconds"].is_u64(), "{live}");
            break done;
        }
        assert!(Instant::now() < deadline, "the first run made no progress");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the first run ended too early"
        );
    };
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let state = StateStore::open_read_only(&p.state).unwrap();
    let tasks = state.tasks().unwrap();
    drop(state);
    assert!(
        tasks
            .iter()
            .any(|t| t.state != hls_flow::engine::checkpoint::sqlite::TaskState::Succeeded),
        "killed before the end"
    );
    let done: BTreeSet<String> = tasks
        .iter()
        .filter(|t| t.state == hls_flow::engine::checkpoint::sqlite::TaskState::Succeeded)
        .map(|t| t.key.clone())
        .collect();
    assert!(done.is_superset(&done_before_kill));
    // Granules of the days that were not done: exactly what the second run may fetch.
    let mut left = 0u64;
    for t in &tasks {
        if t.state != hls_flow::engine::checkpoint::sqlite::TaskState::Succeeded
            && let Some(d) = t.spec.day
        {
            left += emu.granules(t.spec.collection, d).len() as u64;
        }
    }
    let before = emu.counts();

    let mut second = std::process::Command::new(&bin);
    args(&mut second);
    let o = second.output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let after = emu.counts();
    assert_eq!(
        after.item_fetches - before.item_fetches,
        left,
        "only the days not done were fetched, each granule once"
    );
    let sept = hls_flow::period::DayRange::parse(&["20240901", "20240912"]).unwrap();
    for c in Collection::ALL {
        assert_eq!(
            ids_in(&p.out.join("daily").join(c.stac_id())),
            emulator_ids(&emu, c, sept.days())
        );
    }
    let s = status_json(&p);
    assert_eq!(s["totals"]["failed"], 0);
    assert_eq!(s["totals"]["pending"], 0);
    assert_eq!(s["totals"]["succeeded"], 24);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_says_interrupted_after_a_sigkill() {
    let emu = synthetic(day(2024, 9, 1), day(2024, 9, 6), 40).await;
    // Every answer comes late, so that the run is surely still going when it is killed.
    emu.set_faults(Faults {
        rate: 1.0,
        kinds: vec![hls_flow_emulator::FaultKind::Slow],
        slow_ms: 30_000,
        ..Faults::default()
    });
    let p = paths();
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("hls-flow"))
        .args(["run", "20240901", "20240906", "--no-progress"])
        .args(["--max-concurrent-days", "1", "--cmr-url", &emu.base_url()])
        .arg("--output")
        .arg(&p.out)
        .arg("--state")
        .arg(&p.state)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let running = StateStore::open_read_only(&p.state)
            .ok()
            .and_then(|s| s.last_run().ok().flatten())
            .is_some_and(|r| r.status == "running");
        if running {
            let s = status_json(&p);
            assert!(s["live_run"].is_object(), "live while it runs: {s}");
            assert_eq!(s["last_run"]["status"], "running");
            break;
        }
        assert!(Instant::now() < deadline, "the run never started");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended too early"
        );
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let s = status_json(&p);
    assert!(s["live_run"].is_null(), "no live run after the kill: {s}");
    assert_eq!(s["last_run"]["status"], "interrupted", "{s}");
    let o = hls_flow()
        .args(["status", "--state"])
        .arg(&p.state)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("no live run; last run 1 ("), "{text}");
    assert!(text.contains(": interrupted"), "{text}");
    assert!(!text.contains(": running"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_fails_tasks_and_retry_failed_completes_the_run() {
    let emu = synthetic(day(2024, 4, 29), day(2024, 5, 1), 10).await;
    let p = paths();
    emu.set_faults(Faults {
        fail_every_nth_search: NonZeroU64::new(1),
        fail_every_nth_item: NonZeroU64::new(1),
        status: 503,
        ..Faults::default()
    });
    let o = cmd(&emu, &p, "run")
        .args([
            "20240429",
            "20240430",
            "--max-attempts",
            "2",
            "--task-attempts",
            "2",
        ])
        .arg("--output")
        .arg(&p.out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("failed: harvest/HLSL30/2024-04-29"),
        "{}",
        stderr(&o)
    );

    let s = status_json(&p);
    assert_eq!(s["totals"]["failed"], 4);
    for t in s["failed"].as_array().unwrap() {
        assert_eq!(t["attempts"], 2);
        assert!(t["last_error"].as_str().unwrap().contains("503"), "{t}");
    }
    let o = hls_flow()
        .args(["status", "--state"])
        .arg(&p.state)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("failed tasks (4)"), "{text}");
    assert!(
        text.contains("harvest/HLSS30/2024-04-30 (2 attempts)"),
        "{text}"
    );

    // CMR recovers.
    emu.set_faults(Faults::default());
    let o = cmd(&emu, &p, "retry-failed")
        .args(["--collection", "HLSL30"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(status_json(&p)["totals"]["failed"], 2);
    let o = cmd(&emu, &p, "retry-failed").output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let s = status_json(&p);
    assert_eq!(
        (
            s["totals"]["failed"].clone(),
            s["totals"]["succeeded"].clone()
        ),
        (0.into(), 4.into())
    );
    let o = cmd(&emu, &p, "retry-failed").output().unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains("nothing to retry"));
    let all = emulator_ids(
        &emu,
        Collection::Hlsl30,
        [day(2024, 4, 29), day(2024, 4, 30)].into_iter(),
    );
    assert_eq!(ids_in(&p.out.join("daily").join("HLSL30_2.0")), all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_on_a_live_state_file_is_refused() {
    let emu = synthetic(day(2024, 5, 1), day(2024, 5, 1), 4).await;
    let p = paths();
    std::fs::create_dir_all(p.state.parent().unwrap()).unwrap();
    let live = StateStore::open_exclusive(&p.state).unwrap();
    let o = cmd(&emu, &p, "run")
        .arg("20240501")
        .arg("--output")
        .arg(&p.out)
        .output()
        .unwrap();
    let line = one_line_error(&o, 1, "in use by a live run");
    assert!(
        line.contains(&format!("pid {}", std::process::id())),
        "{line}"
    );
    assert_eq!(emu.counts().total, 0);
    // Readers are welcome.
    let o = hls_flow()
        .args(["status", "--state"])
        .arg(&p.state)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    drop(live);
    let o = cmd(&emu, &p, "run")
        .arg("20240501")
        .arg("--output")
        .arg(&p.out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}
