//! Groups: the list from the gateway's store, everything else live.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use wagate_domain::{
    Capability, Clock, DomainError, Group, GroupJid, GroupSubject, InviteCode, Jid,
    MAX_PARTICIPANTS, MembershipRequest, ParticipantAction, ParticipantOutcome, Principal,
    RequestAction, SessionId,
};
use wagate_store::{GroupPage, GroupStore};
use wagate_whatsapp_port::{GroupChange, WhatsAppError, WhatsAppPort};

use crate::{AppError, Gateway};

/// Groups a page of `GET /groups` holds when the caller does not say.
pub const DEFAULT_GROUP_PAGE: u32 = 100;
/// The most groups one page may hold.
pub const MAX_GROUP_PAGE: u32 = 500;

const GROUP_NOT_FOUND: &str = "group not found";

/// What `POST /groups/join` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Joined {
    /// The account is a member now.
    Member(Group),
    /// The group needs an admin's approval: the account asked to join.
    Requested(GroupJid),
}

/// Reads the groups an account is in from WhatsApp into the gateway's
/// store: on every connect (notices keep the store current in between).
#[derive(Debug)]
pub struct GroupRefresh {
    whatsapp: Arc<dyn WhatsAppPort>,
    groups: Arc<dyn GroupStore>,
    clock: Arc<dyn Clock>,
    timeout: Duration,
}

impl GroupRefresh {
    /// Replaces `session`'s stored groups by what WhatsApp lists; how many.
    ///
    /// # Errors
    ///
    /// `Timeout`, `Unavailable`, `NotConnected` or `Internal` from WhatsApp
    /// or the store (nothing is changed then).
    pub async fn refresh(&self, session: &SessionId) -> Result<usize, AppError> {
        // Listing thousands of groups takes WhatsApp a while: four request
        // deadlines.
        let groups = tokio::time::timeout(self.timeout * 4, self.whatsapp.groups(session))
            .await
            .map_err(|_| AppError::Timeout)?
            .map_err(|e| AppError::Unavailable(e.to_string()))?;
        self.groups
            .replace_groups(session, &groups, self.clock.now())
            .await?;
        Ok(groups.len())
    }

    /// [`GroupRefresh::refresh`] on a task of its own (the adapter's event
    /// must not wait for WhatsApp to list the groups); failures are logged.
    pub fn start(self: &Arc<Self>, session: SessionId) {
        let this = self.clone();
        tokio::spawn(async move {
            match this.refresh(&session).await {
                Ok(n) => tracing::debug!(session = %session, groups = n, "groups refreshed"),
                Err(e) => {
                    tracing::warn!(session = %session, error = %e, "could not refresh the groups")
                }
            }
        });
    }
}

/// The persons of a participant list: deduplicated, 1 to
/// [`MAX_PARTICIPANTS`] (0 allowed when `may_be_empty`).
fn persons(participants: Vec<Jid>, may_be_empty: bool) -> Result<Vec<Jid>, AppError> {
    if participants.len() > MAX_PARTICIPANTS || (!may_be_empty && participants.is_empty()) {
        return Err(DomainError::new(
            "participants",
            format!(
                "must list {} to {MAX_PARTICIPANTS} participants",
                u8::from(!may_be_empty)
            ),
        )
        .into());
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(participants.len());
    for p in participants {
        if !p.kind().is_person() {
            return Err(DomainError::new(
                "participants",
                format!("{p} is not a person's JID (phone number or LID)"),
            )
            .into());
        }
        if seen.insert(p.clone()) {
            out.push(p);
        }
    }
    Ok(out)
}

impl Gateway {
    /// What reads the groups of a session on connect (give it to the
    /// [`crate::SessionEventRecorder`]).
    pub fn group_refresh(&self) -> Arc<GroupRefresh> {
        Arc::new(GroupRefresh {
            whatsapp: self.deps.whatsapp.clone(),
            groups: self.deps.groups.clone(),
            clock: self.deps.clock.clone(),
            timeout: self.deps.request_timeout,
        })
    }

    /// A page of the groups the session's account is in, by JID, from the
    /// gateway's store (answered whether or not the session is connected).
    ///
    /// # Errors
    ///
    /// `Forbidden` without `read`; `InvalidArgument` for a `limit` outside
    /// 1 to [`MAX_GROUP_PAGE`]; `NotFound` (session); `Unavailable`.
    pub async fn list_groups(
        &self,
        p: &Principal,
        id: &SessionId,
        after: Option<&GroupJid>,
        limit: Option<u32>,
    ) -> Result<GroupPage, AppError> {
        Self::require(p, Capability::Read)?;
        let limit = limit.unwrap_or(DEFAULT_GROUP_PAGE);
        if !(1..=MAX_GROUP_PAGE).contains(&limit) {
            return Err(DomainError::new("limit", format!("must be 1 to {MAX_GROUP_PAGE}")).into());
        }
        self.deps
            .groups
            .list_groups(&p.org, id, after, limit)
            .await?
            .ok_or_else(AppError::session_not_found)
    }

    /// A group as WhatsApp has it now (stored too, so the list follows).
    ///
    /// # Errors
    ///
    /// `Forbidden` without `read`; `NotFound` (session, or a group the
    /// account is not in); `NotConnected`; `Timeout`; `Unavailable`.
    pub async fn group(
        &self,
        p: &Principal,
        id: &SessionId,
        jid: &GroupJid,
    ) -> Result<Group, AppError> {
        let group = self
            .live(p, Capability::Read, id, GROUP_NOT_FOUND, || {
                self.deps.whatsapp.group(id, jid)
            })
            .await?;
        self.deps.groups.put_group(id, &group, self.now()).await?;
        Ok(group)
    }

    /// Creates a group with the account as its superadmin; the group and
    /// each participant's outcome.
    ///
    /// # Errors
    ///
    /// `Forbidden` without `send`; `InvalidArgument` for a participant who
    /// is not a person or more than [`MAX_PARTICIPANTS`]; as
    /// [`Gateway::group`] otherwise.
    pub async fn create_group(
        &self,
        p: &Principal,
        id: &SessionId,
        subject: &GroupSubject,
        participants: Vec<Jid>,
    ) -> Result<(Group, Vec<ParticipantOutcome>), AppError> {
        Self::require(p, Capability::Send)?;
        let participants = persons(participants, true)?;
        let (group, outcomes) = self
            .live(p, Capability::Send, id, GROUP_NOT_FOUND, || {
                self.deps.whatsapp.create_group(id, subject, &participants)
            })
            .await?;
        tracing::info!(session = %id, group = %group.jid, "group created");
        Ok((group, outcomes))
    }

    /// Changes a group's subject, description and settings; the group after.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` when `change` changes nothing; `Conflict` when
    /// only admins may and the account is not one; as
    /// [`Gateway::create_group`] otherwise.
    pub async fn update_group(
        &self,
        p: &Principal,
        id: &SessionId,
        jid: &GroupJid,
        change: &GroupChange,
    ) -> Result<Group, AppError> {
        Self::require(p, Capability::Send)?;
        if change.is_empty() {
            return Err(DomainError::new(
                "body",
                "name at least one of subject, description, settings",
            )
            .into());
        }
        let group = self
            .live(p, Capability::Send, id, GROUP_NOT_FOUND, || async {
                self.deps.whatsapp.update_group(id, jid, change).await?;
                self.deps.whatsapp.group(id, jid).await
            })
            .await?;
        self.deps.groups.put_group(id, &group, self.now()).await?;
        Ok(group)
    }

    /// Adds, removes, promotes or demotes participants; each one's outcome.
    ///
    /// # Errors
    ///
    /// As [`Gateway::update_group`]; `InvalidArgument` for an empty list.
    pub async fn change_participants(
        &self,
        p: &Principal,
        id: &SessionId,
        jid: &GroupJid,
        action: ParticipantAction,
        participants: Vec<Jid>,
    ) -> Result<Vec<ParticipantOutcome>, AppError> {
        Self::require(p, Capability::Send)?;
        let participants = persons(participants, false)?;
        self.live(p, Capability::Send, id, GROUP_NOT_FOUND, || {
            self.deps
                .whatsapp
                .change_participants(id, jid, action, &participants)
        })
        .await
    }

    /// The group's invite code; with `revoke`, a new one replacing it.
    ///
    /// # Errors
    ///
    /// As [`Gateway::update_group`].
    pub async fn invite_code(
        &self,
        p: &Principal,
        id: &SessionId,
        jid: &GroupJid,
        revoke: bool,
    ) -> Result<InviteCode, AppError> {
        self.live(p, Capability::Send, id, GROUP_NOT_FOUND, || {
            self.deps.whatsapp.invite_code(id, jid, revoke)
        })
        .await
    }

    /// Joins the group of an invite code.
    ///
    /// # Errors
    ///
    /// `NotFound` for an unknown or revoked code; as
    /// [`Gateway::create_group`] otherwise.
    pub async fn join_group(
        &self,
        p: &Principal,
        id: &SessionId,
        code: &InviteCode,
    ) -> Result<Joined, AppError> {
        self.live(p, Capability::Send, id, "invite code not found", || async {
            let jid = self.deps.whatsapp.join_group(id, code).await?;
            match self.deps.whatsapp.group(id, &jid).await {
                Ok(group) => Ok(Joined::Member(group)),
                // Not a member yet: the group wants an admin's approval.
                Err(WhatsAppError::NotFound(_)) => Ok(Joined::Requested(jid)),
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// Leaves a group.
    ///
    /// # Errors
    ///
    /// As [`Gateway::group`], with `send`.
    pub async fn leave_group(
        &self,
        p: &Principal,
        id: &SessionId,
        jid: &GroupJid,
    ) -> Result<(), AppError> {
        self.live(p, Capability::Send, id, GROUP_NOT_FOUND, || {
            self.deps.whatsapp.leave_group(id, jid)
        })
        .await?;
        tracing::info!(session = %id, group = %jid, "left group");
        Ok(())
    }

    /// Who asks to join the group.
    ///
    /// # Errors
    ///
    /// As [`Gateway::update_group`].
    pub async fn membership_requests(
        &self,
        p: &Principal,
        id: &SessionId,
        jid: &GroupJid,
    ) -> Result<Vec<MembershipRequest>, AppError> {
        self.live(p, Capability::Send, id, GROUP_NOT_FOUND, || {
            self.deps.whatsapp.membership_requests(id, jid)
        })
        .await
    }

    /// Approves or rejects requests to join; each one's outcome.
    ///
    /// # Errors
    ///
    /// As [`Gateway::change_participants`].
    pub async fn answer_requests(
        &self,
        p: &Principal,
        id: &SessionId,
        jid: &GroupJid,
        action: RequestAction,
        participants: Vec<Jid>,
    ) -> Result<Vec<ParticipantOutcome>, AppError> {
        Self::require(p, Capability::Send)?;
        let participants = persons(participants, false)?;
        self.live(p, Capability::Send, id, GROUP_NOT_FOUND, || {
            self.deps
                .whatsapp
                .answer_requests(id, jid, action, &participants)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid(s: &str) -> Jid {
        Jid::parse(s).unwrap()
    }

    #[test]
    fn participant_lists_are_persons_deduplicated_and_bounded() {
        let a = jid("14155550123@s.whatsapp.net");
        assert_eq!(
            persons(vec![a.clone(), jid("14155550123:3@s.whatsapp.net")], false).unwrap(),
            vec![a.clone()]
        );
        assert!(persons(Vec::new(), false).is_err());
        assert!(persons(Vec::new(), true).unwrap().is_empty());
        assert!(persons(vec![jid("120363025246125486@g.us")], true).is_err());
        let many: Vec<Jid> = (0..=MAX_PARTICIPANTS)
            .map(|n| jid(&format!("1415555{n:05}@s.whatsapp.net")))
            .collect();
        assert!(matches!(
            persons(many, true),
            Err(AppError::InvalidArgument(e)) if e.field == "participants"
        ));
    }
}
