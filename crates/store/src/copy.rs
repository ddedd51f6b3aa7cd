//! Moving a stopped SQLite deployment into an empty PostgreSQL database
//! (`wagate db copy`): every table of a PostgreSQL schema is filled from
//! the SQLite table of the same name, row by row as it is. The schemas were
//! written for it (same tables, columns and encodings on both), so nothing
//! here knows a table: columns and their types are read from PostgreSQL's
//! catalog, and a table or column only one side has is left out.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr as _;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions, SqliteRow};
use sqlx::{Postgres, QueryBuilder, Row as _};

use crate::StoreError;

/// Rows a single `INSERT` carries (well under PostgreSQL's 65,535
/// parameters for the widest table).
const BATCH: usize = 500;

/// Tables never copied: each side keeps its own migration history.
const SKIPPED: &[&str] = &["_sqlx_migrations", "__diesel_schema_migrations"];

/// One SQLite database to copy and the PostgreSQL schema it goes into.
#[derive(Debug, Clone, Copy)]
pub struct CopySource<'a> {
    /// `sqlite:…` of the source (opened read-only).
    pub sqlite_url: &'a str,
    /// The target schema (`public` for the gateway's rows).
    pub schema: &'a str,
}

/// What a copy moved: rows per `schema.table`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// Rows copied into each table, by `schema.table`.
    pub rows: BTreeMap<String, u64>,
}

impl CopyReport {
    /// Rows copied in all.
    pub fn total(&self) -> u64 {
        self.rows.values().sum()
    }
}

/// A value read from SQLite, typed as its PostgreSQL column wants it.
enum Value {
    Int(Option<i32>),
    Big(Option<i64>),
    Small(Option<i16>),
    Text(Option<String>),
    Bool(Option<bool>),
    Bytes(Option<Vec<u8>>),
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Int,
    Big,
    Small,
    Text,
    Bool,
    Bytes,
}

impl Kind {
    fn of(pg_type: &str) -> Option<Self> {
        Some(match pg_type {
            "integer" => Self::Int,
            "bigint" => Self::Big,
            "smallint" => Self::Small,
            "text" | "character varying" => Self::Text,
            "boolean" => Self::Bool,
            "bytea" => Self::Bytes,
            _ => return None,
        })
    }

    fn read(self, row: &SqliteRow, i: usize) -> Result<Value, sqlx::Error> {
        Ok(match self {
            Self::Int => Value::Int(row.try_get(i)?),
            Self::Big => Value::Big(row.try_get(i)?),
            Self::Small => Value::Small(row.try_get(i)?),
            Self::Text => Value::Text(row.try_get(i)?),
            Self::Bool => Value::Bool(row.try_get(i)?),
            Self::Bytes => Value::Bytes(row.try_get(i)?),
        })
    }
}

struct Column {
    name: String,
    kind: Kind,
    identity: bool,
}

fn setup(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Setup(format!("{what}: {e}"))
}

fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Copies every `source` into the PostgreSQL database at `target`, in one
/// transaction: all of it lands, or nothing does. The target's tables must
/// exist already (migrated) and be empty; identity columns continue after
/// the copied rows.
///
/// # Errors
///
/// [`StoreError::Conflict`] naming a table of the target that has rows;
/// [`StoreError::Setup`] when a database cannot be opened, a column has a
/// type this copy does not know, or a row does not fit its column.
pub async fn copy_sqlite_to_postgres(
    sources: &[CopySource<'_>],
    target: &str,
) -> Result<CopyReport, StoreError> {
    let options = PgConnectOptions::from_str(target)
        .map_err(|_| StoreError::Setup("invalid PostgreSQL url".into()))?;
    // One connection for the copy's transaction, one for the catalog.
    let pg = PgPoolOptions::new()
        .max_connections(2)
        .connect_with(options)
        .await
        .map_err(|e| setup("cannot open the target", e))?;
    let mut plans = Vec::new();
    for source in sources {
        let tables = tables_in_order(&pg, source.schema).await?;
        for table in &tables {
            let sql = format!(
                "SELECT EXISTS (SELECT 1 FROM {}.{})",
                quoted(source.schema),
                quoted(table)
            );
            let busy: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .fetch_one(&pg)
                .await
                .map_err(|e| setup("cannot read the target", e))?;
            if busy {
                return Err(StoreError::Conflict(format!(
                    "the target is not empty: {}.{table} has rows (db copy only fills an \
                     empty database)",
                    source.schema
                )));
            }
        }
        plans.push((source, tables));
    }

    let mut report = CopyReport::default();
    let mut tx = pg.begin().await.map_err(|e| setup("target", e))?;
    for (source, tables) in plans {
        let options = SqliteConnectOptions::from_str(source.sqlite_url)
            .map_err(|e| setup("invalid SQLite url", e))?
            .read_only(true)
            .create_if_missing(false);
        let sqlite = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(|e| setup("cannot open the source", e))?;
        let present: BTreeSet<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
                .fetch_all(&sqlite)
                .await
                .map_err(|e| setup("cannot read the source", e))?
                .into_iter()
                .collect();
        for table in tables.iter().filter(|t| present.contains(*t)) {
            let columns = common_columns(&pg, &sqlite, source.schema, table).await?;
            let copied = copy_table(&sqlite, &mut tx, source.schema, table, &columns).await?;
            report
                .rows
                .insert(format!("{}.{table}", source.schema), copied);
        }
        sqlite.close().await;
    }
    tx.commit().await.map_err(|e| setup("target", e))?;
    pg.close().await;
    Ok(report)
}

/// The tables of `schema`, each after the tables it references.
async fn tables_in_order(pg: &sqlx::PgPool, schema: &str) -> Result<Vec<String>, StoreError> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = $1 AND table_type = 'BASE TABLE' ORDER BY table_name",
    )
    .bind(schema)
    .fetch_all(pg)
    .await
    .map_err(|e| setup("cannot read the target", e))?;
    let references: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.relname::text, r.relname::text FROM pg_constraint k \
         JOIN pg_class c ON c.oid = k.conrelid JOIN pg_class r ON r.oid = k.confrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE k.contype = 'f' AND n.nspname = $1 AND c.oid != r.oid",
    )
    .bind(schema)
    .fetch_all(pg)
    .await
    .map_err(|e| setup("cannot read the target", e))?;
    let mut left: Vec<String> = tables
        .into_iter()
        .filter(|t| !SKIPPED.contains(&t.as_str()))
        .collect();
    let mut ordered = Vec::with_capacity(left.len());
    while !left.is_empty() {
        let before = left.len();
        let ready: Vec<String> = left
            .iter()
            .filter(|t| {
                references
                    .iter()
                    .all(|(from, to)| from != *t || !left.contains(to))
            })
            .cloned()
            .collect();
        left.retain(|t| !ready.contains(t));
        ordered.extend(ready);
        if left.len() == before {
            // A cycle of references: the rest in name order (the insert
            // then says which row does not fit).
            ordered.append(&mut left);
        }
    }
    Ok(ordered)
}

/// The columns of `schema.table` on PostgreSQL that the SQLite table has too.
async fn common_columns(
    pg: &sqlx::PgPool,
    sqlite: &sqlx::SqlitePool,
    schema: &str,
    table: &str,
) -> Result<Vec<Column>, StoreError> {
    let target: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT column_name::text, data_type::text, is_identity::text \
         FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 \
         ORDER BY ordinal_position",
    )
    .bind(schema)
    .bind(table)
    .fetch_all(pg)
    .await
    .map_err(|e| setup("cannot read the target", e))?;
    let source: BTreeSet<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info(?1)")
        .bind(table)
        .fetch_all(sqlite)
        .await
        .map_err(|e| setup("cannot read the source", e))?
        .into_iter()
        .collect();
    target
        .into_iter()
        .filter(|(name, _, _)| source.contains(name))
        .map(|(name, pg_type, identity)| {
            let kind = Kind::of(&pg_type).ok_or_else(|| {
                StoreError::Setup(format!(
                    "{schema}.{table}.{name}: cannot copy a column of type {pg_type}"
                ))
            })?;
            Ok(Column {
                name,
                kind,
                identity: identity == "YES",
            })
        })
        .collect()
}

async fn copy_table(
    sqlite: &sqlx::SqlitePool,
    tx: &mut sqlx::Transaction<'_, Postgres>,
    schema: &str,
    table: &str,
    columns: &[Column],
) -> Result<u64, StoreError> {
    if columns.is_empty() {
        return Ok(0);
    }
    let names = columns
        .iter()
        .map(|c| quoted(&c.name))
        .collect::<Vec<_>>()
        .join(", ");
    let select = format!("SELECT {names} FROM {}", quoted(table));
    let rows = sqlx::query(sqlx::AssertSqlSafe(select))
        .fetch_all(sqlite)
        .await
        .map_err(|e| setup(&format!("cannot read {table}"), e))?;
    let what = format!("{schema}.{table}");
    for chunk in rows.chunks(BATCH) {
        let values = chunk
            .iter()
            .map(|row| {
                columns
                    .iter()
                    .enumerate()
                    .map(|(i, c)| c.kind.read(row, i))
                    .collect::<Result<Vec<_>, _>>()
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| setup(&format!("a row of {table} does not fit"), e))?;
        let mut insert: QueryBuilder<Postgres> = QueryBuilder::new(format!(
            "INSERT INTO {}.{} ({names}) OVERRIDING SYSTEM VALUE ",
            quoted(schema),
            quoted(table)
        ));
        insert.push_values(values, |mut b, row| {
            for v in row {
                match v {
                    Value::Int(v) => b.push_bind(v),
                    Value::Big(v) => b.push_bind(v),
                    Value::Small(v) => b.push_bind(v),
                    Value::Text(v) => b.push_bind(v),
                    Value::Bool(v) => b.push_bind(v),
                    Value::Bytes(v) => b.push_bind(v),
                };
            }
        });
        insert
            .build()
            .execute(&mut **tx)
            .await
            .map_err(|e| setup(&format!("cannot write {what}"), e))?;
    }
    for c in columns.iter().filter(|c| c.identity) {
        let sql = format!(
            "SELECT setval(pg_get_serial_sequence($1, $2), COALESCE(MAX({col}), 1), \
             MAX({col}) IS NOT NULL) FROM {}.{}",
            quoted(schema),
            quoted(table),
            col = quoted(&c.name)
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(format!("{}.{}", quoted(schema), quoted(table)))
            .bind(&c.name)
            .execute(&mut **tx)
            .await
            .map_err(|e| setup(&format!("cannot continue {what}.{}", c.name), e))?;
    }
    Ok(rows.len() as u64)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A schema of its own (the copy names no table): a parent with an
    /// identity column and a child referencing it, read from SQLite's
    /// loosely typed columns into PostgreSQL's strict ones.
    #[tokio::test]
    async fn tables_are_copied_in_reference_order_and_identities_continue() {
        let Some(pg) = wagate_test_postgres::shared() else {
            return;
        };
        let to = pg.fresh_database();
        let target = sqlx::PgPool::connect(&to).await.unwrap();
        sqlx::raw_sql(
            "CREATE SCHEMA t; \
             CREATE TABLE t.b_parent (seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, \
                 name TEXT NOT NULL, flag BOOLEAN NOT NULL, data BYTEA, only_here TEXT DEFAULT 'x'); \
             CREATE TABLE t.a_child (parent BIGINT NOT NULL REFERENCES t.b_parent (seq), \
                 n INTEGER NOT NULL); \
             CREATE TABLE t._sqlx_migrations (version BIGINT)",
        )
        .execute(&target)
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let from = format!("sqlite://{}/s.db?mode=rwc", dir.path().display());
        let source = sqlx::SqlitePool::connect(&from).await.unwrap();
        sqlx::raw_sql(
            "CREATE TABLE b_parent (seq INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, \
                 flag INTEGER NOT NULL, data BLOB, only_there TEXT); \
             CREATE TABLE a_child (parent INTEGER NOT NULL, n INTEGER NOT NULL); \
             CREATE TABLE _sqlx_migrations (version INTEGER); \
             INSERT INTO _sqlx_migrations VALUES (1); \
             INSERT INTO b_parent (seq, name, flag, data) VALUES (7, 'a', 1, x'00ff'), (9, 'b', 0, NULL); \
             INSERT INTO a_child VALUES (9, 1), (7, 2)",
        )
        .execute(&source)
        .await
        .unwrap();
        source.close().await;
        let sources = [CopySource {
            sqlite_url: &from,
            schema: "t",
        }];

        let report = copy_sqlite_to_postgres(&sources, &to).await.unwrap();
        assert_eq!(report.rows.get("t.b_parent"), Some(&2));
        assert_eq!(report.rows.get("t.a_child"), Some(&2));
        assert!(!report.rows.contains_key("t._sqlx_migrations"));
        type Parent = (i64, String, bool, Option<Vec<u8>>, Option<String>);
        let rows: Vec<Parent> =
            sqlx::query_as("SELECT seq, name, flag, data, only_here FROM t.b_parent ORDER BY seq")
                .fetch_all(&target)
                .await
                .unwrap();
        assert_eq!(
            rows,
            vec![
                (7, "a".into(), true, Some(vec![0, 255]), Some("x".into())),
                (9, "b".into(), false, None, Some("x".into())),
            ]
        );
        let next: i64 = sqlx::query_scalar(
            "INSERT INTO t.b_parent (name, flag) VALUES ('c', true) RETURNING seq",
        )
        .fetch_one(&target)
        .await
        .unwrap();
        assert_eq!(next, 10);

        // Only into empty tables.
        let refused = copy_sqlite_to_postgres(&sources, &to).await.unwrap_err();
        assert!(matches!(refused, StoreError::Conflict(_)), "{refused}");
    }
}
