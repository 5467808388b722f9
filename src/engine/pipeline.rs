//! The checkpointed pipeline: plans the DAG, records it in the state file, and runs it with
//! the scheduler on the real executor (harvest days, repartition months).

use crate::api::Endpoints;
use crate::bbox::Bbox;
use crate::collection::Collection;
use crate::engine::checkpoint::Checkpoint;
use crate::engine::checkpoint::sqlite::{StateStore, TaskKind, TaskOutput, TaskRow, TaskState};
use crate::engine::dag::Dag;
use crate::engine::report::RunReport;
use crate::engine::scheduler::{Executor, SchedulerSettings, requeue_logged, run_tasks};
use crate::engine::task::TaskId;
use crate::error::{Error, Result};
use crate::period::{DayRange, Month};
use crate::progress::{Progress, UnitBar};
use crate::write::geoparquet::row_count;
use crate::write::harvest::{HarvestSettings, Harvester, Source};
use crate::write::output::Output;
use crate::write::recent::RecentFiles;
use chrono::NaiveDate;
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjPath;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Default place of the state file.
pub const DEFAULT_STATE: &str = "state/hls-flow.sqlite";

/// Everything a checkpointed run needs, resolved from defaults, a workflow file and flags.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Output location (local folder or object store URL).
    pub output: String,
    /// Folder below the output for daily files.
    pub daily_prefix: String,
    /// Object store options of the output (the workflow's `[output.options]`).
    pub output_options: std::collections::BTreeMap<String, String>,
    /// Collections.
    pub collections: Vec<Collection>,
    /// Spatial filter.
    pub bbox: Option<Bbox>,
    /// CMR and HTTP settings.
    pub endpoints: Endpoints,
    /// Item fetches at once within a day.
    pub fetches_per_day: usize,
    /// Scheduler limits and retry policy.
    pub scheduler: SchedulerSettings,
    /// The state file.
    pub state: PathBuf,
    /// Draw progress bars.
    pub show_progress: bool,
    /// Where temporary files go.
    pub tmp_dir: Option<PathBuf>,
    /// Where items come from.
    pub source: Source,
    /// Whether a harvest whose complete daily file exists (from outside the checkpoint)
    /// succeeds without running (`generate-daily`; a `run` trusts its state file instead).
    pub skip_existing: bool,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            output: "out".into(),
            daily_prefix: "daily".into(),
            output_options: Default::default(),
            collections: Collection::ALL.to_vec(),
            bbox: None,
            endpoints: Endpoints::default(),
            fetches_per_day: 50,
            scheduler: SchedulerSettings::default(),
            state: PathBuf::from(DEFAULT_STATE),
            show_progress: false,
            tmp_dir: None,
            source: Source::StacJson,
            skip_existing: false,
        }
    }
}

/// The settings a state describes (a state is of one output): recorded by the first run,
/// checked by every later one, taken from it by the commands that act on a state as it is.
pub(crate) const STATE_SETTINGS: [&str; 3] = ["output", "bbox", "daily_prefix"];

impl RunConfig {
    /// This configuration's value of each of [`STATE_SETTINGS`].
    fn state_settings(&self) -> [(&'static str, String); 3] {
        [
            ("output", self.output.clone()),
            ("bbox", self.bbox.map(|b| b.to_string()).unwrap_or_default()),
            ("daily_prefix", self.daily_prefix.clone()),
        ]
    }

    /// Records this configuration's settings in a new state, or checks that they are the
    /// state's ([`StateProblem::OtherSetting`](crate::error::StateProblem::OtherSetting)
    /// if not). Each is claimed in one statement, so two runs starting at once on a new
    /// state cannot both record theirs.
    pub(crate) async fn claim_settings<C: Checkpoint>(&self, state: &C) -> Result<()> {
        for (key, value) in self.state_settings() {
            let stored = state.claim_meta(key, &value).await?;
            if stored != value {
                return Err(Error::State {
                    path: self.state.display().to_string(),
                    problem: crate::error::StateProblem::OtherSetting {
                        key,
                        stored,
                        given: value,
                    },
                });
            }
        }
        Ok(())
    }

    /// This configuration with the settings the state has recorded.
    pub(crate) async fn with_state_settings<C: Checkpoint>(&self, state: &C) -> Result<RunConfig> {
        let mut cfg = self.clone();
        if let Some(o) = state.meta("output").await? {
            cfg.output = o;
        }
        if let Some(b) = state.meta("bbox").await? {
            cfg.bbox = if b.is_empty() { None } else { Some(b.parse()?) };
        }
        if let Some(p) = state.meta("daily_prefix").await? {
            cfg.daily_prefix = p;
        }
        Ok(cfg)
    }
}

/// The real executor: harvests days and repartitions months.
#[derive(Debug)]
pub struct Pipeline {
    harvester: Harvester,
    output: Output,
    daily_prefix: String,
    tmp_dir: Option<PathBuf>,
    /// Whether a harvest whose complete daily file exists is skipped (`generate-daily`).
    skip_existing: bool,
    /// Optional ECHO10 attributes missing, by task key (only where there were some).
    missing_optional: Mutex<HashMap<String, u64>>,
    /// The executor of changes tasks (`sync`).
    changes: Option<Arc<dyn crate::engine::sync::RunChanges>>,
    /// Small daily files just written, kept decoded for their month's repartition (when
    /// the run has repartition tasks).
    recent: Option<Arc<RecentFiles>>,
}

impl Pipeline {
    /// A pipeline writing below `output`.
    pub fn new(cfg: &RunConfig, output: Output) -> Result<Pipeline> {
        let harvester = cfg.endpoints.harvester(HarvestSettings {
            bbox: cfg.bbox,
            max_concurrent_fetches: cfg.fetches_per_day.max(1),
            tmp_dir: cfg.tmp_dir.clone(),
            source: cfg.source,
            ..HarvestSettings::default()
        })?;
        Ok(Pipeline {
            harvester,
            output,
            daily_prefix: cfg.daily_prefix.clone(),
            tmp_dir: cfg.tmp_dir.clone(),
            skip_existing: cfg.skip_existing,
            missing_optional: Mutex::default(),
            changes: None,
            recent: None,
        })
    }

    /// Keeps small daily files decoded for their month's repartition, which then does not
    /// read them again ([`RecentFiles`]).
    pub fn with_recent_files(mut self) -> Pipeline {
        self.recent = Some(Arc::new(RecentFiles::default()));
        self
    }

    /// Runs changes tasks with `q`.
    pub fn with_changes(mut self, q: impl crate::engine::sync::RunChanges + 'static) -> Pipeline {
        self.changes = Some(Arc::new(q));
        self
    }

    /// The daily file of a harvest task, if it is one.
    pub fn daily_path(&self, task: &TaskRow) -> Option<ObjPath> {
        match (task.spec.kind, task.spec.day) {
            (TaskKind::Harvest, Some(day)) => Some(self.output.daily_path(
                &self.daily_prefix,
                task.spec.collection,
                day,
            )),
            _ => None,
        }
    }

    /// Optional ECHO10 attributes that were missing in the harvest of the task `key`.
    pub fn missing_optional(&self, key: &str) -> u64 {
        let map = self
            .missing_optional
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        map.get(key).copied().unwrap_or(0)
    }

    async fn harvest(
        &self,
        collection: Collection,
        day: NaiveDate,
        bar: &UnitBar,
    ) -> Result<TaskOutput> {
        let dest = self.output.daily_path(&self.daily_prefix, collection, day);
        let mut report = self
            .harvester
            .harvest_day(collection, day, &self.output, &dest, bar)
            .await?;
        if let (Some(recent), Some(decoded)) = (&self.recent, report.decoded.take()) {
            // What the file is now, published: its month's repartition checks it still is.
            if let Ok(meta) = self.output.store().head(&dest).await {
                recent.keep(self.output.show(&dest), &meta, decoded);
            }
        }
        if report.missing_optional > 0 {
            let key = crate::engine::task::TaskSpec::harvest(collection, day).key();
            let mut map = self
                .missing_optional
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            map.insert(key, report.missing_optional);
        }
        Ok(TaskOutput {
            cmr_hits: Some(report.cmr_hits),
            items_written: report.written,
            output_path: report.published.then(|| dest.to_string()),
            output_size: report.bytes,
            requeue: Vec::new(),
        })
    }

    async fn repartition(
        &self,
        task: &TaskRow,
        inputs: &[TaskRow],
        bar: &UnitBar,
    ) -> Result<TaskOutput> {
        let paths: Vec<ObjPath> = inputs
            .iter()
            .filter_map(|t| t.output_path.as_deref())
            .map(ObjPath::from)
            .collect();
        if paths.is_empty() {
            // Every day of the month was empty (a small bounding box, say).
            return Ok(TaskOutput::default());
        }
        let report = crate::write::repartition::repartition_month(
            &self.output,
            &paths,
            &self.output,
            task.spec.collection,
            task.spec.month,
            &crate::write::repartition::RepartitionOptions {
                // A task that runs again rebuilds its partition from the same inputs.
                overwrite: true,
                tmp_dir: self.tmp_dir.clone(),
                progress: bar.clone(),
                recent: self.recent.clone(),
                ..Default::default()
            },
        )
        .await?;
        Ok(TaskOutput {
            cmr_hits: None,
            items_written: report.rows,
            output_path: Some(report.path.to_string()),
            output_size: report.bytes,
            requeue: Vec::new(),
        })
    }
}

impl Executor for Pipeline {
    async fn run(&self, task: &TaskRow, inputs: &[TaskRow], bar: &UnitBar) -> Result<TaskOutput> {
        match (task.spec.kind, task.spec.day) {
            (TaskKind::Harvest, Some(day)) => self.harvest(task.spec.collection, day, bar).await,
            (TaskKind::Repartition, _) => self.repartition(task, inputs, bar).await,
            (TaskKind::Changes, _) => match &self.changes {
                Some(q) => q.run(task, &self.output).await,
                None => Err(crate::engine::task::IllegalTransition {
                    task: format!("{} (changes tasks run under `sync`)", task.key),
                    from: task.state,
                    transition: crate::engine::task::Transition::Claim,
                }
                .into()),
            },
            (TaskKind::Harvest, None) => Err(crate::engine::task::IllegalTransition {
                task: format!("{} (a harvest without a day)", task.key),
                from: task.state,
                transition: crate::engine::task::Transition::Claim,
            }
            .into()),
        }
    }

    async fn output_intact(&self, task: &TaskRow) -> Result<bool> {
        let Some(path) = task.output_path.as_deref() else {
            // Nothing was written: right only if there was nothing to write.
            return Ok(task.items_written.unwrap_or(0) == 0);
        };
        let rows = row_count(&self.output, &ObjPath::from(path))
            .await
            .ok()
            .flatten();
        Ok(rows.is_some() && rows == task.items_written)
    }

    async fn already_done(&self, task: &TaskRow) -> Result<Option<TaskOutput>> {
        if !self.skip_existing {
            return Ok(None);
        }
        let Some(dest) = self.daily_path(task) else {
            return Ok(None);
        };
        Ok(existing_daily_rows(&self.output, &dest)
            .await
            .map(|rows| TaskOutput {
                cmr_hits: None,
                items_written: rows,
                output_path: Some(dest.to_string()),
                output_size: 0,
                requeue: Vec::new(),
            }))
    }
}

/// The rows of the daily file at `dest` if it counts as done for `generate-daily`'s
/// skip-existing rule: there, with a readable footer and at least one row. (A file that
/// cannot be read is logged, and the day harvested again.)
pub(crate) async fn existing_daily_rows(output: &Output, dest: &ObjPath) -> Option<u64> {
    match row_count(output, dest).await {
        Ok(Some(rows)) if rows > 0 => Some(rows),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!("{}: {e}; harvesting the day again", output.show(dest));
            None
        }
    }
}

/// Opens the state file for a run with `cfg` and checks it belongs to the same output and
/// bounding box (a state file describes one output).
/// The folder of a run's temporary files (`--tmp-dir`, else `<state>.tmp/` beside the state
/// file), emptied: the files in it are from a run that was killed.
fn scratch_dir(cfg: &RunConfig) -> Result<PathBuf> {
    let dir = cfg.tmp_dir.clone().unwrap_or_else(|| {
        let mut name = cfg.state.as_os_str().to_owned();
        name.push(".tmp");
        PathBuf::from(name)
    });
    if cfg.tmp_dir.is_none() && dir.is_dir() {
        let mut left = 0;
        for entry in std::fs::read_dir(&dir).map_err(|e| Error::io(dir.display(), e))? {
            let path = entry.map_err(|e| Error::io(dir.display(), e))?.path();
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.map_err(|e| Error::io(path.display(), e))?;
            left += 1;
        }
        if left > 0 {
            tracing::info!("removed {left} temporary files of an interrupted run");
        }
    }
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(dir.display(), e))?;
    Ok(dir)
}

pub(crate) async fn open_state(cfg: &RunConfig) -> Result<Arc<StateStore>> {
    let state = StateStore::open_exclusive(&cfg.state)?;
    cfg.claim_settings(&state).await?;
    Ok(Arc::new(state))
}

pub(crate) async fn execute(
    state: Arc<StateStore>,
    cfg: &RunConfig,
    scope: HashSet<i64>,
    command: &str,
    cancel: impl Future<Output = ()>,
) -> Result<RunReport> {
    let output = Output::parse_with_options(&cfg.output, &cfg.output_options)?;
    let pending = state
        .tasks()?
        .iter()
        .filter(|t| scope.contains(&t.id) && t.state != TaskState::Succeeded)
        .count();
    // Holding the state's lock, nobody else writes here: clear what a killed run left
    // before writing anything (with nothing to do, nothing is written, and the output is
    // not listed).
    if pending > 0 {
        output.clean_leftovers().await?;
    }
    let mut cfg = cfg.clone();
    cfg.tmp_dir = Some(scratch_dir(&cfg)?);
    let cfg = &cfg;
    let changes = crate::engine::sync::ChangesQuery::new(state.clone(), cfg)?;
    let pipeline = Arc::new(
        Pipeline::new(cfg, output)?
            .with_changes(changes)
            .with_recent_files(),
    );
    let run_id = state.start_run(command)?;
    let progress = Progress::new(cfg.show_progress, pending as u64, "tasks");
    let result = run_tasks(
        state.clone(),
        pipeline,
        &scope,
        run_id,
        &cfg.scheduler,
        &progress,
        cancel,
    )
    .await;
    progress.finish();
    let status = result.as_ref().map_or("failed", RunReport::status);
    state.end_run(run_id, status)?;
    result
}

/// `hls-flow run`: plans the DAG for `range`, records it, and runs what is not done.
/// Running it again after a crash finishes the work; over a complete range it does nothing.
pub async fn run(
    range: DayRange,
    cfg: &RunConfig,
    cancel: impl Future<Output = ()>,
) -> Result<RunReport> {
    let state = open_state(cfg).await?;
    let done: HashSet<String> = state
        .tasks()?
        .into_iter()
        .filter(|t| t.state == TaskState::Succeeded)
        .map(|t| t.key)
        .collect();
    let dag = Dag::plan(&cfg.collections, range, &done);
    let (tasks, deps) = dag.ordered();
    let ids = state.record_dag(&tasks, &deps)?;
    let command = format!("run {}..{}", range.start, range.end);
    execute(state, cfg, ids.into_iter().collect(), &command, cancel).await
}

/// Which failed tasks `retry-failed` takes.
#[derive(Debug, Clone, Default)]
pub struct RetryFilter {
    /// Only this collection.
    pub collection: Option<Collection>,
    /// Only this day.
    pub day: Option<NaiveDate>,
    /// Only this month.
    pub month: Option<Month>,
}

impl RetryFilter {
    /// Whether the task is one the filter names.
    pub fn matches(&self, t: &TaskRow) -> bool {
        self.collection.is_none_or(|c| c == t.spec.collection)
            && self.day.is_none_or(|d| t.spec.day == Some(d))
            && self.month.is_none_or(|m| t.spec.month == m)
    }

    /// The failed tasks of `rows` that the filter names, by id.
    pub fn failed(&self, rows: &HashMap<TaskId, TaskRow>) -> Vec<TaskId> {
        let mut failed: Vec<TaskId> = rows
            .values()
            .filter(|t| t.state == TaskState::Failed && self.matches(t))
            .map(|t| t.id)
            .collect();
        failed.sort_unstable();
        failed
    }
}

/// `hls-flow retry-failed`: re-queues the failed tasks that match, and runs them with the
/// tasks that depend on them. The output and bounding box are the state file's.
pub async fn retry_failed(
    filter: &RetryFilter,
    cfg: &RunConfig,
    cancel: impl Future<Output = ()>,
) -> Result<Option<RunReport>> {
    let probe = StateStore::open_exclusive(&cfg.state)?;
    let cfg = cfg.with_state_settings(&probe).await?;
    drop(probe);
    let state = open_state(&cfg).await?;
    let mut rows: HashMap<i64, TaskRow> = state.tasks()?.into_iter().map(|t| (t.id, t)).collect();
    let failed = filter.failed(&rows);
    if failed.is_empty() {
        return Ok(None);
    }
    let scope: HashSet<i64> = requeue_logged(&state, &mut rows, &failed, "retry-failed")
        .await?
        .into_iter()
        .collect();
    let report = execute(state.clone(), &cfg, scope, "retry-failed", cancel).await?;
    // A sync whose failed tasks these were completes now.
    crate::engine::sync::finish(state.as_ref(), &cfg.state.display().to_string()).await?;
    Ok(Some(report))
}
