//! Group calls on whatsapp-rust's `Groups` feature (`w:g2` IQs), and the
//! mapping of its group values to the port's.

use time::OffsetDateTime;
use wagate_domain::{
    Group, GroupJid, GroupNotice, GroupParticipant, GroupRole, GroupSettings, GroupSubject,
    InviteCode, Jid, MembershipRequest, ParticipantAction, ParticipantOutcome, ParticipantStatus,
    RequestAction,
};
use wagate_whatsapp_port::{GroupChange, WhatsAppError};
use whatsapp_rust::wacore::iq::groups::GroupParticipantOptions;
use whatsapp_rust::{
    Client, GroupCreateOptions, GroupError, GroupMetadata, MembershipApprovalMode,
    ParticipantChangeResponse, ParticipantType, PreviousDescription,
};

use whatsapp_rust::lid_pn_cache::LearningSource;

use whatsapp_rust::types::events::GroupUpdate;
use whatsapp_rust::wacore::stanza::groups::{GroupNotificationAction, GroupParticipantInfo};

use crate::mapping::{self, iq_error};
use crate::messages::Own;

/// A group error as the port's: WhatsApp's 403 (`not-authorized`: not an
/// admin) is [`WhatsAppError::NotPermitted`], 404 (no such group, or the
/// account is not in it) [`WhatsAppError::NotFound`].
pub(crate) fn group_error(e: GroupError) -> WhatsAppError {
    match e {
        GroupError::Iq(whatsapp_rust::request::IqError::ServerError {
            code: 401 | 403, ..
        }) => WhatsAppError::NotPermitted("only the group's admins may do this".into()),
        GroupError::Iq(whatsapp_rust::request::IqError::ServerError {
            code: 404 | 406, ..
        }) => WhatsAppError::NotFound(None),
        GroupError::Iq(iq) => iq_error(&iq),
        GroupError::InvalidRequest(m) => WhatsAppError::InvalidTarget(m),
        GroupError::DescriptionConflict => {
            WhatsAppError::Unavailable("the description changed meanwhile; try again".into())
        }
        other => WhatsAppError::Internal(format!("{other:#}")),
    }
}

fn role(t: &ParticipantType) -> GroupRole {
    match t {
        ParticipantType::SuperAdmin => GroupRole::Superadmin,
        ParticipantType::Admin => GroupRole::Admin,
        _ => GroupRole::Member,
    }
}

/// The port's group of whatsapp-rust's metadata (`None` for a JID that is
/// not a group's).
pub(crate) fn group(meta: &GroupMetadata) -> Option<Group> {
    let jid = GroupJid::from_jid(mapping::from_wa_jid(&meta.id)?).ok()?;
    let participants = meta
        .participants
        .iter()
        .filter_map(|p| {
            let jid = mapping::from_wa_jid(&p.jid.to_non_ad())?;
            let pn = p
                .phone_number
                .as_ref()
                .and_then(|j| mapping::from_wa_jid(&j.to_non_ad()))
                .or_else(|| (jid.kind() == wagate_domain::JidKind::User).then(|| jid.clone()));
            let lid = p
                .lid
                .as_ref()
                .and_then(|j| mapping::from_wa_jid(&j.to_non_ad()))
                .or_else(|| (jid.kind() == wagate_domain::JidKind::Lid).then(|| jid.clone()));
            Some(GroupParticipant {
                jid,
                pn,
                lid,
                role: role(&p.participant_type),
            })
        })
        .collect();
    Some(Group {
        jid,
        subject: meta.subject.clone(),
        description: meta.description.clone().filter(|d| !d.is_empty()),
        owner: meta
            .creator_pn
            .as_ref()
            .or(meta.creator.as_ref())
            .and_then(|j| mapping::from_wa_jid(&j.to_non_ad())),
        created_at: meta
            .creation_time
            .and_then(|t| OffsetDateTime::from_unix_timestamp(i64::try_from(t).ok()?).ok()),
        participants,
        settings: GroupSettings {
            announce: meta.is_announcement,
            locked: meta.is_locked,
            approval: meta.membership_approval,
        },
    })
}

/// Each participant's outcome, in the order asked (`asked`), from
/// WhatsApp's answers (which name them by the JID it uses).
/// When `adding`, WhatsApp's 404 means the number has no account.
fn outcomes(
    asked: &[Jid],
    answers: &[ParticipantChangeResponse],
    adding: bool,
) -> Vec<ParticipantOutcome> {
    asked
        .iter()
        .map(|jid| {
            let wa = mapping::to_wa_jid(jid);
            let answer = answers.iter().find(|r| {
                r.jid.user == wa.user || r.phone_number.as_ref().is_some_and(|p| p.user == wa.user)
            });
            let status = match answer {
                None => ParticipantStatus::Refused(0),
                Some(r) => match r.error.as_deref() {
                    None => ParticipantStatus::Done,
                    Some(code) => match code.parse::<u16>() {
                        Ok(404) if adding => ParticipantStatus::NotOnWhatsApp,
                        Ok(code) => ParticipantStatus::from_code(code),
                        Err(_) => ParticipantStatus::Refused(0),
                    },
                },
            };
            ParticipantOutcome {
                jid: jid.clone(),
                status,
            }
        })
        .collect()
}

fn wa_jids(jids: &[Jid]) -> Vec<whatsapp_rust::Jid> {
    jids.iter().map(mapping::to_wa_jid).collect()
}

fn group_wa(jid: &GroupJid) -> whatsapp_rust::Jid {
    mapping::to_wa_jid(jid.as_jid())
}

/// The (LID user, phone-number user) pairs a group's metadata tells: in a
/// LID-addressed group, each participant's LID with the number WhatsApp
/// gives beside it.
pub(crate) fn lid_pn_pairs(meta: &GroupMetadata) -> Vec<(String, String)> {
    meta.participants
        .iter()
        .filter_map(|p| {
            let lid = p
                .lid
                .as_ref()
                .filter(|l| l.is_lid())
                .or_else(|| Some(&p.jid).filter(|j| j.is_lid()))?;
            let pn = p.phone_number.as_ref().filter(|n| n.is_pn())?;
            Some((lid.user.to_string(), pn.user.to_string()))
        })
        .collect()
}

/// Every group the account is in. The LID ↔ number pairs the groups list
/// are remembered: the live adapter skips history sync, whose bootstrap
/// would otherwise bring them in bulk, and decrypting and naming a
/// LID-addressed member's message needs them.
pub(crate) async fn participating(client: &Client) -> Result<Vec<Group>, WhatsAppError> {
    let all = client
        .groups()
        .get_participating()
        .await
        .map_err(group_error)?;
    for (lid, pn) in all.values().flat_map(lid_pn_pairs) {
        if let Err(e) = client
            .add_lid_pn_mapping(&lid, &pn, LearningSource::Other)
            .await
        {
            tracing::debug!(error = %e, "could not remember a group member's LID mapping");
        }
    }
    Ok(all.values().filter_map(group).collect())
}

/// One group now.
pub(crate) async fn metadata(client: &Client, jid: &GroupJid) -> Result<Group, WhatsAppError> {
    let meta = client
        .groups()
        .get_metadata(&group_wa(jid))
        .await
        .map_err(group_error)?;
    group(&meta).ok_or_else(|| WhatsAppError::Internal("WhatsApp named no group".into()))
}

/// Creates a group; it and each participant's outcome (a participant
/// WhatsApp left out of the new group was not added).
pub(crate) async fn create(
    client: &Client,
    subject: &GroupSubject,
    participants: &[Jid],
) -> Result<(Group, Vec<ParticipantOutcome>), WhatsAppError> {
    let options = GroupCreateOptions::builder()
        .subject(subject.as_str())
        .participants(
            participants
                .iter()
                .map(|p| GroupParticipantOptions::new(mapping::to_wa_jid(p)))
                .collect(),
        )
        .build();
    let created = client
        .groups()
        .create_group(options)
        .await
        .map_err(group_error)?;
    let group = group(&created.metadata)
        .ok_or_else(|| WhatsAppError::Internal("WhatsApp named no group".into()))?;
    let outcomes = participants
        .iter()
        .map(|p| ParticipantOutcome {
            jid: p.clone(),
            status: if group.participant(p).is_some() {
                ParticipantStatus::Done
            } else {
                // Left out: their privacy settings want an invite.
                ParticipantStatus::InviteNeeded
            },
        })
        .collect();
    Ok((group, outcomes))
}

/// Subject, description, then settings, each its own IQ.
pub(crate) async fn update(
    client: &Client,
    jid: &GroupJid,
    change: &GroupChange,
) -> Result<(), WhatsAppError> {
    let groups = client.groups();
    let wa = group_wa(jid);
    if let Some(subject) = &change.subject {
        let subject = whatsapp_rust::GroupSubject::new(subject.as_str())
            .map_err(|e| WhatsAppError::InvalidTarget(e.to_string()))?;
        groups
            .set_subject(wa.clone(), subject)
            .await
            .map_err(group_error)?;
    }
    if let Some(description) = &change.description {
        let description = (!description.as_str().is_empty())
            .then(|| whatsapp_rust::GroupDescription::new(description.as_str()))
            .transpose()
            .map_err(|e| WhatsAppError::InvalidTarget(e.to_string()))?;
        groups
            .set_description(wa.clone(), description, PreviousDescription::Resolve)
            .await
            .map_err(group_error)?;
    }
    if let Some(announce) = change.settings.announce {
        groups
            .set_announce(wa.clone(), announce)
            .await
            .map_err(group_error)?;
    }
    if let Some(locked) = change.settings.locked {
        groups
            .set_locked(wa.clone(), locked)
            .await
            .map_err(group_error)?;
    }
    if let Some(approval) = change.settings.approval {
        let mode = if approval {
            MembershipApprovalMode::On
        } else {
            MembershipApprovalMode::Off
        };
        groups
            .set_membership_approval(wa, mode)
            .await
            .map_err(group_error)?;
    }
    Ok(())
}

/// Adds, removes, promotes or demotes.
pub(crate) async fn participants(
    client: &Client,
    jid: &GroupJid,
    action: ParticipantAction,
    who: &[Jid],
) -> Result<Vec<ParticipantOutcome>, WhatsAppError> {
    let groups = client.groups();
    let (wa, list) = (group_wa(jid), wa_jids(who));
    let answers = match action {
        ParticipantAction::Add => groups.add_participants(wa, &list).await,
        ParticipantAction::Remove => groups.remove_participants(wa, &list).await,
        ParticipantAction::Promote => groups.promote_participants(wa, &list).await,
        ParticipantAction::Demote => groups.demote_participants(wa, &list).await,
        ParticipantAction::Join | ParticipantAction::Leave => {
            return Err(WhatsAppError::InvalidTarget(
                "join and leave are not asked for on others".into(),
            ));
        }
    }
    .map_err(group_error)?;
    Ok(outcomes(who, &answers, action == ParticipantAction::Add))
}

/// The invite code (a new one with `revoke`).
pub(crate) async fn invite(
    client: &Client,
    jid: &GroupJid,
    revoke: bool,
) -> Result<InviteCode, WhatsAppError> {
    let link = client
        .groups()
        .get_invite_link(group_wa(jid), revoke)
        .await
        .map_err(group_error)?;
    InviteCode::parse(&link).map_err(|e| WhatsAppError::Internal(e.message))
}

/// Joins by invite code.
pub(crate) async fn join(client: &Client, code: &InviteCode) -> Result<GroupJid, WhatsAppError> {
    let joined = client
        .groups()
        .join_with_invite_code(code.as_str())
        .await
        .map_err(group_error)?;
    mapping::from_wa_jid(joined.group_jid())
        .and_then(|j| GroupJid::from_jid(j).ok())
        .ok_or_else(|| WhatsAppError::Internal("WhatsApp named no group".into()))
}

/// Leaves.
pub(crate) async fn leave(client: &Client, jid: &GroupJid) -> Result<(), WhatsAppError> {
    client
        .groups()
        .leave(group_wa(jid))
        .await
        .map_err(group_error)
}

/// Pending requests to join.
pub(crate) async fn requests(
    client: &Client,
    jid: &GroupJid,
) -> Result<Vec<MembershipRequest>, WhatsAppError> {
    let list = client
        .groups()
        .get_membership_requests(group_wa(jid))
        .await
        .map_err(group_error)?;
    let mut out = Vec::with_capacity(list.len());
    for r in list {
        let Some(jid) = mapping::from_wa_jid(&r.jid.to_non_ad()) else {
            continue;
        };
        let pn = if r.jid.is_pn() {
            Some(jid.clone())
        } else {
            match client.get_lid_pn_entry(&r.jid).await {
                Ok(Some(e)) => Jid::user(&e.phone_number).ok(),
                _ => None,
            }
        };
        out.push(MembershipRequest {
            jid,
            pn,
            requested_at: r
                .request_time
                .and_then(|t| OffsetDateTime::from_unix_timestamp(i64::try_from(t).ok()?).ok()),
        });
    }
    Ok(out)
}

/// Approves or rejects requests.
pub(crate) async fn answer(
    client: &Client,
    jid: &GroupJid,
    action: RequestAction,
    who: &[Jid],
) -> Result<Vec<ParticipantOutcome>, WhatsAppError> {
    let groups = client.groups();
    let (wa, list) = (group_wa(jid), wa_jids(who));
    let answers = match action {
        RequestAction::Approve => groups.approve_membership_requests(wa, &list).await,
        RequestAction::Reject => groups.reject_membership_requests(wa, &list).await,
    }
    .map_err(group_error)?;
    Ok(outcomes(who, &answers, false))
}

/// A member named in a `w:gp2` notification, with the role the action
/// leaves them in.
fn notified_member(p: &GroupParticipantInfo, role: GroupRole) -> Option<GroupParticipant> {
    let wa = p.jid.to_non_ad();
    let jid = mapping::from_wa_jid(&wa)?;
    let pn = p
        .phone_number
        .as_ref()
        .and_then(|j| mapping::from_wa_jid(&j.to_non_ad()))
        .or_else(|| (jid.kind() == wagate_domain::JidKind::User).then(|| jid.clone()));
    let lid = p
        .lid
        .as_ref()
        .and_then(|j| mapping::from_wa_jid(&j.to_non_ad()))
        .or_else(|| (jid.kind() == wagate_domain::JidKind::Lid).then(|| jid.clone()));
    Some(GroupParticipant { jid, pn, lid, role })
}

/// Whether a notified member is the account itself.
fn is_own(own: &Own, p: &GroupParticipantInfo) -> bool {
    own.is_me(&p.jid.to_non_ad())
        || p.phone_number
            .as_ref()
            .is_some_and(|j| own.is_me(&j.to_non_ad()))
        || p.lid.as_ref().is_some_and(|j| own.is_me(&j.to_non_ad()))
}

/// What a `w:gp2` notification (one of its actions) tells, as the port's
/// notices. A change the account itself made is skipped: the call that
/// made it published it already. The account added (or a group created
/// with it) is `Joined` with the whole group as WhatsApp lists it now.
pub(crate) async fn notices(client: &Client, own: &Own, update: &GroupUpdate) -> Vec<GroupNotice> {
    let Some(group) = mapping::from_wa_jid(&update.group_jid.to_non_ad())
        .and_then(|j| GroupJid::from_jid(j).ok())
    else {
        return Vec::new();
    };
    let actor = update.participant.as_ref().map(|j| j.to_non_ad());
    if actor.as_ref().is_some_and(|a| own.is_me(a)) {
        return Vec::new();
    }
    let by = update
        .participant_pn
        .as_ref()
        .or(update.participant.as_ref())
        .and_then(|j| mapping::from_wa_jid(&j.to_non_ad()));
    let joined = || async {
        match metadata(client, &group).await {
            Ok(g) => vec![GroupNotice::Joined {
                group: Box::new(g),
                by: by.clone(),
            }],
            Err(e) => {
                tracing::warn!(error = %e, "a group the account joined could not be read");
                Vec::new()
            }
        }
    };
    let updated = |subject, description, settings| GroupNotice::Updated {
        group: group.clone(),
        subject,
        description,
        settings,
        by: by.clone(),
    };
    match &update.action {
        GroupNotificationAction::Create { .. } => joined().await,
        GroupNotificationAction::Add { participants, .. }
        | GroupNotificationAction::Remove { participants, .. }
        | GroupNotificationAction::Promote { participants }
        | GroupNotificationAction::Demote { participants } => {
            let (action, role) = match &update.action {
                GroupNotificationAction::Add { .. } => (ParticipantAction::Add, GroupRole::Member),
                GroupNotificationAction::Remove { .. } => {
                    (ParticipantAction::Remove, GroupRole::Member)
                }
                GroupNotificationAction::Promote { .. } => {
                    (ParticipantAction::Promote, GroupRole::Admin)
                }
                _ => (ParticipantAction::Demote, GroupRole::Member),
            };
            let mine = participants.iter().any(|p| is_own(own, p));
            let mut out = match (mine, action) {
                (true, ParticipantAction::Add) => joined().await,
                (true, ParticipantAction::Remove) => vec![GroupNotice::Left {
                    group: group.clone(),
                    by: by.clone(),
                }],
                _ => Vec::new(),
            };
            let others: Vec<GroupParticipant> = participants
                .iter()
                .filter(|p| !is_own(own, p))
                .filter_map(|p| notified_member(p, role))
                .collect();
            if !others.is_empty() {
                // Someone who added or removed themselves joined or left.
                let themselves = actor.as_ref().is_some_and(|a| {
                    participants
                        .iter()
                        .any(|p| p.jid.to_non_ad().user == a.user)
                });
                let (action, by) = match (action, themselves) {
                    (ParticipantAction::Add, true) => (ParticipantAction::Join, None),
                    (ParticipantAction::Remove, true) => (ParticipantAction::Leave, None),
                    (action, _) => (action, by.clone()),
                };
                out.push(GroupNotice::Participants {
                    group: group.clone(),
                    action,
                    participants: others,
                    by,
                });
            }
            out
        }
        GroupNotificationAction::Subject { subject, .. } => {
            vec![updated(Some(subject.clone()), None, None)]
        }
        GroupNotificationAction::Description { description, .. } => vec![updated(
            None,
            Some(description.clone().filter(|d| !d.is_empty())),
            None,
        )],
        GroupNotificationAction::Locked { .. }
        | GroupNotificationAction::Unlocked
        | GroupNotificationAction::Announce
        | GroupNotificationAction::NotAnnounce
        | GroupNotificationAction::MembershipApprovalMode { .. } => {
            // The notice carries the settings after: read them whole.
            match metadata(client, &group).await {
                Ok(g) => vec![updated(None, None, Some(g.settings))],
                Err(e) => {
                    tracing::warn!(error = %e, "a group's new settings could not be read");
                    Vec::new()
                }
            }
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use whatsapp_rust::Jid as WaJid;

    fn member(
        jid: WaJid,
        pn: Option<WaJid>,
        lid: Option<WaJid>,
    ) -> whatsapp_rust::GroupParticipant {
        whatsapp_rust::GroupParticipant {
            jid,
            phone_number: pn,
            lid,
            username: None,
            participant_type: ParticipantType::Member,
            details: None,
        }
    }

    #[test]
    fn lid_members_numbers_are_learned_and_mapped() {
        let meta = GroupMetadata {
            id: WaJid::group("120363025246125486"),
            subject: "Team".into(),
            participants: vec![
                // A LID-addressed member with their number: learned.
                member(
                    WaJid::lid("123456789012345"),
                    Some(WaJid::pn("14155550123")),
                    None,
                ),
                // Addressed by number, LID beside it: learned too.
                member(
                    WaJid::pn("14155550199"),
                    Some(WaJid::pn("14155550199")),
                    Some(WaJid::lid("99887766554433")),
                ),
                // Known only by LID: nothing to learn.
                member(WaJid::lid("111222333444555"), None, None),
            ],
            ..GroupMetadata::default()
        };
        assert_eq!(
            lid_pn_pairs(&meta),
            vec![
                ("123456789012345".to_owned(), "14155550123".to_owned()),
                ("99887766554433".to_owned(), "14155550199".to_owned()),
            ]
        );
        let g = group(&meta).unwrap();
        assert_eq!(g.participants.len(), 3);
        let first = &g.participants[0];
        assert_eq!(first.jid.to_string(), "123456789012345@lid");
        assert_eq!(
            first.pn.as_ref().unwrap().to_string(),
            "14155550123@s.whatsapp.net"
        );
        assert_eq!(
            first.lid.as_ref().unwrap().to_string(),
            "123456789012345@lid"
        );
        assert_eq!(g.participants[2].pn, None);
    }
}
