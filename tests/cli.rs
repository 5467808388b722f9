//! The command line's small things: exit codes and one-line errors of commands given
//! something that is not there, usage lines, and log lines without colours in files.

use crate::common::{hls_flow, one_line_error};
use crate::harvest::{day, synthetic};
use crate::run::stderr;
use hls_flow::Collection;

#[test]
fn an_unreachable_cmr_url_stops_run_with_exit_1_and_no_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.sqlite");
    let o = hls_flow()
        .args(["run", "20240515", "--no-progress", "--output"])
        .arg(dir.path().join("out"))
        .arg("--state")
        .arg(&state)
        // Retries of requests stay as they are: the check happens before any request.
        .args(["--cmr-url", "http://127.0.0.1:9", "--max-attempts", "5"])
        .output()
        .unwrap();
    let line = one_line_error(&o, 1, "cannot reach CMR at http://127.0.0.1:9");
    assert!(line.to_lowercase().contains("refused"), "{line}");
    assert!(!state.exists(), "no state file is made");
    assert!(
        o.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

#[test]
fn repartition_of_a_missing_source_names_it_the_source_and_makes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("no-such-daily");
    let dst = dir.path().join("monthly");
    let o = hls_flow()
        .args(["repartition", "--no-progress"])
        .arg(&src)
        .arg(&dst)
        .output()
        .unwrap();
    let line = one_line_error(&o, 2, "source");
    assert!(line.contains("no-such-daily"), "{line}");
    assert!(line.contains("no such folder"), "{line}");
    assert!(!line.contains("output"), "{line}");
    assert!(!src.exists(), "the source is not made");
    assert!(!dst.exists(), "the destination is not made");
}

#[test]
fn retry_failed_on_a_missing_state_file_is_an_error_and_makes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("missing.sqlite");
    let o = hls_flow()
        .args(["retry-failed", "--no-progress", "--state"])
        .arg(&state)
        .output()
        .unwrap();
    let line = one_line_error(&o, 2, "does not exist");
    assert!(line.contains("missing.sqlite"), "{line}");
    assert!(!state.exists(), "no state file is made");
    assert!(
        !dir.path().join("missing.sqlite.lock").exists(),
        "no lock file is made"
    );
}

#[test]
fn usage_lines_show_dates_then_out_once() {
    for (cmd, usage) in [
        (
            "generate-daily",
            "Usage: hls-flow generate-daily [OPTIONS] <DATES>... <OUT>",
        ),
        ("run", "Usage: hls-flow run [OPTIONS] <DATES>..."),
    ] {
        let o = hls_flow().args([cmd, "--help"]).output().unwrap();
        assert_eq!(o.status.code(), Some(0));
        let help = String::from_utf8_lossy(&o.stdout);
        let line = help
            .lines()
            .find(|l| l.starts_with("Usage:"))
            .unwrap_or_else(|| panic!("no usage line in {help}"));
        assert_eq!(line.trim_end(), usage, "{cmd}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_lines_in_a_file_carry_no_colours() {
    let emu = synthetic(day(2024, 5, 15), day(2024, 5, 15), 3).await;
    // An item whose id is not its granule's: its day fails, with a warning in the log.
    let granule = emu.granules(Collection::Hlss30, day(2024, 5, 15))[0]
        .granule_ur
        .clone();
    emu.edit_item(&granule, |item| item["id"] = "another-id".into());
    let dir = tempfile::tempdir().unwrap();
    // stderr is a pipe here, as it is a file for `2> log`.
    let o = hls_flow()
        .args(["generate-daily", "20240515"])
        .arg(dir.path().join("out"))
        .args([
            "--no-progress",
            "--collections",
            "HLSS30",
            "--max-attempts",
            "1",
        ])
        .args(["--cmr-url", &emu.base_url()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let log = stderr(&o);
    let warning = log
        .lines()
        .find(|l| l.contains("WARN"))
        .unwrap_or_else(|| panic!("a warning: {log}"));
    assert!(warning.contains("HLSS30 2024-05-15 failed"), "{warning}");
    assert!(!log.contains('\u{1b}'), "no escape sequences: {log:?}");
}

/// Every file below `dir`: relative path → (size, modification time).
fn files(
    dir: &std::path::Path,
) -> std::collections::BTreeMap<String, (u64, std::time::SystemTime)> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                let rel = entry
                    .path()
                    .strip_prefix(dir)
                    .unwrap()
                    .display()
                    .to_string();
                out.insert(rel, (meta.len(), meta.modified().unwrap()));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_of_a_finished_range_works_offline_and_writes_nothing() {
    let emu = synthetic(day(2025, 2, 1), day(2025, 2, 28), 1).await;
    let dir = tempfile::tempdir().unwrap();
    let (out, state) = (dir.path().join("out"), dir.path().join("state.sqlite"));
    let run = |cmr_url: &str| {
        hls_flow()
            .args(["run", "202502", "--no-progress", "--output"])
            .arg(&out)
            .arg("--state")
            .arg(&state)
            .args(["--cmr-url", cmr_url])
            .output()
            .unwrap()
    };
    let o = run(&emu.base_url());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let before = files(&out);
    assert!(
        before.keys().any(|k| k.contains("year=2025/month=02")),
        "{before:?}"
    );

    // Nothing listens on the port any more: CMR cannot be reached.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let o = run(&format!("http://{closed}"));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let summary = String::from_utf8_lossy(&o.stdout);
    assert!(summary.contains("0 done now"), "{summary}");
    assert!(summary.contains("0 failed"), "{summary}");
    assert_eq!(files(&out), before, "no file written");

    // With a day still to harvest, the same URL is refused at once (exit 1).
    let o = hls_flow()
        .args(["run", "20250301", "--no-progress", "--output"])
        .arg(&out)
        .arg("--state")
        .arg(&state)
        .args(["--cmr-url", &format!("http://{closed}")])
        .output()
        .unwrap();
    one_line_error(&o, 1, "cannot reach CMR");
    assert_eq!(files(&out), before, "no file written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_daily_over_days_already_on_disk_works_offline() {
    let emu = synthetic(day(2025, 2, 1), day(2025, 2, 3), 2).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("daily");
    let generate = |dates: &[&str], cmr_url: &str| {
        hls_flow()
            .arg("generate-daily")
            .args(dates)
            .arg(&out)
            .args(["--no-progress", "--cmr-url", cmr_url])
            .output()
            .unwrap()
    };
    let o = generate(&["20250201", "20250203"], &emu.base_url());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let before = files(&out);
    assert_eq!(before.len(), 6, "{before:?}");

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let closed = format!("http://{closed}");
    // Every day is on disk: skipped, CMR not asked, nothing written.
    let o = generate(&["20250201", "20250203"], &closed);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let summary = String::from_utf8_lossy(&o.stdout);
    assert!(summary.contains("0 succeeded, 6 skipped"), "{summary}");
    assert_eq!(files(&out), before, "no file written");

    // One day is not: CMR is needed, and cannot be reached (exit 1).
    let o = generate(&["20250201", "20250204"], &closed);
    one_line_error(&o, 1, "cannot reach CMR");
    assert_eq!(files(&out), before, "no file written");
}
