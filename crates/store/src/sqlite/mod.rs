//! [`SqliteStore`]: both store traits on one SQLite database through sqlx.

use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool};
use time::OffsetDateTime;
use wagate_domain::{EventData, OrgId, Session, SessionId, SessionStatus};

use crate::rows::{db_err, session_columns, session_from_row};
use crate::{StoreError, conn};

mod events;
mod writer;

use writer::{Autocommit, WriteTx, Writer};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The SQLite store. Cheap to clone (a connection pool inside).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Reads (WAL readers never wait for the writer).
    pool: SqlitePool,
    /// Every write, on one connection: SQLite has one writer at a time, and
    /// writers queued here wait in order instead of sleeping in SQLite's
    /// busy handler (1, 2, 5 … 100 ms naps) while another holds the lock;
    /// those that queue together share one commit ([`writer`]).
    writer: Writer,
    counts: Arc<StatusCounts>,
    listener: Arc<std::sync::OnceLock<Arc<dyn crate::CommitListener>>>,
    /// Dropped with the last clone of the store: the background
    /// checkpointer then stops (`None` in memory: no WAL).
    _checkpointer: Option<Arc<tokio::sync::oneshot::Sender<()>>>,
}

/// How often the WAL is checkpointed in the background.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// Checkpoints the WAL from a reading connection every
/// [`CHECKPOINT_EVERY`], PASSIVE (it never waits for a reader), until the
/// sender it returns is dropped: once while writes go on, which copies the
/// bulk, then once more with the writer paused, so that nothing is written
/// meanwhile and the writer's next transaction starts the WAL over (a
/// checkpoint that writes keep racing past never completes, and the WAL
/// then grows without end). The writer's own automatic checkpoint is off:
/// with `synchronous=FULL` a checkpoint fsyncs the database file, and run
/// by the committing writer it held every write queued behind it for tens
/// to hundreds of milliseconds; the paused pass copies only what was
/// written since the first.
fn spawn_checkpointer(pool: SqlitePool, writer: Writer) -> tokio::sync::oneshot::Sender<()> {
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let checkpoint = || async {
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&pool)
                .await
            {
                tracing::warn!(error = %e, "WAL checkpoint failed; trying again");
            }
        };
        loop {
            tokio::select! {
                _ = &mut stopped => return,
                () = tokio::time::sleep(CHECKPOINT_EVERY) => {}
            }
            if pool.is_closed() {
                return;
            }
            checkpoint().await;
            writer.paused(checkpoint()).await;
        }
    });
    stop
}

/// Sessions per status, kept as this store writes: loaded once by
/// [`SqliteStore::migrate`], then moved by every insert, patch and delete,
/// so a metrics scrape costs no query. Exact while this process is the only
/// writer of the database (one gateway per SQLite file).
#[derive(Debug, Default)]
struct StatusCounts(Mutex<Option<[u64; SessionStatus::ALL.len()]>>);

impl StatusCounts {
    fn index(status: SessionStatus) -> usize {
        SessionStatus::ALL
            .iter()
            .position(|s| *s == status)
            .unwrap_or_default()
    }

    fn with(&self, f: impl FnOnce(&mut [u64; SessionStatus::ALL.len()])) {
        if let Some(counts) = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
        {
            f(counts);
        }
    }

    fn moved(&self, from: Option<SessionStatus>, to: Option<SessionStatus>) {
        self.with(|c| {
            if let Some(from) = from {
                let n = &mut c[Self::index(from)];
                *n = n.saturating_sub(1);
            }
            if let Some(to) = to {
                c[Self::index(to)] += 1;
            }
        });
    }

    fn set(&self, counts: [u64; SessionStatus::ALL.len()]) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(counts);
    }

    fn get(&self) -> Option<Vec<(SessionStatus, u64)>> {
        let counts = *self.0.lock().unwrap_or_else(PoisonError::into_inner);
        counts.map(|c| SessionStatus::ALL.into_iter().zip(c).collect())
    }
}

impl SqliteStore {
    /// Opens (creating file and folder if missing) the database at `url`,
    /// e.g. `sqlite://data/wagate.db` or `sqlite::memory:`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Setup`] when the URL is invalid or the file cannot be
    /// created or opened.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Setup(format!("invalid database url: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit is on disk before it is acknowledged. NORMAL
            // (in WAL mode) may lose the last commits on power loss —
            // messages already acknowledged to WhatsApp or answered 202.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let file = options.get_filename();
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let folder = file
            .parent()
            .filter(|d| !in_memory && !d.as_os_str().is_empty());
        if let Some(dir) = folder {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Setup(format!("cannot create folder {}: {e}", dir.display()))
            })?;
        }
        // An in-memory database lives as long as its one connection.
        let max = if in_memory { 1 } else { 8 };
        // The writer never checkpoints: a background task does (see
        // `spawn_checkpointer`).
        let writer_options = options.clone().pragma("wal_autocheckpoint", "0");
        let pool = SqlitePoolOptions::new()
            .max_connections(max)
            .min_connections(if in_memory { 1 } else { 0 })
            .idle_timeout(if in_memory {
                None
            } else {
                Some(Duration::from_secs(600))
            })
            .max_lifetime(if in_memory {
                None
            } else {
                Some(Duration::from_secs(3600))
            })
            .acquire_timeout(Duration::from_secs(5))
            // A SQLite connection does not go stale; a ping per acquire is
            // a round trip to its worker thread for nothing.
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Setup(format!("cannot open database: {e}")))?;
        let writer = if in_memory {
            pool.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                // Writers queue here; a write is a short transaction, so a
                // long wait means the database is stuck, not busy.
                .acquire_timeout(Duration::from_secs(10))
                .test_before_acquire(false)
                .connect_with(writer_options)
                .await
                .map_err(|e| StoreError::Setup(format!("cannot open database: {e}")))?
        };
        let writer = Writer::new(writer);
        let checkpointer =
            (!in_memory).then(|| Arc::new(spawn_checkpointer(pool.clone(), writer.clone())));
        Ok(Self {
            pool,
            writer,
            counts: Arc::default(),
            listener: Arc::default(),
            _checkpointer: checkpointer,
        })
    }

    /// Applies the embedded migrations that have not run yet.
    ///
    /// # Errors
    ///
    /// [`StoreError::Setup`] when a migration fails (the database is left at
    /// the last migration that succeeded).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR
            .run(self.writer.pool())
            .await
            .map_err(|e| StoreError::Setup(format!("migration failed: {e}")))?;
        // The one counting query; from here on the counts move with writes.
        let mut counts = [0; SessionStatus::ALL.len()];
        for (status, n) in self.query_counts().await? {
            counts[StatusCounts::index(status)] = n;
        }
        self.counts.set(counts);
        Ok(())
    }

    async fn query_counts(&self) -> Result<Vec<(SessionStatus, u64)>, StoreError> {
        conn::count_sessions(&mut *self.reader().await?).await
    }

    /// Closes every connection; later calls fail.
    pub async fn close(&self) {
        self.writer.flush().await;
        self.pool.close().await;
        self.writer.pool().close().await;
    }
}

impl SqliteStore {
    /// A connection that reads (WAL readers never wait for the writer).
    async fn reader(&self) -> Result<PoolConnection<Sqlite>, StoreError> {
        self.pool.acquire().await.map_err(db_err)
    }

    /// The one connection that writes, for single statements (each
    /// committed before it answers, as with autocommit).
    async fn writer(&self) -> Result<Box<Autocommit>, StoreError> {
        Ok(self.writer.autocommit())
    }

    /// A write transaction on the one writer: inside `BEGIN IMMEDIATE`
    /// (the database's one writer lock), so nothing lands between its
    /// reads and writes; committed with the writers queued beside it.
    async fn begin(&self) -> Result<WriteTx, StoreError> {
        self.writer.begin().await
    }

    /// One process per SQLite database: no leases, nothing to fence.
    #[allow(clippy::unused_async)]
    async fn fence_write(
        &self,
        _tx: &mut WriteTx,
        _session: &SessionId,
        _observed: bool,
    ) -> Result<(), StoreError> {
        Ok(())
    }

    /// Keeps the status counts as sessions come, move and go.
    fn session_moved(&self, from: Option<SessionStatus>, to: Option<SessionStatus>) {
        self.counts.moved(from, to);
    }

    /// One process per database: its caches saw the change already.
    #[allow(clippy::unused_async)]
    async fn announce(&self, _what: crate::Invalidation) {}

    async fn sessions_to_resume(&self) -> Result<Vec<Session>, StoreError> {
        let sql = concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions WHERE keep_connected = 1 OR pending_op IS NOT NULL \
              OR status IN ('pairing', 'connecting', 'connected') ORDER BY id"
        );
        let rows = sqlx::query(sql)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(session_from_row).collect()
    }

    async fn status_counts(&self) -> Result<Vec<(SessionStatus, u64)>, StoreError> {
        match self.counts.get() {
            Some(counts) => Ok(counts),
            // Not migrated by this handle (a tool's): count.
            None => self.query_counts().await,
        }
    }

    /// Tells the listener, if any, that events of `org` were committed.
    fn notify(&self, org: &OrgId, events: bool, deliveries: bool) {
        if events && let Some(listener) = self.listener.get() {
            listener.committed(org, deliveries);
        }
    }

    /// Appends `events` of `org` (and their webhook deliveries) to the
    /// transaction, commits it, then tells the commit listener: the one way
    /// a state change and the events reporting it are written.
    pub(crate) async fn commit_with_events(
        &self,
        tx: WriteTx,
        org: &OrgId,
        session: Option<&SessionId>,
        events: &[EventData],
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.commit_with_events_of(tx, &[(org, session, events)], now)
            .await
    }

    /// [`SqliteStore::commit_with_events`] for the events of several
    /// sessions, in one commit; each organization told once.
    pub(crate) async fn commit_with_events_of(
        &self,
        mut tx: WriteTx,
        all: &[crate::impls::EventsOf<'_>],
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut told = std::collections::BTreeMap::new();
        for &(org, session, events) in all {
            let queued = conn::append(&mut *tx, org, session, events, now).await?;
            if !events.is_empty() {
                *told.entry(org).or_insert(false) |= queued;
            }
        }
        tx.commit().await.map_err(db_err)?;
        for (org, queued) in told {
            self.notify(org, true, queued);
        }
        Ok(())
    }

    /// Commits deliveries queued without new events (a test event, a
    /// replay), then wakes the dispatcher.
    async fn commit_queued(&self, tx: WriteTx, org: &OrgId) -> Result<(), StoreError> {
        tx.commit().await.map_err(db_err)?;
        self.notify(org, true, true);
        Ok(())
    }

    /// Sets who is told when events commit (once; later calls are ignored).
    pub fn set_commit_listener(&self, listener: Arc<dyn crate::CommitListener>) {
        let _ = self.listener.set(listener);
    }
}

#[async_trait]
impl crate::Store for SqliteStore {
    fn set_commit_listener(&self, listener: Arc<dyn crate::CommitListener>) {
        SqliteStore::set_commit_listener(self, listener);
    }

    async fn close(&self) {
        SqliteStore::close(self).await;
    }

    async fn cluster_nodes(&self) -> Result<Option<Vec<crate::NodeStatus>>, StoreError> {
        Ok(None)
    }
}

crate::impls::store_traits!(SqliteStore);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::session;
    use crate::{SessionPatch, SessionRegistry};

    async fn store() -> (SqliteStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/nested/wagate.db", dir.path().display());
        let store = SqliteStore::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        (store, dir)
    }

    fn org(s: &str) -> OrgId {
        OrgId::parse(s).unwrap()
    }

    /// Writes that never pause still let the WAL start over: its header's
    /// checkpoint sequence (bytes 12..16, bumped at each restart of the
    /// log) moves while writers keep the writer busy.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_starts_over_while_writes_go_on() {
        let (store, dir) = store().await;
        let wal = dir.path().join("nested/wagate.db-wal");
        let sequence = || {
            let bytes = std::fs::read(&wal).unwrap_or_default();
            bytes
                .get(12..16)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        };
        let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        store.insert(&session("acme", 0, t0)).await.unwrap();
        let first = sequence();
        let started = std::time::Instant::now();
        let mut writers = tokio::task::JoinSet::new();
        for w in 0..8u32 {
            let store = store.clone();
            writers.spawn(async move {
                let mut n = 1 + w * 100_000;
                while started.elapsed() < CHECKPOINT_EVERY * 4 {
                    store.insert(&session("acme", n, t0)).await.unwrap();
                    n += 1;
                }
            });
        }
        while let Some(done) = writers.join_next().await {
            done.unwrap();
        }
        assert_ne!(sequence(), first, "the WAL never started over");
    }

    /// The writer leaves the WAL to the background checkpointer: what it
    /// commits reaches the database file while the store is open (the
    /// writer's own automatic checkpoint is off, so without the task the
    /// pages would stay in the WAL until the last connection closes).
    #[tokio::test]
    async fn the_wal_is_checkpointed_in_the_background() {
        let (store, dir) = store().await;
        let file = dir.path().join("nested/wagate.db");
        let autocheckpoint: i64 = sqlx::query_scalar("PRAGMA wal_autocheckpoint")
            .fetch_one(store.writer.pool())
            .await
            .unwrap();
        assert_eq!(autocheckpoint, 0);
        let before = std::fs::metadata(&file).unwrap().len();
        let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        for n in 0..300 {
            store.insert(&session("acme", n, t0)).await.unwrap();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::fs::metadata(&file).unwrap().len() <= before {
            assert!(
                std::time::Instant::now() < deadline,
                "nothing was checkpointed into the database file"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A reconnect's refresh that finds the groups it would write takes no
    /// write transaction (the rows keep their `updated_at`).
    #[tokio::test]
    async fn a_refresh_of_unchanged_groups_writes_nothing() {
        use crate::GroupStore;
        use wagate_domain::{Group, GroupJid, GroupSettings};

        let (store, _dir) = store().await;
        let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let s = session("acme", 1, t0);
        store.insert(&s).await.unwrap();
        let group = |n: u32, subject: &str| Group {
            jid: GroupJid::parse(&format!("1203630000000{n:05}@g.us"), "jid").unwrap(),
            subject: subject.to_owned(),
            description: None,
            owner: None,
            created_at: None,
            participants: Vec::new(),
            settings: GroupSettings::default(),
        };
        let updated = || async {
            sqlx::query_scalar::<_, String>(
                "SELECT updated_at FROM session_groups WHERE session_id = ?1 ORDER BY jid",
            )
            .bind(s.id.to_string())
            .fetch_all(&store.pool)
            .await
            .unwrap()
        };
        let both = [group(1, "one"), group(2, "two")];
        store.replace_groups(&s.id, &both, t0).await.unwrap();
        let first = updated().await;
        assert_eq!(first.len(), 2);
        // The same groups, listed in another order, later: nothing written.
        let reversed = [both[1].clone(), both[0].clone()];
        let t1 = t0 + time::Duration::minutes(1);
        store.replace_groups(&s.id, &reversed, t1).await.unwrap();
        assert_eq!(updated().await, first);
        // A change is written.
        let renamed = [group(1, "one"), group(2, "renamed")];
        store.replace_groups(&s.id, &renamed, t1).await.unwrap();
        assert_ne!(updated().await, first);
        store.replace_groups(&s.id, &[], t1).await.unwrap();
        assert!(updated().await.is_empty());
    }

    #[tokio::test]
    async fn every_connection_syncs_each_commit_to_disk() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::connect(&format!("sqlite://{}/w.db", dir.path().display()))
            .await
            .unwrap();
        // 2 is FULL (1 NORMAL), on the readers and on the one writer.
        for pool in [&store.pool, store.writer.pool()] {
            let level: i64 = sqlx::query_scalar("PRAGMA synchronous")
                .fetch_one(pool)
                .await
                .unwrap();
            assert_eq!(level, 2);
        }
    }

    #[tokio::test]
    async fn kept_counts_follow_inserts_patches_and_deletes() {
        let (store, _dir) = store().await;
        let now = OffsetDateTime::now_utc();
        for n in 1..=3 {
            store.insert(&session("acme", n, now)).await.unwrap();
        }
        let id = session("acme", 1, now).id;
        store
            .record_observed(&id, &SessionPatch::status(SessionStatus::Connected), now)
            .await
            .unwrap();
        store
            .delete(&org("acme"), &session("acme", 2, now).id)
            .await
            .unwrap();
        let kept = store.count_by_status().await.unwrap();
        let mut queried = store.query_counts().await.unwrap();
        let nonzero = |v: &[(SessionStatus, u64)]| {
            v.iter()
                .copied()
                .filter(|(_, n)| *n > 0)
                .collect::<Vec<_>>()
        };
        queried.sort_by_key(|(s, _)| StatusCounts::index(*s));
        assert_eq!(nonzero(&kept), nonzero(&queried));
        assert_eq!(
            nonzero(&kept),
            vec![(SessionStatus::New, 1), (SessionStatus::Connected, 1)]
        );
        // A reopened store starts from a count of the rows.
        let reopened = SqliteStore {
            pool: store.pool.clone(),
            writer: store.writer.clone(),
            counts: Arc::default(),
            listener: Arc::default(),
            _checkpointer: None,
        };
        reopened.migrate().await.unwrap();
        assert_eq!(
            nonzero(&reopened.count_by_status().await.unwrap()),
            nonzero(&kept)
        );
    }
}
