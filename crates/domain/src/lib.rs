//! # wagate-domain
//!
//! The vocabulary of wagate, the multi-tenant WhatsApp gateway: WhatsApp
//! addresses ([`Jid`]), identifiers ([`SessionId`], [`OrgId`], [`ApiKeyId`]),
//! what a caller may do ([`Capability`], [`CapabilitySet`], [`Principal`]),
//! sessions ([`Session`], [`SessionStatus`]) and the values a contact lookup
//! returns ([`ProfilePicture`], [`About`], [`BlocklistEntry`]).
//!
//! Every type here is built by a constructor that parses its input and
//! returns either the typed value or a typed [`DomainError`]: once you hold a
//! `Jid` or a `SessionId`, it is valid, and the other layers never check it
//! again. The crate is pure: no I/O, no async, nothing heavier than serde.
//!
//! ```
//! use wagate_domain::{Jid, JidKind};
//!
//! let jid = Jid::parse("14155550123:12@s.whatsapp.net")?;
//! assert_eq!(jid.kind(), JidKind::User);
//! assert_eq!(jid.to_string(), "14155550123@s.whatsapp.net"); // device dropped
//! # Ok::<(), wagate_domain::DomainError>(())
//! ```

mod api_key;
mod auth;
mod clock;
mod contact;
mod error;
mod event;
mod ids;
mod jid;
mod message;
mod rate;
mod session;
mod webhook;

/// A person-given label (session or key name): trimmed, 1 to 100
/// characters, no control characters.
fn parse_label(field: &'static str, input: &str) -> Result<Box<str>, DomainError> {
    let label = input.trim();
    let len = label.chars().count();
    if len == 0 || len > 100 {
        return Err(DomainError::new(field, "must be 1 to 100 characters"));
    }
    if label.chars().any(char::is_control) {
        return Err(DomainError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(label.into())
}

pub use api_key::{ApiKey, ApiKeyName, ApiKeySecret, NewApiKey, parse_expiry};
pub use auth::{Capability, CapabilitySet, Principal, PrincipalKind, Role};
pub use clock::{Clock, SystemClock};
pub use contact::{
    About, Absence, BlocklistEntry, PairingCode, PhoneNumber, PictureType, ProfilePicture, QrCode,
};
pub use error::DomainError;
pub use event::{Event, EventCursor, EventData, EventFilter, EventPattern, EventType};
pub use ids::{ApiKeyId, EventId, OrgId, SessionId, WebhookId};
pub use jid::{Jid, JidKind};
pub use message::{
    IdempotencyKey, MAX_CAPTION_CHARS, MAX_TEXT_CHARS, MediaInfo, Message, MessageError,
    MessageErrorCode, MessageId, MessageSource, MessageStatus, MessageType, StatusTimes,
};
pub use rate::{RateLimit, TokenBucket, retry_after_secs, since_unix_epoch};
pub use session::{
    LastError, Page, PageRequest, PendingLifecycle, Session, SessionErrorCode, SessionName,
    SessionStatus,
};
pub use webhook::{
    Delivery, DeliveryState, Webhook, WebhookDescription, WebhookSecret, WebhookUrl,
};

/// The README's example, compiled (and run) as a doc test so it stays true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
