//! A pause shared by every request to one service: when it answers with `Retry-After`
//! (a 429 or a 503), every request to it waits that long, not only the one that was told,
//! so that a rate-limited CMR or LP DAAC is not hammered by the other requests in flight.

use crate::error::Error;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// The longest pause a `Retry-After` can impose.
pub const MAX_PAUSE: Duration = Duration::from_secs(120);

/// A shared "not before" instant. Cheap to clone; clones share it.
#[derive(Debug, Clone, Default)]
pub struct Throttle {
    until: Arc<Mutex<Option<Instant>>>,
}

impl Throttle {
    fn until(&self) -> Option<Instant> {
        match self.until.lock() {
            Ok(u) => *u,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }

    /// Waits until the service may be asked again.
    pub async fn wait(&self) {
        while let Some(t) = self.until() {
            if t <= Instant::now() {
                return;
            }
            tokio::time::sleep_until(t).await;
        }
    }

    /// Nobody asks for `d` from now (capped at [`MAX_PAUSE`]); a longer pause already in
    /// force stays.
    pub fn pause(&self, d: Duration) {
        let t = Instant::now() + d.min(MAX_PAUSE);
        let mut until = match self.until.lock() {
            Ok(u) => u,
            Err(poisoned) => poisoned.into_inner(),
        };
        if until.is_none_or(|u| u < t) {
            *until = Some(t);
        }
    }

    /// Notes a failed request: its `Retry-After`, if any, pauses everyone.
    pub fn note(&self, e: &Error) {
        if let Some(d) = e.retry_after() {
            tracing::info!("pausing requests for {d:?} as asked: {e}");
            self.pause(d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn too_many(retry_after: Option<Duration>) -> Error {
        Error::Status {
            url: "http://x".into(),
            status: 429,
            body: String::new(),
            retry_after,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_after_pauses_every_clone() {
        let t = Throttle::default();
        let started = Instant::now();
        t.wait().await;
        assert_eq!(started.elapsed(), Duration::ZERO);

        let other = t.clone();
        t.note(&too_many(Some(Duration::from_secs(3))));
        other.note(&too_many(Some(Duration::from_secs(1)))); // shorter: the 3 s stay
        other.note(&too_many(None)); // no Retry-After: no pause
        other.wait().await;
        assert_eq!(started.elapsed(), Duration::from_secs(3));

        t.note(&too_many(Some(Duration::from_secs(3600))));
        t.wait().await;
        assert_eq!(started.elapsed(), Duration::from_secs(3) + MAX_PAUSE);
    }
}
