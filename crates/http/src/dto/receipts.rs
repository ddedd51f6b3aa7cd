//! Bodies of `GET …/messages/{messageId}/receipts`. Receipts are rendered
//! by the domain's `Receipt::to_json`; the structs here document it.

use serde::Serialize;
use utoipa::ToSchema;

/// When a recipient's receipts came.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // documents `Receipt::to_json`; never built
pub struct ReceiptTimesBody {
    /// On one of their devices.
    #[schema(format = DateTime)]
    pub delivered: Option<String>,
    /// Read.
    #[schema(format = DateTime)]
    pub read: Option<String>,
    /// Played (voice notes).
    #[schema(format = DateTime)]
    pub played: Option<String>,
}

/// One recipient's receipts of a message the account sent.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // documents `Receipt::to_json`; never built
pub struct ReceiptBody {
    /// How WhatsApp names them (a LID in LID-addressed groups).
    #[schema(example = "14155550123@s.whatsapp.net")]
    pub jid: String,
    /// Their phone-number JID, when known.
    #[schema(example = "14155550123@s.whatsapp.net")]
    pub pn: Option<String>,
    /// Their LID, when known.
    #[schema(example = "123456789012345@lid")]
    pub lid: Option<String>,
    /// `pending` (no receipt from them yet), `delivered` (on one of their
    /// devices), `read` or `played`; only forward.
    #[schema(example = "read")]
    pub status: String,
    /// When `status` was reached; null while `pending`.
    #[schema(format = DateTime)]
    pub at: Option<String>,
    /// When each was reached (a read with no delivery receipt before it
    /// counts as delivered then).
    pub status_at: ReceiptTimesBody,
}

/// A page of a message's receipts, by recipient (phone number when known).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct ReceiptList {
    /// The receipts.
    pub data: Vec<ReceiptBody>,
    /// Pass as `cursor` for the next page; `null` on the last.
    #[schema(example = "14155550142@s.whatsapp.net")]
    pub next_cursor: Option<String>,
}
