//! The device store: whatsapp-rust's tables (one SQLite file, or the
//! `whatsapp` schema of the gateway's PostgreSQL database) holding every
//! device, plus our own small table saying which device belongs to which
//! session. The store is opened once per process ([`Db`]); each session's
//! client gets a [`DeviceHandle`] onto it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use diesel::QueryableByName;
use diesel::sql_types::Integer;
use wagate_domain::SessionId;

use crate::config::KeyStoreLocation;
use crate::sql::{Db, Stmt, Via};
use crate::store::DeviceHandle;
use whatsapp_rust::store::traits::DeviceStore as _;

/// Our table in whatsapp-rust's SQLite file (PostgreSQL's is created with
/// the device tables). Its column is deliberately not called `device_id`:
/// erasing a device deletes its rows from every table that has one.
const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS wagate_live_sessions (\
     session_id TEXT PRIMARY KEY NOT NULL, \
     device INTEGER NOT NULL UNIQUE, \
     created_at TEXT NOT NULL)";

/// The next free device id, for a session that has none (two processes
/// allocating at once on PostgreSQL: the later one's insert fails on the
/// unique `device` and is tried again).
const ALLOCATE: &str = "INSERT INTO wagate_live_sessions (session_id, device, created_at) \
     SELECT $1, 1 + GREATEST(\
       COALESCE((SELECT MAX(device) FROM wagate_live_sessions), 0), \
       COALESCE((SELECT MAX(id) FROM device), 0)), $2 WHERE TRUE \
     ON CONFLICT (session_id) DO NOTHING";

/// Every whatsapp-rust table with a `device_id` column, then the device
/// row: what erasing a device deletes (a test holds the list to
/// whatsapp-rust's schema).
const ERASE: &[&str] = &[
    "DELETE FROM app_state_keys WHERE device_id = $1",
    "DELETE FROM app_state_mutation_macs WHERE device_id = $1",
    "DELETE FROM app_state_versions WHERE device_id = $1",
    "DELETE FROM base_keys WHERE device_id = $1",
    "DELETE FROM device_registry WHERE device_id = $1",
    "DELETE FROM group_metadata WHERE device_id = $1",
    "DELETE FROM identities WHERE device_id = $1",
    "DELETE FROM lid_pn_mapping WHERE device_id = $1",
    "DELETE FROM msg_secrets WHERE device_id = $1",
    "DELETE FROM pending_inbound_messages WHERE device_id = $1",
    "DELETE FROM prekeys WHERE device_id = $1",
    "DELETE FROM sender_key_devices WHERE device_id = $1",
    "DELETE FROM sender_keys WHERE device_id = $1",
    "DELETE FROM sent_messages WHERE device_id = $1",
    "DELETE FROM sessions WHERE device_id = $1",
    "DELETE FROM signed_prekeys WHERE device_id = $1",
    "DELETE FROM tc_tokens WHERE device_id = $1",
    "DELETE FROM device WHERE id = $1",
];

#[derive(QueryableByName, sqlx::FromRow)]
struct DeviceRow {
    #[diesel(sql_type = Integer)]
    device: i32,
}

/// The device store and the session → device mapping kept in it.
///
/// The mapping is a table (`wagate_live_sessions`) rather than a function of
/// the session id because whatsapp-rust's device ids are small integers: a
/// ULID does not fit, and a hash could collide. A session gets the next free
/// id the first time it connects and keeps it until it is removed.
pub(crate) struct DeviceDirectory {
    /// Where the store is, for messages (no password).
    place: String,
    db: Arc<Db>,
}

impl std::fmt::Debug for DeviceDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceDirectory")
            .field("place", &self.place)
            .finish_non_exhaustive()
    }
}

impl DeviceDirectory {
    /// Opens the store (a SQLite file is created with its folder when
    /// missing), applies whatsapp-rust's schema and creates our table.
    pub(crate) async fn open(location: &KeyStoreLocation) -> Result<Self, String> {
        let place = location.to_string();
        let db = match location {
            KeyStoreLocation::Sqlite(path) => {
                let url = store_url(path)?;
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
                }
                let db = Db::open_sqlite(&url)
                    .await
                    .map_err(|e| format!("cannot open the key store {place}: {e}"))?;
                db.execute(Stmt::new(CREATE_TABLE))
                    .await
                    .map_err(|e| format!("cannot prepare the key store {place}: {e}"))?;
                db
            }
            KeyStoreLocation::Postgres { url, connections } => Db::open_postgres(url, *connections)
                .await
                .map_err(|e| format!("cannot open the key store {place}: {e}"))?,
        };
        Ok(Self {
            place,
            db: Arc::new(db),
        })
    }

    /// Where the store is (no password), for logs.
    pub(crate) fn place(&self) -> &str {
        &self.place
    }

    /// The device id of `session`, allocating one the first time.
    pub(crate) async fn device_for(&self, session: &SessionId, now: &str) -> Result<i32, String> {
        let id = session.to_string();
        // A session that has one (every session a restart resumes) finds it
        // on a reader, not in the queue of the device store's one writer.
        if let Some(device) = self.device_of(session, Via::Read).await? {
            return Ok(device);
        }
        let mut last = String::new();
        for _ in 0..5 {
            if let Some(device) = self.existing_device(session).await? {
                return Ok(device);
            }
            match self
                .db
                .execute(Stmt::new(ALLOCATE).arg(id.as_str()).arg(now))
                .await
            {
                Ok(_) => {}
                Err(e) => last = e.to_string(),
            }
        }
        match self.existing_device(session).await? {
            Some(device) => Ok(device),
            None => Err(format!(
                "cannot allocate a device for session {session}: {last}"
            )),
        }
    }

    /// The device id of `session`, if it has one.
    pub(crate) async fn existing_device(&self, session: &SessionId) -> Result<Option<i32>, String> {
        // On the writer: an id allocated a moment ago must be seen.
        self.device_of(session, Via::Write).await
    }

    async fn device_of(&self, session: &SessionId, via: Via) -> Result<Option<i32>, String> {
        self.db
            .fetch_one::<DeviceRow>(
                via,
                Stmt::new("SELECT device FROM wagate_live_sessions WHERE session_id = $1")
                    .arg(session.to_string()),
            )
            .await
            .map(|r| r.map(|r| r.device))
            .map_err(|e| format!("cannot read the device of session {session}: {e}"))
    }

    /// Forgets `session`'s mapping (after its keys are erased).
    pub(crate) async fn forget(&self, session: &SessionId) -> Result<(), String> {
        self.db
            .execute(
                Stmt::new("DELETE FROM wagate_live_sessions WHERE session_id = $1")
                    .arg(session.to_string()),
            )
            .await
            .map(drop)
            .map_err(|e| format!("cannot forget session {session}: {e}"))
    }

    /// Deletes every row of `device` from every whatsapp-rust table and the
    /// device row itself, in one transaction.
    pub(crate) async fn erase(&self, device: i32) -> Result<(), String> {
        let stmts = ERASE
            .iter()
            .map(|&sql| Stmt::new(sql).arg(device))
            .collect();
        self.db
            .execute_all(stmts)
            .await
            .map(drop)
            .map_err(|e| format!("cannot erase the keys of device {device}: {e}"))
    }

    /// whatsapp-rust's storage for one device of this store: a handle onto
    /// the process's one store (no connection of its own).
    pub(crate) fn store_for(&self, device: i32) -> DeviceHandle {
        DeviceHandle::new(self.db.clone(), device)
    }

    /// The phone-number JID `device` is linked as, if it is linked.
    pub(crate) async fn linked_as(
        &self,
        device: i32,
    ) -> Result<Option<whatsapp_rust::Jid>, String> {
        let data = self
            .store_for(device)
            .load()
            .await
            .map_err(|e| format!("cannot read device {device}: {e}"))?;
        Ok(data.and_then(|d| if d.account.is_some() { d.pn } else { None }))
    }
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
    use diesel::RunQueryDsl as _;
    use diesel::sql_types::Text;
    use whatsapp_rust::store::traits::SignalStore as _;
    use whatsapp_rust::wacore::store::error::StoreError;

    use super::*;

    fn session(n: u8) -> SessionId {
        SessionId::parse(&format!(
            "sess_01HZY0N4Q8ZK3J4M7ZC9W4X2Q{}",
            (b'A' + n) as char
        ))
        .unwrap()
    }

    async fn mapping_is_durable_and_distinct(at: KeyStoreLocation) {
        let d = DeviceDirectory::open(&at).await.unwrap();
        let a = d.device_for(&session(0), "t").await.unwrap();
        let b = d.device_for(&session(1), "t").await.unwrap();
        assert_ne!(a, b);
        assert_eq!(d.device_for(&session(0), "t").await.unwrap(), a);
        drop(d);
        let d = DeviceDirectory::open(&at).await.unwrap();
        assert_eq!(d.existing_device(&session(0)).await.unwrap(), Some(a));
        assert_eq!(d.existing_device(&session(2)).await.unwrap(), None);
        d.forget(&session(0)).await.unwrap();
        assert_eq!(d.existing_device(&session(0)).await.unwrap(), None);
    }

    async fn erase_removes_only_that_device(at: KeyStoreLocation) {
        let d = DeviceDirectory::open(&at).await.unwrap();
        let a = d.device_for(&session(0), "t").await.unwrap();
        let b = d.device_for(&session(1), "t").await.unwrap();
        for id in [a, b] {
            let s = d.store_for(id);
            s.create().await.unwrap();
            s.put_identity("someone", [7u8; 32]).await.unwrap();
        }
        assert!(d.store_for(a).exists().await.unwrap());
        d.erase(a).await.unwrap();
        assert!(!d.store_for(a).exists().await.unwrap());
        assert!(d.store_for(b).exists().await.unwrap());
        let sa = d.store_for(a);
        let sb = d.store_for(b);
        assert!(sa.load_identity("someone").await.unwrap().is_none());
        assert!(sb.load_identity("someone").await.unwrap().is_some());
        assert_eq!(d.linked_as(b).await.unwrap(), None, "never paired");
    }

    #[tokio::test]
    async fn mapping_is_durable_and_distinct_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested").join("keys.db");
        mapping_is_durable_and_distinct(KeyStoreLocation::Sqlite(path)).await;
    }

    #[tokio::test]
    async fn erase_removes_only_that_device_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        erase_removes_only_that_device(KeyStoreLocation::Sqlite(dir.path().join("keys.db"))).await;
    }

    #[tokio::test]
    async fn mapping_is_durable_and_distinct_on_postgres() {
        if let Some(url) = crate::sql::tests::fresh_postgres() {
            mapping_is_durable_and_distinct(KeyStoreLocation::Postgres {
                url,
                connections: 2,
            })
            .await;
        }
    }

    #[tokio::test]
    async fn erase_removes_only_that_device_on_postgres() {
        if let Some(url) = crate::sql::tests::fresh_postgres() {
            erase_removes_only_that_device(KeyStoreLocation::Postgres {
                url,
                connections: 2,
            })
            .await;
        }
    }

    /// Erasing names every table whatsapp-rust keeps a device's rows in: a
    /// later whatsapp-rust with a new table fails here, not in production.
    #[tokio::test]
    async fn erase_covers_every_device_table() {
        #[derive(QueryableByName)]
        struct Name {
            #[diesel(sql_type = Text)]
            name: String,
        }
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().join("keys.db").display().to_string();
        let db = Db::open_sqlite(&url).await.unwrap();
        let tables = db
            .sqlite()
            .unwrap()
            .write(|conn| {
                diesel::sql_query(
                    "SELECT m.name FROM sqlite_master m WHERE m.type = 'table' \
                     AND EXISTS (SELECT 1 FROM pragma_table_info(m.name) \
                     WHERE name = 'device_id') ORDER BY m.name",
                )
                .load::<Name>(conn)
                .map_err(|e| StoreError::Database(Box::new(e)))
            })
            .await
            .unwrap();
        let mut wanted: Vec<String> = tables
            .into_iter()
            .map(|t| format!("DELETE FROM {} WHERE device_id = $1", t.name))
            .collect();
        wanted.push("DELETE FROM device WHERE id = $1".into());
        assert_eq!(ERASE, wanted.iter().map(String::as_str).collect::<Vec<_>>());
    }
}
