//! Which gateway process serves a session's live calls: the port the HTTP
//! layer asks before it runs a call that needs the session's WhatsApp
//! client. On SQLite there is one process ([`SingleNode`]); on PostgreSQL
//! the session leases decide.

use async_trait::async_trait;
use wagate_domain::{NodeId, SessionId};

use crate::StoreError;

/// Where a session's live calls must run now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionOwner {
    /// This process owns the session: run the call here.
    Here,
    /// Another live process owns it: forward the call there.
    Node {
        /// The owner's id.
        id: NodeId,
        /// How other processes reach it (`cluster.advertise_url`), such as
        /// `http://10.0.0.5:8080`.
        advertise_url: String,
    },
    /// No live owner, and this process cannot take the session now
    /// (draining, or fenced): the caller should retry shortly.
    Nobody,
}

/// Decides where a session's live calls run.
#[async_trait]
pub trait SessionOwnership: Send + Sync + std::fmt::Debug {
    /// The node that must serve a live call (contacts, QR, pairing code,
    /// lifecycle, sending) for `session` now.
    ///
    /// May claim an unowned session for this node when this node may take
    /// it (not draining, not self-fenced) and answer [`SessionOwner::Here`];
    /// [`SessionOwner::Nobody`] means no live owner and this node cannot take
    /// it now (→ 503 + Retry-After).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] (or the store's existing error for a
    /// failed query).
    async fn owner_for_call(&self, session: &SessionId) -> Result<SessionOwner, StoreError>;
}

/// The single-node answer (SQLite, or tests): always [`SessionOwner::Here`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SingleNode;

#[async_trait]
impl SessionOwnership for SingleNode {
    async fn owner_for_call(&self, _session: &SessionId) -> Result<SessionOwner, StoreError> {
        Ok(SessionOwner::Here)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use ulid::Ulid;

    #[tokio::test]
    async fn a_single_node_serves_every_session_itself() {
        let ownership: Arc<dyn SessionOwnership> = Arc::new(SingleNode);
        for _ in 0..3 {
            let session = SessionId::from_ulid(Ulid::new());
            assert_eq!(
                ownership.owner_for_call(&session).await.unwrap(),
                SessionOwner::Here
            );
        }
    }
}
