//! A throwaway S3-compatible server for tests (`strata-test-s3`, s3s-fs's backend) over its own
//! directory on a free port, started once per test binary and killed when the binary exits.

#![allow(dead_code)]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use strata_s3::S3Options;
use strata_storage::testkit::{free_port, spawn_outliving_tests};

pub const ACCESS_KEY: &str = "strata-test";
pub const SECRET_KEY: &str = "strata-test-secret";

/// A running server.
#[derive(Debug)]
pub struct S3Server {
    pub port: u16,
    pub root: PathBuf,
    child: Mutex<Option<Child>>,
}

static SERVER: OnceLock<S3Server> = OnceLock::new();
static NEXT_BUCKET: AtomicU32 = AtomicU32::new(0);

/// The binary's server, started on first use.
pub fn server() -> &'static S3Server {
    SERVER.get_or_init(S3Server::start)
}

/// Options for a fresh, empty bucket on the binary's server.
pub fn fresh_bucket() -> S3Options {
    let server = server();
    let name = format!("bucket-{}", NEXT_BUCKET.fetch_add(1, Ordering::Relaxed));
    std::fs::create_dir_all(server.root.join(&name)).unwrap();
    server.options(&name)
}

/// The test server binary: `$STRATA_TEST_S3`, else `~/.cache/strata/tools/bin/strata-test-s3`
/// (where scripts/test.sh installs it from tools/s3-server), else on `PATH`.
pub fn server_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("STRATA_TEST_S3") {
        return PathBuf::from(p);
    }
    let mut candidates = Vec::new();
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(Path::new(&home).join(".cache/strata/tools/bin/strata-test-s3"));
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("strata-test-s3")));
    }
    candidates.into_iter().find(|p| p.exists()).expect(
        "strata-test-s3 not found: the s3 engine's tests need an S3-compatible server; \
         scripts/test.sh installs it (cargo install --locked --path tools/s3-server)",
    )
}

/// Directories of earlier test binaries that have exited.
fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(rest) = name.strip_prefix("strata-s3s-")
            && let Ok(pid) = rest.split('-').next().unwrap_or(rest).parse::<u32>()
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A server of its own, for a test that stops and starts it; stopped when dropped.
pub fn own_server(name: &str) -> S3Server {
    S3Server::start_in(
        std::env::temp_dir().join(format!("strata-s3s-{}-{name}", std::process::id())),
    )
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.pause();
    }
}

impl S3Server {
    /// A fresh, empty bucket on this server.
    pub fn bucket(&self, name: &str) -> S3Options {
        std::fs::create_dir_all(self.root.join(name)).unwrap();
        self.options(name)
    }

    fn start() -> S3Server {
        remove_stale_dirs();
        Self::start_in(std::env::temp_dir().join(format!("strata-s3s-{}", std::process::id())))
    }

    fn start_in(root: PathBuf) -> S3Server {
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let port = free_port();
        let server = S3Server {
            port,
            root,
            child: Mutex::new(None),
        };
        server.resume();
        server
    }

    /// Options for `bucket` on this server.
    pub fn options(&self, bucket: &str) -> S3Options {
        let mut o = S3Options::new(bucket);
        o.endpoint = Some(format!("http://127.0.0.1:{}", self.port));
        o.access_key = Some(ACCESS_KEY.into());
        o.secret_key = Some(SECRET_KEY.into());
        o.region = Some("us-east-1".into());
        o
    }

    /// Stops the server (an outage); the data stays.
    pub fn pause(&self) {
        if let Some(mut c) = self.child.lock().unwrap().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server (again) on the same port and directory.
    pub fn resume(&self) {
        let mut child = self.child.lock().unwrap();
        if child.is_some() {
            return;
        }
        let mut cmd = Command::new(server_binary());
        cmd.arg("--host")
            .arg("127.0.0.1")
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--access-key")
            .arg(ACCESS_KEY)
            .arg("--secret-key")
            .arg(SECRET_KEY)
            .arg(&self.root)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        *child = Some(spawn_outliving_tests(cmd));
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "strata-test-s3 did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
