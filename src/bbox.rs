//! Bounding boxes as `W,S,E,N`.

use crate::error::{BboxProblem, Error, Result};
use std::fmt;
use std::str::FromStr;

/// A longitude/latitude bounding box; west ≤ east (no antimeridian crossing), south ≤ north.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bbox {
    /// Western longitude.
    pub west: f64,
    /// Southern latitude.
    pub south: f64,
    /// Eastern longitude.
    pub east: f64,
    /// Northern latitude.
    pub north: f64,
}

impl Bbox {
    /// A validated box.
    ///
    /// ```
    /// use hls_flow::bbox::Bbox;
    /// assert!(Bbox::new(-93.0, 46.0, -92.0, 47.0).is_ok());
    /// assert!(Bbox::new(10.0, 0.0, 5.0, 1.0).is_err()); // west > east
    /// assert!(Bbox::new(0.0, -91.0, 1.0, 1.0).is_err()); // latitude out of range
    /// ```
    pub fn new(west: f64, south: f64, east: f64, north: f64) -> Result<Bbox> {
        Bbox::check(west, south, east, north).map_err(|problem| Error::InvalidBbox {
            input: format!("{west},{south},{east},{north}"),
            problem,
        })
    }

    fn check(west: f64, south: f64, east: f64, north: f64) -> Result<Bbox, BboxProblem> {
        if ![west, south, east, north].iter().all(|v| v.is_finite()) {
            return Err(BboxProblem::NotFinite);
        }
        if !(-180.0..=180.0).contains(&west) || !(-180.0..=180.0).contains(&east) {
            return Err(BboxProblem::Longitude);
        }
        if !(-90.0..=90.0).contains(&south) || !(-90.0..=90.0).contains(&north) {
            return Err(BboxProblem::Latitude);
        }
        if west > east {
            return Err(BboxProblem::WestOfEast);
        }
        if south > north {
            return Err(BboxProblem::SouthOfNorth);
        }
        Ok(Bbox {
            west,
            south,
            east,
            north,
        })
    }
}

/// The union of two `[minx, miny, maxx, maxy]` bounds, either of which may be unknown.
pub fn union_bounds(a: Option<[f64; 4]>, b: Option<[f64; 4]>) -> Option<[f64; 4]> {
    match (a, b) {
        (Some(a), Some(b)) => Some([
            a[0].min(b[0]),
            a[1].min(b[1]),
            a[2].max(b[2]),
            a[3].max(b[3]),
        ]),
        (a, b) => a.or(b),
    }
}

/// `[minx, miny, maxx, maxy]` of the positions (arrays of numbers) in GeoJSON coordinates
/// nested to any depth.
pub fn position_bounds(coordinates: &serde_json::Value) -> Option<[f64; 4]> {
    let serde_json::Value::Array(values) = coordinates else {
        return None;
    };
    match (
        values.first().and_then(|v| v.as_f64()),
        values.get(1).and_then(|v| v.as_f64()),
    ) {
        (Some(x), Some(y)) => Some([x, y, x, y]),
        _ => values
            .iter()
            .fold(None, |b, v| union_bounds(b, position_bounds(v))),
    }
}

impl FromStr for Bbox {
    type Err = Error;

    fn from_str(s: &str) -> Result<Bbox> {
        let parts: Vec<&str> = s.split(',').map(str::trim).collect();
        let bad = |problem: BboxProblem| Error::InvalidBbox {
            input: s.to_string(),
            problem,
        };
        if parts.len() != 4 {
            return Err(bad(BboxProblem::NotFour));
        }
        let mut v = [0.0; 4];
        for (slot, p) in v.iter_mut().zip(&parts) {
            *slot = p.parse().map_err(|source| {
                bad(BboxProblem::NotANumber {
                    text: p.to_string(),
                    source,
                })
            })?;
        }
        Bbox::check(v[0], v[1], v[2], v[3]).map_err(bad)
    }
}

impl fmt::Display for Bbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{},{},{},{}",
            self.west, self.south, self.east, self.north
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_validates() {
        let b: Bbox = "-93, 46,-92,47".parse().unwrap();
        assert_eq!(b.to_string(), "-93,46,-92,47");
        for bad in [
            "1,2,3",
            "a,b,c,d",
            "10,0,5,1",
            "0,-91,1,1",
            "0,0,1,95",
            "-181,0,0,1",
            "0,5,1,4",
            "NaN,0,1,1",
            "",
        ] {
            let e = bad.parse::<Bbox>().unwrap_err();
            assert!(e.is_usage(), "{bad}");
            assert!(e.to_string().contains(bad), "{e}");
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_boxes_never_panic(s in ".{0,40}") {
            let _ = s.parse::<Bbox>();
        }

        #[test]
        fn accepted_boxes_are_valid(w in -200.0f64..200.0, s in -100.0f64..100.0, e in -200.0f64..200.0, n in -100.0f64..100.0) {
            if let Ok(b) = format!("{w},{s},{e},{n}").parse::<Bbox>() {
                proptest::prop_assert!(b.west <= b.east && b.south <= b.north);
                proptest::prop_assert!(b.west >= -180.0 && b.east <= 180.0 && b.south >= -90.0 && b.north <= 90.0);
            }
        }
    }
}
