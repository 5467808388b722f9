//! Workers sharing a PostgreSQL checkpoint: `hls-flow worker`, and `run --state
//! postgres://…`, which plans and then works like a worker until its range is done.
//!
//! A worker loops: it takes back expired leases ([`Checkpoint::recover`]), claims ready
//! tasks in SQL ([`PgCheckpoint::claim`], dependencies checked there, so a month's
//! repartition waits for all its days whoever runs them), at most `max_concurrent_days`
//! harvests and one repartition at once, each harvest holding one of the CMR slots shared by
//! every worker. While an attempt runs, its lease is renewed every heartbeat; if a renewal
//! finds the attempt superseded, the attempt stops. Each publish is fenced
//! ([`crate::write::fence`]): an attempt that lost its lease publishes nothing, and its end
//! is recorded only if it still owns the task ([`PgCheckpoint::finish`]).

use crate::engine::checkpoint::postgres::{CmrSlots, PgCheckpoint};
use crate::engine::checkpoint::{Attempt, Change, Checkpoint, TaskOutput, TaskRow};
use crate::engine::dag::Dag;
use crate::engine::events::{Event, EventKind};
use crate::engine::events::{EventLog, Events};
use crate::engine::pipeline::{Pipeline, RetryFilter, RunConfig, STATE_SETTINGS};
use crate::engine::report::{Outcome, RunReport, TaskOutcome};
use crate::engine::scheduler::{Executor, RunGraph, delays, requeue_fresh, requeue_logged};
use crate::engine::task::{TaskId, TaskKind, TaskState};
use crate::error::{Error, Result, one_line};
use crate::period::DayRange;
use crate::progress::Progress;
use crate::write::fence::{Fence, fenced};
use crate::write::output::Output;
use futures::future::BoxFuture;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

/// Meta key of the number of CMR slots shared by every worker.
pub const CMR_SLOTS_KEY: &str = "cmr_slots";
/// CMR slots when none is stored: harvests at once over all workers.
pub const DEFAULT_CMR_SLOTS: u32 = 16;

/// What a worker does, beyond the run configuration.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Stop when nothing is left to do (else wait for new plans until stopped).
    pub exit_when_idle: bool,
    /// How often to look for ready tasks while there is nothing to claim.
    pub poll: Duration,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            exit_when_idle: false,
            poll: Duration::from_millis(200),
        }
    }
}

/// Opens the PostgreSQL state named by `cfg.state`.
pub async fn connect(cfg: &RunConfig) -> Result<Arc<PgCheckpoint>> {
    let url = cfg.state.to_string_lossy();
    let lease = crate::engine::checkpoint::postgres::LeaseSettings::from_env();
    Ok(Arc::new(PgCheckpoint::connect(&url, lease).await?))
}

/// `hls-flow run --state postgres://…`: plans `range` (idempotently: tasks another run
/// planned are shared), then works on it like a worker until every task of the range is
/// done or waits on a failure.
pub async fn run(
    range: DayRange,
    cfg: &RunConfig,
    cancel: impl Future<Output = ()>,
) -> Result<RunReport> {
    let pg = connect(cfg).await?;
    cfg.claim_settings(pg.as_ref()).await?;
    if pg.meta(CMR_SLOTS_KEY).await?.is_none() {
        pg.set_meta(CMR_SLOTS_KEY, &DEFAULT_CMR_SLOTS.to_string())
            .await?;
    }
    let dag = Dag::plan(&cfg.collections, range, &HashSet::new());
    let (tasks, deps) = dag.ordered();
    let ids = pg.plan(&tasks, &deps).await?;
    let command = format!("run {}..{}", range.start, range.end);
    work_on(pg, cfg, &ids, &command, cancel).await
}

/// `hls-flow retry-failed --state postgres://…`: re-queues the failed tasks that `filter`
/// matches, with the tasks after them, and works on them like a worker until they are done
/// or fail again. `None` if no failed task matches.
pub async fn retry_failed(
    filter: &RetryFilter,
    cfg: &RunConfig,
    cancel: impl Future<Output = ()>,
) -> Result<Option<RunReport>> {
    let pg = connect(cfg).await?;
    let mut rows: HashMap<TaskId, TaskRow> =
        pg.tasks().await?.into_iter().map(|t| (t.id, t)).collect();
    let failed = filter.failed(&rows);
    if failed.is_empty() {
        return Ok(None);
    }
    let scope = requeue_logged(&pg, &mut rows, &failed, "retry-failed").await?;
    let report = work_on(pg.clone(), cfg, &scope, "retry-failed", cancel).await?;
    // A sync whose failed tasks these were completes now.
    crate::engine::sync::finish(pg.as_ref(), pg.url()).await?;
    Ok(Some(report))
}

/// Works on the tasks `ids` like a worker (with `exit_when_idle`) until each is done or
/// waits on a failure; what became of each.
pub(crate) async fn work_on(
    pg: Arc<PgCheckpoint>,
    cfg: &RunConfig,
    ids: &[TaskId],
    command: &str,
    cancel: impl Future<Output = ()>,
) -> Result<RunReport> {
    let before: HashMap<TaskId, TaskState> = pg
        .tasks()
        .await?
        .into_iter()
        .map(|t| (t.id, t.state))
        .collect();
    let settings = WorkerSettings {
        exit_when_idle: true,
        ..WorkerSettings::default()
    };
    let done = work(pg.clone(), cfg, &settings, Some(ids), command, cancel).await?;
    let mut rows: HashMap<TaskId, TaskRow> =
        pg.tasks().await?.into_iter().map(|t| (t.id, t)).collect();
    let tasks = ids
        .iter()
        .filter_map(|id| rows.remove(id))
        .map(|task| {
            let outcome = if done.succeeded.contains(&task.id) {
                Outcome::Succeeded
            } else if done.failed.contains(&task.id) {
                Outcome::Failed
            } else if task.state == TaskState::Succeeded
                && before.get(&task.id) != Some(&TaskState::Succeeded)
            {
                // Done by another worker while this one waited.
                Outcome::Succeeded
            } else {
                Outcome::untouched(task.state)
            };
            TaskOutcome { task, outcome }
        })
        .collect();
    Ok(RunReport {
        run_id: done.run_id,
        tasks,
        items_written: done.items_written,
        interrupted: done.interrupted,
    })
}

/// What one worker did.
#[derive(Debug, Clone, Default)]
pub struct WorkReport {
    /// Its run in the checkpoint.
    pub run_id: i64,
    /// Tasks it completed.
    pub succeeded: HashSet<TaskId>,
    /// Tasks whose last attempt failed with it.
    pub failed: HashSet<TaskId>,
    /// Attempts it gave up because their lease was lost.
    pub lost: u64,
    /// Items it harvested.
    pub items_written: u64,
    /// Whether it was stopped (Ctrl-C, SIGTERM) with tasks running.
    pub interrupted: bool,
}

/// How one attempt ended.
enum Ended {
    Succeeded { items: u64, harvest: bool },
    AttemptFailed,
    Failed,
    Lost,
}

/// The run configuration with the state's output settings, once a run has recorded them: a
/// worker started before the first plan waits for it (with `exit_when_idle`, or when
/// `cancel` completes first, `None`: there is nothing to do).
async fn recorded_settings(
    pg: &PgCheckpoint,
    cfg: &RunConfig,
    settings: &WorkerSettings,
    mut cancel: std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Result<Option<RunConfig>> {
    loop {
        let mut recorded = true;
        for key in STATE_SETTINGS {
            recorded &= pg.meta(key).await?.is_some();
        }
        if recorded {
            return cfg.with_state_settings(pg).await.map(Some);
        }
        if settings.exit_when_idle {
            return Ok(None);
        }
        tokio::select! {
            _ = tokio::time::sleep(settings.poll) => {}
            _ = &mut cancel => return Ok(None),
        }
    }
}

/// Runs tasks of the PostgreSQL state until stopped (`cancel`), or, with
/// `exit_when_idle`, until nothing is left to do (of `scope`, when given).
pub async fn work(
    pg: Arc<PgCheckpoint>,
    cfg: &RunConfig,
    settings: &WorkerSettings,
    scope: Option<&[TaskId]>,
    command: &str,
    cancel: impl Future<Output = ()>,
) -> Result<WorkReport> {
    let mut cancel = std::pin::pin!(cancel);
    let Some(cfg) = recorded_settings(pg.as_ref(), cfg, settings, cancel.as_mut()).await? else {
        return Ok(WorkReport::default());
    };
    let scratch = tempfile::Builder::new()
        .prefix("hls-flow-worker-")
        .tempdir_in(cfg.tmp_dir.clone().unwrap_or_else(std::env::temp_dir))
        .map_err(|e| Error::io("a temporary folder", e))?;
    let mut cfg = cfg;
    cfg.tmp_dir = Some(scratch.path().to_path_buf());
    let output = Output::parse_with_options(&cfg.output, &cfg.output_options)?;
    // Other workers may be writing: only what ended processes left is cleared.
    output.clean_leftovers_of_ended_processes().await?;
    let changes = crate::engine::sync::ChangesQuery::new(pg.clone(), &cfg)?;
    // Daily files this process wrote are kept decoded for their month, as in one process:
    // taken only if the file is still the one written (its size and ETag), whoever runs the
    // month.
    let exec = Arc::new(
        Pipeline::new(&cfg, output)?
            .with_changes(changes)
            .with_recent_files(),
    );
    let slots = match pg.meta(CMR_SLOTS_KEY).await? {
        Some(s) => s.parse().unwrap_or(DEFAULT_CMR_SLOTS),
        None => DEFAULT_CMR_SLOTS,
    };
    let run = pg.register(command).await?;
    let shared = Shared {
        pg: pg.clone(),
        exec,
        run,
        cfg: cfg.clone(),
    };
    let result = shared.work(settings, scope, slots, cancel).await;
    let status = match &result {
        Ok(r) if r.interrupted => "interrupted",
        Ok(r) if !r.failed.is_empty() => "failed",
        Ok(_) => "succeeded",
        Err(_) => "failed",
    };
    pg.unregister(run, status).await?;
    drop(scratch);
    result
}

struct Shared {
    pg: Arc<PgCheckpoint>,
    exec: Arc<Pipeline>,
    run: i64,
    cfg: RunConfig,
}

impl Shared {
    async fn log(&self, task: TaskId, kind: EventKind) -> Result<()> {
        let event = Arc::new(Event::now(Some(self.run), task, kind));
        self.pg.log(&[event]).await
    }

    async fn work(
        &self,
        settings: &WorkerSettings,
        scope: Option<&[TaskId]>,
        slots: u32,
        cancel: impl Future<Output = ()>,
    ) -> Result<WorkReport> {
        let pg = &self.pg;
        let limits = [
            self.cfg.scheduler.max_concurrent_days.max(1),
            self.cfg.scheduler.max_concurrent_repartitions.max(1),
        ];
        // CMR work (harvests, and a sync's changes queries), then repartitions.
        let kinds: [&[TaskKind]; 2] = [
            &[TaskKind::Harvest, TaskKind::Changes],
            &[TaskKind::Repartition],
        ];
        let mut busy = [0usize; 2];
        let mut report = WorkReport {
            run_id: self.run,
            ..WorkReport::default()
        };
        let mut running: HashMap<TaskId, (Attempt, String, usize)> = HashMap::new();
        let mut join: JoinSet<(TaskId, Result<Ended>)> = JoinSet::new();
        let mut beat = tokio::time::interval(pg.lease().heartbeat);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(cancel);
        pg.recover().await?;
        let cmr = Arc::new(pg.cmr_slots(slots).await?);
        loop {
            for k in 0..2 {
                let free = limits[k].saturating_sub(busy[k]);
                // CMR work holds one of the slots shared by every worker while it runs.
                let slots = if k == 0 {
                    cmr.take(free).await?
                } else {
                    Vec::new()
                };
                let n = if k == 0 { slots.len() } else { free };
                let claimed = pg.claim(self.run, kinds[k], n).await?;
                cmr.give_back(slots.get(claimed.len()..).unwrap_or_default())
                    .await?;
                let started: Vec<Arc<Event>> = claimed
                    .iter()
                    .map(|(task, attempt)| {
                        let kind = EventKind::Started {
                            attempt: attempt.number,
                        };
                        Arc::new(Event::now(Some(self.run), task.id, kind))
                    })
                    .collect();
                pg.log(&started).await?;
                for (i, (task, attempt)) in claimed.into_iter().enumerate() {
                    running.insert(task.id, (attempt, task.key.clone(), k));
                    busy[k] += 1;
                    let one = One {
                        pg: pg.clone(),
                        exec: self.exec.clone(),
                        cfg: self.cfg.clone(),
                        run: self.run,
                    };
                    let slot = slots.get(i).map(|s| (cmr.clone(), *s));
                    join.spawn(async move {
                        let id = task.id;
                        let r = one.attempt(task, attempt, slot).await;
                        (id, r)
                    });
                }
            }
            if join.is_empty() && settings.exit_when_idle && pg.idle(scope).await? {
                break;
            }
            tokio::select! {
                Some(done) = join.join_next(), if !join.is_empty() => {
                    // Every attempt that ended by now, so that their places are claimed
                    // again together (one claim for several tasks).
                    let mut ended = vec![done];
                    while let Some(more) = join.try_join_next() {
                        ended.push(more);
                    }
                    for done in ended {
                        let (id, ended) = done.map_err(|e| Error::TaskJoin {
                            task: String::new(),
                            source: e,
                        })?;
                        let Some((_, _, k)) = running.remove(&id) else { continue };
                        busy[k] -= 1;
                        match ended? {
                            Ended::Succeeded { items, harvest } => {
                                report.succeeded.insert(id);
                                if harvest {
                                    report.items_written += items;
                                }
                            }
                            Ended::Failed => {
                                report.failed.insert(id);
                            }
                            Ended::AttemptFailed => {}
                            Ended::Lost => report.lost += 1,
                        }
                    }
                }
                _ = beat.tick() => {
                    let keys: Vec<String> = running.values().map(|r| r.1.clone()).collect();
                    pg.beat(self.run, &keys).await?;
                    pg.recover().await?;
                }
                _ = tokio::time::sleep(settings.poll), if join.is_empty() || busy.iter().zip(limits).any(|(b, l)| *b < l) => {}
                _ = &mut cancel => {
                    join.abort_all();
                    while join.join_next().await.is_some() {}
                    for (attempt, _, _) in running.values() {
                        if pg.finish(attempt, Change::Requeue, Duration::ZERO).await? {
                            let why = "interrupted".to_string();
                            self.log(attempt.task, EventKind::Requeued { why }).await?;
                        }
                    }
                    report.interrupted = !running.is_empty() || scope.is_some();
                    break;
                }
            }
        }
        Ok(report)
    }
}

/// One attempt's needs, moved into the task that runs it.
struct One {
    pg: Arc<PgCheckpoint>,
    exec: Arc<Pipeline>,
    cfg: RunConfig,
    run: i64,
}

/// The fence of one attempt.
struct AttemptFence {
    pg: Arc<PgCheckpoint>,
    attempt: Attempt,
}

impl Fence for AttemptFence {
    fn check<'a>(&'a self, _dest: &'a object_store::path::Path) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.pg.fence(&self.attempt))
    }
}

impl One {
    async fn log(&self, task: TaskId, kind: EventKind) -> Result<()> {
        let event = Arc::new(Event::now(Some(self.run), task, kind));
        self.pg.log(&[event]).await
    }

    /// Runs one attempt of `task`, renewing its lease, and records how it ended (if it
    /// still owns the task).
    async fn attempt(
        &self,
        task: TaskRow,
        attempt: Attempt,
        slot: Option<(Arc<CmrSlots>, i32)>,
    ) -> Result<Ended> {
        let r = self.attempt_inner(&task, &attempt).await;
        if let Some((slots, slot)) = slot {
            slots.give_back(&[slot]).await?;
        }
        r
    }

    async fn attempt_inner(&self, task: &TaskRow, attempt: &Attempt) -> Result<Ended> {
        let pg = &self.pg;
        // Only a repartition has inputs (its days).
        let inputs = match task.spec.kind {
            TaskKind::Repartition => pg.inputs(task.id).await?,
            TaskKind::Harvest | TaskKind::Changes => Vec::new(),
        };
        let fence = Arc::new(AttemptFence {
            pg: pg.clone(),
            attempt: *attempt,
        });
        let bar = Progress::hidden().unit(&task.key);
        let limit = self.cfg.scheduler.task_timeout;
        let work = fenced(
            fence,
            tokio::time::timeout(limit, self.exec.run(task, &inputs, &bar)),
        );
        tokio::pin!(work);
        let mut beat = tokio::time::interval(pg.lease().heartbeat);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        beat.tick().await;
        let result = loop {
            tokio::select! {
                r = &mut work => break r,
                _ = beat.tick() => {
                    if !pg.renew(attempt).await? {
                        tracing::warn!("{}: attempt {} lost its lease; stopping it", task.key, attempt.number);
                        return Ok(Ended::Lost);
                    }
                }
            }
        };
        let result: Result<TaskOutput> = match result {
            Ok(r) => r,
            Err(_) => Err(Error::TaskTimeout {
                task: task.key.clone(),
                seconds: limit.as_secs(),
            }),
        };
        match result {
            Ok(out) => {
                if !pg
                    .finish(attempt, Change::Succeed(&out), Duration::ZERO)
                    .await?
                {
                    tracing::warn!(
                        "{}: attempt {} lost its lease before it ended",
                        task.key,
                        attempt.number
                    );
                    return Ok(Ended::Lost);
                }
                let items = out.items_written;
                self.log(
                    task.id,
                    EventKind::Succeeded {
                        items,
                        skipped: false,
                    },
                )
                .await?;
                if !out.requeue.is_empty() {
                    // A changes task (sync): the days it found changed go back to pending,
                    // with the months after them, for whichever worker claims them.
                    let graph = RunGraph::new(&pg.deps().await?);
                    let mut log = Events::new();
                    log.subscribe(EventLog(pg.clone()));
                    let events = log.sender(Some(self.run));
                    let requeued = requeue_fresh(pg.as_ref(), &graph, &out.requeue, &events).await;
                    drop(events);
                    log.close().await?;
                    requeued?;
                }
                Ok(Ended::Succeeded {
                    items,
                    harvest: task.spec.kind == TaskKind::Harvest,
                })
            }
            Err(e @ Error::LeaseLost { .. }) => {
                tracing::warn!("{}", one_line(&e));
                Ok(Ended::Lost)
            }
            Err(e) => {
                let error = one_line(&e);
                tracing::info!("{} attempt {} failed: {error}", task.key, attempt.number);
                let tries = pg.tries(task.id).await?;
                let mut delays = delays(&self.cfg.scheduler);
                let delay = delays.nth(tries.saturating_sub(1) as usize);
                match delay {
                    Some(delay) if tries < self.cfg.scheduler.task_attempts => {
                        let change = Change::AttemptFailed {
                            attempt: attempt.number,
                            error: &error,
                        };
                        if !pg.finish(attempt, change, delay).await? {
                            return Ok(Ended::Lost);
                        }
                        let attempt = attempt.number;
                        self.log(task.id, EventKind::AttemptFailed { attempt, error })
                            .await?;
                        Ok(Ended::AttemptFailed)
                    }
                    _ => {
                        let missing = match &e {
                            Error::IncompleteDay { missing, .. } => missing.clone(),
                            _ => Vec::new(),
                        };
                        let change = Change::Fail {
                            error: &error,
                            missing: &missing,
                        };
                        if !pg.finish(attempt, change, Duration::ZERO).await? {
                            return Ok(Ended::Lost);
                        }
                        self.log(task.id, EventKind::Failed { error }).await?;
                        Ok(Ended::Failed)
                    }
                }
            }
        }
    }
}
