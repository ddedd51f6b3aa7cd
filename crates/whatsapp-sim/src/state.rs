//! The simulator's mutable state: accounts, their linked devices and
//! blocklists, pairing in progress, and the live connections.
//!
//! What must survive a restart (accounts, devices, keys, blocklists) is
//! reached through [`Inner::accounts_mut`] / [`Inner::account_mut`], which
//! count a change; [`Sim::persist`] writes the state file when that count
//! moved (see `persist.rs`).

use std::collections::{BTreeMap, HashMap};
use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc, oneshot};
use wacore::libsignal::protocol::KeyPair;
use wacore_binary::Node;

use crate::SimError;
use crate::messaging::{MediaStore, Messaging};
use crate::noise::ServerKeys;
use crate::persist::{self, StateError, StateFile};
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
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
    pub(crate) fn new(phone: &str, lid: Option<String>, push_name: Option<String>) -> Self {
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
    /// Set once logged in: (phone, device). Cleared when the login is
    /// replaced or the device unlinked (the connection is then closing).
    pub login: Option<(String, u16)>,
    /// The device it logged in as, kept until the connection is forgotten
    /// (even once replaced): what [`Inner::per_device`] counts.
    pub device: Option<(String, u16)>,
    pub pending_link: Option<PendingLink>,
    /// Set once the logged-in client said `<active/>`: messages are
    /// delivered to it from then on.
    pub ready: bool,
    /// Its current login, for `GET /admin/logins` (moved to
    /// [`Inner::logins`] when it ends).
    pub login_record: Option<Login>,
    /// Contact phone → the JID this connection subscribed to its presence
    /// as: WhatsApp forgets subscriptions with the connection.
    pub subscriptions: HashMap<String, String>,
}

/// One login of a device: a connection that logged in as it, when, and
/// how it ended (`GET /admin/logins`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Login {
    /// The connection's number.
    pub conn: u64,
    /// The account's phone number and the device number.
    pub device: (String, u16),
    /// Unix milliseconds of the login.
    pub opened_ms: u64,
    /// Unix milliseconds of the close; `None` while open.
    pub closed_ms: Option<u64>,
    /// Why it closed (see [`crate::admin::Logins`]); `None` while open.
    pub cause: Option<&'static str>,
}

/// How many ended logins are kept (the oldest are dropped first).
pub(crate) const LOGINS_KEPT: usize = 100_000;

/// Now, in Unix milliseconds.
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[derive(Debug, Default)]
pub(crate) struct Inner {
    /// The persistent part: read with [`Inner::accounts`], change with
    /// [`Inner::accounts_mut`] / [`Inner::account_mut`] so the change is
    /// counted.
    accounts: BTreeMap<String, Account>,
    /// Contacts as Signal users, message logs and queues: read with
    /// [`Inner::messaging`], change with [`Inner::messaging_mut`].
    messaging: Messaging,
    /// Counts (possible) changes of `accounts` and `messaging`; the state file is rewritten
    /// when it moved since the last write.
    version: u64,
    /// Pairing ref → connection showing it.
    pub refs: HashMap<String, u64>,
    pub conns: HashMap<u64, Conn>,
    /// Phone → link-code pairing in progress.
    pub link_codes: HashMap<String, LinkCodeRequest>,
    /// While set and in the future, client connections are refused.
    pub outage_until: Option<Instant>,
    /// Client connections refused during outages since start.
    pub refused: u64,
    /// (phone, device) → connections that logged in as it and are not
    /// closed yet (a replaced one counts until it is closed).
    pub per_device: HashMap<(String, u16), usize>,
    /// (phone, device) → the connection logged in as it now (`Conn::login`):
    /// a login replaces that one without looking at every connection. An
    /// entry whose connection has closed or lost its login is stale, and
    /// checked against `Conn::login` before use.
    pub current_login: HashMap<(String, u16), u64>,
    /// Logins of a device while another connection of it was still logged
    /// in (before the replacement closed the older one).
    pub overlaps: u64,
    /// The most connections one device ever had logged in at once.
    pub max_per_device: usize,
    /// Connections closed because the same device connected again
    /// (`<stream:error><conflict type="replaced"/>`).
    pub replaced: u64,
    /// Ended logins, oldest first (at most [`LOGINS_KEPT`]).
    pub logins: std::collections::VecDeque<Login>,
    /// Presence and chat states (in memory only, as WhatsApp keeps none).
    pub presence: crate::presence::Presences,
}

impl Inner {
    /// The accounts, read-only.
    pub(crate) fn accounts(&self) -> &BTreeMap<String, Account> {
        &self.accounts
    }

    /// The accounts, to change: counts as a change of the persistent state.
    pub(crate) fn accounts_mut(&mut self) -> &mut BTreeMap<String, Account> {
        self.version = self.version.wrapping_add(1);
        &mut self.accounts
    }

    /// The messaging state, read-only.
    pub(crate) fn messaging(&self) -> &Messaging {
        &self.messaging
    }

    /// The messaging state, to change: counts as a change of the
    /// persistent state.
    pub(crate) fn messaging_mut(&mut self) -> &mut Messaging {
        self.version = self.version.wrapping_add(1);
        &mut self.messaging
    }

    /// The accounts (read-only) and the messaging state (to change) at
    /// once.
    pub(crate) fn accounts_and_messaging_mut(
        &mut self,
    ) -> (&mut BTreeMap<String, Account>, &mut Messaging) {
        self.version = self.version.wrapping_add(1);
        (&mut self.accounts, &mut self.messaging)
    }

    /// The account of `phone`, created if missing (a change of the
    /// persistent state).
    pub(crate) fn account_mut(&mut self, phone: &str) -> &mut Account {
        self.accounts_mut()
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

    /// Whether an outage refuses client connections now.
    pub(crate) fn in_outage(&self) -> bool {
        self.outage_until.is_some_and(|t| Instant::now() < t)
    }

    /// Counts connection `id` logging in as `device` (phone, device): an
    /// overlap when other connections of that device are still logged in
    /// (open). Returns how many others there are.
    pub(crate) fn count_login(&mut self, id: u64, device: (String, u16)) -> usize {
        self.end_login(id, "relogin");
        let Some(conn) = self.conns.get_mut(&id) else {
            return 0;
        };
        conn.device = Some(device.clone());
        conn.login_record = Some(Login {
            conn: id,
            device: device.clone(),
            opened_ms: unix_ms(),
            closed_ms: None,
            cause: None,
        });
        let live = self.per_device.entry(device).or_insert(0);
        let others = *live;
        *live += 1;
        let live = *live;
        if others > 0 {
            self.overlaps += 1;
        }
        self.max_per_device = self.max_per_device.max(live);
        others
    }

    /// Stops counting connection `id` as logged in (when it closes, for
    /// `cause`); a no-op when it was not.
    pub(crate) fn end_login(&mut self, id: u64, cause: &'static str) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if let Some(mut login) = conn.login_record.take() {
            login.closed_ms = Some(unix_ms());
            login.cause = Some(cause);
            if self.logins.len() >= LOGINS_KEPT {
                self.logins.pop_front();
            }
            self.logins.push_back(login);
        }
        let Some(device) = self.conns.get_mut(&id).and_then(|c| c.device.take()) else {
            return;
        };
        if let Some(live) = self.per_device.get_mut(&device) {
            *live = live.saturating_sub(1);
            if *live == 0 {
                self.per_device.remove(&device);
            }
        }
    }
}

/// The locked state. Dropping it wakes the state-file writer when the
/// persistent part changed meanwhile.
pub(crate) struct StateGuard<'a> {
    inner: MutexGuard<'a, Inner>,
    seen: u64,
    changed: &'a Notify,
}

impl Deref for StateGuard<'_> {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.inner
    }
}

impl DerefMut for StateGuard<'_> {
    fn deref_mut(&mut self) -> &mut Inner {
        &mut self.inner
    }
}

impl Drop for StateGuard<'_> {
    fn drop(&mut self) {
        if self.inner.version != self.seen {
            self.changed.notify_one();
        }
    }
}

/// Where the state is saved, and what was saved last.
#[derive(Debug)]
struct Store {
    path: PathBuf,
    /// The `Inner::version` the file holds.
    saved: AtomicU64,
    /// One writer at a time, so files are written in version order.
    writer: tokio::sync::Mutex<()>,
    /// The last write's error, until a write succeeds.
    error: Mutex<Option<String>>,
}

/// Everything the simulator knows, shared by every connection and the
/// admin API.
pub(crate) struct Sim {
    pub world: World,
    pub keys: ServerKeys,
    inner: Mutex<Inner>,
    next_conn: AtomicU64,
    next_id: AtomicU64,
    /// The state file, when there is one.
    store: Option<Store>,
    /// Notified when the persistent state changed.
    pub changed: Notify,
    /// Encrypted media the media host serves.
    pub media: MediaStore,
    /// The address it listens on (the media host).
    addr: std::sync::OnceLock<std::net::SocketAddr>,
    /// Where connections are served while they log in.
    pub login_threads: LoginThreads,
}

/// Threads of their own for connections that are logging in: the Noise
/// handshake and the login's costly answers (the key digest: ~800 ids)
/// come in bursts when thousands of clients reconnect at once, and on the
/// runtime that serves established connections they would queue every
/// request of a connection already logged in behind them. On threads of
/// their own, the operating system shares the CPU between the two.
pub(crate) struct LoginThreads {
    /// `None` only while it is dropped.
    runtime: Option<tokio::runtime::Runtime>,
    /// Connections served there now.
    serving: Arc<AtomicUsize>,
    /// How long a connection is served there at most.
    pub bound: Duration,
}

/// How long a connection is served on the login threads at most, unless
/// `SimulatorBuilder::login_phase` says otherwise.
pub(crate) const DEFAULT_LOGIN_PHASE: Duration = Duration::from_secs(10);

/// How many threads serve logins.
const LOGIN_THREADS: usize = 2;

/// A login served on the login threads; stopped when dropped (the
/// connection's task was), so it never outlives its connection.
pub(crate) struct LoginTask<T>(tokio::task::JoinHandle<T>);

impl<T> std::future::Future for LoginTask<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

impl<T> Drop for LoginTask<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One connection served on the login threads, until dropped.
struct Serving(Arc<AtomicUsize>);

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl LoginThreads {
    fn start() -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(LOGIN_THREADS)
            .thread_name("sim-login")
            .enable_all()
            .build()?;
        Ok(Self {
            runtime: Some(runtime),
            serving: Arc::new(AtomicUsize::new(0)),
            bound: DEFAULT_LOGIN_PHASE,
        })
    }

    /// Serves one connection's login, `task`, on the login threads; its
    /// output, or a `JoinError` when it panicked. Dropping the handle stops
    /// the task.
    pub(crate) fn spawn<F>(&self, task: F) -> LoginTask<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.serving.fetch_add(1, Ordering::Relaxed);
        let serving = Serving(self.serving.clone());
        let task = async move {
            let _serving = serving;
            task.await
        };
        LoginTask(match &self.runtime {
            Some(runtime) => runtime.spawn(task),
            None => tokio::spawn(task),
        })
    }

    /// How many connections are logging in on the login threads now.
    pub(crate) fn serving(&self) -> usize {
        self.serving.load(Ordering::Relaxed)
    }
}

impl Drop for LoginThreads {
    fn drop(&mut self) {
        // Dropped from async code too (the last `Arc<Sim>` of a test): a
        // runtime dropped there would panic, so it is let go instead.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim").finish_non_exhaustive()
    }
}

impl Sim {
    /// The simulator of `world`. With a `state` file, what it holds is
    /// loaded (accounts it knows win over the world's seeds) and the server
    /// keeps its saved Noise identity; the file is written by
    /// [`Sim::persist`].
    pub(crate) fn new(world: World, state: Option<PathBuf>) -> Result<Self, SimError> {
        let saved = match &state {
            Some(path) => persist::load(path)?,
            None => None,
        };
        let (keys, mut accounts, messaging) = match (saved, &state) {
            (Some(file), Some(path)) => {
                let (keys, accounts, messaging) =
                    file.restore().map_err(|reason| StateError::Corrupt {
                        path: path.display().to_string(),
                        reason,
                    })?;
                tracing::info!(
                    path = %path.display(),
                    accounts = accounts.len(),
                    "state loaded"
                );
                (keys, accounts, messaging)
            }
            _ => (
                ServerKeys::generate().map_err(|e| SimError::Init(e.to_string()))?,
                BTreeMap::new(),
                Messaging::default(),
            ),
        };
        for seed in world.accounts() {
            accounts.entry(seed.phone.clone()).or_insert_with(|| {
                Account::new(&seed.phone, seed.lid.clone(), seed.push_name.clone())
            });
        }
        let inner = Inner {
            accounts,
            messaging,
            // Differs from `saved` (0): the first persist writes the file.
            version: 1,
            ..Inner::default()
        };
        Ok(Self {
            world,
            keys,
            inner: Mutex::new(inner),
            next_conn: AtomicU64::new(1),
            next_id: AtomicU64::new(1),
            store: state.map(|path| Store {
                path,
                saved: AtomicU64::new(0),
                writer: tokio::sync::Mutex::new(()),
                error: Mutex::new(None),
            }),
            changed: Notify::new(),
            media: MediaStore::default(),
            addr: std::sync::OnceLock::new(),
            login_threads: LoginThreads::start().map_err(|e| SimError::Init(e.to_string()))?,
        })
    }

    /// Records the address it listens on.
    pub(crate) fn set_addr(&self, addr: std::net::SocketAddr) {
        let _ = self.addr.set(addr);
    }

    /// The media host clients are told about (`media_conn`): the
    /// simulator's own `host:port`.
    pub(crate) fn media_host(&self) -> String {
        self.addr
            .get()
            .map_or_else(|| "127.0.0.1".to_owned(), ToString::to_string)
    }

    /// The state, locked. Never held across an `.await`.
    pub(crate) fn lock(&self) -> StateGuard<'_> {
        // Every update is a few map writes; a panic mid-update cannot leave
        // anything that later readers would misread, so keep going.
        let inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        StateGuard {
            seen: inner.version,
            inner,
            changed: &self.changed,
        }
    }

    /// Whether there is a state file.
    pub(crate) fn has_store(&self) -> bool {
        self.store.is_some()
    }

    /// The last state-file write error, until a write succeeds.
    pub(crate) fn state_error(&self) -> Option<String> {
        let store = self.store.as_ref()?;
        store
            .error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Writes the state file if the persistent state changed since the last
    /// write (atomically: temporary file, fsync, rename). Returns once the
    /// file holds every change made before the call. A no-op without a
    /// state file.
    ///
    /// # Errors
    ///
    /// [`StateError::Write`] when the file cannot be written (also logged,
    /// and shown by the health route until a write succeeds).
    pub(crate) async fn persist(&self) -> Result<(), StateError> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        if self.lock().version == store.saved.load(Ordering::Acquire) {
            return Ok(());
        }
        let _writer = store.writer.lock().await;
        let (version, file) = {
            let g = self.lock();
            if g.version == store.saved.load(Ordering::Acquire) {
                return Ok(()); // another writer saved it meanwhile
            }
            (
                g.version,
                StateFile::capture(&g.accounts, &g.messaging, &self.keys),
            )
        };
        let path = store.path.clone();
        let written = tokio::task::spawn_blocking(move || file.write(&path))
            .await
            .unwrap_or_else(|e| {
                Err(StateError::Write {
                    path: store.path.display().to_string(),
                    source: std::io::Error::other(e.to_string()),
                })
            });
        let mut error = store
            .error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match written {
            Ok(()) => {
                store.saved.store(version, Ordering::Release);
                *error = None;
                Ok(())
            }
            Err(e) => {
                tracing::error!("{e}");
                *error = Some(e.to_string());
                Err(e)
            }
        }
    }

    /// Whether a new client connection must be refused now (an outage);
    /// counts the refusal.
    pub(crate) fn refuse_during_outage(&self) -> bool {
        let mut g = self.lock();
        let refuse = g.in_outage();
        if refuse {
            g.refused += 1;
            tracing::debug!("client connection refused: outage");
        }
        refuse
    }

    /// Starts an outage: every client connection is dropped now and new
    /// ones are refused for `duration` (zero ends an outage). Returns how
    /// many connections were dropped.
    pub(crate) fn outage(&self, duration: Duration) -> usize {
        let mut g = self.lock();
        g.outage_until = (!duration.is_zero()).then(|| Instant::now() + duration);
        let mut dropped = 0;
        for c in g.conns.values() {
            if c.tx.send(Outbound::Drop).is_ok() {
                dropped += 1;
            }
        }
        tracing::info!(?duration, dropped, "outage");
        dropped
    }

    pub(crate) fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// A fresh stanza id for server-initiated IQs and notifications.
    pub(crate) fn next_stanza_id(&self) -> String {
        format!("sim-{}", self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// Forgets a closed connection and the refs it showed.
    /// Forgets connection `id`, which closed for `cause`.
    pub(crate) fn remove_conn(&self, id: u64, cause: &'static str) {
        let mut g = self.lock();
        g.end_login(id, cause);
        if let Some(login) = g.conns.remove(&id).and_then(|c| c.login)
            && g.current_login.get(&login) == Some(&id)
        {
            g.current_login.remove(&login);
        }
        g.refs.retain(|_, c| *c != id);
        g.link_codes.retain(|_, r| r.conn != id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(inner: &mut Inner, id: u64) {
        let (tx, _rx) = mpsc::unbounded_channel();
        inner.conns.insert(
            id,
            Conn {
                tx,
                registration: None,
                ready: false,
                login: None,
                device: None,
                pending_link: None,
                login_record: None,
                subscriptions: HashMap::new(),
            },
        );
    }

    #[test]
    fn logins_of_one_device_are_counted_while_open() {
        let mut g = Inner::default();
        let dev = || ("15550001111".to_owned(), 1);
        assert_eq!((g.overlaps, g.max_per_device), (0, 0));
        open(&mut g, 1);
        assert_eq!(g.count_login(1, dev()), 0);
        // A reconnect after the first connection closed: no overlap.
        g.end_login(1, "closed");
        g.conns.remove(&1);
        open(&mut g, 2);
        assert_eq!(g.count_login(2, dev()), 0);
        assert_eq!((g.overlaps, g.max_per_device), (0, 1));
        // Another device of the same account is not an overlap either.
        open(&mut g, 3);
        assert_eq!(g.count_login(3, ("15550001111".to_owned(), 2)), 0);
        assert_eq!((g.overlaps, g.max_per_device), (0, 1));
        // Logins while connection 2 is open; a replaced one counts until
        // it is closed.
        open(&mut g, 4);
        assert_eq!(g.count_login(4, dev()), 1);
        open(&mut g, 5);
        assert_eq!(g.count_login(5, dev()), 2);
        assert_eq!((g.overlaps, g.max_per_device), (2, 3));
        g.end_login(2, "closed");
        g.end_login(2, "closed"); // idempotent
        g.end_login(4, "replaced");
        assert_eq!(g.per_device.get(&dev()), Some(&1));
        g.end_login(5, "dropped");
        assert_eq!(g.per_device.get(&dev()), None);
        // Every ended login is kept with its cause; 3's is still open.
        let ended: Vec<_> = g.logins.iter().map(|l| (l.conn, l.cause)).collect();
        assert_eq!(
            ended,
            [
                (1, Some("closed")),
                (2, Some("closed")),
                (4, Some("replaced")),
                (5, Some("dropped"))
            ]
        );
        assert!(g.logins.iter().all(|l| l.closed_ms >= Some(l.opened_ms)));
        let open = g.conns[&3].login_record.as_ref().unwrap();
        assert_eq!((open.closed_ms, open.cause), (None, None));
        assert_eq!((g.overlaps, g.max_per_device), (2, 3));
    }
}
