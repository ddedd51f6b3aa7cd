//! # wagate-test-postgres
//!
//! Tests only: a throwaway PostgreSQL server for the tests that need one
//! (the store's, the gateway's contract tests, the device store's). It runs
//! the distribution's server binaries, `initdb` into a temporary directory,
//! listens on a random loopback port, runs as the unprivileged `postgres`
//! user when the tests run as root, and is stopped (its directory removed)
//! when the [`PgServer`] is dropped or the test process exits, whichever
//! comes first. A fresh database per test ([`PgServer::fresh_database`]) is
//! a `CREATE DATABASE` away.
//!
//! When the binaries are not installed, [`shared`] says so on stderr and
//! returns `None` (the test skips); with `WAGATE_REQUIRE_POSTGRES=1` (CI
//! sets it) it panics instead, so CI never skips silently.
//!
//! ```no_run
//! let Some(pg) = wagate_test_postgres::shared() else {
//!     return; // skipped, and stderr says why
//! };
//! let url = pg.fresh_database(); // postgres://wagate@127.0.0.1:PORT/t_…
//! ```

use std::fmt;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// The variable that turns "PostgreSQL is not installed: skipped" into a
/// failure (`.ci/run` sets it to `1`).
pub const REQUIRE_ENV: &str = "WAGATE_REQUIRE_POSTGRES";

/// A folder holding `initdb` and `postgres`, used before anything else.
pub const BIN_ENV: &str = "WAGATE_POSTGRES_BIN";

/// The superuser the server is initialised with (trusted, no password).
pub const USER: &str = "wagate";

/// How long a server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a server could not be started.
#[derive(Debug)]
pub enum StartError {
    /// The PostgreSQL server binaries are not installed.
    NotInstalled,
    /// They are, and starting failed (the message says where and why).
    Failed(String),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::NotInstalled => write!(
                f,
                "the PostgreSQL server binaries (initdb, postgres) were not found in ${BIN_ENV}, \
                 /usr/lib/postgresql/*/bin or PATH; install the distribution's `postgresql` package"
            ),
            StartError::Failed(why) => write!(f, "starting PostgreSQL failed: {why}"),
        }
    }
}

impl std::error::Error for StartError {}

/// A running throwaway PostgreSQL server.
pub struct PgServer {
    port: u16,
    bin: PathBuf,
    /// The server's folder (data and socket); removed on stop.
    root: PathBuf,
    /// The shell that runs the server: it stops the server and removes its
    /// folder when its stdin closes, i.e. on drop or when this process
    /// exits (even by a panic or a kill), so no server outlives its tests.
    keeper: Mutex<Option<(Child, ChildStdin)>>,
    databases: AtomicU32,
}

impl fmt::Debug for PgServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgServer")
            .field("port", &self.port)
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

/// The test binary's one server, started on first use; `None` (with a line
/// on stderr) when PostgreSQL is not installed.
///
/// # Panics
///
/// When PostgreSQL is installed but does not start, or when it is not
/// installed and `WAGATE_REQUIRE_POSTGRES=1`.
pub fn shared() -> Option<&'static PgServer> {
    static SHARED: OnceLock<Result<PgServer, String>> = OnceLock::new();
    let started = SHARED.get_or_init(|| match PgServer::start() {
        Ok(server) => Ok(server),
        Err(StartError::NotInstalled) if !required() => Err(StartError::NotInstalled.to_string()),
        Err(e) => panic!("{e}"),
    });
    match started {
        Ok(server) => Some(server),
        Err(why) => {
            let test = std::thread::current()
                .name()
                .unwrap_or("this test")
                .to_owned();
            // Straight to stderr: the test harness captures `eprintln!` of
            // a passing test, and a skip must be seen.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: {why} (set {REQUIRE_ENV}=1 to fail instead)"
            );
            None
        }
    }
}

fn required() -> bool {
    std::env::var(REQUIRE_ENV).is_ok_and(|v| !v.is_empty() && v != "0")
}

impl PgServer {
    /// Starts a server of its own, stopped when dropped.
    ///
    /// # Errors
    ///
    /// [`StartError::NotInstalled`] when the binaries are missing;
    /// [`StartError::Failed`] when `initdb` or the server fails.
    pub fn start() -> Result<Self, StartError> {
        let bin = bin_dir().ok_or(StartError::NotInstalled)?;
        let failed = StartError::Failed;
        let temp = tempfile::Builder::new()
            .prefix("wagate-pg-")
            .tempdir()
            .map_err(|e| failed(format!("temporary directory: {e}")))?;
        // The folder outlives the TempDir: the keeper removes it.
        let root = temp.keep();
        let as_postgres = running_as_root(&root);
        if as_postgres {
            // PostgreSQL refuses to run as root: the folder goes to `postgres`.
            let (uid, gid) = postgres_ids().map_err(failed)?;
            std::os::unix::fs::chown(&root, Some(uid), Some(gid))
                .map_err(|e| failed(format!("chown {}: {e}", root.display())))?;
        }
        let data = root.join("data");
        let out = command(as_postgres, &bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", USER, "--auth=trust", "--no-sync", "-E", "UTF8"])
            .args(["--locale=C", "--no-instructions"])
            .output()
            .map_err(|e| failed(format!("running initdb: {e}")))?;
        if !out.status.success() {
            let _ = std::fs::remove_dir_all(&root);
            return Err(failed(format!(
                "initdb: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        // A free port can be taken between our check and the server's bind:
        // then try another.
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port().map_err(|e| failed(format!("free port: {e}")))?;
            match launch(&bin, &root, port, as_postgres) {
                Ok(keeper) => {
                    return Ok(Self {
                        port,
                        bin,
                        root,
                        keeper: Mutex::new(Some(keeper)),
                        databases: AtomicU32::new(0),
                    });
                }
                Err(why) => last = why,
            }
        }
        let _ = std::fs::remove_dir_all(&root);
        Err(failed(last))
    }

    /// The port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `name` (which may not exist).
    pub fn url(&self, name: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{name}", self.port)
    }

    /// A new, empty database of its own; its URL.
    ///
    /// # Panics
    ///
    /// When the server refuses (it is a test helper: the panic is the report).
    pub fn fresh_database(&self) -> String {
        let n = self.databases.fetch_add(1, Ordering::Relaxed);
        self.database(&format!("t_{}_{n}", std::process::id()))
    }

    /// Database `name` (lowercase letters, digits, `_`), created if it does
    /// not exist yet; its URL. The same name gives the same database.
    ///
    /// # Panics
    ///
    /// On a name that is not a plain identifier, or when the server refuses.
    pub fn database(&self, name: &str) -> String {
        assert!(
            !name.is_empty()
                && name.len() < 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "database name {name:?}: lowercase letters, digits and _ only"
        );
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
            .args(["-p", &self.port.to_string(), "-U", USER, "-d", "postgres"])
            .args(["-c", &format!("CREATE DATABASE {name}")])
            .env_remove("PGPASSWORD")
            .env_remove("PGSERVICE")
            .output()
            .unwrap_or_else(|e| panic!("running psql: {e}"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() || stderr.contains("already exists"),
            "CREATE DATABASE {name}: {stderr}"
        );
        self.url(name)
    }

    /// Runs `sql` on database `name` with psql; what it printed (unaligned,
    /// tuples only: one row a line, columns separated by `|`).
    ///
    /// # Panics
    ///
    /// When psql fails (it is a test helper: the panic is the report).
    pub fn query(&self, name: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
            ])
            .args(["-p", &self.port.to_string(), "-U", USER, "-d", name])
            .args(["-c", sql])
            .env_remove("PGPASSWORD")
            .env_remove("PGSERVICE")
            .output()
            .unwrap_or_else(|e| panic!("running psql: {e}"));
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Stops the server and removes its folder; waits until both are done.
    pub fn stop(&self) {
        let keeper = self
            .keeper
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some((mut child, stdin)) = keeper {
            drop(stdin); // the keeper's cue
            let _ = child.wait();
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts the server under a keeper shell and waits until it accepts
/// connections.
fn launch(
    bin: &Path,
    root: &Path,
    port: u16,
    as_postgres: bool,
) -> Result<(Child, ChildStdin), String> {
    let log = root.join("log");
    // A failed attempt's log must not fail this one.
    let _ = std::fs::remove_file(&log);
    // The keeper: runs the server, waits for its stdin to close (our drop,
    // or our exit), then stops the server at once and removes the folder.
    let script = r#"
        "$1/postgres" -D "$2/data" -p "$3" -c listen_addresses=127.0.0.1 \
            -c unix_socket_directories="$2" -c fsync=off -c synchronous_commit=off \
            -c full_page_writes=off -c max_connections=500 -c shared_buffers=32MB \
            >"$2/log" 2>&1 &
        pid=$!
        read cue
        kill -QUIT "$pid" 2>/dev/null
        wait "$pid"
        [ "$cue" = keep ] || rm -rf "$2"
    "#;
    let mut child = command(as_postgres, Path::new("/bin/sh"))
        .arg("-c")
        .arg(script)
        .arg("keeper")
        .arg(bin)
        .arg(root)
        .arg(port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting the server: {e}"))?;
    let Some(stdin) = child.stdin.take() else {
        let _ = child.kill();
        return Err("the keeper has no stdin".into());
    };
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("ready to accept connections") {
            return Ok((child, stdin));
        }
        let stopped = text.contains("FATAL") || text.contains("database system is shut down");
        if stopped || started.elapsed() > START_TIMEOUT {
            // The keeper stops the server and keeps the folder: it is
            // tried again on another port.
            let mut stdin = stdin;
            let _ = stdin.write_all(b"keep\n");
            drop(stdin);
            let _ = child.wait();
            let tail: Vec<_> = BufReader::new(text.as_bytes())
                .lines()
                .map_while(Result::ok)
                .collect();
            return Err(format!(
                "the server on port {port} did not start: {}",
                tail.join(" | ")
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `cmd` as the `postgres` user (`runuser`) when `as_postgres`.
fn command(as_postgres: bool, cmd: &Path) -> Command {
    if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(cmd);
        c
    } else {
        Command::new(cmd)
    }
}

/// Whether this process runs as root: the owner of a folder it just made.
fn running_as_root(made: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(made).is_ok_and(|m| m.uid() == 0)
}

/// The `postgres` user's uid and gid, from /etc/passwd.
fn postgres_ids() -> Result<(u32, u32), String> {
    let passwd =
        std::fs::read_to_string("/etc/passwd").map_err(|e| format!("reading /etc/passwd: {e}"))?;
    passwd
        .lines()
        .find_map(|line| {
            let mut f = line.split(':');
            if f.next()? != "postgres" {
                return None;
            }
            let _password = f.next()?;
            Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
        })
        .ok_or_else(|| {
            "running as root, and there is no `postgres` user to run the server as".into()
        })
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Where `initdb` and `postgres` are: `WAGATE_POSTGRES_BIN`, the newest
/// `/usr/lib/postgresql/*/bin` (Debian, Ubuntu), or `PATH`.
fn bin_dir() -> Option<PathBuf> {
    let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Some(dir) = std::env::var_os(BIN_ENV) {
        return Some(PathBuf::from(dir)).filter(|d| has_server(d));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, dir)| has_server(dir))
        .collect();
    versions.sort();
    if let Some((_, dir)) = versions.pop() {
        return Some(dir);
    }
    std::env::split_paths(&std::env::var_os("PATH")?).find(|d| has_server(d))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn a_server_starts_hands_out_databases_and_is_gone_after_drop() {
        let server = match PgServer::start() {
            Ok(s) => s,
            Err(StartError::NotInstalled) if !required() => {
                let _ = writeln!(std::io::stderr(), "SKIPPED: {}", StartError::NotInstalled);
                return;
            }
            Err(e) => panic!("{e}"),
        };
        let a = server.fresh_database();
        let b = server.fresh_database();
        assert_ne!(a, b);
        // Same name, same database (created once).
        assert_eq!(server.database("same_one"), server.database("same_one"));
        let root = server.root.clone();
        assert!(root.join("data").is_dir());
        let port = server.port();
        drop(server);
        assert!(!root.exists(), "the folder is removed on drop");
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "nothing listens any more"
        );
    }
}
