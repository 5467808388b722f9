//! Reading the partitions a search needs: pruned row groups, filtered rows, exact footprints.

use super::filter::Query;
use super::partitions::{self, Partition};
use super::prune;
use crate::error::{Error, OutputProblem, ReadError, Result};
use crate::write::output::Output;
use arrow_array::{RecordBatch, RecordBatchIterator};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowPredicateFn, ArrowReaderMetadata, ArrowReaderOptions, RowFilter,
};
use parquet::arrow::async_reader::{AsyncFileReader, ParquetRecordBatchStreamBuilder};
use parquet::errors::ParquetError;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

/// Which page of the matches to return.
#[derive(Debug, Clone, Copy, Default)]
pub struct SearchOptions {
    /// Matches to skip first.
    pub skip: usize,
    /// Matches to return at most (`None`: all).
    pub limit: Option<usize>,
}

/// What a search read, for the curious (`search -v`) and the benchmark.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SearchStats {
    /// Partitions in the output.
    pub partitions: usize,
    /// Partitions whose month (and collection) the search needed.
    pub partitions_read: usize,
    /// Row groups of the partitions read.
    pub row_groups: usize,
    /// Row groups read (the others pruned by their statistics).
    pub row_groups_read: usize,
    /// Rows that passed the column filters (before the exact footprint test).
    pub candidates: usize,
    /// Matches seen (skipped ones included).
    pub matches: usize,
    /// Whether matches remain after the page returned.
    pub more: bool,
}

/// Footers read, by (path, ETag).
type Footers = HashMap<(String, Option<String>), ArrowReaderMetadata>;

/// What receives the matches of a partition; `false` stops the search.
type Sink<'a> = dyn FnMut(Map<String, Value>, &mut SearchStats) -> Result<bool> + Send + 'a;

/// Searches one output; keeps the footers it read, by file version, for the next search.
#[derive(Debug, Clone)]
pub struct Searcher {
    out: Arc<Output>,
    footers: Arc<Mutex<Footers>>,
}

/// How many times a search reads a partition again that changed while it read it.
const ATTEMPTS: usize = 3;

impl Searcher {
    /// A searcher over `out`.
    pub fn new(out: Output) -> Searcher {
        Searcher {
            out: Arc::new(out),
            footers: Arc::default(),
        }
    }

    /// A searcher over the cache at `output` (a folder or an object store URL): an error,
    /// rather than an empty folder made on the way, when a local folder is not there.
    pub fn open(output: &str) -> Result<Searcher> {
        if !output.contains("://") && !std::path::Path::new(output).is_dir() {
            return Err(Error::InvalidOutput {
                output: output.to_string(),
                problem: OutputProblem::NoSuchFolder,
            });
        }
        Ok(Searcher::new(Output::parse(output)?))
    }

    /// The output searched.
    pub fn output(&self) -> &Output {
        &self.out
    }

    /// The partitions of the output.
    pub async fn partitions(&self) -> Result<Vec<Partition>> {
        partitions::list(&self.out).await
    }

    /// The footer of a partition as it is now (read once per file version).
    pub async fn footer(&self, p: &Partition) -> Result<ArrowReaderMetadata> {
        let mut reader = self.reader(p);
        self.footer_with(p, &mut reader).await
    }

    /// Calls `each` with every match of `q` in order (collection, month, then the file's
    /// order), after skipping `options.skip`, at most `options.limit` of them.
    pub async fn search(
        &self,
        q: &Query,
        options: SearchOptions,
        mut each: impl FnMut(Map<String, Value>) -> Result<()> + Send,
    ) -> Result<SearchStats> {
        let all = self.partitions().await?;
        let mut stats = SearchStats {
            partitions: all.len(),
            ..SearchStats::default()
        };
        let needed = partitions::needed(all, q);
        stats.partitions_read = needed.len();
        let mut sent = 0usize;
        let wanted = options.limit.map(|l| options.skip + l);
        for partition in &needed {
            if wanted.is_some_and(|w| stats.matches > w) {
                break;
            }
            let mut p = partition.clone();
            let mut attempt = 0;
            loop {
                attempt += 1;
                let before = stats;
                let result = self
                    .search_partition(&p, q, &mut stats, &mut |item, stats| {
                        stats.matches += 1;
                        if stats.matches <= options.skip {
                            return Ok(true);
                        }
                        if options.limit.is_some_and(|l| sent >= l) {
                            stats.more = true;
                            return Ok(false);
                        }
                        sent += 1;
                        each(item)?;
                        Ok(true)
                    })
                    .await;
                match result {
                    Ok(()) => break,
                    Err(e) if attempt < ATTEMPTS && before.matches == stats.matches => {
                        // Published again while we read it? Then read the new version.
                        match self.out.store().head(&p.meta.location).await {
                            Ok(now) if now.e_tag != p.meta.e_tag => {
                                stats = before;
                                p.meta = now;
                            }
                            _ => return Err(e),
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            if stats.more {
                break;
            }
        }
        Ok(stats)
    }

    fn reader(&self, p: &Partition) -> SnapshotReader {
        SnapshotReader {
            store: self.out.store().clone(),
            path: p.meta.location.clone(),
            size: p.meta.size,
            e_tag: p.meta.e_tag.clone(),
        }
    }

    async fn footer_with(
        &self,
        p: &Partition,
        reader: &mut SnapshotReader,
    ) -> Result<ArrowReaderMetadata> {
        let key = (p.meta.location.to_string(), p.meta.e_tag.clone());
        if let Some(m) = self.lock().get(&key) {
            return Ok(m.clone());
        }
        // With the offset index (where the pages are): a row selection reads only the pages
        // it touches. Files written without one are read whole, as before.
        let options = ArrowReaderOptions::new().with_offset_index_policy(PageIndexPolicy::Optional);
        let meta = ArrowReaderMetadata::load_async(reader, options)
            .await
            .map_err(|e| self.read_error(p, e))?;
        let mut footers = self.lock();
        // Older versions of this file are of no more use.
        footers.retain(|(path, _), _| *path != key.0);
        footers.insert(key, meta.clone());
        Ok(meta)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Footers> {
        self.footers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn read_error(&self, p: &Partition, e: ParquetError) -> Error {
        Error::Read {
            path: self.out.show(&p.meta.location),
            source: ReadError::Parquet(e),
        }
    }

    /// Feeds the matches of one partition to `f` until it returns `false`.
    async fn search_partition(
        &self,
        p: &Partition,
        q: &Query,
        stats: &mut SearchStats,
        f: &mut Sink<'_>,
    ) -> Result<()> {
        let mut reader = self.reader(p);
        let meta = self.footer_with(p, &mut reader).await?;
        let mut groups = prune::row_groups(meta.metadata(), meta.schema(), q);
        if !q.ids.is_empty() {
            groups = self.may_hold_ids(p, &meta, groups, q).await?;
        }
        stats.row_groups += meta.metadata().num_row_groups();
        stats.row_groups_read += groups.len();
        if groups.is_empty() {
            return Ok(());
        }
        let descr = meta.metadata().file_metadata().schema_descr_ptr();
        let filter_roots: Vec<usize> = ["id", "datetime", "eo:cloud_cover", "bbox"]
            .iter()
            .filter_map(|name| meta.schema().index_of(name).ok())
            .collect();
        let query = q.clone();
        let predicate = ArrowPredicateFn::new(
            ProjectionMask::roots(&descr, filter_roots),
            move |batch: RecordBatch| query.row_mask(&batch),
        );
        let mut stream = ParquetRecordBatchStreamBuilder::new_with_metadata(reader, meta.clone())
            .with_row_groups(groups)
            .with_row_filter(RowFilter::new(vec![Box::new(predicate)]))
            .with_batch_size(1024)
            .build()
            .map_err(|e| self.read_error(p, e))?;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(|e| self.read_error(p, e))?;
            stats.candidates += batch.num_rows();
            for item in self.to_items(p, batch)? {
                if q.footprint_matches(&item) && q.filter_matches(&item)? && !f(item, stats)? {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// The row groups of `groups` whose `id` bloom filter may hold one of the ids asked for
    /// (all of them where the file has no bloom filter: partitions written before it).
    async fn may_hold_ids(
        &self,
        p: &Partition,
        meta: &ArrowReaderMetadata,
        groups: Vec<usize>,
        q: &Query,
    ) -> Result<Vec<usize>> {
        let descr = meta.metadata().file_metadata().schema_descr();
        let Some(column) = descr
            .columns()
            .iter()
            .position(|c| c.path().string() == "id")
        else {
            return Ok(groups);
        };
        let mut builder =
            ParquetRecordBatchStreamBuilder::new_with_metadata(self.reader(p), meta.clone());
        let mut kept = Vec::with_capacity(groups.len());
        for g in groups {
            let bloom = builder
                .get_row_group_column_bloom_filter(g, column)
                .await
                .map_err(|e| self.read_error(p, e))?;
            match bloom {
                Some(bloom) if !q.ids.iter().any(|id| bloom.check(id.as_str())) => {}
                _ => kept.push(g),
            }
        }
        Ok(kept)
    }

    fn to_items(&self, p: &Partition, batch: RecordBatch) -> Result<Vec<Map<String, Value>>> {
        let bad = |e: stac::Error| Error::Read {
            path: self.out.show(&p.meta.location),
            source: ReadError::Stac(e),
        };
        let batch = stac::geoarrow::add_wkb_metadata(batch, "geometry").map_err(bad)?;
        let schema = batch.schema();
        stac::geoarrow::json::from_record_batch_reader(RecordBatchIterator::new(
            [Ok(batch)],
            schema,
        ))
        .map_err(bad)
    }
}

/// Reads one version of a file: every range with `If-Match` on the ETag it was listed with,
/// so a file replaced meanwhile fails the read instead of mixing two versions.
pub(crate) struct SnapshotReader {
    store: Arc<dyn ObjectStore>,
    path: object_store::path::Path,
    size: u64,
    e_tag: Option<String>,
}

impl SnapshotReader {
    /// A reader of the version of `meta` (as listed or headed) in `store`.
    pub(crate) fn new(
        store: Arc<dyn ObjectStore>,
        meta: &object_store::ObjectMeta,
    ) -> SnapshotReader {
        SnapshotReader {
            store,
            path: meta.location.clone(),
            size: meta.size,
            e_tag: meta.e_tag.clone(),
        }
    }

    fn get(&self, range: Range<u64>) -> BoxFuture<'static, parquet::errors::Result<Bytes>> {
        let (store, path) = (self.store.clone(), self.path.clone());
        let options = GetOptions {
            range: Some(GetRange::Bounded(range)),
            if_match: self.e_tag.clone(),
            ..GetOptions::default()
        };
        async move {
            let got = store
                .get_opts(&path, options)
                .await
                .map_err(|e| ParquetError::External(Box::new(e)))?;
            got.bytes()
                .await
                .map_err(|e| ParquetError::External(Box::new(e)))
        }
        .boxed()
    }
}

impl AsyncFileReader for SnapshotReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        self.get(range)
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        let gets: Vec<_> = ranges.into_iter().map(|r| self.get(r)).collect();
        async move { futures::future::try_join_all(gets).await }.boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let size = self.size;
            let policy = |p: fn(&ArrowReaderOptions) -> PageIndexPolicy| {
                options.map_or(PageIndexPolicy::Skip, p)
            };
            let meta = ParquetMetaDataReader::new()
                .with_prefetch_hint(Some(64 * 1024))
                .with_offset_index_policy(policy(ArrowReaderOptions::offset_index_policy))
                .with_column_index_policy(policy(ArrowReaderOptions::column_index_policy))
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(meta))
        }
        .boxed()
    }
}
