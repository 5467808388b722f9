//! Retry with exponential backoff and jitter (the `backon` crate), honouring `Retry-After`.

use crate::error::{Error, Result};
use backon::{ExponentialBuilder, Retryable};
use std::future::Future;
use std::time::Duration;

/// How often and how patiently to retry one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = no retry).
    pub max_attempts: u32,
    /// Delay before the first retry.
    pub min_delay: Duration,
    /// Longest delay between two attempts.
    pub max_delay: Duration,
    /// Longest `Retry-After` honoured; a longer one is cut to this.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// Runs `op` until it succeeds, fails with an error that is not
    /// [retryable](Error::is_retryable), or has been tried `max_attempts` times.
    /// A server's `Retry-After` replaces the backoff delay when it is longer.
    pub async fn run<T, F, Fut>(&self, what: &str, op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.max_attempts.saturating_sub(1) as usize)
            .with_jitter();
        let cap = self.max_retry_after;
        op.retry(backoff)
            .sleep(tokio::time::sleep)
            .when(Error::is_retryable)
            .adjust(move |e: &Error, dur| {
                dur.map(|d| match e.retry_after() {
                    Some(ra) => ra.min(cap).max(d),
                    None => d,
                })
            })
            .notify(|e: &Error, dur| {
                tracing::debug!("{what}: {e}; retrying in {dur:?}");
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn unavailable(retry_after: Option<Duration>) -> Error {
        Error::Status {
            url: "http://x".into(),
            status: 503,
            body: String::new(),
            retry_after,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_retryable_errors_then_succeeds() {
        let calls = AtomicU32::new(0);
        let policy = RetryPolicy::default();
        let out = policy
            .run("test", || async {
                if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                    Err(unavailable(None))
                } else {
                    Ok(7)
                }
            })
            .await
            .unwrap();
        assert_eq!(out, 7);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_max_attempts_and_on_permanent_errors() {
        let calls = AtomicU32::new(0);
        let policy = RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        };
        let err = policy
            .run("test", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(unavailable(None))
            })
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Status { status: 503, .. }));
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        calls.store(0, Ordering::SeqCst);
        let err = policy
            .run("test", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(Error::Status {
                    url: "u".into(),
                    status: 404,
                    body: String::new(),
                    retry_after: None,
                })
            })
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Status { status: 404, .. }));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn honours_retry_after() {
        let start = tokio::time::Instant::now();
        let calls = AtomicU32::new(0);
        RetryPolicy::default()
            .run("test", || async {
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    Err(unavailable(Some(Duration::from_secs(7))))
                } else {
                    Ok(())
                }
            })
            .await
            .unwrap();
        assert!(start.elapsed() >= Duration::from_secs(7));
    }
}
