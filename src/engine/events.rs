//! What happens to the tasks of a run, told as events: the scheduler sends them, and each
//! consumer — the checkpoint's event log, the progress display — takes every event from a
//! channel of its own, in batches, at its own pace.
//!
//! A change of state is not an event: a claim or a transition is a guarded write that the
//! scheduler waits for (it must know whether it won the task). The event says, afterwards,
//! that it happened; a consumer that falls behind never holds the run up, and the run waits
//! for every consumer to drain its channel before it ends ([`Events::close`]). A run killed
//! outright may lose the last events of its log, never a task's state.

use crate::engine::checkpoint::{Checkpoint, RunId};
use crate::engine::task::TaskId;
use crate::error::{Error, Result};
use crate::progress::Progress;
use chrono::{DateTime, Utc};
use std::future::Future;
use std::sync::Arc;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::task::JoinHandle;

/// Events a consumer takes at most at once.
const BATCH: usize = 512;

/// What happened to a task.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// An attempt started (the task was claimed).
    Started {
        /// Its number, over all runs.
        attempt: u32,
    },
    /// An attempt failed and another follows.
    AttemptFailed {
        /// Its number.
        attempt: u32,
        /// Its error, on one line.
        error: String,
    },
    /// The task succeeded.
    Succeeded {
        /// Items its output holds.
        items: u64,
        /// Whether it succeeded without running (its output was there already).
        skipped: bool,
    },
    /// Its last attempt failed.
    Failed {
        /// The error, on one line.
        error: String,
    },
    /// It went back to pending to run again.
    Requeued {
        /// Why (`output missing or damaged`, `retry-failed`, `interrupted`, …).
        why: String,
    },
}

/// One event of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// When.
    pub at: DateTime<Utc>,
    /// The run it happened in (none for a `retry-failed` requeue before the run).
    pub run: Option<RunId>,
    /// The task.
    pub task: TaskId,
    /// What happened.
    pub kind: EventKind,
}

impl Event {
    /// An event of `task`, now.
    pub fn now(run: Option<RunId>, task: TaskId, kind: EventKind) -> Event {
        Event {
            at: Utc::now(),
            run,
            task,
            kind,
        }
    }

    /// Its name in the event log (`started`, `attempt_failed`, `succeeded`, `failed`,
    /// `requeued`).
    pub fn name(&self) -> &'static str {
        match self.kind {
            EventKind::Started { .. } => "started",
            EventKind::AttemptFailed { .. } => "attempt_failed",
            EventKind::Succeeded { .. } => "succeeded",
            EventKind::Failed { .. } => "failed",
            EventKind::Requeued { .. } => "requeued",
        }
    }

    /// Its detail in the event log.
    pub fn detail(&self) -> String {
        match &self.kind {
            EventKind::Started { attempt } => format!("attempt {attempt}"),
            EventKind::AttemptFailed { attempt, error } => format!("attempt {attempt}: {error}"),
            EventKind::Succeeded {
                items,
                skipped: false,
            } => format!("{items} items"),
            EventKind::Succeeded {
                items,
                skipped: true,
            } => format!("{items} items (output already there)"),
            EventKind::Failed { error } => error.clone(),
            EventKind::Requeued { why } => why.clone(),
        }
    }
}

/// A consumer of events: takes them in batches, in the order they were sent.
pub trait EventSink: Send + 'static {
    /// Takes the next events. An error stops this consumer (and is returned by
    /// [`Events::close`]); the run goes on.
    fn consume(&mut self, events: &[Arc<Event>]) -> impl Future<Output = Result<()>> + Send;
}

/// The checkpoint's event log as a consumer: each batch is one write.
#[derive(Debug)]
pub struct EventLog<C>(pub Arc<C>);

impl<C: Checkpoint> EventSink for EventLog<C> {
    async fn consume(&mut self, events: &[Arc<Event>]) -> Result<()> {
        self.0.log(events).await
    }
}

/// The progress display as a consumer: the overall bar counts ended tasks and failures.
#[derive(Debug)]
pub struct ProgressView {
    progress: Progress,
    failed: usize,
}

impl ProgressView {
    /// Shows events on `progress`.
    pub fn new(progress: Progress) -> ProgressView {
        ProgressView {
            progress,
            failed: 0,
        }
    }
}

impl EventSink for ProgressView {
    async fn consume(&mut self, events: &[Arc<Event>]) -> Result<()> {
        for e in events {
            match e.kind {
                EventKind::Succeeded { .. } => self.progress.unit_done(),
                EventKind::Failed { .. } => {
                    self.failed += 1;
                    self.progress.unit_done();
                    self.progress.message(format!("{} failed", self.failed));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Where the scheduler sends the events of one run: a copy to every consumer's channel.
/// Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct EventSender {
    run: Option<RunId>,
    channels: Arc<Vec<UnboundedSender<Arc<Event>>>>,
}

impl EventSender {
    /// Sends what happened to `task`, now, to every consumer still listening.
    pub fn send(&self, task: TaskId, kind: EventKind) {
        let event = Arc::new(Event::now(self.run, task, kind));
        for c in self.channels.iter() {
            // A consumer that stopped on an error has said so; the others go on.
            let _ = c.send(event.clone());
        }
    }
}

/// The consumers of a run's events.
#[derive(Debug, Default)]
pub struct Events {
    channels: Vec<UnboundedSender<Arc<Event>>>,
    consumers: Vec<JoinHandle<Result<()>>>,
}

impl Events {
    /// No consumers yet.
    pub fn new() -> Events {
        Events::default()
    }

    /// Starts `sink` on a channel of its own.
    pub fn subscribe<S: EventSink>(&mut self, sink: S) {
        let (tx, rx) = unbounded_channel();
        self.channels.push(tx);
        self.consumers.push(tokio::spawn(drain(sink, rx)));
    }

    /// A sender of `run`'s events (`None`: before a run) to the consumers subscribed so
    /// far.
    pub fn sender(&self, run: Option<RunId>) -> EventSender {
        EventSender {
            run,
            channels: Arc::new(self.channels.clone()),
        }
    }

    /// Waits until every consumer has taken every event sent; the first consumer error, if
    /// any. Every [`EventSender`] must be dropped first (the consumers wait for them).
    pub async fn close(self) -> Result<()> {
        drop(self.channels);
        let mut first = Ok(());
        for c in self.consumers {
            let r = c.await.map_err(|source| Error::TaskJoin {
                task: "event consumer".into(),
                source,
            });
            if first.is_ok() {
                first = r.and_then(|r| r);
            }
        }
        first
    }
}

async fn drain<S: EventSink>(mut sink: S, mut rx: UnboundedReceiver<Arc<Event>>) -> Result<()> {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        sink.consume(&batch).await?;
        batch.clear();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Vec<(TaskId, &'static str)>>>);

    impl EventSink for Seen {
        async fn consume(&mut self, events: &[Arc<Event>]) -> Result<()> {
            let mut seen = self.0.lock().unwrap();
            seen.extend(events.iter().map(|e| (e.task, e.name())));
            Ok(())
        }
    }

    #[tokio::test]
    async fn every_consumer_gets_every_event_in_order_before_close_returns() {
        let (a, b) = (Seen::default(), Seen::default());
        let mut events = Events::new();
        events.subscribe(a.clone());
        events.subscribe(b.clone());
        let tx = events.sender(Some(1));
        let sent: Vec<(TaskId, &str)> = (0..2000)
            .map(|i| {
                if i % 2 == 0 {
                    tx.send(i, EventKind::Started { attempt: 1 });
                    (i, "started")
                } else {
                    tx.send(i, EventKind::Failed { error: "x".into() });
                    (i, "failed")
                }
            })
            .collect();
        drop(tx);
        events.close().await.unwrap();
        assert_eq!(*a.0.lock().unwrap(), sent);
        assert_eq!(*b.0.lock().unwrap(), sent);
    }

    #[tokio::test]
    async fn a_failing_consumer_is_reported_and_the_others_go_on() {
        struct Broken;
        impl EventSink for Broken {
            async fn consume(&mut self, _: &[Arc<Event>]) -> Result<()> {
                Err(Error::CmrTimedOut { url: "x".into() })
            }
        }
        let ok = Seen::default();
        let mut events = Events::new();
        events.subscribe(Broken);
        events.subscribe(ok.clone());
        let tx = events.sender(None);
        for i in 0..3 {
            tx.send(i, EventKind::Started { attempt: 1 });
        }
        drop(tx);
        assert!(events.close().await.is_err());
        assert_eq!(ok.0.lock().unwrap().len(), 3);
    }

    #[test]
    fn names_and_details_are_those_of_the_log() {
        let e = |kind| Event::now(None, 1, kind);
        let cases = [
            (e(EventKind::Started { attempt: 2 }), "started", "attempt 2"),
            (
                e(EventKind::AttemptFailed {
                    attempt: 1,
                    error: "503".into(),
                }),
                "attempt_failed",
                "attempt 1: 503",
            ),
            (
                e(EventKind::Succeeded {
                    items: 7,
                    skipped: false,
                }),
                "succeeded",
                "7 items",
            ),
            (
                e(EventKind::Requeued {
                    why: "retry-failed".into(),
                }),
                "requeued",
                "retry-failed",
            ),
        ];
        for (event, name, detail) in cases {
            assert_eq!((event.name(), event.detail().as_str()), (name, detail));
        }
    }
}
