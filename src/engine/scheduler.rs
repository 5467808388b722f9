//! Runs the tasks of a DAG recorded in a checkpoint: in dependency order (the DAG held in
//! memory), within concurrency limits, retrying failed attempts with exponential backoff and
//! jitter, with a time limit per attempt, checkpointing every change of state.
//!
//! A task may requeue others when it succeeds ([`TaskOutput::requeue`]: a sync's changes
//! task names the days CMR changed): they and every task after them go back to pending
//! (the engine's one requeue policy, [`requeue_downstream`]) before its success is
//! recorded, and join the run at once. A changes task *gates* its collection: while it is
//! unfinished in a run, no other task of that collection starts, so nothing it requeues is
//! running, and a day it requeues runs once, after it.

use crate::collection::Collection;
use crate::engine::checkpoint::{Change, Checkpoint, RunId, TaskOutput, TaskRow};
use crate::engine::events::{EventKind, EventLog, EventSender, Events, ProgressView};
use crate::engine::report::{Outcome, RunReport, TaskOutcome};
use crate::engine::task::{TaskId, TaskKind, TaskState};
use crate::error::{Error, Result, one_line};
use crate::progress::{Progress, UnitBar};
use backon::{BackoffBuilder, ExponentialBuilder};
use petgraph::Direction;
use petgraph::graphmap::DiGraphMap;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

/// Limits and retry policy of the scheduler.
#[derive(Debug, Clone)]
pub struct SchedulerSettings {
    /// Harvest tasks at once.
    pub max_concurrent_days: usize,
    /// Repartition tasks at once (each one streams a month through a sort).
    pub max_concurrent_repartitions: usize,
    /// Attempts per task in one run (the first included).
    pub task_attempts: u32,
    /// First delay between attempts.
    pub min_delay: Duration,
    /// Longest delay between attempts.
    pub max_delay: Duration,
    /// Time limit of one attempt.
    pub task_timeout: Duration,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        SchedulerSettings {
            max_concurrent_days: 3,
            max_concurrent_repartitions: 1,
            task_attempts: 3,
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            task_timeout: Duration::from_secs(3600),
        }
    }
}

/// What the scheduler runs: the real pipeline, or a stand-in in tests.
pub trait Executor: Send + Sync + 'static {
    /// Runs one attempt of `task`; `inputs` are the tasks it depends on (all succeeded).
    fn run(
        &self,
        task: &TaskRow,
        inputs: &[TaskRow],
        bar: &UnitBar,
    ) -> impl Future<Output = Result<TaskOutput>> + Send;

    /// Whether the output a succeeded task recorded is still there and whole.
    fn output_intact(&self, task: &TaskRow) -> impl Future<Output = Result<bool>> + Send;

    /// The output of a pending `task` that is already done outside the checkpoint (a
    /// complete file from an earlier run), checked before its first attempt: the task then
    /// succeeds with it, skipped, without running. `None` (the default): run it.
    fn already_done(
        &self,
        _task: &TaskRow,
    ) -> impl Future<Output = Result<Option<TaskOutput>>> + Send {
        async { Ok(None) }
    }
}

/// How one task's attempts ended.
enum Done {
    /// Succeeded, by running (with the items it harvested) or by finding its output.
    Succeeded {
        harvested: u64,
        skipped: bool,
        /// Tasks it requeued (back to pending), with every task after them.
        requeued: Vec<TaskId>,
    },
    Failed,
    /// Another actor had claimed it.
    Taken,
}

/// The run's DAG in memory: an edge goes from a task to each task that needs it.
#[derive(Debug, Default)]
pub struct RunGraph {
    graph: DiGraphMap<TaskId, (), std::hash::RandomState>,
}

impl RunGraph {
    /// The graph of (task, depends on) pairs.
    pub fn new(deps: &[(TaskId, TaskId)]) -> RunGraph {
        let mut graph =
            DiGraphMap::with_capacity_and_hasher(deps.len(), deps.len(), Default::default());
        for &(task, dep) in deps {
            graph.add_edge(dep, task, ());
        }
        RunGraph { graph }
    }

    /// The tasks `id` needs.
    pub fn needs(&self, id: TaskId) -> impl Iterator<Item = TaskId> + '_ {
        self.graph.neighbors_directed(id, Direction::Incoming)
    }

    /// The tasks that need `id`.
    pub fn dependents(&self, id: TaskId) -> impl Iterator<Item = TaskId> + '_ {
        self.graph.neighbors_directed(id, Direction::Outgoing)
    }

    /// `roots` and every task after them, each once, roots first.
    pub fn downstream(&self, roots: impl IntoIterator<Item = TaskId>) -> Vec<TaskId> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        let mut queue: std::collections::VecDeque<TaskId> = roots.into_iter().collect();
        while let Some(id) = queue.pop_front() {
            if seen.insert(id) {
                out.push(id);
                queue.extend(self.dependents(id));
            }
        }
        out
    }
}

/// The engine's requeue policy, in one place: `roots` and every task after them go back
/// to pending (succeeded ones requeued, failed ones retried), so that they run again.
pub async fn requeue_downstream<C: Checkpoint>(
    state: &C,
    graph: &RunGraph,
    rows: &mut HashMap<TaskId, TaskRow>,
    roots: &[TaskId],
    why: &str,
    events: &EventSender,
) -> Result<Vec<TaskId>> {
    let all = graph.downstream(roots.iter().copied());
    for &id in &all {
        let Some(row) = rows.get_mut(&id) else {
            continue;
        };
        let why = if roots.contains(&id) {
            why
        } else {
            "an input is being rebuilt"
        };
        let change = match row.state {
            TaskState::Pending => continue,
            TaskState::Failed => Change::Retry,
            TaskState::Succeeded | TaskState::Running => Change::Requeue,
        };
        state.transition(id, change).await?;
        row.state = TaskState::Pending;
        let why = why.to_string();
        events.send(id, EventKind::Requeued { why });
    }
    Ok(all)
}

/// [`requeue_downstream`] over the state's dependencies, its `requeued` events recorded in
/// the state (outside any run): what `retry-failed` and `sync` do before they run.
pub async fn requeue_logged<C: Checkpoint>(
    state: &Arc<C>,
    rows: &mut HashMap<TaskId, TaskRow>,
    roots: &[TaskId],
    why: &str,
) -> Result<Vec<TaskId>> {
    let graph = RunGraph::new(&state.deps().await?);
    let mut log = Events::new();
    log.subscribe(EventLog(state.clone()));
    let events = log.sender(None);
    let requeued = requeue_downstream(state.as_ref(), &graph, rows, roots, why, &events).await;
    drop(events);
    log.close().await?;
    requeued
}

/// The concurrency slot of a kind: CMR work (harvests, changes queries) or repartitions.
fn slot(kind: TaskKind) -> usize {
    match kind {
        TaskKind::Harvest | TaskKind::Changes => 0,
        TaskKind::Repartition => 1,
    }
}

/// Requeues `roots` and what follows them as [`requeue_downstream`] does, reading their
/// states from the checkpoint (an attempt does not hold the run's rows).
pub(crate) async fn requeue_fresh<C: Checkpoint>(
    state: &C,
    graph: &RunGraph,
    roots: &[TaskId],
    events: &EventSender,
) -> Result<Vec<TaskId>> {
    let mut rows = HashMap::new();
    for id in graph.downstream(roots.iter().copied()) {
        if let Some(row) = state.task(id).await? {
            rows.insert(id, row);
        }
    }
    let why = "changed in CMR (sync)";
    let all = requeue_downstream(state, graph, &mut rows, roots, why, events).await?;
    Ok(all.into_iter().filter(|id| rows.contains_key(id)).collect())
}

/// Runs every task of `scope` that is not done, and their pending dependencies' results
/// permitting. Succeeded tasks whose output is missing or damaged are run again (and the
/// tasks after them). Returns when nothing more can run, or when `cancel` completes.
///
/// The task table is read once; from then on the run's DAG is in memory (a task is ready
/// when its count of unfinished dependencies reaches zero) and the checkpoint is only
/// written, one guarded change at a time, and read back one finished task at a time. What
/// happens is sent as [`crate::engine::events`] to the checkpoint's event log and to the
/// progress display, each on its own channel.
pub async fn run_tasks<C: Checkpoint, E: Executor>(
    state: Arc<C>,
    exec: Arc<E>,
    scope: &HashSet<TaskId>,
    run_id: RunId,
    settings: &SchedulerSettings,
    progress: &Progress,
    cancel: impl Future<Output = ()>,
) -> Result<RunReport> {
    let mut consumers = Events::new();
    consumers.subscribe(EventLog(state.clone()));
    consumers.subscribe(ProgressView::new(progress.clone()));
    let runner = Runner {
        events: consumers.sender(Some(run_id)),
        state,
        exec,
        run_id,
        settings: settings.clone(),
        progress: progress.clone(),
    };
    let report = runner.run(scope, cancel).await;
    drop(runner);
    let closed = consumers.close().await;
    let report = report?;
    closed?;
    Ok(report)
}
/// One run of the scheduler: what its tasks need while it runs.
struct Runner<C, E> {
    state: Arc<C>,
    exec: Arc<E>,
    run_id: RunId,
    settings: SchedulerSettings,
    progress: Progress,
    events: EventSender,
}

impl<C: Checkpoint, E: Executor> Runner<C, E> {
    async fn run(
        &self,
        scope: &HashSet<TaskId>,
        cancel: impl Future<Output = ()>,
    ) -> Result<RunReport> {
        let state = &self.state;
        let mut rows: HashMap<TaskId, TaskRow> = state
            .tasks()
            .await?
            .into_iter()
            .map(|t| (t.id, t))
            .collect();
        let graph = Arc::new(RunGraph::new(&state.deps().await?));

        // Trust the checkpoint, and check the files it vouches for.
        let mut order: Vec<TaskId> = scope.iter().copied().collect();
        order.sort_unstable();
        let mut in_run: HashSet<TaskId> = order.iter().copied().collect();
        for &id in &order {
            let Some(row) = rows.get(&id) else { continue };
            if row.state == TaskState::Succeeded
                && !self.exec.output_intact(row).await.unwrap_or(false)
            {
                tracing::warn!(
                    "{}: its output is missing or damaged; running it again",
                    row.key
                );
                let why = "output missing or damaged";
                requeue_downstream(state.as_ref(), &graph, &mut rows, &[id], why, &self.events)
                    .await?;
            }
        }
        let succeeded = |rows: &HashMap<TaskId, TaskRow>, id: &TaskId| {
            rows.get(id)
                .is_some_and(|r| r.state == TaskState::Succeeded)
        };

        // Ready sets by kind (lowest id first), from counts of dependencies not yet succeeded.
        let mut unmet: HashMap<TaskId, usize> = HashMap::new();
        let mut ready: [BTreeSet<TaskId>; 2] = Default::default();
        // Unfinished changes tasks by collection, and the ready tasks they hold back.
        let mut gates: HashMap<Collection, usize> = HashMap::new();
        let mut held: Vec<TaskId> = Vec::new();
        for &id in &order {
            let Some(row) = rows.get(&id).filter(|r| r.state == TaskState::Pending) else {
                continue;
            };
            if row.spec.kind == TaskKind::Changes {
                *gates.entry(row.spec.collection).or_default() += 1;
            }
            let n = graph.needs(id).filter(|d| !succeeded(&rows, d)).count();
            unmet.insert(id, n);
            if n == 0 {
                ready[slot(row.spec.kind)].insert(id);
            }
        }
        let limits = [
            self.settings.max_concurrent_days.max(1),
            self.settings.max_concurrent_repartitions.max(1),
        ];
        let mut busy = [0usize; 2];
        let mut ended: HashMap<TaskId, Outcome> = HashMap::new();
        let mut items_written = 0;
        let mut interrupted = false;
        let mut running: HashMap<tokio::task::Id, TaskId> = HashMap::new();
        let mut join: JoinSet<(TaskId, Result<Done>)> = JoinSet::new();
        tokio::pin!(cancel);
        loop {
            for k in 0..2 {
                while busy[k] < limits[k] {
                    let Some(id) = ready[k].pop_first() else {
                        break;
                    };
                    let Some(task) = rows.get(&id).cloned() else {
                        continue;
                    };
                    if task.spec.kind != TaskKind::Changes
                        && gates.get(&task.spec.collection).is_some_and(|n| *n > 0)
                    {
                        held.push(id);
                        continue;
                    }
                    let inputs: Vec<TaskRow> = graph
                        .needs(id)
                        .filter_map(|d| rows.get(&d).cloned())
                        .collect();
                    let attempts = Attempts {
                        graph: graph.clone(),
                        state: self.state.clone(),
                        exec: self.exec.clone(),
                        run_id: self.run_id,
                        settings: self.settings.clone(),
                        events: self.events.clone(),
                        bar: self.progress.unit(&unit_label(&task)),
                    };
                    let handle = join.spawn(async move {
                        let r = attempts.run(&task, &inputs).await;
                        attempts.bar.done();
                        (task.id, r)
                    });
                    busy[k] += 1;
                    running.insert(handle.id(), id);
                }
            }
            if join.is_empty() {
                break;
            }
            tokio::select! {
                done = join.join_next() => {
                    let Some(done) = done else { break };
                    let (id, result) = done.map_err(|e| {
                        let task = running
                            .get(&e.id())
                            .and_then(|id| rows.get(id))
                            .map_or_else(String::new, |r| r.key.clone());
                        Error::TaskJoin { task, source: e }
                    })?;
                    running.retain(|_, t| *t != id);
                    let done = result?;
                    let Some(fresh) = state.task(id).await? else { continue };
                    busy[slot(fresh.spec.kind)] -= 1;
                    if fresh.spec.kind == TaskKind::Changes
                        && let Some(n) = gates.get_mut(&fresh.spec.collection)
                    {
                        *n = n.saturating_sub(1);
                        if *n == 0 {
                            // Its collection may go on (whether it succeeded or not).
                            let c = fresh.spec.collection;
                            held.retain(|h| match rows.get(h) {
                                Some(r) if r.spec.collection == c => {
                                    ready[slot(r.spec.kind)].insert(*h);
                                    false
                                }
                                _ => true,
                            });
                        }
                    }
                    match done {
                        Done::Succeeded { harvested, skipped, requeued } => {
                            // What it requeued joins the run: fresh rows first, then
                            // the counts of what each one waits for.
                            for &r in &requeued {
                                if let Some(row) = state.task(r).await? {
                                    rows.insert(r, row);
                                }
                                if in_run.insert(r) {
                                    order.push(r);
                                }
                            }
                            for &r in &requeued {
                                // Ready or held before, it may now wait for a requeued input.
                                ready.iter_mut().for_each(|k| { k.remove(&r); });
                                held.retain(|h| *h != r);
                                let Some(row) = rows.get(&r).filter(|r| r.state == TaskState::Pending) else {
                                    continue;
                                };
                                let n = graph.needs(r).filter(|d| !succeeded(&rows, d)).count();
                                unmet.insert(r, n);
                                if n == 0 {
                                    ready[slot(row.spec.kind)].insert(r);
                                }
                            }
                            items_written += harvested;
                            let outcome = if skipped { Outcome::Skipped } else { Outcome::Succeeded };
                            ended.insert(id, outcome);
                            for d in graph.dependents(id) {
                                let Some(n) = unmet.get_mut(&d) else { continue };
                                *n = n.saturating_sub(1);
                                if *n == 0
                                    && let Some(r) = rows.get(&d)
                                    && r.state == TaskState::Pending
                                {
                                    ready[slot(r.spec.kind)].insert(d);
                                }
                            }
                        }
                        Done::Failed => {
                            ended.insert(id, Outcome::Failed);
                        }
                        Done::Taken => {}
                    }
                    rows.insert(id, fresh);
                }
                _ = &mut cancel => {
                    join.abort_all();
                    while join.join_next().await.is_some() {}
                    for &id in running.values() {
                        let Some(row) = state.task(id).await? else { continue };
                        if row.state == TaskState::Running {
                            state.transition(id, Change::Requeue).await?;
                            let why = "interrupted".to_string();
                            self.events.send(id, EventKind::Requeued { why });
                        }
                        rows.insert(id, TaskRow { state: TaskState::Pending, ..row });
                    }
                    interrupted = true;
                    break;
                }
            }
        }
        let tasks = order
            .iter()
            .filter_map(|id| rows.remove(id))
            .map(|task| TaskOutcome {
                outcome: ended
                    .get(&task.id)
                    .copied()
                    .unwrap_or_else(|| Outcome::untouched(task.state)),
                task,
            })
            .collect();
        Ok(RunReport {
            run_id: self.run_id,
            tasks,
            items_written,
            interrupted,
        })
    }
}

fn unit_label(task: &TaskRow) -> String {
    match task.spec.kind {
        TaskKind::Harvest => format!(
            "{} {}",
            task.spec.collection,
            task.spec.day.map(|d| d.to_string()).unwrap_or_default()
        ),
        TaskKind::Repartition => {
            format!("{} {} repartition", task.spec.collection, task.spec.month)
        }
        TaskKind::Changes => format!("{} changes", task.spec.collection),
    }
}

/// The attempts of one task: what they need, moved into the task that makes them.
struct Attempts<C, E> {
    graph: Arc<RunGraph>,
    state: Arc<C>,
    exec: Arc<E>,
    run_id: RunId,
    settings: SchedulerSettings,
    events: EventSender,
    bar: UnitBar,
}

impl<C: Checkpoint, E: Executor> Attempts<C, E> {
    /// Claims `task` and runs it until it succeeds or its attempts are spent.
    async fn run(&self, task: &TaskRow, inputs: &[TaskRow]) -> Result<Done> {
        let (state, run_id, settings) = (self.state.as_ref(), self.run_id, &self.settings);
        let mut delays = delays(settings);
        if let Some(out) = self.exec.already_done(task).await.unwrap_or(None) {
            let Some(attempt) = state.claim(task.id, run_id).await? else {
                return Ok(Done::Taken);
            };
            let attempt = attempt.number;
            self.events.send(task.id, EventKind::Started { attempt });
            state.transition(task.id, Change::Succeed(&out)).await?;
            let items = out.items_written;
            let skipped = true;
            self.events
                .send(task.id, EventKind::Succeeded { items, skipped });
            return Ok(Done::Succeeded {
                harvested: 0,
                skipped,
                requeued: Vec::new(),
            });
        }
        loop {
            let Some(attempt) = state.claim(task.id, run_id).await? else {
                return Ok(Done::Taken);
            };
            let attempt = attempt.number;
            self.events.send(task.id, EventKind::Started { attempt });
            let run = self.exec.run(task, inputs, &self.bar);
            let result = match tokio::time::timeout(settings.task_timeout, run).await {
                Ok(r) => r,
                Err(_) => Err(Error::TaskTimeout {
                    task: task.key.clone(),
                    seconds: settings.task_timeout.as_secs(),
                }),
            };
            match result {
                Ok(out) => {
                    // Requeue first: killed between the two, the task runs again.
                    let requeued = if out.requeue.is_empty() {
                        Vec::new()
                    } else {
                        requeue_fresh(state, &self.graph, &out.requeue, &self.events).await?
                    };
                    state.transition(task.id, Change::Succeed(&out)).await?;
                    let items = out.items_written;
                    let skipped = false;
                    self.events
                        .send(task.id, EventKind::Succeeded { items, skipped });
                    // Items are counted once, when harvested; a repartition moves them.
                    let harvested = match task.spec.kind {
                        TaskKind::Harvest => items,
                        TaskKind::Repartition | TaskKind::Changes => 0,
                    };
                    return Ok(Done::Succeeded {
                        harvested,
                        skipped,
                        requeued,
                    });
                }
                Err(e) => {
                    let error = one_line(&e);
                    tracing::info!("{} attempt {attempt} failed: {error}", task.key);
                    if let Some(delay) = delays.next() {
                        let change = Change::AttemptFailed {
                            attempt,
                            error: &error,
                        };
                        state.transition(task.id, change).await?;
                        self.events
                            .send(task.id, EventKind::AttemptFailed { attempt, error });
                        tokio::time::sleep(with_retry_after(delay, e.retry_after())).await;
                        continue;
                    }
                    let missing = match &e {
                        Error::IncompleteDay { missing, .. } => missing.clone(),
                        _ => Vec::new(),
                    };
                    let change = Change::Fail {
                        error: &error,
                        missing: &missing,
                    };
                    state.transition(task.id, change).await?;
                    self.events.send(task.id, EventKind::Failed { error });
                    return Ok(Done::Failed);
                }
            }
        }
    }
}

/// The delays between the attempts of one task in one run (`task_attempts - 1` of them):
/// exponential from `min_delay`, capped at `max_delay`, with jitter (`backon`, as for
/// requests).
pub fn delays(settings: &SchedulerSettings) -> impl Iterator<Item = Duration> + use<> {
    ExponentialBuilder::default()
        .with_min_delay(settings.min_delay)
        .with_max_delay(settings.max_delay)
        .with_max_times(settings.task_attempts.max(1) as usize - 1)
        .with_jitter()
        .build()
}

/// A server's `Retry-After` (capped at 2 minutes) replaces a shorter delay.
fn with_retry_after(delay: Duration, retry_after: Option<Duration>) -> Duration {
    match retry_after {
        Some(ra) => delay.max(ra.min(Duration::from_secs(120))),
        None => delay,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collection::Collection;
    use crate::engine::checkpoint::sqlite::StateStore;
    use crate::engine::dag::Dag;
    use crate::period::DayRange;
    use std::sync::Mutex;

    /// Fails the tasks named in `failures` that many times, records the order of runs.
    #[derive(Default)]
    struct Fake {
        failures: Mutex<HashMap<String, u32>>,
        ran: Mutex<Vec<String>>,
        missing_outputs: Mutex<HashSet<String>>,
        /// Tasks whose success requeues these (a changes task's days).
        requeues: Mutex<HashMap<String, Vec<TaskId>>>,
    }

    impl Executor for Fake {
        async fn run(
            &self,
            task: &TaskRow,
            inputs: &[TaskRow],
            _bar: &UnitBar,
        ) -> Result<TaskOutput> {
            self.ran.lock().unwrap().push(task.key.clone());
            if task.spec.kind == TaskKind::Repartition {
                assert!(inputs.iter().all(|i| i.state == TaskState::Succeeded));
            }
            let mut f = self.failures.lock().unwrap();
            if let Some(n) = f.get_mut(&task.key)
                && *n > 0
            {
                *n -= 1;
                return Err(Error::Status {
                    url: "http://cmr".into(),
                    status: 503,
                    body: String::new(),
                    retry_after: None,
                });
            }
            let requeue = self
                .requeues
                .lock()
                .unwrap()
                .get(&task.key)
                .cloned()
                .unwrap_or_default();
            Ok(TaskOutput {
                items_written: 10,
                requeue,
                ..TaskOutput::default()
            })
        }

        async fn output_intact(&self, task: &TaskRow) -> Result<bool> {
            Ok(!self.missing_outputs.lock().unwrap().contains(&task.key))
        }
    }

    fn setup(dir: &std::path::Path, range: &str) -> (Arc<StateStore>, HashSet<i64>) {
        let st = Arc::new(StateStore::open_exclusive(&dir.join("s.sqlite")).unwrap());
        let dag = Dag::plan(
            &[Collection::Hlsl30],
            DayRange::parse(&[range]).unwrap(),
            &HashSet::new(),
        );
        let (tasks, deps) = dag.ordered();
        let ids = st.record_dag(&tasks, &deps).unwrap();
        (st, ids.into_iter().collect())
    }

    /// Runs the scope to the end with the fake executor.
    async fn go(
        st: &Arc<StateStore>,
        fake: &Arc<Fake>,
        scope: &HashSet<i64>,
        run: i64,
    ) -> RunReport {
        run_tasks(
            st.clone(),
            fake.clone(),
            scope,
            run,
            &fast(),
            &Progress::hidden(),
            std::future::pending(),
        )
        .await
        .unwrap()
    }

    fn fast() -> SchedulerSettings {
        SchedulerSettings {
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
            ..SchedulerSettings::default()
        }
    }

    #[tokio::test]
    async fn runs_everything_in_dependency_order_then_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (st, scope) = setup(dir.path(), "202402");
        let fake = Arc::new(Fake::default());
        let run = st.start_run("t").unwrap();
        let r = go(&st, &fake, &scope, run).await;
        assert_eq!(r.done_now(), 30);
        assert_eq!(r.items_written, 290, "29 harvests of 10 items");
        let ran = fake.ran.lock().unwrap().clone();
        assert_eq!(ran.last().unwrap(), "repartition/HLSL30/2024-02");
        // Again: nothing to do.
        let r = go(&st, &fake, &scope, run).await;
        assert_eq!((r.done_now(), r.count(Outcome::AlreadyDone)), (0, 30));
        assert_eq!(fake.ran.lock().unwrap().len(), 30);
    }

    #[tokio::test]
    async fn runs_on_the_in_memory_checkpoint_the_same() {
        use crate::engine::checkpoint::memory::MemoryCheckpoint;
        let st = Arc::new(MemoryCheckpoint::new());
        let dag = Dag::plan(
            &[Collection::Hlsl30],
            DayRange::parse(&["202402"]).unwrap(),
            &HashSet::new(),
        );
        let (tasks, deps) = dag.ordered();
        let scope: HashSet<i64> = st.plan(&tasks, &deps).await.unwrap().into_iter().collect();
        let fake = Arc::new(Fake::default());
        fake.failures
            .lock()
            .unwrap()
            .insert("harvest/HLSL30/2024-02-04".into(), 99);
        let run = st.start_run("t").await.unwrap();
        let r = run_tasks(
            st.clone(),
            fake.clone(),
            &scope,
            run,
            &fast(),
            &Progress::hidden(),
            std::future::pending(),
        )
        .await
        .unwrap();
        let counts = (
            r.done_now(),
            r.count(Outcome::Failed),
            r.count(Outcome::NotRun),
        );
        assert_eq!(counts, (28, 1, 1));
        let failed = r.failed().next().unwrap();
        assert_eq!(failed.attempts, 3);
        assert_eq!(r.status(), "failed");
        let kinds: Vec<String> = st
            .events(failed.id)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.1)
            .collect();
        let one = ["started", "attempt_failed"];
        assert_eq!(
            kinds,
            [&one[..], &one[..], &["started", "failed"][..]].concat()
        );
    }

    #[tokio::test]
    async fn retries_then_fails_and_blocks_dependents() {
        let dir = tempfile::tempdir().unwrap();
        let (st, scope) = setup(dir.path(), "202402");
        let fake = Arc::new(Fake::default());
        fake.failures
            .lock()
            .unwrap()
            .insert("harvest/HLSL30/2024-02-03".into(), 1);
        fake.failures
            .lock()
            .unwrap()
            .insert("harvest/HLSL30/2024-02-04".into(), 99);
        let run = st.start_run("t").unwrap();
        let r = go(&st, &fake, &scope, run).await;
        assert_eq!(r.done_now(), 28);
        let failed: Vec<&TaskRow> = r.failed().collect();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].key, "harvest/HLSL30/2024-02-04");
        assert_eq!(failed[0].attempts, 3);
        assert!(failed[0].last_error.as_deref().unwrap().contains("503"));
        assert_eq!(r.count(Outcome::NotRun), 1, "the month's repartition waits");
        let rows = st.tasks().unwrap();
        let day3 = rows
            .iter()
            .find(|t| t.key == "harvest/HLSL30/2024-02-03")
            .unwrap();
        assert_eq!((day3.state, day3.attempts), (TaskState::Succeeded, 2));
        let events = st.events(failed[0].id).unwrap();
        assert_eq!(events.iter().filter(|e| e.1 == "attempt_failed").count(), 2);
    }

    #[tokio::test]
    async fn missing_outputs_are_rebuilt_with_what_follows() {
        let dir = tempfile::tempdir().unwrap();
        let (st, scope) = setup(dir.path(), "202402");
        let fake = Arc::new(Fake::default());
        let run = st.start_run("t").unwrap();
        go(&st, &fake, &scope, run).await;
        fake.missing_outputs
            .lock()
            .unwrap()
            .insert("harvest/HLSL30/2024-02-10".into());
        fake.ran.lock().unwrap().clear();
        let r = go(&st, &fake, &scope, run).await;
        assert_eq!(r.done_now(), 2);
        assert_eq!(r.count(Outcome::AlreadyDone), 28);
        let day10 = r
            .tasks
            .iter()
            .find(|t| t.task.key == "harvest/HLSL30/2024-02-10");
        assert_eq!(day10.unwrap().outcome, Outcome::Succeeded);
        let requeued: Vec<String> = st
            .events(day10.unwrap().task.id)
            .unwrap()
            .into_iter()
            .filter(|e| e.1 == "requeued")
            .filter_map(|e| e.2)
            .collect();
        assert_eq!(requeued, ["output missing or damaged"]);
        assert_eq!(
            *fake.ran.lock().unwrap(),
            ["harvest/HLSL30/2024-02-10", "repartition/HLSL30/2024-02"]
        );
    }

    #[tokio::test]
    async fn tasks_a_task_requeues_join_the_run_and_run_once_after_it() {
        use crate::engine::task::TaskSpec;
        let dir = tempfile::tempdir().unwrap();
        let (st, mut scope) = setup(dir.path(), "202402");
        let feb = crate::period::Month::new(2024, 2).unwrap();
        let changes = st
            .record_dag(&[TaskSpec::changes(Collection::Hlsl30, feb)], &[])
            .unwrap()[0];
        scope.insert(changes);
        let fake = Arc::new(Fake::default());
        let run = st.start_run("t").unwrap();
        assert_eq!(go(&st, &fake, &scope, run).await.done_now(), 31);
        let id_of = |key: &str| {
            st.tasks()
                .unwrap()
                .into_iter()
                .find(|t| t.key == key)
                .unwrap()
                .id
        };
        let (d10, d20) = (
            id_of("harvest/HLSL30/2024-02-10"),
            id_of("harvest/HLSL30/2024-02-20"),
        );
        // A new sync: the changes task again, and day 10 left pending by a killed one.
        st.apply(changes, Change::Requeue).unwrap();
        st.apply(d10, Change::Requeue).unwrap();
        fake.requeues
            .lock()
            .unwrap()
            .insert("changes/HLSL30".into(), vec![d10, d20]);
        fake.ran.lock().unwrap().clear();
        let scope: HashSet<TaskId> = [changes, d10].into();
        let r = go(&st, &fake, &scope, run).await;
        let ran = fake.ran.lock().unwrap().clone();
        assert_eq!(ran[0], "changes/HLSL30", "it gates its collection: {ran:?}");
        assert_eq!(ran.last().unwrap(), "repartition/HLSL30/2024-02");
        let mut middle = ran[1..3].to_vec();
        middle.sort();
        assert_eq!(
            middle,
            ["harvest/HLSL30/2024-02-10", "harvest/HLSL30/2024-02-20"],
            "each requeued day once"
        );
        assert_eq!(ran.len(), 4);
        assert_eq!((r.done_now(), r.status()), (4, "succeeded"));
        assert!(
            r.tasks
                .iter()
                .any(|t| t.task.key == "repartition/HLSL30/2024-02")
        );
        assert!(
            st.tasks()
                .unwrap()
                .iter()
                .all(|t| t.state == TaskState::Succeeded)
        );
        let why: Vec<String> = st
            .events(d20)
            .unwrap()
            .into_iter()
            .filter(|e| e.1 == "requeued")
            .filter_map(|e| e.2)
            .collect();
        assert_eq!(why, ["changed in CMR (sync)"]);
    }

    #[tokio::test]
    async fn cancelling_puts_running_tasks_back() {
        struct Slow;
        impl Executor for Slow {
            async fn run(&self, _: &TaskRow, _: &[TaskRow], _: &UnitBar) -> Result<TaskOutput> {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok(TaskOutput::default())
            }
            async fn output_intact(&self, _: &TaskRow) -> Result<bool> {
                Ok(true)
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let (st, scope) = setup(dir.path(), "20240201");
        let run = st.start_run("t").unwrap();
        let r = run_tasks(
            st.clone(),
            Arc::new(Slow),
            &scope,
            run,
            &fast(),
            &Progress::hidden(),
            tokio::time::sleep(Duration::from_millis(50)),
        )
        .await
        .unwrap();
        assert!(r.interrupted);
        assert_eq!(r.status(), "interrupted");
        assert!(!r.tasks.is_empty());
        assert_eq!(r.count(Outcome::NotRun), r.tasks.len());
        assert!(
            st.tasks()
                .unwrap()
                .iter()
                .all(|t| t.state == TaskState::Pending)
        );
    }

    #[tokio::test]
    async fn an_attempt_over_the_time_limit_fails_with_a_timeout() {
        struct Stuck;
        impl Executor for Stuck {
            async fn run(&self, _: &TaskRow, _: &[TaskRow], _: &UnitBar) -> Result<TaskOutput> {
                std::future::pending().await
            }
            async fn output_intact(&self, _: &TaskRow) -> Result<bool> {
                Ok(true)
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let (st, scope) = setup(dir.path(), "20240201");
        let run = st.start_run("t").unwrap();
        let settings = SchedulerSettings {
            task_attempts: 2,
            task_timeout: Duration::from_millis(30),
            ..fast()
        };
        let r = run_tasks(
            st.clone(),
            Arc::new(Stuck),
            &scope,
            run,
            &settings,
            &Progress::hidden(),
            std::future::pending(),
        )
        .await
        .unwrap();
        let failed: Vec<&TaskRow> = r.failed().collect();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].attempts, 2);
        let e = failed[0].last_error.as_deref().unwrap();
        assert!(e.contains("timed out"), "{e}");
    }

    #[test]
    fn delays_grow_are_capped_and_honour_retry_after() {
        let s = SchedulerSettings {
            task_attempts: 6,
            min_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(8),
            ..SchedulerSettings::default()
        };
        let d: Vec<Duration> = delays(&s).collect();
        assert_eq!(d.len(), 5, "one delay between each two of 6 attempts");
        assert!(d[0] >= Duration::from_secs(1) && d[0] <= Duration::from_secs(2));
        assert!(d.iter().all(|d| *d <= Duration::from_secs(16)), "{d:?}");
        assert!(d[4] >= Duration::from_secs(8), "{d:?}");
        let one = SchedulerSettings {
            task_attempts: 1,
            ..s
        };
        assert_eq!(delays(&one).count(), 0);
        let ra = Some(Duration::from_secs(30));
        assert_eq!(with_retry_after(d[0], ra), Duration::from_secs(30));
        let long = Some(Duration::from_secs(3600));
        assert_eq!(with_retry_after(d[0], long), Duration::from_secs(120));
        assert_eq!(with_retry_after(d[0], None), d[0]);
    }
}
