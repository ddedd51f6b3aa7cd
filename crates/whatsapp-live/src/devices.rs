//! The key store: one SQLite file, whatsapp-rust's `SqliteStore` holding
//! every device, plus our own small table saying which device belongs to
//! which session. The file is opened once per process ([`KeyStore`]);
//! each session's client gets a [`DeviceHandle`] onto it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use diesel::sql_types::{BigInt, Integer, Text};
use diesel::sqlite::SqliteConnection;
use diesel::{QueryableByName, RunQueryDsl as _};
use wagate_domain::SessionId;
use whatsapp_rust::wacore::store::error::StoreError;

use crate::store::{DeviceHandle, KeyStore};

/// Our table in whatsapp-rust's file. Its column is deliberately not called
/// `device_id`: erasing a device deletes its rows from every table that has
/// one.
const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS wagate_live_sessions (\
     session_id TEXT PRIMARY KEY NOT NULL, \
     device INTEGER NOT NULL UNIQUE, \
     created_at TEXT NOT NULL)";

#[derive(QueryableByName)]
struct DeviceRow {
    #[diesel(sql_type = Integer)]
    device: i32,
}

#[derive(QueryableByName)]
struct NameRow {
    #[diesel(sql_type = Text)]
    name: String,
}

#[derive(QueryableByName)]
struct CountRow {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

fn db(e: diesel::result::Error) -> StoreError {
    StoreError::Database(Box::new(e))
}

/// The key store file and the session → device mapping kept in it.
///
/// The mapping is a table (`wagate_live_sessions`) rather than a function of
/// the session id because whatsapp-rust's device ids are small integers: a
/// ULID does not fit, and a hash could collide. A session gets the next free
/// id the first time it connects and keeps it until it is removed.
pub(crate) struct DeviceDirectory {
    url: String,
    keys: Arc<KeyStore>,
}

impl std::fmt::Debug for DeviceDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceDirectory")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl DeviceDirectory {
    /// Opens (creating if needed) the file at `path`, applies whatsapp-rust's
    /// migrations and creates our table.
    pub(crate) async fn open(path: &Path) -> Result<Self, String> {
        let url = store_url(path)?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        let keys = KeyStore::open(&url)
            .await
            .map_err(|e| format!("cannot open the key store {url}: {e}"))?;
        keys.base()
            .shared()
            .run(|conn| {
                diesel::sql_query(CREATE_TABLE).execute(conn).map_err(db)?;
                Ok(())
            })
            .await
            .map_err(|e| format!("cannot prepare the key store {url}: {e}"))?;
        Ok(Self {
            url,
            keys: Arc::new(keys),
        })
    }

    /// The device id of `session`, allocating one the first time.
    pub(crate) async fn device_for(&self, session: &SessionId, now: &str) -> Result<i32, String> {
        let id = session.to_string();
        let now = now.to_owned();
        self.keys
            .base()
            .shared()
            .run(move |conn| {
                conn.immediate_transaction(|conn| {
                    if let Some(row) = find(conn, &id)? {
                        return Ok(row);
                    }
                    diesel::sql_query(
                        "INSERT INTO wagate_live_sessions (session_id, device, created_at) \
                         SELECT ?, 1 + MAX(\
                           COALESCE((SELECT MAX(device) FROM wagate_live_sessions), 0), \
                           COALESCE((SELECT MAX(id) FROM device), 0)), ?",
                    )
                    .bind::<Text, _>(&id)
                    .bind::<Text, _>(&now)
                    .execute(conn)?;
                    find(conn, &id)?.ok_or(diesel::result::Error::NotFound)
                })
                .map_err(db)
            })
            .await
            .map_err(|e| format!("cannot allocate a device for session {session}: {e}"))
    }

    /// The device id of `session`, if it has one.
    pub(crate) async fn existing_device(&self, session: &SessionId) -> Result<Option<i32>, String> {
        let id = session.to_string();
        self.keys
            .base()
            .shared()
            .run(move |conn| find(conn, &id).map_err(db))
            .await
            .map_err(|e| format!("cannot read the device of session {session}: {e}"))
    }

    /// Forgets `session`'s mapping (after its keys are erased).
    pub(crate) async fn forget(&self, session: &SessionId) -> Result<(), String> {
        let id = session.to_string();
        self.keys
            .base()
            .shared()
            .run(move |conn| {
                diesel::sql_query("DELETE FROM wagate_live_sessions WHERE session_id = ?")
                    .bind::<Text, _>(&id)
                    .execute(conn)
                    .map_err(db)?;
                Ok(())
            })
            .await
            .map_err(|e| format!("cannot forget session {session}: {e}"))
    }

    /// Deletes every row of `device` from every whatsapp-rust table (found
    /// by their `device_id` column, so tables added by later migrations are
    /// covered too) and the device row itself, in one transaction.
    pub(crate) async fn erase(&self, device: i32) -> Result<(), String> {
        self.keys
            .base()
            .shared()
            .run(move |conn| {
                conn.immediate_transaction(|conn| {
                    let tables: Vec<NameRow> = diesel::sql_query(
                        "SELECT name FROM sqlite_master WHERE type = 'table' \
                         AND name NOT LIKE 'sqlite_%'",
                    )
                    .load(conn)?;
                    for NameRow { name } in tables {
                        let has: CountRow = diesel::sql_query(
                            "SELECT COUNT(*) AS n FROM pragma_table_info(?) \
                             WHERE name = 'device_id'",
                        )
                        .bind::<Text, _>(&name)
                        .get_result(conn)?;
                        if has.n > 0 {
                            let quoted = name.replace('"', "\"\"");
                            diesel::sql_query(format!(
                                "DELETE FROM \"{quoted}\" WHERE device_id = ?"
                            ))
                            .bind::<Integer, _>(device)
                            .execute(conn)?;
                        }
                    }
                    diesel::sql_query("DELETE FROM device WHERE id = ?")
                        .bind::<Integer, _>(device)
                        .execute(conn)?;
                    Ok(())
                })
                .map_err(db)
            })
            .await
            .map_err(|e| format!("cannot erase the keys of device {device}: {e}"))
    }

    /// whatsapp-rust's storage for one device of this file: a handle onto
    /// the process's one key store (no connection of its own).
    pub(crate) fn store_for(&self, device: i32) -> DeviceHandle {
        DeviceHandle::new(self.keys.clone(), device)
    }

    /// The phone-number JID `device` is linked as, if it is linked.
    pub(crate) async fn linked_as(
        &self,
        device: i32,
    ) -> Result<Option<whatsapp_rust::Jid>, String> {
        let data = self
            .keys
            .base()
            .load_device_data_for_device(device)
            .await
            .map_err(|e| format!("cannot read device {device}: {e}"))?;
        Ok(data.and_then(|d| if d.account.is_some() { d.pn } else { None }))
    }
}

fn find(conn: &mut SqliteConnection, session: &str) -> diesel::QueryResult<Option<i32>> {
    let rows: Vec<DeviceRow> =
        diesel::sql_query("SELECT device FROM wagate_live_sessions WHERE session_id = ?")
            .bind::<Text, _>(session)
            .load(conn)?;
    Ok(rows.first().map(|r| r.device))
}

fn store_url(path: &Path) -> Result<String, String> {
    let text = path
        .to_str()
        .ok_or_else(|| format!("the key store path {} is not UTF-8", path.display()))?;
    if text.is_empty() {
        return Err("the key store path is empty".into());
    }
    Ok(PathBuf::from(text).display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(n: u8) -> SessionId {
        SessionId::parse(&format!(
            "sess_01HZY0N4Q8ZK3J4M7ZC9W4X2Q{}",
            (b'A' + n) as char
        ))
        .unwrap()
    }

    #[tokio::test]
    async fn mapping_is_durable_and_distinct() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested").join("keys.db");
        let d = DeviceDirectory::open(&path).await.unwrap();
        let a = d.device_for(&session(0), "t").await.unwrap();
        let b = d.device_for(&session(1), "t").await.unwrap();
        assert_ne!(a, b);
        assert_eq!(d.device_for(&session(0), "t").await.unwrap(), a);
        drop(d);
        let d = DeviceDirectory::open(&path).await.unwrap();
        assert_eq!(d.existing_device(&session(0)).await.unwrap(), Some(a));
        assert_eq!(d.existing_device(&session(2)).await.unwrap(), None);
        d.forget(&session(0)).await.unwrap();
        assert_eq!(d.existing_device(&session(0)).await.unwrap(), None);
    }

    #[tokio::test]
    async fn erase_removes_only_that_device() {
        use whatsapp_rust::store::traits::{DeviceStore as _, SignalStore as _};
        let dir = tempfile::tempdir().unwrap();
        let d = DeviceDirectory::open(&dir.path().join("keys.db"))
            .await
            .unwrap();
        let a = d.device_for(&session(0), "t").await.unwrap();
        let b = d.device_for(&session(1), "t").await.unwrap();
        for id in [a, b] {
            let s = d.store_for(id);
            s.create().await.unwrap();
            s.put_identity("someone", [7u8; 32]).await.unwrap();
        }
        assert!(d.keys.base().device_exists(a).await.unwrap());
        d.erase(a).await.unwrap();
        assert!(!d.keys.base().device_exists(a).await.unwrap());
        assert!(d.keys.base().device_exists(b).await.unwrap());
        let sa = d.store_for(a);
        let sb = d.store_for(b);
        assert!(sa.load_identity("someone").await.unwrap().is_none());
        assert!(sb.load_identity("someone").await.unwrap().is_some());
        assert_eq!(d.linked_as(b).await.unwrap(), None, "never paired");
    }
}
