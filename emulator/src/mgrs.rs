//! UTM (WGS 84, Snyder's series) and the MGRS / Sentinel-2 tiling that HLS uses.
//!
//! Northings are signed here, as HLS writes `ULY`: negative south of the equator.

/// WGS 84 semi-major axis (m).
const A: f64 = 6_378_137.0;
/// WGS 84 flattening.
const F: f64 = 1.0 / 298.257_223_563;
/// UTM scale factor on the central meridian.
const K0: f64 = 0.9996;
/// UTM false easting (m).
const FALSE_EASTING: f64 = 500_000.0;
/// Side of an HLS (Sentinel-2) tile (m).
pub(crate) const TILE_SIZE: f64 = 109_800.0;

const LAT_BANDS: &[u8; 20] = b"CDEFGHJKLMNPQRSTUVWX";
const ROW_LETTERS: &[u8; 20] = b"ABCDEFGHJKLMNPQRSTUV";
const COL_SETS: [&[u8; 8]; 3] = [b"ABCDEFGH", b"JKLMNPQR", b"STUVWXYZ"];

fn e2() -> f64 {
    F * (2.0 - F)
}

/// The UTM zone (1..=60) of a longitude.
pub(crate) fn zone_of(lon: f64) -> u8 {
    let z = ((lon + 180.0) / 6.0).floor() as i64 + 1;
    z.clamp(1, 60) as u8
}

fn central_meridian(zone: u8) -> f64 {
    f64::from(zone) * 6.0 - 183.0
}

/// Projects `(lat, lon)` (degrees) into `zone`: `(easting, signed northing)`.
pub(crate) fn to_utm(lat: f64, lon: f64, zone: u8) -> (f64, f64) {
    let e2 = e2();
    let ep2 = e2 / (1.0 - e2);
    let phi = lat.to_radians();
    let (s, c) = phi.sin_cos();
    let n = A / (1.0 - e2 * s * s).sqrt();
    let t = phi.tan().powi(2);
    let cc = ep2 * c * c;
    let a = c * (lon - central_meridian(zone)).to_radians();
    let e4 = e2 * e2;
    let e6 = e4 * e2;
    let m = A
        * ((1.0 - e2 / 4.0 - 3.0 * e4 / 64.0 - 5.0 * e6 / 256.0) * phi
            - (3.0 * e2 / 8.0 + 3.0 * e4 / 32.0 + 45.0 * e6 / 1024.0) * (2.0 * phi).sin()
            + (15.0 * e4 / 256.0 + 45.0 * e6 / 1024.0) * (4.0 * phi).sin()
            - (35.0 * e6 / 3072.0) * (6.0 * phi).sin());
    let x = K0
        * n
        * (a + (1.0 - t + cc) * a.powi(3) / 6.0
            + (5.0 - 18.0 * t + t * t + 72.0 * cc - 58.0 * ep2) * a.powi(5) / 120.0)
        + FALSE_EASTING;
    let y = K0
        * (m + n
            * phi.tan()
            * (a * a / 2.0
                + (5.0 - t + 9.0 * cc + 4.0 * cc * cc) * a.powi(4) / 24.0
                + (61.0 - 58.0 * t + t * t + 600.0 * cc - 330.0 * ep2) * a.powi(6) / 720.0));
    (x, y)
}

/// Inverse of [`to_utm`]: `(lat, lon)` in degrees.
pub(crate) fn from_utm(x: f64, y: f64, zone: u8) -> (f64, f64) {
    let e2 = e2();
    let ep2 = e2 / (1.0 - e2);
    let e4 = e2 * e2;
    let e6 = e4 * e2;
    let m = y / K0;
    let mu = m / (A * (1.0 - e2 / 4.0 - 3.0 * e4 / 64.0 - 5.0 * e6 / 256.0));
    let r = (1.0 - e2).sqrt();
    let e1 = (1.0 - r) / (1.0 + r);
    let phi1 = mu
        + (3.0 * e1 / 2.0 - 27.0 * e1.powi(3) / 32.0) * (2.0 * mu).sin()
        + (21.0 * e1 * e1 / 16.0 - 55.0 * e1.powi(4) / 32.0) * (4.0 * mu).sin()
        + (151.0 * e1.powi(3) / 96.0) * (6.0 * mu).sin()
        + (1097.0 * e1.powi(4) / 512.0) * (8.0 * mu).sin();
    let (s1, c1) = phi1.sin_cos();
    let cc1 = ep2 * c1 * c1;
    let t1 = phi1.tan().powi(2);
    let n1 = A / (1.0 - e2 * s1 * s1).sqrt();
    let r1 = A * (1.0 - e2) / (1.0 - e2 * s1 * s1).powf(1.5);
    let d = (x - FALSE_EASTING) / (n1 * K0);
    let phi = phi1
        - (n1 * phi1.tan() / r1)
            * (d * d / 2.0
                - (5.0 + 3.0 * t1 + 10.0 * cc1 - 4.0 * cc1 * cc1 - 9.0 * ep2) * d.powi(4) / 24.0
                + (61.0 + 90.0 * t1 + 298.0 * cc1 + 45.0 * t1 * t1
                    - 252.0 * ep2
                    - 3.0 * cc1 * cc1)
                    * d.powi(6)
                    / 720.0);
    let lambda = (d - (1.0 + 2.0 * t1 + cc1) * d.powi(3) / 6.0
        + (5.0 - 2.0 * cc1 + 28.0 * t1 - 3.0 * cc1 * cc1 + 8.0 * ep2 + 24.0 * t1 * t1) * d.powi(5)
            / 120.0)
        / c1;
    (
        phi.to_degrees(),
        central_meridian(zone) + lambda.to_degrees(),
    )
}

/// One HLS tile: its MGRS id and the upper-left corner of its 109.8 km grid.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Tile {
    /// MGRS tile id, e.g. `35VLJ`.
    pub id: String,
    /// UTM zone.
    pub zone: u8,
    /// Upper-left easting (m), snapped to the 60 m grid as Sentinel-2 tiles are.
    pub ulx: f64,
    /// Upper-left northing (m, signed), snapped to the 60 m grid.
    pub uly: f64,
}

fn col_letters(zone: u8) -> &'static [u8; 8] {
    COL_SETS[usize::from((zone - 1) % 3)]
}

fn row_letter(zone: u8, row: i64) -> u8 {
    let shift = if zone.is_multiple_of(2) { 5 } else { 0 };
    ROW_LETTERS[(row + shift).rem_euclid(20) as usize]
}

fn lat_band(lat: f64) -> u8 {
    let i = ((lat + 80.0) / 8.0).floor() as i64;
    LAT_BANDS[i.clamp(0, 19) as usize]
}

/// The grid corner of a 100 km square: ULX from its west edge, ULY from its north edge
/// (`row` counts 100 km from the equator, negative in the south).
fn corner(col: i64, row: i64) -> (f64, f64) {
    let west = col as f64 * 100_000.0;
    let north = (row + 1) as f64 * 100_000.0;
    ((west / 60.0).floor() * 60.0, (north / 60.0).ceil() * 60.0)
}

/// The tile whose 100 km MGRS square contains `(lat, lon)`.
pub(crate) fn tile_of(lat: f64, lon: f64) -> Tile {
    let zone = zone_of(lon);
    let (x, y) = to_utm(lat, lon, zone);
    let col = ((x / 100_000.0).floor() as i64).clamp(1, 8);
    let row = (y / 100_000.0).floor() as i64;
    // Row letters count from the southern false northing (10,000 km) south of the equator.
    let letter_row = if y < 0.0 { row + 100 } else { row };
    let id = format!(
        "{zone:02}{}{}{}",
        char::from(lat_band(lat)),
        char::from(col_letters(zone)[(col - 1) as usize]),
        char::from(row_letter(zone, letter_row))
    );
    let (ulx, uly) = corner(col, row);
    Tile { id, zone, ulx, uly }
}

/// ULX/ULY of a tile id, given any point `(lat, lon)` of its footprint (to pick which
/// 2,000 km cycle of row letters it is in). `None` for a malformed id.
pub(crate) fn tile_corner(tile: &str, lat: f64, lon: f64) -> Option<(f64, f64)> {
    let b = tile.as_bytes();
    if b.len() != 5 {
        return None;
    }
    let zone: u8 = tile.get(..2)?.parse().ok()?;
    if !(1..=60).contains(&zone) {
        return None;
    }
    let col = col_letters(zone).iter().position(|&c| c == b[3])? as i64 + 1;
    let (_, y) = to_utm(lat, lon, zone);
    let approx = (y / 100_000.0).floor() as i64;
    let row = (approx - 2..=approx + 2)
        .filter(|&r| row_letter(zone, if r < 0 { r + 100 } else { r }) == b[4])
        .min_by_key(|&r| (r - approx).abs())?;
    Some(corner(col, row))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for &(lat, lon) in &[(62.19, 23.74), (-10.5, -70.8), (0.1, 3.0), (71.5, -175.5)] {
            let z = zone_of(lon);
            let (x, y) = to_utm(lat, lon, z);
            let (la, lo) = from_utm(x, y, z);
            assert!(
                (la - lat).abs() < 1e-7 && (lo - lon).abs() < 1e-7,
                "{lat},{lon}"
            );
        }
        // Central meridian of zone 31 at the equator is the false easting.
        let (x, y) = to_utm(0.0, 3.0, 31);
        assert!((x - 500_000.0).abs() < 1e-6 && y.abs() < 1e-6);
    }

    #[test]
    fn known_tiles() {
        // Footprints of real granules (tests/fixtures) and their published ULX/ULY.
        let t = tile_of(61.9, 24.3);
        assert_eq!(t.id, "35VLJ");
        assert_eq!((t.ulx, t.uly), (300_000.0, 6_900_000.0));
        // The real 35VLJ footprint reaches 23.74°E, west of zone 35: S2 tiles overlap
        // their zone's edge, and a point there is first of all in zone 34's tile.
        assert_eq!(tile_of(62.19, 24.2).id, "35VLJ");
        assert_eq!(tile_of(62.19, 23.74).id, "34VFP");
        let t = tile_of(-10.6, -71.3);
        assert_eq!(t.id, "19LBJ");
        assert_eq!((t.ulx, t.uly), (199_980.0, -1_099_980.0));
        let t = tile_of(71.5, -175.5);
        assert_eq!(t.id, "01WEV");
        assert_eq!((t.ulx, t.uly), (499_980.0, 8_000_040.0));
        assert_eq!(tile_of(46.4, -93.6).id, "15TVM");
        assert_eq!(tile_of(47.3, -92.8).id, "15TWN");
    }

    #[test]
    fn corners_from_ids() {
        assert_eq!(
            tile_corner("35VLJ", 62.19, 23.74),
            Some((300_000.0, 6_900_000.0))
        );
        assert_eq!(
            tile_corner("19LBJ", -10.3, -70.74),
            Some((199_980.0, -1_099_980.0))
        );
        assert_eq!(
            tile_corner("01WEV", 71.84, -177.0),
            Some((499_980.0, 8_000_040.0))
        );
        assert_eq!(tile_corner("35VIJ", 62.0, 23.0), None);
        assert_eq!(tile_corner("x", 62.0, 23.0), None);
    }
}
