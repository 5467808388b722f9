//! The ids a listing has seen, kept as 128-bit hashes.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};

/// A set of ids (granule ids, concept ids) that keeps a 128-bit hash of each rather than the
/// id itself: 16 bytes an id instead of a `String`'s ~70 (its heap bytes and its slot). A
/// day's listing keeps every id it has seen, so this is memory that grows with the day: ~1.5
/// MB for a collection's 20,000 granules as strings, ~0.5 MB as hashes. Two ids with the same
/// hash would read as one: for the ~20,000 ids of a day, the odds are ~10⁻³⁰.
#[derive(Debug, Default)]
pub struct SeenIds {
    hashes: HashSet<u128>,
}

impl SeenIds {
    /// An empty set.
    pub fn new() -> SeenIds {
        SeenIds::default()
    }

    /// Adds `id`; `false` if it was seen before.
    pub fn insert(&mut self, id: &str) -> bool {
        self.hashes.insert(hash(id))
    }

    /// Whether `id` was seen.
    pub fn contains(&self, id: &str) -> bool {
        self.hashes.contains(&hash(id))
    }

    /// Ids seen.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// Whether no id was seen.
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// Forgets every id.
    pub fn clear(&mut self) {
        self.hashes.clear();
    }
}

impl<'a> Extend<&'a str> for SeenIds {
    fn extend<I: IntoIterator<Item = &'a str>>(&mut self, ids: I) {
        for id in ids {
            self.insert(id);
        }
    }
}

/// Two 64-bit SipHashes of `id` (the hasher's keys are fixed: the same in every run), each
/// after its own prefix.
fn hash(id: &str) -> u128 {
    let half = |prefix: u8| {
        let mut h = DefaultHasher::new();
        prefix.hash(&mut h);
        id.hash(&mut h);
        h.finish()
    };
    (u128::from(half(0)) << 64) | u128::from(half(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_seen_once() {
        let mut seen = SeenIds::new();
        assert!(seen.is_empty());
        assert!(seen.insert("HLS.S30.T35VLJ.2021168T100559.v2.0"));
        assert!(!seen.insert("HLS.S30.T35VLJ.2021168T100559.v2.0"));
        // One character apart, or a prefix of another: different ids.
        assert!(seen.insert("HLS.S30.T35VLJ.2021168T100559.v2.1"));
        assert!(seen.insert("HLS.S30.T35VLJ.2021168T100559.v2."));
        assert!(seen.contains("HLS.S30.T35VLJ.2021168T100559.v2.0"));
        assert!(!seen.contains("HLS.S30.T35VLK.2021168T100559.v2.0"));
        assert_eq!(seen.len(), 3);
        seen.clear();
        assert!(!seen.contains("HLS.S30.T35VLJ.2021168T100559.v2.0"));
    }

    #[test]
    fn many_ids_are_all_distinct() {
        let mut seen = SeenIds::new();
        seen.extend(
            (0..50_000)
                .map(|i| format!("G{i}-LPCLOUD"))
                .collect::<Vec<_>>()
                .iter()
                .map(String::as_str),
        );
        assert_eq!(seen.len(), 50_000);
        assert!((0..50_000).all(|i| seen.contains(&format!("G{i}-LPCLOUD"))));
        assert!(!seen.contains("G50000-LPCLOUD"));
    }
}
