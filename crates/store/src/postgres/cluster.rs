//! [`PgLeases`]: the node registry and session leases on PostgreSQL
//! (`cluster_nodes`, `session_owners`, migration 0005), and the fence
//! check every write the WhatsApp side makes for a session goes through.
//! Times are the database's (`now()`): the nodes' clocks never have to
//! agree.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::PgConnection;
use sqlx::{Connection as _, Postgres, Row as _};
use wagate_domain::{NodeId, SessionId};

use super::PgStore;
use crate::StoreError;
use crate::cluster::{Claim, Fence, LeaseOwner, NodeLeases, NodeStatus, Owned};
use crate::rows::{db_err, from_ms, session_columns, session_from_row};

/// The condition "`o`'s owner is not a live node".
macro_rules! no_live_owner {
    () => {
        "(o.owner_node IS NULL OR NOT EXISTS (SELECT 1 FROM cluster_nodes n \
          WHERE n.id = o.owner_node AND n.lease_expires_at > now()))"
    };
}

/// The leases of one node (process) on a [`PgStore`].
#[derive(Debug)]
pub struct PgLeases {
    store: PgStore,
    fence: Arc<Fence>,
    advertise_url: String,
    lease: Duration,
    /// The heartbeat's own connection (opened again after a failure).
    heartbeat: tokio::sync::Mutex<Option<PgConnection>>,
}

impl PgLeases {
    /// The leases of a new node `fence.node()`, reachable at
    /// `advertise_url`, whose lease lasts `lease` past each heartbeat. Sets
    /// `store`'s fence: from now on every write the WhatsApp side makes for
    /// a session ([`SessionRegistry::record_observed`](crate::SessionRegistry::record_observed))
    /// is checked against it.
    pub fn new(store: PgStore, fence: Arc<Fence>, advertise_url: String, lease: Duration) -> Self {
        let _ = store.fence.set(fence.clone());
        Self {
            store,
            fence,
            advertise_url,
            lease,
            heartbeat: tokio::sync::Mutex::new(None),
        }
    }

    async fn beat(&self, conn: &mut PgConnection, draining: bool) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO cluster_nodes (id, advertise_url, lease_expires_at, draining) \
             VALUES ($1, $2, now() + make_interval(secs => $3), $4) \
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), \
               lease_expires_at = excluded.lease_expires_at, draining = excluded.draining",
        )
        .bind(self.fence.node().to_string())
        .bind(&self.advertise_url)
        .bind(self.lease.as_secs_f64())
        .bind(draining)
        .execute(conn)
        .await
        .map(|_| ())
    }
}

impl PgStore {
    /// The live nodes sharing this database, oldest first, with how many
    /// sessions each owns.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`]; [`StoreError::Corrupt`].
    pub async fn live_nodes(&self) -> Result<Vec<NodeStatus>, StoreError> {
        let rows = sqlx::query(
            "SELECT n.id, n.advertise_url, n.draining, \
               (extract(epoch FROM n.started_at) * 1000)::BIGINT AS started_ms, \
               (extract(epoch FROM n.heartbeat_at) * 1000)::BIGINT AS heartbeat_ms, \
               (SELECT count(*) FROM session_owners o WHERE o.owner_node = n.id) AS sessions \
             FROM cluster_nodes n WHERE n.lease_expires_at > now() ORDER BY n.started_at, n.id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get("id").map_err(db_err)?;
                let time = |c: &str| -> Result<_, StoreError> {
                    let ms: i64 = r.try_get(c).map_err(db_err)?;
                    from_ms(ms).ok_or_else(|| StoreError::Corrupt(format!("{c} out of range")))
                };
                let sessions: i64 = r.try_get("sessions").map_err(db_err)?;
                Ok(NodeStatus {
                    id: NodeId::parse(&id).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    advertise_url: r.try_get("advertise_url").map_err(db_err)?,
                    started_at: time("started_ms")?,
                    heartbeat_at: time("heartbeat_ms")?,
                    draining: r.try_get("draining").map_err(db_err)?,
                    sessions: u64::try_from(sessions).unwrap_or(0),
                })
            })
            .collect()
    }
}

fn epoch_of(e: Option<i64>) -> u64 {
    e.and_then(|e| u64::try_from(e).ok()).unwrap_or(0)
}

fn ids(sessions: &[SessionId]) -> Vec<String> {
    sessions.iter().map(ToString::to_string).collect()
}

#[async_trait]
impl NodeLeases for PgLeases {
    fn node(&self) -> NodeId {
        self.fence.node()
    }

    fn fence(&self) -> &Fence {
        &self.fence
    }

    async fn owner(&self, session: &SessionId) -> Result<LeaseOwner, StoreError> {
        let row = sqlx::query(
            "SELECT o.owner_node, o.epoch, n.advertise_url FROM sessions s \
             LEFT JOIN session_owners o ON o.session_id = s.id \
             LEFT JOIN cluster_nodes n ON n.id = o.owner_node AND n.lease_expires_at > now() \
             WHERE s.id = $1",
        )
        .bind(session.to_string())
        .fetch_optional(&self.store.pool)
        .await
        .map_err(db_err)?;
        let Some(row) = row else {
            return Ok(LeaseOwner::NoSession);
        };
        let url: Option<String> = row.try_get("advertise_url").map_err(db_err)?;
        let node: Option<String> = row.try_get("owner_node").map_err(db_err)?;
        match (node, url) {
            (Some(node), Some(advertise_url)) => Ok(LeaseOwner::Live {
                node: NodeId::parse(&node).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                advertise_url,
                epoch: epoch_of(row.try_get("epoch").map_err(db_err)?),
            }),
            _ => Ok(LeaseOwner::Unowned),
        }
    }

    async fn heartbeat(&self, draining: bool) -> Result<(), StoreError> {
        let mut slot = self.heartbeat.lock().await;
        if slot.is_none() {
            let options = self.store.pool.connect_options();
            *slot = Some(PgConnection::connect_with(&options).await.map_err(db_err)?);
        }
        let Some(conn) = slot.as_mut() else {
            return Err(StoreError::Unavailable("no heartbeat connection".into()));
        };
        if let Err(e) = self.beat(conn, draining).await {
            // Opened again next time.
            *slot = None;
            return Err(db_err(e));
        }
        Ok(())
    }

    async fn live_nodes(&self) -> Result<Vec<NodeStatus>, StoreError> {
        self.store.live_nodes().await
    }

    async fn unowned(&self, limit: u32) -> Result<Vec<SessionId>, StoreError> {
        let rows: Vec<String> = sqlx::query_scalar(concat!(
            "SELECT s.id FROM sessions s LEFT JOIN session_owners o ON o.session_id = s.id \
             WHERE (s.keep_connected OR s.pending_op IS NOT NULL \
                    OR s.status IN ('pairing', 'connecting', 'connected')) AND ",
            no_live_owner!(),
            " ORDER BY s.id LIMIT $1"
        ))
        .bind(i64::from(limit))
        .fetch_all(&self.store.pool)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|id| SessionId::parse(id).map_err(|e| StoreError::Corrupt(e.to_string())))
            .collect()
    }

    async fn claim(&self, sessions: &[SessionId]) -> Result<Vec<Claim>, StoreError> {
        if sessions.is_empty() || !self.fence.may_claim() {
            return Ok(Vec::new());
        }
        let wanted = ids(sessions);
        let mut tx = self.store.begin().await?;
        sqlx::query(
            "INSERT INTO session_owners (session_id) SELECT id FROM sessions \
             WHERE id = ANY($1) ON CONFLICT DO NOTHING",
        )
        .bind(&wanted)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        // Rows another node is claiming, or a write is changing, are
        // skipped: they are looked at again next round.
        let claimed = sqlx::query(concat!(
            "WITH picked AS (SELECT s.id FROM sessions s \
               JOIN session_owners o ON o.session_id = s.id WHERE s.id = ANY($1) AND ",
            no_live_owner!(),
            " ORDER BY s.id FOR UPDATE OF s, o SKIP LOCKED) \
             UPDATE session_owners o SET owner_node = $2, epoch = o.epoch + 1 \
             FROM picked WHERE o.session_id = picked.id RETURNING o.session_id, o.epoch"
        ))
        .bind(&wanted)
        .bind(self.fence.node().to_string())
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        let mut epochs = std::collections::HashMap::with_capacity(claimed.len());
        for row in &claimed {
            let id: String = row.try_get("session_id").map_err(db_err)?;
            let epoch: i64 = row.try_get("epoch").map_err(db_err)?;
            epochs.insert(id, epoch_of(Some(epoch)));
        }
        let rows = sqlx::query(concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions WHERE id = ANY($1) ORDER BY id"
        ))
        .bind(epochs.keys().cloned().collect::<Vec<_>>())
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        let mut claims = Vec::with_capacity(rows.len());
        for row in &rows {
            let session = session_from_row(row)?;
            let epoch = epochs.get(&session.id.to_string()).copied().unwrap_or(0);
            self.fence.hold(session.id, epoch);
            claims.push(Claim { session, epoch });
        }
        Ok(claims)
    }

    async fn owned(&self) -> Result<Vec<Owned>, StoreError> {
        let rows = sqlx::query(
            "SELECT o.session_id, o.epoch, (s.jid IS NULL OR s.status = 'pairing') AS pairing FROM session_owners o \
             JOIN sessions s ON s.id = o.session_id WHERE o.owner_node = $1 ORDER BY o.session_id",
        )
        .bind(self.fence.node().to_string())
        .fetch_all(&self.store.pool)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get("session_id").map_err(db_err)?;
                Ok(Owned {
                    session: SessionId::parse(&id)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    epoch: epoch_of(r.try_get("epoch").map_err(db_err)?),
                    pairing: r.try_get("pairing").map_err(db_err)?,
                })
            })
            .collect()
    }

    async fn release(&self, session: &SessionId, epoch: u64) -> Result<bool, StoreError> {
        self.fence.forget(session, Some(epoch));
        let done = sqlx::query(
            "UPDATE session_owners SET owner_node = NULL \
             WHERE session_id = $1 AND owner_node = $2 AND epoch = $3",
        )
        .bind(session.to_string())
        .bind(self.fence.node().to_string())
        .bind(i64::try_from(epoch).unwrap_or(i64::MAX))
        .execute(&self.store.pool)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn release_all(&self) -> Result<u64, StoreError> {
        let done = sqlx::query("UPDATE session_owners SET owner_node = NULL WHERE owner_node = $1")
            .bind(self.fence.node().to_string())
            .execute(&self.store.pool)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected())
    }

    async fn leave(&self) -> Result<(), StoreError> {
        self.fence.set_may_claim(false);
        self.fence.forget_all();
        let mut tx = self.store.begin().await?;
        sqlx::query(
            "UPDATE cluster_nodes SET lease_expires_at = now(), draining = TRUE WHERE id = $1",
        )
        .bind(self.fence.node().to_string())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        sqlx::query("UPDATE session_owners SET owner_node = NULL WHERE owner_node = $1")
            .bind(self.fence.node().to_string())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        // Nodes gone for an hour are forgotten (their sessions were claimed
        // long since).
        sqlx::query("DELETE FROM cluster_nodes WHERE lease_expires_at < now() - interval '1 hour'")
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)
    }
}

/// Checks, in the transaction of a write the WhatsApp side makes for
/// `session` (before anything is written), that this node still owns it at
/// the epoch it holds: [`StoreError::Fenced`] otherwise, counted. A session
/// this node holds nothing of is claimed on the spot when nobody live owns
/// it and the node may claim (a lifecycle call served here started its
/// client); one another live node owns is refused.
pub(crate) async fn check_fence(
    fence: &Fence,
    tx: &mut sqlx::Transaction<'_, Postgres>,
    session: &SessionId,
) -> Result<(), StoreError> {
    let row = sqlx::query(
        "SELECT o.owner_node, o.epoch, (n.id IS NOT NULL) AS live FROM sessions s \
         LEFT JOIN session_owners o ON o.session_id = s.id \
         LEFT JOIN cluster_nodes n ON n.id = o.owner_node AND n.lease_expires_at > now() \
         WHERE s.id = $1 FOR UPDATE OF s",
    )
    .bind(session.to_string())
    .fetch_optional(&mut **tx)
    .await
    .map_err(db_err)?;
    // No session: the write finds nothing either.
    let Some(row) = row else {
        return Ok(());
    };
    let owner: Option<String> = row.try_get("owner_node").map_err(db_err)?;
    let epoch = epoch_of(row.try_get("epoch").map_err(db_err)?);
    let live: bool = row.try_get("live").map_err(db_err)?;
    let me = fence.node().to_string();
    let refused = || {
        fence.count_refused();
        Err(StoreError::Fenced)
    };
    match fence.epoch(session) {
        Some(held) if owner.as_deref() == Some(me.as_str()) && held == epoch => Ok(()),
        Some(_) => {
            fence.forget(session, None);
            refused()
        }
        None if live && owner.as_deref() != Some(me.as_str()) => refused(),
        None if !fence.may_claim() => refused(),
        None => {
            let epoch: i64 = sqlx::query_scalar(
                "INSERT INTO session_owners (session_id, owner_node, epoch) VALUES ($1, $2, 1) \
                 ON CONFLICT (session_id) DO UPDATE SET owner_node = $2, \
                   epoch = session_owners.epoch + 1 RETURNING epoch",
            )
            .bind(session.to_string())
            .bind(&me)
            .fetch_one(&mut **tx)
            .await
            .map_err(db_err)?;
            fence.hold(*session, epoch_of(Some(epoch)));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    //! Two nodes' leases on one database (two stores stand for two
    //! gateway processes).

    use time::OffsetDateTime;
    use ulid::Ulid;
    use wagate_domain::SessionStatus;

    use super::*;
    use crate::messages::MessageStore as _;
    use crate::test_support::session;
    use crate::{EventLog as _, SessionPatch, SessionRegistry};

    async fn node(url: &str, lease: Duration) -> (PgStore, PgLeases) {
        let store = PgStore::connect(url).await.unwrap();
        store.migrate().await.unwrap();
        let fence = Arc::new(Fence::new(NodeId::from_ulid(Ulid::new())));
        let leases = PgLeases::new(store.clone(), fence, "http://127.0.0.1:1".into(), lease);
        leases.heartbeat(false).await.unwrap();
        (store, leases)
    }

    /// Sessions 1..=n of acme, to keep connected.
    async fn sessions(store: &PgStore, n: u32) -> Vec<SessionId> {
        let now = OffsetDateTime::now_utc();
        let mut ids = Vec::new();
        for i in 1..=n {
            let s = session("acme", i, now);
            store.insert(&s).await.unwrap();
            let keep = SessionPatch {
                keep_connected: Some(true),
                ..SessionPatch::default()
            };
            store.update(&s.org, &s.id, &keep, now).await.unwrap();
            ids.push(s.id);
        }
        ids
    }

    #[tokio::test]
    async fn one_owner_per_session_and_the_loser_of_a_claim_is_fenced() {
        let Some(pg) = wagate_test_postgres::shared() else {
            return;
        };
        let url = pg.fresh_database();
        let (sa, a) = node(&url, Duration::from_secs(30)).await;
        let (sb, b) = node(&url, Duration::from_secs(30)).await;
        let ids = sessions(&sa, 6).await;
        assert_eq!(a.unowned(100).await.unwrap(), ids);
        // Both claim everything at once: each session goes to one of them.
        let (ca, cb) = tokio::join!(a.claim(&ids), b.claim(&ids));
        let (ca, cb) = (ca.unwrap(), cb.unwrap());
        assert_eq!(ca.len() + cb.len(), 6, "{ca:?} {cb:?}");
        assert!(a.unowned(100).await.unwrap().is_empty());
        // A second claim takes nothing a live node owns.
        assert!(b.claim(&ids).await.unwrap().is_empty() || ca.is_empty());
        let nodes = a.live_nodes().await.unwrap();
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes.iter().map(|n| n.sessions).sum::<u64>(), 6);
        // A's writes pass; once B takes one of A's sessions (A released it,
        // as after a move), A's next write for it is refused and counted.
        let Some(Claim { session: s, epoch }) = ca.first().cloned().or_else(|| cb.first().cloned())
        else {
            unreachable!()
        };
        let (owner, other, owner_store) = if a.fence().epoch(&s.id).is_some() {
            (&a, &b, &sa)
        } else {
            (&b, &a, &sb)
        };
        let now = OffsetDateTime::now_utc();
        let pairing = SessionPatch::status(SessionStatus::Connecting);
        owner_store
            .record_observed(&s.id, &pairing, now)
            .await
            .unwrap();
        // The owner "pauses": its claim is given up behind its back.
        sqlx::query("UPDATE session_owners SET owner_node = NULL WHERE session_id = $1")
            .bind(s.id.to_string())
            .execute(&owner_store.pool)
            .await
            .unwrap();
        let taken = other.claim(&[s.id]).await.unwrap();
        assert_eq!(taken.len(), 1);
        assert!(taken[0].epoch > epoch, "a claim bumps the epoch");
        let connected = SessionPatch::status(SessionStatus::Connected);
        assert!(matches!(
            owner_store.record_observed(&s.id, &connected, now).await,
            Err(StoreError::Fenced)
        ));
        assert_eq!(owner.fence().refused(), 1);
        assert_eq!(owner.fence().epoch(&s.id), None);
        // …and stays refused: another live node owns it.
        assert!(matches!(
            owner_store.record_observed(&s.id, &connected, now).await,
            Err(StoreError::Fenced)
        ));
        let row = owner_store.get(&s.org, &s.id).await.unwrap().unwrap();
        assert_eq!(row.status, SessionStatus::Connecting, "nothing written");
        // So is every other write the WhatsApp side makes for it: received
        // messages, ephemeral events, message statuses, group notices.
        let received = crate::contract::inbound(
            "IN1",
            crate::messages::InboundBody::Text("late".into()),
            false,
        );
        assert!(matches!(
            owner_store.record_inbound(&s.id, &[received], now).await,
            Err(StoreError::Fenced)
        ));
        let alice = wagate_domain::Jid::parse("14155550123@s.whatsapp.net").unwrap();
        let typing = wagate_domain::EventData::ChatState {
            chat: alice.clone(),
            jid: alice,
            state: wagate_domain::ChatState::Typing,
        };
        assert!(matches!(
            owner_store.record_ephemeral(&s.id, &typing, now).await,
            Err(StoreError::Fenced)
        ));
        let read = crate::messages::StatusChange {
            status: wagate_domain::MessageStatus::Read,
            at: now,
            error: None,
        };
        let id = wagate_domain::MessageId::parse("OUT1").unwrap();
        assert!(matches!(
            owner_store.update_status(&s.id, &[id], &read, now).await,
            Err(StoreError::Fenced)
        ));
        assert_eq!(owner.fence().refused(), 5);
        let log = owner_store
            .read_events(
                &s.org,
                wagate_domain::EventCursor::START,
                &wagate_domain::EventFilter::default(),
                100,
            )
            .await
            .unwrap();
        assert!(
            log.events.iter().all(|e| !matches!(
                e.data.event_type(),
                wagate_domain::EventType::MessageReceived | wagate_domain::EventType::ChatState
            )),
            "nothing published: {:?}",
            log.events
        );
        assert!(matches!(
            a.owner(&s.id).await.unwrap(),
            LeaseOwner::Live { node, .. } if node == other.node()
        ));
    }

    #[tokio::test]
    async fn a_node_whose_lease_ran_out_or_that_left_is_not_live() {
        let Some(pg) = wagate_test_postgres::shared() else {
            return;
        };
        let url = pg.fresh_database();
        let (sa, a) = node(&url, Duration::from_secs(1)).await;
        let (_sb, b) = node(&url, Duration::from_secs(60)).await;
        let ids = sessions(&sa, 2).await;
        assert_eq!(a.claim(&ids).await.unwrap().len(), 2);
        assert_eq!(a.owned().await.unwrap().len(), 2);
        assert!(b.claim(&ids).await.unwrap().is_empty());
        // A stops renewing: a second later its sessions are B's to claim.
        let got = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let got = b.claim(&ids).await.unwrap();
                if !got.is_empty() {
                    return got;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
        .unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(
            b.live_nodes()
                .await
                .unwrap()
                .iter()
                .map(|n| n.id)
                .collect::<Vec<_>>(),
            vec![b.node()]
        );
        // B leaves: its sessions are free at once, and it claims nothing.
        b.leave().await.unwrap();
        assert!(b.live_nodes().await.unwrap().is_empty());
        assert_eq!(b.unowned(10).await.unwrap(), ids);
        assert!(b.claim(&ids).await.unwrap().is_empty());
    }
}
