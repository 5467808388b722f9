//! Where files go: a local folder or any `object_store` URL (`s3://…`, `file://…`,
//! `memory://`), and how they get there: written aside, then published in one step.

use crate::collection::Collection;
use crate::error::{Error, OutputProblem, Result};
use crate::write::scratch::Scratched;
use chrono::{Datelike, NaiveDate};
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey, S3CopyIfNotExists};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
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
/// `uploads/` holds a record of each multipart upload in progress (path and upload id, so
/// that the next run can abort it), `staging/` the objects of create-only publishing.
pub const LEFTOVERS_DIR: &str = ".hls-flow";

/// An output location: a store and a prefix inside it.
#[derive(Debug, Clone)]
pub struct Output {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    display: String,
    /// The folder, for a local output.
    local_root: Option<std::path::PathBuf>,
    /// The S3 store's multipart API, whose uploads are recorded under [`LEFTOVERS_DIR`].
    s3: Option<Arc<AmazonS3>>,
    /// Size of the parts of a multipart upload.
    part_size: usize,
}

impl Output {
    /// Opens an output given as a local path or a URL. A local folder is created if needed
    /// and must be writable.
    pub fn parse(s: &str) -> Result<Output> {
        Output::parse_with_options(s, &BTreeMap::new())
    }

    /// Opens an output like [`parse`](Output::parse), with store options (the workflow's
    /// `[output.options]`): for `s3://`, `object_store`'s `AmazonS3ConfigKey` names
    /// (`aws_endpoint`, `aws_region`, `aws_allow_http`, …), applied over the `AWS_*`
    /// environment. An `s3://` output takes its endpoint, region, keys, session token,
    /// `AWS_ALLOW_HTTP` and `AWS_VIRTUAL_HOSTED_STYLE_REQUEST` from the environment, as the
    /// AWS tools do; with keys given, no instance-metadata endpoint is asked.
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
            let mut s3 = None;
            let (store, prefix): (Arc<dyn ObjectStore>, Path) = match url.scheme() {
                "s3" | "s3a" => {
                    let mut builder = AmazonS3Builder::from_env().with_url(url.as_str());
                    for (key, value) in options {
                        let key = key
                            .to_ascii_lowercase()
                            .parse::<AmazonS3ConfigKey>()
                            .map_err(|_| {
                                invalid(OutputProblem::UnknownOption {
                                    key: key.clone(),
                                    scheme: url.scheme().to_string(),
                                })
                            })?;
                        builder = builder.with_config(key, value);
                    }
                    // Create-only publishing copies with a conditional multipart upload
                    // (AWS, MinIO, moto) unless the store is told another way (e.g. R2's
                    // header: `AWS_COPY_IF_NOT_EXISTS`, `aws_copy_if_not_exists`).
                    if builder
                        .get_config_value(&AmazonS3ConfigKey::CopyIfNotExists)
                        .is_none()
                    {
                        builder = builder.with_copy_if_not_exists(S3CopyIfNotExists::Multipart);
                    }
                    let store = Arc::new(
                        builder
                            .build()
                            .map_err(|e| invalid(OutputProblem::Store(e)))?,
                    );
                    let prefix = Path::from_url_path(url.path())
                        .map_err(|e| invalid(OutputProblem::Store(e.into())))?;
                    s3 = Some(store.clone());
                    (store, prefix)
                }
                scheme => {
                    if let Some(key) = options.keys().next() {
                        return Err(invalid(OutputProblem::UnknownOption {
                            key: key.clone(),
                            scheme: scheme.to_string(),
                        }));
                    }
                    let (store, prefix) = object_store::parse_url(&url)
                        .map_err(|e| invalid(OutputProblem::Store(e)))?;
                    (Arc::from(store), prefix)
                }
            };
            return Ok(Output {
                store,
                prefix,
                display: s.trim_end_matches('/').to_string(),
                local_root: None,
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
        let store = object_store::local::LocalFileSystem::new_with_prefix(&canonical)
            .map_err(|e| invalid(OutputProblem::Store(e)))?;
        Ok(Output {
            store: Arc::new(store),
            prefix: Path::default(),
            display: display.trim_end_matches('/').to_string(),
            local_root: Some(canonical),
            s3: None,
            part_size,
        })
    }

    /// Removes, below a local output, the staging files of uploads a killed process left
    /// (`object_store` writes `NAME#N` and renames it to `NAME`). Call it only while no other
    /// process writes there (the state file's lock). Returns how many were removed.
    pub fn remove_staged_leftovers(&self) -> Result<u64> {
        let Some(root) = &self.local_root else {
            return Ok(0);
        };
        let mut removed = 0;
        let mut stack = vec![root.clone()];
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
            local_root: None,
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
    /// orphaned parts) and the staging objects of create-only publishing. Call it only while
    /// no other process writes here (the state file's lock). Returns how many were cleared.
    pub async fn clean_leftovers(&self) -> Result<u64> {
        let mut cleared = self.remove_staged_leftovers()?;
        let root = self.child(LEFTOVERS_DIR);
        let uploads = self.child(&format!("{LEFTOVERS_DIR}/uploads"));
        let found: Vec<_> = self
            .store
            .list(Some(&root))
            .try_collect()
            .await
            .map_err(|e| Error::store(self.show(&root), e))?;
        for meta in found {
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
                        "aborted the multipart upload of {}, left by an interrupted run",
                        self.show(&path)
                    );
                }
            } else {
                tracing::info!(
                    "removed {}, left by an interrupted run",
                    self.show(&meta.location)
                );
            }
            self.delete(&meta.location).await?;
            cleared += 1;
        }
        Ok(cleared)
    }

    /// Publishes a finished file, in memory or in a temporary file, to `dest` in one step
    /// (as [`publish_file`](Output::publish_file)). Returns the size written.
    pub async fn publish(&self, data: &Scratched, dest: &Path) -> Result<u64> {
        match data {
            Scratched::Memory(bytes) if bytes.len() <= self.part_size => {
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

    /// Uploads a finished local file to `dest` in one step: readers see either nothing or
    /// the whole file (a local store renames a staged file; S3 completes a multipart
    /// upload, recorded under [`LEFTOVERS_DIR`] while it is in progress). Returns the size
    /// written.
    pub async fn publish_file(&self, local: &std::path::Path, dest: &Path) -> Result<u64> {
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

    /// A multipart upload to S3 whose id is recorded (`.hls-flow/uploads/TOKEN`: the path,
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
        let record = self.child(&format!("{LEFTOVERS_DIR}/uploads/{}", unique_token()));
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
    /// exist, as one create-only step (a hard link on a local store, a conditional copy on
    /// S3): of two processes publishing the same path, one wins and the other gets `None`
    /// and changes nothing. The file is first uploaded under [`LEFTOVERS_DIR`]`/staging/`.
    pub async fn publish_new_file(
        &self,
        local: &std::path::Path,
        dest: &Path,
    ) -> Result<Option<u64>> {
        let name = dest.filename().unwrap_or("file");
        let staging = self.child(&format!(
            "{LEFTOVERS_DIR}/staging/{}-{name}",
            unique_token()
        ));
        let size = self.publish_file(local, &staging).await?;
        match self.store.rename_if_not_exists(&staging, dest).await {
            Ok(()) => Ok(Some(size)),
            Err(object_store::Error::AlreadyExists { .. }) => {
                self.delete(&staging).await?;
                Ok(None)
            }
            Err(e) => {
                let _ = self.delete(&staging).await;
                Err(Error::store(self.show(dest), e))
            }
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

/// A name no other upload of this or another process uses.
fn unique_token() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}-{nanos}-{n}", std::process::id())
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
}
