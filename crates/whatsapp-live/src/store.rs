//! One key store per process, thin handles per device.
//!
//! whatsapp-rust's `SqliteStore` carries its device id in a private field,
//! so a store for another device can only be had from
//! `SqliteStore::new_for_device`, which opens a connection pool of its own:
//! one SQLite connection (two file descriptors, its own page cache, schema
//! and statement cache, ~180 KiB) per session, and a migration check on
//! every connect. [`KeyStore`] opens the file once; a [`DeviceHandle`] is
//! that store plus a device id (an `Arc` and an `i32`), and implements
//! whatsapp-rust's storage traits for its device:
//!
//! - where `SqliteStore` has a public per-device method (device rows,
//!   identities, sessions, sender keys, app-state keys, versions and
//!   mutation MACs) the handle calls it with its device id, so the wire
//!   formats stay whatsapp-rust's own;
//! - everything else (pre-keys, signed pre-keys, batches, the protocol
//!   tables, message secrets) is SQL of ours over the same tables, through
//!   the store's shared write connection (`SharedSqlite::run`, serialized by
//!   its permit) or its reader connections (`SharedSqlite::read`, WAL
//!   snapshots that never take the write lock).
//!
//! The tests below run one script of calls against a `SqliteStore` opened
//! for one device and a handle for another, and compare what each returns
//! and what each left in the file.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use diesel::sql_types::{BigInt, Binary, Bool, Integer, Nullable, Text};
use diesel::sqlite::SqliteConnection;
use diesel::{OptionalExtension as _, QueryResult, QueryableByName, RunQueryDsl as _};
use whatsapp_rust::bytes::Bytes;
use whatsapp_rust::store::{SqliteStore, SqliteStoreConfig};
use whatsapp_rust::wacore::appstate::hash::HashState;
use whatsapp_rust::wacore::appstate::processor::AppStateMutationMAC;
use whatsapp_rust::wacore::store::Device as CoreDevice;
use whatsapp_rust::wacore::store::error::{Result, StoreError};
use whatsapp_rust::wacore::store::traits::{
    AppStateSyncKey, AppSyncStore, DeviceListRecord, DeviceStore, LidPnMappingEntry,
    MsgSecretEntry, MsgSecretStore, PendingInboundKey, PendingInboundRow, ProtocolStore,
    SignalStore, TcTokenEntry,
};

/// Connections the key store keeps for reads besides its one writer (WAL
/// readers, each with its own page cache).
const READERS: u32 = 2;
/// Page cache of each of the key store's connections, KiB. Shared by every
/// session, so it can be far larger than whatsapp-rust's per-store default
/// (512 KiB).
const CACHE_KIB: u32 = 16 * 1024;

/// The process's one whatsapp-rust store: one writer connection, a few
/// readers, shared by every device.
pub(crate) struct KeyStore {
    base: SqliteStore,
    /// A reader of its own for the lookups an API call makes (privacy
    /// tokens), so that they never queue behind the reads of thousands of
    /// sessions logging in after a restart.
    interactive: SqliteStore,
}

impl fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyStore").finish_non_exhaustive()
    }
}

impl KeyStore {
    /// Opens `url` (creating and migrating it as whatsapp-rust does).
    pub(crate) async fn open(url: &str) -> Result<Self> {
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
        Ok(Self { base, interactive })
    }

    /// The store itself: its per-device calls, and (through `shared()`,
    /// a few reference counts) its connections for our own tables.
    pub(crate) fn base(&self) -> &SqliteStore {
        &self.base
    }
}

/// whatsapp-rust's storage for one device of the [`KeyStore`]: what a
/// client is built on. Cloning it is cheap; it holds no connection.
#[derive(Clone)]
pub(crate) struct DeviceHandle {
    keys: Arc<KeyStore>,
    device: i32,
}

impl fmt::Debug for DeviceHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceHandle")
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

fn db(e: diesel::result::Error) -> StoreError {
    StoreError::Database(Box::new(e))
}

fn now_secs() -> i64 {
    whatsapp_rust::wacore::time::now_secs()
}

/// A JSON array of `items`, for `IN (SELECT value FROM json_each(?))`: one
/// bound parameter whatever the count (SQLite's limit is 999 by default).
fn json_list<T: whatsapp_rust::serde::Serialize>(items: &[T]) -> Result<String> {
    whatsapp_rust::serde_json::to_string(items).map_err(|e| StoreError::Serialization(Box::new(e)))
}

impl DeviceHandle {
    pub(crate) fn new(keys: Arc<KeyStore>, device: i32) -> Self {
        Self { keys, device }
    }

    fn base(&self) -> &SqliteStore {
        &self.keys.base
    }

    /// Runs `f` on the write connection, under the store's write permit.
    async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut SqliteConnection, i32) -> QueryResult<T> + Send + 'static,
    {
        let device = self.device;
        self.keys
            .base
            .shared()
            .run(move |conn| f(conn, device).map_err(db))
            .await
    }

    /// [`DeviceHandle::write`] in one transaction.
    async fn write_all<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut SqliteConnection, i32) -> QueryResult<T> + Send + 'static,
    {
        self.write(move |conn, device| conn.immediate_transaction(|conn| f(conn, device)))
            .await
    }

    /// Runs a read-only `f` on a reader connection (one snapshot).
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut SqliteConnection, i32) -> QueryResult<T> + Send + 'static,
    {
        let device = self.device;
        self.keys
            .base
            .shared()
            .read(move |conn| f(conn, device).map_err(db))
            .await
    }
}

// ---- rows -------------------------------------------------------------

#[derive(QueryableByName)]
struct BlobRow {
    #[diesel(sql_type = Binary)]
    v: Vec<u8>,
}

#[derive(QueryableByName)]
struct IdBlobRow {
    #[diesel(sql_type = Integer)]
    id: i32,
    #[diesel(sql_type = Binary)]
    v: Vec<u8>,
}

#[derive(QueryableByName)]
struct FlagRow {
    #[diesel(sql_type = Bool)]
    flag: bool,
}

#[derive(QueryableByName)]
struct MaxRow {
    #[diesel(sql_type = Nullable<Integer>)]
    m: Option<i32>,
}

#[derive(QueryableByName)]
struct TextRow {
    #[diesel(sql_type = Text)]
    v: String,
}

#[derive(QueryableByName)]
struct SenderKeyDeviceRow {
    #[diesel(sql_type = Text)]
    device_jid: String,
    #[diesel(sql_type = Integer)]
    has_key: i32,
}

#[derive(QueryableByName)]
struct LidRow {
    #[diesel(sql_type = Text)]
    lid: String,
    #[diesel(sql_type = Text)]
    phone_number: String,
    #[diesel(sql_type = BigInt)]
    created_at: i64,
    #[diesel(sql_type = Text)]
    learning_source: String,
    #[diesel(sql_type = BigInt)]
    updated_at: i64,
}

impl From<LidRow> for LidPnMappingEntry {
    fn from(r: LidRow) -> Self {
        Self {
            lid: r.lid,
            phone_number: r.phone_number,
            created_at: r.created_at,
            updated_at: r.updated_at,
            learning_source: r.learning_source,
        }
    }
}

#[derive(QueryableByName)]
struct DeviceListRow {
    #[diesel(sql_type = Text)]
    user_id: String,
    #[diesel(sql_type = Text)]
    devices_json: String,
    #[diesel(sql_type = Integer)]
    timestamp: i32,
    #[diesel(sql_type = Nullable<Text>)]
    phash: Option<String>,
    #[diesel(sql_type = Nullable<Integer>)]
    raw_id: Option<i32>,
}

#[derive(QueryableByName)]
struct TcRow {
    #[diesel(sql_type = Binary)]
    token: Vec<u8>,
    #[diesel(sql_type = BigInt)]
    token_timestamp: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    sender_timestamp: Option<i64>,
}

#[derive(QueryableByName)]
struct SecretRow {
    #[diesel(sql_type = Binary)]
    secret: Vec<u8>,
    #[diesel(sql_type = BigInt)]
    message_ts: i64,
}

// ---- statements -------------------------------------------------------

const UPSERT_IDENTITY: &str = "INSERT INTO identities (address, key, device_id) VALUES (?, ?, ?) \
     ON CONFLICT (address, device_id) DO UPDATE SET key = excluded.key";
const UPSERT_SESSION: &str = "INSERT INTO sessions (address, record, device_id) VALUES (?, ?, ?) \
     ON CONFLICT (address, device_id) DO UPDATE SET record = excluded.record";
const UPSERT_SENDER_KEY: &str = "INSERT INTO sender_keys (address, record, device_id) \
     VALUES (?, ?, ?) ON CONFLICT (address, device_id) DO UPDATE SET record = excluded.record";
const UPSERT_PREKEY: &str = "INSERT INTO prekeys (id, key, uploaded, device_id) \
     VALUES (?, ?, ?, ?) ON CONFLICT (id, device_id) \
     DO UPDATE SET key = excluded.key, uploaded = excluded.uploaded";
const UPSERT_LID: &str = "INSERT INTO lid_pn_mapping \
     (lid, phone_number, created_at, learning_source, updated_at, device_id) \
     VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (lid, device_id) DO UPDATE SET \
     phone_number = excluded.phone_number, learning_source = excluded.learning_source, \
     updated_at = excluded.updated_at";
const UPSERT_DEVICE_LIST: &str = "INSERT INTO device_registry \
     (user_id, devices_json, timestamp, phash, device_id, updated_at, raw_id) \
     VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (user_id, device_id) DO UPDATE SET \
     devices_json = excluded.devices_json, timestamp = excluded.timestamp, \
     phash = excluded.phash, updated_at = excluded.updated_at, raw_id = excluded.raw_id";
const UPSERT_TC_TOKEN: &str = "INSERT INTO tc_tokens \
     (jid, token, token_timestamp, sender_timestamp, device_id, updated_at) \
     VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (jid, device_id) DO UPDATE SET \
     token = excluded.token, token_timestamp = excluded.token_timestamp, \
     sender_timestamp = excluded.sender_timestamp, updated_at = excluded.updated_at";
const PUT_PENDING_INBOUND: &str = "INSERT OR REPLACE INTO pending_inbound_messages \
     (chat, sender, id, message, device_id) VALUES (?, ?, ?, ?, ?)";
const DELETE_PENDING_INBOUND: &str = "DELETE FROM pending_inbound_messages \
     WHERE chat = ? AND sender = ? AND id = ? AND device_id = ?";
const UPSERT_MSG_SECRET: &str = "INSERT INTO msg_secrets \
     (chat, sender, msg_id, secret, device_id, created_at, expires_at, message_ts) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (chat, sender, msg_id, device_id) DO UPDATE SET \
     secret = excluded.secret, created_at = excluded.created_at, \
     expires_at = CASE WHEN msg_secrets.expires_at = 0 OR excluded.expires_at = 0 THEN 0 \
                  ELSE MAX(msg_secrets.expires_at, excluded.expires_at) END, \
     message_ts = MAX(msg_secrets.message_ts, excluded.message_ts)";

fn upsert_prekey(
    conn: &mut SqliteConnection,
    device: i32,
    id: u32,
    record: &[u8],
    uploaded: bool,
) -> QueryResult<usize> {
    diesel::sql_query(UPSERT_PREKEY)
        .bind::<Integer, _>(id as i32)
        .bind::<Binary, _>(record)
        .bind::<Bool, _>(uploaded)
        .bind::<Integer, _>(device)
        .execute(conn)
}

fn upsert_address_blob(
    conn: &mut SqliteConnection,
    statement: &str,
    device: i32,
    address: &str,
    blob: &[u8],
) -> QueryResult<usize> {
    diesel::sql_query(statement)
        .bind::<Text, _>(address)
        .bind::<Binary, _>(blob)
        .bind::<Integer, _>(device)
        .execute(conn)
}

fn upsert_device_list(
    conn: &mut SqliteConnection,
    device: i32,
    now: i32,
    row: &(String, String, i32, Option<String>, Option<i32>),
) -> QueryResult<usize> {
    let (user, devices_json, timestamp, phash, raw_id) = row;
    diesel::sql_query(UPSERT_DEVICE_LIST)
        .bind::<Text, _>(user)
        .bind::<Text, _>(devices_json)
        .bind::<Integer, _>(*timestamp)
        .bind::<Nullable<Text>, _>(phash.as_deref())
        .bind::<Integer, _>(device)
        .bind::<Integer, _>(now)
        .bind::<Nullable<Integer>, _>(*raw_id)
        .execute(conn)
}

fn put_pending_inbound(
    conn: &mut SqliteConnection,
    device: i32,
    (chat, sender, id, message): (&str, &str, &str, &[u8]),
) -> QueryResult<usize> {
    diesel::sql_query(PUT_PENDING_INBOUND)
        .bind::<Text, _>(chat)
        .bind::<Text, _>(sender)
        .bind::<Text, _>(id)
        .bind::<Binary, _>(message)
        .bind::<Integer, _>(device)
        .execute(conn)
}

fn delete_pending_inbound(
    conn: &mut SqliteConnection,
    device: i32,
    (chat, sender, id): (&str, &str, &str),
) -> QueryResult<usize> {
    diesel::sql_query(DELETE_PENDING_INBOUND)
        .bind::<Text, _>(chat)
        .bind::<Text, _>(sender)
        .bind::<Text, _>(id)
        .bind::<Integer, _>(device)
        .execute(conn)
}

fn tc_token(conn: &mut SqliteConnection, device: i32, jid: &str) -> QueryResult<Option<TcRow>> {
    diesel::sql_query(
        "SELECT token, token_timestamp, sender_timestamp FROM tc_tokens \
         WHERE jid = ? AND device_id = ?",
    )
    .bind::<Text, _>(jid)
    .bind::<Integer, _>(device)
    .get_result(conn)
    .optional()
}

fn owned_list(items: &[(Arc<str>, Bytes)]) -> Vec<(Arc<str>, Bytes)> {
    items.to_vec()
}

// ---- the traits -------------------------------------------------------

#[async_trait]
impl SignalStore for DeviceHandle {
    async fn put_identity(&self, address: &str, key: [u8; 32]) -> Result<()> {
        self.base()
            .put_identity_for_device(address, key, self.device)
            .await
    }

    async fn put_identities_batch(&self, identities: &[(Arc<str>, [u8; 32])]) -> Result<()> {
        if identities.is_empty() {
            return Ok(());
        }
        let batch = identities.to_vec();
        self.write_all(move |conn, device| {
            for (address, key) in &batch {
                upsert_address_blob(conn, UPSERT_IDENTITY, device, address, key)?;
            }
            Ok(())
        })
        .await
    }

    async fn load_identity(&self, address: &str) -> Result<Option<[u8; 32]>> {
        let blob = self
            .base()
            .load_identity_for_device(address, self.device)
            .await?;
        blob.map(|v| {
            <[u8; 32]>::try_from(v.as_slice()).map_err(|_| {
                StoreError::Validation(format!(
                    "identity key for '{address}' has invalid length {} (expected 32)",
                    v.len()
                ))
            })
        })
        .transpose()
    }

    async fn delete_identity(&self, address: &str) -> Result<()> {
        self.base()
            .delete_identity_for_device(address, self.device)
            .await
    }

    async fn get_session(&self, address: &str) -> Result<Option<Bytes>> {
        Ok(self
            .base()
            .get_session_for_device(address, self.device)
            .await?
            .map(Bytes::from))
    }

    async fn put_session(&self, address: &str, session: &[u8]) -> Result<()> {
        self.base()
            .put_session_for_device(address, session, self.device)
            .await
    }

    async fn put_sessions_batch(&self, sessions: &[(Arc<str>, Bytes)]) -> Result<()> {
        if sessions.is_empty() {
            return Ok(());
        }
        let batch = owned_list(sessions);
        self.write_all(move |conn, device| {
            for (address, record) in &batch {
                upsert_address_blob(conn, UPSERT_SESSION, device, address, record)?;
            }
            Ok(())
        })
        .await
    }

    async fn delete_session(&self, address: &str) -> Result<()> {
        self.base()
            .delete_session_for_device(address, self.device)
            .await
    }

    async fn has_session(&self, address: &str) -> Result<bool> {
        let address = address.to_owned();
        self.read(move |conn, device| {
            diesel::sql_query(
                "SELECT EXISTS (SELECT 1 FROM sessions WHERE address = ? AND device_id = ?) \
                 AS flag",
            )
            .bind::<Text, _>(address)
            .bind::<Integer, _>(device)
            .get_result::<FlagRow>(conn)
            .map(|r| r.flag)
        })
        .await
    }

    async fn has_signal_state_for_user(&self, user: &str) -> Result<bool> {
        // Addresses are `user@server` (device 0) or `user:dev@server`.
        let (at, dev) = (format!("{user}@%"), format!("{user}:%"));
        self.read(move |conn, device| {
            diesel::sql_query(
                "SELECT (EXISTS (SELECT 1 FROM sessions WHERE device_id = ?1 \
                           AND (address LIKE ?2 OR address LIKE ?3)) \
                      OR EXISTS (SELECT 1 FROM identities WHERE device_id = ?1 \
                           AND (address LIKE ?2 OR address LIKE ?3))) AS flag",
            )
            .bind::<Integer, _>(device)
            .bind::<Text, _>(at)
            .bind::<Text, _>(dev)
            .get_result::<FlagRow>(conn)
            .map(|r| r.flag)
        })
        .await
    }

    async fn store_prekey(&self, id: u32, record: &[u8], uploaded: bool) -> Result<()> {
        let record = record.to_vec();
        self.write(move |conn, device| upsert_prekey(conn, device, id, &record, uploaded).map(drop))
            .await
    }

    async fn store_prekeys_batch(&self, keys: &[(u32, Bytes)], uploaded: bool) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let keys = keys.to_vec();
        self.write_all(move |conn, device| {
            for (id, record) in &keys {
                upsert_prekey(conn, device, *id, record, uploaded)?;
            }
            Ok(())
        })
        .await
    }

    async fn load_prekey(&self, id: u32) -> Result<Option<Bytes>> {
        self.read(move |conn, device| {
            diesel::sql_query("SELECT key AS v FROM prekeys WHERE id = ? AND device_id = ?")
                .bind::<Integer, _>(id as i32)
                .bind::<Integer, _>(device)
                .get_result::<BlobRow>(conn)
                .optional()
                .map(|r| r.map(|r| Bytes::from(r.v)))
        })
        .await
    }

    async fn load_prekeys_batch(&self, ids: &[u32]) -> Result<Vec<(u32, Bytes)>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids = json_list(ids)?;
        self.read(move |conn, device| {
            // Through the device index: the primary key is (id, device_id),
            // so a seek per id touches one index page per key (a device's
            // ~800 keys are spread across the whole index); the device's
            // entries in `idx_prekeys_device_id` sit together.
            diesel::sql_query(
                "SELECT id, key AS v FROM prekeys INDEXED BY idx_prekeys_device_id \
                 WHERE device_id = ? AND id IN (SELECT value FROM json_each(?))",
            )
            .bind::<Integer, _>(device)
            .bind::<Text, _>(ids)
            .load::<IdBlobRow>(conn)
            .map(|rows| {
                rows.into_iter()
                    .map(|r| (r.id as u32, Bytes::from(r.v)))
                    .collect()
            })
        })
        .await
    }

    async fn mark_prekeys_uploaded(&self, ids: &[u32]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        // An UPDATE: a key consumed since the upload stays deleted.
        let ids = json_list(ids)?;
        self.write(move |conn, device| {
            diesel::sql_query(
                "UPDATE prekeys INDEXED BY idx_prekeys_device_id SET uploaded = 1 WHERE device_id = ? \
                 AND id IN (SELECT value FROM json_each(?))",
            )
            .bind::<Integer, _>(device)
            .bind::<Text, _>(ids)
            .execute(conn)
            .map(drop)
        })
        .await
    }

    async fn remove_prekey(&self, id: u32) -> Result<()> {
        self.write(move |conn, device| {
            diesel::sql_query("DELETE FROM prekeys WHERE id = ? AND device_id = ?")
                .bind::<Integer, _>(id as i32)
                .bind::<Integer, _>(device)
                .execute(conn)
                .map(drop)
        })
        .await
    }

    async fn get_max_prekey_id(&self) -> Result<u32> {
        self.read(move |conn, device| {
            diesel::sql_query("SELECT MAX(id) AS m FROM prekeys WHERE device_id = ?")
                .bind::<Integer, _>(device)
                .get_result::<MaxRow>(conn)
                .map(|r| r.m.unwrap_or(0) as u32)
        })
        .await
    }

    async fn store_signed_prekey(&self, id: u32, record: &[u8]) -> Result<()> {
        let record = record.to_vec();
        self.write(move |conn, device| {
            diesel::sql_query(
                "INSERT INTO signed_prekeys (id, record, device_id) VALUES (?, ?, ?) \
                 ON CONFLICT (id, device_id) DO UPDATE SET record = excluded.record",
            )
            .bind::<Integer, _>(id as i32)
            .bind::<Binary, _>(record)
            .bind::<Integer, _>(device)
            .execute(conn)
            .map(drop)
        })
        .await
    }

    async fn load_signed_prekey(&self, id: u32) -> Result<Option<Vec<u8>>> {
        self.read(move |conn, device| {
            diesel::sql_query(
                "SELECT record AS v FROM signed_prekeys WHERE id = ? AND device_id = ?",
            )
            .bind::<Integer, _>(id as i32)
            .bind::<Integer, _>(device)
            .get_result::<BlobRow>(conn)
            .optional()
            .map(|r| r.map(|r| r.v))
        })
        .await
    }

    async fn load_all_signed_prekeys(&self) -> Result<Vec<(u32, Vec<u8>)>> {
        self.read(move |conn, device| {
            diesel::sql_query("SELECT id, record AS v FROM signed_prekeys WHERE device_id = ?")
                .bind::<Integer, _>(device)
                .load::<IdBlobRow>(conn)
                .map(|rows| rows.into_iter().map(|r| (r.id as u32, r.v)).collect())
        })
        .await
    }

    async fn remove_signed_prekey(&self, id: u32) -> Result<()> {
        self.write(move |conn, device| {
            diesel::sql_query("DELETE FROM signed_prekeys WHERE id = ? AND device_id = ?")
                .bind::<Integer, _>(id as i32)
                .bind::<Integer, _>(device)
                .execute(conn)
                .map(drop)
        })
        .await
    }

    async fn put_sender_key(&self, address: &str, record: &[u8]) -> Result<()> {
        self.base()
            .put_sender_key_for_device(address, record, self.device)
            .await
    }

    async fn put_sender_keys_batch(&self, sender_keys: &[(Arc<str>, Bytes)]) -> Result<()> {
        if sender_keys.is_empty() {
            return Ok(());
        }
        let batch = owned_list(sender_keys);
        self.write_all(move |conn, device| {
            for (address, record) in &batch {
                upsert_address_blob(conn, UPSERT_SENDER_KEY, device, address, record)?;
            }
            Ok(())
        })
        .await
    }

    async fn get_sender_key(&self, address: &str) -> Result<Option<Vec<u8>>> {
        self.base()
            .get_sender_key_for_device(address, self.device)
            .await
    }

    async fn delete_sender_key(&self, address: &str) -> Result<()> {
        self.base()
            .delete_sender_key_for_device(address, self.device)
            .await
    }
}

#[async_trait]
impl AppSyncStore for DeviceHandle {
    async fn get_sync_key(&self, key_id: &[u8]) -> Result<Option<AppStateSyncKey>> {
        self.base()
            .get_app_state_sync_key_for_device(key_id, self.device)
            .await
    }

    async fn set_sync_key(&self, key_id: &[u8], key: AppStateSyncKey) -> Result<()> {
        self.base()
            .set_app_state_sync_key_for_device(key_id, key, self.device)
            .await
    }

    async fn get_version(&self, name: &str) -> Result<HashState> {
        self.base()
            .get_app_state_version_for_device(name, self.device)
            .await
    }

    async fn set_version(&self, name: &str, state: HashState) -> Result<()> {
        self.base()
            .set_app_state_version_for_device(name, state, self.device)
            .await
    }

    async fn put_mutation_macs(
        &self,
        name: &str,
        version: u64,
        mutations: &[AppStateMutationMAC],
    ) -> Result<()> {
        self.base()
            .put_app_state_mutation_macs_for_device(name, version, mutations, self.device)
            .await
    }

    async fn get_mutation_mac(&self, name: &str, index_mac: &[u8]) -> Result<Option<Vec<u8>>> {
        self.base()
            .get_app_state_mutation_mac_for_device(name, index_mac, self.device)
            .await
    }

    async fn get_mutation_macs(
        &self,
        name: &str,
        index_macs: &[[u8; 32]],
    ) -> Result<HashMap<[u8; 32], Vec<u8>>> {
        self.base()
            .get_app_state_mutation_macs_batch_for_device(name, index_macs, self.device)
            .await
    }

    async fn delete_mutation_macs(&self, name: &str, index_macs: &[Vec<u8>]) -> Result<()> {
        self.base()
            .delete_app_state_mutation_macs_for_device(name, index_macs, self.device)
            .await
    }

    async fn clear_mutation_macs(&self, name: &str) -> Result<()> {
        let name = name.to_owned();
        self.write(move |conn, device| {
            diesel::sql_query(
                "DELETE FROM app_state_mutation_macs WHERE name = ? AND device_id = ?",
            )
            .bind::<Text, _>(name)
            .bind::<Integer, _>(device)
            .execute(conn)
            .map(drop)
        })
        .await
    }

    async fn get_latest_sync_key_id(&self) -> Result<Option<Vec<u8>>> {
        self.base()
            .get_latest_app_state_sync_key_id_for_device(self.device)
            .await
    }
}

#[async_trait]
impl ProtocolStore for DeviceHandle {
    async fn get_sender_key_devices(&self, group_jid: &str) -> Result<Vec<(String, bool)>> {
        let group = group_jid.to_owned();
        self.read(move |conn, device| {
            diesel::sql_query(
                "SELECT device_jid, has_key FROM sender_key_devices \
                 WHERE group_jid = ? AND device_id = ?",
            )
            .bind::<Text, _>(group)
            .bind::<Integer, _>(device)
            .load::<SenderKeyDeviceRow>(conn)
            .map(|rows| {
                rows.into_iter()
                    .map(|r| (r.device_jid, r.has_key != 0))
                    .collect()
            })
        })
        .await
    }

    async fn set_sender_key_status(&self, group_jid: &str, entries: &[(&str, bool)]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let group = group_jid.to_owned();
        let entries: Vec<(String, bool)> = entries
            .iter()
            .map(|(jid, has)| ((*jid).to_owned(), *has))
            .collect();
        let now = now_secs();
        self.write_all(move |conn, device| {
            for (jid, has) in &entries {
                diesel::sql_query(
                    "INSERT INTO sender_key_devices \
                     (group_jid, device_jid, has_key, device_id, updated_at) \
                     VALUES (?, ?, ?, ?, ?) \
                     ON CONFLICT (group_jid, device_jid, device_id) DO UPDATE SET \
                     has_key = excluded.has_key, updated_at = excluded.updated_at",
                )
                .bind::<Text, _>(&group)
                .bind::<Text, _>(jid)
                .bind::<Integer, _>(i32::from(*has))
                .bind::<Integer, _>(device)
                .bind::<BigInt, _>(now)
                .execute(conn)?;
            }
            Ok(())
        })
        .await
    }

    async fn clear_sender_key_devices(&self, group_jid: &str) -> Result<()> {
        let group = group_jid.to_owned();
        self.write(move |conn, device| {
            diesel::sql_query(
                "DELETE FROM sender_key_devices WHERE group_jid = ? AND device_id = ?",
            )
            .bind::<Text, _>(group)
            .bind::<Integer, _>(device)
            .execute(conn)
            .map(drop)
        })
        .await
    }

    async fn delete_sender_key_device_rows(&self, device_jids: &[&str]) -> Result<()> {
        if device_jids.is_empty() {
            return Ok(());
        }
        let jids = json_list(device_jids)?;
        self.write(move |conn, device| {
            diesel::sql_query(
                "DELETE FROM sender_key_devices WHERE device_id = ? \
                 AND device_jid IN (SELECT value FROM json_each(?))",
            )
            .bind::<Integer, _>(device)
            .bind::<Text, _>(jids)
            .execute(conn)
            .map(drop)
        })
        .await
    }

    async fn clear_all_sender_key_devices(&self) -> Result<()> {
        self.write(move |conn, device| {
            diesel::sql_query("DELETE FROM sender_key_devices WHERE device_id = ?")
                .bind::<Integer, _>(device)
                .execute(conn)
                .map(drop)
        })
        .await
    }

    async fn get_lid_mapping(&self, lid: &str) -> Result<Option<LidPnMappingEntry>> {
        let lid = lid.to_owned();
        self.read(move |conn, device| {
            diesel::sql_query(
                "SELECT lid, phone_number, created_at, learning_source, updated_at \
                 FROM lid_pn_mapping WHERE lid = ? AND device_id = ?",
            )
            .bind::<Text, _>(lid)
            .bind::<Integer, _>(device)
            .get_result::<LidRow>(conn)
            .optional()
            .map(|r| r.map(Into::into))
        })
        .await
    }

    async fn get_pn_mapping(&self, phone: &str) -> Result<Option<LidPnMappingEntry>> {
        let phone = phone.to_owned();
        self.read(move |conn, device| {
            diesel::sql_query(
                "SELECT lid, phone_number, created_at, learning_source, updated_at \
                 FROM lid_pn_mapping WHERE phone_number = ? AND device_id = ? \
                 ORDER BY updated_at DESC LIMIT 1",
            )
            .bind::<Text, _>(phone)
            .bind::<Integer, _>(device)
            .get_result::<LidRow>(conn)
            .optional()
            .map(|r| r.map(Into::into))
        })
        .await
    }

    async fn put_lid_mapping(&self, entry: &LidPnMappingEntry) -> Result<()> {
        self.put_lid_mappings(std::slice::from_ref(entry)).await
    }

    async fn put_lid_mappings(&self, entries: &[LidPnMappingEntry]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let entries = entries.to_vec();
        self.write_all(move |conn, device| {
            for e in &entries {
                diesel::sql_query(UPSERT_LID)
                    .bind::<Text, _>(&e.lid)
                    .bind::<Text, _>(&e.phone_number)
                    .bind::<BigInt, _>(e.created_at)
                    .bind::<Text, _>(&e.learning_source)
                    .bind::<BigInt, _>(e.updated_at)
                    .bind::<Integer, _>(device)
                    .execute(conn)?;
            }
            Ok(())
        })
        .await
    }

    async fn get_all_lid_mappings(&self) -> Result<Vec<LidPnMappingEntry>> {
        self.read(move |conn, device| {
            diesel::sql_query(
                "SELECT lid, phone_number, created_at, learning_source, updated_at \
                 FROM lid_pn_mapping WHERE device_id = ?",
            )
            .bind::<Integer, _>(device)
            .load::<LidRow>(conn)
            .map(|rows| rows.into_iter().map(Into::into).collect())
        })
        .await
    }

    async fn save_base_key(&self, address: &str, message_id: &str, base_key: &[u8]) -> Result<()> {
        let (address, message_id, base_key) =
            (address.to_owned(), message_id.to_owned(), base_key.to_vec());
        let now = now_secs() as i32;
        self.write(move |conn, device| {
            diesel::sql_query(
                "INSERT INTO base_keys (address, message_id, base_key, device_id, created_at) \
                 VALUES (?, ?, ?, ?, ?) ON CONFLICT (address, message_id, device_id) \
                 DO UPDATE SET base_key = excluded.base_key",
            )
            .bind::<Text, _>(address)
            .bind::<Text, _>(message_id)
            .bind::<Binary, _>(base_key)
            .bind::<Integer, _>(device)
            .bind::<Integer, _>(now)
            .execute(conn)
            .map(drop)
        })
        .await
    }

    async fn has_same_base_key(
        &self,
        address: &str,
        message_id: &str,
        current_base_key: &[u8],
    ) -> Result<bool> {
        let (address, message_id, current) = (
            address.to_owned(),
            message_id.to_owned(),
            current_base_key.to_vec(),
        );
        self.read(move |conn, device| {
            diesel::sql_query(
                "SELECT base_key AS v FROM base_keys \
                 WHERE address = ? AND message_id = ? AND device_id = ?",
            )
            .bind::<Text, _>(address)
            .bind::<Text, _>(message_id)
            .bind::<Integer, _>(device)
            .get_result::<BlobRow>(conn)
            .optional()
            .map(|r| r.is_some_and(|r| r.v == current))
        })
        .await
    }

    async fn delete_base_key(&self, address: &str, message_id: &str) -> Result<()> {
        let (address, message_id) = (address.to_owned(), message_id.to_owned());
        self.write(move |conn, device| {
            diesel::sql_query(
                "DELETE FROM base_keys WHERE address = ? AND message_id = ? AND device_id = ?",
            )
            .bind::<Text, _>(address)
            .bind::<Text, _>(message_id)
            .bind::<Integer, _>(device)
            .execute(conn)
            .map(drop)
        })
        .await
    }

    async fn update_device_list(&self, record: DeviceListRecord) -> Result<()> {
        self.update_device_lists(vec![record]).await
    }

    async fn update_device_lists(&self, records: Vec<DeviceListRecord>) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let rows = records
            .into_iter()
            .map(|r| {
                let json = whatsapp_rust::serde_json::to_string(&r.devices)
                    .map_err(|e| StoreError::Serialization(Box::new(e)))?;
                Ok((
                    r.user,
                    json,
                    r.timestamp as i32,
                    r.phash,
                    r.raw_id.map(|v| v as i32),
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let now = now_secs() as i32;
        self.write_all(move |conn, device| {
            for row in &rows {
                upsert_device_list(conn, device, now, row)?;
            }
            Ok(())
        })
        .await
    }

    async fn get_devices(&self, user: &str) -> Result<Option<DeviceListRecord>> {
        let user = user.to_owned();
        let row = self
            .read(move |conn, device| {
                diesel::sql_query(
                    "SELECT user_id, devices_json, timestamp, phash, raw_id \
                     FROM device_registry WHERE user_id = ? AND device_id = ?",
                )
                .bind::<Text, _>(user)
                .bind::<Integer, _>(device)
                .get_result::<DeviceListRow>(conn)
                .optional()
            })
            .await?;
        row.map(|r| {
            let devices = whatsapp_rust::serde_json::from_str(&r.devices_json)
                .map_err(|e| StoreError::Serialization(Box::new(e)))?;
            Ok(DeviceListRecord {
                user: r.user_id,
                devices,
                timestamp: i64::from(r.timestamp),
                phash: r.phash,
                raw_id: r.raw_id.map(|v| v as u32),
            })
        })
        .transpose()
    }

    async fn delete_devices(&self, user: &str) -> Result<()> {
        let user = user.to_owned();
        self.write(move |conn, device| {
            diesel::sql_query("DELETE FROM device_registry WHERE user_id = ? AND device_id = ?")
                .bind::<Text, _>(user)
                .bind::<Integer, _>(device)
                .execute(conn)
                .map(drop)
        })
        .await
    }

    async fn get_group_metadata(&self, group_jid: &str) -> Result<Option<Vec<u8>>> {
        let group = group_jid.to_owned();
        self.read(move |conn, device| {
            diesel::sql_query(
                "SELECT info AS v FROM group_metadata WHERE group_jid = ? AND device_id = ?",
            )
            .bind::<Text, _>(group)
            .bind::<Integer, _>(device)
            .get_result::<BlobRow>(conn)
            .optional()
            .map(|r| r.map(|r| r.v))
        })
        .await
    }

    async fn put_group_metadata(&self, group_jid: &str, blob: &[u8]) -> Result<()> {
        let (group, blob) = (group_jid.to_owned(), blob.to_vec());
        let now = now_secs();
        self.write(move |conn, device| {
            diesel::sql_query(
                "INSERT INTO group_metadata (group_jid, info, device_id, updated_at) \
                 VALUES (?, ?, ?, ?) ON CONFLICT (group_jid, device_id) DO UPDATE SET \
                 info = excluded.info, updated_at = excluded.updated_at",
            )
            .bind::<Text, _>(group)
            .bind::<Binary, _>(blob)
            .bind::<Integer, _>(device)
            .bind::<BigInt, _>(now)
            .execute(conn)
            .map(drop)
        })
        .await
    }

    async fn delete_group_metadata(&self, group_jid: &str) -> Result<()> {
        let group = group_jid.to_owned();
        self.write(move |conn, device| {
            diesel::sql_query("DELETE FROM group_metadata WHERE group_jid = ? AND device_id = ?")
                .bind::<Text, _>(group)
                .bind::<Integer, _>(device)
                .execute(conn)
                .map(drop)
        })
        .await
    }

    async fn get_tc_token(&self, jid: &str) -> Result<Option<TcTokenEntry>> {
        let (jid, device) = (jid.to_owned(), self.device);
        // On the interactive reader: a contact lookup's one read.
        self.keys
            .interactive
            .shared()
            .read(move |conn| {
                tc_token(conn, device, &jid)
                    .map(|r| {
                        r.map(|r| TcTokenEntry {
                            token: r.token,
                            token_timestamp: r.token_timestamp,
                            sender_timestamp: r.sender_timestamp,
                        })
                    })
                    .map_err(db)
            })
            .await
    }

    async fn put_tc_token(&self, jid: &str, entry: &TcTokenEntry) -> Result<()> {
        let (jid, entry) = (jid.to_owned(), entry.clone());
        let now = now_secs();
        self.write(move |conn, device| {
            diesel::sql_query(UPSERT_TC_TOKEN)
                .bind::<Text, _>(jid)
                .bind::<Binary, _>(entry.token)
                .bind::<BigInt, _>(entry.token_timestamp)
                .bind::<Nullable<BigInt>, _>(entry.sender_timestamp)
                .bind::<Integer, _>(device)
                .bind::<BigInt, _>(now)
                .execute(conn)
                .map(drop)
        })
        .await
    }

    async fn delete_tc_token(&self, jid: &str) -> Result<()> {
        let jid = jid.to_owned();
        self.write(move |conn, device| {
            diesel::sql_query("DELETE FROM tc_tokens WHERE jid = ? AND device_id = ?")
                .bind::<Text, _>(jid)
                .bind::<Integer, _>(device)
                .execute(conn)
                .map(drop)
        })
        .await
    }

    async fn get_all_tc_token_jids(&self) -> Result<Vec<String>> {
        self.read(move |conn, device| {
            diesel::sql_query("SELECT jid AS v FROM tc_tokens WHERE device_id = ?")
                .bind::<Integer, _>(device)
                .load::<TextRow>(conn)
                .map(|rows| rows.into_iter().map(|r| r.v).collect())
        })
        .await
    }

    async fn delete_expired_tc_tokens(&self, token_cutoff: i64, sender_cutoff: i64) -> Result<u32> {
        // Only rows whose received token is expired or absent AND whose
        // sender bucket is expired or absent.
        self.write(move |conn, device| {
            diesel::sql_query(
                "DELETE FROM tc_tokens WHERE device_id = ? \
                 AND (token = ? OR token_timestamp < ?) \
                 AND (sender_timestamp IS NULL OR sender_timestamp < ?)",
            )
            .bind::<Integer, _>(device)
            .bind::<Binary, _>(Vec::<u8>::new())
            .bind::<BigInt, _>(token_cutoff)
            .bind::<BigInt, _>(sender_cutoff)
            .execute(conn)
            .map(|n| n as u32)
        })
        .await
    }

    async fn touch_tc_token_sender_timestamp(
        &self,
        jid: &str,
        sender_timestamp: i64,
    ) -> Result<()> {
        let jid = jid.to_owned();
        let now = now_secs();
        // One upsert: on conflict only the sender bucket moves, and only
        // forward; stored token bytes are kept.
        self.write(move |conn, device| {
            diesel::sql_query(
                "INSERT INTO tc_tokens \
                 (jid, token, token_timestamp, sender_timestamp, device_id, updated_at) \
                 VALUES (?1, ?2, ?3, ?3, ?4, ?5) ON CONFLICT (jid, device_id) DO UPDATE SET \
                 sender_timestamp = MAX(COALESCE(tc_tokens.sender_timestamp, ?3), ?3), \
                 updated_at = ?5",
            )
            .bind::<Text, _>(jid)
            .bind::<Binary, _>(Vec::<u8>::new())
            .bind::<BigInt, _>(sender_timestamp)
            .bind::<Integer, _>(device)
            .bind::<BigInt, _>(now)
            .execute(conn)
            .map(drop)
        })
        .await
    }

    async fn store_received_tc_token(
        &self,
        jid: &str,
        token: &[u8],
        token_timestamp: i64,
    ) -> Result<()> {
        let (jid, token) = (jid.to_owned(), token.to_vec());
        let now = now_secs();
        // Newer wins, atomically: a stored real token is replaced only by
        // one at least as new; the sender bucket is kept.
        self.write_all(move |conn, device| {
            let keep = tc_token(conn, device, &jid)?
                .is_some_and(|r| !r.token.is_empty() && token_timestamp < r.token_timestamp);
            if keep {
                return Ok(());
            }
            diesel::sql_query(
                "INSERT INTO tc_tokens \
                 (jid, token, token_timestamp, sender_timestamp, device_id, updated_at) \
                 VALUES (?, ?, ?, NULL, ?, ?) ON CONFLICT (jid, device_id) DO UPDATE SET \
                 token = excluded.token, token_timestamp = excluded.token_timestamp, \
                 updated_at = excluded.updated_at",
            )
            .bind::<Text, _>(&jid)
            .bind::<Binary, _>(&token)
            .bind::<BigInt, _>(token_timestamp)
            .bind::<Integer, _>(device)
            .bind::<BigInt, _>(now)
            .execute(conn)
            .map(drop)
        })
        .await
    }

    async fn store_sent_message(
        &self,
        chat_jid: &str,
        message_id: &str,
        payload: &[u8],
    ) -> Result<()> {
        let (chat, id, payload) = (chat_jid.to_owned(), message_id.to_owned(), payload.to_vec());
        self.write(move |conn, device| {
            diesel::sql_query(
                "INSERT OR REPLACE INTO sent_messages (chat_jid, message_id, payload, device_id) \
                 VALUES (?, ?, ?, ?)",
            )
            .bind::<Text, _>(chat)
            .bind::<Text, _>(id)
            .bind::<Binary, _>(payload)
            .bind::<Integer, _>(device)
            .execute(conn)
            .map(drop)
        })
        .await
    }

    async fn take_sent_message(&self, chat_jid: &str, message_id: &str) -> Result<Option<Vec<u8>>> {
        let (chat, id) = (chat_jid.to_owned(), message_id.to_owned());
        self.write_all(move |conn, device| {
            let row = diesel::sql_query(
                "SELECT payload AS v FROM sent_messages \
                 WHERE chat_jid = ? AND message_id = ? AND device_id = ?",
            )
            .bind::<Text, _>(&chat)
            .bind::<Text, _>(&id)
            .bind::<Integer, _>(device)
            .get_result::<BlobRow>(conn)
            .optional()?;
            if row.is_some() {
                diesel::sql_query(
                    "DELETE FROM sent_messages \
                     WHERE chat_jid = ? AND message_id = ? AND device_id = ?",
                )
                .bind::<Text, _>(&chat)
                .bind::<Text, _>(&id)
                .bind::<Integer, _>(device)
                .execute(conn)?;
            }
            Ok(row.map(|r| r.v))
        })
        .await
    }

    async fn delete_expired_sent_messages(&self, cutoff_timestamp: i64) -> Result<u32> {
        self.write(move |conn, device| {
            diesel::sql_query("DELETE FROM sent_messages WHERE created_at < ? AND device_id = ?")
                .bind::<BigInt, _>(cutoff_timestamp)
                .bind::<Integer, _>(device)
                .execute(conn)
                .map(|n| n as u32)
        })
        .await
    }

    async fn store_pending_inbound(
        &self,
        chat: &str,
        sender: &str,
        id: &str,
        message: &[u8],
    ) -> Result<()> {
        let row = (
            chat.to_owned(),
            sender.to_owned(),
            id.to_owned(),
            message.to_vec(),
        );
        self.write(move |conn, device| {
            put_pending_inbound(conn, device, (&row.0, &row.1, &row.2, &row.3)).map(drop)
        })
        .await
    }

    async fn get_pending_inbound(
        &self,
        chat: &str,
        sender: &str,
        id: &str,
    ) -> Result<Option<Vec<u8>>> {
        let (chat, sender, id) = (chat.to_owned(), sender.to_owned(), id.to_owned());
        self.read(move |conn, device| {
            diesel::sql_query(
                "SELECT message AS v FROM pending_inbound_messages \
                 WHERE chat = ? AND sender = ? AND id = ? AND device_id = ?",
            )
            .bind::<Text, _>(chat)
            .bind::<Text, _>(sender)
            .bind::<Text, _>(id)
            .bind::<Integer, _>(device)
            .get_result::<BlobRow>(conn)
            .optional()
            .map(|r| r.map(|r| r.v))
        })
        .await
    }

    async fn delete_pending_inbound(&self, chat: &str, sender: &str, id: &str) -> Result<()> {
        let key = (chat.to_owned(), sender.to_owned(), id.to_owned());
        self.write(move |conn, device| {
            delete_pending_inbound(conn, device, (&key.0, &key.1, &key.2)).map(drop)
        })
        .await
    }

    async fn delete_expired_pending_inbound(&self, cutoff_timestamp: i64) -> Result<u32> {
        self.write(move |conn, device| {
            diesel::sql_query(
                "DELETE FROM pending_inbound_messages WHERE device_id = ? AND inserted_at < ?",
            )
            .bind::<Integer, _>(device)
            .bind::<BigInt, _>(cutoff_timestamp)
            .execute(conn)
            .map(|n| n as u32)
        })
        .await
    }

    async fn store_pending_inbound_batch(&self, rows: &[PendingInboundRow<'_>]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let rows: Vec<(String, String, String, Vec<u8>)> = rows
            .iter()
            .map(|r| {
                (
                    r.chat.to_owned(),
                    r.sender.to_owned(),
                    r.id.to_owned(),
                    r.message.to_vec(),
                )
            })
            .collect();
        self.write_all(move |conn, device| {
            for (chat, sender, id, message) in &rows {
                put_pending_inbound(conn, device, (chat, sender, id, message))?;
            }
            Ok(())
        })
        .await
    }

    async fn delete_pending_inbound_batch(&self, keys: &[PendingInboundKey<'_>]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let keys: Vec<(String, String, String)> = keys
            .iter()
            .map(|k| (k.chat.to_owned(), k.sender.to_owned(), k.id.to_owned()))
            .collect();
        self.write_all(move |conn, device| {
            for (chat, sender, id) in &keys {
                delete_pending_inbound(conn, device, (chat, sender, id))?;
            }
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl MsgSecretStore for DeviceHandle {
    async fn put_msg_secrets(&self, entries: Vec<MsgSecretEntry>) -> Result<usize> {
        if entries.is_empty() {
            return Ok(0);
        }
        let now = now_secs();
        self.write_all(move |conn, device| {
            let mut stored = 0;
            for e in &entries {
                stored += diesel::sql_query(UPSERT_MSG_SECRET)
                    .bind::<Text, _>(e.chat.as_ref())
                    .bind::<Text, _>(e.sender.as_ref())
                    .bind::<Text, _>(e.msg_id.as_ref())
                    .bind::<Binary, _>(e.secret.as_slice())
                    .bind::<Integer, _>(device)
                    .bind::<BigInt, _>(now)
                    .bind::<BigInt, _>(e.expires_at)
                    .bind::<BigInt, _>(e.message_ts)
                    .execute(conn)?;
            }
            Ok(stored)
        })
        .await
    }

    async fn get_msg_secret(
        &self,
        chat: &str,
        sender: &str,
        msg_id: &str,
    ) -> Result<Option<Vec<u8>>> {
        Ok(self
            .get_msg_secret_with_ts(chat, sender, msg_id)
            .await?
            .map(|(secret, _)| secret))
    }

    async fn get_msg_secret_with_ts(
        &self,
        chat: &str,
        sender: &str,
        msg_id: &str,
    ) -> Result<Option<(Vec<u8>, i64)>> {
        let (chat, sender, msg_id) = (chat.to_owned(), sender.to_owned(), msg_id.to_owned());
        self.read(move |conn, device| {
            diesel::sql_query(
                "SELECT secret, message_ts FROM msg_secrets \
                 WHERE chat = ? AND sender = ? AND msg_id = ? AND device_id = ?",
            )
            .bind::<Text, _>(chat)
            .bind::<Text, _>(sender)
            .bind::<Text, _>(msg_id)
            .bind::<Integer, _>(device)
            .get_result::<SecretRow>(conn)
            .optional()
            .map(|r| r.map(|r| (r.secret, r.message_ts)))
        })
        .await
    }

    async fn delete_expired_msg_secrets(&self, cutoff_timestamp: i64) -> Result<u32> {
        // `expires_at = 0` never expires.
        self.write(move |conn, device| {
            diesel::sql_query(
                "DELETE FROM msg_secrets WHERE device_id = ? \
                 AND expires_at != 0 AND expires_at <= ?",
            )
            .bind::<Integer, _>(device)
            .bind::<BigInt, _>(cutoff_timestamp)
            .execute(conn)
            .map(|n| n as u32)
        })
        .await
    }
}

#[async_trait]
impl DeviceStore for DeviceHandle {
    async fn save(&self, device: &CoreDevice) -> Result<()> {
        self.base()
            .save_device_data_for_device(self.device, device)
            .await
    }

    async fn load(&self) -> Result<Option<CoreDevice>> {
        self.base().load_device_data_for_device(self.device).await
    }

    async fn exists(&self) -> Result<bool> {
        self.base().device_exists(self.device).await
    }

    async fn create(&self) -> Result<i32> {
        // A fresh identity, written as `SqliteStore::create` writes one.
        self.base()
            .save_device_data_for_device(self.device, &CoreDevice::new())
            .await?;
        Ok(self.device)
    }

    // `snapshot_db` keeps the default (no snapshot: a copy of the whole
    // shared file per failure is not a debugging aid), and so does
    // `resource_report` (the page cache is the process's, not a session's).
}

#[cfg(test)]
mod tests {
    //! The handle against whatsapp-rust's own store: one script of calls
    //! on a `SqliteStore` for device 7 and on a handle for device 8 of the
    //! same file must answer the same and leave the same rows.

    use whatsapp_rust::wacore::store::traits::{Backend, DeviceInfo};

    use super::*;

    fn lid(lid: &str, phone: &str, at: i64) -> LidPnMappingEntry {
        LidPnMappingEntry {
            lid: lid.into(),
            phone_number: phone.into(),
            created_at: at,
            updated_at: at,
            learning_source: "usync".into(),
        }
    }

    fn list(user: &str, devices: &[u32], raw_id: Option<u32>) -> DeviceListRecord {
        DeviceListRecord {
            user: user.into(),
            devices: devices
                .iter()
                .map(|d| DeviceInfo::new(*d, Some(*d)))
                .collect(),
            timestamp: 1_700_000_000,
            phash: Some("2:abc".into()),
            raw_id,
        }
    }

    fn secret(msg: &str, byte: u8, expires_at: i64, message_ts: i64) -> MsgSecretEntry {
        MsgSecretEntry {
            chat: Arc::from("1555@s.whatsapp.net"),
            sender: Arc::from("1555@s.whatsapp.net"),
            msg_id: Arc::from(msg),
            secret: [byte; 32],
            expires_at,
            message_ts,
        }
    }

    fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
        v.sort();
        v
    }

    fn arc(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    /// Every call of the traits that the handle answers with SQL of its own
    /// (and a few it passes on), each result written down.
    #[allow(clippy::too_many_lines)]
    async fn script(s: &dyn Backend) -> Vec<String> {
        let mut log = Vec::new();
        macro_rules! note {
            ($e:expr) => {
                log.push(format!("{}: {:?}", stringify!($e), $e))
            };
        }
        note!(s.exists().await.unwrap());
        s.create().await.unwrap();
        note!(s.exists().await.unwrap());

        // identities and sessions
        s.put_identity("a@s.whatsapp.net", [1; 32]).await.unwrap();
        s.put_identities_batch(&[
            (arc("b@s.whatsapp.net"), [2; 32]),
            (arc("15551234567:3@s.whatsapp.net"), [3; 32]),
            (arc("a@s.whatsapp.net"), [4; 32]),
        ])
        .await
        .unwrap();
        note!(s.load_identity("a@s.whatsapp.net").await.unwrap());
        note!(
            s.load_identity("15551234567:3@s.whatsapp.net")
                .await
                .unwrap()
        );
        note!(s.has_signal_state_for_user("15551234567").await.unwrap());
        note!(s.has_signal_state_for_user("1555123456").await.unwrap());
        s.put_session("s1", b"one").await.unwrap();
        s.put_sessions_batch(&[
            (arc("s2@s.whatsapp.net"), Bytes::from_static(b"two")),
            (arc("s1"), Bytes::from_static(b"uno")),
        ])
        .await
        .unwrap();
        note!(s.get_session("s1").await.unwrap());
        note!(s.has_session("s2@s.whatsapp.net").await.unwrap());
        note!(s.has_session("zz").await.unwrap());
        note!(s.has_signal_state_for_user("s2").await.unwrap());
        s.delete_session("s2@s.whatsapp.net").await.unwrap();
        note!(s.has_session("s2@s.whatsapp.net").await.unwrap());

        // pre-keys
        note!(s.get_max_prekey_id().await.unwrap());
        s.store_prekey(1, b"p1", false).await.unwrap();
        s.store_prekeys_batch(
            &[
                (2, Bytes::from_static(b"p2")),
                (3, Bytes::from_static(b"p3")),
                (4, Bytes::from_static(b"p4")),
            ],
            false,
        )
        .await
        .unwrap();
        s.store_prekeys_batch(&[(1, Bytes::from_static(b"p1b"))], true)
            .await
            .unwrap();
        note!(s.load_prekey(1).await.unwrap());
        note!(s.load_prekey(9).await.unwrap());
        note!(sorted(s.load_prekeys_batch(&[1, 3, 9]).await.unwrap()));
        s.mark_prekeys_uploaded(&[2, 9]).await.unwrap();
        s.remove_prekey(4).await.unwrap();
        note!(s.get_max_prekey_id().await.unwrap());
        s.store_signed_prekey(1, b"sp1").await.unwrap();
        s.store_signed_prekey(2, b"sp2").await.unwrap();
        s.store_signed_prekey(1, b"sp1b").await.unwrap();
        note!(s.load_signed_prekey(1).await.unwrap());
        note!(s.load_signed_prekey(5).await.unwrap());
        s.remove_signed_prekey(2).await.unwrap();
        note!(sorted(s.load_all_signed_prekeys().await.unwrap()));

        // sender keys
        s.put_sender_key("g::a", b"k1").await.unwrap();
        s.put_sender_keys_batch(&[
            (arc("g::b"), Bytes::from_static(b"k2")),
            (arc("g::a"), Bytes::from_static(b"k1b")),
        ])
        .await
        .unwrap();
        note!(s.get_sender_key("g::a").await.unwrap());
        s.delete_sender_key("g::b").await.unwrap();
        note!(s.get_sender_key("g::b").await.unwrap());

        // app state
        let mac = |i: u8, v: u8| AppStateMutationMAC {
            index_mac: vec![i; 32],
            value_mac: vec![v; 32],
        };
        s.put_mutation_macs("regular", 3, &[mac(1, 10), mac(2, 20)])
            .await
            .unwrap();
        s.put_mutation_macs("regular_low", 1, &[mac(1, 30)])
            .await
            .unwrap();
        note!(s.get_mutation_mac("regular", &[1; 32]).await.unwrap());
        s.clear_mutation_macs("regular").await.unwrap();
        note!(s.get_mutation_mac("regular", &[2; 32]).await.unwrap());
        note!(s.get_mutation_mac("regular_low", &[1; 32]).await.unwrap());
        let state = HashState {
            version: 3,
            ..HashState::default()
        };
        s.set_version("regular", state).await.unwrap();
        note!(s.get_version("regular").await.unwrap().version);

        // sender-key devices
        s.set_sender_key_status(
            "g@g.us",
            &[("a:1@s.whatsapp.net", true), ("b:2@lid", false)],
        )
        .await
        .unwrap();
        s.set_sender_key_status("h@g.us", &[("a:1@s.whatsapp.net", false)])
            .await
            .unwrap();
        s.set_sender_key_status("g@g.us", &[("b:2@lid", true)])
            .await
            .unwrap();
        note!(sorted(s.get_sender_key_devices("g@g.us").await.unwrap()));
        s.delete_sender_key_device_rows(&["a:1@s.whatsapp.net"])
            .await
            .unwrap();
        note!(sorted(s.get_sender_key_devices("g@g.us").await.unwrap()));
        note!(sorted(s.get_sender_key_devices("h@g.us").await.unwrap()));
        s.set_sender_key_status("h@g.us", &[("c:3@lid", true)])
            .await
            .unwrap();
        s.clear_sender_key_devices("g@g.us").await.unwrap();
        note!(sorted(s.get_sender_key_devices("g@g.us").await.unwrap()));
        note!(sorted(s.get_sender_key_devices("h@g.us").await.unwrap()));
        s.clear_all_sender_key_devices().await.unwrap();
        note!(sorted(s.get_sender_key_devices("h@g.us").await.unwrap()));

        // LID ↔ phone number
        s.put_lid_mapping(&lid("100", "1555", 10)).await.unwrap();
        s.put_lid_mappings(&[lid("200", "1555", 20), lid("100", "1666", 30)])
            .await
            .unwrap();
        note!(s.get_lid_mapping("100").await.unwrap());
        note!(s.get_pn_mapping("1555").await.unwrap());
        note!(s.get_pn_mapping("1777").await.unwrap());
        let mut all = s.get_all_lid_mappings().await.unwrap();
        all.sort_by(|a, b| a.lid.cmp(&b.lid));
        note!(all);

        // base keys
        s.save_base_key("addr", "m1", b"bk").await.unwrap();
        s.save_base_key("addr", "m1", b"bk2").await.unwrap();
        note!(s.has_same_base_key("addr", "m1", b"bk2").await.unwrap());
        note!(s.has_same_base_key("addr", "m1", b"bk").await.unwrap());
        s.delete_base_key("addr", "m1").await.unwrap();
        note!(s.has_same_base_key("addr", "m1", b"bk2").await.unwrap());

        // device lists
        s.update_device_list(list("1555", &[0, 1], Some(7)))
            .await
            .unwrap();
        s.update_device_lists(vec![list("1666", &[0], None), list("1555", &[0, 2], None)])
            .await
            .unwrap();
        note!(s.get_devices("1555").await.unwrap());
        note!(s.get_devices("1666").await.unwrap().map(|r| r.raw_id));
        s.delete_devices("1666").await.unwrap();
        note!(s.get_devices("1666").await.unwrap());

        // group metadata
        s.put_group_metadata("g@g.us", b"info").await.unwrap();
        s.put_group_metadata("g@g.us", b"info2").await.unwrap();
        note!(s.get_group_metadata("g@g.us").await.unwrap());
        s.delete_group_metadata("g@g.us").await.unwrap();
        note!(s.get_group_metadata("g@g.us").await.unwrap());

        // trusted-contact tokens
        let entry = TcTokenEntry {
            token: b"t1".to_vec(),
            token_timestamp: 100,
            sender_timestamp: None,
        };
        s.put_tc_token("j1", &entry).await.unwrap();
        s.touch_tc_token_sender_timestamp("j1", 50).await.unwrap();
        s.touch_tc_token_sender_timestamp("j1", 40).await.unwrap();
        s.touch_tc_token_sender_timestamp("j2", 10).await.unwrap();
        s.store_received_tc_token("j2", b"t2", 20).await.unwrap();
        s.store_received_tc_token("j1", b"old", 99).await.unwrap();
        s.store_received_tc_token("j3", b"t3", 5).await.unwrap();
        s.store_received_tc_token("j3", b"t3b", 6).await.unwrap();
        note!(s.get_tc_token("j1").await.unwrap());
        note!(s.get_tc_token("j2").await.unwrap());
        note!(s.get_tc_token("j3").await.unwrap());
        note!(sorted(s.get_all_tc_token_jids().await.unwrap()));
        s.touch_tc_token_sender_timestamp("j4", 1).await.unwrap();
        note!(s.delete_expired_tc_tokens(7, 30).await.unwrap());
        note!(sorted(s.get_all_tc_token_jids().await.unwrap()));
        s.delete_tc_token("j1").await.unwrap();
        note!(s.get_tc_token("j1").await.unwrap());

        // sent messages
        s.store_sent_message("c", "m1", b"payload").await.unwrap();
        s.store_sent_message("c", "m1", b"payload2").await.unwrap();
        s.store_sent_message("c", "m2", b"p").await.unwrap();
        note!(s.take_sent_message("c", "m1").await.unwrap());
        note!(s.take_sent_message("c", "m1").await.unwrap());
        note!(s.delete_expired_sent_messages(0).await.unwrap());
        note!(s.delete_expired_sent_messages(i64::MAX).await.unwrap());

        // pending inbound
        s.store_pending_inbound("c", "s", "1", b"m1").await.unwrap();
        s.store_pending_inbound("c", "s", "1", b"m1b")
            .await
            .unwrap();
        s.store_pending_inbound_batch(&[
            PendingInboundRow {
                chat: "c",
                sender: "s",
                id: "2",
                message: b"m2",
            },
            PendingInboundRow {
                chat: "c",
                sender: "s",
                id: "3",
                message: b"m3",
            },
        ])
        .await
        .unwrap();
        note!(s.get_pending_inbound("c", "s", "1").await.unwrap());
        s.delete_pending_inbound("c", "s", "1").await.unwrap();
        s.delete_pending_inbound_batch(&[PendingInboundKey {
            chat: "c",
            sender: "s",
            id: "2",
        }])
        .await
        .unwrap();
        note!(s.get_pending_inbound("c", "s", "1").await.unwrap());
        note!(s.get_pending_inbound("c", "s", "3").await.unwrap());
        note!(s.delete_expired_pending_inbound(0).await.unwrap());
        note!(s.delete_expired_pending_inbound(i64::MAX).await.unwrap());

        // message secrets
        note!(
            s.put_msg_secrets(vec![secret("m1", 1, 100, 5), secret("m2", 2, 0, 0)])
                .await
                .unwrap()
        );
        note!(
            s.put_msg_secrets(vec![secret("m1", 3, 200, 0), secret("m3", 4, 50, 9)])
                .await
                .unwrap()
        );
        s.put_msg_secret("c", "s", "m4", &[5; 32]).await.unwrap();
        let (c, u) = ("1555@s.whatsapp.net", "1555@s.whatsapp.net");
        note!(s.get_msg_secret_with_ts(c, u, "m1").await.unwrap());
        note!(s.get_msg_secret(c, u, "m3").await.unwrap());
        note!(s.get_msg_secret(c, u, "m9").await.unwrap());
        note!(s.delete_expired_msg_secrets(150).await.unwrap());
        note!(s.get_msg_secret(c, u, "m3").await.unwrap());
        note!(s.delete_expired_msg_secrets(i64::MAX).await.unwrap());
        note!(s.get_msg_secret("c", "s", "m4").await.unwrap());
        log
    }

    /// Every row of `device` in every table that has a `device_id` column
    /// (but the device row, whose keys are random), times left out.
    async fn rows(keys: &KeyStore, device: i32) -> Vec<String> {
        #[derive(QueryableByName)]
        struct Name {
            #[diesel(sql_type = Text)]
            name: String,
        }
        keys.base()
            .shared()
            .run(move |conn| {
                let tables: Vec<Name> = diesel::sql_query(
                    "SELECT m.name FROM sqlite_master m WHERE m.type = 'table' \
                     AND m.name != 'device' AND EXISTS (SELECT 1 FROM pragma_table_info(m.name) \
                     WHERE name = 'device_id') ORDER BY m.name",
                )
                .load(conn)
                .map_err(db)?;
                let mut out = Vec::new();
                for Name { name: table } in tables {
                    let columns: Vec<Name> = diesel::sql_query(
                        "SELECT name FROM pragma_table_info(?) WHERE name NOT IN \
                         ('device_id', 'created_at', 'updated_at', 'inserted_at') ORDER BY cid",
                    )
                    .bind::<Text, _>(&table)
                    .load(conn)
                    .map_err(db)?;
                    let row = columns
                        .iter()
                        .map(|c| format!("quote(\"{}\")", c.name))
                        .collect::<Vec<_>>()
                        .join(" || ',' || ");
                    let found: Vec<TextRow> = diesel::sql_query(format!(
                        "SELECT '{table}: ' || {row} AS v FROM \"{table}\" \
                         WHERE device_id = ? ORDER BY v"
                    ))
                    .bind::<Integer, _>(device)
                    .load(conn)
                    .map_err(db)?;
                    out.extend(found.into_iter().map(|r| r.v));
                }
                Ok(out)
            })
            .await
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_handle_stores_what_the_sqlite_store_stores() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.db");
        let url = path.display().to_string();
        let keys = Arc::new(KeyStore::open(&url).await.unwrap());
        let reference = SqliteStore::new_for_device(&url, 7).await.unwrap();
        let handle = DeviceHandle::new(keys.clone(), 8);

        let expected = script(&reference).await;
        let got = script(&handle).await;
        assert_eq!(got, expected);
        let (expected, got) = (rows(&keys, 7).await, rows(&keys, 8).await);
        assert!(expected.len() > 15, "{expected:#?}");
        assert_eq!(got, expected);

        // And whatsapp-rust's own store reads the handle's device as its own.
        let other = SqliteStore::new_for_device(&url, 8).await.unwrap();
        assert_eq!(
            other.load_prekey(1).await.unwrap(),
            Some(Bytes::from_static(b"p1b"))
        );
        assert_eq!(other.get_max_prekey_id().await.unwrap(), 3);
        assert!(other.get_lid_mapping("200").await.unwrap().is_some());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn handles_of_many_devices_share_one_store() {
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().join("keys.db").display().to_string();
        let keys = Arc::new(KeyStore::open(&url).await.unwrap());
        let handles: Vec<DeviceHandle> = (1..=200)
            .map(|d| DeviceHandle::new(keys.clone(), d))
            .collect();
        let mut tasks = tokio::task::JoinSet::new();
        for h in handles.clone() {
            tasks.spawn(async move {
                h.create().await.unwrap();
                let d = h.device as u32;
                h.store_prekeys_batch(&[(d, Bytes::from(d.to_be_bytes().to_vec()))], false)
                    .await
                    .unwrap();
                h.put_identity("peer@s.whatsapp.net", [d as u8; 32])
                    .await
                    .unwrap();
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
        for h in &handles {
            let d = h.device as u32;
            assert_eq!(h.get_max_prekey_id().await.unwrap(), d);
            assert_eq!(
                h.load_identity("peer@s.whatsapp.net").await.unwrap(),
                Some([d as u8; 32])
            );
            assert!(h.load().await.unwrap().is_some());
        }
        // One writer and its readers, plus the interactive reader's store
        // (its writer and reader), whatever the number of devices: the
        // file is open a handful of times, not once per device.
        let open = std::fs::read_dir("/proc/self/fd")
            .map(|fds| {
                fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
                    .filter(|target| target.starts_with(dir.path()))
                    .count()
            })
            .unwrap_or(0);
        assert!(
            open <= 2 * (1 + READERS as usize + 2) + 1,
            "{open} descriptors on the key store"
        );
    }
}
