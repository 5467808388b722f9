//! Writing stac-geoparquet files in batches on a blocking thread, to a temporary file that
//! is published only once complete, and reading them back.

use crate::collection::Collection;
use crate::error::{Error, ReadError, Result, WriteError};
use crate::write::hls_arrow::{HlsGeoparquetWriter, HlsWriterOptions};
use crate::write::output::Output;
use bytes::Bytes;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use stac::Item;
use stac::geoparquet::WriterBuilder;
use std::collections::BTreeSet;
use std::io::BufWriter;
use tempfile::NamedTempFile;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Items per batch handed to the writer thread: small, because a parsed `stac::Item` of HLS
/// weighs ~30 KB (its JSON ~7 KB) and up to three batches are in flight per file.
pub const DEFAULT_BATCH_SIZE: usize = 256;
pub use crate::write::parquet::{DEFAULT_ROW_GROUP_SIZE, FAST_ROW_GROUP_SIZE, writer_options};

/// A finished file, not yet published.
#[derive(Debug)]
pub struct FinishedFile {
    /// The temporary file holding it (deleted when dropped).
    pub file: NamedTempFile,
    /// Rows written.
    pub rows: u64,
}

/// Which writer turns items into stac-geoparquet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriterKind {
    /// The fixed-schema HLS writer ([`crate::write::hls_arrow`]): same file, several times faster.
    Fast(Collection),
    /// The `stac` crate's generic writer (any item shape).
    Stac,
}

/// One item on its way to a [`BatchWriter`].
#[derive(Debug, Clone)]
pub enum ItemRow {
    /// The item's JSON as fetched. The fixed-schema writer reads it directly and sets its
    /// `collection`; the `stac` writer parses it into an `Item` as it is (the harvest hands
    /// that writer built items).
    Json(Bytes),
    /// A built item.
    Item(Box<Item>),
}

impl From<Item> for ItemRow {
    fn from(item: Item) -> ItemRow {
        ItemRow::Item(Box::new(item))
    }
}

/// Streams batches of items into a stac-geoparquet file on a blocking thread. Dropping it
/// without [`finish`](BatchWriter::finish) discards everything written.
#[derive(Debug)]
pub struct BatchWriter {
    tx: Option<mpsc::Sender<Vec<ItemRow>>>,
    handle: JoinHandle<Result<Option<FinishedFile>>>,
    label: String,
}

impl BatchWriter {
    /// Starts a writer whose temporary file lives in `tmp_dir` (the system's if `None`).
    /// `label` names the file in errors.
    pub fn start(
        label: String,
        tmp_dir: Option<std::path::PathBuf>,
        kind: WriterKind,
    ) -> BatchWriter {
        let (tx, rx) = mpsc::channel::<Vec<ItemRow>>(2);
        let name = label.clone();
        let handle = tokio::task::spawn_blocking(move || match kind {
            WriterKind::Stac => write_stac(name, tmp_dir, rx),
            WriterKind::Fast(c) => write_fast(name, tmp_dir, rx, c),
        });
        BatchWriter {
            tx: Some(tx),
            handle,
            label,
        }
    }

    /// Hands a batch to the writer (waits while it is busy with earlier ones).
    pub async fn write(&mut self, batch: Vec<ItemRow>) -> Result<()> {
        let stopped = || Error::WriterStopped {
            path: self.label.clone(),
        };
        let tx = self.tx.as_ref().ok_or_else(stopped)?;
        if tx.send(batch).await.is_err() {
            // The writer thread stopped: its error tells why.
            self.tx = None;
            return match (&mut self.handle).await {
                Ok(Err(e)) => Err(e),
                Ok(Ok(_)) => Err(stopped()),
                Err(source) => Err(self.join_error(source)),
            };
        }
        Ok(())
    }

    /// Finishes the file; `None` if no item was written.
    pub async fn finish(mut self) -> Result<Option<FinishedFile>> {
        self.tx = None;
        match (&mut self.handle).await {
            Ok(r) => r,
            Err(source) => Err(self.join_error(source)),
        }
    }

    fn join_error(&self, source: tokio::task::JoinError) -> Error {
        Error::Join {
            task: format!("writer of {}", self.label),
            source,
        }
    }
}

fn write_stac(
    label: String,
    tmp_dir: Option<std::path::PathBuf>,
    mut rx: mpsc::Receiver<Vec<ItemRow>>,
) -> Result<Option<FinishedFile>> {
    let batches = std::iter::from_fn(move || rx.blocking_recv().map(Ok));
    write_stac_batches(&label, &tmp_dir, batches)
}

/// Writes batches of items with the `stac` crate's writer, which takes its schema from the
/// first batch: a field that only a later item has is refused rather than dropped.
fn write_stac_batches(
    label: &str,
    tmp_dir: &Option<std::path::PathBuf>,
    batches: impl Iterator<Item = Result<Vec<ItemRow>>>,
) -> Result<Option<FinishedFile>> {
    let werr = |source: WriteError| Error::Write {
        path: label.to_string(),
        source,
    };
    let mut writer = None;
    let mut file = None;
    let mut rows = 0u64;
    let mut columns: BTreeSet<String> = BTreeSet::new();
    for batch in batches {
        let batch = batch?
            .into_iter()
            .map(|row| match row {
                ItemRow::Item(item) => Ok(*item),
                ItemRow::Json(json) => {
                    serde_json::from_slice(&json).map_err(|e| werr(WriteError::NotAnItem(e)))
                }
            })
            .collect::<Result<Vec<Item>>>()?;
        if batch.is_empty() {
            continue;
        }
        rows += batch.len() as u64;
        match writer.as_mut() {
            None => {
                for item in &batch {
                    columns.extend(field_names(item));
                }
                let tmp = temp_file(tmp_dir).map_err(|e| werr(WriteError::TempFile(e)))?;
                let out = tmp.reopen().map_err(|e| werr(WriteError::TempFile(e)))?;
                let w = WriterBuilder::new(BufWriter::with_capacity(1 << 20, out))
                    .writer_options(writer_options())
                    .build(batch)
                    .map_err(|e| werr(WriteError::Stac(e)))?;
                writer = Some(w);
                file = Some(tmp);
            }
            Some(w) => {
                // The stac writer keeps the schema of the first batch and would
                // silently drop a field that only later items have: refuse instead.
                for item in &batch {
                    if let Some(new) = field_names(item).find(|f| !columns.contains(f)) {
                        return Err(werr(WriteError::LateField {
                            id: item.id.clone(),
                            field: new,
                        }));
                    }
                }
                w.write(batch).map_err(|e| werr(WriteError::Stac(e)))?;
            }
        }
    }
    match (writer, file) {
        (Some(w), Some(file)) => {
            w.finish().map_err(|e| werr(WriteError::Stac(e)))?;
            Ok(Some(FinishedFile { file, rows }))
        }
        _ => Ok(None),
    }
}

fn temp_file(tmp_dir: &Option<std::path::PathBuf>) -> std::io::Result<NamedTempFile> {
    match tmp_dir {
        Some(d) => NamedTempFile::new_in(d),
        None => NamedTempFile::new(),
    }
}

/// The fixed-schema writer. Every row's JSON is also spilled, as it arrives, to a file in
/// `tmp_dir`: if a row turns out to have a shape the fixed schema cannot hold, the rest of
/// the rows are only spilled, and at the end the spilled rows are replayed into the `stac`
/// crate's writer. The items are never fetched again and never held in memory together.
fn write_fast(
    label: String,
    tmp_dir: Option<std::path::PathBuf>,
    mut rx: mpsc::Receiver<Vec<ItemRow>>,
    collection: Collection,
) -> Result<Option<FinishedFile>> {
    let werr = |source: WriteError| Error::Write {
        path: label.clone(),
        source,
    };
    let tmp = temp_file(&tmp_dir).map_err(|e| werr(WriteError::TempFile(e)))?;
    let out = tmp.reopen().map_err(|e| werr(WriteError::TempFile(e)))?;
    // A batch is a whole row group: its column writers (and their zstd contexts) live only
    // while it is encoded.
    let options = HlsWriterOptions::default()
        .with_max_row_group_row_count(FAST_ROW_GROUP_SIZE)
        .with_batch_rows(FAST_ROW_GROUP_SIZE);
    let mut fast = Some(
        HlsGeoparquetWriter::new(BufWriter::with_capacity(1 << 20, out), collection, options)
            .map_err(|e| werr(WriteError::Hls(e)))?,
    );
    let mut spill = Spill::create(&tmp_dir).map_err(|e| werr(WriteError::Spill(e)))?;
    while let Some(batch) = rx.blocking_recv() {
        for row in &batch {
            spill.push(row).map_err(|e| werr(WriteError::Spill(e)))?;
            let Some(w) = fast.as_mut() else { continue };
            let written = match row {
                ItemRow::Json(json) => w.write_json(json),
                ItemRow::Item(item) => w.write_item(item),
            };
            match written {
                Ok(()) => {}
                Err(e) if e.is_shape_mismatch() => {
                    tracing::warn!("{label}: {e}; writing it with the generic stac writer");
                    fast = None;
                }
                Err(e) => return Err(werr(WriteError::Hls(e))),
            }
        }
    }
    let Some(w) = fast else {
        drop(tmp);
        return replay(&label, &tmp_dir, spill, collection);
    };
    let stats = w.finish().map_err(|e| werr(WriteError::Hls(e)))?;
    if stats.items == 0 {
        return Ok(None);
    }
    Ok(Some(FinishedFile {
        file: tmp,
        rows: stats.items,
    }))
}

/// Writes the spilled rows with the `stac` crate's writer, as built items of `collection`.
/// That writer takes its schema from its first batch, so the first batch holds, besides
/// the first rows, every row that brings a property or asset no earlier row has (found in a
/// first pass over the spill file); the other rows follow in their order.
fn replay(
    label: &str,
    tmp_dir: &Option<std::path::PathBuf>,
    spill: Spill,
    collection: Collection,
) -> Result<Option<FinishedFile>> {
    let werr = |source: WriteError| Error::Write {
        path: label.to_string(),
        source,
    };
    let spilled = spill.finish().map_err(|e| werr(WriteError::Spill(e)))?;
    let item = |json: &[u8]| -> Result<Item> {
        let mut item: Item =
            serde_json::from_slice(json).map_err(|e| werr(WriteError::NotAnItem(e)))?;
        item.collection = Some(collection.stac_id().to_string());
        Ok(item)
    };
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut first: BTreeSet<u64> = BTreeSet::new();
    let mut rows = spilled.rows().map_err(|e| werr(WriteError::Spill(e)))?;
    let mut n = 0u64;
    while let Some(json) = rows.next_row().map_err(|e| werr(WriteError::Spill(e)))? {
        let item = item(&json)?;
        let mut new = false;
        for f in field_names(&item) {
            new |= seen.insert(f);
        }
        if new || (n as usize) < DEFAULT_BATCH_SIZE {
            first.insert(n);
        }
        n += 1;
    }
    // The first batch: the rows picked above, read again by position.
    let mut head = Vec::with_capacity(first.len());
    let mut rows = spilled.rows().map_err(|e| werr(WriteError::Spill(e)))?;
    let mut n = 0u64;
    while let Some(json) = rows.next_row().map_err(|e| werr(WriteError::Spill(e)))? {
        if first.contains(&n) {
            head.push(ItemRow::from(item(&json)?));
        }
        n += 1;
    }
    let mut rest = spilled.rows().map_err(|e| werr(WriteError::Spill(e)))?;
    let mut n = 0u64;
    let mut head = Some(head);
    let batches = std::iter::from_fn(|| {
        if let Some(head) = head.take() {
            return Some(Ok(head));
        }
        let mut batch = Vec::with_capacity(DEFAULT_BATCH_SIZE);
        while batch.len() < DEFAULT_BATCH_SIZE {
            match rest.next_row() {
                Ok(Some(json)) => {
                    let picked = first.contains(&n);
                    n += 1;
                    if !picked {
                        match item(&json) {
                            Ok(i) => batch.push(ItemRow::from(i)),
                            Err(e) => return Some(Err(e)),
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => return Some(Err(werr(WriteError::Spill(e)))),
            }
        }
        (!batch.is_empty()).then_some(Ok(batch))
    });
    write_stac_batches(label, tmp_dir, batches)
}

/// The rows of one file as they arrived, length-prefixed JSON in a temporary file.
struct Spill {
    out: BufWriter<NamedTempFile>,
}

impl Spill {
    fn create(tmp_dir: &Option<std::path::PathBuf>) -> std::io::Result<Spill> {
        Ok(Spill {
            out: BufWriter::with_capacity(1 << 20, temp_file(tmp_dir)?),
        })
    }

    fn push(&mut self, row: &ItemRow) -> std::io::Result<()> {
        use std::io::Write;
        let owned;
        let json: &[u8] = match row {
            ItemRow::Json(json) => json,
            ItemRow::Item(item) => {
                owned = serde_json::to_vec(item)?;
                &owned
            }
        };
        let len = u32::try_from(json.len()).map_err(std::io::Error::other)?;
        self.out.write_all(&len.to_le_bytes())?;
        self.out.write_all(json)
    }

    fn finish(self) -> std::io::Result<NamedTempFile> {
        self.out.into_inner().map_err(|e| e.into_error())
    }
}

/// Reading a finished spill file from its start.
trait SpillFile {
    fn rows(&self) -> std::io::Result<SpillRows>;
}

impl SpillFile for NamedTempFile {
    fn rows(&self) -> std::io::Result<SpillRows> {
        Ok(SpillRows {
            input: std::io::BufReader::with_capacity(1 << 20, self.reopen()?),
        })
    }
}

struct SpillRows {
    input: std::io::BufReader<std::fs::File>,
}

impl SpillRows {
    fn next_row(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        use std::io::Read;
        let mut len = [0u8; 4];
        match self.input.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let mut json = vec![0u8; u32::from_le_bytes(len) as usize];
        self.input.read_exact(&mut json)?;
        Ok(Some(json))
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
    let task = format!("reading {show}");
    tokio::task::spawn_blocking(move || {
        stac::geoparquet::from_reader(bytes)
            .map(|ic| ic.items)
            .map_err(|e| Error::Read {
                path: show,
                source: ReadError::Stac(e),
            })
    })
    .await
    .map_err(|source| Error::Join { task, source })?
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
    let bad = |source: ReadError| Error::Read {
        path: output.show(path),
        source,
    };
    if size < 12 {
        return Err(bad(ReadError::TooSmall));
    }
    let store = output.store();
    let tail = store
        .get_range(path, size - 8..size)
        .await
        .map_err(|e| Error::store(path, e))?;
    if &tail[4..8] != b"PAR1" {
        return Err(bad(ReadError::NoFooter));
    }
    let len = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]) as u64;
    if len + 12 > size {
        return Err(bad(ReadError::FooterTooLong));
    }
    let footer = store
        .get_range(path, size - 8 - len..size - 8)
        .await
        .map_err(|e| Error::store(path, e))?;
    let meta = parquet::file::metadata::ParquetMetaDataReader::decode_metadata(&footer)
        .map_err(|e| bad(ReadError::Parquet(e)))?;
    Ok(Some(meta))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn real_item() -> Item {
        let mut item: Item = serde_json::from_str(include_str!(
            "../../tests/fixtures/stac/HLS.S30.T01WEV.2024153T000609.v2.0_stac.json"
        ))
        .unwrap();
        item.collection = Some("HLSS30_2.0".into());
        item
    }

    async fn write(kind: WriterKind, items: Vec<Item>) -> Result<Option<FinishedFile>> {
        write_rows(kind, items.into_iter().map(ItemRow::from).collect()).await
    }

    async fn write_rows(kind: WriterKind, rows: Vec<ItemRow>) -> Result<Option<FinishedFile>> {
        let mut w = BatchWriter::start("test.parquet".into(), None, kind);
        w.write(rows).await?;
        w.finish().await
    }

    fn read(f: &FinishedFile) -> Vec<Item> {
        stac::geoparquet::from_reader(std::fs::File::open(f.file.path()).unwrap())
            .unwrap()
            .items
    }

    #[tokio::test]
    async fn the_fast_writer_gives_the_same_file_from_json_bytes_as_from_items() {
        let json = Bytes::from_static(include_bytes!(
            "../../tests/fixtures/stac/HLS.S30.T01WEV.2024153T000609.v2.0_stac.json"
        ));
        let fast = WriterKind::Fast(Collection::Hlss30);
        let from_json = write_rows(fast, vec![ItemRow::Json(json)])
            .await
            .unwrap()
            .unwrap();
        let from_item = write(fast, vec![real_item()]).await.unwrap().unwrap();
        assert_eq!(read(&from_json), read(&from_item));
        assert_eq!(
            std::fs::read(from_json.file.path()).unwrap(),
            std::fs::read(from_item.file.path()).unwrap()
        );
    }

    #[tokio::test]
    async fn both_writers_give_files_that_read_back_to_the_same_items() {
        let items = vec![real_item()];
        let fast = write(WriterKind::Fast(Collection::Hlss30), items.clone())
            .await
            .unwrap()
            .unwrap();
        let generic = write(WriterKind::Stac, items).await.unwrap().unwrap();
        assert_eq!(fast.rows, 1);
        assert_eq!(read(&fast), read(&generic));
    }

    #[tokio::test]
    async fn an_item_outside_the_hls_shape_sends_the_file_to_the_generic_writer() {
        let mut odd = real_item();
        odd.id = "odd".into();
        odd.properties
            .additional_fields
            .insert("hls:new_property".into(), serde_json::json!(1));
        // More rows than a batch, the odd one last: its field is still a column.
        let mut items: Vec<Item> = (0..DEFAULT_BATCH_SIZE + 3)
            .map(|i| {
                let mut item = real_item();
                item.id = format!("item-{i}");
                item
            })
            .collect();
        items.push(odd);
        let fast = WriterKind::Fast(Collection::Hlss30);
        let file = write(fast, items.clone()).await.unwrap().unwrap();
        assert_eq!(file.rows, items.len() as u64);
        // The same items as the generic writer gives, in another order.
        let generic = write(WriterKind::Stac, items).await.unwrap().unwrap();
        let mut back = read(&file);
        let mut expected = read(&generic);
        back.sort_by(|a, b| a.id.cmp(&b.id));
        expected.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(back, expected);
        let odd = back.iter().find(|i| i.id == "odd").unwrap();
        assert_eq!(
            odd.properties.additional_fields.get("hls:new_property"),
            Some(&serde_json::json!(1))
        );
        assert!(write(WriterKind::Stac, vec![]).await.unwrap().is_none());
        assert!(write(fast, vec![]).await.unwrap().is_none());
    }
}
