//! Bodies of the event and webhook routes. The event object itself is
//! rendered by [`wagate_domain::Event::to_json`] (the one renderer the
//! stream and webhooks use too); [`EventBody`] only documents it.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa::openapi::schema::{Array, ArrayBuilder, Object, ObjectBuilder, Type};
use wagate_domain::{Delivery, EventType, Webhook};

use super::LastErrorBody;

mod url_pattern;

/// Every text an `events` entry (or a `types` item) may be: `*`, each
/// type, and each prefix of types followed by `.*`.
pub(crate) fn event_patterns() -> Vec<String> {
    let mut all = vec!["*".to_owned()];
    for t in EventType::ALL {
        if let Some((prefix, _)) = t.as_str().split_once('.') {
            let pattern = format!("{prefix}.*");
            if !all.contains(&pattern) {
                all.push(pattern);
            }
        }
    }
    all.extend(EventType::ALL.iter().map(|t| t.as_str().to_owned()));
    all
}

/// A regular expression for one pattern of [`event_patterns`].
pub(crate) fn event_pattern_regex() -> String {
    let alternatives: Vec<String> = event_patterns()
        .iter()
        .map(|p| p.replace('.', r"\.").replace('*', r"\*"))
        .collect();
    format!("(?:{})", alternatives.join("|"))
}

/// An event of the organization's log (the body of a webhook delivery, an
/// item of `GET /api/v1/events`, the `data` of an SSE message).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // documents `Event::to_json`; never built
pub struct EventBody {
    /// `evt_` + ULID: the same in every delivery and replay; deduplicate on it.
    #[schema(
        example = "evt_01JBZ5T0Q4M6Y8V2K3N7R9S1WX",
        pattern = r"^evt_[0-7][0-9A-HJKMNP-TV-Z]{25}$"
    )]
    pub id: String,
    /// Opaque; the organization's events are totally ordered by it. Pass it
    /// as `after` (or `Last-Event-ID`) to continue after this event.
    #[schema(example = "42")]
    pub cursor: String,
    /// `session.status`, `session.qr`, `session.deleted`, `webhook.test`,
    /// `message.received`, `message.sent`, `message.status`,
    /// `message.reaction`, `message.edited`, `message.revoked`,
    /// `message.poll_vote`, `presence.update`, `chat.state`, `group.joined`, `group.left`,
    /// `group.participants` or `group.updated` (more types will come:
    /// ignore those you do not know).
    #[serde(rename = "type")]
    #[schema(example = "session.status")]
    pub kind: String,
    /// The organization.
    #[schema(example = "acme")]
    pub org_id: String,
    /// The session it concerns; null for events of no session.
    #[schema(example = "sess_01JBZ5T0Q4M6Y8V2K3N7R9S1WX")]
    pub session_id: Option<String>,
    /// When it happened (RFC 3339, UTC, milliseconds).
    #[schema(format = DateTime, example = "2026-11-28T10:00:00.123Z")]
    pub occurred_at: String,
    /// By type: `session.status` → `{status, previous, lastError}`;
    /// `session.qr` → `{code, expiresAt}`; `session.deleted` → `{}`;
    /// `webhook.test` → `{webhookId}`; `message.received` → the message;
    /// `message.sent` → the message and `source`; `message.status` →
    /// `{id, chat, status, at, error}`; `message.reaction` → `{id, chat,
    /// from, emoji}`; `message.edited` → `{message, previousText}`;
    /// `message.revoked` → `{message}`; `message.poll_vote` → `{message,
    /// voter, selected}`; `presence.update` → `{jid,
    /// available, lastSeen}`; `chat.state` → `{chat, jid, state}`.
    #[schema(schema_with = event_data)]
    pub data: Value,
}

/// `data` of an event: one of the shapes of its type.
fn event_data() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::AnyOfBuilder;
    AnyOfBuilder::new()
        .item(utoipa::openapi::Ref::from_schema_name("SessionStatusData"))
        .item(utoipa::openapi::Ref::from_schema_name("SessionQrData"))
        .item(utoipa::openapi::Ref::from_schema_name("WebhookTestData"))
        .item(utoipa::openapi::Ref::from_schema_name("MessageBody"))
        .item(utoipa::openapi::Ref::from_schema_name("MessageSentData"))
        .item(utoipa::openapi::Ref::from_schema_name("MessageStatusData"))
        .item(utoipa::openapi::Ref::from_schema_name(
            "MessageReactionData",
        ))
        .item(utoipa::openapi::Ref::from_schema_name("MessageEditedData"))
        .item(utoipa::openapi::Ref::from_schema_name("MessageRevokedData"))
        .item(utoipa::openapi::Ref::from_schema_name(
            "MessagePollVoteData",
        ))
        .item(utoipa::openapi::Ref::from_schema_name("PresenceUpdateData"))
        .item(utoipa::openapi::Ref::from_schema_name("ChatStateData"))
        .item(utoipa::openapi::Ref::from_schema_name("GroupJoinedData"))
        .item(utoipa::openapi::Ref::from_schema_name("GroupLeftData"))
        .item(utoipa::openapi::Ref::from_schema_name(
            "GroupParticipantsData",
        ))
        .item(utoipa::openapi::Ref::from_schema_name("GroupUpdatedData"))
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .description(Some("`session.deleted`: no fields.")),
        )
        .description(Some(
            "By type: `session.status` → `{status, previous, lastError}`; `session.qr` → \
             `{code, expiresAt}`; `session.deleted` → `{}`; `webhook.test` → `{webhookId}`; \
             `message.received` → the message; `message.sent` → the message and `source`; \
             `message.status` → `{id, chat, status, at, error}`; `message.reaction` → \
             `{id, chat, from, emoji}`; `message.edited` → `{message, previousText}`; \
             `message.revoked` → `{message}`; `message.poll_vote` → `{message, voter, \
             selected}`; `presence.update` → `{jid, available, \
             lastSeen}`; `chat.state` → `{chat, jid, state}`; `group.joined` → `{group, by}`; \
             `group.left` → `{group, by}`; `group.participants` → `{group, action, \
             participants, by}`; `group.updated` → `{group, subject?, description?, settings?, \
             by}`.",
        ))
        .build()
        .into()
}

/// `data` of a `session.status` event.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct SessionStatusData {
    /// The new status.
    #[schema(example = "connected")]
    pub status: String,
    /// The status before.
    #[schema(example = "pairing")]
    pub previous: String,
    /// As on the session object.
    pub last_error: Option<LastErrorBody>,
}

/// `data` of a `session.qr` event: the code is a short-lived credential.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct SessionQrData {
    /// The text the QR encodes.
    #[schema(example = "2@Xf3…")]
    pub code: String,
    /// When it stops working.
    #[schema(format = DateTime)]
    pub expires_at: String,
}

/// `data` of a `webhook.test` event.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct WebhookTestData {
    /// The webhook tested.
    #[schema(example = "wh_01JBZ5T0Q4M6Y8V2K3N7R9S1WX")]
    pub webhook_id: String,
}

/// `data` of a `message.sent` event: the message object (see
/// `MessageBody`) and where it was sent from.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct MessageSentData {
    /// The message.
    #[serde(flatten)]
    pub message: crate::dto::MessageBody,
    /// `api` (through this gateway) or `device` (the account's phone or
    /// another of its devices).
    #[schema(example = "api")]
    pub source: String,
}

/// `data` of a `message.status` event.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct MessageStatusData {
    /// The message's id.
    #[schema(example = "3EB0C431C26A1916E0F6A2")]
    pub id: String,
    /// Its chat.
    #[schema(example = "14155550123@s.whatsapp.net")]
    pub chat: String,
    /// `sent`, `delivered`, `read`, `played` or `failed`.
    #[schema(example = "delivered")]
    pub status: String,
    /// When WhatsApp says it happened.
    #[schema(format = DateTime)]
    pub at: String,
    /// Why, when `failed`.
    pub error: Option<crate::dto::MessageErrorBody>,
}

/// `data` of a `message.reaction` event.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct MessageReactionData {
    /// The message reacted to.
    #[schema(example = "3EB0C431C26A1916E0F6A2")]
    pub id: String,
    /// Its chat.
    #[schema(example = "14155550123@s.whatsapp.net")]
    pub chat: String,
    /// Who reacted.
    #[schema(example = "14155550123@s.whatsapp.net")]
    pub from: String,
    /// The emoji; empty when the reaction was taken back.
    #[schema(example = "👍")]
    pub emoji: String,
}

/// A page of the event log, in cursor order.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventList {
    /// The events (at most `limit`).
    #[schema(value_type = Vec<EventBody>)]
    pub data: Vec<Value>,
    /// The last event's cursor, or the `after` given when there were none:
    /// poll again with it as `after`.
    #[schema(example = "42")]
    pub next_cursor: String,
}

/// Deserializes a field that is present (`null` included) as `Some`, so
/// `null` and absent can be told apart.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// `url` of a webhook body: the pattern is what the URL parser (and the
/// HTTP client after it) takes.
fn webhook_url() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(2048))
        .pattern(Some(url_pattern::webhook_url_pattern()))
        .description(Some(
            "An absolute `http` or `https` URL, at most 2,048 characters, no credentials, no \
             fragment, no white space. The host: a name of ASCII letters, digits, `-` and `.` (an \
             internationalized name in punycode, `xn--…`), an IPv4 address (a name whose last \
             label is a number is read as one, as browsers do: `10.1`, `0x7f.1`), or an IPv6 \
             address in brackets; a port up to 65535. A host that resolves to a loopback, \
             private, link-local, multicast or unspecified address is refused unless \
             `webhooks.allow_private_targets` is set.",
        ))
        .examples([serde_json::json!("https://example.com/hooks/wagate")])
        .build()
}

/// Body of `POST /api/v1/webhooks`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateWebhookRequest {
    /// Where events are POSTed: an absolute `http` or `https` URL with a
    /// host, no credentials, no fragment, at most 2,048 characters. A host
    /// that resolves to a loopback, private, link-local, multicast or
    /// unspecified address is refused unless
    /// `webhooks.allow_private_targets` is set.
    #[schema(schema_with = webhook_url, required = true)]
    pub url: Option<Value>,
    /// Which events: exact types, prefixes ending in `.*`, or `*` for all
    /// (1 to 50 entries).
    #[schema(schema_with = event_pattern_list, required = true)]
    pub events: Option<Value>,
    /// Only these sessions' events (1 to 100 ids); null or absent: every
    /// session's, and events of no session.
    #[schema(schema_with = session_id_list)]
    pub session_ids: Option<Value>,
    /// For people: at most 500 characters, no control characters other
    /// than line feed and tab; absent: empty. Not null (that is refused;
    /// null clears it only in a PATCH).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = String, required = false, max_length = 500,
        pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$", example = "CRM sync")]
    pub description: Option<Value>,
}

/// Body of `PATCH /api/v1/webhooks/{id}`: absent fields stay as they are.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateWebhookRequest {
    /// New target (as on creation).
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = webhook_url, required = false)]
    pub url: Option<Value>,
    /// New event patterns (1 to 50).
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = event_pattern_list, required = false)]
    pub events: Option<Value>,
    /// New session restriction; null: all sessions.
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = session_id_list, required = false)]
    pub session_ids: Option<Value>,
    /// New description (null clears it).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, required = false, max_length = 500,
        pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$")]
    pub description: Option<Value>,
    /// `false` stops deliveries; `true` resumes them and clears
    /// `disabledReason`.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = bool, required = false)]
    pub enabled: Option<Value>,
}

/// `events` of a webhook body: a non-empty array of patterns.
fn event_pattern_list() -> Array {
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(event_patterns())),
        )
        .min_items(Some(1))
        .max_items(Some(50))
        .description(Some(
            "Exact types, prefixes ending in `.*`, or `*` for all (1 to 50 entries).",
        ))
        .examples([serde_json::json!(["session.*"])])
        .build()
}

/// `sessionIds` of a webhook body: null, or a non-empty array of ids.
fn session_id_list() -> Array {
    ArrayBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
            Type::Array,
            Type::Null,
        ]))
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(r"^sess_[0-7][0-9A-HJKMNP-TV-Z]{25}$")),
        )
        .min_items(Some(1))
        .max_items(Some(100))
        .description(Some(
            "Only these sessions' events (1 to 100 ids); null: every session's, and events of no session.",
        ))
        .build()
}

/// A webhook (never its secret).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookBody {
    /// `wh_` + ULID.
    #[schema(example = "wh_01JBZ5T0Q4M6Y8V2K3N7R9S1WX")]
    pub id: String,
    /// Where events are POSTed.
    #[schema(example = "https://example.com/hooks/wagate")]
    pub url: String,
    /// Which events.
    #[schema(example = json!(["session.*"]))]
    pub events: Vec<String>,
    /// Only these sessions; null: all.
    pub session_ids: Option<Vec<String>>,
    /// For people.
    pub description: String,
    /// Whether deliveries are made.
    pub enabled: bool,
    /// Why the gateway disabled it (the receiver answered 410, or every
    /// delivery failed for too long); null otherwise.
    pub disabled_reason: Option<String>,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last change.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl From<Webhook> for WebhookBody {
    fn from(w: Webhook) -> Self {
        Self {
            id: w.id.to_string(),
            url: w.url.as_str().to_owned(),
            events: w.events.iter().map(|p| p.as_str().to_owned()).collect(),
            session_ids: w
                .session_ids
                .map(|ids| ids.iter().map(ToString::to_string).collect()),
            description: w.description.as_str().to_owned(),
            enabled: w.enabled,
            disabled_reason: w.disabled_reason,
            created_at: w.created_at,
            updated_at: w.updated_at,
        }
    }
}

/// A webhook just created, with its signing secret: shown this once.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedWebhookBody {
    /// The webhook.
    #[serde(flatten)]
    pub webhook: WebhookBody,
    /// `whsec_` + base64 of 32 random bytes (Standard Webhooks). Store it
    /// now: it is never shown again.
    #[schema(example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    pub secret: String,
}

/// The organization's webhooks, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookList {
    /// The webhooks.
    pub data: Vec<WebhookBody>,
}

/// A new signing secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookSecretBody {
    /// `whsec_…`; the old secret keeps signing beside it for 24 h.
    #[schema(example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    pub secret: String,
}

/// A test event queued for one webhook.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookTestBody {
    /// The `webhook.test` event's id (its delivery is listed under
    /// `…/deliveries`).
    #[schema(example = "evt_01JBZ5T0Q4M6Y8V2K3N7R9S1WX")]
    pub event_id: String,
}

/// Body of `POST /api/v1/webhooks/{id}/replay`.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct ReplayRequest {
    /// A cursor: every retained event after it that the webhook wants is
    /// delivered again (same ids).
    #[schema(value_type = String, required = true, pattern = r"^[0-9]{1,19}$", example = "42")]
    pub after: Option<Value>,
}

/// How many events a replay queued.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplayBody {
    /// Deliveries queued.
    pub queued: u64,
}

/// One event's delivery to the webhook.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryBody {
    /// The event delivered.
    #[schema(example = "evt_01JBZ5T0Q4M6Y8V2K3N7R9S1WX")]
    pub event_id: String,
    /// Attempts made so far.
    pub attempt: u32,
    /// `pending`, `succeeded` or `failed`.
    #[schema(schema_with = delivery_state)]
    pub state: &'static str,
    /// The last answer's status, if one came.
    pub response_status: Option<u16>,
    /// The last failure, for people.
    pub error: Option<String>,
    /// When the last attempt was made (or the delivery queued).
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// How long the last attempt took.
    pub duration_ms: Option<u64>,
}

fn delivery_state() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(["pending", "succeeded", "failed"]))
        .description(Some("`pending`, `succeeded` or `failed`."))
        .build()
}

impl From<Delivery> for DeliveryBody {
    fn from(d: Delivery) -> Self {
        Self {
            event_id: d.event_id.to_string(),
            attempt: d.attempt,
            state: d.state.as_str(),
            response_status: d.response_status,
            error: d.error,
            at: d.at,
            duration_ms: d.duration_ms,
        }
    }
}

/// A page of a webhook's deliveries, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryList {
    /// The deliveries.
    pub data: Vec<DeliveryBody>,
    /// Pass as `cursor` to get the next page; null on the last page.
    #[schema(example = "17")]
    pub next_cursor: Option<String>,
}
