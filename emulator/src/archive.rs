//! The archive changing under the harvest: late ingests, revisions and deletions, applied as
//! change sets ([`ChangeSet`]) at run time, stamped by the archive's clock; and the
//! deleted granules CMR lists at `/search/deleted-granules.json`.
//!
//! A change set rewrites only the days it touches: each of them is rebuilt (granules
//! added, replaced by their new revision, removed) and served in place of the generated or
//! recorded day from then on, so searches, paging, items and [`Emulator::granules`] all
//! see the archive as it is now.
//!
//! [`Emulator::granules`]: crate::Emulator::granules

use super::entry::{format_ms, push_json_str};
use super::rng::Rng;
use super::search::{BadRequest, parse_time_of};
use super::store::{Day, Granule, Store, id_date};
use super::synthetic;
use chrono::{DateTime, NaiveDate, Utc};
use hls_flow::collection::Collection;
use hls_flow::source::hls::GranuleMeta;
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::{HashMap, HashSet};

/// First concept-id number of late ingests: above every generated one, as CMR's ids grow
/// with time.
const FIRST_LATE_CONCEPT: u64 = 9_900_000_000;

/// Changes to apply to the archive at once (`PUT /_emulator/changes`, or
/// [`Emulator::apply_changes`](crate::Emulator::apply_changes)). In this order: the clock
/// moves, late granules are ingested, revisions are made, granules are deleted. Every
/// change is stamped with the archive's clock: it is its revision date.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChangeSet {
    /// Pins the archive's clock at this instant, where it stays until a later change set
    /// moves it again: forward only, never before the clock pinned last nor before a change
    /// already made (it may be before the system's clock: a test can play a past month's
    /// history). Without it, the clock is the system's (or where a former change set
    /// pinned it).
    pub now: Option<DateTime<Utc>>,
    /// Seed of the random choices (granules to revise or delete, late granules' places).
    pub seed: u64,
    /// Granules ingested late, on past days.
    pub late: Vec<Late>,
    /// Granules to revise.
    pub revise: Revise,
    /// Granules to delete.
    pub delete: Pick,
}

/// Late granules of one collection and day: `count` at random morning times, plus one at
/// each of `times`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Late {
    /// `HLSL30` or `HLSS30`.
    #[serde(deserialize_with = "collection_from_str")]
    pub collection: Collection,
    /// The UTC day they begin on.
    pub day: NaiveDate,
    /// How many at random times of the day.
    #[serde(default)]
    pub count: u32,
    /// Explicit begin times (each on `day`).
    #[serde(default)]
    pub times: Vec<DateTime<Utc>>,
}

/// Which granules a change applies to: the ones named, plus `random` others drawn among the
/// current granules of `collections` (both when empty) beginning `from`..=`to` (the data's
/// first and last day when left out).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Pick {
    /// Granule URs (item ids).
    pub granules: Vec<String>,
    /// How many more, drawn at random.
    pub random: u32,
    /// Collections to draw from (both when empty).
    #[serde(deserialize_with = "collections_from_str")]
    pub collections: Vec<Collection>,
    /// First day to draw from.
    pub from: Option<NaiveDate>,
    /// Last day to draw from (inclusive).
    pub to: Option<NaiveDate>,
}

/// Revisions: which granules ([`Pick`]'s fields: a granule named twice is revised twice) and
/// what changes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Revise {
    /// Granule URs (item ids).
    pub granules: Vec<String>,
    /// How many more, drawn at random.
    pub random: u32,
    /// Collections to draw from (both when empty).
    #[serde(deserialize_with = "collections_from_str")]
    pub collections: Vec<Collection>,
    /// First day to draw from.
    pub from: Option<NaiveDate>,
    /// Last day to draw from (inclusive).
    pub to: Option<NaiveDate>,
    /// What a revision changes.
    pub what: Revision,
}

impl Revise {
    fn pick(&self) -> Pick {
        Pick {
            granules: self.granules.clone(),
            random: self.random,
            collections: self.collections.clone(),
            from: self.from,
            to: self.to,
        }
    }
}

/// What a revision changes (besides its revision id and date).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Revision {
    /// The cloud cover and the footprint.
    #[default]
    Both,
    /// The cloud cover only.
    CloudCover,
    /// The footprint only (shrunk towards its centre).
    Footprint,
}

/// One granule a change set changed, as it is after the change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changed {
    /// The granule UR (item id).
    pub granule_ur: String,
    /// Its concept id.
    pub concept_id: String,
    /// Its collection.
    #[serde(deserialize_with = "collection_from_str")]
    pub collection: Collection,
    /// The UTC day it begins on.
    pub day: NaiveDate,
    /// Its revision id after the change (a deletion has one too).
    pub revision_id: u32,
    /// The change's revision date.
    pub revision_date: DateTime<Utc>,
}

/// What a change set did, change by change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeReport {
    /// The archive's clock: the revision date of every change.
    pub now: DateTime<Utc>,
    /// Granules ingested.
    pub added: Vec<Changed>,
    /// Revisions made (a granule revised twice is here twice).
    pub revised: Vec<Changed>,
    /// Granules deleted.
    pub deleted: Vec<Changed>,
}

/// Why a change set was refused (nothing of it was applied).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChangeError {
    /// A named granule is not in the archive (never was, or deleted).
    #[error("granule {granule_ur} is not in the archive")]
    UnknownGranule {
        /// The granule UR asked for.
        granule_ur: String,
    },
    /// Late granules on a day the emulator serves no data for.
    #[error("{collection} {day} is outside the days the emulator serves")]
    DayOutOfRange {
        /// The collection.
        collection: Collection,
        /// The day.
        day: NaiveDate,
    },
    /// A late granule's begin time is not on its day.
    #[error("late {collection} granule at {time} does not begin on {day}")]
    TimeNotOnDay {
        /// The collection.
        collection: Collection,
        /// The day.
        day: NaiveDate,
        /// The begin time asked for.
        time: DateTime<Utc>,
    },
    /// No new granule could be placed (every footprint tried collided or did not fit).
    #[error("no room for another late {collection} granule on {day}")]
    NoRoom {
        /// The collection.
        collection: Collection,
        /// The day.
        day: NaiveDate,
    },
    /// More random granules asked for than there are.
    #[error("{wanted} random granules to {what} asked for, but only {available} can be drawn")]
    NotEnoughGranules {
        /// "revise" or "delete".
        what: &'static str,
        /// How many were asked for.
        wanted: u32,
        /// How many there are to draw from.
        available: usize,
    },
    /// `now` is before the clock pinned last or before a change already made.
    #[error("the archive's clock cannot go back from {clock} to {now}")]
    ClockBackwards {
        /// Where the clock is.
        clock: DateTime<Utc>,
        /// The `now` asked for.
        now: DateTime<Utc>,
    },
}

/// A deleted granule, as `deleted-granules.json` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tombstone {
    pub granule_ur: String,
    pub concept_id: String,
    pub collection: Collection,
    pub revision_date: DateTime<Utc>,
}

/// The archive's changing state: its clock, what it has deleted, the counters that make
/// change sets deterministic. One lock serializes change sets.
#[derive(Debug)]
pub(crate) struct Archive {
    inner: std::sync::Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Where a change set pinned the clock.
    pinned: Option<DateTime<Utc>>,
    /// The latest revision date stamped.
    latest: Option<DateTime<Utc>>,
    tombstones: Vec<Tombstone>,
    next_concept: u64,
    sets_applied: u64,
}

/// `t` truncated to milliseconds (CMR's precision for revision dates).
fn to_ms(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
}

impl Default for Archive {
    fn default() -> Self {
        Archive {
            inner: std::sync::Mutex::new(Inner {
                pinned: None,
                latest: None,
                tombstones: Vec::new(),
                next_concept: FIRST_LATE_CONCEPT,
                sets_applied: 0,
            }),
        }
    }
}

impl Archive {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The archive's clock: where a change set pinned it, else the system's (ms).
    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.lock().pinned.unwrap_or_else(|| to_ms(Utc::now()))
    }

    /// The granules deleted at or after `since`, of `collection` if given, oldest first.
    pub(crate) fn deleted_since(
        &self,
        since: DateTime<Utc>,
        collection: Option<Collection>,
    ) -> Vec<(usize, Tombstone)> {
        self.lock()
            .tombstones
            .iter()
            .enumerate()
            .filter(|(_, t)| {
                t.revision_date >= since && collection.is_none_or(|c| c == t.collection)
            })
            .map(|(i, t)| (i, t.clone()))
            .collect()
    }

    /// Applies a change set to `store`, all or nothing.
    pub(crate) fn apply(
        &self,
        store: &Store,
        set: &ChangeSet,
    ) -> Result<ChangeReport, ChangeError> {
        let mut inner = self.lock();
        let clock = inner.pinned.unwrap_or_else(|| to_ms(Utc::now()));
        let floor = inner.latest.map_or(clock, |l| l.max(clock));
        let now = match set.now {
            Some(t) => {
                let t = to_ms(t);
                let bound = inner.pinned.max(inner.latest);
                if let Some(clock) = bound.filter(|b| t < *b) {
                    return Err(ChangeError::ClockBackwards { clock, now: t });
                }
                t
            }
            None => floor,
        };
        let mut work = Work {
            store,
            days: HashMap::new(),
            now,
            next_concept: inner.next_concept,
        };
        let base_seed = [set.seed, inner.sets_applied];
        let mut report = ChangeReport {
            now,
            added: Vec::new(),
            revised: Vec::new(),
            deleted: Vec::new(),
        };
        let mut rng = Rng::from_parts(&[base_seed[0], base_seed[1], 1]);
        for late in &set.late {
            report.added.extend(work.add_late(&mut rng, late)?);
        }
        let mut rng = Rng::from_parts(&[base_seed[0], base_seed[1], 2]);
        for (c, d, ur) in work.resolve(&mut rng, &set.revise.pick(), "revise")? {
            report
                .revised
                .push(work.revise(&mut rng, c, d, &ur, set.revise.what)?);
        }
        let mut rng = Rng::from_parts(&[base_seed[0], base_seed[1], 3]);
        let mut tombstones = Vec::new();
        for (c, d, ur) in work.resolve(&mut rng, &set.delete, "delete")? {
            let (changed, tomb) = work.delete(c, d, &ur)?;
            report.deleted.push(changed);
            tombstones.push(tomb);
        }
        // All checked: commit.
        for ((c, d), granules) in work.days {
            store.set_day(c, d, Day::new(granules));
        }
        inner.next_concept = work.next_concept;
        inner.tombstones.extend(tombstones);
        inner.sets_applied += 1;
        inner.latest = Some(now);
        if set.now.is_some() {
            inner.pinned = Some(now);
        }
        Ok(report)
    }
}

/// A change set being applied: the days it touched, as copies.
struct Work<'a> {
    store: &'a Store,
    days: HashMap<(Collection, NaiveDate), Vec<Granule>>,
    now: DateTime<Utc>,
    next_concept: u64,
}

fn changed(g: &Granule) -> Changed {
    Changed {
        granule_ur: g.meta.granule_ur.clone(),
        concept_id: g.meta.concept_id.clone(),
        collection: g.meta.collection,
        day: g.meta.begin.date_naive(),
        revision_id: g.revision_id,
        revision_date: g.meta.updated,
    }
}

impl Work<'_> {
    /// The working copy of a day (loaded on first use).
    fn day_mut(&mut self, c: Collection, d: NaiveDate) -> &mut Vec<Granule> {
        let store = self.store;
        self.days.entry((c, d)).or_insert_with(|| {
            store
                .day(c, d)
                .map(|day| day.granules.clone())
                .unwrap_or_default()
        })
    }

    /// The ids of a day as it is now in this change set.
    fn ids_of(&self, c: Collection, d: NaiveDate) -> Vec<String> {
        match self.days.get(&(c, d)) {
            Some(gs) => gs.iter().map(|g| g.meta.granule_ur.clone()).collect(),
            None => self
                .store
                .day(c, d)
                .map(|day| {
                    day.granules
                        .iter()
                        .map(|g| g.meta.granule_ur.clone())
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// Where granule `ur` is now: its collection and begin day.
    fn locate(&self, ur: &str) -> Option<(Collection, NaiveDate)> {
        let c = Collection::from_granule_id(ur)?;
        let date = id_date(ur)?;
        [Some(date), date.succ_opt()]
            .into_iter()
            .flatten()
            .find(|&d| match self.days.get(&(c, d)) {
                Some(gs) => gs.iter().any(|g| g.meta.granule_ur == ur),
                None => self
                    .store
                    .day(c, d)
                    .is_some_and(|day| day.get(ur).is_some()),
            })
            .map(|d| (c, d))
    }

    fn add_late(&mut self, rng: &mut Rng, late: &Late) -> Result<Vec<Changed>, ChangeError> {
        let (c, d) = (late.collection, late.day);
        if !self.store.holds_day(d) {
            return Err(ChangeError::DayOutOfRange {
                collection: c,
                day: d,
            });
        }
        if let Some(&time) = late.times.iter().find(|t| t.date_naive() != d) {
            return Err(ChangeError::TimeNotOnDay {
                collection: c,
                day: d,
                time,
            });
        }
        let begins = late
            .times
            .iter()
            .map(|t| Some(*t))
            .chain(std::iter::repeat_n(None, late.count as usize));
        let mut out = Vec::new();
        for begin in begins.collect::<Vec<_>>() {
            let mut taken: HashSet<String> = HashSet::new();
            for day in [d.pred_opt(), Some(d), d.succ_opt()].into_iter().flatten() {
                taken.extend(self.ids_of(c, day));
            }
            let meta = (0..20)
                .filter_map(|_| synthetic::late_granule(rng, c, d, begin))
                .find(|m| !taken.contains(&m.granule_ur))
                .ok_or(ChangeError::NoRoom {
                    collection: c,
                    day: d,
                })?;
            let meta = GranuleMeta {
                concept_id: format!("G{}-LPCLOUD", self.next_concept),
                updated: self.now,
                ..meta
            };
            let g = Granule::new(meta).ok_or(ChangeError::NoRoom {
                collection: c,
                day: d,
            })?;
            self.next_concept += 1;
            out.push(changed(&g));
            self.day_mut(c, d).push(g);
        }
        Ok(out)
    }

    /// The granules a pick names, then its random ones (distinct, among the others).
    fn resolve(
        &mut self,
        rng: &mut Rng,
        pick: &Pick,
        what: &'static str,
    ) -> Result<Vec<(Collection, NaiveDate, String)>, ChangeError> {
        let mut out = Vec::new();
        for ur in &pick.granules {
            let (c, d) = self.locate(ur).ok_or_else(|| ChangeError::UnknownGranule {
                granule_ur: ur.clone(),
            })?;
            out.push((c, d, ur.clone()));
        }
        if pick.random == 0 {
            return Ok(out);
        }
        let named: HashSet<&str> = pick.granules.iter().map(String::as_str).collect();
        let collections = if pick.collections.is_empty() {
            Collection::ALL.to_vec()
        } else {
            pick.collections.clone()
        };
        let mut pool = Vec::new();
        if let Some((first, last)) = self.store.range() {
            let from = pick.from.map_or(first, |f| f.max(first));
            let to = pick.to.map_or(last, |t| t.min(last));
            for d in from.iter_days().take_while(|d| *d <= to) {
                for &c in &collections {
                    for ur in self.ids_of(c, d) {
                        if !named.contains(ur.as_str()) {
                            pool.push((c, d, ur));
                        }
                    }
                }
            }
        }
        let wanted = pick.random as usize;
        if wanted > pool.len() {
            return Err(ChangeError::NotEnoughGranules {
                what,
                wanted: pick.random,
                available: pool.len(),
            });
        }
        for i in 0..wanted {
            let j = i + rng.below((pool.len() - i) as u64) as usize;
            pool.swap(i, j);
        }
        pool.truncate(wanted);
        out.extend(pool);
        Ok(out)
    }

    fn find(&mut self, c: Collection, d: NaiveDate, ur: &str) -> Result<usize, ChangeError> {
        self.day_mut(c, d)
            .iter()
            .position(|g| g.meta.granule_ur == ur)
            .ok_or_else(|| ChangeError::UnknownGranule {
                granule_ur: ur.to_string(),
            })
    }

    fn revise(
        &mut self,
        rng: &mut Rng,
        c: Collection,
        d: NaiveDate,
        ur: &str,
        what: Revision,
    ) -> Result<Changed, ChangeError> {
        let i = self.find(c, d, ur)?;
        let now = self.now;
        let day = self.day_mut(c, d);
        let old = &day[i];
        let mut meta = old.meta.clone();
        meta.updated = now;
        if what != Revision::Footprint {
            meta.cloud_cover = Some(new_cloud_cover(rng, meta.cloud_cover));
        }
        if what != Revision::CloudCover {
            meta.polygons = meta.polygons.iter().map(|r| shrunk(r)).collect();
        }
        let revision_id = old.revision_id + 1;
        let mut g = Granule::new(meta).ok_or_else(|| ChangeError::UnknownGranule {
            granule_ur: ur.to_string(),
        })?;
        g.revision_id = revision_id;
        let out = changed(&g);
        day[i] = g;
        Ok(out)
    }

    fn delete(
        &mut self,
        c: Collection,
        d: NaiveDate,
        ur: &str,
    ) -> Result<(Changed, Tombstone), ChangeError> {
        let i = self.find(c, d, ur)?;
        let now = self.now;
        let g = self.day_mut(c, d).remove(i);
        let out = Changed {
            revision_id: g.revision_id + 1,
            revision_date: now,
            ..changed(&g)
        };
        let tomb = Tombstone {
            granule_ur: g.meta.granule_ur,
            concept_id: g.meta.concept_id,
            collection: c,
            revision_date: now,
        };
        Ok((out, tomb))
    }
}

/// A whole percentage other than `old`.
fn new_cloud_cover(rng: &mut Rng, old: Option<f64>) -> f64 {
    match old {
        Some(cc) if (0.0..=100.0).contains(&cc) && cc.fract() == 0.0 => {
            ((cc as u64 + 1 + rng.below(100)) % 101) as f64
        }
        _ => rng.below(101) as f64,
    }
}

/// A ring shrunk by 2 % towards its centre (same shape and orientation, 7 decimals).
fn shrunk(ring: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let n = ring.len().max(1) as f64;
    let cx = ring.iter().map(|p| p.0).sum::<f64>() / n;
    let cy = ring.iter().map(|p| p.1).sum::<f64>() / n;
    let r7 = |v: f64| (v * 1e7).round() / 1e7;
    ring.iter()
        .map(|&(x, y)| (r7(cx + (x - cx) * 0.98), r7(cy + (y - cy) * 0.98)))
        .collect()
}

/// A parsed `/search/deleted-granules.json` query.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DeletedQuery {
    /// Deleted at or after this.
    pub since: DateTime<Utc>,
    /// `provider` other than LPCLOUD: nothing matches.
    pub other_provider: bool,
    /// `parent_collection_id`: `Some(None)` for a collection the emulator does not have.
    pub collection: Option<Option<Collection>>,
}

/// Parses and checks a deleted-granules query as CMR does: one `revision_date`, a start
/// date only, at most one year before `now`.
pub(crate) fn parse_deleted_query(
    raw: &str,
    now: DateTime<Utc>,
) -> Result<DeletedQuery, BadRequest> {
    let mut since = Vec::new();
    let mut other_provider = false;
    let mut collection = None;
    let mut errors = Vec::new();
    for (key, value) in url::form_urlencoded::parse(raw.as_bytes()) {
        match key.strip_suffix("[]").unwrap_or(&key) {
            "revision_date" => {
                if value.contains(',') {
                    errors.push(format!(
                        "Revision date [{value}] must be a single start date for deleted granules search."
                    ));
                } else {
                    match parse_time_of("revision_date", &value, "") {
                        Ok(ms) => since.extend(DateTime::from_timestamp_millis(ms)),
                        Err(e) => errors.push(e.0),
                    }
                }
            }
            "provider" => other_provider |= !value.eq_ignore_ascii_case("LPCLOUD"),
            "parent_collection_id" => collection = Some(Collection::from_concept_id(&value)),
            "pretty" => {}
            other => errors.push(format!("Parameter [{other}] was not recognized.")),
        }
    }
    if errors.is_empty() && since.len() != 1 {
        errors.push("One revision date is required for deleted granules search.".to_string());
    }
    let year_ago = now
        .checked_sub_months(chrono::Months::new(12))
        .unwrap_or(now);
    if errors.is_empty() && since[0] < year_ago {
        errors.push("Revision date must be within one year of today.".to_string());
    }
    if !errors.is_empty() {
        return Err(BadRequest(errors.join("; ")));
    }
    Ok(DeletedQuery {
        since: since[0],
        other_provider,
        collection,
    })
}

/// The body of `deleted-granules.json`: CMR's keys in CMR's order; `revision-date` comes as
/// `…Z` with milliseconds and as `…+0000` without, one then the other, as CMR mixes them.
pub(crate) fn deleted_body(found: &[(usize, Tombstone)]) -> String {
    let mut out = String::from("[");
    for (i, (seq, t)) in found.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let date = if seq % 2 == 0 {
            format_ms(&t.revision_date)
        } else {
            t.revision_date.format("%Y-%m-%dT%H:%M:%S+0000").to_string()
        };
        let fields = [
            ("granule-ur", t.granule_ur.as_str()),
            ("revision-date", date.as_str()),
            ("parent-collection-id", t.collection.concept_id()),
            ("concept-id", t.concept_id.as_str()),
            ("provider-id", "LPCLOUD"),
        ];
        out.push('{');
        for (k, (key, value)) in fields.iter().enumerate() {
            if k > 0 {
                out.push(',');
            }
            push_json_str(&mut out, key);
            out.push(':');
            push_json_str(&mut out, value);
        }
        out.push('}');
    }
    out.push(']');
    out
}

fn collection_from_str<'de, D: Deserializer<'de>>(d: D) -> Result<Collection, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map_err(serde::de::Error::custom)
}

fn collections_from_str<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Collection>, D::Error> {
    let names = Vec::<String>::deserialize(d)?;
    names
        .iter()
        .map(|s| s.parse().map_err(serde::de::Error::custom))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SyntheticConfig;
    use chrono::{Duration, TimeZone};

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn store() -> Store {
        Store::synthetic(SyntheticConfig {
            start: day(2024, 5, 1),
            end: day(2024, 5, 31),
            granules_per_day: 20,
            seed: 4,
        })
    }

    fn ids(store: &Store, c: Collection, d: NaiveDate) -> Vec<String> {
        store
            .day(c, d)
            .map(|day| {
                day.granules
                    .iter()
                    .map(|g| g.meta.granule_ur.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn late_granules_join_their_day_stamped_now() {
        let (store, archive) = (store(), Archive::default());
        let d = day(2024, 5, 31);
        let before = ids(&store, Collection::Hlss30, d);
        let last_second = at("2024-05-31T23:59:59Z");
        let set = ChangeSet {
            now: Some(at("2024-06-20T10:00:00.123456Z")),
            late: vec![Late {
                collection: Collection::Hlss30,
                day: d,
                count: 3,
                times: vec![last_second],
            }],
            ..ChangeSet::default()
        };
        let report = archive.apply(&store, &set).unwrap();
        assert_eq!(report.now, at("2024-06-20T10:00:00.123Z"));
        assert_eq!(report.added.len(), 4);
        let after = ids(&store, Collection::Hlss30, d);
        assert_eq!(after.len(), before.len() + 4);
        let today = store.day(Collection::Hlss30, d).unwrap();
        let mut concepts = HashSet::new();
        for a in &report.added {
            assert!(!before.contains(&a.granule_ur), "{}", a.granule_ur);
            assert_eq!((a.revision_id, a.day, a.revision_date), (1, d, report.now));
            let g = today.get(&a.granule_ur).unwrap();
            assert_eq!(g.meta.updated, report.now);
            assert_eq!(g.meta.concept_id, a.concept_id);
            assert!(concepts.insert(a.concept_id.clone()));
            assert!(store.find(&a.granule_ur).is_some());
        }
        assert_eq!(
            today.get(&report.added[0].granule_ur).unwrap().meta.begin,
            last_second
        );
        // Still sorted as CMR sorts: the last second's granule comes last but one at most.
        let keys: Vec<_> = today.granules.iter().map(Granule::key).collect();
        assert!(keys.windows(2).all(|w| w[0] <= w[1]));
        // Another day, other collection: untouched.
        assert_eq!(
            ids(&store, Collection::Hlsl30, d).len(),
            ids(&store, Collection::Hlsl30, day(2024, 5, 30)).len()
        );
    }

    #[test]
    fn revisions_change_values_revision_and_date() {
        let (store, archive) = (store(), Archive::default());
        let d = day(2024, 5, 10);
        let old = store.day(Collection::Hlsl30, d).unwrap();
        let (a, b) = (&old.granules[0], &old.granules[1]);
        let set = ChangeSet {
            now: Some(at("2024-07-01T00:00:00Z")),
            revise: Revise {
                granules: vec![
                    a.meta.granule_ur.clone(),
                    b.meta.granule_ur.clone(),
                    b.meta.granule_ur.clone(),
                ],
                what: Revision::Both,
                ..Revise::default()
            },
            ..ChangeSet::default()
        };
        let report = archive.apply(&store, &set).unwrap();
        assert_eq!(report.revised.len(), 3);
        let new = store.day(Collection::Hlsl30, d).unwrap();
        assert_eq!(new.granules.len(), old.granules.len());
        let (na, nb) = (
            new.get(&a.meta.granule_ur).unwrap(),
            new.get(&b.meta.granule_ur).unwrap(),
        );
        assert_eq!((na.revision_id, nb.revision_id), (2, 3));
        assert_eq!(report.revised[2].revision_id, 3);
        for (n, o) in [(na, a), (nb, b)] {
            assert_eq!(n.meta.updated, at("2024-07-01T00:00:00Z"));
            assert_ne!(n.meta.cloud_cover, o.meta.cloud_cover);
            assert_ne!(n.meta.polygons, o.meta.polygons);
            assert_eq!(n.meta.concept_id, o.meta.concept_id);
            assert_eq!(n.meta.begin, o.meta.begin);
            // The item served changes with it.
            let item: serde_json::Value = serde_json::from_slice(&n.item_body()).unwrap();
            assert_eq!(
                item["properties"]["eo:cloud_cover"].as_f64(),
                n.meta.cloud_cover
            );
            assert_ne!(item.to_string().as_bytes(), &o.item_body()[..]);
        }
        // Cloud cover only: the footprint stays.
        let c = &new.granules[2];
        let set = ChangeSet {
            revise: Revise {
                granules: vec![c.meta.granule_ur.clone()],
                what: Revision::CloudCover,
                ..Revise::default()
            },
            ..ChangeSet::default()
        };
        archive.apply(&store, &set).unwrap();
        let after = store.day(Collection::Hlsl30, d).unwrap();
        let nc = after.get(&c.meta.granule_ur).unwrap();
        assert_eq!(nc.meta.polygons, c.meta.polygons);
        assert_ne!(nc.meta.cloud_cover, c.meta.cloud_cover);
        // The pinned clock stamped it.
        assert_eq!(nc.meta.updated, at("2024-07-01T00:00:00Z"));
    }

    #[test]
    fn deletions_leave_the_day_and_are_listed() {
        let (store, archive) = (store(), Archive::default());
        let d = day(2024, 5, 2);
        let victim = ids(&store, Collection::Hlss30, d)[3].clone();
        let set = ChangeSet {
            now: Some(at("2024-06-01T00:00:00Z")),
            delete: Pick {
                granules: vec![victim.clone()],
                random: 5,
                collections: vec![Collection::Hlsl30],
                from: Some(day(2024, 5, 3)),
                to: Some(day(2024, 5, 4)),
            },
            ..ChangeSet::default()
        };
        let report = archive.apply(&store, &set).unwrap();
        assert_eq!(report.deleted.len(), 6);
        assert!(!ids(&store, Collection::Hlss30, d).contains(&victim));
        assert!(store.find(&victim).is_none());
        for r in &report.deleted[1..] {
            assert_eq!(r.collection, Collection::Hlsl30);
            assert!(r.day == day(2024, 5, 3) || r.day == day(2024, 5, 4));
            assert!(store.find(&r.granule_ur).is_none());
        }
        let listed = archive.deleted_since(at("2024-06-01T00:00:00Z"), None);
        assert_eq!(listed.len(), 6);
        assert_eq!(listed[0].1.granule_ur, victim);
        assert_eq!(
            archive.deleted_since(at("2024-06-01T00:00:00.001Z"), None),
            vec![]
        );
        assert_eq!(
            archive
                .deleted_since(at("2024-05-01T00:00:00Z"), Some(Collection::Hlss30))
                .len(),
            1
        );
        // Deleting it again: it is not in the archive any more.
        let again = ChangeSet {
            delete: Pick {
                granules: vec![victim.clone()],
                ..Pick::default()
            },
            ..ChangeSet::default()
        };
        assert_eq!(
            archive.apply(&store, &again),
            Err(ChangeError::UnknownGranule { granule_ur: victim })
        );
    }

    #[test]
    fn a_refused_change_set_changes_nothing() {
        let (store, archive) = (store(), Archive::default());
        let d = day(2024, 5, 5);
        let before = ids(&store, Collection::Hlsl30, d);
        let set = ChangeSet {
            late: vec![Late {
                collection: Collection::Hlsl30,
                day: d,
                count: 2,
                times: vec![],
            }],
            delete: Pick {
                granules: vec![
                    before[0].clone(),
                    "HLS.L30.T10SEG.2024126T184512.v2.0".into(),
                ],
                ..Pick::default()
            },
            ..ChangeSet::default()
        };
        assert!(matches!(
            archive.apply(&store, &set),
            Err(ChangeError::UnknownGranule { .. })
        ));
        assert_eq!(ids(&store, Collection::Hlsl30, d), before);
        assert!(
            archive
                .deleted_since(at("2000-01-01T00:00:00Z"), None)
                .is_empty()
        );
        let refused = |set: ChangeSet| archive.apply(&store, &set).unwrap_err();
        let outside = Late {
            collection: Collection::Hlsl30,
            day: day(2024, 6, 1),
            count: 1,
            times: vec![],
        };
        assert!(matches!(
            refused(ChangeSet {
                late: vec![outside],
                ..ChangeSet::default()
            }),
            ChangeError::DayOutOfRange { .. }
        ));
        let wrong_time = Late {
            collection: Collection::Hlsl30,
            day: d,
            count: 0,
            times: vec![at("2024-05-06T00:00:00Z")],
        };
        assert!(matches!(
            refused(ChangeSet {
                late: vec![wrong_time],
                ..ChangeSet::default()
            }),
            ChangeError::TimeNotOnDay { .. }
        ));
        assert!(matches!(
            refused(ChangeSet {
                revise: Revise {
                    random: 10_000,
                    ..Revise::default()
                },
                ..ChangeSet::default()
            }),
            ChangeError::NotEnoughGranules {
                what: "revise",
                wanted: 10_000,
                ..
            }
        ));
        assert_eq!(ids(&store, Collection::Hlsl30, d), before);
    }

    #[test]
    fn the_clock_moves_forward_only() {
        let (store, archive) = (store(), Archive::default());
        let wall = Utc::now();
        assert!((archive.now() - wall).num_seconds().abs() < 60);
        let t = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
        let set = ChangeSet {
            now: Some(t),
            ..ChangeSet::default()
        };
        assert_eq!(archive.apply(&store, &set).unwrap().now, t);
        assert_eq!(archive.now(), t);
        // Without a `now`, changes are stamped where the clock stands.
        assert_eq!(archive.apply(&store, &ChangeSet::default()).unwrap().now, t);
        let back = ChangeSet {
            now: Some(t - Duration::seconds(1)),
            ..ChangeSet::default()
        };
        assert!(matches!(
            archive.apply(&store, &back),
            Err(ChangeError::ClockBackwards { clock, .. }) if clock == t
        ));
        assert_eq!(archive.now(), t);
    }

    #[test]
    fn random_picks_are_seeded() {
        let pick = |seed| {
            let (store, archive) = (store(), Archive::default());
            let set = ChangeSet {
                seed,
                revise: Revise {
                    random: 8,
                    from: Some(day(2024, 5, 1)),
                    to: Some(day(2024, 5, 3)),
                    ..Revise::default()
                },
                ..ChangeSet::default()
            };
            let r = archive.apply(&store, &set).unwrap();
            let urs: Vec<String> = r.revised.into_iter().map(|c| c.granule_ur).collect();
            urs
        };
        let a = pick(1);
        assert_eq!(a.len(), 8);
        assert_eq!(a.iter().collect::<HashSet<_>>().len(), 8, "distinct");
        assert_eq!(a, pick(1));
        assert_ne!(a, pick(2));
    }

    #[test]
    fn deleted_queries_are_checked_as_cmr_does() {
        let now = at("2026-11-29T10:00:00Z");
        let q = parse_deleted_query(
            "revision_date=2026-11-01T00:00:00Z&provider=LPCLOUD&parent_collection_id=C2021957657-LPCLOUD",
            now,
        )
        .unwrap();
        assert_eq!(q.since, at("2026-11-01T00:00:00Z"));
        assert_eq!(q.collection, Some(Some(Collection::Hlsl30)));
        assert!(!q.other_provider);
        let q = parse_deleted_query("revision_date=2026-11-01T00:00:00Z&provider=POCLOUD", now);
        assert!(q.unwrap().other_provider);
        let err = |raw: &str| parse_deleted_query(raw, now).unwrap_err().0;
        assert_eq!(
            err("revision_date=2025-11-28T00:00:00Z"),
            "Revision date must be within one year of today."
        );
        assert!(parse_deleted_query("revision_date=2025-11-29T10:00:00Z", now).is_ok());
        assert_eq!(
            err(""),
            "One revision date is required for deleted granules search."
        );
        assert!(
            err("revision_date=2026-11-01T00:00:00Z,2026-11-02T00:00:00Z").contains("single start")
        );
        assert_eq!(
            err("revision_date=2026-11-01T00:00:00Z&temporal=x"),
            "Parameter [temporal] was not recognized."
        );
        assert!(err("revision_date=yesterday").contains("revision_date datetime is invalid"));
    }

    #[test]
    fn deleted_bodies_mix_both_date_forms() {
        let t = |i: usize| Tombstone {
            granule_ur: format!("HLS.S30.T01ABC.2024100T000000.v2.0.{i}"),
            concept_id: format!("G{i}-LPCLOUD"),
            collection: Collection::Hlss30,
            revision_date: at("2026-11-29T10:11:12.345Z"),
        };
        let body = deleted_body(&[(0, t(0)), (1, t(1))]);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v[0]["revision-date"], "2026-11-29T10:11:12.345Z");
        assert_eq!(v[1]["revision-date"], "2026-11-29T10:11:12+0000");
        assert_eq!(v[1]["concept-id"], "G1-LPCLOUD");
        assert_eq!(v[0]["parent-collection-id"], "C2021957295-LPCLOUD");
        assert_eq!(v[0]["provider-id"], "LPCLOUD");
        assert!(body.starts_with(r#"[{"granule-ur":"#), "{body}");
        assert_eq!(deleted_body(&[]), "[]");
    }
}
