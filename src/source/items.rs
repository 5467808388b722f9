//! Fetching each granule's published `_stac.json` item.

use crate::collection::Collection;
use crate::error::{Error, ItemProblem, Result};
use crate::source::http::{check_status, transport_error};
use crate::source::retry::RetryPolicy;
use crate::source::throttle::Throttle;
use bytes::Bytes;
use reqwest::Client;
use serde::Deserialize;
use stac::Item;
use std::borrow::Cow;

/// Fetches `_stac.json` items, with retries.
#[derive(Debug, Clone)]
pub struct ItemFetcher {
    http: Client,
    retry: RetryPolicy,
    /// Shared by clones: a `Retry-After` told to one fetch holds back all of them.
    throttle: Throttle,
}

impl ItemFetcher {
    /// A fetcher on the shared client.
    pub fn new(http: Client, retry: RetryPolicy) -> ItemFetcher {
        ItemFetcher {
            http,
            retry,
            throttle: Throttle::default(),
        }
    }

    /// Fetches the item at `url`, checks it is the STAC item of granule `expected_id`, and
    /// sets its `collection` (`HLSL30_2.0` / `HLSS30_2.0`).
    pub async fn fetch(
        &self,
        url: &str,
        expected_id: &str,
        collection: Collection,
    ) -> Result<Item> {
        self.retry
            .run(url, || async {
                let bytes = self.get(url).await?;
                parse_item(url, &bytes, expected_id, collection)
            })
            .await
    }

    /// Fetches the item at `url` as JSON bytes, checked cheaply (without building it) to be
    /// the STAC item of granule `expected_id`: see [`check_item`]. The fixed-schema writer
    /// takes these bytes as they are, and the row's key read by the check.
    pub async fn fetch_json(&self, url: &str, expected_id: &str) -> Result<(Bytes, RowKey)> {
        self.retry
            .run(url, || async {
                let bytes = self.get(url).await?;
                let key = check_item(url, &bytes, expected_id)?;
                Ok((bytes, key))
            })
            .await
    }

    async fn get(&self, url: &str) -> Result<Bytes> {
        self.throttle.wait().await;
        self.get_once(url)
            .await
            .inspect_err(|e| self.throttle.note(e))
    }

    async fn get_once(&self, url: &str) -> Result<Bytes> {
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| transport_error(url, e))?;
        let resp = check_status(url, resp).await?;
        resp.bytes().await.map_err(|e| transport_error(url, e))
    }
}

/// The members of an item's JSON that are read without building the item (the rest is
/// skipped unparsed): what [`check_item`] checks, and what a daily file's row order and
/// bounds need.
#[derive(Deserialize)]
pub struct ItemHead<'a> {
    /// `type`.
    #[serde(rename = "type", borrow, default)]
    pub kind: Option<Cow<'a, str>>,
    /// `id`.
    #[serde(borrow, default)]
    pub id: Option<Cow<'a, str>>,
    #[serde(default)]
    geometry: Option<HeadGeometry>,
    #[serde(borrow, default)]
    properties: Option<HeadProperties<'a>>,
}

#[derive(Deserialize)]
struct HeadGeometry {
    #[serde(default)]
    coordinates: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct HeadProperties<'a> {
    #[serde(borrow, default)]
    datetime: Option<Cow<'a, str>>,
}

impl<'a> ItemHead<'a> {
    /// Reads the head of an item's JSON.
    pub fn read(bytes: &'a [u8]) -> serde_json::Result<ItemHead<'a>> {
        serde_json::from_slice(bytes)
    }

    /// `properties.datetime` in microseconds since the epoch, if it is there and a time.
    pub fn datetime_micros(&self) -> Option<i64> {
        let d = self.properties.as_ref()?.datetime.as_deref()?;
        stac::datetime::parse_datetime_permissively(d)
            .ok()
            .map(|d| d.timestamp_micros())
    }

    /// `[minx, miny, maxx, maxy]` of the geometry's positions.
    pub fn bounds(&self) -> Option<[f64; 4]> {
        let coordinates = self.geometry.as_ref()?.coordinates.as_ref()?;
        crate::bbox::position_bounds(coordinates)
    }

    /// What a daily file's writer needs of the row.
    pub fn key(&self) -> RowKey {
        RowKey {
            datetime: self.datetime_micros(),
            id: self.id.as_deref().unwrap_or_default().to_string(),
        }
    }
}

/// A row's place in a daily file (`properties.datetime` in microseconds, an item without
/// one first, then id).
#[derive(Debug, Clone, PartialEq)]
pub struct RowKey {
    /// `properties.datetime`, microseconds since the epoch.
    pub datetime: Option<i64>,
    /// The item id.
    pub id: String,
}

/// Checks that fetched bytes are one JSON document, a `"type": "Feature"` whose id is
/// `expected_id` and that has a geometry, without building the item ([`parse_item`] starts
/// with it). Returns what the writer of its daily file needs of it.
pub fn check_item(url: &str, bytes: &[u8], expected_id: &str) -> Result<RowKey> {
    let bad = |problem: ItemProblem| Error::BadItem {
        url: url.to_string(),
        problem,
    };
    let head = ItemHead::read(bytes).map_err(|e| {
        if e.is_data() {
            bad(ItemProblem::NotStac(e))
        } else {
            bad(ItemProblem::Json(e))
        }
    })?;
    if head.kind.as_deref() != Some("Feature") {
        return Err(bad(ItemProblem::NotAFeature));
    }
    let Some(id) = &head.id else {
        return Err(bad(ItemProblem::NoId));
    };
    if id != expected_id {
        return Err(bad(ItemProblem::OtherId {
            found: id.to_string(),
            expected: expected_id.to_string(),
        }));
    }
    if head.geometry.is_none() {
        return Err(bad(ItemProblem::NoGeometry));
    }
    Ok(head.key())
}

/// Parses a fetched item and checks it is the one expected (the checks of
/// [`check_item`], then the whole item).
pub fn parse_item(
    url: &str,
    bytes: &[u8],
    expected_id: &str,
    collection: Collection,
) -> Result<Item> {
    check_item(url, bytes, expected_id)?;
    let mut item: Item = serde_json::from_slice(bytes).map_err(|e| Error::BadItem {
        url: url.to_string(),
        problem: ItemProblem::NotStac(e),
    })?;
    item.collection = Some(collection.stac_id().to_string());
    Ok(item)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REAL: &str =
        include_str!("../../tests/fixtures/stac/HLS.S30.T01WEV.2024153T000609.v2.0_stac.json");

    #[test]
    fn accepts_the_real_item_and_sets_its_collection() {
        let item = parse_item(
            "u",
            REAL.as_bytes(),
            "HLS.S30.T01WEV.2024153T000609.v2.0",
            Collection::Hlss30,
        )
        .unwrap();
        assert_eq!(item.collection.as_deref(), Some("HLSS30_2.0"));
        assert_eq!(item.assets.len(), 19);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_are_errors_not_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            proptest::prop_assert!(parse_item("u", &bytes, "x", Collection::Hlsl30).is_err());
        }

        #[test]
        fn mutated_real_items_never_panic(cut in 0usize..REAL.len(), byte in proptest::num::u8::ANY) {
            let mut bytes = REAL.as_bytes().to_vec();
            bytes[cut] = byte;
            let _ = parse_item("u", &bytes, "HLS.S30.T01WEV.2024153T000609.v2.0", Collection::Hlss30);
            let _ = parse_item("u", &bytes[..cut], "HLS.S30.T01WEV.2024153T000609.v2.0", Collection::Hlss30);
        }
    }

    #[test]
    fn rejects_wrong_ids_broken_json_and_non_items() {
        let wrong =
            parse_item("u", REAL.as_bytes(), "HLS.S30.OTHER", Collection::Hlss30).unwrap_err();
        assert!(wrong.to_string().contains("differs"), "{wrong}");
        let truncated =
            parse_item("u", &REAL.as_bytes()[..500], "x", Collection::Hlss30).unwrap_err();
        assert!(
            truncated.to_string().contains("invalid JSON"),
            "{truncated}"
        );
        let not_item =
            parse_item("u", br#"{"hello": "world"}"#, "x", Collection::Hlss30).unwrap_err();
        assert!(
            not_item.to_string().contains("not a STAC item"),
            "{not_item}"
        );
    }

    #[test]
    fn the_cheap_check_accepts_and_rejects_as_the_full_parse() {
        let id = "HLS.S30.T01WEV.2024153T000609.v2.0";
        check_item("u", REAL.as_bytes(), id).unwrap();
        let no_geometry = REAL.replacen("\"geometry\":", "\"geometry\": null, \"x\":", 1);
        let cases: [(&[u8], &str, &str); 6] = [
            (REAL.as_bytes(), "HLS.S30.OTHER", "differs"),
            (&REAL.as_bytes()[..500], id, "invalid JSON"),
            (br#"{"hello": "world"}"#, id, "not a STAC item"),
            (br#"[1, 2]"#, id, "not a STAC item"),
            (
                br#"{"type": "Feature", "geometry": {}}"#,
                id,
                "not a STAC item",
            ),
            (no_geometry.as_bytes(), id, "no geometry"),
        ];
        for (bytes, expected, message) in cases {
            let e = check_item("u", bytes, expected).unwrap_err();
            assert!(matches!(e, Error::BadItem { .. }), "{e}");
            assert!(e.to_string().contains(message), "{message}: {e}");
            let full = parse_item("u", bytes, expected, Collection::Hlss30).unwrap_err();
            assert!(full.to_string().contains(message), "{message}: {full}");
        }
        // A body that is not JSON keeps the JSON reader's error as the cause.
        let e = check_item("u", &REAL.as_bytes()[..500], id).unwrap_err();
        let cause = std::error::Error::source(&e).and_then(|p| p.source());
        assert!(cause.is_some_and(|c| c.is::<serde_json::Error>()), "{e:?}");
    }
}
