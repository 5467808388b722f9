//! Harvesting one collection over one time window (normally a UTC day) into one
//! stac-geoparquet file: CMR pages → granules of the window → items fetched with bounded
//! concurrency → batches → writer → published only if every listed granule was written.

use crate::bbox::Bbox;
use crate::cmr::{CmrClient, GranuleQuery};
use crate::collection::Collection;
use crate::error::{Error, Result, one_line};
use crate::geoparquet::{BatchWriter, DEFAULT_BATCH_SIZE};
use crate::items::ItemFetcher;
use crate::output::Output;
use crate::progress::UnitBar;
use chrono::{DateTime, NaiveDate, Utc};
use futures::StreamExt;
use object_store::path::Path;
use std::collections::HashSet;
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
}

impl Default for HarvestSettings {
    fn default() -> Self {
        HarvestSettings {
            bbox: None,
            max_concurrent_fetches: 50,
            batch_size: DEFAULT_BATCH_SIZE,
            tmp_dir: None,
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
}

/// Harvests windows of CMR granules into files.
#[derive(Debug, Clone)]
pub struct Harvester {
    cmr: CmrClient,
    fetcher: ItemFetcher,
    settings: HarvestSettings,
}

struct Job {
    id: String,
    url: String,
}

#[derive(Default)]
struct Listing {
    hits: u64,
    listed: u64,
    duplicates: u64,
    outside: u64,
    unfetchable: Vec<(String, String)>,
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
        let (start, end) = crate::period::day_window(day);
        self.harvest_window(collection, start, end, output, dest, bar)
            .await
            .map_err(|e| match e {
                Error::IncompleteDay {
                    collection,
                    listed,
                    failed,
                    first,
                    missing,
                    ..
                } => Error::IncompleteDay {
                    collection,
                    day,
                    listed,
                    failed,
                    first,
                    missing,
                },
                other => other,
            })
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
        // CMR's temporal search is inclusive at both ends and matches by intersection: the
        // query [start, end] returns every granule starting in [start, end) (and some
        // neighbours, dropped below), so nothing in the last second of a day is lost.
        let query = GranuleQuery {
            collection,
            start,
            end,
            bbox: self.settings.bbox,
        };
        let (tx, rx) = mpsc::channel::<Job>(4 * self.settings.max_concurrent_fetches.max(1));
        let pages = self.cmr.pages(&query);
        let lister_bar = bar.clone();
        let lister = tokio::spawn(async move {
            let mut listing = Listing::default();
            let mut seen: HashSet<String> = HashSet::new();
            futures::pin_mut!(pages);
            while let Some(page) = pages.next().await {
                let page = page?;
                if listing.hits == 0 {
                    lister_bar.set_total(page.hits);
                }
                listing.hits = page.hits;
                for entry in page.entries {
                    if entry.time_start < start || entry.time_start >= end {
                        listing.outside += 1;
                        continue;
                    }
                    if !seen.insert(entry.title.clone()) {
                        listing.duplicates += 1;
                        continue;
                    }
                    listing.listed += 1;
                    match entry.stac_json_url() {
                        Some(url) => {
                            let job = Job {
                                url: url.to_string(),
                                id: entry.title,
                            };
                            if tx.send(job).await.is_err() {
                                // The fetching side stopped; its error is reported.
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
            lister_bar.set_total(listing.listed);
            Ok::<Listing, Error>(listing)
        });

        let label = output.show(dest);
        let mut writer = BatchWriter::start(label, self.settings.tmp_dir.clone());
        let jobs =
            futures::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|job| (job, rx)) },
            );
        let fetcher = self.fetcher.clone();
        let fetches = jobs
            .map(|job| {
                let fetcher = fetcher.clone();
                async move {
                    let r = fetcher.fetch(&job.url, &job.id, collection).await;
                    (job.id, r)
                }
            })
            .buffer_unordered(self.settings.max_concurrent_fetches.max(1));
        let mut fetches = std::pin::pin!(fetches);
        let mut failures: Vec<(String, String)> = Vec::new();
        let mut batch = Vec::with_capacity(self.settings.batch_size);
        let mut written = 0u64;
        let mut write_error = None;
        while let Some((id, result)) = fetches.next().await {
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
        drop(fetches);
        if let Some(e) = write_error {
            lister.abort();
            return Err(e);
        }
        let listing = lister.await.map_err(|e| Error::Task(e.to_string()))??;
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
                reason: format!(
                    "{written} items written but {} granules listed",
                    listing.listed
                ),
            });
        }
        let mut report = WindowReport {
            cmr_hits: listing.hits,
            listed: listing.listed,
            written,
            duplicates: listing.duplicates,
            outside: listing.outside,
            bytes: 0,
            published: false,
        };
        if let Some(f) = finished {
            if f.rows != written {
                return Err(Error::Write {
                    path: output.show(dest),
                    reason: format!("{} rows in the file, {written} items written", f.rows),
                });
            }
            report.bytes = output.publish_file(f.file.path(), dest).await?;
            report.published = true;
        }
        Ok(report)
    }
}
