//! Request counters, shared by all handlers.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of what the emulator has answered (`GET /_emulator/counts` returns it as
/// JSON; requests to that endpoint are not counted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestCounts {
    /// Search pages served (`/search/granules.json`, status 200).
    pub search_pages: u64,
    /// ECHO10 pages served (`/search/granules.echo10`, status 200).
    pub echo10_pages: u64,
    /// `_stac.json` items served (status 200).
    pub item_fetches: u64,
    /// Deleted-granules lists served (`/search/deleted-granules.json`, status 200).
    #[serde(default)]
    pub deleted_lists: u64,
    /// Requests answered 404.
    pub not_found: u64,
    /// Requests answered 400.
    pub bad_requests: u64,
    /// Requests answered with an injected fault.
    pub faults_injected: u64,
    /// All requests.
    pub total: u64,
}

/// The live counters.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub search_pages: AtomicU64,
    pub echo10_pages: AtomicU64,
    pub item_fetches: AtomicU64,
    pub deleted_lists: AtomicU64,
    pub not_found: AtomicU64,
    pub bad_requests: AtomicU64,
    pub faults_injected: AtomicU64,
    pub total: AtomicU64,
    /// Search requests seen (for fault injection), whatever their outcome.
    pub search_requests: AtomicU64,
    /// Item requests seen (for fault injection), whatever their outcome.
    pub item_requests: AtomicU64,
    /// Deleted-granules requests seen (for fault injection), whatever their outcome.
    pub deleted_requests: AtomicU64,
    /// Random faults injected so far, per [`Target`](super::Target) (their kinds go round).
    pub fault_turns: [AtomicU64; 4],
}

/// Adds one and returns the new value.
pub(crate) fn bump(c: &AtomicU64) -> u64 {
    c.fetch_add(1, Ordering::Relaxed) + 1
}

impl Counters {
    /// A consistent-enough snapshot.
    pub(crate) fn snapshot(&self) -> RequestCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RequestCounts {
            search_pages: get(&self.search_pages),
            echo10_pages: get(&self.echo10_pages),
            item_fetches: get(&self.item_fetches),
            deleted_lists: get(&self.deleted_lists),
            not_found: get(&self.not_found),
            bad_requests: get(&self.bad_requests),
            faults_injected: get(&self.faults_injected),
            total: get(&self.total),
        }
    }
}
