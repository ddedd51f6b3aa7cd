//! The outbox on a real store and the fake adapter: waiting while offline,
//! resuming on reconnect and after a restart under the same id, expiry.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;
use wagate_domain::{
    Clock, Jid, MessageErrorCode, MessageId, MessageStatus, OrgId, Session, SessionId,
    SessionStatus,
};
use wagate_store::{MessageStore, OsEntropy, SessionRegistry, SqliteStore};
use wagate_whatsapp_port::{FakeAction, FakeWhatsApp, Fixtures, WhatsAppPort};

use crate::tests::{NoCache, principal};
use crate::{
    Gateway, GatewayDeps, MessagingSettings, SendContent, SendRequest, SessionEventRecorder,
};

/// A clock the test moves.
#[derive(Debug)]
struct StepClock(Mutex<OffsetDateTime>);

impl Clock for StepClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap()
    }
}

impl StepClock {
    fn advance(&self, by: time::Duration) {
        *self.0.lock().unwrap() += by;
    }
}

struct World {
    gateway: Gateway,
    fake: Arc<FakeWhatsApp>,
}

/// A gateway (unpaced) on `store` with a fresh fake, as after a start.
async fn world(store: &Arc<SqliteStore>, clock: Arc<StepClock>) -> World {
    let recorder = Arc::new(SessionEventRecorder::new(
        store.clone(),
        store.clone(),
        store.clone(),
        clock.clone(),
    ));
    let fake = Arc::new(FakeWhatsApp::new(
        Fixtures::builtin(),
        recorder.clone(),
        clock.clone(),
    ));
    let gateway = Gateway::new(GatewayDeps {
        sessions: store.clone(),
        api_keys: store.clone(),
        whatsapp: fake.clone(),
        api_key_cache: Arc::new(NoCache),
        entropy: Arc::new(OsEntropy),
        clock,
        request_timeout: Duration::from_secs(5),
        whatsapp_pacing: None,
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
        messaging: MessagingSettings {
            send_rate: 0,
            retry_first: Duration::from_millis(5),
            ..MessagingSettings::default()
        },
    });
    recorder.set_outbox(gateway.outbox());
    World { gateway, fake }
}

const ME: &str = "15550001111@s.whatsapp.net";

/// A session the store says is connected (the adapter may not agree).
async fn session(store: &SqliteStore, now: OffsetDateTime) -> SessionId {
    let id = SessionId::parse("sess_01JBZ5T0Q4M6Y8V2K3N7R9S1WX").unwrap();
    store
        .insert(&Session {
            id,
            org: OrgId::parse("acme").unwrap(),
            name: None,
            status: SessionStatus::Connected,
            jid: Some(Jid::parse(ME).unwrap()),
            push_name: None,
            keep_connected: true,
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

async fn send(gateway: &Gateway, session: &SessionId) -> MessageId {
    send_to(gateway, session, PLAIN, SendContent::Text("hi".into())).await
}

/// A contact of the built-in world that takes everything.
const PLAIN: &str = "14155550199@s.whatsapp.net";
/// The built-in world's contact whose calls time out.
const SILENT: &str = "14155550100@s.whatsapp.net";

async fn send_to(
    gateway: &Gateway,
    session: &SessionId,
    to: &str,
    content: SendContent,
) -> MessageId {
    gateway
        .send_message(
            &principal("send"),
            session,
            SendRequest {
                to: Jid::parse(to).unwrap(),
                content,
                reply_to: None,
                mentions: Vec::new(),
                idempotency_key: None,
            },
        )
        .await
        .unwrap()
        .message
        .id
}

fn image() -> SendContent {
    SendContent::Media {
        kind: wagate_domain::MessageType::Image,
        mimetype: Some("image/png".into()),
        filename: None,
        caption: None,
        voice_note: false,
        source: crate::MediaInput::Data(vec![1, 2, 3]),
    }
}

async fn message(
    store: &SqliteStore,
    session: &SessionId,
    id: &MessageId,
) -> wagate_domain::Message {
    store
        .get_message(&OrgId::parse("acme").unwrap(), session, id)
        .await
        .unwrap()
        .unwrap()
}

fn sent_ids(fake: &FakeWhatsApp, session: &SessionId) -> Vec<MessageId> {
    fake.actions(session)
        .into_iter()
        .filter_map(|a| match a {
            FakeAction::Sent { id, .. } => Some(id),
            _ => None,
        })
        .collect()
}

/// Waits until message `id` has `status` (the outbox works in the background).
async fn status_becomes(
    store: &SqliteStore,
    session: &SessionId,
    id: &MessageId,
    status: MessageStatus,
) {
    let org = OrgId::parse("acme").unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let m = store.get_message(&org, session, id).await.unwrap().unwrap();
        if m.status == status {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stuck at {:?}",
            m.status
        );
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn store() -> (Arc<SqliteStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        SqliteStore::connect(&format!("sqlite://{}/w.db", dir.path().display()))
            .await
            .unwrap(),
    );
    store.migrate().await.unwrap();
    (store, dir)
}

#[tokio::test]
async fn an_offline_session_keeps_its_messages_until_it_reconnects() {
    let (store, _dir) = store().await;
    let clock = Arc::new(StepClock(Mutex::new(OffsetDateTime::now_utc())));
    let w = world(&store, clock.clone()).await;
    let s = session(&store, clock.now()).await;
    // The adapter is not connected yet: the message waits, pending.
    let id = send(&w.gateway, &s).await;
    assert!(w.fake.actions(&s).is_empty());
    assert!(w.gateway.outbox().is_running(&s));
    // The reconnect (its `Connected` event) wakes the session's task.
    w.fake
        .connect(&s, Some(Jid::parse(ME).unwrap()))
        .await
        .unwrap();
    status_becomes(&store, &s, &id, MessageStatus::Delivered).await;
    assert_eq!(
        w.fake.actions(&s),
        vec![FakeAction::Sent {
            id: id.clone(),
            to: Jid::parse("14155550199@s.whatsapp.net").unwrap()
        }]
    );
}

#[tokio::test]
async fn after_a_restart_pending_messages_go_out_under_their_ids() {
    let (store, _dir) = store().await;
    let clock = Arc::new(StepClock(Mutex::new(OffsetDateTime::now_utc())));
    let before = world(&store, clock.clone()).await;
    let s = session(&store, clock.now()).await;
    let first = send(&before.gateway, &s).await;
    let second = send(&before.gateway, &s).await;
    // A new process: a new adapter, connected; the outbox resumes.
    let after = world(&store, clock.clone()).await;
    after
        .fake
        .connect(&s, Some(Jid::parse(ME).unwrap()))
        .await
        .unwrap();
    assert_eq!(after.gateway.resume_outbox().await.unwrap(), 1);
    status_becomes(&store, &s, &second, MessageStatus::Delivered).await;
    status_becomes(&store, &s, &first, MessageStatus::Delivered).await;
    let sent: Vec<MessageId> = after
        .fake
        .actions(&s)
        .into_iter()
        .filter_map(|a| match a {
            FakeAction::Sent { id, .. } => Some(id),
            _ => None,
        })
        .collect();
    assert_eq!(sent, vec![first, second], "oldest first, the stored ids");
}

#[tokio::test]
async fn a_message_pending_too_long_expires() {
    let (store, _dir) = store().await;
    let clock = Arc::new(StepClock(Mutex::new(OffsetDateTime::now_utc())));
    let w = world(&store, clock.clone()).await;
    let s = session(&store, clock.now()).await;
    let id = send(&w.gateway, &s).await;
    clock.advance(time::Duration::hours(25));
    w.gateway.outbox().wake(&s);
    status_becomes(&store, &s, &id, MessageStatus::Failed).await;
    let m = store
        .get_message(&OrgId::parse("acme").unwrap(), &s, &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.error.map(|e| e.code), Some(MessageErrorCode::Expired));
    assert!(w.fake.actions(&s).is_empty());
}

#[tokio::test]
async fn a_chat_that_does_not_answer_holds_no_other_chat_and_keeps_its_order() {
    let (store, _dir) = store().await;
    let clock = Arc::new(StepClock(Mutex::new(OffsetDateTime::now_utc())));
    let w = world(&store, clock.clone()).await;
    let s = session(&store, clock.now()).await;
    w.fake
        .connect(&s, Some(Jid::parse(ME).unwrap()))
        .await
        .unwrap();
    let text = || SendContent::Text("hi".into());
    let stuck_first = send_to(&w.gateway, &s, SILENT, text()).await;
    let plain_first = send_to(&w.gateway, &s, PLAIN, text()).await;
    let stuck_second = send_to(&w.gateway, &s, SILENT, text()).await;
    let plain_second = send_to(&w.gateway, &s, PLAIN, image()).await;
    status_becomes(&store, &s, &plain_second, MessageStatus::Delivered).await;
    status_becomes(&store, &s, &plain_first, MessageStatus::Delivered).await;
    // The other chat went in its order; the silent one is still trying its
    // first message, its second behind it.
    assert_eq!(sent_ids(&w.fake, &s), vec![plain_first, plain_second]);
    for id in [&stuck_first, &stuck_second] {
        assert_eq!(message(&store, &s, id).await.status, MessageStatus::Pending);
    }
    assert!(w.gateway.outbox().is_running(&s));
}

#[tokio::test]
async fn a_refusal_for_good_fails_the_message_at_once_with_its_reason() {
    let (store, _dir) = store().await;
    let clock = Arc::new(StepClock(Mutex::new(OffsetDateTime::now_utc())));
    let w = world(&store, clock.clone()).await;
    let s = session(&store, clock.now()).await;
    w.fake
        .connect(&s, Some(Jid::parse(ME).unwrap()))
        .await
        .unwrap();
    let refused = send_to(
        &w.gateway,
        &s,
        "14155550143@s.whatsapp.net",
        SendContent::Text("hi".into()),
    )
    .await;
    let media_refused = send_to(&w.gateway, &s, "14155550144@s.whatsapp.net", image()).await;
    let after = send_to(
        &w.gateway,
        &s,
        "14155550143@s.whatsapp.net",
        SendContent::Text("again".into()),
    )
    .await;
    status_becomes(&store, &s, &refused, MessageStatus::Failed).await;
    status_becomes(&store, &s, &media_refused, MessageStatus::Failed).await;
    // The chat's next message is tried (and refused) in its turn, not held.
    status_becomes(&store, &s, &after, MessageStatus::Failed).await;
    let error = message(&store, &s, &refused).await.error.unwrap();
    assert_eq!(
        (error.code, error.nack_code),
        (MessageErrorCode::Rejected, Some(403))
    );
    let error = message(&store, &s, &media_refused).await.error.unwrap();
    assert_eq!(error.code, MessageErrorCode::MediaRejected);
    assert!(sent_ids(&w.fake, &s).is_empty());
}
