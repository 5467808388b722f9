//! Row-group pruning: the row groups of a partition whose column statistics show they cannot
//! hold a match are not read.
//!
//! Used: `datetime` (min/max, in the file's unit), the bbox covering columns `bbox.xmin`,
//! `bbox.ymin`, `bbox.xmax`, `bbox.ymax`, `eo:cloud_cover` and `id` (only when its
//! statistics are exact, not truncated). A missing statistic keeps the row group.
//!
//! The covering columns are compared as intervals: the bboxes hls-flow writes have
//! west ≤ east (a footprint across the antimeridian has a bbox that spans the width of the
//! world: [`crate::source::hls::GranuleMeta::bbox`] takes the min and max longitudes), so
//! `min(xmin) > E` or `max(xmax) < W` rules every row out.

use super::filter::Query;
use arrow_schema::{DataType, Schema, TimeUnit};
use parquet::file::metadata::{ParquetMetaData, RowGroupMetaData};
use parquet::file::statistics::Statistics;

/// The indexes of the row groups of a file that can hold a match of `q`.
pub fn row_groups(meta: &ParquetMetaData, arrow: &Schema, q: &Query) -> Vec<usize> {
    let columns = Columns::find(meta);
    let unit = arrow
        .field_with_name("datetime")
        .ok()
        .and_then(|f| match f.data_type() {
            DataType::Timestamp(unit, _) => Some(*unit),
            _ => None,
        });
    (0..meta.num_row_groups())
        .filter(|&i| keep(meta.row_group(i), &columns, unit, q))
        .collect()
}

/// Leaf column indexes of the columns used.
struct Columns {
    datetime: Option<usize>,
    xmin: Option<usize>,
    ymin: Option<usize>,
    xmax: Option<usize>,
    ymax: Option<usize>,
    cloud_cover: Option<usize>,
    id: Option<usize>,
}

impl Columns {
    fn find(meta: &ParquetMetaData) -> Columns {
        let descr = meta.file_metadata().schema_descr();
        let find = |name: &str| {
            descr
                .columns()
                .iter()
                .position(|c| c.path().string() == name)
        };
        Columns {
            datetime: find("datetime"),
            xmin: find("bbox.xmin"),
            ymin: find("bbox.ymin"),
            xmax: find("bbox.xmax"),
            ymax: find("bbox.ymax"),
            cloud_cover: find("eo:cloud_cover"),
            id: find("id"),
        }
    }
}

fn f64_range(rg: &RowGroupMetaData, col: Option<usize>) -> Option<(f64, f64)> {
    match rg.column(col?).statistics()? {
        Statistics::Double(s) => Some((*s.min_opt()?, *s.max_opt()?)),
        Statistics::Float(s) => Some((f64::from(*s.min_opt()?), f64::from(*s.max_opt()?))),
        _ => None,
    }
}

fn i64_range(rg: &RowGroupMetaData, col: Option<usize>) -> Option<(i64, i64)> {
    match rg.column(col?).statistics()? {
        Statistics::Int64(s) => Some((*s.min_opt()?, *s.max_opt()?)),
        _ => None,
    }
}

fn keep(rg: &RowGroupMetaData, c: &Columns, unit: Option<TimeUnit>, q: &Query) -> bool {
    if q.start.is_some() || q.end.is_some() {
        let to_unit = |t: chrono::DateTime<chrono::Utc>| match unit {
            Some(TimeUnit::Second) => Some(t.timestamp()),
            Some(TimeUnit::Millisecond) => Some(t.timestamp_millis()),
            Some(TimeUnit::Microsecond) => Some(t.timestamp_micros()),
            Some(TimeUnit::Nanosecond) => t.timestamp_nanos_opt(),
            None => None,
        };
        if let Some((lo, hi)) = i64_range(rg, c.datetime) {
            if let Some(start) = q.start.and_then(to_unit)
                && hi < start
            {
                return false;
            }
            if let Some(end) = q.end.and_then(to_unit)
                && lo > end
            {
                return false;
            }
        }
    }
    if let Some([w, s, e, n]) = q.bbox()
        && let (Some((xmin_lo, _)), Some((ymin_lo, _)), Some((_, xmax_hi)), Some((_, ymax_hi))) = (
            f64_range(rg, c.xmin),
            f64_range(rg, c.ymin),
            f64_range(rg, c.xmax),
            f64_range(rg, c.ymax),
        )
    {
        if ymin_lo > n || ymax_hi < s {
            return false;
        }
        if xmin_lo > e || xmax_hi < w {
            return false;
        }
    }
    if let Some(max) = q.max_cloud_cover
        && let Some((lo, _)) = f64_range(rg, c.cloud_cover)
        && lo > max
    {
        return false;
    }
    if !q.ids.is_empty()
        && let Some(i) = c.id
        && let Some(Statistics::ByteArray(s)) = rg.column(i).statistics()
        && s.min_is_exact()
        && s.max_is_exact()
        && let (Some(lo), Some(hi)) = (s.min_opt(), s.max_opt())
        && let (Ok(lo), Ok(hi)) = (lo.as_utf8(), hi.as_utf8())
        && q.ids
            .range(lo.to_string()..=hi.to_string())
            .next()
            .is_none()
    {
        return false;
    }
    true
}

/// What the statistics of a file say it covers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Extent {
    /// `[W, S, E, N]` of its bboxes.
    pub bbox: Option<[f64; 4]>,
    /// Its first and last `datetime`.
    pub datetimes: Option<(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)>,
}

/// The extent of a file, from its row groups' statistics.
pub fn extent(meta: &ParquetMetaData, arrow: &Schema) -> Extent {
    let c = Columns::find(meta);
    let unit = arrow
        .field_with_name("datetime")
        .ok()
        .and_then(|f| match f.data_type() {
            DataType::Timestamp(unit, _) => Some(*unit),
            _ => None,
        });
    let to_time = |v: i64| match unit? {
        TimeUnit::Second => chrono::DateTime::from_timestamp(v, 0),
        TimeUnit::Millisecond => chrono::DateTime::from_timestamp_millis(v),
        TimeUnit::Microsecond => chrono::DateTime::from_timestamp_micros(v),
        TimeUnit::Nanosecond => Some(chrono::DateTime::from_timestamp_nanos(v)),
    };
    let mut out = Extent::default();
    for rg in meta.row_groups() {
        if let (Some((w, _)), Some((s, _)), Some((_, e)), Some((_, n))) = (
            f64_range(rg, c.xmin),
            f64_range(rg, c.ymin),
            f64_range(rg, c.xmax),
            f64_range(rg, c.ymax),
        ) {
            out.bbox = Some(match out.bbox {
                Some([a, b, c, d]) => [a.min(w), b.min(s), c.max(e), d.max(n)],
                None => [w, s, e, n],
            });
        }
        if let Some((lo, hi)) = i64_range(rg, c.datetime)
            && let (Some(lo), Some(hi)) = (to_time(lo), to_time(hi))
        {
            out.datetimes = Some(match out.datetimes {
                Some((a, b)) => (a.min(lo), b.max(hi)),
                None => (lo, hi),
            });
        }
    }
    out
}
