//! Outputs on an S3-compatible server (moto's, started on loopback by the tests), configured
//! from the `AWS_*` environment of the child process only.

use crate::common::{Moto, hls_flow};
use crate::harvest::{day, read_all, synthetic};
use crate::run::{emulator_ids, paths, stderr};
use futures::TryStreamExt;
use hls_flow::Collection;
use object_store::aws::AmazonS3Builder;
use object_store::{ObjectStore, ObjectStoreExt};
use std::collections::{BTreeMap, BTreeSet};

/// Every object under `prefix` of `bucket`: path → (e-tag, last modified, bytes).
async fn objects(
    moto: &Moto,
    bucket: &str,
    prefix: &str,
) -> BTreeMap<String, (Option<String>, String, bytes::Bytes)> {
    let store = AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_endpoint(&moto.endpoint)
        .with_allow_http(true)
        .with_access_key_id("testing")
        .with_secret_access_key("testing")
        .with_region("us-east-1")
        .build()
        .unwrap();
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
    let run = |output: &str, state: &std::path::Path| {
        let mut c = hls_flow();
        c.args([
            "run",
            "202502",
            "--no-progress",
            "--cmr-url",
            &emu.base_url(),
        ])
        .args(["--retry-min-delay-ms", "5", "--retry-max-delay-ms", "20"])
        .args(["--output", output])
        .arg("--state")
        .arg(state);
        for (k, v) in moto.env() {
            c.env(k, v);
        }
        c.output().unwrap()
    };
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
    let tags = |m: &BTreeMap<String, (Option<String>, String, bytes::Bytes)>| {
        m.iter()
            .map(|(k, (e, t, _))| (k.clone(), e.clone(), t.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(tags(&again), tags(&written));
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
