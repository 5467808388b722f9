//! Fetching each granule's published `_stac.json` item.

use crate::collection::Collection;
use crate::error::{Error, Result};
use crate::http::{check_status, transport_error};
use crate::retry::RetryPolicy;
use reqwest::Client;
use stac::Item;

/// Fetches `_stac.json` items, with retries.
#[derive(Debug, Clone)]
pub struct ItemFetcher {
    http: Client,
    retry: RetryPolicy,
}

impl ItemFetcher {
    /// A fetcher on the shared client.
    pub fn new(http: Client, retry: RetryPolicy) -> ItemFetcher {
        ItemFetcher { http, retry }
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
                let resp = self
                    .http
                    .get(url)
                    .send()
                    .await
                    .map_err(|e| transport_error(url, e))?;
                let resp = check_status(url, resp).await?;
                let bytes = resp.bytes().await.map_err(|e| transport_error(url, e))?;
                parse_item(url, &bytes, expected_id, collection)
            })
            .await
    }
}

/// Parses a fetched item and checks it is the one expected.
pub fn parse_item(
    url: &str,
    bytes: &[u8],
    expected_id: &str,
    collection: Collection,
) -> Result<Item> {
    let bad = |reason: String| Error::BadItem {
        url: url.to_string(),
        reason,
    };
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    if value.get("type").and_then(|t| t.as_str()) != Some("Feature") {
        return Err(bad("not a STAC item (no \"type\": \"Feature\")".into()));
    }
    let mut item: Item =
        serde_json::from_value(value).map_err(|e| bad(format!("not a STAC item: {e}")))?;
    if item.id != expected_id {
        return Err(bad(format!(
            "item id {:?} differs from the granule's title {expected_id:?}",
            item.id
        )));
    }
    if item.geometry.is_none() {
        return Err(bad("item has no geometry".into()));
    }
    item.collection = Some(collection.stac_id().to_string());
    Ok(item)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REAL: &str =
        include_str!("../tests/fixtures/stac/HLS.S30.T01WEV.2024153T000609.v2.0_stac.json");

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
}
