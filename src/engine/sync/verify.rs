//! `hls-flow verify`: the cache against CMR, day by day.

use super::{cmr_client, harvests_of};
use crate::collection::Collection;
use crate::engine::checkpoint::sqlite::{StateStore, TaskKind, TaskState};
use crate::engine::pipeline::RunConfig;
use crate::error::{Error, Result};
use crate::period::{DayRange, Month};
use crate::source::cmr::GranuleQuery;
use crate::write::geoparquet::row_count;
use crate::write::output::Output;
use chrono::{DateTime, NaiveDate, Utc};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjPath;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// One day of one collection, checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DayCheck {
    /// The collection.
    pub collection: Collection,
    /// The day.
    pub day: NaiveDate,
    /// Granules CMR has that begin on the day.
    pub cmr: u64,
    /// Rows of its daily file (0 without one).
    pub daily: u64,
    /// Rows of its month's partition that begin on the day (`None`: the month has no
    /// partition, as a month not harvested whole).
    pub partition: Option<u64>,
}

impl DayCheck {
    /// Whether the daily file, or the partition, differs from CMR.
    pub fn differs(&self) -> bool {
        self.daily != self.cmr || self.partition.is_some_and(|p| p != self.cmr)
    }
}

/// One month partition of one collection, checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MonthCheck {
    /// The collection.
    pub collection: Collection,
    /// The month.
    #[serde(serialize_with = "ser_display")]
    pub month: Month,
    /// Granules CMR has that begin in the month.
    pub cmr: u64,
    /// Rows of its partition (`None`: not built).
    pub partition: Option<u64>,
}

fn ser_display<S: serde::Serializer>(m: &Month, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.collect_str(m)
}

/// What `verify` found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Every day checked.
    pub days: Vec<DayCheck>,
    /// Every month partition checked.
    pub months: Vec<MonthCheck>,
}

impl VerifyReport {
    /// The days whose daily file or partition rows differ from CMR.
    pub fn differing_days(&self) -> impl Iterator<Item = &DayCheck> {
        self.days.iter().filter(|d| d.differs())
    }

    /// The months whose partition differs from CMR.
    pub fn differing_months(&self) -> impl Iterator<Item = &MonthCheck> {
        self.months.iter().filter(|m| m.partition != Some(m.cmr))
    }

    /// Whether everything checked agrees with CMR.
    pub fn agrees(&self) -> bool {
        self.differing_days().next().is_none() && self.differing_months().next().is_none()
    }
}

/// `hls-flow verify`: for each day the state file covers (within `range`) and collection,
/// the number of granules CMR has against the rows of the daily file, and for each month
/// partition against its rows. Reads the state file only (a live run may hold it).
pub async fn verify(range: Option<DayRange>, cfg: &RunConfig) -> Result<VerifyReport> {
    let state = StateStore::open_read_only(&cfg.state)?;
    let cfg = cfg.with_state_settings(&state).await?;
    let rows = state.tasks()?;
    drop(state);
    let output = Output::parse_with_options(&cfg.output, &cfg.output_options)?;
    let client = cmr_client(&cfg)?;
    let in_range = |d: NaiveDate| range.is_none_or(|r| (r.start..=r.end).contains(&d));
    let mut report = VerifyReport::default();
    for &c in &cfg.collections {
        let days: Vec<NaiveDate> = harvests_of(&rows, c)
            .into_keys()
            .filter(|d| in_range(*d))
            .collect();
        if days.is_empty() {
            continue;
        }
        // Granules that begin on day D: those that begin before D+1 less those before D.
        let bounds: BTreeSet<NaiveDate> = days
            .iter()
            .flat_map(|d| [Some(*d), d.succ_opt()])
            .flatten()
            .collect();
        let q = GranuleQuery {
            collection: c,
            start: DateTime::<Utc>::MIN_UTC,
            end: DateTime::<Utc>::MIN_UTC,
            bbox: cfg.bbox,
        };
        let counts: BTreeMap<NaiveDate, u64> = futures::stream::iter(bounds)
            .map(|b| {
                let (client, q) = (&client, &q);
                async move {
                    let n = client
                        .count_before(q, crate::period::day_window(b).0)
                        .await?;
                    Ok::<_, Error>((b, n))
                }
            })
            .buffered(cfg.endpoints.max_cmr_requests.max(1))
            .try_collect()
            .await?;
        // The month partitions, and their rows by day.
        let mut partitions: BTreeMap<Month, Option<BTreeMap<NaiveDate, u64>>> = BTreeMap::new();
        for t in rows
            .iter()
            .filter(|t| t.spec.kind == TaskKind::Repartition && t.spec.collection == c)
        {
            let by_day = match (&t.output_path, t.state) {
                (Some(p), _) => partition_days(&output, &ObjPath::from(p.as_str())).await?,
                (None, TaskState::Succeeded) => Some(BTreeMap::new()),
                (None, _) => None,
            };
            partitions.insert(t.spec.month, by_day);
        }
        let mut by_month: BTreeMap<Month, u64> = BTreeMap::new();
        for d in days {
            let count = |b: Option<NaiveDate>| b.and_then(|b| counts.get(&b)).copied();
            let cmr = count(d.succ_opt())
                .unwrap_or(0)
                .saturating_sub(count(Some(d)).unwrap_or(0));
            let path = output.daily_path(&cfg.daily_prefix, c, d);
            let daily = row_count(&output, &path).await?.unwrap_or(0);
            *by_month.entry(Month::of(d)).or_default() += cmr;
            let partition = partitions
                .get(&Month::of(d))
                .map(|p| p.as_ref().map_or(0, |p| p.get(&d).copied().unwrap_or(0)));
            report.days.push(DayCheck {
                collection: c,
                day: d,
                cmr,
                daily,
                partition,
            });
        }
        for (m, by_day) in partitions {
            if !m.days().all(&in_range) {
                continue;
            }
            let Some(&cmr) = by_month.get(&m) else {
                continue;
            };
            report.months.push(MonthCheck {
                collection: c,
                month: m,
                cmr,
                partition: by_day.map(|p| p.values().sum()),
            });
        }
    }
    Ok(report)
}

/// The rows of a month partition by the UTC day of their `datetime` (only that column is
/// read, row group by row group); `None` if the partition is not there.
async fn partition_days(
    output: &Output,
    path: &ObjPath,
) -> Result<Option<BTreeMap<NaiveDate, u64>>> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::TimestampMicrosecondType;
    use object_store::ObjectStoreExt;
    let meta = match output.store().head(path).await {
        Ok(meta) => meta,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(Error::store(path, e)),
    };
    let bad = |e: parquet::errors::ParquetError| Error::Read {
        path: output.show(path),
        source: crate::error::ReadError::Parquet(e),
    };
    let reader = crate::query::reader::SnapshotReader::new(output.store().clone(), &meta);
    let builder = parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(bad)?;
    let column = builder
        .schema()
        .index_of("datetime")
        .map_err(|e| Error::Read {
            path: output.show(path),
            source: crate::error::ReadError::Arrow(e),
        })?;
    let mask = parquet::arrow::ProjectionMask::roots(
        builder.metadata().file_metadata().schema_descr(),
        [column],
    );
    let mut stream = builder.with_projection(mask).build().map_err(bad)?;
    let mut days = BTreeMap::new();
    const DAY_US: i64 = 86_400_000_000;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(bad)?;
        let Some(times) = batch
            .column(0)
            .as_primitive_opt::<TimestampMicrosecondType>()
        else {
            continue;
        };
        for us in times.iter().flatten() {
            let day = DateTime::from_timestamp_micros(us.div_euclid(DAY_US) * DAY_US)
                .map(|t| t.date_naive());
            if let Some(day) = day {
                *days.entry(day).or_insert(0) += 1;
            }
        }
    }
    Ok(Some(days))
}
