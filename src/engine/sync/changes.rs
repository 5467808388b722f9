//! The changes query of one collection: what CMR says changed since the watermark, and
//! the covered days it touches; run as the engine's changes task ([`ChangesQuery`]).

use super::{
    CollectionChanges, FoundRecord, SyncState, cmr_client, harvests_of, initial_watermark,
};
use crate::collection::Collection;
use crate::engine::checkpoint::{Checkpoint, TaskOutput, TaskRow, stamp};
use crate::engine::pipeline::RunConfig;
use crate::error::Result;
use crate::period::DayRange;
use crate::source::cmr::{CmrClient, GranuleQuery};
use crate::write::geoparquet::read_items;
use crate::write::output::Output;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use futures::TryStreamExt;
use futures::future::BoxFuture;
use object_store::path::Path as ObjPath;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

/// The executor of changes tasks: asks CMR what changed in the task's collection since its
/// watermark, records what it found (for the sync's report and its completion) and
/// returns the harvest tasks of the affected days to requeue. Over either checkpoint.
#[derive(Debug)]
pub struct ChangesQuery<C> {
    state: Arc<C>,
    client: CmrClient,
    cfg: RunConfig,
}

/// What runs changes tasks, as the [`Pipeline`](crate::engine::pipeline::Pipeline) holds it
/// (a [`ChangesQuery`] of whichever checkpoint).
pub trait RunChanges: Send + Sync + std::fmt::Debug {
    /// Runs one changes task, reading daily files in `output`.
    fn run<'a>(
        &'a self,
        task: &'a TaskRow,
        output: &'a Output,
    ) -> BoxFuture<'a, Result<TaskOutput>>;
}

impl<C: Checkpoint + std::fmt::Debug> RunChanges for ChangesQuery<C> {
    fn run<'a>(
        &'a self,
        task: &'a TaskRow,
        output: &'a Output,
    ) -> BoxFuture<'a, Result<TaskOutput>> {
        Box::pin(self.query(task, output))
    }
}

impl<C: Checkpoint> ChangesQuery<C> {
    /// The changes tasks of `state`, asked with the endpoints and bounding box of `cfg`.
    pub fn new(state: Arc<C>, cfg: &RunConfig) -> Result<ChangesQuery<C>> {
        Ok(ChangesQuery {
            client: cmr_client(cfg)?,
            state,
            cfg: cfg.clone(),
        })
    }

    /// Runs one changes task (of `task.spec.collection`), reading daily files in `output`.
    async fn query(&self, task: &TaskRow, output: &Output) -> Result<TaskOutput> {
        let c = task.spec.collection;
        let rows = self.state.tasks().await?;
        let days = harvests_of(&rows, c);
        let (Some(&first), Some(&last)) = (days.keys().next(), days.keys().next_back()) else {
            return Ok(TaskOutput::default());
        };
        let span = DayRange::new(first, last)?;
        let settings = SyncState::new(self.state.as_ref(), self.cfg.state.display().to_string());
        let since = match settings.watermark(c).await? {
            Some(w) => w,
            None => {
                let overlap = settings
                    .overlap()
                    .await?
                    .unwrap_or_else(super::default_overlap);
                let w = initial_watermark(&days, Utc::now(), overlap);
                settings.set_watermark(c, w).await?;
                w
            }
        };
        let applied = settings.applied(c).await?;
        let asker = Asker {
            client: &self.client,
            cfg: &self.cfg,
            output,
        };
        let f = changes_of(&asker, c, &days, span, since, &applied).await?;
        let ch = &f.changes;
        tracing::info!(
            "{c}: since {}: {} new or revised, {} deleted ({} held), {} applied before; {} days to harvest again",
            stamp(since),
            ch.changed,
            ch.deleted,
            ch.deleted_held,
            ch.already_applied,
            ch.days.len()
        );
        let record = FoundRecord {
            since,
            changed: ch.changed,
            deleted: ch.deleted,
            deleted_held: ch.deleted_held,
            already_applied: ch.already_applied,
            days: ch.days.clone(),
            seen: f.seen,
        };
        settings.set_found(c, Some(&record)).await?;
        Ok(TaskOutput {
            requeue: record.days.iter().map(|d| days[d].id).collect(),
            ..TaskOutput::default()
        })
    }
}

/// How far back CMR lists deleted granules.
fn deleted_reach() -> Duration {
    // A year, less a margin for the clocks of this machine and CMR's.
    Duration::days(365) - Duration::hours(1)
}

/// The day in a granule UR (`HLS.S30.T35VLJ.2021168T100559.v2.0`: year and day of year).
fn day_of_granule_ur(ur: &str) -> Option<NaiveDate> {
    let stamp = ur.split('.').nth(3)?;
    let year = stamp.get(0..4)?.parse().ok()?;
    let doy = stamp.get(4..7)?.parse().ok()?;
    NaiveDate::from_yo_opt(year, doy)
}

/// The item ids of daily files, read once each.
struct DailyIds<'a> {
    output: &'a Output,
    ids: HashMap<NaiveDate, HashSet<String>>,
}

impl DailyIds<'_> {
    async fn holds(&mut self, task: &TaskRow, day: NaiveDate, id: &str) -> Result<bool> {
        if !self.ids.contains_key(&day) {
            let ids = match task.output_path.as_deref() {
                Some(p) if self.output_exists(p).await? => {
                    read_items(self.output, &ObjPath::from(p))
                        .await?
                        .into_iter()
                        .map(|i| i.id)
                        .collect()
                }
                _ => HashSet::new(),
            };
            self.ids.insert(day, ids);
        }
        Ok(self.ids.get(&day).is_some_and(|ids| ids.contains(id)))
    }

    async fn output_exists(&self, p: &str) -> Result<bool> {
        Ok(self.output.size_of(&ObjPath::from(p)).await?.is_some())
    }
}

/// What the changes query of one collection found.
pub(super) struct Found {
    pub changes: CollectionChanges,
    /// Every change found (granule UR, revision date), applied before or not.
    pub seen: Vec<(String, DateTime<Utc>)>,
}

/// What the changes queries use.
pub(super) struct Asker<'a> {
    pub client: &'a CmrClient,
    pub cfg: &'a RunConfig,
    pub output: &'a Output,
}

/// Asks CMR what changed in `c` since `since`, and which of the covered days it touches.
pub(super) async fn changes_of(
    ctx: &Asker<'_>,
    c: Collection,
    days: &BTreeMap<NaiveDate, &TaskRow>,
    span: DayRange,
    since: DateTime<Utc>,
    applied: &BTreeSet<(String, String)>,
) -> Result<Found> {
    let q = GranuleQuery {
        collection: c,
        start: crate::period::day_window(span.start).0,
        end: crate::period::day_window(span.end).1,
        bbox: ctx.cfg.bbox,
    };
    let Asker { client, output, .. } = *ctx;
    let mut affected = BTreeSet::new();
    let mut seen = Vec::new();
    let (mut changed, mut deleted, mut deleted_held, mut already) = (0, 0, 0, 0);
    let mut listed = HashSet::new();
    let mut pages = std::pin::pin!(client.changed_pages(&q, since));
    while let Some(page) = pages.try_next().await? {
        for e in page.entries {
            // A listing that starts over repeats entries.
            if !listed.insert(e.id.clone()) {
                continue;
            }
            seen.push((e.title.clone(), e.updated));
            if applied.contains(&(e.title, stamp(e.updated))) {
                already += 1;
                continue;
            }
            changed += 1;
            let day = e.time_start.date_naive();
            if days.contains_key(&day) {
                affected.insert(day);
            }
        }
    }
    let reach = Utc::now() - deleted_reach();
    let asked = if since < reach {
        tracing::warn!(
            "{c}: CMR lists deleted granules a year back only: deletions before {} cannot be seen (harvest those months again with `run` after removing them from the state)",
            stamp(reach)
        );
        reach
    } else {
        since
    };
    let mut ids = DailyIds {
        output,
        ids: HashMap::new(),
    };
    for g in client.deleted_granules(c, asked).await? {
        seen.push((g.granule_ur.clone(), g.revision_date));
        if applied.contains(&(g.granule_ur.clone(), stamp(g.revision_date))) {
            already += 1;
            continue;
        }
        deleted += 1;
        let candidates: Vec<NaiveDate> = match day_of_granule_ur(&g.granule_ur) {
            // HLSS30's UR time is the datatake's, up to minutes before the granule begins.
            Some(d) => [d.pred_opt(), Some(d), d.succ_opt()]
                .into_iter()
                .flatten()
                .filter(|d| days.contains_key(d))
                .collect(),
            None => days.keys().copied().collect(),
        };
        for d in candidates {
            if ids.holds(days[&d], d, &g.granule_ur).await? {
                tracing::debug!("deleted {} is in {c} {d}", g.granule_ur);
                affected.insert(d);
                deleted_held += 1;
                break;
            }
        }
    }
    Ok(Found {
        changes: CollectionChanges {
            collection: c,
            since,
            changed,
            deleted,
            deleted_held,
            already_applied: already,
            days: affected.into_iter().collect(),
            watermark: None,
        },
        seen,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_day_of_a_granule_ur_is_its_year_and_day_of_year() {
        assert_eq!(
            day_of_granule_ur("HLS.S30.T35VLJ.2021168T100559.v2.0"),
            NaiveDate::from_ymd_opt(2021, 6, 17)
        );
        assert_eq!(
            day_of_granule_ur("HLS.L30.T15TWN.2024366T170439.v2.0"),
            NaiveDate::from_ymd_opt(2024, 12, 31)
        );
        assert_eq!(
            day_of_granule_ur("HLS.L30.T15TWN.2023366T170439.v2.0"),
            None
        );
        assert_eq!(day_of_granule_ur("not-an-hls-id"), None);
    }
}
