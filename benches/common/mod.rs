//! What the benchmarks that run the release `hls-flow` as a child process share: the
//! emulator started in-process, a run under `/usr/bin/time`, and the median.

use std::process::Command;

/// The emulator, in this process on a runtime of its own (its binary belongs to the
/// workspace's other member, which `cargo bench` does not build).
pub struct Emulator {
    pub url: String,
    // Dropped in this order: the server's handle, then the runtime that serves it.
    _server: hls_flow_emulator::Emulator,
    _runtime: tokio::runtime::Runtime,
}

/// A synthetic emulator of `per_day` granules a day (each collection) from `start` to
/// `end` (`YYYY-MM-DD`), on loopback.
pub fn emulator(start: &str, end: &str, per_day: u32) -> Emulator {
    emulator_with(start, end, per_day, Default::default())
}

/// [`emulator`] with `faults` (or a latency) set from the start.
pub fn emulator_with(
    start: &str,
    end: &str,
    per_day: u32,
    faults: hls_flow_emulator::Faults,
) -> Emulator {
    use hls_flow_emulator::{DataSource, EmulatorConfig, SyntheticConfig};
    let day = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("a date");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime for the emulator");
    let config = EmulatorConfig {
        source: DataSource::Synthetic(SyntheticConfig {
            start: day(start),
            end: day(end),
            granules_per_day: per_day,
            seed: 1,
        }),
        faults,
    };
    let emu = runtime
        .block_on(hls_flow_emulator::Emulator::start(
            config,
            "127.0.0.1:0".parse().expect("an address"),
        ))
        .expect("start the emulator");
    Emulator {
        url: emu.base_url(),
        _server: emu,
        _runtime: runtime,
    }
}

/// Runs hls-flow under /usr/bin/time; returns (seconds, peak RSS in MB, stdout).
pub fn timed(args: &[&str]) -> (f64, f64, String) {
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%e %M"])
        .arg(env!("CARGO_BIN_EXE_hls-flow"))
        .args(args)
        .output()
        .expect("run /usr/bin/time hls-flow");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "hls-flow {args:?} failed: {stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    let mut parts = last.split_whitespace();
    let mut next = || -> f64 {
        parts
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(f64::NAN)
    };
    let (secs, kb) = (next(), next());
    (
        secs,
        kb / 1024.0,
        String::from_utf8_lossy(&out.stdout).to_string(),
    )
}

/// The median (the upper one of an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}
