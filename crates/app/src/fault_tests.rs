//! The lifecycle under faults: a slow adapter, a registry whose writes fail,
//! a restart racing the user's requests, an update racing an event. Each
//! runs the real gateway, a real SQLite store, the real event recorder and
//! the fake adapter behind a wrapper that can hold or fail its calls.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;
use tokio::sync::Semaphore;
use wagate_domain::{
    About, BlocklistEntry, Jid, OrgId, PairingCode, PendingLifecycle, PhoneNumber, PictureType,
    ProfilePicture, QrCode, RateLimit, Session, SessionErrorCode, SessionId, SessionStatus,
    SystemClock,
};
use wagate_store::{
    MessageStore, OsEntropy, SessionPatch, SessionRegistry, SqliteStore, StoreError,
};
use wagate_whatsapp_port::{
    FakeWhatsApp, Fixtures, SessionEvent, SessionEventKind, SessionEventSink, WhatsAppError,
    WhatsAppPort,
};

use crate::tests::{NoCache, alice, principal};
use crate::{AppError, Gateway, GatewayDeps, SessionEventRecorder};

/// The fake adapter, with switches: hold lifecycle calls until released,
/// fail `connect`, or have a reconnect happen during a contact call.
#[derive(Debug)]
struct Switchboard {
    fake: FakeWhatsApp,
    events: Arc<dyn SessionEventSink>,
    hold: AtomicBool,
    gate: Semaphore,
    fail_connect: AtomicBool,
    reconnect_during_calls: AtomicBool,
    connects: AtomicUsize,
}

impl Switchboard {
    async fn held(&self) {
        if self.hold.load(Ordering::SeqCst)
            && let Ok(permit) = self.gate.acquire().await
        {
            permit.forget();
        }
    }

    fn release(&self) {
        self.gate.add_permits(1);
    }
}

#[async_trait]
impl WhatsAppPort for Switchboard {
    async fn connect(&self, s: &SessionId, jid: Option<Jid>) -> Result<(), WhatsAppError> {
        self.connects.fetch_add(1, Ordering::SeqCst);
        self.held().await;
        if self.fail_connect.load(Ordering::SeqCst) {
            return Err(WhatsAppError::Internal("device store broken".into()));
        }
        self.fake.connect(s, jid).await
    }
    async fn disconnect(&self, s: &SessionId) -> Result<(), WhatsAppError> {
        self.held().await;
        self.fake.disconnect(s).await
    }
    async fn logout(&self, s: &SessionId) -> Result<(), WhatsAppError> {
        self.held().await;
        self.fake.logout(s).await
    }
    async fn remove(&self, s: &SessionId) -> Result<(), WhatsAppError> {
        self.held().await;
        self.fake.remove(s).await
    }
    async fn qr(&self, s: &SessionId) -> Result<QrCode, WhatsAppError> {
        self.fake.qr(s).await
    }
    async fn pairing_code(
        &self,
        s: &SessionId,
        phone: &PhoneNumber,
    ) -> Result<PairingCode, WhatsAppError> {
        self.fake.pairing_code(s, phone).await
    }
    async fn profile_picture(
        &self,
        s: &SessionId,
        jid: &Jid,
        kind: PictureType,
    ) -> Result<ProfilePicture, WhatsAppError> {
        if self.reconnect_during_calls.load(Ordering::SeqCst) {
            // The connection drops and comes back while the call is out:
            // the call fails, and the adapter's events say it is back.
            let jid = Jid::parse("15550001111@s.whatsapp.net")
                .map_err(|e| WhatsAppError::Internal(e.to_string()))?;
            for kind in [
                SessionEventKind::Disconnected { error: None },
                SessionEventKind::Connected {
                    jid,
                    push_name: None,
                },
            ] {
                self.events
                    .publish(SessionEvent { session: *s, kind })
                    .await;
            }
            return Err(WhatsAppError::NotConnected);
        }
        self.fake.profile_picture(s, jid, kind).await
    }
    async fn about(&self, s: &SessionId, jid: &Jid) -> Result<About, WhatsAppError> {
        self.fake.about(s, jid).await
    }
    async fn block(&self, s: &SessionId, jid: &Jid) -> Result<(), WhatsAppError> {
        self.fake.block(s, jid).await
    }
    async fn unblock(&self, s: &SessionId, jid: &Jid) -> Result<(), WhatsAppError> {
        self.fake.unblock(s, jid).await
    }
    async fn blocklist(&self, s: &SessionId) -> Result<Vec<BlocklistEntry>, WhatsAppError> {
        self.fake.blocklist(s).await
    }
    async fn groups(&self, s: &SessionId) -> Result<Vec<wagate_domain::Group>, WhatsAppError> {
        self.fake.groups(s).await
    }
    async fn group(
        &self,
        s: &SessionId,
        g: &wagate_domain::GroupJid,
    ) -> Result<wagate_domain::Group, WhatsAppError> {
        self.fake.group(s, g).await
    }
    async fn create_group(
        &self,
        s: &SessionId,
        subject: &wagate_domain::GroupSubject,
        p: &[Jid],
    ) -> Result<(wagate_domain::Group, Vec<wagate_domain::ParticipantOutcome>), WhatsAppError> {
        self.fake.create_group(s, subject, p).await
    }
    async fn update_group(
        &self,
        s: &SessionId,
        g: &wagate_domain::GroupJid,
        c: &wagate_whatsapp_port::GroupChange,
    ) -> Result<(), WhatsAppError> {
        self.fake.update_group(s, g, c).await
    }
    async fn change_participants(
        &self,
        s: &SessionId,
        g: &wagate_domain::GroupJid,
        a: wagate_domain::ParticipantAction,
        p: &[Jid],
    ) -> Result<Vec<wagate_domain::ParticipantOutcome>, WhatsAppError> {
        self.fake.change_participants(s, g, a, p).await
    }
    async fn invite_code(
        &self,
        s: &SessionId,
        g: &wagate_domain::GroupJid,
        revoke: bool,
    ) -> Result<wagate_domain::InviteCode, WhatsAppError> {
        self.fake.invite_code(s, g, revoke).await
    }
    async fn join_group(
        &self,
        s: &SessionId,
        code: &wagate_domain::InviteCode,
    ) -> Result<wagate_domain::GroupJid, WhatsAppError> {
        self.fake.join_group(s, code).await
    }
    async fn leave_group(
        &self,
        s: &SessionId,
        g: &wagate_domain::GroupJid,
    ) -> Result<(), WhatsAppError> {
        self.fake.leave_group(s, g).await
    }
    async fn membership_requests(
        &self,
        s: &SessionId,
        g: &wagate_domain::GroupJid,
    ) -> Result<Vec<wagate_domain::MembershipRequest>, WhatsAppError> {
        self.fake.membership_requests(s, g).await
    }
    async fn answer_requests(
        &self,
        s: &SessionId,
        g: &wagate_domain::GroupJid,
        a: wagate_domain::RequestAction,
        p: &[Jid],
    ) -> Result<Vec<wagate_domain::ParticipantOutcome>, WhatsAppError> {
        self.fake.answer_requests(s, g, a, p).await
    }
    async fn send_message(
        &self,
        s: &SessionId,
        m: &wagate_whatsapp_port::OutgoingMessage,
    ) -> Result<(), WhatsAppError> {
        self.fake.send_message(s, m).await
    }
    async fn send_reaction(
        &self,
        s: &SessionId,
        chat: &Jid,
        target: &wagate_domain::MessageId,
        author: Option<Jid>,
        emoji: &str,
    ) -> Result<(), WhatsAppError> {
        self.fake
            .send_reaction(s, chat, target, author, emoji)
            .await
    }
    async fn edit_message(
        &self,
        s: &SessionId,
        chat: &Jid,
        target: &wagate_domain::MessageId,
        text: &str,
    ) -> Result<(), WhatsAppError> {
        self.fake.edit_message(s, chat, target, text).await
    }
    async fn revoke_message(
        &self,
        s: &SessionId,
        chat: &Jid,
        target: &wagate_domain::MessageId,
    ) -> Result<(), WhatsAppError> {
        self.fake.revoke_message(s, chat, target).await
    }
    async fn send_chat_state(
        &self,
        s: &SessionId,
        chat: &Jid,
        state: wagate_domain::ChatState,
    ) -> Result<(), WhatsAppError> {
        self.fake.send_chat_state(s, chat, state).await
    }
    async fn set_presence(&self, s: &SessionId, available: bool) -> Result<(), WhatsAppError> {
        self.fake.set_presence(s, available).await
    }
    async fn subscribe_presence(&self, s: &SessionId, jid: &Jid) -> Result<(), WhatsAppError> {
        self.fake.subscribe_presence(s, jid).await
    }
    async fn mark_read(
        &self,
        s: &SessionId,
        chat: &Jid,
        sender: &Jid,
        ids: &[wagate_domain::MessageId],
    ) -> Result<(), WhatsAppError> {
        self.fake.mark_read(s, chat, sender, ids).await
    }
    async fn download_media(
        &self,
        s: &SessionId,
        media: &wagate_whatsapp_port::MediaRef,
        max_bytes: u64,
    ) -> Result<wagate_whatsapp_port::MediaDownload, WhatsAppError> {
        self.fake.download_media(s, media, max_bytes).await
    }
}

/// The store, failing `record_observed` (adapter events) while
/// `failures_left` is above zero, and the write that ends a logout or
/// delete (`pending` cleared) while `finish_failures_left` is; counting
/// the writes of the WhatsApp side (one session each, and batches).
#[derive(Debug)]
struct FlakyRegistry {
    inner: Arc<SqliteStore>,
    failures_left: AtomicUsize,
    finish_failures_left: AtomicUsize,
    observed_writes: AtomicUsize,
    batch_writes: AtomicUsize,
}

#[async_trait]
impl SessionRegistry for FlakyRegistry {
    async fn insert(&self, s: &Session) -> Result<(), StoreError> {
        self.inner.insert(s).await
    }
    async fn get(&self, org: &OrgId, id: &SessionId) -> Result<Option<Session>, StoreError> {
        self.inner.get(org, id).await
    }
    async fn list(
        &self,
        org: &OrgId,
        page: wagate_domain::PageRequest,
    ) -> Result<wagate_domain::Page<Session>, StoreError> {
        self.inner.list(org, page).await
    }
    async fn update(
        &self,
        org: &OrgId,
        id: &SessionId,
        patch: &SessionPatch,
        now: OffsetDateTime,
    ) -> Result<Option<Session>, StoreError> {
        if patch.pending == Some(None)
            && self
                .finish_failures_left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            return Err(StoreError::Unavailable("database is locked".into()));
        }
        self.inner.update(org, id, patch, now).await
    }
    async fn record_observed(
        &self,
        id: &SessionId,
        patch: &SessionPatch,
        now: OffsetDateTime,
    ) -> Result<Option<Session>, StoreError> {
        self.observed_writes.fetch_add(1, Ordering::SeqCst);
        let failing = self
            .failures_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            return Err(StoreError::Unavailable("database is locked".into()));
        }
        self.inner.record_observed(id, patch, now).await
    }
    async fn record_observed_all(
        &self,
        patches: &[(SessionId, SessionPatch)],
        now: OffsetDateTime,
    ) -> Result<Vec<Result<Option<Session>, StoreError>>, StoreError> {
        self.batch_writes.fetch_add(1, Ordering::SeqCst);
        let failing = self
            .failures_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            return Err(StoreError::Unavailable("database is locked".into()));
        }
        self.inner.record_observed_all(patches, now).await
    }
    async fn delete(&self, org: &OrgId, id: &SessionId) -> Result<bool, StoreError> {
        self.inner.delete(org, id).await
    }
    async fn to_resume(&self) -> Result<Vec<Session>, StoreError> {
        self.inner.to_resume().await
    }
    async fn count_by_status(&self) -> Result<Vec<(SessionStatus, u64)>, StoreError> {
        self.inner.count_by_status().await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}

struct World {
    gateway: Gateway,
    store: Arc<SqliteStore>,
    registry: Arc<FlakyRegistry>,
    wa: Arc<Switchboard>,
}

async fn world_with(request_timeout: Duration, pacing: Option<RateLimit>) -> World {
    let store = Arc::new(SqliteStore::connect("sqlite::memory:").await.unwrap());
    store.migrate().await.unwrap();
    let registry = Arc::new(FlakyRegistry {
        inner: store.clone(),
        failures_left: AtomicUsize::new(0),
        finish_failures_left: AtomicUsize::new(0),
        observed_writes: AtomicUsize::new(0),
        batch_writes: AtomicUsize::new(0),
    });
    let clock = Arc::new(SystemClock);
    // Quick retries: the tests wait for them for real.
    let recorder: Arc<dyn SessionEventSink> = Arc::new(
        SessionEventRecorder::new(
            registry.clone(),
            store.clone(),
            store.clone(),
            clock.clone(),
        )
        .with_retries(5, Duration::from_millis(1)),
    );
    let wa = Arc::new(Switchboard {
        fake: FakeWhatsApp::new(Fixtures::builtin(), recorder.clone(), clock.clone()),
        events: recorder,
        hold: AtomicBool::new(false),
        gate: Semaphore::new(0),
        fail_connect: AtomicBool::new(false),
        reconnect_during_calls: AtomicBool::new(false),
        connects: AtomicUsize::new(0),
    });
    let gateway = Gateway::new(GatewayDeps {
        sessions: registry.clone(),
        api_keys: store.clone(),
        whatsapp: wa.clone(),
        api_key_cache: Arc::new(NoCache),
        entropy: Arc::new(OsEntropy),
        clock,
        request_timeout,
        whatsapp_pacing: pacing,
        events: store.clone(),
        webhooks: store.clone(),
        webhook_targets: Arc::new(wagate_webhooks::AddressPolicy::new(true)),
        bus: Arc::default(),
        messages: store.clone(),
        groups: store.clone(),
        media_fetcher: Arc::new(
            wagate_webhooks::HttpMediaFetcher::new(
                wagate_webhooks::AddressPolicy::new(true),
                Duration::from_secs(5),
            )
            .unwrap(),
        ),
        messaging: crate::MessagingSettings::default(),
    });
    World {
        gateway,
        store,
        registry,
        wa,
    }
}

async fn world() -> World {
    world_with(Duration::from_secs(10), None).await
}

/// A world whose requests give up after a short (real) deadline, for the
/// calls the tests hold past it.
async fn impatient_world() -> World {
    world_with(Duration::from_millis(300), None).await
}

fn acme() -> OrgId {
    OrgId::parse("acme").unwrap()
}

fn own_jid() -> Jid {
    Jid::parse("15550001111@s.whatsapp.net").unwrap()
}

/// A linked session `n` with the given status and wish, as a previous run
/// of the gateway left it.
async fn linked(store: &SqliteStore, n: u32, status: SessionStatus, keep: bool) -> SessionId {
    let now = OffsetDateTime::now_utc();
    let id = SessionId::parse(&format!("sess_{n:026}")).unwrap();
    store
        .insert(&Session {
            id,
            org: acme(),
            name: None,
            status,
            jid: Some(own_jid()),
            push_name: None,
            keep_connected: keep,
            created_at: now,
            updated_at: now,
            last_connected_at: Some(now),
            last_error: None,
            pending: None,
            revision: 0,
        })
        .await
        .unwrap();
    id
}

async fn row(w: &World, id: &SessionId) -> Option<Session> {
    w.store.get(&acme(), id).await.unwrap()
}

/// Waits for every lifecycle task of `id` to finish: a lifecycle call
/// queues behind them on the session's lock.
async fn settle(w: &World, id: &SessionId) {
    let _ = w
        .gateway
        .session_qr(&principal("read,send,manage"), id)
        .await;
}

#[tokio::test]
async fn a_disconnect_slower_than_its_request_still_writes_its_status() {
    let w = impatient_world().await;
    let p = principal("read,manage");
    let id = linked(&w.store, 1, SessionStatus::Disconnected, false).await;
    let s = w.gateway.connect_session(&p, &id).await.unwrap();
    assert_eq!(s.status, SessionStatus::Connected);

    w.wa.hold.store(true, Ordering::SeqCst);
    assert_eq!(
        w.gateway.disconnect_session(&p, &id).await,
        Err(AppError::Timeout)
    );
    // The wish is recorded before WhatsApp is asked: a restart now would
    // not reconnect it.
    assert!(!row(&w, &id).await.unwrap().keep_connected);
    w.wa.release();
    settle(&w, &id).await;
    let s = row(&w, &id).await.unwrap();
    assert_eq!(
        (s.status, s.keep_connected),
        (SessionStatus::Disconnected, false)
    );
}

#[tokio::test]
async fn a_logout_or_delete_slower_than_its_request_still_finishes() {
    let w = impatient_world().await;
    let p = principal("read,manage");
    let out = linked(&w.store, 1, SessionStatus::Disconnected, false).await;
    let gone = linked(&w.store, 2, SessionStatus::Disconnected, false).await;
    w.wa.hold.store(true, Ordering::SeqCst);
    assert_eq!(
        w.gateway.logout_session(&p, &out).await,
        Err(AppError::Timeout)
    );
    assert_eq!(
        w.gateway.delete_session(&p, &gone).await,
        Err(AppError::Timeout)
    );
    w.wa.release();
    w.wa.release();
    settle(&w, &out).await;
    settle(&w, &gone).await;
    let s = row(&w, &out).await.unwrap();
    assert_eq!(
        (s.status, s.jid, s.pending),
        (SessionStatus::LoggedOut, None, None)
    );
    assert_eq!(row(&w, &gone).await, None);
}

#[tokio::test]
async fn another_organizations_call_on_a_busy_session_is_not_found_at_once() {
    let w = impatient_world().await;
    let p = principal("read,manage");
    let id = linked(&w.store, 1, SessionStatus::Connected, true).await;
    // The owner's disconnect holds the session's lock past its deadline.
    w.wa.hold.store(true, Ordering::SeqCst);
    assert_eq!(
        w.gateway.disconnect_session(&p, &id).await,
        Err(AppError::Timeout)
    );
    let stranger = wagate_domain::Principal {
        org: OrgId::parse("umbrella").unwrap(),
        ..principal("read,manage")
    };
    // Not queued behind the owner's call (that would be a 504 here, and
    // tell the stranger the session exists): 404, as for any other id.
    let not_found = Err(AppError::session_not_found());
    assert_eq!(
        w.gateway.connect_session(&stranger, &id).await.map(|_| ()),
        not_found
    );
    assert_eq!(
        w.gateway
            .disconnect_session(&stranger, &id)
            .await
            .map(|_| ()),
        not_found
    );
    assert_eq!(
        w.gateway.session_qr(&stranger, &id).await.map(|_| ()),
        not_found
    );
    w.wa.release();
    settle(&w, &id).await;
}

#[tokio::test]
async fn a_failed_event_write_is_retried() {
    let w = world().await;
    let p = principal("read,manage");
    let id = linked(&w.store, 1, SessionStatus::Disconnected, false).await;
    w.registry.failures_left.store(3, Ordering::SeqCst);
    let s = w.gateway.connect_session(&p, &id).await.unwrap();
    assert_eq!(s.status, SessionStatus::Connected);
}

#[tokio::test]
async fn connect_repairs_an_event_given_up_on() {
    let w = world().await;
    let p = principal("read,manage");
    let id = linked(&w.store, 1, SessionStatus::Disconnected, false).await;
    // The database is down longer than the recorder retries (5): `Connected`
    // is lost and the record says `connecting` while the client is online.
    w.registry.failures_left.store(1000, Ordering::SeqCst);
    let s = w.gateway.connect_session(&p, &id).await.unwrap();
    assert_eq!(s.status, SessionStatus::Connecting);
    w.registry.failures_left.store(0, Ordering::SeqCst);
    // Connecting again republishes the adapter's state.
    let s = w.gateway.connect_session(&p, &id).await.unwrap();
    assert_eq!(s.status, SessionStatus::Connected);
}

#[tokio::test]
async fn resume_never_undoes_what_was_asked_since_the_start() {
    let w = world().await;
    let p = principal("read,manage");
    let disconnected = linked(&w.store, 1, SessionStatus::Connected, true).await;
    let logged_out = linked(&w.store, 2, SessionStatus::Connected, true).await;
    let deleted = linked(&w.store, 3, SessionStatus::Connected, true).await;
    let resumed = linked(&w.store, 4, SessionStatus::Connected, true).await;

    let to_resume = w.gateway.prepare_resume().await.unwrap();
    assert_eq!(to_resume.len(), 4);
    // Serving has started: requests land before the resume reaches them.
    w.gateway
        .disconnect_session(&p, &disconnected)
        .await
        .unwrap();
    w.gateway.logout_session(&p, &logged_out).await.unwrap();
    w.gateway.delete_session(&p, &deleted).await.unwrap();

    assert_eq!(w.gateway.resume_sessions(to_resume).await, 1);
    assert_eq!(w.wa.connects.load(Ordering::SeqCst), 1);
    let s = row(&w, &disconnected).await.unwrap();
    assert_eq!(
        (s.status, s.keep_connected),
        (SessionStatus::Disconnected, false)
    );
    let s = row(&w, &logged_out).await.unwrap();
    assert_eq!((s.status, s.jid), (SessionStatus::LoggedOut, None));
    assert_eq!(row(&w, &deleted).await, None);
    assert_eq!(
        row(&w, &resumed).await.unwrap().status,
        SessionStatus::Connected
    );
}

#[tokio::test]
async fn a_restart_marks_its_sessions_in_batches_not_one_write_each() {
    let w = world().await;
    let n = crate::gateway::MARK_BATCH + 2;
    for i in 0..n {
        linked(
            &w.store,
            u32::try_from(i).unwrap(),
            SessionStatus::Connected,
            true,
        )
        .await;
    }
    let to_resume = w.gateway.prepare_resume().await.unwrap();
    assert_eq!(to_resume.len(), n);
    assert_eq!(w.registry.observed_writes.load(Ordering::SeqCst), 0);
    assert_eq!(w.registry.batch_writes.load(Ordering::SeqCst), 2);
    let counts = w.store.count_by_status().await.unwrap();
    assert!(
        counts.contains(&(SessionStatus::Connecting, u64::try_from(n).unwrap())),
        "{counts:?}"
    );
}

#[tokio::test]
async fn a_restart_finishes_a_logout_or_delete_a_crash_cut_short() {
    let w = world().await;
    let out = linked(&w.store, 1, SessionStatus::Connected, false).await;
    let gone = linked(&w.store, 2, SessionStatus::Disconnected, true).await;
    let idle = linked(&w.store, 3, SessionStatus::Connected, false).await;
    for (id, pending) in [
        (out, PendingLifecycle::Logout),
        (gone, PendingLifecycle::Delete),
    ] {
        let patch = SessionPatch {
            pending: Some(Some(pending)),
            keep_connected: Some(false),
            ..SessionPatch::default()
        };
        w.store
            .update(&acme(), &id, &patch, OffsetDateTime::now_utc())
            .await
            .unwrap();
    }
    let p = principal("read,manage");
    let to_resume = w.gateway.prepare_resume().await.unwrap();
    // Until it is finished, connect says what is going on.
    assert!(matches!(
        w.gateway.connect_session(&p, &out).await,
        Err(AppError::Conflict { .. })
    ));
    assert_eq!(w.gateway.resume_sessions(to_resume).await, 0);
    let s = row(&w, &out).await.unwrap();
    assert_eq!(
        (s.status, s.jid, s.pending),
        (SessionStatus::LoggedOut, None, None)
    );
    assert_eq!(row(&w, &gone).await, None);
    // No client runs after a restart: `connected` was stale.
    assert_eq!(
        row(&w, &idle).await.unwrap().status,
        SessionStatus::Disconnected
    );
    assert_eq!(w.wa.connects.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_lost_connection_never_overwrites_a_newer_event() {
    let w = world().await;
    let p = principal("read,manage");
    let id = linked(&w.store, 1, SessionStatus::Disconnected, false).await;
    w.gateway.connect_session(&p, &id).await.unwrap();
    w.wa.reconnect_during_calls.store(true, Ordering::SeqCst);
    assert!(matches!(
        w.gateway
            .profile_picture(&p, &id, &alice(), PictureType::Image)
            .await,
        Err(AppError::NotConnected { .. })
    ));
    // The adapter reconnected while the call was out: its event stands.
    assert_eq!(row(&w, &id).await.unwrap().status, SessionStatus::Connected);
}

#[tokio::test]
async fn a_connect_that_cannot_start_says_so() {
    let w = world().await;
    let p = principal("read,manage");
    let s = w.gateway.create_session(&p, None).await.unwrap();
    w.wa.fail_connect.store(true, Ordering::SeqCst);
    assert!(matches!(
        w.gateway.connect_session(&p, &s.id).await,
        Err(AppError::Internal(_))
    ));
    let s = row(&w, &s.id).await.unwrap();
    assert_eq!(s.status, SessionStatus::New);
    assert!(!s.keep_connected);
    let error = s.last_error.unwrap();
    assert_eq!(error.code, SessionErrorCode::ConnectFailure);
    assert!(!error.message.contains("device store"), "{error:?}");
}

#[tokio::test]
async fn idempotent_connect_and_disconnect_leave_updated_at_alone() {
    let w = world().await;
    let p = principal("read,manage");
    let id = linked(&w.store, 1, SessionStatus::Disconnected, false).await;
    let first = w.gateway.connect_session(&p, &id).await.unwrap();
    assert_eq!(first.status, SessionStatus::Connected);
    let again = w.gateway.connect_session(&p, &id).await.unwrap();
    assert_eq!(
        (again.updated_at, again.revision),
        (first.updated_at, first.revision)
    );
    let off = w.gateway.disconnect_session(&p, &id).await.unwrap();
    assert!(off.revision > again.revision);
    let off_again = w.gateway.disconnect_session(&p, &id).await.unwrap();
    assert_eq!(
        (off_again.updated_at, off_again.revision),
        (off.updated_at, off.revision)
    );
}

#[tokio::test]
async fn live_calls_are_paced_per_session() {
    let w = world_with(
        Duration::from_secs(10),
        Some(RateLimit::per_minute(2).unwrap()),
    )
    .await;
    let p = principal("read,manage");
    let a = linked(&w.store, 1, SessionStatus::Disconnected, false).await;
    let b = linked(&w.store, 2, SessionStatus::Disconnected, false).await;
    for id in [a, b] {
        w.gateway.connect_session(&p, &id).await.unwrap();
    }
    for _ in 0..2 {
        w.gateway.about(&p, &a, &alice()).await.unwrap();
    }
    match w.gateway.about(&p, &a, &alice()).await {
        Err(AppError::RateLimited { retry_after }) => {
            assert!(
                retry_after > Duration::from_secs(25) && retry_after <= Duration::from_secs(30)
            );
        }
        other => panic!("expected RateLimited, got {other:?}"),
    }
    // Another session has its own pace.
    w.gateway.about(&p, &b, &alice()).await.unwrap();
}

#[tokio::test]
async fn a_logout_whatsapp_made_is_recorded_though_the_database_failed_a_moment() {
    let w = world().await;
    let p = principal("read,send,manage");
    let id = linked(&w.store, 1, SessionStatus::Disconnected, true).await;
    w.gateway.connect_session(&p, &id).await.unwrap();
    // The adapter logs out; the write saying so fails twice.
    w.registry.finish_failures_left.store(2, Ordering::SeqCst);
    let s = w.gateway.logout_session(&p, &id).await.unwrap();
    assert_eq!((s.status, s.pending), (SessionStatus::LoggedOut, None));
    assert_eq!(w.registry.finish_failures_left.load(Ordering::SeqCst), 0);
    let s = row(&w, &id).await.unwrap();
    assert_eq!(
        (s.status, s.jid, s.pending),
        (SessionStatus::LoggedOut, None, None)
    );
}

#[tokio::test]
async fn no_message_is_accepted_while_a_logout_is_being_finished() {
    let w = world().await;
    let p = principal("read,send,manage");
    let id = linked(&w.store, 1, SessionStatus::Disconnected, true).await;
    w.gateway.connect_session(&p, &id).await.unwrap();
    // As a logout cut short leaves it: still `connected`, the logout pending.
    let patch = SessionPatch {
        pending: Some(Some(PendingLifecycle::Logout)),
        ..SessionPatch::default()
    };
    w.store
        .update(&acme(), &id, &patch, OffsetDateTime::now_utc())
        .await
        .unwrap();
    let sent = w
        .gateway
        .send_message(
            &p,
            &id,
            crate::SendRequest {
                to: alice(),
                content: crate::SendContent::Text("hi".into()),
                reply_to: None,
                mentions: Vec::new(),
                idempotency_key: None,
            },
        )
        .await;
    assert!(
        matches!(
            sent,
            Err(AppError::Conflict {
                status: Some(SessionStatus::Connected),
                ..
            })
        ),
        "{sent:?}"
    );
    assert!(
        w.store.pending(&id, &[], 10).await.unwrap().is_empty(),
        "nothing was queued"
    );
}
