//! Bulk mode (`--source echo10`): items built from CMR's ECHO10 records equal the published
//! `_stac.json` items, field by field, for every granule; and far fewer requests.

use crate::harvest::{day, options, read_all, synthetic};
use futures::StreamExt;
use hls_flow::Collection;
use hls_flow::api::{DailyOptions, Outcome, process_date_range};
use hls_flow::period::{DayRange, day_window};
use hls_flow::source::cmr::{CmrClient, GranuleQuery};
use hls_flow::write::harvest::Source;
use hls_flow::write::output::Output;

#[tokio::test]
async fn echo10_items_equal_the_served_items_for_every_granule_of_a_day() {
    let emu = synthetic(day(2024, 7, 14), day(2024, 7, 16), 300).await;
    let (start, end) = day_window(day(2024, 7, 15));
    let http = reqwest::Client::new();
    let cmr = CmrClient::new(http.clone(), &emu.base_url(), "test", Default::default(), 2)
        .with_page_size(128);
    for c in Collection::ALL {
        let q = GranuleQuery {
            collection: c,
            start,
            end,
            bbox: None,
        };
        let mut compared = 0;
        let pages = cmr.echo10_pages(&q);
        futures::pin_mut!(pages);
        while let Some(page) = pages.next().await {
            for rec in page.unwrap().records {
                let (meta, missing) = rec.record.unwrap();
                assert!(missing.is_empty(), "{}: {missing:?}", meta.granule_ur);
                let built = hls_flow::source::hls::to_stac_item(&meta);
                let url = format!(
                    "{}/lp-prod-public/{}/{id}/{id}_stac.json",
                    emu.base_url(),
                    c.bucket_folder(),
                    id = meta.granule_ur
                );
                let served: serde_json::Value =
                    http.get(&url).send().await.unwrap().json().await.unwrap();
                // Field by field, in the published order.
                assert_eq!(
                    serde_json::to_string(&built).unwrap(),
                    serde_json::to_string(&served).unwrap(),
                    "{}",
                    meta.granule_ur
                );
                compared += 1;
            }
        }
        let in_day = emu.granules(c, day(2024, 7, 15)).len();
        assert!(
            compared >= in_day,
            "{c}: compared {compared}, day has {in_day}"
        );
    }
}

#[tokio::test]
async fn both_sources_write_the_same_daily_files_with_far_fewer_requests() {
    let emu = synthetic(day(2024, 7, 1), day(2024, 7, 3), 200).await;
    let range = DayRange::parse(&["20240702"]).unwrap();
    let mut written = Vec::new();
    let mut requests = Vec::new();
    for source in [Source::StacJson, Source::Echo10] {
        let dir = tempfile::tempdir().unwrap();
        let out = Output::parse(dir.path().to_str().unwrap()).unwrap();
        let before = emu.counts();
        let summary = process_date_range(
            range,
            &out,
            &DailyOptions {
                source,
                ..options(&emu)
            },
        )
        .await
        .unwrap();
        assert!(
            summary
                .outcomes
                .iter()
                .all(|o| o.status == Outcome::Succeeded)
        );
        let after = emu.counts();
        requests.push(after.total - before.total);
        let mut items: Vec<(String, serde_json::Value)> = read_all(dir.path())
            .into_iter()
            .map(|(id, (_, v))| (id, v))
            .collect();
        items.sort_by(|a, b| a.0.cmp(&b.0));
        written.push(items);
    }
    assert_eq!(written[0].len(), written[1].len());
    assert_eq!(
        written[0], written[1],
        "the two sources give identical files"
    );
    let granules: usize = Collection::ALL
        .iter()
        .map(|c| emu.granules(*c, day(2024, 7, 2)).len())
        .sum();
    assert!(
        requests[0] as usize > granules,
        "stac-json: one request per granule"
    );
    assert!(
        requests[1] <= 4,
        "echo10: a page per collection, got {}",
        requests[1]
    );
}

#[tokio::test]
async fn missing_optional_attributes_are_counted_and_missing_required_ones_fail_the_day() {
    let emu = synthetic(day(2024, 7, 1), day(2024, 7, 1), 30).await;
    let range = DayRange::parse(&["20240701"]).unwrap();
    let opts = DailyOptions {
        source: Source::Echo10,
        collections: vec![Collection::Hlsl30],
        ..options(&emu)
    };
    let granules = emu.granules(Collection::Hlsl30, day(2024, 7, 1));

    emu.set_faults(hls_flow_emulator::Faults {
        echo10_without_cloud_cover: true,
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let out = Output::parse(dir.path().to_str().unwrap()).unwrap();
    let summary = process_date_range(range, &out, &opts).await.unwrap();
    let o = &summary.outcomes[0];
    assert_eq!(o.status, Outcome::Succeeded);
    assert!(o.missing_optional >= granules.len() as u64, "{o:?}");
    let items = read_all(dir.path());
    assert_eq!(items.len(), granules.len());
    assert!(
        items
            .values()
            .all(|(_, v)| v["properties"].get("eo:cloud_cover").is_none())
    );

    emu.set_faults(hls_flow_emulator::Faults {
        echo10_broken_record: true,
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let out = Output::parse(dir.path().to_str().unwrap()).unwrap();
    let summary = process_date_range(range, &out, &opts).await.unwrap();
    let o = &summary.outcomes[0];
    assert_eq!(o.status, Outcome::Failed, "{o:?}");
    assert_eq!(o.missing.len(), 1, "{o:?}");
    assert!(o.missing[0].1.contains("GranuleUR"), "{o:?}");
    assert!(read_all(dir.path()).is_empty(), "nothing published");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_is_chosen_by_flag_or_workflow() {
    let emu = synthetic(day(2024, 7, 1), day(2024, 7, 1), 20).await;
    let dir = tempfile::tempdir().unwrap();
    let o = crate::common::hls_flow()
        .args(["generate-daily", "20240701"])
        .arg(dir.path().join("daily"))
        .args([
            "--source",
            "echo10",
            "--no-progress",
            "--cmr-url",
            &emu.base_url(),
        ])
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(emu.counts().item_fetches, 0);
    assert!(emu.counts().echo10_pages >= 2);

    let wf = dir.path().join("bulk.toml");
    std::fs::write(&wf, "source = \"echo10\"\ncollections = [\"HLSS30\"]\n").unwrap();
    let o = crate::common::hls_flow()
        .args([
            "run",
            "20240701",
            "--no-progress",
            "--cmr-url",
            &emu.base_url(),
        ])
        .arg("--workflow")
        .arg(&wf)
        .arg("--output")
        .arg(dir.path().join("cache"))
        .arg("--state")
        .arg(dir.path().join("s.sqlite"))
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(emu.counts().item_fetches, 0, "no LP DAAC request at all");
    assert_eq!(
        read_all(&dir.path().join("cache")).len(),
        emu.granules(Collection::Hlss30, day(2024, 7, 1)).len()
    );

    let o = crate::common::hls_flow()
        .args(["generate-daily", "20240701"])
        .arg(dir.path().join("x"))
        .args(["--source", "bogus"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}
