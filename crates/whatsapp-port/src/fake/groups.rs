//! Groups in the fake world.
//!
//! The fixtures' `groups` (see [`BUILTIN_FAKE_GROUPS`]) are copied into
//! each session the first time it is online, so every session has its own
//! groups to change. In a group the account is named by the JID it is
//! linked as. What WhatsApp would notify (the account added, removed, a
//! member promoted, a subject changed …) is published as a
//! [`SessionEventKind::Group`] before the call that caused it returns.

use std::collections::BTreeMap;

use serde::Deserialize;
use std::sync::atomic::Ordering;
use time::OffsetDateTime;

use wagate_domain::{
    Group, GroupJid, GroupNotice, GroupParticipant, GroupRole, GroupSettings, GroupSubject,
    InviteCode, Jid, MembershipRequest, MessageId, MessageStatus, ParticipantAction,
    ParticipantOutcome, ParticipantStatus, Recipient, RequestAction, SessionId,
};

use super::{FakeSession, FakeWhatsApp, Fixtures, FixturesError, digest, lock};
use crate::{GroupChange, SessionEventKind, WhatsAppError};

/// The groups [`Fixtures::builtin`] adds to the built-in world (the
/// simulator has its own, made through its admin API):
/// - `120363025246125486@g.us` "Wagate Team": the account is an admin;
///   Alice (`14155550123`, its creator) is the superadmin, `14155550142`
///   and `14155550199` are members; `14155550177` asks to join.
/// - `120363000000000002@g.us` "Announcements": the account is a member
///   of a locked announcement group (so its changes are refused).
/// - `120363000000000003@g.us` "Open Community": the account is not in it;
///   it joins with the invite code `WagateOpenInvite1`.
pub const BUILTIN_FAKE_GROUPS: &str = r#"{
  "120363025246125486@g.us": {
    "subject": "Wagate Team", "description": "Where the team talks",
    "owner": "14155550123@s.whatsapp.net", "createdAt": "2024-01-01T00:00:00Z",
    "me": "admin",
    "participants": {
      "14155550123@s.whatsapp.net": "superadmin",
      "14155550142@s.whatsapp.net": "member",
      "14155550199@s.whatsapp.net": "member"
    },
    "settings": { "approval": true },
    "requests": ["14155550177@s.whatsapp.net"]
  },
  "120363000000000002@g.us": {
    "subject": "Announcements", "owner": "14155550123@s.whatsapp.net",
    "me": "member",
    "participants": { "14155550123@s.whatsapp.net": "superadmin" },
    "settings": { "announce": true, "locked": true }
  },
  "120363000000000003@g.us": {
    "subject": "Open Community", "owner": "14155550199@s.whatsapp.net",
    "participants": { "14155550199@s.whatsapp.net": "superadmin" },
    "invite": "WagateOpenInvite1"
  }
}"#;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SettingsFixture {
    #[serde(default)]
    announce: bool,
    #[serde(default)]
    locked: bool,
    #[serde(default)]
    approval: bool,
}

/// One group of the fake world (the `groups` of a fixtures file).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct GroupFixture {
    subject: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    owner: Option<Jid>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    created_at: Option<OffsetDateTime>,
    /// The account's role; absent: the account is not in the group.
    #[serde(default)]
    me: Option<String>,
    /// Members other than the account, by phone-number JID, with roles.
    #[serde(default)]
    participants: BTreeMap<String, String>,
    #[serde(default)]
    settings: SettingsFixture,
    /// Its invite code (else one is made up).
    #[serde(default)]
    invite: Option<String>,
    /// Who asks to join.
    #[serde(default)]
    requests: Vec<Jid>,
}

/// A group of the world as parsed from its fixture.
#[derive(Debug, Clone)]
pub(super) struct WorldGroup {
    group: Group,
    me: Option<GroupRole>,
    invite: Option<InviteCode>,
    requests: Vec<Jid>,
}

/// Parses the `groups` of a fixtures file against its contacts.
pub(super) fn parse_groups(
    groups: BTreeMap<String, GroupFixture>,
    world: &Fixtures,
) -> Result<Vec<WorldGroup>, FixturesError> {
    let invalid =
        |key: &str, what: String| FixturesError::Invalid(format!("group '{key}': {what}"));
    let role = |key: &str, r: &str| {
        GroupRole::from_name(r).ok_or_else(|| invalid(key, format!("unknown role '{r}'")))
    };
    let mut out = Vec::new();
    for (key, g) in groups {
        let jid = GroupJid::parse(&key, "jid").map_err(|e| invalid(&key, e.message))?;
        let mut participants = Vec::new();
        for (member, r) in &g.participants {
            let member = Jid::parse(member).map_err(|e| invalid(&key, e.message))?;
            participants.push(world.participant(&member, role(&key, r)?));
        }
        let me = g.me.as_deref().map(|r| role(&key, r)).transpose()?;
        let invite = g
            .invite
            .as_deref()
            .map(InviteCode::parse)
            .transpose()
            .map_err(|e| invalid(&key, e.message))?;
        out.push(WorldGroup {
            group: Group {
                jid,
                subject: g.subject,
                description: g.description,
                owner: g.owner,
                created_at: g.created_at,
                participants,
                settings: GroupSettings {
                    announce: g.settings.announce,
                    locked: g.settings.locked,
                    approval: g.settings.approval,
                },
            },
            me,
            invite,
            requests: g.requests,
        });
    }
    Ok(out)
}

/// A group as one session sees it.
#[derive(Debug, Clone)]
pub(super) struct FakeGroup {
    group: Group,
    /// The account is a member.
    member: bool,
    invite: InviteCode,
    /// Bumped at each revoke, so each new code differs.
    invites_made: u32,
    requests: Vec<Jid>,
}

impl FakeGroup {
    /// `who` is an admin of the group; else WhatsApp's refusal, `why`.
    fn admin(&self, who: &Jid, why: &str) -> Result<(), WhatsAppError> {
        if self
            .group
            .participant(who)
            .is_some_and(|p| p.role.is_admin())
        {
            Ok(())
        } else {
            Err(WhatsAppError::NotPermitted(why.to_owned()))
        }
    }
}

impl Fixtures {
    /// A member of a group: `jid` with the number and LID the world knows.
    pub(super) fn participant(&self, jid: &Jid, role: GroupRole) -> GroupParticipant {
        let (lid, pn) = self.identities(jid);
        GroupParticipant {
            jid: pn.clone().unwrap_or_else(|| jid.clone()),
            pn,
            lid,
            role,
        }
    }
}

fn invite_for(session: &SessionId, group: &GroupJid, n: u32) -> InviteCode {
    const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let seed = digest(&[
        session.to_string().as_bytes(),
        group.to_string().as_bytes(),
        &n.to_be_bytes(),
    ]);
    let code: String = seed
        .iter()
        .take(22)
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect();
    // 22 letters and digits always parse.
    InviteCode::parse(&code).unwrap_or_else(|_| unreachable!("a made-up invite code"))
}

fn me_participant(me: &Jid, role: GroupRole) -> GroupParticipant {
    GroupParticipant {
        jid: me.clone(),
        pn: Some(me.clone()),
        lid: None,
        role,
    }
}

/// Seeds a session's groups from the world, once (the first time it is
/// online as `me`).
pub(super) fn seed(world: &Fixtures, session: &SessionId, s: &mut FakeSession, me: &Jid) {
    if s.groups.is_some() {
        return;
    }
    let mut groups = BTreeMap::new();
    for w in &world.groups {
        let mut group = w.group.clone();
        if let Some(role) = w.me {
            group.participants.push(me_participant(me, role));
        }
        let invite = w
            .invite
            .clone()
            .unwrap_or_else(|| invite_for(session, &group.jid, 0));
        groups.insert(
            group.jid.to_string(),
            FakeGroup {
                group,
                member: w.me.is_some(),
                invite,
                invites_made: 0,
                requests: w.requests.clone(),
            },
        );
    }
    s.groups = Some(groups);
}

/// What the account may do in a group, checked on the session's copy.
enum Need {
    /// Any member.
    Member,
    /// An admin.
    Admin,
}

impl FakeWhatsApp {
    /// Runs `f` on `session`'s group `group` (the session online, the
    /// account a member, and an admin when `need` says so); then publishes
    /// the notices it returns.
    async fn in_group<T>(
        &self,
        session: &SessionId,
        group: &GroupJid,
        need: Need,
        f: impl FnOnce(&mut FakeGroup, &Jid, &Fixtures) -> Result<(T, Vec<GroupNotice>), WhatsAppError>,
    ) -> Result<T, WhatsAppError> {
        self.live(session, None)?;
        let (value, notices) = {
            let mut sessions = self.sessions();
            let s = sessions
                .get_mut(session)
                .ok_or(WhatsAppError::NotConnected)?;
            let me = s.linked_as.clone().ok_or(WhatsAppError::NotConnected)?;
            let g = s
                .groups
                .as_mut()
                .and_then(|gs| gs.get_mut(&group.to_string()))
                .filter(|g| g.member)
                .ok_or(WhatsAppError::NotFound(None))?;
            if matches!(need, Need::Admin) {
                g.admin(&me, "only the group's admins may do this")?;
            }
            f(g, &me, &self.world)?
        };
        self.notify(session, notices).await;
        Ok(value)
    }

    async fn notify(&self, session: &SessionId, notices: Vec<GroupNotice>) {
        for n in notices {
            self.publish(session, SessionEventKind::Group(n)).await;
        }
    }

    /// The groups the account of `session` is in.
    pub(super) fn member_groups(&self, session: &SessionId) -> Result<Vec<Group>, WhatsAppError> {
        self.live(session, None)?;
        Ok(self
            .sessions()
            .get(session)
            .and_then(|s| s.groups.as_ref())
            .map(|gs| {
                gs.values()
                    .filter(|g| g.member)
                    .map(|g| g.group.clone())
                    .collect()
            })
            .unwrap_or_default())
    }

    pub(super) async fn group_now(
        &self,
        session: &SessionId,
        group: &GroupJid,
    ) -> Result<Group, WhatsAppError> {
        self.in_group(session, group, Need::Member, |g, _, _| {
            Ok((g.group.clone(), Vec::new()))
        })
        .await
    }

    pub(super) async fn create(
        &self,
        session: &SessionId,
        subject: &GroupSubject,
        participants: &[Jid],
        creator: Option<&Jid>,
    ) -> Result<(Group, Vec<ParticipantOutcome>), WhatsAppError> {
        self.live(session, None)?;
        let count = {
            let mut n = lock(&self.written);
            *n += 1;
            *n
        };
        let seed = digest(&[
            b"group",
            session.to_string().as_bytes(),
            &count.to_be_bytes(),
        ]);
        let digits: String = seed
            .iter()
            .take(11)
            .map(|b| char::from(b'0' + b % 10))
            .collect();
        let jid = GroupJid::parse(&format!("1203630{digits}@g.us"), "jid")
            .map_err(|e| WhatsAppError::Internal(e.message))?;
        let (group, outcomes) = {
            let mut sessions = self.sessions();
            let s = sessions
                .get_mut(session)
                .ok_or(WhatsAppError::NotConnected)?;
            let me = s.linked_as.clone().ok_or(WhatsAppError::NotConnected)?;
            let mut group = Group {
                jid: jid.clone(),
                subject: subject.as_str().to_owned(),
                description: None,
                owner: Some(creator.cloned().unwrap_or_else(|| me.clone())),
                created_at: Some(self.clock.now()),
                participants: Vec::new(),
                settings: GroupSettings::default(),
            };
            match creator {
                None => group
                    .participants
                    .push(me_participant(&me, GroupRole::Superadmin)),
                Some(c) => group
                    .participants
                    .push(self.world.participant(c, GroupRole::Superadmin)),
            }
            let mut outcomes = Vec::new();
            for p in participants {
                let status = if creator.is_some() && *p == me {
                    group
                        .participants
                        .push(me_participant(&me, GroupRole::Member));
                    ParticipantStatus::Done
                } else {
                    add_one(&mut group, p, &self.world)
                };
                outcomes.push(ParticipantOutcome {
                    jid: p.clone(),
                    status,
                });
            }
            let member = group.participant(&me).is_some();
            let invite = invite_for(session, &jid, 0);
            s.groups.get_or_insert_with(BTreeMap::new).insert(
                jid.to_string(),
                FakeGroup {
                    group: group.clone(),
                    member,
                    invite,
                    invites_made: 0,
                    requests: Vec::new(),
                },
            );
            if !member {
                return Err(WhatsAppError::NotFound(None));
            }
            (group, outcomes)
        };
        self.notify(
            session,
            vec![GroupNotice::Joined {
                group: Box::new(group.clone()),
                by: creator.cloned(),
            }],
        )
        .await;
        Ok((group, outcomes))
    }

    pub(super) async fn update(
        &self,
        session: &SessionId,
        group: &GroupJid,
        change: &GroupChange,
    ) -> Result<(), WhatsAppError> {
        let locked = self
            .group_now(session, group)
            .await
            .map(|g| g.settings.locked)?;
        // Settings are for admins; subject and description too once locked.
        let need = if locked || !change.settings.is_empty() {
            Need::Admin
        } else {
            Need::Member
        };
        self.in_group(session, group, need, |g, me, _| {
            let mut notice = (None, None, None);
            if let Some(subject) = &change.subject
                && subject.as_str() != g.group.subject
            {
                g.group.subject = subject.as_str().to_owned();
                notice.0 = Some(g.group.subject.clone());
            }
            if let Some(d) = &change.description {
                let d = (!d.as_str().is_empty()).then(|| d.as_str().to_owned());
                if d != g.group.description {
                    g.group.description.clone_from(&d);
                    notice.1 = Some(d);
                }
            }
            let settings = change.settings.apply(g.group.settings);
            if settings != g.group.settings {
                g.group.settings = settings;
                notice.2 = Some(settings);
            }
            let notices = match notice {
                (None, None, None) => Vec::new(),
                (subject, description, settings) => vec![GroupNotice::Updated {
                    group: g.group.jid.clone(),
                    subject,
                    description,
                    settings,
                    by: Some(me.clone()),
                }],
            };
            Ok(((), notices))
        })
        .await
    }

    pub(super) async fn participants(
        &self,
        session: &SessionId,
        group: &GroupJid,
        action: ParticipantAction,
        participants: &[Jid],
    ) -> Result<Vec<ParticipantOutcome>, WhatsAppError> {
        if matches!(action, ParticipantAction::Join | ParticipantAction::Leave) {
            return Err(WhatsAppError::InvalidTarget(
                "join and leave are not asked for on others".into(),
            ));
        }
        let mut left = false;
        let outcomes = self
            .in_group(session, group, Need::Admin, |g, me, world| {
                let (outcomes, notice) = change(g, action, participants, Some(me), world);
                left = g.group.participant(me).is_none();
                Ok((outcomes, notice.into_iter().collect()))
            })
            .await?;
        if left {
            self.left(session, group, None).await;
        }
        Ok(outcomes)
    }

    pub(super) async fn invite(
        &self,
        session: &SessionId,
        group: &GroupJid,
        revoke: bool,
    ) -> Result<InviteCode, WhatsAppError> {
        self.in_group(session, group, Need::Admin, |g, _, _| {
            if revoke {
                g.invites_made += 1;
                g.invite = invite_for(session, &g.group.jid, g.invites_made);
            }
            Ok((g.invite.clone(), Vec::new()))
        })
        .await
    }

    pub(super) async fn join(
        &self,
        session: &SessionId,
        code: &InviteCode,
    ) -> Result<GroupJid, WhatsAppError> {
        self.live(session, None)?;
        let (jid, notices) = {
            let mut sessions = self.sessions();
            let s = sessions
                .get_mut(session)
                .ok_or(WhatsAppError::NotConnected)?;
            let me = s.linked_as.clone().ok_or(WhatsAppError::NotConnected)?;
            let g = s
                .groups
                .as_mut()
                .and_then(|gs| gs.values_mut().find(|g| g.invite == *code))
                .ok_or(WhatsAppError::NotFound(None))?;
            let jid = g.group.jid.clone();
            if g.member {
                (jid, Vec::new())
            } else if g.group.settings.approval {
                if !g.requests.contains(&me) {
                    g.requests.push(me);
                }
                (jid, Vec::new())
            } else {
                g.member = true;
                g.group
                    .participants
                    .push(me_participant(&me, GroupRole::Member));
                let notice = GroupNotice::Joined {
                    group: Box::new(g.group.clone()),
                    by: None,
                };
                (jid, vec![notice])
            }
        };
        self.notify(session, notices).await;
        Ok(jid)
    }

    pub(super) async fn leave(
        &self,
        session: &SessionId,
        group: &GroupJid,
    ) -> Result<(), WhatsAppError> {
        self.in_group(session, group, Need::Member, |_, _, _| Ok(((), Vec::new())))
            .await?;
        self.left(session, group, None).await;
        Ok(())
    }

    /// The account is out of `group` (it left, or `by` removed it).
    async fn left(&self, session: &SessionId, group: &GroupJid, by: Option<Jid>) {
        {
            let mut sessions = self.sessions();
            if let Some(s) = sessions.get_mut(session)
                && let Some(me) = s.linked_as.clone()
                && let Some(g) = s
                    .groups
                    .as_mut()
                    .and_then(|gs| gs.get_mut(&group.to_string()))
            {
                g.member = false;
                g.group.participants.retain(|p| !p.is(&me));
            }
        }
        self.notify(
            session,
            vec![GroupNotice::Left {
                group: group.clone(),
                by,
            }],
        )
        .await;
    }

    pub(super) async fn requests(
        &self,
        session: &SessionId,
        group: &GroupJid,
    ) -> Result<Vec<MembershipRequest>, WhatsAppError> {
        self.in_group(session, group, Need::Admin, |g, _, world| {
            let list = g
                .requests
                .iter()
                .map(|j| MembershipRequest {
                    jid: j.clone(),
                    pn: world.identities(j).1,
                    requested_at: None,
                })
                .collect();
            Ok((list, Vec::new()))
        })
        .await
    }

    pub(super) async fn answer(
        &self,
        session: &SessionId,
        group: &GroupJid,
        action: RequestAction,
        participants: &[Jid],
    ) -> Result<Vec<ParticipantOutcome>, WhatsAppError> {
        self.in_group(session, group, Need::Admin, |g, me, world| {
            let mut outcomes = Vec::new();
            let mut approved = Vec::new();
            for p in participants {
                let status = match g.requests.iter().position(|r| r == p) {
                    None => ParticipantStatus::NotMember,
                    Some(i) => {
                        g.requests.remove(i);
                        if action == RequestAction::Approve {
                            let joined = world.participant(p, GroupRole::Member);
                            g.group.participants.push(joined.clone());
                            approved.push(joined);
                        }
                        ParticipantStatus::Done
                    }
                };
                outcomes.push(ParticipantOutcome {
                    jid: p.clone(),
                    status,
                });
            }
            let notices = if approved.is_empty() {
                Vec::new()
            } else {
                vec![GroupNotice::Participants {
                    group: g.group.jid.clone(),
                    action: ParticipantAction::Add,
                    participants: approved,
                    by: Some(me.clone()),
                }]
            };
            Ok((outcomes, notices))
        })
        .await
    }

    /// The world contact `creator` creates a group with `participants` (the
    /// account among them, by the JID `session` is linked as), as the
    /// simulator's `POST /admin/groups` does: the account is told it joined.
    ///
    /// # Errors
    ///
    /// [`WhatsAppError::NotConnected`] when `session` is offline;
    /// [`WhatsAppError::NotFound`] when the account is not among the
    /// participants.
    pub async fn contact_creates_group(
        &self,
        session: &SessionId,
        creator: &Jid,
        subject: &GroupSubject,
        participants: &[Jid],
    ) -> Result<GroupJid, WhatsAppError> {
        let (group, _) = self
            .create(session, subject, participants, Some(creator))
            .await?;
        Ok(group.jid)
    }

    /// The admin contact `by` adds, removes, promotes or demotes
    /// `participants` of `group` (the account among them, by the JID
    /// `session` is linked as), as the simulator's
    /// `POST /admin/groups/{jid}/participants` does: the account is told
    /// (`Joined` when it is added, `Left` when removed, `Participants`
    /// otherwise).
    ///
    /// # Errors
    ///
    /// [`WhatsAppError::NotConnected`] when `session` is offline;
    /// [`WhatsAppError::NotFound`] for a group the session does not know;
    /// [`WhatsAppError::NotPermitted`] when `by` is not an admin of it.
    pub async fn contact_changes_members(
        &self,
        session: &SessionId,
        group: &GroupJid,
        by: &Jid,
        action: ParticipantAction,
        participants: &[Jid],
    ) -> Result<(), WhatsAppError> {
        self.live(session, None)?;
        let (joined, left, notices) = {
            let mut sessions = self.sessions();
            let s = sessions
                .get_mut(session)
                .ok_or(WhatsAppError::NotConnected)?;
            let me = s.linked_as.clone().ok_or(WhatsAppError::NotConnected)?;
            let g = s
                .groups
                .as_mut()
                .and_then(|gs| gs.get_mut(&group.to_string()))
                .ok_or(WhatsAppError::NotFound(None))?;
            g.admin(by, &format!("{by} is not an admin of the group"))?;
            let was_member = g.member;
            let (_, notice) = change(g, action, participants, Some(by), &self.world);
            g.member = g.group.participant(&me).is_some();
            let joined = (!was_member && g.member).then(|| g.group.clone());
            let left = was_member && !g.member;
            // The account hears of others' changes only while a member.
            let notices: Vec<GroupNotice> = if joined.is_some() || !g.member {
                Vec::new()
            } else {
                notice.into_iter().collect()
            };
            (joined, left, notices)
        };
        if let Some(group) = joined {
            self.notify(
                session,
                vec![GroupNotice::Joined {
                    group: Box::new(group),
                    by: Some(by.clone()),
                }],
            )
            .await;
        }
        self.notify(session, notices).await;
        if left {
            self.left(session, group, Some(by.clone())).await;
        }
        Ok(())
    }
}

impl FakeWhatsApp {
    /// Sends `message` to its group: the account must be a member (and an
    /// admin in an announcement group). After the server's ack every other
    /// member's devices have it at once: each member sends its delivery
    /// receipt, and a member who reads what it gets (a contact with
    /// `readsAfterMs`) its read receipt, unless receipts are held
    /// ([`FakeWhatsApp::hold_group_receipts`]). The gateway makes the
    /// message's status of them.
    pub(super) async fn send_to_group(
        &self,
        session: &SessionId,
        message: &crate::OutgoingMessage,
    ) -> Result<(), WhatsAppError> {
        let group = GroupJid::from_jid(message.to.clone())
            .map_err(|e| WhatsAppError::InvalidTarget(e.message))?;
        let members = self
            .in_group(session, &group, Need::Member, |g, me, world| {
                if g.group.settings.announce {
                    g.admin(me, "only admins send to an announcement group")?;
                }
                let members: Vec<(Recipient, bool)> = g
                    .group
                    .participants
                    .iter()
                    .filter(|p| !p.is(me))
                    .map(|p| {
                        let reads = world
                            .contact(&p.jid)
                            .is_some_and(|c| c.reads_after_ms.is_some());
                        (Recipient::from_participant(p), reads)
                    })
                    .collect();
                Ok((members, Vec::new()))
            })
            .await
            .map_err(|e| match e {
                // WhatsApp refuses a group the account is not in for good.
                WhatsAppError::NotFound(_) => {
                    WhatsAppError::NotPermitted("the account is not a member of the group".into())
                }
                e => e,
            })?;
        let first = self
            .sessions()
            .get_mut(session)
            .is_some_and(|s| s.sent.insert(message.id.clone()));
        if first {
            self.act(
                session,
                super::FakeAction::Sent {
                    id: message.id.clone(),
                    to: message.to.clone(),
                },
            );
        }
        let chat = &message.to;
        self.status(session, chat, &message.id, MessageStatus::Sent)
            .await;
        if self.receipts_held.load(Ordering::SeqCst) {
            return Ok(());
        }
        let ids = std::slice::from_ref(&message.id);
        for (member, reads) in members {
            self.receipt(session, chat, ids, &member, MessageStatus::Delivered)
                .await;
            if reads {
                self.receipt(session, chat, ids, &member, MessageStatus::Read)
                    .await;
            }
        }
        Ok(())
    }

    /// With `held`, group members no longer send receipts of their own
    /// when the account sends to their group: a test sends each one with
    /// [`FakeWhatsApp::member_receipt`] (to see a group message's status
    /// wait for its last member).
    pub fn hold_group_receipts(&self, held: bool) {
        self.receipts_held.store(held, Ordering::SeqCst);
    }

    /// The member `member` of `group` (by number or LID) sends its receipt
    /// `status` (delivered, read or played) for the account's messages
    /// `ids` in the group, as WhatsApp hands it over: again when it was
    /// sent before (the gateway counts it once).
    ///
    /// # Errors
    ///
    /// [`WhatsAppError::NotConnected`] when `session` is offline;
    /// [`WhatsAppError::NotFound`] when `member` is not a member of a
    /// group the session is in; [`WhatsAppError::InvalidTarget`] for a
    /// status no receipt carries.
    pub async fn member_receipt(
        &self,
        session: &SessionId,
        group: &GroupJid,
        member: &Jid,
        ids: &[MessageId],
        status: MessageStatus,
    ) -> Result<(), WhatsAppError> {
        if !matches!(
            status,
            MessageStatus::Delivered | MessageStatus::Read | MessageStatus::Played
        ) {
            return Err(WhatsAppError::InvalidTarget(format!(
                "no receipt says {status}"
            )));
        }
        let who = self
            .in_group(session, group, Need::Member, |g, _, _| {
                let p = g
                    .group
                    .participant(member)
                    .ok_or(WhatsAppError::NotFound(None))?;
                Ok((Recipient::from_participant(p), Vec::new()))
            })
            .await?;
        self.receipt(session, group.as_jid(), ids, &who, status)
            .await;
        Ok(())
    }

    /// Publishes `member`'s receipt `status` of `ids` in the group `chat`.
    async fn receipt(
        &self,
        session: &SessionId,
        chat: &Jid,
        ids: &[MessageId],
        member: &Recipient,
        status: MessageStatus,
    ) {
        self.publish(
            session,
            SessionEventKind::MessageStatus(crate::StatusUpdate {
                ids: ids.to_vec(),
                chat: chat.clone(),
                participant: Some(member.clone()),
                status,
                at: self.clock.now(),
                error_code: None,
            }),
        )
        .await;
    }

    /// The member `from` (a world contact, by number or LID) posts
    /// `content` in `group`: a message whose chat is the group and whose
    /// sender is the member, handed to the gateway as
    /// [`FakeWhatsApp::deliver_from`] does (kept for the next connect while
    /// offline). Returns its id.
    ///
    /// # Errors
    ///
    /// As [`FakeWhatsApp::deliver_from`]; [`WhatsAppError::NotFound`] also
    /// when `from` is not a member of a group the session knows.
    pub async fn member_writes(
        &self,
        session: &SessionId,
        group: &GroupJid,
        from: &Jid,
        content: crate::OutgoingContent,
    ) -> Result<MessageId, WhatsAppError> {
        let member = self
            .sessions()
            .get(session)
            .and_then(|s| s.groups.as_ref()?.get(&group.to_string()).cloned())
            .and_then(|g| g.group.participant(from).cloned())
            .ok_or(WhatsAppError::NotFound(None))?;
        self.contact_writes(session, from, |seed| {
            let mut m = self.written_by(from, seed, content, None);
            m.chat = group.as_jid().clone();
            // As the group addresses the member (its LID in a LID group).
            m.sender = member.jid.clone();
            m.sender_pn = member.pn.clone().or(m.sender_pn);
            m.sender_lid = member.lid.clone().or(m.sender_lid);
            m
        })
        .await
    }
}

/// Adds `p` to `group` if the world lets it; the outcome.
fn add_one(group: &mut Group, p: &Jid, world: &Fixtures) -> ParticipantStatus {
    if group.participant(p).is_some() {
        return ParticipantStatus::AlreadyMember;
    }
    match world.contact(p) {
        None => ParticipantStatus::NotOnWhatsApp,
        Some(c) if c.invite_only => ParticipantStatus::InviteNeeded,
        Some(_) => {
            group
                .participants
                .push(world.participant(p, GroupRole::Member));
            ParticipantStatus::Done
        }
    }
}

/// Applies a membership change by `by`; the outcomes, and the notice of
/// what was done (none when nothing was).
fn change(
    g: &mut FakeGroup,
    action: ParticipantAction,
    participants: &[Jid],
    by: Option<&Jid>,
    world: &Fixtures,
) -> (Vec<ParticipantOutcome>, Option<GroupNotice>) {
    let mut outcomes = Vec::new();
    let mut done = Vec::new();
    for p in participants {
        let status = match action {
            ParticipantAction::Add | ParticipantAction::Join => add_one(&mut g.group, p, world),
            ParticipantAction::Remove | ParticipantAction::Leave => {
                match g.group.participants.iter().position(|m| m.is(p)) {
                    Some(i) => {
                        g.group.participants.remove(i);
                        ParticipantStatus::Done
                    }
                    None => ParticipantStatus::NotMember,
                }
            }
            ParticipantAction::Promote | ParticipantAction::Demote => {
                match g.group.participants.iter_mut().find(|m| m.is(p)) {
                    Some(m) => {
                        m.role = if action == ParticipantAction::Promote {
                            GroupRole::Admin
                        } else {
                            GroupRole::Member
                        };
                        ParticipantStatus::Done
                    }
                    None => ParticipantStatus::NotMember,
                }
            }
        };
        if status == ParticipantStatus::Done {
            let mut who = world.participant(p, GroupRole::Member);
            if let Some(m) = g.group.participant(p) {
                who.clone_from(m);
            }
            if action == ParticipantAction::Remove {
                who.role = GroupRole::Member;
            }
            done.push(who);
        }
        outcomes.push(ParticipantOutcome {
            jid: p.clone(),
            status,
        });
    }
    let notice = (!done.is_empty()).then(|| GroupNotice::Participants {
        group: g.group.jid.clone(),
        action,
        participants: done,
        by: by.cloned(),
    });
    (outcomes, notice)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_groups_parse_and_bad_ones_are_refused() {
        let world = Fixtures::builtin();
        assert_eq!(world.groups.len(), 3);
        let team = world
            .groups
            .iter()
            .find(|g| g.group.jid.to_string() == "120363025246125486@g.us")
            .unwrap();
        assert_eq!(team.me, Some(GroupRole::Admin));
        assert_eq!(team.group.participants.len(), 3);
        for bad in [
            r#"{"phone":"15550001111","groups":{"123@s.whatsapp.net":{"subject":"x"}}}"#,
            r#"{"phone":"15550001111","groups":{"120363000000000009@g.us":{"subject":"x","me":"king"}}}"#,
            r#"{"phone":"15550001111","groups":{"120363000000000009@g.us":{"subject":"x","invite":"no"}}}"#,
            r#"{"phone":"15550001111","groups":{"120363000000000009@g.us":{}}}"#,
        ] {
            assert!(
                matches!(Fixtures::from_json(bad), Err(FixturesError::Invalid(_))),
                "{bad}"
            );
        }
    }
}
