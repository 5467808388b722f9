//! Well-known binary for the HLS footprint (a 2D MultiPolygon), little-endian, as the
//! GeoParquet encoder of the `stac` crate writes it.

const LITTLE_ENDIAN: u8 = 1;
const POLYGON: u32 = 3;
const MULTI_POLYGON: u32 = 6;

/// Appends the WKB of a MultiPolygon (polygons → rings → `[x, y]`) to `out` and returns
/// the bounds `[minx, miny, maxx, maxy]` of its points (`None` without any).
///
/// Counts are written as `u32`; [`super::item::close_rings`] has checked they fit.
pub(crate) fn write_multipolygon(
    out: &mut Vec<u8>,
    polygons: &[Vec<Vec<[f64; 2]>>],
) -> Option<[f64; 4]> {
    let points: usize = polygons.iter().flatten().map(Vec::len).sum();
    out.reserve(9 + polygons.len() * 9 + points * 16 + 4 * polygons.len());
    out.push(LITTLE_ENDIAN);
    out.extend_from_slice(&MULTI_POLYGON.to_le_bytes());
    out.extend_from_slice(&count(polygons.len()));
    let mut bounds: Option<[f64; 4]> = None;
    for polygon in polygons {
        out.push(LITTLE_ENDIAN);
        out.extend_from_slice(&POLYGON.to_le_bytes());
        out.extend_from_slice(&count(polygon.len()));
        for ring in polygon {
            out.extend_from_slice(&count(ring.len()));
            for &[x, y] in ring {
                out.extend_from_slice(&x.to_le_bytes());
                out.extend_from_slice(&y.to_le_bytes());
                bounds = Some(match bounds {
                    None => [x, y, x, y],
                    Some([a, b, c, d]) => [a.min(x), b.min(y), c.max(x), d.max(y)],
                });
            }
        }
    }
    bounds
}

fn count(n: usize) -> [u8; 4] {
    u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes()
}
