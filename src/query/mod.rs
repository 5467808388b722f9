//! Querying the cache: what `hls-flow search` and `hls-flow serve` share.
//!
//! This layer owns:
//! - partition discovery and pruning ([`partitions`]): the `{collection}/year=YYYY/month=MM/
//!   part-0.parquet` files of an output, those whose month cannot hold a match skipped by
//!   name;
//! - row-group pruning by statistics ([`prune`]): a row group is read only if its
//!   `datetime`, `bbox.xmin`…`bbox.ymax` (the covering columns), `eo:cloud_cover` and `id`
//!   ranges can hold a match;
//! - the row filter and the exact geometry filter ([`filter`]): the rows of the row groups
//!   read are filtered on the filter columns first (the columns [`Query::mask_columns`]
//!   names, of every row), so that the other columns are decoded only for the rows kept,
//!   then by the exact intersection of their footprint with the query geometry (`geo`), not
//!   only by bbox;
//! - CQL2 filters ([`cql`]): evaluated on each item that passes the tests above, the
//!   bounds on `eo:cloud_cover`, `datetime` and the footprint that their simple conjuncts
//!   imply pushed into the query first (so into the pruning and the row filter);
//! - a consistent read of each partition ([`reader`]): every range of a file is read with
//!   `If-Match` on the ETag it had when the search opened it, so that a search sees the old
//!   or the new month after a `sync`, never parts of both (a search that loses the race
//!   reads the new file again from its footer);
//! - reading a row group (`row_group`): fetched in one request, decoded on a blocking
//!   thread (as many row groups at once as there are cores), its ZSTD pages decompressed
//!   with one context per thread rather than two new ones per column chunk;
//! - the stac-server backend ([`backend`]) that `serve` puts behind rustac's STAC API routes.

pub mod backend;
pub mod cql;
pub mod filter;
pub mod partitions;
pub mod prune;
pub mod reader;
mod row_group;

pub use cql::Cql2Filter;
pub use filter::Query;
pub use reader::{FOOTER_CACHE_BYTES, SearchOptions, SearchStats, Searcher};
