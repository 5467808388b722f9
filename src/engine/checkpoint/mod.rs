//! What the engine needs of its state: plan tasks, claim ready ones, move them through
//! their states, record attempts and events, and recover what a dead run left running.
//!
//! [`Checkpoint`] is that contract; [`sqlite::StateStore`] keeps it in a state file (for
//! `run`, which resumes) and [`memory::MemoryCheckpoint`] in memory (for `generate-daily`,
//! and tests). Every change is guarded by the state it starts from (`… WHERE state =
//! <from>`), so two actors can never both take a task: a claim returns the [`Attempt`]
//! (whose number a checkpoint shared by several worker processes would use as its fencing
//! token, with a lease beside it) or nothing.

pub mod lock;
pub mod memory;
#[cfg(test)]
#[path = "../../../tests/postgres/server.rs"]
mod pg_server;
pub mod postgres;
pub mod sqlite;
#[cfg(test)]
mod suite;

use crate::engine::events::Event;
use crate::engine::task::{TaskId, TaskSpec, TaskState, Transition};
use crate::error::Result;
use chrono::{SecondsFormat, Utc};
use serde::Serialize;
use std::future::Future;
use std::sync::Arc;

/// A run's id in its checkpoint.
pub type RunId = i64;

/// One event of a task's log: (time, event, detail).
pub type EventRow = (String, String, Option<String>);

/// An attempt a claim granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// The task.
    pub task: TaskId,
    /// The run it belongs to.
    pub run: RunId,
    /// Its number, over all runs (1 for the first).
    pub number: u32,
}

/// A transition with what it records.
#[derive(Debug, Clone, Copy)]
pub enum Change<'a> {
    /// One attempt failed; another follows (the task stays running).
    AttemptFailed {
        /// The attempt.
        attempt: u32,
        /// Its error, on one line.
        error: &'a str,
    },
    /// The task succeeded with this output.
    Succeed(&'a TaskOutput),
    /// Its last attempt failed.
    Fail {
        /// The error, on one line.
        error: &'a str,
        /// Granules that could not be written, with reasons.
        missing: &'a [(String, String)],
    },
    /// Back to pending (output gone, an input rebuilt, interrupted).
    Requeue,
    /// A failed task back to pending (`retry-failed`).
    Retry,
}

impl Change<'_> {
    /// The transition it makes.
    pub fn transition(&self) -> Transition {
        match self {
            Change::AttemptFailed { .. } => Transition::AttemptFailed,
            Change::Succeed(_) => Transition::Succeed,
            Change::Fail { .. } => Transition::Fail,
            Change::Requeue => Transition::Requeue,
            Change::Retry => Transition::Retry,
        }
    }
}

/// What the engine needs of its state. Async, so that a checkpoint in a database server
/// (with leases for several worker processes) can follow without changing the engine.
pub trait Checkpoint: Send + Sync + 'static {
    /// Records tasks (new ones `pending`, known ones untouched) and their dependencies as
    /// (task, depends on) indexes into `tasks`. Idempotent. Returns the ids, in order.
    fn plan(
        &self,
        tasks: &[TaskSpec],
        deps: &[(usize, usize)],
    ) -> impl Future<Output = Result<Vec<TaskId>>> + Send;

    /// Every task, by id.
    fn tasks(&self) -> impl Future<Output = Result<Vec<TaskRow>>> + Send;

    /// One task.
    fn task(&self, id: TaskId) -> impl Future<Output = Result<Option<TaskRow>>> + Send;

    /// Dependencies as (task, depends on).
    fn deps(&self) -> impl Future<Output = Result<Vec<(TaskId, TaskId)>>> + Send;

    /// Records the start of a run by this process.
    fn start_run(&self, command: &str) -> impl Future<Output = Result<RunId>> + Send;

    /// Records the end of a run: `succeeded`, `failed`, `interrupted`.
    fn end_run(&self, run: RunId, status: &str) -> impl Future<Output = Result<()>> + Send;

    /// The latest run.
    fn last_run(&self) -> impl Future<Output = Result<Option<RunRow>>> + Send;

    /// Takes a pending task for one attempt (pending → running); `None` if it is not
    /// pending (someone else took it, or it is done).
    fn claim(
        &self,
        task: TaskId,
        run: RunId,
    ) -> impl Future<Output = Result<Option<Attempt>>> + Send;

    /// Applies a change, guarded by the states its transition may start from; refused with
    /// [`crate::error::Error::IllegalTransition`] otherwise.
    fn transition(
        &self,
        task: TaskId,
        change: Change<'_>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Appends events to the task's event log (the run's [`crate::engine::events`], in
    /// batches).
    fn log(&self, events: &[Arc<Event>]) -> impl Future<Output = Result<()>> + Send;

    /// A task's events, oldest first.
    fn events(&self, task: TaskId) -> impl Future<Output = Result<Vec<EventRow>>> + Send;

    /// Tasks a dead run left running go back to pending; its run becomes `interrupted`.
    /// Returns how many tasks came back.
    fn recover(&self) -> impl Future<Output = Result<usize>> + Send;

    /// A setting (`output`, `bbox`, …).
    fn meta(&self, key: &str) -> impl Future<Output = Result<Option<String>>> + Send;

    /// Stores a setting.
    fn set_meta(&self, key: &str, value: &str) -> impl Future<Output = Result<()>> + Send;

    /// Stores `value` as the setting `key` unless the setting is there already, in one step;
    /// returns the setting as stored. Of two callers racing on a new state, both get the
    /// value of the one that came first.
    fn claim_meta(&self, key: &str, value: &str) -> impl Future<Output = Result<String>> + Send;
}

/// Now, as stored.
pub(crate) fn now() -> String {
    stamp(Utc::now())
}

/// A time as stored: RFC 3339 UTC, in milliseconds.
pub(crate) fn stamp(at: chrono::DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The refusal of `transition` for a task in state `from`.
pub(crate) fn illegal(task: &str, from: TaskState, transition: Transition) -> crate::error::Error {
    crate::engine::task::IllegalTransition {
        task: task.to_string(),
        from,
        transition,
    }
    .into()
}

/// A task as the state file holds it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskRow {
    /// Row id.
    pub id: i64,
    /// What it does.
    #[serde(flatten, serialize_with = "ser_spec")]
    pub spec: TaskSpec,
    /// Unique key.
    pub key: String,
    /// Where it is.
    pub state: TaskState,
    /// Attempts so far (over all runs).
    pub attempts: u32,
    /// Error of the last failed attempt.
    pub last_error: Option<String>,
    /// Start of the last attempt.
    pub started_at: Option<String>,
    /// End of the last attempt.
    pub ended_at: Option<String>,
    /// `CMR-Hits` of a harvest.
    pub cmr_hits: Option<u64>,
    /// Items written.
    pub items_written: Option<u64>,
    /// The output file.
    pub output_path: Option<String>,
    /// Its size in bytes.
    pub output_size: Option<u64>,
    /// Granules that could not be written, with reasons.
    pub missing: Vec<(String, String)>,
    /// The run of the last attempt.
    pub run_id: Option<i64>,
}

fn ser_spec<S: serde::Serializer>(spec: &TaskSpec, s: S) -> std::result::Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(Some(4))?;
    m.serialize_entry("kind", &spec.kind)?;
    m.serialize_entry("collection", &spec.collection)?;
    m.serialize_entry("day", &spec.day.map(|d| d.to_string()))?;
    m.serialize_entry("month", &spec.month.to_string())?;
    m.end()
}

/// What a task produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskOutput {
    /// `CMR-Hits` of a harvest.
    pub cmr_hits: Option<u64>,
    /// Items written.
    pub items_written: u64,
    /// The output file, if one was written.
    pub output_path: Option<String>,
    /// Its size.
    pub output_size: u64,
    /// Tasks to run again, with every task after them, in the same run (a changes task's
    /// affected days). The scheduler requeues them before it records this task's success,
    /// so a process killed in between runs the task again; the checkpoint stores nothing
    /// of it.
    pub requeue: Vec<TaskId>,
}

/// A run as recorded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunRow {
    /// Run id.
    pub id: i64,
    /// The command line.
    pub command: String,
    /// Its process id.
    pub pid: u32,
    /// Start.
    pub started_at: String,
    /// End, if it ended cleanly.
    pub ended_at: Option<String>,
    /// `running`, `succeeded`, `failed`, `interrupted`.
    pub status: String,
}
