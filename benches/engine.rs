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
//! Each run's folder is kept until all runs are done, and the bench deletes nothing in the
//! 6 minutes before its first timed run: this machine's root file system is ext4 without a
//! journal, and there a file's creation skips every free inode of its group freed in the
//! last 60 s, or in the last 6 minutes while the inode table block that holds it is dirty
//! (`recently_deleted()` in `fs/ext4/ialloc.c`; creating files next to them keeps their
//! blocks dirty). Runs just after the deletion of a previous invocation's ~9,000 files took
//! 6.5–7 s instead of 4 s. So the folders are deleted after the runs, the time of that
//! deletion is kept in `deleted-at`, and an invocation within [`SETTLE`] of it first waits
//! (and says so).

mod common;

use common::{emulator, median, timed};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

/// How long after deleting many files their file system is left alone before a timed run
/// (ext4 without a journal: 6 minutes while the deleted inodes' table blocks are dirty).
const SETTLE: Duration = Duration::from_secs(365);

/// Deletes the runs' folders and state files (with their lock and scratch folder) left in
/// `work` and notes when, in `deleted-at`.
fn delete_runs(work: &Path) {
    let Ok(entries) = std::fs::read_dir(work) else {
        return;
    };
    let mut deleted = false;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with("out-") || name.starts_with("state-")) {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path).expect("remove a run's folder");
        } else {
            std::fs::remove_file(&path).expect("remove a run's state file");
        }
        deleted = true;
    }
    if deleted {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("a clock after 1970")
            .as_secs();
        std::fs::write(work.join("deleted-at"), now.to_string()).expect("write deleted-at");
    }
}

/// Waits until the last deletion noted in `work` is [`SETTLE`] old.
fn settle(work: &Path) {
    let Some(at) = std::fs::read_to_string(work.join("deleted-at"))
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
    else {
        return;
    };
    let deleted = SystemTime::UNIX_EPOCH + Duration::from_secs(at);
    let age = SystemTime::now()
        .duration_since(deleted)
        .unwrap_or_default();
    if let Some(wait) = SETTLE.checked_sub(age) {
        eprintln!(
            "waiting {} s: files were deleted here {} s ago, and until they are {} s old \
             creating files next to them is slower (ext4 without a journal)",
            wait.as_secs(),
            age.as_secs(),
            SETTLE.as_secs()
        );
        std::thread::sleep(wait);
    }
}

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
    std::fs::create_dir_all(&work).unwrap();
    // Folders an interrupted invocation left, then the wait for every deletion to age.
    delete_runs(&work);
    settle(&work);
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
    delete_runs(&work);
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
