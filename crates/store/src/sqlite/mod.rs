//! [`SqliteStore`]: both store traits on one SQLite database through sqlx.

use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use wagate_domain::{
    ApiKey, ApiKeyId, ApiKeyName, CapabilitySet, EventData, Jid, LastError, NewApiKey, OrgId, Page,
    PageRequest, PendingLifecycle, Session, SessionErrorCode, SessionId, SessionName,
    SessionStatus,
};

use crate::{ApiKeyStore, SessionPatch, SessionRegistry, StoreError};

mod events;
mod messages;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Column lists as macros, so queries are `&\'static str` built at compile time.
macro_rules! session_columns {
    () => {
        "id, org_id, name, status, jid, push_name, keep_connected, created_at, updated_at, last_connected_at, last_error_code, last_error_message, pending_op, revision"
    };
}
const SESSION_COLUMNS: &str = session_columns!();
macro_rules! key_columns {
    () => {
        "id, org_id, name, capabilities, prefix, created_at, expires_at, last_used_at"
    };
}
const KEY_COLUMNS: &str = key_columns!();

/// The SQLite store. Cheap to clone (a connection pool inside).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Reads (WAL readers never wait for the writer).
    pool: SqlitePool,
    /// Every write, on one connection: SQLite has one writer at a time, and
    /// writers queued here wait in order instead of sleeping in SQLite's
    /// busy handler (1, 2, 5 … 100 ms naps) while another holds the lock.
    writer: SqlitePool,
    counts: Arc<StatusCounts>,
    listener: Arc<std::sync::OnceLock<Arc<dyn crate::CommitListener>>>,
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
            .synchronous(SqliteSynchronous::Normal)
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
        let writer_options = options.clone();
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
        Ok(Self {
            pool,
            writer,
            counts: Arc::default(),
            listener: Arc::default(),
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
            .run(&self.writer)
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
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM sessions GROUP BY status")
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let status: String = row.try_get("status").map_err(corrupt("status"))?;
            let n: i64 = row.try_get("n").map_err(corrupt("n"))?;
            if let Some(status) = SessionStatus::from_name(&status) {
                out.push((status, u64::try_from(n).unwrap_or(0)));
            }
        }
        Ok(out)
    }

    /// Closes every connection; later calls fail.
    pub async fn close(&self) {
        self.pool.close().await;
        self.writer.close().await;
    }
}

fn db_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            StoreError::Conflict(d.message().to_owned())
        }
        _ => StoreError::Unavailable(e.to_string()),
    }
}

fn ts(t: OffsetDateTime) -> String {
    // RFC 3339 formatting of a UTC OffsetDateTime cannot fail for years 0..=9999.
    t.format(&Rfc3339).unwrap_or_default()
}

fn parse_ts(field: &str, s: &str) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::parse(s, &Rfc3339)
        .map_err(|e| StoreError::Corrupt(format!("{field} '{s}': {e}")))
}

fn parse_opt_ts(field: &str, s: Option<String>) -> Result<Option<OffsetDateTime>, StoreError> {
    s.map(|s| parse_ts(field, &s)).transpose()
}

fn corrupt(field: &str) -> impl Fn(sqlx::Error) -> StoreError + '_ {
    move |e| StoreError::Corrupt(format!("{field}: {e}"))
}

fn session_from_row(row: &SqliteRow) -> Result<Session, StoreError> {
    let get = |c: &'static str| row.try_get::<Option<String>, _>(c).map_err(corrupt(c));
    let need = |c: &'static str| get(c)?.ok_or_else(|| StoreError::Corrupt(format!("{c} is null")));
    let domain = |e: wagate_domain::DomainError| StoreError::Corrupt(e.to_string());
    let id = SessionId::parse(&need("id")?).map_err(domain)?;
    let status_text = need("status")?;
    let last_error = match (get("last_error_code")?, get("last_error_message")?) {
        (Some(code), message) => Some(LastError {
            code: SessionErrorCode::from_name(&code).unwrap_or(SessionErrorCode::Internal),
            message: message.unwrap_or_default(),
        }),
        (None, _) => None,
    };
    Ok(Session {
        id,
        org: OrgId::parse(&need("org_id")?).map_err(domain)?,
        name: get("name")?
            .map(|n| SessionName::parse(&n))
            .transpose()
            .map_err(domain)?,
        status: SessionStatus::from_name(&status_text)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown status '{status_text}'")))?,
        jid: get("jid")?
            .map(|j| Jid::parse(&j))
            .transpose()
            .map_err(domain)?,
        push_name: get("push_name")?,
        keep_connected: row
            .try_get::<i64, _>("keep_connected")
            .map_err(corrupt("keep_connected"))?
            != 0,
        created_at: parse_ts("created_at", &need("created_at")?)?,
        updated_at: parse_ts("updated_at", &need("updated_at")?)?,
        last_connected_at: parse_opt_ts("last_connected_at", get("last_connected_at")?)?,
        last_error,
        pending: get("pending_op")?
            .map(|p| {
                PendingLifecycle::from_name(&p)
                    .ok_or_else(|| StoreError::Corrupt(format!("unknown pending_op '{p}'")))
            })
            .transpose()?,
        revision: u64::try_from(
            row.try_get::<i64, _>("revision")
                .map_err(corrupt("revision"))?,
        )
        .map_err(|_| StoreError::Corrupt("negative revision".into()))?,
    })
}

fn revision(r: u64) -> Result<i64, StoreError> {
    i64::try_from(r).map_err(|_| StoreError::Corrupt(format!("revision {r} out of range")))
}

fn key_from_row(row: &SqliteRow) -> Result<ApiKey, StoreError> {
    let get = |c: &'static str| row.try_get::<Option<String>, _>(c).map_err(corrupt(c));
    let need = |c: &'static str| get(c)?.ok_or_else(|| StoreError::Corrupt(format!("{c} is null")));
    let domain = |e: wagate_domain::DomainError| StoreError::Corrupt(e.to_string());
    Ok(ApiKey {
        id: ApiKeyId::parse(&need("id")?).map_err(domain)?,
        org: OrgId::parse(&need("org_id")?).map_err(domain)?,
        name: ApiKeyName::parse(&need("name")?).map_err(domain)?,
        capabilities: CapabilitySet::parse_list(&need("capabilities")?).map_err(domain)?,
        prefix: need("prefix")?,
        created_at: parse_ts("created_at", &need("created_at")?)?,
        expires_at: parse_opt_ts("expires_at", get("expires_at")?)?,
        last_used_at: parse_opt_ts("last_used_at", get("last_used_at")?)?,
    })
}

impl SqliteStore {
    /// Session `id` (of `org`, when given).
    async fn fetch(
        &self,
        org: Option<&OrgId>,
        id: &SessionId,
    ) -> Result<Option<Session>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(db_err)?;
        fetch_in(&mut conn, org, id).await
    }

    /// Reads the row, applies the patch ([`SessionPatch::apply`]), writes
    /// it and the events it causes (a `session.status` event when the
    /// status changes, plus the patch's own) with their webhook deliveries,
    /// all in one `BEGIN IMMEDIATE` transaction: the database's one writer
    /// lock is held from the read to the commit, so nothing lands in between.
    async fn patch(
        &self,
        org: Option<&OrgId>,
        id: &SessionId,
        patch: &SessionPatch,
        now: OffsetDateTime,
    ) -> Result<Option<Session>, StoreError> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_err)?;
        let Some(current) = fetch_in(&mut tx, org, id).await? else {
            return Ok(None);
        };
        let next = patch.apply(&current, now)?;
        if next.is_none() && patch.event.is_none() {
            return Ok(Some(current));
        }
        let mut events = Vec::new();
        if let Some(next) = &next {
            sqlx::query(
                "UPDATE sessions SET status = ?, jid = ?, push_name = ?, keep_connected = ?, \
                 updated_at = ?, last_connected_at = ?, last_error_code = ?, last_error_message = ?, \
                 pending_op = ?, revision = ? WHERE id = ?",
            )
            .bind(next.status.as_str())
            .bind(next.jid.as_ref().map(ToString::to_string))
            .bind(next.push_name.clone())
            .bind(i64::from(next.keep_connected))
            .bind(ts(next.updated_at))
            .bind(next.last_connected_at.map(ts))
            .bind(next.last_error.as_ref().map(|e| e.code.as_str()))
            .bind(next.last_error.as_ref().map(|e| e.message.clone()))
            .bind(next.pending.map(PendingLifecycle::as_str))
            .bind(revision(next.revision)?)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            if next.status != current.status {
                events.push(EventData::SessionStatus {
                    status: next.status,
                    previous: current.status,
                    last_error: next.last_error.clone(),
                });
            }
        }
        events.extend(patch.event.clone());
        self.commit_with_events(tx, &current.org, Some(id), &events, now)
            .await?;
        if let Some(next) = &next {
            self.counts.moved(Some(current.status), Some(next.status));
        }
        Ok(Some(next.unwrap_or(current)))
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
        mut tx: sqlx::Transaction<'_, Sqlite>,
        org: &OrgId,
        session: Option<&SessionId>,
        events: &[EventData],
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let queued = events::append(&mut tx, org, session, events, now).await?;
        tx.commit().await.map_err(db_err)?;
        self.notify(org, !events.is_empty(), queued);
        Ok(())
    }

    /// Sets who is told when events commit (once; later calls are ignored).
    pub fn set_commit_listener(&self, listener: Arc<dyn crate::CommitListener>) {
        let _ = self.listener.set(listener);
    }
}

/// Session `id` (of `org`, when given), read on `conn`.
async fn fetch_in(
    conn: &mut sqlx::SqliteConnection,
    org: Option<&OrgId>,
    id: &SessionId,
) -> Result<Option<Session>, StoreError> {
    let sql = concat!("SELECT ", session_columns!(), " FROM sessions WHERE id = ?");
    let row = sqlx::query(sql)
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err)?;
    let session = row.as_ref().map(session_from_row).transpose()?;
    Ok(session.filter(|s| org.is_none_or(|org| s.org == *org)))
}

#[async_trait]
impl SessionRegistry for SqliteStore {
    async fn insert(&self, s: &Session) -> Result<(), StoreError> {
        sqlx::query(concat!(
            "INSERT INTO sessions (",
            session_columns!(),
            ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(s.id.to_string())
        .bind(s.org.as_str().to_owned())
        .bind(s.name.as_ref().map(|n| n.as_str().to_owned()))
        .bind(s.status.as_str())
        .bind(s.jid.as_ref().map(ToString::to_string))
        .bind(s.push_name.clone())
        .bind(i64::from(s.keep_connected))
        .bind(ts(s.created_at))
        .bind(ts(s.updated_at))
        .bind(s.last_connected_at.map(ts))
        .bind(s.last_error.as_ref().map(|e| e.code.as_str()))
        .bind(s.last_error.as_ref().map(|e| e.message.clone()))
        .bind(s.pending.map(PendingLifecycle::as_str))
        .bind(revision(s.revision)?)
        .execute(&self.writer)
        .await
        .map_err(db_err)?;
        self.counts.moved(None, Some(s.status));
        Ok(())
    }

    async fn get(&self, org: &OrgId, id: &SessionId) -> Result<Option<Session>, StoreError> {
        self.fetch(Some(org), id).await
    }

    async fn list(&self, org: &OrgId, page: PageRequest) -> Result<Page<Session>, StoreError> {
        let mut q = QueryBuilder::<Sqlite>::new("SELECT ");
        q.push(SESSION_COLUMNS)
            .push(" FROM sessions WHERE org_id = ")
            .push_bind(org.as_str().to_owned());
        if let Some(after) = page.after {
            q.push(" AND id < ").push_bind(after.to_string());
        }
        // One extra row tells whether another page follows.
        q.push(" ORDER BY id DESC LIMIT ")
            .push_bind(i64::from(page.limit()) + 1);
        let rows = q.build().fetch_all(&self.pool).await.map_err(db_err)?;
        let mut items = rows
            .iter()
            .map(session_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let more = items.len() > page.limit() as usize;
        items.truncate(page.limit() as usize);
        let next_cursor = if more {
            items.last().map(|s| s.id)
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    async fn update(
        &self,
        org: &OrgId,
        id: &SessionId,
        patch: &SessionPatch,
        now: OffsetDateTime,
    ) -> Result<Option<Session>, StoreError> {
        self.patch(Some(org), id, patch, now).await
    }

    async fn record_observed(
        &self,
        id: &SessionId,
        patch: &SessionPatch,
        now: OffsetDateTime,
    ) -> Result<Option<Session>, StoreError> {
        self.patch(None, id, patch, now).await
    }

    async fn delete(&self, org: &OrgId, id: &SessionId) -> Result<bool, StoreError> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_err)?;
        let gone = sqlx::query("DELETE FROM sessions WHERE id = ? AND org_id = ? RETURNING status")
            .bind(id.to_string())
            .bind(org.as_str().to_owned())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
        let Some(row) = gone else {
            return Ok(false);
        };
        let status: String = row.try_get("status").map_err(corrupt("status"))?;
        let now = OffsetDateTime::now_utc();
        self.commit_with_events(tx, org, Some(id), &[EventData::SessionDeleted], now)
            .await?;
        self.counts.moved(SessionStatus::from_name(&status), None);
        Ok(true)
    }

    async fn to_resume(&self) -> Result<Vec<Session>, StoreError> {
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

    async fn count_by_status(&self) -> Result<Vec<(SessionStatus, u64)>, StoreError> {
        match self.counts.get() {
            Some(counts) => Ok(counts),
            // Not migrated by this handle (a tool's): count.
            None => self.query_counts().await,
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }
}

#[async_trait]
impl ApiKeyStore for SqliteStore {
    async fn insert_key(&self, new: &NewApiKey) -> Result<(), StoreError> {
        let k = &new.key;
        sqlx::query(
            "INSERT INTO api_keys (id, org_id, name, capabilities, prefix, secret_hash, created_at, expires_at, last_used_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(k.id.to_string())
        .bind(k.org.as_str().to_owned())
        .bind(k.name.as_str().to_owned())
        .bind(k.capabilities.to_string())
        .bind(k.prefix.clone())
        .bind(new.secret_hash.to_vec())
        .bind(ts(k.created_at))
        .bind(k.expires_at.map(ts))
        .bind(k.last_used_at.map(ts))
        .execute(&self.writer)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn find_by_hash(&self, hash: &[u8; 32]) -> Result<Option<ApiKey>, StoreError> {
        let sql = concat!(
            "SELECT ",
            key_columns!(),
            " FROM api_keys WHERE secret_hash = ? AND revoked_at IS NULL"
        );
        let row = sqlx::query(sql)
            .bind(hash.to_vec())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(key_from_row).transpose()
    }

    async fn list_keys(&self, org: &OrgId) -> Result<Vec<ApiKey>, StoreError> {
        let sql = concat!(
            "SELECT ",
            key_columns!(),
            " FROM api_keys WHERE org_id = ? AND revoked_at IS NULL ORDER BY id"
        );
        let rows = sqlx::query(sql)
            .bind(org.as_str().to_owned())
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(key_from_row).collect()
    }

    async fn revoke_key(
        &self,
        org: Option<&OrgId>,
        id: &ApiKeyId,
        now: OffsetDateTime,
    ) -> Result<Option<ApiKey>, StoreError> {
        let mut q = QueryBuilder::<Sqlite>::new("UPDATE api_keys SET revoked_at = ");
        q.push_bind(ts(now))
            .push(" WHERE revoked_at IS NULL AND id = ")
            .push_bind(id.to_string());
        if let Some(org) = org {
            q.push(" AND org_id = ").push_bind(org.as_str().to_owned());
        }
        q.push(" RETURNING ").push(KEY_COLUMNS);
        let row = q
            .build()
            .fetch_optional(&self.writer)
            .await
            .map_err(db_err)?;
        row.as_ref().map(key_from_row).transpose()
    }

    async fn touch_key(&self, id: &ApiKeyId, at: OffsetDateTime) -> Result<(), StoreError> {
        sqlx::query("UPDATE api_keys SET last_used_at = ? WHERE id = ?")
            .bind(ts(at))
            .bind(id.to_string())
            .execute(&self.writer)
            .await
            .map_err(db_err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::session;
    use wagate_domain::{ApiKeySecret, Capability};

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

    #[tokio::test]
    async fn sessions_are_scoped_by_org_and_paged_newest_first() {
        let (store, _dir) = store().await;
        let now = OffsetDateTime::now_utc();
        for n in 1..=5 {
            store.insert(&session("acme", n, now)).await.unwrap();
        }
        store.insert(&session("other", 6, now)).await.unwrap();
        let s1 = session("acme", 1, now);
        assert_eq!(
            store.get(&org("acme"), &s1.id).await.unwrap(),
            Some(s1.clone())
        );
        assert_eq!(store.get(&org("other"), &s1.id).await.unwrap(), None);
        assert!(matches!(
            store.insert(&s1).await,
            Err(StoreError::Conflict(_))
        ));

        let p1 = store
            .list(&org("acme"), PageRequest::new(Some(2), None).unwrap())
            .await
            .unwrap();
        assert_eq!(
            p1.items
                .iter()
                .map(|s| s.id.to_string())
                .collect::<Vec<_>>(),
            vec![format!("sess_{:026}", 5), format!("sess_{:026}", 4)]
        );
        let p2 = store
            .list(
                &org("acme"),
                PageRequest::new(Some(2), p1.next_cursor).unwrap(),
            )
            .await
            .unwrap();
        let p3 = store
            .list(
                &org("acme"),
                PageRequest::new(Some(2), p2.next_cursor).unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(p3.items.len(), 1);
        assert_eq!(p3.next_cursor, None);

        assert!(!store.delete(&org("other"), &s1.id).await.unwrap());
        assert!(store.delete(&org("acme"), &s1.id).await.unwrap());
        assert_eq!(store.get(&org("acme"), &s1.id).await.unwrap(), None);
    }

    #[tokio::test]
    async fn patches_change_only_their_fields() {
        let (store, _dir) = store().await;
        let now = OffsetDateTime::now_utc();
        let s = session("acme", 1, now);
        store.insert(&s).await.unwrap();
        let later = now + time::Duration::seconds(5);
        let jid = Jid::parse("15550001111@s.whatsapp.net").unwrap();
        let patch = SessionPatch {
            status: Some(SessionStatus::Connected),
            status_if_unlinked: None,
            status_unless: Vec::new(),
            jid: Some(Some(jid.clone())),
            push_name: Some(Some("Acme".into())),
            keep_connected: Some(true),
            last_connected_at: Some(later),
            last_error: Some(Some(LastError {
                code: SessionErrorCode::Unreachable,
                message: "x".into(),
            })),
            ..SessionPatch::default()
        };
        assert!(
            store
                .update(&org("other"), &s.id, &patch, later)
                .await
                .unwrap()
                .is_none()
        );
        let updated = store
            .update(&org("acme"), &s.id, &patch, later)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(updated.jid, Some(jid));
        assert_eq!(updated.updated_at, later);
        assert_eq!(
            updated.last_error.as_ref().unwrap().code,
            SessionErrorCode::Unreachable
        );
        assert_eq!(store.to_resume().await.unwrap().len(), 1);
        let cleared = store
            .record_observed(
                &s.id,
                &SessionPatch {
                    jid: Some(None),
                    last_error: Some(None),
                    ..SessionPatch::status(SessionStatus::LoggedOut)
                },
                later,
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (
                cleared.jid,
                cleared.last_error,
                cleared.push_name.as_deref()
            ),
            (None, None, Some("Acme"))
        );
        let counts = store.count_by_status().await.unwrap();
        assert_eq!(
            counts.iter().filter(|(_, n)| *n > 0).collect::<Vec<_>>(),
            vec![&(SessionStatus::LoggedOut, 1)]
        );
        // The kept counts agree with a count of the rows.
        let mut queried = store.query_counts().await.unwrap();
        queried.retain(|(_, n)| *n > 0);
        assert_eq!(queried, vec![(SessionStatus::LoggedOut, 1)]);
    }

    #[tokio::test]
    async fn api_keys_by_hash_list_revoke_touch() {
        let (store, _dir) = store().await;
        let now = OffsetDateTime::now_utc();
        let secret = ApiKeySecret::from_random_bytes([7; 32]);
        let key = ApiKey {
            id: ApiKeyId::parse(&format!("key_{:026}", 1)).unwrap(),
            org: org("acme"),
            name: ApiKeyName::parse("ci").unwrap(),
            capabilities: CapabilitySet::of([Capability::Read, Capability::Send]),
            prefix: secret.display_prefix().to_owned(),
            created_at: now,
            expires_at: None,
            last_used_at: None,
        };
        let hash = [9u8; 32];
        store
            .insert_key(&NewApiKey {
                key: key.clone(),
                secret_hash: hash,
            })
            .await
            .unwrap();
        assert_eq!(store.find_by_hash(&hash).await.unwrap(), Some(key.clone()));
        assert_eq!(store.list_keys(&org("acme")).await.unwrap().len(), 1);
        assert!(store.list_keys(&org("other")).await.unwrap().is_empty());
        store.touch_key(&key.id, now).await.unwrap();
        assert_eq!(
            store
                .find_by_hash(&hash)
                .await
                .unwrap()
                .unwrap()
                .last_used_at,
            Some(now)
        );
        assert!(
            store
                .revoke_key(Some(&org("other")), &key.id, now)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            store
                .revoke_key(Some(&org("acme")), &key.id, now)
                .await
                .unwrap()
                .is_some()
        );
        assert!(
            store
                .revoke_key(None, &key.id, now)
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(store.find_by_hash(&hash).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_write_that_changes_nothing_keeps_updated_at_and_revision() {
        let (store, _dir) = store().await;
        let t0 = OffsetDateTime::now_utc();
        let s = session("acme", 1, t0);
        store.insert(&s).await.unwrap();
        let later = t0 + time::Duration::minutes(5);
        let same = store
            .update(
                &org("acme"),
                &s.id,
                &SessionPatch::status(SessionStatus::New),
                later,
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!((same.updated_at, same.revision), (s.updated_at, 0));
        let moved = store
            .update(
                &org("acme"),
                &s.id,
                &SessionPatch::status(SessionStatus::Pairing),
                later,
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!((moved.updated_at, moved.revision), (later, 1));
    }

    #[tokio::test]
    async fn a_patch_naming_an_old_revision_is_refused() {
        let (store, _dir) = store().await;
        let now = OffsetDateTime::now_utc();
        let s = session("acme", 1, now);
        store.insert(&s).await.unwrap();
        // An event lands after the caller read revision 0 …
        store
            .record_observed(&s.id, &SessionPatch::status(SessionStatus::Connected), now)
            .await
            .unwrap();
        // … so the caller's write decided on revision 0 must not apply.
        let stale = SessionPatch {
            expected_revision: Some(0),
            ..SessionPatch::status(SessionStatus::Disconnected)
        };
        assert!(matches!(
            store.update(&org("acme"), &s.id, &stale, now).await,
            Err(StoreError::Changed)
        ));
        let row = store.get(&org("acme"), &s.id).await.unwrap().unwrap();
        assert_eq!((row.status, row.revision), (SessionStatus::Connected, 1));
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
        };
        reopened.migrate().await.unwrap();
        assert_eq!(
            nonzero(&reopened.count_by_status().await.unwrap()),
            nonzero(&kept)
        );
    }
}
