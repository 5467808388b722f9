//! The SQLite checkpoint: runs, tasks, their dependencies and an event log, so that a
//! crashed or interrupted run resumes exactly where it stopped.
//!
//! One process at a time may write a state file: it holds an OS lock (`flock`) on
//! `<state>.lock`, which the kernel releases when the process dies, so the lock of a killed
//! run is taken over without anyone deleting anything. WAL mode, one transaction per state
//! change, and a schema version in `PRAGMA user_version`.

use crate::collection::Collection;
use crate::engine::checkpoint::lock::take_lock;
pub use crate::engine::checkpoint::lock::{is_locked, lock_holder, lock_path};
use crate::engine::checkpoint::{Attempt, Change, Checkpoint, EventRow, RunId, illegal, now};
pub use crate::engine::checkpoint::{RunRow, TaskOutput, TaskRow};
use crate::engine::events::Event;
use crate::engine::task::TaskId;
pub use crate::engine::task::{TaskKind, TaskSpec, TaskState};
use crate::error::{Error, Result, StateProblem};
use crate::period::Month;
use chrono::{DateTime, NaiveDate, Utc};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;

const SELECT_TASK: &str = "SELECT id, kind, key, collection, day, month, state, attempts, last_error, started_at, ended_at, cmr_hits, items_written, output_path, output_size, missing, run_id FROM tasks";

/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: i64 = 2;

/// The task table (version 2 adds the `changes` kind).
const TASKS: &str = "
CREATE TABLE tasks (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('harvest', 'repartition', 'changes')),
    key TEXT NOT NULL UNIQUE,
    collection TEXT NOT NULL,
    day TEXT,
    month TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'running', 'succeeded', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    started_at TEXT,
    ended_at TEXT,
    cmr_hits INTEGER,
    items_written INTEGER,
    output_path TEXT,
    output_size INTEGER,
    missing TEXT,
    run_id INTEGER REFERENCES runs(id)
);
CREATE INDEX tasks_state ON tasks(state);
";

/// Version 1 → 2: the task table again, with the `changes` kind allowed (SQLite cannot
/// change a `CHECK` in place): a new table, the rows copied, the old one dropped and the
/// new one renamed, as SQLite's documentation describes; run with foreign keys off.
const MIGRATE_1_TO_2: &str = "
CREATE TABLE tasks_v2 (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('harvest', 'repartition', 'changes')),
    key TEXT NOT NULL UNIQUE,
    collection TEXT NOT NULL,
    day TEXT,
    month TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'running', 'succeeded', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    started_at TEXT,
    ended_at TEXT,
    cmr_hits INTEGER,
    items_written INTEGER,
    output_path TEXT,
    output_size INTEGER,
    missing TEXT,
    run_id INTEGER REFERENCES runs(id)
);
INSERT INTO tasks_v2 SELECT id, kind, key, collection, day, month, state, attempts, last_error, started_at, ended_at, cmr_hits, items_written, output_path, output_size, missing, run_id FROM tasks;
DROP TABLE tasks;
ALTER TABLE tasks_v2 RENAME TO tasks;
CREATE INDEX tasks_state ON tasks(state);
";

const SCHEMA: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    command TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    status TEXT NOT NULL DEFAULT 'running'
);
CREATE TABLE deps (
    task_id INTEGER NOT NULL REFERENCES tasks(id),
    depends_on INTEGER NOT NULL REFERENCES tasks(id),
    PRIMARY KEY (task_id, depends_on)
);
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    run_id INTEGER,
    task_id INTEGER,
    event TEXT NOT NULL,
    detail TEXT
);
CREATE INDEX events_task ON events(task_id);
";

/// An open state file.
#[derive(Debug)]
pub struct StateStore {
    conn: Mutex<Connection>,
    path: PathBuf,
    _lock: Option<File>,
}

impl StateStore {
    /// Opens (creating if needed) a state file for writing, taking its lock. Tasks left
    /// `running` by a dead process go back to `pending`.
    pub fn open_exclusive(path: &Path) -> Result<StateStore> {
        refuse_url(path)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::State {
                path: path.display().to_string(),
                problem: StateProblem::CreateFolder(e),
            })?;
        }
        check_header(path)?;
        let lock = take_lock(path)?;
        let conn = open_conn(path, false)?;
        let store = StateStore {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
            _lock: Some(lock),
        };
        store.migrate()?;
        store.recover()?;
        Ok(store)
    }

    /// A second writing connection to a state file another store of this process holds
    /// (to test guarded updates between two connections).
    #[cfg(test)]
    pub(crate) fn open_second_writer(path: &Path) -> Result<StateStore> {
        let conn = open_conn(path, false)?;
        Ok(StateStore {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
            _lock: None,
        })
    }

    /// Opens an existing state file to read it while a run may be writing it (no lock).
    pub fn open_read_only(path: &Path) -> Result<StateStore> {
        refuse_url(path)?;
        if !path.exists() {
            return Err(Error::State {
                path: path.display().to_string(),
                problem: StateProblem::NoSuchFile,
            });
        }
        check_header(path)?;
        let conn = open_conn(path, true)?;
        let store = StateStore {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
            _lock: None,
        };
        store.check_version()?;
        Ok(store)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, problem: StateProblem) -> Error {
        Error::State {
            path: self.path.display().to_string(),
            problem,
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> Result<T> {
        let mut conn = self
            .conn
            .lock()
            .map_err(|_| self.err(StateProblem::Poisoned))?;
        f(&mut conn).map_err(|e| self.err(StateProblem::Sqlite(e)))
    }

    fn check_version(&self) -> Result<i64> {
        let (version, tables): (i64, i64) = self.with(|c| {
            let v = c.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            let t = c.query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
                [],
                |r| r.get(0),
            )?;
            Ok((v, t))
        })?;
        if version == 0 && tables == 0 {
            return Ok(0);
        }
        if version == 0 {
            return Err(self.err(StateProblem::OtherDatabase));
        }
        // A version 1 file reads as it is (it holds no changes task) and is migrated when
        // opened for writing.
        if version != SCHEMA_VERSION && version != 1 {
            return Err(self.err(StateProblem::SchemaVersion {
                found: version,
                expected: SCHEMA_VERSION,
            }));
        }
        let app: Option<String> = self.with(|c| {
            c.query_row("SELECT value FROM meta WHERE key = 'app'", [], |r| r.get(0))
                .optional()
        })?;
        if app.as_deref() != Some("hls-flow") {
            return Err(self.err(StateProblem::NotHlsFlow));
        }
        Ok(version)
    }

    fn migrate(&self) -> Result<()> {
        let version = self.check_version()?;
        if version == 1 {
            self.with(|c| {
                c.pragma_update(None, "foreign_keys", "OFF")?;
                let tx = c.transaction()?;
                tx.execute_batch(MIGRATE_1_TO_2)?;
                tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
                tx.commit()?;
                c.pragma_update(None, "foreign_keys", "ON")
            })?;
        }
        if version == 0 {
            self.with(|c| {
                let tx = c.transaction()?;
                tx.execute_batch(SCHEMA)?;
                tx.execute_batch(TASKS)?;
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES ('app', 'hls-flow')",
                    [],
                )?;
                tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
                tx.commit()
            })?;
        }
        Ok(())
    }

    /// Tasks a dead run left running go back to pending; its run becomes `interrupted`.
    pub fn recover(&self) -> Result<usize> {
        self.with(|c| {
            let tx = c.transaction()?;
            let ids: Vec<i64> = {
                let mut st = tx.prepare("SELECT id FROM tasks WHERE state = 'running'")?;
                st.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?
            };
            for id in &ids {
                tx.execute("UPDATE tasks SET state = 'pending' WHERE id = ?1", [id])?;
                tx.execute(
                    "INSERT INTO events (at, task_id, event, detail) VALUES (?1, ?2, 'recovered', 'was running when its process died; will run again')",
                    params![now(), id],
                )?;
            }
            tx.execute(
                "UPDATE runs SET status = 'interrupted', ended_at = ?1 WHERE status = 'running'",
                [now()],
            )?;
            tx.commit()?;
            Ok(ids.len())
        })
    }

    /// Reads a setting stored in the state (`output`, `bbox`, …).
    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        self.with(|c| {
            c.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
                .optional()
        })
    }

    /// Stores a setting.
    pub fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )
            .map(|_| ())
        })
    }

    /// Stores `value` as the setting `key` unless it is there already; returns the stored one.
    pub fn claim_meta(&self, key: &str, value: &str) -> Result<String> {
        self.with(|c| {
            c.query_row(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = value RETURNING value",
                params![key, value],
                |r| r.get(0),
            )
        })
    }

    /// Records the start of a run.
    pub fn start_run(&self, command: &str) -> Result<i64> {
        self.with(|c| {
            c.execute(
                "INSERT INTO runs (command, pid, started_at) VALUES (?1, ?2, ?3)",
                params![command, std::process::id(), now()],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    /// Records the end of a run.
    pub fn end_run(&self, run_id: i64, status: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE runs SET ended_at = ?1, status = ?2 WHERE id = ?3",
                params![now(), status, run_id],
            )
            .map(|_| ())
        })
    }

    /// The latest run.
    pub fn last_run(&self) -> Result<Option<RunRow>> {
        self.with(|c| {
            c.query_row(
                "SELECT id, command, pid, started_at, ended_at, status FROM runs ORDER BY id DESC LIMIT 1",
                [],
                |r| {
                    Ok(RunRow {
                        id: r.get(0)?,
                        command: r.get(1)?,
                        pid: r.get(2)?,
                        started_at: r.get(3)?,
                        ended_at: r.get(4)?,
                        status: r.get(5)?,
                    })
                },
            )
            .optional()
        })
    }

    /// Records a DAG: its tasks (new ones as `pending`; existing ones untouched) and
    /// dependencies, in one transaction. Returns the task ids by key.
    pub fn record_dag(&self, tasks: &[TaskSpec], deps: &[(usize, usize)]) -> Result<Vec<i64>> {
        self.with(|c| {
            let tx = c.transaction()?;
            let mut ids = Vec::with_capacity(tasks.len());
            for t in tasks {
                tx.execute(
                    "INSERT INTO tasks (kind, key, collection, day, month, state) VALUES (?1, ?2, ?3, ?4, ?5, 'pending') ON CONFLICT(key) DO NOTHING",
                    params![
                        t.kind.as_str(),
                        t.key(),
                        t.collection.short_name(),
                        t.day.map(|d| d.to_string()),
                        t.month.to_string()
                    ],
                )?;
                let id: i64 =
                    tx.query_row("SELECT id FROM tasks WHERE key = ?1", [t.key()], |r| r.get(0))?;
                ids.push(id);
            }
            for &(task, dep) in deps {
                tx.execute(
                    "INSERT OR IGNORE INTO deps (task_id, depends_on) VALUES (?1, ?2)",
                    params![ids[task], ids[dep]],
                )?;
            }
            tx.commit()?;
            Ok(ids)
        })
    }

    /// Every task.
    pub fn tasks(&self) -> Result<Vec<TaskRow>> {
        self.with(|c| {
            let mut st = c.prepare(&format!("{SELECT_TASK} ORDER BY id"))?;
            let rows = st.query_map([], row_to_task)?;
            rows.collect()
        })
    }

    /// Dependencies as (task, depends on).
    pub fn deps(&self) -> Result<Vec<(i64, i64)>> {
        self.with(|c| {
            let mut st = c.prepare("SELECT task_id, depends_on FROM deps")?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
    }

    /// Takes a pending task for one attempt, guarded: `None` if it is not pending.
    pub fn claim_task(&self, task: TaskId, run: RunId) -> Result<Option<Attempt>> {
        let number: Option<u32> = self.with(|c| {
            c.prepare_cached(
                "UPDATE tasks SET state = 'running', attempts = attempts + 1, started_at = ?1, ended_at = NULL, run_id = ?2 WHERE id = ?3 AND state = 'pending' RETURNING attempts",
            )?
            .query_row(params![now(), run, task], |r| r.get(0))
            .optional()
        })?;
        Ok(number.map(|number| Attempt { task, run, number }))
    }

    /// Appends events to the log, in one transaction.
    pub fn log_events(&self, events: &[Arc<Event>]) -> Result<()> {
        self.with(|c| {
            let tx = c.transaction()?;
            {
                let mut st = tx.prepare_cached(
                    "INSERT INTO events (at, run_id, task_id, event, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                for e in events {
                    let at = super::stamp(e.at);
                    st.execute(params![at, e.run, e.task, e.name(), e.detail()])?;
                }
            }
            tx.commit()
        })
    }

    /// Applies a change, guarded by the states its transition may start from.
    pub fn apply(&self, task: TaskId, change: Change<'_>) -> Result<()> {
        let t = change.transition();
        let from: Vec<String> = t
            .from_states()
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect();
        let guard = format!("id = ?1 AND state IN ({})", from.join(", "));
        let refused: Option<(String, String)> = self.with(|c| {
            let n = match change {
                Change::AttemptFailed { error, .. } => c
                    .prepare_cached(&format!(
                        "UPDATE tasks SET state = 'pending', last_error = ?2 WHERE {guard}"
                    ))?
                    .execute(params![task, error])?,
                Change::Succeed(out) => c
                    .prepare_cached(&format!("UPDATE tasks SET state = 'succeeded', ended_at = ?2, last_error = NULL, missing = NULL, cmr_hits = ?3, items_written = ?4, output_path = ?5, output_size = ?6 WHERE {guard}"))?
                    .execute(params![task, now(), out.cmr_hits, out.items_written, out.output_path, out.output_size])?,
                Change::Fail { error, missing } => {
                    let missing = if missing.is_empty() {
                        None
                    } else {
                        serde_json::to_string(missing).ok()
                    };
                    c.prepare_cached(&format!("UPDATE tasks SET state = 'failed', ended_at = ?2, last_error = ?3, missing = ?4 WHERE {guard}"))?
                        .execute(params![task, now(), error, missing])?
                }
                Change::Requeue | Change::Retry => c
                    .prepare_cached(&format!("UPDATE tasks SET state = 'pending' WHERE {guard}"))?
                    .execute(params![task])?,
            };
            if n > 0 {
                return Ok(None);
            }
            let found = c
                .query_row("SELECT key, state FROM tasks WHERE id = ?1", [task], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?;
            Ok(Some(found.unwrap_or_else(|| (format!("#{task}"), String::new()))))
        })?;
        match refused {
            None => Ok(()),
            Some((key, state)) => match TaskState::parse(&state) {
                Some(from) => Err(illegal(&key, from, t)),
                None => Err(self.err(StateProblem::NoSuchTask { key })),
            },
        }
    }

    /// One task.
    pub fn task(&self, id: TaskId) -> Result<Option<TaskRow>> {
        self.with(|c| {
            c.query_row(&format!("{SELECT_TASK} WHERE id = ?1"), [id], row_to_task)
                .optional()
        })
    }

    /// Events of a task, oldest first: (at, event, detail).
    pub fn events(&self, task: i64) -> Result<Vec<(String, String, Option<String>)>> {
        self.with(|c| {
            let mut st =
                c.prepare("SELECT at, event, detail FROM events WHERE task_id = ?1 ORDER BY id")?;
            let rows = st.query_map([task], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect()
        })
    }
}

impl Checkpoint for StateStore {
    async fn plan(&self, tasks: &[TaskSpec], deps: &[(usize, usize)]) -> Result<Vec<TaskId>> {
        self.record_dag(tasks, deps)
    }
    async fn tasks(&self) -> Result<Vec<TaskRow>> {
        StateStore::tasks(self)
    }
    async fn task(&self, id: TaskId) -> Result<Option<TaskRow>> {
        StateStore::task(self, id)
    }
    async fn deps(&self) -> Result<Vec<(TaskId, TaskId)>> {
        StateStore::deps(self)
    }
    async fn start_run(&self, command: &str) -> Result<RunId> {
        StateStore::start_run(self, command)
    }
    async fn end_run(&self, run: RunId, status: &str) -> Result<()> {
        StateStore::end_run(self, run, status)
    }
    async fn last_run(&self) -> Result<Option<RunRow>> {
        StateStore::last_run(self)
    }
    async fn claim(&self, task: TaskId, run: RunId) -> Result<Option<Attempt>> {
        self.claim_task(task, run)
    }
    async fn transition(&self, task: TaskId, change: Change<'_>) -> Result<()> {
        self.apply(task, change)
    }
    async fn log(&self, events: &[Arc<Event>]) -> Result<()> {
        self.log_events(events)
    }
    async fn events(&self, task: TaskId) -> Result<Vec<EventRow>> {
        StateStore::events(self, task)
    }
    async fn recover(&self) -> Result<usize> {
        StateStore::recover(self)
    }
    async fn meta(&self, key: &str) -> Result<Option<String>> {
        StateStore::meta(self, key)
    }
    async fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        StateStore::set_meta(self, key, value)
    }
    async fn claim_meta(&self, key: &str, value: &str) -> Result<String> {
        StateStore::claim_meta(self, key, value)
    }
}

fn row_to_task(r: &rusqlite::Row<'_>) -> rusqlite::Result<TaskRow> {
    let bad = |i: usize, what: &str| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            what.to_string().into(),
        )
    };
    let kind: String = r.get(1)?;
    let kind = TaskKind::parse(&kind).ok_or_else(|| bad(1, "unknown task kind"))?;
    let collection: String = r.get(3)?;
    let collection: Collection = collection
        .parse()
        .map_err(|_| bad(3, "unknown collection"))?;
    let day: Option<String> = r.get(4)?;
    let day = match day {
        Some(d) => Some(d.parse::<NaiveDate>().map_err(|_| bad(4, "bad day"))?),
        None => None,
    };
    let month: String = r.get(5)?;
    let month: Month = month.parse().map_err(|_| bad(5, "bad month"))?;
    let state: String = r.get(6)?;
    let state = TaskState::parse(&state).ok_or_else(|| bad(6, "bad state"))?;
    let missing: Option<String> = r.get(15)?;
    let missing = missing
        .and_then(|m| serde_json::from_str(&m).ok())
        .unwrap_or_default();
    Ok(TaskRow {
        id: r.get(0)?,
        spec: TaskSpec {
            kind,
            collection,
            day,
            month,
        },
        key: r.get(2)?,
        state,
        attempts: r.get(7)?,
        last_error: r.get(8)?,
        started_at: r.get(9)?,
        ended_at: r.get(10)?,
        cmr_hits: r.get(11)?,
        items_written: r.get(12)?,
        output_path: r.get(13)?,
        output_size: r.get(14)?,
        missing,
        run_id: r.get(16)?,
    })
}

/// Refuses a PostgreSQL URL (`--state postgres://…` to a command that takes only a file),
/// before a folder named `postgres:` is made.
fn refuse_url(path: &Path) -> Result<()> {
    if super::postgres::is_postgres_url(&path.to_string_lossy()) {
        return Err(Error::State {
            path: path.display().to_string(),
            problem: StateProblem::PostgresUrl,
        });
    }
    Ok(())
}

/// Refuses a file that exists but is not an SQLite database, before SQLite touches it.
fn check_header(path: &Path) -> Result<()> {
    use std::io::Read;
    let Ok(mut f) = File::open(path) else {
        return Ok(());
    };
    let mut head = [0u8; 16];
    let n = f.read(&mut head).unwrap_or(0);
    if n == 0 {
        return Ok(());
    }
    if n < 16 || &head != b"SQLite format 3\0" {
        return Err(Error::State {
            path: path.display().to_string(),
            problem: StateProblem::NotSqlite,
        });
    }
    Ok(())
}

fn open_conn(path: &Path, read_only: bool) -> Result<Connection> {
    let state_err = |problem: StateProblem| Error::State {
        path: path.display().to_string(),
        problem,
    };
    let serr = |e: rusqlite::Error| state_err(StateProblem::Sqlite(e));
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags).map_err(serr)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(serr)?;
    if !read_only {
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(serr)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(state_err(StateProblem::NotWal { journal_mode: mode }));
        }
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(serr)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(serr)?;
    }
    // Touch the schema so that a damaged file fails here, with its path.
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    })
    .map_err(serr)?;
    Ok(conn)
}

/// Parses a stored RFC 3339 time.
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2024, 5, d).unwrap()
    }

    #[test]
    fn a_second_writer_is_refused_and_running_tasks_recover() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        let st = StateStore::open_exclusive(&path).unwrap();
        let ids = st
            .record_dag(&[TaskSpec::harvest(Collection::Hlss30, day(3))], &[])
            .unwrap();
        let run = st.start_run("test").unwrap();
        st.claim_task(ids[0], run).unwrap().unwrap();
        assert!(is_locked(&path));
        let e = StateStore::open_exclusive(&path).unwrap_err();
        assert!(
            matches!(e, Error::Locked { pid: Some(p), .. } if p == std::process::id()),
            "{e}"
        );
        // Readers are welcome while it runs.
        let ro = StateStore::open_read_only(&path).unwrap();
        assert_eq!(ro.tasks().unwrap()[0].state, TaskState::Running);
        drop(st);
        assert!(!is_locked(&path));
        let st = StateStore::open_exclusive(&path).unwrap();
        let row = &st.tasks().unwrap()[0];
        assert_eq!(row.state, TaskState::Pending);
        assert_eq!(st.last_run().unwrap().unwrap().status, "interrupted");
        assert!(
            st.events(ids[0])
                .unwrap()
                .iter()
                .any(|e| e.1 == "recovered")
        );
    }

    #[test]
    fn a_version_1_file_is_migrated_and_keeps_its_tasks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        {
            let c = Connection::open(&path).unwrap();
            // Version 1 as it was: the task kinds checked were harvest and repartition.
            let v1_tasks = TASKS.replace(", 'changes'", "");
            c.execute_batch(&format!("{SCHEMA}{v1_tasks}")).unwrap();
            c.execute_batch(
                "INSERT INTO meta (key, value) VALUES ('app', 'hls-flow');
                 INSERT INTO tasks (kind, key, collection, day, month, state) VALUES
                   ('harvest', 'harvest/HLSS30/2024-05-03', 'HLSS30', '2024-05-03', '2024-05', 'succeeded'),
                   ('repartition', 'repartition/HLSS30/2024-05', 'HLSS30', NULL, '2024-05', 'pending');
                 INSERT INTO deps (task_id, depends_on) VALUES (2, 1);
                 PRAGMA user_version = 1;",
            )
            .unwrap();
            let e = c
                .execute(
                    "INSERT INTO tasks (kind, key, collection, month, state) VALUES ('changes', 'x', 'HLSS30', '2024-05', 'pending')",
                    [],
                )
                .unwrap_err();
            assert!(e.to_string().contains("CHECK"), "{e}");
        }
        // Read-only, a version 1 file reads as it is.
        let ro = StateStore::open_read_only(&path).unwrap();
        assert_eq!(ro.tasks().unwrap().len(), 2);
        drop(ro);
        let st = StateStore::open_exclusive(&path).unwrap();
        let version: i64 = st
            .with(|c| c.query_row("PRAGMA user_version", [], |r| r.get(0)))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let rows = st.tasks().unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].state, TaskState::Succeeded);
        assert_eq!(st.deps().unwrap(), [(2, 1)]);
        let month = Month::new(2024, 5).unwrap();
        let ids = st
            .record_dag(&[TaskSpec::changes(Collection::Hlss30, month)], &[])
            .unwrap();
        assert_eq!(
            st.task(ids[0]).unwrap().unwrap().spec.kind,
            TaskKind::Changes
        );
        let fk: i64 = st
            .with(|c| c.query_row("PRAGMA foreign_keys", [], |r| r.get(0)))
            .unwrap();
        assert_eq!(fk, 1, "foreign keys are on again");
    }

    #[test]
    fn refuses_files_that_are_not_state_files() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("text.sqlite");
        std::fs::write(&text, "hello, I am not a database at all").unwrap();
        let e = StateStore::open_exclusive(&text).unwrap_err();
        assert!(e.to_string().contains("not an SQLite database"), "{e}");
        assert!(e.is_usage());

        let other = dir.path().join("other.sqlite");
        Connection::open(&other)
            .unwrap()
            .execute_batch("CREATE TABLE t (x)")
            .unwrap();
        let e = StateStore::open_exclusive(&other).unwrap_err();
        assert!(e.to_string().contains("not an hls-flow state file"), "{e}");

        let newer = dir.path().join("newer.sqlite");
        drop(StateStore::open_exclusive(&newer).unwrap());
        Connection::open(&newer)
            .unwrap()
            .execute_batch("PRAGMA user_version = 99")
            .unwrap();
        let e = StateStore::open_exclusive(&newer).unwrap_err();
        assert!(e.to_string().contains("schema version 99"), "{e}");

        let missing = StateStore::open_read_only(&dir.path().join("none.sqlite")).unwrap_err();
        assert!(missing.to_string().contains("no such file"), "{missing}");
    }

    #[test]
    fn a_postgres_url_is_not_a_state_file() {
        let e =
            StateStore::open_exclusive(Path::new("postgres://u@127.0.0.1:5432/db")).unwrap_err();
        assert!(e.is_usage());
        assert!(
            e.to_string().contains("not supported by this command"),
            "{e}"
        );
        assert!(!Path::new("postgres:").exists());
    }

    #[test]
    fn uses_wal() {
        let dir = tempfile::tempdir().unwrap();
        let st = StateStore::open_exclusive(&dir.path().join("s.sqlite")).unwrap();
        let mode: String = st
            .with(|c| c.query_row("PRAGMA journal_mode", [], |r| r.get(0)))
            .unwrap();
        assert_eq!(mode, "wal");
    }
}
