//! Events: what happened to an organization's sessions, in one durable,
//! ordered log per organization (see docs/events.md).

use std::fmt;

use time::OffsetDateTime;

use crate::message::rfc3339;
use crate::{
    ChatState, DomainError, EventId, GroupNotice, Jid, LastError, Message, MessageError, MessageId,
    MessageSource, MessageStatus, OrgId, SessionId, SessionStatus, WebhookId,
};

/// Where an event sits in its organization's log: events of one
/// organization are totally ordered by it. Opaque to clients (its text is a
/// number today; they must not rely on that).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventCursor(u64);

impl EventCursor {
    /// Before the first event of any log.
    pub const START: EventCursor = EventCursor(0);

    /// The cursor of sequence number `seq` of an organization's log.
    pub fn from_seq(seq: u64) -> Self {
        Self(seq)
    }

    /// The sequence number inside.
    pub fn seq(self) -> u64 {
        self.0
    }

    /// Parses a cursor a client sent back.
    ///
    /// # Errors
    ///
    /// A [`DomainError`] on `field` when the text is not a cursor.
    pub fn parse(input: &str, field: &'static str) -> Result<Self, DomainError> {
        if input.is_empty() || input.len() > 20 || !input.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DomainError::new(field, "not a cursor this gateway gave"));
        }
        input
            .parse()
            .map(Self)
            .map_err(|_| DomainError::new(field, "not a cursor this gateway gave"))
    }
}

impl fmt::Display for EventCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The kinds of event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// A session's status changed.
    SessionStatus,
    /// A new QR code is shown while pairing.
    SessionQr,
    /// A session was deleted.
    SessionDeleted,
    /// A test delivery to one webhook (never in the log).
    WebhookTest,
    /// A contact's message arrived.
    MessageReceived,
    /// A message left this account (through the API or from a device).
    MessageSent,
    /// An outgoing message's status changed.
    MessageStatus,
    /// Someone reacted to a message.
    MessageReaction,
    /// A message's text or caption was edited by its writer.
    MessageEdited,
    /// A message was deleted for everyone by its writer.
    MessageRevoked,
    /// Someone voted on a poll (or changed or took back their vote).
    MessagePollVote,
    /// A contact the session subscribed to came online or went offline.
    PresenceUpdate,
    /// Someone is typing, recording or stopped in a chat.
    ChatState,
    /// The account created, was added to, or joined a group.
    GroupJoined,
    /// The account left or was removed from a group.
    GroupLeft,
    /// A group's members changed.
    GroupParticipants,
    /// A group's subject, description or settings changed.
    GroupUpdated,
}

impl EventType {
    /// Every type.
    pub const ALL: [EventType; 17] = [
        EventType::SessionStatus,
        EventType::SessionQr,
        EventType::SessionDeleted,
        EventType::WebhookTest,
        EventType::MessageReceived,
        EventType::MessageSent,
        EventType::MessageStatus,
        EventType::MessageReaction,
        EventType::MessageEdited,
        EventType::MessageRevoked,
        EventType::MessagePollVote,
        EventType::PresenceUpdate,
        EventType::ChatState,
        EventType::GroupJoined,
        EventType::GroupLeft,
        EventType::GroupParticipants,
        EventType::GroupUpdated,
    ];

    /// The type's name (`session.status`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::SessionStatus => "session.status",
            EventType::SessionQr => "session.qr",
            EventType::SessionDeleted => "session.deleted",
            EventType::WebhookTest => "webhook.test",
            EventType::MessageReceived => "message.received",
            EventType::MessageSent => "message.sent",
            EventType::MessageStatus => "message.status",
            EventType::MessageReaction => "message.reaction",
            EventType::MessageEdited => "message.edited",
            EventType::MessageRevoked => "message.revoked",
            EventType::MessagePollVote => "message.poll_vote",
            EventType::PresenceUpdate => "presence.update",
            EventType::ChatState => "chat.state",
            EventType::GroupJoined => "group.joined",
            EventType::GroupLeft => "group.left",
            EventType::GroupParticipants => "group.participants",
            EventType::GroupUpdated => "group.updated",
        }
    }

    /// The type named `input`, if any.
    pub fn from_name(input: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == input)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an event says, by type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventData {
    /// `session.status`.
    SessionStatus {
        /// The new status.
        status: SessionStatus,
        /// The status before.
        previous: SessionStatus,
        /// The session's last error after the change.
        last_error: Option<LastError>,
    },
    /// `session.qr`. The code is a short-lived credential: only the
    /// organization's own readers and webhooks ever see it.
    SessionQr {
        /// The text the QR encodes.
        code: String,
        /// When it stops working.
        expires_at: OffsetDateTime,
    },
    /// `session.deleted`.
    SessionDeleted,
    /// `webhook.test`.
    WebhookTest {
        /// The webhook tested.
        webhook_id: WebhookId,
    },
    /// `message.received`: the message object.
    MessageReceived(Box<Message>),
    /// `message.sent`: the message object and where it was sent from.
    MessageSent {
        /// The message.
        message: Box<Message>,
        /// Through the API, or from one of the account's devices.
        source: MessageSource,
    },
    /// `message.status`.
    MessageStatus {
        /// The message.
        id: MessageId,
        /// Its chat.
        chat: Jid,
        /// The new status.
        status: MessageStatus,
        /// When it was reached.
        at: OffsetDateTime,
        /// Why it failed (`failed`).
        error: Option<MessageError>,
    },
    /// `message.reaction` (`emoji` empty: the reaction was taken back).
    MessageReaction {
        /// The message reacted to.
        id: MessageId,
        /// Its chat.
        chat: Jid,
        /// Who reacted.
        from: Jid,
        /// The emoji.
        emoji: String,
    },
    /// `message.edited`: the message as edited and the text it had.
    MessageEdited {
        /// The message, with its new text (or caption) and `editedAt`.
        message: Box<Message>,
        /// Its text (or caption) before the edit.
        previous_text: Option<String>,
    },
    /// `message.revoked`: the message as it is now (`type: "revoked"`).
    MessageRevoked {
        /// The message, its content gone.
        message: Box<Message>,
    },
    /// `message.poll_vote`: a voter's vote as it now stands (it replaces
    /// their earlier one; empty: taken back).
    MessagePollVote {
        /// The poll message.
        message: Box<Message>,
        /// Who voted.
        voter: Jid,
        /// The options they picked, in the poll's order.
        selected: Vec<String>,
    },
    /// `presence.update` (ephemeral: never retried after a reconnect).
    PresenceUpdate {
        /// Whose presence.
        jid: Jid,
        /// Online now.
        available: bool,
        /// When last online, when WhatsApp says (and they share it).
        last_seen: Option<OffsetDateTime>,
    },
    /// `chat.state` (ephemeral).
    ChatState {
        /// The chat.
        chat: Jid,
        /// Who is typing (the chat's person in a one-to-one chat).
        jid: Jid,
        /// What they do.
        state: ChatState,
    },
    /// `group.joined`, `group.left`, `group.participants`, `group.updated`.
    Group(Box<GroupNotice>),
}

impl EventData {
    /// The event's type.
    pub fn event_type(&self) -> EventType {
        match self {
            EventData::SessionStatus { .. } => EventType::SessionStatus,
            EventData::SessionQr { .. } => EventType::SessionQr,
            EventData::SessionDeleted => EventType::SessionDeleted,
            EventData::WebhookTest { .. } => EventType::WebhookTest,
            EventData::MessageReceived(_) => EventType::MessageReceived,
            EventData::MessageSent { .. } => EventType::MessageSent,
            EventData::MessageStatus { .. } => EventType::MessageStatus,
            EventData::MessageReaction { .. } => EventType::MessageReaction,
            EventData::MessageEdited { .. } => EventType::MessageEdited,
            EventData::MessageRevoked { .. } => EventType::MessageRevoked,
            EventData::MessagePollVote { .. } => EventType::MessagePollVote,
            EventData::PresenceUpdate { .. } => EventType::PresenceUpdate,
            EventData::ChatState { .. } => EventType::ChatState,
            EventData::Group(notice) => notice.event_type(),
        }
    }
}

impl EventData {
    /// The `data` object of the event's JSON (the API's shape).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            EventData::SessionStatus {
                status,
                previous,
                last_error,
            } => json!({
                "status": status.as_str(),
                "previous": previous.as_str(),
                "lastError": last_error.as_ref().map(|e| json!({"code": e.code.as_str(), "message": e.message})),
            }),
            EventData::SessionQr { code, expires_at } => json!({
                "code": code,
                "expiresAt": rfc3339(*expires_at),
            }),
            EventData::SessionDeleted => json!({}),
            EventData::WebhookTest { webhook_id } => json!({ "webhookId": webhook_id.to_string() }),
            EventData::MessageReceived(message) => message.to_json(),
            EventData::MessageSent { message, source } => {
                let mut v = message.to_json();
                if let Some(o) = v.as_object_mut() {
                    o.insert("source".into(), source.as_str().into());
                }
                v
            }
            EventData::MessageStatus {
                id,
                chat,
                status,
                at,
                error,
            } => json!({
                "id": id.as_str(),
                "chat": chat.to_string(),
                "status": status.as_str(),
                "at": rfc3339(*at),
                "error": error.as_ref().map(MessageError::to_json),
            }),
            EventData::MessageReaction {
                id,
                chat,
                from,
                emoji,
            } => json!({
                "id": id.as_str(),
                "chat": chat.to_string(),
                "from": from.to_string(),
                "emoji": emoji,
            }),
            EventData::MessageEdited {
                message,
                previous_text,
            } => json!({ "message": message.to_json(), "previousText": previous_text }),
            EventData::MessageRevoked { message } => json!({ "message": message.to_json() }),
            EventData::MessagePollVote {
                message,
                voter,
                selected,
            } => json!({
                "message": message.to_json(),
                "voter": voter.to_string(),
                "selected": selected,
            }),
            EventData::PresenceUpdate {
                jid,
                available,
                last_seen,
            } => json!({
                "jid": jid.to_string(),
                "available": available,
                "lastSeen": last_seen.map(rfc3339),
            }),
            EventData::ChatState { chat, jid, state } => json!({
                "chat": chat.to_string(),
                "jid": jid.to_string(),
                "state": state.as_str(),
            }),
            EventData::Group(notice) => notice.to_json(),
        }
    }

    /// Reads back what [`EventData::to_json`] wrote for type `t`.
    ///
    /// # Errors
    ///
    /// A [`DomainError`] on field `data` when the JSON is not such an object.
    pub fn from_json(t: EventType, v: &serde_json::Value) -> Result<Self, DomainError> {
        let bad = || DomainError::new("data", format!("not {t} data"));
        let text = |k: &str| v.get(k).and_then(serde_json::Value::as_str).ok_or_else(bad);
        let status = |k: &str| text(k).and_then(|s| SessionStatus::from_name(s).ok_or_else(bad));
        Ok(match t {
            EventType::SessionStatus => EventData::SessionStatus {
                status: status("status")?,
                previous: status("previous")?,
                last_error: match v.get("lastError") {
                    None | Some(serde_json::Value::Null) => None,
                    Some(e) => Some(LastError {
                        code: e
                            .get("code")
                            .and_then(serde_json::Value::as_str)
                            .and_then(crate::SessionErrorCode::from_name)
                            .ok_or_else(bad)?,
                        message: e
                            .get("message")
                            .and_then(serde_json::Value::as_str)
                            .ok_or_else(bad)?
                            .to_owned(),
                    }),
                },
            },
            EventType::SessionQr => EventData::SessionQr {
                code: text("code")?.to_owned(),
                expires_at: OffsetDateTime::parse(
                    text("expiresAt")?,
                    &time::format_description::well_known::Rfc3339,
                )
                .map_err(|_| bad())?,
            },
            EventType::SessionDeleted => EventData::SessionDeleted,
            EventType::WebhookTest => EventData::WebhookTest {
                webhook_id: WebhookId::parse(text("webhookId")?)?,
            },
            EventType::MessageReceived => {
                EventData::MessageReceived(Box::new(Message::from_json(v)?))
            }
            EventType::MessageSent => EventData::MessageSent {
                message: Box::new(Message::from_json(v)?),
                source: match text("source")? {
                    "api" => MessageSource::Api,
                    "device" => MessageSource::Device,
                    _ => return Err(bad()),
                },
            },
            EventType::MessageStatus => EventData::MessageStatus {
                id: MessageId::parse(text("id")?)?,
                chat: Jid::parse(text("chat")?)?,
                status: MessageStatus::parse(text("status")?)?,
                at: OffsetDateTime::parse(
                    text("at")?,
                    &time::format_description::well_known::Rfc3339,
                )
                .map_err(|_| bad())?,
                error: match v.get("error") {
                    None | Some(serde_json::Value::Null) => None,
                    Some(e) => Some(MessageError::from_json(e).ok_or_else(bad)?),
                },
            },
            EventType::MessageReaction => EventData::MessageReaction {
                id: MessageId::parse(text("id")?)?,
                chat: Jid::parse(text("chat")?)?,
                from: Jid::parse(text("from")?)?,
                emoji: text("emoji")?.to_owned(),
            },
            EventType::MessageEdited => EventData::MessageEdited {
                message: Box::new(Message::from_json(v.get("message").ok_or_else(bad)?)?),
                previous_text: v
                    .get("previousText")
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_owned),
            },
            EventType::MessageRevoked => EventData::MessageRevoked {
                message: Box::new(Message::from_json(v.get("message").ok_or_else(bad)?)?),
            },
            EventType::MessagePollVote => EventData::MessagePollVote {
                message: Box::new(Message::from_json(v.get("message").ok_or_else(bad)?)?),
                voter: Jid::parse(text("voter")?)?,
                selected: v
                    .get("selected")
                    .and_then(serde_json::Value::as_array)
                    .ok_or_else(bad)?
                    .iter()
                    .map(|o| o.as_str().map(str::to_owned).ok_or_else(bad))
                    .collect::<Result<_, _>>()?,
            },
            EventType::PresenceUpdate => EventData::PresenceUpdate {
                jid: Jid::parse(text("jid")?)?,
                available: v
                    .get("available")
                    .and_then(serde_json::Value::as_bool)
                    .ok_or_else(bad)?,
                last_seen: match v.get("lastSeen").and_then(serde_json::Value::as_str) {
                    None => None,
                    Some(t) => Some(
                        OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                            .map_err(|_| bad())?,
                    ),
                },
            },
            EventType::ChatState => EventData::ChatState {
                chat: Jid::parse(text("chat")?)?,
                jid: Jid::parse(text("jid")?)?,
                state: ChatState::parse(text("state")?)?,
            },
            EventType::GroupJoined
            | EventType::GroupLeft
            | EventType::GroupParticipants
            | EventType::GroupUpdated => EventData::Group(Box::new(GroupNotice::from_json(t, v)?)),
        })
    }
}

impl Event {
    /// The event object as the API, the stream and webhooks show it.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id.to_string(),
            "cursor": self.cursor.to_string(),
            "type": self.data.event_type().as_str(),
            "orgId": self.org.as_str(),
            "sessionId": self.session.map(|s| s.to_string()),
            "occurredAt": rfc3339(self.occurred_at),
            "data": self.data.to_json(),
        })
    }
}

/// One event of an organization's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Unique and stable across deliveries and replays.
    pub id: EventId,
    /// Its place in the organization's log.
    pub cursor: EventCursor,
    /// The organization.
    pub org: OrgId,
    /// The session it concerns, if any.
    pub session: Option<SessionId>,
    /// When it happened (committed).
    pub occurred_at: OffsetDateTime,
    /// What it says.
    pub data: EventData,
}

/// A pattern of event types: an exact type, a prefix ending in `.*`, or
/// `*` for all.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventPattern(Box<str>);

impl EventPattern {
    /// Every event.
    pub fn all() -> Self {
        Self("*".into())
    }

    /// Parses a pattern.
    ///
    /// # Errors
    ///
    /// A [`DomainError`] on `field` when it is neither `*`, a known type,
    /// nor a prefix of known types followed by `.*`.
    pub fn parse(input: &str, field: &'static str) -> Result<Self, DomainError> {
        let known = input == "*"
            || EventType::from_name(input).is_some()
            || input.strip_suffix(".*").is_some_and(|prefix| {
                !prefix.is_empty()
                    && EventType::ALL
                        .iter()
                        .any(|t| t.as_str().starts_with(&format!("{prefix}.")))
            });
        if known {
            Ok(Self(input.into()))
        } else {
            Err(DomainError::new(
                field,
                format!(
                    "unknown event type '{input}' (use a type such as 'session.status', a prefix such as 'session.*', or '*')"
                ),
            ))
        }
    }

    /// Whether events of type `t` match.
    pub fn matches(&self, t: EventType) -> bool {
        match self.0.strip_suffix('*') {
            Some("") => true,
            Some(prefix) => t.as_str().starts_with(prefix),
            None => t.as_str() == &*self.0,
        }
    }

    /// The pattern's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Which events a reader or webhook wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Types (any match); empty: all.
    pub types: Vec<EventPattern>,
    /// Sessions (any match); `None`: all, including events of no session.
    pub sessions: Option<Vec<SessionId>>,
}

impl EventFilter {
    /// Whether `event` passes.
    pub fn matches(&self, t: EventType, session: Option<&SessionId>) -> bool {
        let typed = self.types.is_empty() || self.types.iter().any(|p| p.matches(t));
        let sessioned = match &self.sessions {
            None => true,
            Some(ids) => session.is_some_and(|s| ids.contains(s)),
        };
        typed && sessioned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let p = |s| EventPattern::parse(s, "types").unwrap();
        assert!(p("*").matches(EventType::SessionQr));
        assert!(p("session.*").matches(EventType::SessionDeleted));
        assert!(!p("session.*").matches(EventType::WebhookTest));
        assert!(p("session.qr").matches(EventType::SessionQr));
        assert!(!p("session.qr").matches(EventType::SessionStatus));
        assert!(p("message.*").matches(EventType::MessageStatus));
        for bad in ["", "session", "sess.*", ".*", "messages.*", "session.qr.*"] {
            assert!(EventPattern::parse(bad, "types").is_err(), "{bad}");
        }
    }

    #[test]
    fn cursors_round_trip_and_refuse_junk() {
        let c = EventCursor::from_seq(42);
        assert_eq!(EventCursor::parse(&c.to_string(), "after").unwrap(), c);
        for bad in ["", "-1", "x", "1e3", "99999999999999999999999"] {
            assert!(EventCursor::parse(bad, "after").is_err(), "{bad}");
        }
    }

    #[test]
    fn data_round_trips_through_json() {
        let all = [
            EventData::SessionStatus {
                status: SessionStatus::Connected,
                previous: SessionStatus::Pairing,
                last_error: Some(LastError {
                    code: crate::SessionErrorCode::Unreachable,
                    message: "x".into(),
                }),
            },
            EventData::SessionStatus {
                status: SessionStatus::New,
                previous: SessionStatus::Pairing,
                last_error: None,
            },
            EventData::SessionQr {
                code: "2@abc".into(),
                expires_at: time::macros::datetime!(2026-11-28 10:00:00.123 UTC),
            },
            EventData::SessionDeleted,
            EventData::MessageStatus {
                id: MessageId::parse("3EB0AA").unwrap(),
                chat: Jid::parse("14155550123@s.whatsapp.net").unwrap(),
                status: MessageStatus::Failed,
                at: time::macros::datetime!(2026-11-28 10:00:00.123 UTC),
                error: Some(MessageError::new(crate::MessageErrorCode::Expired, None)),
            },
            EventData::MessageReaction {
                id: MessageId::parse("3EB0AA").unwrap(),
                chat: Jid::parse("14155550123@s.whatsapp.net").unwrap(),
                from: Jid::parse("14155550123@s.whatsapp.net").unwrap(),
                emoji: "👍".into(),
            },
            EventData::WebhookTest {
                webhook_id: WebhookId::parse("wh_01JBZ5T0Q4M6Y8V2K3N7R9S1WX").unwrap(),
            },
            EventData::PresenceUpdate {
                jid: Jid::parse("14155550123@s.whatsapp.net").unwrap(),
                available: false,
                last_seen: Some(time::macros::datetime!(2026-11-28 10:00:00.123 UTC)),
            },
            EventData::ChatState {
                chat: Jid::parse("14155550123@s.whatsapp.net").unwrap(),
                jid: Jid::parse("14155550123@s.whatsapp.net").unwrap(),
                state: ChatState::Recording,
            },
        ];
        for d in all {
            assert_eq!(
                EventData::from_json(d.event_type(), &d.to_json()).unwrap(),
                d
            );
        }
        assert!(EventData::from_json(EventType::SessionQr, &serde_json::json!({})).is_err());
    }

    #[test]
    fn filters() {
        let s = SessionId::parse("sess_01JBZ5T0Q4M6Y8V2K3N7R9S1WX").unwrap();
        let f = EventFilter {
            types: vec![EventPattern::parse("session.*", "types").unwrap()],
            sessions: Some(vec![s]),
        };
        assert!(f.matches(EventType::SessionStatus, Some(&s)));
        assert!(!f.matches(EventType::SessionStatus, None));
        assert!(EventFilter::default().matches(EventType::WebhookTest, None));
    }
}
