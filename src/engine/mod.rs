//! The work as tasks: what a task is, how tasks depend on each other, where their state is
//! kept, and how they are run.
//!
//! - [`task`]: task kinds, keys, states and the transitions between them;
//! - [`dag`]: harvest(collection, day) → repartition(collection, month), with petgraph (a
//!   sync's changes(collection) tasks join it, see [`sync`]);
//! - [`checkpoint`]: what the engine needs of its state, kept in SQLite or in memory;
//! - [`scheduler`]: runs the DAG within limits, with retries, backoff and time limits;
//! - [`events`]: what the scheduler tells the checkpoint's log and the progress display;
//! - [`report`]: what a run did, task by task;
//! - [`pipeline`]: the executor of real tasks, and `run` / `retry-failed`;
//! - [`status`]: what a state file says;
//! - [`sync`]: `sync` (bring the cache up to date with CMR) and `verify`;
//! - [`worker`]: workers sharing a PostgreSQL checkpoint (`worker`, `run --state postgres://…`);
//! - [`workflow`]: workflow files.

pub mod checkpoint;
pub mod dag;
pub mod events;
pub mod pipeline;
pub mod report;
pub mod scheduler;
pub mod status;
pub mod sync;
pub mod task;
pub mod worker;
pub mod workflow;
