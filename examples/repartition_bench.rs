//! Measures `repartition_month` on a synthetic month: `N` HLSS30 items (default 300,000)
//! spread over 30 daily files and over the globe.
//!
//! ```text
//! cargo build --release --example repartition_bench
//! /usr/bin/time -v target/release/examples/repartition_bench 300000 /tmp/bench
//! ```
//!
//! The daily files are made once (kept in `DIR/daily`); the repartition is timed.

use chrono::{Datelike, NaiveDate, TimeZone, Utc};
use hls_flow::Collection;
use hls_flow::geoparquet::writer_options;
use hls_flow::hls::{GranuleMeta, to_stac_item};
use hls_flow::output::Output;
use hls_flow::repartition::{RepartitionOptions, discover_daily, repartition_month};
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

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("hls_flow=debug"))
        .with_writer(std::io::stderr)
        .init();
    let mut args = std::env::args().skip(1);
    let n: u32 = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(300_000);
    let dir = std::path::PathBuf::from(
        args.next()
            .unwrap_or_else(|| "/tmp/repartition-bench".into()),
    );
    let daily = dir.join("daily");
    let src = Output::parse(daily.to_str().ok_or("path")?)?;
    let days = 30u32;
    if !daily.exists() || discover_daily(&src, "").await?.is_empty() {
        let t = Instant::now();
        for d in 1..=days {
            let day = NaiveDate::from_ymd_opt(2024, 5, d).ok_or("day")?;
            let per_day = n / days + u32::from(d <= n % days);
            let items = (0..per_day)
                .map(|i| {
                    let mut item: stac::Item =
                        serde_json::from_value(to_stac_item(&granule(day, i)))?;
                    item.collection = Some("HLSS30_2.0".into());
                    Ok(item)
                })
                .collect::<Result<Vec<_>, serde_json::Error>>()?;
            let path = daily.join(src.daily_path("", Collection::Hlss30, day).as_ref());
            std::fs::create_dir_all(path.parent().ok_or("parent")?)?;
            stac::geoparquet::WriterBuilder::new(std::fs::File::create(&path)?)
                .writer_options(writer_options())
                .build(items)?
                .finish()?;
        }
        eprintln!(
            "made {n} items in {days} daily files in {:.1} s",
            t.elapsed().as_secs_f64()
        );
    }
    let dst = Output::parse(dir.join("monthly").to_str().ok_or("path")?)?;
    let found = discover_daily(&src, "").await?;
    for ((c, y, m), inputs) in &found {
        let t = Instant::now();
        let options = RepartitionOptions {
            overwrite: true,
            tmp_dir: Some(dir.clone()),
            ..RepartitionOptions::default()
        };
        let r = repartition_month(&src, inputs, &dst, *c, *y, *m, &options).await?;
        let secs = t.elapsed().as_secs_f64();
        println!(
            "{}: {} items from {} files, {} row groups, {} bytes in {secs:.2} s: {:.0} items/s",
            r.output,
            r.rows,
            r.inputs,
            r.row_groups,
            r.bytes,
            r.rows as f64 / secs
        );
    }
    Ok(())
}
