//! End-to-end benchmark: the release `hls-flow` against the release emulator on loopback,
//! both on this machine's cores, as separate processes.
//!
//! ```text
//! cargo bench --bench end_to_end                 # 15,000- and 40,000-granule days, 3 runs each
//! cargo bench --bench end_to_end -- --runs 5 --sizes 15000 --sources echo10
//! ```
//!
//! For each day size and each source (`stac-json`, `echo10`) it runs `generate-daily` for
//! one day (both collections, `--parallel`), once untimed and then several times into fresh
//! folders, and reports the median wall time, items/s, peak RSS (from `/usr/bin/time`) and
//! the requests the emulator served; and the wall time of the first, untimed run. The
//! emulator renders each `_stac.json` on its first request and serves the same bytes after
//! (LP DAAC serves static files): the first run pays that rendering, on the same two cores
//! as hls-flow. Then the startup of a resumed `run` over a complete month (nothing to do).
//! Peak RSS is the hls-flow process alone.

mod common;

use common::{emulator, median, timed};
use std::path::PathBuf;

fn requests(url: &str) -> u64 {
    // A tiny HTTP/1.0 GET, to stay off any client crate.
    use std::io::{Read, Write};
    let hostport = url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(hostport).expect("connect to the emulator");
    write!(
        s,
        "GET /_emulator/counts HTTP/1.0\r\nHost: {hostport}\r\n\r\n"
    )
    .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    let json = body.split("\r\n\r\n").nth(1).unwrap_or("{}");
    let v: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
    v["total"].as_u64().unwrap_or(0)
}

fn items_written(stdout: &str) -> u64 {
    stdout
        .split("items written: ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let opt = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let runs: usize = opt("--runs")
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
        .max(1);
    let sizes: Vec<u32> = opt("--sizes")
        .map(|s| s.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_else(|| vec![15_000, 40_000]);
    let sources: Vec<String> = opt("--sources")
        .map(|s| s.split(',').map(str::to_string).collect())
        .unwrap_or_else(|| vec!["stac-json".into(), "echo10".into()]);
    let work = PathBuf::from(std::env::var("HLS_FLOW_BENCH_DIR").unwrap_or_else(|_| {
        std::env::temp_dir()
            .join("hls-flow-bench")
            .display()
            .to_string()
    }));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();

    println!(
        "{:<28} {:>8} {:>10} {:>10} {:>12} {:>14} {:>12}",
        "case", "items", "median s", "items/s", "peak RSS MB", "requests/day", "first run s"
    );
    for &size in &sizes {
        let emu = emulator("2024-05-14", "2024-05-16", size);
        for source in sources.iter().map(String::as_str) {
            let (mut secs, mut rss, mut items, mut reqs) = (vec![], vec![], 0, 0);
            let mut first = f64::NAN;
            // Run 0 is untimed: it warms the emulator's rendered items.
            for run in 0..=runs {
                let out = work.join(format!("out-{size}-{source}-{run}"));
                let before = requests(&emu.url);
                let (s, r, stdout) = timed(&[
                    "generate-daily",
                    "20240515",
                    out.to_str().unwrap(),
                    "--cmr-url",
                    &emu.url,
                    "--source",
                    source,
                    "--parallel",
                    "--no-progress",
                    "--max-concurrent-per-day",
                    "64",
                ]);
                reqs = requests(&emu.url) - before;
                items = items_written(&stdout);
                if run == 0 {
                    first = s;
                } else {
                    secs.push(s);
                    rss.push(r);
                }
                let _ = std::fs::remove_dir_all(&out);
            }
            let m = median(secs);
            println!(
                "{:<28} {:>8} {:>10.2} {:>10.0} {:>12.0} {:>14} {:>12.2}",
                format!("day of {size}, {source}"),
                items,
                m,
                items as f64 / m,
                median(rss),
                reqs,
                first
            );
        }
    }

    // Startup of a resumed run over a complete month: nothing to do, no request.
    let emu = emulator("2024-02-01", "2024-02-29", 60);
    let out = work.join("month");
    let state = work.join("month.sqlite");
    let common = [
        "run",
        "202402",
        "--output",
        out.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
        "--cmr-url",
        &emu.url,
        "--no-progress",
        "--source",
        "echo10",
    ];
    timed(&common);
    let before = requests(&emu.url);
    let mut secs = vec![];
    for _ in 0..runs {
        secs.push(timed(&common).0);
    }
    println!(
        "{:<28} {:>8} {:>10.2} {:>10} {:>12} {:>14}",
        "resumed complete month",
        "-",
        median(secs),
        "-",
        "-",
        requests(&emu.url) - before
    );
}
