//! Every fault the emulator injects, one kind at a time: when it comes and goes, the day is
//! still complete (each granule once); when it persists, the day fails with the reason and
//! the granules it could not write, and nothing is published.

use crate::harvest::{day, options, read_all, synthetic};
use hls_flow::Collection;
use hls_flow::api::{DailyOptions, DayOutcome, Outcome, process_date_range};
use hls_flow::period::DayRange;
use hls_flow::write::harvest::Source;
use hls_flow::write::output::Output;
use hls_flow_emulator::{Emulator, FaultKind, Faults, Target};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// What a fault that never goes away does to the day: it fails with this in its error
/// (and, for `missing`, every granule is listed with it), or it still succeeds.
enum Persistent {
    /// The day fails; its error contains this.
    DayFails(&'static str),
    /// The day fails; every granule is listed as missing with this reason.
    GranulesFail(&'static str),
    /// The first entry of every page fails with this reason; the rest are fetched.
    SomeGranulesFail(&'static str),
    /// Nothing is lost: the fault is absorbed.
    Succeeds,
}

const CASES: [(FaultKind, Persistent); 15] = [
    (FaultKind::RateLimited, Persistent::DayFails("HTTP 429")),
    (FaultKind::InternalError, Persistent::DayFails("HTTP 500")),
    (FaultKind::BadGateway, Persistent::DayFails("HTTP 502")),
    (FaultKind::Unavailable, Persistent::DayFails("HTTP 503")),
    (FaultKind::GatewayTimeout, Persistent::DayFails("HTTP 504")),
    (FaultKind::TimedOut, Persistent::DayFails("CMR-Timed-Out")),
    (FaultKind::Slow, Persistent::DayFails("timed out")),
    (FaultKind::CutMidBody, Persistent::DayFails("request to")),
    (
        FaultKind::Truncated,
        Persistent::DayFails("not a CMR granule feed"),
    ),
    (
        FaultKind::InvalidJson,
        Persistent::DayFails("not a CMR granule feed"),
    ),
    (
        FaultKind::NotStac,
        Persistent::GranulesFail("not a STAC item"),
    ),
    (
        FaultKind::NoStacLink,
        Persistent::SomeGranulesFail("no https _stac.json link"),
    ),
    (FaultKind::DuplicateEntry, Persistent::Succeeds),
    (
        FaultKind::IdMismatch,
        Persistent::GranulesFail("differs from the granule's title"),
    ),
    (
        FaultKind::HitsChanged,
        Persistent::DayFails("hits but its pages listed"),
    ),
];

const PAGE: u32 = 10;

/// The synthetic 2024-07-01 (60 granules) with `faults` from the start.
async fn emulator(faults: Faults) -> Emulator {
    let emu = synthetic(day(2024, 7, 1), day(2024, 7, 1), 60).await;
    emu.set_faults(faults);
    emu
}

/// HLSS30 of 2024-07-01, pages of 10, a 1 s request timeout (a slow fault takes 2 s), quick retries.
fn harvest_options(emu: &Emulator, attempts: u32) -> DailyOptions {
    let mut o = options(emu);
    o.collections = vec![Collection::Hlss30];
    o.endpoints.page_size = PAGE;
    o.endpoints.retry.max_attempts = attempts;
    o.endpoints.retry.min_delay = Duration::from_millis(1);
    o.endpoints.retry.max_delay = Duration::from_millis(50);
    o.endpoints.http.request_timeout = Duration::from_millis(1000);
    o
}

fn faults(rate: f64, kind: FaultKind) -> Faults {
    Faults {
        slow_ms: 2000,
        ..Faults::random(rate, &[kind], 3)
    }
}

async fn harvest(emu: &Emulator, dir: &std::path::Path, attempts: u32) -> DayOutcome {
    harvest_from(emu, dir, attempts, Source::StacJson).await
}

async fn harvest_from(
    emu: &Emulator,
    dir: &std::path::Path,
    attempts: u32,
    source: Source,
) -> DayOutcome {
    let out = Output::parse(dir.to_str().unwrap()).unwrap();
    let range = DayRange::parse(&["20240701"]).unwrap();
    let mut options = harvest_options(emu, attempts);
    options.source = source;
    let summary = process_date_range(range, &out, &options).await.unwrap();
    summary.outcomes.into_iter().next().unwrap()
}

fn expected(emu: &Emulator) -> BTreeSet<String> {
    emu.granules(Collection::Hlss30, day(2024, 7, 1))
        .into_iter()
        .map(|g| g.granule_ur)
        .collect()
}

/// A fault of one kind on some requests (20 % of items, 10 % of searches): retried, and
/// the day ends complete, each granule once. A missing `_stac.json` link fails its granule
/// (there is nothing to fetch), so that day fails and succeeds when harvested again, as the
/// scheduler does. Seeds are tried until the fault was injected at least once; every run
/// must succeed.
async fn transient(kind: FaultKind) {
    let rate = if kind.applies_to(Target::Item) {
        0.2
    } else {
        0.1
    };
    for seed in 0..10 {
        let emu = emulator(Faults {
            seed,
            ..faults(rate, kind)
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let mut outcome = harvest(&emu, dir.path(), 8).await;
        let mut attempts = 1;
        while kind == FaultKind::NoStacLink && outcome.status == Outcome::Failed && attempts < 6 {
            assert!(
                outcome
                    .missing
                    .iter()
                    .all(|(_, why)| why.contains("_stac.json link")),
                "{kind}: {outcome:?}"
            );
            outcome = harvest(&emu, dir.path(), 8).await;
            attempts += 1;
        }
        assert_eq!(outcome.status, Outcome::Succeeded, "{kind}: {outcome:?}");
        let read = read_all(dir.path()); // asserts that no item is written twice
        assert_eq!(
            read.keys().cloned().collect::<BTreeSet<_>>(),
            expected(&emu),
            "{kind}"
        );
        assert_eq!(outcome.items as usize, read.len(), "{kind}");
        let injected = emu.fault_counts();
        assert!(injected.len() <= 1, "{kind}: only that kind: {injected:?}");
        if injected.get(kind.name()).copied().unwrap_or(0) > 0 {
            return;
        }
    }
    panic!("{kind} was never injected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_that_comes_and_goes_is_retried_and_loses_nothing() {
    futures::future::join_all(CASES.iter().map(|(kind, _)| transient(*kind))).await;
}

/// `--source echo10`: every fault that applies to ECHO10 searches, on 30 % of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo10_searches_survive_their_faults_too() {
    let kinds: Vec<FaultKind> = FaultKind::ALL
        .into_iter()
        .filter(|k| k.applies_to(Target::SearchEcho10))
        .collect();
    let emu = emulator(Faults {
        slow_ms: 2000,
        ..Faults::random(0.3, &kinds, 1)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let outcome = harvest_from(&emu, dir.path(), 10, Source::Echo10).await;
    assert_eq!(outcome.status, Outcome::Succeeded, "{outcome:?}");
    let read = read_all(dir.path());
    assert_eq!(
        read.keys().cloned().collect::<BTreeSet<_>>(),
        expected(&emu)
    );
    assert!(
        emu.fault_counts().values().sum::<u64>() >= 3,
        "{:?}",
        emu.fault_counts()
    );
}

/// The same kind on every request it applies to.
async fn persistent(kind: FaultKind, expect: &Persistent) {
    let emu = emulator(faults(1.0, kind)).await;
    let dir = tempfile::tempdir().unwrap();
    let outcome = harvest(&emu, dir.path(), 2).await;
    let published = read_all(dir.path());
    let every_reason_says = |why: &str| {
        assert!(
            outcome
                .missing
                .iter()
                .all(|(_, reason)| reason.contains(why)),
            "{kind}: {outcome:?}"
        );
    };
    match expect {
        Persistent::Succeeds => {
            assert_eq!(outcome.status, Outcome::Succeeded, "{kind}: {outcome:?}");
            assert_eq!(
                published.keys().cloned().collect::<BTreeSet<_>>(),
                expected(&emu),
                "{kind}"
            );
            return;
        }
        Persistent::DayFails(why) => {
            let error = outcome.error.as_deref().unwrap_or_default();
            assert!(error.contains(why), "{kind}: {why:?} not in {error}");
        }
        Persistent::GranulesFail(why) => {
            let missing: BTreeSet<String> = outcome.missing.iter().map(|m| m.0.clone()).collect();
            assert_eq!(missing, expected(&emu), "{kind}: every granule is listed");
            every_reason_says(why);
        }
        Persistent::SomeGranulesFail(why) => {
            let n = expected(&emu).len();
            assert_eq!(
                outcome.missing.len(),
                n.div_ceil(PAGE as usize),
                "{kind}: one per page: {outcome:?}"
            );
            every_reason_says(why);
        }
    }
    assert_eq!(outcome.status, Outcome::Failed, "{kind}: {outcome:?}");
    assert!(published.is_empty(), "{kind}: nothing published");
    assert_eq!(outcome.path, None, "{kind}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_that_persists_fails_the_day_with_its_reason_and_publishes_nothing() {
    futures::future::join_all(CASES.iter().map(|(kind, expect)| persistent(*kind, expect))).await;
}

#[tokio::test]
async fn a_429_is_retried_no_sooner_than_its_retry_after() {
    let emu = emulator(Faults {
        retry_after_s: 1,
        ..faults(1.0, FaultKind::RateLimited)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let outcome = harvest(&emu, dir.path(), 2).await;
    // Two attempts of the first search, 1 s apart at least, though the backoff is 1-5 ms.
    assert!(started.elapsed() >= Duration::from_secs(1), "{outcome:?}");
    assert_eq!(emu.fault_counts().get("429"), Some(&2));
    assert!(outcome.error.unwrap().contains("HTTP 429"));
}

/// Through `run`: granules whose items stay wrong fail their day after every attempt;
/// `status` lists every one of them with its reason, in JSON and (`--all-missing`) in text;
/// once LP DAAC serves them right, `retry-failed` completes the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_lists_every_granule_that_could_not_be_written() {
    use crate::common::hls_flow;
    use crate::run::{paths, status_json, stderr};
    let emu = emulator(Faults::random(1.0, &[FaultKind::IdMismatch], 0)).await;
    let p = paths();
    let common = |c: &mut assert_cmd::Command| {
        c.arg("--state")
            .arg(&p.state)
            .args(["--no-progress", "--cmr-url", &emu.base_url()])
            .args(["--max-attempts", "2", "--task-attempts", "2"])
            .args(["--retry-min-delay-ms", "1", "--retry-max-delay-ms", "5"]);
    };
    let mut run = hls_flow();
    run.args(["run", "20240701", "--collections", "HLSS30", "--output"])
        .arg(&p.out);
    common(&mut run);
    let o = run.output().unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));

    let granules = expected(&emu);
    let s = status_json(&p);
    let failed = s["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{s}");
    assert_eq!(failed[0]["key"], "harvest/HLSS30/2024-07-01");
    assert_eq!(failed[0]["attempts"], 2);
    let missing = failed[0]["missing"].as_array().unwrap();
    let ids: BTreeSet<String> = missing
        .iter()
        .map(|m| m[0].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, granules);
    assert!(
        missing.iter().all(|m| m[1]
            .as_str()
            .unwrap()
            .contains("differs from the granule's title")),
        "{s}"
    );
    let text = hls_flow()
        .args(["status", "--all-missing", "--state"])
        .arg(&p.state)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    for id in &granules {
        assert!(
            text.contains(&format!("missing {id}: ")),
            "{id} not in {text}"
        );
    }
    assert!(read_all(&p.out).is_empty(), "nothing published");

    emu.set_faults(Faults::default());
    let mut retry = hls_flow();
    retry.arg("retry-failed");
    common(&mut retry);
    let o = retry.output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let s = status_json(&p);
    assert_eq!(s["failed"].as_array().unwrap().len(), 0, "{s}");
    assert_eq!(
        read_all(&p.out).keys().cloned().collect::<BTreeSet<_>>(),
        granules
    );
}
