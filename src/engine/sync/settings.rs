//! The sync settings a checkpoint keeps: watermarks, changes applied, an unfinished sync.

use crate::collection::Collection;
use crate::engine::checkpoint::{Checkpoint, stamp};
use crate::error::{Error, Result, StateProblem};
use chrono::{DateTime, Utc};
use std::collections::BTreeSet;

const STARTED: &str = "sync.started";
const OVERLAP: &str = "sync.overlap_seconds";

/// What a sync's changes task found for one collection, kept until the sync completes
/// (the report of a resumed sync, and the changes the completed sync applied).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct FoundRecord {
    /// Changes were asked for from this instant.
    pub since: DateTime<Utc>,
    /// Granules new or revised, not applied before.
    pub changed: usize,
    /// Granules deleted, not applied before.
    pub deleted: usize,
    /// Deleted granules the cache held.
    pub deleted_held: usize,
    /// Changes found again that an earlier sync applied.
    pub already_applied: usize,
    /// The days requeued.
    pub days: Vec<chrono::NaiveDate>,
    /// Every change found (granule UR, revision date), applied before or not.
    pub seen: Vec<(String, DateTime<Utc>)>,
}

/// The sync settings of a checkpoint.
pub struct SyncState<'a, C> {
    state: &'a C,
    /// The state file, for errors.
    path: String,
}

impl<'a, C: Checkpoint> SyncState<'a, C> {
    /// The sync settings of `state` (named `path` in errors).
    pub fn new(state: &'a C, path: impl Into<String>) -> SyncState<'a, C> {
        SyncState {
            state,
            path: path.into(),
        }
    }

    fn bad(&self, key: &str, value: &str) -> Error {
        Error::State {
            path: self.path.clone(),
            problem: StateProblem::BadSetting {
                key: key.to_string(),
                value: value.to_string(),
            },
        }
    }

    async fn time(&self, key: &str) -> Result<Option<DateTime<Utc>>> {
        match self.state.meta(key).await? {
            None => Ok(None),
            Some(v) if v.is_empty() => Ok(None),
            Some(v) => crate::engine::checkpoint::sqlite::parse_time(&v)
                .map(Some)
                .ok_or_else(|| self.bad(key, &v)),
        }
    }

    /// The watermark of `c`: changes at or after it may be missing from the cache.
    pub async fn watermark(&self, c: Collection) -> Result<Option<DateTime<Utc>>> {
        self.time(&format!("sync.watermark.{c}")).await
    }

    /// Sets the watermark of `c`.
    pub async fn set_watermark(&self, c: Collection, at: DateTime<Utc>) -> Result<()> {
        self.state
            .set_meta(&format!("sync.watermark.{c}"), &stamp(at))
            .await
    }

    /// The changes (granule UR, revision date) of `c` the last completed sync applied at or
    /// after its new watermark.
    pub async fn applied(&self, c: Collection) -> Result<BTreeSet<(String, String)>> {
        let key = format!("sync.applied.{c}");
        match self.state.meta(&key).await? {
            None => Ok(BTreeSet::new()),
            Some(v) if v.is_empty() => Ok(BTreeSet::new()),
            Some(v) => serde_json::from_str::<Vec<(String, String)>>(&v)
                .map(|list| list.into_iter().collect())
                .map_err(|_| self.bad(&key, &v)),
        }
    }

    /// Records the changes of `c` applied at or after its watermark.
    pub async fn set_applied(
        &self,
        c: Collection,
        changes: &BTreeSet<(String, String)>,
    ) -> Result<()> {
        let list: Vec<&(String, String)> = changes.iter().collect();
        let value = serde_json::to_string(&list).map_err(|source| Error::Json {
            what: "sync.applied",
            source,
        })?;
        self.state
            .set_meta(&format!("sync.applied.{c}"), &value)
            .await
    }

    /// What the changes task of `c` found in the sync not completed yet.
    pub(crate) async fn found(&self, c: Collection) -> Result<Option<FoundRecord>> {
        let key = format!("sync.found.{c}");
        match self.state.meta(&key).await? {
            None => Ok(None),
            Some(v) if v.is_empty() => Ok(None),
            Some(v) => serde_json::from_str(&v)
                .map(Some)
                .map_err(|_| self.bad(&key, &v)),
        }
    }

    /// Records (`Some`) or clears (`None`) what the changes task of `c` found.
    pub(crate) async fn set_found(&self, c: Collection, found: Option<&FoundRecord>) -> Result<()> {
        let value = match found {
            Some(f) => serde_json::to_string(f).map_err(|source| Error::Json {
                what: "sync.found",
                source,
            })?,
            None => String::new(),
        };
        self.state
            .set_meta(&format!("sync.found.{c}"), &value)
            .await
    }

    /// How far before its start the sync not completed yet sets the watermarks.
    pub async fn overlap(&self) -> Result<Option<chrono::Duration>> {
        match self.state.meta(OVERLAP).await? {
            None => Ok(None),
            Some(v) if v.is_empty() => Ok(None),
            Some(v) => v
                .parse::<i64>()
                .ok()
                .and_then(chrono::Duration::try_seconds)
                .map(Some)
                .ok_or_else(|| self.bad(OVERLAP, &v)),
        }
    }

    /// Records the overlap of the sync not completed yet.
    pub async fn set_overlap(&self, overlap: chrono::Duration) -> Result<()> {
        self.state
            .set_meta(OVERLAP, &overlap.num_seconds().to_string())
            .await
    }

    /// When the sync that has not completed began.
    pub async fn started(&self) -> Result<Option<DateTime<Utc>>> {
        self.time(STARTED).await
    }

    /// Records (`Some`) or clears (`None`) the start of a sync not completed yet.
    pub async fn set_started(&self, at: Option<DateTime<Utc>>) -> Result<()> {
        self.state
            .set_meta(STARTED, &at.map(stamp).unwrap_or_default())
            .await
    }
}
