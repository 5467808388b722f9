//! Helpers shared by the integration tests.

#![allow(dead_code)]

use assert_cmd::Command;
use std::process::Output;

/// The `hls-flow` binary, with no HLS_FLOW_* variables from the environment.
pub fn hls_flow() -> Command {
    let mut cmd = Command::cargo_bin("hls-flow").expect("the hls-flow binary is built");
    cmd.env_remove("HLS_FLOW_CMR_URL")
        .env_remove("HLS_FLOW_CLIENT_ID")
        .env_remove("HLS_FLOW_LOG");
    cmd
}

/// Asserts that a command failed with `code` and exactly one line on stderr, starting
/// `error:` and containing `needle`; returns the line.
pub fn one_line_error(out: &Output, code: i32, needle: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(
        out.status.code(),
        Some(code),
        "exit code; stderr: {stderr}; stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line on stderr, got: {stderr}");
    assert!(lines[0].starts_with("error"), "{stderr}");
    assert!(
        lines[0].to_lowercase().contains(&needle.to_lowercase()),
        "{needle:?} not in {stderr}"
    );
    assert!(!stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"));
    lines[0].to_string()
}
