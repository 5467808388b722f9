//! What a run did: one report for `run`, `retry-failed` and `generate-daily` alike, task by
//! task.

use crate::engine::checkpoint::{RunId, TaskRow};
use crate::engine::task::TaskState;
use serde::Serialize;

/// How one task of a run's scope ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It ran in this run and succeeded.
    Succeeded,
    /// It succeeded in this run without running: its output was there already (a complete
    /// daily file, for `generate-daily`).
    Skipped,
    /// It had succeeded before this run, and its output is still whole.
    AlreadyDone,
    /// Its last attempt in this run failed.
    Failed,
    /// It had failed in an earlier run and waits for `retry-failed`.
    FailedBefore,
    /// It did not run: a task it needs failed, or the run was interrupted.
    NotRun,
}

/// A task and how it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskOutcome {
    /// The task as the checkpoint holds it at the end of the run.
    pub task: TaskRow,
    /// How it ended.
    pub outcome: Outcome,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq)]
pub struct RunReport {
    /// The run's id in its checkpoint.
    pub run_id: RunId,
    /// Every task of the run's scope, by id.
    pub tasks: Vec<TaskOutcome>,
    /// Items harvested by this run (a repartition moves items, it does not count them
    /// again; a skipped day's items are not counted).
    pub items_written: u64,
    /// Whether the run was interrupted (Ctrl-C, SIGTERM): its running tasks went back to
    /// pending.
    pub interrupted: bool,
}

impl RunReport {
    /// Tasks that ended so.
    pub fn count(&self, outcome: Outcome) -> usize {
        self.tasks.iter().filter(|t| t.outcome == outcome).count()
    }

    /// Tasks that succeeded in this run, by running or by finding their output.
    pub fn done_now(&self) -> usize {
        self.count(Outcome::Succeeded) + self.count(Outcome::Skipped)
    }

    /// The tasks that failed.
    pub fn failed(&self) -> impl Iterator<Item = &TaskRow> {
        self.tasks
            .iter()
            .filter(|t| t.outcome == Outcome::Failed)
            .map(|t| &t.task)
    }

    /// The run's status as its checkpoint records it: `interrupted`, `failed` (a task
    /// failed or could not run) or `succeeded`.
    pub fn status(&self) -> &'static str {
        if self.interrupted {
            "interrupted"
        } else if self
            .tasks
            .iter()
            .any(|t| matches!(t.outcome, Outcome::Failed | Outcome::NotRun))
        {
            "failed"
        } else {
            "succeeded"
        }
    }
}

impl Outcome {
    /// How a task that this run did not end, in `state` at the end of the run, stands.
    pub(crate) fn untouched(state: TaskState) -> Outcome {
        match state {
            TaskState::Succeeded => Outcome::AlreadyDone,
            TaskState::Failed => Outcome::FailedBefore,
            TaskState::Pending | TaskState::Running => Outcome::NotRun,
        }
    }
}
