use thiserror::Error;
use wagate_domain::Absence;

/// What a [`crate::WhatsAppPort`] call can fail with. Adapters map their
/// library's errors into these; nothing of the library leaks upward.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WhatsAppError {
    /// The session is not connected to WhatsApp (a live call needs it).
    #[error("session is not connected")]
    NotConnected,
    /// The session is not waiting to be linked, so there is no QR or code.
    #[error("session is not pairing")]
    NotPairing,
    /// WhatsApp has nothing to show; the reason when WhatsApp tells it.
    #[error("not found")]
    NotFound(Option<Absence>),
    /// The JID is of a kind this call does not take (e.g. blocking a group).
    #[error("invalid target: {0}")]
    InvalidTarget(String),
    /// WhatsApp does not let the account do this (a group change only
    /// admins may make); the text says what, for people.
    #[error("not permitted: {0}")]
    NotPermitted(String),
    /// The phone number has no WhatsApp account.
    #[error("not on WhatsApp")]
    NotOnWhatsApp,
    /// WhatsApp refused the request for good: sent again the same way it
    /// is refused again (a 4xx answer, media the media server will not
    /// take). Transient refusals (429, 5xx) are [`WhatsAppError::Unavailable`].
    #[error("WhatsApp refused the request: {0}")]
    Refused(Refusal),
    /// WhatsApp did not answer in time.
    #[error("WhatsApp did not answer in time")]
    Timeout,
    /// A transient failure; trying again later may work.
    #[error("WhatsApp is unavailable: {0}")]
    Unavailable(String),
    /// Anything else; the text is for logs, not for callers.
    #[error("internal WhatsApp adapter error: {0}")]
    Internal(String),
}

/// Who refused a request for good, and with what code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum Refusal {
    /// WhatsApp's server answered with this error code (4xx, not 408 or
    /// 429).
    #[error("WhatsApp answered {0}")]
    Server(u16),
    /// The media server refused the upload with this HTTP status (4xx):
    /// too large, a type it does not take, or bytes it cannot read.
    #[error("the media server answered {0}")]
    Media(u16),
}
