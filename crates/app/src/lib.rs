//! # wagate-app
//!
//! The use cases of wagate, in one place: [`Gateway`] (sessions, contacts,
//! groups, messages, events, webhooks, API keys). Every method takes
//! the calling [`Principal`](wagate_domain::Principal) first and checks, in
//! this order, that the caller holds the capability the use case needs
//! (before any lookup, so a refusal reveals nothing), that the session
//! belongs to the caller's organization (another organization's session is
//! "not found"), and only then acts through the ports: the
//! [`SessionRegistry`](wagate_store::SessionRegistry) and
//! [`ApiKeyStore`](wagate_store::ApiKeyStore) for state, the
//! [`WhatsAppPort`](wagate_whatsapp_port::WhatsAppPort) for WhatsApp.
//!
//! [`SessionEventRecorder`] is the other way in: it receives what the
//! WhatsApp adapter observes (a QR shown, a link made, a connection lost) and
//! writes it to the session registry.
//!
//! Errors are [`AppError`]; the HTTP layer maps them to its envelope.

mod api_keys;
mod cluster;
mod contacts;
mod conversation;
mod delivery;
mod error;
mod events;
mod gateway;
mod groups;
mod lifecycle;
mod messages;
mod outbox;
mod polls;
mod presence;
mod receipts;
mod recorder;
mod sessions;

pub use api_keys::{ApiKeyAdmin, CreatedApiKey, NewApiKeyRequest};
pub use cluster::{ClusterFigures, ClusterMember, ClusterSettings, preferred_node};
pub use conversation::MessageEdit;
pub use delivery::{
    DEFAULT_RETRY_SCHEDULE, DeliverySettings, DispatcherDeps, EntropyJitter, Jitter, MAX_BATCH,
    MAX_IDLE, NoJitter, ORG_SHARE_OF_IN_FLIGHT, RetentionPruner, WebhookDispatcher,
};
pub use error::AppError;
pub use events::{
    CreatedWebhook, DEFAULT_MAX_WEBHOOKS_PER_ORG, EventBus, EventQuery, NewWebhook, SECRET_OVERLAP,
};
pub use gateway::{DEFAULT_RESUME_RATE, Gateway, GatewayDeps, RESUME_IN_FLIGHT, RESUME_SLACK};
pub use groups::{DEFAULT_GROUP_PAGE, GroupRefresh, Joined, MAX_GROUP_PAGE};
pub use messages::{
    IDEMPOTENCY_WINDOW, MAX_READ_IDS, MediaContent, MediaInput, SendContent, SendOutcome,
    SendRequest,
};
pub use outbox::{MessagingSettings, Outbox};
pub use receipts::{DEFAULT_RECEIPT_PAGE, MAX_RECEIPT_PAGE};
pub use recorder::{EPHEMERAL_EVENTS, SessionEventRecorder};
pub use wagate_store::{EventPage, GroupPage, MessagePage, NodeStatus, ReceiptPage, WebhookPatch};
pub use wagate_whatsapp_port::GroupChange;

#[cfg(test)]
mod fault_tests;
#[cfg(test)]
mod outbox_tests;
#[cfg(test)]
mod tests;

/// The README's example, compiled (and run) as a doc test so it stays true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
