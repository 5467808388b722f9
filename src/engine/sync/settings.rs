//! The sync settings a checkpoint keeps: watermarks, changes applied, an unfinished sync.

use crate::collection::Collection;
use crate::engine::checkpoint::{Checkpoint, stamp};
use crate::error::{Error, Result, StateProblem};
use chrono::{DateTime, Utc};
use std::collections::BTreeSet;

const STARTED: &str = "sync.started";

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
