//! A real PostgreSQL for tests: Debian's `initdb` and `pg_ctl` (the `postgresql` package) in a
//! temporary folder, on a free loopback port, trust authentication on 127.0.0.1. One server
//! per test binary, started on first use; a guard process stops it and removes its folder
//! when the test process ends. As root (initdb refuses root), the server runs as the
//! `postgres` user.
//!
//! Shared by the library's checkpoint suite and the integration tests (`#[path]`).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A running server.
#[derive(Debug)]
pub struct PgServer {
    /// Its data folder.
    pub dir: PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
    bin: PathBuf,
}

/// The folder of Debian's PostgreSQL binaries (the newest), or of `pg_ctl` on the `PATH`.
fn bin_dir() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("pg_ctl").exists() && b.join("initdb").exists())
        .collect();
    found.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    if let Some(b) = found.pop() {
        return Some(b);
    }
    let out = Command::new("sh")
        .args(["-c", "command -v pg_ctl"])
        .output()
        .ok()?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!path.is_empty()).then(|| PathBuf::from(path).parent().map(Path::to_path_buf))?
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `bin/<tool> args…`, as the `postgres` user when we are root.
fn tool(bin: &Path, name: &str, root: bool) -> Command {
    let exe = bin.join(name);
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(exe);
        c
    } else {
        Command::new(exe)
    }
}

fn run(mut c: Command, what: &str) -> Result<(), String> {
    let out = c.output().map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn start() -> Result<PgServer, String> {
    let bin = bin_dir().ok_or(
        "PostgreSQL not found (no /usr/lib/postgresql/*/bin/pg_ctl, no pg_ctl on the PATH)",
    )?;
    let root = is_root();
    let dir = tempfile::Builder::new()
        .prefix("hls-flow-pg-")
        .tempdir()
        .map_err(|e| format!("temporary folder: {e}"))?
        .keep();
    if root {
        run(
            {
                let mut c = Command::new("chown");
                c.arg("-R").arg("postgres:postgres").arg(&dir);
                c
            },
            "chown",
        )?;
    }
    let data = dir.join("data");
    let mut init = tool(&bin, "initdb", root);
    init.arg("-D")
        .arg(&data)
        .args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"]);
    run(init, "initdb")?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("a free port: {e}"))?
        .port();
    let mut start = tool(&bin, "pg_ctl", root);
    start
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(dir.join("log"))
        .arg("-o")
        .arg(format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300",
            dir.display()
        ))
        .args(["-w", "-t", "60", "start"]);
    run(start, "pg_ctl start")?;
    // The guard: when this process ends, stop the server and remove its folder.
    let stop = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {runas}{pg_ctl} -D {data} -m immediate stop >/dev/null 2>&1; rm -rf {dir}",
        pid = std::process::id(),
        runas = if root { "runuser -u postgres -- " } else { "" },
        pg_ctl = bin.join("pg_ctl").display(),
        data = data.display(),
        dir = dir.display(),
    );
    Command::new("setsid")
        .args(["sh", "-c", &stop])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("the guard process: {e}"))?;
    Ok(PgServer { dir, port, bin })
}

/// The shared server, started on first use; `None` (with the reason printed) when
/// PostgreSQL is not installed. Under CI (`CI` set), where `.ci/run` installs it, a missing
/// PostgreSQL fails instead.
pub fn server() -> Option<&'static PgServer> {
    static SERVER: OnceLock<Result<PgServer, String>> = OnceLock::new();
    match SERVER.get_or_init(start) {
        Ok(s) => Some(s),
        Err(why) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "PostgreSQL is needed under CI (.ci/run installs it): {why}"
            );
            eprintln!(
                "skipping a PostgreSQL test: {why}; install Debian's postgresql package to run it"
            );
            None
        }
    }
}

/// A new empty database on the shared server: its URL, or `None` when there is no server.
pub fn database() -> Option<String> {
    static N: AtomicUsize = AtomicUsize::new(0);
    let s = server()?;
    let name = format!("t_{}", N.fetch_add(1, Ordering::SeqCst));
    let mut c = Command::new(s.bin.join("psql"));
    c.args([
        "-h",
        "127.0.0.1",
        "-U",
        "postgres",
        "-d",
        "postgres",
        "-q",
        "-c",
    ])
    .arg(format!("CREATE DATABASE {name}"))
    .arg("-p")
    .arg(s.port.to_string());
    run(c, "CREATE DATABASE").unwrap_or_else(|e| panic!("{e}"));
    Some(format!("postgres://postgres@127.0.0.1:{}/{name}", s.port))
}
