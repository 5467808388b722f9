//! The checkpoint in memory: for `generate-daily` (which keeps no state file) and tests.
//! The same guarded transitions as the state file, under one mutex.

use super::{
    Attempt, Change, Checkpoint, EventRow, RunId, RunRow, TaskOutput, TaskRow, illegal, now,
};
use crate::engine::events::Event;
use crate::engine::task::{TaskId, TaskSpec, TaskState};
use crate::error::Result;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Debug, Default)]
struct Inner {
    tasks: Vec<TaskRow>,
    by_key: HashMap<String, usize>,
    deps: Vec<(TaskId, TaskId)>,
    runs: Vec<RunRow>,
    events: HashMap<TaskId, Vec<EventRow>>,
    meta: HashMap<String, String>,
}

impl Inner {
    fn event(&mut self, task: TaskId, event: &str, detail: Option<String>) {
        self.events
            .entry(task)
            .or_default()
            .push((now(), event.to_string(), detail));
    }
}

/// A checkpoint that lives as long as the process.
#[derive(Debug, Default)]
pub struct MemoryCheckpoint {
    inner: Mutex<Inner>,
}

impl MemoryCheckpoint {
    /// An empty one.
    pub fn new() -> MemoryCheckpoint {
        MemoryCheckpoint::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves the data as consistent as any single
        // field assignment: use it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Ids are 1-based indexes into `tasks`.
fn index(id: TaskId) -> usize {
    usize::try_from(id - 1).unwrap_or(usize::MAX)
}

impl Checkpoint for MemoryCheckpoint {
    async fn plan(&self, tasks: &[TaskSpec], deps: &[(usize, usize)]) -> Result<Vec<TaskId>> {
        let mut g = self.lock();
        let mut ids = Vec::with_capacity(tasks.len());
        for t in tasks {
            let key = t.key();
            let id = match g.by_key.get(&key) {
                Some(&i) => g.tasks[i].id,
                None => {
                    let id = g.tasks.len() as TaskId + 1;
                    let at = g.tasks.len();
                    g.by_key.insert(key.clone(), at);
                    g.tasks.push(TaskRow {
                        id,
                        spec: t.clone(),
                        key,
                        state: TaskState::Pending,
                        attempts: 0,
                        last_error: None,
                        started_at: None,
                        ended_at: None,
                        cmr_hits: None,
                        items_written: None,
                        output_path: None,
                        output_size: None,
                        missing: Vec::new(),
                        run_id: None,
                    });
                    id
                }
            };
            ids.push(id);
        }
        for &(task, dep) in deps {
            let pair = (ids[task], ids[dep]);
            if !g.deps.contains(&pair) {
                g.deps.push(pair);
            }
        }
        Ok(ids)
    }

    async fn tasks(&self) -> Result<Vec<TaskRow>> {
        Ok(self.lock().tasks.clone())
    }

    async fn task(&self, id: TaskId) -> Result<Option<TaskRow>> {
        Ok(self.lock().tasks.get(index(id)).cloned())
    }

    async fn deps(&self) -> Result<Vec<(TaskId, TaskId)>> {
        Ok(self.lock().deps.clone())
    }

    async fn start_run(&self, command: &str) -> Result<RunId> {
        let mut g = self.lock();
        let id = g.runs.len() as RunId + 1;
        g.runs.push(RunRow {
            id,
            command: command.to_string(),
            pid: std::process::id(),
            started_at: now(),
            ended_at: None,
            status: "running".into(),
        });
        Ok(id)
    }

    async fn end_run(&self, run: RunId, status: &str) -> Result<()> {
        let mut g = self.lock();
        if let Some(r) = g.runs.iter_mut().find(|r| r.id == run) {
            r.ended_at = Some(now());
            r.status = status.to_string();
        }
        Ok(())
    }

    async fn last_run(&self) -> Result<Option<RunRow>> {
        Ok(self.lock().runs.last().cloned())
    }

    async fn claim(&self, task: TaskId, run: RunId) -> Result<Option<Attempt>> {
        let mut g = self.lock();
        let Some(t) = g.tasks.get_mut(index(task)) else {
            return Ok(None);
        };
        if t.state != TaskState::Pending {
            return Ok(None);
        }
        t.state = TaskState::Running;
        t.attempts += 1;
        t.started_at = Some(now());
        t.ended_at = None;
        t.run_id = Some(run);
        Ok(Some(Attempt {
            task,
            run,
            number: t.attempts,
        }))
    }

    async fn transition(&self, task: TaskId, change: Change<'_>) -> Result<()> {
        let tr = change.transition();
        let mut g = self.lock();
        let Some(t) = g.tasks.get_mut(index(task)) else {
            return Err(illegal(&format!("#{task}"), TaskState::Pending, tr));
        };
        let to = t.state.apply(tr).map_err(|e| illegal(&t.key, e.from, tr))?;
        t.state = to;
        match change {
            Change::AttemptFailed { error, .. } => t.last_error = Some(error.to_string()),
            Change::Succeed(out) => {
                let TaskOutput {
                    cmr_hits,
                    items_written,
                    output_path,
                    output_size,
                    requeue: _,
                } = out.clone();
                t.ended_at = Some(now());
                t.last_error = None;
                t.missing.clear();
                t.cmr_hits = cmr_hits;
                t.items_written = Some(items_written);
                t.output_path = output_path;
                t.output_size = Some(output_size);
            }
            Change::Fail { error, missing } => {
                t.ended_at = Some(now());
                t.last_error = Some(error.to_string());
                t.missing = missing.to_vec();
            }
            Change::Requeue | Change::Retry => {}
        }
        Ok(())
    }

    async fn log(&self, events: &[Arc<Event>]) -> Result<()> {
        let mut g = self.lock();
        for e in events {
            let at = super::stamp(e.at);
            g.events
                .entry(e.task)
                .or_default()
                .push((at, e.name().to_string(), Some(e.detail())));
        }
        Ok(())
    }

    async fn events(&self, task: TaskId) -> Result<Vec<EventRow>> {
        Ok(self.lock().events.get(&task).cloned().unwrap_or_default())
    }

    async fn recover(&self) -> Result<usize> {
        let mut g = self.lock();
        let running: Vec<TaskId> = g
            .tasks
            .iter()
            .filter(|t| t.state == TaskState::Running)
            .map(|t| t.id)
            .collect();
        for &id in &running {
            g.tasks[index(id)].state = TaskState::Pending;
            g.event(
                id,
                "recovered",
                Some("was running when its process died; will run again".into()),
            );
        }
        for r in g.runs.iter_mut().filter(|r| r.status == "running") {
            r.status = "interrupted".into();
            r.ended_at = Some(now());
        }
        Ok(running.len())
    }

    async fn meta(&self, key: &str) -> Result<Option<String>> {
        Ok(self.lock().meta.get(key).cloned())
    }

    async fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.lock().meta.insert(key.to_string(), value.to_string());
        Ok(())
    }

    async fn claim_meta(&self, key: &str, value: &str) -> Result<String> {
        Ok(self
            .lock()
            .meta
            .entry(key.to_string())
            .or_insert_with(|| value.to_string())
            .clone())
    }
}
