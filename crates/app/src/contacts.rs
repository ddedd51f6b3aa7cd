//! Live contact lookups and actions.

use std::future::Future;

use wagate_domain::{
    About, BlocklistEntry, Capability, DomainError, Jid, PictureType, Principal, ProfilePicture,
    SessionId, SessionStatus,
};
use wagate_whatsapp_port::WhatsAppError;

use wagate_store::{SessionPatch, StoreError};

use crate::gateway::AdapterContext;
use crate::{AppError, Gateway};

impl Gateway {
    /// Checks the capability, the session's ownership and that it is
    /// connected, then runs `call` within the request deadline.
    pub(crate) async fn live<T, F, Fut>(
        &self,
        p: &Principal,
        cap: Capability,
        id: &SessionId,
        not_found: &'static str,
        call: F,
    ) -> Result<T, AppError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, WhatsAppError>>,
    {
        Self::require(p, cap)?;
        let s = self.owned_session(&p.org, id).await?;
        if s.status != SessionStatus::Connected {
            return Err(AppError::NotConnected { status: s.status });
        }
        // Paced per session, so no caller can get the account rate-limited
        // or banned by WhatsApp.
        self.pace(id)?;
        let ctx = AdapterContext {
            status: SessionStatus::Disconnected,
            not_found: Some(not_found),
        };
        let result = self.whatsapp(ctx, call()).await;
        if let Err(AppError::NotConnected { .. }) = result {
            // The adapter lost the connection before it told us: record it,
            // so the session's status and the 501's details agree; unless
            // an adapter event changed the session since we read it (it
            // knows better, e.g. it has reconnected meanwhile).
            let patch = SessionPatch {
                expected_revision: Some(s.revision),
                ..SessionPatch::status(SessionStatus::Disconnected)
            };
            match self
                .deps
                .sessions
                .update(&p.org, id, &patch, self.now())
                .await
            {
                Ok(_) | Err(StoreError::Changed) => {}
                Err(e) => return Err(e.into()),
            }
        }
        result
    }

    fn person(p: &Principal, cap: Capability, jid: &Jid) -> Result<(), AppError> {
        // Capability first: a refusal must not depend on the input.
        Self::require(p, cap)?;
        if jid.kind().is_person() {
            Ok(())
        } else {
            Err(DomainError::new(
                "jid",
                "must be a user JID (phone number or LID), not a group or channel",
            )
            .into())
        }
    }

    /// The contact's current profile picture (`jid`: person, group or channel).
    ///
    /// # Errors
    ///
    /// `Forbidden` without `read`; `NotFound` (session, or picture with its
    /// reason); `NotConnected`; `Timeout`; `Unavailable`.
    pub async fn profile_picture(
        &self,
        p: &Principal,
        id: &SessionId,
        jid: &Jid,
        kind: PictureType,
    ) -> Result<ProfilePicture, AppError> {
        self.live(p, Capability::Read, id, "profile picture not found", || {
            self.deps.whatsapp.profile_picture(id, jid, kind)
        })
        .await
    }

    /// The contact's about text (`jid`: a person).
    ///
    /// # Errors
    ///
    /// As [`Gateway::profile_picture`], and `InvalidArgument` for a group or
    /// channel JID.
    pub async fn about(&self, p: &Principal, id: &SessionId, jid: &Jid) -> Result<About, AppError> {
        Self::person(p, Capability::Read, jid)?;
        self.live(p, Capability::Read, id, "about not found", || {
            self.deps.whatsapp.about(id, jid)
        })
        .await
    }

    /// Blocks a person. Idempotent.
    ///
    /// # Errors
    ///
    /// `Forbidden` without `send`; otherwise as [`Gateway::about`].
    pub async fn block(&self, p: &Principal, id: &SessionId, jid: &Jid) -> Result<(), AppError> {
        Self::person(p, Capability::Send, jid)?;
        self.live(p, Capability::Send, id, "contact not found", || {
            self.deps.whatsapp.block(id, jid)
        })
        .await?;
        tracing::info!(session = %id, "contact blocked");
        Ok(())
    }

    /// Unblocks a person. Idempotent.
    ///
    /// # Errors
    ///
    /// As [`Gateway::block`].
    pub async fn unblock(&self, p: &Principal, id: &SessionId, jid: &Jid) -> Result<(), AppError> {
        Self::person(p, Capability::Send, jid)?;
        self.live(p, Capability::Send, id, "contact not found", || {
            self.deps.whatsapp.unblock(id, jid)
        })
        .await?;
        tracing::info!(session = %id, "contact unblocked");
        Ok(())
    }

    /// Everyone the session's account has blocked.
    ///
    /// # Errors
    ///
    /// `Forbidden` without `read`; `NotFound`; `NotConnected`; `Timeout`;
    /// `Unavailable`.
    pub async fn blocklist(
        &self,
        p: &Principal,
        id: &SessionId,
    ) -> Result<Vec<BlocklistEntry>, AppError> {
        self.live(p, Capability::Read, id, "blocklist not found", || {
            self.deps.whatsapp.blocklist(id)
        })
        .await
    }
}
