//! What a state file says: tasks by collection and month, failures with their errors and
//! missing granules, and the progress and ETA of a live run.

use crate::collection::Collection;
use crate::engine::checkpoint::Checkpoint;
use crate::engine::checkpoint::postgres::{PgCheckpoint, WorkerRow};
use crate::engine::checkpoint::sqlite::{
    RunRow, StateStore, TaskKind, TaskRow, TaskState, is_locked, parse_time,
};
use crate::error::Result;
use chrono::Utc;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// Task counts by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Counts {
    /// Pending.
    pub pending: usize,
    /// Running.
    pub running: usize,
    /// Succeeded.
    pub succeeded: usize,
    /// Failed.
    pub failed: usize,
}

impl Counts {
    fn add(&mut self, s: TaskState) {
        match s {
            TaskState::Pending => self.pending += 1,
            TaskState::Running => self.running += 1,
            TaskState::Succeeded => self.succeeded += 1,
            TaskState::Failed => self.failed += 1,
        }
    }

    /// All tasks.
    pub fn total(&self) -> usize {
        self.pending + self.running + self.succeeded + self.failed
    }
}

/// One (collection, month).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MonthStatus {
    /// The collection.
    pub collection: Collection,
    /// `YYYY-MM`.
    pub month: String,
    /// Harvest tasks by state.
    pub harvest: Counts,
    /// The repartition task's state, if the month has one.
    pub repartition: Option<TaskState>,
    /// Items written by its succeeded harvest tasks (daily files).
    pub items_written: u64,
    /// Rows of its monthly partition, if written.
    pub partition_rows: Option<u64>,
    /// `CMR-Hits` summed over its harvested days.
    pub cmr_hits: u64,
}

/// A live run's progress.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LiveRun {
    /// The run.
    pub run: RunRow,
    /// Tasks it finished so far.
    pub done: usize,
    /// Tasks left (pending or running).
    pub remaining: usize,
    /// Estimated seconds to go, once something has finished.
    pub eta_seconds: Option<u64>,
}

/// Everything `hls-flow status` shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusReport {
    /// The state file.
    pub state_file: String,
    /// The output it describes.
    pub output: Option<String>,
    /// Its bounding box, if any.
    pub bbox: Option<String>,
    /// All tasks by state.
    pub totals: Counts,
    /// Items in daily files.
    pub items_written: u64,
    /// Per collection and month, in order.
    pub months: Vec<MonthStatus>,
    /// Failed tasks, with last error and missing granules.
    pub failed: Vec<TaskRow>,
    /// The live run, if a process holds the state file.
    pub live_run: Option<LiveRun>,
    /// The latest run, live or not.
    pub last_run: Option<RunRow>,
    /// What `sync` keeps: per collection synced, changes at or after its watermark may be
    /// missing from the cache; and when a sync that has not completed began.
    pub sync: SyncStatus,
    /// The workers sharing a PostgreSQL state (host, pid, last heartbeat, tasks); none for
    /// a state file.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub workers: Vec<WorkerRow>,
}

/// The sync settings of a state file.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SyncStatus {
    /// Per collection, its watermark (collections never synced are left out).
    pub watermarks: BTreeMap<Collection, String>,
    /// The start of a sync that has not completed (failed or killed), if any.
    pub unfinished_since: Option<String>,
    /// Per collection synced, the state of its changes task (the CMR changes query of the
    /// latest sync; `failed`: that sync did not complete, `retry-failed` runs it again).
    pub changes: BTreeMap<Collection, TaskState>,
}

/// What a status report is made of, read from a checkpoint.
struct Snapshot {
    tasks: Vec<TaskRow>,
    last_run: Option<RunRow>,
    /// Whether the last run's process is alive (it holds the lock, or beats).
    live: bool,
    meta: BTreeMap<String, String>,
    workers: Vec<WorkerRow>,
}

/// The settings a status report shows.
fn meta_keys() -> Vec<String> {
    let mut keys: Vec<String> = ["output", "bbox", "sync.started"]
        .map(String::from)
        .to_vec();
    keys.extend(
        Collection::ALL
            .iter()
            .map(|c| format!("sync.watermark.{c}")),
    );
    keys
}

/// Reads a state file (also while a run is writing it).
pub fn status(path: &Path) -> Result<StatusReport> {
    let state = StateStore::open_read_only(path)?;
    let mut meta = BTreeMap::new();
    for key in meta_keys() {
        if let Some(v) = state.meta(&key)? {
            meta.insert(key, v);
        }
    }
    let snapshot = Snapshot {
        tasks: state.tasks()?,
        last_run: state.last_run()?,
        live: is_locked(path),
        meta,
        workers: Vec::new(),
    };
    Ok(assemble(path.display().to_string(), snapshot))
}

/// Reads a PostgreSQL state: its tasks, and the workers sharing it (a run is live while
/// its worker beats).
pub async fn status_postgres(pg: &PgCheckpoint) -> Result<StatusReport> {
    let mut meta = BTreeMap::new();
    for key in meta_keys() {
        if let Some(v) = pg.meta(&key).await? {
            meta.insert(key, v);
        }
    }
    let workers = pg.workers().await?;
    let last_run = pg.last_run().await?;
    let fresh = pg.lease().lease.as_secs_f64();
    let live = last_run.as_ref().is_some_and(|r| {
        workers
            .iter()
            .any(|w| w.run_id == r.id && !w.stopped && w.heartbeat_age_s < fresh)
    });
    let snapshot = Snapshot {
        tasks: pg.tasks().await?,
        last_run,
        live,
        meta,
        workers,
    };
    Ok(assemble(pg.url().to_string(), snapshot))
}

fn assemble(state_file: String, snapshot: Snapshot) -> StatusReport {
    let Snapshot {
        tasks,
        last_run,
        live: locked,
        meta,
        workers,
    } = snapshot;
    let mut months: BTreeMap<(Collection, String), MonthStatus> = BTreeMap::new();
    let mut totals = Counts::default();
    let mut items = 0;
    let mut changes = BTreeMap::new();
    for t in &tasks {
        totals.add(t.state);
        if t.spec.kind == TaskKind::Changes {
            changes.insert(t.spec.collection, t.state);
            continue;
        }
        let m = months
            .entry((t.spec.collection, t.spec.month.to_string()))
            .or_insert_with(|| MonthStatus {
                collection: t.spec.collection,
                month: t.spec.month.to_string(),
                harvest: Counts::default(),
                repartition: None,
                items_written: 0,
                partition_rows: None,
                cmr_hits: 0,
            });
        match t.spec.kind {
            TaskKind::Harvest => {
                m.harvest.add(t.state);
                if t.state == TaskState::Succeeded {
                    let n = t.items_written.unwrap_or(0);
                    m.items_written += n;
                    items += n;
                    m.cmr_hits += t.cmr_hits.unwrap_or(0);
                }
            }
            TaskKind::Repartition => {
                m.repartition = Some(t.state);
                if t.state == TaskState::Succeeded {
                    m.partition_rows = t.items_written;
                }
            }
            TaskKind::Changes => {}
        }
    }
    let mut last_run = last_run;
    // A run recorded running whose process is gone (it no longer holds the lock) was
    // killed: it is interrupted, whatever the file still says.
    if let Some(run) = last_run
        .as_mut()
        .filter(|r| r.status == "running" && !locked)
    {
        run.status = "interrupted".into();
    }
    let live_run = match &last_run {
        Some(run) if run.status == "running" => {
            let done = tasks
                .iter()
                .filter(|t| {
                    t.run_id == Some(run.id)
                        && matches!(t.state, TaskState::Succeeded | TaskState::Failed)
                })
                .count();
            let remaining = totals.pending + totals.running;
            let elapsed = parse_time(&run.started_at)
                .map(|s| (Utc::now() - s).num_milliseconds().max(0) as f64 / 1000.0);
            let eta_seconds = match elapsed {
                Some(e) if done > 0 => Some((e / done as f64 * remaining as f64).round() as u64),
                _ => None,
            };
            Some(LiveRun {
                run: run.clone(),
                done,
                remaining,
                eta_seconds,
            })
        }
        _ => None,
    };
    StatusReport {
        state_file,
        output: meta.get("output").cloned(),
        bbox: meta.get("bbox").filter(|b| !b.is_empty()).cloned(),
        totals,
        items_written: items,
        months: months.into_values().collect(),
        failed: tasks
            .into_iter()
            .filter(|t| t.state == TaskState::Failed)
            .collect(),
        live_run,
        last_run,
        sync: SyncStatus {
            watermarks: Collection::ALL
                .into_iter()
                .filter_map(|c| Some((c, meta.get(&format!("sync.watermark.{c}"))?.clone())))
                .collect(),
            unfinished_since: meta.get("sync.started").filter(|s| !s.is_empty()).cloned(),
            changes,
        },
        workers,
    }
}
