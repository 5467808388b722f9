//! The CMR + LP DAAC emulator: an HTTP server on loopback that answers CMR's granule
//! search (`/search/granules.json`) as the real one does, and serves each granule's
//! `_stac.json` under `/lp-prod-public/…`.
//!
//! Granules come from the real recordings ([`DataSource::Replay`]) or from a deterministic
//! generator ([`DataSource::Synthetic`]). Paging follows what the recordings show: every
//! non-empty page carries `CMR-Search-After` (the key of its last entry), the client
//! repeats the same URI with a `cmr-search-after` header, and the page after the last hit
//! is empty and carries none.
//!
//! The archive changes at run time ([`ChangeSet`], by [`Emulator::apply_changes`] or
//! `PUT /_emulator/changes`): late ingests, revisions (new revision id and `updated`), and
//! deletions, listed by `/search/deleted-granules.json`; searches take `updated_since` and
//! `revision_date[]`.
//!
//! Faults are injected on demand ([`Faults`]): every n-th request, or a seeded random mix of
//! [`FaultKind`]s (429 with `Retry-After`, 5xx, partial `CMR-Timed-Out` pages, slow answers,
//! cut connections, broken bodies, wrong items, missing links, repeated entries, changing
//! hits), set at start, by [`Emulator::set_faults`], or by `PUT /_emulator/faults`.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use hls_flow_emulator::{DataSource, Emulator, EmulatorConfig};
//! let emu = Emulator::start(
//!     EmulatorConfig { source: DataSource::Replay, faults: Default::default() },
//!     "127.0.0.1:0".parse().unwrap(),
//! ).await?;
//! println!("CMR at {}/search/granules.json", emu.base_url());
//! emu.shutdown().await;
//! # Ok(()) }
//! ```

mod archive;
mod counts;
pub mod echo10;
mod entry;
mod faults;
mod handlers;
mod inject;
mod mgrs;
pub mod published;
pub mod replay;
mod rng;
mod search;
mod store;
pub mod synthetic;

pub use archive::{ChangeError, ChangeReport, ChangeSet, Changed, Late, Pick, Revise, Revision};
pub use counts::RequestCounts;
pub use faults::{FaultKind, Faults, Target};
pub use synthetic::SyntheticConfig;

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use chrono::NaiveDate;
use counts::Counters;
use hls_flow::collection::Collection;
use hls_flow::source::hls::GranuleMeta;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use store::Store;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How to run an emulator.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EmulatorConfig {
    /// Where the granules come from.
    pub source: DataSource,
    /// Faults to inject (none by default).
    pub faults: Faults,
}

/// Where the emulator's granules come from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum DataSource {
    /// The real recordings: HLSL30 granules of 2025-10-02..04 (as CMR returned them for
    /// `bounding_box=-93,46,-92,47`) and the HLSS30 granule
    /// `HLS.S30.T01WEV.2024153T000609.v2.0` of 2024-06-01.
    #[default]
    Replay,
    /// Deterministically generated granules.
    Synthetic(SyntheticConfig),
}

/// What the handlers share.
pub(crate) struct AppState {
    store: Store,
    /// The archive's clock, deletions and change sets.
    archive: archive::Archive,
    base: String,
    faults: std::sync::RwLock<Faults>,
    counters: Counters,
    fault_counts: std::sync::Mutex<BTreeMap<String, u64>>,
    request_seq: AtomicU64,
    started_ns: u64,
    /// Edits applied to chosen granules' `_stac.json` (see [`Emulator::edit_item`]).
    item_edits: std::sync::RwLock<std::collections::HashMap<String, ItemEdit>>,
}

/// An edit of a served `_stac.json`, as JSON (see [`Emulator::edit_item`]).
pub type ItemEdit = Arc<dyn Fn(&mut serde_json::Value) + Send + Sync>;

/// A running emulator. Dropping it stops the server too; [`Emulator::shutdown`] also
/// waits until it has stopped.
pub struct Emulator {
    base_url: String,
    state: Arc<AppState>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/search/granules.json", get(handlers::search))
        .route("/search/granules.echo10", get(handlers::search_echo10))
        .route(
            "/search/deleted-granules.json",
            get(handlers::deleted_granules),
        )
        .route(
            "/search/deleted-granules.xml",
            get(handlers::deleted_granules_xml),
        )
        .route("/lp-prod-public/{folder}/{id}/{file}", get(handlers::item))
        .route("/_emulator/counts", get(handlers::counts))
        .route(
            "/_emulator/faults",
            get(handlers::get_faults).put(handlers::put_faults),
        )
        .route(
            "/_emulator/changes",
            get(handlers::get_clock).put(handlers::put_changes),
        )
        .fallback(handlers::fallback)
        .with_state(state)
}

impl AppState {
    /// The faults in force.
    pub(crate) fn faults(&self) -> Faults {
        match self.faults.read() {
            Ok(f) => f.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the faults in force.
    pub(crate) fn set_faults(&self, faults: Faults) {
        match self.faults.write() {
            Ok(mut f) => *f = faults,
            Err(poisoned) => *poisoned.into_inner() = faults,
        }
    }

    /// Granule `id`'s `_stac.json` with its edit applied, if it has one.
    pub(crate) fn edited_item(&self, id: &str, body: Bytes) -> Bytes {
        let edit = match self.item_edits.read() {
            Ok(e) => e.get(id).cloned(),
            Err(poisoned) => poisoned.into_inner().get(id).cloned(),
        };
        let Some(edit) = edit else { return body };
        match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(mut value) => {
                edit(&mut value);
                Bytes::from(value.to_string())
            }
            Err(_) => body,
        }
    }

    /// Counts an injected fault (`None`: an every-n-th failure).
    pub(crate) fn record_fault(&self, kind: Option<FaultKind>) {
        counts::bump(&self.counters.faults_injected);
        let name = kind.map_or("every-nth", FaultKind::name);
        let mut map = match self.fault_counts.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        *map.entry(name.to_string()).or_default() += 1;
    }
}

impl Emulator {
    /// Binds `addr` (`127.0.0.1:0` picks a free port) and serves until shut down.
    /// Fails with `InvalidInput` for a synthetic configuration that cannot be served.
    pub async fn start(config: EmulatorConfig, addr: SocketAddr) -> std::io::Result<Emulator> {
        config
            .faults
            .validate()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        if let DataSource::Synthetic(s) = &config.source {
            s.validate()
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        }
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let mut local = listener.local_addr()?;
        if local.ip().is_unspecified() {
            local.set_ip(Ipv4Addr::LOCALHOST.into());
        }
        let base_url = format!("http://{local}");
        let store = match config.source {
            DataSource::Replay => Store::fixed(
                replay::load(&base_url)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?,
            ),
            DataSource::Synthetic(s) => Store::synthetic(s),
        };
        let started_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let state = Arc::new(AppState {
            store,
            archive: Default::default(),
            base: base_url.clone(),
            faults: std::sync::RwLock::new(config.faults),
            counters: Counters::default(),
            fault_counts: Default::default(),
            request_seq: AtomicU64::new(0),
            started_ns,
            item_edits: Default::default(),
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let app = router(state.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    // A dropped sender stops the server too.
                    let _ = stopped.await;
                })
                .await
        });
        tracing::info!(%base_url, "emulator listening");
        Ok(Emulator {
            base_url,
            state,
            stop: Some(stop),
            task,
        })
    }

    /// `http://127.0.0.1:PORT`: the CMR base and the LP DAAC base at once.
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    /// Changes the faults injected from now on (e.g. an outage, then recovery).
    pub fn set_faults(&self, faults: Faults) {
        self.state.set_faults(faults);
    }

    /// Faults injected so far, by kind (`429`, `slow`, …, and `every-nth`).
    pub fn fault_counts(&self) -> BTreeMap<String, u64> {
        match self.state.fault_counts.lock() {
            Ok(m) => m.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// From now on, serves granule `id`'s `_stac.json` changed by `edit` (e.g. an extra
    /// property, or an asset removed), to give the harvest items of a new shape. The body is
    /// re-rendered on each request; a later edit of the same granule replaces this one.
    pub fn edit_item(
        &self,
        id: &str,
        edit: impl Fn(&mut serde_json::Value) + Send + Sync + 'static,
    ) {
        let mut edits = match self.state.item_edits.write() {
            Ok(e) => e,
            Err(poisoned) => poisoned.into_inner(),
        };
        edits.insert(id.to_string(), Arc::new(edit));
    }

    /// Applies a change set (late ingests, revisions, deletions; see [`ChangeSet`]) and
    /// returns what changed. All or nothing: a refused change set changes nothing.
    pub fn apply_changes(&self, changes: &ChangeSet) -> Result<ChangeReport, ChangeError> {
        self.state.archive.apply(&self.state.store, changes)
    }

    /// The archive's clock: where the last change set with a `now` left it, else the
    /// system's. It stamps changes and bounds `deleted-granules.json`'s one year.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.state.archive.now()
    }

    /// Granule `id`'s current revision id (1 when never revised), `None` if it is not in
    /// the archive.
    pub fn revision_id(&self, id: &str) -> Option<u32> {
        let (day, i) = self.state.store.find(id)?;
        Some(day.granules[i].revision_id)
    }

    /// What has been answered so far.
    pub fn counts(&self) -> RequestCounts {
        self.state.counters.snapshot()
    }

    /// Every granule of `collection` whose begin time is in `day` (UTC), sorted as CMR
    /// sorts them (begin time, then concept-id number), as the archive is now (after the
    /// change sets applied so far). Empty outside the data.
    pub fn granules(&self, collection: Collection, day: NaiveDate) -> Vec<GranuleMeta> {
        self.state
            .store
            .day(collection, day)
            .map(|d| d.granules.iter().map(|g| g.meta.clone()).collect())
            .unwrap_or_default()
    }

    /// Stops accepting connections, lets open requests finish, and waits for the server.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match (&mut self.task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "emulator server failed"),
            Err(e) => tracing::warn!(error = %e, "emulator server task failed"),
        }
    }
}
