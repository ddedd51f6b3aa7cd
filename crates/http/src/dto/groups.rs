//! Bodies of the group routes. Groups, participants and outcomes are
//! rendered by the domain's `to_json` (the one renderer events use too);
//! the answer structs here document them.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A member of a group.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // documents `GroupParticipant::to_json`; never built
pub struct ParticipantBody {
    /// How the group addresses them (a LID in LID-addressed groups).
    #[schema(example = "123456789012345@lid")]
    pub jid: String,
    /// Their phone-number JID, when known.
    #[schema(example = "14155550123@s.whatsapp.net")]
    pub pn: Option<String>,
    /// Their LID, when known.
    #[schema(example = "123456789012345@lid")]
    pub lid: Option<String>,
    /// `member`, `admin` or `superadmin`.
    #[schema(example = "admin")]
    pub role: String,
}

/// Who may do what in a group.
#[derive(Debug, Serialize, Deserialize, Default, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GroupSettingsBody {
    /// Only admins send messages.
    pub announce: Option<bool>,
    /// Only admins edit the subject, description and settings.
    pub locked: Option<bool>,
    /// Joining by link needs an admin's approval.
    pub approval: Option<bool>,
}

/// A group.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // documents `Group::to_json`; never built
pub struct GroupBody {
    /// The group's JID.
    #[schema(example = "120363025246125486@g.us")]
    pub jid: String,
    /// Its name.
    #[schema(example = "Wagate Team")]
    pub subject: String,
    /// Its description.
    pub description: Option<String>,
    /// Who created it, when known.
    #[schema(example = "14155550123@s.whatsapp.net")]
    pub owner: Option<String>,
    /// When it was created, when known.
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
    /// How many members it has.
    pub size: u32,
    /// Its settings (every field set).
    pub settings: GroupSettingsBody,
    /// Its members (in lists of groups too).
    pub participants: Vec<ParticipantBody>,
}

/// A page of the account's groups, by JID.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct GroupList {
    /// The groups.
    pub data: Vec<GroupBody>,
    /// Pass as `cursor` for the next page; `null` on the last.
    #[schema(example = "120363025246125486@g.us")]
    pub next_cursor: Option<String>,
}

/// How one participant of a change fared.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct OutcomeBody {
    /// The participant as named in the request.
    #[schema(example = "14155550123@s.whatsapp.net")]
    pub jid: String,
    /// `ok`, `not_on_whatsapp`, `invite_needed` (their privacy settings
    /// want an invite link), `already_member`, `not_member` or `refused`.
    #[schema(example = "ok")]
    pub status: String,
    /// WhatsApp's code, when `refused`.
    pub code: Option<u16>,
}

/// The outcomes of a membership change, in the order asked.
#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code)]
pub struct OutcomeList {
    /// One per participant named.
    pub data: Vec<OutcomeBody>,
}

/// A new group and how each participant fared.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct CreatedGroupBody {
    /// The group.
    #[serde(flatten)]
    pub group: GroupBody,
    /// One per participant named.
    pub outcomes: Vec<OutcomeBody>,
}

/// `POST …/groups`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateGroupRequest {
    /// 1 to 100 characters, no line breaks.
    #[schema(value_type = String, required = true, example = "Support team", min_length = 1, max_length = 100)]
    pub subject: Option<String>,
    /// People to add (phone-number or LID JIDs), at most 1024.
    #[schema(value_type = Vec<String>, example = json!(["14155550123@s.whatsapp.net"]))]
    pub participants: Option<Vec<String>>,
}

/// `PATCH …/groups/{groupJid}`: what to change (at least one).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateGroupRequest {
    /// A new name: 1 to 100 characters, no line breaks.
    #[schema(example = "Support team (EU)")]
    pub subject: Option<String>,
    /// A new description, at most 2048 characters; `""` removes it.
    pub description: Option<String>,
    /// Settings to change; those left out stay.
    pub settings: Option<GroupSettingsBody>,
}

/// `POST …/groups/{groupJid}/participants`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ParticipantsRequest {
    /// `add`, `remove`, `promote` or `demote`.
    #[schema(value_type = String, required = true, example = "add")]
    pub action: Option<String>,
    /// 1 to 1024 phone-number or LID JIDs.
    #[schema(value_type = Vec<String>, required = true, example = json!(["14155550123@s.whatsapp.net"]))]
    pub participants: Option<Vec<String>>,
}

/// `POST …/groups/{groupJid}/requests`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AnswerRequestsRequest {
    /// `approve` or `reject`.
    #[schema(value_type = String, required = true, example = "approve")]
    pub action: Option<String>,
    /// 1 to 1024 JIDs of people asking to join.
    #[schema(value_type = Vec<String>, required = true, example = json!(["14155550177@s.whatsapp.net"]))]
    pub participants: Option<Vec<String>>,
}

/// `POST …/groups/join`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JoinGroupRequest {
    /// An invite code, or a whole `https://chat.whatsapp.com/…` link.
    #[schema(value_type = String, required = true, example = "AbCdEfGhIjKlMnOpQrStUv")]
    pub code: Option<String>,
}

/// What joining did.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct JoinedBody {
    /// The group.
    #[schema(example = "120363025246125486@g.us")]
    pub jid: String,
    /// `joined`, or `requested` when an admin must approve first.
    #[schema(example = "joined")]
    pub status: String,
    /// The group, when `joined`.
    pub group: Option<GroupBody>,
}

/// A group's invite link.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InviteBody {
    /// The code.
    #[schema(example = "AbCdEfGhIjKlMnOpQrStUv")]
    pub code: String,
    /// The link to share.
    #[schema(example = "https://chat.whatsapp.com/AbCdEfGhIjKlMnOpQrStUv")]
    pub url: String,
}

/// Someone asking to join.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct MembershipRequestBody {
    /// Who.
    #[schema(example = "14155550177@s.whatsapp.net")]
    pub jid: String,
    /// Their phone-number JID, when known.
    pub pn: Option<String>,
    /// When they asked, when known.
    #[schema(format = DateTime)]
    pub requested_at: Option<String>,
}

/// The pending requests to join.
#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code)]
pub struct MembershipRequestList {
    /// The requests.
    pub data: Vec<MembershipRequestBody>,
}

/// `data` of a `group.joined` event.
#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code)]
pub struct GroupJoinedData {
    /// The group, with its members.
    pub group: GroupBody,
    /// Who added the account (`null`: it created or joined the group).
    pub by: Option<String>,
}

/// `data` of a `group.left` event.
#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code)]
pub struct GroupLeftData {
    /// The group's JID.
    #[schema(example = "120363025246125486@g.us")]
    pub group: String,
    /// Who removed the account (`null`: it left).
    pub by: Option<String>,
}

/// `data` of a `group.participants` event.
#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code)]
pub struct GroupParticipantsData {
    /// The group's JID.
    #[schema(example = "120363025246125486@g.us")]
    pub group: String,
    /// `add`, `remove`, `promote`, `demote`, `join` (by link or approved
    /// request) or `leave`.
    #[schema(example = "add")]
    pub action: String,
    /// Who, with their number and LID when known.
    pub participants: Vec<ParticipantBody>,
    /// Who did it (`null`: themselves, or not known).
    pub by: Option<String>,
}

/// `data` of a `group.updated` event: only what changed is present.
#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code)]
pub struct GroupUpdatedData {
    /// The group's JID.
    #[schema(example = "120363025246125486@g.us")]
    pub group: String,
    /// The new subject.
    pub subject: Option<String>,
    /// The new description (`null`: removed).
    pub description: Option<String>,
    /// All settings after the change.
    pub settings: Option<GroupSettingsBody>,
    /// Who changed it, when known.
    pub by: Option<String>,
}
