//! The chaos test: a month of synthetic days × both collections, every kind of fault on
//! ~10 % of requests, and `hls-flow run` killed with SIGKILL twice and started again. In the
//! end every granule of the month is in the daily files and in the monthly partitions
//! exactly once, and the state shows every task succeeded.

use crate::harvest::{day, read_all, synthetic};
use crate::run::{Paths, emulator_ids, paths, status_json, stderr};
use hls_flow::Collection;
use hls_flow::engine::checkpoint::sqlite::{StateStore, TaskState};
use hls_flow::period::DayRange;
use hls_flow_emulator::{Emulator, FaultKind, Faults};
use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn command(emu: &Emulator, p: &Paths) -> Command {
    let mut c = Command::new(assert_cmd::cargo::cargo_bin("hls-flow"));
    c.args([
        "run",
        "202502",
        "--no-progress",
        "--cmr-url",
        &emu.base_url(),
    ])
    .arg("--output")
    .arg(&p.out)
    .arg("--state")
    .arg(&p.state)
    // Small pages, so that a day has several; a short timeout, so that slow answers
    // time out; quick retries, so that the test is quick.
    .args(["--page-size", "5", "--request-timeout", "0.3"])
    .args(["--max-attempts", "10", "--task-attempts", "10"])
    .args(["--retry-min-delay-ms", "2", "--retry-max-delay-ms", "50"])
    .env_remove("HLS_FLOW_CMR_URL");
    c
}

fn succeeded(p: &Paths) -> usize {
    StateStore::open_read_only(&p.state)
        .ok()
        .and_then(|s| s.tasks().ok())
        .map_or(0, |t| {
            t.iter().filter(|t| t.state == TaskState::Succeeded).count()
        })
}

/// Starts a run and kills it (SIGKILL) once `more` tasks have succeeded since it started.
async fn run_and_kill(emu: &Emulator, p: &Paths, more: usize) {
    let before = succeeded(p);
    let mut child: Child = command(emu, p)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while succeeded(p) < before + more {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        assert!(Instant::now() < deadline, "the run made no progress");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_of_every_kind_and_two_sigkills_lose_and_duplicate_nothing() {
    let faults = Faults {
        slow_ms: 600,
        ..Faults::random(0.1, &FaultKind::ALL, 2025)
    };
    let emu = synthetic(day(2025, 2, 1), day(2025, 2, 28), 40).await;
    emu.set_faults(faults);
    let p = paths();

    run_and_kill(&emu, &p, 12).await;
    run_and_kill(&emu, &p, 12).await;
    let killed_with = succeeded(&p);
    assert!(killed_with < 58, "work was left for the last run");

    // What a kill can leave besides: an upload's staging file and the run's temporary
    // files. Plant one of each too; the next run (holding the lock) clears them.
    let staged = p
        .out
        .join("daily/HLSS30_2.0/2025/02/HLSS30_2.0-2025-02-03.parquet#7");
    std::fs::create_dir_all(staged.parent().unwrap()).unwrap();
    std::fs::write(&staged, b"PAR1 half").unwrap();
    let scratch = p.state.with_extension("sqlite.tmp");
    std::fs::create_dir_all(&scratch).unwrap();
    std::fs::write(scratch.join(".tmpAbC123"), b"half a day").unwrap();

    let o = command(&emu, &p).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!staged.exists());
    assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 0);

    // Every kind of fault was injected, ~10 % of all requests.
    let injected = emu.fault_counts();
    eprintln!("injected: {injected:?}; {:?}", emu.counts());
    for kind in FaultKind::ALL {
        assert!(
            injected.get(kind.name()).copied().unwrap_or(0) > 0,
            "{kind} never injected: {injected:?}"
        );
    }
    let counts = emu.counts();
    let share = counts.faults_injected as f64 / counts.total as f64;
    assert!((0.05..0.2).contains(&share), "{share}: {counts:?}");

    // Every granule exactly once (read_all fails on an id written twice), in the daily
    // files and in the month's partition.
    let feb = DayRange::parse(&["202502"]).unwrap();
    for c in Collection::ALL {
        let expected = emulator_ids(&emu, c, feb.days());
        assert!(expected.len() > 300, "{c}: {}", expected.len());
        let daily = read_all(&p.out.join("daily").join(c.stac_id()));
        assert_eq!(daily.keys().cloned().collect::<BTreeSet<_>>(), expected);
        let part = p.out.join(c.stac_id()).join("year=2025").join("month=02");
        let monthly = read_all(&part);
        assert_eq!(monthly.keys().cloned().collect::<BTreeSet<_>>(), expected);
    }

    // The state: every task succeeded, nothing missing.
    let s = status_json(&p);
    assert_eq!(s["totals"]["succeeded"], 58, "{s}");
    assert_eq!(s["totals"]["failed"], 0, "{s}");
    assert_eq!(s["totals"]["pending"], 0, "{s}");
    assert_eq!(s["totals"]["running"], 0, "{s}");
}
