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
//!
//! `changes` asks CMR (one collection at a time), `settings` keeps the above
//! ([`SyncState`]), and `verify` counts the cache against CMR ([`verify()`]).

mod changes;
mod settings;
mod verify;

pub use changes::{ChangesQuery, RunChanges};
pub(crate) use settings::FoundRecord;
pub use settings::SyncState;
pub use verify::{DayCheck, MonthCheck, VerifyReport, verify};

use crate::collection::Collection;
use crate::engine::checkpoint::postgres::is_postgres_url;
use crate::engine::checkpoint::sqlite::{StateStore, TaskKind, TaskRow, TaskSpec, TaskState};
use crate::engine::checkpoint::{Checkpoint, stamp};
use crate::engine::pipeline::{RunConfig, execute, open_state};
use crate::engine::report::RunReport;
use crate::engine::scheduler::{RunGraph, requeue_logged};
use crate::engine::task::TaskId;
use crate::error::Result;
use crate::period::Month;
use crate::source::cmr::CmrClient;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;

/// How far before a sync began its watermark is set: a change CMR had not indexed yet when
/// the sync asked is found by the next sync.
pub fn default_overlap() -> Duration {
    Duration::hours(1)
}

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

pub(super) fn cmr_client(cfg: &RunConfig) -> Result<CmrClient> {
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

/// The harvest tasks of a collection, by day.
pub(super) fn harvests_of(rows: &[TaskRow], c: Collection) -> BTreeMap<NaiveDate, &TaskRow> {
    rows.iter()
        .filter(|t| t.spec.kind == TaskKind::Harvest && t.spec.collection == c)
        .filter_map(|t| Some((t.spec.day?, t)))
        .collect()
}

/// The watermark of a collection never synced: changes since its first harvest began may
/// be missing (`now` when no harvest has begun), less the overlap.
pub(super) fn initial_watermark(
    days: &BTreeMap<NaiveDate, &TaskRow>,
    now: DateTime<Utc>,
    overlap: Duration,
) -> DateTime<Utc> {
    let first = days
        .values()
        .filter(|t| t.state == TaskState::Succeeded)
        .filter_map(|t| t.started_at.as_deref())
        .filter_map(crate::engine::checkpoint::sqlite::parse_time)
        .min()
        .unwrap_or(now);
    first - overlap
}

/// `hls-flow sync`: brings every day and month the state file covers up to date with CMR.
/// The output and bounding box are the state file's. Returns `Ok(None)` when the state
/// covers no day.
///
/// It plans one changes task per collection (`changes/<C>`, run again by every sync) and
/// runs it with whatever an interrupted sync or run left pending; the engine runs the days
/// it requeues, and the sync completes ([`finish`]: the watermarks advance) when they all
/// succeed, in this run or in a later one (`retry-failed`, or `sync` again).
pub async fn sync(
    opts: &SyncOptions,
    cfg: &RunConfig,
    cancel: impl Future<Output = ()>,
) -> Result<Option<SyncReport>> {
    if is_postgres_url(&cfg.state.to_string_lossy()) {
        // Shared with workers: they run the days requeued as they run any ready task.
        let pg = crate::engine::worker::connect(cfg).await?;
        let cfg = cfg.with_state_settings(pg.as_ref()).await?;
        let path = pg.url().to_string();
        let Some(plan) = plan(&pg, opts, &cfg, &path).await? else {
            return Ok(None);
        };
        let work = plan.work.iter().copied().collect::<Vec<_>>();
        let mut run =
            crate::engine::worker::work_on(pg.clone(), &cfg, &work, "sync", cancel).await?;
        // The report names what the sync asked for and what it ran, not every task it
        // waited on.
        run.tasks.retain(|t| {
            plan.scope.contains(&t.task.id)
                || t.outcome != crate::engine::report::Outcome::AlreadyDone
        });
        return conclude(pg.as_ref(), &path, plan.collections, run)
            .await
            .map(Some);
    }
    let probe = StateStore::open_exclusive(&cfg.state)?;
    let cfg = cfg.with_state_settings(&probe).await?;
    drop(probe);
    let state = open_state(&cfg).await?;
    let path = cfg.state.display().to_string();
    let Some(plan) = plan(&state, opts, &cfg, &path).await? else {
        return Ok(None);
    };
    let run = execute(state.clone(), &cfg, plan.scope, "sync", cancel).await?;
    conclude(state.as_ref(), &path, plan.collections, run)
        .await
        .map(Some)
}

/// A sync planned: its collections, the tasks it runs (the changes tasks, and what an
/// interrupted sync or run left pending), and every task of its collections (what a worker
/// may have to run once the changes tasks requeue days).
struct SyncPlan {
    collections: Vec<Collection>,
    scope: HashSet<TaskId>,
    work: HashSet<TaskId>,
}

/// Plans a sync on `state` (named `path` in errors): the changes tasks of the collections
/// it covers, back to pending unless a resumed sync already ran them. `None` when the
/// state covers no day.
async fn plan<C: Checkpoint>(
    state: &Arc<C>,
    opts: &SyncOptions,
    cfg: &RunConfig,
    path: &str,
) -> Result<Option<SyncPlan>> {
    let settings = SyncState::new(state.as_ref(), path);
    let rows = state.tasks().await?;
    let collections: Vec<Collection> = cfg
        .collections
        .iter()
        .copied()
        .filter(|c| !harvests_of(&rows, *c).is_empty())
        .collect();
    if collections.is_empty() {
        return Ok(None);
    }
    // A sync not completed (killed, or a task failed) is resumed: same start, same changes.
    let resumed = settings.started().await?.is_some();
    if !resumed {
        settings.set_started(Some(Utc::now())).await?;
        settings.set_overlap(opts.overlap).await?;
    }
    let mut specs = Vec::new();
    for &c in &collections {
        let days = harvests_of(&rows, c);
        let watermark = match settings.watermark(c).await? {
            Some(w) => w,
            None => {
                let w = initial_watermark(&days, Utc::now(), opts.overlap);
                settings.set_watermark(c, w).await?;
                w
            }
        };
        // `--since` lowers the watermark: the sync asks from there, and a completed sync
        // sets it as usual.
        if let Some(since) = opts.since.filter(|s| *s < watermark) {
            settings.set_watermark(c, since).await?;
        }
        if !resumed {
            settings.set_found(c, None).await?;
        }
        let first = days.keys().next().copied().map(Month::of);
        specs.extend(first.map(|m| TaskSpec::changes(c, m)));
    }
    let ids = state.plan(&specs, &[]).await?;

    // A new sync asks again (its changes tasks back to pending); a resumed one retries a
    // failed query and keeps one that succeeded (the days it requeued are pending).
    let mut by_id: HashMap<TaskId, TaskRow> = state
        .tasks()
        .await?
        .into_iter()
        .map(|t| (t.id, t))
        .collect();
    let roots: Vec<TaskId> = ids
        .iter()
        .copied()
        .filter(|id| {
            by_id.get(id).is_some_and(|t| match t.state {
                TaskState::Failed => true,
                TaskState::Succeeded => !resumed,
                TaskState::Pending | TaskState::Running => false,
            })
        })
        .collect();
    requeue_logged(state, &mut by_id, &roots, "sync").await?;
    let mut scope: HashSet<TaskId> = ids.iter().copied().collect();
    let ours = || {
        by_id
            .values()
            .filter(|t| collections.contains(&t.spec.collection))
    };
    scope.extend(
        ours()
            .filter(|t| matches!(t.state, TaskState::Pending | TaskState::Running))
            .map(|t| t.id),
    );
    let work = scope.iter().copied().chain(ours().map(|t| t.id)).collect();
    Ok(Some(SyncPlan {
        collections,
        scope,
        work,
    }))
}

/// The report of a sync that ran `run`: what each collection's changes task found, and
/// whether the sync completed ([`finish`]).
async fn conclude<C: Checkpoint>(
    state: &C,
    path: &str,
    collections: Vec<Collection>,
    run: RunReport,
) -> Result<SyncReport> {
    let settings = SyncState::new(state, path);
    let mut found = Vec::new();
    for &c in &collections {
        let Some(r) = settings.found(c).await? else {
            continue;
        };
        found.push(CollectionChanges {
            collection: c,
            since: r.since,
            changed: r.changed,
            deleted: r.deleted,
            deleted_held: r.deleted_held,
            already_applied: r.already_applied,
            days: r.days,
            watermark: None,
        });
    }
    let completed = finish(state, path).await?;
    if completed {
        for f in &mut found {
            f.watermark = settings.watermark(f.collection).await?;
        }
    }
    Ok(SyncReport {
        collections: found,
        run,
        completed,
    })
}

/// Completes the sync not completed yet, if it is done: every changes task succeeded, and
/// every day one requeued (with the tasks after it) too, no task of its collections left
/// pending. The watermarks then advance to the sync's start less the overlap, the changes
/// found at or after them are recorded as applied, and the sync is over. Returns whether
/// it completed one. `sync` and `retry-failed` end with it.
pub async fn finish<C: Checkpoint>(state: &C, path: &str) -> Result<bool> {
    let settings = SyncState::new(state, path);
    let Some(started) = settings.started().await? else {
        return Ok(false);
    };
    let overlap = settings.overlap().await?.unwrap_or_else(default_overlap);
    let rows = state.tasks().await?;
    let graph = RunGraph::new(&state.deps().await?);
    let by_id: HashMap<TaskId, &TaskRow> = rows.iter().map(|t| (t.id, t)).collect();
    let mut done = Vec::new();
    for t in rows.iter().filter(|t| t.spec.kind == TaskKind::Changes) {
        let c = t.spec.collection;
        let Some(found) = settings.found(c).await? else {
            if t.state == TaskState::Succeeded {
                continue; // not part of this sync
            }
            return Ok(false);
        };
        if t.state != TaskState::Succeeded {
            return Ok(false);
        }
        let days = harvests_of(&rows, c);
        let roots = found.days.iter().filter_map(|d| days.get(d)).map(|t| t.id);
        let requeued_done = graph.downstream(roots).iter().all(|id| {
            by_id
                .get(id)
                .is_none_or(|t| t.state == TaskState::Succeeded)
        });
        let left = rows.iter().any(|r| {
            r.spec.collection == c && matches!(r.state, TaskState::Pending | TaskState::Running)
        });
        if !requeued_done || left {
            return Ok(false);
        }
        done.push((c, found));
    }
    for (c, found) in done {
        let old = settings.watermark(c).await?;
        let new = (started - overlap).max(old.unwrap_or(DateTime::<Utc>::MIN_UTC));
        let applied: BTreeSet<(String, String)> = found
            .seen
            .iter()
            .filter(|(_, at)| *at >= new)
            .map(|(ur, at)| (ur.clone(), stamp(*at)))
            .collect();
        settings.set_applied(c, &applied).await?;
        settings.set_watermark(c, new).await?;
        settings.set_found(c, None).await?;
    }
    settings.set_started(None).await?;
    Ok(true)
}
