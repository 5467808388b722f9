//! Writing stac-geoparquet files in batches on a blocking thread, to a temporary file that
//! is published only once complete, and reading them back.

use crate::error::{Error, Result};
use crate::output::Output;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use stac::Item;
use stac::geoparquet::{Compression, WriterBuilder, WriterOptions, ZstdLevel};
use std::collections::BTreeSet;
use std::io::BufWriter;
use tempfile::NamedTempFile;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Items per record batch handed to the writer.
pub const DEFAULT_BATCH_SIZE: usize = 1000;
/// Rows per row group: small enough for readers to prune, large enough to compress well.
pub const DEFAULT_ROW_GROUP_SIZE: usize = 10_000;

/// Writer options used everywhere: ZSTD level 3 (level 15, the `stac` default, is 2.5×
/// slower for a 1 % smaller file) and [`DEFAULT_ROW_GROUP_SIZE`].
pub fn writer_options() -> WriterOptions {
    WriterOptions::new()
        .with_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
        .with_max_row_group_row_count(DEFAULT_ROW_GROUP_SIZE)
}

/// A finished file, not yet published.
#[derive(Debug)]
pub struct FinishedFile {
    /// The temporary file holding it (deleted when dropped).
    pub file: NamedTempFile,
    /// Rows written.
    pub rows: u64,
}

/// Streams batches of items into a stac-geoparquet file on a blocking thread. Dropping it
/// without [`finish`](BatchWriter::finish) discards everything written.
#[derive(Debug)]
pub struct BatchWriter {
    tx: Option<mpsc::Sender<Vec<Item>>>,
    handle: JoinHandle<Result<Option<FinishedFile>>>,
}

impl BatchWriter {
    /// Starts a writer whose temporary file lives in `tmp_dir` (the system's if `None`).
    /// `label` names the file in errors.
    pub fn start(label: String, tmp_dir: Option<std::path::PathBuf>) -> BatchWriter {
        let (tx, mut rx) = mpsc::channel::<Vec<Item>>(2);
        let handle = tokio::task::spawn_blocking(move || -> Result<Option<FinishedFile>> {
            let werr = |reason: String| Error::Write {
                path: label.clone(),
                reason,
            };
            let mut writer = None;
            let mut file = None;
            let mut rows = 0u64;
            let mut columns: BTreeSet<String> = BTreeSet::new();
            while let Some(batch) = rx.blocking_recv() {
                if batch.is_empty() {
                    continue;
                }
                rows += batch.len() as u64;
                match writer.as_mut() {
                    None => {
                        for item in &batch {
                            columns.extend(field_names(item));
                        }
                        let tmp = match &tmp_dir {
                            Some(d) => NamedTempFile::new_in(d),
                            None => NamedTempFile::new(),
                        }
                        .map_err(|e| werr(format!("temporary file: {e}")))?;
                        let out = tmp
                            .reopen()
                            .map_err(|e| werr(format!("temporary file: {e}")))?;
                        let w = WriterBuilder::new(BufWriter::with_capacity(1 << 20, out))
                            .writer_options(writer_options())
                            .build(batch)
                            .map_err(|e| werr(e.to_string()))?;
                        writer = Some(w);
                        file = Some(tmp);
                    }
                    Some(w) => {
                        // The stac writer keeps the schema of the first batch and would
                        // silently drop a field that only later items have: refuse instead.
                        for item in &batch {
                            if let Some(new) = field_names(item).find(|f| !columns.contains(f)) {
                                return Err(werr(format!(
                                    "item {} has field {new:?} that earlier items of the file lack",
                                    item.id
                                )));
                            }
                        }
                        w.write(batch).map_err(|e| werr(e.to_string()))?;
                    }
                }
            }
            match (writer, file) {
                (Some(w), Some(file)) => {
                    w.finish().map_err(|e| werr(e.to_string()))?;
                    Ok(Some(FinishedFile { file, rows }))
                }
                _ => Ok(None),
            }
        });
        BatchWriter {
            tx: Some(tx),
            handle,
        }
    }

    /// Hands a batch to the writer (waits while it is busy with earlier ones).
    pub async fn write(&mut self, batch: Vec<Item>) -> Result<()> {
        let tx = self
            .tx
            .as_ref()
            .ok_or_else(|| Error::Task("writer already finished".into()))?;
        if tx.send(batch).await.is_err() {
            // The writer thread stopped: its error tells why.
            self.tx = None;
            return match (&mut self.handle).await {
                Ok(Err(e)) => Err(e),
                Ok(Ok(_)) => Err(Error::Task("writer stopped early".into())),
                Err(e) => Err(Error::Task(e.to_string())),
            };
        }
        Ok(())
    }

    /// Finishes the file; `None` if no item was written.
    pub async fn finish(mut self) -> Result<Option<FinishedFile>> {
        self.tx = None;
        match (&mut self.handle).await {
            Ok(r) => r,
            Err(e) => Err(Error::Task(e.to_string())),
        }
    }
}

/// Property and asset names of an item: the parts of its schema that vary.
fn field_names(item: &Item) -> impl Iterator<Item = String> + '_ {
    item.properties
        .additional_fields
        .keys()
        .map(|k| format!("properties.{k}"))
        .chain(item.assets.keys().map(|k| format!("assets.{k}")))
        .chain(
            item.properties
                .end_datetime
                .iter()
                .map(|_| "properties.end_datetime".to_string()),
        )
}

/// Reads a stac-geoparquet object of an output back into items.
pub async fn read_items(output: &Output, path: &Path) -> Result<Vec<Item>> {
    let bytes = output
        .store()
        .get(path)
        .await
        .map_err(|e| Error::store(path, e))?
        .bytes()
        .await
        .map_err(|e| Error::store(path, e))?;
    let show = output.show(path);
    tokio::task::spawn_blocking(move || {
        stac::geoparquet::from_reader(bytes)
            .map(|ic| ic.items)
            .map_err(|e| Error::Read {
                path: show,
                reason: e.to_string(),
            })
    })
    .await
    .map_err(|e| Error::Task(e.to_string()))?
}

/// Number of rows of a parquet object, from its footer (two range reads); `None` if the
/// object is missing, an error if it is not a readable parquet file.
pub async fn row_count(output: &Output, path: &Path) -> Result<Option<u64>> {
    Ok(read_metadata(output, path)
        .await?
        .map(|meta| meta.file_metadata().num_rows().max(0) as u64))
}

/// The footer (parquet metadata) of a parquet object, in two range reads; `None` if the
/// object is missing, an error if it is not a readable parquet file.
pub async fn read_metadata(
    output: &Output,
    path: &Path,
) -> Result<Option<parquet::file::metadata::ParquetMetaData>> {
    let Some(size) = output.size_of(path).await? else {
        return Ok(None);
    };
    let bad = |reason: String| Error::Read {
        path: output.show(path),
        reason,
    };
    if size < 12 {
        return Err(bad("too small to be a parquet file".into()));
    }
    let store = output.store();
    let tail = store
        .get_range(path, size - 8..size)
        .await
        .map_err(|e| Error::store(path, e))?;
    if &tail[4..8] != b"PAR1" {
        return Err(bad("no parquet footer (truncated or not parquet)".into()));
    }
    let len = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]) as u64;
    if len + 12 > size {
        return Err(bad("footer length exceeds the file".into()));
    }
    let footer = store
        .get_range(path, size - 8 - len..size - 8)
        .await
        .map_err(|e| Error::store(path, e))?;
    let meta = parquet::file::metadata::ParquetMetaDataReader::decode_metadata(&footer)
        .map_err(|e| bad(e.to_string()))?;
    Ok(Some(meta))
}
