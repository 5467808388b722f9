//! `hls-flow sync` and `hls-flow verify`: keeping a harvested cache current with CMR, and
//! proving it is.
//!
//! A sync asks CMR, per collection, what changed since the collection's watermark: granules
//! new or revised (`updated_since` over the temporal range the state covers) and granules
//! deleted (`deleted-granules.json`). The days those granules begin on are the affected
//! days; their harvest tasks are requeued with the repartitions after them (the engine's
//! one requeue policy), and the normal engine runs them: a day harvested again is CMR's
//! current truth (a deleted granule is gone, a late one is there, a revised one has its
//! latest metadata), and its month is repartitioned. Nothing else is rewritten.
//!
//! What the state keeps (as settings of the checkpoint, so both checkpoints keep them):
//! - `sync.watermark.<C>`: changes at or after it may be missing from the cache. Set when
//!   the first sync begins (the earliest start of a harvest, minus the overlap), advanced
//!   only when a sync completes, to its start minus the overlap (CMR indexes with a delay).
//! - `sync.applied.<C>`: the changes (granule, revision date) the last completed sync found
//!   at or after the new watermark. They are in the cache already, so the next sync, which
//!   finds them again in its overlap, does not count them: a sync right after another one
//!   fetches no item and rewrites no file.
//! - `sync.started`: when the sync that has not completed yet began. A killed sync,
//!   started again, keeps it (its new watermark is then the earlier one), finds the same
//!   changes, and runs what is pending.

use crate::collection::Collection;
use crate::engine::checkpoint::sqlite::{StateStore, TaskKind, TaskRow, TaskState};
use crate::engine::checkpoint::{Checkpoint, stamp};
use crate::engine::events::{EventLog, Events};
use crate::engine::pipeline::{RunConfig, execute, open_state};
use crate::engine::report::RunReport;
use crate::engine::scheduler::{RunGraph, requeue_downstream};
use crate::error::{Error, Result, StateProblem};
use crate::period::{DayRange, Month};
use crate::source::cmr::{CmrClient, GranuleQuery};
use crate::write::geoparquet::{read_items, row_count};
use crate::write::output::Output;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjPath;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::Future;

/// How far before a sync began its watermark is set: a change CMR had not indexed yet when
/// the sync asked is found by the next sync.
pub fn default_overlap() -> Duration {
    Duration::hours(1)
}

/// How far back CMR lists deleted granules.
fn deleted_reach() -> Duration {
    // A year, less a margin for the clocks of this machine and CMR's.
    Duration::days(365) - Duration::hours(1)
}

const STARTED: &str = "sync.started";

/// What a sync is asked for.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Ask for changes since this instant instead, when it is before the watermark.
    pub since: Option<DateTime<Utc>>,
    /// How far before its start a completed sync sets the watermark.
    pub overlap: Duration,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            since: None,
            overlap: default_overlap(),
        }
    }
}

/// What a sync found for one collection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CollectionChanges {
    /// The collection.
    pub collection: Collection,
    /// Changes were asked for from this instant.
    pub since: DateTime<Utc>,
    /// Granules new or revised since then (not applied by an earlier sync).
    pub changed: usize,
    /// Granules deleted since then (not applied by an earlier sync), of which the cache
    /// held `deleted_held`.
    pub deleted: usize,
    /// Deleted granules the cache held.
    pub deleted_held: usize,
    /// Changes found again that an earlier sync applied.
    pub already_applied: usize,
    /// Days to harvest again.
    pub days: Vec<NaiveDate>,
    /// The watermark after the sync (`None`: not advanced, the sync did not complete).
    pub watermark: Option<DateTime<Utc>>,
}

/// What a sync did.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncReport {
    /// Per collection, what changed.
    pub collections: Vec<CollectionChanges>,
    /// The run of the affected tasks.
    pub run: RunReport,
    /// Whether it completed (every task succeeded): the watermarks advanced.
    pub completed: bool,
}

/// The sync settings of a checkpoint.
pub struct SyncState<'a, C> {
    state: &'a C,
    /// The state file, for errors.
    path: String,
}

impl<'a, C: Checkpoint> SyncState<'a, C> {
    /// The sync settings of `state` (named `path` in errors).
    pub fn new(state: &'a C, path: impl Into<String>) -> SyncState<'a, C> {
        SyncState {
            state,
            path: path.into(),
        }
    }

    fn bad(&self, key: &str, value: &str) -> Error {
        Error::State {
            path: self.path.clone(),
            problem: StateProblem::BadSetting {
                key: key.to_string(),
                value: value.to_string(),
            },
        }
    }

    async fn time(&self, key: &str) -> Result<Option<DateTime<Utc>>> {
        match self.state.meta(key).await? {
            None => Ok(None),
            Some(v) if v.is_empty() => Ok(None),
            Some(v) => crate::engine::checkpoint::sqlite::parse_time(&v)
                .map(Some)
                .ok_or_else(|| self.bad(key, &v)),
        }
    }

    /// The watermark of `c`: changes at or after it may be missing from the cache.
    pub async fn watermark(&self, c: Collection) -> Result<Option<DateTime<Utc>>> {
        self.time(&format!("sync.watermark.{c}")).await
    }

    /// Sets the watermark of `c`.
    pub async fn set_watermark(&self, c: Collection, at: DateTime<Utc>) -> Result<()> {
        self.state
            .set_meta(&format!("sync.watermark.{c}"), &stamp(at))
            .await
    }

    /// The changes (granule UR, revision date) of `c` the last completed sync applied at or
    /// after its new watermark.
    pub async fn applied(&self, c: Collection) -> Result<BTreeSet<(String, String)>> {
        let key = format!("sync.applied.{c}");
        match self.state.meta(&key).await? {
            None => Ok(BTreeSet::new()),
            Some(v) if v.is_empty() => Ok(BTreeSet::new()),
            Some(v) => serde_json::from_str::<Vec<(String, String)>>(&v)
                .map(|list| list.into_iter().collect())
                .map_err(|_| self.bad(&key, &v)),
        }
    }

    /// Records the changes of `c` applied at or after its watermark.
    pub async fn set_applied(
        &self,
        c: Collection,
        changes: &BTreeSet<(String, String)>,
    ) -> Result<()> {
        let list: Vec<&(String, String)> = changes.iter().collect();
        let value = serde_json::to_string(&list).map_err(|source| Error::Json {
            what: "sync.applied",
            source,
        })?;
        self.state
            .set_meta(&format!("sync.applied.{c}"), &value)
            .await
    }

    /// When the sync that has not completed began.
    pub async fn started(&self) -> Result<Option<DateTime<Utc>>> {
        self.time(STARTED).await
    }

    /// Records (`Some`) or clears (`None`) the start of a sync not completed yet.
    pub async fn set_started(&self, at: Option<DateTime<Utc>>) -> Result<()> {
        self.state
            .set_meta(STARTED, &at.map(stamp).unwrap_or_default())
            .await
    }
}

/// The output, bounding box and daily prefix of the state file (it describes one output).
fn with_state_settings(cfg: &RunConfig, state: &StateStore) -> Result<RunConfig> {
    let mut cfg = cfg.clone();
    if let Some(o) = state.meta("output")? {
        cfg.output = o;
    }
    if let Some(b) = state.meta("bbox")? {
        cfg.bbox = if b.is_empty() { None } else { Some(b.parse()?) };
    }
    if let Some(p) = state.meta("daily_prefix")? {
        cfg.daily_prefix = p;
    }
    Ok(cfg)
}

fn cmr_client(cfg: &RunConfig) -> Result<CmrClient> {
    let http = crate::source::http::client(&cfg.endpoints.http)?;
    Ok(CmrClient::new(
        http,
        &cfg.endpoints.cmr_url,
        &cfg.endpoints.http.client_id,
        cfg.endpoints.retry,
        cfg.endpoints.max_cmr_requests,
    )
    // Entries of the JSON format are large (~14 KB): pages as the stac-json harvest's.
    .with_page_size(cfg.endpoints.page_size.min(crate::api::STAC_JSON_PAGE_SIZE)))
}

/// The day in a granule UR (`HLS.S30.T35VLJ.2021168T100559.v2.0`: year and day of year).
fn day_of_granule_ur(ur: &str) -> Option<NaiveDate> {
    let stamp = ur.split('.').nth(3)?;
    let year = stamp.get(0..4)?.parse().ok()?;
    let doy = stamp.get(4..7)?.parse().ok()?;
    NaiveDate::from_yo_opt(year, doy)
}

/// The harvest tasks of a collection, by day.
fn harvests_of(rows: &[TaskRow], c: Collection) -> BTreeMap<NaiveDate, &TaskRow> {
    rows.iter()
        .filter(|t| t.spec.kind == TaskKind::Harvest && t.spec.collection == c)
        .filter_map(|t| Some((t.spec.day?, t)))
        .collect()
}

/// The item ids of daily files, read once each.
struct DailyIds<'a> {
    output: &'a Output,
    ids: HashMap<NaiveDate, HashSet<String>>,
}

impl DailyIds<'_> {
    async fn holds(&mut self, task: &TaskRow, day: NaiveDate, id: &str) -> Result<bool> {
        if !self.ids.contains_key(&day) {
            let ids = match task.output_path.as_deref() {
                Some(p) if self.output_exists(p).await? => {
                    read_items(self.output, &ObjPath::from(p))
                        .await?
                        .into_iter()
                        .map(|i| i.id)
                        .collect()
                }
                _ => HashSet::new(),
            };
            self.ids.insert(day, ids);
        }
        Ok(self.ids.get(&day).is_some_and(|ids| ids.contains(id)))
    }

    async fn output_exists(&self, p: &str) -> Result<bool> {
        Ok(self.output.size_of(&ObjPath::from(p)).await?.is_some())
    }
}

/// What the changes query of one collection found.
struct Found {
    changes: CollectionChanges,
    /// Every change found (granule UR, revision date), applied before or not.
    seen: Vec<(String, DateTime<Utc>)>,
}

/// What the changes queries use.
struct Asker<'a> {
    client: &'a CmrClient,
    cfg: &'a RunConfig,
    output: &'a Output,
}

/// Asks CMR what changed in `c` since `since`, and which of the covered days it touches.
async fn changes_of(
    ctx: &Asker<'_>,
    c: Collection,
    days: &BTreeMap<NaiveDate, &TaskRow>,
    span: DayRange,
    since: DateTime<Utc>,
    applied: &BTreeSet<(String, String)>,
) -> Result<Found> {
    let q = GranuleQuery {
        collection: c,
        start: crate::period::day_window(span.start).0,
        end: crate::period::day_window(span.end).1,
        bbox: ctx.cfg.bbox,
    };
    let Asker { client, output, .. } = *ctx;
    let mut affected = BTreeSet::new();
    let mut seen = Vec::new();
    let (mut changed, mut deleted, mut deleted_held, mut already) = (0, 0, 0, 0);
    let mut listed = HashSet::new();
    let mut pages = std::pin::pin!(client.changed_pages(&q, since));
    while let Some(page) = pages.try_next().await? {
        for e in page.entries {
            // A listing that starts over repeats entries.
            if !listed.insert(e.id.clone()) {
                continue;
            }
            seen.push((e.title.clone(), e.updated));
            if applied.contains(&(e.title, stamp(e.updated))) {
                already += 1;
                continue;
            }
            changed += 1;
            let day = e.time_start.date_naive();
            if days.contains_key(&day) {
                affected.insert(day);
            }
        }
    }
    let reach = Utc::now() - deleted_reach();
    let asked = if since < reach {
        tracing::warn!(
            "{c}: CMR lists deleted granules a year back only: deletions before {} cannot be seen (harvest those months again with `run` after removing them from the state)",
            stamp(reach)
        );
        reach
    } else {
        since
    };
    let mut ids = DailyIds {
        output,
        ids: HashMap::new(),
    };
    for g in client.deleted_granules(c, asked).await? {
        seen.push((g.granule_ur.clone(), g.revision_date));
        if applied.contains(&(g.granule_ur.clone(), stamp(g.revision_date))) {
            already += 1;
            continue;
        }
        deleted += 1;
        let candidates: Vec<NaiveDate> = match day_of_granule_ur(&g.granule_ur) {
            // HLSS30's UR time is the datatake's, up to minutes before the granule begins.
            Some(d) => [d.pred_opt(), Some(d), d.succ_opt()]
                .into_iter()
                .flatten()
                .filter(|d| days.contains_key(d))
                .collect(),
            None => days.keys().copied().collect(),
        };
        for d in candidates {
            if ids.holds(days[&d], d, &g.granule_ur).await? {
                tracing::debug!("deleted {} is in {c} {d}", g.granule_ur);
                affected.insert(d);
                deleted_held += 1;
                break;
            }
        }
    }
    Ok(Found {
        changes: CollectionChanges {
            collection: c,
            since,
            changed,
            deleted,
            deleted_held,
            already_applied: already,
            days: affected.into_iter().collect(),
            watermark: None,
        },
        seen,
    })
}

/// `hls-flow sync`: brings every day and month the state file covers up to date with CMR.
/// The output and bounding box are the state file's. Returns `Ok(None)` when the state
/// covers no day.
pub async fn sync(
    opts: &SyncOptions,
    cfg: &RunConfig,
    cancel: impl Future<Output = ()>,
) -> Result<Option<SyncReport>> {
    let probe = StateStore::open_exclusive(&cfg.state)?;
    let cfg = with_state_settings(cfg, &probe)?;
    drop(probe);
    let state = open_state(&cfg)?;
    let path = cfg.state.display().to_string();
    let settings = SyncState::new(state.as_ref(), path);
    let rows = state.tasks()?;
    let collections: Vec<Collection> = cfg
        .collections
        .iter()
        .copied()
        .filter(|c| !harvests_of(&rows, *c).is_empty())
        .collect();
    if collections.is_empty() {
        return Ok(None);
    }
    let started = match settings.started().await? {
        Some(t) => t,
        None => {
            let now = Utc::now();
            settings.set_started(Some(now)).await?;
            now
        }
    };
    let client = cmr_client(&cfg)?;
    let output = Output::parse_with_options(&cfg.output, &cfg.output_options)?;
    let asker = Asker {
        client: &client,
        cfg: &cfg,
        output: &output,
    };
    let mut found = Vec::new();
    let mut roots = Vec::new();
    for &c in &collections {
        let days = harvests_of(&rows, c);
        let (Some(&first), Some(&last)) = (days.keys().next(), days.keys().next_back()) else {
            continue;
        };
        let span = DayRange::new(first, last)?;
        let watermark = match settings.watermark(c).await? {
            Some(w) => w,
            None => {
                // Never synced: changes since the first harvest began may be missing.
                let first = days
                    .values()
                    .filter(|t| t.state == TaskState::Succeeded)
                    .filter_map(|t| t.started_at.as_deref())
                    .filter_map(crate::engine::checkpoint::sqlite::parse_time)
                    .min()
                    .unwrap_or(started);
                let w = first - opts.overlap;
                settings.set_watermark(c, w).await?;
                w
            }
        };
        let since = opts.since.map_or(watermark, |s| s.min(watermark));
        let applied = settings.applied(c).await?;
        let f = changes_of(&asker, c, &days, span, since, &applied).await?;
        tracing::info!(
            "{c}: since {}: {} new or revised, {} deleted ({} held), {} applied before; {} days to harvest again",
            stamp(since),
            f.changes.changed,
            f.changes.deleted,
            f.changes.deleted_held,
            f.changes.already_applied,
            f.changes.days.len()
        );
        roots.extend(f.changes.days.iter().map(|d| days[d].id));
        found.push(f);
    }

    // Requeue the affected days and the months after them, then run them with whatever an
    // interrupted sync or run left pending.
    let mut by_id: HashMap<i64, TaskRow> = rows.into_iter().map(|t| (t.id, t)).collect();
    let graph = RunGraph::new(&state.deps()?);
    let mut log = Events::new();
    log.subscribe(EventLog(state.clone()));
    let events = log.sender(None);
    let requeued = requeue_downstream(
        state.as_ref(),
        &graph,
        &mut by_id,
        &roots,
        "changed in CMR (sync)",
        &events,
    )
    .await;
    drop(events);
    log.close().await?;
    let mut scope: HashSet<i64> = requeued?.into_iter().collect();
    scope.extend(
        by_id
            .values()
            .filter(|t| collections.contains(&t.spec.collection))
            .filter(|t| matches!(t.state, TaskState::Pending | TaskState::Running))
            .map(|t| t.id),
    );
    let run = execute(state.clone(), &cfg, scope, "sync", cancel).await?;
    let completed = run.status() == "succeeded";
    if completed {
        for f in &mut found {
            let c = f.changes.collection;
            let old = settings.watermark(c).await?;
            let new = (started - opts.overlap).max(old.unwrap_or(DateTime::<Utc>::MIN_UTC));
            let applied: BTreeSet<(String, String)> = f
                .seen
                .iter()
                .filter(|(_, at)| *at >= new)
                .map(|(ur, at)| (ur.clone(), stamp(*at)))
                .collect();
            settings.set_applied(c, &applied).await?;
            settings.set_watermark(c, new).await?;
            f.changes.watermark = Some(new);
        }
        settings.set_started(None).await?;
    }
    Ok(Some(SyncReport {
        collections: found.into_iter().map(|f| f.changes).collect(),
        run,
        completed,
    }))
}

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
    let cfg = with_state_settings(cfg, &state)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_day_of_a_granule_ur_is_its_year_and_day_of_year() {
        assert_eq!(
            day_of_granule_ur("HLS.S30.T35VLJ.2021168T100559.v2.0"),
            NaiveDate::from_ymd_opt(2021, 6, 17)
        );
        assert_eq!(
            day_of_granule_ur("HLS.L30.T15TWN.2024366T170439.v2.0"),
            NaiveDate::from_ymd_opt(2024, 12, 31)
        );
        assert_eq!(
            day_of_granule_ur("HLS.L30.T15TWN.2023366T170439.v2.0"),
            None
        );
        assert_eq!(day_of_granule_ur("not-an-hls-id"), None);
    }
}
