//! Writing stac-geoparquet files in batches on a blocking thread, to a temporary file that
//! is published only once complete, and reading them back.

use crate::collection::Collection;
use crate::error::{Error, ReadError, Result, WriteError};
use crate::source::hls::GranuleMeta;
use crate::source::items::{ItemHead, RowKey};
use crate::write::hls_arrow::{Ended, HlsGeoparquetWriter, HlsWriterOptions, RUN_ROWS, SortedRuns};
use crate::write::output::Output;
use crate::write::scratch::{Scratch, Scratched};
use bytes::Bytes;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use stac::Item;
use std::collections::BTreeSet;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Items per batch handed to the writer thread: small, because a parsed `stac::Item` of HLS
/// weighs ~30 KB (its JSON ~7 KB) and up to three batches are in flight per file.
pub const DEFAULT_BATCH_SIZE: usize = 256;
pub use crate::write::parquet::{
    DEFAULT_ROW_GROUP_SIZE, FAST_ROW_GROUP_SIZE, PARTITION_ROW_GROUP_SIZE, writer_options,
};

/// A finished file, not yet published.
#[derive(Debug)]
pub struct FinishedFile {
    /// Its bytes: in memory for a small file, else in a temporary file deleted when dropped.
    pub data: Scratched,
    /// Rows written.
    pub rows: u64,
    /// The rows as written, for a small file of the fixed-schema writer
    /// ([`RecentFiles`](crate::write::recent::RecentFiles)).
    pub decoded: Option<crate::write::recent::Decoded>,
}

/// Which writer turns items into stac-geoparquet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriterKind {
    /// The fixed-schema HLS writer ([`crate::write::hls_arrow`]): same file, several times faster.
    Fast(Collection),
    /// The generic writer ([`crate::write::stac_arrow`], any item shape).
    Stac,
}

/// One item on its way to a [`BatchWriter`].
#[derive(Debug, Clone)]
pub enum ItemRow {
    /// The item's JSON as fetched, with its key if it was read already (by the fetch's
    /// check). The fixed-schema writer reads it directly and sets its `collection`; the
    /// generic writer takes it as it is (the harvest hands that writer built items).
    Json {
        /// The JSON bytes.
        json: Bytes,
        /// Its row key, if known.
        key: Option<RowKey>,
    },
    /// A built item.
    Item(Box<Item>),
    /// A granule's ECHO10 values (bulk mode): the fixed-schema writer builds its row
    /// straight from them, the generic writer takes `to_stac_item` of them with its
    /// `collection` set.
    Meta(Box<GranuleMeta>),
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
        let handle = tokio::task::spawn_blocking(move || write_sorted(name, tmp_dir, rx, kind));
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

/// Writes one daily file with its rows in a fixed order (`properties.datetime`, then id),
/// so that writing the same items again gives the same bytes, whatever order they were
/// fetched in.
///
/// Rows that come as JSON bytes (fetched items) are spilled to [`Scratch`] space as they
/// arrive, and only their sort keys kept; once all are in, they are read back in order and
/// written with the fixed-schema writer (or, for a row outside its shape, the whole day with
/// the generic writer, as for [`WriterKind::Stac`]). Granules' ECHO10 values (bulk mode)
/// come nearly in order, and are written while they arrive ([`SortedRuns::write_early`]);
/// if CMR lists one out of order, the rest go to sorted runs (in memory, spilled as Arrow IPC
/// past a limit), merged into the file at the end, with the same bytes. (Runs made fetched
/// days slower: their CPU is taken by the fetches, and a run costs a sort and a merge that
/// reading the spill in order does not.) The items are never fetched again and never held
/// in memory together.
fn write_sorted(
    label: String,
    tmp_dir: Option<std::path::PathBuf>,
    mut rx: mpsc::Receiver<Vec<ItemRow>>,
    kind: WriterKind,
) -> Result<Option<FinishedFile>> {
    let werr = write_error(&label);
    let mut spill = Spill::new(&tmp_dir);
    let mut pending: Vec<(Option<RowKey>, SpillAt)> = Vec::new();
    // Bulk mode's rows, once the first of them was appended (while nothing was spilled).
    let mut runs: Option<SortedRuns> = None;
    // Whether the fixed-schema writer can still take the day.
    let mut fixed = matches!(kind, WriterKind::Fast(_));
    while let Some(batch) = rx.blocking_recv() {
        for row in batch {
            let (json, key) = match row {
                ItemRow::Json { json, key } => (json, key),
                ItemRow::Item(item) => (
                    Bytes::from(
                        serde_json::to_vec(&item).map_err(|e| werr(WriteError::NotAnItem(e)))?,
                    ),
                    None,
                ),
                ItemRow::Meta(meta) => {
                    if let (true, true, WriterKind::Fast(collection)) =
                        (fixed, pending.is_empty(), kind)
                    {
                        let r = runs.get_or_insert_with(|| {
                            // Rows are written once no later one can precede them.
                            SortedRuns::new(collection, tmp_dir.clone())
                                .write_early(daily_options(RUN_ROWS as u64))
                        });
                        match r.check_granule(&meta) {
                            Ok(()) => {
                                r.push_granule(meta).map_err(|e| werr(WriteError::Hls(e)))?;
                                continue;
                            }
                            // The first row: the day goes to the generic writer, by the spill.
                            Err(e) if e.is_shape_mismatch() && r.rows() == 0 => {
                                tracing::warn!("{label}: {e}; writing it with the generic writer");
                                runs = None;
                                fixed = false;
                            }
                            Err(e) => return Err(werr(WriteError::Hls(e))),
                        }
                    }
                    (
                        meta_json(&meta).map_err(|e| werr(WriteError::NotAnItem(e)))?,
                        None,
                    )
                }
            };
            if let Some(r) = runs.as_mut() {
                // After rows built from values (one day has one source: not expected), in
                // the runs too; nothing was spilled to give the generic writer.
                r.push_json(&json).map_err(|e| werr(WriteError::Hls(e)))?;
                continue;
            }
            let at = spill.push(&json).map_err(|e| werr(WriteError::Spill(e)))?;
            pending.push((key, at));
        }
    }
    let spilled = spill.finish().map_err(|e| werr(WriteError::Spill(e)))?;
    let collection = match kind {
        WriterKind::Fast(c) => Some(c),
        WriterKind::Stac => None,
    };
    if let (Some(runs), Some(collection)) = (runs, collection) {
        return write_runs(&label, &tmp_dir, runs, collection);
    }
    let rows = sorted_rows(&label, &spilled, pending)?;
    match collection {
        Some(collection) if fixed => write_fixed(&label, &tmp_dir, &spilled, &rows, collection),
        _ => replay(&label, &tmp_dir, &spilled, &rows, collection),
    }
}

/// What went wrong writing the file `label`.
fn write_error(label: &str) -> impl Fn(WriteError) -> Error + '_ {
    move |source| Error::Write {
        path: label.to_string(),
        source,
    }
}

/// The fixed-schema writer's options for a daily file of `rows` rows. A batch is a whole
/// row group: its column writers (and their zstd contexts) live only while it is encoded.
fn daily_options(rows: u64) -> HlsWriterOptions {
    HlsWriterOptions::default()
        .with_rows(rows)
        .with_max_row_group_row_count(FAST_ROW_GROUP_SIZE)
        .with_batch_rows(FAST_ROW_GROUP_SIZE)
}

/// The fixed-schema writer of a daily file of `rows` rows; it keeps its batches decoded when
/// the file is small enough to be handed to its month's repartition.
fn daily_writer(
    label: &str,
    tmp_dir: &Option<std::path::PathBuf>,
    collection: Collection,
    rows: u64,
) -> Result<HlsGeoparquetWriter<Scratch>> {
    let mut w = HlsGeoparquetWriter::new(
        Scratch::new(tmp_dir.clone()),
        collection,
        daily_options(rows),
    )
    .map_err(|e| write_error(label)(WriteError::Hls(e)))?;
    if rows <= crate::write::recent::RecentFiles::MAX_FILE_ROWS as u64 {
        w.keep_batches();
    }
    Ok(w)
}

/// Writes the rows of sorted runs, merged, with the fixed-schema writer.
fn write_runs(
    label: &str,
    tmp_dir: &Option<std::path::PathBuf>,
    runs: SortedRuns,
    collection: Collection,
) -> Result<Option<FinishedFile>> {
    if runs.rows() == 0 {
        return Ok(None);
    }
    let werr = write_error(label);
    let w = match runs.finish_early().map_err(|e| werr(WriteError::Hls(e)))? {
        Ended::Written(w) => *w,
        Ended::Runs(runs) => {
            let mut w = daily_writer(label, tmp_dir, collection, runs.rows())?;
            runs.write_into(&mut w, FAST_ROW_GROUP_SIZE)
                .map_err(|e| werr(WriteError::Hls(e)))?;
            w
        }
    };
    finish_fixed(label, w)
}

/// Writes the spilled rows, in the order of `rows`, with the fixed-schema writer; a row
/// that does not fit its schema sends the day to the generic writer ([`replay`]).
fn write_fixed(
    label: &str,
    tmp_dir: &Option<std::path::PathBuf>,
    spilled: &Scratched,
    rows: &[SpilledRow],
    collection: Collection,
) -> Result<Option<FinishedFile>> {
    let werr = write_error(label);
    if rows.is_empty() {
        return Ok(None);
    }
    let mut w = daily_writer(label, tmp_dir, collection, rows.len() as u64)?;
    let mut reader = spilled.ranges().map_err(|e| werr(WriteError::Spill(e)))?;
    let mut json = Vec::new();
    for row in rows {
        reader
            .read(row.at.offset, row.at.len as usize, &mut json)
            .map_err(|e| werr(WriteError::Spill(e)))?;
        match w.write_json(&json) {
            Ok(()) => {}
            Err(e) if e.is_shape_mismatch() => {
                // Not of the fixed shape: the generic writer takes the day from the spill
                // (this file, unfinished, is dropped).
                tracing::warn!("{label}: {e}; writing it with the generic writer");
                return replay(label, tmp_dir, spilled, rows, Some(collection));
            }
            Err(e) => return Err(werr(WriteError::Hls(e))),
        }
    }
    finish_fixed(label, w)
}

fn finish_fixed(label: &str, w: HlsGeoparquetWriter<Scratch>) -> Result<Option<FinishedFile>> {
    let werr = write_error(label);
    let (out, stats, decoded) = w.finish_decoded().map_err(|e| werr(WriteError::Hls(e)))?;
    let data = out.finish().map_err(|e| werr(WriteError::TempFile(e)))?;
    Ok(Some(FinishedFile {
        data,
        rows: stats.items,
        decoded,
    }))
}

/// The JSON of a granule's item built from its ECHO10 values, with its `collection`.
fn meta_json(meta: &GranuleMeta) -> std::result::Result<Bytes, serde_json::Error> {
    let mut item = crate::source::hls::to_stac_item(meta);
    if let Some(obj) = item.as_object_mut() {
        obj.insert(
            "collection".into(),
            serde_json::Value::String(meta.collection.stac_id().to_string()),
        );
    }
    serde_json::to_vec(&item).map(Bytes::from)
}

/// The spilled rows in (`datetime`, `id`) order; a row whose key was not read when it
/// arrived is read from the spill.
fn sorted_rows(
    label: &str,
    spilled: &Scratched,
    pending: Vec<(Option<RowKey>, SpillAt)>,
) -> Result<Vec<SpilledRow>> {
    let werr = write_error(label);
    let mut reader = spilled.ranges().map_err(|e| werr(WriteError::Spill(e)))?;
    let mut json = Vec::new();
    let mut rows = Vec::with_capacity(pending.len());
    for (key, at) in pending {
        let key = match key {
            Some(key) => key,
            None => {
                reader
                    .read(at.offset, at.len as usize, &mut json)
                    .map_err(|e| werr(WriteError::Spill(e)))?;
                ItemHead::read(&json)
                    .map_err(|e| werr(WriteError::NotAnItem(e)))?
                    .key()
            }
        };
        rows.push(SpilledRow {
            order: (key.datetime, key.id),
            at,
        });
    }
    rows.sort_unstable_by(|a, b| a.order.cmp(&b.order));
    Ok(rows)
}

/// One row in the spill file: its key and where its JSON is.
struct SpilledRow {
    /// `properties.datetime` (microseconds; an item without one first), then id.
    order: (Option<i64>, String),
    at: SpillAt,
}

/// Writes the spilled rows, in the order of `rows`, with the generic writer
/// ([`crate::write::stac_arrow`]), setting their `collection` when given: a first pass
/// over the rows infers the schema from all of them, a second writes them.
fn replay(
    label: &str,
    tmp_dir: &Option<std::path::PathBuf>,
    spilled: &Scratched,
    rows: &[SpilledRow],
    collection: Option<Collection>,
) -> Result<Option<FinishedFile>> {
    use crate::write::stac_arrow::{FlatRow, GenericWriter, Inference};
    let werr = write_error(label);
    let gerr = |e| werr(WriteError::Generic(e));
    if rows.is_empty() {
        return Ok(None);
    }
    let mut reader = spilled.ranges().map_err(|e| werr(WriteError::Spill(e)))?;
    let mut json = Vec::new();
    let mut inference = Inference::default();
    let mut collections: BTreeSet<Collection> = collection.into_iter().collect();
    for row in rows {
        reader
            .read(row.at.offset, row.at.len as usize, &mut json)
            .map_err(|e| werr(WriteError::Spill(e)))?;
        let flat = FlatRow::from_json(&json, collection).map_err(gerr)?;
        if let Some(c) = flat.collection().and_then(|c| c.parse::<Collection>().ok()) {
            collections.insert(c);
        }
        inference.add(flat).map_err(gerr)?;
    }
    let collections: Vec<Collection> = collections.into_iter().collect();
    let mut writer = GenericWriter::new(
        Scratch::new(tmp_dir.clone()),
        inference,
        &collections,
        crate::write::parquet::for_rows(
            crate::write::parquet::writer_properties_builder(DEFAULT_ROW_GROUP_SIZE),
            rows.len() as u64,
        )
        .build(),
    )
    .map_err(gerr)?;
    for row in rows {
        reader
            .read(row.at.offset, row.at.len as usize, &mut json)
            .map_err(|e| werr(WriteError::Spill(e)))?;
        writer
            .write(FlatRow::from_json(&json, collection).map_err(gerr)?)
            .map_err(gerr)?;
    }
    let (written, out) = writer.finish().map_err(gerr)?;
    let data = out.finish().map_err(|e| werr(WriteError::TempFile(e)))?;
    Ok(Some(FinishedFile {
        data,
        rows: written,
        decoded: None,
    }))
}

/// The rows of one file as they arrived: their JSON one after the other, in [`Scratch`]
/// space.
struct Spill {
    out: Scratch,
}

/// Where one row is in a spill: the offset of its JSON and its length.
#[derive(Debug, Clone, Copy)]
struct SpillAt {
    offset: u64,
    len: u32,
}

impl Spill {
    fn new(tmp_dir: &Option<std::path::PathBuf>) -> Spill {
        Spill {
            out: Scratch::new(tmp_dir.clone()),
        }
    }

    fn push(&mut self, json: &[u8]) -> std::io::Result<SpillAt> {
        use std::io::Write;
        let len = u32::try_from(json.len()).map_err(std::io::Error::other)?;
        let offset = self.out.len();
        self.out.write_all(json)?;
        Ok(SpillAt { offset, len })
    }

    fn finish(self) -> std::io::Result<Scratched> {
        self.out.finish()
    }
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
        stac::geoparquet::from_reader(f.data.to_bytes().unwrap())
            .unwrap()
            .items
    }

    #[tokio::test]
    async fn the_fast_writer_gives_the_same_file_from_json_bytes_as_from_items() {
        let json = Bytes::from_static(include_bytes!(
            "../../tests/fixtures/stac/HLS.S30.T01WEV.2024153T000609.v2.0_stac.json"
        ));
        let fast = WriterKind::Fast(Collection::Hlss30);
        let from_json = write_rows(fast, vec![ItemRow::Json { json, key: None }])
            .await
            .unwrap()
            .unwrap();
        let from_item = write(fast, vec![real_item()]).await.unwrap().unwrap();
        assert_eq!(read(&from_json), read(&from_item));
        assert_eq!(
            from_json.data.to_bytes().unwrap(),
            from_item.data.to_bytes().unwrap()
        );
    }

    #[tokio::test]
    async fn both_writers_give_files_that_read_back_to_the_same_items() {
        let items = vec![real_item()];
        let fast = write(WriterKind::Fast(Collection::Hlss30), items.clone())
            .await
            .unwrap()
            .unwrap();
        let generic = write(WriterKind::Stac, items.clone())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(fast.rows, 1);
        // Both give the item back exactly (its `collection` set), microseconds included.
        let fast = read(&fast);
        assert_eq!(fast, items);
        assert_eq!(read(&generic), items);
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
