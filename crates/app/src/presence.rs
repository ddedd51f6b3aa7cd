//! Typing and presence: showing the account's state to a contact, and
//! following a contact's (its changes arrive as ephemeral events).

use wagate_domain::{Capability, ChatState, DomainError, Jid, Principal, SessionId, SessionStatus};

use crate::gateway::AdapterContext;
use crate::{AppError, Gateway};

fn person(field: &'static str, jid: &Jid) -> Result<(), AppError> {
    if jid.kind().is_person() {
        Ok(())
    } else {
        Err(DomainError::new(
            field,
            "must be a user JID (phone number or LID), not a group or channel",
        )
        .into())
    }
}

const CTX: AdapterContext = AdapterContext {
    status: SessionStatus::Disconnected,
    not_found: None,
};

impl Gateway {
    /// Shows `state` (typing, recording, paused) in the chat with `chat`.
    ///
    /// # Errors
    ///
    /// `Forbidden` without `send`; `InvalidArgument` on `jid` (not a
    /// person); `NotFound`; `NotConnected`; `RateLimited`; `Timeout`;
    /// `Unavailable`.
    pub async fn send_chat_state(
        &self,
        p: &Principal,
        session: &SessionId,
        chat: &Jid,
        state: ChatState,
    ) -> Result<(), AppError> {
        Self::require(p, Capability::Send)?;
        person("jid", chat)?;
        self.connected_session(p, session).await?;
        self.pace(session)?;
        self.whatsapp(
            CTX,
            self.deps.whatsapp.send_chat_state(session, chat, state),
        )
        .await
    }

    /// Shows the account online (`available`) or offline.
    ///
    /// # Errors
    ///
    /// `Forbidden` without `send`; `NotFound`; `NotConnected`;
    /// `RateLimited`; `Timeout`; `Unavailable`.
    pub async fn set_presence(
        &self,
        p: &Principal,
        session: &SessionId,
        available: bool,
    ) -> Result<(), AppError> {
        Self::require(p, Capability::Send)?;
        self.connected_session(p, session).await?;
        self.pace(session)?;
        self.whatsapp(CTX, self.deps.whatsapp.set_presence(session, available))
            .await
    }

    /// Follows `jid`'s presence: `presence.update` events while the
    /// session stays connected.
    ///
    /// # Errors
    ///
    /// `Forbidden` without `read`; `InvalidArgument` on `jid` (not a
    /// person); `NotFound`; `NotConnected`; `RateLimited`; `Timeout`;
    /// `Unavailable`.
    pub async fn subscribe_presence(
        &self,
        p: &Principal,
        session: &SessionId,
        jid: &Jid,
    ) -> Result<(), AppError> {
        Self::require(p, Capability::Read)?;
        person("jid", jid)?;
        self.connected_session(p, session).await?;
        self.pace(session)?;
        self.whatsapp(CTX, self.deps.whatsapp.subscribe_presence(session, jid))
            .await
    }
}
