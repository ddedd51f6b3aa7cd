//! The group store: the groups each session's account is in, as the
//! gateway last heard of them (so `GET /groups` answers from the database,
//! fast, with thousands of groups).

use async_trait::async_trait;
use time::OffsetDateTime;
use wagate_domain::{Group, GroupJid, GroupNotice, OrgId, SessionId};

use crate::StoreError;

/// One page of a session's groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPage {
    /// By JID.
    pub items: Vec<Group>,
    /// Pass as `after` for the next page; `None` on the last.
    pub next: Option<GroupJid>,
}

/// The groups of every session. Reads a request reaches take the caller's
/// organization; another organization's groups do not exist.
#[async_trait]
pub trait GroupStore: Send + Sync + std::fmt::Debug {
    /// Applies what WhatsApp notified (`Joined`: the group stored whole;
    /// `Left`: forgotten; `Participants`, `Updated`: the stored group
    /// changed, when there is one) and records its `group.*` event, in one
    /// transaction. Whether the session exists.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`]: neither was written.
    async fn record_group_notice(
        &self,
        session: &SessionId,
        notice: &GroupNotice,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    /// Replaces the session's groups by `groups` (what WhatsApp says the
    /// account is in, read on connect). No events: they report what
    /// WhatsApp notified.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`]: nothing was changed.
    async fn replace_groups(
        &self,
        session: &SessionId,
        groups: &[Group],
        now: OffsetDateTime,
    ) -> Result<(), StoreError>;

    /// Stores one group as just read from WhatsApp (no event).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    async fn put_group(
        &self,
        session: &SessionId,
        group: &Group,
        now: OffsetDateTime,
    ) -> Result<(), StoreError>;

    /// Up to `limit` groups of `org`'s session after `after`, by JID;
    /// `None` when the session is not `org`'s.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`]; [`StoreError::Corrupt`].
    async fn list_groups(
        &self,
        org: &OrgId,
        session: &SessionId,
        after: Option<&GroupJid>,
        limit: u32,
    ) -> Result<Option<GroupPage>, StoreError>;

    /// Group `jid` of `org`'s session as stored, or `None`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`]; [`StoreError::Corrupt`].
    async fn get_group(
        &self,
        org: &OrgId,
        session: &SessionId,
        jid: &GroupJid,
    ) -> Result<Option<Group>, StoreError>;
}
