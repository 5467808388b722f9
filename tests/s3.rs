//! Outputs on an S3-compatible server (moto's, started on loopback by the tests), configured
//! from the `AWS_*` environment of the child process only; `gs://` and `az://` outputs
//! configured from the `GOOGLE_*` / `AZURE_*` environment (a loopback listener sees their
//! first request).

use crate::common::{Moto, hls_flow, one_line_error};
use crate::harvest::{day, read_all, synthetic};
use crate::run::{emulator_ids, paths, stderr};
use futures::TryStreamExt;
use hls_flow::Collection;
use hls_flow::engine::checkpoint::sqlite::{StateStore, TaskState};
use hls_flow::write::output::Output;
use object_store::aws::AmazonS3Builder;
use object_store::multipart::MultipartStore;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// moto's smallest part of a multipart upload (but the last), lowered from AWS's 5 MiB so
/// that small files go up in many parts with `HLS_FLOW_PART_SIZE`.
const MOTO_MIN_PART: &str = "256";

/// A client of moto's bucket, in this process.
fn bucket_store(moto: &Moto, bucket: &str) -> impl ObjectStore {
    AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_endpoint(&moto.endpoint)
        .with_allow_http(true)
        .with_access_key_id("testing")
        .with_secret_access_key("testing")
        .with_region("us-east-1")
        .build()
        .unwrap()
}

/// `hls-flow SUB …` with moto's environment and fast retries against `emu`.
fn s3_cmd(moto: &Moto, sub: &str) -> std::process::Command {
    let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("hls-flow"));
    c.arg(sub)
        .env_remove("HLS_FLOW_CMR_URL")
        .env_remove("HLS_FLOW_LOG")
        .env_remove(hls_flow::write::output::PART_SIZE_ENV);
    for (k, v) in moto.env() {
        c.env(k, v);
    }
    c
}

/// The harvest options of the tests: the emulator, fast retries, no progress bars.
fn harvest_args(emu: &hls_flow_emulator::Emulator) -> Vec<String> {
    [
        "--no-progress",
        "--cmr-url",
        &emu.base_url(),
        "--retry-min-delay-ms",
        "5",
        "--retry-max-delay-ms",
        "20",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// (path, e-tag, last modified) of every object.
fn tags(
    m: &BTreeMap<String, (Option<String>, String, bytes::Bytes)>,
) -> Vec<(String, Option<String>, String)> {
    m.iter()
        .map(|(k, (e, t, _))| (k.clone(), e.clone(), t.clone()))
        .collect()
}

/// Keys of the tasks of a state file that succeeded.
fn succeeded(state: &std::path::Path) -> BTreeSet<String> {
    StateStore::open_read_only(state)
        .ok()
        .and_then(|s| s.tasks().ok())
        .map(|t| {
            t.into_iter()
                .filter(|t| t.state == TaskState::Succeeded)
                .map(|t| t.key)
                .collect()
        })
        .unwrap_or_default()
}

/// Every object under `prefix` of `bucket`: path → (e-tag, last modified, bytes).
async fn objects(
    moto: &Moto,
    bucket: &str,
    prefix: &str,
) -> BTreeMap<String, (Option<String>, String, bytes::Bytes)> {
    let store = bucket_store(moto, bucket);
    let metas: Vec<_> = store
        .list(Some(&prefix.into()))
        .try_collect()
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    for m in metas {
        let body = store.get(&m.location).await.unwrap().bytes().await.unwrap();
        out.insert(
            m.location.to_string(),
            (m.e_tag.clone(), m.last_modified.to_rfc3339(), body),
        );
    }
    out
}

/// The item ids of the parquet objects whose path contains `part`.
fn ids(
    objects: &BTreeMap<String, (Option<String>, String, bytes::Bytes)>,
    part: &str,
) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for (path, (_, _, body)) in objects {
        if path.contains(part) && path.ends_with(".parquet") {
            for item in stac::geoparquet::from_reader(body.clone()).unwrap().items {
                assert!(ids.insert(item.id.clone()), "{} is written twice", item.id);
            }
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_to_s3_writes_the_rows_of_a_local_run_and_a_rerun_writes_nothing() {
    let moto = Moto::start();
    moto.create_bucket("bucket");
    let emu = synthetic(day(2025, 2, 1), day(2025, 2, 28), 4).await;
    let p = paths();
    let run_with_cmr = |output: &str, state: &std::path::Path, cmr_url: &str| {
        let mut c = hls_flow();
        c.args(["run", "202502", "--no-progress", "--cmr-url", cmr_url])
            .args(["--retry-min-delay-ms", "5", "--retry-max-delay-ms", "20"])
            .args(["--output", output])
            .arg("--state")
            .arg(state);
        for (k, v) in moto.env() {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    let run = |output: &str, state: &std::path::Path| run_with_cmr(output, state, &emu.base_url());
    let s3_state = p.state.with_file_name("s3.sqlite");
    let o = run("s3://bucket/cache", &s3_state);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = run(p.out.to_str().unwrap(), &p.state);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    let written = objects(&moto, "bucket", "cache").await;
    let feb = hls_flow::period::DayRange::parse(&["202502"]).unwrap();
    for c in Collection::ALL {
        let expected = emulator_ids(&emu, c, feb.days());
        assert!(!expected.is_empty());
        let partition = format!("cache/{}/year=2025/month=02/", c.stac_id());
        assert_eq!(ids(&written, &partition), expected, "{c}");
        let local = read_all(&p.out.join(c.stac_id()).join("year=2025").join("month=02"));
        // The same rows as the local run, item by item.
        let s3_items: BTreeMap<String, serde_json::Value> = written
            .iter()
            .filter(|(path, _)| path.contains(&partition))
            .flat_map(|(_, (_, _, body))| {
                stac::geoparquet::from_reader(body.clone()).unwrap().items
            })
            .map(|i| (i.id.clone(), serde_json::to_value(&i).unwrap()))
            .collect();
        for (id, (_, value)) in &local {
            assert_eq!(&s3_items[id], value, "{id}");
        }
        let daily = format!("cache/daily/{}/", c.stac_id());
        assert_eq!(ids(&written, &daily), expected, "{c} daily");
    }

    // A rerun writes nothing: every object is the one written before.
    let o = run("s3://bucket/cache", &s3_state);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let again = objects(&moto, "bucket", "cache").await;
    assert_eq!(tags(&again), tags(&written));

    // Nor does it ask CMR anything: with CMR's URL a closed port, it still succeeds, and
    // still writes nothing (it only checks that the published objects are there and whole).
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let o = run_with_cmr("s3://bucket/cache", &s3_state, &format!("http://{closed}"));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        tags(&objects(&moto, "bucket", "cache").await),
        tags(&written)
    );
}

#[test]
fn unknown_store_options_are_refused_naming_the_key() {
    let e = hls_flow::write::output::Output::parse_with_options(
        "s3://bucket/x",
        &BTreeMap::from([("aws_no_such_key".to_string(), "1".to_string())]),
    )
    .unwrap_err();
    assert!(e.is_usage());
    assert!(e.to_string().contains("aws_no_such_key"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_daily_to_s3_writes_each_day_and_a_second_one_fetches_no_item() {
    let moto = Moto::start();
    moto.create_bucket("bucket");
    let emu = synthetic(day(2025, 3, 1), day(2025, 3, 2), 5).await;
    let gen_daily = || {
        s3_cmd(&moto, "generate-daily")
            .args(["20250301", "20250302", "s3://bucket/daily"])
            .args(harvest_args(&emu))
            .output()
            .unwrap()
    };
    let o = gen_daily();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let written = objects(&moto, "bucket", "daily").await;
    let days = || [day(2025, 3, 1), day(2025, 3, 2)].into_iter();
    for c in Collection::ALL {
        for d in days() {
            let path = format!("daily/{c}/2025/03/{c}-{d}.parquet", c = c.stac_id());
            assert!(
                written.contains_key(&path),
                "{path} in {:?}",
                written.keys()
            );
        }
        assert_eq!(
            ids(&written, &format!("daily/{}/", c.stac_id())),
            emulator_ids(&emu, c, days()),
            "{c}"
        );
    }
    assert_eq!(written.len(), 4, "{:?}", written.keys());

    // Skip-existing: the days are there, whole, so not one item is fetched again.
    let fetched = emu.counts().item_fetches;
    assert!(fetched > 0);
    let o = gen_daily();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("0 succeeded, 4 skipped, 0 failed"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert_eq!(emu.counts().item_fetches, fetched, "no item request");
    assert_eq!(
        tags(&objects(&moto, "bucket", "daily").await),
        tags(&written)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_to_s3_killed_with_sigkill_completes_when_started_again() {
    let moto = Moto::start();
    moto.create_bucket("bucket");
    let emu = synthetic(day(2024, 9, 1), day(2024, 9, 30), 10).await;
    let p = paths();
    let run = || {
        let mut c = s3_cmd(&moto, "run");
        c.args([
            "202409",
            "--output",
            "s3://bucket/cache",
            "--max-concurrent-days",
            "1",
        ])
        .args(harvest_args(&emu))
        .arg("--state")
        .arg(&p.state);
        c
    };
    let mut child = run()
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let done_before_kill = loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let done = succeeded(&p.state);
        if done.len() >= 3 {
            break done;
        }
        assert!(Instant::now() < deadline, "the first run made no progress");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the first run ended too early"
        );
    };
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let all = succeeded(&p.state);
    assert!(
        all.len() < 62,
        "killed before the end: {} tasks done",
        all.len()
    );

    let o = run().output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let done = succeeded(&p.state);
    assert_eq!(done.len(), 62, "every harvest and both repartitions");
    assert!(done.is_superset(&done_before_kill));
    let written = objects(&moto, "bucket", "cache").await;
    let sep = hls_flow::period::DayRange::parse(&["202409"]).unwrap();
    for c in Collection::ALL {
        let expected = emulator_ids(&emu, c, sep.days());
        let partition = format!("cache/{}/year=2024/month=09/", c.stac_id());
        assert_eq!(ids(&written, &partition), expected, "{c}");
        assert_eq!(
            ids(&written, &format!("cache/daily/{}/", c.stac_id())),
            expected
        );
    }
    assert!(
        !written.keys().any(|k| k.contains(".hls-flow/")),
        "no upload record or staging object left: {:?}",
        written.keys()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_object_on_s3_is_rebuilt_by_the_next_run() {
    let moto = Moto::start();
    moto.create_bucket("bucket");
    let emu = synthetic(day(2025, 4, 1), day(2025, 4, 3), 4).await;
    let p = paths();
    let run = || {
        s3_cmd(&moto, "run")
            .args(["20250401", "20250403", "--output", "s3://bucket/cache"])
            .args(harvest_args(&emu))
            .arg("--state")
            .arg(&p.state)
            .output()
            .unwrap()
    };
    let o = run();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let before = objects(&moto, "bucket", "cache").await;
    assert_eq!(before.len(), 6, "{:?}", before.keys());
    let damaged = "cache/daily/HLSS30_2.0/2025/04/HLSS30_2.0-2025-04-02.parquet";
    let good = before[damaged].2.clone();
    // Overwritten with its first half: same name, not a parquet file any more.
    bucket_store(&moto, "bucket")
        .put(
            &damaged.into(),
            PutPayload::from(good.slice(..good.len() / 2)),
        )
        .await
        .unwrap();

    let o = run();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let after = objects(&moto, "bucket", "cache").await;
    assert_eq!(
        ids(&after, damaged),
        emulator_ids(&emu, Collection::Hlss30, [day(2025, 4, 2)].into_iter())
    );
    // Only the damaged object was written again.
    for (path, (etag, modified, _)) in &after {
        if path != damaged {
            assert_eq!(
                (etag, modified),
                (&before[path].0, &before[path].1),
                "{path} was written again"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multipart_upload_cut_by_sigkill_is_aborted_by_the_next_run() {
    let moto = Moto::start_with_env(&[("S3_UPLOAD_PART_MIN_SIZE", MOTO_MIN_PART)]);
    moto.create_bucket("bucket");
    let emu = synthetic(day(2024, 11, 1), day(2024, 11, 6), 40).await;
    let p = paths();
    let run = || {
        let mut c = s3_cmd(&moto, "run");
        c.args(["20241101", "20241106", "--output", "s3://bucket/cache"])
            .args(harvest_args(&emu))
            .arg("--state")
            .arg(&p.state)
            // Every daily file goes up as a multipart upload of many small parts.
            .env(hls_flow::write::output::PART_SIZE_ENV, "512");
        c
    };
    // Kill a run as soon as a watcher sees an upload in progress under the prefix. The
    // upload may just have completed when the kill lands: then the killed run is resumed
    // and killed again, a few times at most.
    let mut orphans = Vec::new();
    for _ in 0..3 {
        let mut watcher = std::process::Command::new(crate::common::python())
            .args([
                "-c",
                &moto.boto3_script(
                    "while not s3.list_multipart_uploads(Bucket='bucket', Prefix='cache/').get('Uploads'):\n    time.sleep(0.005)\nprint('seen', flush=True)",
                ),
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut child = run()
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stdout = watcher.stdout.take().unwrap();
        let seen = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
            line
        })
        .await
        .unwrap();
        child.kill().unwrap(); // SIGKILL, in the middle of an upload
        child.wait().unwrap();
        watcher.wait().unwrap();
        assert_eq!(seen.trim(), "seen");
        orphans = moto.incomplete_uploads("bucket", "cache/");
        if !orphans.is_empty() {
            break;
        }
    }
    assert!(!orphans.is_empty(), "a kill left an incomplete upload");

    let o = run().output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        moto.incomplete_uploads("bucket", "cache/"),
        Vec::<String>::new(),
        "the next run aborted every upload left (it had: {orphans:?})"
    );
    let written = objects(&moto, "bucket", "cache").await;
    assert!(
        !written.keys().any(|k| k.contains(".hls-flow/")),
        "{:?}",
        written.keys()
    );
    let days = || (1..=6).map(|d| day(2024, 11, d));
    for c in Collection::ALL {
        assert_eq!(
            ids(&written, &format!("cache/daily/{}/", c.stac_id())),
            emulator_ids(&emu, c, days()),
            "{c}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repartition_s3_to_s3_publishes_a_month_once_when_two_race() {
    let moto = Moto::start_with_env(&[("S3_UPLOAD_PART_MIN_SIZE", MOTO_MIN_PART)]);
    moto.create_bucket("bucket");
    let emu = synthetic(day(2025, 6, 1), day(2025, 6, 4), 6).await;
    let o = s3_cmd(&moto, "generate-daily")
        .args(["202506", "s3://bucket/daily", "--collections", "HLSS30"])
        .args(harvest_args(&emu))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    // Two repartitions of the same month at once, without --overwrite; the partition goes
    // up in many parts, then is published by a conditional copy.
    let repartition = || {
        s3_cmd(&moto, "repartition")
            .args(["s3://bucket/daily", "s3://bucket/monthly", "--no-progress"])
            .env(hls_flow::write::output::PART_SIZE_ENV, "4096")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (repartition(), repartition());
    let outputs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
    let winners: Vec<_> = outputs.iter().filter(|o| o.status.success()).collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one publishes: {:?}",
        outputs.iter().map(stderr).collect::<Vec<_>>()
    );
    let loser = outputs.iter().find(|o| !o.status.success()).unwrap();
    one_line_error(loser, 2, "exists already");

    let written = objects(&moto, "bucket", "monthly").await;
    let partition = "monthly/HLSS30_2.0/year=2025/month=06/part-0.parquet";
    assert_eq!(
        written.keys().collect::<Vec<_>>(),
        vec![partition],
        "nothing else is left"
    );
    let june = (1..=30).map(|d| day(2025, 6, d));
    assert_eq!(
        ids(&written, partition),
        emulator_ids(&emu, Collection::Hlss30, june)
    );
    assert_eq!(moto.incomplete_uploads("bucket", ""), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_only_publishing_keeps_the_first_object_on_s3_and_in_a_folder() {
    let moto = Moto::start();
    moto.create_bucket("bucket");
    let dir = tempfile::tempdir().unwrap();
    let options = BTreeMap::from(
        [
            ("aws_endpoint", moto.endpoint.as_str()),
            ("aws_allow_http", "true"),
            ("aws_access_key_id", "testing"),
            ("aws_secret_access_key", "testing"),
            ("aws_region", "us-east-1"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let (first, second) = (dir.path().join("first"), dir.path().join("second"));
    std::fs::write(&first, b"the first file").unwrap();
    std::fs::write(&second, b"the second file, longer").unwrap();
    let local = dir.path().join("out");
    for out in [
        Output::parse_with_options("s3://bucket/x", &options).unwrap(),
        Output::parse(local.to_str().unwrap()).unwrap(),
    ] {
        let dest = out.child("HLSS30_2.0/year=2025/month=06/part-0.parquet");
        // Two at once: one wins.
        let (a, b) = tokio::join!(
            out.publish_new_file(&first, &dest),
            out.publish_new_file(&second, &dest)
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert!(
            matches!((a, b), (Some(14), None) | (None, Some(23))),
            "{a:?} {b:?} in {}",
            out.display()
        );
        out.delete(&dest).await.unwrap();
        assert_eq!(out.publish_new_file(&first, &dest).await.unwrap(), Some(14));
        assert_eq!(out.publish_new_file(&second, &dest).await.unwrap(), None);
        let body = out.store().get(&dest).await.unwrap().bytes().await.unwrap();
        assert_eq!(&body[..], b"the first file", "{}", out.display());
        let all: Vec<_> = out.store().list(None).try_collect().await.unwrap();
        assert_eq!(
            all.iter()
                .map(|m| m.location.to_string())
                .collect::<Vec<_>>(),
            vec![dest.to_string()],
            "no staging object left in {}",
            out.display()
        );
        // With overwrite, the plain publish replaces it.
        out.publish_file(&second, &dest).await.unwrap();
        assert_eq!(out.size_of(&dest).await.unwrap(), Some(23));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_daily_takes_the_store_options_of_its_workflow_file() {
    let moto = Moto::start();
    moto.create_bucket("bucket");
    let emu = synthetic(day(2025, 3, 1), day(2025, 3, 1), 3).await;
    let dir = tempfile::tempdir().unwrap();
    let workflow = dir.path().join("wf.toml");
    std::fs::write(
        &workflow,
        format!(
            "[output]\ndaily_prefix = \"d\"\n[output.options]\naws_endpoint = \"{}\"\naws_allow_http = \"true\"\n",
            moto.endpoint
        ),
    )
    .unwrap();
    // The endpoint comes from the workflow file only.
    let o = s3_cmd(&moto, "generate-daily")
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_ALLOW_HTTP")
        .args(["20250301", "s3://bucket/wf"])
        .args(harvest_args(&emu))
        .arg("--workflow")
        .arg(&workflow)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let written = objects(&moto, "bucket", "wf").await;
    for c in Collection::ALL {
        assert_eq!(
            ids(&written, &format!("wf/d/{}/", c.stac_id())),
            emulator_ids(&emu, c, [day(2025, 3, 1)].into_iter()),
            "{c}"
        );
    }
}

/// Puts below `prefix` what a process `owner` leaves when killed while it publishes: an
/// incomplete multipart upload with its record, and a staged object. Returns the upload's
/// key.
async fn plant_leftovers(moto: &Moto, prefix: &str, owner: &str) -> String {
    let s3 = AmazonS3Builder::new()
        .with_bucket_name("bucket")
        .with_endpoint(&moto.endpoint)
        .with_allow_http(true)
        .with_access_key_id("testing")
        .with_secret_access_key("testing")
        .with_region("us-east-1")
        .build()
        .unwrap();
    let key = format!("{prefix}/HLSS30_2.0/year=2025/month=07/{owner}.parquet");
    let id = s3.create_multipart(&key.as_str().into()).await.unwrap();
    let record = format!("{prefix}/.hls-flow/uploads/{owner}/1-1");
    s3.put(&record.into(), PutPayload::from(format!("{key}\n{id}\n")))
        .await
        .unwrap();
    let staged = format!("{prefix}/.hls-flow/staging/{owner}/1-2-part-0.parquet");
    s3.put(&staged.into(), PutPayload::from_static(b"half a file"))
        .await
        .unwrap();
    key
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_daily_and_repartition_clear_what_ended_processes_left() {
    let moto = Moto::start();
    moto.create_bucket("bucket");
    let emu = synthetic(day(2025, 7, 1), day(2025, 7, 2), 3).await;
    // A process of this machine that has ended, and one that runs (this test).
    let ended = {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let me = hls_flow::write::output::owner();
        format!("{}-{pid}", me.rsplit_once('-').unwrap().0)
    };
    let running = hls_flow::write::output::owner();
    let mut kept = BTreeMap::new();
    for prefix in ["daily", "monthly"] {
        plant_leftovers(&moto, prefix, &ended).await;
        let live = plant_leftovers(&moto, prefix, &running).await;
        kept.insert(prefix, live);
        assert_eq!(
            moto.incomplete_uploads("bucket", &format!("{prefix}/"))
                .len(),
            2
        );
    }
    let left = |objects: &BTreeMap<String, _>| {
        objects
            .keys()
            .filter(|k| k.contains("/.hls-flow/"))
            .cloned()
            .collect::<Vec<_>>()
    };
    let only_running = |prefix: &str| {
        vec![
            format!("{prefix}/.hls-flow/staging/{running}/1-2-part-0.parquet"),
            format!("{prefix}/.hls-flow/uploads/{running}/1-1"),
        ]
    };

    let o = s3_cmd(&moto, "generate-daily")
        .args(["20250701", "20250702", "s3://bucket/daily"])
        .args(harvest_args(&emu))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        moto.incomplete_uploads("bucket", "daily/"),
        vec![kept["daily"].clone()],
        "the ended process's upload is aborted, the running one's kept"
    );
    assert_eq!(
        left(&objects(&moto, "bucket", "daily").await),
        only_running("daily")
    );
    // The monthly prefix is not generate-daily's: untouched.
    assert_eq!(moto.incomplete_uploads("bucket", "monthly/").len(), 2);

    let o = s3_cmd(&moto, "repartition")
        .args(["s3://bucket/daily", "s3://bucket/monthly", "--no-progress"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        moto.incomplete_uploads("bucket", "monthly/"),
        vec![kept["monthly"].clone()]
    );
    assert_eq!(
        left(&objects(&moto, "bucket", "monthly").await),
        only_running("monthly")
    );
}

/// `s` with its `%XX` escapes decoded.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let (mut out, mut i) = (Vec::new(), 0);
    while i < b.len() {
        match (b[i], s.get(i + 1..i + 3).map(|h| u8::from_str_radix(h, 16))) {
            (b'%', Some(Ok(byte))) => {
                out.push(byte);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).to_string()
}

/// Accepts one connection on loopback, answers `403 Forbidden` (an error no client retries)
/// and returns the request's head.
fn one_request_server() -> (String, std::thread::JoinHandle<String>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        use std::io::{BufRead, Write};
        let (stream, _) = listener.accept().unwrap();
        let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        let mut stream = stream;
        stream
            .write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .unwrap();
        head
    });
    (url, handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gs_and_az_outputs_take_their_endpoint_from_the_environment() {
    let emu = synthetic(day(2025, 7, 1), day(2025, 7, 1), 3).await;
    let dir = tempfile::tempdir().unwrap();
    let daily = dir.path().join("daily");
    let o = hls_flow()
        .args(["generate-daily", "20250701", daily.to_str().unwrap()])
        .args(["--collections", "HLSS30"])
        .args(harvest_args(&emu))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    for (output, env) in [
        (
            "gs://bucket/monthly",
            [
                ("GOOGLE_BASE_URL", ""),
                ("GOOGLE_SKIP_SIGNATURE", "true"),
                ("GOOGLE_ALLOW_HTTP", "true"),
            ],
        ),
        (
            "az://box/monthly",
            [
                ("AZURE_STORAGE_ENDPOINT", ""),
                ("AZURE_STORAGE_ACCOUNT_NAME", "acct"),
                ("AZURE_SKIP_SIGNATURE", "true"),
            ],
        ),
    ] {
        let (url, server) = one_request_server();
        let mut c = hls_flow();
        c.args(["repartition", "--no-progress"])
            .arg(&daily)
            .arg(output)
            .env("AZURE_ALLOW_HTTP", "true");
        for (k, v) in env {
            c.env(k, if v.is_empty() { url.as_str() } else { v });
        }
        let o = c.output().unwrap();
        // GCS percent-encodes every character of the path but letters and digits.
        let head = percent_decode(&server.join().unwrap());
        // The first request of the store goes to the endpoint of the environment: the
        // partition's place, below the URL's bucket (container) and prefix.
        assert!(
            head.contains("monthly/HLSS30_2.0/year=2025/month=07/part-0.parquet"),
            "{output}: {head}"
        );
        assert!(head.contains("box/") || head.contains("bucket/"), "{head}");
        one_line_error(&o, 1, "403");
    }
}
