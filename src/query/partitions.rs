//! The partitions of an output, and which months a search needs.

use super::filter::Query;
use crate::collection::Collection;
use crate::error::{Error, Result};
use crate::period::Month;
use crate::write::output::Output;
use futures::TryStreamExt;
use object_store::ObjectMeta;
use object_store::path::Path;

/// One partition file.
#[derive(Debug, Clone)]
pub struct Partition {
    /// Its collection.
    pub collection: Collection,
    /// Its month.
    pub month: Month,
    /// The file, as listed (its ETag is the version a search reads).
    pub meta: ObjectMeta,
}

/// The partitions below `out` (`{collection}/year=YYYY/month=MM/part-0.parquet`), sorted by
/// collection then month. Other objects are ignored.
pub async fn list(out: &Output) -> Result<Vec<Partition>> {
    let mut found = Vec::new();
    for collection in Collection::ALL {
        let prefix = out.child(collection.stac_id());
        let listed: Vec<ObjectMeta> = out
            .store()
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|source| Error::Store {
                path: out.show(&prefix),
                source,
            })?;
        for meta in listed {
            if let Some(month) = month_of(&prefix, &meta.location) {
                found.push(Partition {
                    collection,
                    month,
                    meta,
                });
            }
        }
    }
    found.sort_by_key(|p| (p.collection.stac_id(), p.month));
    Ok(found)
}

/// The partitions a query needs: of its collections, in months its datetime interval meets.
pub fn needed(all: Vec<Partition>, q: &Query) -> Vec<Partition> {
    all.into_iter()
        .filter(|p| q.wants(p.collection) && month_meets(p.month, q))
        .collect()
}

fn month_meets(m: Month, q: &Query) -> bool {
    let first = m.first_day();
    let last = m.last_day();
    let before_start = q.start.is_some_and(|s| last < s.date_naive());
    let after_end = q.end.is_some_and(|e| first > e.date_naive());
    !(before_start || after_end)
}

/// The month of `{prefix}/year=YYYY/month=MM/part-0.parquet`.
fn month_of(prefix: &Path, location: &Path) -> Option<Month> {
    let rel = location.as_ref().strip_prefix(prefix.as_ref())?;
    let mut parts = rel.trim_start_matches('/').split('/');
    let year: i32 = parts.next()?.strip_prefix("year=")?.parse().ok()?;
    let month: u32 = parts.next()?.strip_prefix("month=")?.parse().ok()?;
    let file = parts.next()?;
    if parts.next().is_some() || !file.ends_with(".parquet") {
        return None;
    }
    Month::new(year, month).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_month_from_hive_names() {
        let prefix = Path::from("out/HLSS30_2.0");
        let m = |s: &str| month_of(&prefix, &Path::from(s));
        assert_eq!(
            m("out/HLSS30_2.0/year=2024/month=05/part-0.parquet"),
            Some(Month::new(2024, 5).unwrap())
        );
        assert_eq!(m("out/HLSS30_2.0/year=2024/month=13/part-0.parquet"), None);
        assert_eq!(
            m("out/HLSS30_2.0/2024/05/HLSS30_2.0-2024-05-01.parquet"),
            None
        );
        assert_eq!(
            m("out/HLSS30_2.0/year=2024/month=05/part-0.parquet.tmp"),
            None
        );
    }

    #[test]
    fn months_outside_the_interval_are_skipped() {
        let q = Query::default()
            .with_datetime("2024-05-31T12:00:00Z/2024-06-01T01:00:00Z")
            .unwrap();
        assert!(!month_meets(Month::new(2024, 4).unwrap(), &q));
        assert!(month_meets(Month::new(2024, 5).unwrap(), &q));
        assert!(month_meets(Month::new(2024, 6).unwrap(), &q));
        assert!(!month_meets(Month::new(2024, 7).unwrap(), &q));
        assert!(month_meets(Month::new(1999, 1).unwrap(), &Query::default()));
    }
}
