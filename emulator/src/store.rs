//! The granules the emulator serves, grouped by (collection, UTC day of the begin time),
//! each day sorted as CMR sorts and indexed by granule id.

use bytes::Bytes;
use chrono::{Datelike, NaiveDate};
use hls_flow::collection::Collection;
use hls_flow::source::hls::{GranuleMeta, to_stac_item};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

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
    /// Bounding rectangle of the footprint: `[west, south, east, north]`.
    pub bbox: [f64; 4],
    /// A recorded CMR entry to serve verbatim (replay), compact JSON.
    pub entry: Option<String>,
    /// A recorded `_stac.json` to serve verbatim.
    pub item: Option<String>,
    /// The `_stac.json` rendered from `meta`, once, on its first request.
    rendered: OnceLock<Bytes>,
}

impl Granule {
    /// Wraps a [`GranuleMeta`]; `None` if its concept id has no number or it has no points.
    pub(crate) fn new(meta: GranuleMeta) -> Option<Granule> {
        let concept_num = concept_number(&meta.concept_id)?;
        let bbox = meta.bbox()?;
        Some(Granule {
            begin_ms: meta.begin.timestamp_millis(),
            end_ms: meta.end.timestamp_millis(),
            concept_num,
            bbox,
            meta,
            entry: None,
            item: None,
            rendered: OnceLock::new(),
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
                .get_or_init(|| Bytes::from(to_stac_item(&self.meta).to_string()))
                .clone(),
        }
    }

    /// The CMR sort key.
    pub(crate) fn key(&self) -> SortKey {
        (self.begin_ms, self.concept_num)
    }
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
    #[cfg(test)]
    pub(crate) fn get(&self, id: &str) -> Option<&Granule> {
        self.index.get(id).map(|&i| &self.granules[i])
    }
}

type Cell = Arc<OnceLock<Arc<Day>>>;

/// Where granules come from.
#[derive(Debug)]
pub(crate) enum Store {
    /// A fixed set of days.
    Fixed(BTreeMap<(Collection, NaiveDate), Arc<Day>>),
    /// Generated on first use, then cached.
    Synthetic {
        config: SyntheticConfig,
        cache: Mutex<HashMap<(Collection, NaiveDate), Cell>>,
    },
}

impl Store {
    /// A lazily generated store.
    pub(crate) fn synthetic(config: SyntheticConfig) -> Store {
        Store::Synthetic {
            config,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// A day's granules (an empty day outside the data's range).
    pub(crate) fn day(&self, c: Collection, d: NaiveDate) -> Option<Arc<Day>> {
        match self {
            Store::Fixed(days) => days.get(&(c, d)).cloned(),
            Store::Synthetic { config, cache } => {
                if d < config.start || d > config.end {
                    return None;
                }
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
        match self {
            Store::Fixed(days) => days
                .iter()
                .filter(|((col, d), _)| {
                    *col == c && from.is_none_or(|f| *d >= f) && to.is_none_or(|t| *d <= t)
                })
                .map(|(_, day)| day.clone())
                .collect(),
            Store::Synthetic { config, .. } => {
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
