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
//! `/usr/bin/time`: the median wall time and peak RSS over the runs. Then `status` (and
//! `status --json`) on the state file the last run left, the median of 10.

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
    for run in 0..runs {
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
        secs.push(s);
        rss.push(r);
        summary = stdout.trim().to_string();
        if run + 1 < runs {
            let _ = std::fs::remove_dir_all(&out);
        }
    }
    let state = state.to_str().unwrap();
    let status: Vec<f64> = (0..10)
        .map(|_| wall(&["status", "--state", state]))
        .collect();
    let json: Vec<f64> = (0..10)
        .map(|_| wall(&["status", "--state", state, "--json"]))
        .collect();
    let m = median(secs);
    println!("{summary}");
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
