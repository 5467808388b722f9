//! A deterministic generator of realistic HLS granules: the same (seed, collection, day)
//! always gives the same granules, whatever else was generated before.

use super::mgrs::{self, TILE_SIZE};
use super::rng::Rng;
use super::store::{Granule, year_doy};
use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Timelike, Utc};
use hls_flow::collection::Collection;
use hls_flow::source::hls::GranuleMeta;
use std::collections::HashSet;

/// What to generate: every day from `start` to `end` (inclusive), `granules_per_day`
/// granules a day over both collections (~35 % HLSL30, ~65 % HLSS30; each collection has
/// at least its three edge granules), from `seed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntheticConfig {
    /// First day.
    pub start: NaiveDate,
    /// Last day (inclusive).
    pub end: NaiveDate,
    /// Granules a day, both collections together.
    pub granules_per_day: u32,
    /// Seed of the generator.
    pub seed: u64,
}

/// Most granules one collection can have in a day (the concept-id block of a day).
pub const MAX_PER_COLLECTION_DAY: u32 = 400_000;

/// First day the generator covers (HLS starts with Landsat 8 in April 2013).
pub fn first_supported_day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2013, 4, 11).unwrap_or(NaiveDate::MIN)
}

/// Last day the generator covers (concept ids must keep ten digits).
pub fn last_supported_day() -> NaiveDate {
    first_supported_day() + Duration::days(11_000)
}

/// The last day whose HLSS30 granules have a thumbnail: LP DAAC stopped publishing the
/// HLSS30 `.jpg` after 2026-06-16, and items of granules that begin later come without the
/// `thumbnail` asset.
pub fn last_day_with_thumbnail() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 6, 16).unwrap_or(NaiveDate::MAX)
}

/// Why a [`SyntheticConfig`] cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `end` is before `start`.
    #[error("end {end} is before start {start}")]
    EndBeforeStart {
        /// First day.
        start: NaiveDate,
        /// Last day.
        end: NaiveDate,
    },
    /// A day outside the range the generator covers.
    #[error("{day} is outside the supported range {first}..={last}")]
    OutOfRange {
        /// The offending day.
        day: NaiveDate,
        /// First supported day.
        first: NaiveDate,
        /// Last supported day.
        last: NaiveDate,
    },
    /// More granules a day than concept ids allow.
    #[error("granules_per_day {0} is too large (at most {max})", max = 2 * MAX_PER_COLLECTION_DAY)]
    TooMany(u32),
}

impl SyntheticConfig {
    /// Checks the range and size.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.end < self.start {
            return Err(ConfigError::EndBeforeStart {
                start: self.start,
                end: self.end,
            });
        }
        let (first, last) = (first_supported_day(), last_supported_day());
        for day in [self.start, self.end] {
            if day < first || day > last {
                return Err(ConfigError::OutOfRange { day, first, last });
            }
        }
        let l30 = per_collection(self.granules_per_day, Collection::Hlsl30);
        let s30 = per_collection(self.granules_per_day, Collection::Hlss30);
        if l30.max(s30) > MAX_PER_COLLECTION_DAY {
            return Err(ConfigError::TooMany(self.granules_per_day));
        }
        Ok(())
    }
}

/// Granules of one collection a day: 35 % / 65 %, at least the three edge granules.
pub fn per_collection(granules_per_day: u32, c: Collection) -> u32 {
    let l30 = (f64::from(granules_per_day) * 0.35).round() as u32;
    let n = match c {
        Collection::Hlsl30 => l30,
        Collection::Hlss30 => granules_per_day.saturating_sub(l30),
    };
    n.max(3)
}

/// (west, east, south, north, weight): land areas locations are drawn from.
const LAND: [(f64, f64, f64, f64, f64); 11] = [
    (-125.0, -67.0, 25.0, 55.0, 3.0),
    (-165.0, -60.0, 55.0, 70.0, 2.0),
    (-105.0, -80.0, 8.0, 25.0, 1.0),
    (-80.0, -35.0, -40.0, 10.0, 3.0),
    (-10.0, 40.0, 36.0, 70.0, 3.0),
    (-17.0, 50.0, -35.0, 35.0, 4.0),
    (35.0, 90.0, 15.0, 55.0, 3.0),
    (60.0, 178.0, 50.0, 72.0, 2.0),
    (70.0, 145.0, 5.0, 50.0, 3.0),
    (95.0, 150.0, -10.0, 20.0, 1.0),
    (113.0, 178.0, -45.0, -11.0, 2.0),
];

fn land_point(rng: &mut Rng) -> (f64, f64) {
    let total: f64 = LAND.iter().map(|b| b.4).sum();
    let mut pick = rng.range(0.0, total);
    for &(w, e, s, n, weight) in &LAND {
        if pick < weight {
            return (rng.range(s, n), rng.range(w, e));
        }
        pick -= weight;
    }
    (45.0, 10.0)
}

fn round7(v: f64) -> f64 {
    (v * 1e7).round() / 1e7
}

fn round8(v: f64) -> f64 {
    (v * 1e8).round() / 1e8
}

/// A footprint in the tile: `(u, v)` fractions (east, north) of the tile, clockwise.
fn unit_footprint(rng: &mut Rng) -> Vec<(f64, f64)> {
    let corners = [(0.0, 1.0), (1.0, 1.0), (1.0, 0.0), (0.0, 0.0)];
    let roll = rng.f64();
    if roll < 0.45 {
        corners.to_vec()
    } else if roll < 0.75 {
        // A pentagon: the swath edge cuts one corner off.
        let i = rng.below(4) as usize;
        let (prev, cur, next) = (corners[(i + 3) % 4], corners[i], corners[(i + 1) % 4]);
        let (t1, t2) = (rng.range(0.15, 0.85), rng.range(0.15, 0.85));
        let a = (
            prev.0 + t1 * (cur.0 - prev.0),
            prev.1 + t1 * (cur.1 - prev.1),
        );
        let b = (cur.0 + t2 * (next.0 - cur.0), cur.1 + t2 * (next.1 - cur.1));
        let mut ring = Vec::with_capacity(5);
        for (k, &p) in corners.iter().enumerate() {
            if k == i {
                ring.push(a);
                ring.push(b);
            } else {
                ring.push(p);
            }
        }
        ring
    } else {
        // A quadrilateral: the swath edge runs from the top edge to the bottom edge.
        let (top, bottom) = (rng.range(0.15, 0.85), rng.range(0.15, 0.85));
        if rng.chance(0.5) {
            vec![(0.0, 1.0), (top, 1.0), (bottom, 0.0), (0.0, 0.0)]
        } else {
            vec![(top, 1.0), (1.0, 1.0), (1.0, 0.0), (bottom, 0.0)]
        }
    }
}

/// A tile and a footprint inside it as `(lon, lat)` points, or `None` if the footprint
/// would leave [-180, 180] or cross the antimeridian.
fn footprint(rng: &mut Rng, lat: f64, lon: f64) -> Option<(mgrs::Tile, Vec<(f64, f64)>)> {
    let tile = mgrs::tile_of(lat, lon);
    let ring: Vec<(f64, f64)> = unit_footprint(rng)
        .into_iter()
        .map(|(u, v)| {
            let x = tile.ulx + u * TILE_SIZE;
            let y = tile.uly - (1.0 - v) * TILE_SIZE;
            let (la, lo) = mgrs::from_utm(x, y, tile.zone);
            (round7(lo), round7(la))
        })
        .collect();
    let (min, max) = ring
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    (min >= -180.0 && max <= 180.0 && max - min < 90.0).then_some((tile, ring))
}

/// Solar azimuth (degrees clockwise from north) at a place and time.
pub(crate) fn sun_azimuth(lat: f64, lon: f64, t: DateTime<Utc>) -> f64 {
    let doy = f64::from(t.ordinal());
    let decl = (23.44f64).to_radians() * (std::f64::consts::TAU * (doy - 81.0) / 365.0).sin();
    let utc_h = f64::from(t.num_seconds_from_midnight()) / 3600.0;
    let solar_h = utc_h + lon / 15.0;
    let h = ((solar_h - 12.0) * 15.0).to_radians();
    let phi = lat.to_radians();
    let az = h
        .sin()
        .atan2(h.cos() * phi.sin() - decl.tan() * phi.cos())
        .to_degrees()
        + 180.0;
    az.rem_euclid(360.0)
}

fn platform(rng: &mut Rng, c: Collection, day: NaiveDate) -> &'static str {
    match c {
        Collection::Hlss30 => {
            let n = if day.year() >= 2025 { 3 } else { 2 };
            ["Sentinel-2A", "Sentinel-2B", "Sentinel-2C"][rng.below(n) as usize]
        }
        Collection::Hlsl30 => {
            let l9 = NaiveDate::from_ymd_opt(2021, 11, 1).is_some_and(|d| day >= d);
            if l9 && rng.chance(0.5) {
                "LANDSAT-9"
            } else {
                "LANDSAT-8"
            }
        }
    }
}

/// The one-granule recipe: a begin time and a place; the rest is drawn.
struct Spec {
    begin: DateTime<Utc>,
    end: Option<DateTime<Utc>>,
    lat: f64,
    lon: f64,
}

fn granule(rng: &mut Rng, c: Collection, day: NaiveDate, spec: &Spec) -> Option<GranuleMeta> {
    let (tile, ring) = footprint(rng, spec.lat, spec.lon)?;
    let begin = spec.begin;
    let end = spec.end.unwrap_or(match c {
        Collection::Hlsl30 if rng.chance(0.5) => begin + Duration::microseconds(23_882_000),
        _ => begin,
    });
    let id_time = match c {
        // The datatake's start, up to 12 minutes before the tile was sensed.
        Collection::Hlss30 => begin - Duration::microseconds(rng.below(720_000_000) as i64),
        Collection::Hlsl30 => begin,
    };
    let granule_ur = format!(
        "HLS.{}.T{}.{}T{}.v2.0",
        c.product(),
        tile.id,
        year_doy(id_time.date_naive()),
        id_time.format("%H%M%S")
    );
    let cloud = if rng.chance(0.3) {
        rng.below(6)
    } else {
        rng.below(101)
    };
    let view_azimuth = if rng.chance(0.5) {
        rng.range(95.0, 115.0)
    } else {
        rng.range(275.0, 300.0)
    };
    // LP DAAC ingests a granule 32 to 64 hours after it was sensed (the recorded entries'
    // `updated` is that much after their `time_start`).
    let updated = begin + Duration::milliseconds(rng.range(32.0 * 3.6e6, 64.0 * 3.6e6) as i64);
    Some(GranuleMeta {
        collection: c,
        granule_ur,
        concept_id: String::new(),
        begin,
        end,
        updated,
        platform: platform(rng, c, day).to_string(),
        instrument: match c {
            Collection::Hlss30 => "Sentinel-2 MSI",
            Collection::Hlsl30 => "OLI",
        }
        .to_string(),
        polygons: vec![ring],
        cloud_cover: Some(cloud as f64),
        mgrs_tile: Some(tile.id),
        ulx: Some(tile.ulx),
        uly: Some(tile.uly),
        nrows: Some(3660),
        ncols: Some(3660),
        resolution: Some(30.0),
        // At full f64 precision (17 significant digits), unlike the 8 decimals LP DAAC
        // writes: a reader or writer that does not round numbers correctly changes them.
        sun_azimuth: Some(sun_azimuth(spec.lat, spec.lon, begin)),
        view_azimuth: Some(round8(view_azimuth)),
        doi: Some(c.doi().to_string()),
    })
}

fn midnight(day: NaiveDate) -> DateTime<Utc> {
    Utc.from_utc_datetime(&day.and_hms_opt(0, 0, 0).unwrap_or_default())
}

/// Begin times of the three edge granules every (collection, day) has, with the end of the
/// one that runs into the next day.
fn edges(day: NaiveDate) -> [(DateTime<Utc>, Option<DateTime<Utc>>); 3] {
    let m = midnight(day);
    let last = m + Duration::microseconds(86_399_950_000);
    let late = m + Duration::seconds(86_390);
    [
        (last, None),
        (m, None),
        (late, Some(late + Duration::microseconds(23_882_000))),
    ]
}

/// Concept-id block of a (collection, day): ids of different days never collide.
fn concept_block(c: Collection, day: NaiveDate) -> u64 {
    let d = (day - first_supported_day()).num_days().max(0) as u64;
    let slot = d * 2
        + match c {
            Collection::Hlsl30 => 0,
            Collection::Hlss30 => 1,
        };
    1_000_000_000 + slot * u64::from(MAX_PER_COLLECTION_DAY)
}

/// A granule of `c` that begins on `day` at `begin` (a random morning overpass when
/// `None`), somewhere on land: a late ingest. Its concept id is left empty and its
/// `updated` is the generator's; the caller sets both. `None` if no footprint fits in
/// 50 tries.
pub(crate) fn late_granule(
    rng: &mut Rng,
    c: Collection,
    day: NaiveDate,
    begin: Option<DateTime<Utc>>,
) -> Option<GranuleMeta> {
    (0..50).find_map(|_| {
        let (lat, lon) = land_point(rng);
        let begin = begin.unwrap_or_else(|| {
            let hours = (10.5 - lon / 15.0 + rng.range(-0.4, 0.4)).rem_euclid(24.0);
            let us = ((hours * 3.6e9) as i64).clamp(0, 86_399_999_999);
            midnight(day) + Duration::microseconds(us)
        });
        let spec = Spec {
            begin,
            end: None,
            lat,
            lon,
        };
        granule(rng, c, day, &spec)
    })
}

/// Every granule of `c` beginning on `day` (unsorted).
pub(crate) fn generate_day(
    config: &SyntheticConfig,
    c: Collection,
    day: NaiveDate,
) -> Vec<Granule> {
    let n = per_collection(config.granules_per_day, c) as usize;
    let mut rng = Rng::from_parts(&[
        config.seed,
        u64::from(c == Collection::Hlss30),
        day.num_days_from_ce() as u64,
    ]);
    let mut metas: Vec<GranuleMeta> = Vec::with_capacity(n);
    let mut ids: HashSet<String> = HashSet::with_capacity(n);
    let mut push = |meta: Option<GranuleMeta>, metas: &mut Vec<GranuleMeta>| -> bool {
        match meta {
            Some(m) if ids.insert(m.granule_ur.clone()) => {
                metas.push(m);
                true
            }
            _ => false,
        }
    };
    for (begin, end) in edges(day) {
        for _ in 0..50 {
            let (lat, lon) = land_point(&mut rng);
            let spec = Spec {
                begin,
                end,
                lat,
                lon,
            };
            if push(granule(&mut rng, c, day, &spec), &mut metas) {
                break;
            }
        }
    }
    let m = midnight(day);
    let mut attempts = 0usize;
    while metas.len() < n && attempts < n * 20 + 100 {
        attempts += 1;
        let (lat, lon) = land_point(&mut rng);
        let hours = (10.5 - lon / 15.0 + rng.range(-0.4, 0.4)).rem_euclid(24.0);
        let us = ((hours * 3.6e9) as i64).clamp(0, 86_399_999_999);
        let begin = m + Duration::microseconds(us);
        // Landsat scenes often cover 2–4 tiles, all with the scene's begin time.
        let tiles = if c == Collection::Hlsl30 && rng.chance(0.3) {
            2 + rng.below(3) as usize
        } else {
            1
        };
        for k in 0..tiles.min(n - metas.len()) {
            let (dlat, dlon) = match k {
                0 => (0.0, 0.0),
                1 => (-0.9, 0.0),
                2 => (0.0, 1.3 / lat.to_radians().cos().max(0.2)),
                _ => (-0.9, 1.3 / lat.to_radians().cos().max(0.2)),
            };
            let spec = Spec {
                begin,
                end: None,
                lat: (lat + dlat).clamp(-80.0, 83.0),
                lon: lon + dlon,
            };
            push(granule(&mut rng, c, day, &spec), &mut metas);
        }
    }
    // Distinct concept numbers in the day's block, in no particular order (as CMR's are).
    let stride = u64::from(MAX_PER_COLLECTION_DAY) / (metas.len().max(1) as u64);
    let mut nums: Vec<u64> = (0..metas.len() as u64)
        .map(|i| concept_block(c, day) + i * stride + rng.below(stride))
        .collect();
    rng.shuffle(&mut nums);
    metas
        .into_iter()
        .zip(nums)
        .filter_map(|(mut meta, num)| {
            meta.concept_id = format!("G{num}-LPCLOUD");
            Granule::new(meta)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hls_flow::source::hls::{format_datetime, to_stac_item};
    use std::collections::HashMap;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn config(n: u32, seed: u64) -> SyntheticConfig {
        SyntheticConfig {
            start: day(2024, 5, 1),
            end: day(2024, 5, 31),
            granules_per_day: n,
            seed,
        }
    }

    fn metas(cfg: &SyntheticConfig, c: Collection, d: NaiveDate) -> Vec<GranuleMeta> {
        generate_day(cfg, c, d)
            .into_iter()
            .map(|g| g.meta)
            .collect()
    }

    #[test]
    fn deterministic_in_seed_collection_and_day() {
        let cfg = config(300, 7);
        let d = day(2024, 5, 3);
        let a = metas(&cfg, Collection::Hlss30, d);
        assert_eq!(a, metas(&cfg, Collection::Hlss30, d));
        assert_ne!(a, metas(&config(300, 8), Collection::Hlss30, d));
        assert_ne!(a, metas(&cfg, Collection::Hlss30, day(2024, 5, 4)));
        // Independent of what else was generated, and of the range configured.
        let other = SyntheticConfig {
            start: d,
            end: d,
            ..cfg.clone()
        };
        assert_eq!(a, metas(&other, Collection::Hlss30, d));
    }

    #[test]
    fn splits_the_day_between_collections() {
        let cfg = config(1000, 1);
        let d = day(2024, 5, 9);
        let l = generate_day(&cfg, Collection::Hlsl30, d).len();
        let s = generate_day(&cfg, Collection::Hlss30, d).len();
        assert_eq!((l, s), (350, 650));
        assert_eq!(per_collection(2, Collection::Hlsl30), 3);
    }

    #[test]
    fn every_day_has_the_edge_granules() {
        let cfg = config(40, 3);
        for c in Collection::ALL {
            for d in [day(2024, 5, 1), day(2024, 5, 17)] {
                let ms = metas(&cfg, c, d);
                let begins: Vec<String> = ms.iter().map(|m| format_datetime(&m.begin)).collect();
                let at = |t: &str| format!("{d}T{t}Z");
                assert!(begins.contains(&at("23:59:59.950000")), "{c} {d}");
                assert!(begins.contains(&at("00:00:00.000000")), "{c} {d}");
                let late = ms
                    .iter()
                    .find(|m| format_datetime(&m.begin) == at("23:59:50.000000"))
                    .unwrap();
                assert_eq!(late.end.date_naive(), d.succ_opt().unwrap());
                // Microseconds survive into the item.
                let last = ms
                    .iter()
                    .find(|m| format_datetime(&m.begin) == at("23:59:59.950000"))
                    .unwrap();
                let item = to_stac_item(last);
                assert_eq!(item["properties"]["datetime"], at("23:59:59.950000"));
                for m in &ms {
                    assert_eq!(m.begin.date_naive(), d);
                }
            }
        }
    }

    #[test]
    fn ids_concepts_and_times_look_real() {
        let cfg = config(600, 11);
        let mut ids = HashSet::new();
        let mut concepts = HashSet::new();
        let mut s30_previous_day = 0;
        for d in [day(2024, 5, 1), day(2024, 5, 2)] {
            for c in Collection::ALL {
                for m in metas(&cfg, c, d) {
                    assert!(ids.insert(m.granule_ur.clone()), "{}", m.granule_ur);
                    assert!(concepts.insert(m.concept_id.clone()), "{}", m.concept_id);
                    let digits = m
                        .concept_id
                        .strip_prefix('G')
                        .and_then(|s| s.strip_suffix("-LPCLOUD"))
                        .unwrap();
                    assert_eq!(digits.len(), 10);
                    assert!(digits.bytes().all(|b| b.is_ascii_digit()));
                    let parts: Vec<&str> = m.granule_ur.split('.').collect();
                    assert_eq!(parts.len(), 6, "{}", m.granule_ur);
                    assert_eq!(
                        (parts[0], parts[1], parts[4], parts[5]),
                        ("HLS", c.product(), "v2", "0")
                    );
                    assert_eq!(parts[2], format!("T{}", m.mgrs_tile.as_deref().unwrap()));
                    let stamp = chrono::NaiveDateTime::parse_from_str(parts[3], "%Y%jT%H%M%S")
                        .unwrap()
                        .and_utc();
                    let lag = m.begin - stamp;
                    match c {
                        Collection::Hlsl30 => {
                            assert_eq!(stamp.timestamp(), m.begin.timestamp());
                            assert!(m.platform == "LANDSAT-8" || m.platform == "LANDSAT-9");
                            assert_eq!(m.instrument, "OLI");
                        }
                        Collection::Hlss30 => {
                            assert!(
                                lag >= Duration::zero() && lag <= Duration::minutes(12),
                                "{lag}"
                            );
                            if stamp.date_naive() < d {
                                s30_previous_day += 1;
                            }
                            assert!(m.platform == "Sentinel-2A" || m.platform == "Sentinel-2B");
                            assert_eq!(m.instrument, "Sentinel-2 MSI");
                        }
                    }
                    // Ingested 32 to 64 hours after sensing, as the recorded entries were.
                    let lag = m.updated - m.begin;
                    assert!(
                        lag >= Duration::hours(32) && lag <= Duration::hours(64),
                        "{lag}"
                    );
                    let cc = m.cloud_cover.unwrap();
                    assert!(cc.fract() == 0.0 && (0.0..=100.0).contains(&cc));
                    for a in [m.sun_azimuth.unwrap(), m.view_azimuth.unwrap()] {
                        assert!((0.0..360.0).contains(&a));
                    }
                    let view = m.view_azimuth.unwrap();
                    assert_eq!((view * 1e8).round() / 1e8, view);
                }
            }
        }
        // The midnight granule's datatake started the day before.
        assert!(s30_previous_day >= 2);
    }

    #[test]
    fn tiles_footprints_and_grid_agree() {
        let cfg = config(400, 5);
        let ulxs = [
            99_960.0, 199_980.0, 300_000.0, 399_960.0, 499_980.0, 600_000.0, 699_960.0, 799_980.0,
        ];
        for c in Collection::ALL {
            for m in metas(&cfg, c, day(2024, 5, 20)) {
                let tile = m.mgrs_tile.clone().unwrap();
                let zone: u8 = tile[..2].parse().unwrap();
                let (ulx, uly) = (m.ulx.unwrap(), m.uly.unwrap());
                assert!(ulxs.contains(&ulx), "{tile} {ulx}");
                assert_eq!(uly % 60.0, 0.0);
                let ring = &m.polygons[0];
                assert!((4..=5).contains(&ring.len()));
                let lons: Vec<f64> = ring.iter().map(|p| p.0).collect();
                let span = lons.iter().cloned().fold(f64::MIN, f64::max)
                    - lons.iter().cloned().fold(f64::MAX, f64::min);
                assert!(span < 10.0, "{tile} crosses the antimeridian");
                for &(lon, lat) in ring {
                    let (x, y) = mgrs::to_utm(lat, lon, zone);
                    assert!(x > ulx - 2.0 && x < ulx + TILE_SIZE + 2.0, "{tile} x {x}");
                    assert!(y < uly + 2.0 && y > uly - TILE_SIZE - 2.0, "{tile} y {y}");
                }
                // The corner stated by the id is the one computed from the footprint.
                assert_eq!(
                    mgrs::tile_corner(&tile, ring[0].1, ring[0].0),
                    Some((ulx, uly))
                );
                // Clockwise, as ECHO10 writes it.
                let area: f64 = (0..ring.len())
                    .map(|i| {
                        let (a, b) = (ring[i], ring[(i + 1) % ring.len()]);
                        a.0 * b.1 - b.0 * a.1
                    })
                    .sum();
                assert!(area < 0.0, "{tile}");
            }
        }
    }

    #[test]
    fn morning_overpasses_and_landsat_scenes() {
        let cfg = config(2000, 9);
        let d = day(2024, 5, 12);
        let ms = metas(&cfg, Collection::Hlsl30, d);
        let mut by_begin: HashMap<DateTime<Utc>, usize> = HashMap::new();
        let mut near = 0;
        for m in &ms {
            *by_begin.entry(m.begin).or_default() += 1;
            let lon = m.polygons[0][0].0;
            let local = (f64::from(m.begin.num_seconds_from_midnight()) / 3600.0 + lon / 15.0)
                .rem_euclid(24.0);
            if (9.5..=11.5).contains(&local) {
                near += 1;
            }
        }
        assert!(near * 100 >= ms.len() * 95, "{near} of {}", ms.len());
        assert!(by_begin.values().any(|&n| n >= 2), "no multi-tile scene");
        assert!(by_begin.values().all(|&n| n <= 4));
        // Sentinel-2C flies from 2025, Landsat 9 from late 2021.
        let cfg25 = SyntheticConfig {
            start: day(2025, 3, 1),
            end: day(2025, 3, 1),
            ..cfg.clone()
        };
        let s = metas(&cfg25, Collection::Hlss30, day(2025, 3, 1));
        assert!(s.iter().any(|m| m.platform == "Sentinel-2C"));
        let cfg20 = SyntheticConfig {
            start: day(2020, 3, 1),
            end: day(2020, 3, 1),
            ..cfg
        };
        let l = metas(&cfg20, Collection::Hlsl30, day(2020, 3, 1));
        assert!(l.iter().all(|m| m.platform == "LANDSAT-8"));
    }

    #[test]
    fn validates_configs() {
        let ok = config(10, 0);
        assert_eq!(ok.validate(), Ok(()));
        let backwards = SyntheticConfig {
            start: day(2024, 5, 2),
            end: day(2024, 5, 1),
            ..ok.clone()
        };
        assert!(matches!(
            backwards.validate(),
            Err(ConfigError::EndBeforeStart { .. })
        ));
        let early = SyntheticConfig {
            start: day(2000, 1, 1),
            ..ok.clone()
        };
        assert!(matches!(
            early.validate(),
            Err(ConfigError::OutOfRange { .. })
        ));
        let big = SyntheticConfig {
            granules_per_day: 2_000_000,
            ..ok
        };
        assert_eq!(big.validate(), Err(ConfigError::TooMany(2_000_000)));
    }
}
