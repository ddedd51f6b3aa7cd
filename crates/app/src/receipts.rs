//! Receipts of the account's messages: who of a group has a message, has
//! read it; the one recipient's for a one-to-one message.

use wagate_domain::{
    Capability, DomainError, Jid, JidKind, MessageId, MessageStatus, Principal, Receipt, Recipient,
    SessionId, StatusTimes,
};
use wagate_store::ReceiptPage;

use crate::{AppError, Gateway};

/// Receipts a page of `GET …/messages/{id}/receipts` holds when the caller
/// does not say.
pub const DEFAULT_RECEIPT_PAGE: u32 = 100;
/// The most receipts one page may hold (a group has at most 1024 members).
pub const MAX_RECEIPT_PAGE: u32 = 1000;

impl Gateway {
    /// The receipts of the account's message `id`, by recipient: for a
    /// group message each participant it went to (those of the group when
    /// it was accepted, the account left out; `pending` until their
    /// receipt comes), paged after `after`; for a one-to-one message its
    /// one recipient, with the status the message has.
    ///
    /// # Errors
    ///
    /// `Forbidden` without `read`; `InvalidArgument` for a `limit` outside
    /// 1 to [`MAX_RECEIPT_PAGE`]; `NotFound` (session or message);
    /// `MessageConflict` (`not_own_message`) for a received message;
    /// `Unavailable`.
    pub async fn message_receipts(
        &self,
        p: &Principal,
        session: &SessionId,
        id: &MessageId,
        after: Option<&Jid>,
        limit: Option<u32>,
    ) -> Result<ReceiptPage, AppError> {
        Self::require(p, Capability::Read)?;
        let limit = limit.unwrap_or(DEFAULT_RECEIPT_PAGE);
        if !(1..=MAX_RECEIPT_PAGE).contains(&limit) {
            return Err(
                DomainError::new("limit", format!("must be 1 to {MAX_RECEIPT_PAGE}")).into(),
            );
        }
        self.owned_session(&p.org, session).await?;
        let not_found = || AppError::NotFound {
            what: "message not found",
            reason: None,
        };
        let m = self
            .deps
            .messages
            .get_message(&p.org, session, id)
            .await?
            .ok_or_else(not_found)?;
        if !m.from_me {
            return Err(AppError::MessageConflict {
                message: "only the account's own messages have receipts",
                reason: "not_own_message",
            });
        }
        if m.chat.kind() != JidKind::Group {
            let receipt = Receipt {
                recipient: Recipient::of(&m.to),
                status: match m.status {
                    s
                    @ (MessageStatus::Delivered | MessageStatus::Read | MessageStatus::Played) => s,
                    _ => MessageStatus::Pending,
                },
                status_at: StatusTimes {
                    sent: None,
                    ..m.status_at
                },
            };
            let past = after.is_some_and(|a| a.to_string() >= receipt.recipient.key().to_string());
            return Ok(ReceiptPage {
                items: if past { Vec::new() } else { vec![receipt] },
                next: None,
            });
        }
        self.deps
            .messages
            .receipts(&p.org, session, id, after, limit)
            .await?
            .ok_or_else(not_found)
    }
}
