//! [`SessionClaims`]: with several gateways on one database, which
//! sessions this process may write for, so that an adapter keeping a
//! session's device state in the shared database makes every write
//! conditional on the claim it holds.

use wagate_domain::{NodeId, SessionId};

/// The claim this process holds on a session: its node and the epoch a
/// write names. The database refuses a write whose session has been
/// claimed since (another epoch) or is owned by another node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionClaim {
    /// This process.
    pub node: NodeId,
    /// The epoch of the claim.
    pub epoch: u64,
}

/// Which sessions this process holds (several gateways share the
/// database), and what to do when a write finds out one was lost.
pub trait SessionClaims: Send + Sync + std::fmt::Debug {
    /// The claim held on `session` now; `None` when this process holds
    /// none (lost, given away, or self-fenced): a write must not be made.
    fn claim(&self, session: &SessionId) -> Option<SessionClaim>;

    /// A write for `session` was refused (its claim is no longer the
    /// session's): counts it, forgets the claim and stops the session's
    /// client here at once. Returns at once (the stop runs on its own
    /// task: the client may be waiting on the refused write).
    fn lost(&self, session: &SessionId);
}
