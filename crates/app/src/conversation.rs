//! The rest of a conversation: editing and deleting for everyone the
//! account's own messages.

use std::fmt;

use wagate_domain::{
    Capability, DomainError, EDIT_WINDOW, MAX_CAPTION_CHARS, MAX_TEXT_CHARS, Message, MessageId,
    MessageStatus, MessageType, Principal, REVOKE_WINDOW, SessionId, SessionStatus,
};
use wagate_store::{InboundBody, InboundRecord};

use crate::gateway::AdapterContext;
use crate::{AppError, Gateway};

/// What an edit changes: the text of a text message, or the caption of an
/// image, video or document.
#[derive(Clone, PartialEq, Eq)]
pub enum MessageEdit {
    /// The new text (`text` messages).
    Text(String),
    /// The new caption (media).
    Caption(String),
}

// Conversations stay out of logs.
impl fmt::Debug for MessageEdit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MessageEdit::Text(_) => f.write_str("Text(..)"),
            MessageEdit::Caption(_) => f.write_str("Caption(..)"),
        }
    }
}

impl MessageEdit {
    /// Checks the text alone (before any lookup).
    fn check(&self) -> Result<&str, AppError> {
        let (field, text, max) = match self {
            MessageEdit::Text(t) => ("text", t, MAX_TEXT_CHARS),
            MessageEdit::Caption(c) => ("caption", c, MAX_CAPTION_CHARS),
        };
        if text.is_empty() || text.chars().count() > max {
            return Err(DomainError::new(field, format!("must be 1 to {max} characters")).into());
        }
        Ok(text)
    }
}

/// Why the account cannot change `m` now (edit: `window` is
/// [`EDIT_WINDOW`]; delete: [`REVOKE_WINDOW`]).
fn changeable(
    m: &Message,
    now: time::OffsetDateTime,
    window: time::Duration,
    past: &'static str,
) -> Result<(), AppError> {
    let conflict = |message, reason| Err(AppError::MessageConflict { message, reason });
    if !m.from_me {
        return conflict(
            "only the account's own messages can be changed",
            "not_own_message",
        );
    }
    if m.kind == MessageType::Revoked {
        return conflict("the message was deleted for everyone", "revoked");
    }
    if matches!(m.status, MessageStatus::Pending | MessageStatus::Failed) {
        return conflict("the message has not been sent", "not_sent");
    }
    if now - m.timestamp > window {
        return conflict("WhatsApp's window for this change has passed", past);
    }
    Ok(())
}

impl Gateway {
    /// The caller's message `id` of `session`, for a change.
    async fn own_message(
        &self,
        p: &Principal,
        session: &SessionId,
        id: &MessageId,
    ) -> Result<Message, AppError> {
        self.deps
            .messages
            .get_message(&p.org, session, id)
            .await?
            .ok_or(AppError::NotFound {
                what: "message not found",
                reason: None,
            })
    }

    /// Records a change the account made through WhatsApp to its message
    /// `m`, as one it made on its phone would be: applied to the stored
    /// message with its event, once (under an id of its own); the message
    /// as it is now.
    async fn record_own_change(
        &self,
        p: &Principal,
        m: &Message,
        body: InboundBody,
    ) -> Result<Message, AppError> {
        let mut random = [0u8; 9];
        self.deps.entropy.fill(&mut random);
        let record = InboundRecord {
            id: MessageId::from_random(random),
            chat: m.chat.clone(),
            sender: m.from.clone(),
            sender_pn: m.from_pn.clone(),
            sender_lid: m.from_lid.clone(),
            from_me: true,
            timestamp: self.now(),
            body,
            reply_to: None,
            mentions: Vec::new(),
        };
        self.deps
            .messages
            .record_inbound(&m.session, &[record], self.now())
            .await?;
        self.own_message(p, &m.session, &m.id).await
    }

    /// Edits the account's own text message (`text`) or media caption
    /// (`caption`) within WhatsApp's edit window; the message as edited.
    ///
    /// # Errors
    ///
    /// `Forbidden` without `send`; `InvalidArgument` on `text` or `caption`
    /// (empty, too long, or the other one is what the message has);
    /// `NotFound` (session or message); `NotConnected`; `MessageConflict`
    /// (`not_own_message`, `revoked`, `not_sent`, `not_editable`,
    /// `edit_window_passed`); `RateLimited`; `Timeout`; `Unavailable`.
    pub async fn edit_message(
        &self,
        p: &Principal,
        session: &SessionId,
        id: &MessageId,
        edit: &MessageEdit,
    ) -> Result<Message, AppError> {
        Self::require(p, Capability::Send)?;
        let text = edit.check()?;
        self.connected_session(p, session).await?;
        let m = self.own_message(p, session, id).await?;
        changeable(&m, self.now(), EDIT_WINDOW, "edit_window_passed")?;
        match (edit, m.kind) {
            (MessageEdit::Text(_), MessageType::Text) => {}
            (MessageEdit::Caption(_), k) if k.has_caption() => {}
            (MessageEdit::Text(_), k) if k.has_caption() => {
                return Err(
                    DomainError::new("text", "the message has media: edit its caption").into(),
                );
            }
            (MessageEdit::Caption(_), MessageType::Text) => {
                return Err(DomainError::new(
                    "caption",
                    "a text message has no caption: edit its text",
                )
                .into());
            }
            _ => {
                return Err(AppError::MessageConflict {
                    message: "only text and captions can be edited",
                    reason: "not_editable",
                });
            }
        }
        self.pace(session)?;
        let ctx = AdapterContext {
            status: SessionStatus::Disconnected,
            not_found: Some("message not found"),
        };
        self.whatsapp(
            ctx,
            self.deps
                .whatsapp
                .edit_message(session, &m.chat, &m.id, text),
        )
        .await?;
        let body = InboundBody::Edit {
            target: m.id.clone(),
            text: text.to_owned(),
        };
        self.record_own_change(p, &m, body).await
    }

    /// Deletes the account's own message for everyone within WhatsApp's
    /// window; the message as it is now (`type: "revoked"`).
    ///
    /// # Errors
    ///
    /// `Forbidden` without `send`; `NotFound` (session or message);
    /// `NotConnected`; `MessageConflict` (`not_own_message`, `revoked`,
    /// `not_sent`, `revoke_window_passed`); `RateLimited`; `Timeout`;
    /// `Unavailable`.
    pub async fn revoke_message(
        &self,
        p: &Principal,
        session: &SessionId,
        id: &MessageId,
    ) -> Result<Message, AppError> {
        Self::require(p, Capability::Send)?;
        self.connected_session(p, session).await?;
        let m = self.own_message(p, session, id).await?;
        changeable(&m, self.now(), REVOKE_WINDOW, "revoke_window_passed")?;
        self.pace(session)?;
        let ctx = AdapterContext {
            status: SessionStatus::Disconnected,
            not_found: Some("message not found"),
        };
        self.whatsapp(
            ctx,
            self.deps.whatsapp.revoke_message(session, &m.chat, &m.id),
        )
        .await?;
        let body = InboundBody::Revoke {
            target: m.id.clone(),
        };
        self.record_own_change(p, &m, body).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wagate_domain::{Jid, StatusTimes};

    fn sent_at(at: time::OffsetDateTime) -> Message {
        let jid = Jid::parse("14155550123@s.whatsapp.net").unwrap();
        Message {
            id: MessageId::parse("3EB0AA").unwrap(),
            session: SessionId::parse("sess_01JBZ5T0Q4M6Y8V2K3N7R9S1WX").unwrap(),
            chat: jid.clone(),
            from_me: true,
            from: jid.clone(),
            from_pn: None,
            from_lid: None,
            to: jid,
            kind: MessageType::Text,
            text: Some("hi".into()),
            caption: None,
            media: None,
            rich: None,
            voice_note: false,
            reply_to: None,
            mentions: Vec::new(),
            status: MessageStatus::Delivered,
            status_at: StatusTimes::default(),
            error: None,
            edited_at: None,
            timestamp: at,
            created_at: at,
        }
    }

    fn reason(r: Result<(), AppError>) -> Option<&'static str> {
        match r {
            Err(AppError::MessageConflict { reason, .. }) => Some(reason),
            _ => None,
        }
    }

    #[test]
    fn changes_keep_to_whatsapp_s_windows() {
        let at = time::macros::datetime!(2026-12-01 10:00 UTC);
        let m = sent_at(at);
        let edit = |now| reason(changeable(&m, now, EDIT_WINDOW, "edit_window_passed"));
        assert_eq!(edit(at + time::Duration::minutes(15)), None);
        assert_eq!(
            edit(at + time::Duration::minutes(16)),
            Some("edit_window_passed")
        );
        let revoke = |now| reason(changeable(&m, now, REVOKE_WINDOW, "revoke_window_passed"));
        assert_eq!(revoke(at + time::Duration::hours(59)), None);
        assert_eq!(
            revoke(at + time::Duration::hours(61)),
            Some("revoke_window_passed")
        );
        let pending = Message {
            status: MessageStatus::Pending,
            ..m.clone()
        };
        assert_eq!(
            reason(changeable(&pending, at, EDIT_WINDOW, "x")),
            Some("not_sent")
        );
        let theirs = Message {
            from_me: false,
            ..m.clone()
        };
        assert_eq!(
            reason(changeable(&theirs, at, EDIT_WINDOW, "x")),
            Some("not_own_message")
        );
        assert!(
            format!("{:?}", MessageEdit::Text("secret".into()))
                .find("secret")
                .is_none()
        );
    }
}
