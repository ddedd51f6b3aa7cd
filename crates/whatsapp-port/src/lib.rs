//! # wagate-whatsapp-port
//!
//! The boundary between wagate and WhatsApp. [`WhatsAppPort`] is everything
//! the gateway asks of a WhatsApp connection — link a device, connect,
//! disconnect, log out, look a contact up, block and unblock — and
//! [`WhatsAppError`] is everything that can go wrong, in WhatsApp-agnostic
//! terms. Adapters report what happens on their own (a QR to show, a link
//! made, a connection lost, the phone unlinking us) as [`SessionEvent`]s to a
//! [`SessionEventSink`] they are given when built.
//!
//! Two adapters exist: [`FakeWhatsApp`] here, a deterministic in-memory world
//! for contract tests and demos, and `wagate-whatsapp-live` on the
//! `whatsapp-rust` crate. With the `mock` feature, `MockWhatsAppPort`
//! (mockall) is available for unit tests of code above the port.
//!
//! ```
//! use std::sync::Arc;
//! use wagate_domain::{SessionId, SystemClock};
//! use wagate_whatsapp_port::{FakeWhatsApp, Fixtures, RecordingSink, SessionEventKind, WhatsAppPort};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let events = Arc::new(RecordingSink::default());
//! let fake = FakeWhatsApp::new(Fixtures::builtin(), events.clone(), Arc::new(SystemClock));
//! let session = SessionId::parse("sess_01HZY0N4Q8ZK3J4M7ZC9W4X2QF")?;
//!
//! fake.connect(&session, None).await?;   // not linked: shows a QR code …
//! let qr = fake.qr(&session).await?;      // … which the fake phone scans at once
//! assert!(qr.code.starts_with("2@"));
//! assert!(matches!(events.events()[2].kind, SessionEventKind::Connected { .. })); // after Pairing, QrShown
//! # Ok(())
//! # }
//! ```

mod claims;
mod error;
mod events;
mod fake;
mod groups;
mod messages;
mod port;

pub use claims::{SessionClaim, SessionClaims};
pub use error::{Refusal, WhatsAppError};
pub use events::{RecordingSink, SessionEvent, SessionEventKind, SessionEventSink};
pub use fake::{
    BUILTIN_FAKE_CONTACTS, BUILTIN_FAKE_GROUPS, BUILTIN_WORLD, ContactFixture, FailMode,
    FakeAction, FakeWhatsApp, Fixtures, FixturesError,
};
pub use groups::GroupChange;
pub use messages::{
    InboundContent, InboundMessage, MediaDownload, MediaRef, MediaSender, NotRecorded,
    OutgoingContent, OutgoingMedia, OutgoingMessage, StatusUpdate, option_hash,
};
#[cfg(feature = "mock")]
pub use port::MockWhatsAppPort;
pub use port::WhatsAppPort;

/// The README's example, compiled (and run) as a doc test so it stays true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
