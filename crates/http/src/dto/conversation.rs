//! Bodies of the rest of a conversation: locations, contact cards, edits
//! and deletions. Answers are rendered by the domain's `to_json` (one
//! renderer for the API, events and webhooks); these types describe them.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A place (`type: "location"`), in a send request and on a message.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocationBody {
    /// Degrees north, −90 to 90.
    #[schema(example = 52.520_008, minimum = -90, maximum = 90)]
    pub latitude: f64,
    /// Degrees east, −180 to 180.
    #[schema(example = 13.404_954, minimum = -180, maximum = 180)]
    pub longitude: f64,
    /// The place's name (1 to 1,024 characters).
    #[schema(example = "Head office")]
    pub name: Option<String>,
    /// Its address (1 to 1,024 characters).
    #[schema(example = "Alexanderplatz 1, Berlin")]
    pub address: Option<String>,
}

/// One contact card (`type: "contacts"`).
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContactCardBody {
    /// The name shown (1 to 255 characters).
    #[schema(example = "Ana Lima")]
    pub display_name: String,
    /// The vCard: `BEGIN:VCARD` … `END:VCARD`, at most 16 KiB.
    #[schema(
        example = "BEGIN:VCARD\nVERSION:3.0\nFN:Ana Lima\nTEL;type=CELL;waid=14155550123:+1 415 555 0123\nEND:VCARD"
    )]
    pub vcard: String,
}

/// `PATCH …/messages/{messageId}`: `text` for a text message, `caption`
/// for an image, video or document; one of them.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"text": "Hello, corrected"}))]
pub struct EditMessageRequest {
    /// The new text (1 to 65,536 characters).
    pub text: Option<String>,
    /// The new caption (1 to 4,096 characters).
    pub caption: Option<String>,
}

/// `data` of a `message.edited` event.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // documents `EventData::to_json`; never built
pub struct MessageEditedData {
    /// The message as edited (its new `text` or `caption`, `editedAt`).
    pub message: crate::dto::MessageBody,
    /// Its text (or caption) before the edit.
    pub previous_text: Option<String>,
}

/// `data` of a `message.revoked` event.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // documents `EventData::to_json`; never built
pub struct MessageRevokedData {
    /// The message as it is now: its id, people, status and times,
    /// `type: "revoked"`, no content.
    pub message: crate::dto::MessageBody,
}

/// `POST …/chats/{jid}/presence`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChatStateRequest {
    /// `typing`, `recording` or `paused`.
    #[schema(value_type = String, required = true, example = "typing", pattern = "^(?:typing|recording|paused)$")]
    pub state: Option<String>,
}

/// `PUT …/presence`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PresenceRequest {
    /// Online (`true`) or offline.
    #[schema(value_type = bool, required = true, example = true)]
    pub available: Option<bool>,
}

/// `data` of a `presence.update` event.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // documents `EventData::to_json`; never built
pub struct PresenceUpdateData {
    /// Whose presence.
    #[schema(example = "14155550123@s.whatsapp.net")]
    pub jid: String,
    /// Online now.
    pub available: bool,
    /// When last online, when WhatsApp tells (and they share it).
    #[schema(format = DateTime)]
    pub last_seen: Option<String>,
}

/// `data` of a `chat.state` event.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // documents `EventData::to_json`; never built
pub struct ChatStateData {
    /// The chat.
    #[schema(example = "14155550123@s.whatsapp.net")]
    pub chat: String,
    /// Who.
    #[schema(example = "14155550123@s.whatsapp.net")]
    pub jid: String,
    /// `typing`, `recording` or `paused`.
    #[schema(example = "typing")]
    pub state: String,
}
