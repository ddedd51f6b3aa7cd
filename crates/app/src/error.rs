use thiserror::Error;
use wagate_domain::{Absence, Capability, DomainError, SessionStatus};
use wagate_store::StoreError;

/// What a use case can fail with. The HTTP layer maps each variant to one
/// status and error code; the texts of `Internal` and `Unavailable` are for
/// logs only.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AppError {
    /// Input did not parse or is not allowed here.
    #[error(transparent)]
    InvalidArgument(#[from] DomainError),
    /// The caller lacks the capability.
    #[error("missing capability '{required}'")]
    Forbidden {
        /// The capability that was needed.
        required: Capability,
    },
    /// Nothing there (or it belongs to another organization).
    #[error("{what}")]
    NotFound {
        /// What was not found, for people: "session not found".
        what: &'static str,
        /// Why WhatsApp had nothing to show, when it says.
        reason: Option<Absence>,
    },
    /// The request conflicts with the resource's state.
    #[error("{message}")]
    Conflict {
        /// For people.
        message: &'static str,
        /// The session's status, when that is the conflict.
        status: Option<SessionStatus>,
    },
    /// A message cannot be changed so (edited or deleted): not the
    /// account's, past WhatsApp's window, not sent yet, deleted already.
    #[error("{message}")]
    MessageConflict {
        /// For people.
        message: &'static str,
        /// For programs (`details.reason`): `not_own_message`,
        /// `edit_window_passed`, `revoke_window_passed`, `not_sent`,
        /// `revoked`, `not_editable`.
        reason: &'static str,
    },
    /// A live call on a session that is not connected.
    #[error("session is not connected")]
    NotConnected {
        /// The session's status.
        status: SessionStatus,
    },
    /// The session's live WhatsApp calls are paced
    /// (`limits.whatsapp_calls_per_minute`) and it used up its pace.
    #[error("rate limited")]
    RateLimited {
        /// How long until the call would be allowed.
        retry_after: std::time::Duration,
    },
    /// A body (or media) larger than allowed.
    #[error("payload too large")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// A cursor older than what the event log keeps.
    #[error("the cursor is older than the events kept")]
    Gone,
    /// The organization has as many as it may (`webhooks.max_per_org`).
    #[error("{message}")]
    LimitReached {
        /// For people.
        message: &'static str,
        /// The limit.
        limit: u32,
    },
    /// WhatsApp did not answer in time.
    #[error("WhatsApp did not answer in time")]
    Timeout,
    /// A transient failure upstream or of the database.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A bug or an unexpected failure; details are logged, not shown.
    #[error("internal error: {0}")]
    Internal(String),
}

impl AppError {
    pub(crate) fn session_not_found() -> Self {
        AppError::NotFound {
            what: "session not found",
            reason: None,
        }
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => AppError::Unavailable(m),
            other => AppError::Internal(other.to_string()),
        }
    }
}
