//! The granules the emulator serves, grouped by (collection, UTC day of the begin time),
//! each day sorted as CMR sorts and indexed by granule id.

use bytes::Bytes;
use chrono::{Datelike, NaiveDate};
use hls_flow::collection::Collection;
use hls_flow::source::hls::{GranuleMeta, to_stac_item};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use super::synthetic::{self, SyntheticConfig};

/// CMR's sort key of a granule: begin time (epoch ms), then the concept id's number.
pub(crate) type SortKey = (i64, u64);

/// One granule as the emulator holds it.
#[derive(Debug, Clone)]
pub(crate) struct Granule {
    /// The values its item and entry are made of.
    pub meta: GranuleMeta,
    /// Begin time, epoch ms (CMR keeps milliseconds).
    pub begin_ms: i64,
    /// End time, epoch ms.
    pub end_ms: i64,
    /// The number in the concept id (`G3790086838-LPCLOUD` → 3790086838).
    pub concept_num: u64,
    /// Revision date (`meta.updated`), epoch ms: what `updated_since` and `revision_date`
    /// compare with.
    pub updated_ms: i64,
    /// CMR's revision id: 1 when ingested, one more at each revision.
    pub revision_id: u32,
    /// Bounding rectangle of the footprint: `[west, south, east, north]`.
    pub bbox: [f64; 4],
    /// A recorded CMR entry to serve verbatim (replay), compact JSON.
    pub entry: Option<String>,
    /// A recorded `_stac.json` to serve verbatim.
    pub item: Option<String>,
    /// The `_stac.json` rendered from `meta`, once, on its first request.
    rendered: OnceLock<Bytes>,
    /// The ECHO10 `<Granule>` record rendered from `meta`, once, for the first page that
    /// lists it.
    record: OnceLock<String>,
}

impl Granule {
    /// Wraps a [`GranuleMeta`]; `None` if its concept id has no number or it has no points.
    pub(crate) fn new(meta: GranuleMeta) -> Option<Granule> {
        let concept_num = concept_number(&meta.concept_id)?;
        let bbox = meta.bbox()?;
        Some(Granule {
            begin_ms: meta.begin.timestamp_millis(),
            end_ms: meta.end.timestamp_millis(),
            updated_ms: meta.updated.timestamp_millis(),
            revision_id: 1,
            concept_num,
            bbox,
            meta,
            entry: None,
            item: None,
            rendered: OnceLock::new(),
            record: OnceLock::new(),
        })
    }

    /// The `_stac.json` served for this granule: the recorded one, else the one rendered
    /// from `meta`. It is rendered on the first request and then served as the same bytes,
    /// as LP DAAC serves static files: the emulator shares the machine's cores with the
    /// harvest being measured, and the real server's rendering costs the harvest nothing.
    pub(crate) fn item_body(&self) -> Bytes {
        match &self.item {
            Some(recorded) => Bytes::from(recorded.clone()),
            None => self
                .rendered
                .get_or_init(|| Bytes::from(rendered_item(&self.meta).to_string()))
                .clone(),
        }
    }

    /// The ECHO10 `<Granule>` record of `meta`, rendered on the first request of a page that
    /// lists it and then copied into every such page, so that the emulator does not spend
    /// the CPU of the harvest it serves (a revision makes a new [`Granule`]).
    pub(crate) fn echo10_record(&self) -> &str {
        self.record
            .get_or_init(|| crate::echo10::render_granule(&self.meta))
    }

    /// The CMR sort key.
    pub(crate) fn key(&self) -> SortKey {
        (self.begin_ms, self.concept_num)
    }
}

/// The `_stac.json` LP DAAC generates for `meta`: its geometry, bbox and datetimes as the
/// generator writes them ([`published`](crate::published): 6-decimal coordinates rounded as
/// Python does, microseconds), computed here independently of hls-flow's mapping; HLSS30
/// items of granules that begin after [`synthetic::last_day_with_thumbnail`] have no
/// `thumbnail` asset (LP DAAC stopped publishing their `.jpg`).
pub(crate) fn rendered_item(meta: &GranuleMeta) -> serde_json::Value {
    let mut item = to_stac_item(meta);
    crate::published::apply(&mut item, meta);
    if meta.collection == Collection::Hlss30
        && meta.begin.date_naive() > synthetic::last_day_with_thumbnail()
        && let Some(assets) = item.get_mut("assets").and_then(|a| a.as_object_mut())
    {
        assets.remove("thumbnail");
    }
    item
}

/// `G3790086838-LPCLOUD` → 3790086838.
pub(crate) fn concept_number(concept_id: &str) -> Option<u64> {
    let digits = concept_id.strip_prefix('G')?.split('-').next()?;
    digits.parse().ok()
}

/// The granules of one collection whose begin time is in one UTC day.
#[derive(Debug, Default)]
pub(crate) struct Day {
    /// Sorted by [`Granule::key`].
    pub granules: Vec<Granule>,
    index: HashMap<String, usize>,
}

impl Day {
    /// Sorts and indexes.
    pub(crate) fn new(mut granules: Vec<Granule>) -> Day {
        granules.sort_by_key(Granule::key);
        let index = granules
            .iter()
            .enumerate()
            .map(|(i, g)| (g.meta.granule_ur.clone(), i))
            .collect();
        Day { granules, index }
    }

    /// The granule with this id.
    pub(crate) fn get(&self, id: &str) -> Option<&Granule> {
        self.index.get(id).map(|&i| &self.granules[i])
    }
}

type Cell = Arc<OnceLock<Arc<Day>>>;

/// The granules served: the base data, with the days a change set rewrote in its place.
#[derive(Debug)]
pub(crate) struct Store {
    base: Base,
    /// Days as the change sets left them (see [`crate::archive`]).
    changed: RwLock<HashMap<(Collection, NaiveDate), Arc<Day>>>,
}

/// Where the granules come from before any change.
#[derive(Debug)]
pub(crate) enum Base {
    /// A fixed set of days.
    Fixed(BTreeMap<(Collection, NaiveDate), Arc<Day>>),
    /// Generated on first use, then cached.
    Synthetic {
        config: SyntheticConfig,
        cache: Mutex<HashMap<(Collection, NaiveDate), Cell>>,
    },
}

impl Store {
    /// A fixed set of days.
    pub(crate) fn fixed(days: BTreeMap<(Collection, NaiveDate), Arc<Day>>) -> Store {
        Store {
            base: Base::Fixed(days),
            changed: RwLock::default(),
        }
    }

    /// A lazily generated store.
    pub(crate) fn synthetic(config: SyntheticConfig) -> Store {
        Store {
            base: Base::Synthetic {
                config,
                cache: Mutex::new(HashMap::new()),
            },
            changed: RwLock::default(),
        }
    }

    fn changed_day(&self, c: Collection, d: NaiveDate) -> Option<Arc<Day>> {
        let changed = self.changed.read().unwrap_or_else(|e| e.into_inner());
        changed.get(&(c, d)).cloned()
    }

    /// Replaces a day's granules from now on (a change set's result).
    pub(crate) fn set_day(&self, c: Collection, d: NaiveDate, day: Day) {
        let mut changed = self.changed.write().unwrap_or_else(|e| e.into_inner());
        changed.insert((c, d), Arc::new(day));
    }

    /// Whether granules can begin on `d`: any day for fixed data, the configured range for
    /// synthetic data.
    pub(crate) fn holds_day(&self, d: NaiveDate) -> bool {
        match &self.base {
            Base::Fixed(_) => true,
            Base::Synthetic { config, .. } => d >= config.start && d <= config.end,
        }
    }

    /// The first and last day with data (`None` for no data at all).
    pub(crate) fn range(&self) -> Option<(NaiveDate, NaiveDate)> {
        match &self.base {
            Base::Synthetic { config, .. } => Some((config.start, config.end)),
            Base::Fixed(days) => {
                let changed = self.changed.read().unwrap_or_else(|e| e.into_inner());
                let all = days.keys().chain(changed.keys()).map(|(_, d)| *d);
                let lo = all.clone().min()?;
                Some((lo, all.max()?))
            }
        }
    }

    /// A day's granules (an empty day outside the data's range).
    pub(crate) fn day(&self, c: Collection, d: NaiveDate) -> Option<Arc<Day>> {
        if !self.holds_day(d) {
            return None;
        }
        if let Some(day) = self.changed_day(c, d) {
            return Some(day);
        }
        match &self.base {
            Base::Fixed(days) => days.get(&(c, d)).cloned(),
            Base::Synthetic { config, cache } => {
                let cell = {
                    // A poisoned lock only means another request panicked mid-insert;
                    // the map itself is still consistent.
                    let mut map = cache.lock().unwrap_or_else(|e| e.into_inner());
                    map.entry((c, d)).or_default().clone()
                };
                Some(
                    cell.get_or_init(|| Arc::new(Day::new(synthetic::generate_day(config, c, d))))
                        .clone(),
                )
            }
        }
    }

    /// The days of `c` with data, from `from` to `to` (inclusive; `None` = unbounded).
    pub(crate) fn days(
        &self,
        c: Collection,
        from: Option<NaiveDate>,
        to: Option<NaiveDate>,
    ) -> Vec<Arc<Day>> {
        match &self.base {
            Base::Fixed(days) => {
                let in_range = |col: Collection, d: NaiveDate| {
                    col == c && from.is_none_or(|f| d >= f) && to.is_none_or(|t| d <= t)
                };
                let changed = self.changed.read().unwrap_or_else(|e| e.into_inner());
                let mut dates: Vec<NaiveDate> = days
                    .keys()
                    .chain(changed.keys())
                    .filter(|(col, d)| in_range(*col, *d))
                    .map(|(_, d)| *d)
                    .collect();
                drop(changed);
                dates.sort();
                dates.dedup();
                dates.into_iter().filter_map(|d| self.day(c, d)).collect()
            }
            Base::Synthetic { config, .. } => {
                let lo = from.map_or(config.start, |f| f.max(config.start));
                let hi = to.map_or(config.end, |t| t.min(config.end));
                lo.iter_days()
                    .take_while(|d| *d <= hi)
                    .filter_map(|d| self.day(c, d))
                    .collect()
            }
        }
    }

    /// Finds a granule by id: its day is the id's date, or the next day (a Sentinel-2
    /// datatake can start before midnight).
    pub(crate) fn find(&self, id: &str) -> Option<(Arc<Day>, usize)> {
        let c = Collection::from_granule_id(id)?;
        let date = id_date(id)?;
        for d in [Some(date), date.succ_opt()].into_iter().flatten() {
            if let Some(day) = self.day(c, d)
                && let Some(&i) = day.index.get(id)
            {
                return Some((day, i));
            }
        }
        None
    }
}

/// The date in a granule id: `HLS.S30.T35VLJ.2021168T100559.v2.0` → 2021-06-17.
pub(crate) fn id_date(id: &str) -> Option<NaiveDate> {
    let stamp = id.split('.').nth(3)?;
    let year: i32 = stamp.get(..4)?.parse().ok()?;
    let doy: u32 = stamp.get(4..7)?.parse().ok()?;
    NaiveDate::from_yo_opt(year, doy)
}

/// `YYYYDDD` of a date, as granule ids write it.
pub(crate) fn year_doy(d: NaiveDate) -> String {
    format!("{:04}{:03}", d.year(), d.ordinal())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hlss30_items_lose_the_thumbnail_after_2026_06_16() {
        let config = SyntheticConfig {
            start: NaiveDate::from_ymd_opt(2026, 6, 16).unwrap(),
            end: NaiveDate::from_ymd_opt(2026, 6, 17).unwrap(),
            granules_per_day: 10,
            seed: 1,
        };
        let store = Store::synthetic(config.clone());
        let has_thumbnail = |c: Collection, d: NaiveDate| -> Vec<bool> {
            store
                .day(c, d)
                .unwrap()
                .granules
                .iter()
                .map(|g| {
                    let item: serde_json::Value = serde_json::from_slice(&g.item_body()).unwrap();
                    assert!(item["assets"]["B01"].is_object());
                    item["assets"].get("thumbnail").is_some()
                })
                .collect()
        };
        let (last, after) = (config.start, config.end);
        // The edge granules begin on the day, so the whole day is on one side.
        assert!(has_thumbnail(Collection::Hlss30, last).iter().all(|&t| t));
        assert!(has_thumbnail(Collection::Hlss30, after).iter().all(|&t| !t));
        assert!(has_thumbnail(Collection::Hlsl30, after).iter().all(|&t| t));
        assert_eq!(synthetic::last_day_with_thumbnail(), last);
    }

    #[test]
    fn ids_and_concepts() {
        assert_eq!(concept_number("G3790086838-LPCLOUD"), Some(3_790_086_838));
        assert_eq!(concept_number("C3790086838-LPCLOUD"), None);
        assert_eq!(
            id_date("HLS.S30.T35VLJ.2021168T100559.v2.0"),
            NaiveDate::from_ymd_opt(2021, 6, 17)
        );
        assert_eq!(id_date("HLS.S30.T35VLJ.2021400T100559.v2.0"), None);
        assert_eq!(
            year_doy(NaiveDate::from_ymd_opt(2025, 10, 2).unwrap_or_default()),
            "2025275"
        );
    }
}
