//! CQL2 filters (`search --filter`, the API's `filter`): parsed and checked by the `cql2`
//! crate, evaluated on each item that passes the other tests, and the bounds they imply on
//! `eo:cloud_cover`, `datetime` and the footprint pushed into the [`Query`] (row-group
//! pruning and the row filter) when the filter is a conjunction of simple comparisons.

use super::filter::Query;
use crate::error::{Error, FilterProblem, Result};
use chrono::{DateTime, Utc};
use cql2::Expr;
use serde_json::{Map, Value};
use std::sync::Arc;

/// The properties a filter may name: the top-level fields and the item properties hls-flow
/// writes (the arrays `proj:transform`, `proj:shape` and `instruments` aside).
pub const QUERYABLES: &[&str] = &[
    "id",
    "collection",
    "geometry",
    "datetime",
    "start_datetime",
    "end_datetime",
    "platform",
    "eo:cloud_cover",
    "proj:epsg",
    "view:sun_azimuth",
    "view:azimuth",
    "sci:doi",
];

/// A checked CQL2 filter.
#[derive(Debug, Clone)]
pub struct Cql2Filter {
    expr: Arc<Expr>,
    input: Arc<str>,
}

impl Cql2Filter {
    /// A filter in CQL2 text (`eo:cloud_cover < 20 and platform = 'sentinel-2b'`) or, when it
    /// starts with `{`, CQL2 JSON.
    pub fn parse(input: &str) -> Result<Cql2Filter> {
        let trimmed = input.trim_start();
        let expr = if trimmed.starts_with('{') {
            cql2::parse_json(input).map_err(|e| Box::new(cql2::Error::from(e)))
        } else {
            cql2::parse_text(input).map_err(Box::new)
        }
        .map_err(|e| invalid(input, FilterProblem::Parse(e)))?;
        Cql2Filter::checked(expr, input)
    }

    /// The filter of a STAC API search.
    pub fn from_stac(filter: &stac::api::Filter) -> Result<Cql2Filter> {
        match filter {
            stac::api::Filter::Cql2Text(text) => Cql2Filter::parse(text),
            stac::api::Filter::Cql2Json(json) => {
                let input = Value::Object(json.clone()).to_string();
                let expr = serde_json::from_value::<Expr>(Value::Object(json.clone()))
                    .map_err(|e| invalid(&input, FilterProblem::Parse(Box::new(e.into()))))?;
                Cql2Filter::checked(expr, &input)
            }
        }
    }

    fn checked(expr: Expr, input: &str) -> Result<Cql2Filter> {
        let mut names = Vec::new();
        properties(&expr, &mut names);
        if let Some(name) = names
            .into_iter()
            .find(|n| !QUERYABLES.contains(&n.as_str()))
        {
            return Err(invalid(
                input,
                FilterProblem::UnsupportedProperty {
                    name,
                    known: QUERYABLES.join(", "),
                },
            ));
        }
        // An expression that does not reduce to a truth value on a typical item (a bare
        // property, a number) is not a filter.
        let probe = serde_json::json!({
            "id": "HLS.S30.T15TWN.2024125T170851.v2.0",
            "collection": "HLSS30_2.0",
            "geometry": {"type": "Point", "coordinates": [0.0, 0.0]},
            "properties": {
                "datetime": "2024-05-04T17:08:51.123Z",
                "start_datetime": "2024-05-04T17:08:51.123Z",
                "end_datetime": "2024-05-04T17:08:51.123Z",
                "platform": "sentinel-2b",
                "eo:cloud_cover": 10.0,
                "proj:epsg": 32615,
                "view:sun_azimuth": 150.0,
                "view:azimuth": 100.0,
                "sci:doi": "10.5067/HLS/HLSS30.002",
            }
        });
        if let Err(e) = expr.clone().matches(Some(&probe)) {
            return Err(invalid(input, FilterProblem::Parse(Box::new(e))));
        }
        Ok(Cql2Filter {
            expr: Arc::new(expr),
            input: input.into(),
        })
    }

    /// The filter as given.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// Whether an item (as JSON) satisfies the filter (a filter that is NULL on it does not).
    pub fn matches(&self, item: &Map<String, Value>) -> Result<bool> {
        let item = Value::Object(item.clone());
        Expr::clone(&self.expr).matches(Some(&item)).map_err(|e| {
            invalid(
                &self.input,
                FilterProblem::Evaluate {
                    item: item
                        .get("id")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    source: Box::new(e),
                },
            )
        })
    }

    /// Narrows `q` by what every match of the filter must satisfy: the bounds of the
    /// top-level conjuncts `eo:cloud_cover <, <=, = N`, `eo:cloud_cover between A and B`,
    /// `datetime <, <=, =, >=, > T` and `t_intersects(datetime, interval(A, B))`, and the
    /// geometry of `s_intersects(geometry, G)` when `q` has none. The filter is still
    /// evaluated on every item: this only lets fewer rows be read.
    pub fn narrow(&self, q: &mut Query) {
        narrow(&self.expr, q);
    }
}

fn invalid(input: &str, problem: FilterProblem) -> Error {
    Error::InvalidFilter {
        input: input.to_string(),
        problem,
    }
}

/// The property names an expression uses.
fn properties(e: &Expr, out: &mut Vec<String>) {
    match e {
        Expr::Property { property } => out.push(property.clone()),
        Expr::Operation { args, .. } => args.iter().for_each(|a| properties(a, out)),
        Expr::Interval { interval } => interval.iter().for_each(|a| properties(a, out)),
        Expr::Array(items) => items.iter().for_each(|a| properties(a, out)),
        Expr::BBox { bbox } => bbox.iter().for_each(|a| properties(a, out)),
        Expr::Timestamp { timestamp } => properties(timestamp, out),
        Expr::Date { date } => properties(date, out),
        Expr::Float(_) | Expr::Literal(_) | Expr::Bool(_) | Expr::Geometry(_) | Expr::Null => {}
    }
}

fn property(e: &Expr) -> Option<&str> {
    match e {
        Expr::Property { property } => Some(property),
        _ => None,
    }
}

fn number(e: &Expr) -> Option<f64> {
    match e {
        Expr::Float(v) => Some(*v),
        _ => None,
    }
}

fn instant(e: &Expr) -> Option<DateTime<Utc>> {
    match e {
        Expr::Timestamp { timestamp } => instant(timestamp),
        Expr::Literal(s) => DateTime::parse_from_rfc3339(s).ok().map(|t| t.to_utc()),
        _ => None,
    }
}

fn narrow(e: &Expr, q: &mut Query) {
    let Expr::Operation { op, args } = e else {
        return;
    };
    let op = op.to_ascii_lowercase();
    if op == "and" {
        args.iter().for_each(|a| narrow(a, q));
        return;
    }
    let arg = |i: usize| args.get(i).map(|a| &**a);
    match (op.as_str(), arg(0).and_then(property)) {
        ("<" | "<=" | "=", Some("eo:cloud_cover")) => {
            if let Some(n) = arg(1).and_then(number) {
                q.max_cloud_cover = Some(q.max_cloud_cover.map_or(n, |m| m.min(n)));
            }
        }
        ("between", Some("eo:cloud_cover")) => {
            if let Some(n) = arg(2).and_then(number) {
                q.max_cloud_cover = Some(q.max_cloud_cover.map_or(n, |m| m.min(n)));
            }
        }
        (">" | ">=" | "=", Some("datetime")) | ("<" | "<=", Some("datetime")) => {
            if let Some(t) = arg(1).and_then(instant) {
                if matches!(op.as_str(), ">" | ">=" | "=") {
                    q.start = Some(q.start.map_or(t, |s| s.max(t)));
                }
                if matches!(op.as_str(), "<" | "<=" | "=") {
                    q.end = Some(q.end.map_or(t, |s| s.min(t)));
                }
            }
        }
        ("t_intersects", Some("datetime")) => {
            if let Some(Expr::Interval { interval }) = arg(1)
                && let [a, b] = interval.as_slice()
            {
                if let Some(t) = instant(a) {
                    q.start = Some(q.start.map_or(t, |s| s.max(t)));
                }
                if let Some(t) = instant(b) {
                    q.end = Some(q.end.map_or(t, |s| s.min(t)));
                }
            }
        }
        ("s_intersects", Some("geometry")) if q.geometry.is_none() => {
            q.geometry = match arg(1) {
                Some(Expr::Geometry(cql2::Geometry::GeoJSON(g))) => {
                    geo::Geometry::<f64>::try_from(g.clone()).ok()
                }
                Some(Expr::BBox { bbox }) => match bbox.as_slice() {
                    [w, s, e, n] => match (number(w), number(s), number(e), number(n)) {
                        (Some(w), Some(s), Some(e), Some(n)) if w <= e && s <= n => {
                            Some(geo::Geometry::Rect(geo::Rect::new(
                                geo::coord! { x: w, y: s },
                                geo::coord! { x: e, y: n },
                            )))
                        }
                        _ => None,
                    },
                    _ => None,
                },
                _ => None,
            };
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item(cc: f64, datetime: &str, platform: &str) -> Map<String, Value> {
        json!({
            "id": "HLS.S30.T15TWN.2024125T170851.v2.0",
            "collection": "HLSS30_2.0",
            "geometry": {"type": "Polygon", "coordinates": [[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 0.0]]]},
            "properties": {"datetime": datetime, "eo:cloud_cover": cc, "platform": platform}
        })
        .as_object()
        .unwrap()
        .clone()
    }

    #[test]
    fn filters_are_evaluated_on_items() {
        let a = item(10.0, "2024-05-04T17:08:51.123Z", "sentinel-2b");
        let b = item(60.0, "2024-05-20T10:00:00Z", "sentinel-2a");
        let cases = [
            ("eo:cloud_cover < 20", true, false),
            ("eo:cloud_cover between 50 and 70", false, true),
            ("not (eo:cloud_cover < 20)", false, true),
            (
                "platform = 'sentinel-2a' or eo:cloud_cover <= 10",
                true,
                true,
            ),
            ("platform in ('sentinel-2a', 'x')", false, true),
            ("datetime >= TIMESTAMP('2024-05-10T00:00:00Z')", false, true),
            (
                "t_intersects(datetime, INTERVAL('2024-05-01T00:00:00Z', '2024-05-05T00:00:00Z'))",
                true,
                false,
            ),
            ("s_intersects(geometry, BBOX(0.5, 0.5, 2, 2))", true, true),
            ("s_intersects(geometry, BBOX(5, 5, 6, 6))", false, false),
            ("id like 'HLS.S30.T15%'", true, true),
        ];
        for (text, want_a, want_b) in cases {
            let f = Cql2Filter::parse(text).unwrap();
            assert_eq!(f.matches(&a).unwrap(), want_a, "{text} on a");
            assert_eq!(f.matches(&b).unwrap(), want_b, "{text} on b");
        }
        let f = Cql2Filter::parse(r#"{"op": "<", "args": [{"property": "eo:cloud_cover"}, 20]}"#)
            .unwrap();
        assert!(f.matches(&a).unwrap() && !f.matches(&b).unwrap());
    }

    #[test]
    fn bad_filters_and_unknown_properties_are_refused() {
        for text in [
            "eo:cloud_cover <",
            "nope < 3",
            "eo:cloud_cover < 20 and foo = 1",
        ] {
            let e = Cql2Filter::parse(text).unwrap_err();
            assert!(matches!(e, Error::InvalidFilter { .. }), "{text}: {e}");
        }
        let e = Cql2Filter::parse("nope < 3").unwrap_err().to_string();
        assert!(e.contains("\"nope\" is not supported"), "{e}");
    }

    #[test]
    fn simple_conjuncts_narrow_the_query() {
        let mut q = Query::default();
        Cql2Filter::parse(
            "eo:cloud_cover <= 30 and datetime >= TIMESTAMP('2024-05-02T00:00:00Z') \
             and datetime < TIMESTAMP('2024-05-09T00:00:00Z') and eo:cloud_cover < 20 \
             and s_intersects(geometry, BBOX(1, 2, 3, 4))",
        )
        .unwrap()
        .narrow(&mut q);
        assert_eq!(q.max_cloud_cover, Some(20.0));
        assert_eq!(q.start.unwrap().to_rfc3339(), "2024-05-02T00:00:00+00:00");
        assert_eq!(q.end.unwrap().to_rfc3339(), "2024-05-09T00:00:00+00:00");
        assert_eq!(q.bbox(), Some([1.0, 2.0, 3.0, 4.0]));
        // An `or` implies no bound.
        let mut q = Query::default();
        Cql2Filter::parse("eo:cloud_cover <= 30 or platform = 'x'")
            .unwrap()
            .narrow(&mut q);
        assert_eq!(q.max_cloud_cover, None);
    }
}
