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

/// The Python interpreter of the test venv, which holds the real readers and servers the tests
/// use (`tests/requirements.txt`: moto's S3 server, pyarrow, DuckDB, GeoPandas,
/// stac-geoparquet, pystac, pystac-client).
///
/// `HLS_FLOW_TEST_VENV` names an existing venv; otherwise one is made once, on first use, in
/// the build's temporary folder (`target/tmp/test-venv`, shared by every test run of this
/// build), with `python3 -m venv` and pip. Creation holds a file lock, so concurrent test
/// processes wait for each other instead of racing. Panics, saying why, when it cannot be
/// made: these tests need the real components and are never skipped silently.
pub fn python() -> std::path::PathBuf {
    static PYTHON: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    PYTHON.get_or_init(make_venv).clone()
}

fn make_venv() -> std::path::PathBuf {
    use std::path::PathBuf;
    use std::process::Command as Std;
    if let Some(dir) = std::env::var_os("HLS_FLOW_TEST_VENV") {
        let py = PathBuf::from(dir).join("bin/python");
        assert!(
            py.exists(),
            "HLS_FLOW_TEST_VENV: no {} (create the venv with: python3 -m venv DIR && DIR/bin/pip install -r tests/requirements.txt)",
            py.display()
        );
        return py;
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("test-venv");
    let requirements = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/requirements.txt");
    let wanted = std::fs::read_to_string(requirements).expect("tests/requirements.txt");
    let marker = dir.join("hls-flow-requirements.txt");
    let py = dir.join("bin/python");
    std::fs::create_dir_all(dir.parent().expect("a parent")).expect("the build's tmp folder");
    let lock = std::fs::File::create(dir.with_extension("lock")).expect("the venv lock file");
    lock.lock().expect("lock the venv");
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(wanted.as_str()) && py.exists() {
        return py;
    }
    let run = |cmd: &mut Std, what: &str| {
        let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(
            out.status.success(),
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(
        Std::new("python3").args(["-m", "venv"]).arg(&dir),
        "python3 -m venv (on Debian: apt-get install python3-venv)",
    );
    run(
        Std::new(&py).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
            requirements,
        ]),
        "pip install -r tests/requirements.txt",
    );
    std::fs::write(&marker, &wanted).expect("write the venv marker");
    py
}

/// moto's server app behind a lock: one request at a time. Stock `moto.server` handles
/// requests in threads and checks `If-None-Match: *` apart from the write it guards, so two
/// concurrent conditional writes of one key can both succeed (of 20 pairs of concurrent
/// conditional `CompleteMultipartUpload`s, all 20 did), where S3 lets one win. Applied one
/// at a time, each request is atomic as on S3, and create-only publishing can be tested.
const MOTO_SERVER: &str = "\
import os, sys, threading
from werkzeug.serving import run_simple
os.environ.setdefault('MOTO_PORT', sys.argv[2])
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
app = DomainDispatcherApplication(create_backend_app)
lock = threading.Lock()
def one_at_a_time(environ, start_response):
    with lock:
        return list(app(environ, start_response))
run_simple(sys.argv[1], int(sys.argv[2]), one_at_a_time, threaded=True, request_handler=MotoRequestHandler)
";

/// A moto S3 server (from the test venv, see [`python`]) on a free loopback port, handling
/// one request at a time ([`MOTO_SERVER`]), killed on drop. Clients must be given its
/// endpoint and the fake keys of [`Moto::env`].
pub struct Moto {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
}

impl Moto {
    /// Starts a server and waits until it answers.
    pub fn start() -> Moto {
        Moto::start_with_env(&[])
    }

    /// Starts a server with moto settings from `env` (e.g. `S3_UPLOAD_PART_MIN_SIZE`, the
    /// smallest part but the last of a multipart upload, 5 MiB as on AWS by default).
    pub fn start_with_env(env: &[(&str, &str)]) -> Moto {
        let python = python();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = std::process::Command::new(&python)
            .args(["-c", MOTO_SERVER, "127.0.0.1"])
            .arg(port.to_string())
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting moto's server with {}: {e}", python.display()));
        let moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        for _ in 0..300 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return moto;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("moto's server did not listen on {}", moto.endpoint);
    }

    /// The environment of a client of this server: endpoint, fake keys, region, plain
    /// HTTP, and no instance-metadata lookup.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }

    /// Creates a bucket (moto's REST API: a PUT on `/{bucket}`).
    pub fn create_bucket(&self, bucket: &str) {
        let script = format!(
            "import urllib.request as u; u.urlopen(u.Request('{}/{bucket}', method='PUT')).read()",
            self.endpoint
        );
        let out = std::process::Command::new(python())
            .args(["-c", &script])
            .output()
            .expect("python");
        assert!(
            out.status.success(),
            "creating bucket {bucket}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Moto {
    /// Python that defines `s3`, a boto3 client of this server, then runs `code`.
    pub fn boto3_script(&self, code: &str) -> String {
        format!(
            "import boto3, sys, time\n\
             s3 = boto3.client('s3', endpoint_url='{}', aws_access_key_id='testing', \
             aws_secret_access_key='testing', region_name='us-east-1')\n{code}",
            self.endpoint
        )
    }

    /// Runs [`boto3_script`](Moto::boto3_script) and returns its stdout.
    pub fn boto3(&self, code: &str) -> String {
        let out = std::process::Command::new(python())
            .args(["-c", &self.boto3_script(code)])
            .output()
            .expect("python");
        assert!(
            out.status.success(),
            "boto3 script failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// The keys of the incomplete multipart uploads under `prefix` of `bucket`, sorted.
    pub fn incomplete_uploads(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let out = self.boto3(&format!(
            "r = s3.list_multipart_uploads(Bucket='{bucket}', Prefix='{prefix}')\n\
             print('\\n'.join(sorted(u['Key'] for u in r.get('Uploads', []))))"
        ));
        out.lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
