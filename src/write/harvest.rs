//! Harvesting one collection over one time window (normally a UTC day) into one
//! stac-geoparquet file: CMR pages → granules of the window → items fetched with bounded
//! concurrency → batches → writer → published only if every listed granule was written.

use crate::bbox::Bbox;
use crate::collection::Collection;
use crate::error::{Error, GranuleProblem, Result, WriteError, one_line};
use crate::progress::UnitBar;
use crate::source::cmr::{CmrClient, GranuleQuery};
use crate::source::items::ItemFetcher;
use crate::source::seen::SeenIds;
use crate::write::geoparquet::{BatchWriter, DEFAULT_BATCH_SIZE, ItemRow, WriterKind};
use crate::write::output::Output;
use chrono::{DateTime, NaiveDate, Utc};
use futures::StreamExt;
use object_store::path::Path;
use stac::Item;
use std::path::PathBuf;
use tokio::sync::mpsc;

/// Settings of a harvest.
#[derive(Debug, Clone)]
pub struct HarvestSettings {
    /// Only granules intersecting this box.
    pub bbox: Option<Bbox>,
    /// Item fetches at once within one window.
    pub max_concurrent_fetches: usize,
    /// Items per batch handed to the writer.
    pub batch_size: usize,
    /// Where temporary files are written (the system's temporary folder if `None`).
    pub tmp_dir: Option<PathBuf>,
    /// Where the items come from.
    pub source: Source,
    /// Write with the fixed-schema HLS writer (falling back to the generic writer for a
    /// file with an item outside the HLS shape) rather than the generic one.
    pub fast_writer: bool,
}

impl Default for HarvestSettings {
    fn default() -> Self {
        HarvestSettings {
            bbox: None,
            max_concurrent_fetches: 50,
            batch_size: DEFAULT_BATCH_SIZE,
            tmp_dir: None,
            source: Source::StacJson,
            fast_writer: true,
        }
    }
}

/// What a successful harvest of one window did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WindowReport {
    /// `CMR-Hits` of the window's search (it counts neighbours overlapping the window too).
    pub cmr_hits: u64,
    /// Distinct granules that start inside the window: the ones that must be written.
    pub listed: u64,
    /// Items written (equals `listed` on success).
    pub written: u64,
    /// Entries CMR listed more than once (dropped, by id).
    pub duplicates: u64,
    /// Entries that start outside the window (they belong to a neighbouring day).
    pub outside: u64,
    /// Size of the published file (0 when nothing was written).
    pub bytes: u64,
    /// Whether a file was published (false when the window has no granule).
    pub published: bool,
    /// Optional ECHO10 attributes that were missing (their item fields are left out).
    pub missing_optional: u64,
    /// The published file's rows as written, when the file is small
    /// ([`RecentFiles`](crate::write::recent::RecentFiles)).
    pub decoded: Option<crate::write::recent::Decoded>,
}

/// Harvests windows of CMR granules into files.
#[derive(Debug, Clone)]
pub struct Harvester {
    cmr: CmrClient,
    fetcher: ItemFetcher,
    settings: HarvestSettings,
}

/// Where the items come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Source {
    /// Fetch each granule's published `_stac.json` (one request per granule).
    #[default]
    StacJson,
    /// Build the items from CMR's ECHO10 records, 2,000 granules per request.
    Echo10,
}

impl std::str::FromStr for Source {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Source, String> {
        match s {
            "stac-json" => Ok(Source::StacJson),
            "echo10" => Ok(Source::Echo10),
            other => Err(format!(
                "unknown source {other:?}: expected stac-json or echo10"
            )),
        }
    }
}

/// A granule's item, or why there is none.
type Fetched = (String, Result<ItemRow>);

#[derive(Default)]
struct Listing {
    hits: u64,
    listed: u64,
    duplicates: u64,
    outside: u64,
    unfetchable: Vec<(String, String)>,
    missing_optional: u64,
}

impl Listing {
    /// Notes a page's `CMR-Hits`; the first one is the bar's first estimate of the total.
    fn page(&mut self, hits: u64, bar: &UnitBar) {
        if self.hits == 0 {
            bar.set_total(hits);
        }
        self.hits = hits;
    }
}

/// Keeps the granules that start in the window, once each.
struct DayFilter {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    seen: SeenIds,
}

impl DayFilter {
    fn new(query: &GranuleQuery) -> DayFilter {
        DayFilter {
            start: query.start,
            end: query.end,
            seen: SeenIds::new(),
        }
    }

    fn keep(&mut self, listing: &mut Listing, id: &str, begin: DateTime<Utc>) -> bool {
        if begin < self.start || begin >= self.end {
            listing.outside += 1;
            return false;
        }
        if !self.seen.insert(id) {
            listing.duplicates += 1;
            return false;
        }
        listing.listed += 1;
        true
    }
}

/// `--source stac-json`: pages of CMR entries → `_stac.json` fetches, `concurrency` at
/// once. Pages are listed while earlier granules are being fetched. With `json`, the items
/// are passed on as their checked JSON bytes (for the fixed-schema writer), else parsed.
async fn list_and_fetch(
    cmr: CmrClient,
    fetcher: ItemFetcher,
    query: GranuleQuery,
    concurrency: usize,
    json: bool,
    tx: mpsc::Sender<Fetched>,
    bar: UnitBar,
) -> Result<Listing> {
    let collection = query.collection;
    let (job_tx, job_rx) = mpsc::channel::<(String, String)>(2 * concurrency);
    let lister = tokio::spawn(async move {
        let mut listing = Listing::default();
        let mut filter = DayFilter::new(&query);
        let pages = cmr.pages(&query);
        futures::pin_mut!(pages);
        while let Some(page) = pages.next().await {
            let page = page?;
            listing.page(page.hits, &bar);
            for entry in page.entries {
                if !filter.keep(&mut listing, &entry.title, entry.time_start) {
                    continue;
                }
                match entry.stac_json_url() {
                    Some(url) => {
                        let job = (entry.title.clone(), url.to_string());
                        if job_tx.send(job).await.is_err() {
                            return Ok(listing);
                        }
                    }
                    None => listing.unfetchable.push((
                        entry.title,
                        "CMR entry has no https _stac.json link".to_string(),
                    )),
                }
            }
        }
        bar.set_total(listing.listed);
        Ok::<Listing, Error>(listing)
    });
    let jobs = futures::stream::unfold(job_rx, |mut rx| async move {
        rx.recv().await.map(|job| (job, rx))
    });
    let fetched = jobs
        .map(|(id, url)| {
            let fetcher = fetcher.clone();
            async move {
                let r = if json {
                    fetcher
                        .fetch_json(&url, &id)
                        .await
                        .map(|(json, key)| ItemRow::Json {
                            json,
                            key: Some(key),
                        })
                } else {
                    fetcher
                        .fetch(&url, &id, collection)
                        .await
                        .map(ItemRow::from)
                };
                (id, r)
            }
        })
        .buffer_unordered(concurrency);
    futures::pin_mut!(fetched);
    while let Some(f) = fetched.next().await {
        if tx.send(f).await.is_err() {
            lister.abort();
            break;
        }
    }
    lister.await.map_err(|source| Error::Join {
        task: format!("listing {collection} in CMR"),
        source,
    })?
}

/// `--source echo10`: pages of ECHO10 records → items built from them. With `json`, the
/// granules' values are passed on as they are (the fixed-schema writer builds their rows
/// from them), else as `stac::Item`s.
async fn list_echo10(
    cmr: CmrClient,
    query: GranuleQuery,
    json: bool,
    tx: mpsc::Sender<Fetched>,
    bar: UnitBar,
) -> Result<Listing> {
    let mut listing = Listing::default();
    let mut filter = DayFilter::new(&query);
    let collection = query.collection;
    // The next page is fetched and parsed while this one's records go to the writer: one
    // page ahead, no more (a page's 2,000 records are ~1 MB parsed). The slot for a page is
    // taken before it is fetched, so a page parsed waits in it while the one before is
    // taken, and the reader fetches no further until that one is done.
    let (page_tx, mut page_rx) = mpsc::channel(1);
    let pages = cmr.echo10_pages(&query);
    // Aborted when the listing ends, early or not.
    let mut reader = tokio::task::JoinSet::new();
    reader.spawn(async move {
        futures::pin_mut!(pages);
        while let Ok(slot) = page_tx.reserve().await {
            let Some(page) = pages.next().await else {
                break;
            };
            let failed = page.is_err();
            slot.send(page);
            if failed {
                break;
            }
        }
    });
    while let Some(page) = page_rx.recv().await {
        let page = page?;
        listing.page(page.hits, &bar);
        for rec in page.records {
            let fetched = match rec.record {
                Ok((meta, missing)) => {
                    if !filter.keep(&mut listing, &meta.granule_ur, meta.begin) {
                        continue;
                    }
                    listing.missing_optional += missing.len() as u64;
                    let id = meta.granule_ur.clone();
                    let item = if meta.collection != collection {
                        Err(Error::Granule {
                            id: id.clone(),
                            problem: GranuleProblem::OtherCollection {
                                found: meta.collection,
                                searched: collection,
                            },
                        })
                    } else if json {
                        // Straight into the fixed-schema writer's columns, no JSON between.
                        Ok(ItemRow::Meta(Box::new(meta)))
                    } else {
                        item_from_value(&id, crate::source::hls::to_stac_item(&meta), collection)
                            .map(ItemRow::from)
                    };
                    (id, item)
                }
                Err(e) => {
                    // A record that cannot be read still names a granule CMR listed: it
                    // fails the day rather than vanish.
                    let id = e
                        .granule()
                        .map(str::to_string)
                        .unwrap_or_else(|| rec.concept_id.clone());
                    if !filter.seen.insert(&id) {
                        listing.duplicates += 1;
                        continue;
                    }
                    listing.listed += 1;
                    let problem = GranuleProblem::Record(e);
                    (id.clone(), Err(Error::Granule { id, problem }))
                }
            };
            if tx.send(fetched).await.is_err() {
                return Ok(listing);
            }
        }
    }
    bar.set_total(listing.listed);
    Ok(listing)
}

fn item_from_value(id: &str, value: serde_json::Value, collection: Collection) -> Result<Item> {
    let mut item: Item = serde_json::from_value(value).map_err(|e| Error::Granule {
        id: id.to_string(),
        problem: GranuleProblem::NotStac(e),
    })?;
    item.collection = Some(collection.stac_id().to_string());
    Ok(item)
}

impl Harvester {
    /// A harvester.
    pub fn new(cmr: CmrClient, fetcher: ItemFetcher, settings: HarvestSettings) -> Harvester {
        Harvester {
            cmr,
            fetcher,
            settings,
        }
    }

    /// The settings.
    pub fn settings(&self) -> &HarvestSettings {
        &self.settings
    }

    /// Harvests the granules of `collection` that start in the UTC `day` into `dest`.
    pub async fn harvest_day(
        &self,
        collection: Collection,
        day: NaiveDate,
        output: &Output,
        dest: &Path,
        bar: &UnitBar,
    ) -> Result<WindowReport> {
        // An incomplete window names its start day, which is `day` here.
        let (start, end) = crate::period::day_window(day);
        self.harvest_window(collection, start, end, output, dest, bar)
            .await
    }

    /// Harvests the granules of `collection` whose start time is in `[start, end)` into one
    /// file at `dest`. The file is published only if every such granule was written;
    /// otherwise the error lists every missing granule with its reason.
    pub async fn harvest_window(
        &self,
        collection: Collection,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        output: &Output,
        dest: &Path,
        bar: &UnitBar,
    ) -> Result<WindowReport> {
        let kind = if self.settings.fast_writer {
            WriterKind::Fast(collection)
        } else {
            WriterKind::Stac
        };
        // CMR's temporal search is inclusive at both ends and matches by intersection: the
        // query [start, end] returns every granule starting in [start, end) (and some
        // neighbours, dropped below), so nothing in the last second of a day is lost.
        let query = GranuleQuery {
            collection,
            start,
            end,
            bbox: self.settings.bbox,
        };
        let (tx, mut rx) =
            mpsc::channel::<Fetched>(2 * self.settings.max_concurrent_fetches.max(1));
        // The fixed-schema writer takes JSON bytes; the generic one, built items.
        let json = matches!(kind, WriterKind::Fast(_));
        let lister = match self.settings.source {
            Source::StacJson => tokio::spawn(list_and_fetch(
                self.cmr.clone(),
                self.fetcher.clone(),
                query,
                self.settings.max_concurrent_fetches.max(1),
                json,
                tx,
                bar.clone(),
            )),
            Source::Echo10 => {
                tokio::spawn(list_echo10(self.cmr.clone(), query, json, tx, bar.clone()))
            }
        };
        let label = output.show(dest);
        let mut writer = BatchWriter::start(label, self.settings.tmp_dir.clone(), kind);
        let mut failures: Vec<(String, String)> = Vec::new();
        let mut batch = Vec::with_capacity(self.settings.batch_size);
        let mut written = 0u64;
        let mut write_error = None;
        while let Some((id, result)) = rx.recv().await {
            match result {
                Ok(item) => {
                    batch.push(item);
                    bar.inc(1);
                    if batch.len() >= self.settings.batch_size {
                        written += batch.len() as u64;
                        if let Err(e) = writer.write(std::mem::take(&mut batch)).await {
                            write_error = Some(e);
                            break;
                        }
                    }
                }
                Err(e) => failures.push((id, one_line(&e))),
            }
        }
        drop(rx);
        if let Some(e) = write_error {
            lister.abort();
            return Err(e);
        }
        let listing = lister.await.map_err(|source| Error::Join {
            task: format!("listing {collection} {}", start.date_naive()),
            source,
        })??;
        failures.extend(listing.unfetchable);
        if !failures.is_empty() {
            failures.sort();
            return Err(Error::IncompleteDay {
                collection,
                day: start.date_naive(),
                listed: listing.listed,
                failed: failures.len() as u64,
                first: format!("{}: {}", failures[0].0, failures[0].1),
                missing: failures,
            });
        }
        if !batch.is_empty() {
            written += batch.len() as u64;
            writer.write(batch).await?;
        }
        let finished = writer.finish().await?;
        if written != listing.listed {
            return Err(Error::Write {
                path: output.show(dest),
                source: WriteError::Count {
                    written,
                    listed: listing.listed,
                },
            });
        }
        let mut report = WindowReport {
            missing_optional: listing.missing_optional,
            cmr_hits: listing.hits,
            listed: listing.listed,
            written,
            duplicates: listing.duplicates,
            outside: listing.outside,
            bytes: 0,
            published: false,
            decoded: None,
        };
        if let Some(f) = finished {
            if f.rows != written {
                return Err(Error::Write {
                    path: output.show(dest),
                    source: WriteError::Rows {
                        rows: f.rows,
                        written,
                    },
                });
            }
            report.bytes = output.publish(&f.data, dest).await?;
            report.published = true;
            report.decoded = f.decoded;
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Endpoints;
    use crate::write::geoparquet::read_items;
    use axum::Router;
    use axum::routing::get;

    const REAL: &str =
        include_str!("../../tests/fixtures/stac/HLS.S30.T01WEV.2024153T000609.v2.0_stac.json");
    const ID: &str = "HLS.S30.T01WEV.2024153T000609.v2.0";

    /// A CMR listing one granule of 2024-06-01, whose `_stac.json` is `item`.
    async fn server(item: String) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let page = serde_json::json!({"feed": {"entry": [{
            "id": "G1-LPCLOUD",
            "title": ID,
            "time_start": "2024-06-01T00:06:09.000Z",
            "links": [{"href": format!("{base}/items/{ID}_stac.json")}],
        }]}})
        .to_string();
        let app = Router::new()
            .route(
                "/search/granules.json",
                get(move || async move { ([("CMR-Hits", "1")], page) }),
            )
            .route("/items/{file}", get(move || async move { item }));
        tokio::spawn(async move { axum::serve(listener, app).await });
        base
    }

    async fn harvest(item: String) -> (WindowReport, Vec<Item>) {
        let base = server(item).await;
        let harvester = Endpoints::with_cmr(&base)
            .harvester(HarvestSettings::default())
            .unwrap();
        let output = Output::from_store(
            std::sync::Arc::new(object_store::memory::InMemory::new()),
            "",
            "memory://",
        );
        let dest = Path::from("day.parquet");
        let day = NaiveDate::from_ymd_opt(2024, 6, 1).unwrap();
        let report = harvester
            .harvest_day(Collection::Hlss30, day, &output, &dest, &UnitBar::hidden())
            .await
            .unwrap();
        (report, read_items(&output, &dest).await.unwrap())
    }

    #[tokio::test]
    async fn fetched_bytes_go_to_the_fast_writer_and_an_odd_day_to_the_generic_one_unfetched() {
        let (report, items) = harvest(REAL.to_string()).await;
        assert_eq!((report.listed, report.written), (1, 1));
        assert_eq!(items[0].id, ID);
        assert_eq!(items[0].collection.as_deref(), Some("HLSS30_2.0"));

        // A property outside the fixed schema: the fetched bytes, spilled, are written by
        // the generic writer, and nothing of the item is lost.
        let odd = REAL.replacen("\"properties\": {", "\"properties\": {\"hls:new\": 7,", 1);
        assert_ne!(odd, REAL);
        let (report, items) = harvest(odd).await;
        assert_eq!((report.listed, report.written), (1, 1));
        assert_eq!(items[0].collection.as_deref(), Some("HLSS30_2.0"));
        assert_eq!(
            items[0].properties.additional_fields.get("hls:new"),
            Some(&serde_json::json!(7))
        );
    }

    /// An emulator of synthetic days from 2024-05-14 to 2024-05-16, `per_day` granules a day.
    async fn emulator(per_day: u32) -> hls_flow_emulator::Emulator {
        let day = |d| NaiveDate::from_ymd_opt(2024, 5, d).unwrap();
        let config = hls_flow_emulator::EmulatorConfig {
            source: hls_flow_emulator::DataSource::Synthetic(hls_flow_emulator::SyntheticConfig {
                start: day(14),
                end: day(16),
                granules_per_day: per_day,
                seed: 7,
            }),
            faults: Default::default(),
        };
        hls_flow_emulator::Emulator::start(config, "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_bulk_listing_reads_one_page_ahead_of_the_writer_and_no_further() {
        let emu = emulator(600).await;
        let cmr = CmrClient::new(
            reqwest::Client::new(),
            &emu.base_url(),
            "test",
            crate::source::retry::RetryPolicy::none(),
            2,
        )
        .with_page_size(50);
        let (start, end) = crate::period::day_window(NaiveDate::from_ymd_opt(2024, 5, 15).unwrap());
        let query = GranuleQuery {
            collection: Collection::Hlss30,
            start,
            end,
            bbox: None,
        };
        // A writer that takes nothing yet: the listing stops at its first granule's send.
        let (tx, mut rx) = mpsc::channel(1);
        let listing = tokio::spawn(list_echo10(cmr, query, true, tx, UnitBar::hidden()));
        // The first page (being taken) and the next one (waiting) are read...
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while emu.counts().echo10_pages < 2 && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        // ... and not a third one.
        assert_eq!(emu.counts().echo10_pages, 2);

        // Taken, every granule of the day comes, each once, from every page.
        let mut ids = std::collections::BTreeSet::new();
        while let Some((id, row)) = rx.recv().await {
            assert!(row.is_ok(), "{id}");
            assert!(ids.insert(id));
        }
        let listing = listing.await.unwrap().unwrap();
        // The emulator's HLSS30 share of a day of 600: 390 granules, 8 pages of 50.
        assert_eq!(ids.len(), 390);
        assert_eq!(listing.listed, 390);
        assert_eq!(emu.counts().echo10_pages, 8);
    }
}
