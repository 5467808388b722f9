//! Where granules and items come from.
//!
//! - [`cmr`]: CMR's granule search (`/search/granules.json` and `.echo10`), paged with
//!   `CMR-Search-After`, complete or failed;
//! - [`echo10`]: CMR's ECHO10 records read as a stream and turned into items (bulk mode);
//! - [`items`]: each granule's published `_stac.json`, fetched and checked;
//! - [`hls`]: what an HLS v2.0 granule is and the item LP DAAC publishes for it;
//! - [`seen`]: the ids a listing has seen (to drop repeats), as hashes;
//! - [`http`], [`retry`], [`throttle`]: one HTTP client, retries with backoff that honour
//!   `Retry-After`, and a pause shared by every request to a service that asked for one.

pub mod cmr;
pub mod echo10;
pub mod hls;
pub mod http;
pub mod items;
pub mod retry;
pub mod seen;
pub mod throttle;
