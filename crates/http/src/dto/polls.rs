//! Poll bodies: the poll of a send request and of a message, its tally
//! (`GET …/messages/{messageId}/poll`) and the `message.poll_vote` event.
//! Answers are rendered by the domain's `to_json`; these describe them.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A poll (`type: "poll"`), in a send request and on a message.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PollBody {
    /// The question (1 to 255 characters).
    #[schema(example = "Which day suits you?")]
    pub question: String,
    /// 2 to 12 different options (1 to 100 characters each).
    #[schema(example = json!(["Monday", "Tuesday"]), min_items = 2, max_items = 12)]
    pub options: Vec<String>,
    /// How many options one person may pick: 1 (the default) to the
    /// number of options.
    #[schema(example = 1, minimum = 1, maximum = 12)]
    pub selectable_count: Option<u32>,
}

/// One option of a tally.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // documents `PollTally::to_json`; never built
pub struct PollOptionBody {
    /// The option's text.
    pub name: String,
    /// How many people pick it now.
    pub votes: u32,
    /// Who (phone-number JIDs when known, else LIDs).
    pub voters: Vec<String>,
}

/// `GET …/messages/{messageId}/poll`: the poll's current tally, each
/// person's latest vote counted once.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // documents `PollTally::to_json`; never built
pub struct PollResultsBody {
    /// The poll message's id.
    pub message: String,
    /// The question.
    pub question: String,
    /// How many options one person may pick.
    pub selectable_count: u32,
    /// Every option, in the poll's order, with its votes.
    pub options: Vec<PollOptionBody>,
    /// How many people pick something now (a vote taken back does not
    /// count).
    pub voters: u32,
    /// When the latest vote counted was cast; null before any.
    #[schema(format = DateTime)]
    pub updated_at: Option<String>,
}

/// `data` of a `message.poll_vote` event.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // documents `EventData::to_json`; never built
pub struct MessagePollVoteData {
    /// The poll message.
    pub message: crate::dto::MessageBody,
    /// Who voted.
    #[schema(example = "14155550123@s.whatsapp.net")]
    pub voter: String,
    /// The options they pick now, in the poll's order (it replaces their
    /// earlier vote; empty: they took it back).
    #[schema(example = json!(["Monday"]))]
    pub selected: Vec<String>,
}
