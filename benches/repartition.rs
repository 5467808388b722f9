//! Repartition benchmark: `repartition_month` on a synthetic month of HLSS30 items (300,000
//! by default) spread over 30 daily files and over the globe.
//!
//! ```text
//! cargo bench --bench repartition                          # 300,000 items, 3 runs
//! cargo bench --bench repartition -- --items 100000 --runs 5
//! ```
//!
//! The daily files are made once (with the fixed-schema writer, as the harvest writes them)
//! and kept in `$HLS_FLOW_BENCH_DIR/month-N/daily` (default folder:
//! `hls-flow-bench-repartition` in the system's temporary folder; `end_to_end` empties its
//! own). Each run is this binary started again with `--child`, under `/usr/bin/time`, so
//! that the peak RSS is the repartition's alone; it prints the median wall time, items/s
//! and peak RSS.

/// The allocator of the `hls-flow` binary, so that the repartition measured is the one it runs.
#[cfg(all(unix, not(target_env = "musl")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use chrono::{Datelike, NaiveDate, TimeZone, Utc};
use hls_flow::Collection;
use hls_flow::source::hls::{GranuleMeta, to_stac_item};
use hls_flow::write::geoparquet::FAST_ROW_GROUP_SIZE;
use hls_flow::write::hls_arrow::{HlsGeoparquetWriter, HlsWriterOptions};
use hls_flow::write::output::Output;
use hls_flow::write::repartition::{RepartitionOptions, discover_daily, repartition_month};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

fn granule(day: NaiveDate, i: u32) -> GranuleMeta {
    let c = Collection::Hlss30;
    let h = u64::from(i).wrapping_mul(2_654_435_761) ^ (u64::from(day.ordinal()) * 40_503);
    let lon = -179.0 + (h % 35_700) as f64 / 100.0;
    let lat = -80.0 + ((h / 35_700) % 16_000) as f64 / 100.0;
    let zone = ((lon + 180.0) / 6.0) as u32 % 60 + 1;
    let begin = Utc
        .with_ymd_and_hms(day.year(), day.month(), day.day(), 0, 0, 0)
        .single()
        .unwrap_or_default()
        + chrono::Duration::milliseconds(i64::from(i) * 8_000);
    GranuleMeta {
        collection: c,
        granule_ur: format!(
            "HLS.S30.T{zone:02}ABC.{}{:03}T{:06}.v2.0",
            day.year(),
            day.ordinal(),
            i
        ),
        concept_id: format!("G{i}-LPCLOUD"),
        begin,
        end: begin,
        updated: begin,
        platform: "Sentinel-2B".into(),
        instrument: "Sentinel-2 MSI".into(),
        polygons: vec![vec![
            (lon, lat),
            (lon + 0.9, lat + 0.01),
            (lon + 0.92, lat + 0.9),
            (lon - 0.01, lat + 0.91),
        ]],
        cloud_cover: Some(f64::from(i % 100)),
        mgrs_tile: Some(format!("{zone:02}ABC")),
        ulx: Some(499_980.0),
        uly: Some(8_000_040.0),
        nrows: Some(3660),
        ncols: Some(3660),
        resolution: Some(30.0),
        sun_azimuth: Some(187.7 + f64::from(i % 7)),
        view_azimuth: Some(296.1 - f64::from(i % 11)),
        doi: Some(c.doi().into()),
    }
}

/// Writes the month's daily files into `daily` unless they are there already.
async fn make_daily(n: u32, daily: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let src = Output::parse(daily.to_str().ok_or("path")?)?;
    if daily.exists() && !discover_daily(&src, "").await?.is_empty() {
        return Ok(());
    }
    let t = Instant::now();
    let days = 30u32;
    for d in 1..=days {
        let day = NaiveDate::from_ymd_opt(2024, 5, d).ok_or("day")?;
        let per_day = n / days + u32::from(d <= n % days);
        let path = daily.join(src.daily_path("", Collection::Hlss30, day).as_ref());
        std::fs::create_dir_all(path.parent().ok_or("parent")?)?;
        let file = std::io::BufWriter::new(std::fs::File::create(&path)?);
        let options = HlsWriterOptions::default().with_max_row_group_row_count(FAST_ROW_GROUP_SIZE);
        let mut writer = HlsGeoparquetWriter::new(file, Collection::Hlss30, options)?;
        for i in 0..per_day {
            writer.write_json(&serde_json::to_vec(&to_stac_item(&granule(day, i)))?)?;
        }
        writer.finish()?;
    }
    eprintln!(
        "made {n} items in {days} daily files in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// One timed repartition of every month below `dir/daily` into `dir/monthly`.
async fn child(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let src = Output::parse(dir.join("daily").to_str().ok_or("path")?)?;
    let dst = Output::parse(dir.join("monthly").to_str().ok_or("path")?)?;
    for ((c, m), inputs) in &discover_daily(&src, "").await? {
        let t = Instant::now();
        let options = RepartitionOptions {
            overwrite: true,
            tmp_dir: Some(dir.to_path_buf()),
            ..RepartitionOptions::default()
        };
        let r = repartition_month(&src, inputs, &dst, *c, *m, &options).await?;
        println!(
            "rows {} inputs {} row_groups {} bytes {} secs {:.3}",
            r.rows,
            r.inputs,
            r.row_groups,
            r.bytes,
            t.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn field(line: &str, name: &str) -> f64 {
    line.split_whitespace()
        .skip_while(|w| *w != name)
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(dir) = arg(&args, "--child") {
        return child(Path::new(&dir)).await;
    }
    let n: u32 = arg(&args, "--items")
        .and_then(|s| s.parse().ok())
        .unwrap_or(300_000);
    let runs: usize = arg(&args, "--runs")
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
        .max(1);
    let dir = PathBuf::from(std::env::var("HLS_FLOW_BENCH_DIR").unwrap_or_else(|_| {
        std::env::temp_dir()
            .join("hls-flow-bench-repartition")
            .display()
            .to_string()
    }))
    .join(format!("month-{n}"));
    make_daily(n, &dir.join("daily")).await?;
    let (mut secs, mut rss, mut last) = (vec![], vec![], String::new());
    for _ in 0..runs {
        let out = Command::new("/usr/bin/time")
            .args(["-f", "rss_kb %M"])
            .arg(std::env::current_exe()?)
            .args(["--child", dir.to_str().ok_or("path")?])
            .output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            return Err(format!("repartition failed: {stderr}").into());
        }
        last = String::from_utf8_lossy(&out.stdout).trim().to_string();
        secs.push(field(&last, "secs"));
        rss.push(field(stderr.lines().last().unwrap_or_default(), "rss_kb") / 1024.0);
        let _ = std::fs::remove_dir_all(dir.join("monthly"));
    }
    let rows = field(&last, "rows");
    let s = median(secs);
    println!(
        "{:<34} {:>8} {:>10} {:>10} {:>12} {:>12}",
        "case", "items", "median s", "items/s", "peak RSS MB", "file MB"
    );
    println!(
        "{:<34} {:>8} {:>10.2} {:>10.0} {:>12.0} {:>12.1}",
        format!("repartition HLSS30 month, {} days", field(&last, "inputs")),
        rows,
        s,
        rows / s,
        median(rss),
        field(&last, "bytes") / 1e6
    );
    Ok(())
}
