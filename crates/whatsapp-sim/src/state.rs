//! The simulator's mutable state: accounts, their linked devices and
//! blocklists, pairing in progress, and the live connections.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use wacore::libsignal::protocol::KeyPair;
use wacore_binary::Node;

use crate::noise::ServerKeys;
use crate::signal::AppStateKey;
use crate::world::{World, derived_lid};

/// What a connection task is asked to do from outside.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// Send this stanza.
    Node(Node),
    /// Send this stanza (if any), then close the connection.
    Close(Option<Node>),
    /// Close the TCP connection at once, without a goodbye.
    Drop,
}

/// A companion's keys as it registered them (pairing) or uploaded them.
#[derive(Debug, Clone)]
pub(crate) struct Registration {
    pub noise_pub: [u8; 32],
    pub identity_pub: [u8; 32],
    pub registration_id: u32,
    pub signed_pre_key: SignedPreKey,
    pub platform: String,
}

/// A signed pre-key.
#[derive(Debug, Clone)]
pub(crate) struct SignedPreKey {
    pub id: u32,
    pub public: Vec<u8>,
    pub signature: Vec<u8>,
}

/// A linked companion device of an account.
#[derive(Debug, Clone)]
pub(crate) struct Device {
    pub id: u16,
    pub reg: Registration,
    pub key_index: u32,
    pub linked_at: i64,
    /// One-time pre-keys the device uploaded (id → public key).
    pub pre_keys: BTreeMap<u32, Vec<u8>>,
    /// Whether the phone already shared the app-state key with it.
    pub key_shared: bool,
}

/// A blocked contact.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockedContact {
    /// The contact's LID JID (`…@lid`).
    pub jid: String,
    /// The contact's phone-number JID, when known.
    pub pn_jid: Option<String>,
    /// When it was blocked (Unix seconds).
    pub t: i64,
}

/// A WhatsApp account: the phone and what it has linked.
pub(crate) struct Account {
    pub phone: String,
    pub lid: String,
    pub push_name: Option<String>,
    /// The phone's identity key: signs companions' ADV identities.
    pub identity: KeyPair,
    pub raw_id: u32,
    /// The phone's Signal registration id.
    pub registration_id: u32,
    /// The app-state sync key the phone shares with new companions.
    pub app_key: AppStateKey,
    pub next_device: u16,
    pub next_key_index: u32,
    pub devices: BTreeMap<u16, Device>,
    /// Keyed by the contact's LID user.
    pub blocklist: BTreeMap<String, BlockedContact>,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("phone", &self.phone)
            .field("lid", &self.lid)
            .field("devices", &self.devices.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Account {
    fn new(phone: &str, lid: Option<String>, push_name: Option<String>) -> Self {
        let mut rng = rand_010::rng();
        Self {
            phone: phone.to_owned(),
            lid: lid.unwrap_or_else(|| derived_lid(phone)),
            push_name,
            identity: KeyPair::generate(&mut rng),
            raw_id: rand_010::random::<u32>() >> 1,
            registration_id: (rand_010::random::<u32>() % 16_380) + 1,
            app_key: AppStateKey {
                id: rand_010::random::<[u8; 6]>().to_vec(),
                data: rand_010::random(),
                raw_id: rand_010::random::<u32>() >> 1,
                timestamp_ms: wacore::time::now_millis(),
            },
            next_device: 1,
            next_key_index: 1,
            devices: BTreeMap::new(),
            blocklist: BTreeMap::new(),
        }
    }
}

/// A link the phone offered (pair-success sent), waiting for the companion
/// to countersign.
#[derive(Debug)]
pub(crate) struct PendingLink {
    pub iq_id: String,
    pub phone: String,
    pub device: u16,
    pub key_index: u32,
    pub reg: Registration,
    pub done: Option<oneshot::Sender<Result<LinkedDevice, String>>>,
}

/// A link-code pairing a companion started (`companion_hello`).
pub(crate) struct LinkCodeRequest {
    pub conn: u64,
    pub pairing_ref: String,
    pub wrapped_companion_ephemeral: Vec<u8>,
    /// Set once the phone entered the code: its ephemeral key and the
    /// companion's unwrapped one.
    pub primary: Option<(KeyPair, [u8; 32])>,
    pub done: Option<oneshot::Sender<Result<LinkedDevice, String>>>,
}

impl std::fmt::Debug for LinkCodeRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkCodeRequest")
            .field("conn", &self.conn)
            .field("pairing_ref", &self.pairing_ref)
            .field("code_entered", &self.primary.is_some())
            .finish_non_exhaustive()
    }
}

/// A device the phone just linked.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkedDevice {
    /// The device's phone-number JID (`phone:device@s.whatsapp.net`).
    pub jid: String,
    /// The device's LID JID (`lid:device@lid`).
    pub lid: String,
    /// The device number.
    pub device: u16,
}

/// One live connection.
#[derive(Debug)]
pub(crate) struct Conn {
    pub tx: mpsc::UnboundedSender<Outbound>,
    /// Set while an unpaired companion waits for a scan.
    pub registration: Option<Registration>,
    /// Set once logged in: (phone, device).
    pub login: Option<(String, u16)>,
    pub pending_link: Option<PendingLink>,
}

#[derive(Debug, Default)]
pub(crate) struct Inner {
    pub accounts: BTreeMap<String, Account>,
    /// Pairing ref → connection showing it.
    pub refs: HashMap<String, u64>,
    pub conns: HashMap<u64, Conn>,
    /// Phone → link-code pairing in progress.
    pub link_codes: HashMap<String, LinkCodeRequest>,
}

impl Inner {
    /// The account of `phone`, created if missing.
    pub(crate) fn account_mut(&mut self, phone: &str) -> &mut Account {
        self.accounts
            .entry(phone.to_owned())
            .or_insert_with(|| Account::new(phone, None, None))
    }

    /// The phone number whose account has this LID user.
    pub(crate) fn phone_of_lid(&self, lid: &str) -> Option<&str> {
        self.accounts
            .values()
            .find(|a| a.lid == lid)
            .map(|a| a.phone.as_str())
    }
}

/// Everything the simulator knows, shared by every connection and the
/// admin API.
pub(crate) struct Sim {
    pub world: World,
    pub keys: ServerKeys,
    inner: Mutex<Inner>,
    next_conn: AtomicU64,
    next_id: AtomicU64,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim").finish_non_exhaustive()
    }
}

impl Sim {
    pub(crate) fn new(world: World) -> anyhow::Result<Self> {
        let mut inner = Inner::default();
        for seed in world.accounts() {
            inner.accounts.insert(
                seed.phone.clone(),
                Account::new(&seed.phone, seed.lid.clone(), seed.push_name.clone()),
            );
        }
        Ok(Self {
            world,
            keys: ServerKeys::generate()?,
            inner: Mutex::new(inner),
            next_conn: AtomicU64::new(1),
            next_id: AtomicU64::new(1),
        })
    }

    /// The state, locked. Never held across an `.await`.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every update is a few map writes; a panic mid-update cannot leave
        // anything that later readers would misread, so keep going.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// A fresh stanza id for server-initiated IQs and notifications.
    pub(crate) fn next_stanza_id(&self) -> String {
        format!("sim-{}", self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// Forgets a closed connection and the refs it showed.
    pub(crate) fn remove_conn(&self, id: u64) {
        let mut g = self.lock();
        g.conns.remove(&id);
        g.refs.retain(|_, c| *c != id);
        g.link_codes.retain(|_, r| r.conn != id);
    }
}
