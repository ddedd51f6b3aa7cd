//! One statement, two databases: the device store's SQL is written once and
//! runs on the process's SQLite key store ([`SqliteFile`], diesel) or on
//! its PostgreSQL pool (sqlx).
//!
//! Statements are written in PostgreSQL's dialect with a few words SQLite is
//! given its own for (`SqliteText`): `$N` parameters (`?N`), `GREATEST(`
//! (SQLite's two-argument `MAX(`) and `= ANY($N)` over a list parameter
//! (`IN (SELECT value FROM json_each(?N))`, one JSON text bound whatever the
//! count; blobs travel as hex). An `INDEXED BY` hint, SQLite's only, is
//! dropped for PostgreSQL. Rows decode into one struct per shape that
//! derives both libraries' row traits ([`Row`]).
//!
//! Several gateways share a PostgreSQL device store, so a write there can
//! be fenced ([`Stmt::fenced`]): the device id `$1` is then read through
//! `whatsapp.fenced_device(…)` (sql/postgres.sql), which hands it over only
//! while the session's owner row still names this node at the claim's
//! epoch, and holds that row (`FOR SHARE`) until the write commits, so a
//! concurrent claim waits for it; otherwise the statement fails with
//! SQLSTATE `WG001` and changes nothing ([`FencedWrite`]). Same statement,
//! no extra round trip. SQLite (one gateway) ignores the fence.

use std::fmt;
use std::str::FromStr as _;

use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{BigInt, Binary, Bool, Integer, Nullable, Text, Untyped};
use diesel::sqlite::{Sqlite, SqliteConnection};
use diesel::{QueryResult, QueryableByName, RunQueryDsl};
use sqlx::Arguments as _;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use whatsapp_rust::wacore::store::error::{Result, StoreError};

mod sqlite;

#[cfg(test)]
pub(crate) use sqlite::READERS;
pub(crate) use sqlite::SqliteFile;

/// The PostgreSQL schema the device tables live in (`sessions` is also a
/// gateway table).
pub(crate) const PG_SCHEMA: &str = "whatsapp";
/// The device tables, created when missing (idempotent).
const PG_TABLES: &str = include_str!("../sql/postgres.sql");
/// Indexes the handle's statements need that whatsapp-rust's schema lacks:
/// its SQLite store keeps one device per file, so "every row of device N"
/// is every row; here one store holds every device, and without these such
/// a statement reads every device's rows (at 10,000 sessions, each login
/// read the whole `lid_pn_mapping` table). Created on both databases when
/// missing; a test holds every statement of the handle to a plan without a
/// table scan.
const DEVICE_INDEXES: &[&str] = &[
    "CREATE INDEX IF NOT EXISTS wagate_lid_pn_mapping_device ON lid_pn_mapping (device_id)",
    "CREATE INDEX IF NOT EXISTS wagate_tc_tokens_device ON tc_tokens (device_id)",
    "CREATE INDEX IF NOT EXISTS wagate_sender_key_devices_device \
     ON sender_key_devices (device_id, device_jid)",
];
/// Serializes schema creation between processes starting at once.
const PG_SCHEMA_LOCK: i64 = 0x7761_6761_7465_6473; // "wagateds"

/// A value bound to a statement parameter.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Int(i32),
    Big(i64),
    OptInt(Option<i32>),
    OptBig(Option<i64>),
    Text(String),
    OptText(Option<String>),
    Blob(Vec<u8>),
    OptBlob(Option<Vec<u8>>),
    Bool(bool),
    /// For `= ANY($N)`.
    Ints(Vec<i32>),
    /// For `= ANY($N)`.
    Texts(Vec<String>),
    /// For `= ANY($N)`.
    Blobs(Vec<Vec<u8>>),
}

macro_rules! arg_from {
    ($($t:ty => $v:ident),* $(,)?) => {$(
        impl From<$t> for Arg {
            fn from(v: $t) -> Self {
                Arg::$v(v.into())
            }
        }
    )*};
}

arg_from! {
    i32 => Int, i64 => Big, Option<i32> => OptInt, Option<i64> => OptBig,
    String => Text, &str => Text, Option<String> => OptText,
    Vec<u8> => Blob, &[u8] => Blob, Option<Vec<u8>> => OptBlob, bool => Bool,
    Vec<i32> => Ints, Vec<String> => Texts, Vec<Vec<u8>> => Blobs,
}

/// The claim a fenced write names: the session, this node, the epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WriteFence {
    pub session: String,
    pub node: String,
    pub epoch: i64,
}

/// The SQLSTATE `whatsapp.fenced_device` raises (sql/postgres.sql).
const FENCED_SQLSTATE: &str = "WG001";

/// A fenced write refused: the session's claim is no longer this node's
/// at that epoch (another gateway owns the session now). Nothing changed.
#[derive(Debug, thiserror::Error)]
#[error("another gateway owns this session now; the write was refused")]
pub(crate) struct FencedWrite;

/// Whether `e` is a refused fenced write.
pub(crate) fn is_fenced(e: &StoreError) -> bool {
    matches!(e, StoreError::Database(inner) if inner.is::<FencedWrite>())
}

/// A statement and its arguments, `$1` first.
#[derive(Debug, Clone)]
pub(crate) struct Stmt {
    sql: &'static str,
    args: Vec<Arg>,
    fence: Option<WriteFence>,
}

impl Stmt {
    pub(crate) fn new(sql: &'static str) -> Self {
        Self {
            sql,
            args: Vec::new(),
            fence: None,
        }
    }

    /// Makes this write conditional on `fence` on PostgreSQL (see the
    /// module docs); `$1` must be the device id.
    pub(crate) fn fenced(mut self, fence: Option<&WriteFence>) -> Self {
        self.fence = fence.cloned();
        self
    }

    /// Binds the next parameter.
    pub(crate) fn arg(mut self, value: impl Into<Arg>) -> Self {
        self.args.push(value.into());
        self
    }

    /// SHA-256 of the text and the arguments (each tagged, variable-length
    /// ones with their length): the same digest, the same write.
    pub(crate) fn digest(&self) -> [u8; 32] {
        use sha2::{Digest as _, Sha256};
        let mut h = Sha256::new();
        let bytes = |h: &mut Sha256, tag: u8, b: &[u8]| {
            h.update([tag]);
            h.update((b.len() as u64).to_le_bytes());
            h.update(b);
        };
        bytes(&mut h, 0, self.sql.as_bytes());
        for a in &self.args {
            match a {
                Arg::Int(v) => bytes(&mut h, 1, &v.to_le_bytes()),
                Arg::Big(v) => bytes(&mut h, 2, &v.to_le_bytes()),
                Arg::OptInt(None) | Arg::OptBig(None) | Arg::OptText(None) | Arg::OptBlob(None) => {
                    bytes(&mut h, 3, &[]);
                }
                Arg::OptInt(Some(v)) => bytes(&mut h, 4, &v.to_le_bytes()),
                Arg::OptBig(Some(v)) => bytes(&mut h, 5, &v.to_le_bytes()),
                Arg::Text(v) | Arg::OptText(Some(v)) => bytes(&mut h, 6, v.as_bytes()),
                Arg::Blob(v) | Arg::OptBlob(Some(v)) => bytes(&mut h, 7, v),
                Arg::Bool(v) => bytes(&mut h, 8, &[u8::from(*v)]),
                Arg::Ints(v) => {
                    bytes(&mut h, 9, &(v.len() as u64).to_le_bytes());
                    for i in v {
                        h.update(i.to_le_bytes());
                    }
                }
                Arg::Texts(v) => {
                    bytes(&mut h, 10, &(v.len() as u64).to_le_bytes());
                    for t in v {
                        bytes(&mut h, 6, t.as_bytes());
                    }
                }
                Arg::Blobs(v) => {
                    bytes(&mut h, 11, &(v.len() as u64).to_le_bytes());
                    for b in v {
                        bytes(&mut h, 7, b);
                    }
                }
            }
        }
        h.finalize().into()
    }

    fn sqlite(self) -> Result<Prepared> {
        let sql = sqlite_text(self.sql, &self.args);
        let binds = self
            .args
            .into_iter()
            .map(|a| {
                Ok(match a {
                    Arg::Int(v) => Bind::Int(v),
                    Arg::Big(v) => Bind::Big(v),
                    Arg::OptInt(v) => Bind::OptInt(v),
                    Arg::OptBig(v) => Bind::OptBig(v),
                    Arg::Text(v) => Bind::Text(v),
                    Arg::OptText(v) => Bind::OptText(v),
                    Arg::Blob(v) => Bind::Blob(v),
                    Arg::OptBlob(v) => Bind::OptBlob(v),
                    Arg::Bool(v) => Bind::Bool(v),
                    Arg::Ints(v) => Bind::Text(json(&v)?),
                    Arg::Texts(v) => Bind::Text(json(&v)?),
                    Arg::Blobs(v) => {
                        Bind::Text(json(&v.iter().map(|b| hex(b)).collect::<Vec<_>>())?)
                    }
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Prepared::new(&sql, binds))
    }

    /// The PostgreSQL text and its bound arguments.
    fn postgres(mut self) -> Result<(sqlx::AssertSqlSafe<String>, PgArguments)> {
        let mut text = postgres_text(self.sql);
        if let Some(fence) = self.fence.take() {
            text = fence_device(&text, self.args.len());
            self.args.push(Arg::Text(fence.session));
            self.args.push(Arg::Text(fence.node));
            self.args.push(Arg::Big(fence.epoch));
        }
        let mut out = PgArguments::default();
        for a in self.args {
            match a {
                Arg::Int(v) => out.add(v),
                Arg::Big(v) => out.add(v),
                Arg::OptInt(v) => out.add(v),
                Arg::OptBig(v) => out.add(v),
                Arg::Text(v) => out.add(v),
                Arg::OptText(v) => out.add(v),
                Arg::Blob(v) => out.add(v),
                Arg::OptBlob(v) => out.add(v),
                Arg::Bool(v) => out.add(v),
                Arg::Ints(v) => out.add(v),
                Arg::Texts(v) => out.add(v),
                Arg::Blobs(v) => out.add(v),
            }
            .map_err(StoreError::Serialization)?;
        }
        Ok((sqlx::AssertSqlSafe(text), out))
    }
}

/// `sql` with every `$1` (the device id) read through the fence function,
/// whose other arguments follow the statement's `bound` ones. A scalar
/// sub-select is evaluated once per statement (an init plan), before any
/// row is written.
fn fence_device(sql: &str, bound: usize) -> String {
    let guarded = format!(
        "(SELECT whatsapp.fenced_device($1, ${}, ${}, ${}))",
        bound + 1,
        bound + 2,
        bound + 3
    );
    let mut out = String::with_capacity(sql.len() + 2 * guarded.len());
    let mut rest = sql;
    while let Some(at) = rest.find("$1") {
        let after = &rest[at + 2..];
        out.push_str(&rest[..at]);
        if after.starts_with(|c: char| c.is_ascii_digit()) {
            out.push_str("$1");
        } else {
            out.push_str(&guarded);
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// A PostgreSQL error, as the device store's error (a refused fenced write
/// as [`FencedWrite`]).
fn pg(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.code().as_deref() == Some(FENCED_SQLSTATE) => {
            StoreError::Database(Box::new(FencedWrite))
        }
        _ => db(e),
    }
}

fn json<T: whatsapp_rust::serde::Serialize>(items: &T) -> Result<String> {
    whatsapp_rust::serde_json::to_string(items).map_err(|e| StoreError::Serialization(Box::new(e)))
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The SQLite spelling of a statement (see the module docs).
fn sqlite_text(sql: &str, args: &[Arg]) -> String {
    let mut out = String::with_capacity(sql.len() + 32);
    let mut rest = sql;
    while let Some(at) = rest.find("= ANY($") {
        out.push_str(&rest[..at]);
        let digits: String = rest[at + 7..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let value = match digits
            .parse::<usize>()
            .ok()
            .and_then(|n| args.get(n.wrapping_sub(1)))
        {
            Some(Arg::Blobs(_)) => "unhex(value)",
            _ => "value",
        };
        out.push_str(&format!("IN (SELECT {value} FROM json_each(${digits}))"));
        // `= ANY($` + digits + `)`
        rest = &rest[at + 7 + digits.len() + 1..];
    }
    out.push_str(rest);
    out.replace("GREATEST(", "MAX(").replace('$', "?")
}

/// The PostgreSQL spelling of a statement: without SQLite's index hints.
fn postgres_text(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(at) = rest.find(" INDEXED BY ") {
        out.push_str(&rest[..at]);
        let after = &rest[at + " INDEXED BY ".len()..];
        let name = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        rest = &after[name..];
    }
    out.push_str(rest);
    out
}

/// A value bound to a SQLite statement (lists already JSON text).
#[derive(Debug)]
enum Bind {
    Int(i32),
    Big(i64),
    OptInt(Option<i32>),
    OptBig(Option<i64>),
    Text(String),
    OptText(Option<String>),
    Blob(Vec<u8>),
    OptBlob(Option<Vec<u8>>),
    Bool(bool),
}

/// A SQLite statement diesel keeps prepared on the connection that ran it,
/// keyed by its text and the types of its binds. (diesel's `sql_query` is
/// prepared anew on every call: during a mass login that was one SQLite
/// parse and plan per statement of every session.) Our texts are fixed
/// (`&'static str`, lists bound as one JSON text), so the cache holds one
/// entry per statement, not one per call.
#[derive(Debug)]
pub(crate) struct Prepared {
    /// The text between parameters, each followed by the index in `binds`
    /// of the one it is followed by (`?N` is `binds[N - 1]`; diesel numbers
    /// nothing, so a parameter used twice is bound twice).
    pieces: Vec<(String, Option<usize>)>,
    binds: Vec<Bind>,
}

impl Prepared {
    /// `sql` with `?N` parameters.
    fn new(sql: &str, binds: Vec<Bind>) -> Self {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut rest = sql;
        while let Some(at) = rest.find('?') {
            let after = &rest[at + 1..];
            let digits = after
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(after.len());
            match after[..digits].parse::<usize>() {
                Ok(n) if n > 0 => {
                    text.push_str(&rest[..at]);
                    pieces.push((std::mem::take(&mut text), Some(n - 1)));
                }
                // Not a parameter of ours: text.
                _ => text.push_str(&rest[..=at + digits]),
            }
            rest = &after[digits..];
        }
        text.push_str(rest);
        pieces.push((text, None));
        Self { pieces, binds }
    }
}

impl QueryFragment<Sqlite> for Prepared {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
        for (text, param) in &self.pieces {
            out.push_sql(text);
            let Some(i) = *param else {
                continue;
            };
            let b = self.binds.get(i).ok_or_else(|| {
                diesel::result::Error::QueryBuilderError(
                    format!("no value bound for parameter {}", i + 1).into(),
                )
            })?;
            match b {
                Bind::Int(v) => out.push_bind_param::<Integer, _>(v)?,
                Bind::Big(v) => out.push_bind_param::<BigInt, _>(v)?,
                Bind::OptInt(v) => out.push_bind_param::<Nullable<Integer>, _>(v)?,
                Bind::OptBig(v) => out.push_bind_param::<Nullable<BigInt>, _>(v)?,
                Bind::Text(v) => out.push_bind_param::<Text, _>(v)?,
                Bind::OptText(v) => out.push_bind_param::<Nullable<Text>, _>(v)?,
                Bind::Blob(v) => out.push_bind_param::<Binary, _>(v)?,
                Bind::OptBlob(v) => out.push_bind_param::<Nullable<Binary>, _>(v)?,
                Bind::Bool(v) => out.push_bind_param::<Bool, _>(v)?,
            }
        }
        Ok(())
    }
}

impl QueryId for Prepared {
    type QueryId = ();
    // No static id: the cache keys it by its SQL text and bind types.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for Prepared {
    type SqlType = Untyped;
}

impl RunQueryDsl<SqliteConnection> for Prepared {}

/// A row shape both databases decode (by column name).
pub(crate) trait Row:
    QueryableByName<Sqlite> + for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin + 'static
{
}

impl<T> Row for T where
    T: QueryableByName<Sqlite> + for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin + 'static
{
}

/// Which SQLite connection a statement runs on (PostgreSQL has one pool).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    /// The one writer, under the store's write permit.
    Write,
    /// A WAL reader (one snapshot; never takes the write lock).
    Read,
    /// The reader kept for API calls' lookups, so that they never queue
    /// behind the reads of thousands of sessions logging in.
    Interactive,
}

/// The process's device store: one SQLite key store, or one PostgreSQL pool.
pub(crate) enum Db {
    /// One file: a writer, a few readers and a reader for API calls
    /// ([`SqliteFile`]).
    Sqlite(Box<SqliteFile>),
    /// A pool on the `whatsapp` schema.
    Postgres(PgPool),
}

impl fmt::Debug for Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Sqlite(_) => "Db::Sqlite",
            Self::Postgres(_) => "Db::Postgres",
        })
    }
}

fn db<E: std::error::Error + Send + Sync + 'static>(e: E) -> StoreError {
    StoreError::Database(Box::new(e))
}

impl Db {
    /// Opens the SQLite file at `path` (creating and migrating it as
    /// whatsapp-rust does).
    pub(crate) async fn open_sqlite(path: &str) -> Result<Self> {
        let db = Self::Sqlite(Box::new(SqliteFile::open(path).await?));
        db.execute_all(DEVICE_INDEXES.iter().map(|sql| Stmt::new(sql)).collect())
            .await?;
        Ok(db)
    }

    /// Connects a pool of at most `connections` to the PostgreSQL database
    /// at `url` and creates the device tables when missing.
    pub(crate) async fn open_postgres(url: &str, connections: u32) -> Result<Self> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Connection(Box::new(e)))?
            .options([("search_path", PG_SCHEMA)])
            // A gateway stopped inside a transaction would keep its fenced
            // writes' `FOR SHARE` locks on the session's owner row, and the
            // other nodes' claims (`SKIP LOCKED`) would pass over that
            // session until it resumed: the server ends such a transaction
            // (as the gateway's own store does, wagate-store).
            .options([("idle_in_transaction_session_timeout", "4s")]);
        let pool = PgPoolOptions::new()
            .max_connections(connections.max(1))
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Connection(Box::new(e)))?;
        let mut tx = pool.begin().await.map_err(db)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(PG_SCHEMA_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        sqlx::raw_sql(PG_TABLES)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        for index in DEVICE_INDEXES {
            sqlx::raw_sql(sqlx::AssertSqlSafe(*index))
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        Ok(Self::Postgres(pool))
    }

    /// The SQLite store, when this is one.
    #[cfg(test)]
    pub(crate) fn sqlite(&self) -> Option<&SqliteFile> {
        match self {
            Self::Sqlite(file) => Some(file),
            Self::Postgres(_) => None,
        }
    }

    pub(crate) async fn execute(&self, stmt: Stmt) -> Result<u64> {
        match self {
            Self::Sqlite(file) => {
                let q = stmt.sqlite()?;
                file.write(move |conn| q.execute(conn).map(|n| n as u64).map_err(db))
                    .await
            }
            Self::Postgres(pool) => {
                let (sql, args) = stmt.postgres()?;
                sqlx::query_with(sql, args)
                    .execute(pool)
                    .await
                    .map(|r| r.rows_affected())
                    .map_err(pg)
            }
        }
    }

    /// Runs `stmts` in one transaction; the rows they changed, each.
    pub(crate) async fn execute_all(&self, stmts: Vec<Stmt>) -> Result<Vec<u64>> {
        match self {
            Self::Sqlite(file) => {
                let queries = stmts
                    .into_iter()
                    .map(Stmt::sqlite)
                    .collect::<Result<Vec<_>>>()?;
                file.write(move |conn| {
                    conn.immediate_transaction(|conn| {
                        queries
                            .into_iter()
                            .map(|q| q.execute(conn).map(|n| n as u64))
                            .collect::<diesel::QueryResult<Vec<_>>>()
                    })
                    .map_err(db)
                })
                .await
            }
            Self::Postgres(pool) => {
                let mut tx = pool.begin().await.map_err(db)?;
                let mut changed = Vec::with_capacity(stmts.len());
                for stmt in stmts {
                    let (sql, args) = stmt.postgres()?;
                    let done = sqlx::query_with(sql, args)
                        .execute(&mut *tx)
                        .await
                        .map_err(pg)?;
                    changed.push(done.rows_affected());
                }
                tx.commit().await.map_err(db)?;
                Ok(changed)
            }
        }
    }

    /// The rows `stmt` yields (`via` picks the SQLite connection; a
    /// statement that writes, `… RETURNING`, goes [`Via::Write`]).
    pub(crate) async fn fetch<R: Row>(&self, via: Via, stmt: Stmt) -> Result<Vec<R>> {
        match self {
            Self::Sqlite(file) => {
                let q = stmt.sqlite()?;
                file.read(via, move |conn: &mut SqliteConnection| {
                    q.load::<R>(conn).map_err(db)
                })
                .await
            }
            Self::Postgres(pool) => {
                let (sql, args) = stmt.postgres()?;
                sqlx::query_as_with::<_, R, _>(sql, args)
                    .fetch_all(pool)
                    .await
                    .map_err(pg)
            }
        }
    }

    /// The first row `stmt` yields, if any.
    pub(crate) async fn fetch_one<R: Row>(&self, via: Via, stmt: Stmt) -> Result<Option<R>> {
        Ok(self.fetch(via, stmt).await?.into_iter().next())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Arc;

    /// A new, empty database on the tests' throwaway PostgreSQL server;
    /// `None` (stderr says why) when there is none.
    pub(crate) fn fresh_postgres() -> Option<String> {
        wagate_test_postgres::shared().map(wagate_test_postgres::PgServer::fresh_database)
    }

    /// Each statement is prepared once per connection and then reused: a
    /// mass login runs the same few statements for every session.
    #[tokio::test]
    async fn sqlite_statements_are_prepared_once() {
        use diesel::connection::{Connection as _, InstrumentationEvent};
        use std::sync::atomic::{AtomicUsize, Ordering};

        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().join("keys.db").display().to_string();
        let db = Db::open_sqlite(&url).await.unwrap();
        db.execute(Stmt::new("CREATE TABLE t (a INTEGER, b TEXT)"))
            .await
            .unwrap();
        let prepared = Arc::new(AtomicUsize::new(0));
        let started = Arc::new(AtomicUsize::new(0));
        let Db::Sqlite(file) = &db else {
            unreachable!("opened on SQLite")
        };
        let (p, s) = (prepared.clone(), started.clone());
        // The writer is one connection: what it prepares from now on.
        file.write(move |conn| {
            conn.set_instrumentation(move |e: InstrumentationEvent<'_>| match e {
                InstrumentationEvent::CacheQuery { .. } => {
                    p.fetch_add(1, Ordering::SeqCst);
                }
                InstrumentationEvent::StartQuery { .. } => {
                    s.fetch_add(1, Ordering::SeqCst);
                }
                _ => {}
            });
            Ok(())
        })
        .await
        .unwrap();
        for i in 0..3 {
            db.execute(
                Stmt::new("INSERT INTO t (a, b) VALUES ($1, $2)")
                    .arg(i)
                    .arg(Some(format!("row {i}"))),
            )
            .await
            .unwrap();
            db.execute(Stmt::new("DELETE FROM t WHERE a = ANY($1)").arg(vec![i - 1]))
                .await
                .unwrap();
        }
        assert_eq!(started.load(Ordering::SeqCst), 6);
        assert_eq!(
            prepared.load(Ordering::SeqCst),
            2,
            "two statements, each prepared once"
        );
    }

    #[test]
    fn parameters_are_bound_where_they_stand() {
        let p = Prepared::new(
            "SELECT a FROM t WHERE a = ?2 AND b = ?1 OR a = ?2",
            Vec::new(),
        );
        let order: Vec<_> = p.pieces.iter().map(|(_, i)| *i).collect();
        assert_eq!(order, [Some(1), Some(0), Some(1), None]);
        let text: String = p.pieces.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(text, "SELECT a FROM t WHERE a =  AND b =  OR a = ");
    }

    #[test]
    fn sqlite_gets_its_own_words() {
        let args = [Arg::Int(1), Arg::Blobs(vec![vec![1]]), Arg::Ints(vec![2])];
        assert_eq!(
            sqlite_text(
                "SELECT GREATEST(a, $1) FROM t WHERE m = ANY($2) AND i = ANY($3) AND d = $1",
                &args
            ),
            "SELECT MAX(a, ?1) FROM t WHERE m IN (SELECT unhex(value) FROM json_each(?2)) \
             AND i IN (SELECT value FROM json_each(?3)) AND d = ?1"
        );
    }

    #[test]
    fn postgres_loses_index_hints() {
        assert_eq!(
            postgres_text("SELECT id FROM prekeys INDEXED BY idx_prekeys_device_id WHERE x"),
            "SELECT id FROM prekeys WHERE x"
        );
    }

    #[test]
    fn a_fenced_write_reads_the_device_through_the_fence() {
        assert_eq!(
            fence_device(
                "DELETE FROM t WHERE a = $2 AND device_id = $1 AND b = $12",
                12
            ),
            "DELETE FROM t WHERE a = $2 AND device_id = \
             (SELECT whatsapp.fenced_device($1, $13, $14, $15)) AND b = $12"
        );
        let fence = WriteFence {
            session: "s".into(),
            node: "n".into(),
            epoch: 4,
        };
        let stmt = Stmt::new("INSERT INTO t (k, device_id) VALUES ($2, $1)")
            .arg(7)
            .arg("k")
            .fenced(Some(&fence));
        // SQLite, one gateway, is not fenced.
        assert_eq!(
            sqlite_text(stmt.sql, &stmt.args),
            "INSERT INTO t (k, device_id) VALUES (?2, ?1)"
        );
        let (sql, _) = stmt.postgres().unwrap();
        assert_eq!(
            sql.0,
            "INSERT INTO t (k, device_id) VALUES ($2, (SELECT whatsapp.fenced_device($1, $3, $4, $5)))"
        );
    }

    #[test]
    fn blobs_travel_as_hex() {
        assert_eq!(hex(&[0, 0xab, 0x10]), "00ab10");
    }
}
