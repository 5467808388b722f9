//! What LP DAAC's generator does to the values it publishes, written here from its
//! definition rather than taken from hls-flow's mapping, so that the tests compare
//! hls-flow's items with LP DAAC's behaviour and not with hls-flow's own code.
//!
//! The generator builds the geometry with Python's `geojson` (precision 6: every coordinate
//! goes through `round(x, 6)`), takes the bbox from that geometry, and writes datetimes with
//! microseconds and `Z`.

use chrono::{DateTime, Utc};
use hls_flow::source::hls::GranuleMeta;
use serde_json::{Value, json};

/// Python's `round(x, 6)`: the exact decimal expansion of the double (Rust prints a double's
/// digits exactly), rounded at the sixth decimal half to even, read back as the nearest
/// double, sign kept.
pub fn python_round6(x: f64) -> f64 {
    if !x.is_finite() || x.abs() >= 1e9 {
        return x;
    }
    // 80 decimals hold every digit of a double of magnitude ≥ 2⁻²⁷; anything smaller rounds
    // to zero whatever digits follow.
    let exact = format!("{:.80}", x.abs());
    let Some((int, frac)) = exact.split_once('.') else {
        return x;
    };
    let Some((kept, rest)) = frac.split_at_checked(6) else {
        return x;
    };
    let Ok(mut millionths) = format!("{int}{kept}").parse::<u64>() else {
        return x;
    };
    let rest = rest.trim_end_matches('0');
    let up = match rest.as_bytes() {
        [] => false,
        [b'5'] => millionths % 2 == 1,
        [d, ..] => *d >= b'5',
    };
    millionths += u64::from(up);
    let decimal = format!("{}.{:06}", millionths / 1_000_000, millionths % 1_000_000);
    decimal.parse::<f64>().map_or(x, |v| v.copysign(x))
}

/// The published `geometry`: a MultiPolygon of the record's rings, each closed with its first
/// point, every coordinate rounded by [`python_round6`].
pub fn geometry(meta: &GranuleMeta) -> Value {
    let polygons: Vec<Value> = meta
        .polygons
        .iter()
        .map(|ring| {
            let mut points: Vec<(f64, f64)> = ring.clone();
            if ring.first() != ring.last()
                && let Some(&first) = ring.first()
            {
                points.push(first);
            }
            let points: Vec<Value> = points
                .into_iter()
                .map(|(x, y)| json!([python_round6(x), python_round6(y)]))
                .collect();
            json!([points])
        })
        .collect();
    json!({"type": "MultiPolygon", "coordinates": polygons})
}

/// The published `bbox`: the bounds of [`geometry`]'s coordinates, as shapely computes them.
pub fn bbox(meta: &GranuleMeta) -> Option<Value> {
    let mut points = meta
        .polygons
        .iter()
        .flatten()
        .map(|&(x, y)| (python_round6(x), python_round6(y)));
    let (x0, y0) = points.next()?;
    let (mut w, mut s, mut e, mut n) = (x0, y0, x0, y0);
    for (x, y) in points {
        w = w.min(x);
        s = s.min(y);
        e = e.max(x);
        n = n.max(y);
    }
    Some(json!([w, s, e, n]))
}

/// A published datetime: `2021-06-17T10:13:17.089940Z`.
pub fn datetime(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// Puts the generator's geometry, bbox and datetimes into an item built from `meta`.
pub fn apply(item: &mut Value, meta: &GranuleMeta) {
    let Some(obj) = item.as_object_mut() else {
        return;
    };
    if let Some(g) = obj.get_mut("geometry") {
        *g = geometry(meta);
    }
    if let Some(v) = bbox(meta) {
        // In place when present (the map keeps its key order).
        obj.insert("bbox".into(), v);
    }
    if let Some(p) = obj.get_mut("properties").and_then(Value::as_object_mut) {
        for (key, t) in [
            ("datetime", &meta.begin),
            ("start_datetime", &meta.begin),
            ("end_datetime", &meta.end),
        ] {
            if let Some(v) = p.get_mut(key) {
                *v = Value::String(datetime(t));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_as_python() {
        // (x, round(x, 6)) as CPython computes them.
        for (x, r) in [
            (23.2300555, 23.230055),
            (0.0078125, 0.007812),
            (0.0234375, 0.023438),
            (1.0000005, 1.000001),
            (2.6750005, 2.675),
            (-1e-7, -0.0),
            (6e-7, 1e-6),
            (179.9999995, 180.0),
            (-70.85016357, -70.850164),
        ] {
            assert_eq!(python_round6(x).to_bits(), f64::to_bits(r), "{x}");
        }
    }
}
