//! One conformance suite, run on every checkpoint.

use super::memory::MemoryCheckpoint;
use super::pg_server;
use super::postgres::{LeaseSettings, PgCheckpoint};
use super::sqlite::StateStore;
use super::{Change, Checkpoint, TaskOutput};
use crate::collection::Collection;
use crate::engine::events::{Event, EventKind};
use crate::engine::task::{TaskSpec, TaskState, Transition};
use crate::error::Error;
use crate::period::Month;
use chrono::NaiveDate;
use std::sync::Arc;

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2024, 5, d).unwrap()
}

fn plan() -> (Vec<TaskSpec>, Vec<(usize, usize)>) {
    (
        vec![
            TaskSpec::harvest(Collection::Hlsl30, day(1)),
            TaskSpec::harvest(Collection::Hlsl30, day(2)),
            TaskSpec::repartition(Collection::Hlsl30, Month::new(2024, 5).unwrap()),
        ],
        vec![(2, 0), (2, 1)],
    )
}

fn output() -> TaskOutput {
    TaskOutput {
        cmr_hits: Some(7),
        items_written: 5,
        output_path: Some("out/x.parquet".into()),
        output_size: 123,
        requeue: Vec::new(),
    }
}

/// Plans idempotently, walks tasks through their states and logs their events.
async fn walks_tasks_through_their_states<C: Checkpoint>(c: C) {
    let (tasks, deps) = plan();
    let ids = c.plan(&tasks, &deps).await.unwrap();
    assert_eq!(
        c.plan(&tasks, &deps).await.unwrap(),
        ids,
        "planning is idempotent"
    );
    assert_eq!(c.deps().await.unwrap().len(), 2);
    let run = c.start_run("test").await.unwrap();
    let a = c.claim(ids[0], run).await.unwrap().unwrap();
    assert_eq!((a.task, a.run, a.number), (ids[0], run, 1));
    let boom = Change::AttemptFailed {
        attempt: 1,
        error: "boom",
    };
    c.transition(ids[0], boom).await.unwrap();
    assert_eq!(c.claim(ids[0], run).await.unwrap().unwrap().number, 2);
    let missing = [("g1".to_string(), "404".to_string())];
    let fail = Change::Fail {
        error: "boom again",
        missing: &missing,
    };
    c.transition(ids[0], fail).await.unwrap();
    assert!(c.claim(ids[1], run).await.unwrap().is_some());
    c.transition(ids[1], Change::Succeed(&output()))
        .await
        .unwrap();
    let rows = c.tasks().await.unwrap();
    assert_eq!(rows[0].state, TaskState::Failed);
    assert_eq!(rows[0].attempts, 2);
    assert_eq!(rows[0].last_error.as_deref(), Some("boom again"));
    assert_eq!(rows[0].missing, missing);
    assert_eq!(rows[1].state, TaskState::Succeeded);
    assert_eq!(rows[1].items_written, Some(5));
    assert_eq!(rows[1].output_size, Some(123));
    assert_eq!(rows[2].state, TaskState::Pending);
    assert_eq!(rows[2].key, "repartition/HLSL30/2024-05");
    assert_eq!(c.task(ids[1]).await.unwrap().unwrap(), rows[1]);
    // The log holds what it was given, in order, by task.
    let kinds = [
        EventKind::Started { attempt: 1 },
        EventKind::AttemptFailed {
            attempt: 1,
            error: "boom".into(),
        },
        EventKind::Started { attempt: 2 },
        EventKind::Failed {
            error: "boom again".into(),
        },
    ];
    let events: Vec<Arc<Event>> = kinds
        .into_iter()
        .map(|k| Arc::new(Event::now(Some(run), ids[0], k)))
        .collect();
    c.log(&events[..2]).await.unwrap();
    c.log(&events[2..]).await.unwrap();
    let logged = c.events(ids[0]).await.unwrap();
    let logged: Vec<(&str, &str)> = logged
        .iter()
        .map(|e| (e.1.as_str(), e.2.as_deref().unwrap_or("")))
        .collect();
    assert_eq!(
        logged,
        [
            ("started", "attempt 1"),
            ("attempt_failed", "attempt 1: boom"),
            ("started", "attempt 2"),
            ("failed", "boom again")
        ]
    );
    assert!(c.events(ids[1]).await.unwrap().is_empty());
    // A failed task comes back through retry only, then runs as attempt 3.
    assert!(c.claim(ids[0], run).await.unwrap().is_none());
    c.transition(ids[0], Change::Retry).await.unwrap();
    assert_eq!(c.claim(ids[0], run).await.unwrap().unwrap().number, 3);
    c.end_run(run, "succeeded").await.unwrap();
    assert_eq!(c.last_run().await.unwrap().unwrap().status, "succeeded");
    c.set_meta("output", "out").await.unwrap();
    c.set_meta("output", "out2").await.unwrap();
    assert_eq!(c.meta("output").await.unwrap().as_deref(), Some("out2"));
    assert_eq!(c.meta("bbox").await.unwrap(), None);
}

/// Moves a state does not allow are refused, and change nothing.
async fn refuses_illegal_transitions<C: Checkpoint>(c: C) {
    let (tasks, deps) = plan();
    let ids = c.plan(&tasks, &deps).await.unwrap();
    let run = c.start_run("test").await.unwrap();
    // Pending: cannot succeed, fail or retry.
    for change in [
        Change::Succeed(&output()),
        Change::Fail {
            error: "x",
            missing: &[],
        },
        Change::Retry,
    ] {
        let e = c.transition(ids[0], change).await.unwrap_err();
        assert!(
            matches!(&e, Error::IllegalTransition(i) if i.from == TaskState::Pending && i.transition == change.transition() && i.task == "harvest/HLSL30/2024-05-01"),
            "{e}"
        );
    }
    c.claim(ids[0], run).await.unwrap().unwrap();
    c.transition(ids[0], Change::Succeed(&output()))
        .await
        .unwrap();
    // Succeeded: cannot be claimed, nor succeed or fail again, without a requeue.
    assert!(c.claim(ids[0], run).await.unwrap().is_none());
    let e = c
        .transition(ids[0], Change::Succeed(&output()))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("cannot succeeded from succeeded"),
        "{e}"
    );
    let e = c.transition(ids[0], Change::Retry).await.unwrap_err();
    assert!(
        matches!(&e, Error::IllegalTransition(i) if i.transition == Transition::Retry),
        "{e}"
    );
    assert_eq!(
        c.task(ids[0]).await.unwrap().unwrap().state,
        TaskState::Succeeded
    );
    c.transition(ids[0], Change::Requeue).await.unwrap();
    assert!(c.claim(ids[0], run).await.unwrap().is_some());
}

/// A dead run's running tasks come back; the run is interrupted.
async fn recovers_a_dead_run<C: Checkpoint>(c: C) {
    let (tasks, deps) = plan();
    let ids = c.plan(&tasks, &deps).await.unwrap();
    let run = c.start_run("test").await.unwrap();
    c.claim(ids[0], run).await.unwrap().unwrap();
    c.claim(ids[1], run).await.unwrap().unwrap();
    c.transition(ids[1], Change::Succeed(&output()))
        .await
        .unwrap();
    assert_eq!(c.recover().await.unwrap(), 1);
    let rows = c.tasks().await.unwrap();
    assert_eq!(rows[0].state, TaskState::Pending);
    assert_eq!(rows[1].state, TaskState::Succeeded);
    assert_eq!(c.last_run().await.unwrap().unwrap().status, "interrupted");
    assert!(
        c.events(ids[0])
            .await
            .unwrap()
            .iter()
            .any(|e| e.1 == "recovered")
    );
}

/// Many claimers race for one ready task at once: exactly one gets it.
async fn one_claimer_wins<C: Checkpoint>(claimers: Vec<Arc<C>>) {
    let (tasks, deps) = plan();
    let ids = claimers[0].plan(&tasks, &deps).await.unwrap();
    let run = claimers[0].start_run("test").await.unwrap();
    for &id in &ids {
        let barrier = Arc::new(tokio::sync::Barrier::new(claimers.len() * 4));
        let mut set = tokio::task::JoinSet::new();
        for c in &claimers {
            for _ in 0..4 {
                let (c, barrier) = (c.clone(), barrier.clone());
                set.spawn(async move {
                    barrier.wait().await;
                    c.claim(id, run).await.unwrap()
                });
            }
        }
        let won: Vec<_> = set.join_all().await.into_iter().flatten().collect();
        assert_eq!(won.len(), 1, "task {id}: {won:?}");
        assert_eq!(won[0].number, 1);
    }
    let rows = claimers[0].tasks().await.unwrap();
    assert!(
        rows.iter()
            .all(|t| t.state == TaskState::Running && t.attempts == 1)
    );
}

/// Many callers claim one setting of a new state at once with different values: all get the
/// same one, the one stored; a later claim gets it too.
async fn one_setting_wins<C: Checkpoint>(claimers: Vec<Arc<C>>) {
    let n = claimers.len() * 4;
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let mut set = tokio::task::JoinSet::new();
    for (i, c) in claimers.iter().cycle().take(n).enumerate() {
        let (c, barrier) = (c.clone(), barrier.clone());
        set.spawn(async move {
            barrier.wait().await;
            c.claim_meta("output", &format!("s3://out-{i}"))
                .await
                .unwrap()
        });
    }
    let got: Vec<String> = set.join_all().await;
    let stored = claimers[0].meta("output").await.unwrap().unwrap();
    assert!(got.iter().all(|g| *g == stored), "{got:?}, stored {stored}");
    assert!(stored.starts_with("s3://out-"));
    for c in &claimers {
        assert_eq!(c.claim_meta("output", "elsewhere").await.unwrap(), stored);
    }
}

/// Keeps a sync's settings: watermarks per collection, the changes applied, the start of a
/// sync not completed; refuses a stored value it cannot read.
async fn keeps_sync_settings<C: Checkpoint>(c: C) {
    use crate::engine::sync::SyncState;
    let s = SyncState::new(&c, "the state");
    let at = |t: &str| t.parse::<chrono::DateTime<chrono::Utc>>().unwrap();
    assert_eq!(s.watermark(Collection::Hlsl30).await.unwrap(), None);
    assert_eq!(s.started().await.unwrap(), None);
    assert!(s.applied(Collection::Hlsl30).await.unwrap().is_empty());
    s.set_watermark(Collection::Hlsl30, at("2026-11-29T10:00:00.123Z"))
        .await
        .unwrap();
    s.set_watermark(Collection::Hlss30, at("2026-11-28T10:00:00Z"))
        .await
        .unwrap();
    s.set_watermark(Collection::Hlsl30, at("2026-11-29T11:00:00.456Z"))
        .await
        .unwrap();
    assert_eq!(
        s.watermark(Collection::Hlsl30).await.unwrap(),
        Some(at("2026-11-29T11:00:00.456Z")),
        "the last one set, to the millisecond"
    );
    assert_eq!(
        s.watermark(Collection::Hlss30).await.unwrap(),
        Some(at("2026-11-28T10:00:00Z")),
        "one per collection"
    );
    let applied: std::collections::BTreeSet<(String, String)> = [
        (
            "HLS.L30.T15TWN.2024128T170439.v2.0",
            "2026-11-29T11:30:00.000Z",
        ),
        (
            "HLS.L30.T15TWM.2024128T170439.v2.0",
            "2026-11-29T11:31:00.000Z",
        ),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    s.set_applied(Collection::Hlsl30, &applied).await.unwrap();
    assert_eq!(s.applied(Collection::Hlsl30).await.unwrap(), applied);
    assert!(s.applied(Collection::Hlss30).await.unwrap().is_empty());
    s.set_started(Some(at("2026-11-29T12:00:00Z")))
        .await
        .unwrap();
    assert_eq!(s.started().await.unwrap(), Some(at("2026-11-29T12:00:00Z")));
    s.set_started(None).await.unwrap();
    assert_eq!(s.started().await.unwrap(), None);
    // What a changes task found, kept until its sync completes; the sync's overlap.
    assert_eq!(s.found(Collection::Hlss30).await.unwrap(), None);
    let found = crate::engine::sync::FoundRecord {
        since: at("2026-11-28T10:00:00Z"),
        changed: 3,
        deleted: 1,
        deleted_held: 1,
        already_applied: 2,
        days: vec![day(3), day(31)],
        seen: vec![(
            "HLS.S30.T35VLJ.2024124T100559.v2.0".into(),
            at("2026-11-29T11:30:00.001Z"),
        )],
    };
    s.set_found(Collection::Hlss30, Some(&found)).await.unwrap();
    assert_eq!(s.found(Collection::Hlss30).await.unwrap(), Some(found));
    assert_eq!(s.found(Collection::Hlsl30).await.unwrap(), None);
    s.set_found(Collection::Hlss30, None).await.unwrap();
    assert_eq!(s.found(Collection::Hlss30).await.unwrap(), None);
    assert_eq!(s.overlap().await.unwrap(), None);
    s.set_overlap(chrono::Duration::minutes(90)).await.unwrap();
    assert_eq!(
        s.overlap().await.unwrap(),
        Some(chrono::Duration::minutes(90))
    );
    c.set_meta("sync.watermark.HLSS30", "yesterday")
        .await
        .unwrap();
    let e = s.watermark(Collection::Hlss30).await.unwrap_err();
    assert!(e.is_usage());
    assert!(e.to_string().contains("sync.watermark.HLSS30"), "{e}");
}

/// Keeps changes tasks (a sync's CMR query, one per collection) beside the harvests: they
/// read back with their kind, plan idempotently, and move like any task, again sync after
/// sync (succeeded → pending → running → failed → pending through `retry-failed`).
async fn keeps_changes_tasks<C: Checkpoint>(c: C) {
    use crate::engine::task::TaskKind;
    let (mut tasks, deps) = plan();
    let may = Month::new(2024, 5).unwrap();
    tasks.push(TaskSpec::changes(Collection::Hlsl30, may));
    tasks.push(TaskSpec::changes(Collection::Hlss30, may));
    let ids = c.plan(&tasks, &deps).await.unwrap();
    let again = c
        .plan(&[TaskSpec::changes(Collection::Hlsl30, may)], &[])
        .await
        .unwrap();
    assert_eq!(again, [ids[3]], "one changes task per collection");
    let row = c.task(ids[3]).await.unwrap().unwrap();
    assert_eq!(
        (row.spec.kind, row.key.as_str(), row.state),
        (TaskKind::Changes, "changes/HLSL30", TaskState::Pending)
    );
    assert_eq!(c.tasks().await.unwrap().len(), 5);
    assert_eq!(
        c.deps().await.unwrap().len(),
        2,
        "changes tasks need nothing"
    );
    let run = c.start_run("sync").await.unwrap();
    c.claim(ids[3], run).await.unwrap().unwrap();
    let out = TaskOutput {
        requeue: vec![ids[0]],
        ..TaskOutput::default()
    };
    c.transition(ids[3], Change::Succeed(&out)).await.unwrap();
    let row = c.task(ids[3]).await.unwrap().unwrap();
    assert_eq!(
        (row.state, row.items_written, row.output_path),
        (TaskState::Succeeded, Some(0), None)
    );
    // The next sync asks again; its query fails; `retry-failed` brings it back.
    c.transition(ids[3], Change::Requeue).await.unwrap();
    assert_eq!(c.claim(ids[3], run).await.unwrap().unwrap().number, 2);
    let fail = Change::Fail {
        error: "HTTP 500 from deleted-granules.json",
        missing: &[],
    };
    c.transition(ids[3], fail).await.unwrap();
    let row = c.task(ids[3]).await.unwrap().unwrap();
    assert_eq!(row.state, TaskState::Failed);
    assert!(row.last_error.unwrap().contains("deleted-granules"));
    let e = c.claim(ids[3], run).await.unwrap();
    assert!(
        e.is_none(),
        "a failed changes task does not run again by itself"
    );
    c.transition(ids[3], Change::Retry).await.unwrap();
    assert_eq!(c.claim(ids[3], run).await.unwrap().unwrap().number, 3);
    let other = c.task(ids[4]).await.unwrap().unwrap();
    assert_eq!((other.state, other.attempts), (TaskState::Pending, 0));
}

macro_rules! suite {
    ($name:ident, $make:expr) => {
        mod $name {
            use super::*;

            #[tokio::test]
            async fn walks_tasks_through_their_states() {
                let Some((_dir, c)) = $make else { return };
                super::walks_tasks_through_their_states(c).await;
            }

            #[tokio::test]
            async fn refuses_illegal_transitions() {
                let Some((_dir, c)) = $make else { return };
                super::refuses_illegal_transitions(c).await;
            }

            #[tokio::test]
            async fn recovers_a_dead_run() {
                let Some((_dir, c)) = $make else { return };
                super::recovers_a_dead_run(c).await;
            }

            #[tokio::test]
            async fn keeps_changes_tasks() {
                let Some((_dir, c)) = $make else { return };
                super::keeps_changes_tasks(c).await;
            }

            #[tokio::test]
            async fn keeps_sync_settings() {
                let Some((_dir, c)) = $make else { return };
                super::keeps_sync_settings(c).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn one_claimer_wins_a_race() {
                let Some((_dir, c)) = $make else { return };
                super::one_claimer_wins(vec![Arc::new(c)]).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn one_setting_wins_a_race() {
                let Some((_dir, c)) = $make else { return };
                super::one_setting_wins(vec![Arc::new(c)]).await;
            }
        }
    };
}

fn sqlite() -> (tempfile::TempDir, StateStore) {
    let dir = tempfile::tempdir().unwrap();
    let st = StateStore::open_exclusive(&dir.path().join("s.sqlite")).unwrap();
    (dir, st)
}

/// A checkpoint in a new database of the test server, whose leases expire at once (so that
/// `recover` takes back what a claim left running, as when its worker died); `None` (the
/// reason printed) without PostgreSQL.
async fn postgres() -> Option<((), PgCheckpoint)> {
    let url = pg_server::database()?;
    let lease = LeaseSettings {
        lease: std::time::Duration::ZERO,
        heartbeat: std::time::Duration::from_millis(1),
    };
    Some(((), PgCheckpoint::connect(&url, lease).await.unwrap()))
}

suite!(on_sqlite, Some(sqlite()));
suite!(in_memory, Some(((), MemoryCheckpoint::new())));
suite!(on_postgres, postgres().await);

/// Two connections to one state file (the second as another process would open it).
fn two_sqlite_connections() -> (tempfile::TempDir, Vec<Arc<StateStore>>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sqlite");
    let first = StateStore::open_exclusive(&path).unwrap();
    let second = StateStore::open_second_writer(&path).unwrap();
    (dir, vec![Arc::new(first), Arc::new(second)])
}

/// Two pools on one new database of the test server (as two worker processes have);
/// `None` without PostgreSQL.
async fn two_postgres_pools() -> Option<Vec<Arc<PgCheckpoint>>> {
    let url = pg_server::database()?;
    let lease = LeaseSettings::default();
    let first = PgCheckpoint::connect(&url, lease).await.unwrap();
    let second = PgCheckpoint::connect(&url, lease).await.unwrap();
    Some(vec![Arc::new(first), Arc::new(second)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_connections_to_one_state_file_race_and_one_wins() {
    let (_dir, pair) = two_sqlite_connections();
    one_claimer_wins(pair).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_connections_to_one_state_file_claim_one_setting() {
    let (_dir, pair) = two_sqlite_connections();
    one_setting_wins(pair).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_pools_on_one_postgres_database_race_and_one_wins() {
    if let Some(pair) = two_postgres_pools().await {
        one_claimer_wins(pair).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_pools_on_one_postgres_database_claim_one_setting() {
    if let Some(pair) = two_postgres_pools().await {
        one_setting_wins(pair).await;
    }
}
