//! Reading the partitions a search needs: pruned row groups, filtered rows, exact footprints.

use super::filter::Query;
use super::partitions::{self, Partition};
use super::prune;
use super::row_group::{self, FetchedRowGroup};
use crate::error::{Error, OutputProblem, ReadError, Result};
use crate::write::output::Output;
use arrow_array::{RecordBatch, RecordBatchIterator};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, RowSelection, RowSelector,
};
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::arrow::{FieldLevels, ProjectionMask, parquet_to_arrow_field_levels};
use parquet::bloom_filter::Sbbf;
use parquet::errors::ParquetError;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, LazyLock, Mutex};

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

/// A version of a file: its path and ETag.
type FileVersion = (String, Option<String>);

/// What a searcher read of one version of a partition file: its footer, and the `id`
/// bloom filters of its row groups once an `ids` search needed them.
#[derive(Debug)]
struct KnownFile {
    footer: ArrowReaderMetadata,
    /// The footer's columns, all of them, as the record batch reader takes them.
    all: Arc<FieldLevels>,
    /// Where the `id` bloom filter of each row group is ([`id_bloom_ranges`]).
    id_bloom_ranges: Vec<Option<Range<u64>>>,
    id_blooms: tokio::sync::OnceCell<Blooms>,
    /// Bytes it takes in memory, about: the footer's, and those of its `id` bloom filters
    /// (counted before they are read).
    bytes: usize,
}

/// The `id` bloom filters of a file's row groups (`None`: a row group without one).
type Blooms = Vec<Option<Sbbf>>;

/// What receives the matches of a partition; `false` stops the search.
type Sink<'a> = dyn FnMut(Map<String, Value>, &mut SearchStats) -> Result<bool> + Send + 'a;

/// Searches one output; keeps the footers and `id` bloom filters it read, by file version,
/// for the next search (those used least recently go past [`FOOTER_CACHE_BYTES`]).
#[derive(Debug, Clone)]
pub struct Searcher {
    out: Arc<Output>,
    known: Arc<Mutex<KnownFiles>>,
}

/// Bytes of footers (with their page index and `id` bloom filters) a [`Searcher`] keeps at
/// most. A month of 300,000 HLSS30 items has a footer of ~14 MB in memory: a `serve` that
/// has answered over the whole archive (~250 partitions) would otherwise hold gigabytes.
pub const FOOTER_CACHE_BYTES: usize = 256 * 1024 * 1024;

/// The files a searcher knows, and when each was last used.
#[derive(Debug)]
struct KnownFiles {
    files: HashMap<FileVersion, (Arc<KnownFile>, u64)>,
    /// Bytes of the files held, as [`KnownFile::bytes`] counts them.
    bytes: usize,
    /// The most that `bytes` may reach (the last file read is kept even when larger).
    budget: usize,
    /// Counts uses: the least recent has the smallest.
    clock: u64,
}

impl KnownFiles {
    fn new(budget: usize) -> KnownFiles {
        KnownFiles {
            files: HashMap::new(),
            bytes: 0,
            budget,
            clock: 0,
        }
    }

    fn get(&mut self, key: &FileVersion) -> Option<Arc<KnownFile>> {
        self.clock += 1;
        let (file, used) = self.files.get_mut(key)?;
        *used = self.clock;
        Some(file.clone())
    }

    /// Keeps `file` as the version `key` of its path (older versions of the path go), then
    /// drops the least recently used files until the others fit the budget.
    fn insert(&mut self, key: FileVersion, file: Arc<KnownFile>) {
        self.clock += 1;
        let stale: Vec<FileVersion> = self
            .files
            .keys()
            .filter(|(path, _)| *path == key.0)
            .cloned()
            .collect();
        for old in stale {
            self.remove(&old);
        }
        // (`key` itself was among them: the insert replaces nothing.)
        self.bytes += file.bytes;
        self.files.insert(key.clone(), (file, self.clock));
        while self.bytes > self.budget {
            let Some(oldest) = self
                .files
                .iter()
                .filter(|(k, _)| **k != key)
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            self.remove(&oldest);
        }
    }

    fn remove(&mut self, key: &FileVersion) {
        if let Some((file, _)) = self.files.remove(key) {
            self.bytes -= file.bytes;
        }
    }
}

/// How many times a search reads a partition again that changed while it read it.
const ATTEMPTS: usize = 3;

impl Searcher {
    /// A searcher over `out` that keeps up to [`FOOTER_CACHE_BYTES`] of footers.
    pub fn new(out: Output) -> Searcher {
        Searcher {
            out: Arc::new(out),
            known: Arc::new(Mutex::new(KnownFiles::new(FOOTER_CACHE_BYTES))),
        }
    }

    /// This searcher, keeping at most `bytes` of footers (and forgetting those it kept).
    pub fn with_footer_cache(self, bytes: usize) -> Searcher {
        Searcher {
            known: Arc::new(Mutex::new(KnownFiles::new(bytes))),
            ..self
        }
    }

    /// The footers this searcher keeps: how many, and their bytes.
    pub fn footers_kept(&self) -> (usize, usize) {
        let known = self.lock();
        (known.files.len(), known.bytes)
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
        Ok(self.known_file(p, &mut reader).await?.footer.clone())
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
            // Matches still wanted, and one more to know whether there are more.
            let remaining = wanted.map(|w| w.saturating_sub(stats.matches) + 1);
            loop {
                attempt += 1;
                let before = stats;
                let result = self
                    .search_partition(&p, q, remaining, &mut stats, &mut |item, stats| {
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

    /// What is known of the listed version of a partition, its footer read if it was not.
    async fn known_file(
        &self,
        p: &Partition,
        reader: &mut SnapshotReader,
    ) -> Result<Arc<KnownFile>> {
        let key = (p.meta.location.to_string(), p.meta.e_tag.clone());
        if let Some(known) = self.lock().get(&key) {
            return Ok(known.clone());
        }
        // With the offset index (where the pages are): a row selection reads only the pages
        // it touches. Files written without one are read whole, as before.
        let options = ArrowReaderOptions::new().with_offset_index_policy(PageIndexPolicy::Optional);
        let meta = ArrowReaderMetadata::load_async(reader, options)
            .await
            .map_err(|e| self.read_error(p, e))?;
        let descr = meta.metadata().file_metadata().schema_descr();
        let all = parquet_to_arrow_field_levels(
            descr,
            ProjectionMask::all(),
            Some(meta.schema().fields()),
        )
        .map_err(|e| self.read_error(p, e))?;
        let id_bloom_ranges = id_bloom_ranges(meta.metadata());
        let blooms: u64 = id_bloom_ranges
            .iter()
            .flatten()
            .map(|r| r.end - r.start)
            .sum();
        let bytes = meta.metadata().memory_size() + usize::try_from(blooms).unwrap_or(usize::MAX);
        let known = Arc::new(KnownFile {
            footer: meta,
            all: Arc::new(all),
            id_bloom_ranges,
            id_blooms: tokio::sync::OnceCell::new(),
            bytes,
        });
        self.lock().insert(key, known.clone());
        Ok(known)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, KnownFiles> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
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
        remaining: Option<usize>,
        stats: &mut SearchStats,
        f: &mut Sink<'_>,
    ) -> Result<()> {
        let mut reader = self.reader(p);
        let known = self.known_file(p, &mut reader).await?;
        let meta = &known.footer;
        let mut groups = prune::row_groups(meta.metadata(), meta.schema(), q);
        if !q.ids.is_empty() {
            groups = self.may_hold_ids(p, &known, groups, q).await?;
        }
        stats.row_groups += meta.metadata().num_row_groups();
        stats.row_groups_read += groups.len();
        if groups.is_empty() {
            return Ok(());
        }
        let plan = Arc::new(ReadPlan {
            meta: meta.metadata().clone(),
            mask: mask_levels(meta, q).map_err(|e| self.read_error(p, e))?,
            all: known.all.clone(),
            // Where every row the mask keeps is a match, no more rows than are wanted.
            cap: remaining.filter(|_| q.geometry.is_none() && q.filter.is_none()),
            query: q.clone(),
        });
        let mut found = futures::stream::iter(groups)
            .map(|g| self.read_row_group(p, &plan, g))
            .buffered(*READ_AHEAD);
        while let Some(group) = found.next().await {
            let group = group?;
            stats.candidates += group.candidates;
            for item in group.items {
                if q.footprint_matches(&item) && q.filter_matches(&item)? && !f(item, stats)? {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Reads row group `g` of a partition in one request and decodes its candidates on a
    /// blocking thread.
    async fn read_row_group(&self, p: &Partition, plan: &Arc<ReadPlan>, g: usize) -> Result<Found> {
        let range = row_group::byte_range(&plan.meta, g);
        let start = range.start;
        let bytes = self
            .reader(p)
            .get(range)
            .await
            .map_err(|e| self.read_error(p, e))?;
        let plan = plan.clone();
        let path = self.out.show(&p.meta.location);
        match tokio::task::spawn_blocking(move || plan.decode(g, start, bytes)).await {
            Ok(found) => found.map_err(|source| Error::Read { path, source }),
            Err(source) => Err(Error::Join {
                task: format!("reading {path}"),
                source,
            }),
        }
    }

    /// The row groups of `groups` whose `id` bloom filter may hold one of the ids asked for
    /// (all of them where the file has no bloom filter: partitions written before it).
    async fn may_hold_ids(
        &self,
        p: &Partition,
        known: &KnownFile,
        groups: Vec<usize>,
        q: &Query,
    ) -> Result<Vec<usize>> {
        let blooms = known
            .id_blooms
            .get_or_try_init(|| self.read_id_blooms(p, &known.id_bloom_ranges))
            .await?;
        Ok(groups
            .into_iter()
            .filter(|&g| match blooms.get(g) {
                Some(Some(bloom)) => q.ids.iter().any(|id| bloom.check(id.as_str())),
                _ => true,
            })
            .collect())
    }

    /// Reads the `id` bloom filters of the row groups of a partition, all in one coalesced
    /// read: `None` for a row group without one.
    async fn read_id_blooms(&self, p: &Partition, ranges: &[Option<Range<u64>>]) -> Result<Blooms> {
        let wanted: Vec<Range<u64>> = ranges.iter().flatten().cloned().collect();
        let mut read = self
            .reader(p)
            .get_byte_ranges(wanted)
            .await
            .map_err(|e| self.read_error(p, e))?
            .into_iter();
        let mut blooms = Vec::with_capacity(ranges.len());
        for range in ranges {
            // Only a row group with a filter took one of the ranges read.
            let bytes = range.as_ref().and_then(|_| read.next());
            blooms.push(match bytes {
                Some(bytes) => Some(Sbbf::from_bytes(&bytes).map_err(|e| self.read_error(p, e))?),
                None => None,
            });
        }
        Ok(blooms)
    }
}

/// Where the `id` bloom filter of each row group of a file is (`None`: a row group without
/// one).
fn id_bloom_ranges(metadata: &ParquetMetaData) -> Vec<Option<Range<u64>>> {
    let column = metadata
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .position(|c| c.path().string() == "id");
    metadata
        .row_groups()
        .iter()
        .map(|g| {
            let chunk = g.column(column?);
            let start = u64::try_from(chunk.bloom_filter_offset()?).ok()?;
            let len = u64::try_from(chunk.bloom_filter_length()?).ok()?;
            Some(start..start + len)
        })
        .collect()
}

/// Row groups read at once by a search: twice this machine's cores (decoded on blocking
/// threads, so that one is fetched while another is decoded).
static READ_AHEAD: LazyLock<usize> = LazyLock::new(|| crate::cores().clamp(1, 8) * 2);

/// Rows per record batch of the matches.
const BATCH_ROWS: usize = 1024;

/// The candidates of one row group: the rows that passed the row mask, as items.
#[derive(Debug, Default)]
struct Found {
    candidates: usize,
    items: Vec<Map<String, Value>>,
}

/// How one search reads the row groups of one partition.
struct ReadPlan {
    meta: Arc<ParquetMetaData>,
    /// The columns of the row mask (`None`: the query has no row conditions).
    mask: Option<FieldLevels>,
    /// Every column.
    all: Arc<FieldLevels>,
    /// Rows of a row group to decode at most (the first ones the mask keeps).
    cap: Option<usize>,
    query: Query,
}

/// The columns of a file that the row mask of `q` reads, or `None` when it reads none.
fn mask_levels(
    meta: &ArrowReaderMetadata,
    q: &Query,
) -> std::result::Result<Option<FieldLevels>, ParquetError> {
    let roots: Vec<usize> = q
        .mask_columns()
        .iter()
        .filter_map(|name| meta.schema().index_of(name).ok())
        .collect();
    if roots.is_empty() {
        return Ok(None);
    }
    let descr = meta.metadata().file_metadata().schema_descr();
    let mask = ProjectionMask::roots(descr, roots);
    parquet_to_arrow_field_levels(descr, mask, Some(meta.schema().fields())).map(Some)
}

impl ReadPlan {
    /// Decodes row group `g`, whose bytes from offset `start` on are `bytes`: first the mask
    /// columns of every row, then every column of the rows the mask keeps (only the pages
    /// that hold them, where the file has an offset index).
    fn decode(&self, g: usize, start: u64, bytes: Bytes) -> std::result::Result<Found, ReadError> {
        let fetched = FetchedRowGroup::new(self.meta.clone(), g, start, bytes);
        let rows = usize::try_from(self.meta.row_group(g).num_rows()).unwrap_or(0);
        let selection = match &self.mask {
            None => None,
            Some(levels) => {
                let mut masks = Vec::new();
                let batches = fetched
                    .read(levels, None, rows.max(1))
                    .map_err(ReadError::Parquet)?;
                for batch in batches {
                    let batch = batch.map_err(ReadError::Arrow)?;
                    masks.push(self.query.row_mask(&batch).map_err(ReadError::Arrow)?);
                }
                let selection = RowSelection::from_filters(&masks);
                if !selection.selects_any() {
                    return Ok(Found::default());
                }
                Some(selection)
            }
        };
        let selection = match self.cap {
            Some(n) => Some(first_rows(selection, rows, n)),
            None => selection,
        };
        let mut found = Found::default();
        let batches = fetched
            .read(&self.all, selection, BATCH_ROWS)
            .map_err(ReadError::Parquet)?;
        for batch in batches {
            let batch = batch.map_err(ReadError::Arrow)?;
            found.candidates += batch.num_rows();
            found.items.extend(to_items(batch)?);
        }
        Ok(found)
    }
}

/// The first `n` rows of `selection` (`None`: all `rows` rows).
fn first_rows(selection: Option<RowSelection>, rows: usize, n: usize) -> RowSelection {
    let selectors: Vec<RowSelector> = match selection {
        Some(s) => s.iter().cloned().collect(),
        None => vec![RowSelector::select(rows)],
    };
    let mut first = Vec::new();
    let mut left = n;
    for s in selectors {
        if left == 0 {
            break;
        }
        if s.skip {
            first.push(s);
        } else {
            let take = s.row_count.min(left);
            first.push(RowSelector::select(take));
            left -= take;
        }
    }
    first.into()
}

/// The rows of `batch` as items.
fn to_items(batch: RecordBatch) -> std::result::Result<Vec<Map<String, Value>>, ReadError> {
    let batch = stac::geoarrow::add_wkb_metadata(batch, "geometry").map_err(ReadError::Stac)?;
    let schema = batch.schema();
    stac::geoarrow::json::from_record_batch_reader(RecordBatchIterator::new([Ok(batch)], schema))
        .map_err(ReadError::Stac)
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
        // The pages a row selection needs are many small ranges (one or two per column of
        // each row group read): one request for each range less than
        // `OBJECT_STORE_COALESCE_DEFAULT` (1 MB) apart from the next, all of the same version.
        async move {
            object_store::coalesce_ranges(
                &ranges,
                |r| self.get(r),
                object_store::OBJECT_STORE_COALESCE_DEFAULT,
            )
            .await
        }
        .boxed()
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

#[cfg(test)]
mod tests {
    use super::*;
    use futures::stream::BoxStream;
    use object_store::memory::InMemory;
    use object_store::{
        CopyOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, PutMultipartOptions,
        PutOptions, PutPayload, PutResult,
    };
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// An in-memory store that counts the reads it serves.
    #[derive(Debug, Default)]
    struct Counting {
        inner: InMemory,
        gets: AtomicUsize,
    }

    impl std::fmt::Display for Counting {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "Counting({})", self.inner)
        }
    }

    #[async_trait::async_trait]
    impl ObjectStore for Counting {
        async fn put_opts(
            &self,
            location: &object_store::path::Path,
            payload: PutPayload,
            opts: PutOptions,
        ) -> object_store::Result<PutResult> {
            self.inner.put_opts(location, payload, opts).await
        }

        async fn put_multipart_opts(
            &self,
            location: &object_store::path::Path,
            opts: PutMultipartOptions,
        ) -> object_store::Result<Box<dyn MultipartUpload>> {
            self.inner.put_multipart_opts(location, opts).await
        }

        async fn get_opts(
            &self,
            location: &object_store::path::Path,
            options: GetOptions,
        ) -> object_store::Result<GetResult> {
            self.gets.fetch_add(1, Ordering::SeqCst);
            self.inner.get_opts(location, options).await
        }

        fn delete_stream(
            &self,
            locations: BoxStream<'static, object_store::Result<object_store::path::Path>>,
        ) -> BoxStream<'static, object_store::Result<object_store::path::Path>> {
            self.inner.delete_stream(locations)
        }

        fn list(
            &self,
            prefix: Option<&object_store::path::Path>,
        ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            self.inner.list(prefix)
        }

        async fn list_with_delimiter(
            &self,
            prefix: Option<&object_store::path::Path>,
        ) -> object_store::Result<ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }

        async fn copy_opts(
            &self,
            from: &object_store::path::Path,
            to: &object_store::path::Path,
            options: CopyOptions,
        ) -> object_store::Result<()> {
            self.inner.copy_opts(from, to, options).await
        }
    }

    /// 3 MB whose every byte says where it is.
    fn data() -> Bytes {
        (0..3u32 << 20)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect::<Vec<u8>>()
            .into()
    }

    /// The ranges of a row selection over a few row groups: one or two small pages per column,
    /// out of order, some adjacent, some overlapping, gaps well under 1 MB.
    fn pages() -> Vec<Range<u64>> {
        let mut ranges: Vec<Range<u64>> = (0..300u64)
            .map(|i| {
                let start = (i * 7_919) % 3_000_000;
                start..start + 500 + (i % 7) * 300
            })
            .collect();
        ranges.push(10..20);
        ranges.push(15..40);
        ranges.push(40..41);
        ranges
    }

    async fn stored(bytes: Bytes) -> (Arc<Counting>, ObjectMeta) {
        let store = Arc::new(Counting::default());
        let path = object_store::path::Path::from("part-0.parquet");
        store.put(&path, bytes.into()).await.unwrap();
        let meta = store.head(&path).await.unwrap();
        store.gets.store(0, Ordering::SeqCst);
        (store, meta)
    }

    #[tokio::test]
    async fn the_pages_of_a_selection_are_read_in_few_requests_each_exactly() {
        let bytes = data();
        let (store, meta) = stored(bytes.clone()).await;
        let mut reader = SnapshotReader::new(store.clone(), &meta);
        let ranges = pages();
        let got = reader.get_byte_ranges(ranges.clone()).await.unwrap();
        assert_eq!(got.len(), ranges.len());
        for (range, got) in ranges.iter().zip(&got) {
            assert_eq!(
                got,
                &bytes.slice(range.start as usize..range.end as usize),
                "{range:?}"
            );
        }
        // 303 ranges less than 1 MB apart: read together (they were 303 requests before).
        let gets = store.gets.load(Ordering::SeqCst);
        assert!(gets <= 3, "{gets} requests for {} ranges", ranges.len());
    }

    /// A known file of `bytes` bytes (its footer that of a one-column file).
    fn known_file(bytes: usize) -> Arc<KnownFile> {
        let batch = arrow_array::RecordBatch::try_from_iter([(
            "id",
            Arc::new(arrow_array::StringArray::from(vec!["a"])) as arrow_array::ArrayRef,
        )])
        .unwrap();
        let mut file = Vec::new();
        let mut writer =
            parquet::arrow::ArrowWriter::try_new(&mut file, batch.schema(), None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let footer =
            ArrowReaderMetadata::load(&Bytes::from(file), ArrowReaderOptions::new()).unwrap();
        let descr = footer.metadata().file_metadata().schema_descr();
        let all = parquet_to_arrow_field_levels(descr, ProjectionMask::all(), None).unwrap();
        Arc::new(KnownFile {
            id_bloom_ranges: id_bloom_ranges(footer.metadata()),
            footer,
            all: Arc::new(all),
            id_blooms: tokio::sync::OnceCell::new(),
            bytes,
        })
    }

    #[test]
    fn footers_used_least_recently_go_past_the_budget() {
        let key = |path: &str, tag: &str| (path.to_string(), Some(tag.to_string()));
        let held = |k: &KnownFiles| {
            let mut v: Vec<String> = k
                .files
                .keys()
                .map(|(p, t)| format!("{p}@{}", t.as_deref().unwrap_or("")))
                .collect();
            v.sort();
            v
        };
        let mut known = KnownFiles::new(250);
        known.insert(key("a", "1"), known_file(100));
        known.insert(key("b", "1"), known_file(100));
        assert_eq!(known.bytes, 200);
        // `a` used since `b` was read: `b` is the least recent when `c` comes.
        assert!(known.get(&key("a", "1")).is_some());
        known.insert(key("c", "1"), known_file(100));
        assert_eq!(held(&known), ["a@1", "c@1"]);
        assert_eq!(known.bytes, 200);
        assert!(known.get(&key("b", "1")).is_none());
        // A new version of `a` replaces the old one (which no search can use again).
        known.insert(key("a", "2"), known_file(120));
        assert_eq!(held(&known), ["a@2", "c@1"]);
        assert_eq!(known.bytes, 220);
        // A file larger than the budget is kept alone, as the last one read.
        known.insert(key("d", "1"), known_file(400));
        assert_eq!(held(&known), ["d@1"]);
        assert_eq!(known.bytes, 400);
        known.insert(key("e", "1"), known_file(10));
        assert_eq!(held(&known), ["e@1"]);
        assert_eq!(known.bytes, 10);
    }

    #[test]
    fn first_rows_keeps_the_first_selected_rows_and_the_skips_between() {
        let rows = |s: &RowSelection| -> Vec<usize> {
            let mut at = 0;
            let mut kept = Vec::new();
            for r in s.iter() {
                if !r.skip {
                    kept.extend(at..at + r.row_count);
                }
                at += r.row_count;
            }
            kept
        };
        let mask = arrow_array::BooleanArray::from(
            (0..50).map(|i| i % 7 == 3 || i == 4).collect::<Vec<_>>(),
        );
        let all = RowSelection::from_filters(&[mask]);
        assert_eq!(rows(&all), [3, 4, 10, 17, 24, 31, 38, 45]);
        assert_eq!(rows(&first_rows(Some(all.clone()), 50, 3)), [3, 4, 10]);
        assert_eq!(rows(&first_rows(Some(all.clone()), 50, 100)), rows(&all));
        assert_eq!(rows(&first_rows(None, 5, 3)), [0, 1, 2]);
        assert_eq!(rows(&first_rows(None, 2, 3)), [0, 1]);
        assert!(!first_rows(Some(all), 50, 0).selects_any());
    }

    #[tokio::test]
    async fn coalesced_reads_of_a_file_replaced_meanwhile_fail() {
        let (store, meta) = stored(data()).await;
        let mut reader = SnapshotReader::new(store.clone(), &meta);
        store
            .put(&meta.location, Bytes::from(vec![0u8; 3 << 20]).into())
            .await
            .unwrap();
        assert!(reader.get_byte_ranges(pages()).await.is_err());
    }
}
