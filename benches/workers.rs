//! Workers sharing a PostgreSQL checkpoint: how the throughput grows with worker processes,
//! and what the PostgreSQL checkpoint costs per task. A real PostgreSQL is started as the
//! tests start it (`tests/postgres/server.rs`: Debian's `initdb` and `pg_ctl` on loopback).
//!
//! ```text
//! cargo bench --bench workers                 # 3 runs of each
//! cargo bench --bench workers -- --runs 5
//! ```
//!
//! 1. Scaling. The emulator serves February 2025 with 100 granules a day (both collections),
//!    every item request answered 60 ms late, as LP DAAC's are from afar. On a fresh
//!    database each time, `run 202502 --state postgres://…` works alone (1 worker), then
//!    with two `hls-flow worker`s beside it (3 workers). Each process takes 2 days at once
//!    and 8 item requests at once within a day: what one machine's share of LP DAAC would
//!    be, so that the run is bound by the latency, not by this machine's 2 cores. Figures:
//!    the run's wall time (from its start to the end of its last task), items a second,
//!    and the ratio of 3 workers to 1.
//! 2. Overhead. A year of tiny days (20 granules a day, no latency: 754 tasks) run by one
//!    process with a state file, then with PostgreSQL, same flags: the difference in wall
//!    time per task is what the PostgreSQL checkpoint (claims, leases, heartbeats, events,
//!    fencing) costs.

mod common;

#[path = "../tests/postgres/server.rs"]
mod server;

use common::{emulator, emulator_with, median, timed};
use hls_flow_emulator::Faults;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

/// Granules a day (each collection) of the scaling month.
const PER_DAY: u32 = 100;
/// Latency of every item request in the scaling month.
const ITEM_LATENCY_MS: u64 = 60;

fn hls_flow() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hls-flow"));
    c.env_remove("HLS_FLOW_STATE").env_remove("HLS_FLOW_LOG");
    c
}

/// `hls-flow run ARGS`, its wall time; panics if it fails.
fn run(args: &[&str]) -> f64 {
    let t = Instant::now();
    let out = hls_flow()
        .arg("run")
        .args(args)
        .output()
        .expect("run hls-flow");
    let secs = t.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "hls-flow run {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    secs
}

/// Tasks succeeded and items written, by `status --json`.
fn status(state: &str) -> (u64, u64) {
    let out = hls_flow()
        .args(["status", "--json", "--state", state])
        .output()
        .expect("status");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    (n(&j["totals"]["succeeded"]), n(&j["items_written"]))
}

/// A worker on `state`, until it is stopped.
fn worker(state: &str, cmr: &str, limits: &[&str]) -> Child {
    hls_flow()
        .args([
            "worker",
            "--state",
            state,
            "--cmr-url",
            cmr,
            "--no-progress",
        ])
        .args(limits)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start a worker")
}

/// Stops a worker as Kubernetes does (SIGTERM) and checks that it ended well.
fn stop(w: Child) {
    let pid = w.id().to_string();
    let st = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(st.success());
    let out = w.wait_with_output().expect("a worker's end");
    assert!(
        out.status.success(),
        "a worker failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One scaling run with `workers` processes in all (the `run` and `workers - 1` workers):
/// its wall time.
fn scaling_run(workers: usize, cmr: &str, out: &Path) -> f64 {
    let state = server::database().expect("PostgreSQL (Debian's postgresql package)");
    let limits = [
        "--max-concurrent-days",
        "2",
        "--max-concurrent-per-day",
        "8",
    ];
    // Started first, the workers wait for the plan the run makes.
    let others: Vec<Child> = (1..workers).map(|_| worker(&state, cmr, &limits)).collect();
    let output = out.display().to_string();
    let mut args = vec!["202502", "--output", &output, "--state", &state];
    args.extend(["--cmr-url", cmr, "--no-progress"]);
    args.extend(limits);
    let secs = run(&args);
    others.into_iter().for_each(stop);
    let (tasks, items) = status(&state);
    assert_eq!(tasks, 28 * 2 + 2, "every task of the month succeeded");
    assert_eq!(items, u64::from(PER_DAY) * 28, "every item written");
    secs
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runs: usize = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
        .max(1);
    if server::server().is_none() {
        eprintln!("no PostgreSQL here: install Debian's postgresql package");
        std::process::exit(1);
    }
    let work = tempfile::tempdir().expect("a temporary folder");

    // 1. Scaling.
    let latency = Faults {
        item_latency_ms: ITEM_LATENCY_MS,
        ..Faults::default()
    };
    let emu = emulator_with("2025-02-01", "2025-02-28", PER_DAY, latency);
    let items = f64::from(PER_DAY * 28);
    let mut rates = Vec::new();
    for workers in [1usize, 3] {
        let secs: Vec<f64> = (0..runs)
            .map(|i| {
                scaling_run(
                    workers,
                    &emu.url,
                    &work.path().join(format!("s{workers}-{i}")),
                )
            })
            .collect();
        let secs = median(secs);
        rates.push(items / secs);
        println!(
            "scaling, {workers} worker(s): {secs:.2} s for {items} items, {:.0} items/s",
            items / secs
        );
    }
    println!(
        "scaling: 3 workers / 1 worker = {:.2}x",
        rates[1] / rates[0]
    );

    // 2. Overhead per task.
    let emu = emulator("2023-01-01", "2023-12-31", 20);
    let tasks = 365.0 * 2.0 + 24.0;
    let each = |state: &dyn Fn(usize) -> String, name: &str| -> f64 {
        let secs: Vec<f64> = (0..runs)
            .map(|i| {
                let out = work
                    .path()
                    .join(format!("{name}-{i}"))
                    .display()
                    .to_string();
                let state = state(i);
                timed(&[
                    "run",
                    "20230101",
                    "20231231",
                    "--output",
                    &out,
                    "--state",
                    &state,
                    "--cmr-url",
                    &emu.url,
                    "--max-concurrent-days",
                    "8",
                    "--no-progress",
                ])
                .0
            })
            .collect();
        let secs = median(secs);
        println!("overhead, {name}: {secs:.2} s for {tasks} tasks");
        secs
    };
    let dir = work.path().to_path_buf();
    let file = each(
        &|i| dir.join(format!("state-{i}.sqlite")).display().to_string(),
        "state file",
    );
    let pg = each(&|_| server::database().expect("a database"), "PostgreSQL");
    println!(
        "overhead of the PostgreSQL checkpoint: {:.2} ms a task",
        (pg - file) * 1000.0 / tasks
    );
}
