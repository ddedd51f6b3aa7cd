//! One statement, two databases: the device store's SQL is written once and
//! runs on the process's SQLite key store (through whatsapp-rust's
//! `SqliteStore` connections, diesel) or on its PostgreSQL pool (sqlx).
//!
//! Statements are written in PostgreSQL's dialect with a few words SQLite is
//! given its own for (`SqliteText`): `$N` parameters (`?N`), `GREATEST(`
//! (SQLite's two-argument `MAX(`) and `= ANY($N)` over a list parameter
//! (`IN (SELECT value FROM json_each(?N))`, one JSON text bound whatever the
//! count; blobs travel as hex). An `INDEXED BY` hint, SQLite's only, is
//! dropped for PostgreSQL. Rows decode into one struct per shape that
//! derives both libraries' row traits ([`Row`]).

use std::fmt;
use std::str::FromStr as _;

use diesel::query_builder::{BoxedSqlQuery, SqlQuery};
use diesel::sql_types::{BigInt, Binary, Bool, Integer, Nullable, Text};
use diesel::sqlite::{Sqlite, SqliteConnection};
use diesel::{QueryableByName, RunQueryDsl as _};
use sqlx::Arguments as _;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use whatsapp_rust::store::{SqliteStore, SqliteStoreConfig};
use whatsapp_rust::wacore::store::error::{Result, StoreError};

/// The PostgreSQL schema the device tables live in (`sessions` is also a
/// gateway table).
pub(crate) const PG_SCHEMA: &str = "whatsapp";
/// The device tables, created when missing (idempotent).
const PG_TABLES: &str = include_str!("../sql/postgres.sql");
/// Serializes schema creation between processes starting at once.
const PG_SCHEMA_LOCK: i64 = 0x7761_6761_7465_6473; // "wagateds"

/// Connections the key store keeps for reads besides its one writer (WAL
/// readers, each with its own page cache).
pub(crate) const READERS: u32 = 2;
/// Page cache of each of the key store's connections, KiB. Shared by every
/// session, so it can be far larger than whatsapp-rust's per-store default
/// (512 KiB).
const CACHE_KIB: u32 = 16 * 1024;

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

/// A statement and its arguments, `$1` first.
#[derive(Debug, Clone)]
pub(crate) struct Stmt {
    sql: &'static str,
    args: Vec<Arg>,
}

impl Stmt {
    pub(crate) fn new(sql: &'static str) -> Self {
        Self {
            sql,
            args: Vec::new(),
        }
    }

    /// Binds the next parameter.
    pub(crate) fn arg(mut self, value: impl Into<Arg>) -> Self {
        self.args.push(value.into());
        self
    }

    fn sqlite(self) -> Result<BoxedSqlQuery<'static, Sqlite, SqlQuery>> {
        let text = sqlite_text(self.sql, &self.args);
        let mut q = diesel::sql_query(text).into_boxed::<Sqlite>();
        for a in self.args {
            q = match a {
                Arg::Int(v) => q.bind::<Integer, _>(v),
                Arg::Big(v) => q.bind::<BigInt, _>(v),
                Arg::OptInt(v) => q.bind::<Nullable<Integer>, _>(v),
                Arg::OptBig(v) => q.bind::<Nullable<BigInt>, _>(v),
                Arg::Text(v) => q.bind::<Text, _>(v),
                Arg::OptText(v) => q.bind::<Nullable<Text>, _>(v),
                Arg::Blob(v) => q.bind::<Binary, _>(v),
                Arg::OptBlob(v) => q.bind::<Nullable<Binary>, _>(v),
                Arg::Bool(v) => q.bind::<Bool, _>(v),
                Arg::Ints(v) => q.bind::<Text, _>(json(&v)?),
                Arg::Texts(v) => q.bind::<Text, _>(json(&v)?),
                Arg::Blobs(v) => {
                    q.bind::<Text, _>(json(&v.iter().map(|b| hex(b)).collect::<Vec<_>>())?)
                }
            };
        }
        Ok(q)
    }

    /// The PostgreSQL text and its bound arguments.
    fn postgres(self) -> Result<(sqlx::AssertSqlSafe<String>, PgArguments)> {
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
        Ok((sqlx::AssertSqlSafe(postgres_text(self.sql)), out))
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
    /// whatsapp-rust's `SqliteStore` on one file: one writer connection, a
    /// few readers, and a store of its own for the interactive reader.
    Sqlite {
        base: SqliteStore,
        interactive: SqliteStore,
    },
    /// A pool on the `whatsapp` schema.
    Postgres(PgPool),
}

impl fmt::Debug for Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Sqlite { .. } => "Db::Sqlite",
            Self::Postgres(_) => "Db::Postgres",
        })
    }
}

fn db<E: std::error::Error + Send + Sync + 'static>(e: E) -> StoreError {
    StoreError::Database(Box::new(e))
}

impl Db {
    /// Opens the SQLite file at `url` (creating and migrating it as
    /// whatsapp-rust does).
    pub(crate) async fn open_sqlite(url: &str) -> Result<Self> {
        let config = SqliteStoreConfig {
            read_pool_size: READERS,
            cache_size_kib: CACHE_KIB,
            ..SqliteStoreConfig::default()
        };
        let base = SqliteStore::with_config(url, config).await?;
        let interactive = SqliteStore::with_config(
            url,
            SqliteStoreConfig {
                read_pool_size: 1,
                cache_size_kib: CACHE_KIB / 8,
                ..SqliteStoreConfig::default()
            },
        )
        .await?;
        Ok(Self::Sqlite { base, interactive })
    }

    /// Connects a pool of at most `connections` to the PostgreSQL database
    /// at `url` and creates the device tables when missing.
    pub(crate) async fn open_postgres(url: &str, connections: u32) -> Result<Self> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Connection(Box::new(e)))?
            .options([("search_path", PG_SCHEMA)]);
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
        tx.commit().await.map_err(db)?;
        Ok(Self::Postgres(pool))
    }

    /// The SQLite store, when this is one.
    #[cfg(test)]
    pub(crate) fn sqlite(&self) -> Option<&SqliteStore> {
        match self {
            Self::Sqlite { base, .. } => Some(base),
            Self::Postgres(_) => None,
        }
    }

    /// Runs one writing statement; the number of rows it changed.
    pub(crate) async fn execute(&self, stmt: Stmt) -> Result<u64> {
        match self {
            Self::Sqlite { base, .. } => {
                let q = stmt.sqlite()?;
                base.shared()
                    .run(move |conn| q.execute(conn).map(|n| n as u64).map_err(db))
                    .await
            }
            Self::Postgres(pool) => {
                let (sql, args) = stmt.postgres()?;
                sqlx::query_with(sql, args)
                    .execute(pool)
                    .await
                    .map(|r| r.rows_affected())
                    .map_err(db)
            }
        }
    }

    /// Runs `stmts` in one transaction; the rows they changed, each.
    pub(crate) async fn execute_all(&self, stmts: Vec<Stmt>) -> Result<Vec<u64>> {
        match self {
            Self::Sqlite { base, .. } => {
                let queries = stmts
                    .into_iter()
                    .map(Stmt::sqlite)
                    .collect::<Result<Vec<_>>>()?;
                base.shared()
                    .run(move |conn| {
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
                        .map_err(db)?;
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
            Self::Sqlite { base, interactive } => {
                let q = stmt.sqlite()?;
                let run = move |conn: &mut SqliteConnection| q.load::<R>(conn).map_err(db);
                match via {
                    Via::Write => base.shared().run(run).await,
                    Via::Read => base.shared().read(run).await,
                    Via::Interactive => interactive.shared().read(run).await,
                }
            }
            Self::Postgres(pool) => {
                let (sql, args) = stmt.postgres()?;
                sqlx::query_as_with::<_, R, _>(sql, args)
                    .fetch_all(pool)
                    .await
                    .map_err(db)
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

    /// A new, empty database on the tests' throwaway PostgreSQL server;
    /// `None` (stderr says why) when there is none.
    pub(crate) fn fresh_postgres() -> Option<String> {
        wagate_test_postgres::shared().map(wagate_test_postgres::PgServer::fresh_database)
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
    fn blobs_travel_as_hex() {
        assert_eq!(hex(&[0, 0xab, 0x10]), "00ab10");
    }
}
