//! PostgreSQL for the tests: the server `make test-e2e` started (`OAUTH2_TEST_POSTGRES_DIR`,
//! the directory it gave `scripts/pg.sh start`), or servers the tests start themselves with
//! `scripts/pg.sh` in a temp dir; and a fresh database per stack on either.
//!
//! A server the tests started is never left behind: dropping its [`PgServer`] stops it, an
//! `atexit` handler stops every one still running when the test process exits (the shared
//! server lives in a static, which is never dropped), and a watchdog process stops it and
//! removes its directory should the test process die without running either (SIGKILL, abort).

use crate::paths;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

/// The directory of the server `make test-e2e` started; set, the suite runs on PostgreSQL.
pub const DIR_ENV: &str = "OAUTH2_TEST_POSTGRES_DIR";
/// How many token-service replicas each stack runs in PostgreSQL mode (default 2).
pub const REPLICAS_ENV: &str = "OAUTH2_TEST_REPLICAS";

/// Whether the suite runs on PostgreSQL (`OAUTH2_TEST_POSTGRES_DIR` set) rather than SQLite.
pub fn postgres_mode() -> bool {
    std::env::var_os(DIR_ENV).is_some_and(|d| !d.is_empty())
}

/// Replicas per stack in PostgreSQL mode: `OAUTH2_TEST_REPLICAS`, 2 unless set.
pub fn replicas_from_env() -> usize {
    match std::env::var(REPLICAS_ENV) {
        Ok(n) => n
            .trim()
            .parse()
            .ok()
            .filter(|n| *n >= 1)
            .unwrap_or_else(|| panic!("{REPLICAS_ENV}={n}: a number of replicas, 1 or more")),
        Err(_) => 2,
    }
}

/// One PostgreSQL server (`scripts/pg.sh`), reached on 127.0.0.1 with trust authentication.
pub struct PgServer {
    dir: PathBuf,
    port: u16,
    /// Started by these tests (so ours to stop), in this temp dir.
    owned: Option<tempfile::TempDir>,
}

impl PgServer {
    /// The server `make test-e2e` started, when `OAUTH2_TEST_POSTGRES_DIR` names one.
    pub fn from_env() -> Option<PgServer> {
        let dir = PathBuf::from(std::env::var_os(DIR_ENV).filter(|d| !d.is_empty())?);
        let port = read_port(&dir).unwrap_or_else(|| {
            panic!(
                "{DIR_ENV}={}: no {}/port; start the server with scripts/pg.sh start DIR",
                dir.display(),
                dir.display()
            )
        });
        Some(PgServer {
            dir,
            port,
            owned: None,
        })
    }

    /// A server of this test process's own, on a free port, in a new temp dir: stopped when
    /// dropped (or at the latest when the test process exits, see the module's comment).
    pub fn start() -> PgServer {
        let tmp = tempfile::Builder::new()
            .prefix("e2e-pg-")
            .tempdir()
            .expect("a temp dir for PostgreSQL");
        let dir = tmp.path().to_path_buf();
        register(&dir);
        let out = pg_sh(&["start", &dir.display().to_string()]);
        let port = read_port(&dir).unwrap_or_else(|| panic!("pg.sh start printed {out}"));
        PgServer {
            dir,
            port,
            owned: Some(tmp),
        }
    }

    /// The suite's server: `make test-e2e`'s when set, else one started on first use and shared
    /// by every test of this process (stopped when the process exits).
    pub fn shared() -> &'static PgServer {
        static SHARED: OnceLock<PgServer> = OnceLock::new();
        SHARED.get_or_init(|| PgServer::from_env().unwrap_or_else(PgServer::start))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A new, empty database owned by the service's role, with a name no other stack uses.
    pub fn create_database(&self) -> PgDatabase {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let name = format!(
            "e2e_{}_{}_{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let database = PgDatabase {
            url: format!("postgres://oauth2@127.0.0.1:{}/{name}", self.port),
            name,
            port: self.port,
        };
        database
            .psql_as_superuser(
                "postgres",
                &format!("CREATE DATABASE \"{}\" OWNER oauth2", database.name),
            )
            .unwrap_or_else(|e| panic!("creating database {}: {e}", database.name));
        database
    }

    /// `pg_ctl stop -m fast`: every connection is cut and new ones are refused until
    /// [`PgServer::restart`].
    pub fn stop(&self) {
        pg_sh(&["stop", &self.dir.display().to_string()]);
    }

    /// Starts the stopped server again, on the same port with the same data.
    pub fn restart(&self) {
        pg_sh(&[
            "start",
            &self.dir.display().to_string(),
            &self.port.to_string(),
        ]);
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if self.owned.is_some() {
            stop_quietly(&self.dir);
            unregister(&self.dir);
        }
    }
}

/// One database of a [`PgServer`]: its URL (the token-service's `--database`) and SQL on it.
#[derive(Debug, Clone)]
pub struct PgDatabase {
    pub url: String,
    pub name: String,
    port: u16,
}

impl PgDatabase {
    /// Runs `sql` on this database as the service's role; the rows as psql prints them
    /// unaligned (`|` between fields, a line per row).
    pub fn psql(&self, sql: &str) -> Result<String, String> {
        self.psql_as("oauth2", &self.name, sql)
    }

    /// Everything the database holds, as `pg_dump --data-only` writes it (COPY blocks).
    pub fn dump(&self) -> String {
        let out = Command::new(paths::pg_tool("pg_dump"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "oauth2", "--data-only", "--no-owner", &self.name])
            .env("PGCONNECT_TIMEOUT", "5")
            .output()
            .expect("pg_dump");
        assert!(
            out.status.success(),
            "pg_dump {}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Drops the database, cutting any connection still open to it (errors ignored: the
    /// server may be gone already).
    pub fn drop_database(&self) {
        let _ = self.psql_as_superuser(
            "postgres",
            &format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name),
        );
    }

    fn psql_as_superuser(&self, database: &str, sql: &str) -> Result<String, String> {
        self.psql_as("postgres", database, sql)
    }

    fn psql_as(&self, role: &str, database: &str, sql: &str) -> Result<String, String> {
        let out = Command::new(paths::pg_tool("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", role, "-d", database])
            .args(["-v", "ON_ERROR_STOP=1", "-X", "-q", "-tA", "-c", sql])
            .env("PGCONNECT_TIMEOUT", "5")
            .output()
            .map_err(|e| format!("psql: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

fn read_port(dir: &Path) -> Option<u16> {
    std::fs::read_to_string(dir.join("port"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Runs `scripts/pg.sh` with `args`; its stdout (the URL for `start`). Fails the test when it
/// fails.
fn pg_sh(args: &[&str]) -> String {
    let out = Command::new(paths::pg_script())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("scripts/pg.sh");
    assert!(
        out.status.success(),
        "scripts/pg.sh {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn stop_quietly(dir: &Path) {
    let _ = Command::new(paths::pg_script())
        .arg("stop")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Servers this process started and has not stopped yet.
static RUNNING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Records a server about to start in `dir`: the exit handler stops it, and a watchdog (a
/// shell in its own process group, so a Ctrl-C to the tests does not take it down too) stops
/// it and removes `dir` once this process is gone, however it ended.
fn register(dir: &Path) {
    static HOOK: OnceLock<()> = OnceLock::new();
    HOOK.get_or_init(|| {
        extern "C" fn at_exit() {
            let dirs = match RUNNING.lock() {
                Ok(mut dirs) => std::mem::take(&mut *dirs),
                Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
            };
            for dir in dirs {
                stop_quietly(&dir);
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
        extern "C" {
            fn atexit(callback: extern "C" fn()) -> std::os::raw::c_int;
        }
        // SAFETY: registers a plain function with the C library, once per process.
        let registered = unsafe { atexit(at_exit) };
        assert_eq!(registered, 0, "atexit failed");
    });
    if let Ok(mut dirs) = RUNNING.lock() {
        dirs.push(dir.to_path_buf());
    }
    use std::os::unix::process::CommandExt;
    let watchdog = Command::new("/bin/sh")
        .arg("-c")
        .arg(
            "while kill -0 \"$1\" 2>/dev/null; do sleep 0.5; done; \
             \"$2\" stop \"$3\" >/dev/null 2>&1; rm -rf \"$3\"",
        )
        .arg("pg-watchdog")
        .arg(std::process::id().to_string())
        .arg(paths::pg_script())
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn();
    // Not waited for: it outlives this process on purpose (init reaps it).
    drop(watchdog.expect("the PostgreSQL watchdog"));
}

fn unregister(dir: &Path) {
    if let Ok(mut dirs) = RUNNING.lock() {
        dirs.retain(|d| d != dir);
    }
}
