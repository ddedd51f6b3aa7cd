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
mod conversation;
mod error;
mod event;
mod group;
mod ids;
mod jid;
mod message;
mod poll;
mod presence;
mod rate;
mod receipt;
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
pub use conversation::{
    ContactCard, EDIT_WINDOW, Location, MAX_CONTACT_CARDS, MAX_PLACE_CHARS, MAX_VCARD_BYTES,
    REVOKE_WINDOW, RichContent,
};
pub use error::DomainError;
pub use event::{Event, EventCursor, EventData, EventFilter, EventPattern, EventType};
pub use group::{
    Group, GroupDescription, GroupJid, GroupNotice, GroupParticipant, GroupRole, GroupSettings,
    GroupSettingsPatch, GroupSubject, InviteCode, MAX_DESCRIPTION_CHARS, MAX_PARTICIPANTS,
    MAX_SUBJECT_CHARS, MembershipRequest, ParticipantAction, ParticipantOutcome, ParticipantStatus,
    RequestAction,
};
pub use ids::{ApiKeyId, EventId, NodeId, OrgId, SessionId, WebhookId};
pub use jid::{Jid, JidKind};
pub use message::{
    IdempotencyKey, MAX_CAPTION_CHARS, MAX_MENTIONS, MAX_TEXT_CHARS, MediaInfo, Message,
    MessageError, MessageErrorCode, MessageId, MessageSource, MessageStatus, MessageType,
    StatusTimes,
};
pub use poll::{
    MAX_POLL_OPTION_CHARS, MAX_POLL_OPTIONS, MAX_POLL_QUESTION_CHARS, MIN_POLL_OPTIONS, Poll,
    PollTally, PollVote,
};
pub use presence::ChatState;
pub use rate::{RateLimit, TokenBucket, retry_after_secs, since_unix_epoch};
pub use receipt::{Receipt, Recipient, aggregate_status};
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
