//! The fence of a publish: a check that the attempt publishing a file still owns its task,
//! made right before the file becomes visible. A worker sharing a PostgreSQL checkpoint runs
//! each attempt inside [`fenced`]; [`check`] (called by [`crate::write::output::Output`]'s
//! publishes) then asks the checkpoint, so a worker that lost its lease publishes nothing over
//! the attempt that took over. Outside [`fenced`] (one process, one state file) it passes.

use crate::error::Result;
use futures::future::BoxFuture;
use object_store::path::Path;
use std::future::Future;
use std::sync::Arc;

/// What a fenced attempt checks before it publishes.
pub trait Fence: Send + Sync {
    /// `Ok` if the attempt may publish `dest` now.
    fn check<'a>(&'a self, dest: &'a Path) -> BoxFuture<'a, Result<()>>;
}

tokio::task_local! {
    static FENCE: Arc<dyn Fence>;
}

/// Runs `fut` with `fence` checked before each of its publishes.
pub async fn fenced<F: Future>(fence: Arc<dyn Fence>, fut: F) -> F::Output {
    FENCE.scope(fence, fut).await
}

/// Whether the current task runs inside [`fenced`].
pub fn is_active() -> bool {
    FENCE.try_with(|_| ()).is_ok()
}

/// Checks the current attempt's fence, if it runs inside [`fenced`].
pub async fn check(dest: &Path) -> Result<()> {
    match FENCE.try_with(Arc::clone) {
        Ok(fence) => fence.check(dest).await,
        Err(_) => Ok(()),
    }
}
