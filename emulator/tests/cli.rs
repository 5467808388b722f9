//! The `hls-flow-emulator` binary: its arguments, its address line, and faults set on its
//! command line.

/// The binary under test (built by cargo for this package's integration tests).
const BIN: &str = env!("CARGO_BIN_EXE_hls-flow-emulator");

/// The HLSL30 collection's concept id.
const L30: &str = "C2021957657-LPCLOUD";

#[test]
fn emulator_binary_rejects_bad_arguments() {
    let out = assert_cmd::Command::new(BIN)
        .args(["--start", "2024-05-31", "--end", "2024-05-01"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("before"), "{err}");
    let out = assert_cmd::Command::new(BIN)
        .args(["--replay", "--seed", "3"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8(out.stderr).unwrap().lines().count(), 1);
    for (args, why) in [
        (
            &["--replay", "--faults", "418"][..],
            "unknown fault \"418\"",
        ),
        (&["--replay", "--fault-rate", "1.5"][..], "not within 0..=1"),
    ] {
        let out = assert_cmd::Command::new(BIN).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(why), "{err}");
    }
    let out = assert_cmd::Command::new(BIN)
        .arg("--help")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .contains("--granules-per-day")
    );
}

/// Starts the emulator binary with `args` and answers the status and `CMR-Hits` of one
/// search.
fn binary_search(args: &[&str]) -> (u16, Option<String>) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(BIN)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();
    assert!(base.starts_with("http://127.0.0.1:"), "{line}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let answer = rt.block_on(async {
        let r = reqwest::get(format!(
            "{base}/search/granules.json?collection_concept_id[]={L30}"
        ))
        .await
        .unwrap();
        let hits = r
            .headers()
            .get("cmr-hits")
            .map(|h| h.to_str().unwrap().to_string());
        (r.status().as_u16(), hits)
    });
    child.kill().unwrap();
    child.wait().unwrap();
    answer
}

#[test]
fn emulator_binary_prints_its_address_and_serves() {
    assert_eq!(
        binary_search(&["--replay", "--port", "0"]),
        (200, Some("12".to_string()))
    );
    // Faults from the command line.
    assert_eq!(
        binary_search(&["--replay", "--fault-rate", "1", "--faults", "502,504"]),
        (502, None)
    );
}
