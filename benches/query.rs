//! Query benchmark: `search` (the library's `Searcher`) and `serve` (the release binary, on
//! loopback) over a synthetic HLSS30 month partition of 300,000 items.
//!
//! ```text
//! cargo bench --bench query                                 # 300,000 items
//! cargo bench --bench query -- --items 100000 --row-group-size 2000
//! cargo bench --bench query -- --only ids                  # one case: boxes, ids or serve
//! ```
//!
//! The month is made once and kept in `$HLS_FLOW_BENCH_DIR/items-N/` (default folder:
//! `hls-flow-bench-query` in the system's temporary folder): 30 daily files written with the
//! harvest's writer, then `repartition_month` with its default options (or
//! `--row-group-size`) into `cache-rgN-…/` (named by the layout's constants). The items are HLS-like: ~26,000 MGRS-like 1° tiles
//! over "continents" (10° blocks between 56° S and 76° N), each seen every 5 days by two
//! satellites 2–3 days apart (12–13 times a month) at 10:30 local solar time, a third of the
//! footprints cut by the swath edge, ids as LP DAAC names them; thinned evenly to N items.
//!
//! Measured (warm: the footers read once before): a 1°×1° bbox over one week at 8 places
//! (`search` and `serve`: median milliseconds, and the share of row groups read, counted by
//! `SearchStats`), a full-month `ids` lookup of 100 ids, and `serve` under 16 concurrent
//! clients (a fixed number of searches each, the 8 boxes in turn: searches per second).
//! The targets are printed next to the figures, with `MISSED` where one is missed.

/// The allocator of the `hls-flow` binary, so that the `search` measured is the one it runs.
#[cfg(all(unix, not(target_env = "musl")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use chrono::{Datelike, Duration, NaiveDate, TimeZone, Utc};
use hls_flow::Collection;
use hls_flow::query::{Query, SearchOptions, SearchStats, Searcher};
use hls_flow::source::hls::{GranuleMeta, to_stac_item};
use hls_flow::write::geoparquet::FAST_ROW_GROUP_SIZE;
use hls_flow::write::hls_arrow::{HlsGeoparquetWriter, HlsWriterOptions};
use hls_flow::write::output::Output;
use hls_flow::write::repartition::{RepartitionOptions, discover_daily, repartition_month};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::Instant;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The 1°×1° boxes searched (W, S, E, N): land in the synthetic "continents" and elsewhere.
const BOXES: [[f64; 4]; 8] = [
    [-93.5, 44.5, -92.5, 45.5],
    [2.0, 48.3, 3.0, 49.3],
    [-47.5, -23.9, -46.5, -22.9],
    [116.0, 39.5, 117.0, 40.5],
    [31.0, 29.5, 32.0, 30.5],
    [150.5, -34.5, 151.5, -33.5],
    [-0.5, 5.0, 0.5, 6.0],
    [77.0, 28.2, 78.0, 29.2],
];
/// The week searched.
const WEEK: &str = "2024-05-08T00:00:00Z/2024-05-14T23:59:59Z";
/// Clients of the load test, and searches each makes.
const CLIENTS: usize = 16;
const PER_CLIENT: usize = 40;

fn hash(a: u64, b: u64) -> u64 {
    let mut h = a
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(b.wrapping_mul(0xC2B2_AE3D_27D4_EB4F));
    h ^= h >> 31;
    h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h ^ (h >> 29)
}

/// A 1° tile: its south-west corner.
#[derive(Clone, Copy)]
struct Tile {
    lon: i32,
    lat: i32,
}

impl Tile {
    fn name(self) -> String {
        let zone = ((self.lon + 180) / 6) % 60 + 1;
        let bands = b"CDEFGHJKLMNPQRSTUVWX";
        let band = bands[(((self.lat + 80) / 8) as usize).min(bands.len() - 1)] as char;
        let col = (b'A' + (self.lon + 180).rem_euclid(6) as u8) as char;
        let row = (b'A' + (self.lat + 80).rem_euclid(8) as u8) as char;
        format!("{zone:02}{band}{col}{row}")
    }

    /// Land: 55 % of the 10° blocks between 56° S and 76° N.
    fn is_land(self) -> bool {
        let block = hash(
            (self.lon.div_euclid(10) + 100) as u64,
            (self.lat.div_euclid(10) + 100) as u64,
        );
        (-56..76).contains(&self.lat) && block % 100 < 55
    }
}

/// Every observation of the month: (day, tile, satellite), in day order.
fn observations() -> Vec<(u32, Tile, u8)> {
    let tiles: Vec<Tile> = (-56..76)
        .flat_map(|lat| (-180..180).map(move |lon| Tile { lon, lat }))
        .filter(|t| t.is_land())
        .collect();
    let mut out = Vec::new();
    for day in 1..=31u32 {
        for &t in &tiles {
            let phase = (hash((t.lon + 1000) as u64, (t.lat + 1000) as u64) % 5) as u32;
            // Sentinel-2A every 5 days from `phase`, 2B two or three days later.
            let a = (day + 5 - phase % 5).is_multiple_of(5);
            let b = (day + 5 - (phase + 2 + (t.lon.rem_euclid(2) as u32)) % 5).is_multiple_of(5);
            if a {
                out.push((day, t, b'A'));
            }
            if b {
                out.push((day, t, b'B'));
            }
        }
    }
    out
}

fn granule(day: NaiveDate, t: Tile, sat: u8, k: u64) -> GranuleMeta {
    let c = Collection::Hlss30;
    // 10:30 local solar time, later towards the south along the orbit.
    let seconds =
        (37_800.0 - f64::from(t.lon) * 240.0 - f64::from(t.lat) * 25.0).rem_euclid(86_400.0) as i64;
    let begin = Utc
        .with_ymd_and_hms(day.year(), day.month(), day.day(), 0, 0, 0)
        .single()
        .unwrap_or_default()
        + Duration::seconds(seconds)
        + Duration::milliseconds((hash(k, 7) % 1000) as i64);
    let (lon, lat) = (f64::from(t.lon), f64::from(t.lat));
    // 109.8 km wide: wider in degrees towards the poles.
    let width = (1.0 / (lat + 0.5).to_radians().cos()).min(3.0);
    let east = (lon + width).min(180.0);
    let polygon = match hash(k, 3) % 3 {
        // Cut by the swath's edge: a trapezoid.
        0 => vec![
            (lon + width * 0.4, lat),
            (east, lat),
            (east, lat + 1.0),
            (lon + width * 0.6, lat + 1.0),
        ],
        _ => vec![(lon, lat), (east, lat), (east, lat + 1.0), (lon, lat + 1.0)],
    };
    let hhmmss = begin.format("%H%M%S").to_string();
    GranuleMeta {
        collection: c,
        granule_ur: format!(
            "HLS.S30.T{}.{}{:03}T{hhmmss}.v2.0",
            t.name(),
            day.year(),
            day.ordinal()
        ),
        concept_id: format!("G{}-LPCLOUD", 3_000_000_000u64 + k),
        begin,
        end: begin,
        updated: begin + Duration::days(2),
        platform: format!("Sentinel-2{}", sat as char),
        instrument: "Sentinel-2 MSI".into(),
        polygons: vec![polygon],
        cloud_cover: Some((hash(k, 5) % 101) as f64),
        mgrs_tile: Some(t.name()),
        ulx: Some(199_980.0 + f64::from(t.lon.rem_euclid(6)) * 109_800.0),
        uly: Some(1_000_020.0 + f64::from(t.lat.rem_euclid(8)) * 109_800.0),
        nrows: Some(3660),
        ncols: Some(3660),
        resolution: Some(30.0),
        sun_azimuth: Some(120.0 + (hash(k, 11) % 600) as f64 / 10.0),
        view_azimuth: Some(100.0 + (hash(k, 13) % 900) as f64 / 10.0),
        doi: Some(c.doi().into()),
    }
}

/// Writes the month's daily files (N items, thinned evenly from every observation) into
/// `daily` unless they are there; returns 100 ids spread over the month.
async fn make_daily(n: usize, daily: &Path) -> Result<Vec<String>, BoxError> {
    let all = observations();
    let keep = |k: usize| (k * n) / all.len() != ((k + 1) * n) / all.len();
    let kept: Vec<(usize, &(u32, Tile, u8))> =
        all.iter().enumerate().filter(|(k, _)| keep(*k)).collect();
    let ids: Vec<String> = (0..100)
        .map(|j| {
            let (k, &(d, t, s)) = kept[j * kept.len() / 100];
            let day = NaiveDate::from_ymd_opt(2024, 5, d).expect("a day of May");
            granule(day, t, s, k as u64).granule_ur
        })
        .collect();
    let src = Output::parse(daily.to_str().ok_or("path")?)?;
    if daily.exists() && !discover_daily(&src, "").await?.is_empty() {
        return Ok(ids);
    }
    let t0 = Instant::now();
    for d in 1..=31u32 {
        let day = NaiveDate::from_ymd_opt(2024, 5, d).ok_or("day")?;
        let path = daily.join(src.daily_path("", Collection::Hlss30, day).as_ref());
        std::fs::create_dir_all(path.parent().ok_or("parent")?)?;
        let tmp = path.with_extension("tmp");
        let file = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        let options = HlsWriterOptions::default().with_max_row_group_row_count(FAST_ROW_GROUP_SIZE);
        let mut writer = HlsGeoparquetWriter::new(file, Collection::Hlss30, options)?;
        let mut day_items: Vec<GranuleMeta> = kept
            .iter()
            .filter(|(_, o)| o.0 == d)
            .map(|&(k, &(_, t, s))| granule(day, t, s, k as u64))
            .collect();
        // Daily files are in (datetime, id) order, as the harvest writes them.
        day_items.sort_by_key(|g| (g.begin, g.granule_ur.clone()));
        for g in &day_items {
            writer.write_json(&serde_json::to_vec(&to_stac_item(g))?)?;
        }
        writer.finish()?;
        std::fs::rename(&tmp, &path)?;
    }
    eprintln!(
        "made {} items ({} observations thinned) in 31 daily files in {:.1} s",
        kept.len(),
        all.len(),
        t0.elapsed().as_secs_f64()
    );
    Ok(ids)
}

async fn make_cache(
    dir: &Path,
    cache: &Path,
    row_group_size: Option<usize>,
) -> Result<(), BoxError> {
    let dst = Output::parse(cache.to_str().ok_or("path")?)?;
    if cache
        .join("HLSS30_2.0/year=2024/month=05/part-0.parquet")
        .exists()
    {
        return Ok(());
    }
    let src = Output::parse(dir.join("daily").to_str().ok_or("path")?)?;
    for ((c, m), inputs) in &discover_daily(&src, "").await? {
        let t = Instant::now();
        let mut options = RepartitionOptions {
            overwrite: true,
            tmp_dir: Some(dir.to_path_buf()),
            ..RepartitionOptions::default()
        };
        if let Some(size) = row_group_size {
            options.row_group_size = size;
        }
        let r = repartition_month(&src, inputs, &dst, *c, *m, &options).await?;
        eprintln!(
            "repartitioned {} rows into {} row groups ({:.1} MB) in {:.1} s",
            r.rows,
            r.row_groups,
            r.bytes as f64 / 1e6,
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

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

/// Runs `q` `runs` times: (median ms, stats, matches).
async fn timed_search(
    s: &Searcher,
    q: &Query,
    runs: usize,
) -> Result<(f64, SearchStats, usize), BoxError> {
    let mut ms = Vec::new();
    let (mut stats, mut found) = (SearchStats::default(), 0);
    for _ in 0..runs {
        let t = Instant::now();
        let mut n = 0;
        stats = s
            .search(q, SearchOptions::default(), |_| {
                n += 1;
                Ok(())
            })
            .await?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        found = n;
    }
    Ok((median(ms), stats, found))
}

fn search_url(base: &str, b: [f64; 4]) -> String {
    format!(
        "{base}/search?bbox={},{},{},{}&datetime={WEEK}&limit=100",
        b[0], b[1], b[2], b[3]
    )
}

/// GETs a search; the number of items on the page.
async fn fetch(client: reqwest::Client, url: String) -> Result<usize, BoxError> {
    let r = client.get(&url).send().await?.error_for_status()?;
    let v: serde_json::Value = r.json().await?;
    Ok(v["features"].as_array().map_or(0, Vec::len))
}

/// A running `hls-flow serve`, killed when dropped.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(cache: &Path) -> Result<(Server, String), BoxError> {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hls-flow"))
        .args(["serve", "--bind", "127.0.0.1:0", "--output"])
        .arg(cache)
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().ok_or("stdout")?).read_line(&mut line)?;
    let server = Server(child);
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .ok_or_else(|| format!("no address in {line:?}"))?
        .trim_end_matches('/')
        .to_string();
    Ok((server, url))
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = arg(&args, "--items")
        .and_then(|s| s.parse().ok())
        .unwrap_or(300_000);
    let row_group_size: Option<usize> = arg(&args, "--row-group-size").and_then(|s| s.parse().ok());
    // `--only boxes|ids|serve`: one case alone (to profile it).
    let only = arg(&args, "--only");
    let wanted = |case: &str| only.as_deref().is_none_or(|o| o == case);
    let dir = PathBuf::from(std::env::var("HLS_FLOW_BENCH_DIR").unwrap_or_else(|_| {
        std::env::temp_dir()
            .join("hls-flow-bench-query")
            .display()
            .to_string()
    }))
    .join(format!("items-{n}"));
    let ids = make_daily(n, &dir.join("daily")).await?;
    let rg = row_group_size.unwrap_or(RepartitionOptions::default().row_group_size);
    let cache = dir.join(format!(
        "cache-rg{rg}-page{}-{}b-batch{}-stats-dict{}",
        hls_flow::write::repartition::PAGE_ROWS,
        hls_flow::write::repartition::PAGE_BYTES,
        hls_flow::write::repartition::PAGE_BATCH_ROWS,
        hls_flow::write::repartition::DICTIONARY_BYTES
    ));
    make_cache(&dir, &cache, row_group_size).await?;

    let searcher = Searcher::open(cache.to_str().ok_or("path")?)?;
    // Warm: every footer read once.
    searcher
        .search(
            &Query::default(),
            SearchOptions {
                skip: 0,
                limit: Some(1),
            },
            |_| Ok(()),
        )
        .await?;

    println!(
        "{:<44} {:>10} {:>9} {:>12} {:>8}  target",
        "case", "median ms", "matches", "row groups", "share"
    );
    if wanted("boxes") {
        let (mut worst_share, mut worst_ms) = (0.0f64, 0.0f64);
        for b in BOXES {
            let q = Query::default().with_bbox(b)?.with_datetime(WEEK)?;
            let (ms, stats, found) = timed_search(&searcher, &q, 15).await?;
            let share = stats.row_groups_read as f64 / stats.row_groups.max(1) as f64;
            worst_share = worst_share.max(share);
            worst_ms = worst_ms.max(ms);
            println!(
                "{:<44} {:>10.1} {:>9} {:>5} of {:<4} {:>7.1}%",
                format!("search 1°x1° week at {},{}", b[0], b[1]),
                ms,
                found,
                stats.row_groups_read,
                stats.row_groups,
                share * 100.0
            );
        }
        println!(
            "{:<44} {:>10.1} {:>9} {:>12} {:>7.1}%  ≤ 50 ms: {}; ≤ 5 % row groups: {}",
            "search 1°x1° week, worst of 8",
            worst_ms,
            "",
            "",
            worst_share * 100.0,
            verdict(worst_ms <= 50.0),
            verdict(worst_share <= 0.05)
        );
    }
    if wanted("ids") {
        let q = Query {
            ids: ids.iter().cloned().collect(),
            ..Query::default()
        };
        let (ms, stats, found) = timed_search(&searcher, &q, 10).await?;
        println!(
            "{:<44} {:>10.1} {:>9} {:>5} of {:<4} {:>7.1}%  ≤ 100 ms: {}",
            "search 100 ids, whole month",
            ms,
            found,
            stats.row_groups_read,
            stats.row_groups,
            stats.row_groups_read as f64 / stats.row_groups.max(1) as f64 * 100.0,
            verdict(ms <= 100.0 && found == 100)
        );
    }
    if wanted("serve") {
        let (_server, url) = serve(&cache)?;
        let client = reqwest::Client::builder().build()?;
        let get = |u: String| fetch(client.clone(), u);
        // Warm the server's footers.
        get(search_url(&url, BOXES[0])).await?;
        let mut worst = 0.0f64;
        for b in BOXES {
            let mut ms = Vec::new();
            for _ in 0..15 {
                let t = Instant::now();
                get(search_url(&url, b)).await?;
                ms.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            worst = worst.max(median(ms));
        }
        println!(
            "{:<44} {:>10.1} {:>9} {:>12} {:>8}  ≤ 50 ms: {}",
            "serve GET /search 1°x1° week, worst of 8",
            worst,
            "",
            "",
            "",
            verdict(worst <= 50.0)
        );

        let t = Instant::now();
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let client = client.clone();
                let url = url.clone();
                tokio::spawn(async move {
                    for i in 0..PER_CLIENT {
                        fetch(
                            client.clone(),
                            search_url(&url, BOXES[(c + i) % BOXES.len()]),
                        )
                        .await?;
                    }
                    Ok::<(), BoxError>(())
                })
            })
            .collect();
        for task in tasks {
            task.await??;
        }
        let secs = t.elapsed().as_secs_f64();
        let rate = (CLIENTS * PER_CLIENT) as f64 / secs;
        println!(
            "{:<44} {:>10} {:>9} {:>12} {:>8}  ≥ 200/s: {} ({rate:.0} searches/s, {} in {secs:.2} s)",
            format!("serve, {CLIENTS} clients x {PER_CLIENT} searches"),
            "",
            "",
            "",
            "",
            verdict(rate >= 200.0),
            CLIENTS * PER_CLIENT
        );
    }
    Ok(())
}
