//! CMR granule search: parsing and validating the query, temporal and bounding-box
//! filtering, CMR's sort and search-after paging.

use super::store::{Granule, SortKey};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

/// CMR's default `page_size`.
pub(crate) const DEFAULT_PAGE_SIZE: usize = 10;
/// CMR's largest `page_size`.
pub(crate) const MAX_PAGE_SIZE: usize = 2000;

/// A request CMR would answer with 400 and `{"errors":[…]}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct BadRequest(pub String);

fn bad(msg: impl Into<String>) -> BadRequest {
    BadRequest(msg.into())
}

/// One `temporal` range in epoch ms; either end may be open. Inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Range {
    pub start: Option<i64>,
    pub end: Option<i64>,
}

/// `bounding_box=w,s,e,n` (w > e crosses the antimeridian).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct BBox {
    pub west: f64,
    pub south: f64,
    pub east: f64,
    pub north: f64,
}

/// A parsed `/search/granules.json` query.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Query {
    /// Collection concept ids, in request order, without duplicates.
    pub collections: Vec<String>,
    /// OR-ed temporal ranges (empty: no temporal constraint).
    pub temporal: Vec<Range>,
    /// Bounding boxes, AND-ed as CMR does.
    pub bboxes: Vec<BBox>,
    /// `updated_since`: revision date at or after it (ms).
    pub updated_since: Option<i64>,
    /// OR-ed `revision_date` ranges (empty: no constraint).
    pub revision: Vec<Range>,
    /// Page size.
    pub page_size: usize,
    /// A `provider` other than LPCLOUD was asked for: nothing matches.
    pub other_provider: bool,
}

#[cfg(test)]
fn parse_time(s: &str, which: &str) -> Result<i64, BadRequest> {
    parse_time_of("temporal", s, which)
}

/// Parses a datetime of parameter `param` (`which`: "start", "end" or "").
pub(crate) fn parse_time_of(param: &str, s: &str, which: &str) -> Result<i64, BadRequest> {
    let s = s.trim();
    let err = || {
        let name = if which.is_empty() {
            param.to_string()
        } else {
            format!("{param} {which}")
        };
        bad(format!(
            "{name} datetime is invalid: [{s}] is not a valid datetime."
        ))
    };
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc).timestamp_millis());
    }
    let naive = s.strip_suffix('Z').unwrap_or(s);
    if let Ok(t) = NaiveDateTime::parse_from_str(naive, "%Y-%m-%dT%H:%M:%S%.f") {
        return Ok(t.and_utc().timestamp_millis());
    }
    if let Ok(d) = NaiveDate::parse_from_str(naive, "%Y-%m-%d") {
        return Ok(d
            .and_hms_opt(0, 0, 0)
            .ok_or_else(err)?
            .and_utc()
            .timestamp_millis());
    }
    Err(err())
}

fn parse_temporal(v: &str) -> Result<Range, BadRequest> {
    parse_range("temporal", v)
}

/// Parses `start,end` (either may be empty) of parameter `param`.
fn parse_range(param: &str, v: &str) -> Result<Range, BadRequest> {
    let parts: Vec<&str> = v.split(',').collect();
    if parts.len() != 2 {
        return Err(bad(format!(
            "{param} [{v}] must be 'start,end' (the emulator does not support periodic {param} ranges)."
        )));
    }
    let opt = |s: &str, which| -> Result<Option<i64>, BadRequest> {
        if s.trim().is_empty() {
            Ok(None)
        } else {
            parse_time_of(param, s, which).map(Some)
        }
    };
    let start = opt(parts[0], "start")?;
    let end = opt(parts[1], "end")?;
    if let (Some(s), Some(e)) = (start, end)
        && s > e
    {
        return Err(bad(format!(
            "The start date [{}] must be before or equal to the end date [{}] in {param} [{v}].",
            parts[0], parts[1]
        )));
    }
    Ok(Range { start, end })
}

fn parse_bbox(v: &str) -> Result<BBox, BadRequest> {
    let err = || bad(format!("[{v}] is not a valid URL encoded bounding_box"));
    let nums: Vec<f64> = v
        .split(',')
        .map(|p| p.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|_| err())?;
    let [west, south, east, north] = nums[..] else {
        return Err(err());
    };
    let lon_ok = |x: f64| (-180.0..=180.0).contains(&x);
    let lat_ok = |y: f64| (-90.0..=90.0).contains(&y);
    if !(lon_ok(west) && lon_ok(east) && lat_ok(south) && lat_ok(north)) {
        return Err(bad(format!(
            "bounding_box [{v}]: longitudes must be within [-180, 180] and latitudes within [-90, 90]."
        )));
    }
    if north < south {
        return Err(bad(format!(
            "bounding_box [{v}]: the north value {north} must be greater than or equal to the south value {south}."
        )));
    }
    Ok(BBox {
        west,
        south,
        east,
        north,
    })
}

/// The parameter name without `[]` (CMR accepts both forms).
fn base_name(key: &str) -> &str {
    key.strip_suffix("[]").unwrap_or(key)
}

/// Parses a raw query string (keys and values may be percent-encoded).
pub(crate) fn parse_query(raw: &str) -> Result<Query, BadRequest> {
    let mut q = Query {
        collections: Vec::new(),
        temporal: Vec::new(),
        bboxes: Vec::new(),
        updated_since: None,
        revision: Vec::new(),
        page_size: DEFAULT_PAGE_SIZE,
        other_provider: false,
    };
    let mut errors = Vec::new();
    for (key, value) in url::form_urlencoded::parse(raw.as_bytes()) {
        match base_name(&key) {
            "collection_concept_id" => {
                for id in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    if !q.collections.iter().any(|c| c == id) {
                        q.collections.push(id.to_string());
                    }
                }
            }
            "temporal" => match parse_temporal(&value) {
                Ok(r) => q.temporal.push(r),
                Err(e) => errors.push(e.0),
            },
            "updated_since" => match parse_time_of("updated_since", &value, "") {
                Ok(t) if q.updated_since.is_none() => q.updated_since = Some(t),
                Ok(_) => errors.push("Only one updated_since value is allowed.".to_string()),
                Err(e) => errors.push(e.0),
            },
            "revision_date" => match parse_range("revision_date", &value) {
                Ok(r) => q.revision.push(r),
                Err(e) => errors.push(e.0),
            },
            "bounding_box" => match parse_bbox(&value) {
                Ok(b) => q.bboxes.push(b),
                Err(e) => errors.push(e.0),
            },
            "page_size" => match value.trim().parse::<usize>() {
                Ok(n) if n <= MAX_PAGE_SIZE => q.page_size = n,
                _ => errors.push("page_size must be a number between 0 and 2000".to_string()),
            },
            "page_num" => match value.trim() {
                "1" => {}
                _ => errors.push(
                    "page_num is not supported by the emulator: page with the CMR-Search-After header"
                        .to_string(),
                ),
            },
            "provider" => q.other_provider |= !value.eq_ignore_ascii_case("LPCLOUD"),
            other => errors.push(format!("Parameter [{other}] was not recognized.")),
        }
    }
    if q.collections.is_empty() && errors.is_empty() {
        errors.push(
            "The emulator requires collection_concept_id[] (CMR granule searches are per collection)."
                .to_string(),
        );
    }
    if errors.is_empty() {
        Ok(q)
    } else {
        Err(BadRequest(errors.join("; ")))
    }
}

/// Parses a `cmr-search-after` header: `["lpcloud",1759424679336,3790086838]`.
pub(crate) fn parse_search_after(v: &str) -> Result<SortKey, BadRequest> {
    let err = || bad(format!("The search-after value [{v}] is invalid."));
    let value: serde_json::Value = serde_json::from_str(v).map_err(|_| err())?;
    match value.as_array().map(Vec::as_slice) {
        Some([provider, ms, num]) if provider.is_string() => {
            Ok((ms.as_i64().ok_or_else(err)?, num.as_u64().ok_or_else(err)?))
        }
        _ => Err(err()),
    }
}

/// The `CMR-Search-After` value of a page's last entry.
pub(crate) fn search_after_value(key: SortKey) -> String {
    format!("[\"lpcloud\",{},{}]", key.0, key.1)
}

impl Query {
    /// The earliest and latest instants the temporal ranges allow (ms; `None` = open).
    pub(crate) fn time_span(&self) -> (Option<i64>, Option<i64>) {
        if self.temporal.is_empty() {
            return (None, None);
        }
        let lo = self
            .temporal
            .iter()
            .map(|r| r.start)
            .try_fold(i64::MAX, |acc, s| s.map(|s| acc.min(s)));
        let hi = self
            .temporal
            .iter()
            .map(|r| r.end)
            .try_fold(i64::MIN, |acc, e| e.map(|e| acc.max(e)));
        (lo, hi)
    }

    /// Whether a granule matches the temporal and spatial constraints.
    pub(crate) fn matches(&self, g: &Granule) -> bool {
        let temporal_ok = self.temporal.is_empty()
            || self.temporal.iter().any(|r| {
                r.end.is_none_or(|t| g.begin_ms <= t) && r.start.is_none_or(|s| g.end_ms >= s)
            });
        let u = g.updated_ms;
        let revision_ok = self.updated_since.is_none_or(|s| u >= s)
            && (self.revision.is_empty()
                || self
                    .revision
                    .iter()
                    .any(|r| r.start.is_none_or(|s| u >= s) && r.end.is_none_or(|e| u <= e)));
        temporal_ok && revision_ok && self.bboxes.iter().all(|b| bbox_intersects(b, &g.bbox))
    }
}

/// Whether a query box intersects a granule's `[w, s, e, n]` rectangle (which never
/// crosses the antimeridian).
fn bbox_intersects(b: &BBox, g: &[f64; 4]) -> bool {
    let lat_ok = g[1] <= b.north && g[3] >= b.south;
    let lon_ok = if b.west <= b.east {
        g[0] <= b.east && g[2] >= b.west
    } else {
        g[2] >= b.west || g[0] <= b.east
    };
    lat_ok && lon_ok
}

/// The page after `after` (all of it when `None`): the index of its first hit and the
/// hits on it. `hits` must be sorted by key.
pub(crate) fn page_bounds(
    hits: &[&Granule],
    after: Option<SortKey>,
    page_size: usize,
) -> std::ops::Range<usize> {
    let first = after.map_or(0, |k| hits.partition_point(|g| g.key() <= k));
    first..(first + page_size).min(hits.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        parse_time(s, "start").unwrap()
    }

    #[test]
    fn parses_the_recorded_query() {
        let q = parse_query("collection_concept_id[]=C2021957657-LPCLOUD&bounding_box=-93.0,46.0,-92.0,47.0&temporal[]=2025-10-01T00:00:00Z,2025-10-10T00:00:00Z&page_size=2000").unwrap();
        assert_eq!(q.collections, vec!["C2021957657-LPCLOUD"]);
        assert_eq!(q.page_size, 2000);
        assert_eq!(
            q.temporal,
            vec![Range {
                start: Some(ms("2025-10-01T00:00:00Z")),
                end: Some(ms("2025-10-10T00:00:00Z"))
            }]
        );
        assert_eq!(
            q.bboxes,
            vec![BBox {
                west: -93.0,
                south: 46.0,
                east: -92.0,
                north: 47.0
            }]
        );
        // Percent-encoded keys, no brackets, several collections, open ends, defaults.
        let q = parse_query("collection_concept_id%5B%5D=A&collection_concept_id=B,A&temporal=,2025-10-01T00:00:00.5Z").unwrap();
        assert_eq!(q.collections, vec!["A", "B"]);
        assert_eq!(q.page_size, DEFAULT_PAGE_SIZE);
        assert_eq!(q.temporal[0].start, None);
        assert_eq!(q.temporal[0].end, Some(ms("2025-10-01T00:00:00Z") + 500));
    }

    #[test]
    fn rejects_bad_queries() {
        let err = |s: &str| parse_query(s).unwrap_err().0;
        assert!(err("collection_concept_id[]=A&page_size=2001").contains("page_size"));
        assert!(err("collection_concept_id[]=A&page_size=ten").contains("page_size"));
        assert!(err("collection_concept_id[]=A&page_size=-1").contains("page_size"));
        assert!(parse_query("collection_concept_id[]=A&page_size=0").is_ok());
        assert!(err("collection_concept_id[]=A&bounding_box=1,2,3").contains("bounding_box"));
        assert!(err("collection_concept_id[]=A&bounding_box=0,10,1,5").contains("north"));
        assert!(err("collection_concept_id[]=A&bounding_box=0,0,181,5").contains("bounding_box"));
        assert!(err("collection_concept_id[]=A&temporal[]=yesterday,").contains("start"));
        assert!(
            err("collection_concept_id[]=A&temporal[]=2025-10-02T00:00:00Z,2025-10-01T00:00:00Z")
                .contains("before")
        );
        assert!(
            err("collection_concept_id[]=A&temporal[]=2025-10-01,2025-10-02,1,2")
                .contains("periodic")
        );
        assert!(
            err("collection_concept_id[]=A&sort_key=x").contains("[sort_key] was not recognized")
        );
        assert!(err("page_size=10").contains("collection_concept_id"));
    }

    #[test]
    fn revision_dates_filter_at_or_after_and_within_ranges() {
        let q = parse_query("collection_concept_id[]=A&updated_since=2026-11-01T00:00:00Z&revision_date[]=2026-11-01T00:00:00Z,2026-11-02T00:00:00Z&revision_date[]=2026-11-10T00:00:00Z,").unwrap();
        assert_eq!(q.updated_since, Some(ms("2026-11-01T00:00:00Z")));
        assert_eq!(q.revision.len(), 2);
        assert_eq!(q.revision[1].end, None);
        let err = |s: &str| parse_query(s).unwrap_err().0;
        assert!(
            err("collection_concept_id[]=A&updated_since=soon")
                .contains("updated_since datetime is invalid")
        );
        assert!(
            err("collection_concept_id[]=A&updated_since=2026-11-01&updated_since=2026-11-02")
                .contains("Only one updated_since")
        );
        assert!(
            err("collection_concept_id[]=A&revision_date[]=2026-11-02T00:00:00Z,2026-11-01T00:00:00Z")
                .contains("in revision_date")
        );
        let meta = |updated: &str| {
            let t: DateTime<Utc> = "2026-10-30T10:00:00Z".parse().unwrap();
            hls_flow::source::hls::GranuleMeta {
                collection: hls_flow::collection::Collection::Hlsl30,
                granule_ur: "HLS.L30.T15TVN.2026303T100000.v2.0".into(),
                concept_id: "G1000000001-LPCLOUD".into(),
                begin: t,
                end: t,
                updated: updated.parse().unwrap(),
                platform: "LANDSAT-8".into(),
                instrument: "OLI".into(),
                polygons: vec![vec![(0.0, 0.0), (0.0, 1.0), (1.0, 1.0), (1.0, 0.0)]],
                cloud_cover: None,
                mgrs_tile: None,
                ulx: None,
                uly: None,
                nrows: None,
                ncols: None,
                resolution: None,
                sun_azimuth: None,
                view_azimuth: None,
                doi: None,
            }
        };
        let g = |updated: &str| Granule::new(meta(updated)).unwrap();
        // At or after updated_since, and in one of the ranges (inclusive).
        assert!(q.matches(&g("2026-11-01T00:00:00Z")));
        assert!(q.matches(&g("2026-11-02T00:00:00Z")));
        assert!(!q.matches(&g("2026-10-31T23:59:59.999Z")));
        assert!(!q.matches(&g("2026-11-05T00:00:00Z")));
        assert!(q.matches(&g("2027-01-01T00:00:00Z")));
        let only_since =
            parse_query("collection_concept_id[]=A&updated_since=2026-11-05T00:00:00.5Z").unwrap();
        assert!(only_since.matches(&g("2026-11-05T00:00:00.500Z")));
        assert!(!only_since.matches(&g("2026-11-05T00:00:00.499Z")));
        assert!(
            parse_query("collection_concept_id[]=A")
                .unwrap()
                .matches(&g("2000-01-01T00:00:00Z"))
        );
    }

    #[test]
    fn search_after_round_trips() {
        let key = (1_759_424_679_336, 3_790_086_838);
        let v = search_after_value(key);
        assert_eq!(v, r#"["lpcloud",1759424679336,3790086838]"#);
        assert_eq!(parse_search_after(&v), Ok(key));
        for bad in [
            "",
            "[]",
            "[1,2,3]",
            r#"["lpcloud",1]"#,
            r#"["lpcloud","x",1]"#,
            "nope",
        ] {
            assert!(parse_search_after(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bbox_antimeridian() {
        let b = parse_bbox("170,-10,-170,10").unwrap();
        assert!(bbox_intersects(&b, &[175.0, 0.0, 176.0, 1.0]));
        assert!(bbox_intersects(&b, &[-176.0, 0.0, -175.0, 1.0]));
        assert!(!bbox_intersects(&b, &[0.0, 0.0, 1.0, 1.0]));
        let b = parse_bbox("-93,46,-92,47").unwrap();
        assert!(bbox_intersects(&b, &[-94.3, 45.9, -93.0, 46.9]));
        assert!(!bbox_intersects(&b, &[-94.3, 45.9, -93.1, 46.9]));
        assert!(!bbox_intersects(&b, &[-92.5, 47.1, -92.1, 48.0]));
    }
}
