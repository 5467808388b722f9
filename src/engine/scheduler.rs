//! Runs the tasks of a DAG recorded in the state file: in dependency order, within
//! concurrency limits, retrying failed attempts with exponential backoff and jitter, with a
//! time limit per attempt, checkpointing every change of state.

use crate::engine::state::{StateStore, TaskKind, TaskOutput, TaskRow, TaskState};
use crate::error::{Error, Result, one_line};
use crate::progress::{Progress, UnitBar};
use std::collections::{HashMap, HashSet};
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
}

/// What a run of the scheduler did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunReport {
    /// Tasks that succeeded in this run.
    pub succeeded: usize,
    /// Tasks of the scope that had succeeded before and were left alone.
    pub already_done: usize,
    /// Tasks that failed.
    pub failed: Vec<TaskRow>,
    /// Tasks not run because something they need failed.
    pub blocked: usize,
    /// Items written by this run.
    pub items_written: u64,
    /// Whether the run was interrupted (Ctrl-C): running tasks went back to pending.
    pub interrupted: bool,
}

enum Done {
    Succeeded(u64),
    Failed,
}

/// Runs every task of `scope` that is not done, and their pending dependencies' results
/// permitting. Succeeded tasks whose output is missing or damaged are run again (and the
/// tasks after them). Returns when nothing more can run, or when `cancel` completes.
pub async fn run_tasks<E: Executor>(
    state: Arc<StateStore>,
    exec: Arc<E>,
    scope: &HashSet<i64>,
    run_id: i64,
    settings: &SchedulerSettings,
    progress: &Progress,
    cancel: impl Future<Output = ()>,
) -> Result<RunReport> {
    let mut rows: HashMap<i64, TaskRow> = state.tasks()?.into_iter().map(|t| (t.id, t)).collect();
    let mut needs: HashMap<i64, Vec<i64>> = HashMap::new();
    let mut dependents: HashMap<i64, Vec<i64>> = HashMap::new();
    for (task, dep) in state.deps()? {
        needs.entry(task).or_default().push(dep);
        dependents.entry(dep).or_default().push(task);
    }
    let mut report = RunReport::default();

    // Trust the state file, and check the files it vouches for.
    let mut order: Vec<i64> = scope.iter().copied().collect();
    order.sort_unstable();
    for &id in &order {
        let Some(row) = rows.get(&id) else { continue };
        if row.state == TaskState::Succeeded && !exec.output_intact(row).await.unwrap_or(false) {
            tracing::warn!(
                "{}: its output is missing or damaged; running it again",
                row.key
            );
            requeue(
                &state,
                &mut rows,
                &dependents,
                id,
                run_id,
                "output missing or damaged",
            )?;
        }
    }
    report.already_done = order
        .iter()
        .filter(|id| {
            rows.get(id)
                .is_some_and(|r| r.state == TaskState::Succeeded)
        })
        .count();

    let mut launched: HashSet<i64> = HashSet::new();
    let mut running: HashMap<i64, TaskKind> = HashMap::new();
    let mut join: JoinSet<(i64, Result<Done>)> = JoinSet::new();
    tokio::pin!(cancel);
    loop {
        for &id in &order {
            let Some(row) = rows.get(&id) else { continue };
            if row.state != TaskState::Pending || launched.contains(&id) {
                continue;
            }
            let deps = needs.get(&id).cloned().unwrap_or_default();
            if !deps
                .iter()
                .all(|d| rows.get(d).is_some_and(|r| r.state == TaskState::Succeeded))
            {
                continue;
            }
            let busy = running.values().filter(|k| **k == row.spec.kind).count();
            let limit = match row.spec.kind {
                TaskKind::Harvest => settings.max_concurrent_days,
                TaskKind::Repartition => settings.max_concurrent_repartitions,
            };
            if busy >= limit.max(1) {
                continue;
            }
            launched.insert(id);
            running.insert(id, row.spec.kind);
            let inputs: Vec<TaskRow> = deps.iter().filter_map(|d| rows.get(d).cloned()).collect();
            let task = row.clone();
            let state = state.clone();
            let exec = exec.clone();
            let settings = settings.clone();
            let bar = if task.spec.kind == TaskKind::Harvest {
                progress.unit(&format!(
                    "{} {}",
                    task.spec.collection,
                    task.spec.day.map(|d| d.to_string()).unwrap_or_default()
                ))
            } else {
                progress.unit(&format!(
                    "{} {} repartition",
                    task.spec.collection, task.spec.month
                ))
            };
            join.spawn(async move {
                let r = attempt_loop(
                    &state,
                    exec.as_ref(),
                    &task,
                    &inputs,
                    run_id,
                    &settings,
                    &bar,
                )
                .await;
                bar.done();
                (task.id, r)
            });
        }
        if join.is_empty() {
            break;
        }
        tokio::select! {
            done = join.join_next() => {
                let Some(done) = done else { break };
                let (id, result) = done.map_err(|e| Error::Task(e.to_string()))?;
                running.remove(&id);
                progress.unit_done();
                match result? {
                    Done::Succeeded(items) => {
                        report.succeeded += 1;
                        report.items_written += items;
                    }
                    Done::Failed => {}
                }
                if let Some(fresh) = state.tasks()?.into_iter().find(|t| t.id == id) {
                    if fresh.state == TaskState::Failed {
                        report.failed.push(fresh.clone());
                        progress.message(format!("{} failed", report.failed.len()));
                    }
                    rows.insert(id, fresh);
                }
            }
            _ = &mut cancel => {
                join.abort_all();
                while join.join_next().await.is_some() {}
                for id in running.keys() {
                    state.mark_pending(*id, Some(run_id), "interrupted")?;
                }
                report.interrupted = true;
                break;
            }
        }
    }
    report.blocked = order
        .iter()
        .filter(|id| rows.get(id).is_some_and(|r| r.state == TaskState::Pending))
        .count();
    Ok(report)
}

fn requeue(
    state: &StateStore,
    rows: &mut HashMap<i64, TaskRow>,
    dependents: &HashMap<i64, Vec<i64>>,
    id: i64,
    run_id: i64,
    why: &str,
) -> Result<()> {
    state.mark_pending(id, Some(run_id), why)?;
    if let Some(r) = rows.get_mut(&id) {
        r.state = TaskState::Pending;
    }
    for &d in dependents.get(&id).map(Vec::as_slice).unwrap_or_default() {
        if rows.get(&d).is_some_and(|r| r.state != TaskState::Pending) {
            requeue(
                state,
                rows,
                dependents,
                d,
                run_id,
                "an input is being rebuilt",
            )?;
        }
    }
    Ok(())
}

async fn attempt_loop<E: Executor>(
    state: &StateStore,
    exec: &E,
    task: &TaskRow,
    inputs: &[TaskRow],
    run_id: i64,
    settings: &SchedulerSettings,
    bar: &UnitBar,
) -> Result<Done> {
    let attempts = settings.task_attempts.max(1);
    for attempt in 1..=attempts {
        let n = state.mark_running(task.id, run_id)?;
        let result =
            match tokio::time::timeout(settings.task_timeout, exec.run(task, inputs, bar)).await {
                Ok(r) => r,
                Err(_) => Err(Error::TaskTimeout {
                    task: task.key.clone(),
                    seconds: settings.task_timeout.as_secs(),
                }),
            };
        match result {
            Ok(out) => {
                state.mark_succeeded(task.id, run_id, &out)?;
                // Items are counted once, when harvested; a repartition moves them.
                let harvested = match task.spec.kind {
                    TaskKind::Harvest => out.items_written,
                    TaskKind::Repartition => 0,
                };
                return Ok(Done::Succeeded(harvested));
            }
            Err(e) => {
                let msg = one_line(&e);
                tracing::info!("{} attempt {n} failed: {msg}", task.key);
                if attempt < attempts {
                    state.record_attempt_error(task.id, run_id, n, &msg)?;
                    tokio::time::sleep(backoff(settings, attempt, e.retry_after())).await;
                    continue;
                }
                let missing = match &e {
                    Error::IncompleteDay { missing, .. } => missing.clone(),
                    _ => Vec::new(),
                };
                state.mark_failed(task.id, run_id, &msg, &missing)?;
                return Ok(Done::Failed);
            }
        }
    }
    Ok(Done::Failed)
}

/// Delay before attempt `attempt + 1`: exponential from `min_delay`, capped at `max_delay`,
/// with ±50 % jitter; at least the server's `Retry-After` (capped at 2 minutes).
pub fn backoff(
    settings: &SchedulerSettings,
    attempt: u32,
    retry_after: Option<Duration>,
) -> Duration {
    let base = settings
        .min_delay
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
        .min(settings.max_delay);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let jitter = 0.5 + f64::from(nanos % 1000) / 1000.0;
    let d = base.mul_f64(jitter);
    match retry_after {
        Some(ra) => d.max(ra.min(Duration::from_secs(120))),
        None => d,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collection::Collection;
    use crate::engine::dag::Dag;
    use crate::period::DayRange;
    use std::sync::Mutex;

    /// Fails the tasks named in `failures` that many times, records the order of runs.
    #[derive(Default)]
    struct Fake {
        failures: Mutex<HashMap<String, u32>>,
        ran: Mutex<Vec<String>>,
        missing_outputs: Mutex<HashSet<String>>,
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
            Ok(TaskOutput {
                items_written: 10,
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
        assert_eq!(r.succeeded, 30);
        assert_eq!(r.items_written, 290, "29 harvests of 10 items");
        let ran = fake.ran.lock().unwrap().clone();
        assert_eq!(ran.last().unwrap(), "repartition/HLSL30/2024-02");
        // Again: nothing to do.
        let r = go(&st, &fake, &scope, run).await;
        assert_eq!((r.succeeded, r.already_done), (0, 30));
        assert_eq!(fake.ran.lock().unwrap().len(), 30);
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
        assert_eq!(r.succeeded, 28);
        assert_eq!(r.failed.len(), 1);
        assert_eq!(r.failed[0].key, "harvest/HLSL30/2024-02-04");
        assert_eq!(r.failed[0].attempts, 3);
        assert!(r.failed[0].last_error.as_deref().unwrap().contains("503"));
        assert_eq!(r.blocked, 1, "the month's repartition waits");
        let rows = st.tasks().unwrap();
        let day3 = rows
            .iter()
            .find(|t| t.key == "harvest/HLSL30/2024-02-03")
            .unwrap();
        assert_eq!((day3.state, day3.attempts), (TaskState::Succeeded, 2));
        let events = st.events(r.failed[0].id).unwrap();
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
        assert_eq!(r.succeeded, 2);
        assert_eq!(
            *fake.ran.lock().unwrap(),
            ["harvest/HLSL30/2024-02-10", "repartition/HLSL30/2024-02"]
        );
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
        assert_eq!(r.failed.len(), 1);
        assert_eq!(r.failed[0].attempts, 2);
        let e = r.failed[0].last_error.as_deref().unwrap();
        assert!(e.contains("timed out"), "{e}");
    }

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        let s = SchedulerSettings {
            min_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(8),
            ..SchedulerSettings::default()
        };
        assert!(backoff(&s, 1, None) <= Duration::from_millis(1500));
        assert!(backoff(&s, 10, None) <= Duration::from_secs(12));
        assert!(backoff(&s, 10, None) >= Duration::from_secs(4));
        assert!(backoff(&s, 1, Some(Duration::from_secs(30))) >= Duration::from_secs(30));
    }
}
