//! Bad input on the command line: one line on stderr, exit code 2 (usage) or 1 (runtime),
//! nothing written, never a panic.

use crate::common::{hls_flow, one_line_error};

#[test]
fn generate_daily_rejects_bad_dates_ranges_boxes_and_collections() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let out = out.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["20240230", out], "20240230"),
        (&["202413", out], "202413"),
        (&["20240520", "20240510", out], "after"),
        (&["2024051", out], "2024051"),
        (
            &["20240515", out, "--bbox=10,0,5,1"],
            "west is greater than east",
        ),
        (&["20240515", out, "--bbox=0,-91,1,1"], "latitudes"),
        (&["20240515", out, "--bbox", "1,2,3"], "four numbers"),
        (
            &["20240515", out, "--collections", "HLSX30"],
            "unknown collection",
        ),
        (&["20240515", out, "--cmr-url", "ftp://x"], "http"),
    ];
    for (args, needle) in cases {
        let o = hls_flow()
            .arg("generate-daily")
            .args(*args)
            .arg("--no-progress")
            .output()
            .unwrap();
        one_line_error(&o, 2, needle);
    }
    assert!(!dir.path().join("out").join("HLSL30_2.0").exists());
}

#[test]
fn generate_daily_rejects_an_unwritable_output() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let o = hls_flow()
        .args([
            "generate-daily",
            "20240515",
            file.to_str().unwrap(),
            "--no-progress",
        ])
        .output()
        .unwrap();
    one_line_error(&o, 2, "not a folder");
    let o = hls_flow()
        .args([
            "generate-daily",
            "20240515",
            "/proc/hls-flow-cannot-write-here",
            "--no-progress",
        ])
        .output()
        .unwrap();
    one_line_error(&o, 2, "cannot be used");
}

#[test]
fn clap_usage_errors_exit_2_and_help_exits_0() {
    let o = hls_flow()
        .args(["generate-daily", "20240515"])
        .output()
        .unwrap();
    one_line_error(&o, 2, "not provided");
    let o = hls_flow().args(["no-such-command"]).output().unwrap();
    one_line_error(&o, 2, "'no-such-command'");
    let o = hls_flow()
        .args(["search", "--output", ".", "--limit", "many"])
        .output()
        .unwrap();
    one_line_error(&o, 2, "invalid value 'many' for '--limit <N>'");
    for cmd in ["generate-daily", "run", "status", "retry-failed"] {
        let o = hls_flow().args([cmd, "--help"]).output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{cmd} --help");
        assert!(String::from_utf8_lossy(&o.stdout).contains("Usage"));
    }
}

#[test]
fn run_rejects_damaged_foreign_and_missing_state_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let junk = dir.path().join("junk.sqlite");
    std::fs::write(&junk, "definitely not sqlite, just text in a file").unwrap();
    let o = hls_flow()
        .args(["run", "20240515", "--no-progress", "--output"])
        .arg(&out)
        .arg("--state")
        .arg(&junk)
        .output()
        .unwrap();
    one_line_error(&o, 2, "not an SQLite database");
    let o = hls_flow()
        .args(["status", "--state"])
        .arg(dir.path().join("none.sqlite"))
        .output()
        .unwrap();
    one_line_error(&o, 2, "no such file");
    let o = hls_flow()
        .args(["status", "--state"])
        .arg(&junk)
        .output()
        .unwrap();
    one_line_error(&o, 2, "not an SQLite database");

    // Another program's SQLite database, and an hls-flow state of another schema version.
    let other = dir.path().join("other.sqlite");
    rusqlite::Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE t (x)")
        .unwrap();
    let newer = dir.path().join("newer.sqlite");
    drop(hls_flow::engine::checkpoint::sqlite::StateStore::open_exclusive(&newer).unwrap());
    rusqlite::Connection::open(&newer)
        .unwrap()
        .execute_batch("PRAGMA user_version = 99")
        .unwrap();
    for (state, why) in [
        (&other, "not an hls-flow state file"),
        (&newer, "schema version 99"),
    ] {
        let run = hls_flow()
            .args(["run", "20240515", "--no-progress", "--output"])
            .arg(&out)
            .arg("--state")
            .arg(state)
            .output()
            .unwrap();
        one_line_error(&run, 2, why);
        let status = hls_flow()
            .args(["status", "--state"])
            .arg(state)
            .output()
            .unwrap();
        one_line_error(&status, 2, why);
    }
}

#[test]
fn run_rejects_bad_workflow_files_naming_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let wf = dir.path().join("wf.toml");
    std::fs::write(
        &wf,
        "collections = [\"HLSL30\"]\n[concurrency]\ndays = 2\nfetches = 9\n",
    )
    .unwrap();
    let o = hls_flow()
        .args(["run", "20240515", "--no-progress", "--workflow"])
        .arg(&wf)
        .arg("--state")
        .arg(dir.path().join("s.sqlite"))
        .output()
        .unwrap();
    let line = one_line_error(&o, 2, "line 4");
    assert!(line.contains("fetches"), "{line}");
    std::fs::write(&wf, "[retry]\ntask_attempts = \"many\"\n").unwrap();
    let o = hls_flow()
        .args(["run", "20240515", "--no-progress", "--workflow"])
        .arg(&wf)
        .output()
        .unwrap();
    one_line_error(&o, 2, "line 2");
    assert!(!dir.path().join("s.sqlite").exists(), "nothing was written");
}

#[test]
fn an_unreachable_cmr_is_one_error_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let o = hls_flow()
        .args([
            "generate-daily",
            "20240515",
            dir.path().join("out").to_str().unwrap(),
            "--no-progress",
            "--collections",
            "HLSL30",
            "--cmr-url",
            "http://127.0.0.1:9",
            "--max-attempts",
            "2",
            "--retry-min-delay-ms",
            "1",
        ])
        .output()
        .unwrap();
    one_line_error(&o, 1, "cannot reach CMR at http://127.0.0.1:9");
    assert!(o.stdout.is_empty(), "no day was attempted");
}
