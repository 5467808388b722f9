//! Where files go: a local folder or any `object_store` URL (`s3://…`, `file://…`,
//! `memory://`), and how they get there: written aside, then published in one step.

use crate::collection::Collection;
use crate::error::{Error, OutputProblem, Result};
use crate::write::scratch::Scratched;
use chrono::{Datelike, NaiveDate};
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey, S3CopyIfNotExists};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::local::LocalFileSystem;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload, WriteMultipart};
use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::sync::Arc;
use tokio::io::AsyncReadExt;
use url::Url;

/// Size of the parts of a multipart upload; a file up to this size is put in one request.
pub const DEFAULT_PART_SIZE: usize = 8 * 1024 * 1024;

/// The environment variable that sets another part size (bytes), e.g. to test multipart
/// uploads with small files.
pub const PART_SIZE_ENV: &str = "HLS_FLOW_PART_SIZE";

/// Parts of one multipart upload in flight at once.
const PARTS_IN_FLIGHT: usize = 4;

/// Where hls-flow keeps, below an output's prefix, what an interrupted process may leave:
/// `uploads/OWNER/` holds a record of each multipart upload in progress (path and upload id,
/// so that a later process can abort it), `staging/OWNER/` the files being published. OWNER
/// names the process ([`owner`]), so that a command without the state file's lock clears
/// only what processes that have ended left ([`Output::clean_leftovers_of_ended_processes`]).
pub const LEFTOVERS_DIR: &str = ".hls-flow";

/// An output location: a store and a prefix inside it.
#[derive(Debug, Clone)]
pub struct Output {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    display: String,
    /// The folder and its store, for a local output.
    local: Option<Local>,
    /// The S3 store's multipart API, whose uploads are recorded under [`LEFTOVERS_DIR`].
    s3: Option<Arc<AmazonS3>>,
    /// Size of the parts of a multipart upload.
    part_size: usize,
}

/// A local output's folder and store (which maps object paths to file paths).
#[derive(Debug, Clone)]
struct Local {
    root: std::path::PathBuf,
    fs: Arc<LocalFileSystem>,
}

/// Which leftovers [`Output::clean_leftovers`] clears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leftovers {
    /// Everything: no other process writes here (the state file's lock is held).
    All,
    /// Only those of processes of this machine that have ended: others may be writing.
    OfEndedProcesses,
}

impl Output {
    /// Opens an output given as a local path or a URL. A local folder is created if needed
    /// and must be writable.
    pub fn parse(s: &str) -> Result<Output> {
        Output::parse_with_options(s, &BTreeMap::new())
    }

    /// Opens an output like [`parse`](Output::parse), with store options (the workflow's
    /// `[output.options]`): `object_store`'s configuration keys of the URL's store, applied
    /// over its environment. An `s3://` output takes its endpoint, region, keys, session
    /// token, `AWS_ALLOW_HTTP` and `AWS_VIRTUAL_HOSTED_STYLE_REQUEST` from the `AWS_*`
    /// environment, as the AWS tools do (options: `AmazonS3ConfigKey` names such as
    /// `aws_endpoint`); with keys given, no instance-metadata endpoint is asked. A `gs://`
    /// output reads the `GOOGLE_*` environment (`GoogleConfigKey`: `google_service_account`,
    /// …), an `az://` (`azure://`, `abfs://`, `abfss://`) one the `AZURE_*` environment
    /// (`AzureConfigKey`: `azure_storage_account_name`, …).
    pub fn parse_with_options(s: &str, options: &BTreeMap<String, String>) -> Result<Output> {
        let invalid = |problem: OutputProblem| Error::InvalidOutput {
            output: s.to_string(),
            problem,
        };
        if s.trim().is_empty() {
            return Err(invalid(OutputProblem::Empty));
        }
        let part_size = match std::env::var(PART_SIZE_ENV) {
            Ok(v) => v
                .trim()
                .parse::<NonZeroUsize>()
                .map_err(|source| {
                    invalid(OutputProblem::PartSize {
                        value: v.clone(),
                        source,
                    })
                })?
                .get(),
            Err(_) => DEFAULT_PART_SIZE,
        };
        let looks_like_url = s.contains("://");
        if looks_like_url {
            let url = Url::parse(s).map_err(|e| invalid(OutputProblem::Url(e)))?;
            if url.scheme() == "file" {
                let path = url
                    .to_file_path()
                    .map_err(|_| invalid(OutputProblem::NotLocalFile))?;
                return Output::local(&path, s, part_size);
            }
            let unknown = |key: &String| {
                invalid(OutputProblem::UnknownOption {
                    key: key.clone(),
                    scheme: url.scheme().to_string(),
                })
            };
            let config_keys = options.iter().map(|(k, v)| (k.to_ascii_lowercase(), v));
            let store_error = |e| invalid(OutputProblem::Store(e));
            let mut s3 = None;
            let store: Arc<dyn ObjectStore> = match url.scheme() {
                "s3" | "s3a" => {
                    let mut builder = AmazonS3Builder::from_env().with_url(url.as_str());
                    for (key, value) in config_keys {
                        let key = key
                            .parse::<AmazonS3ConfigKey>()
                            .map_err(|_| unknown(&key))?;
                        builder = builder.with_config(key, value);
                    }
                    // Create-only publishing of a file bigger than a part copies it with a
                    // conditional multipart upload (`If-None-Match: *` on its completion,
                    // which AWS, MinIO and moto honour) unless the store is told another way
                    // (e.g. R2's header: `AWS_COPY_IF_NOT_EXISTS`, `aws_copy_if_not_exists`).
                    if builder
                        .get_config_value(&AmazonS3ConfigKey::CopyIfNotExists)
                        .is_none()
                    {
                        builder = builder.with_copy_if_not_exists(S3CopyIfNotExists::Multipart);
                    }
                    let store = Arc::new(builder.build().map_err(store_error)?);
                    s3 = Some(store.clone());
                    store
                }
                "gs" => {
                    let mut builder = GoogleCloudStorageBuilder::from_env().with_url(url.as_str());
                    for (key, value) in config_keys {
                        let key = key.parse::<GoogleConfigKey>().map_err(|_| unknown(&key))?;
                        builder = builder.with_config(key, value);
                    }
                    Arc::new(builder.build().map_err(store_error)?)
                }
                "az" | "azure" | "abfs" | "abfss" => {
                    let mut builder = MicrosoftAzureBuilder::from_env().with_url(url.as_str());
                    for (key, value) in config_keys {
                        let key = key.parse::<AzureConfigKey>().map_err(|_| unknown(&key))?;
                        builder = builder.with_config(key, value);
                    }
                    Arc::new(builder.build().map_err(store_error)?)
                }
                scheme => {
                    if let Some(key) = options.keys().next() {
                        return Err(invalid(OutputProblem::UnknownOption {
                            key: key.clone(),
                            scheme: scheme.to_string(),
                        }));
                    }
                    let (store, prefix) = object_store::parse_url(&url).map_err(store_error)?;
                    return Ok(Output {
                        store: Arc::from(store),
                        prefix,
                        display: s.trim_end_matches('/').to_string(),
                        local: None,
                        s3: None,
                        part_size,
                    });
                }
            };
            let prefix = Path::from_url_path(url.path())
                .map_err(|e| invalid(OutputProblem::Store(e.into())))?;
            return Ok(Output {
                store,
                prefix,
                display: s.trim_end_matches('/').to_string(),
                local: None,
                s3,
                part_size,
            });
        }
        Output::local(std::path::Path::new(s), s, part_size)
    }

    fn local(dir: &std::path::Path, display: &str, part_size: usize) -> Result<Output> {
        let invalid = |problem: OutputProblem| Error::InvalidOutput {
            output: display.to_string(),
            problem,
        };
        if dir.exists() && !dir.is_dir() {
            return Err(invalid(OutputProblem::NotAFolder));
        }
        std::fs::create_dir_all(dir).map_err(|e| invalid(OutputProblem::Io(e)))?;
        let probe = dir.join(format!(".hls-flow-write-test-{}", std::process::id()));
        std::fs::write(&probe, b"").map_err(|e| invalid(OutputProblem::NotWritable(e)))?;
        let _ = std::fs::remove_file(&probe);
        let canonical = dir
            .canonicalize()
            .map_err(|e| invalid(OutputProblem::Io(e)))?;
        let fs = Arc::new(
            LocalFileSystem::new_with_prefix(&canonical)
                .map_err(|e| invalid(OutputProblem::Store(e)))?,
        );
        Ok(Output {
            store: fs.clone(),
            prefix: Path::default(),
            display: display.trim_end_matches('/').to_string(),
            local: Some(Local {
                root: canonical,
                fs,
            }),
            s3: None,
            part_size,
        })
    }

    /// Removes, below a local output, the staging files of uploads a killed process left
    /// (`object_store` writes `NAME#N` and renames it to `NAME`). Call it only while no other
    /// process writes there (the state file's lock). Returns how many were removed.
    pub fn remove_staged_leftovers(&self) -> Result<u64> {
        let Some(local) = &self.local else {
            return Ok(0);
        };
        let mut removed = 0;
        let mut stack = vec![local.root.clone()];
        while let Some(dir) = stack.pop() {
            let entries = std::fs::read_dir(&dir).map_err(|e| Error::io(dir.display(), e))?;
            for entry in entries {
                let entry = entry.map_err(|e| Error::io(dir.display(), e))?;
                let path = entry.path();
                let kind = entry
                    .file_type()
                    .map_err(|e| Error::io(path.display(), e))?;
                if kind.is_dir() {
                    stack.push(path);
                } else if entry.file_name().to_string_lossy().contains(".parquet#") {
                    std::fs::remove_file(&path).map_err(|e| Error::io(path.display(), e))?;
                    tracing::info!("removed {}, left by an interrupted upload", path.display());
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    /// An output on a store the caller already has (e.g. an in-memory store in tests).
    pub fn from_store(store: Arc<dyn ObjectStore>, prefix: &str, display: &str) -> Output {
        Output {
            store,
            prefix: Path::from(prefix),
            display: display.to_string(),
            local: None,
            s3: None,
            part_size: DEFAULT_PART_SIZE,
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The prefix inside the store.
    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    /// The output as the user gave it, for messages.
    pub fn display(&self) -> &str {
        &self.display
    }

    /// A path below the prefix.
    pub fn child(&self, rel: &str) -> Path {
        let mut p = self.prefix.clone();
        for part in rel.split('/').filter(|s| !s.is_empty()) {
            p = p.clone().join(part);
        }
        p
    }

    /// Where a day's file of a collection goes, below `daily_root`:
    /// `HLSS30_2.0/2024/05/HLSS30_2.0-2024-05-15.parquet`.
    pub fn daily_path(&self, daily_root: &str, collection: Collection, day: NaiveDate) -> Path {
        self.child(&format!(
            "{daily_root}/{c}/{y:04}/{m:02}/{c}-{day}.parquet",
            c = collection.stac_id(),
            y = day.year(),
            m = day.month(),
        ))
    }

    /// Size of an object, or `None` if it does not exist.
    pub async fn size_of(&self, path: &Path) -> Result<Option<u64>> {
        match self.store.head(path).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(Error::store(path, e)),
        }
    }

    /// Clears what a killed process left below this output: the staging files of local
    /// uploads ([`remove_staged_leftovers`](Output::remove_staged_leftovers)), the multipart
    /// uploads recorded under [`LEFTOVERS_DIR`]`/uploads/` (aborted, so the store keeps no
    /// orphaned parts) and the staging objects under [`LEFTOVERS_DIR`]`/staging/`. Call it
    /// only while no other process writes here (the state file's lock). Returns how many
    /// were cleared.
    pub async fn clean_leftovers(&self) -> Result<u64> {
        let staged = self.remove_staged_leftovers()?;
        Ok(staged + self.clean_leftovers_dir(Leftovers::All).await?)
    }

    /// Clears, like [`clean_leftovers`](Output::clean_leftovers), what processes of this
    /// machine that have ended left under [`LEFTOVERS_DIR`], and nothing of a process that
    /// still runs or of another machine: for commands that hold no lock (`generate-daily`,
    /// `repartition`), so that two of them writing to one output never clear each other's
    /// uploads. Returns how many were cleared.
    pub async fn clean_leftovers_of_ended_processes(&self) -> Result<u64> {
        self.clean_leftovers_dir(Leftovers::OfEndedProcesses).await
    }

    async fn clean_leftovers_dir(&self, which: Leftovers) -> Result<u64> {
        let mut cleared = 0;
        let root = self.child(LEFTOVERS_DIR);
        let uploads = self.child(&format!("{LEFTOVERS_DIR}/uploads"));
        let found: Vec<_> = self
            .store
            .list(Some(&root))
            .try_collect()
            .await
            .map_err(|e| Error::store(self.show(&root), e))?;
        for meta in found {
            // `.hls-flow/{uploads,staging}/OWNER/NAME`
            let owner = meta
                .location
                .prefix_match(&root)
                .and_then(|mut parts| parts.nth(1))
                .map(|p| p.as_ref().to_string());
            if which == Leftovers::OfEndedProcesses
                && !owner.as_deref().is_some_and(owner_has_ended)
            {
                continue;
            }
            if meta.location.prefix_matches(&uploads) {
                let record = self
                    .store
                    .get(&meta.location)
                    .await
                    .map_err(|e| Error::store(self.show(&meta.location), e))?
                    .bytes()
                    .await
                    .map_err(|e| Error::store(self.show(&meta.location), e))?;
                let record = String::from_utf8_lossy(&record);
                let mut lines = record.lines();
                if let (Some(s3), Some(path), Some(id)) = (&self.s3, lines.next(), lines.next()) {
                    // Recorded as `Path`'s display form: parsed back as it is.
                    let path = Path::parse(path).unwrap_or_else(|_| Path::from(path));
                    match s3.abort_multipart(&path, &id.to_string()).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                        Err(e) => return Err(Error::store(self.show(&path), e)),
                    }
                    tracing::info!(
                        "aborted the multipart upload of {}, left by an interrupted process",
                        self.show(&path)
                    );
                }
            } else {
                tracing::info!(
                    "removed {}, left by an interrupted process",
                    self.show(&meta.location)
                );
            }
            self.delete(&meta.location).await?;
            cleared += 1;
        }
        // A local store leaves folders behind: remove the owners' folders that are empty
        // now (of ended owners only, unless everything goes).
        if let Some(local) = &self.local {
            for kind in ["uploads", "staging"] {
                let dir = local.root.join(LEFTOVERS_DIR).join(kind);
                let Ok(owners) = std::fs::read_dir(&dir) else {
                    continue;
                };
                for entry in owners.flatten() {
                    let name = entry.file_name().to_string_lossy().to_string();
                    if which == Leftovers::All || owner_has_ended(&name) {
                        let _ = std::fs::remove_dir(entry.path());
                    }
                }
            }
        }
        Ok(cleared)
    }

    /// Publishes a finished file, in memory or in a temporary file, to `dest` in one step
    /// (as [`publish_file`](Output::publish_file)). Returns the size written.
    pub async fn publish(&self, data: &Scratched, dest: &Path) -> Result<u64> {
        match data {
            Scratched::Memory(bytes) if self.local.is_some() => {
                let placed = self
                    .place_locally(Staging::Bytes(bytes.clone()), dest, Placing::Replace)
                    .await?;
                Ok(placed.unwrap_or_default())
            }
            Scratched::Memory(bytes) if bytes.len() <= self.part_size => {
                crate::write::fence::check(dest).await?;
                self.store
                    .put(dest, PutPayload::from(bytes.clone()))
                    .await
                    .map_err(|e| Error::store(dest, e))?;
                Ok(bytes.len() as u64)
            }
            Scratched::Memory(bytes) => {
                let mut staged = crate::write::scratch::temp_file(&None)
                    .map_err(|e| Error::io("a temporary file", e))?;
                std::io::Write::write_all(&mut staged, bytes)
                    .map_err(|e| Error::io(staged.path().display(), e))?;
                self.publish_file(staged.path(), dest).await
            }
            Scratched::File(file) => self.publish_file(file.path(), dest).await,
        }
    }

    /// The file of an object of a local output.
    fn local_path(&self, path: &Path) -> Result<std::path::PathBuf> {
        let local = self.local.as_ref().ok_or_else(|| {
            Error::store(
                self.show(path),
                object_store::Error::NotSupported {
                    source: "not a local output".into(),
                },
            )
        })?;
        local
            .fs
            .path_to_filesystem(path)
            .map_err(|e| Error::store(self.show(path), e))
    }

    /// Uploads a finished local file to `dest` in one step: readers see either nothing or
    /// the whole file (a local output copies it under [`LEFTOVERS_DIR`]`/staging/` and
    /// renames it; S3 completes a multipart upload, recorded under [`LEFTOVERS_DIR`] while
    /// it is in progress). Returns the size written.
    pub async fn publish_file(&self, local: &std::path::Path, dest: &Path) -> Result<u64> {
        if self.local.is_some() {
            let placed = self
                .place_locally(Staging::File(local.to_path_buf()), dest, Placing::Replace)
                .await?;
            return Ok(placed.unwrap_or_default());
        }
        crate::write::fence::check(dest).await?;
        let mut file = tokio::fs::File::open(local)
            .await
            .map_err(|e| Error::io(local.display(), e))?;
        let size = file
            .metadata()
            .await
            .map_err(|e| Error::io(local.display(), e))?
            .len();
        if size as usize <= self.part_size {
            let mut buf = Vec::with_capacity(size as usize);
            file.read_to_end(&mut buf)
                .await
                .map_err(|e| Error::io(local.display(), e))?;
            self.store
                .put(dest, PutPayload::from(buf))
                .await
                .map_err(|e| Error::store(dest, e))?;
            return Ok(size);
        }
        if let Some(s3) = &self.s3 {
            self.put_recorded_multipart(s3, file, local, dest).await?;
            return Ok(size);
        }
        let upload = self
            .store
            .put_multipart(dest)
            .await
            .map_err(|e| Error::store(dest, e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, self.part_size);
        let mut buf = vec![0u8; 1024 * 1024];
        loop {
            let n = match file.read(&mut buf).await {
                Ok(n) => n,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(Error::io(local.display(), e));
                }
            };
            if n == 0 {
                break;
            }
            if let Err(e) = writer.wait_for_capacity(PARTS_IN_FLIGHT).await {
                return Err(Error::store(dest, e));
            }
            writer.write(&buf[..n]);
        }
        writer.finish().await.map_err(|e| Error::store(dest, e))?;
        Ok(size)
    }

    /// Places `from` at `dest` of this (local) output in one step, through a staging copy
    /// beside nothing a reader looks at (`.hls-flow/staging/OWNER/TOKEN-NAME`, on the
    /// output's file system): the copy is made, then renamed to `dest` (replacing it) or
    /// linked there (create-only: `None` if `dest` exists, which is left untouched). The
    /// folders are made and the staging copy removed whatever happens; all of it is one
    /// blocking call. Returns the size placed.
    async fn place_locally(
        &self,
        from: Staging,
        dest: &Path,
        placing: Placing,
    ) -> Result<Option<u64>> {
        let name = dest.filename().unwrap_or("file");
        let staging = self.local_path(&self.child(&format!(
            "{LEFTOVERS_DIR}/staging/{}/{}-{name}",
            owner(),
            unique_token()
        )))?;
        let target = self.local_path(dest)?;
        let task = format!("publishing {}", self.show(dest));
        let join = |source| Error::Join {
            task: task.clone(),
            source,
        };
        if !crate::write::fence::is_active() {
            return tokio::task::spawn_blocking(move || {
                let size = stage(&from, &staging)?;
                place(&staging, &target, placing, size)
            })
            .await
            .map_err(join)?;
        }
        // A fenced attempt checks its fence between staging and placing: the file becomes
        // visible only if the attempt still owns its task once it is whole.
        let staged = staging.clone();
        let size = tokio::task::spawn_blocking(move || stage(&from, &staged))
            .await
            .map_err(join)??;
        if let Err(e) = crate::write::fence::check(dest).await {
            let _ = tokio::fs::remove_file(&staging).await;
            return Err(e);
        }
        tokio::task::spawn_blocking(move || place(&staging, &target, placing, size))
            .await
            .map_err(join)?
    }

    /// A multipart upload to S3 whose id is recorded (`.hls-flow/uploads/OWNER/TOKEN`: the path,
    /// then the upload id) from its start until it is completed or aborted, so that a
    /// process killed in between leaves a record [`clean_leftovers`](Output::clean_leftovers)
    /// finds (object_store cannot list a bucket's multipart uploads).
    async fn put_recorded_multipart(
        &self,
        s3: &AmazonS3,
        file: tokio::fs::File,
        local: &std::path::Path,
        dest: &Path,
    ) -> Result<()> {
        let id = s3
            .create_multipart(dest)
            .await
            .map_err(|e| Error::store(dest, e))?;
        let record = self.child(&format!(
            "{LEFTOVERS_DIR}/uploads/{}/{}",
            owner(),
            unique_token()
        ));
        if let Err(e) = self
            .store
            .put(&record, PutPayload::from(format!("{dest}\n{id}\n")))
            .await
        {
            let _ = s3.abort_multipart(dest, &id).await;
            return Err(Error::store(self.show(&record), e));
        }
        let result = self.put_parts(s3, file, local, dest, &id).await;
        let settled = match &result {
            Ok(parts) => s3
                .complete_multipart(dest, &id, parts.clone())
                .await
                .map(|_| ())
                .map_err(|e| Error::store(dest, e)),
            Err(_) => Ok(()),
        };
        if (result.is_err() || settled.is_err()) && s3.abort_multipart(dest, &id).await.is_err() {
            // The record stays: the next run aborts the upload.
            return result.and(settled);
        }
        self.delete(&record).await?;
        result.and(settled)
    }

    /// Uploads the parts of `file`, up to [`PARTS_IN_FLIGHT`] at once; their ids in order.
    async fn put_parts(
        &self,
        s3: &AmazonS3,
        mut file: tokio::fs::File,
        local: &std::path::Path,
        dest: &Path,
        id: &str,
    ) -> Result<Vec<PartId>> {
        let id = id.to_string();
        let mut in_flight = futures::stream::FuturesOrdered::new();
        let mut parts = Vec::new();
        for idx in 0.. {
            let mut chunk = Vec::with_capacity(self.part_size);
            (&mut file)
                .take(self.part_size as u64)
                .read_to_end(&mut chunk)
                .await
                .map_err(|e| Error::io(local.display(), e))?;
            if chunk.is_empty() && idx > 0 {
                break;
            }
            let last = chunk.len() < self.part_size;
            let id = &id;
            in_flight.push_back(async move {
                s3.put_part(dest, id, idx, PutPayload::from(chunk))
                    .await
                    .map_err(|e| Error::store(dest, e))
            });
            if in_flight.len() >= PARTS_IN_FLIGHT
                && let Some(part) = in_flight.next().await
            {
                parts.push(part?);
            }
            if last {
                break;
            }
        }
        while let Some(part) = in_flight.next().await {
            parts.push(part?);
        }
        Ok(parts)
    }

    /// Publishes like [`publish_file`](Output::publish_file), but only if `dest` does not
    /// exist, as one create-only step: of two processes publishing the same path, one wins
    /// and the other gets `None` and changes nothing.
    ///
    /// - A local output links a staged copy to `dest` (a hard link fails if `dest` exists).
    /// - A file up to a part's size is put with `PutMode::Create` (on S3 a PutObject with
    ///   `If-None-Match: *`, on GCS `ifGenerationMatch=0`, on Azure `If-None-Match: *`).
    /// - A bigger one is uploaded under [`LEFTOVERS_DIR`]`/staging/`, then copied create-only
    ///   and the staged object deleted. On S3, a copy that CopyObject cannot make
    ///   conditional: a multipart upload of one copied part (UploadPartCopy, up to 5 GiB)
    ///   completed with `If-None-Match: *` (`S3CopyIfNotExists::Multipart`), which AWS S3
    ///   honours, unless `aws_copy_if_not_exists` names the store's own header (R2's).
    pub async fn publish_new_file(
        &self,
        local: &std::path::Path,
        dest: &Path,
    ) -> Result<Option<u64>> {
        if self.local.is_some() {
            return self
                .place_locally(
                    Staging::File(local.to_path_buf()),
                    dest,
                    Placing::CreateOnly,
                )
                .await;
        }
        crate::write::fence::check(dest).await?;
        let size = tokio::fs::metadata(local)
            .await
            .map_err(|e| Error::io(local.display(), e))?
            .len();
        if size as usize <= self.part_size {
            let buf = tokio::fs::read(local)
                .await
                .map_err(|e| Error::io(local.display(), e))?;
            return match self
                .store
                .put_opts(dest, PutPayload::from(buf), PutMode::Create.into())
                .await
            {
                Ok(_) => Ok(Some(size)),
                Err(object_store::Error::AlreadyExists { .. }) => Ok(None),
                Err(e) => Err(Error::store(self.show(dest), e)),
            };
        }
        let name = dest.filename().unwrap_or("file");
        let staging = self.child(&format!(
            "{LEFTOVERS_DIR}/staging/{}/{}-{name}",
            owner(),
            unique_token()
        ));
        self.publish_file(local, &staging).await?;
        let copied = self.store.copy_if_not_exists(&staging, dest).await;
        // The staged object goes whatever happened; if this fails, a later command does it.
        let removed = self.delete(&staging).await;
        match copied {
            Ok(()) => removed.map(|()| Some(size)),
            Err(object_store::Error::AlreadyExists { .. }) => removed.map(|()| None),
            Err(e) => Err(Error::store(self.show(dest), e)),
        }
    }

    /// Deletes an object if it exists.
    pub async fn delete(&self, path: &Path) -> Result<()> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(Error::store(path, e)),
        }
    }

    /// A display form of an object path (`OUT/…`).
    pub fn show(&self, path: &Path) -> String {
        let rel = path
            .as_ref()
            .strip_prefix(self.prefix.as_ref())
            .unwrap_or(path.as_ref())
            .trim_start_matches('/');
        format!("{}/{}", self.display, rel)
    }
}

/// A name no other upload of this process uses.
fn unique_token() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{nanos}-{n}")
}

/// The id of this boot of this machine (Linux), or `None` where it cannot be known.
fn boot_id() -> Option<&'static str> {
    static BOOT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    BOOT.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty() && !s.contains('/'))
    })
    .as_deref()
}

/// Who leaves what this process puts under [`LEFTOVERS_DIR`]: `BOOT_ID-PID` (`unknown-PID`
/// where the boot id cannot be known).
pub fn owner() -> String {
    format!("{}-{}", boot_id().unwrap_or("unknown"), std::process::id())
}

/// Whether the process that `owner` ([`owner`]) names has ended: it ran on this machine
/// since its last boot and is no longer running. A process of another machine, or one that
/// cannot be checked, is taken as running.
fn owner_has_ended(owner: &str) -> bool {
    let Some((boot, pid)) = owner.rsplit_once('-') else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    Some(boot) == boot_id()
        && pid != std::process::id()
        && !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// What [`Output::place_locally`] stages: a local file, or bytes in memory.
enum Staging {
    File(std::path::PathBuf),
    Bytes(bytes::Bytes),
}

/// How a staged local file becomes its destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placing {
    /// Renamed over it.
    Replace,
    /// Linked to it, only if it does not exist.
    CreateOnly,
}

/// The first blocking step of [`Output::place_locally`]: `from` copied to `staging`. Returns
/// its size; nothing is left at `staging` if it fails.
fn stage(from: &Staging, staging: &std::path::Path) -> Result<u64> {
    if let Some(dir) = staging.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir.display(), e))?;
    }
    let staged = match from {
        Staging::File(local) => std::fs::copy(local, staging).map_err(|e| {
            let shown = format!("{} (copied to {})", local.display(), staging.display());
            Error::io(shown, e)
        }),
        Staging::Bytes(bytes) => std::fs::write(staging, bytes)
            .map(|()| bytes.len() as u64)
            .map_err(|e| Error::io(staging.display(), e)),
    };
    if staged.is_err() {
        let _ = std::fs::remove_file(staging);
    }
    staged
}

/// The second blocking step of [`Output::place_locally`]: the staged copy (of `size` bytes)
/// placed at `target`. `None` if [`Placing::CreateOnly`] found `target` there already.
fn place(
    staging: &std::path::Path,
    target: &std::path::Path,
    placing: Placing,
    size: u64,
) -> Result<Option<u64>> {
    let made = match target.parent() {
        Some(dir) => std::fs::create_dir_all(dir).map_err(|e| Error::io(dir.display(), e)),
        None => Ok(()),
    };
    let placed: Result<bool> = made.and_then(|()| {
        let placed = match placing {
            Placing::Replace => std::fs::rename(staging, target),
            Placing::CreateOnly => std::fs::hard_link(staging, target),
        };
        match placed {
            Ok(()) => Ok(true),
            Err(e)
                if placing == Placing::CreateOnly
                    && e.kind() == std::io::ErrorKind::AlreadyExists =>
            {
                Ok(false)
            }
            Err(e) => Err(Error::io(target.display(), e)),
        }
    });
    // A rename took the staging copy's name away; a link (or a failure) left it. Its
    // owner's folder stays (another publish of this process may be about to use it): the
    // cleaning of a later command removes it once empty.
    if placing == Placing::CreateOnly || placed.is_err() {
        let _ = std::fs::remove_file(staging);
    }
    Ok(placed?.then_some(size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_unwritable_outputs() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let e = Output::parse(file.to_str().unwrap()).unwrap_err();
        assert!(e.is_usage());
        assert!(e.to_string().contains("not a folder"), "{e}");
        assert!(Output::parse("").is_err());
        assert!(Output::parse("nope://x/y").is_err());
    }

    #[tokio::test]
    async fn publishes_whole_files_under_daily_paths() {
        let dir = tempfile::tempdir().unwrap();
        let out = Output::parse(dir.path().join("out").to_str().unwrap()).unwrap();
        let day = NaiveDate::from_ymd_opt(2024, 5, 15).unwrap();
        let dest = out.daily_path("daily", Collection::Hlss30, day);
        assert_eq!(
            dest.as_ref(),
            "daily/HLSS30_2.0/2024/05/HLSS30_2.0-2024-05-15.parquet"
        );
        let local = dir.path().join("tmp.bin");
        let data: Vec<u8> = (0..(DEFAULT_PART_SIZE + 12345))
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(&local, &data).unwrap();
        assert_eq!(
            out.publish_file(&local, &dest).await.unwrap(),
            data.len() as u64
        );
        let written = std::fs::read(
            dir.path()
                .join("out/daily/HLSS30_2.0/2024/05/HLSS30_2.0-2024-05-15.parquet"),
        )
        .unwrap();
        assert_eq!(written, data);
        assert_eq!(out.size_of(&dest).await.unwrap(), Some(data.len() as u64));
        out.delete(&dest).await.unwrap();
        assert_eq!(out.size_of(&dest).await.unwrap(), None);
    }

    fn options(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn gs_and_az_outputs_take_bucket_container_and_prefix_from_the_url_and_keys_from_options() {
        let gs = Output::parse_with_options(
            "gs://my-bucket/cache/hls",
            &options(&[("google_skip_signature", "true")]),
        )
        .unwrap();
        assert_eq!(gs.store().to_string(), "GoogleCloudStorage(my-bucket)");
        assert_eq!(gs.prefix().as_ref(), "cache/hls");
        assert_eq!(gs.display(), "gs://my-bucket/cache/hls");
        for url in ["az://box/cache", "azure://box/cache"] {
            let az = Output::parse_with_options(
                url,
                &options(&[
                    ("AZURE_STORAGE_ACCOUNT_NAME", "acct"),
                    ("azure_skip_signature", "true"),
                ]),
            )
            .unwrap();
            assert_eq!(
                az.store().to_string(),
                "MicrosoftAzure { account: acct, container: box }",
                "{url}"
            );
            assert_eq!(az.prefix().as_ref(), "cache", "{url}");
        }
        // A key of another store is refused, naming it.
        for (url, key) in [("gs://b/x", "aws_region"), ("az://b/x", "google_bucket")] {
            let e = Output::parse_with_options(url, &options(&[(key, "x")])).unwrap_err();
            assert!(e.is_usage(), "{e}");
            assert!(e.to_string().contains(key), "{e}");
        }
    }

    #[test]
    fn only_owners_of_this_machine_that_ended_are_taken_as_gone() {
        let me = owner();
        assert!(me.ends_with(&format!("-{}", std::process::id())), "{me}");
        assert!(!owner_has_ended(&me), "this process runs");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let boot = me.rsplit_once('-').unwrap().0;
        assert_eq!(
            owner_has_ended(&format!("{boot}-{pid}")),
            boot_id().is_some(),
            "an ended process of this boot"
        );
        assert!(!owner_has_ended(&format!("another-machine-{pid}")));
        assert!(!owner_has_ended("no-pid-here"));
        assert!(!owner_has_ended("unknown"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_publishes_at_once_into_a_folder_all_land_and_leave_no_staged_file() {
        let dir = tempfile::tempdir().unwrap();
        let out = Output::parse(dir.path().join("out").to_str().unwrap()).unwrap();
        let local = dir.path().join("f");
        std::fs::write(&local, b"a file").unwrap();
        let dests: Vec<Path> = (0..32)
            .map(|i| out.child(&format!("d/{i}.parquet")))
            .collect();
        let results = futures::future::join_all(dests.iter().enumerate().map(|(i, d)| {
            let (out, local) = (&out, &local);
            async move {
                if i % 2 == 0 {
                    out.publish_file(local, d).await.map(Some)
                } else {
                    out.publish_new_file(local, d).await
                }
            }
        }))
        .await;
        for r in results {
            assert_eq!(r.unwrap(), Some(6));
        }
        let all: Vec<_> = out.store().list(None).try_collect().await.unwrap();
        assert_eq!(all.len(), 32, "{all:?}");
    }

    #[tokio::test]
    async fn a_folder_keeps_a_running_process_leftovers_until_everything_goes() {
        let dir = tempfile::tempdir().unwrap();
        let out = Output::parse(dir.path().join("out").to_str().unwrap()).unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let me = owner();
        let ended = format!("{}-{pid}", me.rsplit_once('-').unwrap().0);
        let staging = dir.path().join("out").join(LEFTOVERS_DIR).join("staging");
        for who in [&ended, &me] {
            std::fs::create_dir_all(staging.join(who)).unwrap();
            std::fs::write(staging.join(who).join("1-2-part-0.parquet"), b"half").unwrap();
        }
        let ended_is_known = boot_id().is_some();
        assert_eq!(
            out.clean_leftovers_of_ended_processes().await.unwrap(),
            u64::from(ended_is_known)
        );
        assert_eq!(staging.join(&ended).exists(), !ended_is_known);
        assert!(staging.join(&me).join("1-2-part-0.parquet").exists());
        assert!(out.clean_leftovers().await.unwrap() >= 1);
        assert_eq!(std::fs::read_dir(&staging).unwrap().count(), 0);
    }
}
