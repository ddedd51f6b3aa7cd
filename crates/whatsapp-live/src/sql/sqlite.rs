//! The device store's SQLite file, each statement run on the task that asks.
//!
//! whatsapp-rust's `SharedSqlite` runs every call on tokio's blocking pool
//! (`spawn_blocking`, a thread hand-off there and back), and wraps every
//! read in a transaction of its own. A login makes some twenty calls, and
//! during a mass reconnect the hand-offs cost the gateway more CPU than the
//! statements themselves (docs/PERFORMANCE.md). A statement here reads
//! pages its connection has cached or appends to the WAL
//! (`synchronous = NORMAL`: no fsync at a commit): tens of microseconds, so
//! it runs where it is called, under its connection's async lock, like any
//! other short piece of CPU work on the runtime.
//!
//! The one slow thing a commit can do in WAL mode, the automatic checkpoint
//! (copying the WAL back and fsyncing the database file), is taken off the
//! writer (`wal_autocheckpoint = 0`) and run every [`CHECKPOINT_EVERY`] on
//! tokio's blocking pool by a connection of its own, PASSIVE (it never waits
//! for a reader): once while writes go on, which copies the bulk, then once
//! more with the writer's lock held, so that nothing is written meanwhile and
//! the writer's next transaction starts the WAL over. (A checkpoint that
//! writes keep racing past never completes, and the WAL is then never reused:
//! it grew to 9 GB while 10,000 sessions were linked.) Writers wait for
//! that second pass on the async lock, not on a thread.
//!
//! whatsapp-rust's `SqliteStore` still creates and migrates the file (its
//! schema is its own); it is closed once that is done.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use diesel::connection::SimpleConnection as _;
use diesel::{Connection as _, SqliteConnection};
use tokio::sync::Mutex;
use whatsapp_rust::store::{SqliteStore, SqliteStoreConfig};
use whatsapp_rust::wacore::store::error::{Result, StoreError};

use super::Via;

/// Connections kept for reads besides the one writer (WAL readers, each with
/// its own page cache).
pub(crate) const READERS: usize = 2;
/// Page cache of the writer and of each reader, KiB. Shared by every
/// session, so it can be far larger than whatsapp-rust's per-store default
/// (512 KiB).
const CACHE_KIB: u32 = 16 * 1024;
/// Page cache of the reader kept for API calls, KiB.
const INTERACTIVE_CACHE_KIB: u32 = CACHE_KIB / 8;
/// How long a statement waits for a lock held by another process (or a
/// test's second store on the same file) before it fails; whatsapp-rust's
/// default.
const BUSY_TIMEOUT_MS: u32 = 30_000;
/// How often the WAL is checkpointed in the background.
pub(crate) const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// One SQLite file: a writer, [`READERS`] readers and a reader for API
/// calls, each a connection used on the calling task.
pub(crate) struct SqliteFile {
    /// Shared with the checkpoint task, which holds it for its last pass.
    writer: Arc<Mutex<SqliteConnection>>,
    readers: Vec<Mutex<SqliteConnection>>,
    /// The reader kept for API calls' lookups, so that they never queue
    /// behind the reads of thousands of sessions logging in.
    interactive: Mutex<SqliteConnection>,
    /// Where the next read looks for a free reader first.
    next_reader: AtomicUsize,
    checkpointer: tokio::task::JoinHandle<()>,
}

impl Drop for SqliteFile {
    fn drop(&mut self) {
        self.checkpointer.abort();
    }
}

fn db<E: std::error::Error + Send + Sync + 'static>(e: E) -> StoreError {
    StoreError::Database(Box::new(e))
}

/// Opens a connection to `path` with the store's settings.
fn connect(path: &str, cache_kib: u32, extra: &str) -> Result<SqliteConnection> {
    let mut conn =
        SqliteConnection::establish(path).map_err(|e| StoreError::Connection(Box::new(e)))?;
    conn.batch_execute(&format!(
        "PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}; PRAGMA synchronous = NORMAL; \
         PRAGMA cache_size = -{cache_kib}; PRAGMA temp_store = memory; \
         PRAGMA foreign_keys = ON; {extra}"
    ))
    .map_err(db)?;
    Ok(conn)
}

impl SqliteFile {
    /// Creates and migrates the file at `path` as whatsapp-rust does, then
    /// opens the connections and starts the background checkpoint.
    pub(crate) async fn open(path: &str) -> Result<Self> {
        Self::open_checkpointing_every(path, CHECKPOINT_EVERY).await
    }

    /// [`SqliteFile::open`], checkpointing every `period`.
    async fn open_checkpointing_every(path: &str, period: Duration) -> Result<Self> {
        // whatsapp-rust's store owns the schema (and switches the file to
        // WAL); nothing else of it is used.
        drop(SqliteStore::with_config(path, SqliteStoreConfig::default()).await?);
        let owned = path.to_owned();
        let (writer, readers, interactive, checkpoint) = tokio::task::spawn_blocking(move || {
            let path = owned.as_str();
            let writer = connect(
                path,
                CACHE_KIB,
                "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0;",
            )?;
            let readers = (0..READERS)
                .map(|_| connect(path, CACHE_KIB, "PRAGMA query_only = 1;").map(Mutex::new))
                .collect::<Result<Vec<_>>>()?;
            let interactive = connect(path, INTERACTIVE_CACHE_KIB, "PRAGMA query_only = 1;")?;
            // Copies pages from the WAL into the file: needs no cache.
            let checkpoint = connect(path, 64, "")?;
            Ok::<_, StoreError>((writer, readers, interactive, checkpoint))
        })
        .await
        .map_err(db)??;
        let writer = Arc::new(Mutex::new(writer));
        Ok(Self {
            checkpointer: tokio::spawn(checkpoint_every(
                writer.clone(),
                Arc::new(std::sync::Mutex::new(checkpoint)),
                period,
            )),
            writer,
            readers,
            interactive: Mutex::new(interactive),
            next_reader: AtomicUsize::new(0),
        })
    }

    /// Runs `f` on the writer (every statement that can modify the file
    /// belongs here: one writer, so no two transactions race for the write
    /// lock).
    ///
    /// # Errors
    ///
    /// What `f` returns.
    pub(crate) async fn write<T>(
        &self,
        f: impl FnOnce(&mut SqliteConnection) -> Result<T>,
    ) -> Result<T> {
        let mut conn = self.writer.lock().await;
        f(&mut conn)
    }

    /// Runs the read-only `f` on the connection `via` names: the writer, a
    /// free reader (or the next one to be free), or the API's reader.
    ///
    /// # Errors
    ///
    /// What `f` returns; a write through a reader fails (`query_only`).
    pub(crate) async fn read<T>(
        &self,
        via: Via,
        f: impl FnOnce(&mut SqliteConnection) -> Result<T>,
    ) -> Result<T> {
        let mut conn = match via {
            Via::Write => self.writer.lock().await,
            Via::Interactive => self.interactive.lock().await,
            Via::Read => {
                let first = self.next_reader.fetch_add(1, Ordering::Relaxed);
                let free =
                    (0..READERS).find_map(|i| self.readers[(first + i) % READERS].try_lock().ok());
                match free {
                    Some(conn) => conn,
                    None => self.readers[first % READERS].lock().await,
                }
            }
        };
        f(&mut conn)
    }
}

#[cfg(test)]
impl SqliteFile {
    /// Calls `seen` with the text of every statement any connection starts
    /// from now on (without its binds).
    pub(crate) async fn on_statement(&self, seen: Arc<dyn Fn(String) + Send + Sync>) {
        use diesel::connection::{Connection as _, InstrumentationEvent};
        let mut conns = vec![self.writer.lock().await, self.interactive.lock().await];
        for r in &self.readers {
            conns.push(r.lock().await);
        }
        for conn in &mut conns {
            let seen = seen.clone();
            conn.set_instrumentation(move |e: InstrumentationEvent<'_>| {
                if let InstrumentationEvent::StartQuery { query, .. } = e {
                    let text = query.to_string();
                    let sql = text.split(" -- binds:").next().unwrap_or_default();
                    seen(sql.trim().to_owned());
                }
            });
        }
    }
}

/// Checkpoints the WAL through `conn` every `period`, PASSIVE, on tokio's
/// blocking pool (a checkpoint fsyncs the database file): once while
/// writes go on, then once more with `writer` held (see the module docs),
/// until aborted.
async fn checkpoint_every(
    writer: Arc<Mutex<SqliteConnection>>,
    conn: Arc<std::sync::Mutex<SqliteConnection>>,
    period: Duration,
) {
    loop {
        tokio::time::sleep(period).await;
        checkpoint(&conn).await;
        let held = writer.lock().await;
        checkpoint(&conn).await;
        drop(held);
    }
}

/// One PASSIVE checkpoint through `conn`, on tokio's blocking pool.
async fn checkpoint(conn: &Arc<std::sync::Mutex<SqliteConnection>>) {
    let conn = conn.clone();
    let done = tokio::task::spawn_blocking(move || {
        conn.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .batch_execute("PRAGMA wal_checkpoint(PASSIVE);")
    })
    .await;
    match done {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "key store WAL checkpoint failed; trying again"),
        Err(e) => tracing::warn!(error = %e, "key store WAL checkpoint task failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::RunQueryDsl as _;

    /// `sql` as a closure for [`SqliteFile::write`] or [`SqliteFile::read`].
    fn run(sql: impl Into<String>) -> impl FnOnce(&mut SqliteConnection) -> Result<usize> {
        let sql = sql.into();
        move |conn| diesel::sql_query(sql).execute(conn).map_err(db)
    }

    /// Statements run on the calling thread, not on tokio's blocking pool:
    /// the saving this module exists for.
    #[tokio::test(flavor = "current_thread")]
    async fn statements_run_on_the_calling_thread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.db");
        let file = SqliteFile::open(path.to_str().unwrap()).await.unwrap();
        let here = std::thread::current().id();
        let on = file
            .write(|conn| {
                diesel::sql_query("CREATE TABLE t (a INTEGER)")
                    .execute(conn)
                    .map_err(db)?;
                Ok(std::thread::current().id())
            })
            .await
            .unwrap();
        assert_eq!(on, here);
        for via in [Via::Write, Via::Read, Via::Interactive] {
            let on = file
                .read(via, |_| Ok(std::thread::current().id()))
                .await
                .unwrap();
            assert_eq!(on, here, "{via:?}");
        }
    }

    /// Writes that never pause still let the WAL start over: the file
    /// stays a fraction of what was written through it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_starts_over_while_writes_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.db");
        let file =
            SqliteFile::open_checkpointing_every(path.to_str().unwrap(), Duration::from_millis(10))
                .await
                .unwrap();
        file.write(run("CREATE TABLE t (a INTEGER PRIMARY KEY, b BLOB)"))
            .await
            .unwrap();
        // Rows rewritten over and over: 40 MB through the WAL, one commit
        // each, while checkpoints come and go.
        let started = std::time::Instant::now();
        let mut written = 0u64;
        let mut n = 0u32;
        while written < 40_000_000 || started.elapsed() < Duration::from_millis(300) {
            file.write(run(format!(
                "INSERT OR REPLACE INTO t VALUES ({}, zeroblob(4000))",
                n % 64
            )))
            .await
            .unwrap();
            written += 4096;
            n += 1;
        }
        let wal = std::fs::metadata(path.with_extension("db-wal"))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(wal < written / 4, "WAL {wal} bytes after {written} written");
    }

    /// Readers cannot write; the writer never checkpoints, the background
    /// task does: the database file grows without anyone asking.
    #[tokio::test]
    async fn readers_cannot_write_and_the_wal_is_checkpointed_in_the_background() {
        #[derive(diesel::QueryableByName)]
        struct Setting {
            #[diesel(sql_type = diesel::sql_types::Integer)]
            wal_autocheckpoint: i32,
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.db");
        let file = SqliteFile::open(path.to_str().unwrap()).await.unwrap();
        let setting = file
            .write(|conn| {
                diesel::sql_query("PRAGMA wal_autocheckpoint")
                    .get_result::<Setting>(conn)
                    .map_err(db)
            })
            .await
            .unwrap();
        assert_eq!(setting.wal_autocheckpoint, 0);
        file.write(run("CREATE TABLE t (a BLOB)")).await.unwrap();
        assert!(
            file.read(Via::Read, run("INSERT INTO t VALUES (x'00')"))
                .await
                .is_err()
        );
        let before = std::fs::metadata(&path).unwrap().len();
        for _ in 0..100 {
            file.write(run("INSERT INTO t VALUES (zeroblob(4000))"))
                .await
                .unwrap();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::fs::metadata(&path).unwrap().len() <= before {
            assert!(
                std::time::Instant::now() < deadline,
                "nothing was checkpointed into the database file"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
