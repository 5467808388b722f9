//! The PostgreSQL checkpoint: one state shared by many worker processes (`--state
//! postgres://user@host:port/db`), on `tokio-postgres` with a `deadpool-postgres` pool.
//!
//! The same tables as the state file, plus what several processes need:
//! - **Leases.** A claim sets `lease_until`; the claimer renews it with heartbeats while the
//!   task runs ([`PgCheckpoint::renew`]); [`Checkpoint::recover`] returns tasks whose lease
//!   expired (a worker that died or hangs) to pending. [`PgCheckpoint::claim`] takes the
//!   lowest ready tasks with `FOR UPDATE SKIP LOCKED`, checking their dependencies in SQL (a
//!   month's repartition only when all its days succeeded, whoever ran them).
//! - **Fencing.** The attempt number is the fencing token: [`PgCheckpoint::fence`] (called
//!   right before a file is published) and [`PgCheckpoint::finish`] (the end of the attempt)
//!   compare it with the task's, so a worker that lost its lease publishes nothing over the
//!   attempt that took over.
//! - **Idempotent plans.** `INSERT … ON CONFLICT DO NOTHING`: two `run`s planning the same
//!   range at once create each task once.
//! - **Global CMR limit.** Harvests at once over all workers, as session advisory locks
//!   ([`PgCheckpoint::cmr_slots`]): the server frees those of a worker that died.
//! - **Workers.** Each process registers a run and a worker row (host, pid, heartbeat, tasks)
//!   that `status` shows.
//! - **Versioned migrations** in a `schema_version` table, applied under an advisory lock.

use crate::collection::Collection;
use crate::engine::checkpoint::{
    Attempt, Change, Checkpoint, EventRow, RunId, RunRow, TaskRow, illegal, now,
};
use crate::engine::events::Event;
use crate::engine::task::{TaskId, TaskKind, TaskSpec, TaskState};
use crate::error::{Error, Result};
use crate::period::Month;
use chrono::NaiveDate;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::NoTls;
use tokio_postgres::types::ToSql;

/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: i32 = 1;

/// The migrations, in order: migration `n` brings the schema from version `n - 1` to `n`.
const MIGRATIONS: &[&str] = &["
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE runs (
    id BIGSERIAL PRIMARY KEY,
    command TEXT NOT NULL,
    pid BIGINT NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    status TEXT NOT NULL DEFAULT 'running'
);
CREATE TABLE workers (
    run_id BIGINT PRIMARY KEY REFERENCES runs(id),
    host TEXT NOT NULL,
    pid BIGINT NOT NULL,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    heartbeat_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    tasks TEXT NOT NULL DEFAULT '',
    stopped_at TIMESTAMPTZ
);
CREATE TABLE tasks (
    id BIGSERIAL PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('harvest', 'repartition', 'changes')),
    key TEXT NOT NULL UNIQUE,
    collection TEXT NOT NULL,
    day TEXT,
    month TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'running', 'succeeded', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    tries INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    started_at TEXT,
    ended_at TEXT,
    cmr_hits BIGINT,
    items_written BIGINT,
    output_path TEXT,
    output_size BIGINT,
    missing TEXT,
    run_id BIGINT REFERENCES runs(id),
    lease_until TIMESTAMPTZ,
    not_before TIMESTAMPTZ
);
CREATE INDEX tasks_state ON tasks(state, id);
CREATE TABLE deps (
    task_id BIGINT NOT NULL REFERENCES tasks(id),
    depends_on BIGINT NOT NULL REFERENCES tasks(id),
    PRIMARY KEY (task_id, depends_on)
);
CREATE INDEX deps_depends_on ON deps(depends_on);
CREATE TABLE events (
    id BIGSERIAL PRIMARY KEY,
    at TEXT NOT NULL,
    run_id BIGINT,
    task_id BIGINT,
    event TEXT NOT NULL,
    detail TEXT
);
CREATE INDEX events_task ON events(task_id);
INSERT INTO meta (key, value) VALUES ('app', 'hls-flow');
"];

/// The advisory lock key under which migrations run (one process at a time).
const MIGRATION_LOCK: i64 = 0x686c_735f_666c_6f77; // "hls_flow"
/// The first key of the CMR slots' advisory locks (two-int form: this, then the slot).
const CMR_LOCKS: i32 = 0x686c_7366; // "hlsf"

const TASK_COLUMNS: &str = "id, kind, key, collection, day, month, state, attempts, last_error, started_at, ended_at, cmr_hits, items_written, output_path, output_size, missing, run_id";

/// What went wrong with the PostgreSQL state.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PgProblem {
    /// The URL is not a PostgreSQL connection string.
    #[error("not a PostgreSQL URL: {0}")]
    Url(#[source] tokio_postgres::Error),
    /// The pool cannot be made.
    #[error("cannot make the connection pool: {0}")]
    Pool(#[source] deadpool_postgres::BuildError),
    /// No connection could be had.
    #[error("cannot connect: {0}")]
    Connect(#[source] deadpool_postgres::PoolError),
    /// A statement failed.
    #[error("{0}")]
    Query(#[source] tokio_postgres::Error),
    /// A database of a newer schema.
    #[error("schema version {found}; this hls-flow reads version {expected}")]
    SchemaVersion {
        /// The database's version.
        found: i32,
        /// This build's.
        expected: i32,
    },
    /// A stored value this build cannot read.
    #[error("task {id}: {what}")]
    BadRow {
        /// The row.
        id: i64,
        /// What is wrong.
        what: &'static str,
    },
}

/// How long leases last and how often they are renewed.
#[derive(Debug, Clone, Copy)]
pub struct LeaseSettings {
    /// How long a claim (or a heartbeat) holds a task.
    pub lease: Duration,
    /// How often a worker renews its leases and its heartbeat.
    pub heartbeat: Duration,
}

impl Default for LeaseSettings {
    fn default() -> Self {
        LeaseSettings {
            lease: Duration::from_secs(60),
            heartbeat: Duration::from_secs(10),
        }
    }
}

impl LeaseSettings {
    /// The defaults, or `HLS_FLOW_LEASE_MS` and `HLS_FLOW_HEARTBEAT_MS` (hidden settings,
    /// for tests and experiments).
    pub fn from_env() -> LeaseSettings {
        let ms = |name: &str| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .map(Duration::from_millis)
        };
        let d = LeaseSettings::default();
        let lease = ms("HLS_FLOW_LEASE_MS").unwrap_or(d.lease);
        let heartbeat = ms("HLS_FLOW_HEARTBEAT_MS").unwrap_or_else(|| d.heartbeat.min(lease / 3));
        LeaseSettings { lease, heartbeat }
    }
}

/// A worker as `status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkerRow {
    /// Its run.
    pub run_id: i64,
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// Last heartbeat (RFC 3339).
    pub last_heartbeat: String,
    /// Seconds since then.
    pub heartbeat_age_s: f64,
    /// Keys of the tasks it runs (empty when idle).
    pub tasks: Vec<String>,
    /// Whether it stopped cleanly.
    pub stopped: bool,
}

/// Whether a `--state` value names a PostgreSQL database.
pub fn is_postgres_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

/// The URL as shown: without a password.
fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => url.to_string(),
    }
}

/// The claim of [`PgCheckpoint::claim`] ($1 kinds, $2 start time, $3 run, $4 lease in
/// seconds, $5 how many).
static CLAIM_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH next AS (
            SELECT t.id FROM tasks t
            WHERE t.state = 'pending' AND t.kind = ANY($1)
              AND (t.not_before IS NULL OR t.not_before <= now())
              AND NOT EXISTS (SELECT 1 FROM deps d JOIN tasks u ON u.id = d.depends_on
                              WHERE d.task_id = t.id AND u.state <> 'succeeded')
            ORDER BY t.id LIMIT $5
            FOR UPDATE SKIP LOCKED)
        UPDATE tasks SET state = 'running', attempts = attempts + 1, tries = tries + 1,
            started_at = $2, ended_at = NULL, run_id = $3, not_before = NULL,
            lease_until = now() + make_interval(secs => $4)
        FROM next WHERE tasks.id = next.id
        RETURNING {}",
        TASK_COLUMNS
            .split(", ")
            .map(|c| format!("tasks.{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
});

/// The PostgreSQL checkpoint.
#[derive(Clone)]
pub struct PgCheckpoint {
    pool: Pool,
    url: Arc<str>,
    lease: LeaseSettings,
}

impl std::fmt::Debug for PgCheckpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgCheckpoint")
            .field("url", &self.url)
            .field("lease", &self.lease)
            .finish()
    }
}

impl PgCheckpoint {
    /// Connects to `url` (`postgres://user@host:port/db`, with `?sslmode=disable|prefer`),
    /// creating or migrating the schema.
    pub async fn connect(url: &str, lease: LeaseSettings) -> Result<PgCheckpoint> {
        let shown: Arc<str> = redacted(url).into();
        let err = |problem| Error::Postgres {
            url: shown.to_string(),
            problem,
        };
        let config: tokio_postgres::Config = url.parse().map_err(|e| err(PgProblem::Url(e)))?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(32)
            .build()
            .map_err(|e| err(PgProblem::Pool(e)))?;
        let pg = PgCheckpoint {
            pool,
            url: shown,
            lease,
        };
        pg.migrate().await?;
        Ok(pg)
    }

    /// The URL, without its password.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Its lease settings.
    pub fn lease(&self) -> LeaseSettings {
        self.lease
    }

    fn err(&self, problem: PgProblem) -> Error {
        Error::Postgres {
            url: self.url.to_string(),
            problem,
        }
    }

    fn q(&self) -> impl Fn(tokio_postgres::Error) -> Error + '_ {
        |e| self.err(PgProblem::Query(e))
    }

    async fn conn(&self) -> Result<Object> {
        self.pool
            .get()
            .await
            .map_err(|e| self.err(PgProblem::Connect(e)))
    }

    fn lease_s(&self) -> f64 {
        self.lease.lease.as_secs_f64()
    }

    async fn migrate(&self) -> Result<()> {
        let q = self.q();
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(&q)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(&q)?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            .await
            .map_err(&q)?;
        let found: i32 = tx
            .query_one("SELECT coalesce(max(version), 0) FROM schema_version", &[])
            .await
            .map_err(&q)?
            .get(0);
        if found > SCHEMA_VERSION {
            return Err(self.err(PgProblem::SchemaVersion {
                found,
                expected: SCHEMA_VERSION,
            }));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
            let version = i as i32 + 1;
            tx.batch_execute(sql).await.map_err(&q)?;
            tx.execute(
                "INSERT INTO schema_version (version) VALUES ($1)",
                &[&version],
            )
            .await
            .map_err(&q)?;
        }
        tx.commit().await.map_err(&q)
    }

    /// Records the start of a worker process: a run (`command`) and its worker row.
    pub async fn register(&self, command: &str) -> Result<RunId> {
        let q = self.q();
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(&q)?;
        let pid = i64::from(std::process::id());
        let run: i64 = tx
            .query_one(
                "INSERT INTO runs (command, pid, started_at) VALUES ($1, $2, $3) RETURNING id",
                &[&command, &pid, &now()],
            )
            .await
            .map_err(&q)?
            .get(0);
        tx.execute(
            "INSERT INTO workers (run_id, host, pid) VALUES ($1, $2, $3)",
            &[&run, &host_name(), &pid],
        )
        .await
        .map_err(&q)?;
        tx.commit().await.map_err(&q)?;
        Ok(run)
    }

    /// A worker's heartbeat: it is alive, running `tasks`.
    pub async fn beat(&self, run: RunId, tasks: &[String]) -> Result<()> {
        let c = self.conn().await?;
        c.execute(
            "UPDATE workers SET heartbeat_at = now(), tasks = $2 WHERE run_id = $1",
            &[&run, &tasks.join(",")],
        )
        .await
        .map_err(self.q())?;
        Ok(())
    }

    /// The end of a worker: its run ends with `status`.
    pub async fn unregister(&self, run: RunId, status: &str) -> Result<()> {
        let c = self.conn().await?;
        c.execute(
            "UPDATE workers SET stopped_at = now(), heartbeat_at = now(), tasks = '' WHERE run_id = $1",
            &[&run],
        )
        .await
        .map_err(self.q())?;
        Checkpoint::end_run(self, run, status).await
    }

    /// Every worker, newest first.
    pub async fn workers(&self) -> Result<Vec<WorkerRow>> {
        let c = self.conn().await?;
        let rows = c
            .query(
                "SELECT run_id, host, pid, to_char(heartbeat_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), extract(epoch FROM now() - heartbeat_at)::float8, tasks, stopped_at IS NOT NULL FROM workers ORDER BY run_id DESC",
                &[],
            )
            .await
            .map_err(self.q())?;
        Ok(rows
            .iter()
            .map(|r| {
                let tasks: String = r.get(5);
                WorkerRow {
                    run_id: r.get(0),
                    host: r.get(1),
                    pid: u32::try_from(r.get::<_, i64>(2)).unwrap_or(0),
                    last_heartbeat: r.get(3),
                    heartbeat_age_s: r.get(4),
                    tasks: tasks
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect(),
                    stopped: r.get(6),
                }
            })
            .collect())
    }

    /// Claims the lowest ready task of `kinds` for `run` (see [`PgCheckpoint::claim`]).
    pub async fn claim_next(
        &self,
        run: RunId,
        kinds: &[TaskKind],
    ) -> Result<Option<(TaskRow, Attempt)>> {
        Ok(self.claim(run, kinds, 1).await?.pop())
    }

    /// Claims up to `n` ready tasks of `kinds` for `run`, lowest ids first, in one statement:
    /// pending, past their backoff, every dependency succeeded (whoever ran it), not locked
    /// by another claimer (`FOR UPDATE SKIP LOCKED`). Each becomes `running` under a new
    /// attempt with a lease.
    pub async fn claim(
        &self,
        run: RunId,
        kinds: &[TaskKind],
        n: usize,
    ) -> Result<Vec<(TaskRow, Attempt)>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let kinds: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
        let c = self.conn().await?;
        let stmt = c.prepare_cached(&CLAIM_SQL).await.map_err(self.q())?;
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        let rows = c
            .query(&stmt, &[&kinds, &now(), &run, &self.lease_s(), &n])
            .await
            .map_err(self.q())?;
        let mut claimed = Vec::with_capacity(rows.len());
        for row in &rows {
            let task = row_to_task(row).map_err(|p| self.err(p))?;
            let attempt = Attempt {
                task: task.id,
                run,
                number: task.attempts,
            };
            claimed.push((task, attempt));
        }
        claimed.sort_by_key(|(t, _)| t.id);
        Ok(claimed)
    }

    /// How many times the task ran since it was last (re)queued by hand or by a rebuild.
    pub async fn tries(&self, task: TaskId) -> Result<u32> {
        let c = self.conn().await?;
        let n: i32 = c
            .query_one(
                &self
                    .prepared(&c, "SELECT tries FROM tasks WHERE id = $1")
                    .await?,
                &[&task],
            )
            .await
            .map_err(self.q())?
            .get(0);
        Ok(n.max(0) as u32)
    }

    /// Renews the lease of `attempt`; `false` when it is no longer the task's (another
    /// attempt took over, or the task moved on).
    pub async fn renew(&self, attempt: &Attempt) -> Result<bool> {
        let c = self.conn().await?;
        let n = c
            .execute(
                &self.prepared(&c, "UPDATE tasks SET lease_until = now() + make_interval(secs => $3) WHERE id = $1 AND attempts = $2 AND state = 'running'").await?,
                &[&attempt.task, &(attempt.number as i32), &self.lease_s()],
            )
            .await
            .map_err(self.q())?;
        Ok(n > 0)
    }

    /// The fence of `attempt`, checked right before it publishes a file: refused with
    /// [`Error::LeaseLost`] unless the task is still running this attempt under a lease
    /// that has not expired.
    pub async fn fence(&self, attempt: &Attempt) -> Result<()> {
        let c = self.conn().await?;
        let row = c
            .query_opt(
                &self.prepared(&c, "SELECT key, attempts, state = 'running' AND lease_until > now() FROM tasks WHERE id = $1 FOR SHARE").await?,
                &[&attempt.task],
            )
            .await
            .map_err(self.q())?;
        let Some(row) = row else {
            return Err(self.err(PgProblem::BadRow {
                id: attempt.task,
                what: "no such task",
            }));
        };
        let current = row.get::<_, i32>(1).max(0) as u32;
        if current == attempt.number && row.get::<_, bool>(2) {
            return Ok(());
        }
        Err(Error::LeaseLost {
            task: row.get(0),
            attempt: attempt.number,
            current,
        })
    }

    /// Ends `attempt` with `change`, fenced: applied only if the task is still running this
    /// attempt; returns whether it was. A failed attempt that will be tried again waits
    /// `retry_in` before it can be claimed.
    pub async fn finish(
        &self,
        attempt: &Attempt,
        change: Change<'_>,
        retry_in: Duration,
    ) -> Result<bool> {
        let c = self.conn().await?;
        let (id, n) = (&attempt.task, &(attempt.number as i32));
        let guard = "id = $1 AND attempts = $2 AND state = 'running'";
        let done = match change {
            Change::AttemptFailed { error, .. } => {
                c.execute(
                    &self.prepared(&c, &format!("UPDATE tasks SET state = 'pending', last_error = $3, lease_until = NULL, not_before = now() + make_interval(secs => $4) WHERE {guard}")).await?,
                    &[id, n, &error, &retry_in.as_secs_f64()],
                )
                .await
            }
            Change::Succeed(out) => {
                c.execute(
                    &self.prepared(&c, &format!("UPDATE tasks SET state = 'succeeded', ended_at = $3, last_error = NULL, missing = NULL, cmr_hits = $4, items_written = $5, output_path = $6, output_size = $7, lease_until = NULL WHERE {guard}")).await?,
                    &[id, n, &now(), &out.cmr_hits.map(|h| h as i64), &(out.items_written as i64), &out.output_path, &(out.output_size as i64)],
                )
                .await
            }
            Change::Fail { error, missing } => {
                let missing = missing_json(missing);
                c.execute(
                    &self.prepared(&c, &format!("UPDATE tasks SET state = 'failed', ended_at = $3, last_error = $4, missing = $5, lease_until = NULL WHERE {guard}")).await?,
                    &[id, n, &now(), &error, &missing],
                )
                .await
            }
            Change::Requeue | Change::Retry => {
                c.execute(
                    &self.prepared(&c, &format!("UPDATE tasks SET state = 'pending', tries = 0, lease_until = NULL WHERE {guard}")).await?,
                    &[id, n],
                )
                .await
            }
        }
        .map_err(self.q())?;
        Ok(done > 0)
    }

    /// The rows of the tasks `task` depends on.
    pub async fn inputs(&self, task: TaskId) -> Result<Vec<TaskRow>> {
        let c = self.conn().await?;
        let rows = c
            .query(
                &self.prepared(&c, &format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id IN (SELECT depends_on FROM deps WHERE task_id = $1) ORDER BY id")).await?,
                &[&task],
            )
            .await
            .map_err(self.q())?;
        rows.iter()
            .map(|r| row_to_task(r).map_err(|p| self.err(p)))
            .collect()
    }

    /// Whether nothing is left to do (of `scope`, if given): no task running anywhere, and
    /// no pending task whose dependencies all succeeded (what waits on a failure waits for
    /// `retry-failed`).
    pub async fn idle(&self, scope: Option<&[TaskId]>) -> Result<bool> {
        let c = self.conn().await?;
        let all: Vec<TaskId> = Vec::new();
        let (limit, ids) = match scope {
            Some(s) => (true, s),
            None => (false, all.as_slice()),
        };
        let busy: bool = c
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM tasks t WHERE (NOT $1 OR t.id = ANY($2)) AND (
                    t.state = 'running' OR (t.state = 'pending' AND NOT EXISTS (
                        SELECT 1 FROM deps d JOIN tasks u ON u.id = d.depends_on
                        WHERE d.task_id = t.id AND u.state <> 'succeeded'))))",
                &[&limit, &ids],
            )
            .await
            .map_err(self.q())?
            .get(0);
        Ok(!busy)
    }

    /// This process's share of the `total` CMR slots shared by every worker: session
    /// advisory locks on a connection of its own, so the server frees them if the process
    /// dies.
    pub async fn cmr_slots(&self, total: u32) -> Result<CmrSlots> {
        Ok(CmrSlots {
            conn: tokio::sync::Mutex::new((self.conn().await?, Vec::new())),
            total: i32::try_from(total.max(1)).unwrap_or(i32::MAX),
            pg: self.clone(),
        })
    }

    async fn exec(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        let c = self.conn().await?;
        let statement = self.prepared(&c, sql).await?;
        c.execute(&statement, params).await.map_err(self.q())
    }

    /// `sql` prepared on `c` once (the pool's statement cache): a query is then one round
    /// trip, and the server may keep its plan.
    async fn prepared(&self, c: &Object, sql: &str) -> Result<tokio_postgres::Statement> {
        c.prepare_cached(sql).await.map_err(self.q())
    }
}

/// The CMR slots one process holds (one per harvest or changes query it runs), out of the
/// slots shared by every worker.
pub struct CmrSlots {
    /// The connection holding the locks, and the slots it holds.
    conn: tokio::sync::Mutex<(Object, Vec<i32>)>,
    total: i32,
    pg: PgCheckpoint,
}

impl CmrSlots {
    /// Takes up to `n` free slots, in one statement; the slots taken.
    pub async fn take(&self, n: usize) -> Result<Vec<i32>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let mut guard = self.conn.lock().await;
        let (c, held) = &mut *guard;
        // A session's advisory locks stack: the slots it holds already are left out.
        let stmt = c
            .prepare_cached(
                "SELECT s FROM generate_series(0, $2 - 1) AS s
                 WHERE NOT s = ANY($3) AND pg_try_advisory_lock($1, s) LIMIT $4",
            )
            .await
            .map_err(self.pg.q())?;
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        let rows = c
            .query(&stmt, &[&CMR_LOCKS, &self.total, &*held, &n])
            .await
            .map_err(self.pg.q())?;
        let taken: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
        held.extend(&taken);
        Ok(taken)
    }

    /// Gives `slots` back.
    pub async fn give_back(&self, slots: &[i32]) -> Result<()> {
        if slots.is_empty() {
            return Ok(());
        }
        let mut guard = self.conn.lock().await;
        let (c, held) = &mut *guard;
        let stmt = c
            .prepare_cached("SELECT pg_advisory_unlock($1, s) FROM unnest($2::int[]) AS s")
            .await
            .map_err(self.pg.q())?;
        c.query(&stmt, &[&CMR_LOCKS, &slots])
            .await
            .map_err(self.pg.q())?;
        held.retain(|s| !slots.contains(s));
        Ok(())
    }

    /// How many slots this process holds.
    pub async fn held(&self) -> usize {
        self.conn.lock().await.1.len()
    }
}

fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

fn missing_json(missing: &[(String, String)]) -> Option<String> {
    if missing.is_empty() {
        None
    } else {
        serde_json::to_string(missing).ok()
    }
}

fn row_to_task(r: &tokio_postgres::Row) -> std::result::Result<TaskRow, PgProblem> {
    let id: i64 = r.get(0);
    let bad = |what| PgProblem::BadRow { id, what };
    let kind = TaskKind::parse(r.get(1)).ok_or(bad("unknown task kind"))?;
    let collection: Collection = r
        .get::<_, String>(3)
        .parse()
        .map_err(|_| bad("unknown collection"))?;
    let day = match r.get::<_, Option<String>>(4) {
        Some(d) => Some(d.parse::<NaiveDate>().map_err(|_| bad("bad day"))?),
        None => None,
    };
    let month: Month = r
        .get::<_, String>(5)
        .parse()
        .map_err(|_| bad("bad month"))?;
    let state = TaskState::parse(r.get(6)).ok_or(bad("bad state"))?;
    let missing = r
        .get::<_, Option<String>>(15)
        .and_then(|m| serde_json::from_str(&m).ok())
        .unwrap_or_default();
    let unsigned = |v: Option<i64>| v.map(|v| v.max(0) as u64);
    Ok(TaskRow {
        id,
        spec: TaskSpec {
            kind,
            collection,
            day,
            month,
        },
        key: r.get(2),
        state,
        attempts: r.get::<_, i32>(7).max(0) as u32,
        last_error: r.get(8),
        started_at: r.get(9),
        ended_at: r.get(10),
        cmr_hits: unsigned(r.get(11)),
        items_written: unsigned(r.get(12)),
        output_path: r.get(13),
        output_size: unsigned(r.get(14)),
        missing,
        run_id: r.get(16),
    })
}

impl Checkpoint for PgCheckpoint {
    async fn plan(&self, tasks: &[TaskSpec], deps: &[(usize, usize)]) -> Result<Vec<TaskId>> {
        let q = self.q();
        let mut kinds = Vec::with_capacity(tasks.len());
        let mut keys = Vec::with_capacity(tasks.len());
        let mut collections = Vec::with_capacity(tasks.len());
        let mut days = Vec::with_capacity(tasks.len());
        let mut months = Vec::with_capacity(tasks.len());
        for t in tasks {
            kinds.push(t.kind.as_str());
            keys.push(t.key());
            collections.push(t.collection.short_name());
            days.push(t.day.map(|d| d.to_string()));
            months.push(t.month.to_string());
        }
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(&q)?;
        // In key order, so that concurrent plans wait for each other instead of deadlocking.
        tx.execute(
            "INSERT INTO tasks (kind, key, collection, day, month, state)
             SELECT kind, key, collection, day, month, 'pending'
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
                  AS t(kind, key, collection, day, month)
             ORDER BY key
             ON CONFLICT (key) DO NOTHING",
            &[&kinds, &keys, &collections, &days, &months],
        )
        .await
        .map_err(&q)?;
        let rows = tx
            .query("SELECT key, id FROM tasks WHERE key = ANY($1)", &[&keys])
            .await
            .map_err(&q)?;
        let by_key: std::collections::HashMap<String, i64> =
            rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        let ids: Vec<i64> = keys.iter().map(|k| by_key[k]).collect();
        let (from, to): (Vec<i64>, Vec<i64>) = deps.iter().map(|&(t, d)| (ids[t], ids[d])).unzip();
        tx.execute(
            "INSERT INTO deps (task_id, depends_on)
             SELECT * FROM unnest($1::bigint[], $2::bigint[]) AS d(t, d) ORDER BY 1, 2
             ON CONFLICT DO NOTHING",
            &[&from, &to],
        )
        .await
        .map_err(&q)?;
        tx.commit().await.map_err(&q)?;
        Ok(ids)
    }

    async fn tasks(&self) -> Result<Vec<TaskRow>> {
        let c = self.conn().await?;
        let rows = c
            .query(
                &format!("SELECT {TASK_COLUMNS} FROM tasks ORDER BY id"),
                &[],
            )
            .await
            .map_err(self.q())?;
        rows.iter()
            .map(|r| row_to_task(r).map_err(|p| self.err(p)))
            .collect()
    }

    async fn task(&self, id: TaskId) -> Result<Option<TaskRow>> {
        let c = self.conn().await?;
        let row = c
            .query_opt(
                &format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1"),
                &[&id],
            )
            .await
            .map_err(self.q())?;
        row.map(|r| row_to_task(&r).map_err(|p| self.err(p)))
            .transpose()
    }

    async fn deps(&self) -> Result<Vec<(TaskId, TaskId)>> {
        let c = self.conn().await?;
        let rows = c
            .query("SELECT task_id, depends_on FROM deps", &[])
            .await
            .map_err(self.q())?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn start_run(&self, command: &str) -> Result<RunId> {
        let c = self.conn().await?;
        let pid = i64::from(std::process::id());
        Ok(c.query_one(
            "INSERT INTO runs (command, pid, started_at) VALUES ($1, $2, $3) RETURNING id",
            &[&command, &pid, &now()],
        )
        .await
        .map_err(self.q())?
        .get(0))
    }

    async fn end_run(&self, run: RunId, status: &str) -> Result<()> {
        self.exec(
            "UPDATE runs SET ended_at = $1, status = $2 WHERE id = $3",
            &[&now(), &status, &run],
        )
        .await
        .map(|_| ())
    }

    async fn last_run(&self) -> Result<Option<RunRow>> {
        let c = self.conn().await?;
        let row = c
            .query_opt(
                "SELECT id, command, pid, started_at, ended_at, status FROM runs ORDER BY id DESC LIMIT 1",
                &[],
            )
            .await
            .map_err(self.q())?;
        Ok(row.map(|r| RunRow {
            id: r.get(0),
            command: r.get(1),
            pid: u32::try_from(r.get::<_, i64>(2)).unwrap_or(0),
            started_at: r.get(3),
            ended_at: r.get(4),
            status: r.get(5),
        }))
    }

    async fn claim(&self, task: TaskId, run: RunId) -> Result<Option<Attempt>> {
        let c = self.conn().await?;
        let row = c
            .query_opt(
                "UPDATE tasks SET state = 'running', attempts = attempts + 1, tries = tries + 1, started_at = $1, ended_at = NULL, run_id = $2, not_before = NULL, lease_until = now() + make_interval(secs => $4) WHERE id = $3 AND state = 'pending' RETURNING attempts",
                &[&now(), &run, &task, &self.lease_s()],
            )
            .await
            .map_err(self.q())?;
        Ok(row.map(|r| Attempt {
            task,
            run,
            number: r.get::<_, i32>(0).max(0) as u32,
        }))
    }

    async fn transition(&self, task: TaskId, change: Change<'_>) -> Result<()> {
        let t = change.transition();
        let from: Vec<&str> = t.from_states().iter().map(|s| s.as_str()).collect();
        let guard = "id = $1 AND state = ANY($2)";
        let c = self.conn().await?;
        let n = match change {
            Change::AttemptFailed { error, .. } => {
                c.execute(
                    &self.prepared(&c, &format!("UPDATE tasks SET state = 'pending', last_error = $3, lease_until = NULL WHERE {guard}")).await?,
                    &[&task, &from, &error],
                )
                .await
            }
            Change::Succeed(out) => {
                c.execute(
                    &self.prepared(&c, &format!("UPDATE tasks SET state = 'succeeded', ended_at = $3, last_error = NULL, missing = NULL, cmr_hits = $4, items_written = $5, output_path = $6, output_size = $7, lease_until = NULL WHERE {guard}")).await?,
                    &[&task, &from, &now(), &out.cmr_hits.map(|h| h as i64), &(out.items_written as i64), &out.output_path, &(out.output_size as i64)],
                )
                .await
            }
            Change::Fail { error, missing } => {
                c.execute(
                    &self.prepared(&c, &format!("UPDATE tasks SET state = 'failed', ended_at = $3, last_error = $4, missing = $5, lease_until = NULL WHERE {guard}")).await?,
                    &[&task, &from, &now(), &error, &missing_json(missing)],
                )
                .await
            }
            Change::Requeue | Change::Retry => {
                c.execute(
                    &self.prepared(&c, &format!("UPDATE tasks SET state = 'pending', tries = 0, lease_until = NULL, not_before = NULL WHERE {guard}")).await?,
                    &[&task, &from],
                )
                .await
            }
        }
        .map_err(self.q())?;
        if n > 0 {
            return Ok(());
        }
        let found = c
            .query_opt("SELECT key, state FROM tasks WHERE id = $1", &[&task])
            .await
            .map_err(self.q())?;
        match found {
            Some(r) => match TaskState::parse(r.get(1)) {
                Some(from) => Err(illegal(r.get(0), from, t)),
                None => Err(self.err(PgProblem::BadRow {
                    id: task,
                    what: "bad state",
                })),
            },
            None => Err(self.err(PgProblem::BadRow {
                id: task,
                what: "no such task",
            })),
        }
    }

    async fn log(&self, events: &[Arc<Event>]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut at = Vec::with_capacity(events.len());
        let mut runs = Vec::with_capacity(events.len());
        let mut tasks = Vec::with_capacity(events.len());
        let mut names = Vec::with_capacity(events.len());
        let mut details = Vec::with_capacity(events.len());
        for e in events {
            at.push(super::stamp(e.at));
            runs.push(e.run);
            tasks.push(e.task);
            names.push(e.name());
            details.push(Some(e.detail()));
        }
        self.exec(
            "INSERT INTO events (at, run_id, task_id, event, detail)
             SELECT at, run_id, task_id, event, detail
             FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::text[])
             WITH ORDINALITY AS e(at, run_id, task_id, event, detail, n) ORDER BY n",
            &[&at, &runs, &tasks, &names, &details],
        )
        .await
        .map(|_| ())
    }

    async fn events(&self, task: TaskId) -> Result<Vec<EventRow>> {
        let c = self.conn().await?;
        let rows = c
            .query(
                "SELECT at, event, detail FROM events WHERE task_id = $1 ORDER BY id",
                &[&task],
            )
            .await
            .map_err(self.q())?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    /// Tasks whose lease expired go back to pending; runs whose worker stopped beating
    /// become `interrupted`.
    async fn recover(&self) -> Result<usize> {
        let q = self.q();
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(&q)?;
        let rows = tx
            .query(
                "UPDATE tasks SET state = 'pending', lease_until = NULL
                 WHERE id IN (SELECT id FROM tasks WHERE state = 'running' AND (lease_until IS NULL OR lease_until <= now()) FOR UPDATE SKIP LOCKED)
                 RETURNING id",
                &[],
            )
            .await
            .map_err(&q)?;
        let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        if !ids.is_empty() {
            tx.execute(
                "INSERT INTO events (at, task_id, event, detail)
                 SELECT $1::text, id, 'recovered', 'its lease expired (its worker died or hangs); will run again'
                 FROM unnest($2::bigint[]) AS t(id)",
                &[&now(), &ids],
            )
            .await
            .map_err(&q)?;
        }
        tx.execute(
            "UPDATE runs SET status = 'interrupted', ended_at = $1
             WHERE status = 'running' AND NOT EXISTS (
                SELECT 1 FROM workers w WHERE w.run_id = runs.id AND w.stopped_at IS NULL
                  AND w.heartbeat_at + make_interval(secs => $2) > now())",
            &[&now(), &self.lease_s()],
        )
        .await
        .map_err(&q)?;
        tx.commit().await.map_err(&q)?;
        Ok(ids.len())
    }

    async fn meta(&self, key: &str) -> Result<Option<String>> {
        let c = self.conn().await?;
        let row = c
            .query_opt("SELECT value FROM meta WHERE key = $1", &[&key])
            .await
            .map_err(self.q())?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.exec(
            "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&key, &value],
        )
        .await
        .map(|_| ())
    }

    async fn claim_meta(&self, key: &str, value: &str) -> Result<String> {
        // An upsert that changes nothing, so that the row comes back whoever inserted it: of
        // two racing inserts the second waits for the first to commit, then takes its row.
        let c = self.conn().await?;
        let row = c
            .query_one(
                "INSERT INTO meta (key, value) VALUES ($1, $2)
                 ON CONFLICT (key) DO UPDATE SET value = meta.value RETURNING value",
                &[&key, &value],
            )
            .await
            .map_err(self.q())?;
        Ok(row.get(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::checkpoint::TaskOutput;
    use crate::engine::checkpoint::pg_server;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2024, 5, d).unwrap()
    }

    fn month_plan() -> (Vec<TaskSpec>, Vec<(usize, usize)>) {
        (
            vec![
                TaskSpec::harvest(Collection::Hlsl30, day(1)),
                TaskSpec::harvest(Collection::Hlsl30, day(2)),
                TaskSpec::repartition(Collection::Hlsl30, Month::new(2024, 5).unwrap()),
            ],
            vec![(2, 0), (2, 1)],
        )
    }

    fn short() -> LeaseSettings {
        LeaseSettings {
            lease: Duration::from_millis(300),
            heartbeat: Duration::from_millis(100),
        }
    }

    async fn pg(lease: LeaseSettings) -> Option<PgCheckpoint> {
        let url = pg_server::database()?;
        Some(PgCheckpoint::connect(&url, lease).await.unwrap())
    }

    #[tokio::test]
    async fn a_repartition_is_claimed_only_when_all_its_days_succeeded() {
        let Some(pg) = pg(short()).await else { return };
        let (tasks, deps) = month_plan();
        let ids = pg.plan(&tasks, &deps).await.unwrap();
        let run = pg.register("test").await.unwrap();
        let all = [TaskKind::Harvest, TaskKind::Repartition];
        let (a, first) = pg.claim_next(run, &all).await.unwrap().unwrap();
        let (b, second) = pg.claim_next(run, &all).await.unwrap().unwrap();
        assert_eq!(
            (a.id, b.id),
            (ids[0], ids[1]),
            "days first, lowest id first"
        );
        assert_eq!((first.number, second.number), (1, 1));
        assert!(
            pg.claim_next(run, &all).await.unwrap().is_none(),
            "the month waits"
        );
        let out = TaskOutput::default();
        assert!(
            pg.finish(&first, Change::Succeed(&out), Duration::ZERO)
                .await
                .unwrap()
        );
        assert!(
            pg.claim_next(run, &all).await.unwrap().is_none(),
            "one day is not done"
        );
        assert!(!pg.idle(None).await.unwrap());
        assert!(
            pg.finish(&second, Change::Succeed(&out), Duration::ZERO)
                .await
                .unwrap()
        );
        let (m, _) = pg
            .claim_next(run, &[TaskKind::Harvest])
            .await
            .unwrap()
            .map_or((None, None), |(t, a)| (Some(t), Some(a)));
        assert!(m.is_none(), "only the kinds asked for");
        let (m, attempt) = pg.claim_next(run, &all).await.unwrap().unwrap();
        assert_eq!(m.id, ids[2]);
        assert!(
            pg.finish(&attempt, Change::Succeed(&out), Duration::ZERO)
                .await
                .unwrap()
        );
        assert!(pg.idle(None).await.unwrap());
        assert!(pg.idle(Some(&ids[..1])).await.unwrap());
    }

    #[tokio::test]
    async fn an_expired_lease_returns_the_task_and_fences_the_old_attempt() {
        let Some(pg) = pg(short()).await else { return };
        let (tasks, deps) = month_plan();
        let ids = pg.plan(&tasks, &deps).await.unwrap();
        let run = pg.register("test").await.unwrap();
        let (_, old) = pg
            .claim_next(run, &[TaskKind::Harvest])
            .await
            .unwrap()
            .unwrap();
        // A live lease stays; renewed, it outlives its first deadline.
        assert_eq!(pg.recover().await.unwrap(), 0);
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(pg.renew(&old).await.unwrap());
        }
        assert_eq!(pg.recover().await.unwrap(), 0);
        pg.fence(&old).await.unwrap();
        // Not renewed, it expires: the fence refuses it at once, and recover takes it back.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let e = pg.fence(&old).await.unwrap_err();
        assert!(
            matches!(
                e,
                Error::LeaseLost {
                    attempt: 1,
                    current: 1,
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(pg.recover().await.unwrap(), 1);
        let events = pg.events(ids[0]).await.unwrap();
        assert!(events.iter().any(|e| e.1 == "recovered"), "{events:?}");
        let (again, new) = pg
            .claim_next(run, &[TaskKind::Harvest])
            .await
            .unwrap()
            .unwrap();
        assert_eq!((again.id, new.number), (ids[0], 2));
        // The old attempt can neither renew, publish, nor end the task.
        assert!(!pg.renew(&old).await.unwrap());
        let e = pg.fence(&old).await.unwrap_err();
        assert!(
            matches!(
                e,
                Error::LeaseLost {
                    attempt: 1,
                    current: 2,
                    ..
                }
            ),
            "{e}"
        );
        let out = TaskOutput {
            items_written: 9,
            ..TaskOutput::default()
        };
        assert!(
            !pg.finish(&old, Change::Succeed(&out), Duration::ZERO)
                .await
                .unwrap()
        );
        assert_eq!(
            pg.task(ids[0]).await.unwrap().unwrap().state,
            TaskState::Running
        );
        pg.fence(&new).await.unwrap();
        assert!(
            pg.finish(&new, Change::Succeed(&out), Duration::ZERO)
                .await
                .unwrap()
        );
        let row = pg.task(ids[0]).await.unwrap().unwrap();
        assert_eq!(
            (row.state, row.attempts, row.items_written),
            (TaskState::Succeeded, 2, Some(9))
        );
    }

    #[tokio::test]
    async fn a_failed_attempt_waits_out_its_backoff_and_counts_its_tries() {
        let Some(pg) = pg(short()).await else { return };
        let (tasks, deps) = month_plan();
        let ids = pg.plan(&tasks[..1], &deps[..0]).await.unwrap();
        let run = pg.register("test").await.unwrap();
        let (_, a) = pg
            .claim_next(run, &[TaskKind::Harvest])
            .await
            .unwrap()
            .unwrap();
        let boom = Change::AttemptFailed {
            attempt: 1,
            error: "boom",
        };
        assert!(
            pg.finish(&a, boom, Duration::from_millis(300))
                .await
                .unwrap()
        );
        assert!(
            pg.claim_next(run, &[TaskKind::Harvest])
                .await
                .unwrap()
                .is_none(),
            "backing off"
        );
        assert!(!pg.idle(None).await.unwrap(), "it will be ready");
        tokio::time::sleep(Duration::from_millis(350)).await;
        let (_, b) = pg
            .claim_next(run, &[TaskKind::Harvest])
            .await
            .unwrap()
            .unwrap();
        assert_eq!(b.number, 2);
        assert_eq!(pg.tries(ids[0]).await.unwrap(), 2);
        let fail = Change::Fail {
            error: "boom",
            missing: &[],
        };
        assert!(pg.finish(&b, fail, Duration::ZERO).await.unwrap());
        assert!(
            pg.idle(None).await.unwrap(),
            "a failed task waits for retry-failed"
        );
        pg.transition(ids[0], Change::Retry).await.unwrap();
        assert_eq!(
            pg.tries(ids[0]).await.unwrap(),
            0,
            "a retry starts the count again"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_plans_create_each_task_once() {
        let Some(url) = pg_server::database() else {
            return;
        };
        let (tasks, deps) = month_plan();
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..6 {
            let (url, tasks, deps) = (url.clone(), tasks.clone(), deps.clone());
            set.spawn(async move {
                let pg = PgCheckpoint::connect(&url, short()).await.unwrap();
                pg.plan(&tasks, &deps).await.unwrap()
            });
        }
        let all = set.join_all().await;
        assert!(all.windows(2).all(|w| w[0] == w[1]), "{all:?}");
        let pg = PgCheckpoint::connect(&url, short()).await.unwrap();
        assert_eq!(pg.tasks().await.unwrap().len(), 3);
        assert_eq!(pg.deps().await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn migrates_once_and_refuses_a_newer_schema() {
        let Some(url) = pg_server::database() else {
            return;
        };
        let pg = PgCheckpoint::connect(&url, short()).await.unwrap();
        drop(PgCheckpoint::connect(&url, short()).await.unwrap());
        let versions = pg.exec("SELECT 1 FROM schema_version", &[]).await.unwrap();
        assert_eq!(versions, 1, "one migration recorded, once");
        assert_eq!(pg.meta("app").await.unwrap().as_deref(), Some("hls-flow"));
        pg.exec("INSERT INTO schema_version (version) VALUES (99)", &[])
            .await
            .unwrap();
        let e = PgCheckpoint::connect(&url, short()).await.unwrap_err();
        assert!(e.to_string().contains("schema version 99"), "{e}");
        let e = PgCheckpoint::connect("postgres://nobody@127.0.0.1:1/none", short())
            .await
            .unwrap_err();
        assert!(e.to_string().contains("cannot connect"), "{e}");
        let e = PgCheckpoint::connect("postgres://u:secret@127.0.0.1:1/db", short())
            .await
            .unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
    }

    #[tokio::test]
    async fn cmr_slots_are_shared_between_pools() {
        let Some(url) = pg_server::database() else {
            return;
        };
        let a = PgCheckpoint::connect(&url, short()).await.unwrap();
        let b = PgCheckpoint::connect(&url, short()).await.unwrap();
        let (a, b) = (a.cmr_slots(3).await.unwrap(), b.cmr_slots(3).await.unwrap());
        let first = a.take(2).await.unwrap();
        assert_eq!(first.len(), 2);
        // One left for the other process; none for either after that.
        let second = b.take(2).await.unwrap();
        assert_eq!(second.len(), 1);
        assert!(!first.contains(&second[0]));
        assert!(a.take(1).await.unwrap().is_empty());
        assert!(b.take(1).await.unwrap().is_empty());
        // Given back, a slot is free for either; a process never takes one it holds twice.
        b.give_back(&second).await.unwrap();
        assert_eq!(a.take(5).await.unwrap(), second);
        assert_eq!(a.held().await, 3);
        a.give_back(&first).await.unwrap();
        assert_eq!(b.take(5).await.unwrap().len(), 2);
        assert_eq!((a.held().await, b.held().await), (1, 2));
    }

    #[tokio::test]
    async fn workers_show_their_heartbeat_and_tasks() {
        let Some(pg) = pg(short()).await else { return };
        let run = pg.register("worker").await.unwrap();
        pg.beat(run, &["harvest/HLSL30/2024-05-01".into()])
            .await
            .unwrap();
        let w = pg.workers().await.unwrap();
        assert_eq!(w.len(), 1);
        assert_eq!((w[0].pid, w[0].stopped), (std::process::id(), false));
        assert_eq!(w[0].tasks, ["harvest/HLSL30/2024-05-01"]);
        assert!(
            w[0].last_heartbeat.ends_with('Z'),
            "{}",
            w[0].last_heartbeat
        );
        // A live worker's run is not interrupted by recover; a silent one's is.
        pg.recover().await.unwrap();
        assert_eq!(pg.last_run().await.unwrap().unwrap().status, "running");
        tokio::time::sleep(Duration::from_millis(400)).await;
        pg.recover().await.unwrap();
        assert_eq!(pg.last_run().await.unwrap().unwrap().status, "interrupted");
        pg.unregister(run, "succeeded").await.unwrap();
        assert!(pg.workers().await.unwrap()[0].stopped);
    }
}
