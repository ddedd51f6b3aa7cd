//! Use-case tests at the port boundary: a real SQLite store, and a mocked or
//! hand-made WhatsApp port.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;
use wagate_domain::{
    About, ApiKeyId, BlocklistEntry, Capability, CapabilitySet, Jid, OrgId, PairingCode,
    PhoneNumber, PictureType, Principal, PrincipalKind, ProfilePicture, QrCode, Session, SessionId,
    SessionStatus, SystemClock,
};
use wagate_store::{ApiKeyCache, OsEntropy};
use wagate_store::{SessionRegistry, SqliteStore};
use wagate_whatsapp_port::{MockWhatsAppPort, WhatsAppError, WhatsAppPort};

use crate::{AppError, Gateway, GatewayDeps};

#[derive(Debug)]
pub(crate) struct NoCache;
impl ApiKeyCache for NoCache {
    fn invalidate(&self, _: &ApiKeyId) {}
}

/// A WhatsApp that never answers a contact call.
#[derive(Debug)]
struct StuckWhatsApp;

#[async_trait]
impl WhatsAppPort for StuckWhatsApp {
    async fn connect(&self, _: &SessionId, _: Option<Jid>) -> Result<(), WhatsAppError> {
        Ok(())
    }
    async fn disconnect(&self, _: &SessionId) -> Result<(), WhatsAppError> {
        Ok(())
    }
    async fn logout(&self, _: &SessionId) -> Result<(), WhatsAppError> {
        Ok(())
    }
    async fn remove(&self, _: &SessionId) -> Result<(), WhatsAppError> {
        Ok(())
    }
    async fn qr(&self, _: &SessionId) -> Result<QrCode, WhatsAppError> {
        Err(WhatsAppError::NotPairing)
    }
    async fn pairing_code(
        &self,
        _: &SessionId,
        _: &PhoneNumber,
    ) -> Result<PairingCode, WhatsAppError> {
        std::future::pending().await
    }
    async fn profile_picture(
        &self,
        _: &SessionId,
        _: &Jid,
        _: PictureType,
    ) -> Result<ProfilePicture, WhatsAppError> {
        std::future::pending().await
    }
    async fn about(&self, _: &SessionId, _: &Jid) -> Result<About, WhatsAppError> {
        std::future::pending().await
    }
    async fn block(&self, _: &SessionId, _: &Jid) -> Result<(), WhatsAppError> {
        std::future::pending().await
    }
    async fn unblock(&self, _: &SessionId, _: &Jid) -> Result<(), WhatsAppError> {
        std::future::pending().await
    }
    async fn blocklist(&self, _: &SessionId) -> Result<Vec<BlocklistEntry>, WhatsAppError> {
        std::future::pending().await
    }
    async fn groups(&self, _: &SessionId) -> Result<Vec<wagate_domain::Group>, WhatsAppError> {
        std::future::pending().await
    }
    async fn group(
        &self,
        _: &SessionId,
        _: &wagate_domain::GroupJid,
    ) -> Result<wagate_domain::Group, WhatsAppError> {
        std::future::pending().await
    }
    async fn create_group(
        &self,
        _: &SessionId,
        _: &wagate_domain::GroupSubject,
        _: &[Jid],
    ) -> Result<(wagate_domain::Group, Vec<wagate_domain::ParticipantOutcome>), WhatsAppError> {
        std::future::pending().await
    }
    async fn update_group(
        &self,
        _: &SessionId,
        _: &wagate_domain::GroupJid,
        _: &wagate_whatsapp_port::GroupChange,
    ) -> Result<(), WhatsAppError> {
        std::future::pending().await
    }
    async fn change_participants(
        &self,
        _: &SessionId,
        _: &wagate_domain::GroupJid,
        _: wagate_domain::ParticipantAction,
        _: &[Jid],
    ) -> Result<Vec<wagate_domain::ParticipantOutcome>, WhatsAppError> {
        std::future::pending().await
    }
    async fn invite_code(
        &self,
        _: &SessionId,
        _: &wagate_domain::GroupJid,
        _: bool,
    ) -> Result<wagate_domain::InviteCode, WhatsAppError> {
        std::future::pending().await
    }
    async fn join_group(
        &self,
        _: &SessionId,
        _: &wagate_domain::InviteCode,
    ) -> Result<wagate_domain::GroupJid, WhatsAppError> {
        std::future::pending().await
    }
    async fn leave_group(
        &self,
        _: &SessionId,
        _: &wagate_domain::GroupJid,
    ) -> Result<(), WhatsAppError> {
        std::future::pending().await
    }
    async fn membership_requests(
        &self,
        _: &SessionId,
        _: &wagate_domain::GroupJid,
    ) -> Result<Vec<wagate_domain::MembershipRequest>, WhatsAppError> {
        std::future::pending().await
    }
    async fn answer_requests(
        &self,
        _: &SessionId,
        _: &wagate_domain::GroupJid,
        _: wagate_domain::RequestAction,
        _: &[Jid],
    ) -> Result<Vec<wagate_domain::ParticipantOutcome>, WhatsAppError> {
        std::future::pending().await
    }
    async fn send_message(
        &self,
        _: &SessionId,
        _: &wagate_whatsapp_port::OutgoingMessage,
    ) -> Result<(), WhatsAppError> {
        std::future::pending().await
    }
    async fn send_reaction(
        &self,
        _: &SessionId,
        _: &Jid,
        _: &wagate_domain::MessageId,
        _: Option<Jid>,
        _: &str,
    ) -> Result<(), WhatsAppError> {
        std::future::pending().await
    }
    async fn edit_message(
        &self,
        _: &SessionId,
        _: &Jid,
        _: &wagate_domain::MessageId,
        _: &str,
    ) -> Result<(), WhatsAppError> {
        std::future::pending().await
    }
    async fn revoke_message(
        &self,
        _: &SessionId,
        _: &Jid,
        _: &wagate_domain::MessageId,
    ) -> Result<(), WhatsAppError> {
        std::future::pending().await
    }
    async fn send_chat_state(
        &self,
        _: &SessionId,
        _: &Jid,
        _: wagate_domain::ChatState,
    ) -> Result<(), WhatsAppError> {
        std::future::pending().await
    }
    async fn set_presence(&self, _: &SessionId, _: bool) -> Result<(), WhatsAppError> {
        std::future::pending().await
    }
    async fn subscribe_presence(&self, _: &SessionId, _: &Jid) -> Result<(), WhatsAppError> {
        std::future::pending().await
    }
    async fn mark_read(
        &self,
        _: &SessionId,
        _: &Jid,
        _: &Jid,
        _: &[wagate_domain::MessageId],
    ) -> Result<(), WhatsAppError> {
        std::future::pending().await
    }
    async fn download_media(
        &self,
        _: &SessionId,
        _: &wagate_whatsapp_port::MediaRef,
        _: u64,
    ) -> Result<wagate_whatsapp_port::MediaDownload, WhatsAppError> {
        std::future::pending().await
    }
}

async fn gateway(whatsapp: Arc<dyn WhatsAppPort>) -> (Gateway, Arc<SqliteStore>) {
    gateway_with_deadline(whatsapp, Duration::from_secs(15)).await
}

async fn gateway_with_deadline(
    whatsapp: Arc<dyn WhatsAppPort>,
    request_timeout: Duration,
) -> (Gateway, Arc<SqliteStore>) {
    let store = Arc::new(SqliteStore::connect("sqlite::memory:").await.unwrap());
    store.migrate().await.unwrap();
    let gateway = Gateway::new(GatewayDeps {
        sessions: store.clone(),
        api_keys: store.clone(),
        whatsapp,
        api_key_cache: Arc::new(NoCache),
        entropy: Arc::new(OsEntropy),
        clock: Arc::new(SystemClock),
        request_timeout,
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
        messaging: crate::MessagingSettings::default(),
    });
    (gateway, store)
}

pub(crate) fn principal(caps: &str) -> Principal {
    Principal {
        org: OrgId::parse("acme").unwrap(),
        capabilities: CapabilitySet::parse_list(caps).unwrap(),
        kind: PrincipalKind::ApiKey(ApiKeyId::parse("key_01JBZ5T0Q4M6Y8V2K3N7R9S1WX").unwrap()),
        credential_expires_at: None,
    }
}

async fn connected_session(store: &SqliteStore) -> SessionId {
    let now = OffsetDateTime::now_utc();
    let id = SessionId::parse("sess_01JBZ5T0Q4M6Y8V2K3N7R9S1WX").unwrap();
    store
        .insert(&Session {
            id,
            org: OrgId::parse("acme").unwrap(),
            name: None,
            status: SessionStatus::Connected,
            jid: Some(Jid::parse("15550001111@s.whatsapp.net").unwrap()),
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

pub(crate) fn alice() -> Jid {
    Jid::parse("14155550123@s.whatsapp.net").unwrap()
}

#[tokio::test]
async fn a_call_whatsapp_never_answers_times_out() {
    // A short real deadline: the test waits for the timeout itself, nothing else.
    let (gateway, store) =
        gateway_with_deadline(Arc::new(StuckWhatsApp), Duration::from_millis(50)).await;
    let id = connected_session(&store).await;
    let p = principal("read,send,manage");
    assert_eq!(
        gateway
            .profile_picture(&p, &id, &alice(), PictureType::Image)
            .await,
        Err(AppError::Timeout)
    );
    assert_eq!(
        gateway.block(&p, &id, &alice()).await,
        Err(AppError::Timeout)
    );
}

#[tokio::test]
async fn adapter_errors_are_mapped_without_leaking() {
    let mut port = MockWhatsAppPort::new();
    port.expect_profile_picture()
        .returning(|_, _, _| Err(WhatsAppError::Internal("socket 10.0.0.1 reset".into())));
    port.expect_about()
        .returning(|_, _| Err(WhatsAppError::NotConnected));
    port.expect_block().times(0);
    let (gateway, store) = gateway(Arc::new(port)).await;
    let id = connected_session(&store).await;
    let p = principal("read,send");
    assert!(matches!(
        gateway
            .profile_picture(&p, &id, &alice(), PictureType::Image)
            .await,
        Err(AppError::Internal(_))
    ));
    assert_eq!(
        gateway.about(&p, &id, &alice()).await,
        Err(AppError::NotConnected {
            status: SessionStatus::Disconnected
        })
    );
    // A group is refused before WhatsApp is asked.
    let group = Jid::parse("120363025246125486@g.us").unwrap();
    assert!(
        matches!(gateway.block(&p, &id, &group).await, Err(AppError::InvalidArgument(e)) if e.field == "jid")
    );
}

#[tokio::test]
async fn the_capability_is_checked_before_the_store_is_asked() {
    let (gateway, store) = gateway(Arc::new(StuckWhatsApp)).await;
    let id = connected_session(&store).await;
    store.close().await;
    // Without the capability: refused without touching the (closed) store.
    let e = gateway.get_session(&principal("send"), &id).await;
    assert_eq!(
        e,
        Err(AppError::Forbidden {
            required: Capability::Read
        })
    );
    let e = gateway.delete_session(&principal("read"), &id).await;
    assert_eq!(
        e,
        Err(AppError::Forbidden {
            required: Capability::Manage
        })
    );
    // With it, the lookup happens (and fails: the store is closed).
    assert!(matches!(
        gateway.get_session(&principal("read"), &id).await,
        Err(AppError::Unavailable(_))
    ));
}

#[tokio::test]
async fn ids_sort_in_creation_order() {
    let (gateway, _store) = gateway(Arc::new(StuckWhatsApp)).await;
    let p = principal("manage");
    let mut last = None;
    for _ in 0..50 {
        let s = gateway.create_session(&p, None).await.unwrap();
        assert!(last.is_none_or(|l| l < s.id));
        last = Some(s.id);
    }
}
