//! A throwaway MariaDB for tests: its own data directory and a free port, started once per test
//! binary and killed when the binary exits.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use strata_storage::testkit::free_port;

/// A running server.
#[derive(Debug)]
pub struct MariaDb {
    pub port: u16,
    dir: PathBuf,
    child: Mutex<Option<Child>>,
}

static SERVER: OnceLock<MariaDb> = OnceLock::new();
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

/// The binary's server, started on first use.
pub fn server() -> &'static MariaDb {
    SERVER.get_or_init(MariaDb::start)
}

/// A fresh, empty database on the binary's server: its URL.
pub fn fresh_database() -> String {
    let server = server();
    let name = format!("t{}", NEXT_DB.fetch_add(1, Ordering::Relaxed));
    server.sql(&format!("CREATE DATABASE {name}"));
    server.url(&name)
}

/// Data directories of earlier test binaries that have exited.
fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix("strata-mariadb-")
            && let Ok(pid) = pid.parse::<u32>()
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn need(bin: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/bin"] {
        let p = Path::new(dir).join(bin);
        if p.exists() {
            return p;
        }
    }
    panic!(
        "{bin} not found: the mysql engine's tests need a MariaDB server binary \
         (scripts/test.sh installs Debian's mariadb-server)"
    );
}

impl MariaDb {
    fn start() -> MariaDb {
        remove_stale_dirs();
        let dir = std::env::temp_dir().join(format!("strata-mariadb-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let data = dir.join("data");
        let out = Command::new(need("mariadb-install-db"))
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg("--auth-root-authentication-method=normal")
            .arg("--skip-test-db")
            .arg("--user=root")
            .output()
            .expect("run mariadb-install-db");
        assert!(
            out.status.success(),
            "mariadb-install-db failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let child = spawn_outliving_tests(
            Command::new(need("mariadbd"))
                .arg("--no-defaults")
                .arg(format!("--datadir={}", data.display()))
                .arg(format!("--port={port}"))
                .arg("--bind-address=127.0.0.1")
                .arg(format!("--socket={}", dir.join("sock").display()))
                .arg(format!("--pid-file={}", dir.join("pid").display()))
                .arg("--user=root")
                .arg("--skip-log-bin")
                .arg("--max-allowed-packet=256M")
                .arg("--innodb-buffer-pool-size=256M")
                .arg("--innodb-log-file-size=256M")
                .arg("--max-connections=1000")
                .stdout(Stdio::null())
                .stderr(
                    std::fs::File::create(dir.join("error.log"))
                        .map(Stdio::from)
                        .unwrap_or(Stdio::null()),
                ),
        );
        let server = MariaDb {
            port,
            dir,
            child: Mutex::new(Some(child)),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !server.try_sql("SELECT 1") {
            assert!(
                Instant::now() < deadline,
                "MariaDB did not start; see {}",
                server.dir.join("error.log").display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server.sql(
            "CREATE USER IF NOT EXISTS strata@'%' IDENTIFIED BY 'strata-test';
             GRANT ALL ON *.* TO strata@'%'",
        );
        server
    }

    /// URL of database `db` for the test user.
    pub fn url(&self, db: &str) -> String {
        format!("mysql://strata:strata-test@127.0.0.1:{}/{db}", self.port)
    }

    fn try_sql(&self, sql: &str) -> bool {
        Command::new(need("mariadb"))
            .arg("--no-defaults")
            .arg(format!("--socket={}", self.dir.join("sock").display()))
            .arg("-uroot")
            .arg("-e")
            .arg(sql)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Runs SQL as root; panics on failure.
    pub fn sql(&self, sql: &str) {
        assert!(self.try_sql(sql), "MariaDB refused: {sql}");
    }

    /// Stops the server abruptly (SIGKILL), as an outage.
    #[allow(dead_code)]
    pub fn kill(&self) {
        if let Some(mut c) = self.child.lock().unwrap().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Spawns `cmd` from a thread that lives as long as the process, with a parent-death signal,
/// so the child dies with the test binary however it exits.
fn spawn_outliving_tests(cmd: &mut Command) -> Child {
    strata_storage::testkit::spawn_outliving_tests(std::mem::replace(cmd, Command::new("true")))
}
