//! Hilbert keys of footprints: a position on an order-16 Hilbert curve over the whole
//! lon/lat plane, so that items close on the ground get close keys.

/// Order of the curve: a 2¹⁶ × 2¹⁶ grid (cells of ~0.0055° × 0.0027°), giving 32-bit keys.
pub const ORDER: u32 = 16;

/// The key of footprints without a usable bbox (null or not finite): after all others.
pub const NO_KEY: u32 = u32::MAX;

/// Distance along a Hilbert curve of `order` (a `2^order` square grid) of the cell `(x, y)`.
/// Coordinates beyond the grid are clamped. `order` must be at most 16.
///
/// ```
/// use hls_flow::write::repartition::hilbert::hilbert_d;
/// // The order-1 curve visits (0,0), (0,1), (1,1), (1,0).
/// assert_eq!(hilbert_d(1, 0, 0), 0);
/// assert_eq!(hilbert_d(1, 0, 1), 1);
/// assert_eq!(hilbert_d(1, 1, 1), 2);
/// assert_eq!(hilbert_d(1, 1, 0), 3);
/// ```
pub fn hilbert_d(order: u32, x: u32, y: u32) -> u32 {
    let order = order.min(ORDER);
    let n: u64 = 1 << order;
    let (mut x, mut y) = (u64::from(x).min(n - 1), u64::from(y).min(n - 1));
    let mut d: u64 = 0;
    let mut s = n / 2;
    while s > 0 {
        let rx = u64::from(x & s > 0);
        let ry = u64::from(y & s > 0);
        d += s * s * ((3 * rx) ^ ry);
        if ry == 0 {
            if rx == 1 {
                x = n - 1 - x;
                y = n - 1 - y;
            }
            std::mem::swap(&mut x, &mut y);
        }
        s /= 2;
    }
    // d < n² ≤ 2³²
    u32::try_from(d).unwrap_or(u32::MAX)
}

/// The cell `(x, y)` at distance `d` along a Hilbert curve of `order` (the inverse of
/// [`hilbert_d`]).
pub fn hilbert_xy(order: u32, d: u32) -> (u32, u32) {
    let order = order.min(ORDER);
    let n: u64 = 1 << order;
    let (mut x, mut y) = (0u64, 0u64);
    let mut t = u64::from(d);
    let mut s = 1u64;
    while s < n {
        let rx = 1 & (t / 2);
        let ry = 1 & (t ^ rx);
        if ry == 0 {
            if rx == 1 {
                x = s - 1 - x;
                y = s - 1 - y;
            }
            std::mem::swap(&mut x, &mut y);
        }
        x += s * rx;
        y += s * ry;
        t /= 4;
        s *= 2;
    }
    (x as u32, y as u32)
}

/// Grid cell of a coordinate in `[lo, hi]` (clamped) on a 2¹⁶ grid.
fn cell(v: f64, lo: f64, hi: f64) -> u32 {
    let max = f64::from((1u32 << ORDER) - 1);
    let c = ((v - lo) / (hi - lo) * f64::from(1u32 << ORDER)).floor();
    c.clamp(0.0, max) as u32
}

/// The 32-bit Hilbert key of a longitude/latitude point (clamped to the valid ranges).
pub fn point_key(lon: f64, lat: f64) -> u32 {
    if !(lon.is_finite() && lat.is_finite()) {
        return NO_KEY;
    }
    hilbert_d(ORDER, cell(lon, -180.0, 180.0), cell(lat, -90.0, 90.0))
}

/// The 32-bit Hilbert key of a footprint's bbox centroid. A bbox whose west edge is east of
/// its east edge crosses the antimeridian: its centroid is taken across it. A bbox with a
/// non-finite value gets [`NO_KEY`].
///
/// ```
/// use hls_flow::write::repartition::hilbert::bbox_key;
/// let a = bbox_key(10.0, 45.0, 11.0, 46.0);
/// let b = bbox_key(10.1, 45.0, 11.1, 46.0);
/// let far = bbox_key(-120.0, -30.0, -119.0, -29.0);
/// assert!(a.abs_diff(b) < a.abs_diff(far));
/// ```
pub fn bbox_key(xmin: f64, ymin: f64, xmax: f64, ymax: f64) -> u32 {
    let mut lon = (xmin + xmax) / 2.0;
    if xmin > xmax {
        lon = (xmin + xmax + 360.0) / 2.0;
        if lon > 180.0 {
            lon -= 360.0;
        }
    }
    point_key(lon, (ymin + ymax) / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_values_of_the_order_2_curve() {
        let expected = [
            (0, 0),
            (1, 0),
            (1, 1),
            (0, 1),
            (0, 2),
            (0, 3),
            (1, 3),
            (1, 2),
            (2, 2),
            (2, 3),
            (3, 3),
            (3, 2),
            (3, 1),
            (2, 1),
            (2, 0),
            (3, 0),
        ];
        for (d, &(x, y)) in expected.iter().enumerate() {
            assert_eq!(hilbert_d(2, x, y), d as u32, "({x},{y})");
            assert_eq!(hilbert_xy(2, d as u32), (x, y), "d={d}");
        }
    }

    #[test]
    fn full_order_keys_span_32_bits() {
        let n = 1u32 << ORDER;
        assert_eq!(hilbert_d(ORDER, 0, 0), 0);
        // The curve ends in the corner next to its start.
        assert_eq!(hilbert_d(ORDER, n - 1, 0), u32::MAX);
        assert_eq!(point_key(-180.0, -90.0), 0);
        assert_eq!(point_key(180.0, -90.0), u32::MAX);
        // Out-of-range coordinates are clamped; non-finite ones sort last.
        assert_eq!(point_key(-500.0, -100.0), 0);
        assert_eq!(point_key(f64::NAN, 0.0), NO_KEY);
        // Quadrants: the lower-left quarter of the world is the first quarter of keys.
        assert!(point_key(-90.0, -45.0) < 1 << 30);
        assert!(point_key(90.0, -45.0) >= 3 << 30);
    }

    #[test]
    fn antimeridian_bboxes_take_their_centroid_across_it() {
        // 179..-179 is centred on 180, not on 0.
        assert_eq!(bbox_key(179.0, 10.0, -179.0, 11.0), point_key(180.0, 10.5));
        assert_eq!(bbox_key(170.0, 10.0, -150.0, 11.0), point_key(-170.0, 10.5));
        assert_eq!(bbox_key(-1.0, 10.0, 1.0, 11.0), point_key(0.0, 10.5));
    }

    proptest! {
        #[test]
        fn consecutive_keys_are_neighbouring_cells(d in 0u32..u32::MAX) {
            let (x0, y0) = hilbert_xy(ORDER, d);
            let (x1, y1) = hilbert_xy(ORDER, d + 1);
            prop_assert_eq!(x0.abs_diff(x1) + y0.abs_diff(y1), 1);
            prop_assert_eq!(hilbert_d(ORDER, x0, y0), d);
        }

        #[test]
        fn nearby_points_mostly_share_key_prefixes(lon in -179.0f64..179.0, lat in -89.0f64..89.0) {
            // Points within one grid cell of each other at the 8-bit level (16×16 world grid)
            // land in the same top-level bucket or a neighbouring cell's.
            let a = point_key(lon, lat) >> 24;
            let (ax, ay) = hilbert_xy(4, a);
            let b = point_key(lon + 0.01, lat + 0.01) >> 24;
            let (bx, by) = hilbert_xy(4, b);
            prop_assert!(ax.abs_diff(bx) <= 1 && ay.abs_diff(by) <= 1);
        }
    }
}
