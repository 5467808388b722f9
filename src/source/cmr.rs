//! The CMR granule search client: `/search/granules.json`, paged with `CMR-Search-After`.

use crate::bbox::Bbox;
use crate::collection::Collection;
use crate::error::{CmrProblem, Error, Result};
use crate::source::http::{check_status, transport_error};
use crate::source::retry::RetryPolicy;
use crate::source::seen::SeenIds;
use crate::source::throttle::Throttle;
use chrono::{DateTime, SecondsFormat, Utc};
use futures::Stream;
use reqwest::Client;
use serde::{Deserialize, Deserializer};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// The real CMR.
pub const DEFAULT_CMR_URL: &str = "https://cmr.earthdata.nasa.gov";
/// CMR's largest page.
pub const MAX_PAGE_SIZE: u32 = 2000;

/// One granule as CMR lists it (only what hls-flow needs of the entry).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CmrEntry {
    /// Concept id, e.g. `G3789984495-LPCLOUD`.
    pub id: String,
    /// Granule UR, e.g. `HLS.L30.T15TWN.2025275T170439.v2.0`: the STAC item id.
    pub title: String,
    /// Start of the acquisition: the instant that decides the granule's day.
    pub time_start: DateTime<Utc>,
    /// End of the acquisition.
    #[serde(default)]
    pub time_end: Option<DateTime<Utc>>,
    /// The `https://…_stac.json` links of the entry (an `s3://` one with the same rel is
    /// dropped: links are chosen by scheme, not by rel).
    #[serde(rename = "links", default, deserialize_with = "stac_json_links")]
    pub stac_json_urls: Vec<String>,
}

impl CmrEntry {
    /// The https URL of the granule's `_stac.json`, if the entry has one.
    pub fn stac_json_url(&self) -> Option<&str> {
        self.stac_json_urls.first().map(String::as_str)
    }
}

fn stac_json_links<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    // Borrowed: an entry has ~40 links, and only one is kept.
    #[derive(Deserialize)]
    struct Link<'a> {
        #[serde(default, borrow)]
        href: std::borrow::Cow<'a, str>,
    }
    let links: Vec<Link<'de>> = Vec::deserialize(d)?;
    Ok(links
        .into_iter()
        .filter(|l| l.href.starts_with("https://") || l.href.starts_with("http://"))
        .filter(|l| l.href.ends_with("_stac.json"))
        .map(|l| l.href.into_owned())
        .collect())
}

#[derive(Deserialize)]
struct Body<E> {
    feed: Feed<E>,
}

#[derive(Deserialize)]
struct Feed<E> {
    #[serde(default = "Vec::new")]
    entry: Vec<E>,
}

/// An entry of a JSON granule feed, known by its concept id.
pub trait FeedEntry: serde::de::DeserializeOwned {
    /// The concept id (what paging counts entries by).
    fn concept_id(&self) -> &str;
}

impl FeedEntry for CmrEntry {
    fn concept_id(&self) -> &str {
        &self.id
    }
}

/// One page of a JSON granule search, of entries `E`.
#[derive(Debug, Clone)]
pub struct JsonPage<E> {
    /// `CMR-Hits`: how many granules the whole search matches.
    pub hits: u64,
    /// The page's entries, in CMR's order.
    pub entries: Vec<E>,
    /// `CMR-Search-After`, present when another page may follow.
    pub search_after: Option<String>,
}

impl<E: FeedEntry> JsonPage<E> {
    /// Parses the body of a fetched page as a JSON feed.
    fn parse(url: &str, raw: RawPage) -> Result<JsonPage<E>> {
        let body: Body<E> = serde_json::from_slice(&raw.body).map_err(|e| Error::CmrMalformed {
            url: url.to_string(),
            problem: CmrProblem::NotAFeed(e),
        })?;
        Ok(JsonPage {
            hits: raw.hits,
            entries: body.feed.entry,
            search_after: raw.search_after,
        })
    }
}

/// One page of a granule search.
pub type CmrPage = JsonPage<CmrEntry>;

/// A page's paging headers, read before its body.
#[derive(Debug, Clone)]
struct PageHead {
    /// `CMR-Hits`.
    hits: u64,
    /// `CMR-Search-After`.
    search_after: Option<String>,
}

impl PageHead {
    /// The page with its body read whole.
    async fn with_body(self, url: &str, resp: reqwest::Response) -> Result<RawPage> {
        Ok(RawPage {
            hits: self.hits,
            search_after: self.search_after,
            body: crate::source::http::body_bytes(url, resp).await?,
        })
    }
}

/// One page as fetched: its paging headers and its body, in any format.
#[derive(Debug, Clone)]
pub struct RawPage {
    /// `CMR-Hits`.
    pub hits: u64,
    /// `CMR-Search-After`.
    pub search_after: Option<String>,
    /// The body.
    pub body: bytes::Bytes,
}

/// What to search for.
#[derive(Debug, Clone, PartialEq)]
pub struct GranuleQuery {
    /// The collection.
    pub collection: Collection,
    /// Temporal range (CMR: granules whose [start, end] intersects it, ends inclusive).
    pub start: DateTime<Utc>,
    /// End of the temporal range.
    pub end: DateTime<Utc>,
    /// Optional spatial filter.
    pub bbox: Option<Bbox>,
}

/// A CMR search client. Cheap to clone; clones share the limit on requests at once.
#[derive(Debug, Clone)]
pub struct CmrClient {
    http: Client,
    base: String,
    client_id: String,
    page_size: u32,
    retry: RetryPolicy,
    permits: Arc<Semaphore>,
    throttle: Throttle,
}

impl CmrClient {
    /// A client for the CMR at `base` (e.g. [`DEFAULT_CMR_URL`]), sending at most
    /// `max_requests` requests at once.
    pub fn new(
        http: Client,
        base: &str,
        client_id: &str,
        retry: RetryPolicy,
        max_requests: usize,
    ) -> CmrClient {
        CmrClient {
            http,
            base: base.trim_end_matches('/').to_string(),
            client_id: client_id.to_string(),
            page_size: MAX_PAGE_SIZE,
            retry,
            permits: Arc::new(Semaphore::new(max_requests.max(1))),
            throttle: Throttle::default(),
        }
    }

    /// Sets the page size (1..=2000; CMR's default for hls-flow is 2000).
    pub fn with_page_size(mut self, page_size: u32) -> CmrClient {
        self.page_size = page_size.clamp(1, MAX_PAGE_SIZE);
        self
    }

    /// The search URL of a query (without paging state).
    pub fn search_url(&self, q: &GranuleQuery) -> String {
        self.search_url_as(q, "json")
    }

    /// The search URL of a query in a format: `json` or `echo10`.
    pub fn search_url_as(&self, q: &GranuleQuery, format: &str) -> String {
        let fmt = |t: &DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::AutoSi, true);
        let mut url = format!(
            "{}/search/granules.{format}?collection_concept_id[]={}&temporal[]={},{}",
            self.base,
            q.collection.concept_id(),
            fmt(&q.start),
            fmt(&q.end)
        );
        if let Some(b) = &q.bbox {
            url.push_str(&format!("&bounding_box={b}"));
        }
        url.push_str(&format!("&page_size={}", self.page_size));
        url
    }

    /// Fetches one page (with retries), following `search_after` if given. A body that is
    /// not a CMR feed is retried like a failed request: it is most likely cut short.
    pub async fn page<E: FeedEntry>(
        &self,
        url: &str,
        search_after: Option<&str>,
    ) -> Result<JsonPage<E>> {
        self.fetched_page(url, search_after, |head, resp| async move {
            JsonPage::parse(url, head.with_body(url, resp).await?)
        })
        .await
    }

    /// Fetches one page's headers and body (with retries), in any format.
    pub async fn raw_page(&self, url: &str, search_after: Option<&str>) -> Result<RawPage> {
        self.fetched_page(url, search_after, |head, resp| head.with_body(url, resp))
            .await
    }

    /// Fetches one page's headers and reads its body with `read`, retrying the two
    /// together; the request's permit is held until the body is read.
    async fn fetched_page<P, F, Fut>(
        &self,
        url: &str,
        search_after: Option<&str>,
        read: F,
    ) -> Result<P>
    where
        F: Fn(PageHead, reqwest::Response) -> Fut,
        Fut: std::future::Future<Output = Result<P>>,
    {
        self.retry
            .run(url, || async {
                // A Retry-After told to one request holds back all of them.
                self.throttle.wait().await;
                let _permit =
                    self.permits
                        .acquire()
                        .await
                        .map_err(|source| Error::RequestsClosed {
                            url: url.to_string(),
                            source,
                        })?;
                let (head, resp) = self
                    .respond(url, search_after)
                    .await
                    .inspect_err(|e| self.throttle.note(e))?;
                read(head, resp)
                    .await
                    .inspect_err(|e| self.throttle.note(e))
            })
            .await
    }

    /// Sends one page request and reads its paging headers; the body is left to read.
    async fn respond(
        &self,
        url: &str,
        search_after: Option<&str>,
    ) -> Result<(PageHead, reqwest::Response)> {
        let mut req = self.http.get(url).header("Client-Id", &self.client_id);
        if let Some(sa) = search_after {
            req = req.header("CMR-Search-After", sa);
        }
        let resp = req.send().await.map_err(|e| transport_error(url, e))?;
        let resp = check_status(url, resp).await?;
        let headers = resp.headers();
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        if header("CMR-Timed-Out").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return Err(Error::CmrTimedOut {
                url: url.to_string(),
            });
        }
        let malformed = |problem: CmrProblem| Error::CmrMalformed {
            url: url.to_string(),
            problem,
        };
        let hits = header("CMR-Hits")
            .ok_or_else(|| malformed(CmrProblem::NoHits))?
            .trim()
            .parse::<u64>()
            .map_err(|e| malformed(CmrProblem::HitsNotANumber(e)))?;
        let search_after = header("CMR-Search-After");
        Ok((PageHead { hits, search_after }, resp))
    }

    /// Every page of a search, in order, fetched one after the other as the stream is
    /// polled (never collected). Ends after the page that brings the count of distinct
    /// entries (by concept id) to `CMR-Hits`, or at a page without `CMR-Search-After`, or
    /// at an empty page. If `CMR-Hits` changes between pages, or the pages end with another
    /// count of distinct entries than `CMR-Hits`, the listing is unreliable: it starts over
    /// from the first page (up to the retry policy's attempts, then
    /// [`Error::HitsChanged`] / [`Error::ListingIncomplete`]). Pages may then repeat
    /// entries; consumers drop repeats by id.
    pub fn pages(&self, q: &GranuleQuery) -> impl Stream<Item = Result<CmrPage>> + Send + 'static {
        let client = self.clone();
        self.paged(self.search_url(q), move |url, sa| {
            let client = client.clone();
            async move { client.page(&url, sa.as_deref()).await }
        })
    }

    /// Every page of a search in ECHO10 (`/search/granules.echo10`), paged like
    /// [`pages`](CmrClient::pages); each page's records are parsed while its body arrives
    /// ([`read_page`](crate::source::echo10::read_page)).
    pub fn echo10_pages(
        &self,
        q: &GranuleQuery,
    ) -> impl Stream<Item = Result<Echo10Page>> + Send + 'static {
        let client = self.clone();
        self.paged(self.search_url_as(q, "echo10"), move |url, sa| {
            let client = client.clone();
            async move {
                client
                    .fetched_page(&url, sa.as_deref(), |head, resp| {
                        let url = &url;
                        async move {
                            let records = crate::source::echo10::read_page(url, resp).await?;
                            Ok(Echo10Page {
                                hits: head.hits,
                                search_after: head.search_after,
                                records,
                            })
                        }
                    })
                    .await
            }
        })
    }

    fn paged<P, F, Fut>(
        &self,
        url: String,
        fetch: F,
    ) -> impl Stream<Item = Result<P>> + Send + 'static
    where
        P: Paged + Send + 'static,
        F: Fn(String, Option<String>) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<P>> + Send,
    {
        struct State<F> {
            fetch: F,
            url: String,
            search_after: Option<String>,
            hits: Option<u64>,
            seen: SeenIds,
            done: bool,
            listings: u32,
            max_listings: u32,
            pause: Duration,
        }
        let init = State {
            fetch,
            url,
            search_after: None,
            hits: None,
            seen: SeenIds::new(),
            done: false,
            listings: 1,
            max_listings: self.retry.max_attempts.max(1),
            pause: self.retry.min_delay,
        };
        futures::stream::try_unfold(init, |mut st| async move {
            if st.done {
                return Ok(None);
            }
            let page = (st.fetch)(st.url.clone(), st.search_after.clone()).await?;
            let problem = match st.hits {
                Some(before) if before != page.hits() => Some(Error::HitsChanged {
                    url: st.url.clone(),
                    before,
                    after: page.hits(),
                }),
                _ => {
                    st.hits = Some(page.hits());
                    st.seen.extend(page.keys());
                    let listed = st.seen.len() as u64;
                    st.search_after = page.search_after().map(str::to_string);
                    st.done = page.is_empty() || st.search_after.is_none() || listed >= page.hits();
                    (st.done && listed != page.hits()).then(|| Error::ListingIncomplete {
                        url: st.url.clone(),
                        hits: page.hits(),
                        listed,
                    })
                }
            };
            if let Some(e) = problem {
                // The listing cannot be trusted: list again from the first page (the
                // granules seen so far are real; consumers drop repeats by id).
                if st.listings >= st.max_listings {
                    return Err(e);
                }
                st.listings += 1;
                tracing::warn!("{e}; listing again from the first page");
                tokio::time::sleep(st.pause).await;
                st.search_after = None;
                st.hits = None;
                st.seen.clear();
                st.done = false;
            }
            Ok(Some((page, st)))
        })
    }
}

/// A granule a change query found: new or revised at or after the watermark.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ChangedEntry {
    /// Concept id.
    pub id: String,
    /// Granule UR (the item id).
    pub title: String,
    /// Start of the acquisition: the granule's day.
    pub time_start: DateTime<Utc>,
    /// Its revision date.
    pub updated: DateTime<Utc>,
}

impl FeedEntry for ChangedEntry {
    fn concept_id(&self) -> &str {
        &self.id
    }
}

/// One page of a change query.
pub type ChangedPage = JsonPage<ChangedEntry>;

/// A granule CMR lists at `/search/deleted-granules.json`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DeletedGranule {
    /// Its concept id.
    #[serde(rename = "concept-id")]
    pub concept_id: String,
    /// Its granule UR (the item id).
    #[serde(rename = "granule-ur")]
    pub granule_ur: String,
    /// Its collection's concept id.
    #[serde(rename = "parent-collection-id")]
    pub parent_collection_id: String,
    /// When it was deleted (CMR writes both `…Z` and `…+0000`).
    #[serde(rename = "revision-date", deserialize_with = "cmr_time")]
    pub revision_date: DateTime<Utc>,
}

/// An instant as CMR's documented examples write it, in whole seconds: rounded down, so
/// that nothing at or after it is left out.
fn whole_seconds(at: DateTime<Utc>) -> String {
    use chrono::SubsecRound;
    at.trunc_subsecs(0)
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A CMR date: RFC 3339 (`2024-07-01T12:00:00.000Z`) or with a `+0000` offset.
fn cmr_time<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    let s = std::borrow::Cow::<str>::deserialize(d)?;
    parse_cmr_time(&s).ok_or_else(|| serde::de::Error::custom(format!("{s:?} is not a CMR date")))
}

/// Parses a CMR date: RFC 3339, or with an offset without a colon (`+0000`).
pub fn parse_cmr_time(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    DateTime::parse_from_rfc3339(s)
        .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

impl CmrClient {
    /// The granules of `q` new or revised at or after `since` (`updated_since`), every page.
    pub fn changed_pages(
        &self,
        q: &GranuleQuery,
        since: DateTime<Utc>,
    ) -> impl Stream<Item = Result<ChangedPage>> + Send + 'static {
        let url = format!(
            "{}&updated_since={}",
            self.search_url(q),
            whole_seconds(since)
        );
        let client = self.clone();
        self.paged(url, move |url, sa| {
            let client = client.clone();
            async move { client.page(&url, sa.as_deref()).await }
        })
    }

    /// The URL of the granules of `collection` deleted at or after `since`.
    pub fn deleted_url(&self, collection: Collection, since: DateTime<Utc>) -> String {
        format!(
            "{}/search/deleted-granules.json?revision_date={}&provider=LPCLOUD&parent_collection_id={}",
            self.base,
            whole_seconds(since),
            collection.concept_id()
        )
    }

    /// The granules of `collection` deleted at or after `since` (CMR: at most a year back).
    pub async fn deleted_granules(
        &self,
        collection: Collection,
        since: DateTime<Utc>,
    ) -> Result<Vec<DeletedGranule>> {
        let url = self.deleted_url(collection, since);
        self.retry
            .run(&url, || async {
                self.throttle.wait().await;
                let body =
                    {
                        let _permit = self.permits.acquire().await.map_err(|source| {
                            Error::RequestsClosed {
                                url: url.clone(),
                                source,
                            }
                        })?;
                        self.get_body(&url)
                            .await
                            .inspect_err(|e| self.throttle.note(e))?
                    };
                serde_json::from_slice::<Vec<DeletedGranule>>(&body).map_err(|e| {
                    Error::CmrMalformed {
                        url: url.clone(),
                        problem: CmrProblem::NotADeletedList(e),
                    }
                })
            })
            .await
    }

    async fn get_body(&self, url: &str) -> Result<bytes::Bytes> {
        let resp = self
            .http
            .get(url)
            .header("Client-Id", &self.client_id)
            .send()
            .await
            .map_err(|e| transport_error(url, e))?;
        let resp = check_status(url, resp).await?;
        crate::source::http::body_bytes(url, resp).await
    }

    /// The URL asking for the count of granules of `q` that begin before `before`
    /// (`page_size=0`: no entry, only `CMR-Hits`).
    pub fn count_url(&self, q: &GranuleQuery, before: DateTime<Utc>) -> String {
        // CMR's times are in milliseconds, and a range's ends are inclusive.
        let end = before - chrono::Duration::milliseconds(1);
        let mut url = format!(
            "{}/search/granules.json?collection_concept_id[]={}&temporal[]=,{}",
            self.base,
            q.collection.concept_id(),
            end.to_rfc3339_opts(SecondsFormat::Millis, true)
        );
        if let Some(b) = &q.bbox {
            url.push_str(&format!("&bounding_box={b}"));
        }
        url.push_str("&page_size=0");
        url
    }

    /// How many granules of `q`'s collection (and bounding box) begin before `before`:
    /// the difference of two such counts is the number that begin between them, which no
    /// single CMR temporal query gives (it matches by intersection).
    pub async fn count_before(&self, q: &GranuleQuery, before: DateTime<Utc>) -> Result<u64> {
        let url = self.count_url(q, before);
        Ok(self.raw_page(&url, None).await?.hits)
    }
}

/// What paging needs to know of a page.
pub trait Paged {
    /// `CMR-Hits`.
    fn hits(&self) -> u64;
    /// Entries on the page.
    fn len(&self) -> usize;
    /// Whether the page is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// `CMR-Search-After`.
    fn search_after(&self) -> Option<&str>;
    /// The concept ids of the page's entries (a repeat of an earlier page's entry is
    /// counted once).
    fn keys(&self) -> impl Iterator<Item = &str>;
}

impl<E: FeedEntry> Paged for JsonPage<E> {
    fn hits(&self) -> u64 {
        self.hits
    }
    fn len(&self) -> usize {
        self.entries.len()
    }
    fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(FeedEntry::concept_id)
    }
    fn search_after(&self) -> Option<&str> {
        self.search_after.as_deref()
    }
}

/// One page of ECHO10 records.
#[derive(Debug)]
pub struct Echo10Page {
    /// `CMR-Hits`.
    pub hits: u64,
    /// `CMR-Search-After`.
    pub search_after: Option<String>,
    /// The records, each parsed or failed on its own.
    pub records: Vec<crate::source::echo10::PageRecord>,
}

impl Paged for Echo10Page {
    fn hits(&self) -> u64 {
        self.hits
    }
    fn len(&self) -> usize {
        self.records.len()
    }
    fn keys(&self) -> impl Iterator<Item = &str> {
        self.records.iter().map(|r| r.concept_id.as_str())
    }
    fn search_after(&self) -> Option<&str> {
        self.search_after.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_recorded_page_and_picks_the_https_stac_link() {
        let body: Body<CmrEntry> = serde_json::from_str(include_str!(
            "../../tests/fixtures/cmr/hlsl30_bbox-93_46_-92_47_2025-10-02.page1.json"
        ))
        .unwrap();
        let e = &body.feed.entry;
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].title, "HLS.L30.T15TWN.2025275T170439.v2.0");
        assert_eq!(e[0].id, "G3789984495-LPCLOUD");
        assert_eq!(
            e[0].stac_json_url(),
            Some(
                "https://data.lpdaac.earthdatacloud.nasa.gov/lp-prod-public/HLSL30.020/HLS.L30.T15TWN.2025275T170439.v2.0/HLS.L30.T15TWN.2025275T170439.v2.0_stac.json"
            )
        );
        assert_eq!(e[0].stac_json_urls.len(), 1);
        assert_eq!(
            e[0].time_start.to_rfc3339_opts(SecondsFormat::Millis, true),
            "2025-10-02T17:04:39.336Z"
        );
        let empty: Body<CmrEntry> = serde_json::from_str(include_str!(
            "../../tests/fixtures/cmr/hlsl30_bbox-93_46_-92_47_2025-10-01.page1.json"
        ))
        .unwrap();
        assert!(empty.feed.entry.is_empty());
    }

    #[test]
    fn builds_the_search_url_cmr_expects() {
        let http = Client::new();
        let c = CmrClient::new(http, "http://h/", "me", RetryPolicy::none(), 1);
        let (start, end) =
            crate::period::day_window(chrono::NaiveDate::from_ymd_opt(2025, 10, 2).unwrap());
        let q = GranuleQuery {
            collection: Collection::Hlsl30,
            start,
            end,
            bbox: Some(Bbox::new(-93.0, 46.0, -92.0, 47.0).unwrap()),
        };
        assert_eq!(
            c.search_url(&q),
            "http://h/search/granules.json?collection_concept_id[]=C2021957657-LPCLOUD&temporal[]=2025-10-02T00:00:00Z,2025-10-03T00:00:00Z&bounding_box=-93,46,-92,47&page_size=2000"
        );
    }

    #[test]
    fn deleted_granules_parse_with_both_forms_of_revision_date() {
        let body = r#"[
            {"concept-id": "G1-LPCLOUD", "granule-ur": "HLS.L30.T15TWN.2024128T170439.v2.0",
             "parent-collection-id": "C2021957657-LPCLOUD", "revision-date": "2024-07-01T12:00:00.000Z",
             "provider-id": "LPCLOUD"},
            {"concept-id": "G2-LPCLOUD", "granule-ur": "HLS.L30.T15TWM.2024128T170439.v2.0",
             "parent-collection-id": "C2021957657-LPCLOUD", "revision-date": "2024-07-01T12:00:00+0000",
             "provider-id": "LPCLOUD"}
        ]"#;
        let list: Vec<DeletedGranule> = serde_json::from_str(body).unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].revision_date, list[1].revision_date);
        assert_eq!(list[1].granule_ur, "HLS.L30.T15TWM.2024128T170439.v2.0");
        let bad = body.replace("2024-07-01T12:00:00+0000", "yesterday");
        let e = serde_json::from_str::<Vec<DeletedGranule>>(&bad).unwrap_err();
        assert!(e.to_string().contains("yesterday"), "{e}");
        assert_eq!(
            parse_cmr_time("2024-07-01T12:00:00.5+0200"),
            Some("2024-07-01T10:00:00.500Z".parse().unwrap())
        );
    }

    #[test]
    fn counts_ask_for_granules_that_begin_before_an_instant() {
        let c = CmrClient::new(Client::new(), "http://h", "me", RetryPolicy::none(), 1);
        let q = GranuleQuery {
            collection: Collection::Hlss30,
            start: DateTime::<Utc>::MIN_UTC,
            end: DateTime::<Utc>::MIN_UTC,
            bbox: Some(Bbox::new(-93.0, 46.0, -92.0, 47.0).unwrap()),
        };
        let before: DateTime<Utc> = "2024-05-02T00:00:00Z".parse().unwrap();
        assert_eq!(
            c.count_url(&q, before),
            "http://h/search/granules.json?collection_concept_id[]=C2021957295-LPCLOUD&temporal[]=,2024-05-01T23:59:59.999Z&bounding_box=-93,46,-92,47&page_size=0"
        );
        assert_eq!(
            c.deleted_url(
                Collection::Hlsl30,
                before + chrono::Duration::milliseconds(999)
            ),
            "http://h/search/deleted-granules.json?revision_date=2024-05-02T00:00:00Z&provider=LPCLOUD&parent_collection_id=C2021957657-LPCLOUD"
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bodies_are_errors_not_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let _ = serde_json::from_slice::<Body<CmrEntry>>(&bytes);
        }

        #[test]
        fn mutated_recorded_pages_are_errors_not_panics(cut in 0usize..45965, byte in proptest::num::u8::ANY) {
            let mut page = include_bytes!(
                "../../tests/fixtures/cmr/hlsl30_bbox-93_46_-92_47_2025-10-02.page1.json"
            )
            .to_vec();
            let cut = cut.min(page.len() - 1);
            page[cut] = byte;
            let _ = serde_json::from_slice::<Body<CmrEntry>>(&page);
            let _ = serde_json::from_slice::<Body<CmrEntry>>(&page[..cut]);
        }
    }
}
