//! The library API that mirrors the Python tool hls-flow replaces: `process_date_range`,
//! `process_month`, `get_summary_stats` and the low-level `hls_to_stac_geoparquet`.

use crate::bbox::Bbox;
use crate::collection::Collection;
use crate::engine::checkpoint::Checkpoint;
use crate::engine::checkpoint::memory::MemoryCheckpoint;
use crate::engine::pipeline::{Pipeline, RunConfig};
pub use crate::engine::report::Outcome;
use crate::engine::report::TaskOutcome;
use crate::engine::scheduler::{SchedulerSettings, run_tasks};
use crate::engine::task::TaskSpec;
use crate::error::{Error, Result};
use crate::period::{DayRange, Month};
use crate::progress::{Progress, UnitBar};
use crate::source::cmr::{CmrClient, DEFAULT_CMR_URL, MAX_PAGE_SIZE};
use crate::source::http::HttpSettings;
use crate::source::items::ItemFetcher;
use crate::source::retry::RetryPolicy;
use crate::write::harvest::{HarvestSettings, Harvester, Source, WindowReport};
use crate::write::output::Output;
use chrono::{DateTime, NaiveDate, Utc};
use object_store::ObjectStore;
use serde::Serialize;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Entries per CMR page when the items come from `_stac.json` (`Source::StacJson`). A JSON
/// entry of an HLS granule weighs ~14 KB (its links), so a page of 2,000 (CMR's maximum, kept
/// for ECHO10, whose point is few requests) is ~28 MB held twice while it is read and
/// parsed: the largest thing a harvest held, for no gain, as the items are fetched one by
/// one anyway. 500 keep a page at ~7 MB, for 4× the (cheap) CMR requests.
pub const STAC_JSON_PAGE_SIZE: u32 = 500;

/// Where CMR is and how hls-flow introduces itself.
#[derive(Debug, Clone)]
pub struct Endpoints {
    /// CMR base URL (default: the real CMR).
    pub cmr_url: String,
    /// HTTP settings (client id, timeouts).
    pub http: HttpSettings,
    /// CMR page size (2000 unless testing paging; at most [`STAC_JSON_PAGE_SIZE`] with
    /// `Source::StacJson`).
    pub page_size: u32,
    /// CMR requests at once (CMR is shared by everyone: keep it low).
    pub max_cmr_requests: usize,
    /// Retry policy of every request.
    pub retry: RetryPolicy,
}

impl Default for Endpoints {
    fn default() -> Self {
        Endpoints {
            cmr_url: DEFAULT_CMR_URL.to_string(),
            http: HttpSettings::default(),
            page_size: MAX_PAGE_SIZE,
            max_cmr_requests: 2,
            retry: RetryPolicy::default(),
        }
    }
}

impl Endpoints {
    /// Endpoints for a CMR at `url` (an emulator, say), everything else default.
    pub fn with_cmr(url: &str) -> Endpoints {
        Endpoints {
            cmr_url: url.to_string(),
            ..Endpoints::default()
        }
    }

    /// Builds a harvester on these endpoints.
    pub fn harvester(&self, settings: HarvestSettings) -> Result<Harvester> {
        let http = crate::source::http::client(&self.http)?;
        let cmr = CmrClient::new(
            http.clone(),
            &self.cmr_url,
            &self.http.client_id,
            self.retry,
            self.max_cmr_requests,
        )
        .with_page_size(match settings.source {
            Source::StacJson => self.page_size.min(STAC_JSON_PAGE_SIZE),
            Source::Echo10 => self.page_size,
        });
        Ok(Harvester::new(
            cmr,
            ItemFetcher::new(http, self.retry),
            settings,
        ))
    }
}

/// Options of [`process_date_range`] (the `generate-daily` command).
#[derive(Debug, Clone)]
pub struct DailyOptions {
    /// Collections to harvest.
    pub collections: Vec<Collection>,
    /// Only granules intersecting this box.
    pub bbox: Option<Bbox>,
    /// Work on several days at once (else one after the other).
    pub parallel: bool,
    /// Days (of one collection) at once when `parallel`.
    pub max_concurrent_days: usize,
    /// Item fetches at once within a day.
    pub max_concurrent_per_day: usize,
    /// Skip a day whose complete file exists.
    pub skip_existing: bool,
    /// Draw progress bars.
    pub show_progress: bool,
    /// Folder below the output where daily files go (`""`: the output itself).
    pub daily_root: String,
    /// Where temporary files are written.
    pub tmp_dir: Option<PathBuf>,
    /// CMR and HTTP settings.
    pub endpoints: Endpoints,
    /// Where items come from: published `_stac.json` files or CMR's ECHO10 records.
    pub source: Source,
}

impl Default for DailyOptions {
    fn default() -> Self {
        DailyOptions {
            collections: Collection::ALL.to_vec(),
            bbox: None,
            parallel: false,
            max_concurrent_days: 3,
            max_concurrent_per_day: 50,
            skip_existing: true,
            show_progress: false,
            daily_root: String::new(),
            tmp_dir: None,
            endpoints: Endpoints::default(),
            source: Source::StacJson,
        }
    }
}

/// The outcome of one day of one collection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DayOutcome {
    /// The collection.
    pub collection: Collection,
    /// The day.
    pub day: NaiveDate,
    /// How it ended: [`Outcome::Succeeded`], [`Outcome::Skipped`] (a complete file
    /// existed already) or [`Outcome::Failed`] (nothing was published).
    pub status: Outcome,
    /// Items in the day's file.
    pub items: u64,
    /// `CMR-Hits` of the day's search.
    pub cmr_hits: u64,
    /// The file (as `OUTPUT/…`), when one exists.
    pub path: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// Granules that could not be written, with their reasons.
    pub missing: Vec<(String, String)>,
    /// Optional ECHO10 attributes that were missing (`--source echo10`): their item fields
    /// are left out.
    pub missing_optional: u64,
}

/// What a run of [`process_date_range`] did, day by day.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RunSummary {
    /// One outcome per (collection, day), in order of collection then day.
    pub outcomes: Vec<DayOutcome>,
}

/// Totals of a [`RunSummary`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SummaryStats {
    /// Days (of a collection) that succeeded.
    pub succeeded: usize,
    /// Days skipped because their file was complete.
    pub skipped: usize,
    /// Days that failed.
    pub failed: usize,
    /// Items written by this run.
    pub items_written: u64,
    /// Items in skipped days' files.
    pub items_skipped: u64,
    /// (succeeded + skipped) / all, in percent (100 for an empty run).
    pub success_rate: f64,
}

/// Totals of a run, as the Python tool's `get_summary_stats` gave them.
///
/// ```
/// use hls_flow::api::{RunSummary, get_summary_stats};
/// let stats = get_summary_stats(&RunSummary::default());
/// assert_eq!(stats.failed, 0);
/// assert_eq!(stats.success_rate, 100.0);
/// ```
pub fn get_summary_stats(summary: &RunSummary) -> SummaryStats {
    let count = |s: Outcome| summary.outcomes.iter().filter(|o| o.status == s).count();
    let (succeeded, skipped, failed) = (
        count(Outcome::Succeeded),
        count(Outcome::Skipped),
        count(Outcome::Failed),
    );
    let sum = |s: Outcome| {
        summary
            .outcomes
            .iter()
            .filter(|o| o.status == s)
            .map(|o| o.items)
            .sum()
    };
    let total = succeeded + skipped + failed;
    SummaryStats {
        succeeded,
        skipped,
        failed,
        items_written: sum(Outcome::Succeeded),
        items_skipped: sum(Outcome::Skipped),
        success_rate: if total == 0 {
            100.0
        } else {
            100.0 * (succeeded + skipped) as f64 / total as f64
        },
    }
}

/// Harvests every day of `range` and every collection of `options` into daily
/// stac-geoparquet files below `output`
/// (`HLSS30_2.0/2024/05/HLSS30_2.0-2024-05-15.parquet`). A day fails rather than write an
/// incomplete file; the others go on. Errors only for what stops the whole run.
///
/// ```no_run
/// # async fn f() -> hls_flow::Result<()> {
/// use hls_flow::api::{DailyOptions, Endpoints, process_date_range, get_summary_stats};
/// use hls_flow::{write::output::Output, period::DayRange};
/// let options = DailyOptions {
///     endpoints: Endpoints::with_cmr("http://127.0.0.1:9000"),
///     ..DailyOptions::default()
/// };
/// let range = DayRange::parse(&["20240510", "20240520"])?;
/// let summary = process_date_range(range, &Output::parse("out")?, &options).await?;
/// println!("{:?}", get_summary_stats(&summary));
/// # Ok(()) }
/// ```
pub async fn process_date_range(
    range: DayRange,
    output: &Output,
    options: &DailyOptions,
) -> Result<RunSummary> {
    let cfg = options.run_config();
    let pipeline = Arc::new(Pipeline::new(&cfg, output.clone())?);
    // Harvest tasks only: daily files, no repartition.
    let tasks: Vec<TaskSpec> = options
        .collections
        .iter()
        .flat_map(|&c| range.days().map(move |d| TaskSpec::harvest(c, d)))
        .collect();
    let checkpoint = Arc::new(MemoryCheckpoint::new());
    let scope: HashSet<i64> = checkpoint.plan(&tasks, &[]).await?.into_iter().collect();
    let run_id = checkpoint
        .start_run(&format!("generate-daily {}..{}", range.start, range.end))
        .await?;
    let progress = Progress::new(options.show_progress, tasks.len() as u64, "days");
    let report = run_tasks(
        checkpoint,
        pipeline.clone(),
        &scope,
        run_id,
        &cfg.scheduler,
        &progress,
        std::future::pending(),
    )
    .await;
    progress.finish();
    let mut outcomes: Vec<DayOutcome> = report?
        .tasks
        .iter()
        .filter_map(|t| day_outcome(t, &pipeline, output))
        .collect();
    outcomes.sort_by_key(|o| (o.collection, o.day));
    Ok(RunSummary { outcomes })
}

impl DailyOptions {
    /// The engine's configuration of a `generate-daily` run: every day one harvest task,
    /// attempted once (each request is retried; a day that fails is reported, not
    /// attempted again), without a time limit.
    pub fn run_config(&self) -> RunConfig {
        RunConfig {
            daily_prefix: self.daily_root.clone(),
            collections: self.collections.clone(),
            bbox: self.bbox,
            endpoints: self.endpoints.clone(),
            fetches_per_day: self.max_concurrent_per_day.max(1),
            scheduler: SchedulerSettings {
                max_concurrent_days: if self.parallel {
                    self.max_concurrent_days.max(1)
                } else {
                    1
                },
                task_attempts: 1,
                task_timeout: Duration::MAX,
                ..SchedulerSettings::default()
            },
            show_progress: self.show_progress,
            tmp_dir: self.tmp_dir.clone(),
            source: self.source,
            skip_existing: self.skip_existing,
            ..RunConfig::default()
        }
    }
}

/// The outcome of one harvest task of a `generate-daily` run.
fn day_outcome(t: &TaskOutcome, pipeline: &Pipeline, output: &Output) -> Option<DayOutcome> {
    let task = &t.task;
    let day = task.spec.day?;
    let shown = |p: &str| output.show(&object_store::path::Path::from(p));
    let mut outcome = DayOutcome {
        collection: task.spec.collection,
        day,
        status: t.outcome,
        items: 0,
        cmr_hits: 0,
        path: None,
        error: None,
        missing: Vec::new(),
        missing_optional: 0,
    };
    match t.outcome {
        Outcome::Succeeded | Outcome::Skipped | Outcome::AlreadyDone => {
            outcome.items = task.items_written.unwrap_or(0);
            outcome.cmr_hits = task.cmr_hits.unwrap_or(0);
            outcome.path = task.output_path.as_deref().map(shown);
            outcome.missing_optional = pipeline.missing_optional(&task.key);
        }
        Outcome::Failed | Outcome::FailedBefore => {
            let error = task.last_error.as_deref().unwrap_or("unknown error");
            tracing::warn!("{} {day} failed: {error}", task.spec.collection);
            outcome.status = Outcome::Failed;
            outcome.error = Some(error.to_string());
            outcome.missing = task.missing.clone();
        }
        Outcome::NotRun => {
            outcome.status = Outcome::Failed;
            outcome.error = Some(format!("{}: not run", task.key));
        }
    }
    Some(outcome)
}

/// Harvests every day of one month (see [`process_date_range`]).
///
/// ```no_run
/// # async fn f() -> hls_flow::Result<()> {
/// use hls_flow::api::{DailyOptions, process_month};
/// let out = hls_flow::write::output::Output::parse("out")?;
/// let summary = process_month("202405".parse()?, &out, &DailyOptions::default()).await?;
/// assert_eq!(summary.outcomes.len(), 2 * 31);
/// # Ok(()) }
/// ```
pub async fn process_month(
    month: Month,
    output: &Output,
    options: &DailyOptions,
) -> Result<RunSummary> {
    process_date_range(DayRange::month(month), output, options).await
}

/// The low-level call: every granule of one collection whose start is in
/// `[temporal.0, temporal.1)` into one stac-geoparquet file at `output_path` of `store`.
#[derive(Debug, Clone)]
pub struct GeoparquetRequest {
    /// The object path of the file inside `store`.
    pub output_path: String,
    /// The collection.
    pub collection: Collection,
    /// Only granules intersecting this box.
    pub bbox: Option<Bbox>,
    /// `[start, end)` of the granules' start times.
    pub temporal: (DateTime<Utc>, DateTime<Utc>),
    /// Item fetches at once.
    pub max_concurrent: usize,
    /// Draw a progress bar.
    pub show_progress: bool,
    /// Where the file goes.
    pub store: Arc<dyn ObjectStore>,
}

/// Harvests one time window into one file (the Python tool's `hls_to_stac_geoparquet`).
/// Fails, writing nothing, unless every listed granule was written.
///
/// ```no_run
/// # async fn f() -> hls_flow::Result<()> {
/// use hls_flow::api::{Endpoints, GeoparquetRequest, hls_to_stac_geoparquet};
/// use hls_flow::Collection;
/// use chrono::{TimeZone, Utc};
/// let store = std::sync::Arc::new(object_store::memory::InMemory::new());
/// let request = GeoparquetRequest {
///     output_path: "hlsl30-2025-10-02.parquet".into(),
///     collection: Collection::Hlsl30,
///     bbox: Some("-93,46,-92,47".parse()?),
///     temporal: (
///         Utc.with_ymd_and_hms(2025, 10, 2, 0, 0, 0).unwrap(),
///         Utc.with_ymd_and_hms(2025, 10, 3, 0, 0, 0).unwrap(),
///     ),
///     max_concurrent: 50,
///     show_progress: false,
///     store,
/// };
/// let report = hls_to_stac_geoparquet(request, &Endpoints::with_cmr("http://127.0.0.1:9000")).await?;
/// println!("{} items", report.written);
/// # Ok(()) }
/// ```
pub async fn hls_to_stac_geoparquet(
    request: GeoparquetRequest,
    endpoints: &Endpoints,
) -> Result<WindowReport> {
    let (start, end) = request.temporal;
    if start >= end {
        return Err(Error::InvalidDate {
            input: format!("{start}..{end}"),
            problem: crate::error::DateProblem::EmptyWindow,
        });
    }
    let harvester = endpoints.harvester(HarvestSettings {
        bbox: request.bbox,
        max_concurrent_fetches: request.max_concurrent.max(1),
        ..HarvestSettings::default()
    })?;
    let output = Output::from_store(request.store.clone(), "", "store");
    let dest = object_store::path::Path::from(request.output_path.as_str());
    let progress = Progress::new(request.show_progress, 1, "window");
    let bar = if request.show_progress {
        progress.unit(request.collection.short_name())
    } else {
        UnitBar::hidden()
    };
    let report = harvester
        .harvest_window(request.collection, start, end, &output, &dest, &bar)
        .await;
    bar.done();
    progress.finish();
    report
}
