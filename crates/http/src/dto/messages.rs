//! Messaging bodies. Answers are rendered by `Message::to_json` (the one
//! renderer, shared with events and webhooks); the types here describe them
//! in the OpenAPI document, and a test keeps the two in step.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `media` of a send request: base64 `data` or a `url`, not both.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SendMediaRequest {
    /// The file, base64 (standard alphabet, padding optional).
    pub data: Option<String>,
    /// Where the gateway downloads it (http/https; the webhooks' SSRF rule,
    /// `messages.media_fetch_timeout`, `messages.max_media_bytes`).
    #[schema(example = "https://example.com/a.pdf")]
    pub url: Option<String>,
    /// MIME type; required with `data`, else the server's `Content-Type`.
    #[schema(example = "image/jpeg")]
    pub mimetype: Option<String>,
    /// File name (documents).
    pub filename: Option<String>,
}

/// `POST /api/v1/sessions/{sessionId}/messages`: `text` with type `text`;
/// `media` (and maybe `caption`) with the other types.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
// One whole body as the example: the fields' own examples do not make a
// valid message together (text and media at once).
#[schema(example = json!({"to": "14155550123@s.whatsapp.net", "type": "text", "text": "Hello"}))]
pub struct SendMessageRequest {
    /// A user JID (phone number or LID), or a group JID (`…@g.us`: the
    /// account must be a member); channels are 400.
    #[schema(example = "14155550123@s.whatsapp.net")]
    pub to: Option<String>,
    /// `text`, `image`, `video`, `audio`, `document`, `location`,
    /// `contacts` or `poll`.
    #[serde(rename = "type")]
    #[schema(rename = "type", example = "text")]
    pub kind: Option<String>,
    /// The text (`text`; up to 65,536 characters).
    #[schema(example = "Hello")]
    pub text: Option<String>,
    /// Caption (image, video, document; up to 4,096 characters).
    pub caption: Option<String>,
    /// The media (every type but `text`).
    pub media: Option<SendMediaRequest>,
    /// The id of the message this one answers.
    pub reply_to: Option<String>,
    /// Audio as a voice note.
    pub voice_note: Option<bool>,
    /// The place (`location`).
    pub location: Option<crate::dto::LocationBody>,
    /// 1 to 20 contact cards (`contacts`).
    pub contacts: Option<Vec<crate::dto::ContactCardBody>>,
    /// The poll (`poll`): its votes arrive as `message.poll_vote` events
    /// and are tallied at `GET …/messages/{messageId}/poll`.
    pub poll: Option<crate::dto::PollBody>,
    /// Up to 50 people (user or LID JIDs) the text or caption @mentions;
    /// WhatsApp highlights `@<number>` in the text for each.
    #[schema(example = json!(["14155550123@s.whatsapp.net"]))]
    pub mentions: Option<Vec<String>>,
}

/// `media` of a message.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MediaBody {
    /// MIME type.
    pub mimetype: String,
    /// File name, for documents.
    pub filename: Option<String>,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the bytes, lower-case hex.
    pub sha256: String,
}

/// When an outgoing message reached each status.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusAtBody {
    /// Server ack.
    pub sent: Option<String>,
    /// Delivered to the contact's device.
    pub delivered: Option<String>,
    /// Read.
    pub read: Option<String>,
    /// Played (voice notes).
    pub played: Option<String>,
}

/// Why a message failed.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageErrorBody {
    /// `expired`, `rejected` (WhatsApp refused it: a nack or a 4xx),
    /// `not_on_whatsapp`, `media_rejected` (the media server refused its
    /// media for good) or `internal`.
    #[schema(example = "expired")]
    pub code: String,
    /// For people.
    pub message: String,
    /// `nackCode`: WhatsApp's code, for `rejected`.
    #[schema(value_type = Object)]
    pub details: serde_json::Map<String, serde_json::Value>,
}

/// A message.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageBody {
    /// WhatsApp's id.
    #[schema(example = "3EB0A1B2C3D4E5F6A7B8C9")]
    pub id: String,
    /// The session.
    pub session_id: String,
    /// The chat: the other person.
    #[schema(example = "14155550123@s.whatsapp.net")]
    pub chat: String,
    /// Written by this account.
    pub from_me: bool,
    /// The writer.
    pub from: String,
    /// The writer's phone-number JID, when known.
    pub from_pn: Option<String>,
    /// The writer's LID, when known.
    pub from_lid: Option<String>,
    /// The recipient.
    pub to: String,
    /// `text`, `image`, `video`, `audio`, `document`, `location`,
    /// `contacts`, `poll`, or `revoked` (deleted for everyone: no content
    /// left).
    #[serde(rename = "type")]
    #[schema(rename = "type", example = "text")]
    pub kind: String,
    /// The text (`text` messages).
    pub text: Option<String>,
    /// The caption.
    pub caption: Option<String>,
    /// Audio sent as a voice note.
    pub voice_note: bool,
    /// What is known of the media.
    pub media: Option<MediaBody>,
    /// The place (`location` messages).
    pub location: Option<crate::dto::LocationBody>,
    /// The contact cards (`contacts` messages).
    pub contacts: Option<Vec<crate::dto::ContactCardBody>>,
    /// The poll (`poll` messages; `selectableCount` always given).
    pub poll: Option<crate::dto::PollBody>,
    /// The message this one answers.
    pub reply_to: Option<String>,
    /// The people its text or caption @mentions (empty for none).
    pub mentions: Vec<String>,
    /// `pending`, `sent`, `delivered`, `read`, `played`, `failed`
    /// (outgoing); `received`, `read` (incoming).
    #[schema(example = "pending")]
    pub status: String,
    /// When each outgoing status was reached.
    pub status_at: StatusAtBody,
    /// Why it failed.
    pub error: Option<MessageErrorBody>,
    /// When its text or caption was last edited by its writer; null when
    /// never.
    #[schema(format = DateTime)]
    pub edited_at: Option<String>,
    /// When it was written.
    pub timestamp: String,
    /// When the gateway stored it.
    pub created_at: String,
}

/// A page of messages, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageList {
    /// The messages.
    pub data: Vec<MessageBody>,
    /// Pass as `cursor` for the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

/// `POST …/messages/{messageId}/reaction`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReactionRequest {
    /// The emoji (at most 16 characters, no white space or control
    /// characters); `""` removes the reaction.
    #[schema(value_type = String, required = true, example = "👍",
        pattern = r"^[^\s\x00-\x1f\x7f-\x9f]{0,16}$")]
    pub emoji: Option<String>,
}

/// `POST …/chats/{jid}/read`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReadRequest {
    /// 1 to 100 ids of the chat's messages.
    #[schema(schema_with = message_ids, required = true)]
    pub message_ids: Option<Vec<String>>,
}

/// `messageIds`: 1 to 100 message ids.
fn message_ids() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(r"^[A-Za-z0-9_-]{1,128}$")),
        )
        .min_items(Some(1))
        .max_items(Some(100))
        .build()
}
