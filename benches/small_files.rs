//! What one small parquet file costs: writing `n` HLS items with the fixed-schema writer and
//! reading them back with parquet's Arrow reader (as a month's repartition reads each daily
//! file), per compression codec. A file of the fixed HLS schema has ~256 leaf columns, so for
//! small days the fixed cost per column (codec contexts, column writers and readers, the
//! footer) is what a file costs.
//!
//! ```text
//! cargo bench --bench small_files               # 10 and 100 items, 300 files each
//! cargo bench --bench small_files -- --files 1000
//! ```

#[path = "common/items.rs"]
mod items;

use bytes::Bytes;
use hls_flow::Collection;
use hls_flow::write::hls_arrow::{HlsGeoparquetWriter, HlsWriterOptions};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use std::time::Instant;

fn write(jsons: &[Vec<u8>], compression: Compression) -> Vec<u8> {
    let mut buf = Vec::new();
    let options = HlsWriterOptions::default().with_compression(compression);
    let mut writer = HlsGeoparquetWriter::new(&mut buf, Collection::Hlss30, options).unwrap();
    for json in jsons {
        writer.write_json(json).unwrap();
    }
    writer.finish().unwrap();
    buf
}

fn read(file: Bytes) -> usize {
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    reader.map(|b| b.unwrap().num_rows()).sum()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let files: usize = args
        .iter()
        .position(|a| a == "--files")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
        .max(1);
    println!("| items | codec | write ms/file | read ms/file | file KB |");
    println!("| ---: | --- | ---: | ---: | ---: |");
    for n in [10, 100] {
        let jsons = items::hls_items(Collection::Hlss30, n);
        for (name, compression) in [
            ("ZSTD(3)", Compression::ZSTD(ZstdLevel::try_new(3).unwrap())),
            ("SNAPPY", Compression::SNAPPY),
            ("none", Compression::UNCOMPRESSED),
        ] {
            let t = Instant::now();
            let mut file = Vec::new();
            for _ in 0..files {
                file = write(&jsons, compression);
            }
            let write_ms = t.elapsed().as_secs_f64() * 1e3 / files as f64;
            let file = Bytes::from(file);
            let t = Instant::now();
            for _ in 0..files {
                assert_eq!(read(file.clone()), n);
            }
            let read_ms = t.elapsed().as_secs_f64() * 1e3 / files as f64;
            println!(
                "| {n} | {name} | {write_ms:.2} | {read_ms:.2} | {:.1} |",
                file.len() as f64 / 1024.0
            );
        }
    }
}
