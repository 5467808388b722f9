//! The stac-server backend: rustac's STAC API routes answer from the cache through a
//! [`Searcher`], read-only.
//!
//! Paging is by a `skip` token in the `next` link (the matches are in a stable order: the
//! partitions', then the file's). A search reads its partitions again from the listing on
//! every request, so a `sync` that publishes a month is seen by the next request.

use super::cql::Cql2Filter;
use super::filter::Query;
use super::reader::{SearchOptions, Searcher};
use crate::collection::Collection;
use crate::error::one_line;
use futures::Stream;
use serde_json::{Map, Value};
use stac::api::{
    CollectionsClient, ItemCollection, ItemsClient, Search, StreamItemsClient, TransactionClient,
    stream_pages,
};
use stac::{Bbox, Item};
use stac_server::{Backend, Error};
use std::collections::BTreeSet;

/// The default page size of the API.
pub const DEFAULT_LIMIT: usize = 10;
/// The largest page the API returns.
pub const MAX_LIMIT: usize = 10_000;

/// A read-only stac-server backend over an output's partitions.
#[derive(Debug, Clone)]
pub struct CacheBackend {
    searcher: Searcher,
}

impl CacheBackend {
    /// A backend answering from `searcher`'s output.
    pub fn new(searcher: Searcher) -> CacheBackend {
        CacheBackend { searcher }
    }
}

/// Errors of the cache reach stac-server as its backend error (it has no variant for a
/// backend of its own: `MemoryBackend(String)` is the one that carries a message).
fn server_error(e: crate::error::Error) -> Error {
    Error::MemoryBackend(one_line(&e))
}

/// The [`Query`] of a STAC API search, or `None` when it cannot match anything (a
/// collection that is not in the cache).
pub fn query_of(search: &Search) -> Result<Option<Query>, crate::error::Error> {
    let mut q = Query::default();
    for id in &search.collections {
        // Only the collection ids the API lists (`HLSS30_2.0`), not the CLI's short names.
        if let Some(c) = Collection::ALL.into_iter().find(|c| c.stac_id() == id)
            && !q.collections.contains(&c)
        {
            q.collections.push(c);
        }
    }
    if !search.collections.is_empty() && q.collections.is_empty() {
        return Ok(None);
    }
    if let Some(b) = &search.items.bbox {
        q = q.with_bbox([b.xmin(), b.ymin(), b.xmax(), b.ymax()])?;
    }
    if let Some(g) = &search.intersects {
        let g = geo::Geometry::<f64>::try_from(g.clone()).map_err(|e| {
            crate::error::Error::InvalidBbox {
                input: "intersects".into(),
                problem: crate::error::BboxProblem::Intersects(e),
            }
        })?;
        q.geometry = Some(g);
    }
    if let Some(d) = &search.items.datetime {
        q = q.with_datetime(d)?;
    }
    q.ids = search.ids.iter().cloned().collect::<BTreeSet<_>>();
    if let Some(f) = &search.items.filter {
        // Last: the bounds it implies narrow those set above.
        q = q.with_filter(Cql2Filter::from_stac(f)?);
    }
    Ok(Some(q))
}

impl ItemsClient for CacheBackend {
    type Error = Error;

    async fn search(&self, search: Search) -> Result<ItemCollection, Error> {
        let limit = search
            .items
            .limit
            .map(|l| usize::try_from(l).unwrap_or(MAX_LIMIT))
            .unwrap_or(DEFAULT_LIMIT)
            .clamp(1, MAX_LIMIT);
        let skip = search
            .additional_fields
            .get("skip")
            .and_then(|s| {
                s.as_u64()
                    .or_else(|| s.as_str().and_then(|s| s.parse::<u64>().ok()))
            })
            .and_then(|s| usize::try_from(s).ok())
            .unwrap_or(0);
        let Some(q) = query_of(&search).map_err(server_error)? else {
            return Ok(ItemCollection::new(Vec::new())?);
        };
        let mut items = Vec::with_capacity(limit);
        let stats = self
            .searcher
            .search(
                &q,
                SearchOptions {
                    skip,
                    limit: Some(limit),
                },
                |item| {
                    items.push(item);
                    Ok(())
                },
            )
            .await
            .map_err(server_error)?;
        let mut page = ItemCollection::new(items)?;
        if stats.more {
            let mut next = Map::new();
            next.insert("skip".into(), Value::from(skip + limit));
            page.next = Some(next);
        }
        if skip > 0 {
            let mut prev = Map::new();
            prev.insert("skip".into(), Value::from(skip.saturating_sub(limit)));
            page.prev = Some(prev);
        }
        Ok(page)
    }

    async fn item(&self, collection_id: &str, item_id: &str) -> Result<Option<Item>, Error> {
        let search = Search::default()
            .collections(vec![collection_id.to_string()])
            .ids(vec![item_id.to_string()])
            .limit(1);
        let page = ItemsClient::search(self, search).await?;
        match page.items.into_iter().next() {
            Some(item) => Ok(Some(serde_json::from_value(Value::Object(item))?)),
            None => Ok(None),
        }
    }
}

impl CollectionsClient for CacheBackend {
    type Error = Error;

    async fn collections(&self) -> Result<Vec<stac::Collection>, Error> {
        let partitions = self.searcher.partitions().await.map_err(server_error)?;
        let mut out = Vec::new();
        for c in Collection::ALL {
            let mut collection = stac::Collection::new(
                c.stac_id(),
                format!(
                    "{} ({}), the items of the hls-flow cache",
                    c.stac_id(),
                    c.product()
                ),
            );
            collection.title = Some(c.stac_id().to_string());
            let mut bbox: Option<Bbox> = None;
            let (mut first, mut last) = (None, None);
            for p in partitions.iter().filter(|p| p.collection == c) {
                let meta = self.searcher.footer(p).await.map_err(server_error)?;
                let extent = super::prune::extent(meta.metadata(), meta.schema());
                if let Some([w, s, e, n]) = extent.bbox {
                    let b = Bbox::new(w, s, e, n);
                    match bbox.as_mut() {
                        Some(acc) => acc.update(b),
                        None => bbox = Some(b),
                    }
                }
                if let Some((a, b)) = extent.datetimes {
                    first = Some(first.map_or(a, |f: chrono::DateTime<chrono::Utc>| f.min(a)));
                    last = Some(last.map_or(b, |l: chrono::DateTime<chrono::Utc>| l.max(b)));
                }
            }
            if let Some(b) = bbox {
                collection.extent.spatial.bbox = vec![b];
            }
            collection.extent.temporal.interval = vec![[first, last]];
            out.push(collection);
        }
        Ok(out)
    }
}

impl TransactionClient for CacheBackend {
    type Error = Error;

    async fn add_collection(&mut self, _collection: stac::Collection) -> Result<(), Error> {
        Err(Error::ReadOnly)
    }

    async fn add_item(&mut self, _item: Item) -> Result<(), Error> {
        Err(Error::ReadOnly)
    }
}

impl StreamItemsClient for CacheBackend {
    type Error = Error;

    async fn search_stream(
        &self,
        search: Search,
    ) -> Result<impl Stream<Item = Result<stac::api::Item, Error>> + Send, Error> {
        let page = ItemsClient::search(self, search.clone()).await?;
        Ok(stream_pages(self.clone(), search, page))
    }
}

impl Backend for CacheBackend {
    fn has_item_search(&self) -> bool {
        true
    }

    fn has_filter(&self) -> bool {
        true
    }
}
