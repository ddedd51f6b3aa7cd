//! [`LiveWhatsApp`]: the [`WhatsAppPort`] on whatsapp-rust.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;
use tokio::sync::{mpsc, watch};
use wagate_domain::{
    About, BlocklistEntry, ChatState, Clock, Group, GroupJid, GroupNotice, GroupParticipant,
    GroupRole, GroupSubject, InviteCode, Jid, JidKind, MembershipRequest, MessageId, PairingCode,
    ParticipantAction, ParticipantOutcome, ParticipantStatus, PhoneNumber, PictureType,
    ProfilePicture, QrCode, RequestAction, SessionErrorCode, SessionId,
};
use wagate_whatsapp_port::{
    GroupChange, MediaDownload, MediaRef, OutgoingContent, OutgoingMessage, SessionClaims,
    SessionEvent, SessionEventKind, SessionEventSink, WhatsAppError, WhatsAppPort,
};
use whatsapp_rust::Client;
use whatsapp_rust::bot::Bot;
use whatsapp_rust::features::BlockingError;
use whatsapp_rust::lid_pn_cache::LearningSource;
use whatsapp_rust::pair_code::PairCodeOptions;
use whatsapp_rust::usync::{UsyncContext, UsyncMode, UsyncProtocol, UsyncQuery, UsyncUser};
use whatsapp_rust::wacore::iq::contacts::{ProfilePictureSpec, ProfilePictureType};
use whatsapp_rust::wacore::iq::tctoken::{TcTokenConfig, is_tc_token_expired_with};
use whatsapp_rust::wacore::store::device::DevicePropsOverride;
use whatsapp_rust::wacore_binary::JidExt as _;
use whatsapp_rust::{SendOptions, UploadOptions};

use crate::config::{LiveConfig, LiveOptions};
use crate::devices::DeviceDirectory;
use crate::groups;
use crate::inbound::RecordingHook;
use crate::mapping::{self, iq_error};
use crate::media::{MediaHttp, MediaSink};
use crate::messages::{self, MediaHandle};
use crate::runner::{Forwarder, Runner, RunnerHandle, StopReason};
use crate::transport::{TransportProbe, WatchedTransport};
use crate::version::{VersionResolver, WebVersionSource};

/// WhatsApp's own chat endpoint, for messages.
const WHATSAPP_URL: &str = "wss://web.whatsapp.com/ws/chat";
/// How long a phone-number pairing code stays valid (WhatsApp Web's window).
const PAIR_CODE_TTL: time::Duration = time::Duration::minutes(3);

/// What every session's runner shares.
pub(crate) struct Shared {
    pub url: Option<String>,
    pub url_text: String,
    pub events: Arc<dyn SessionEventSink>,
    pub clock: Arc<dyn Clock>,
    pub versions: VersionResolver,
    pub devices: DeviceDirectory,
    pub options: LiveOptions,
    /// The one HTTP client (media) every session's client uses.
    pub media_http: MediaHttp,
    /// Places for media downloads running at once ([`MAX_DOWNLOADS`]).
    pub downloads: Arc<tokio::sync::Semaphore>,
    /// Places for logins under way ([`LiveOptions::logins_at_once`]).
    pub logins: Arc<tokio::sync::Semaphore>,
    /// Several gateways on PostgreSQL: the claims every device write names
    /// ([`LiveWhatsApp::fence_writes`]).
    pub claims: std::sync::OnceLock<Arc<dyn SessionClaims>>,
}

/// Media downloads running at once, all sessions together: each holds a
/// blocking thread (whatsapp-rust downloads and decrypts on one) for at
/// most the media host's time limits.
pub(crate) const MAX_DOWNLOADS: usize = 32;

/// How long a download waits for its reader (the client of the media
/// route) to take the next chunk before it stops.
const MEDIA_READER_PATIENCE: Duration = Duration::from_secs(30);

/// One session's place in the adapter.
#[derive(Default)]
pub(crate) struct Slot {
    /// Serializes this session's lifecycle calls (connect, disconnect,
    /// logout, remove); contact calls never take it.
    ops: tokio::sync::Mutex<()>,
    state: Mutex<SlotState>,
}

impl Slot {
    fn state(&self) -> MutexGuard<'_, SlotState> {
        // Every update is a few field writes; a panic cannot leave it torn.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn update(&self, f: impl FnOnce(&mut SlotState)) {
        f(&mut self.state());
    }
}

/// What a session's calls read; written by its runner. Never held across an
/// await.
#[derive(Default)]
pub(crate) struct SlotState {
    pub runner: Option<RunnerHandle>,
    pub client: Option<Arc<Client>>,
    /// Logged in and ready: live calls may go out.
    pub online: bool,
    /// Showing QR codes (socket up, not linked).
    pub pairing: bool,
    /// The runner's attempt ended for good; it is closing and will exit.
    pub ended: bool,
    pub qr: Option<QrCode>,
    pub pair_code: Option<CachedPairCode>,
}

/// The last phone-number code, reused while valid for the same number.
pub(crate) struct CachedPairCode {
    phone: String,
    code: String,
    expires_at: OffsetDateTime,
}

/// The live WhatsApp adapter: one whatsapp-rust client per connected
/// session, every device's keys in one store (a SQLite file or PostgreSQL). See the crate docs.
pub struct LiveWhatsApp {
    shared: Arc<Shared>,
    slots: Mutex<HashMap<SessionId, Arc<Slot>>>,
    closing: AtomicBool,
}

impl fmt::Debug for LiveWhatsApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveWhatsApp")
            .field("url", &self.shared.url_text)
            .field("sessions", &self.slots().len())
            .field("closing", &self.closing.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl LiveWhatsApp {
    /// Opens the key store and readies the adapter; nothing connects until
    /// [`WhatsAppPort::connect`] is called.
    ///
    /// # Errors
    ///
    /// [`WhatsAppError::Internal`] when the key store cannot be opened or
    /// prepared.
    pub async fn start(
        config: LiveConfig,
        events: Arc<dyn SessionEventSink>,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Self>, WhatsAppError> {
        Self::start_with(config, events, clock, LiveOptions::default()).await
    }

    /// [`LiveWhatsApp::start`] with non-default [`LiveOptions`] (reconnect
    /// pacing, jitter source, stop timeout).
    ///
    /// # Errors
    ///
    /// As [`LiveWhatsApp::start`].
    pub async fn start_with(
        config: LiveConfig,
        events: Arc<dyn SessionEventSink>,
        clock: Arc<dyn Clock>,
        options: LiveOptions,
    ) -> Result<Arc<Self>, WhatsAppError> {
        Self::start_inner(
            config,
            events,
            clock,
            options,
            Arc::new(WebVersionSource::new()),
        )
        .await
    }

    pub(crate) async fn start_inner(
        config: LiveConfig,
        events: Arc<dyn SessionEventSink>,
        clock: Arc<dyn Clock>,
        options: LiveOptions,
        version_source: Arc<dyn crate::version::VersionSource>,
    ) -> Result<Arc<Self>, WhatsAppError> {
        let devices = DeviceDirectory::open(&config.store)
            .await
            .map_err(WhatsAppError::Internal)?;
        let versions = VersionResolver::new(config.version, version_source, clock.clone());
        let media_http = MediaHttp::new(config.url.as_deref());
        let url_text = config
            .url
            .clone()
            .unwrap_or_else(|| WHATSAPP_URL.to_owned());
        tracing::info!(url = %url_text, store = %devices.place(), "live WhatsApp adapter ready");
        Ok(Arc::new(Self {
            shared: Arc::new(Shared {
                url: config.url,
                url_text,
                events,
                clock,
                versions,
                devices,
                logins: Arc::new(tokio::sync::Semaphore::new(options.logins_at_once.max(1))),
                options,
                media_http,
                downloads: Arc::new(tokio::sync::Semaphore::new(MAX_DOWNLOADS)),
                claims: std::sync::OnceLock::new(),
            }),
            slots: Mutex::new(HashMap::new()),
            closing: AtomicBool::new(false),
        }))
    }

    /// With several gateways sharing a PostgreSQL device store: from now on
    /// every device-state write of a client started here is conditional on
    /// the claim `claims` hold on its session, and one refused (another
    /// gateway claimed the session) is reported to `claims` and fails
    /// (set once; before any client starts).
    pub fn fence_writes(&self, claims: Arc<dyn SessionClaims>) {
        let _ = self.shared.claims.set(claims);
    }

    /// Closes every session's client cleanly (each within the stop timeout,
    /// all at once) and refuses new connections. Keeps every link.
    pub async fn shutdown(&self) {
        self.closing.store(true, Ordering::SeqCst);
        let slots: Vec<(SessionId, Arc<Slot>)> = self
            .slots()
            .iter()
            .map(|(id, slot)| (*id, slot.clone()))
            .collect();
        let stops = slots.into_iter().map(|(id, slot)| async move {
            let _ops = slot.ops.lock().await;
            self.stop_runner(&id, &slot, StopReason::Shutdown).await;
        });
        whatsapp_rust::futures::future::join_all(stops).await;
        tracing::info!("live WhatsApp adapter shut down");
    }

    fn slots(&self) -> MutexGuard<'_, HashMap<SessionId, Arc<Slot>>> {
        // Inserts and removes only; a panic cannot leave the map torn.
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn slot(&self, session: &SessionId) -> Arc<Slot> {
        self.slots().entry(*session).or_default().clone()
    }

    /// Whether `slot` is still session's slot in the map (not removed).
    fn is_current(&self, session: &SessionId, slot: &Arc<Slot>) -> bool {
        self.slots()
            .get(session)
            .is_some_and(|s| Arc::ptr_eq(s, slot))
    }

    fn existing_slot(&self, session: &SessionId) -> Option<Arc<Slot>> {
        self.slots().get(session).cloned()
    }

    async fn publish(&self, session: &SessionId, kind: SessionEventKind) {
        self.shared
            .events
            .publish(SessionEvent {
                session: *session,
                kind,
            })
            .await;
    }

    /// The client of a session that is online, or `NotConnected`.
    fn online(&self, session: &SessionId) -> Result<Arc<Client>, WhatsAppError> {
        let slot = self
            .existing_slot(session)
            .ok_or(WhatsAppError::NotConnected)?;
        let state = slot.state();
        match (&state.client, state.online) {
            (Some(client), true) => Ok(client.clone()),
            _ => Err(WhatsAppError::NotConnected),
        }
    }

    /// Stops the session's runner, if any, and waits for it (the caller
    /// holds the slot's `ops` lock).
    async fn stop_runner(&self, session: &SessionId, slot: &Slot, reason: StopReason) {
        let handle = slot.state().runner.take();
        if let Some(mut handle) = handle {
            let _ = handle.stop.send(Some(reason));
            // The runner's own close is bounded by the stop timeout; this
            // guards against it getting stuck anyway.
            let grace = self.shared.options.stop_timeout + Duration::from_secs(5);
            if tokio::time::timeout(grace, &mut handle.task).await.is_err() {
                tracing::warn!(session = %session, "session runner did not stop in time; aborting it");
                handle.task.abort();
            }
        }
        slot.update(|s| {
            s.client = None;
            s.ended = false;
            s.online = false;
            s.pairing = false;
            s.qr = None;
            s.pair_code = None;
        });
    }

    /// Logout: tells WhatsApp (through the running client when online, or a
    /// short-lived one when the device is linked but offline; best effort,
    /// bounded by the stop timeout), then erases the keys. The caller holds
    /// the slot's `ops` lock.
    async fn unlink(&self, session: &SessionId, slot: &Slot) -> Result<(), WhatsAppError> {
        let online = slot.state().online;
        self.stop_runner(session, slot, StopReason::Logout).await;
        if !online {
            let device = self
                .shared
                .devices
                .existing_device(session)
                .await
                .map_err(WhatsAppError::Internal)?;
            if let Some(device) = device {
                self.unlink_offline(session, device).await;
            }
        }
        self.erase_keys(session).await
    }

    /// Connects a linked device that has no running client just long enough
    /// to unlink it. Publishes nothing; failures are logged (the keys are
    /// erased either way).
    async fn unlink_offline(&self, session: &SessionId, device: i32) {
        if !matches!(self.shared.devices.linked_as(device).await, Ok(Some(_))) {
            return;
        }
        let (bot, mut events, _probe) = match self.build(session, device).await {
            Ok(built) => built,
            Err(e) => {
                tracing::warn!(session = %session, error = %e, "cannot unlink the device from WhatsApp");
                return;
            }
        };
        let client = bot.client();
        client.enable_auto_reconnect.store(false, Ordering::SeqCst);
        if !self.shared.versions.is_pinned() {
            match self.shared.versions.get().await {
                Ok(v) => crate::runner::seed_version(&client, v).await,
                Err(e) => {
                    tracing::warn!(session = %session, error = %e, "cannot unlink the device from WhatsApp");
                    return;
                }
            }
        }
        // `None` once the pass has ended (a finished JoinHandle must not be
        // polled again).
        let mut task = Some(tokio::spawn(bot.run()));
        let timeout = self.shared.options.stop_timeout;
        let told = tokio::time::timeout(timeout, async {
            while let Some(running) = task.as_mut() {
                tokio::select! {
                    event = events.recv() => match event.as_deref().and_then(mapping::observe) {
                        Some(mapping::Observed::Connected) => {
                            client.logout().await;
                            return true;
                        }
                        Some(mapping::Observed::Ended(_)) => return false,
                        _ if event.is_none() => return false,
                        _ => {}
                    },
                    _ = running => task = None,
                }
            }
            false
        })
        .await
        .unwrap_or(false);
        if !told {
            tracing::warn!(session = %session, "could not reach WhatsApp to unlink the device; its keys are erased anyway");
        }
        let closed = tokio::time::timeout(timeout, async {
            client.disconnect().await;
            if let Some(running) = task.as_mut() {
                let _ = running.await;
            }
        })
        .await;
        if closed.is_err()
            && let Some(running) = task
        {
            running.abort();
        }
    }

    /// Erases the session's device keys, if it has a device.
    async fn erase_keys(&self, session: &SessionId) -> Result<(), WhatsAppError> {
        let device = self
            .shared
            .devices
            .existing_device(session)
            .await
            .map_err(WhatsAppError::Internal)?;
        if let Some(device) = device {
            self.shared
                .devices
                .erase(device)
                .await
                .map_err(WhatsAppError::Internal)?;
        }
        Ok(())
    }

    /// Builds the session's client on its device store.
    async fn build(
        &self,
        session: &SessionId,
        device: i32,
    ) -> Result<
        (
            Bot,
            mpsc::UnboundedReceiver<Arc<whatsapp_rust::types::events::Event>>,
            Arc<TransportProbe>,
        ),
        WhatsAppError,
    > {
        let mut store = self.shared.devices.store_for(device);
        if let Some(claims) = self.shared.claims.get() {
            store = store.fenced(*session, claims.clone());
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let probe = Arc::new(TransportProbe::default());
        let mut builder = Bot::builder()
            .with_backend(store)
            .with_transport_factory(WatchedTransport::new(
                self.shared.url.as_deref(),
                probe.clone(),
            ))
            .with_http_client(self.shared.media_http.clone())
            .with_inbound_durability_hook(RecordingHook {
                session: *session,
                sink: self.shared.events.clone(),
            })
            .with_event_handler(Forwarder { tx })
            .with_device_props(DevicePropsOverride::new().with_os("wagate"))
            .skip_history_sync();
        if self.shared.versions.is_pinned()
            && let Ok(version) = self.shared.versions.get().await
        {
            builder = builder.with_version(version);
        }
        let bot = builder
            .build()
            .await
            .map_err(|e| WhatsAppError::Internal(format!("cannot build the client: {e}")))?;
        Ok((bot, rx, probe))
    }

    /// Makes sure the client knows both the LID and the phone number of a
    /// person (blocking needs both), asking WhatsApp (usync) when it does
    /// not.
    async fn learn_identity(
        &self,
        client: &Client,
        jid: &whatsapp_rust::Jid,
    ) -> Result<(), WhatsAppError> {
        let known = |r: Result<Option<_>, whatsapp_rust::anyhow::Error>| match r {
            Ok(entry) => Ok(entry.is_some()),
            Err(e) => Err(WhatsAppError::Internal(format!(
                "cannot read the LID mapping: {e:#}"
            ))),
        };
        if known(client.get_lid_pn_entry(jid).await)? {
            return Ok(());
        }
        let results = client
            .contacts()
            .is_on_whatsapp(std::slice::from_ref(jid))
            .await
            .map_err(|e| match e {
                whatsapp_rust::ContactError::Iq(iq) => iq_error(&iq),
                other => WhatsAppError::InvalidTarget(other.to_string()),
            })?;
        if known(client.get_lid_pn_entry(jid).await)? {
            return Ok(());
        }
        let registered = results.iter().any(|r| r.is_registered);
        Err(WhatsAppError::InvalidTarget(
            if registered || jid.is_lid() {
                format!("WhatsApp did not tell both the LID and the phone number of {jid}")
            } else {
                format!("{jid} is not on WhatsApp")
            },
        ))
    }

    /// Fails with `NotOnWhatsApp` when `to` is a phone number WhatsApp says
    /// has no account. Asked only while the client knows no LID for it (a
    /// known LID means the number is registered), so once per contact.
    async fn check_registered(
        &self,
        client: &Client,
        to: &whatsapp_rust::Jid,
    ) -> Result<(), WhatsAppError> {
        if !to.is_pn() || matches!(client.get_lid_pn_entry(to).await, Ok(Some(_))) {
            return Ok(());
        }
        let results = client
            .contacts()
            .is_on_whatsapp(std::slice::from_ref(to))
            .await
            .map_err(|e| match e {
                whatsapp_rust::ContactError::Iq(iq) => iq_error(&iq),
                other => WhatsAppError::InvalidTarget(other.to_string()),
            })?;
        if results.iter().any(|r| r.is_registered) {
            Ok(())
        } else {
            Err(WhatsAppError::NotOnWhatsApp)
        }
    }

    /// A stored, unexpired trusted-contact token for `jid`, the way
    /// `Contacts::get_profile_picture` looks one up (see the crate docs for
    /// what differs).
    async fn tc_token(&self, client: &Client, jid: &whatsapp_rust::Jid) -> Option<Vec<u8>> {
        let key = if jid.is_lid() {
            jid.user.to_string()
        } else {
            match client.get_lid_pn_entry(jid).await {
                Ok(Some(entry)) => entry.lid.to_string(),
                _ => jid.user.to_string(),
            }
        };
        let entry = client.tc_token().get(&key).await.ok().flatten()?;
        (!entry.token.is_empty()
            && !is_tc_token_expired_with(entry.token_timestamp, &TcTokenConfig::default()))
        .then_some(entry.token)
    }
}

fn person(jid: &Jid) -> Result<(), WhatsAppError> {
    if jid.kind().is_person() {
        Ok(())
    } else {
        Err(WhatsAppError::InvalidTarget(
            "must be a user (phone number or LID) JID".into(),
        ))
    }
}

impl LiveWhatsApp {
    /// Publishes the `Participants` notice of a membership change the
    /// account made (those it was done for, as the group now lists them).
    async fn changed(
        &self,
        client: &Client,
        session: &SessionId,
        group: &GroupJid,
        action: ParticipantAction,
        outcomes: &[ParticipantOutcome],
    ) {
        let done: Vec<&Jid> = outcomes
            .iter()
            .filter(|o| o.status == ParticipantStatus::Done)
            .map(|o| &o.jid)
            .collect();
        if done.is_empty() {
            return;
        }
        let now = groups::metadata(client, group).await.ok();
        let participants = done
            .into_iter()
            .map(|j| {
                now.as_ref()
                    .and_then(|g| g.participant(j).cloned())
                    .unwrap_or_else(|| GroupParticipant {
                        jid: j.clone(),
                        pn: (j.kind() == JidKind::User).then(|| j.clone()),
                        lid: (j.kind() == JidKind::Lid).then(|| j.clone()),
                        role: GroupRole::Member,
                    })
            })
            .collect();
        let by = client
            .pn()
            .and_then(|j| mapping::from_wa_jid(&j.to_non_ad()));
        self.publish(
            session,
            SessionEventKind::Group(GroupNotice::Participants {
                group: group.clone(),
                action,
                participants,
                by,
            }),
        )
        .await;
    }
}

fn blocking_error(e: BlockingError) -> WhatsAppError {
    match e {
        BlockingError::Iq(iq) => iq_error(&iq),
        BlockingError::InvalidJid(m) => WhatsAppError::InvalidTarget(m),
        other => WhatsAppError::Internal(format!("{other:#}")),
    }
}

fn presence_error(e: whatsapp_rust::features::PresenceError) -> WhatsAppError {
    match e {
        whatsapp_rust::features::PresenceError::Client(c) => {
            WhatsAppError::Unavailable(format!("presence not sent: {c}"))
        }
        other => WhatsAppError::Internal(format!("presence not sent: {other:#}")),
    }
}

#[async_trait]
impl WhatsAppPort for LiveWhatsApp {
    async fn connect(
        &self,
        session: &SessionId,
        linked_as: Option<Jid>,
    ) -> Result<(), WhatsAppError> {
        if self.closing.load(Ordering::SeqCst) {
            return Err(WhatsAppError::Internal(
                "the live adapter is shutting down".into(),
            ));
        }
        let slot = self.slot(session);
        let _ops = slot.ops.lock().await;
        if !self.is_current(session, &slot) {
            // Removed while we waited for it: start on a fresh slot, so no
            // runner lives in a slot nothing can reach.
            drop(_ops);
            return Box::pin(self.connect(session, linked_as)).await;
        }
        // `Err(state to tell again)` when a runner is already at work.
        let previous: Result<Option<RunnerHandle>, Option<SessionEventKind>> = {
            let mut state = slot.state();
            match &state.runner {
                Some(r) if !state.ended && !r.task.is_finished() => {
                    // Already connecting (or connected): at most, cut a
                    // reconnect pause short, and tell the state again (the
                    // gateway may have missed an event).
                    r.kick.notify_waiters();
                    let now = match (&state.client, state.online, state.pairing) {
                        (Some(client), true, _) => client
                            .pn()
                            .or_else(|| client.lid())
                            .and_then(|j| mapping::from_wa_jid(&j))
                            .map(|jid| SessionEventKind::Connected {
                                jid,
                                push_name: Some(client.push_name())
                                    .filter(|n| !n.trim().is_empty()),
                            }),
                        (_, _, true) => Some(SessionEventKind::Pairing),
                        _ => Some(SessionEventKind::Connecting),
                    };
                    Err(now)
                }
                _ => Ok(state.runner.take()),
            }
        };
        let previous = match previous {
            Ok(previous) => previous,
            Err(now) => {
                if let Some(kind) = now {
                    self.publish(session, kind).await;
                }
                return Ok(());
            }
        };
        if let Some(mut previous) = previous {
            // The last attempt ended for good and its runner is finishing
            // (its final event may already be recorded): let it finish
            // before starting anew.
            let grace = self.shared.options.stop_timeout + Duration::from_secs(5);
            if tokio::time::timeout(grace, &mut previous.task)
                .await
                .is_err()
            {
                tracing::warn!(session = %session, "a finished session runner did not exit; aborting it");
                previous.task.abort();
            }
        }
        let now = self
            .shared
            .clock
            .now()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let devices = &self.shared.devices;
        let device = devices
            .device_for(session, &now)
            .await
            .map_err(WhatsAppError::Internal)?;
        let stored = devices
            .linked_as(device)
            .await
            .map_err(WhatsAppError::Internal)?;
        match (&stored, &linked_as) {
            (None, Some(jid)) => {
                // The gateway believes the session is linked, but its keys
                // are gone: it cannot log in; say so instead of re-pairing
                // behind the caller's back.
                tracing::warn!(session = %session, jid = %jid, "device keys missing for a linked session");
                devices
                    .erase(device)
                    .await
                    .map_err(WhatsAppError::Internal)?;
                self.publish(
                    session,
                    SessionEventKind::LoggedOut {
                        error: Some(mapping::last_error(
                            SessionErrorCode::Internal,
                            "the device keys of this session are missing from the key store; \
                             connect again to link it anew",
                        )),
                    },
                )
                .await;
                return Ok(());
            }
            (Some(stored), Some(jid)) if mapping::from_wa_jid(stored).as_ref() != Some(jid) => {
                tracing::warn!(session = %session, "the key store is linked to another account than recorded; using the key store's");
            }
            _ => {}
        }
        let (bot, events, probe) = self.build(session, device).await?;
        let client = bot.client();
        let (stop_tx, stop_rx) = watch::channel(None);
        let kick = Arc::new(tokio::sync::Notify::new());
        slot.update(|s| {
            s.client = Some(client.clone());
            s.ended = false;
            s.online = false;
            s.pairing = false;
            s.qr = None;
            s.pair_code = None;
        });
        let runner = Runner {
            shared: self.shared.clone(),
            slot: slot.clone(),
            session: *session,
            device,
            client,
            bot: Some(bot),
            events,
            probe,
            stop: stop_rx,
            kick: kick.clone(),
        };
        let task = tokio::spawn(runner.run());
        slot.update(|s| {
            s.runner = Some(RunnerHandle {
                stop: stop_tx,
                kick,
                task,
            })
        });
        tracing::info!(session = %session, device, linked = stored.is_some(), "session connecting");
        Ok(())
    }

    async fn disconnect(&self, session: &SessionId) -> Result<(), WhatsAppError> {
        let Some(slot) = self.existing_slot(session) else {
            return Ok(());
        };
        let _ops = slot.ops.lock().await;
        self.stop_runner(session, &slot, StopReason::Disconnect)
            .await;
        Ok(())
    }

    async fn logout(&self, session: &SessionId) -> Result<(), WhatsAppError> {
        let slot = self.slot(session);
        let _ops = slot.ops.lock().await;
        self.unlink(session, &slot).await?;
        tracing::info!(session = %session, "session logged out; device keys erased");
        Ok(())
    }

    async fn remove(&self, session: &SessionId) -> Result<(), WhatsAppError> {
        let slot = self.slot(session);
        let _ops = slot.ops.lock().await;
        self.unlink(session, &slot).await?;
        self.shared
            .devices
            .forget(session)
            .await
            .map_err(WhatsAppError::Internal)?;
        // Out of the map while the slot is still held: a connect waiting on
        // it sees it is gone and starts on a fresh one.
        let mut slots = self.slots();
        if slots.get(session).is_some_and(|s| Arc::ptr_eq(s, &slot)) {
            slots.remove(session);
        }
        drop(slots);
        tracing::info!(session = %session, "session removed");
        Ok(())
    }

    async fn qr(&self, session: &SessionId) -> Result<QrCode, WhatsAppError> {
        let slot = self
            .existing_slot(session)
            .ok_or(WhatsAppError::NotPairing)?;
        let now = self.shared.clock.now();
        let state = slot.state();
        match &state.qr {
            Some(qr) if state.pairing && qr.expires_at > now => Ok(qr.clone()),
            _ => Err(WhatsAppError::NotPairing),
        }
    }

    async fn pairing_code(
        &self,
        session: &SessionId,
        phone: &PhoneNumber,
    ) -> Result<PairingCode, WhatsAppError> {
        let slot = self
            .existing_slot(session)
            .ok_or(WhatsAppError::NotPairing)?;
        let now = self.shared.clock.now();
        let client = {
            let state = slot.state();
            if !state.pairing {
                return Err(WhatsAppError::NotPairing);
            }
            if let Some(cached) = state
                .pair_code
                .as_ref()
                .filter(|c| c.phone == phone.digits() && c.expires_at > now)
            {
                return Ok(PairingCode::new(cached.code.clone()));
            }
            state.client.clone().ok_or(WhatsAppError::NotPairing)?
        };
        let options = PairCodeOptions {
            phone_number: phone.digits().to_owned(),
            // The name shown on the phone while linking; WhatsApp accepts
            // only real OS names here.
            display_os: Some("Linux".to_owned()),
            ..PairCodeOptions::default()
        };
        let code = client
            .pair_with_code(options)
            .await
            .map_err(|e| mapping::pair_error(&e))?;
        let code = mapping::format_pairing_code(&code);
        slot.update(|s| {
            s.pair_code = Some(CachedPairCode {
                phone: phone.digits().to_owned(),
                code: code.clone(),
                expires_at: now + PAIR_CODE_TTL,
            })
        });
        Ok(PairingCode::new(code))
    }

    async fn profile_picture(
        &self,
        session: &SessionId,
        jid: &Jid,
        kind: PictureType,
    ) -> Result<ProfilePicture, WhatsAppError> {
        let client = self.online(session)?;
        let wa = mapping::to_wa_jid(jid);
        let size = match kind {
            PictureType::Image => ProfilePictureType::Full,
            PictureType::Preview => ProfilePictureType::Preview,
        };
        let mut spec = ProfilePictureSpec::new(&wa, size);
        let own = [client.pn(), client.lid()]
            .iter()
            .flatten()
            .any(|me| me.is_same_user_as(&wa));
        if jid.kind().is_person()
            && !own
            && let Some(token) = self.tc_token(&client, &wa).await
        {
            spec = spec.with_tc_token(token);
        }
        match client.execute(spec).await {
            Ok(Some(p)) => mapping::picture(p, kind),
            Ok(None) => Err(WhatsAppError::NotFound(None)),
            Err(e) => Err(mapping::picture_error(&e)),
        }
    }

    async fn about(&self, session: &SessionId, jid: &Jid) -> Result<About, WhatsAppError> {
        person(jid)?;
        let client = self.online(session)?;
        let wa = mapping::to_wa_jid(jid);
        let mut protocols = vec![UsyncProtocol::Status];
        if jid.kind() == JidKind::User {
            protocols.push(UsyncProtocol::Lid);
        }
        let mut user = UsyncUser::from_jid(wa.clone());
        if let Some(token) = self.tc_token(&client, &wa).await {
            user = user.with_tc_token(token);
        }
        let query = UsyncQuery::new(
            UsyncMode::Full,
            UsyncContext::Background,
            protocols,
            vec![user],
        )
        .map_err(|e| WhatsAppError::Internal(format!("invalid usync query: {e}")))?;
        let response = client.query_usync(query).await.map_err(|e| iq_error(&e))?;
        let (about, lid) = mapping::about_from_usync(&response, &wa);
        if let Some(lid) = lid.filter(|l| l.is_lid() && wa.is_pn())
            && let Err(e) = client
                .add_lid_pn_mapping(&lid.user, &wa.user, LearningSource::Usync)
                .await
        {
            tracing::debug!(error = %e, "could not remember a LID mapping");
        }
        about
    }

    async fn block(&self, session: &SessionId, jid: &Jid) -> Result<(), WhatsAppError> {
        person(jid)?;
        let client = self.online(session)?;
        let wa = mapping::to_wa_jid(jid);
        self.learn_identity(&client, &wa).await?;
        client.blocking().block(&wa).await.map_err(blocking_error)
    }

    async fn unblock(&self, session: &SessionId, jid: &Jid) -> Result<(), WhatsAppError> {
        person(jid)?;
        let client = self.online(session)?;
        let wa = mapping::to_wa_jid(jid);
        if !wa.is_lid() {
            self.learn_identity(&client, &wa).await?;
        }
        client.blocking().unblock(&wa).await.map_err(blocking_error)
    }

    async fn blocklist(&self, session: &SessionId) -> Result<Vec<BlocklistEntry>, WhatsAppError> {
        let client = self.online(session)?;
        let entries = client
            .blocking()
            .get_blocklist()
            .await
            .map_err(blocking_error)?;
        let mut out = Vec::with_capacity(entries.len());
        for entry in entries {
            let listed = entry.jid.to_non_ad();
            let Some(jid) = mapping::from_wa_jid(&listed) else {
                tracing::debug!(jid = %listed, "skipping a blocklist entry of an unknown kind");
                continue;
            };
            let phone_jid = if listed.is_pn() {
                Some(jid.clone())
            } else {
                match client.get_lid_pn_entry(&listed).await {
                    Ok(Some(e)) => Jid::user(&e.phone_number).ok(),
                    _ => None,
                }
            };
            out.push(BlocklistEntry { jid, phone_jid });
        }
        Ok(out)
    }

    async fn groups(&self, session: &SessionId) -> Result<Vec<Group>, WhatsAppError> {
        let client = self.online(session)?;
        groups::participating(&client).await
    }

    async fn group(&self, session: &SessionId, group: &GroupJid) -> Result<Group, WhatsAppError> {
        let client = self.online(session)?;
        groups::metadata(&client, group).await
    }

    async fn create_group(
        &self,
        session: &SessionId,
        subject: &GroupSubject,
        participants: &[Jid],
    ) -> Result<(Group, Vec<ParticipantOutcome>), WhatsAppError> {
        let client = self.online(session)?;
        let (group, outcomes) = groups::create(&client, subject, participants).await?;
        self.publish(
            session,
            SessionEventKind::Group(GroupNotice::Joined {
                group: Box::new(group.clone()),
                by: None,
            }),
        )
        .await;
        Ok((group, outcomes))
    }

    async fn update_group(
        &self,
        session: &SessionId,
        group: &GroupJid,
        change: &GroupChange,
    ) -> Result<(), WhatsAppError> {
        let client = self.online(session)?;
        groups::update(&client, group, change).await?;
        let after = groups::metadata(&client, group).await?;
        let me = client
            .pn()
            .and_then(|j| mapping::from_wa_jid(&j.to_non_ad()));
        self.publish(
            session,
            SessionEventKind::Group(GroupNotice::Updated {
                group: group.clone(),
                subject: change.subject.as_ref().map(|_| after.subject.clone()),
                description: change
                    .description
                    .as_ref()
                    .map(|_| after.description.clone()),
                settings: (!change.settings.is_empty()).then_some(after.settings),
                by: me,
            }),
        )
        .await;
        Ok(())
    }

    async fn change_participants(
        &self,
        session: &SessionId,
        group: &GroupJid,
        action: ParticipantAction,
        participants: &[Jid],
    ) -> Result<Vec<ParticipantOutcome>, WhatsAppError> {
        let client = self.online(session)?;
        let outcomes = groups::participants(&client, group, action, participants).await?;
        self.changed(&client, session, group, action, &outcomes)
            .await;
        Ok(outcomes)
    }

    async fn invite_code(
        &self,
        session: &SessionId,
        group: &GroupJid,
        revoke: bool,
    ) -> Result<InviteCode, WhatsAppError> {
        let client = self.online(session)?;
        groups::invite(&client, group, revoke).await
    }

    async fn join_group(
        &self,
        session: &SessionId,
        code: &InviteCode,
    ) -> Result<GroupJid, WhatsAppError> {
        let client = self.online(session)?;
        let jid = groups::join(&client, code).await?;
        // A member now (not when the group wants approval first).
        if let Ok(group) = groups::metadata(&client, &jid).await {
            self.publish(
                session,
                SessionEventKind::Group(GroupNotice::Joined {
                    group: Box::new(group),
                    by: None,
                }),
            )
            .await;
        }
        Ok(jid)
    }

    async fn leave_group(
        &self,
        session: &SessionId,
        group: &GroupJid,
    ) -> Result<(), WhatsAppError> {
        let client = self.online(session)?;
        groups::leave(&client, group).await?;
        self.publish(
            session,
            SessionEventKind::Group(GroupNotice::Left {
                group: group.clone(),
                by: None,
            }),
        )
        .await;
        Ok(())
    }

    async fn membership_requests(
        &self,
        session: &SessionId,
        group: &GroupJid,
    ) -> Result<Vec<MembershipRequest>, WhatsAppError> {
        let client = self.online(session)?;
        groups::requests(&client, group).await
    }

    async fn answer_requests(
        &self,
        session: &SessionId,
        group: &GroupJid,
        action: RequestAction,
        participants: &[Jid],
    ) -> Result<Vec<ParticipantOutcome>, WhatsAppError> {
        let client = self.online(session)?;
        let outcomes = groups::answer(&client, group, action, participants).await?;
        if action == RequestAction::Approve {
            self.changed(&client, session, group, ParticipantAction::Add, &outcomes)
                .await;
        }
        Ok(outcomes)
    }

    async fn send_message(
        &self,
        session: &SessionId,
        message: &OutgoingMessage,
    ) -> Result<(), WhatsAppError> {
        let to_group = message.to.kind() == JidKind::Group;
        if !to_group {
            person(&message.to)?;
        }
        let client = self.online(session)?;
        let to = mapping::to_wa_jid(&message.to);
        if !to_group {
            self.check_registered(&client, &to).await?;
        }
        let body = match &message.content {
            OutgoingContent::Text(text) => messages::text_message(text, message.reply_to.as_ref()),
            OutgoingContent::Media(media) => {
                let kind = messages::media_type(media.kind)?;
                let upload = client
                    .upload(media.data.clone(), kind, UploadOptions::new())
                    .await
                    .map_err(|e| messages::media_error(false, &e))?;
                messages::media_message(media, upload, message.reply_to.as_ref())?
            }
            OutgoingContent::Rich(rich) => messages::rich_message(rich, message.reply_to.as_ref()),
        };
        let body = messages::with_mentions(body, &message.mentions);
        settle_signal_state(&client).await?;
        client
            .send_message_with_options(
                to,
                body,
                SendOptions::default().with_message_id(message.id.as_str()),
            )
            .await
            .map_err(|e| messages::send_error(&e))?;
        Ok(())
    }

    async fn send_reaction(
        &self,
        session: &SessionId,
        chat: &Jid,
        target: &MessageId,
        target_author: Option<Jid>,
        emoji: &str,
    ) -> Result<(), WhatsAppError> {
        if chat.kind() != JidKind::Group {
            person(chat)?;
        }
        let client = self.online(session)?;
        let key = messages::reaction_key(chat, target, target_author.as_ref());
        settle_signal_state(&client).await?;
        client
            .send_reaction(mapping::to_wa_jid(chat), key, emoji)
            .await
            .map_err(|e| messages::send_error(&e))?;
        Ok(())
    }

    async fn edit_message(
        &self,
        session: &SessionId,
        chat: &Jid,
        target: &MessageId,
        text: &str,
    ) -> Result<(), WhatsAppError> {
        person(chat)?;
        let client = self.online(session)?;
        settle_signal_state(&client).await?;
        client
            .edit_message(
                mapping::to_wa_jid(chat),
                target.as_str(),
                messages::text_message(text, None),
            )
            .await
            .map_err(|e| messages::send_error(&e))?;
        Ok(())
    }

    async fn revoke_message(
        &self,
        session: &SessionId,
        chat: &Jid,
        target: &MessageId,
    ) -> Result<(), WhatsAppError> {
        person(chat)?;
        let client = self.online(session)?;
        settle_signal_state(&client).await?;
        client
            .revoke_message(
                mapping::to_wa_jid(chat),
                target.as_str(),
                whatsapp_rust::RevokeType::Sender,
            )
            .await
            .map_err(|e| messages::send_error(&e))?;
        Ok(())
    }

    async fn send_chat_state(
        &self,
        session: &SessionId,
        chat: &Jid,
        state: ChatState,
    ) -> Result<(), WhatsAppError> {
        use whatsapp_rust::features::ChatStateType;
        person(chat)?;
        let client = self.online(session)?;
        let state = match state {
            ChatState::Typing => ChatStateType::Composing,
            ChatState::Recording => ChatStateType::Recording,
            ChatState::Paused => ChatStateType::Paused,
        };
        client
            .chatstate()
            .send(&mapping::to_wa_jid(chat), state)
            .await
            .map_err(|e| WhatsAppError::Unavailable(format!("chat state not sent: {e}")))
    }

    async fn set_presence(
        &self,
        session: &SessionId,
        available: bool,
    ) -> Result<(), WhatsAppError> {
        let client = self.online(session)?;
        let presence = client.presence();
        let sent = if available {
            presence.set_available().await
        } else {
            presence.set_unavailable().await
        };
        sent.map_err(presence_error)
    }

    async fn subscribe_presence(
        &self,
        session: &SessionId,
        jid: &Jid,
    ) -> Result<(), WhatsAppError> {
        person(jid)?;
        let client = self.online(session)?;
        client
            .presence()
            .subscribe(mapping::to_wa_jid(jid))
            .await
            .map_err(presence_error)
    }

    async fn mark_read(
        &self,
        session: &SessionId,
        chat: &Jid,
        sender: &Jid,
        ids: &[MessageId],
    ) -> Result<(), WhatsAppError> {
        // In a group the receipt names the member who wrote the messages;
        // one to one it names nobody.
        let participant = if chat.kind() == JidKind::Group {
            Some(mapping::to_wa_jid(sender))
        } else {
            person(chat)?;
            None
        };
        let client = self.online(session)?;
        let ids: Vec<&str> = ids.iter().map(MessageId::as_str).collect();
        client
            .mark_as_read(&mapping::to_wa_jid(chat), participant.as_ref(), &ids)
            .await
            .map_err(|e| messages::receipt_error(&e))
    }

    async fn download_media(
        &self,
        session: &SessionId,
        media: &MediaRef,
        max_bytes: u64,
    ) -> Result<MediaDownload, WhatsAppError> {
        let handle = MediaHandle::decode(media).ok_or(WhatsAppError::NotFound(None))?;
        // `None` also for a direct path that could leave the media host.
        let params = handle
            .download_params()
            .ok_or(WhatsAppError::NotFound(None))?;
        if handle.file_length > max_bytes {
            return Err(WhatsAppError::Internal(format!(
                "the media is {} bytes, over the limit of {max_bytes}",
                handle.file_length
            )));
        }
        let client = self.online(session)?;
        // Each download holds a blocking thread: a bounded number at once.
        let place = self
            .shared
            .downloads
            .clone()
            .try_acquire_owned()
            .map_err(|_| WhatsAppError::Unavailable("too many media downloads at once".into()))?;
        let (tx, download) = MediaDownload::channel();
        let sink = MediaSink::new(
            tx.clone(),
            tokio::runtime::Handle::current(),
            max_bytes,
            MEDIA_READER_PATIENCE,
        );
        tokio::spawn(async move {
            let _place = place;
            match client.download_from_params_to_writer(&params, sink).await {
                Ok(sink) => sink.finish().await,
                Err(e) => {
                    tracing::debug!(error = %e, "media download stopped");
                    tx.fail(messages::media_error(true, &e)).await;
                }
            }
        });
        // Answered once the first bytes are in (or it failed before them);
        // dropping the answer stops the download.
        download.started().await
    }
}

/// Writes the Signal state the client holds only in memory before a send
/// puts any of it on the wire. whatsapp-rust writes receive-side ratchet
/// steps behind (a 25 ms window) and flushes before a send only when the
/// send raises a counter lease; but a send right after a receive carries
/// the new ratchet key made by that receive. Killed inside the window, the
/// gateway would restart without the key the contact now answers to, and
/// every later message from that contact would fail to decrypt (found by
/// `bench/messages.sh`'s kill -9 run). A receive landing between this flush
/// and the send's encryption still has the window; the fix for that is in
/// whatsapp-rust's send path.
async fn settle_signal_state(client: &Client) -> Result<(), WhatsAppError> {
    client.flush_pending_signal_state().await.map_err(|e| {
        tracing::warn!(error = %e, "cannot write the Signal state before a send");
        WhatsAppError::Unavailable("the device store cannot be written".into())
    })
}

#[cfg(test)]
mod tests {
    //! The unpinned-version path against the simulator (the version source
    //! is scripted: no internet in tests).

    use std::sync::Mutex as StdMutex;

    use wagate_domain::SystemClock;

    use super::*;
    use crate::config::{Jitter, ReconnectPolicy};
    use crate::version::VersionSource;

    #[derive(Debug, Default)]
    struct Sink {
        events: StdMutex<Vec<SessionEvent>>,
        notify: tokio::sync::Notify,
    }

    impl Sink {
        async fn wait(&self, want: impl Fn(&SessionEventKind) -> bool) -> SessionEventKind {
            let found = tokio::time::timeout(Duration::from_secs(60), async {
                loop {
                    let notified = self.notify.notified();
                    tokio::pin!(notified);
                    notified.as_mut().enable();
                    if let Some(e) = self.events.lock().unwrap().iter().find(|e| want(&e.kind)) {
                        return e.kind.clone();
                    }
                    notified.await;
                }
            })
            .await;
            found.unwrap_or_else(|_| panic!("{:#?}", self.events.lock().unwrap()))
        }
    }

    #[async_trait]
    impl SessionEventSink for Sink {
        async fn publish(&self, event: SessionEvent) {
            self.events.lock().unwrap().push(event);
            self.notify.notify_waiters();
        }

        async fn record_messages(
            &self,
            _session: &SessionId,
            _messages: &[wagate_whatsapp_port::InboundMessage],
        ) -> Result<(), wagate_whatsapp_port::NotRecorded> {
            Ok(())
        }
    }

    #[derive(Debug)]
    struct Fixed(Result<(u32, u32, u32), String>);

    #[async_trait]
    impl VersionSource for Fixed {
        async fn fetch(&self) -> Result<(u32, u32, u32), String> {
            self.0.clone()
        }
    }

    #[derive(Debug)]
    struct Middle;
    impl Jitter for Middle {
        fn sample(&self) -> f64 {
            0.5
        }
    }

    async fn adapter(
        url: String,
        dir: &tempfile::TempDir,
        source: Fixed,
    ) -> (Arc<LiveWhatsApp>, Arc<Sink>) {
        let sink = Arc::new(Sink::default());
        let config = LiveConfig {
            url: Some(url),
            version: None,
            store: crate::KeyStoreLocation::Sqlite(dir.path().join("keys.db")),
        };
        let options = LiveOptions {
            reconnect: ReconnectPolicy {
                initial: Duration::from_millis(50),
                max: Duration::from_millis(200),
                jitter: 0.0,
            },
            jitter: Arc::new(Middle),
            stop_timeout: Duration::from_secs(10),
            logins_at_once: crate::DEFAULT_LOGINS_AT_ONCE,
        };
        let live = LiveWhatsApp::start_inner(
            config,
            sink.clone(),
            Arc::new(SystemClock),
            options,
            Arc::new(source),
        )
        .await
        .unwrap();
        (live, sink)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_learned_version_is_handed_to_the_client() {
        let sim = wagate_whatsapp_sim::Simulator::start(wagate_whatsapp_sim::World::empty())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (live, sink) = adapter(sim.url(), &dir, Fixed(Ok((2, 3000, 1042742319)))).await;
        let s = SessionId::parse("sess_01HZY0N4Q8ZK3J4M7ZC9W4X2QF").unwrap();
        live.connect(&s, None).await.unwrap();
        sink.wait(|k| *k == SessionEventKind::Pairing).await;
        let client = live
            .existing_slot(&s)
            .unwrap()
            .state()
            .client
            .clone()
            .unwrap();
        let device = client.persistence_manager().get_device_snapshot();
        assert_eq!(
            (
                device.app_version_primary,
                device.app_version_secondary,
                device.app_version_tertiary
            ),
            (2, 3000, 1042742319)
        );
        let qr = live.qr(&s).await.unwrap();
        sim.admin().scan_qr(&qr.code, "15550001111").await.unwrap();
        sink.wait(|k| matches!(k, SessionEventKind::Connected { .. }))
            .await;
        live.shutdown().await;
        sim.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_version_means_unreachable() {
        let dir = tempfile::tempdir().unwrap();
        let (live, sink) = adapter(
            "ws://127.0.0.1:9/ws/chat".into(),
            &dir,
            Fixed(Err("no route to host".into())),
        )
        .await;
        let s = SessionId::parse("sess_01HZY0N4Q8ZK3J4M7ZC9W4X2QF").unwrap();
        live.connect(&s, None).await.unwrap();
        let kind = sink
            .wait(|k| matches!(k, SessionEventKind::Disconnected { .. }))
            .await;
        let SessionEventKind::Disconnected { error: Some(e) } = kind else {
            panic!("{kind:?}");
        };
        assert_eq!(e.code, SessionErrorCode::Unreachable);
        assert!(e.message.contains("WhatsApp Web version"), "{}", e.message);
        live.shutdown().await;
    }
}
