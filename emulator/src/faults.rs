//! Fault injection: what the handlers break on purpose, so that every way CMR and LP DAAC
//! fail in the wild can be reproduced on loopback.
//!
//! Two mechanisms, usable together:
//! - deterministic ones (every n-th search or item request fails with a status; ECHO10
//!   records lose attributes), for tests of one behaviour;
//! - a random mix ([`Faults::rate`], [`Faults::kinds`]): each request is struck with
//!   probability `rate`, by the `kinds` that apply to it taken in turn (so every kind comes
//!   up). Draws are seeded by [`Faults::seed`] and the request's sequence number, so a
//!   retried request draws again: random faults are transient, as in the wild, unless
//!   `rate` is 1 (then every request they apply to gets them).

use super::rng::Rng;
use serde::{Deserialize, Serialize};
use std::num::NonZeroU64;

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// `429 Too Many Requests` with `Retry-After` ([`Faults::retry_after_s`]).
    #[serde(rename = "429")]
    RateLimited,
    /// `500 Internal Server Error`.
    #[serde(rename = "500")]
    InternalError,
    /// `502 Bad Gateway`.
    #[serde(rename = "502")]
    BadGateway,
    /// `503 Service Unavailable`.
    #[serde(rename = "503")]
    Unavailable,
    /// `504 Gateway Timeout`.
    #[serde(rename = "504")]
    GatewayTimeout,
    /// Granule search only: `200` with half the page's entries and `CMR-Timed-Out: true`.
    TimedOut,
    /// The answer comes [`Faults::slow_ms`] late (beyond the client's timeout).
    Slow,
    /// `Content-Length` announces the whole body, and the connection is closed halfway.
    CutMidBody,
    /// A complete HTTP response whose JSON (or XML) body stops halfway.
    Truncated,
    /// A body that is not JSON at all (a proxy's HTML error page, with status 200).
    InvalidJson,
    /// Item only: valid JSON that is not a STAC item.
    NotStac,
    /// JSON search only: the page's first entry has no `_stac.json` link.
    NoStacLink,
    /// Granule search only: the page repeats one granule (the previous page's last one).
    DuplicateEntry,
    /// Item only: the item's `id` differs from its granule's title.
    IdMismatch,
    /// Granule search only: the page's `CMR-Hits` is one more than the truth.
    HitsChanged,
}

/// What a request is, for the kinds of fault that apply to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `/search/granules.json`.
    SearchJson,
    /// `/search/granules.echo10`.
    SearchEcho10,
    /// A `_stac.json` item.
    Item,
    /// `/search/deleted-granules.json`.
    DeletedGranules,
}

impl FaultKind {
    /// Every kind.
    pub const ALL: [FaultKind; 15] = [
        FaultKind::RateLimited,
        FaultKind::InternalError,
        FaultKind::BadGateway,
        FaultKind::Unavailable,
        FaultKind::GatewayTimeout,
        FaultKind::TimedOut,
        FaultKind::Slow,
        FaultKind::CutMidBody,
        FaultKind::Truncated,
        FaultKind::InvalidJson,
        FaultKind::NotStac,
        FaultKind::NoStacLink,
        FaultKind::DuplicateEntry,
        FaultKind::IdMismatch,
        FaultKind::HitsChanged,
    ];

    /// The name used on the command line and in JSON (`429`, `cut-mid-body`, …).
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::RateLimited => "429",
            FaultKind::InternalError => "500",
            FaultKind::BadGateway => "502",
            FaultKind::Unavailable => "503",
            FaultKind::GatewayTimeout => "504",
            FaultKind::TimedOut => "timed-out",
            FaultKind::Slow => "slow",
            FaultKind::CutMidBody => "cut-mid-body",
            FaultKind::Truncated => "truncated",
            FaultKind::InvalidJson => "invalid-json",
            FaultKind::NotStac => "not-stac",
            FaultKind::NoStacLink => "no-stac-link",
            FaultKind::DuplicateEntry => "duplicate-entry",
            FaultKind::IdMismatch => "id-mismatch",
            FaultKind::HitsChanged => "hits-changed",
        }
    }

    /// The status of an error-status fault.
    pub fn status(self) -> Option<u16> {
        match self {
            FaultKind::RateLimited => Some(429),
            FaultKind::InternalError => Some(500),
            FaultKind::BadGateway => Some(502),
            FaultKind::Unavailable => Some(503),
            FaultKind::GatewayTimeout => Some(504),
            _ => None,
        }
    }

    /// Whether this kind can happen to a request of `target`.
    pub fn applies_to(self, target: Target) -> bool {
        use FaultKind::*;
        match self {
            RateLimited | InternalError | BadGateway | Unavailable | GatewayTimeout | Slow
            | CutMidBody | Truncated | InvalidJson => true,
            TimedOut | DuplicateEntry | HitsChanged => {
                matches!(target, Target::SearchJson | Target::SearchEcho10)
            }
            NoStacLink => target == Target::SearchJson,
            NotStac | IdMismatch => target == Target::Item,
        }
    }
}

impl std::fmt::Display for FaultKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for FaultKind {
    type Err = String;

    fn from_str(s: &str) -> Result<FaultKind, String> {
        FaultKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = FaultKind::ALL.iter().map(|k| k.name()).collect();
                format!("unknown fault {s:?}: expected one of {}", names.join(", "))
            })
    }
}

/// Faults the emulator injects. The default injects none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Every n-th search request (1-based, counting all search requests) is answered with
    /// [`Faults::status`] instead of results.
    pub fail_every_nth_search: Option<NonZeroU64>,
    /// Every n-th item request is answered with [`Faults::status`].
    pub fail_every_nth_item: Option<NonZeroU64>,
    /// Every n-th `deleted-granules.json` request is answered with [`Faults::status`].
    pub fail_every_nth_deleted: Option<NonZeroU64>,
    /// The HTTP status of an every-n-th failure (default 503).
    pub status: u16,
    /// ECHO10 records leave out the optional CLOUD_COVERAGE attribute.
    pub echo10_without_cloud_cover: bool,
    /// The first ECHO10 record of every page loses its (required) GranuleUR.
    pub echo10_broken_record: bool,
    /// Probability that a request draws a random fault (0 = never, 1 = always).
    pub rate: f64,
    /// The kinds a random fault is drawn from (all of them by default).
    pub kinds: Vec<FaultKind>,
    /// Seed of the random draws.
    pub seed: u64,
    /// `Retry-After` of a 429, in seconds.
    pub retry_after_s: u64,
    /// How late a slow answer comes, in milliseconds.
    pub slow_ms: u64,
    /// How late every item request is answered, in milliseconds: a network's latency, not
    /// a fault (0, the default: at once).
    pub item_latency_ms: u64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            fail_every_nth_search: None,
            fail_every_nth_item: None,
            fail_every_nth_deleted: None,
            status: 503,
            echo10_without_cloud_cover: false,
            echo10_broken_record: false,
            rate: 0.0,
            kinds: FaultKind::ALL.to_vec(),
            seed: 0,
            retry_after_s: 1,
            slow_ms: 5_000,
            item_latency_ms: 0,
        }
    }
}

impl Faults {
    /// A random mix of `kinds` at `rate`.
    pub fn random(rate: f64, kinds: &[FaultKind], seed: u64) -> Faults {
        Faults {
            rate,
            kinds: kinds.to_vec(),
            seed,
            ..Faults::default()
        }
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.rate) {
            return Err(format!("fault rate {} is not within 0..=1", self.rate));
        }
        if !(100..=599).contains(&self.status) {
            return Err(format!(
                "fault status {} is not an HTTP status",
                self.status
            ));
        }
        Ok(())
    }

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

    /// Whether the `n`-th (1-based) deleted-granules request fails.
    pub fn deleted_fails(&self, n: u64) -> bool {
        self.fail_every_nth_deleted
            .is_some_and(|every| n.is_multiple_of(every.get()))
    }

    /// Whether the `n`-th request of `target` draws a random fault.
    pub fn strikes(&self, target: Target, n: u64) -> bool {
        if self.rate <= 0.0 || !self.kinds.iter().any(|k| k.applies_to(target)) {
            return false;
        }
        Rng::from_parts(&[self.seed, target as u64, n]).f64() < self.rate
    }

    /// The kind of the `turn`-th (0-based) random fault of `target`: the kinds that apply
    /// are taken in turn, so that each of them comes up as often as the others.
    pub fn kind(&self, target: Target, turn: u64) -> Option<FaultKind> {
        let applicable: Vec<FaultKind> = self
            .kinds
            .iter()
            .copied()
            .filter(|k| k.applies_to(target))
            .collect();
        (!applicable.is_empty()).then(|| applicable[(turn % applicable.len() as u64) as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_injects_nothing_and_every_nth_works() {
        let f = Faults::default();
        assert!((1..100).all(|n| !f.search_fails(n) && !f.item_fails(n)));
        assert!((1..1000).all(|n| !f.strikes(Target::Item, n)));
        let f = Faults {
            fail_every_nth_item: NonZeroU64::new(3),
            ..Faults::default()
        };
        let failing: Vec<u64> = (1..10).filter(|&n| f.item_fails(n)).collect();
        assert_eq!(failing, vec![3, 6, 9]);
        assert!(!f.search_fails(3));
    }

    #[test]
    fn random_draws_keep_to_the_rate_and_to_kinds_that_apply() {
        let f = Faults::random(0.1, &FaultKind::ALL, 42);
        let struck = (1..=20_000).filter(|&n| f.strikes(Target::Item, n)).count();
        assert!((1_700..2_300).contains(&struck), "{struck}");
        let kinds: Vec<FaultKind> = (0..22).filter_map(|t| f.kind(Target::Item, t)).collect();
        assert!(kinds.iter().all(|k| k.applies_to(Target::Item)));
        let distinct: std::collections::BTreeSet<_> = kinds.iter().collect();
        assert_eq!(
            distinct.len(),
            11,
            "each kind that applies to items, in turn"
        );
        assert_eq!(kinds[0], kinds[11]);
        assert!(!kinds.contains(&FaultKind::NoStacLink));
        // Seeded: the same draws again; another seed, others.
        assert_eq!(f.strikes(Target::Item, 77), f.strikes(Target::Item, 77));
        let g = Faults::random(0.1, &FaultKind::ALL, 43);
        assert!((1..200).any(|n| f.strikes(Target::Item, n) != g.strikes(Target::Item, n)));
        // Rate 1 with one kind: always that kind where it applies, never elsewhere.
        let all = Faults::random(1.0, &[FaultKind::NoStacLink], 0);
        assert!((1..50).all(|n| all.strikes(Target::SearchJson, n)));
        assert_eq!(all.kind(Target::SearchJson, 5), Some(FaultKind::NoStacLink));
        assert!((1..50).all(|n| !all.strikes(Target::Item, n)));
        assert_eq!(all.kind(Target::Item, 0), None);
    }

    #[test]
    fn names_round_trip_and_unknown_names_are_listed() {
        for k in FaultKind::ALL {
            assert_eq!(k.name().parse::<FaultKind>(), Ok(k));
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.name()));
        }
        let e = "418".parse::<FaultKind>().unwrap_err();
        assert!(e.contains("429") && e.contains("hits-changed"), "{e}");
        let f: Faults = serde_json::from_str(r#"{"rate": 0.5, "kinds": ["429", "slow"]}"#).unwrap();
        assert_eq!(f.kinds, vec![FaultKind::RateLimited, FaultKind::Slow]);
        assert!(serde_json::from_str::<Faults>(r#"{"rat": 0.5}"#).is_err());
        assert!(Faults::random(1.5, &[], 0).validate().is_err());
    }
}
