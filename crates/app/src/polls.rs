//! Polls: the current tally of a poll message (the votes themselves are
//! recorded with the other inbound messages, see `recorder.rs`).

use wagate_domain::{Capability, MessageId, PollTally, Principal, RichContent, SessionId};

use crate::{AppError, Gateway};

impl Gateway {
    /// The tally of poll `id` of `session`: its question, each option with
    /// its votes and voters (each voter's latest vote), how many people
    /// vote for something now, and when the last vote came.
    ///
    /// # Errors
    ///
    /// `Forbidden` without `read`; `NotFound` (session, message); a
    /// `MessageConflict` `not_a_poll` when the message is no poll (or was
    /// deleted for everyone); `Unavailable`.
    pub async fn poll_results(
        &self,
        p: &Principal,
        session: &SessionId,
        id: &MessageId,
    ) -> Result<PollTally, AppError> {
        Self::require(p, Capability::Read)?;
        self.owned_session(&p.org, session).await?;
        let (message, votes) = self
            .deps
            .messages
            .poll_votes(&p.org, session, id)
            .await?
            .ok_or(AppError::NotFound {
                what: "message not found",
                reason: None,
            })?;
        match message.rich {
            Some(RichContent::Poll(poll)) => Ok(PollTally {
                message: message.id,
                poll,
                votes,
            }),
            _ => Err(AppError::MessageConflict {
                message: "the message is not a poll",
                reason: "not_a_poll",
            }),
        }
    }
}
