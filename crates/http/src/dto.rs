//! The wire format: JSON bodies of requests and answers (camelCase,
//! RFC 3339 timestamps), each documented in the OpenAPI document.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{Array, ArrayBuilder, ObjectBuilder, Schema, Type};
use wagate_domain::{About, ApiKey, BlocklistEntry, Capability, ProfilePicture, QrCode, Session};

mod conversation;
mod events;
mod groups;
mod messages;
mod polls;
mod receipts;
pub use conversation::{
    ChatStateData, ChatStateRequest, ContactCardBody, EditMessageRequest, LocationBody,
    MessageEditedData, MessageRevokedData, PresenceRequest, PresenceUpdateData,
};
pub(crate) use events::event_pattern_regex;
pub use events::{
    CreateWebhookRequest, CreatedWebhookBody, DeliveryBody, DeliveryList, EventBody, EventList,
    MessageReactionData, MessageSentData, MessageStatusData, ReplayBody, ReplayRequest,
    SessionQrData, SessionStatusData, UpdateWebhookRequest, WebhookBody, WebhookList,
    WebhookSecretBody, WebhookTestBody, WebhookTestData,
};
pub use groups::{
    AnswerRequestsRequest, CreateGroupRequest, CreatedGroupBody, GroupBody, GroupJoinedData,
    GroupLeftData, GroupList, GroupParticipantsData, GroupSettingsBody, GroupUpdatedData,
    InviteBody, JoinGroupRequest, JoinedBody, MembershipRequestBody, MembershipRequestList,
    OutcomeBody, OutcomeList, ParticipantBody, ParticipantsRequest, UpdateGroupRequest,
};
pub use messages::{
    MediaBody, MessageBody, MessageErrorBody, MessageList, ReactionRequest, ReadRequest,
    SendMediaRequest, SendMessageRequest, StatusAtBody,
};
pub use polls::{MessagePollVoteData, PollBody, PollOptionBody, PollResultsBody};
pub use receipts::{ReceiptBody, ReceiptList, ReceiptTimesBody};

/// A session.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionBody {
    /// `sess_` + ULID.
    #[schema(example = "sess_01JBZ5T0Q4M6Y8V2K3N7R9S1WX")]
    pub id: String,
    /// Display name.
    pub name: Option<String>,
    /// `new`, `pairing`, `connecting`, `connected`, `disconnected` or `logged_out`.
    #[schema(example = "connected")]
    pub status: &'static str,
    /// The linked account's JID.
    #[schema(example = "15550001111@s.whatsapp.net")]
    pub jid: Option<String>,
    /// The linked account's display name.
    pub push_name: Option<String>,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last change.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// Last time it reached `connected`.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_connected_at: Option<OffsetDateTime>,
    /// Why it last failed; cleared on the next successful connect.
    pub last_error: Option<LastErrorBody>,
}

/// Why a session last failed.
#[derive(Debug, Serialize, ToSchema)]
pub struct LastErrorBody {
    /// Stable code: `unreachable`, `stream_replaced`, `temporary_ban`,
    /// `client_outdated`, `pairing_failed`, `logged_out_by_phone`,
    /// `connect_failure`, `internal`.
    pub code: &'static str,
    /// For people.
    pub message: String,
}

impl From<Session> for SessionBody {
    fn from(s: Session) -> Self {
        Self {
            id: s.id.to_string(),
            name: s.name.map(|n| n.as_str().to_owned()),
            status: s.status.as_str(),
            jid: s.jid.map(|j| j.to_string()),
            push_name: s.push_name,
            created_at: s.created_at,
            updated_at: s.updated_at,
            last_connected_at: s.last_connected_at,
            last_error: s.last_error.map(|e| LastErrorBody {
                code: e.code.as_str(),
                message: e.message,
            }),
        }
    }
}

/// A page of sessions, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionList {
    /// The sessions.
    pub data: Vec<SessionBody>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Body of `POST /api/v1/sessions` (may be empty).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct CreateSessionRequest {
    /// 1 to 100 characters once surrounding white space is trimmed; no
    /// control characters in between.
    #[schema(
        pattern = r"^[\t\n\u000B\u000C\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*[^\t\n\u000B\u000C\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000\u0000-\u001F\u007F-\u009F](?:[^\u0000-\u001F\u007F-\u009F]{0,98}[^\t\n\u000B\u000C\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000\u0000-\u001F\u007F-\u009F])?[\t\n\u000B\u000C\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*$",
        example = "support line"
    )]
    pub name: Option<String>,
}

/// A QR code to scan with WhatsApp on the phone.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QrBody {
    /// The text the QR encodes.
    #[schema(example = "2@Xf3…,wagate-fake")]
    pub code: String,
    /// After this the code is useless; fetch it again.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

impl From<QrCode> for QrBody {
    fn from(q: QrCode) -> Self {
        Self {
            code: q.code,
            expires_at: q.expires_at,
        }
    }
}

/// A QR code as a PNG image (the raw bytes, no JSON).
#[derive(Debug)]
pub struct PngImage;

impl utoipa::PartialSchema for PngImage {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .content_media_type("image/png")
            .build()
            .into()
    }
}

impl ToSchema for PngImage {}

/// A QR code as an SVG document.
#[derive(Debug)]
pub struct SvgImage;

impl utoipa::PartialSchema for SvgImage {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .content_media_type("image/svg+xml")
            .build()
            .into()
    }
}

impl ToSchema for SvgImage {}

/// Body of `POST …/pairing-code`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PairingCodeRequest {
    /// International number with country code: 7 to 15 digits, the first
    /// not 0, an optional leading `+`; spaces, `-`, `.`, `(` and `)` allowed.
    #[schema(value_type = String, required = true, example = "+1 415 555 0123",
        pattern = r"^[\t\n\u000B\u000C\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*\+?[ ().-]*[1-9](?:[ ().-]*[0-9]){6,14}[ ().-]*[\t\n\u000B\u000C\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*$")]
    pub phone_number: Option<String>,
}

/// A pairing code to type on the phone.
#[derive(Debug, Serialize, ToSchema)]
pub struct PairingCodeBody {
    /// Eight characters in two groups of four, e.g. `ABCD-EFGH`.
    #[schema(example = "ABCD-EFGH")]
    pub code: String,
}

/// A contact's profile picture.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PictureBody {
    /// WhatsApp's id of this picture version.
    #[schema(example = "1712345678")]
    pub id: String,
    /// Time-limited CDN URL.
    pub url: String,
    /// `image` or `preview`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Path on WhatsApp's media servers, when known.
    pub direct_path: Option<String>,
    /// File hash, when known.
    pub hash: Option<String>,
}

impl From<ProfilePicture> for PictureBody {
    fn from(p: ProfilePicture) -> Self {
        Self {
            id: p.id,
            url: p.url,
            kind: p.kind.as_str(),
            direct_path: p.direct_path,
            hash: p.hash,
        }
    }
}

/// A contact's about text.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AboutBody {
    /// The text.
    #[schema(example = "Hey there!")]
    pub about: String,
    /// When it was set, if WhatsApp says.
    #[serde(with = "time::serde::rfc3339::option")]
    pub set_at: Option<OffsetDateTime>,
}

impl From<About> for AboutBody {
    fn from(a: About) -> Self {
        Self {
            about: a.text,
            set_at: a.set_at,
        }
    }
}

/// The blocklist.
#[derive(Debug, Serialize, ToSchema)]
pub struct BlocklistBody {
    /// Blocked contacts.
    pub data: Vec<BlockedBody>,
}

/// One blocked contact.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlockedBody {
    /// As WhatsApp lists it (often a LID).
    #[schema(example = "123456789012345@lid")]
    pub jid: String,
    /// The phone-number JID, null when unknown.
    #[schema(example = "14155550123@s.whatsapp.net")]
    pub phone_jid: Option<String>,
}

impl From<BlocklistEntry> for BlockedBody {
    fn from(b: BlocklistEntry) -> Self {
        Self {
            jid: b.jid.to_string(),
            phone_jid: b.phone_jid.map(|j| j.to_string()),
        }
    }
}

/// Body of `POST /api/v1/api-keys`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateApiKeyRequest {
    /// 1 to 100 characters once surrounding white space is trimmed; no
    /// control characters in between.
    #[schema(value_type = String, required = true,
        pattern = r"^[\t\n\u000B\u000C\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*[^\t\n\u000B\u000C\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000\u0000-\u001F\u007F-\u009F](?:[^\u0000-\u001F\u007F-\u009F]{0,98}[^\t\n\u000B\u000C\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000\u0000-\u001F\u007F-\u009F])?[\t\n\u000B\u000C\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*$", example = "deploy bot")]
    pub name: Option<String>,
    /// At least one of `read`, `send`, `manage`, `admin`; none you lack yourself.
    #[schema(schema_with = requested_capabilities, required = true)]
    pub capabilities: Option<Vec<String>>,
    /// RFC 3339, in the future; null or absent for a key that does not expire.
    #[schema(format = DateTime, example = "2099-01-01T00:00:00Z")]
    pub expires_at: Option<String>,
}

/// `capabilities` of `POST /api/v1/api-keys`: a non-empty array of
/// capability names.
fn requested_capabilities() -> Array {
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(Capability::ALL.map(Capability::as_str))),
        )
        .min_items(Some(1))
        .description(Some(
            "At least one of `read`, `send`, `manage`, `admin`; none you lack yourself.",
        ))
        .examples([serde_json::json!(["read", "send"])])
        .build()
}

/// An API key (never its secret).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyBody {
    /// `key_` + ULID.
    pub id: String,
    /// Label.
    pub name: String,
    /// What it may do.
    #[schema(example = json!(["read", "send"]))]
    pub capabilities: Vec<&'static str>,
    /// The secret's first characters, to recognise it.
    #[schema(example = "wgk_1a2b3c4d")]
    pub prefix: String,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Expiry, if any.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// Last use (recorded at most once a minute).
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
}

impl From<ApiKey> for ApiKeyBody {
    fn from(k: ApiKey) -> Self {
        Self {
            id: k.id.to_string(),
            name: k.name.as_str().to_owned(),
            capabilities: k.capabilities.iter().map(|c| c.as_str()).collect(),
            prefix: k.prefix,
            created_at: k.created_at,
            expires_at: k.expires_at,
            last_used_at: k.last_used_at,
        }
    }
}

/// A key just created, with its secret: shown this once.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedApiKeyBody {
    /// `key_` + ULID.
    pub id: String,
    /// Label.
    pub name: String,
    /// What it may do.
    pub capabilities: Vec<&'static str>,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Expiry, if any.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// The secret. Store it now: it is never shown again.
    #[schema(example = "wgk_1a2b3c4d…")]
    pub key: String,
}

/// A list of API keys.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyList {
    /// The keys.
    pub data: Vec<ApiKeyBody>,
}

/// The error envelope of every non-2xx answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorEnvelope {
    /// The error.
    pub error: ErrorBody,
}

/// An error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// `invalid_argument`, `unauthorized`, `forbidden`, `not_found`,
    /// `method_not_allowed`, `conflict`, `limit_reached`, `payload_too_large`,
    /// `unsupported_media_type`, `gone`, `rate_limited`, `internal`,
    /// `not_implemented`, `unavailable` or `timeout`.
    #[schema(example = "not_found")]
    pub code: String,
    /// For people.
    #[schema(example = "session not found")]
    pub message: String,
    /// Always an object: `field`, `required`, `status`, `reason` where they apply.
    #[schema(value_type = Object)]
    pub details: serde_json::Map<String, serde_json::Value>,
}
