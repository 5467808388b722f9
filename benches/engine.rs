//! The engine's own cost: a two-year `run` of tiny days, where the work per task is small and
//! what the scheduler and the checkpoint cost per task shows.
//!
//! ```text
//! cargo bench --bench engine                 # 3 runs
//! cargo bench --bench engine -- --runs 5
//! ```
//!
//! The emulator serves 2023-01-01 to 2024-12-31 with 20 granules a day (each collection);
//! `hls-flow run 20230101 20241231 --max-concurrent-days 8` then harvests 1,462 days and
//! repartitions 48 months (1,510 tasks) into a fresh folder with a fresh state file, under
//! `/usr/bin/time`: the median wall time and peak RSS over the runs, after an untimed first
//! run (in which the emulator, on the same cores, renders each item on its first request). Then `status` (and
//! `status --json`) on the state file the last run left, the median of 10.
//!
//! Each run's folder is kept until all runs are done: removing one run's ~3,000 files just
//! before the next made ext4 search past the inodes freed in the last 30 s for each file the
//! next run created (`recently_deleted`), ~1.5 s of a 5 s run, a cost of the benchmark's own
//! deletions, not of the engine.

mod common;

use common::{emulator, median, timed};
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

/// The wall time of `hls-flow args`, measured here (finer than `/usr/bin/time`).
fn wall(args: &[&str]) -> f64 {
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_hls-flow"))
        .args(args)
        .output()
        .expect("run hls-flow");
    let secs = t.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "hls-flow {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
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
    let work = PathBuf::from(std::env::var("HLS_FLOW_BENCH_DIR").unwrap_or_else(|_| {
        std::env::temp_dir()
            .join("hls-flow-bench-engine")
            .display()
            .to_string()
    }));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let emu = emulator("2023-01-01", "2024-12-31", 20);

    let (mut secs, mut rss) = (vec![], vec![]);
    let mut summary = String::new();
    let mut state = PathBuf::new();
    // Run 0 is untimed: the emulator renders each `_stac.json` on its first request (LP DAAC
    // serves static files), on the same two cores.
    let mut first = 0.0;
    for run in 0..=runs {
        let out = work.join(format!("out-{run}"));
        state = work.join(format!("state-{run}.sqlite"));
        let (s, r, stdout) = timed(&[
            "run",
            "20230101",
            "20241231",
            "--output",
            out.to_str().unwrap(),
            "--state",
            state.to_str().unwrap(),
            "--cmr-url",
            &emu.url,
            "--max-concurrent-days",
            "8",
            "--no-progress",
        ]);
        if run == 0 {
            first = s;
            continue;
        }
        secs.push(s);
        rss.push(r);
        summary = stdout.trim().to_string();
    }
    let state = state.to_str().unwrap();
    let status: Vec<f64> = (0..10)
        .map(|_| wall(&["status", "--state", state]))
        .collect();
    let json: Vec<f64> = (0..10)
        .map(|_| wall(&["status", "--state", state, "--json"]))
        .collect();
    let each: Vec<String> = secs.iter().map(|s| format!("{s:.2}")).collect();
    let m = median(secs);
    for run in 0..=runs {
        let _ = std::fs::remove_dir_all(work.join(format!("out-{run}")));
    }
    println!("{summary}");
    println!(
        "runs (s): {}; the untimed first run: {first:.2}",
        each.join(" ")
    );
    println!(
        "{:<40} {:>10} {:>12} {:>12}",
        "case", "median s", "ms/task", "peak RSS MB"
    );
    println!(
        "{:<40} {:>10.2} {:>12.2} {:>12.0}",
        "run 2023-01-01..2024-12-31, 20/day",
        m,
        m * 1000.0 / 1510.0,
        median(rss)
    );
    println!(
        "{:<40} {:>10.3}",
        "status on its state file",
        median(status)
    );
    println!(
        "{:<40} {:>10.3}",
        "status --json on its state file",
        median(json)
    );
}
