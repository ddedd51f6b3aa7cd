//! whatsapp-rust's device state on one store per process, thin handles per
//! device, SQLite or PostgreSQL.
//!
//! whatsapp-rust's `SqliteStore` carries its device id in a private field,
//! so a store for another device can only be had from
//! `SqliteStore::new_for_device`, which opens a connection pool of its own:
//! one SQLite connection (two file descriptors, its own page cache, schema
//! and statement cache, ~180 KiB) per session, and a migration check on
//! every connect. The process instead opens its device store once ([`Db`]:
//! the SQLite file, created by whatsapp-rust's `SqliteStore`, through a few
//! connections of our own, or one PostgreSQL pool); a [`DeviceHandle`] is that store plus a device
//! id (an `Arc` and an `i32`), and implements whatsapp-rust's storage
//! traits for its device.
//!
//! Every call is written once, as SQL over whatsapp-rust's tables with
//! whatsapp-rust's encodings (key pairs as private ‖ public bytes, the
//! account and app-state blobs as its protobufs, device lists as its JSON),
//! and runs on either database ([`crate::sql`]). Where a trait's default
//! would read, modify and write, the handle sends one atomic statement (an
//! upsert with a condition, `DELETE … RETURNING`) or one transaction, so two
//! writers of a device — two processes during a hand-over — cannot lose an
//! update between them.
//!
//! With several gateways on PostgreSQL a handle is fenced
//! ([`DeviceHandle::fenced`]): every write names the claim this process
//! holds on the handle's session ([`SessionClaims`]), and the database
//! refuses it, changing nothing, once the session was claimed by another
//! node ([`crate::sql::Stmt::fenced`]). A refusal, or a write attempted
//! while no claim is held, is reported to [`SessionClaims::lost`] (counted,
//! the client stopped) and fails.
//!
//! The tests below run one script of calls against a `SqliteStore` opened
//! for one device and handles for another (on SQLite and, when a server is
//! at hand, PostgreSQL), and compare what each returns and what each left
//! in its tables.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Binary, Bool, Integer, Nullable, Text};
use whatsapp_rust::bytes::Bytes;
use whatsapp_rust::wacore::appstate::hash::HashState;
use whatsapp_rust::wacore::appstate::processor::AppStateMutationMAC;
use whatsapp_rust::wacore::libsignal::protocol::{KeyPair, PrivateKey, PublicKey};
use whatsapp_rust::wacore::store::Device as CoreDevice;
use whatsapp_rust::wacore::store::error::{Result, StoreError};
use whatsapp_rust::wacore::store::traits::{
    AppStateSyncKey, AppSyncStore, DeviceListRecord, DeviceStore, LidPnMappingEntry,
    MsgSecretEntry, MsgSecretStore, PendingInboundKey, PendingInboundRow, ProtocolStore,
    SignalStore, TcTokenEntry,
};

use wagate_domain::SessionId;
use wagate_whatsapp_port::SessionClaims;

use crate::sql::{Arg, Db, FencedWrite, Stmt, Via, WriteFence, is_fenced};
use crate::wire;

/// whatsapp-rust's storage for one device of the process's [`Db`]: what a
/// client is built on. Cloning it is cheap; it holds no connection.
#[derive(Clone)]
pub(crate) struct DeviceHandle {
    db: Arc<Db>,
    device: i32,
    /// The digest ([`Stmt::digest`]) of the device row as this handle last
    /// read or wrote it: saving a device that has not changed writes
    /// nothing (whatsapp-rust saves it several times per login, mostly
    /// unchanged). A handle lives as long as its session's client, the
    /// row's only writer meanwhile.
    last_row: Arc<std::sync::Mutex<Option<[u8; 32]>>>,
    /// Several gateways: whose claim this device's writes name.
    guard: Option<Arc<Guard>>,
}

/// The session a fenced handle's device belongs to, and this process's
/// claims.
struct Guard {
    session: SessionId,
    claims: Arc<dyn SessionClaims>,
}

impl fmt::Debug for DeviceHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceHandle")
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

/// From this many ids on, [`DeviceHandle::load_prekeys_batch`] reads all
/// of the device's pre-keys (a few hundred) and keeps the named ones.
const WHOLE_DEVICE_BATCH: usize = 64;

fn now_secs() -> i64 {
    whatsapp_rust::wacore::time::now_secs()
}

fn serialization<E: std::error::Error + Send + Sync + 'static>(e: E) -> StoreError {
    StoreError::Serialization(Box::new(e))
}

// ---- rows -------------------------------------------------------------

#[derive(QueryableByName, sqlx::FromRow)]
struct BlobRow {
    #[diesel(sql_type = Binary)]
    v: Vec<u8>,
}

#[derive(QueryableByName, sqlx::FromRow)]
struct IdBlobRow {
    #[diesel(sql_type = Integer)]
    id: i32,
    #[diesel(sql_type = Binary)]
    v: Vec<u8>,
}

#[derive(QueryableByName, sqlx::FromRow)]
struct BlobPairRow {
    #[diesel(sql_type = Binary)]
    k: Vec<u8>,
    #[diesel(sql_type = Binary)]
    v: Vec<u8>,
}

#[derive(QueryableByName, sqlx::FromRow)]
struct FlagRow {
    #[diesel(sql_type = Bool)]
    flag: bool,
}

#[derive(QueryableByName, sqlx::FromRow)]
struct MaxRow {
    #[diesel(sql_type = Nullable<Integer>)]
    m: Option<i32>,
}

#[derive(QueryableByName, sqlx::FromRow)]
struct TextRow {
    #[diesel(sql_type = Text)]
    v: String,
}

#[derive(QueryableByName, sqlx::FromRow)]
struct SenderKeyDeviceRow {
    #[diesel(sql_type = Text)]
    device_jid: String,
    #[diesel(sql_type = Integer)]
    has_key: i32,
}

#[derive(QueryableByName, sqlx::FromRow)]
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

#[derive(QueryableByName, sqlx::FromRow)]
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

#[derive(QueryableByName, sqlx::FromRow)]
struct TcRow {
    #[diesel(sql_type = Binary)]
    token: Vec<u8>,
    #[diesel(sql_type = BigInt)]
    token_timestamp: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    sender_timestamp: Option<i64>,
}

#[derive(QueryableByName, sqlx::FromRow)]
struct SecretRow {
    #[diesel(sql_type = Binary)]
    secret: Vec<u8>,
    #[diesel(sql_type = BigInt)]
    message_ts: i64,
}

/// The `device` table's row, as whatsapp-rust's SQLite store writes it.
#[derive(QueryableByName, sqlx::FromRow)]
struct DeviceRow {
    #[diesel(sql_type = Text)]
    lid: String,
    #[diesel(sql_type = Text)]
    pn: String,
    #[diesel(sql_type = Integer)]
    registration_id: i32,
    #[diesel(sql_type = Binary)]
    noise_key: Vec<u8>,
    #[diesel(sql_type = Binary)]
    identity_key: Vec<u8>,
    #[diesel(sql_type = Binary)]
    signed_pre_key: Vec<u8>,
    #[diesel(sql_type = Integer)]
    signed_pre_key_id: i32,
    #[diesel(sql_type = Binary)]
    signed_pre_key_signature: Vec<u8>,
    #[diesel(sql_type = Binary)]
    adv_secret_key: Vec<u8>,
    #[diesel(sql_type = Nullable<Binary>)]
    account: Option<Vec<u8>>,
    #[diesel(sql_type = Text)]
    push_name: String,
    #[diesel(sql_type = Integer)]
    app_version_primary: i32,
    #[diesel(sql_type = Integer)]
    app_version_secondary: i32,
    #[diesel(sql_type = BigInt)]
    app_version_tertiary: i64,
    #[diesel(sql_type = BigInt)]
    app_version_last_fetched_ms: i64,
    #[diesel(sql_type = Nullable<Binary>)]
    edge_routing_info: Option<Vec<u8>>,
    #[diesel(sql_type = Nullable<Text>)]
    props_hash: Option<String>,
    #[diesel(sql_type = Integer)]
    next_pre_key_id: i32,
    #[diesel(sql_type = Nullable<Binary>)]
    nct_salt: Option<Vec<u8>>,
    #[diesel(sql_type = Bool)]
    server_has_prekeys: bool,
    #[diesel(sql_type = Nullable<Binary>)]
    server_cert_chain: Option<Vec<u8>>,
    #[diesel(sql_type = Integer)]
    login_counter: i32,
    #[diesel(sql_type = Integer)]
    first_unupload_pre_key_id: i32,
    #[diesel(sql_type = Bool)]
    lid_migrated: bool,
    #[diesel(sql_type = BigInt)]
    last_signed_pre_key_rotation_ms: i64,
    #[diesel(sql_type = Bool)]
    read_receipts_disabled: bool,
}

// ---- statements -------------------------------------------------------
//
// `$1` is always the device id.

/// A table of one value per key and device: its three statements.
struct Keyed {
    put: &'static str,
    get: &'static str,
    delete: &'static str,
}

macro_rules! keyed {
    ($table:literal, $key:literal, $value:literal) => {
        Keyed {
            put: concat!(
                "INSERT INTO ",
                $table,
                " (",
                $key,
                ", ",
                $value,
                ", device_id) VALUES ($2, $3, $1) \
                 ON CONFLICT (",
                $key,
                ", device_id) DO UPDATE SET ",
                $value,
                " = excluded.",
                $value
            ),
            get: concat!(
                "SELECT ",
                $value,
                " AS v FROM ",
                $table,
                " WHERE ",
                $key,
                " = $2 AND device_id = $1"
            ),
            delete: concat!(
                "DELETE FROM ",
                $table,
                " WHERE ",
                $key,
                " = $2 AND device_id = $1"
            ),
        }
    };
}

const IDENTITIES: Keyed = keyed!("identities", "address", "key");
const SESSIONS: Keyed = keyed!("sessions", "address", "record");
const SENDER_KEYS: Keyed = keyed!("sender_keys", "address", "record");
const PREKEYS: Keyed = keyed!("prekeys", "id", "key");
const SIGNED_PREKEYS: Keyed = keyed!("signed_prekeys", "id", "record");
const APP_STATE_KEYS: Keyed = keyed!("app_state_keys", "key_id", "key_data");
const APP_STATE_VERSIONS: Keyed = keyed!("app_state_versions", "name", "state_data");
const GROUP_METADATA: Keyed = keyed!("group_metadata", "group_jid", "info");
const TC_TOKENS: Keyed = keyed!("tc_tokens", "jid", "token");
const DEVICE_LISTS: Keyed = keyed!("device_registry", "user_id", "devices_json");

const UPSERT_PREKEY: &str = "INSERT INTO prekeys (id, key, uploaded, device_id) \
     VALUES ($2, $3, $4, $1) ON CONFLICT (id, device_id) \
     DO UPDATE SET key = excluded.key, uploaded = excluded.uploaded";
const UPSERT_LID: &str = "INSERT INTO lid_pn_mapping \
     (lid, phone_number, created_at, learning_source, updated_at, device_id) \
     VALUES ($2, $3, $4, $5, $6, $1) ON CONFLICT (lid, device_id) DO UPDATE SET \
     phone_number = excluded.phone_number, learning_source = excluded.learning_source, \
     updated_at = excluded.updated_at";
const UPSERT_DEVICE_LIST: &str = "INSERT INTO device_registry \
     (user_id, devices_json, timestamp, phash, device_id, updated_at, raw_id) \
     VALUES ($2, $3, $4, $5, $1, $6, $7) ON CONFLICT (user_id, device_id) DO UPDATE SET \
     devices_json = excluded.devices_json, timestamp = excluded.timestamp, \
     phash = excluded.phash, updated_at = excluded.updated_at, raw_id = excluded.raw_id";
const UPSERT_TC_TOKEN: &str = "INSERT INTO tc_tokens \
     (jid, token, token_timestamp, sender_timestamp, device_id, updated_at) \
     VALUES ($2, $3, $4, $5, $1, $6) ON CONFLICT (jid, device_id) DO UPDATE SET \
     token = excluded.token, token_timestamp = excluded.token_timestamp, \
     sender_timestamp = excluded.sender_timestamp, updated_at = excluded.updated_at";
/// A pending message stored again is stored anew (as SQLite's `INSERT OR
/// REPLACE` did: its time restarts).
const PUT_PENDING_INBOUND: &str = "INSERT INTO pending_inbound_messages \
     (chat, sender, id, message, device_id) VALUES ($2, $3, $4, $5, $1) \
     ON CONFLICT (chat, sender, id, device_id) DO UPDATE SET \
     message = excluded.message, inserted_at = excluded.inserted_at";
const DELETE_PENDING_INBOUND: &str = "DELETE FROM pending_inbound_messages \
     WHERE chat = $2 AND sender = $3 AND id = $4 AND device_id = $1";
const UPSERT_MSG_SECRET: &str = "INSERT INTO msg_secrets \
     (chat, sender, msg_id, secret, device_id, created_at, expires_at, message_ts) \
     VALUES ($2, $3, $4, $5, $1, $6, $7, $8) ON CONFLICT (chat, sender, msg_id, device_id) \
     DO UPDATE SET secret = excluded.secret, created_at = excluded.created_at, \
     expires_at = CASE WHEN msg_secrets.expires_at = 0 OR excluded.expires_at = 0 THEN 0 \
                  ELSE GREATEST(msg_secrets.expires_at, excluded.expires_at) END, \
     message_ts = GREATEST(msg_secrets.message_ts, excluded.message_ts)";
const UPSERT_MUTATION_MAC: &str = "INSERT INTO app_state_mutation_macs \
     (name, version, index_mac, value_mac, device_id) VALUES ($2, $3, $4, $5, $1) \
     ON CONFLICT (name, index_mac, device_id) DO UPDATE SET \
     version = excluded.version, value_mac = excluded.value_mac";
const UPSERT_SENDER_KEY_DEVICE: &str = "INSERT INTO sender_key_devices \
     (group_jid, device_jid, has_key, device_id, updated_at) VALUES ($2, $3, $4, $1, $5) \
     ON CONFLICT (group_jid, device_jid, device_id) DO UPDATE SET \
     has_key = excluded.has_key, updated_at = excluded.updated_at";
const UPSERT_DEVICE: &str = "INSERT INTO device (id, lid, pn, registration_id, noise_key, \
     identity_key, signed_pre_key, signed_pre_key_id, signed_pre_key_signature, adv_secret_key, \
     account, push_name, app_version_primary, app_version_secondary, app_version_tertiary, \
     app_version_last_fetched_ms, edge_routing_info, props_hash, next_pre_key_id, \
     first_unupload_pre_key_id, server_has_prekeys, nct_salt, server_cert_chain, login_counter, \
     lid_migrated, last_signed_pre_key_rotation_ms, read_receipts_disabled) VALUES ($1, $2, $3, \
     $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, \
     $23, $24, $25, $26, $27) ON CONFLICT (id) DO UPDATE SET lid = excluded.lid, \
     pn = excluded.pn, registration_id = excluded.registration_id, \
     noise_key = excluded.noise_key, identity_key = excluded.identity_key, \
     signed_pre_key = excluded.signed_pre_key, signed_pre_key_id = excluded.signed_pre_key_id, \
     signed_pre_key_signature = excluded.signed_pre_key_signature, \
     adv_secret_key = excluded.adv_secret_key, account = excluded.account, \
     push_name = excluded.push_name, app_version_primary = excluded.app_version_primary, \
     app_version_secondary = excluded.app_version_secondary, \
     app_version_tertiary = excluded.app_version_tertiary, \
     app_version_last_fetched_ms = excluded.app_version_last_fetched_ms, \
     edge_routing_info = excluded.edge_routing_info, props_hash = excluded.props_hash, \
     next_pre_key_id = excluded.next_pre_key_id, \
     first_unupload_pre_key_id = excluded.first_unupload_pre_key_id, \
     server_has_prekeys = excluded.server_has_prekeys, nct_salt = excluded.nct_salt, \
     server_cert_chain = excluded.server_cert_chain, login_counter = excluded.login_counter, \
     lid_migrated = excluded.lid_migrated, \
     last_signed_pre_key_rotation_ms = excluded.last_signed_pre_key_rotation_ms, \
     read_receipts_disabled = excluded.read_receipts_disabled";
const SELECT_DEVICE: &str = "SELECT lid, pn, registration_id, noise_key, identity_key, \
     signed_pre_key, signed_pre_key_id, signed_pre_key_signature, adv_secret_key, account, \
     push_name, app_version_primary, app_version_secondary, app_version_tertiary, \
     app_version_last_fetched_ms, edge_routing_info, props_hash, next_pre_key_id, nct_salt, \
     server_has_prekeys, server_cert_chain, login_counter, first_unupload_pre_key_id, \
     lid_migrated, last_signed_pre_key_rotation_ms, read_receipts_disabled \
     FROM device WHERE id = $1";

fn keypair_bytes(pair: &KeyPair) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(64);
    bytes.extend_from_slice(pair.private_key.serialize());
    bytes.extend_from_slice(pair.public_key.public_key_bytes());
    bytes
}

fn keypair(bytes: &[u8]) -> Result<KeyPair> {
    if bytes.len() != 64 {
        return Err(StoreError::Validation(format!(
            "Invalid KeyPair length: {}",
            bytes.len()
        )));
    }
    let private = PrivateKey::deserialize(&bytes[..32]).map_err(serialization)?;
    let public = PublicKey::from_djb_public_key_bytes(&bytes[32..]).map_err(serialization)?;
    Ok(KeyPair::new(public, private))
}

impl DeviceRow {
    fn into_device(self, device: i32) -> Result<CoreDevice> {
        use whatsapp_rust::wacore::store::device::{DEVICE_PROPS, account_serde};
        let signed_pre_key_signature: [u8; 64] =
            self.signed_pre_key_signature.try_into().map_err(|_| {
                StoreError::Validation("Invalid signed_pre_key_signature length".to_string())
            })?;
        let adv_secret_key: [u8; 32] = self
            .adv_secret_key
            .try_into()
            .map_err(|_| StoreError::Validation("Invalid adv_secret_key length".to_string()))?;
        let account = self
            .account
            .map(|data| account_serde::from_bytes(&data).map_err(serialization))
            .transpose()?;
        Ok(CoreDevice {
            pn: Some(self.pn)
                .filter(|s| !s.is_empty())
                .and_then(|s| s.parse().ok()),
            lid: Some(self.lid)
                .filter(|s| !s.is_empty())
                .and_then(|s| s.parse().ok()),
            registration_id: self.registration_id as u32,
            noise_key: keypair(&self.noise_key)?,
            identity_key: keypair(&self.identity_key)?,
            signed_pre_key: keypair(&self.signed_pre_key)?,
            signed_pre_key_id: self.signed_pre_key_id as u32,
            signed_pre_key_signature,
            adv_secret_key,
            account: account.map(Arc::new),
            push_name: self.push_name,
            app_version_primary: self.app_version_primary as u32,
            app_version_secondary: self.app_version_secondary as u32,
            app_version_tertiary: self.app_version_tertiary.try_into().unwrap_or(0u32),
            app_version_last_fetched_ms: self.app_version_last_fetched_ms,
            device_props: Arc::new(DEVICE_PROPS.clone()),
            client_profile: whatsapp_rust::wacore::client_profile::ClientProfile::web(),
            edge_routing_info: self.edge_routing_info,
            props_hash: self.props_hash,
            next_pre_key_id: self.next_pre_key_id as u32,
            first_unupload_pre_key_id: self.first_unupload_pre_key_id as u32,
            server_has_prekeys: self.server_has_prekeys,
            nct_salt: self.nct_salt,
            nct_salt_sync_seen: false,
            // A cache, not identity: a blob that does not decode costs one
            // full handshake on the next connect, never the login.
            server_cert_chain: self.server_cert_chain.as_deref().and_then(|bytes| {
                wire::decode_server_cert_chain(bytes)
                    .inspect_err(|e| {
                        tracing::warn!(device, error = %e, "server certificate chain dropped");
                    })
                    .ok()
            }),
            login_counter: self.login_counter,
            lid_migrated: self.lid_migrated,
            last_signed_pre_key_rotation_ms: self.last_signed_pre_key_rotation_ms,
            read_receipts_disabled: self.read_receipts_disabled,
        })
    }
}

fn device_statement(device: i32, d: &CoreDevice) -> Stmt {
    let jid =
        |j: &Option<whatsapp_rust::Jid>| j.as_ref().map(ToString::to_string).unwrap_or_default();
    Stmt::new(UPSERT_DEVICE)
        .arg(device)
        .arg(jid(&d.lid))
        .arg(jid(&d.pn))
        .arg(d.registration_id as i32)
        .arg(keypair_bytes(&d.noise_key))
        .arg(keypair_bytes(&d.identity_key))
        .arg(keypair_bytes(&d.signed_pre_key))
        .arg(d.signed_pre_key_id as i32)
        .arg(d.signed_pre_key_signature.to_vec())
        .arg(d.adv_secret_key.to_vec())
        .arg(
            d.account
                .as_ref()
                .map(|a| whatsapp_rust::wacore::store::device::account_serde::to_bytes(a)),
        )
        .arg(d.push_name.as_str())
        .arg(d.app_version_primary as i32)
        .arg(d.app_version_secondary as i32)
        .arg(i64::from(d.app_version_tertiary))
        .arg(d.app_version_last_fetched_ms)
        .arg(d.edge_routing_info.clone())
        .arg(d.props_hash.clone())
        .arg(d.next_pre_key_id as i32)
        .arg(d.first_unupload_pre_key_id as i32)
        .arg(d.server_has_prekeys)
        .arg(d.nct_salt.clone())
        .arg(
            d.server_cert_chain
                .as_ref()
                .map(wire::encode_server_cert_chain),
        )
        .arg(d.login_counter)
        .arg(d.lid_migrated)
        .arg(d.last_signed_pre_key_rotation_ms)
        .arg(d.read_receipts_disabled)
}

impl DeviceHandle {
    pub(crate) fn new(db: Arc<Db>, device: i32) -> Self {
        Self {
            db,
            device,
            last_row: Arc::default(),
            guard: None,
        }
    }

    fn last_row(&self) -> Option<[u8; 32]> {
        *self
            .last_row
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set_last_row(&self, digest: Option<[u8; 32]>) {
        *self
            .last_row
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = digest;
    }

    /// This handle with every write conditional on the claim `claims`
    /// hold on `session` (PostgreSQL; SQLite has one gateway and no
    /// claims, and is left as it is).
    pub(crate) fn fenced(mut self, session: SessionId, claims: Arc<dyn SessionClaims>) -> Self {
        if matches!(*self.db, Db::Postgres(_)) {
            self.guard = Some(Arc::new(Guard { session, claims }));
        }
        self
    }

    /// The claim a write names now; a write without one is refused here
    /// (reported lost) without reaching the database.
    fn write_fence(&self) -> Result<Option<WriteFence>> {
        let Some(guard) = &self.guard else {
            return Ok(None);
        };
        match guard.claims.claim(&guard.session) {
            Some(claim) => Ok(Some(WriteFence {
                session: guard.session.to_string(),
                node: claim.node.to_string(),
                epoch: i64::try_from(claim.epoch).unwrap_or(i64::MAX),
            })),
            None => {
                guard.claims.lost(&guard.session);
                Err(StoreError::Database(Box::new(FencedWrite)))
            }
        }
    }

    /// Reports a write the database refused (the session is another
    /// node's now).
    fn refused<T>(&self, written: Result<T>) -> Result<T> {
        if let (Err(e), Some(guard)) = (&written, &self.guard)
            && is_fenced(e)
        {
            guard.claims.lost(&guard.session);
        }
        written
    }

    /// A statement with this device as `$1`.
    fn stmt(&self, sql: &'static str) -> Stmt {
        Stmt::new(sql).arg(self.device)
    }

    /// One writing statement (fenced).
    async fn run(&self, stmt: Stmt) -> Result<u64> {
        let stmt = stmt.fenced(self.write_fence()?.as_ref());
        self.refused(self.db.execute(stmt).await)
    }

    /// `stmts` in one transaction (nothing to do for none), each fenced.
    async fn run_all(&self, stmts: Vec<Stmt>) -> Result<u64> {
        if stmts.is_empty() {
            return Ok(0);
        }
        let fence = self.write_fence()?;
        let stmts = stmts
            .into_iter()
            .map(|s| s.fenced(fence.as_ref()))
            .collect();
        Ok(self
            .refused(self.db.execute_all(stmts).await)?
            .into_iter()
            .sum())
    }

    /// The rows a writing statement returns (`… RETURNING`; fenced).
    async fn write_returning<R: crate::sql::Row>(&self, stmt: Stmt) -> Result<Option<R>> {
        let stmt = stmt.fenced(self.write_fence()?.as_ref());
        self.refused(self.db.fetch_one(Via::Write, stmt).await)
    }

    async fn rows<R: crate::sql::Row>(&self, stmt: Stmt) -> Result<Vec<R>> {
        self.db.fetch(Via::Read, stmt).await
    }

    async fn row<R: crate::sql::Row>(&self, stmt: Stmt) -> Result<Option<R>> {
        self.db.fetch_one(Via::Read, stmt).await
    }

    async fn flag(&self, stmt: Stmt) -> Result<bool> {
        Ok(self.row::<FlagRow>(stmt).await?.is_some_and(|r| r.flag))
    }

    async fn put(&self, table: &Keyed, key: impl Into<Arg>, value: impl Into<Arg>) -> Result<()> {
        self.run(self.stmt(table.put).arg(key).arg(value))
            .await
            .map(drop)
    }

    /// Many [`DeviceHandle::put`]s in one transaction.
    async fn put_all<K: Into<Arg>, V: Into<Arg>>(
        &self,
        table: &Keyed,
        rows: impl IntoIterator<Item = (K, V)>,
    ) -> Result<()> {
        let stmts = rows
            .into_iter()
            .map(|(k, v)| self.stmt(table.put).arg(k).arg(v))
            .collect();
        self.run_all(stmts).await.map(drop)
    }

    async fn get(&self, table: &Keyed, key: impl Into<Arg>) -> Result<Option<Vec<u8>>> {
        Ok(self
            .row::<BlobRow>(self.stmt(table.get).arg(key))
            .await?
            .map(|r| r.v))
    }

    async fn delete(&self, table: &Keyed, key: impl Into<Arg>) -> Result<()> {
        self.run(self.stmt(table.delete).arg(key)).await.map(drop)
    }
}

// ---- the traits -------------------------------------------------------

#[async_trait]
impl SignalStore for DeviceHandle {
    async fn put_identity(&self, address: &str, key: [u8; 32]) -> Result<()> {
        self.put(&IDENTITIES, address, key.to_vec()).await
    }

    async fn put_identities_batch(&self, identities: &[(Arc<str>, [u8; 32])]) -> Result<()> {
        self.put_all(
            &IDENTITIES,
            identities.iter().map(|(a, k)| (a.as_ref(), k.to_vec())),
        )
        .await
    }

    async fn load_identity(&self, address: &str) -> Result<Option<[u8; 32]>> {
        let blob = self.get(&IDENTITIES, address).await?;
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
        self.delete(&IDENTITIES, address).await
    }

    async fn get_session(&self, address: &str) -> Result<Option<Bytes>> {
        Ok(self.get(&SESSIONS, address).await?.map(Bytes::from))
    }

    async fn put_session(&self, address: &str, session: &[u8]) -> Result<()> {
        self.put(&SESSIONS, address, session).await
    }

    async fn put_sessions_batch(&self, sessions: &[(Arc<str>, Bytes)]) -> Result<()> {
        self.put_all(
            &SESSIONS,
            sessions.iter().map(|(a, r)| (a.as_ref(), r.as_ref())),
        )
        .await
    }

    async fn delete_session(&self, address: &str) -> Result<()> {
        self.delete(&SESSIONS, address).await
    }

    async fn has_session(&self, address: &str) -> Result<bool> {
        self.flag(
            self.stmt(
                "SELECT EXISTS (SELECT 1 FROM sessions WHERE address = $2 AND device_id = $1) \
                 AS flag",
            )
            .arg(address),
        )
        .await
    }

    async fn has_signal_state_for_user(&self, user: &str) -> Result<bool> {
        // Addresses are `user@server` (device 0) or `user:dev@server`.
        self.flag(
            self.stmt(
                "SELECT (EXISTS (SELECT 1 FROM sessions WHERE device_id = $1 \
                           AND (address LIKE $2 OR address LIKE $3)) \
                      OR EXISTS (SELECT 1 FROM identities WHERE device_id = $1 \
                           AND (address LIKE $2 OR address LIKE $3))) AS flag",
            )
            .arg(format!("{user}@%"))
            .arg(format!("{user}:%")),
        )
        .await
    }

    async fn store_prekey(&self, id: u32, record: &[u8], uploaded: bool) -> Result<()> {
        self.run(
            self.stmt(UPSERT_PREKEY)
                .arg(id as i32)
                .arg(record)
                .arg(uploaded),
        )
        .await
        .map(drop)
    }

    async fn store_prekeys_batch(&self, keys: &[(u32, Bytes)], uploaded: bool) -> Result<()> {
        let stmts = keys
            .iter()
            .map(|(id, record)| {
                self.stmt(UPSERT_PREKEY)
                    .arg(*id as i32)
                    .arg(record.as_ref())
                    .arg(uploaded)
            })
            .collect();
        self.run_all(stmts).await.map(drop)
    }

    async fn load_prekey(&self, id: u32) -> Result<Option<Bytes>> {
        Ok(self.get(&PREKEYS, id as i32).await?.map(Bytes::from))
    }

    async fn load_prekeys_batch(&self, ids: &[u32]) -> Result<Vec<(u32, Bytes)>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // On SQLite through the device index: the primary key is (id,
        // device_id), so a seek per id touches one index page per key (a
        // device's ~800 keys are spread across the whole index); the
        // device's entries in `idx_prekeys_device_id` sit together.
        let rows = if ids.len() < WHOLE_DEVICE_BATCH {
            self.rows::<IdBlobRow>(
                self.stmt(
                    "SELECT id, key AS v FROM prekeys INDEXED BY idx_prekeys_device_id \
                     WHERE device_id = $1 AND id = ANY($2)",
                )
                .arg(ids.iter().map(|id| *id as i32).collect::<Vec<_>>()),
            )
            .await?
        } else {
            // The login's digest check names nearly every key the device
            // has: reading them all and keeping the named ones spares the
            // database a lookup per id.
            let wanted: std::collections::HashSet<i32> = ids.iter().map(|id| *id as i32).collect();
            let mut rows = self
                .rows::<IdBlobRow>(self.stmt(
                    "SELECT id, key AS v FROM prekeys INDEXED BY idx_prekeys_device_id \
                     WHERE device_id = $1",
                ))
                .await?;
            rows.retain(|r| wanted.contains(&r.id));
            rows
        };
        Ok(rows
            .into_iter()
            .map(|r| (r.id as u32, Bytes::from(r.v)))
            .collect())
    }

    async fn mark_prekeys_uploaded(&self, ids: &[u32]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        // An UPDATE: a key consumed since the upload stays deleted.
        self.run(
            self.stmt(
                "UPDATE prekeys INDEXED BY idx_prekeys_device_id SET uploaded = TRUE \
                 WHERE device_id = $1 AND id = ANY($2)",
            )
            .arg(ids.iter().map(|id| *id as i32).collect::<Vec<_>>()),
        )
        .await
        .map(drop)
    }

    async fn remove_prekey(&self, id: u32) -> Result<()> {
        self.delete(&PREKEYS, id as i32).await
    }

    async fn get_max_prekey_id(&self) -> Result<u32> {
        let max = self
            .row::<MaxRow>(self.stmt("SELECT MAX(id) AS m FROM prekeys WHERE device_id = $1"))
            .await?;
        Ok(max.and_then(|r| r.m).unwrap_or(0) as u32)
    }

    async fn store_signed_prekey(&self, id: u32, record: &[u8]) -> Result<()> {
        self.put(&SIGNED_PREKEYS, id as i32, record).await
    }

    async fn load_signed_prekey(&self, id: u32) -> Result<Option<Vec<u8>>> {
        self.get(&SIGNED_PREKEYS, id as i32).await
    }

    async fn load_all_signed_prekeys(&self) -> Result<Vec<(u32, Vec<u8>)>> {
        let rows = self
            .rows::<IdBlobRow>(
                self.stmt("SELECT id, record AS v FROM signed_prekeys WHERE device_id = $1"),
            )
            .await?;
        Ok(rows.into_iter().map(|r| (r.id as u32, r.v)).collect())
    }

    async fn remove_signed_prekey(&self, id: u32) -> Result<()> {
        self.delete(&SIGNED_PREKEYS, id as i32).await
    }

    async fn put_sender_key(&self, address: &str, record: &[u8]) -> Result<()> {
        self.put(&SENDER_KEYS, address, record).await
    }

    async fn put_sender_keys_batch(&self, sender_keys: &[(Arc<str>, Bytes)]) -> Result<()> {
        self.put_all(
            &SENDER_KEYS,
            sender_keys.iter().map(|(a, r)| (a.as_ref(), r.as_ref())),
        )
        .await
    }

    async fn get_sender_key(&self, address: &str) -> Result<Option<Vec<u8>>> {
        self.get(&SENDER_KEYS, address).await
    }

    async fn delete_sender_key(&self, address: &str) -> Result<()> {
        self.delete(&SENDER_KEYS, address).await
    }
}

#[async_trait]
impl AppSyncStore for DeviceHandle {
    async fn get_sync_key(&self, key_id: &[u8]) -> Result<Option<AppStateSyncKey>> {
        // A blob that does not decode reads as absent: the key is asked for
        // again and the next share overwrites it (as whatsapp-rust does).
        Ok(self.get(&APP_STATE_KEYS, key_id).await?.and_then(|data| {
            wire::decode_app_state_sync_key(&data)
                .inspect_err(|e| tracing::warn!(error = %e, "app-state sync key unreadable"))
                .ok()
        }))
    }

    async fn set_sync_key(&self, key_id: &[u8], key: AppStateSyncKey) -> Result<()> {
        self.put(
            &APP_STATE_KEYS,
            key_id,
            wire::encode_app_state_sync_key(&key),
        )
        .await
    }

    async fn get_version(&self, name: &str) -> Result<HashState> {
        // Unreadable: the collection syncs again from version 0.
        Ok(self
            .get(&APP_STATE_VERSIONS, name)
            .await?
            .and_then(|data| {
                wire::decode_hash_state(&data)
                    .inspect_err(|e| tracing::warn!(error = %e, "app-state version unreadable"))
                    .ok()
            })
            .unwrap_or_default())
    }

    async fn set_version(&self, name: &str, state: HashState) -> Result<()> {
        self.put(&APP_STATE_VERSIONS, name, wire::encode_hash_state(&state))
            .await
    }

    async fn put_mutation_macs(
        &self,
        name: &str,
        version: u64,
        mutations: &[AppStateMutationMAC],
    ) -> Result<()> {
        let stmts = mutations
            .iter()
            .map(|m| {
                self.stmt(UPSERT_MUTATION_MAC)
                    .arg(name)
                    .arg(version as i64)
                    .arg(m.index_mac.as_slice())
                    .arg(m.value_mac.as_slice())
            })
            .collect();
        self.run_all(stmts).await.map(drop)
    }

    async fn get_mutation_mac(&self, name: &str, index_mac: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self
            .row::<BlobRow>(
                self.stmt(
                    "SELECT value_mac AS v FROM app_state_mutation_macs \
                     WHERE name = $2 AND index_mac = $3 AND device_id = $1",
                )
                .arg(name)
                .arg(index_mac),
            )
            .await?
            .map(|r| r.v))
    }

    async fn get_mutation_macs(
        &self,
        name: &str,
        index_macs: &[[u8; 32]],
    ) -> Result<HashMap<[u8; 32], Vec<u8>>> {
        if index_macs.is_empty() {
            return Ok(HashMap::new());
        }
        let rows = self
            .rows::<BlobPairRow>(
                self.stmt(
                    "SELECT index_mac AS k, value_mac AS v FROM app_state_mutation_macs \
                     WHERE device_id = $1 AND name = $2 AND index_mac = ANY($3)",
                )
                .arg(name)
                .arg(index_macs.iter().map(|m| m.to_vec()).collect::<Vec<_>>()),
            )
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| <[u8; 32]>::try_from(r.k.as_slice()).ok().map(|k| (k, r.v)))
            .collect())
    }

    async fn delete_mutation_macs(&self, name: &str, index_macs: &[Vec<u8>]) -> Result<()> {
        if index_macs.is_empty() {
            return Ok(());
        }
        self.run(
            self.stmt(
                "DELETE FROM app_state_mutation_macs \
                 WHERE device_id = $1 AND name = $2 AND index_mac = ANY($3)",
            )
            .arg(name)
            .arg(index_macs.to_vec()),
        )
        .await
        .map(drop)
    }

    async fn clear_mutation_macs(&self, name: &str) -> Result<()> {
        self.run(
            self.stmt("DELETE FROM app_state_mutation_macs WHERE name = $2 AND device_id = $1")
                .arg(name),
        )
        .await
        .map(drop)
    }

    async fn get_latest_sync_key_id(&self) -> Result<Option<Vec<u8>>> {
        // The newest key that decodes: an unreadable row reads as absent in
        // `get_sync_key`, so naming it would fail the next outgoing patch.
        let rows = self
            .rows::<BlobPairRow>(self.stmt(
                "SELECT key_id AS k, key_data AS v FROM app_state_keys \
                 WHERE device_id = $1 ORDER BY key_id DESC",
            ))
            .await?;
        Ok(rows
            .into_iter()
            .find(|r| wire::decode_app_state_sync_key(&r.v).is_ok())
            .map(|r| r.k))
    }
}

#[async_trait]
impl ProtocolStore for DeviceHandle {
    async fn get_sender_key_devices(&self, group_jid: &str) -> Result<Vec<(String, bool)>> {
        let rows = self
            .rows::<SenderKeyDeviceRow>(
                self.stmt(
                    "SELECT device_jid, has_key FROM sender_key_devices \
                     WHERE group_jid = $2 AND device_id = $1",
                )
                .arg(group_jid),
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.device_jid, r.has_key != 0))
            .collect())
    }

    async fn set_sender_key_status(&self, group_jid: &str, entries: &[(&str, bool)]) -> Result<()> {
        let now = now_secs();
        let stmts = entries
            .iter()
            .map(|(jid, has)| {
                self.stmt(UPSERT_SENDER_KEY_DEVICE)
                    .arg(group_jid)
                    .arg(*jid)
                    .arg(i32::from(*has))
                    .arg(now)
            })
            .collect();
        self.run_all(stmts).await.map(drop)
    }

    async fn clear_sender_key_devices(&self, group_jid: &str) -> Result<()> {
        self.run(
            self.stmt("DELETE FROM sender_key_devices WHERE group_jid = $2 AND device_id = $1")
                .arg(group_jid),
        )
        .await
        .map(drop)
    }

    async fn delete_sender_key_device_rows(&self, device_jids: &[&str]) -> Result<()> {
        if device_jids.is_empty() {
            return Ok(());
        }
        self.run(
            self.stmt(
                "DELETE FROM sender_key_devices WHERE device_id = $1 AND device_jid = ANY($2)",
            )
            .arg(
                device_jids
                    .iter()
                    .map(|j| (*j).to_owned())
                    .collect::<Vec<_>>(),
            ),
        )
        .await
        .map(drop)
    }

    async fn clear_all_sender_key_devices(&self) -> Result<()> {
        self.run(self.stmt("DELETE FROM sender_key_devices WHERE device_id = $1"))
            .await
            .map(drop)
    }

    async fn get_lid_mapping(&self, lid: &str) -> Result<Option<LidPnMappingEntry>> {
        Ok(self
            .row::<LidRow>(
                self.stmt(
                    "SELECT lid, phone_number, created_at, learning_source, updated_at \
                     FROM lid_pn_mapping WHERE lid = $2 AND device_id = $1",
                )
                .arg(lid),
            )
            .await?
            .map(Into::into))
    }

    async fn get_pn_mapping(&self, phone: &str) -> Result<Option<LidPnMappingEntry>> {
        Ok(self
            .row::<LidRow>(
                self.stmt(
                    "SELECT lid, phone_number, created_at, learning_source, updated_at \
                     FROM lid_pn_mapping WHERE phone_number = $2 AND device_id = $1 \
                     ORDER BY updated_at DESC LIMIT 1",
                )
                .arg(phone),
            )
            .await?
            .map(Into::into))
    }

    async fn put_lid_mapping(&self, entry: &LidPnMappingEntry) -> Result<()> {
        self.put_lid_mappings(std::slice::from_ref(entry)).await
    }

    async fn put_lid_mappings(&self, entries: &[LidPnMappingEntry]) -> Result<()> {
        let stmts = entries
            .iter()
            .map(|e| {
                self.stmt(UPSERT_LID)
                    .arg(e.lid.as_str())
                    .arg(e.phone_number.as_str())
                    .arg(e.created_at)
                    .arg(e.learning_source.as_str())
                    .arg(e.updated_at)
            })
            .collect();
        self.run_all(stmts).await.map(drop)
    }

    async fn get_all_lid_mappings(&self) -> Result<Vec<LidPnMappingEntry>> {
        let rows = self
            .rows::<LidRow>(self.stmt(
                "SELECT lid, phone_number, created_at, learning_source, updated_at \
                 FROM lid_pn_mapping WHERE device_id = $1",
            ))
            .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn save_base_key(&self, address: &str, message_id: &str, base_key: &[u8]) -> Result<()> {
        self.run(
            self.stmt(
                "INSERT INTO base_keys (address, message_id, base_key, device_id, created_at) \
                 VALUES ($2, $3, $4, $1, $5) ON CONFLICT (address, message_id, device_id) \
                 DO UPDATE SET base_key = excluded.base_key",
            )
            .arg(address)
            .arg(message_id)
            .arg(base_key)
            .arg(now_secs() as i32),
        )
        .await
        .map(drop)
    }

    async fn has_same_base_key(
        &self,
        address: &str,
        message_id: &str,
        current_base_key: &[u8],
    ) -> Result<bool> {
        let row = self
            .row::<BlobRow>(
                self.stmt(
                    "SELECT base_key AS v FROM base_keys \
                     WHERE address = $2 AND message_id = $3 AND device_id = $1",
                )
                .arg(address)
                .arg(message_id),
            )
            .await?;
        Ok(row.is_some_and(|r| r.v == current_base_key))
    }

    async fn delete_base_key(&self, address: &str, message_id: &str) -> Result<()> {
        self.run(
            self.stmt(
                "DELETE FROM base_keys WHERE address = $2 AND message_id = $3 AND device_id = $1",
            )
            .arg(address)
            .arg(message_id),
        )
        .await
        .map(drop)
    }

    async fn update_device_list(&self, record: DeviceListRecord) -> Result<()> {
        self.update_device_lists(vec![record]).await
    }

    async fn update_device_lists(&self, records: Vec<DeviceListRecord>) -> Result<()> {
        let now = now_secs() as i32;
        let stmts = records
            .into_iter()
            .map(|r| {
                let json =
                    whatsapp_rust::serde_json::to_string(&r.devices).map_err(serialization)?;
                Ok(self
                    .stmt(UPSERT_DEVICE_LIST)
                    .arg(r.user)
                    .arg(json)
                    .arg(r.timestamp as i32)
                    .arg(r.phash)
                    .arg(now)
                    .arg(r.raw_id.map(|v| v as i32)))
            })
            .collect::<Result<Vec<_>>>()?;
        self.run_all(stmts).await.map(drop)
    }

    async fn get_devices(&self, user: &str) -> Result<Option<DeviceListRecord>> {
        let row = self
            .row::<DeviceListRow>(
                self.stmt(
                    "SELECT user_id, devices_json, timestamp, phash, raw_id \
                     FROM device_registry WHERE user_id = $2 AND device_id = $1",
                )
                .arg(user),
            )
            .await?;
        row.map(|r| {
            Ok(DeviceListRecord {
                user: r.user_id,
                devices: whatsapp_rust::serde_json::from_str(&r.devices_json)
                    .map_err(serialization)?,
                timestamp: i64::from(r.timestamp),
                phash: r.phash,
                raw_id: r.raw_id.map(|v| v as u32),
            })
        })
        .transpose()
    }

    async fn delete_devices(&self, user: &str) -> Result<()> {
        self.delete(&DEVICE_LISTS, user).await
    }

    async fn get_group_metadata(&self, group_jid: &str) -> Result<Option<Vec<u8>>> {
        self.get(&GROUP_METADATA, group_jid).await
    }

    async fn put_group_metadata(&self, group_jid: &str, blob: &[u8]) -> Result<()> {
        self.run(
            self.stmt(
                "INSERT INTO group_metadata (group_jid, info, device_id, updated_at) \
                 VALUES ($2, $3, $1, $4) ON CONFLICT (group_jid, device_id) DO UPDATE SET \
                 info = excluded.info, updated_at = excluded.updated_at",
            )
            .arg(group_jid)
            .arg(blob)
            .arg(now_secs()),
        )
        .await
        .map(drop)
    }

    async fn delete_group_metadata(&self, group_jid: &str) -> Result<()> {
        self.delete(&GROUP_METADATA, group_jid).await
    }

    async fn get_tc_token(&self, jid: &str) -> Result<Option<TcTokenEntry>> {
        // On the interactive reader: a contact lookup's one read.
        let row = self
            .db
            .fetch_one::<TcRow>(
                Via::Interactive,
                self.stmt(
                    "SELECT token, token_timestamp, sender_timestamp FROM tc_tokens \
                     WHERE jid = $2 AND device_id = $1",
                )
                .arg(jid),
            )
            .await?;
        Ok(row.map(|r| TcTokenEntry {
            token: r.token,
            token_timestamp: r.token_timestamp,
            sender_timestamp: r.sender_timestamp,
        }))
    }

    async fn put_tc_token(&self, jid: &str, entry: &TcTokenEntry) -> Result<()> {
        self.run(
            self.stmt(UPSERT_TC_TOKEN)
                .arg(jid)
                .arg(entry.token.as_slice())
                .arg(entry.token_timestamp)
                .arg(entry.sender_timestamp)
                .arg(now_secs()),
        )
        .await
        .map(drop)
    }

    async fn delete_tc_token(&self, jid: &str) -> Result<()> {
        self.delete(&TC_TOKENS, jid).await
    }

    async fn get_all_tc_token_jids(&self) -> Result<Vec<String>> {
        let rows = self
            .rows::<TextRow>(self.stmt("SELECT jid AS v FROM tc_tokens WHERE device_id = $1"))
            .await?;
        Ok(rows.into_iter().map(|r| r.v).collect())
    }

    async fn delete_expired_tc_tokens(&self, token_cutoff: i64, sender_cutoff: i64) -> Result<u32> {
        // Only rows whose received token is expired or absent AND whose
        // sender bucket is expired or absent.
        let n = self
            .run(
                self.stmt(
                    "DELETE FROM tc_tokens WHERE device_id = $1 \
                     AND (length(token) = 0 OR token_timestamp < $2) \
                     AND (sender_timestamp IS NULL OR sender_timestamp < $3)",
                )
                .arg(token_cutoff)
                .arg(sender_cutoff),
            )
            .await?;
        Ok(n as u32)
    }

    async fn touch_tc_token_sender_timestamp(
        &self,
        jid: &str,
        sender_timestamp: i64,
    ) -> Result<()> {
        // One upsert: on conflict only the sender bucket moves, and only
        // forward; stored token bytes are kept.
        self.run(
            self.stmt(
                "INSERT INTO tc_tokens \
                 (jid, token, token_timestamp, sender_timestamp, device_id, updated_at) \
                 VALUES ($2, $3, $4, $4, $1, $5) ON CONFLICT (jid, device_id) DO UPDATE SET \
                 sender_timestamp = GREATEST(COALESCE(tc_tokens.sender_timestamp, $4), $4), \
                 updated_at = $5",
            )
            .arg(jid)
            .arg(Vec::<u8>::new())
            .arg(sender_timestamp)
            .arg(now_secs()),
        )
        .await
        .map(drop)
    }

    async fn store_received_tc_token(
        &self,
        jid: &str,
        token: &[u8],
        token_timestamp: i64,
    ) -> Result<()> {
        // Newer wins, in one statement: a stored real token is replaced
        // only by one at least as new; the sender bucket is kept.
        self.run(
            self.stmt(
                "INSERT INTO tc_tokens \
                 (jid, token, token_timestamp, sender_timestamp, device_id, updated_at) \
                 VALUES ($2, $3, $4, NULL, $1, $5) ON CONFLICT (jid, device_id) DO UPDATE SET \
                 token = excluded.token, token_timestamp = excluded.token_timestamp, \
                 updated_at = excluded.updated_at \
                 WHERE length(tc_tokens.token) = 0 \
                    OR excluded.token_timestamp >= tc_tokens.token_timestamp",
            )
            .arg(jid)
            .arg(token)
            .arg(token_timestamp)
            .arg(now_secs()),
        )
        .await
        .map(drop)
    }

    async fn store_sent_message(
        &self,
        chat_jid: &str,
        message_id: &str,
        payload: &[u8],
    ) -> Result<()> {
        self.run(
            self.stmt(
                "INSERT INTO sent_messages (chat_jid, message_id, payload, device_id) \
                 VALUES ($2, $3, $4, $1) ON CONFLICT (chat_jid, message_id, device_id) \
                 DO UPDATE SET payload = excluded.payload, created_at = excluded.created_at",
            )
            .arg(chat_jid)
            .arg(message_id)
            .arg(payload),
        )
        .await
        .map(drop)
    }

    async fn take_sent_message(&self, chat_jid: &str, message_id: &str) -> Result<Option<Vec<u8>>> {
        // One statement: of two takers, one gets the payload.
        let row = self
            .write_returning::<BlobRow>(
                self.stmt(
                    "DELETE FROM sent_messages \
                     WHERE chat_jid = $2 AND message_id = $3 AND device_id = $1 \
                     RETURNING payload AS v",
                )
                .arg(chat_jid)
                .arg(message_id),
            )
            .await?;
        Ok(row.map(|r| r.v))
    }

    async fn delete_expired_sent_messages(&self, cutoff_timestamp: i64) -> Result<u32> {
        let n = self
            .run(
                self.stmt("DELETE FROM sent_messages WHERE created_at < $2 AND device_id = $1")
                    .arg(cutoff_timestamp),
            )
            .await?;
        Ok(n as u32)
    }

    async fn store_pending_inbound(
        &self,
        chat: &str,
        sender: &str,
        id: &str,
        message: &[u8],
    ) -> Result<()> {
        self.run(
            self.stmt(PUT_PENDING_INBOUND)
                .arg(chat)
                .arg(sender)
                .arg(id)
                .arg(message),
        )
        .await
        .map(drop)
    }

    async fn get_pending_inbound(
        &self,
        chat: &str,
        sender: &str,
        id: &str,
    ) -> Result<Option<Vec<u8>>> {
        Ok(self
            .row::<BlobRow>(
                self.stmt(
                    "SELECT message AS v FROM pending_inbound_messages \
                     WHERE chat = $2 AND sender = $3 AND id = $4 AND device_id = $1",
                )
                .arg(chat)
                .arg(sender)
                .arg(id),
            )
            .await?
            .map(|r| r.v))
    }

    async fn delete_pending_inbound(&self, chat: &str, sender: &str, id: &str) -> Result<()> {
        self.run(
            self.stmt(DELETE_PENDING_INBOUND)
                .arg(chat)
                .arg(sender)
                .arg(id),
        )
        .await
        .map(drop)
    }

    async fn delete_expired_pending_inbound(&self, cutoff_timestamp: i64) -> Result<u32> {
        let n = self
            .run(
                self.stmt(
                    "DELETE FROM pending_inbound_messages \
                     WHERE device_id = $1 AND inserted_at < $2",
                )
                .arg(cutoff_timestamp),
            )
            .await?;
        Ok(n as u32)
    }

    async fn store_pending_inbound_batch(&self, rows: &[PendingInboundRow<'_>]) -> Result<()> {
        let stmts = rows
            .iter()
            .map(|r| {
                self.stmt(PUT_PENDING_INBOUND)
                    .arg(r.chat)
                    .arg(r.sender)
                    .arg(r.id)
                    .arg(r.message)
            })
            .collect();
        self.run_all(stmts).await.map(drop)
    }

    async fn delete_pending_inbound_batch(&self, keys: &[PendingInboundKey<'_>]) -> Result<()> {
        let stmts = keys
            .iter()
            .map(|k| {
                self.stmt(DELETE_PENDING_INBOUND)
                    .arg(k.chat)
                    .arg(k.sender)
                    .arg(k.id)
            })
            .collect();
        self.run_all(stmts).await.map(drop)
    }
}

#[async_trait]
impl MsgSecretStore for DeviceHandle {
    async fn put_msg_secrets(&self, entries: Vec<MsgSecretEntry>) -> Result<usize> {
        let now = now_secs();
        let stmts = entries
            .iter()
            .map(|e| {
                self.stmt(UPSERT_MSG_SECRET)
                    .arg(e.chat.as_ref())
                    .arg(e.sender.as_ref())
                    .arg(e.msg_id.as_ref())
                    .arg(e.secret.as_slice())
                    .arg(now)
                    .arg(e.expires_at)
                    .arg(e.message_ts)
            })
            .collect();
        Ok(self.run_all(stmts).await? as usize)
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
        Ok(self
            .row::<SecretRow>(
                self.stmt(
                    "SELECT secret, message_ts FROM msg_secrets \
                     WHERE chat = $2 AND sender = $3 AND msg_id = $4 AND device_id = $1",
                )
                .arg(chat)
                .arg(sender)
                .arg(msg_id),
            )
            .await?
            .map(|r| (r.secret, r.message_ts)))
    }

    async fn delete_expired_msg_secrets(&self, cutoff_timestamp: i64) -> Result<u32> {
        // `expires_at = 0` never expires.
        let n = self
            .run(
                self.stmt(
                    "DELETE FROM msg_secrets WHERE device_id = $1 \
                     AND expires_at != 0 AND expires_at <= $2",
                )
                .arg(cutoff_timestamp),
            )
            .await?;
        Ok(n as u32)
    }
}

#[async_trait]
impl DeviceStore for DeviceHandle {
    async fn save(&self, device: &CoreDevice) -> Result<()> {
        let stmt = device_statement(self.device, device);
        let digest = stmt.digest();
        if self.last_row() == Some(digest) {
            return Ok(());
        }
        self.run(stmt).await?;
        self.set_last_row(Some(digest));
        Ok(())
    }

    async fn load(&self) -> Result<Option<CoreDevice>> {
        let device = self
            .row::<DeviceRow>(Stmt::new(SELECT_DEVICE).arg(self.device))
            .await?
            .map(|row| row.into_device(self.device))
            .transpose()?;
        self.set_last_row(
            device
                .as_ref()
                .map(|d| device_statement(self.device, d).digest()),
        );
        Ok(device)
    }

    async fn exists(&self) -> Result<bool> {
        self.flag(
            Stmt::new("SELECT EXISTS (SELECT 1 FROM device WHERE id = $1) AS flag")
                .arg(self.device),
        )
        .await
    }

    async fn create(&self) -> Result<i32> {
        // A fresh identity, written as whatsapp-rust's stores write one.
        self.save(&CoreDevice::new()).await?;
        Ok(self.device)
    }

    // `snapshot_db` keeps the default (no snapshot: a copy of the whole
    // shared store per failure is not a debugging aid), and so does
    // `resource_report` (the cache and pool are the process's, not a
    // session's).
}

#[cfg(test)]
mod tests {
    //! The handle against whatsapp-rust's own store: one script of calls
    //! on a `SqliteStore` for device 7 and on a handle for device 8 of the
    //! same file must answer the same and leave the same rows.

    use whatsapp_rust::store::SqliteStore;
    use whatsapp_rust::wacore::store::device::{CachedNoiseCert, CachedServerCertChain};
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
        s.delete_identity("b@s.whatsapp.net").await.unwrap();
        note!(s.load_identity("b@s.whatsapp.net").await.unwrap());

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
        // A login's digest check: many ids, some not stored.
        let many: Vec<u32> = std::iter::once(3).chain(100..170).collect();
        note!(sorted(s.load_prekeys_batch(&many).await.unwrap()));
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
        s.put_mutation_macs("regular", 4, &[mac(3, 40), mac(4, 50), mac(5, 60)])
            .await
            .unwrap();
        s.put_mutation_macs("regular", 5, &[mac(4, 55)])
            .await
            .unwrap();
        s.delete_mutation_macs("regular", &[vec![5; 32], vec![9; 32]])
            .await
            .unwrap();
        let mut found: Vec<_> = s
            .get_mutation_macs("regular", &[[3; 32], [4; 32], [5; 32], [1; 32]])
            .await
            .unwrap()
            .into_iter()
            .collect();
        found.sort();
        note!(found);
        note!(s.get_version("regular").await.unwrap().version);
        let mut state = HashState {
            version: 3,
            mac_mismatch_fatal: true,
            ..HashState::default()
        };
        state.hash[0] = 7;
        state.index_value_map.insert("idx".into(), vec![1, 2]);
        s.set_version("regular", state).await.unwrap();
        let back = s.get_version("regular").await.unwrap();
        note!((
            back.version,
            back.hash[0],
            back.index_value_map,
            back.mac_mismatch_fatal
        ));
        let key = |b: u8, at: i64| AppStateSyncKey {
            key_data: vec![b; 32],
            fingerprint: vec![b, 1],
            timestamp: at,
        };
        note!(s.get_latest_sync_key_id().await.unwrap());
        s.set_sync_key(b"k1", key(1, 10)).await.unwrap();
        s.set_sync_key(b"k3", key(3, 30)).await.unwrap();
        s.set_sync_key(b"k2", key(2, 20)).await.unwrap();
        s.set_sync_key(b"k1", key(4, 40)).await.unwrap();
        let got = s.get_sync_key(b"k1").await.unwrap().unwrap();
        note!((got.key_data, got.fingerprint, got.timestamp));
        note!(s.get_sync_key(b"k9").await.unwrap().is_none());
        note!(s.get_latest_sync_key_id().await.unwrap());

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

        // the device row itself
        let mut d = s.load().await.unwrap().unwrap();
        d.push_name = "Ana".into();
        d.pn = "15551234567@s.whatsapp.net".parse().ok();
        d.lid = "100000012345678@lid".parse().ok();
        d.nct_salt = Some(vec![9; 16]);
        d.edge_routing_info = Some(vec![1, 2, 3]);
        d.props_hash = Some("ph".into());
        d.login_counter = 3;
        d.next_pre_key_id = 812;
        d.server_has_prekeys = true;
        d.read_receipts_disabled = true;
        d.app_version_tertiary = 1_042_742_319;
        d.app_version_last_fetched_ms = 1_700_000_000_123;
        d.server_cert_chain = Some(CachedServerCertChain {
            intermediate: CachedNoiseCert {
                key: [4; 32],
                not_before: 1,
                not_after: 2,
            },
            leaf: CachedNoiseCert {
                key: [5; 32],
                not_before: 3,
                not_after: 4,
            },
        });
        s.save(&d).await.unwrap();
        let back = s.load().await.unwrap().unwrap();
        note!((&back.push_name, &back.pn, &back.lid, &back.nct_salt));
        note!((
            &back.edge_routing_info,
            &back.props_hash,
            back.login_counter
        ));
        note!((
            back.next_pre_key_id,
            back.server_has_prekeys,
            back.read_receipts_disabled
        ));
        note!((back.app_version_tertiary, back.app_version_last_fetched_ms));
        note!(back.server_cert_chain == d.server_cert_chain);
        note!(
            [&back.noise_key, &back.identity_key, &back.signed_pre_key]
                .iter()
                .zip([&d.noise_key, &d.identity_key, &d.signed_pre_key])
                .all(|(a, b)| keypair_bytes(a) == keypair_bytes(b))
        );
        note!((
            back.registration_id == d.registration_id,
            back.signed_pre_key_signature == d.signed_pre_key_signature,
            back.adv_secret_key == d.adv_secret_key,
        ));
        log
    }

    /// Every row of `device` in every table that has a `device_id` column
    /// (but the device row, whose keys are random), times left out, each
    /// as SQLite's `quote()` spells its values.
    async fn rows(db: &Db, device: i32) -> Vec<String> {
        match db {
            Db::Sqlite { .. } => sqlite_rows(db, device).await,
            Db::Postgres(pool) => postgres_rows(pool, device).await,
        }
    }

    async fn sqlite_rows(db: &Db, device: i32) -> Vec<String> {
        use diesel::RunQueryDsl as _;
        #[derive(QueryableByName)]
        struct Name {
            #[diesel(sql_type = Text)]
            name: String,
        }
        db.sqlite()
            .unwrap()
            .write(move |conn| {
                let db = |e| StoreError::Database(Box::new(e));
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

    async fn postgres_rows(pool: &sqlx::PgPool, device: i32) -> Vec<String> {
        let tables: Vec<(String,)> = sqlx::query_as(
            "SELECT table_name::text FROM information_schema.columns \
             WHERE table_schema = 'whatsapp' AND column_name = 'device_id' \
             AND table_name != 'device' ORDER BY table_name",
        )
        .fetch_all(pool)
        .await
        .unwrap();
        let mut out = Vec::new();
        for (table,) in tables {
            let columns: Vec<(String, String)> = sqlx::query_as(
                "SELECT column_name::text, data_type::text FROM information_schema.columns \
                 WHERE table_schema = 'whatsapp' AND table_name = $1 AND column_name NOT IN \
                 ('device_id', 'created_at', 'updated_at', 'inserted_at') \
                 ORDER BY ordinal_position",
            )
            .bind(&table)
            .fetch_all(pool)
            .await
            .unwrap();
            // SQLite's quote(): 'text', X'HEX', integers (booleans as 0/1), NULL.
            let row = columns
                .iter()
                .map(|(name, kind)| {
                    let value = match kind.as_str() {
                        "bytea" => format!("'X''' || upper(encode(\"{name}\", 'hex')) || ''''"),
                        "text" => format!("quote_literal(\"{name}\")"),
                        "boolean" => format!("(\"{name}\")::int::text"),
                        _ => format!("(\"{name}\")::text"),
                    };
                    format!("COALESCE({value}, 'NULL')")
                })
                .collect::<Vec<_>>()
                .join(" || ',' || ");
            let found: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT v FROM (SELECT '{table}: ' || {row} AS v FROM \"{table}\" \
                 WHERE device_id = $1) AS r ORDER BY v COLLATE \"C\""
            )))
            .bind(device)
            .fetch_all(pool)
            .await
            .unwrap();
            out.extend(found.into_iter().map(|(v,)| v));
        }
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_handle_stores_what_the_sqlite_store_stores() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.db");
        let url = path.display().to_string();
        let db = Arc::new(Db::open_sqlite(&url).await.unwrap());
        let reference = SqliteStore::new_for_device(&url, 7).await.unwrap();
        let handle = DeviceHandle::new(db.clone(), 8);

        let expected = script(&reference).await;
        let got = script(&handle).await;
        assert_eq!(got, expected);
        let (expected, got) = (rows(&db, 7).await, rows(&db, 8).await);
        assert!(expected.len() > 15, "{expected:#?}");
        assert_eq!(got, expected);

        // And whatsapp-rust's own store reads the handle's device as its
        // own: the device row, keys and blobs in its encodings.
        let other = SqliteStore::new_for_device(&url, 8).await.unwrap();
        assert_eq!(
            other.load_prekey(1).await.unwrap(),
            Some(Bytes::from_static(b"p1b"))
        );
        assert_eq!(other.get_max_prekey_id().await.unwrap(), 3);
        assert!(other.get_lid_mapping("200").await.unwrap().is_some());
        assert_eq!(other.get_version("regular").await.unwrap().version, 3);
        assert_eq!(
            other.get_sync_key(b"k1").await.unwrap().unwrap().timestamp,
            40
        );
        let (ours, theirs) = (
            handle.load().await.unwrap().unwrap(),
            other.load().await.unwrap().unwrap(),
        );
        assert_eq!(
            keypair_bytes(&theirs.identity_key),
            keypair_bytes(&ours.identity_key)
        );
        assert_eq!(theirs.server_cert_chain, ours.server_cert_chain);
        assert_eq!((theirs.pn, theirs.push_name), (ours.pn, ours.push_name));
    }

    /// whatsapp-rust saves the device several times per login, mostly
    /// unchanged: a save of what the handle last read or wrote writes
    /// nothing; a change is written.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unchanged_device_is_not_written_again() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().join("keys.db").display().to_string();
        let db = Arc::new(Db::open_sqlite(&url).await.unwrap());
        DeviceHandle::new(db.clone(), 8).create().await.unwrap();
        let writes = Arc::new(AtomicUsize::new(0));
        let count = writes.clone();
        db.sqlite()
            .unwrap()
            .on_statement(Arc::new(move |sql| {
                if sql.starts_with("INSERT INTO device ") {
                    count.fetch_add(1, Ordering::SeqCst);
                }
            }))
            .await;
        // A client's handle: it loads the device, then saves it.
        let h = DeviceHandle::new(db.clone(), 8);
        let mut device = h.load().await.unwrap().unwrap();
        h.save(&device).await.unwrap();
        h.save(&device).await.unwrap();
        assert_eq!(writes.load(Ordering::SeqCst), 0);
        device.push_name = "Changed".into();
        h.save(&device).await.unwrap();
        h.save(&device).await.unwrap();
        assert_eq!(writes.load(Ordering::SeqCst), 1);
        let again = DeviceHandle::new(db.clone(), 8)
            .load()
            .await
            .unwrap()
            .unwrap();
        assert_eq!(again.push_name, "Changed");
    }

    /// One store holds every device: a statement that reads "the device's
    /// rows" through a table scan reads every device's, and a mass login
    /// does that once per session (quadratic). Every statement the script
    /// makes the handle run finds its rows through an index.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_statement_of_a_handle_scans_a_table() {
        use diesel::{Connection as _, RunQueryDsl as _, SqliteConnection};
        use std::collections::BTreeSet;
        use std::sync::Mutex;
        #[derive(QueryableByName)]
        struct Plan {
            #[diesel(sql_type = Text)]
            detail: String,
        }
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().join("keys.db").display().to_string();
        let db = Arc::new(Db::open_sqlite(&url).await.unwrap());
        let seen = Arc::new(Mutex::new(BTreeSet::new()));
        let sink = seen.clone();
        db.sqlite()
            .unwrap()
            .on_statement(Arc::new(move |sql| {
                sink.lock().unwrap().insert(sql);
            }))
            .await;
        script(&DeviceHandle::new(db.clone(), 8)).await;
        let statements = seen.lock().unwrap().clone();
        assert!(statements.len() > 40, "{statements:#?}");
        let mut conn = SqliteConnection::establish(&url).unwrap();
        let mut scans = Vec::new();
        for sql in &statements {
            let upper = sql.to_ascii_uppercase();
            if !["SELECT", "INSERT", "UPDATE", "DELETE", "WITH"]
                .iter()
                .any(|w| upper.starts_with(w))
            {
                continue;
            }
            // Unbound parameters are NULL: the plan does not depend on them.
            let plan: Vec<Plan> = diesel::sql_query(format!("EXPLAIN QUERY PLAN {sql}"))
                .load(&mut conn)
                .unwrap();
            scans.extend(
                plan.into_iter()
                    .map(|p| p.detail)
                    .filter(|d| {
                        d.starts_with("SCAN ")
                            && !d.starts_with("SCAN CONSTANT ROW")
                            && !d.contains("json_each")
                    })
                    .map(|d| format!("{d}: {sql}")),
            );
        }
        assert!(scans.is_empty(), "{scans:#?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_postgres_store_answers_and_stores_as_sqlite_does() {
        let Some(pg) = crate::sql::tests::fresh_postgres() else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().join("keys.db").display().to_string();
        let sqlite = Arc::new(Db::open_sqlite(&url).await.unwrap());
        let reference = SqliteStore::new_for_device(&url, 7).await.unwrap();
        let postgres = Arc::new(Db::open_postgres(&pg, 4).await.unwrap());
        let handle = DeviceHandle::new(postgres.clone(), 7);

        assert_eq!(script(&handle).await, script(&reference).await);
        let (expected, got) = (rows(&sqlite, 7).await, rows(&postgres, 7).await);
        assert!(expected.len() > 15, "{expected:#?}");
        assert_eq!(got, expected);

        // A second process's pool reads the same device.
        let elsewhere = DeviceHandle::new(Arc::new(Db::open_postgres(&pg, 2).await.unwrap()), 7);
        let (here, there) = (
            handle.load().await.unwrap().unwrap(),
            elsewhere.load().await.unwrap().unwrap(),
        );
        assert_eq!(
            keypair_bytes(&there.identity_key),
            keypair_bytes(&here.identity_key)
        );
        assert_eq!(elsewhere.get_max_prekey_id().await.unwrap(), 3);
    }

    /// The claims of a test node: one session, at the epoch set.
    #[derive(Debug, Default)]
    struct TestClaims {
        held: std::sync::Mutex<Option<wagate_whatsapp_port::SessionClaim>>,
        lost: std::sync::atomic::AtomicU64,
    }

    impl SessionClaims for TestClaims {
        fn claim(&self, _: &SessionId) -> Option<wagate_whatsapp_port::SessionClaim> {
            *self.held.lock().unwrap()
        }

        fn lost(&self, _: &SessionId) {
            self.lost.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// Several gateways: a handle's writes land while its node holds the
    /// session at the claim's epoch, and are refused, changing nothing,
    /// once another claim took it.
    #[tokio::test]
    async fn fenced_writes_land_only_while_the_claim_is_the_sessions() {
        use std::sync::atomic::Ordering::SeqCst;
        use wagate_domain::NodeId;
        use wagate_whatsapp_port::SessionClaim;

        let Some(pg) = crate::sql::tests::fresh_postgres() else {
            return;
        };
        let postgres = Arc::new(Db::open_postgres(&pg, 4).await.unwrap());
        let Db::Postgres(pool) = &*postgres else {
            unreachable!()
        };
        // The gateway's owner table (its migration 0005), as the fence reads it.
        sqlx::raw_sql(
            "CREATE TABLE public.session_owners (session_id TEXT COLLATE \"C\" PRIMARY KEY, \
             owner_node TEXT COLLATE \"C\", epoch BIGINT NOT NULL DEFAULT 0)",
        )
        .execute(pool)
        .await
        .unwrap();
        let session = SessionId::parse("sess_01HZY0N4Q8ZK3J4M7ZC9W4X2QF").unwrap();
        let me = NodeId::parse("node_01HZY0N4Q8ZK3J4M7ZC9W4X2QA").unwrap();
        let other = NodeId::parse("node_01HZY0N4Q8ZK3J4M7ZC9W4X2QB").unwrap();
        let own = |node: NodeId, epoch: i64| {
            sqlx::query(
                "INSERT INTO public.session_owners VALUES ($1, $2, $3) \
                 ON CONFLICT (session_id) DO UPDATE SET owner_node = $2, epoch = $3",
            )
            .bind(session.to_string())
            .bind(node.to_string())
            .bind(epoch)
            .execute(pool)
        };
        own(me, 3).await.unwrap();
        let claims = Arc::new(TestClaims::default());
        *claims.held.lock().unwrap() = Some(SessionClaim { node: me, epoch: 3 });
        let handle = DeviceHandle::new(postgres.clone(), 7).fenced(session, claims.clone());

        // While held, every write of the script lands as an unfenced one.
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().join("keys.db").display().to_string();
        let sqlite = Db::open_sqlite(&url).await.unwrap();
        let reference = SqliteStore::new_for_device(&url, 7).await.unwrap();
        assert_eq!(script(&handle).await, script(&reference).await);
        assert_eq!(rows(&postgres, 7).await, rows(&sqlite, 7).await);
        assert_eq!(claims.lost.load(SeqCst), 0);

        // Another node claims the session (a new epoch): each kind of write
        // is refused by the database, reported lost, and changes nothing.
        own(other, 4).await.unwrap();
        let before = rows(&postgres, 7).await;
        let refused: Vec<Result<()>> = vec![
            handle.put_identity("a@s.whatsapp.net", [9; 32]).await,
            handle.delete_identity("a@s.whatsapp.net").await,
            handle
                .put_sessions_batch(&[(arc("s1"), Bytes::from_static(b"stale"))])
                .await,
            handle.delete_session("s1").await,
            handle
                .store_prekeys_batch(&[(7, Bytes::from_static(b"p7"))], false)
                .await,
            handle.put_sender_key("g::a", b"stale").await,
            handle.put_lid_mapping(&lid("100", "15550001111", 9)).await,
            handle
                .update_device_lists(vec![list("u", &[1, 2], None)])
                .await,
            handle.clear_mutation_macs("regular_low").await,
            handle.save(&CoreDevice::new()).await,
            handle.take_sent_message("c", "m").await.map(drop),
        ];
        for (i, r) in refused.iter().enumerate() {
            assert!(
                r.as_ref().is_err_and(crate::sql::is_fenced),
                "write {i}: {r:?}"
            );
        }
        assert_eq!(rows(&postgres, 7).await, before, "nothing changed");
        assert_eq!(claims.lost.load(SeqCst), refused.len() as u64);
        // The claim's epoch on another node is not this claim either.
        own(other, 3).await.unwrap();
        assert!(handle.put_identity("z", [1; 32]).await.is_err());

        // With no claim held, a write is refused before the database.
        *claims.held.lock().unwrap() = None;
        own(me, 3).await.unwrap();
        assert!(
            handle
                .put_identity("a@s.whatsapp.net", [8; 32])
                .await
                .is_err_and(|e| crate::sql::is_fenced(&e))
        );
        assert_eq!(rows(&postgres, 7).await, before);
        assert_eq!(claims.lost.load(SeqCst), refused.len() as u64 + 2);
        // Reads are never fenced.
        assert_eq!(
            handle.load_identity("a@s.whatsapp.net").await.unwrap(),
            Some([4; 32])
        );
    }

    /// Two writers of one device at once (two processes during a
    /// hand-over): the conditional upserts keep what the traits promise.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writers_lose_nothing_on_postgres() {
        let Some(pg) = crate::sql::tests::fresh_postgres() else {
            return;
        };
        let a = DeviceHandle::new(Arc::new(Db::open_postgres(&pg, 4).await.unwrap()), 1);
        let b = DeviceHandle::new(Arc::new(Db::open_postgres(&pg, 4).await.unwrap()), 1);
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..40i64 {
            let h = if i % 2 == 0 { a.clone() } else { b.clone() };
            tasks.spawn(async move {
                h.store_received_tc_token("j", format!("t{i}").as_bytes(), i)
                    .await
                    .unwrap();
                h.touch_tc_token_sender_timestamp("j", 100 - i)
                    .await
                    .unwrap();
                h.store_sent_message("c", &format!("m{i}"), b"p")
                    .await
                    .unwrap();
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
        let t = a.get_tc_token("j").await.unwrap().unwrap();
        assert_eq!((t.token, t.token_timestamp), (b"t39".to_vec(), 39));
        assert_eq!(t.sender_timestamp, Some(100));
        // Each sent message is taken once, whoever asks.
        let mut taken = 0;
        for i in 0..40 {
            let id = format!("m{i}");
            let (x, y) = tokio::join!(a.take_sent_message("c", &id), b.take_sent_message("c", &id));
            taken += usize::from(x.unwrap().is_some()) + usize::from(y.unwrap().is_some());
        }
        assert_eq!(taken, 40);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn handles_of_many_devices_share_one_store() {
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().join("keys.db").display().to_string();
        let db = Arc::new(Db::open_sqlite(&url).await.unwrap());
        let handles: Vec<DeviceHandle> = (1..=200)
            .map(|d| DeviceHandle::new(db.clone(), d))
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
        // One writer, its readers, the interactive reader and the
        // checkpoint's connection, whatever the number of devices: the
        // file is open a handful of times, not once per device.
        let open = std::fs::read_dir("/proc/self/fd")
            .map(|fds| {
                fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
                    .filter(|target| target.starts_with(dir.path()))
                    .count()
            })
            .unwrap_or(0);
        assert!(
            open <= 2 * (1 + crate::sql::READERS + 2) + 1,
            "{open} descriptors on the key store"
        );
    }
}
