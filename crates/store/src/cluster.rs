//! Several gateway processes on one database: the node registry and the
//! session leases ([`NodeLeases`]), and the [`Fence`] every session write
//! of this process is checked against.
//!
//! On PostgreSQL ([`PgLeases`](crate::PgLeases)) a node is a process (a
//! new [`NodeId`] per start) with a lease on the database's clock, renewed
//! by its heartbeat; a session has at most one owner, and an `epoch`
//! bumped by every claim. SQLite has one process and no leases.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use time::OffsetDateTime;
use wagate_domain::{NodeId, Session, SessionId};

use crate::StoreError;

/// One live gateway node, as `wagate cluster status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// The node (one process start).
    pub id: NodeId,
    /// How the other nodes reach it (`cluster.advertise_url`).
    pub advertise_url: String,
    /// When it started.
    pub started_at: OffsetDateTime,
    /// Its last heartbeat (the database's clock).
    pub heartbeat_at: OffsetDateTime,
    /// Whether it is stopping (it claims nothing and gives its sessions away).
    pub draining: bool,
    /// How many sessions it owns.
    pub sessions: u64,
}

/// A session this node claimed, with the epoch its writes name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The session's row as it was when claimed.
    pub session: Session,
    /// The claim's epoch.
    pub epoch: u64,
}

/// A session this node owns (for rebalancing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owned {
    /// The session.
    pub session: SessionId,
    /// The epoch held.
    pub epoch: u64,
    /// Whether it is pairing or not linked yet (a session is never moved
    /// then: its QR code or pairing code is on this node).
    pub pairing: bool,
}

/// Who owns a session now ([`NodeLeases::owner`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseOwner {
    /// No such session.
    NoSession,
    /// A live node owns it.
    Live {
        /// The node.
        node: NodeId,
        /// How the others reach it.
        advertise_url: String,
        /// The owner's epoch.
        epoch: u64,
    },
    /// Nobody live owns it.
    Unowned,
}

/// The node registry and the session leases of one node.
#[async_trait]
pub trait NodeLeases: Send + Sync + std::fmt::Debug {
    /// This node.
    fn node(&self) -> NodeId;

    /// The fence this node's session writes are checked against.
    fn fence(&self) -> &Fence;

    /// Who owns `session` now.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`]; [`StoreError::Corrupt`].
    async fn owner(&self, session: &SessionId) -> Result<LeaseOwner, StoreError>;

    /// Registers this node, or renews its lease (`cluster.lease_secs` from
    /// now, on the database's clock), with whether it is draining. Runs on
    /// a connection of its own, so a busy pool never delays it.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the database does not answer.
    async fn heartbeat(&self, draining: bool) -> Result<(), StoreError>;

    /// The live nodes (lease not run out), oldest first, with how many
    /// sessions each owns.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`]; [`StoreError::Corrupt`].
    async fn live_nodes(&self) -> Result<Vec<NodeStatus>, StoreError>;

    /// Up to `limit` sessions that want a running client (to keep
    /// connected, or with a pending logout or delete) and have no live
    /// owner, oldest first.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`]; [`StoreError::Corrupt`].
    async fn unowned(&self, limit: u32) -> Result<Vec<SessionId>, StoreError>;

    /// Claims those of `sessions` that still have no live owner (a row
    /// another node is claiming or writing at that moment is skipped), each
    /// with a new epoch, and holds them in the [`Fence`]. Claiming nothing
    /// while [`Fence::may_claim`] is off.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`]; [`StoreError::Corrupt`].
    async fn claim(&self, sessions: &[SessionId]) -> Result<Vec<Claim>, StoreError>;

    /// The sessions this node owns in the database.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`]; [`StoreError::Corrupt`].
    async fn owned(&self) -> Result<Vec<Owned>, StoreError>;

    /// Gives `session` up if this node still owns it at `epoch` (and
    /// forgets it in the [`Fence`]); whether it did.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    async fn release(&self, session: &SessionId, epoch: u64) -> Result<bool, StoreError>;

    /// Gives up every session the database says this node owns (after a
    /// self-fence: they are claimed again with new epochs); how many.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    async fn release_all(&self) -> Result<u64, StoreError>;

    /// Ends this node's lease now (it is no longer live) and releases what
    /// it still owns.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    async fn leave(&self) -> Result<(), StoreError>;
}

/// What this process holds: the epoch of each session it owns. Every
/// write the WhatsApp side makes for a session names it, and the store
/// refuses ([`StoreError::Fenced`]) a write whose epoch is no longer the
/// session's: another node claimed it since.
#[derive(Debug)]
pub struct Fence {
    node: NodeId,
    held: Mutex<HashMap<SessionId, u64>>,
    may_claim: AtomicBool,
    refused: AtomicU64,
    self_fences: AtomicU64,
}

impl Fence {
    /// The fence of `node`, holding nothing, allowed to claim.
    pub fn new(node: NodeId) -> Self {
        Self {
            node,
            held: Mutex::default(),
            may_claim: AtomicBool::new(true),
            refused: AtomicU64::new(0),
            self_fences: AtomicU64::new(0),
        }
    }

    /// The node.
    pub fn node(&self) -> NodeId {
        self.node
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, u64>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The epoch held for `session`, if any.
    pub fn epoch(&self, session: &SessionId) -> Option<u64> {
        self.held().get(session).copied()
    }

    /// Holds `session` at `epoch`.
    pub fn hold(&self, session: SessionId, epoch: u64) {
        self.held().insert(session, epoch);
    }

    /// Forgets `session` if held at `epoch` (`None`: whatever epoch);
    /// whether it was.
    pub fn forget(&self, session: &SessionId, epoch: Option<u64>) -> bool {
        let mut held = self.held();
        match (held.get(session), epoch) {
            (Some(e), Some(want)) if *e != want => false,
            (Some(_), _) => {
                held.remove(session);
                true
            }
            (None, _) => false,
        }
    }

    /// Forgets everything held; what was.
    pub fn forget_all(&self) -> Vec<SessionId> {
        self.held().drain().map(|(s, _)| s).collect()
    }

    /// Every session held, with its epoch.
    pub fn held_all(&self) -> Vec<(SessionId, u64)> {
        self.held().iter().map(|(s, e)| (*s, *e)).collect()
    }

    /// How many sessions are held.
    pub fn len(&self) -> usize {
        self.held().len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether this node may take sessions now (not draining, not
    /// self-fenced).
    pub fn may_claim(&self) -> bool {
        self.may_claim.load(Ordering::SeqCst)
    }

    /// Allows or stops claims.
    pub fn set_may_claim(&self, may: bool) {
        self.may_claim.store(may, Ordering::SeqCst);
    }

    /// Counts one write refused because the session was lost.
    pub fn count_refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Writes refused so far because their session was lost.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Counts one self-fence (every client stopped: the lease could not
    /// be renewed in time).
    pub fn count_self_fence(&self) {
        self.self_fences.fetch_add(1, Ordering::Relaxed);
    }

    /// Self-fences so far.
    pub fn self_fences(&self) -> u64 {
        self.self_fences.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use ulid::Ulid;

    use super::*;

    #[test]
    fn a_fence_forgets_only_the_epoch_it_holds() {
        let fence = Fence::new(NodeId::from_ulid(Ulid::new()));
        let s = SessionId::from_ulid(Ulid::new());
        fence.hold(s, 3);
        assert!(
            !fence.forget(&s, Some(2)),
            "an older epoch is not this claim"
        );
        assert_eq!(fence.epoch(&s), Some(3));
        assert!(fence.forget(&s, Some(3)));
        assert_eq!(fence.epoch(&s), None);
        fence.hold(s, 4);
        assert_eq!(fence.forget_all(), vec![s]);
        assert!(fence.is_empty());
    }
}
