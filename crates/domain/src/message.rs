//! Messages: the values a one-to-one conversation is made of, shared by the
//! store, the use cases and the WhatsApp adapters.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use time::OffsetDateTime;

use crate::{DomainError, Jid, RichContent, SessionId};

/// Longest message id accepted. WhatsApp's own are 16 to 32 characters;
/// other clients' are longer, never near this.
const MAX_MESSAGE_ID_LEN: usize = 128;

/// A WhatsApp message id (`3EB0…`), unique within one chat and sender.
///
/// Built by [`MessageId::parse`] (1 to 128 ASCII letters, digits, `-` or
/// `_`) or [`MessageId::from_random`], so it is always safe in a URL path,
/// a log line and a stanza attribute.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(Box<str>);

impl MessageId {
    /// Parses a message id.
    ///
    /// # Errors
    ///
    /// A [`DomainError`] on field `messageId` when the text is empty, longer
    /// than 128 characters, or holds anything but ASCII letters, digits,
    /// `-` and `_`.
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        if input.is_empty() || input.len() > MAX_MESSAGE_ID_LEN {
            return Err(DomainError::new(
                "messageId",
                format!("must be 1 to {MAX_MESSAGE_ID_LEN} characters"),
            ));
        }
        if !input
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(DomainError::new(
                "messageId",
                "must be ASCII letters, digits, '-' or '_'",
            ));
        }
        Ok(Self(input.into()))
    }

    /// A new id in WhatsApp Web's form: `3EB0` and 18 upper-case hex digits
    /// of `random` (the caller's randomness, so tests choose it).
    pub fn from_random(random: [u8; 9]) -> Self {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        let mut id = String::with_capacity(22);
        id.push_str("3EB0");
        for b in random {
            id.push(char::from(HEX[usize::from(b >> 4)]));
            id.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
        Self(id.into())
    }

    /// The id's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for MessageId {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for MessageId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for MessageId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// What a message carries (the API's `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// Text only.
    Text,
    /// A picture, with an optional caption.
    Image,
    /// A video, with an optional caption.
    Video,
    /// Audio; a voice note when the message says so.
    Audio,
    /// A file, with its name.
    Document,
    /// A place on the map.
    Location,
    /// One or more contact cards (vCards).
    Contacts,
    /// A poll people vote on.
    Poll,
    /// Deleted for everyone by its writer: the content is gone.
    Revoked,
}

impl MessageType {
    /// Every type.
    pub const ALL: [MessageType; 9] = [
        MessageType::Text,
        MessageType::Image,
        MessageType::Video,
        MessageType::Audio,
        MessageType::Document,
        MessageType::Location,
        MessageType::Contacts,
        MessageType::Poll,
        MessageType::Revoked,
    ];

    /// The API's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::Text => "text",
            MessageType::Image => "image",
            MessageType::Video => "video",
            MessageType::Audio => "audio",
            MessageType::Document => "document",
            MessageType::Location => "location",
            MessageType::Contacts => "contacts",
            MessageType::Poll => "poll",
            MessageType::Revoked => "revoked",
        }
    }

    /// Parses the API's name.
    ///
    /// # Errors
    ///
    /// A [`DomainError`] on field `type` naming the accepted values.
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == input)
            .ok_or_else(|| {
                DomainError::new(
                    "type",
                    "must be one of text, image, video, audio, document, location, contacts, poll",
                )
            })
    }

    /// True for the four types that carry media.
    pub fn has_media(self) -> bool {
        matches!(
            self,
            MessageType::Image | MessageType::Video | MessageType::Audio | MessageType::Document
        )
    }

    /// True for the types whose caption can be edited (media but audio,
    /// which has none).
    pub fn has_caption(self) -> bool {
        matches!(
            self,
            MessageType::Image | MessageType::Video | MessageType::Document
        )
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a message is in its life.
///
/// Outgoing: `pending → sent → delivered → read → played`, or `failed`.
/// Incoming: `received → read` (once a read receipt was sent for it).
/// A status only ever moves forward ([`MessageStatus::advances_to`]):
/// receipts that arrive late or twice never move it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageStatus {
    /// Accepted, not yet acknowledged by WhatsApp's server.
    Pending,
    /// WhatsApp's server has it.
    Sent,
    /// On the contact's device.
    Delivered,
    /// The contact read it (or, for an incoming one, we told WhatsApp we did).
    Read,
    /// The contact played the voice note.
    Played,
    /// It will not be sent (see the message's error).
    Failed,
    /// An incoming message.
    Received,
}

impl MessageStatus {
    /// Every status.
    pub const ALL: [MessageStatus; 7] = [
        MessageStatus::Pending,
        MessageStatus::Sent,
        MessageStatus::Delivered,
        MessageStatus::Read,
        MessageStatus::Played,
        MessageStatus::Failed,
        MessageStatus::Received,
    ];

    /// The API's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Pending => "pending",
            MessageStatus::Sent => "sent",
            MessageStatus::Delivered => "delivered",
            MessageStatus::Read => "read",
            MessageStatus::Played => "played",
            MessageStatus::Failed => "failed",
            MessageStatus::Received => "received",
        }
    }

    /// Parses the API's name.
    ///
    /// # Errors
    ///
    /// A [`DomainError`] on field `status`.
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == input)
            .ok_or_else(|| DomainError::new("status", "is not a message status"))
    }

    /// Position on the way forward; `Failed` ends an outgoing message that
    /// never reached the server, so only `Pending` may move to it.
    fn rank(self) -> u8 {
        match self {
            MessageStatus::Pending => 0,
            MessageStatus::Received | MessageStatus::Sent | MessageStatus::Failed => 1,
            MessageStatus::Delivered => 2,
            MessageStatus::Read => 3,
            MessageStatus::Played => 4,
        }
    }

    /// Whether a message now `self` may become `next`: only forward, and
    /// `failed` only from `pending`.
    pub fn advances_to(self, next: MessageStatus) -> bool {
        match (self, next) {
            (MessageStatus::Failed, _) => false,
            (MessageStatus::Pending, MessageStatus::Failed) => true,
            (_, MessageStatus::Failed | MessageStatus::Pending) => false,
            (MessageStatus::Received, next) => next == MessageStatus::Read,
            (_, MessageStatus::Received) => false,
            (now, next) => next.rank() > now.rank(),
        }
    }
}

impl fmt::Display for MessageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is known of a message's media without downloading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaInfo {
    /// Its MIME type (`image/jpeg`).
    pub mimetype: String,
    /// The file name, for documents.
    pub filename: Option<String>,
    /// Its size in bytes (decrypted).
    pub size: u64,
    /// SHA-256 of the decrypted bytes, lower-case hex.
    pub sha256: String,
}

/// Longest text message accepted (WhatsApp's own limit is 65,536
/// characters).
pub const MAX_TEXT_CHARS: usize = 65_536;

/// Longest caption or file name accepted.
pub const MAX_CAPTION_CHARS: usize = 4_096;

/// Most people one message @mentions.
pub const MAX_MENTIONS: usize = 50;

/// Why an outgoing message failed (the message object's `error.code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageErrorCode {
    /// Still not sent after `messages.max_pending_age`.
    Expired,
    /// WhatsApp's server refused it (its nack code in `details`).
    Rejected,
    /// The number has no WhatsApp account.
    NotOnWhatsApp,
    /// WhatsApp's media server refused its media for good (too large, a
    /// type it does not take, bytes it cannot read).
    MediaRejected,
    /// The gateway could not send it (e.g. its media could not be read).
    Internal,
}

impl MessageErrorCode {
    /// Every code.
    pub const ALL: [MessageErrorCode; 5] = [
        MessageErrorCode::Expired,
        MessageErrorCode::Rejected,
        MessageErrorCode::NotOnWhatsApp,
        MessageErrorCode::MediaRejected,
        MessageErrorCode::Internal,
    ];

    /// The API's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageErrorCode::Expired => "expired",
            MessageErrorCode::Rejected => "rejected",
            MessageErrorCode::NotOnWhatsApp => "not_on_whatsapp",
            MessageErrorCode::MediaRejected => "media_rejected",
            MessageErrorCode::Internal => "internal",
        }
    }

    /// The code named `input`, if any.
    pub fn from_name(input: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == input)
    }
}

/// Why an outgoing message is `failed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageError {
    /// What kind of failure.
    pub code: MessageErrorCode,
    /// For a person.
    pub message: String,
    /// WhatsApp's nack code (`rejected`), shown as `details.nackCode`.
    pub nack_code: Option<u32>,
}

impl MessageError {
    /// An error with the standard text for `code`.
    pub fn new(code: MessageErrorCode, nack_code: Option<u32>) -> Self {
        let message = match code {
            MessageErrorCode::Expired => "not sent within messages.max_pending_age",
            MessageErrorCode::Rejected => "WhatsApp refused the message",
            MessageErrorCode::NotOnWhatsApp => "the number has no WhatsApp account",
            MessageErrorCode::MediaRejected => "WhatsApp's media server refused the media",
            MessageErrorCode::Internal => "the gateway could not send the message",
        };
        Self {
            code,
            message: message.to_owned(),
            nack_code,
        }
    }

    /// `{ "code", "message", "details" }`.
    pub fn to_json(&self) -> serde_json::Value {
        let details = match self.nack_code {
            Some(n) => serde_json::json!({ "nackCode": n }),
            None => serde_json::json!({}),
        };
        serde_json::json!({ "code": self.code.as_str(), "message": self.message, "details": details })
    }

    pub(crate) fn from_json(v: &serde_json::Value) -> Option<Self> {
        Some(Self {
            code: MessageErrorCode::from_name(v.get("code")?.as_str()?)?,
            message: v.get("message")?.as_str()?.to_owned(),
            nack_code: v
                .get("details")
                .and_then(|d| d.get("nackCode"))
                .and_then(serde_json::Value::as_u64)
                .and_then(|n| u32::try_from(n).ok()),
        })
    }
}

/// When an outgoing message reached each status (the object's `statusAt`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusTimes {
    /// WhatsApp's server ack.
    pub sent: Option<OffsetDateTime>,
    /// On the contact's device.
    pub delivered: Option<OffsetDateTime>,
    /// Read.
    pub read: Option<OffsetDateTime>,
    /// Played (voice notes).
    pub played: Option<OffsetDateTime>,
}

impl StatusTimes {
    /// Records that `status` was reached `at`. A status reached implies the
    /// ones before it (a read message was delivered): those not known yet
    /// get the same time.
    pub fn reach(&mut self, status: MessageStatus, at: OffsetDateTime) {
        let order = [
            (MessageStatus::Sent, &mut self.sent),
            (MessageStatus::Delivered, &mut self.delivered),
            (MessageStatus::Read, &mut self.read),
            (MessageStatus::Played, &mut self.played),
        ];
        let Some(upto) = order.iter().position(|(s, _)| *s == status) else {
            return;
        };
        for (i, (_, slot)) in order.into_iter().enumerate() {
            if i <= upto && slot.is_none() {
                *slot = Some(at);
            }
        }
    }
}

/// Where a `message.sent` came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageSource {
    /// Sent through the API.
    Api,
    /// Sent from the account's phone or another linked device.
    Device,
}

impl MessageSource {
    /// The API's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageSource::Api => "api",
            MessageSource::Device => "device",
        }
    }
}

/// One message of a session, as stored and as the API shows it.
///
/// `Debug` leaves out the text and caption: conversations never reach a log.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    /// WhatsApp's id (unique with `chat` and `from`).
    pub id: MessageId,
    /// The session.
    pub session: SessionId,
    /// The conversation: the other person, by phone number when known.
    pub chat: Jid,
    /// Written by this account (through the API or on one of its devices).
    pub from_me: bool,
    /// Who wrote it.
    pub from: Jid,
    /// The writer's phone-number JID, when known.
    pub from_pn: Option<Jid>,
    /// The writer's LID, when known.
    pub from_lid: Option<Jid>,
    /// Who it is for.
    pub to: Jid,
    /// What it carries.
    pub kind: MessageType,
    /// The text (`text` messages).
    pub text: Option<String>,
    /// The caption (media).
    pub caption: Option<String>,
    /// What is known of its media.
    pub media: Option<MediaInfo>,
    /// A location, contact cards or a poll (`location`, `contacts`, `poll`
    /// messages).
    pub rich: Option<RichContent>,
    /// Audio sent as a voice note.
    pub voice_note: bool,
    /// The message it answers.
    pub reply_to: Option<MessageId>,
    /// The people its text or caption @mentions.
    pub mentions: Vec<Jid>,
    /// Where it is in its life.
    pub status: MessageStatus,
    /// When it reached each outgoing status.
    pub status_at: StatusTimes,
    /// Why it failed (`status` `failed`).
    pub error: Option<MessageError>,
    /// When its text or caption was last edited (the editor's clock).
    pub edited_at: Option<OffsetDateTime>,
    /// When it was written (the sender's clock; accept time for the API's).
    pub timestamp: OffsetDateTime,
    /// When the gateway stored it.
    pub created_at: OffsetDateTime,
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("id", &self.id)
            .field("session", &self.session)
            .field("chat", &self.chat)
            .field("from_me", &self.from_me)
            .field("type", &self.kind)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl Message {
    /// The text an edit replaces: the text of a text message, the caption
    /// of one with media.
    pub fn editable_text(&self) -> Option<&str> {
        if self.kind == MessageType::Text {
            self.text.as_deref()
        } else {
            self.caption.as_deref()
        }
    }

    /// Applies an edit made `at` (its text, or its caption for media):
    /// the text before, or `None` when the edit changes nothing it may
    /// (a revoked message, a type without text, an edit older than the
    /// last one applied).
    pub fn edit(&mut self, text: &str, at: OffsetDateTime) -> Option<Option<String>> {
        if self.edited_at.is_some_and(|last| at < last) {
            return None;
        }
        let slot = match self.kind {
            MessageType::Text => &mut self.text,
            k if k.has_caption() => &mut self.caption,
            _ => return None,
        };
        let previous = slot.replace(text.to_owned());
        self.edited_at = Some(at);
        Some(previous)
    }

    /// Deletes it for everyone: its id, chat, people, status and times
    /// stay, its content goes (`type: "revoked"`). `false` when it was
    /// revoked already.
    pub fn revoke(&mut self) -> bool {
        if self.kind == MessageType::Revoked {
            return false;
        }
        self.kind = MessageType::Revoked;
        self.text = None;
        self.caption = None;
        self.media = None;
        self.rich = None;
        self.voice_note = false;
        true
    }

    /// The message object (messaging.md), as the API, events and webhooks
    /// show it.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        let t = |t: Option<OffsetDateTime>| t.map(rfc3339);
        json!({
            "id": self.id.as_str(),
            "sessionId": self.session.to_string(),
            "chat": self.chat.to_string(),
            "fromMe": self.from_me,
            "from": self.from.to_string(),
            "fromPn": self.from_pn.as_ref().map(ToString::to_string),
            "fromLid": self.from_lid.as_ref().map(ToString::to_string),
            "to": self.to.to_string(),
            "type": self.kind.as_str(),
            "text": self.text,
            "caption": self.caption,
            "voiceNote": self.voice_note,
            "media": self.media.as_ref().map(|m| json!({
                "mimetype": m.mimetype, "filename": m.filename, "size": m.size, "sha256": m.sha256,
            })),
            "location": match &self.rich {
                Some(RichContent::Location(l)) => l.to_json(),
                _ => serde_json::Value::Null,
            },
            "contacts": match &self.rich {
                Some(RichContent::Contacts(c)) => c.iter().map(crate::ContactCard::to_json).collect(),
                _ => serde_json::Value::Null,
            },
            "poll": match &self.rich {
                Some(RichContent::Poll(p)) => p.to_json(),
                _ => serde_json::Value::Null,
            },
            "replyTo": self.reply_to.as_ref().map(MessageId::as_str),
            "mentions": self.mentions.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "status": self.status.as_str(),
            "statusAt": {
                "sent": t(self.status_at.sent),
                "delivered": t(self.status_at.delivered),
                "read": t(self.status_at.read),
                "played": t(self.status_at.played),
            },
            "error": self.error.as_ref().map(MessageError::to_json),
            "editedAt": t(self.edited_at),
            "timestamp": rfc3339(self.timestamp),
            "createdAt": rfc3339(self.created_at),
        })
    }

    /// Reads back what [`Message::to_json`] wrote.
    ///
    /// # Errors
    ///
    /// A [`DomainError`] on field `data` when `v` is not a message object.
    pub fn from_json(v: &serde_json::Value) -> Result<Self, DomainError> {
        let bad = |what: &str| DomainError::new("data", format!("not a message object ({what})"));
        let text = |k: &str| v.get(k).and_then(serde_json::Value::as_str);
        let need = |k: &str| text(k).ok_or_else(|| bad(k));
        let jid = |k: &str| text(k).map(Jid::parse).transpose();
        let time = |s: &str| {
            OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .map_err(|_| bad("time"))
        };
        let at = |k: &str| {
            v.get("statusAt")
                .and_then(|o| o.get(k))
                .and_then(serde_json::Value::as_str)
                .map(time)
                .transpose()
        };
        let media = match v.get("media") {
            None | Some(serde_json::Value::Null) => None,
            Some(m) => Some(MediaInfo {
                mimetype: m
                    .get("mimetype")
                    .and_then(serde_json::Value::as_str)
                    .ok_or_else(|| bad("media"))?
                    .to_owned(),
                filename: m
                    .get("filename")
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_owned),
                size: m
                    .get("size")
                    .and_then(serde_json::Value::as_u64)
                    .ok_or_else(|| bad("media"))?,
                sha256: m
                    .get("sha256")
                    .and_then(serde_json::Value::as_str)
                    .ok_or_else(|| bad("media"))?
                    .to_owned(),
            }),
        };
        Ok(Self {
            id: MessageId::parse(need("id")?)?,
            session: SessionId::parse(need("sessionId")?)?,
            chat: Jid::parse(need("chat")?)?,
            from_me: v
                .get("fromMe")
                .and_then(serde_json::Value::as_bool)
                .ok_or_else(|| bad("fromMe"))?,
            from: Jid::parse(need("from")?)?,
            from_pn: jid("fromPn")?,
            from_lid: jid("fromLid")?,
            to: Jid::parse(need("to")?)?,
            kind: MessageType::parse(need("type")?)?,
            text: text("text").map(str::to_owned),
            caption: text("caption").map(str::to_owned),
            media,
            rich: match (v.get("location"), v.get("contacts"), v.get("poll")) {
                (Some(l), _, _) if !l.is_null() => {
                    Some(RichContent::Location(crate::Location::from_json(l)?))
                }
                (_, Some(c), _) if !c.is_null() => Some(RichContent::Contacts(
                    crate::ContactCard::list_from_json(c)?,
                )),
                (_, _, Some(p)) if !p.is_null() => {
                    Some(RichContent::Poll(crate::Poll::from_json(p)?))
                }
                _ => None,
            },
            voice_note: v
                .get("voiceNote")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false),
            reply_to: text("replyTo").map(MessageId::parse).transpose()?,
            mentions: match v.get("mentions").and_then(serde_json::Value::as_array) {
                None => Vec::new(),
                Some(all) => all
                    .iter()
                    .map(|j| {
                        j.as_str()
                            .ok_or_else(|| bad("mentions"))
                            .and_then(Jid::parse)
                    })
                    .collect::<Result<_, _>>()?,
            },
            status: MessageStatus::parse(need("status")?)?,
            status_at: StatusTimes {
                sent: at("sent")?,
                delivered: at("delivered")?,
                read: at("read")?,
                played: at("played")?,
            },
            error: match v.get("error") {
                None | Some(serde_json::Value::Null) => None,
                Some(e) => Some(MessageError::from_json(e).ok_or_else(|| bad("error"))?),
            },
            edited_at: text("editedAt").map(time).transpose()?,
            timestamp: time(need("timestamp")?)?,
            created_at: time(need("createdAt")?)?,
        })
    }
}

/// RFC 3339 in UTC with milliseconds, as every time in the API.
pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&format).unwrap_or_default()
}

/// An `Idempotency-Key` header: 1 to 255 printable ASCII characters.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(Box<str>);

impl IdempotencyKey {
    /// Parses the header's value.
    ///
    /// # Errors
    ///
    /// A [`DomainError`] on field `Idempotency-Key` when it is empty, longer
    /// than 255 characters or holds anything but printable ASCII.
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        if input.is_empty()
            || input.len() > 255
            || !input.bytes().all(|b| (0x20..=0x7e).contains(&b))
        {
            return Err(DomainError::new(
                "Idempotency-Key",
                "must be 1 to 255 printable ASCII characters",
            ));
        }
        Ok(Self(input.into()))
    }

    /// The key's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

// A client may put anything in its key; it stays out of logs.
impl fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdempotencyKey({} chars)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Message {
        let at = time::macros::datetime!(2026-11-28 10:00:00.123 UTC);
        Message {
            id: MessageId::parse("3EB0AA").unwrap(),
            session: SessionId::parse("sess_01JBZ5T0Q4M6Y8V2K3N7R9S1WX").unwrap(),
            chat: Jid::parse("14155550123@s.whatsapp.net").unwrap(),
            from_me: true,
            from: Jid::parse("15550001111@s.whatsapp.net").unwrap(),
            from_pn: None,
            from_lid: Some(Jid::parse("123456789012345@lid").unwrap()),
            to: Jid::parse("14155550123@s.whatsapp.net").unwrap(),
            kind: MessageType::Image,
            text: None,
            caption: Some("secret caption".into()),
            media: Some(MediaInfo {
                mimetype: "image/jpeg".into(),
                filename: None,
                size: 3,
                sha256: "ab".into(),
            }),
            rich: None,
            voice_note: false,
            reply_to: Some(MessageId::parse("3EB0BB").unwrap()),
            mentions: vec![Jid::parse("14155550123@s.whatsapp.net").unwrap()],
            status: MessageStatus::Failed,
            status_at: StatusTimes {
                sent: Some(at),
                ..StatusTimes::default()
            },
            error: Some(MessageError::new(MessageErrorCode::Rejected, Some(479))),
            edited_at: Some(at),
            timestamp: at,
            created_at: at,
        }
    }

    #[test]
    fn messages_round_trip_through_json_and_hide_text() {
        let m = sample();
        let json = m.to_json();
        assert_eq!(json["error"]["details"]["nackCode"], 479);
        assert_eq!(json["statusAt"]["delivered"], serde_json::Value::Null);
        assert_eq!(Message::from_json(&json).unwrap(), m);
        assert!(!format!("{m:?}").contains("secret"));
        assert!(Message::from_json(&serde_json::json!({"id": "x"})).is_err());
        let mut place = m.clone();
        place.revoke();
        place.kind = MessageType::Location;
        place.rich = Some(RichContent::Location(
            crate::Location::new(1.5, -2.0, None, Some("Main St 1".into())).unwrap(),
        ));
        assert_eq!(place.to_json()["location"]["latitude"], 1.5);
        assert_eq!(Message::from_json(&place.to_json()).unwrap(), place);
    }

    #[test]
    fn edits_replace_text_or_caption_and_revokes_drop_content() {
        let mut m = sample();
        m.edited_at = None;
        let at = m.timestamp;
        assert_eq!(
            m.edit("new caption", at),
            Some(Some("secret caption".into()))
        );
        assert_eq!(
            (m.caption.as_deref(), m.edited_at),
            (Some("new caption"), Some(at))
        );
        // An older edit arriving late changes nothing.
        assert_eq!(m.edit("older", at - time::Duration::seconds(1)), None);
        assert!(m.revoke());
        assert!(!m.revoke());
        assert_eq!(
            (m.kind, m.caption.clone(), m.media.clone()),
            (MessageType::Revoked, None, None)
        );
        assert_eq!((m.id.as_str(), m.timestamp), ("3EB0AA", at));
        assert_eq!(m.edit("again", at), None);
    }

    #[test]
    fn reaching_a_status_fills_the_ones_before() {
        let at = time::macros::datetime!(2026-11-28 10:00:00 UTC);
        let mut times = StatusTimes::default();
        times.reach(MessageStatus::Read, at);
        assert_eq!(
            (times.sent, times.delivered, times.read, times.played),
            (Some(at), Some(at), Some(at), None)
        );
        let later = at + time::Duration::seconds(1);
        times.reach(MessageStatus::Delivered, later);
        assert_eq!(times.delivered, Some(at));
    }

    #[test]
    fn idempotency_keys_are_printable_ascii() {
        assert!(IdempotencyKey::parse("order-42 retry#1").is_ok());
        for bad in ["", "é", "a\nb", &"k".repeat(256)] {
            assert_eq!(
                IdempotencyKey::parse(bad).map_err(|e| e.field),
                Err("Idempotency-Key")
            );
        }
        assert!(!format!("{:?}", IdempotencyKey::parse("sekrit").unwrap()).contains("sekrit"));
    }

    #[test]
    fn message_ids_parse_strictly() {
        assert_eq!(
            MessageId::parse("3EB0ABC").map(|m| m.to_string()),
            Ok("3EB0ABC".into())
        );
        for bad in ["", "a b", "a/b", "é", &"x".repeat(129)] {
            assert_eq!(
                MessageId::parse(bad).map_err(|e| e.field),
                Err("messageId"),
                "{bad}"
            );
        }
    }

    #[test]
    fn random_ids_look_like_whatsapp_webs() {
        let id = MessageId::from_random([0xab; 9]);
        assert_eq!(id.as_str(), "3EB0ABABABABABABABABAB");
        assert_eq!(MessageId::parse(id.as_str()), Ok(id));
    }

    #[test]
    fn statuses_only_move_forward() {
        use MessageStatus::*;
        assert!(Pending.advances_to(Sent));
        assert!(Pending.advances_to(Delivered)); // a receipt before the server ack
        assert!(Sent.advances_to(Read));
        assert!(Read.advances_to(Played));
        assert!(Pending.advances_to(Failed));
        assert!(!Sent.advances_to(Failed));
        assert!(!Delivered.advances_to(Sent));
        assert!(!Read.advances_to(Delivered));
        assert!(!Failed.advances_to(Sent));
        assert!(Received.advances_to(Read));
        assert!(!Received.advances_to(Delivered));
        assert!(!Sent.advances_to(Sent));
        for s in MessageStatus::ALL {
            assert_eq!(MessageStatus::parse(s.as_str()), Ok(s));
        }
        for t in MessageType::ALL {
            assert_eq!(MessageType::parse(t.as_str()), Ok(t));
        }
    }
}
