//! The task model: what a task is (kind, spec, key), where it is (its state) and the moves
//! between states ([`Transition`]), each of which refuses an illegal move.
//!
//! ```text
//!            Claim             Succeed
//! pending ─────────▶ running ─────────▶ succeeded
//!  ▲  ▲  ▲              │ │ │                │
//!  │  │  └ AttemptFailed┘ │ │ Fail           │ Requeue (output gone)
//!  │  └──── Requeue ──────┘ ▼                ▼
//!  └─────── Retry ───── failed            pending
//! ```

use crate::collection::Collection;
use crate::period::Month;
use chrono::NaiveDate;
use serde::Serialize;

/// A task's id in its checkpoint.
pub type TaskId = i64;

/// What a task does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// Harvest one (collection, day) into a daily file.
    Harvest,
    /// Repartition one (collection, month) of daily files into a hive partition.
    Repartition,
    /// Ask CMR what changed in one collection since its sync watermark (`sync`); its
    /// success requeues the harvest tasks of the days it touches, and the repartitions
    /// after them, in the same run.
    Changes,
}

impl TaskKind {
    /// The name stored in the state file and used in task keys.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Harvest => "harvest",
            TaskKind::Repartition => "repartition",
            TaskKind::Changes => "changes",
        }
    }

    /// Reads a stored name.
    pub fn parse(s: &str) -> Option<TaskKind> {
        Some(match s {
            "harvest" => TaskKind::Harvest,
            "repartition" => TaskKind::Repartition,
            "changes" => TaskKind::Changes,
            _ => return None,
        })
    }
}

/// Where a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Waiting to run (or to be re-run).
    Pending,
    /// Running now (or was, when its process died).
    Running,
    /// Done; its output is in place.
    Succeeded,
    /// Failed after its attempts; `last_error` says why.
    Failed,
}

impl TaskState {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Running => "running",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
        }
    }

    /// Reads a stored name.
    pub fn parse(s: &str) -> Option<TaskState> {
        Some(match s {
            "pending" => TaskState::Pending,
            "running" => TaskState::Running,
            "succeeded" => TaskState::Succeeded,
            "failed" => TaskState::Failed,
            _ => return None,
        })
    }
}

/// A task as the DAG defines it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskSpec {
    /// What it does.
    pub kind: TaskKind,
    /// The collection.
    pub collection: Collection,
    /// The day (harvest tasks).
    pub day: Option<NaiveDate>,
    /// The month (of the day, for harvest tasks; the first month the collection's harvests
    /// cover, for changes tasks).
    pub month: Month,
}

impl TaskSpec {
    /// The harvest of one day.
    pub fn harvest(collection: Collection, day: NaiveDate) -> TaskSpec {
        TaskSpec {
            kind: TaskKind::Harvest,
            collection,
            day: Some(day),
            month: Month::of(day),
        }
    }

    /// The repartition of one month.
    pub fn repartition(collection: Collection, month: Month) -> TaskSpec {
        TaskSpec {
            kind: TaskKind::Repartition,
            collection,
            day: None,
            month,
        }
    }

    /// The changes query of one collection: one task per collection, run again by every
    /// sync (`month` is the first month its harvests cover).
    pub fn changes(collection: Collection, month: Month) -> TaskSpec {
        TaskSpec {
            kind: TaskKind::Changes,
            collection,
            day: None,
            month,
        }
    }

    /// The unique key: `harvest/HLSL30/2024-05-15`, `repartition/HLSL30/2024-05`,
    /// `changes/HLSL30`.
    pub fn key(&self) -> String {
        match (self.kind, self.day) {
            (TaskKind::Changes, _) => format!("{}/{}", self.kind.as_str(), self.collection),
            (_, Some(d)) => format!("{}/{}/{d}", self.kind.as_str(), self.collection),
            (_, None) => format!("{}/{}/{}", self.kind.as_str(), self.collection, self.month),
        }
    }
}

impl std::fmt::Display for TaskState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A move of a task from one state to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Transition {
    /// pending → running: an actor takes the task for an attempt.
    Claim,
    /// running → pending: one attempt failed; the next one claims the task again.
    AttemptFailed,
    /// running → succeeded.
    Succeed,
    /// running → failed: its last attempt failed.
    Fail,
    /// succeeded → pending (its output is gone, or an input is rebuilt) and running → pending
    /// (interrupted, or recovered from a dead run).
    Requeue,
    /// failed → pending: `retry-failed`.
    Retry,
}

impl Transition {
    /// Every transition.
    pub const ALL: [Transition; 6] = [
        Transition::Claim,
        Transition::AttemptFailed,
        Transition::Succeed,
        Transition::Fail,
        Transition::Requeue,
        Transition::Retry,
    ];

    /// The name written in the event log.
    pub fn as_str(self) -> &'static str {
        match self {
            Transition::Claim => "started",
            Transition::AttemptFailed => "attempt_failed",
            Transition::Succeed => "succeeded",
            Transition::Fail => "failed",
            Transition::Requeue => "requeued",
            Transition::Retry => "retried",
        }
    }

    /// The states this transition may start from.
    pub fn from_states(self) -> &'static [TaskState] {
        match self {
            Transition::Claim => &[TaskState::Pending],
            Transition::AttemptFailed | Transition::Succeed | Transition::Fail => {
                &[TaskState::Running]
            }
            Transition::Requeue => &[TaskState::Succeeded, TaskState::Running],
            Transition::Retry => &[TaskState::Failed],
        }
    }

    /// The state it leads to.
    pub fn to_state(self) -> TaskState {
        match self {
            Transition::Claim => TaskState::Running,
            Transition::Succeed => TaskState::Succeeded,
            Transition::Fail => TaskState::Failed,
            Transition::AttemptFailed | Transition::Requeue | Transition::Retry => {
                TaskState::Pending
            }
        }
    }
}

impl std::fmt::Display for Transition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A transition refused: the task is not in a state it may start from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("task {task}: cannot {transition} from {from}")]
pub struct IllegalTransition {
    /// The task key (or id).
    pub task: String,
    /// Its state.
    pub from: TaskState,
    /// The transition refused.
    pub transition: Transition,
}

impl TaskState {
    /// The state after `t`, or the refusal.
    pub fn apply(self, t: Transition) -> Result<TaskState, IllegalTransition> {
        if t.from_states().contains(&self) {
            Ok(t.to_state())
        } else {
            Err(IllegalTransition {
                task: String::new(),
                from: self,
                transition: t,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const STATES: [TaskState; 4] = [
        TaskState::Pending,
        TaskState::Running,
        TaskState::Succeeded,
        TaskState::Failed,
    ];

    /// The allowed moves, spelled out once more as a table.
    fn oracle(from: TaskState, t: Transition) -> Option<TaskState> {
        use TaskState::*;
        use Transition::*;
        match (from, t) {
            (Pending, Claim) => Some(Running),
            (Running, AttemptFailed) => Some(Pending),
            (Running, Succeed) => Some(Succeeded),
            (Running, Fail) => Some(Failed),
            (Running, Requeue) | (Succeeded, Requeue) => Some(Pending),
            (Failed, Retry) => Some(Pending),
            _ => None,
        }
    }

    #[test]
    fn a_succeeded_task_cannot_run_again_without_a_requeue() {
        let e = TaskState::Succeeded.apply(Transition::Claim).unwrap_err();
        assert_eq!(e.from, TaskState::Succeeded);
        assert_eq!(e.transition, Transition::Claim);
        let back = TaskState::Succeeded.apply(Transition::Requeue).unwrap();
        assert_eq!(back.apply(Transition::Claim), Ok(TaskState::Running));
    }

    #[test]
    fn a_failed_task_only_comes_back_through_retry() {
        for t in Transition::ALL {
            let r = TaskState::Failed.apply(t);
            if t == Transition::Retry {
                assert_eq!(r, Ok(TaskState::Pending));
            } else {
                assert!(r.is_err(), "{t} from failed");
            }
        }
    }

    proptest! {
        #[test]
        fn apply_matches_the_oracle(
            start in 0usize..4,
            moves in proptest::collection::vec(0usize..6, 0..40),
        ) {
            let mut s = STATES[start];
            for m in moves {
                let t = Transition::ALL[m];
                match (s.apply(t), oracle(s, t)) {
                    (Ok(next), Some(want)) => { prop_assert_eq!(next, want); s = next; }
                    (Err(e), None) => { prop_assert_eq!(e.from, s); prop_assert_eq!(e.transition, t); }
                    (got, want) => prop_assert!(false, "{s} {t}: got {got:?}, oracle {want:?}"),
                }
            }
        }
    }
}
