use std::fmt;

use time::OffsetDateTime;

use crate::{DomainError, Jid, OrgId, SessionId};

/// Where a session is in its life (see the state machine in
/// docs/ARCHITECTURE.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionStatus {
    /// Created, never linked.
    New,
    /// Waiting for a QR scan or a pairing code.
    Pairing,
    /// Linked, logging in.
    Connecting,
    /// Linked and online: live calls work.
    Connected,
    /// Linked, not connected.
    Disconnected,
    /// Unlinked (by us or by the phone); connecting again re-pairs.
    LoggedOut,
}

impl SessionStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [SessionStatus; 6] = [
        SessionStatus::New,
        SessionStatus::Pairing,
        SessionStatus::Connecting,
        SessionStatus::Connected,
        SessionStatus::Disconnected,
        SessionStatus::LoggedOut,
    ];

    /// The status's name in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::New => "new",
            SessionStatus::Pairing => "pairing",
            SessionStatus::Connecting => "connecting",
            SessionStatus::Connected => "connected",
            SessionStatus::Disconnected => "disconnected",
            SessionStatus::LoggedOut => "logged_out",
        }
    }

    /// The status named `input`, if any.
    pub fn from_name(input: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == input)
    }
}

impl fmt::Display for SessionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A session's optional display name: 1 to 100 characters, trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionName(Box<str>);

impl SessionName {
    /// Parses a session name.
    ///
    /// # Errors
    ///
    /// A [`DomainError`] on field `name` when it is empty after trimming,
    /// longer than 100 characters, or holds control characters.
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        crate::parse_label("name", input).map(Self)
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Stable codes of [`LastError`]: clients may match on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionErrorCode {
    /// WhatsApp (or the configured server) could not be reached.
    Unreachable,
    /// Another client connected with the same device and replaced us.
    StreamReplaced,
    /// WhatsApp banned the account for a while.
    TemporaryBan,
    /// WhatsApp refused our client version as outdated.
    ClientOutdated,
    /// Pairing failed (or every QR code expired unscanned).
    PairingFailed,
    /// The phone unlinked this device.
    LoggedOutByPhone,
    /// WhatsApp refused the connection for another reason.
    ConnectFailure,
    /// Something inside the gateway went wrong.
    Internal,
}

impl SessionErrorCode {
    /// Every code.
    pub const ALL: [SessionErrorCode; 8] = [
        SessionErrorCode::Unreachable,
        SessionErrorCode::StreamReplaced,
        SessionErrorCode::TemporaryBan,
        SessionErrorCode::ClientOutdated,
        SessionErrorCode::PairingFailed,
        SessionErrorCode::LoggedOutByPhone,
        SessionErrorCode::ConnectFailure,
        SessionErrorCode::Internal,
    ];

    /// The code's text.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionErrorCode::Unreachable => "unreachable",
            SessionErrorCode::StreamReplaced => "stream_replaced",
            SessionErrorCode::TemporaryBan => "temporary_ban",
            SessionErrorCode::ClientOutdated => "client_outdated",
            SessionErrorCode::PairingFailed => "pairing_failed",
            SessionErrorCode::LoggedOutByPhone => "logged_out_by_phone",
            SessionErrorCode::ConnectFailure => "connect_failure",
            SessionErrorCode::Internal => "internal",
        }
    }

    /// The code named `input`, if any.
    pub fn from_name(input: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == input)
    }
}

/// Why a session last failed: a stable code and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastError {
    /// Stable, machine-readable.
    pub code: SessionErrorCode,
    /// Human-readable; never holds secrets.
    pub message: String,
}

/// A lifecycle request that was accepted but may not have finished: it is
/// recorded before the gateway acts, so a gateway stopped half-way (crash,
/// `kill -9`) finishes it on its next start instead of forgetting it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PendingLifecycle {
    /// Unlink from WhatsApp and erase the device keys.
    Logout,
    /// Unlink, erase the keys and remove the session.
    Delete,
}

impl PendingLifecycle {
    /// The name in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            PendingLifecycle::Logout => "logout",
            PendingLifecycle::Delete => "delete",
        }
    }

    /// The request named `input`, if any.
    pub fn from_name(input: &str) -> Option<Self> {
        [PendingLifecycle::Logout, PendingLifecycle::Delete]
            .into_iter()
            .find(|p| p.as_str() == input)
    }
}

/// One linked (or to-be-linked) WhatsApp device, owned by one organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The session's id.
    pub id: SessionId,
    /// The organization that owns it; no other may see it.
    pub org: OrgId,
    /// Optional display name.
    pub name: Option<SessionName>,
    /// Where it is in its life.
    pub status: SessionStatus,
    /// The WhatsApp account it is linked as, once linked.
    pub jid: Option<Jid>,
    /// The account's display name, once connected.
    pub push_name: Option<String>,
    /// Whether the gateway should keep it connected (set by connect, cleared
    /// by disconnect and logout); drives reconnection after a restart.
    pub keep_connected: bool,
    /// When it was created.
    pub created_at: OffsetDateTime,
    /// When it last changed.
    pub updated_at: OffsetDateTime,
    /// When it last reached `connected`.
    pub last_connected_at: Option<OffsetDateTime>,
    /// Why it last failed, cleared on the next successful connect.
    pub last_error: Option<LastError>,
    /// A logout or delete accepted and not yet finished.
    pub pending: Option<PendingLifecycle>,
    /// Bumped by every change that is stored; a conditional write names the
    /// revision it read, so it never overwrites a change it did not see.
    pub revision: u64,
}

/// How many items a list call returns, and from where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// 1 to [`PageRequest::MAX_LIMIT`].
    limit: u32,
    /// Return items strictly older than this one.
    pub after: Option<SessionId>,
}

impl PageRequest {
    /// Items per page when the caller does not say.
    pub const DEFAULT_LIMIT: u32 = 50;
    /// The most items one page may hold.
    pub const MAX_LIMIT: u32 = 100;

    /// A page request.
    ///
    /// # Errors
    ///
    /// A [`DomainError`] on field `limit` outside 1 to [`PageRequest::MAX_LIMIT`].
    pub fn new(limit: Option<u32>, after: Option<SessionId>) -> Result<Self, DomainError> {
        let limit = limit.unwrap_or(Self::DEFAULT_LIMIT);
        if !(1..=Self::MAX_LIMIT).contains(&limit) {
            return Err(DomainError::new(
                "limit",
                format!("must be 1 to {}", Self::MAX_LIMIT),
            ));
        }
        Ok(Self { limit, after })
    }

    /// The page size.
    pub fn limit(&self) -> u32 {
        self.limit
    }
}

/// One page of a list, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Pass as the next request's cursor; `None` on the last page.
    pub next_cursor: Option<SessionId>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            SessionName::parse("  support line ").unwrap().as_str(),
            "support line"
        );
        assert!(SessionName::parse("   ").is_err());
        assert!(SessionName::parse(&"é".repeat(100)).is_ok());
        assert!(SessionName::parse(&"é".repeat(101)).is_err());
        assert!(SessionName::parse("a\u{0}b").is_err());
    }

    #[test]
    fn status_and_code_names_round_trip() {
        for s in SessionStatus::ALL {
            assert_eq!(SessionStatus::from_name(s.as_str()), Some(s));
        }
        for c in SessionErrorCode::ALL {
            assert_eq!(SessionErrorCode::from_name(c.as_str()), Some(c));
        }
    }

    #[test]
    fn page_limits() {
        assert_eq!(PageRequest::new(None, None).unwrap().limit(), 50);
        assert!(PageRequest::new(Some(0), None).is_err());
        assert!(PageRequest::new(Some(101), None).is_err());
    }
}
