//! Items/s of the stac-geoparquet write paths, side by side, from JSON bytes in memory:
//! (a) the `stac` crate's writer with its default options (ZSTD 15), (b) the `stac` crate's
//! writer with ZSTD(3), (c) the fast HLS path (`hls_arrow`, hls-flow's compression: ZSTD at
//! `ZSTD_LEVEL`). Every path includes parsing the JSON; items are half HLSL30, half HLSS30,
//! one file per collection.
//!
//! `cargo bench --bench write_path -- [--items N] [--runs R]`

#[path = "common/items.rs"]
mod items;

use hls_flow::Collection;
use hls_flow::write::hls_arrow::{HlsGeoparquetWriter, HlsWriterOptions};
use hls_flow::write::parquet::ZSTD_LEVEL;
use parquet::basic::{Compression, ZstdLevel};
use stac::geoparquet::{WriterBuilder, WriterOptions};
use std::time::Instant;

const BATCH: usize = 1_000;

/// The JSON bytes of `n` items per collection, as fetched (no `collection` member).
fn make_items(n: usize) -> Vec<(Collection, Vec<Vec<u8>>)> {
    Collection::ALL
        .into_iter()
        .map(|c| (c, items::hls_items(c, n)))
        .collect()
}

/// The `stac` crate's path: parse each item, set its collection, write in batches of 1,000.
fn stac_path(items: &[(Collection, Vec<Vec<u8>>)], options: WriterOptions) -> usize {
    let mut size = 0;
    for (collection, jsons) in items {
        let mut buf = Vec::new();
        let mut batches = jsons.chunks(BATCH).map(|chunk| {
            chunk
                .iter()
                .map(|json| {
                    let mut item: stac::Item = serde_json::from_slice(json).unwrap();
                    item.collection = Some(collection.stac_id().to_string());
                    item
                })
                .collect::<Vec<_>>()
        });
        let Some(first) = batches.next() else {
            continue;
        };
        let mut writer = WriterBuilder::new(&mut buf)
            .writer_options(options)
            .build(first)
            .unwrap();
        for batch in batches {
            writer.write(batch).unwrap();
        }
        writer.finish().unwrap();
        size += buf.len();
    }
    size
}

/// The fast path: JSON bytes straight into the fixed-schema builders.
fn fast_path(items: &[(Collection, Vec<Vec<u8>>)]) -> usize {
    let mut size = 0;
    for (collection, jsons) in items {
        let mut buf = Vec::new();
        let mut writer =
            HlsGeoparquetWriter::new(&mut buf, *collection, HlsWriterOptions::default()).unwrap();
        for json in jsons {
            writer.write_json(json).unwrap();
        }
        writer.finish().unwrap();
        size += buf.len();
    }
    size
}

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n = arg(&args, "--items", 20_000);
    let runs = arg(&args, "--runs", 5).max(1);
    let per_collection = n.div_ceil(2);
    let items = make_items(per_collection);
    let total = per_collection * 2;
    let json_bytes: usize = items.iter().flat_map(|(_, j)| j).map(Vec::len).sum();
    println!(
        "{total} items ({per_collection} HLSL30 + {per_collection} HLSS30), {:.1} MB of JSON, {runs} runs each, median",
        json_bytes as f64 / 1e6
    );

    let zstd3 = Compression::ZSTD(ZstdLevel::try_new(3).unwrap());
    let fast_label = format!("(c) fast HLS path, ZSTD({ZSTD_LEVEL})");
    type Path<'a> = (&'a str, Box<dyn Fn() -> usize + 'a>);
    let paths: Vec<Path> = vec![
        (
            "(a) stac writer, default (ZSTD 15)",
            Box::new(|| stac_path(&items, WriterOptions::new())),
        ),
        (
            "(b) stac writer, ZSTD(3)",
            Box::new(|| stac_path(&items, WriterOptions::new().with_compression(zstd3))),
        ),
        (&fast_label, Box::new(|| fast_path(&items))),
    ];

    let mut rows = Vec::new();
    for (name, run) in &paths {
        let mut times = Vec::with_capacity(runs);
        let mut size = 0;
        for _ in 0..runs {
            let start = Instant::now();
            size = run();
            times.push(start.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        rows.push((name, total as f64 / median, median, size));
        eprintln!("{name}: done");
    }
    let base = rows.get(1).map(|r| r.1).unwrap_or(1.0);
    println!();
    println!(
        "| path | items/s | median s | vs (b) | file bytes |\n| --- | ---: | ---: | ---: | ---: |"
    );
    for (name, rate, median, size) in rows {
        println!(
            "| {name} | {rate:.0} | {median:.3} | {:.2}× | {size} |",
            rate / base
        );
    }
}
