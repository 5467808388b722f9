//! The work as tasks: what a task is, how tasks depend on each other, where their state is
//! kept, and how they are run.
//!
//! - [`dag`]: harvest(collection, day) → repartition(collection, month), with petgraph;
//! - [`state`]: the SQLite checkpoint;
//! - [`scheduler`]: runs the DAG within limits, with retries, backoff and time limits;
//! - [`pipeline`]: the executor of real tasks, and `run` / `retry-failed`;
//! - [`status`]: what a state file says;
//! - [`workflow`]: workflow files.

pub mod dag;
pub mod pipeline;
pub mod scheduler;
pub mod state;
pub mod status;
pub mod workflow;
