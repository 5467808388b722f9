//! What a search asks for, and the row-level tests: on the filter columns of a record batch,
//! then on each kept item's footprint (exact intersection).

use super::cql::Cql2Filter;
use crate::collection::Collection;
use crate::error::{BboxProblem, DateProblem, Error, Result};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, TimestampMicrosecondType};
use arrow_array::{Array, BooleanArray, RecordBatch};
use arrow_schema::{ArrowError, DataType, TimeUnit};
use chrono::{DateTime, Utc};
use geo::{BoundingRect, Intersects};
use serde_json::{Map, Value};
use std::collections::{BTreeSet, HashSet};

/// A search: every condition given must hold (none given: every item).
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Collections to search (empty: all).
    pub collections: Vec<Collection>,
    /// The footprint must intersect this geometry (a bbox is given as its rectangle).
    pub geometry: Option<geo::Geometry<f64>>,
    /// The item's `datetime` must be at or after this instant.
    pub start: Option<DateTime<Utc>>,
    /// The item's `datetime` must be at or before this instant.
    pub end: Option<DateTime<Utc>>,
    /// The item's id must be one of these (empty: any).
    pub ids: BTreeSet<String>,
    /// `eo:cloud_cover` at most this.
    pub max_cloud_cover: Option<f64>,
    /// The MGRS tile, as in the id (`T15TWN`).
    pub tile: Option<String>,
    /// A CQL2 filter every match satisfies (set it with [`Query::with_filter`], which also
    /// narrows the other conditions by what it implies).
    pub filter: Option<Cql2Filter>,
}

impl Query {
    /// Sets the geometry to a `W,S,E,N` bbox. West must not be east of east (a search across
    /// the antimeridian is two searches), south not north of north.
    pub fn with_bbox(mut self, b: [f64; 4]) -> Result<Query> {
        let [w, s, e, n] = b;
        let invalid = |problem: BboxProblem| Error::InvalidBbox {
            input: format!("{w},{s},{e},{n}"),
            problem,
        };
        if !b.iter().all(|v| v.is_finite()) {
            return Err(invalid(BboxProblem::SearchNotFinite));
        }
        if !(-180.0..=180.0).contains(&w) || !(-180.0..=180.0).contains(&e) {
            return Err(invalid(BboxProblem::SearchLongitude));
        }
        if !(-90.0..=90.0).contains(&s) || !(-90.0..=90.0).contains(&n) {
            return Err(invalid(BboxProblem::SearchLatitude));
        }
        if w > e || s > n {
            return Err(invalid(BboxProblem::SearchReversed));
        }
        self.geometry = Some(geo::Geometry::Rect(geo::Rect::new(
            geo::coord! { x: w, y: s },
            geo::coord! { x: e, y: n },
        )));
        Ok(self)
    }

    /// Sets the datetime interval from a STAC `datetime` (`A`, `A/B`, `A/..`, `../B`).
    pub fn with_datetime(mut self, s: &str) -> Result<Query> {
        let one = |part: &str| -> Result<Option<DateTime<Utc>>> {
            if part.is_empty() || part == ".." {
                return Ok(None);
            }
            DateTime::parse_from_rfc3339(part)
                .map(|t| Some(t.to_utc()))
                .map_err(|source| Error::InvalidDate {
                    input: s.to_string(),
                    problem: DateProblem::NotRfc3339 {
                        part: part.to_string(),
                        source,
                    },
                })
        };
        let (start, end) = match s.split_once('/') {
            Some((a, b)) if !b.contains('/') => (one(a)?, one(b)?),
            Some(_) => {
                return Err(Error::InvalidDate {
                    input: s.to_string(),
                    problem: DateProblem::TooManySlashes,
                });
            }
            None => {
                let t = one(s)?;
                (t, t)
            }
        };
        if start.is_none() && end.is_none() {
            return Err(Error::InvalidDate {
                input: s.to_string(),
                problem: DateProblem::OpenAtBothEnds,
            });
        }
        if let (Some(a), Some(b)) = (start, end)
            && a > b
        {
            return Err(Error::InvalidDate {
                input: s.to_string(),
                problem: DateProblem::StartAfterEnd,
            });
        }
        self.start = start;
        self.end = end;
        Ok(self)
    }

    /// Adds a CQL2 filter, and the bounds it implies ([`Cql2Filter::narrow`]).
    pub fn with_filter(mut self, filter: Cql2Filter) -> Query {
        filter.narrow(&mut self);
        self.filter = Some(filter);
        self
    }

    /// Whether an item (as JSON) satisfies the CQL2 filter, if there is one.
    pub fn filter_matches(&self, item: &Map<String, Value>) -> Result<bool> {
        self.filter.as_ref().map_or(Ok(true), |f| f.matches(item))
    }

    /// The query geometry's bbox `[W, S, E, N]`, if there is a geometry.
    pub fn bbox(&self) -> Option<[f64; 4]> {
        let r = self.geometry.as_ref()?.bounding_rect()?;
        Some([r.min().x, r.min().y, r.max().x, r.max().y])
    }

    /// Whether the collection is searched.
    pub fn wants(&self, c: Collection) -> bool {
        self.collections.is_empty() || self.collections.contains(&c)
    }

    /// The columns [`Query::row_mask`] reads for this query (none: every row passes it).
    pub fn mask_columns(&self) -> Vec<&'static str> {
        let mut columns = Vec::new();
        if !self.ids.is_empty() || self.tile.is_some() {
            columns.push("id");
        }
        if self.start.is_some() || self.end.is_some() {
            columns.push("datetime");
        }
        if self.max_cloud_cover.is_some() {
            columns.push("eo:cloud_cover");
        }
        if self.bbox().is_some() {
            columns.push("bbox");
        }
        columns
    }

    /// The mask of the rows of `batch` (holding at least the filter columns present in the
    /// file: `id`, `datetime`, `eo:cloud_cover`, `bbox`) that can match: every condition but
    /// the exact geometry one, which [`Query::footprint_matches`] checks.
    pub fn row_mask(&self, batch: &RecordBatch) -> std::result::Result<BooleanArray, ArrowError> {
        let n = batch.num_rows();
        let mut keep = vec![true; n];
        if !self.ids.is_empty() || self.tile.is_some() {
            let col = batch.column_by_name("id").ok_or_else(|| missing("id"))?;
            let ids = arrow_cast::cast(col, &DataType::Utf8)?;
            let ids = ids.as_string::<i32>();
            let tile = self.tile.as_ref().map(|t| format!(".{t}."));
            // Hashed once per batch: the ids of a row group are tested one by one against
            // them (a lookup by id tests every row of the row groups its bloom filters keep).
            let wanted: HashSet<&str> = self.ids.iter().map(String::as_str).collect();
            for (i, k) in keep.iter_mut().enumerate() {
                *k = *k && ids.is_valid(i) && {
                    let id = ids.value(i);
                    (wanted.is_empty() || wanted.contains(id))
                        && tile.as_deref().is_none_or(|t| id.contains(t))
                };
            }
        }
        if self.start.is_some() || self.end.is_some() {
            let col = batch
                .column_by_name("datetime")
                .ok_or_else(|| missing("datetime"))?;
            let micros = arrow_cast::cast(
                col,
                &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            )?;
            let micros = micros.as_primitive::<TimestampMicrosecondType>();
            let (lo, hi) = (
                self.start.map(|t| t.timestamp_micros()),
                self.end.map(|t| t.timestamp_micros()),
            );
            for (i, k) in keep.iter_mut().enumerate() {
                *k = *k
                    && micros.is_valid(i)
                    && lo.is_none_or(|lo| micros.value(i) >= lo)
                    && hi.is_none_or(|hi| micros.value(i) <= hi);
            }
        }
        if let Some(max) = self.max_cloud_cover {
            let col = batch
                .column_by_name("eo:cloud_cover")
                .ok_or_else(|| missing("eo:cloud_cover"))?;
            let cc = arrow_cast::cast(col, &DataType::Float64)?;
            let cc = cc.as_primitive::<Float64Type>();
            for (i, k) in keep.iter_mut().enumerate() {
                *k = *k && cc.is_valid(i) && cc.value(i) <= max;
            }
        }
        if let Some([w, s, e, n]) = self.bbox() {
            let col = batch
                .column_by_name("bbox")
                .ok_or_else(|| missing("bbox"))?;
            let bbox = col.as_struct_opt().ok_or_else(|| missing("bbox"))?;
            let part = |name: &str| -> std::result::Result<_, ArrowError> {
                let c = bbox
                    .column_by_name(name)
                    .ok_or_else(|| missing(&format!("bbox.{name}")))?;
                arrow_cast::cast(c, &DataType::Float64)
            };
            let (xmin, ymin, xmax, ymax) =
                (part("xmin")?, part("ymin")?, part("xmax")?, part("ymax")?);
            let (xmin, ymin, xmax, ymax) = (
                xmin.as_primitive::<Float64Type>(),
                ymin.as_primitive::<Float64Type>(),
                xmax.as_primitive::<Float64Type>(),
                ymax.as_primitive::<Float64Type>(),
            );
            for (i, k) in keep.iter_mut().enumerate() {
                if !*k {
                    continue;
                }
                if bbox.is_null(i) || xmin.is_null(i) || ymin.is_null(i) {
                    // No bbox: the footprint decides.
                    continue;
                }
                let (x0, y0, x1, y1) = (xmin.value(i), ymin.value(i), xmax.value(i), ymax.value(i));
                let y_ok = y0 <= n && y1 >= s;
                // A bbox whose west edge is east of its east edge crosses the antimeridian.
                let x_ok = if x0 <= x1 {
                    x0 <= e && x1 >= w
                } else {
                    x0 <= e || x1 >= w
                };
                *k = y_ok && x_ok;
            }
        }
        Ok(BooleanArray::from(keep))
    }

    /// Whether an item (as JSON) passes the exact geometry test: its footprint intersects
    /// the query geometry. Without a query geometry, every item does; without a footprint,
    /// none does when there is one.
    pub fn footprint_matches(&self, item: &Map<String, Value>) -> bool {
        let Some(query) = &self.geometry else {
            return true;
        };
        let Some(geometry) = item.get("geometry").filter(|g| !g.is_null()) else {
            return false;
        };
        let Ok(geometry) = serde_json::from_value::<geojson::Geometry>(geometry.clone()) else {
            return false;
        };
        match geo::Geometry::<f64>::try_from(geometry) {
            Ok(footprint) => footprint.intersects(query),
            Err(_) => false,
        }
    }
}

fn missing(column: &str) -> ArrowError {
    ArrowError::SchemaError(format!("no {column:?} column"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bbox_and_datetime_are_checked() {
        assert!(Query::default().with_bbox([10.0, 0.0, 5.0, 1.0]).is_err());
        assert!(Query::default().with_bbox([0.0, 5.0, 1.0, 1.0]).is_err());
        assert!(Query::default().with_bbox([-181.0, 0.0, 1.0, 1.0]).is_err());
        assert!(
            Query::default()
                .with_bbox([0.0, 0.0, f64::NAN, 1.0])
                .is_err()
        );
        let q = Query::default().with_bbox([1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(q.bbox(), Some([1.0, 2.0, 3.0, 4.0]));
        assert!(Query::default().with_datetime("yesterday").is_err());
        assert!(
            Query::default()
                .with_datetime("2024-05-02T00:00:00Z/2024-05-01T00:00:00Z")
                .is_err()
        );
        let q = Query::default()
            .with_datetime("2024-05-01T00:00:00Z/..")
            .unwrap();
        assert!(q.start.is_some() && q.end.is_none());
    }

    #[test]
    fn the_footprint_decides_not_the_bbox() {
        // A triangle whose bbox covers the query box but whose area does not.
        let item = |coords: Value| {
            json!({"geometry": {"type": "Polygon", "coordinates": coords}})
                .as_object()
                .unwrap()
                .clone()
        };
        let triangle = item(json!([[[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [0.0, 0.0]]]));
        let q = Query::default().with_bbox([8.0, 8.0, 9.0, 9.0]).unwrap();
        assert!(!q.footprint_matches(&triangle));
        let q = Query::default().with_bbox([1.0, 1.0, 2.0, 2.0]).unwrap();
        assert!(q.footprint_matches(&triangle));
        let no_geometry = json!({"geometry": null}).as_object().unwrap().clone();
        assert!(!q.footprint_matches(&no_geometry));
        assert!(Query::default().footprint_matches(&no_geometry));
    }

    #[test]
    fn the_id_mask_keeps_the_ids_and_the_tile_asked_for() {
        use arrow_array::StringArray;
        use std::sync::Arc;
        let ids = StringArray::from(vec![
            Some("HLS.S30.T35VLJ.2021168T100559.v2.0"),
            Some("HLS.S30.T15TWN.2021168T100559.v2.0"),
            None,
            Some("HLS.L30.T15TWN.2021170T165000.v2.0"),
            Some("HLS.S30.T35VLJ.2021168T100559.v2.0.extra"),
        ]);
        let batch = RecordBatch::try_from_iter([("id", Arc::new(ids) as _)]).unwrap();
        let mask = |q: &Query| -> Vec<bool> {
            let m = q.row_mask(&batch).unwrap();
            (0..m.len()).map(|i| m.value(i)).collect()
        };
        let wanted = |ids: &[&str]| Query {
            ids: ids.iter().map(|s| s.to_string()).collect(),
            ..Query::default()
        };
        let q = wanted(&[
            "HLS.S30.T35VLJ.2021168T100559.v2.0",
            "HLS.L30.T15TWN.2021170T165000.v2.0",
            "HLS.S30.T01AAA.2021168T100559.v2.0",
        ]);
        assert_eq!(mask(&q), [true, false, false, true, false]);
        let tile = Query {
            tile: Some("T15TWN".to_string()),
            ..Query::default()
        };
        assert_eq!(mask(&tile), [false, true, false, true, false]);
        let both = Query {
            tile: Some("T15TWN".to_string()),
            ..q
        };
        assert_eq!(mask(&both), [false, false, false, true, false]);
        assert_eq!(mask(&Query::default()), [true; 5]);
    }
}
