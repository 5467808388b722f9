//! Fault injection (room to grow): what the handlers should break on purpose.

use std::num::NonZeroU64;

/// Faults the emulator injects. The default injects none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Faults {
    /// Every n-th search request (1-based, counting all search requests) is answered with
    /// [`Faults::status`] instead of results.
    pub fail_every_nth_search: Option<NonZeroU64>,
    /// Every n-th item request is answered with [`Faults::status`].
    pub fail_every_nth_item: Option<NonZeroU64>,
    /// The HTTP status of an injected failure (default 503).
    pub status: u16,
    /// Search pages answer with half their entries and `CMR-Timed-Out: true`, as CMR does
    /// when a search runs out of time.
    pub timed_out: bool,
    /// ECHO10 records leave out the optional CLOUD_COVERAGE attribute.
    pub echo10_without_cloud_cover: bool,
    /// The first ECHO10 record of every page loses its (required) GranuleUR.
    pub echo10_broken_record: bool,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            fail_every_nth_search: None,
            fail_every_nth_item: None,
            status: 503,
            timed_out: false,
            echo10_without_cloud_cover: false,
            echo10_broken_record: false,
        }
    }
}

impl Faults {
    /// Whether the `n`-th (1-based) search request fails.
    pub fn search_fails(&self, n: u64) -> bool {
        self.fail_every_nth_search
            .is_some_and(|every| n.is_multiple_of(every.get()))
    }

    /// Whether the `n`-th (1-based) item request fails.
    pub fn item_fails(&self, n: u64) -> bool {
        self.fail_every_nth_item
            .is_some_and(|every| n.is_multiple_of(every.get()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_injects_nothing_and_every_nth_works() {
        let f = Faults::default();
        assert!((1..100).all(|n| !f.search_fails(n) && !f.item_fails(n)));
        let f = Faults {
            fail_every_nth_item: NonZeroU64::new(3),
            ..Faults::default()
        };
        let failing: Vec<u64> = (1..10).filter(|&n| f.item_fails(n)).collect();
        assert_eq!(failing, vec![3, 6, 9]);
        assert!(!f.search_fails(3));
    }
}
