//! Where files go: a local folder or any `object_store` URL (`s3://…`, `file://…`,
//! `memory://`), and how they get there: written aside, then published in one step.

use crate::collection::Collection;
use crate::error::{Error, OutputProblem, Result};
use chrono::{Datelike, NaiveDate};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::io::AsyncReadExt;
use url::Url;

/// Size of the parts of a multipart upload.
const PART_SIZE: usize = 8 * 1024 * 1024;

/// An output location: a store and a prefix inside it.
#[derive(Debug, Clone)]
pub struct Output {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    display: String,
    /// The folder, for a local output.
    local_root: Option<std::path::PathBuf>,
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
        let looks_like_url = s.contains("://");
        if looks_like_url {
            let url = Url::parse(s).map_err(|e| invalid(OutputProblem::Url(e)))?;
            if url.scheme() == "file" {
                let path = url
                    .to_file_path()
                    .map_err(|_| invalid(OutputProblem::NotLocalFile))?;
                return Output::local(&path, s);
            }
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
                    let store = builder
                        .build()
                        .map_err(|e| invalid(OutputProblem::Store(e)))?;
                    let prefix = Path::from_url_path(url.path())
                        .map_err(|e| invalid(OutputProblem::Store(e.into())))?;
                    (Arc::new(store), prefix)
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
            });
        }
        Output::local(std::path::Path::new(s), s)
    }

    fn local(dir: &std::path::Path, display: &str) -> Result<Output> {
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

    /// Uploads a finished local file to `dest` in one step: readers see either nothing or
    /// the whole file (a local store renames a staged file; S3 completes a multipart
    /// upload). Returns the size written.
    pub async fn publish_file(&self, local: &std::path::Path, dest: &Path) -> Result<u64> {
        let mut file = tokio::fs::File::open(local)
            .await
            .map_err(|e| Error::io(local.display(), e))?;
        let size = file
            .metadata()
            .await
            .map_err(|e| Error::io(local.display(), e))?
            .len();
        if size as usize <= PART_SIZE {
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
        let upload = self
            .store
            .put_multipart(dest)
            .await
            .map_err(|e| Error::store(dest, e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
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
            if let Err(e) = writer.wait_for_capacity(4).await {
                return Err(Error::store(dest, e));
            }
            writer.write(&buf[..n]);
        }
        writer.finish().await.map_err(|e| Error::store(dest, e))?;
        Ok(size)
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
        let data: Vec<u8> = (0..(PART_SIZE + 12345)).map(|i| (i % 251) as u8).collect();
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
