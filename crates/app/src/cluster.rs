//! Several gateways on one database: this process as a member of the
//! cluster ([`ClusterMember`]). It keeps its lease (heartbeats), fences
//! itself when it cannot, claims the sessions nobody live owns (those
//! rendezvous hashing gives it first), gives away slowly those that
//! hashing gives another node, drains on shutdown, and answers where a
//! session's live calls run ([`SessionOwnership`]).
//!
//! Exactly one owner: a session's client runs only on the node that holds
//! its claim, and every write its client makes names the claim's epoch
//! (the store's [`Fence`](wagate_store::Fence)); a node that lost a
//! session finds out at its next write and stops that client at once.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use wagate_domain::{NodeId, Session, SessionId, SessionStatus};
use wagate_store::{
    Claim, LeaseOwner, NodeLeases, NodeStatus, SessionOwner, SessionOwnership, StoreError,
};
use wagate_whatsapp_port::{SessionClaim, SessionClaims};

use crate::gateway::{MARK_BATCH, resume_mark};
use crate::{AppError, Gateway};

/// How a member keeps its lease and balances (from `cluster.*`).
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// Between heartbeats (`cluster.heartbeat_secs`).
    pub heartbeat: Duration,
    /// Without a renewed lease this long, stop every client
    /// (`cluster.self_fence_secs`, shorter than the lease).
    pub self_fence: Duration,
    /// Sessions claimed per round at most.
    pub claim_batch: u32,
    /// Sessions given away per round at most when another node should own
    /// them (a join moves sessions slowly).
    pub moves_per_round: usize,
    /// Sessions connected per second after a claim
    /// (`whatsapp.live.resume_rate`).
    pub resume_rate: u32,
}

impl ClusterSettings {
    /// The settings for `heartbeat` and `self_fence`, with the default
    /// batch (100 claims) and pace of moves (5 a round).
    pub fn new(heartbeat: Duration, self_fence: Duration, resume_rate: u32) -> Self {
        Self {
            heartbeat,
            self_fence,
            claim_batch: 100,
            moves_per_round: 5,
            resume_rate,
        }
    }

    /// Between claim rounds: twice per heartbeat, so a drained node's
    /// sessions are taken within about a second.
    fn round(&self) -> Duration {
        (self.heartbeat / 2).max(Duration::from_millis(200))
    }
}

/// The node rendezvous hashing gives `session` among `nodes` (highest
/// score of `SHA-256(node ‖ session)`): every node computes the same
/// answer, and a node joining or leaving moves only the sessions it wins
/// or held.
pub fn preferred_node(nodes: &[NodeId], session: &SessionId) -> Option<NodeId> {
    nodes.iter().copied().max_by_key(|node| {
        let mut h = Sha256::new();
        h.update(node.to_string().as_bytes());
        h.update(b"/");
        h.update(session.to_string().as_bytes());
        let d = h.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&d[..8]);
        (u64::from_be_bytes(first), node.to_string())
    })
}

/// This process as a member of the cluster. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ClusterMember {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    gateway: Arc<Gateway>,
    leases: Arc<dyn NodeLeases>,
    settings: ClusterSettings,
    /// When the last renewal that succeeded was sent.
    renewed: Mutex<Instant>,
    /// Self-fenced: every client stopped, nothing claimed until the lease
    /// is renewed again.
    fenced: AtomicBool,
    draining: AtomicBool,
    /// Sessions seen without an owner last round (another node's to claim
    /// first; this one takes them if they are still there).
    seen: Mutex<HashSet<SessionId>>,
    /// Sessions whose client is being stopped because a write was refused
    /// (one stop each, however many writes are refused meanwhile).
    stopping: Arc<Mutex<HashSet<SessionId>>>,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl ClusterMember {
    /// Registers this node (its first heartbeat) and makes `gateway` show
    /// the cluster's figures. Nothing runs until [`ClusterMember::start`].
    ///
    /// # Errors
    ///
    /// `Unavailable` when the database does not answer.
    pub async fn join(
        gateway: Arc<Gateway>,
        leases: Arc<dyn NodeLeases>,
        settings: ClusterSettings,
    ) -> Result<Self, AppError> {
        let sent = Instant::now();
        leases.heartbeat(false).await?;
        leases.fence().set_may_claim(true);
        gateway.set_leases(leases.clone());
        Ok(Self {
            inner: Arc::new(Inner {
                gateway,
                leases,
                settings,
                renewed: Mutex::new(sent),
                fenced: AtomicBool::new(false),
                draining: AtomicBool::new(false),
                seen: Mutex::default(),
                stopping: Arc::default(),
                stop: watch::channel(false).0,
                tasks: Mutex::default(),
            }),
        })
    }

    /// This node.
    pub fn node(&self) -> NodeId {
        self.inner.leases.node()
    }

    /// Before serving: a first claim round, its sessions marked as
    /// [`Gateway::prepare_resume`] marks them (no stale status is shown);
    /// returns what [`Gateway::resume_sessions_at`] must connect.
    ///
    /// # Errors
    ///
    /// `Unavailable` when the database does not answer.
    pub async fn claim_at_start(&self) -> Result<Vec<Session>, AppError> {
        let eligible = self.inner.eligible().await?;
        let claims = self.inner.claim_unowned(&eligible).await?;
        Ok(self.inner.gateway.mark_claimed(claims).await)
    }

    /// Starts the heartbeat, the self-fence watchdog and the claim rounds.
    pub fn start(&self) {
        let inner = &self.inner;
        let mut tasks = inner.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        tasks.push(tokio::spawn(heartbeats(inner.clone())));
        tasks.push(tokio::spawn(watchdog(inner.clone())));
        tasks.push(tokio::spawn(rounds(inner.clone())));
    }

    /// Drains (SIGTERM): claims nothing more, marks the node draining,
    /// stops every client it holds cleanly and releases each session as
    /// soon as its client stopped (the others claim it at their next
    /// round), then ends its lease.
    pub async fn drain(&self) {
        let inner = &self.inner;
        inner.draining.store(true, Ordering::SeqCst);
        inner.leases.fence().set_may_claim(false);
        let _ = inner.stop.send(true);
        let tasks: Vec<_> = inner
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
            .collect();
        for task in tasks {
            task.abort();
            let _ = task.await;
        }
        if let Err(e) = inner.leases.heartbeat(true).await {
            tracing::warn!(error = %e, "could not mark this node draining");
        }
        let held = inner.leases.fence().held_all();
        let count = held.len();
        let started = Instant::now();
        let releases = held.into_iter().map(|(session, epoch)| {
            let inner = inner.clone();
            async move { inner.give_away(session, epoch).await }
        });
        join_all(releases).await;
        if let Err(e) = inner.leases.leave().await {
            tracing::warn!(error = %e, "could not end this node's lease; it runs out on its own");
        }
        tracing::info!(
            sessions = count,
            seconds = started.elapsed().as_secs_f64(),
            "drained: every session released"
        );
    }
}

/// Whether a node owns a session for sure without reading the database:
/// it holds the session's claim (`held`), serves (`may_take`: neither
/// self-fenced nor draining) and renewed its lease less than the
/// self-fence time ago (`renewed_ago`). Another node can claim a session
/// only once its owner's lease ran out, and the lease outlives the
/// self-fence time; a node that was paused longer asks the database.
fn holds_live_claim(
    held: bool,
    may_take: bool,
    renewed_ago: Duration,
    self_fence: Duration,
) -> bool {
    held && may_take && renewed_ago < self_fence
}

/// Runs `futures` concurrently to the end.
async fn join_all<F: std::future::Future<Output = ()> + Send + 'static>(
    futures: impl IntoIterator<Item = F>,
) {
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    for h in handles {
        let _ = h.await;
    }
}

impl Inner {
    fn renewed(&self) -> Instant {
        *self.renewed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn may_take(&self) -> bool {
        !self.fenced.load(Ordering::SeqCst) && !self.draining.load(Ordering::SeqCst)
    }

    /// Whether this node surely owns `session` now, without asking the
    /// database (the hot path of every live call).
    fn surely_owns(&self, session: &SessionId) -> bool {
        holds_live_claim(
            self.leases.fence().epoch(session).is_some(),
            self.may_take(),
            self.renewed().elapsed(),
            self.settings.self_fence,
        )
    }

    /// Stops every client this node holds, at once, without a write (the
    /// database may be out of reach) and without touching what the user
    /// asked (keep connected stays): the lease may run out any moment and
    /// another node claim them.
    async fn self_fence(&self, why: &str) {
        if self.fenced.swap(true, Ordering::SeqCst) {
            return;
        }
        let fence = self.leases.fence();
        fence.set_may_claim(false);
        fence.count_self_fence();
        let held = fence.forget_all();
        tracing::error!(
            sessions = held.len(),
            reason = why,
            "self-fenced: the lease could not be renewed in time; every WhatsApp client stopped"
        );
        let stops = held.into_iter().map(|session| {
            let gateway = self.gateway.clone();
            async move { gateway.stop_client(&session).await }
        });
        join_all(stops).await;
    }

    /// After a self-fence, once the lease is renewed: what the database
    /// still says this node owns is released, to be claimed again with new
    /// epochs.
    async fn recover(&self) {
        match self.leases.release_all().await {
            Ok(n) => {
                tracing::info!(
                    released = n,
                    "lease renewed after a self-fence; claiming again"
                );
                self.fenced.store(false, Ordering::SeqCst);
                if !self.draining.load(Ordering::SeqCst) {
                    self.leases.fence().set_may_claim(true);
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not release sessions after a self-fence"),
        }
    }

    /// Stops `session`'s client here and releases the session (held at
    /// `epoch`) for another node to claim.
    async fn give_away(&self, session: SessionId, epoch: u64) {
        self.gateway.stop_client(&session).await;
        match self.leases.release(&session, epoch).await {
            Ok(true) => tracing::debug!(session = %session, "session released"),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(session = %session, error = %e, "could not release a session; its lease runs out with this node's")
            }
        }
    }

    /// The live nodes that may take sessions (this one included).
    async fn eligible(&self) -> Result<Vec<NodeId>, StoreError> {
        let me = self.leases.node();
        let mut eligible: Vec<NodeId> = self
            .leases
            .live_nodes()
            .await?
            .iter()
            .filter(|n| !n.draining)
            .map(|n| n.id)
            .collect();
        if !eligible.contains(&me) {
            eligible.push(me);
        }
        Ok(eligible)
    }

    /// Claims unowned sessions: those hashing gives this node at once,
    /// the others' after a round's grace (their node did not take them).
    async fn claim_unowned(&self, eligible: &[NodeId]) -> Result<Vec<Claim>, StoreError> {
        let me = self.leases.node();
        let batch = self.settings.claim_batch;
        let candidates = self.leases.unowned(batch.saturating_mul(4)).await?;
        let seen_before = std::mem::replace(
            &mut *self.seen.lock().unwrap_or_else(PoisonError::into_inner),
            candidates.iter().copied().collect(),
        );
        let pick: Vec<SessionId> = candidates
            .into_iter()
            .filter(|s| preferred_node(eligible, s) == Some(me) || seen_before.contains(s))
            .take(usize::try_from(batch).unwrap_or(usize::MAX))
            .collect();
        if pick.is_empty() || !self.may_take() {
            return Ok(Vec::new());
        }
        let claims = self.leases.claim(&pick).await?;
        if !claims.is_empty() {
            tracing::info!(sessions = claims.len(), "claimed sessions");
        }
        Ok(claims)
    }

    /// One claim round: claims unowned sessions and connects them, and
    /// gives away a few that hashing gives another node.
    async fn round(self: &Arc<Self>) -> Result<(), StoreError> {
        let me = self.leases.node();
        let eligible = self.eligible().await?;
        let claims = self.claim_unowned(&eligible).await?;
        if !claims.is_empty() {
            let gateway = self.gateway.clone();
            let rate = self.settings.resume_rate;
            tokio::spawn(async move { gateway.take_over(claims, rate).await });
        }
        if eligible.len() > 1 && self.may_take() {
            let movers: Vec<_> = self
                .leases
                .owned()
                .await?
                .into_iter()
                .filter(|o| !o.pairing && preferred_node(&eligible, &o.session) != Some(me))
                .take(self.settings.moves_per_round)
                .collect();
            let moves = movers.into_iter().map(|o| {
                tracing::info!(session = %o.session, "moving a session to the node that should own it");
                let inner = self.clone();
                async move { inner.give_away(o.session, o.epoch).await }
            });
            join_all(moves).await;
        }
        Ok(())
    }
}

/// Renews the lease every heartbeat (each try bounded by the heartbeat
/// period). A renewal that comes after the self-fence time (the process
/// was paused, or the database slow) fences first: another node may have
/// claimed meanwhile.
async fn heartbeats(inner: Arc<Inner>) {
    let period = inner.settings.heartbeat;
    loop {
        tokio::time::sleep(period).await;
        let sent = Instant::now();
        let renewed = tokio::time::timeout(period, inner.leases.heartbeat(false)).await;
        match renewed {
            Ok(Ok(())) => {
                let previous = inner.renewed();
                if sent.duration_since(previous) > inner.settings.self_fence {
                    inner.self_fence("the lease was renewed too late").await;
                }
                *inner.renewed.lock().unwrap_or_else(PoisonError::into_inner) = sent;
                if inner.fenced.load(Ordering::SeqCst) {
                    inner.recover().await;
                }
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "could not renew this node's lease"),
            Err(_) => tracing::warn!("renewing this node's lease timed out"),
        }
    }
}

/// Fences this node when its last renewal is older than the self-fence
/// time, whatever the heartbeat is stuck on.
async fn watchdog(inner: Arc<Inner>) {
    let tick = (inner.settings.heartbeat / 4).max(Duration::from_millis(50));
    loop {
        tokio::time::sleep(tick).await;
        if !inner.fenced.load(Ordering::SeqCst)
            && inner.renewed().elapsed() > inner.settings.self_fence
        {
            inner.self_fence("no lease renewal").await;
        }
    }
}

/// Claim rounds until stopped.
async fn rounds(inner: Arc<Inner>) {
    let mut stop = inner.stop.subscribe();
    loop {
        tokio::select! {
            () = tokio::time::sleep(inner.settings.round()) => {}
            _ = stop.changed() => return,
        }
        if !inner.may_take() {
            continue;
        }
        if let Err(e) = inner.round().await {
            tracing::warn!(error = %e, "claim round failed");
        }
    }
}

/// The claims the live adapter's device writes name: a write for a
/// session names this node and the epoch of its claim, and is refused by
/// the database once another node claimed the session.
impl SessionClaims for ClusterMember {
    fn claim(&self, session: &SessionId) -> Option<SessionClaim> {
        let leases = &self.inner.leases;
        leases.fence().epoch(session).map(|epoch| SessionClaim {
            node: leases.node(),
            epoch,
        })
    }

    fn lost(&self, session: &SessionId) {
        let inner = &self.inner;
        let fence = inner.leases.fence();
        fence.count_refused();
        fence.forget(session, None);
        let first = inner
            .stopping
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(*session);
        if !first {
            return;
        }
        tracing::warn!(session = %session, "a device write was refused: another gateway owns this session now; stopping its client here");
        let (gateway, stopping, session) =
            (inner.gateway.clone(), inner.stopping.clone(), *session);
        tokio::spawn(async move {
            gateway.stop_client(&session).await;
            stopping
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&session);
        });
    }
}

#[async_trait]
impl SessionOwnership for ClusterMember {
    async fn owner_for_call(&self, session: &SessionId) -> Result<SessionOwner, StoreError> {
        let inner = &self.inner;
        let me = inner.leases.node();
        if inner.surely_owns(session) {
            return Ok(SessionOwner::Here);
        }
        let here = |owner: LeaseOwner| match owner {
            // The call finds no session here either.
            LeaseOwner::NoSession => Some(SessionOwner::Here),
            // This node's (a concurrent call may be claiming it this
            // moment); a fenced node serves nothing.
            LeaseOwner::Live { node, .. } if node == me => Some(if inner.may_take() {
                SessionOwner::Here
            } else {
                SessionOwner::Nobody
            }),
            LeaseOwner::Live {
                node,
                advertise_url,
                ..
            } => Some(SessionOwner::Node {
                id: node,
                advertise_url,
            }),
            LeaseOwner::Unowned => None,
        };
        if let Some(answer) = here(inner.leases.owner(session).await?) {
            return Ok(answer);
        }
        if !inner.may_take() {
            return Ok(SessionOwner::Nobody);
        }
        let claims = inner.leases.claim(&[*session]).await?;
        if claims.is_empty() {
            // Another node, or another call, was quicker.
            return Ok(here(inner.leases.owner(session).await?).unwrap_or(SessionOwner::Nobody));
        }
        // One that should run (a dead node's) is connected here.
        let gateway = inner.gateway.clone();
        let rate = inner.settings.resume_rate;
        tokio::spawn(async move { gateway.take_over(claims, rate).await });
        Ok(SessionOwner::Here)
    }
}

impl Gateway {
    /// Shows the cluster's figures (`/metrics`) from `leases`.
    pub fn set_leases(&self, leases: Arc<dyn NodeLeases>) {
        let _ = self.leases.set(leases);
    }

    /// The live nodes, the writes refused because their session was lost,
    /// and the self-fences of this node; `None` without a cluster.
    ///
    /// # Errors
    ///
    /// `Unavailable` when the database does not answer.
    pub async fn cluster_figures(&self) -> Result<Option<ClusterFigures>, AppError> {
        let Some(leases) = self.leases.get() else {
            return Ok(None);
        };
        Ok(Some(ClusterFigures {
            nodes: leases.live_nodes().await?,
            fenced_writes: leases.fence().refused(),
            self_fences: leases.fence().self_fences(),
            held: u64::try_from(leases.fence().len()).unwrap_or(u64::MAX),
        }))
    }

    /// Connects the sessions this node just claimed, as after a restart:
    /// each is marked `connecting` (or its offline status when it is not
    /// to be kept connected), then resumed under its lifecycle lock at
    /// `per_second`.
    pub async fn take_over(&self, claims: Vec<Claim>, per_second: u32) -> usize {
        let sessions = self.mark_claimed(claims).await;
        self.resume_sessions_at(sessions, per_second).await
    }

    /// The first half of [`Gateway::take_over`]: each claimed session
    /// marked `connecting` or offline; those to resume.
    async fn mark_claimed(&self, claims: Vec<Claim>) -> Vec<Session> {
        // One not meant to run, and showing no running client, is left as
        // it is (a call about to act on it claimed it).
        let to_mark: Vec<Session> = claims
            .into_iter()
            .map(|c| c.session)
            .filter(|s| {
                s.keep_connected
                    || s.pending.is_some()
                    || matches!(
                        s.status,
                        SessionStatus::Pairing
                            | SessionStatus::Connecting
                            | SessionStatus::Connected
                    )
            })
            .collect();
        let mut sessions = Vec::with_capacity(to_mark.len());
        for chunk in to_mark.chunks(MARK_BATCH) {
            let marks: Vec<_> = chunk.iter().map(|s| (s.id, resume_mark(s))).collect();
            match self
                .deps
                .sessions
                .record_observed_all(&marks, self.now())
                .await
            {
                Ok(marked) => {
                    for (marked, s) in marked.into_iter().zip(chunk) {
                        match marked {
                            Ok(Some(_)) => sessions.push(s.clone()),
                            Ok(None) => {}
                            Err(e) => {
                                tracing::warn!(session = %s.id, error = %e, "could not take a claimed session over");
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(sessions = chunk.len(), error = %e, "could not take claimed sessions over");
                }
            }
        }
        sessions
    }

    /// With several gateways, before this node starts `session`'s client
    /// (a connect served here): it must hold the session, claiming it when
    /// nobody live owns it. A request for a session another live node owns
    /// is forwarded there before it reaches this (so this is a race lost:
    /// `Unavailable`, try again).
    pub(crate) async fn hold_here(&self, session: &SessionId) -> Result<(), AppError> {
        let Some(leases) = self.leases.get() else {
            return Ok(());
        };
        for _ in 0..HOLD_ATTEMPTS {
            if leases.fence().epoch(session).is_some()
                || !leases.claim(&[*session]).await?.is_empty()
            {
                return Ok(());
            }
            match leases.owner(session).await? {
                LeaseOwner::NoSession => return Ok(()),
                // Claimed by a concurrent call on this node.
                LeaseOwner::Live { node, .. } if node == leases.node() => return Ok(()),
                LeaseOwner::Live { .. } => break,
                // Being claimed (its row locked) as we looked: look again.
                LeaseOwner::Unowned => tokio::time::sleep(Duration::from_millis(25)).await,
            }
        }
        Err(AppError::Unavailable(
            "another gateway owns this session now; try again".into(),
        ))
    }

    /// Stops `session`'s WhatsApp client on this node, keeping its link
    /// and what the user asked (it goes on to keep connected on the node
    /// that owns it next). Bounded; a failure is logged.
    pub async fn stop_client(&self, session: &SessionId) {
        let stopped =
            tokio::time::timeout(STOP_CLIENT_WITHIN, self.deps.whatsapp.disconnect(session)).await;
        match stopped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(session = %session, error = %e, "could not stop a client"),
            Err(_) => tracing::warn!(session = %session, "stopping a client timed out"),
        }
    }
}

/// Looks at a session being claimed at the same moment before giving up.
const HOLD_ATTEMPTS: usize = 40;

/// How long stopping one client may take when a session is given away.
const STOP_CLIENT_WITHIN: Duration = Duration::from_secs(5);

/// The cluster as `/metrics` shows it.
#[derive(Debug, Clone)]
pub struct ClusterFigures {
    /// The live nodes.
    pub nodes: Vec<NodeStatus>,
    /// Writes of this node refused because their session was lost.
    pub fenced_writes: u64,
    /// Times this node stopped every client (lease not renewed in time).
    pub self_fences: u64,
    /// Sessions this node holds now.
    pub held: u64,
}

#[cfg(test)]
mod tests {
    use ulid::Ulid;

    use super::*;

    #[test]
    fn a_claim_answers_without_the_database_only_while_the_lease_is_surely_live() {
        let fence = Duration::from_secs(6);
        let fresh = Duration::from_millis(1500);
        assert!(holds_live_claim(true, true, fresh, fence));
        // Not held (never claimed, given away, forgotten at a self-fence).
        assert!(!holds_live_claim(false, true, fresh, fence));
        // Self-fenced or draining.
        assert!(!holds_live_claim(true, false, fresh, fence));
        // Paused past the self-fence time: another node may own it now.
        assert!(!holds_live_claim(true, true, fence, fence));
        assert!(!holds_live_claim(
            true,
            true,
            Duration::from_secs(15),
            fence
        ));
    }

    #[test]
    fn rendezvous_moves_only_what_a_joining_node_wins() {
        let nodes: Vec<NodeId> = (0..3).map(|_| NodeId::from_ulid(Ulid::new())).collect();
        let sessions: Vec<SessionId> = (0..300)
            .map(|_| SessionId::from_ulid(Ulid::new()))
            .collect();
        let before: Vec<_> = sessions
            .iter()
            .map(|s| preferred_node(&nodes[..2], s).unwrap())
            .collect();
        let after: Vec<_> = sessions
            .iter()
            .map(|s| preferred_node(&nodes, s).unwrap())
            .collect();
        let mut per_node = [0usize; 3];
        for ((b, a), s) in before.iter().zip(&after).zip(&sessions) {
            // Every node computes the same answer, whatever the order.
            let mut reversed = nodes.clone();
            reversed.reverse();
            assert_eq!(preferred_node(&reversed, s), Some(*a));
            // A session moves only to the new node.
            assert!(a == b || *a == nodes[2]);
            per_node[nodes.iter().position(|n| n == a).unwrap()] += 1;
        }
        // Roughly a third each.
        assert!(
            per_node.iter().all(|&n| (60..=140).contains(&n)),
            "{per_node:?}"
        );
        assert_eq!(preferred_node(&[], &sessions[0]), None);
    }
}
