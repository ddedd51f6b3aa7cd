//! Groups: the group values the API, the store and the adapters share, and
//! the group notices (`group.*` events).

use std::fmt;

use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::message::rfc3339;
use crate::{DomainError, EventType, Jid, JidKind};

/// The JID of a group (`…@g.us`), parsed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GroupJid(Jid);

impl GroupJid {
    /// Parses a group JID as a caller writes it (see [`Jid::parse`]).
    ///
    /// # Errors
    ///
    /// A [`DomainError`] on `field` when the text is not a JID, or is the
    /// JID of a person or a channel.
    pub fn parse(input: &str, field: &'static str) -> Result<Self, DomainError> {
        let jid = Jid::parse(input).map_err(|e| DomainError::new(field, e.message))?;
        Self::from_jid(jid).map_err(|e| DomainError::new(field, e.message))
    }

    /// The group a [`Jid`] names.
    ///
    /// # Errors
    ///
    /// A [`DomainError`] on `jid` when it is not a group's.
    pub fn from_jid(jid: Jid) -> Result<Self, DomainError> {
        if jid.kind() == JidKind::Group {
            Ok(Self(jid))
        } else {
            Err(DomainError::new(
                "jid",
                "must be a group JID (digits before '@g.us')",
            ))
        }
    }

    /// As a plain [`Jid`].
    pub fn as_jid(&self) -> &Jid {
        &self.0
    }
}

impl fmt::Display for GroupJid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Longest subject WhatsApp takes, in characters.
pub const MAX_SUBJECT_CHARS: usize = 100;
/// Longest description WhatsApp takes, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 2048;
/// Most participants one call names (WhatsApp's group size limit).
pub const MAX_PARTICIPANTS: usize = 1024;

/// A group's subject (its name): 1 to 100 characters, trimmed, no line
/// breaks or other control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSubject(Box<str>);

impl GroupSubject {
    /// Parses a subject.
    ///
    /// # Errors
    ///
    /// A [`DomainError`] on `subject`.
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        let s = input.trim();
        let n = s.chars().count();
        if n == 0 || n > MAX_SUBJECT_CHARS {
            return Err(DomainError::new(
                "subject",
                format!("must be 1 to {MAX_SUBJECT_CHARS} characters"),
            ));
        }
        if s.chars().any(char::is_control) {
            return Err(DomainError::new(
                "subject",
                "must not contain line breaks or control characters",
            ));
        }
        Ok(Self(s.into()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A group's description: at most 2048 characters (empty: none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription(Box<str>);

impl GroupDescription {
    /// Parses a description; an empty one removes it.
    ///
    /// # Errors
    ///
    /// A [`DomainError`] on `description`.
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        if input.chars().count() > MAX_DESCRIPTION_CHARS {
            return Err(DomainError::new(
                "description",
                format!("must be at most {MAX_DESCRIPTION_CHARS} characters"),
            ));
        }
        if input.chars().any(|c| c.is_control() && c != '\n') {
            return Err(DomainError::new(
                "description",
                "must not contain control characters other than line breaks",
            ));
        }
        Ok(Self(input.into()))
    }

    /// The text (empty: no description).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A participant's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupRole {
    /// A member.
    Member,
    /// An admin.
    Admin,
    /// The creator's admin rank (cannot be demoted by other admins).
    Superadmin,
}

impl GroupRole {
    /// `member`, `admin` or `superadmin`.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupRole::Member => "member",
            GroupRole::Admin => "admin",
            GroupRole::Superadmin => "superadmin",
        }
    }

    /// The role named `input`, if any.
    pub fn from_name(input: &str) -> Option<Self> {
        [GroupRole::Member, GroupRole::Admin, GroupRole::Superadmin]
            .into_iter()
            .find(|r| r.as_str() == input)
    }

    /// Admin or superadmin.
    pub fn is_admin(self) -> bool {
        self != GroupRole::Member
    }
}

/// One member of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupParticipant {
    /// How the group addresses them (a LID in LID-addressed groups).
    pub jid: Jid,
    /// Their phone-number JID, when known.
    pub pn: Option<Jid>,
    /// Their LID, when known.
    pub lid: Option<Jid>,
    /// Their role.
    pub role: GroupRole,
}

impl GroupParticipant {
    /// The participant object of the API.
    pub fn to_json(&self) -> Value {
        json!({
            "jid": self.jid.to_string(),
            "pn": self.pn.as_ref().map(ToString::to_string),
            "lid": self.lid.as_ref().map(ToString::to_string),
            "role": self.role.as_str(),
        })
    }

    /// Reads back [`GroupParticipant::to_json`].
    ///
    /// # Errors
    ///
    /// A [`DomainError`] on `participants`.
    pub fn from_json(v: &Value) -> Result<Self, DomainError> {
        let bad = || DomainError::new("participants", "not a participant object");
        let jid = |k: &str| -> Result<Option<Jid>, DomainError> {
            match v.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Jid::parse(s).map(Some),
                Some(_) => Err(bad()),
            }
        };
        Ok(Self {
            jid: jid("jid")?.ok_or_else(bad)?,
            pn: jid("pn")?,
            lid: jid("lid")?,
            role: v
                .get("role")
                .and_then(Value::as_str)
                .and_then(GroupRole::from_name)
                .ok_or_else(bad)?,
        })
    }

    /// Whether `jid` names this participant (by group JID, number or LID).
    pub fn is(&self, jid: &Jid) -> bool {
        self.jid == *jid || self.pn.as_ref() == Some(jid) || self.lid.as_ref() == Some(jid)
    }
}

/// Who may do what in a group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupSettings {
    /// Only admins send messages.
    pub announce: bool,
    /// Only admins edit the group's subject, description and settings.
    pub locked: bool,
    /// Joining by link needs an admin's approval.
    pub approval: bool,
}

impl GroupSettings {
    /// The settings object of the API.
    pub fn to_json(self) -> Value {
        json!({ "announce": self.announce, "locked": self.locked, "approval": self.approval })
    }

    fn from_json(v: &Value) -> Result<Self, DomainError> {
        let flag = |k: &str| {
            v.get(k)
                .and_then(Value::as_bool)
                .ok_or_else(|| DomainError::new("settings", "not a settings object"))
        };
        Ok(Self {
            announce: flag("announce")?,
            locked: flag("locked")?,
            approval: flag("approval")?,
        })
    }
}

/// A change of settings: fields left `None` stay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupSettingsPatch {
    /// New `announce`.
    pub announce: Option<bool>,
    /// New `locked`.
    pub locked: Option<bool>,
    /// New `approval`.
    pub approval: Option<bool>,
}

impl GroupSettingsPatch {
    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.announce.is_none() && self.locked.is_none() && self.approval.is_none()
    }

    /// `s` with this patch applied.
    pub fn apply(&self, s: GroupSettings) -> GroupSettings {
        GroupSettings {
            announce: self.announce.unwrap_or(s.announce),
            locked: self.locked.unwrap_or(s.locked),
            approval: self.approval.unwrap_or(s.approval),
        }
    }
}

/// A group as WhatsApp describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Its JID.
    pub jid: GroupJid,
    /// Its subject (name).
    pub subject: String,
    /// Its description, if any.
    pub description: Option<String>,
    /// Who created it, when known.
    pub owner: Option<Jid>,
    /// When it was created, when known.
    pub created_at: Option<OffsetDateTime>,
    /// Its members.
    pub participants: Vec<GroupParticipant>,
    /// Its settings.
    pub settings: GroupSettings,
}

impl Group {
    /// The group object of the API, with its participants (`full`) or only
    /// their number (`size`, for lists and events).
    pub fn to_json(&self, full: bool) -> Value {
        let mut v = json!({
            "jid": self.jid.to_string(),
            "subject": self.subject,
            "description": self.description,
            "owner": self.owner.as_ref().map(ToString::to_string),
            "createdAt": self.created_at.map(rfc3339),
            "size": self.participants.len(),
            "settings": self.settings.to_json(),
        });
        if full && let Some(o) = v.as_object_mut() {
            o.insert(
                "participants".into(),
                self.participants
                    .iter()
                    .map(GroupParticipant::to_json)
                    .collect(),
            );
        }
        v
    }

    /// The participant `jid` names, if a member.
    pub fn participant(&self, jid: &Jid) -> Option<&GroupParticipant> {
        self.participants.iter().find(|p| p.is(jid))
    }
}

/// What happened to a group's membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParticipantAction {
    /// Added by an admin.
    Add,
    /// Removed by an admin.
    Remove,
    /// Made an admin.
    Promote,
    /// No longer an admin.
    Demote,
    /// Joined by an invite link (or an approved request).
    Join,
    /// Left on their own.
    Leave,
}

impl ParticipantAction {
    /// The action's name.
    pub fn as_str(self) -> &'static str {
        match self {
            ParticipantAction::Add => "add",
            ParticipantAction::Remove => "remove",
            ParticipantAction::Promote => "promote",
            ParticipantAction::Demote => "demote",
            ParticipantAction::Join => "join",
            ParticipantAction::Leave => "leave",
        }
    }

    /// Parses an action a caller may ask for: `add`, `remove`, `promote`
    /// or `demote`.
    ///
    /// # Errors
    ///
    /// A [`DomainError`] on `action`.
    pub fn parse_request(input: &str) -> Result<Self, DomainError> {
        match input {
            "add" => Ok(Self::Add),
            "remove" => Ok(Self::Remove),
            "promote" => Ok(Self::Promote),
            "demote" => Ok(Self::Demote),
            _ => Err(DomainError::new(
                "action",
                "must be add, remove, promote or demote",
            )),
        }
    }

    fn from_name(input: &str) -> Option<Self> {
        Self::parse_request(input).ok().or(match input {
            "join" => Some(Self::Join),
            "leave" => Some(Self::Leave),
            _ => None,
        })
    }
}

/// An answer to a membership request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestAction {
    /// Let them in.
    Approve,
    /// Turn them away.
    Reject,
}

impl RequestAction {
    /// Parses `approve` or `reject`.
    ///
    /// # Errors
    ///
    /// A [`DomainError`] on `action`.
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        match input {
            "approve" => Ok(Self::Approve),
            "reject" => Ok(Self::Reject),
            _ => Err(DomainError::new("action", "must be approve or reject")),
        }
    }
}

/// How one participant of a membership change fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParticipantStatus {
    /// Done (added, removed, promoted, demoted, approved, rejected).
    Done,
    /// The number has no WhatsApp account.
    NotOnWhatsApp,
    /// Their privacy settings keep them from being added: send them an
    /// invite link.
    InviteNeeded,
    /// Already a member (adding).
    AlreadyMember,
    /// Not a member (removing, promoting, demoting) or no such request.
    NotMember,
    /// WhatsApp refused it for another reason (its code).
    Refused(u16),
}

impl ParticipantStatus {
    /// The name the API uses: `ok`, `not_on_whatsapp`, `invite_needed`,
    /// `already_member`, `not_member` or `refused`.
    pub fn as_str(self) -> &'static str {
        match self {
            ParticipantStatus::Done => "ok",
            ParticipantStatus::NotOnWhatsApp => "not_on_whatsapp",
            ParticipantStatus::InviteNeeded => "invite_needed",
            ParticipantStatus::AlreadyMember => "already_member",
            ParticipantStatus::NotMember => "not_member",
            ParticipantStatus::Refused(_) => "refused",
        }
    }

    /// The status of WhatsApp's per-participant code (200, 403, 404, 409, …).
    pub fn from_code(code: u16) -> Self {
        match code {
            200 => ParticipantStatus::Done,
            403 => ParticipantStatus::InviteNeeded,
            404 => ParticipantStatus::NotMember,
            409 => ParticipantStatus::AlreadyMember,
            other => ParticipantStatus::Refused(other),
        }
    }
}

/// One participant's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipantOutcome {
    /// The participant as the caller named them.
    pub jid: Jid,
    /// What happened.
    pub status: ParticipantStatus,
}

impl ParticipantOutcome {
    /// The outcome object of the API.
    pub fn to_json(&self) -> Value {
        let mut v = json!({ "jid": self.jid.to_string(), "status": self.status.as_str() });
        if let (ParticipantStatus::Refused(code), Some(o)) = (self.status, v.as_object_mut()) {
            o.insert("code".into(), code.into());
        }
        v
    }
}

/// An invite code of a group (the part after `https://chat.whatsapp.com/`).
#[derive(Clone, PartialEq, Eq)]
pub struct InviteCode(Box<str>);

impl InviteCode {
    /// Parses a code, or a whole invite link.
    ///
    /// # Errors
    ///
    /// A [`DomainError`] on `code` unless it is 8 to 64 letters and digits.
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        let code = input
            .trim()
            .trim_start_matches("https://")
            .trim_start_matches("chat.whatsapp.com/");
        let ok = (8..=64).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_alphanumeric());
        if ok {
            Ok(Self(code.into()))
        } else {
            Err(DomainError::new(
                "code",
                "must be an invite code (8 to 64 letters and digits) or a chat.whatsapp.com link",
            ))
        }
    }

    /// The code.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The invite link.
    pub fn url(&self) -> String {
        format!("https://chat.whatsapp.com/{}", self.0)
    }
}

// An invite code lets anyone in: kept out of logs.
impl fmt::Debug for InviteCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InviteCode(..)")
    }
}

/// Someone asking to join a group that needs approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipRequest {
    /// Who asks.
    pub jid: Jid,
    /// Their phone-number JID, when known.
    pub pn: Option<Jid>,
    /// When they asked, when known.
    pub requested_at: Option<OffsetDateTime>,
}

impl MembershipRequest {
    /// The request object of the API.
    pub fn to_json(&self) -> Value {
        json!({
            "jid": self.jid.to_string(),
            "pn": self.pn.as_ref().map(ToString::to_string),
            "requestedAt": self.requested_at.map(rfc3339),
        })
    }
}

/// What happened to a group the account is in: the `group.*` events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupNotice {
    /// `group.joined`: the account created a group, was added, or joined
    /// (the event carries the whole group, its members included).
    Joined {
        /// The group.
        group: Box<Group>,
        /// Who added the account, when someone did.
        by: Option<Jid>,
    },
    /// `group.left`: the account left or was removed.
    Left {
        /// The group.
        group: GroupJid,
        /// Who removed the account (`None`: it left).
        by: Option<Jid>,
    },
    /// `group.participants`: others joined, left, were added, removed,
    /// promoted or demoted.
    Participants {
        /// The group.
        group: GroupJid,
        /// What happened.
        action: ParticipantAction,
        /// To whom (with their number and LID when known).
        participants: Vec<GroupParticipant>,
        /// Who did it, when it was not themselves.
        by: Option<Jid>,
    },
    /// `group.updated`: subject, description or settings changed.
    Updated {
        /// The group.
        group: GroupJid,
        /// The new subject, if it changed.
        subject: Option<String>,
        /// The new description (`Some(None)`: removed), if it changed.
        description: Option<Option<String>>,
        /// The settings after, if they changed.
        settings: Option<GroupSettings>,
        /// Who changed it, when known.
        by: Option<Jid>,
    },
}

impl GroupNotice {
    /// The event type it is recorded as.
    pub fn event_type(&self) -> EventType {
        match self {
            GroupNotice::Joined { .. } => EventType::GroupJoined,
            GroupNotice::Left { .. } => EventType::GroupLeft,
            GroupNotice::Participants { .. } => EventType::GroupParticipants,
            GroupNotice::Updated { .. } => EventType::GroupUpdated,
        }
    }

    /// The group it is about.
    pub fn group(&self) -> &GroupJid {
        match self {
            GroupNotice::Joined { group, .. } => &group.jid,
            GroupNotice::Left { group, .. }
            | GroupNotice::Participants { group, .. }
            | GroupNotice::Updated { group, .. } => group,
        }
    }

    /// The event's `data` object.
    pub fn to_json(&self) -> Value {
        let by = |b: &Option<Jid>| b.as_ref().map(ToString::to_string);
        match self {
            GroupNotice::Joined { group, by: who } => {
                json!({ "group": group.to_json(true), "by": by(who) })
            }
            GroupNotice::Left { group, by: who } => {
                json!({ "group": group.to_string(), "by": by(who) })
            }
            GroupNotice::Participants {
                group,
                action,
                participants,
                by: who,
            } => json!({
                "group": group.to_string(),
                "action": action.as_str(),
                "participants": participants.iter().map(GroupParticipant::to_json).collect::<Vec<_>>(),
                "by": by(who),
            }),
            GroupNotice::Updated {
                group,
                subject,
                description,
                settings,
                by: who,
            } => {
                let mut v = json!({ "group": group.to_string(), "by": by(who) });
                if let Some(o) = v.as_object_mut() {
                    if let Some(s) = subject {
                        o.insert("subject".into(), s.clone().into());
                    }
                    if let Some(d) = description {
                        o.insert("description".into(), d.clone().into());
                    }
                    if let Some(s) = settings {
                        o.insert("settings".into(), s.to_json());
                    }
                }
                v
            }
        }
    }

    /// Reads back [`GroupNotice::to_json`] of an event of type `t`.
    ///
    /// # Errors
    ///
    /// A [`DomainError`] on `data`.
    pub fn from_json(t: EventType, v: &Value) -> Result<Self, DomainError> {
        let bad = || DomainError::new("data", format!("not {t} data"));
        let opt_jid = |k: &str| -> Result<Option<Jid>, DomainError> {
            match v.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Jid::parse(s).map(Some),
                Some(_) => Err(bad()),
            }
        };
        let group_jid = || -> Result<GroupJid, DomainError> {
            let s = v.get("group").and_then(Value::as_str).ok_or_else(bad)?;
            GroupJid::parse(s, "data")
        };
        Ok(match t {
            EventType::GroupJoined => {
                let g = v.get("group").ok_or_else(bad)?;
                let text = |k: &str| g.get(k).and_then(Value::as_str);
                GroupNotice::Joined {
                    group: Box::new(Group {
                        jid: GroupJid::parse(text("jid").ok_or_else(bad)?, "data")?,
                        subject: text("subject").ok_or_else(bad)?.to_owned(),
                        description: text("description").map(str::to_owned),
                        owner: text("owner").map(Jid::parse).transpose()?,
                        created_at: text("createdAt")
                            .map(|s| {
                                OffsetDateTime::parse(
                                    s,
                                    &time::format_description::well_known::Rfc3339,
                                )
                                .map_err(|_| bad())
                            })
                            .transpose()?,
                        participants: g
                            .get("participants")
                            .and_then(Value::as_array)
                            .ok_or_else(bad)?
                            .iter()
                            .map(GroupParticipant::from_json)
                            .collect::<Result<_, _>>()?,
                        settings: GroupSettings::from_json(g.get("settings").ok_or_else(bad)?)?,
                    }),
                    by: opt_jid("by")?,
                }
            }
            EventType::GroupLeft => GroupNotice::Left {
                group: group_jid()?,
                by: opt_jid("by")?,
            },
            EventType::GroupParticipants => GroupNotice::Participants {
                group: group_jid()?,
                action: v
                    .get("action")
                    .and_then(Value::as_str)
                    .and_then(ParticipantAction::from_name)
                    .ok_or_else(bad)?,
                participants: v
                    .get("participants")
                    .and_then(Value::as_array)
                    .ok_or_else(bad)?
                    .iter()
                    .map(GroupParticipant::from_json)
                    .collect::<Result<_, _>>()?,
                by: opt_jid("by")?,
            },
            EventType::GroupUpdated => GroupNotice::Updated {
                group: group_jid()?,
                subject: match v.get("subject") {
                    None => None,
                    Some(s) => Some(s.as_str().ok_or_else(bad)?.to_owned()),
                },
                description: match v.get("description") {
                    None => None,
                    Some(Value::Null) => Some(None),
                    Some(s) => Some(Some(s.as_str().ok_or_else(bad)?.to_owned())),
                },
                settings: v
                    .get("settings")
                    .map(GroupSettings::from_json)
                    .transpose()?,
                by: opt_jid("by")?,
            },
            _ => return Err(bad()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid(s: &str) -> Jid {
        Jid::parse(s).unwrap()
    }

    #[test]
    fn group_jids_are_groups_only() {
        assert!(GroupJid::parse("120363025246125486@g.us", "jid").is_ok());
        assert!(GroupJid::parse("120363025246125486%40g.us", "jid").is_ok());
        for bad in ["14155550123@s.whatsapp.net", "123@lid", "x@g.us", ""] {
            assert_eq!(
                GroupJid::parse(bad, "groupJid").unwrap_err().field,
                "groupJid"
            );
        }
    }

    #[test]
    fn subjects_descriptions_and_codes_are_checked() {
        assert_eq!(GroupSubject::parse("  Team ").unwrap().as_str(), "Team");
        assert!(GroupSubject::parse(" ").is_err());
        assert!(GroupSubject::parse(&"é".repeat(101)).is_err());
        assert!(GroupSubject::parse("a\nb").is_err());
        assert!(GroupDescription::parse("line\nline").is_ok());
        assert!(GroupDescription::parse(&"x".repeat(2049)).is_err());
        assert_eq!(
            InviteCode::parse("https://chat.whatsapp.com/AbCdEfGh1234")
                .unwrap()
                .as_str(),
            "AbCdEfGh1234"
        );
        assert!(InviteCode::parse("short").is_err());
        assert!(InviteCode::parse("has space 12345").is_err());
        assert_eq!(
            format!("{:?}", InviteCode::parse("AbCdEfGh1234").unwrap()),
            "InviteCode(..)"
        );
    }

    #[test]
    fn actions_and_statuses() {
        assert_eq!(
            ParticipantAction::parse_request("promote").unwrap(),
            ParticipantAction::Promote
        );
        assert!(ParticipantAction::parse_request("leave").is_err());
        assert_eq!(
            ParticipantStatus::from_code(403),
            ParticipantStatus::InviteNeeded
        );
        assert_eq!(ParticipantStatus::from_code(500).as_str(), "refused");
        assert!(RequestAction::parse("maybe").is_err());
    }

    #[test]
    fn notices_round_trip_through_json() {
        let g = GroupJid::parse("120363025246125486@g.us", "jid").unwrap();
        let alice = GroupParticipant {
            jid: jid("123456789012345@lid"),
            pn: Some(jid("14155550123@s.whatsapp.net")),
            lid: Some(jid("123456789012345@lid")),
            role: GroupRole::Admin,
        };
        let all = [
            GroupNotice::Joined {
                group: Box::new(Group {
                    jid: g.clone(),
                    subject: "Team".into(),
                    description: Some("d".into()),
                    owner: Some(jid("14155550123@s.whatsapp.net")),
                    created_at: Some(time::macros::datetime!(2026-11-28 10:00:00 UTC)),
                    participants: vec![alice.clone()],
                    settings: GroupSettings {
                        announce: true,
                        locked: false,
                        approval: true,
                    },
                }),
                by: None,
            },
            GroupNotice::Left {
                group: g.clone(),
                by: Some(jid("14155550123@s.whatsapp.net")),
            },
            GroupNotice::Participants {
                group: g.clone(),
                action: ParticipantAction::Leave,
                participants: vec![alice],
                by: None,
            },
            GroupNotice::Updated {
                group: g.clone(),
                subject: Some("New".into()),
                description: Some(None),
                settings: None,
                by: None,
            },
        ];
        for n in all {
            assert_eq!(
                GroupNotice::from_json(n.event_type(), &n.to_json()).unwrap(),
                n
            );
        }
    }
}
