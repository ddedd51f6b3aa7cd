//! SQLite's one writer, with group commit.
//!
//! Every write of the gateway runs on one connection (SQLite has one writer
//! at a time; queued in the process, writers wait in order instead of
//! napping in SQLite's busy handler). With `synchronous=FULL` each `COMMIT`
//! costs an fsync (about 4 ms on a virtual disk: ~200 commits a second), so
//! writers that queue up share one: a *job* (one caller's transaction, or
//! one statement of [`Autocommit`]) runs inside its own `SAVEPOINT` of a
//! *group* transaction, and the group is committed once the jobs queued
//! behind it have added their work.
//!
//! - A job's failure is its own: its savepoint is rolled back, the group's
//!   other jobs go on.
//! - Nothing is acknowledged before its commit: [`WriteTx::commit`] returns
//!   only after the group's `COMMIT` (an error if it failed), and
//!   [`WriteTx::rollback`] waits for the commit of the work it may have read
//!   from the jobs before it.
//! - Readers (other connections) see a group's work when it commits, all at
//!   once; jobs run one after the other in arrival order, so event numbers
//!   are taken and become visible in order.
//!
//! How a group ends: the first job to leave it spawns a *committer*, which
//! queues for the writer like any job (the lock is FIFO) and commits when
//! its turn comes, so every job that queued before it joins the group, and
//! one that comes later starts the next.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::SqliteRow;
use sqlx::{Sqlite, SqliteConnection, SqlitePool};
use tokio::sync::{Mutex, OwnedMappedMutexGuard, OwnedMutexGuard, watch};

use crate::StoreError;
use crate::conn::Conn;
use crate::rows::{Value, db_err};

/// How long a job waits for its turn: writes are short, so a longer wait
/// means the database is stuck, not busy.
const TURN_TIMEOUT: Duration = Duration::from_secs(10);

/// The one writer connection of a [`SqliteStore`](super::SqliteStore).
/// Cheap to clone (shared inside).
#[derive(Debug, Clone)]
pub(crate) struct Writer(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    /// Where the writer connection comes from (one connection; on an
    /// in-memory database the readers' pool, the same one connection).
    pool: SqlitePool,
    state: Arc<Mutex<State>>,
    /// `COMMIT`s of groups that succeeded.
    commits: AtomicU64,
    /// Jobs waiting for their turn (for tests to know who has queued).
    waiting: AtomicUsize,
}

#[derive(Debug, Default)]
struct State {
    /// The group transaction under way, if any.
    open: Option<Open>,
}

/// A group transaction: the connection, inside `BEGIN IMMEDIATE`.
#[derive(Debug)]
struct Open {
    conn: PoolConnection<Sqlite>,
    group: Arc<Group>,
    /// Jobs whose work is in the group.
    released: u32,
    /// A job went away without finishing: its savepoint is to be rolled
    /// back before anything else runs.
    rollback_pending: bool,
    /// The group cannot be trusted (a savepoint would not roll back): it is
    /// to be rolled back whole, its jobs told it failed.
    broken: bool,
    /// A committer has been spawned for this group.
    committer: bool,
    /// Committed or rolled back.
    ended: bool,
}

impl Drop for Open {
    fn drop(&mut self) {
        // Dropped inside its transaction (a committer cancelled at shutdown):
        // the connection must not go back to the pool mid-transaction.
        if !self.ended {
            self.conn.close_on_drop();
        }
    }
}

/// How a group ended, for its jobs: `None` until it has.
#[derive(Debug)]
struct Group(watch::Sender<Option<Result<(), String>>>);

impl Group {
    fn new() -> Arc<Self> {
        Arc::new(Self(watch::Sender::new(None)))
    }

    fn end(&self, result: Result<(), String>) {
        self.0.send_replace(Some(result));
    }

    /// Waits until the group has ended; its result.
    async fn ended(mut rx: watch::Receiver<Option<Result<(), String>>>) -> Result<(), sqlx::Error> {
        let ended = rx.wait_for(Option::is_some).await.map_err(|_| {
            sqlx::Error::Io(std::io::Error::other(
                "the write was not committed: the writer stopped",
            ))
        })?;
        match ended.as_ref() {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(sqlx::Error::Io(std::io::Error::other(format!(
                "the write was not committed: {e}"
            )))),
            None => Err(sqlx::Error::Io(std::io::Error::other(
                "the write was not committed",
            ))),
        }
    }
}

impl Writer {
    /// The writer on `pool`'s connection.
    pub(crate) fn new(pool: SqlitePool) -> Self {
        Self(Arc::new(Shared {
            pool,
            state: Arc::default(),
            commits: AtomicU64::new(0),
            waiting: AtomicUsize::new(0),
        }))
    }

    /// The pool the writer connection comes from (for migrations, before
    /// any write).
    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.0.pool
    }

    /// `COMMIT`s so far that succeeded.
    #[cfg(test)]
    pub(crate) fn commits(&self) -> u64 {
        self.0.commits.load(Ordering::Acquire)
    }

    /// Jobs waiting for their turn right now.
    #[cfg(test)]
    pub(crate) fn waiting(&self) -> usize {
        self.0.waiting.load(Ordering::Acquire)
    }

    async fn turn(&self) -> Result<OwnedMutexGuard<State>, StoreError> {
        self.0.waiting.fetch_add(1, Ordering::AcqRel);
        let turn = tokio::time::timeout(TURN_TIMEOUT, self.0.state.clone().lock_owned()).await;
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
        let mut state = turn
            .map_err(|_| StoreError::Unavailable("the database writer was busy for 10 s".into()))?;
        settle(&mut state).await;
        Ok(state)
    }

    /// A write transaction (a job of the current group, or of a new one).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the writer is stuck or the database
    /// refuses the transaction.
    pub(crate) async fn begin(&self) -> Result<WriteTx, StoreError> {
        let mut state = self.turn().await?;
        if state.open.is_none() {
            let mut conn = self.0.pool.acquire().await.map_err(db_err)?;
            // IMMEDIATE: the database's write lock from the start, so
            // nothing lands between a job's reads and its writes.
            sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut *conn)
                .await
                .map_err(db_err)?;
            state.open = Some(Open {
                conn,
                group: Group::new(),
                released: 0,
                rollback_pending: false,
                broken: false,
                committer: false,
                ended: false,
            });
        }
        let open = OwnedMutexGuard::try_map(state, |s| s.open.as_mut())
            .map_err(|_| StoreError::Unavailable("the database writer lost its group".into()))?;
        let mut tx = WriteTx {
            open,
            shared: self.0.clone(),
            savepoint: false,
            released: false,
        };
        sqlx::query("SAVEPOINT job")
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.savepoint = true;
        Ok(tx)
    }

    /// Commits the group under way, if any (before closing the store).
    pub(crate) async fn flush(&self) {
        let mut state = self.0.state.clone().lock_owned().await;
        settle(&mut state).await;
        if let Some(open) = state.open.take() {
            commit(&self.0, open).await;
        }
    }

    /// Runs `f` while nothing is written: the group under way, if any, is
    /// committed first, and the next job waits until `f` is done (the
    /// background checkpoint's last pass: see `spawn_checkpointer`).
    pub(crate) async fn paused<F: std::future::Future>(&self, f: F) -> F::Output {
        let mut state = self.0.state.clone().lock_owned().await;
        settle(&mut state).await;
        if let Some(open) = state.open.take() {
            commit(&self.0, open).await;
        }
        let out = f.await;
        drop(state);
        out
    }

    /// Statements each committed on their own (as with an autocommit
    /// connection), in groups with the other writers.
    pub(crate) fn autocommit(&self) -> Box<Autocommit> {
        Box::new(Autocommit(self.clone()))
    }
}

/// Rolls back what a job that went away left, and a broken group whole.
async fn settle(state: &mut State) {
    let Some(open) = state.open.as_mut() else {
        return;
    };
    if open.rollback_pending {
        open.rollback_pending = false;
        if rollback_job(&mut open.conn).await.is_err() {
            open.broken = true;
        }
    }
    if open.broken
        && let Some(mut open) = state.open.take()
    {
        tracing::warn!("a write group could not roll back one job; rolling back the group");
        let rolled_back = sqlx::query("ROLLBACK").execute(&mut *open.conn).await;
        open.ended = rolled_back.is_ok();
        open.group
            .end(Err("the write group was rolled back".to_owned()));
    }
}

async fn rollback_job(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    sqlx::query("ROLLBACK TO job").execute(&mut *conn).await?;
    sqlx::query("RELEASE job").execute(&mut *conn).await?;
    Ok(())
}

/// Commits `open` (the writer's turn held) and tells its jobs.
async fn commit(shared: &Shared, mut open: Open) {
    match sqlx::query("COMMIT").execute(&mut *open.conn).await {
        Ok(_) => {
            open.ended = true;
            shared.commits.fetch_add(1, Ordering::AcqRel);
            open.group.end(Ok(()));
        }
        Err(e) => {
            tracing::error!(error = %e, "a write group failed to commit");
            open.ended = sqlx::query("ROLLBACK")
                .execute(&mut *open.conn)
                .await
                .is_ok();
            open.group.end(Err(e.to_string()));
        }
    }
    // `open` dropped: the connection goes back to the pool (on an
    // in-memory database the readers need it).
}

/// Waits for the writer after the jobs queued now, then commits `group`
/// (unless it has ended already).
async fn committer(shared: Arc<Shared>, group: Arc<Group>) {
    let mut state = shared.state.clone().lock_owned().await;
    settle(&mut state).await;
    if state
        .open
        .as_ref()
        .is_some_and(|o| Arc::ptr_eq(&o.group, &group))
        && let Some(open) = state.open.take()
    {
        commit(&shared, open).await;
    }
}

/// One job: a write transaction (a savepoint of the group). Derefs to the
/// connection; dropped without [`commit`](Self::commit), its work is rolled
/// back.
pub(crate) struct WriteTx {
    open: OwnedMappedMutexGuard<State, Open>,
    shared: Arc<Shared>,
    /// Its savepoint exists.
    savepoint: bool,
    /// Its work is in the group.
    released: bool,
}

impl std::fmt::Debug for WriteTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteTx")
            .field("savepoint", &self.savepoint)
            .field("released", &self.released)
            .finish_non_exhaustive()
    }
}

impl Deref for WriteTx {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        &self.open.conn
    }
}

impl DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.open.conn
    }
}

impl WriteTx {
    /// Puts the job's work in the group and waits for the group's commit.
    ///
    /// # Errors
    ///
    /// The database's error when the savepoint cannot be released or the
    /// group does not commit (then nothing of this job was written).
    pub(crate) async fn commit(mut self) -> Result<(), sqlx::Error> {
        sqlx::query("RELEASE job").execute(&mut *self).await?;
        self.released = true;
        self.open.released += 1;
        let ended = self.open.group.0.subscribe();
        drop(self); // the next job's turn
        Group::ended(ended).await
    }

    /// Rolls the job's work back, then waits until what it may have read
    /// of the jobs before it in its group is committed (an answer built on
    /// it is then true).
    ///
    /// # Errors
    ///
    /// When the work it read was not committed.
    pub(crate) async fn rollback(mut self) -> Result<(), sqlx::Error> {
        if rollback_job(&mut self).await.is_err() {
            self.open.broken = true;
        }
        self.savepoint = false;
        let read_others = self.open.released > 0;
        let ended = self.open.group.0.subscribe();
        drop(self);
        if read_others {
            Group::ended(ended).await
        } else {
            Ok(())
        }
    }
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        if self.savepoint && !self.released {
            self.open.rollback_pending = true;
        }
        // The group is committed once the jobs queued now have had their
        // turn: a committer queues behind them.
        if !self.open.committer {
            self.open.committer = true;
            let (shared, group) = (self.shared.clone(), self.open.group.clone());
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    runtime.spawn(committer(shared, group));
                }
                Err(_) => tracing::error!("no runtime to commit a write group on"),
            }
        }
    }
}

/// Statements run as with an autocommit connection: each its own job,
/// answered once committed. What [`SqliteStore::writer`](super::SqliteStore)
/// gives for single-statement writes.
#[derive(Debug)]
pub(crate) struct Autocommit(Writer);

#[async_trait]
impl Conn for Autocommit {
    type Row = SqliteRow;
    const FOR_UPDATE: &'static str = <SqliteConnection as Conn>::FOR_UPDATE;
    const SKIP_LOCKED: &'static str = <SqliteConnection as Conn>::SKIP_LOCKED;
    const GREATEST: &'static str = <SqliteConnection as Conn>::GREATEST;

    async fn run(&mut self, sql: &str, values: Vec<Value>) -> Result<u64, StoreError> {
        let mut tx = self.0.begin().await?;
        let n = (*tx).run(sql, values).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(n)
    }

    async fn all(&mut self, sql: &str, values: Vec<Value>) -> Result<Vec<SqliteRow>, StoreError> {
        let mut tx = self.0.begin().await?;
        let rows = (*tx).all(sql, values).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(rows)
    }

    async fn one(
        &mut self,
        sql: &str,
        values: Vec<Value>,
    ) -> Result<Option<SqliteRow>, StoreError> {
        let mut tx = self.0.begin().await?;
        let row = (*tx).one(sql, values).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(row)
    }
}

#[cfg(test)]
mod tests {
    use time::OffsetDateTime;
    use wagate_domain::OrgId;

    use super::super::SqliteStore;
    use crate::test_support::session;
    use crate::{SessionRegistry, StoreError, conn};

    async fn store() -> (SqliteStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/w.db", dir.path().display());
        let store = SqliteStore::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        (store, dir)
    }

    /// Lets the spawned writers run until `n` of them wait for their turn.
    async fn until_waiting(store: &SqliteStore, n: usize) {
        while store.writer.waiting() < n {
            tokio::task::yield_now().await;
        }
    }

    async fn sessions_in(store: &SqliteStore, org: &str) -> usize {
        let page = store
            .list(
                &OrgId::parse(org).unwrap(),
                wagate_domain::PageRequest::new(Some(100), None).unwrap(),
            )
            .await
            .unwrap();
        page.items.len()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writers_queued_together_share_one_commit_and_answer_after_it() {
        let (mut store, _dir) = store().await;
        // The background checkpointer's paused pass commits the open group
        // when it gets the writer: stopped, so that the one commit counted
        // is the group's own (it made the count 2 once on a busy machine).
        store._checkpointer = None;
        let now = OffsetDateTime::now_utc();
        // One writer holds the turn while 16 others queue behind it.
        let mut held = store.writer.begin().await.unwrap();
        conn::insert_session(&mut *held, &session("acme", 100, now))
            .await
            .unwrap();
        let before = store.writer.commits();
        let mut writers = tokio::task::JoinSet::new();
        for n in 0..16 {
            let store = store.clone();
            writers.spawn(async move {
                store.insert(&session("acme", n, now)).await.unwrap();
                // Answered only once its work is committed.
                store.writer.commits()
            });
        }
        until_waiting(&store, 16).await;
        held.commit().await.unwrap();
        assert_eq!(store.writer.commits(), before + 1);
        while let Some(seen) = writers.join_next().await {
            assert!(
                seen.unwrap() > before,
                "a writer answered before its commit"
            );
        }
        // 17 transactions, one COMMIT (one fsync).
        assert_eq!(store.writer.commits(), before + 1);
        assert_eq!(sessions_in(&store, "acme").await, 17);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_failing_writer_fails_alone() {
        let (store, _dir) = store().await;
        let now = OffsetDateTime::now_utc();
        store.insert(&session("acme", 1, now)).await.unwrap();
        let held = store.writer.begin().await.unwrap();
        let before = store.writer.commits();
        // A transaction that writes, then fails: its own write goes too.
        let failing = {
            let store = store.clone();
            tokio::spawn(async move {
                let mut tx = store.writer.begin().await?;
                conn::insert_session(&mut *tx, &session("acme", 2, now)).await?;
                sqlx::query("INSERT INTO no_such_table VALUES (1)")
                    .execute(&mut *tx)
                    .await
                    .map_err(crate::rows::db_err)?;
                tx.commit().await.map_err(crate::rows::db_err)
            })
        };
        until_waiting(&store, 1).await;
        // A single statement refused (the id exists).
        let duplicate = {
            let store = store.clone();
            tokio::spawn(async move { store.insert(&session("acme", 1, now)).await })
        };
        until_waiting(&store, 2).await;
        let fine: Vec<_> = (3..6)
            .map(|n| {
                let store = store.clone();
                tokio::spawn(async move { store.insert(&session("acme", n, now)).await })
            })
            .collect();
        until_waiting(&store, 5).await;
        held.commit().await.unwrap();
        assert!(matches!(
            failing.await.unwrap(),
            Err(StoreError::Unavailable(_))
        ));
        assert!(matches!(
            duplicate.await.unwrap(),
            Err(StoreError::Conflict(_))
        ));
        for writer in fine {
            writer.await.unwrap().unwrap();
        }
        // All in one group, one commit: sessions 1, 3, 4, 5; not 2.
        assert_eq!(store.writer.commits(), before + 1);
        assert_eq!(sessions_in(&store, "acme").await, 4);
        let org = OrgId::parse("acme").unwrap();
        assert!(
            store
                .get(&org, &session("acme", 2, now).id)
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_answer_read_from_uncommitted_work_waits_for_its_commit() {
        let (store, _dir) = store().await;
        let now = OffsetDateTime::now_utc();
        let held = store.writer.begin().await.unwrap();
        let before = store.writer.commits();
        // First a writer inserts a session (in the group, not committed) …
        let first = {
            let store = store.clone();
            tokio::spawn(async move {
                store.insert(&session("acme", 1, now)).await.unwrap();
            })
        };
        until_waiting(&store, 1).await;
        // … then one reads it in its own transaction and writes nothing.
        let reader = {
            let store = store.clone();
            tokio::spawn(async move {
                let mut tx = store.writer.begin().await.unwrap();
                let found = conn::fetch_session(&mut *tx, None, &session("acme", 1, now).id, true)
                    .await
                    .unwrap();
                tx.rollback().await.unwrap();
                (found.is_some(), store.writer.commits())
            })
        };
        until_waiting(&store, 2).await;
        held.commit().await.unwrap();
        let (found, commits) = reader.await.unwrap();
        assert!(found, "the reader ran after the first writer, in its group");
        assert!(commits > before, "answered from work not yet committed");
        first.await.unwrap();
    }

    #[tokio::test]
    async fn an_in_memory_database_shares_its_one_connection_between_groups_and_readers() {
        let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
        store.migrate().await.unwrap();
        let now = OffsetDateTime::now_utc();
        let mut writers = tokio::task::JoinSet::new();
        for n in 0..8 {
            let store = store.clone();
            writers.spawn(async move { store.insert(&session("acme", n, now)).await });
        }
        while let Some(done) = writers.join_next().await {
            done.unwrap().unwrap();
        }
        assert_eq!(sessions_in(&store, "acme").await, 8);
        store.close().await;
    }
}
