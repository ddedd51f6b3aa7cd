//! [`PgStore`]: every store trait on PostgreSQL through sqlx. The
//! statements are the shared ones of [`conn`]; what is PostgreSQL's own
//! is here: row locks instead of SQLite's one writer, the commit
//! notifications other processes sharing the database hear
//! (`LISTEN`/`NOTIFY`), and the few queries that differ.

use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{PgPool, Postgres};
use time::OffsetDateTime;
use wagate_domain::{EventData, OrgId, Session, SessionId, SessionStatus, WebhookId};

use crate::rows::{Columns, db_err, from_ms, ms, session_columns, session_from_row};
use crate::{CommitListener, DueWebhook, Invalidation, InvalidationListener, StoreError, conn};

mod cluster;

pub use cluster::PgLeases;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations-postgres");

/// The channel commits are announced on.
const CHANNEL: &str = "wagate_commits";
/// The channel changed records are announced on (`<node> s <sessionId>`,
/// `<node> k <apiKeyId>`): every process forgets them from its caches.
const INVALIDATE: &str = "wagate_invalidate";

/// Connections per process.
const POOL_SIZE: u32 = 16;
/// A transaction left idle this long is ended by the server. A gateway
/// stopped (SIGSTOP, a stalled VM) inside a transaction would otherwise keep
/// its row locks — a claim's `FOR UPDATE`, a fenced write's `FOR SHARE` on
/// `session_owners` — and the other nodes' claims (`SKIP LOCKED`) would pass
/// over those sessions for as long as it stays stopped. Well below the
/// default lease (10 s); a healthy node's transactions idle for milliseconds.
const IDLE_IN_TRANSACTION: (&str, &str) = ("idle_in_transaction_session_timeout", "4s");

/// The PostgreSQL store. Cheap to clone (a connection pool inside).
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    /// This process among those sharing the database: it hears its own
    /// announcements too, and has told its listener already.
    node: Arc<str>,
    listener: Arc<OnceLock<Arc<dyn CommitListener>>>,
    /// Who forgets changed records from the caches.
    invalidations: Arc<OnceLock<Arc<dyn InvalidationListener>>>,
    /// The task that hears other processes' commits and changes.
    listening: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
    /// Set when this process takes part in the leases ([`PgLeases::new`]):
    /// what the WhatsApp side writes for a session is checked against it.
    fence: Arc<OnceLock<Arc<crate::Fence>>>,
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user:password@host/db`).
    ///
    /// # Errors
    ///
    /// [`StoreError::Setup`] when the URL is invalid or the database cannot
    /// be reached (the message never repeats the URL: it may hold a password).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|_| StoreError::Setup("invalid PostgreSQL url".into()))?
            .application_name("wagate")
            .options([IDLE_IN_TRANSACTION]);
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Setup(format!("cannot open database: {}", redact(&e))))?;
        let mut node = [0u8; 8];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut node);
        let node: String = node.iter().map(|b| format!("{b:02x}")).collect();
        Ok(Self {
            pool,
            node: node.into(),
            listener: Arc::default(),
            invalidations: Arc::default(),
            listening: Arc::default(),
            fence: Arc::default(),
        })
    }

    /// Applies the embedded migrations that have not run yet (several
    /// processes starting at once take turns: sqlx holds an advisory lock).
    ///
    /// # Errors
    ///
    /// [`StoreError::Setup`] when a migration fails.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Setup(format!("migration failed: {e}")))
    }

    /// Stops hearing commits and closes every connection; later calls fail.
    pub async fn close(&self) {
        let task = self
            .listening
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            task.abort();
        }
        self.pool.close().await;
    }

    /// Sets who is told when events commit, in this process or in another
    /// sharing the database (once; later calls are ignored).
    pub fn set_commit_listener(&self, listener: Arc<dyn CommitListener>) {
        if self.listener.set(listener).is_ok() {
            self.hear();
        }
    }

    /// Sets who forgets records changed by any process sharing the
    /// database, this one included (once; later calls are ignored).
    pub fn set_invalidation_listener(&self, listener: Arc<dyn InvalidationListener>) {
        if self.invalidations.set(listener).is_ok() {
            self.hear();
        }
    }

    /// Starts hearing the other processes (once).
    fn hear(&self) {
        let mut listening = self
            .listening
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if listening.is_none() {
            *listening = Some(tokio::spawn(hear_commits(
                self.pool.clone(),
                self.node.clone(),
                self.listener.clone(),
                self.invalidations.clone(),
            )));
        }
    }

    /// Tells every process sharing the database (this one too) that `what`
    /// changed, after its commit. A lost announcement is made good by the
    /// caches' short lifetime.
    async fn announce(&self, what: Invalidation) {
        let payload = match what {
            Invalidation::Session(id) => format!("{} s {id}", self.node),
            Invalidation::ApiKey(id) => format!("{} k {id}", self.node),
            Invalidation::Everything => format!("{} *", self.node),
        };
        let sent = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(INVALIDATE)
            .bind(payload)
            .execute(&self.pool)
            .await;
        if let Err(e) = sent {
            tracing::warn!(error = %redact(&e), "cannot announce a change to the other gateways");
        }
    }

    async fn reader(&self) -> Result<PoolConnection<Postgres>, StoreError> {
        self.pool.acquire().await.map_err(db_err)
    }

    async fn writer(&self) -> Result<PoolConnection<Postgres>, StoreError> {
        self.pool.acquire().await.map_err(db_err)
    }

    /// A write transaction (READ COMMITTED; what it reads to write it
    /// locks, see [`conn::Conn::FOR_UPDATE`]).
    async fn begin(&self) -> Result<sqlx::Transaction<'static, Postgres>, StoreError> {
        self.pool.begin().await.map_err(db_err)
    }

    /// Appends `events` of `org` (and their webhook deliveries) to the
    /// transaction, announces them, commits, and tells this process's
    /// listener: the one way a state change and the events reporting it
    /// are written.
    pub(crate) async fn commit_with_events(
        &self,
        tx: sqlx::Transaction<'_, Postgres>,
        org: &OrgId,
        session: Option<&SessionId>,
        events: &[EventData],
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.commit_with_events_of(tx, &[(org, session, events)], now)
            .await
    }

    /// [`PgStore::commit_with_events`] for the events of several sessions,
    /// in one commit; each organization announced once.
    pub(crate) async fn commit_with_events_of(
        &self,
        mut tx: sqlx::Transaction<'_, Postgres>,
        all: &[crate::impls::EventsOf<'_>],
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut told = std::collections::BTreeMap::new();
        for &(org, session, events) in all {
            let queued = conn::append(&mut *tx, org, session, events, now).await?;
            if !events.is_empty() {
                *told.entry(org).or_insert(false) |= queued;
            }
        }
        for (&org, &queued) in &told {
            self.announce_in(&mut tx, org, queued).await?;
        }
        tx.commit().await.map_err(db_err)?;
        if let Some(listener) = self.listener.get() {
            for (org, queued) in told {
                listener.committed(org, queued);
            }
        }
        Ok(())
    }

    /// Commits deliveries queued without new events (a test event, a
    /// replay), announcing them.
    async fn commit_queued(
        &self,
        tx: sqlx::Transaction<'_, Postgres>,
        org: &OrgId,
    ) -> Result<(), StoreError> {
        self.announce_and_commit(tx, org, true).await
    }

    /// `NOTIFY` is delivered at commit, and only if the transaction
    /// commits: every process listening hears of exactly what committed.
    async fn announce_and_commit(
        &self,
        mut tx: sqlx::Transaction<'_, Postgres>,
        org: &OrgId,
        deliveries: bool,
    ) -> Result<(), StoreError> {
        self.announce_in(&mut tx, org, deliveries).await?;
        tx.commit().await.map_err(db_err)?;
        if let Some(listener) = self.listener.get() {
            listener.committed(org, deliveries);
        }
        Ok(())
    }

    /// Queues the `NOTIFY` of `org`'s new events in `tx`.
    async fn announce_in(
        &self,
        tx: &mut sqlx::Transaction<'_, Postgres>,
        org: &OrgId,
        deliveries: bool,
    ) -> Result<(), StoreError> {
        let payload = format!("{} {} {}", self.node, u8::from(deliveries), org.as_str());
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(payload)
            .execute(&mut **tx)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    /// A write the WhatsApp side makes for `session` (`observed`) goes
    /// through the fence, when this process has one.
    async fn fence_write(
        &self,
        tx: &mut sqlx::Transaction<'_, Postgres>,
        session: &SessionId,
        observed: bool,
    ) -> Result<(), StoreError> {
        match self.fence.get() {
            Some(fence) if observed => cluster::check_fence(fence, tx, session).await,
            _ => Ok(()),
        }
    }

    /// Several processes write the sessions: counts are read, not kept.
    fn session_moved(&self, _from: Option<SessionStatus>, _to: Option<SessionStatus>) {}

    async fn status_counts(&self) -> Result<Vec<(SessionStatus, u64)>, StoreError> {
        conn::count_sessions(&mut *self.reader().await?).await
    }

    async fn sessions_to_resume(&self) -> Result<Vec<Session>, StoreError> {
        let sql = concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions WHERE keep_connected OR pending_op IS NOT NULL \
              OR status IN ('pairing', 'connecting', 'connected') ORDER BY id"
        );
        let rows = sqlx::query(sql)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(session_from_row).collect()
    }

    async fn due_webhooks(&self, now: OffsetDateTime) -> Result<Vec<DueWebhook>, StoreError> {
        let rows = sqlx::query(
            "SELECT w.id, w.org_id FROM webhooks w WHERE w.enabled AND EXISTS (SELECT 1 FROM deliveries d \
             WHERE d.webhook_id = w.id AND d.state = 'pending' AND d.next_ms <= $1 \
             AND (d.claimed_until IS NULL OR d.claimed_until <= $1))",
        )
        .bind(ms(now))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                Ok(DueWebhook {
                    id: r.parsed("id", WebhookId::parse)?,
                    org: r.parsed("org_id", OrgId::parse)?,
                })
            })
            .collect()
    }

    async fn next_due_at(&self) -> Result<Option<OffsetDateTime>, StoreError> {
        // The earliest unclaimed pending delivery of an enabled webhook, or
        // the earliest claim to lapse (its delivery falls due again then).
        let next: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(t) FROM (\
               SELECT MIN(d.next_ms) AS t FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id \
                 WHERE w.enabled AND d.state = 'pending' AND d.claimed_until IS NULL \
               UNION ALL \
               SELECT MIN(GREATEST(d.claimed_until, d.next_ms)) FROM deliveries d \
                 JOIN webhooks w ON w.id = d.webhook_id \
                 WHERE w.enabled AND d.state = 'pending' AND d.claimed_until IS NOT NULL) due",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(next.and_then(from_ms))
    }
}

/// Hears the commits every process sharing the database announces and
/// tells `listener` of those of other processes, and the changed records
/// every process announces (its own too) and tells `invalidations`. A lost
/// connection is opened again; commits announced meanwhile are not heard
/// (SSE streams and the dispatcher also wake on their own timers), and
/// the caches forget everything, as changes may have gone unheard.
async fn hear_commits(
    pool: PgPool,
    node: Arc<str>,
    listener: Arc<OnceLock<Arc<dyn CommitListener>>>,
    invalidations: Arc<OnceLock<Arc<dyn InvalidationListener>>>,
) {
    let mut first = true;
    let mut backoff = Duration::from_millis(100);
    loop {
        if pool.is_closed() {
            return;
        }
        let mut heard = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %redact(&e), "cannot listen for commits; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        if let Err(e) = heard.listen_all([CHANNEL, INVALIDATE]).await {
            tracing::warn!(error = %redact(&e), "cannot listen for commits; retrying");
            tokio::time::sleep(backoff).await;
            continue;
        }
        backoff = Duration::from_millis(100);
        // Listening again after a lost connection: what changed meanwhile
        // went unheard.
        if !std::mem::take(&mut first)
            && let Some(caches) = invalidations.get()
        {
            caches.changed(Invalidation::Everything);
        }
        loop {
            match heard.try_recv().await {
                Ok(Some(n)) if n.channel() == INVALIDATE => {
                    if let (Some(caches), Some(what)) =
                        (invalidations.get(), invalidation(n.payload()))
                    {
                        caches.changed(what);
                    }
                }
                Ok(Some(n)) => {
                    let Some(listener) = listener.get() else {
                        continue;
                    };
                    let mut parts = n.payload().splitn(3, ' ');
                    let (Some(from), Some(deliveries), Some(org)) =
                        (parts.next(), parts.next(), parts.next())
                    else {
                        continue;
                    };
                    if from == &*node {
                        continue;
                    }
                    if let Ok(org) = OrgId::parse(org) {
                        listener.committed(&org, deliveries == "1");
                    }
                }
                // The connection dropped; the next receive opens it again.
                Ok(None) => {
                    tracing::warn!("lost the commit notifications' connection; reconnecting");
                    if let Some(caches) = invalidations.get() {
                        caches.changed(Invalidation::Everything);
                    }
                }
                Err(e) => {
                    if pool.is_closed() {
                        return;
                    }
                    tracing::warn!(error = %redact(&e), "commit notifications failed; reconnecting");
                    break;
                }
            }
        }
    }
}

/// The change an invalidation's payload names (`<node> s <sessionId>`,
/// `<node> k <apiKeyId>`, `<node> *`).
fn invalidation(payload: &str) -> Option<Invalidation> {
    let mut parts = payload.splitn(3, ' ');
    let (_node, kind, id) = (parts.next()?, parts.next()?, parts.next());
    match (kind, id) {
        ("s", Some(id)) => SessionId::parse(id).ok().map(Invalidation::Session),
        ("k", Some(id)) => wagate_domain::ApiKeyId::parse(id)
            .ok()
            .map(Invalidation::ApiKey),
        ("*", None) => Some(Invalidation::Everything),
        _ => None,
    }
}

/// An error's text without what could hold a password.
fn redact(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Configuration(_) => "invalid configuration".into(),
        other => other.to_string(),
    }
}

#[async_trait]
impl crate::Store for PgStore {
    fn set_commit_listener(&self, listener: Arc<dyn CommitListener>) {
        PgStore::set_commit_listener(self, listener);
    }

    fn set_invalidation_listener(&self, listener: Arc<dyn InvalidationListener>) {
        PgStore::set_invalidation_listener(self, listener);
    }

    async fn close(&self) {
        PgStore::close(self).await;
    }

    async fn cluster_nodes(&self) -> Result<Option<Vec<crate::NodeStatus>>, StoreError> {
        self.live_nodes().await.map(Some)
    }
}

crate::impls::store_traits!(PgStore);

#[cfg(test)]
mod tests {
    //! What only PostgreSQL has: several processes on one database (two
    //! stores on one database stand for two gateway processes).

    use std::collections::BTreeSet;

    use tokio::sync::mpsc;
    use wagate_domain::{EventCursor, EventFilter, SessionStatus, Webhook, WebhookSecret};

    use super::*;
    use crate::test_support::session;
    use crate::{ApiKeyStore, EventLog, SessionPatch, SessionRegistry, WebhookStore};

    /// Two processes' stores on one fresh database.
    async fn two_nodes() -> Option<(PgStore, PgStore)> {
        let url = wagate_test_postgres::shared()?.fresh_database();
        let a = PgStore::connect(&url).await.unwrap();
        a.migrate().await.unwrap();
        let b = PgStore::connect(&url).await.unwrap();
        b.migrate().await.unwrap();
        Some((a, b))
    }

    #[derive(Debug)]
    struct Heard(mpsc::UnboundedSender<(OrgId, bool)>);

    impl CommitListener for Heard {
        fn committed(&self, org: &OrgId, deliveries: bool) {
            let _ = self.0.send((org.clone(), deliveries));
        }
    }

    #[tokio::test]
    async fn a_commit_in_one_process_wakes_the_others() {
        let Some((a, b)) = two_nodes().await else {
            return;
        };
        let (tx, mut heard) = mpsc::unbounded_channel();
        b.set_commit_listener(Arc::new(Heard(tx)));
        let now = OffsetDateTime::now_utc();
        let s = session("acme", 1, now);
        a.insert(&s).await.unwrap();
        // B may still be subscribing: commit until it hears one.
        let got = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                a.record_observed(&s.id, &SessionPatch::status(SessionStatus::Pairing), now)
                    .await
                    .unwrap();
                a.record_observed(&s.id, &SessionPatch::status(SessionStatus::New), now)
                    .await
                    .unwrap();
                if let Ok(Some(got)) =
                    tokio::time::timeout(Duration::from_millis(200), heard.recv()).await
                {
                    return got;
                }
            }
        })
        .await
        .expect("B heard A's commit");
        assert_eq!(got, (s.org.clone(), false));
        // B's own commits are told once, by B itself (not again when the
        // announcement comes back).
        while heard.try_recv().is_ok() {}
        b.record_observed(&s.id, &SessionPatch::status(SessionStatus::Pairing), now)
            .await
            .unwrap();
        assert_eq!(heard.recv().await, Some((s.org.clone(), false)));
        a.close().await;
        b.close().await;
    }

    #[derive(Debug)]
    struct Forgot(mpsc::UnboundedSender<Invalidation>);

    impl InvalidationListener for Forgot {
        fn changed(&self, what: Invalidation) {
            let _ = self.0.send(what);
        }
    }

    #[tokio::test]
    async fn a_change_in_one_process_clears_the_caches_of_the_others() {
        let Some((a, b)) = two_nodes().await else {
            return;
        };
        let (tx, mut heard) = mpsc::unbounded_channel();
        let b_sessions = Arc::new(crate::SessionCache::new(Arc::new(b.clone())));
        let caches: Vec<Arc<dyn InvalidationListener>> =
            vec![b_sessions.clone(), Arc::new(Forgot(tx))];
        b.set_invalidation_listener(Arc::new(caches));
        let now = OffsetDateTime::now_utc();
        let s = session("acme", 1, now);
        a.insert(&s).await.unwrap();
        let status = async || b_sessions.get(&s.org, &s.id).await.unwrap().unwrap().status;
        assert_eq!(status().await, SessionStatus::New);
        // B may still be subscribing: write until it hears one.
        let what = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                a.record_observed(&s.id, &SessionPatch::status(SessionStatus::Pairing), now)
                    .await
                    .unwrap();
                if let Ok(Some(what)) =
                    tokio::time::timeout(Duration::from_millis(200), heard.recv()).await
                {
                    return what;
                }
                a.record_observed(&s.id, &SessionPatch::status(SessionStatus::New), now)
                    .await
                    .unwrap();
            }
        })
        .await
        .expect("B heard A's change");
        assert_eq!(what, Invalidation::Session(s.id));
        while heard.try_recv().is_ok() {}
        // Subscribed: each change is heard at once, and B's cache reads it.
        a.record_observed(&s.id, &SessionPatch::status(SessionStatus::Connected), now)
            .await
            .unwrap();
        // At once in practice (a few ms); the bound leaves room for a busy
        // machine (the 1 s figure is the process test's, tests/any_node).
        // The subscribing loop's earlier writes may still be on their way:
        // wait for the awaited notification, passing over those.
        let within = Duration::from_secs(5);
        let hear = async |heard: &mut mpsc::UnboundedReceiver<Invalidation>, want| {
            tokio::time::timeout(within, async {
                while let Some(what) = heard.recv().await {
                    if what == want {
                        return;
                    }
                }
            })
            .await
            .unwrap_or_else(|_| panic!("B heard {want:?}"));
        };
        hear(&mut heard, Invalidation::Session(s.id)).await;
        assert_eq!(status().await, SessionStatus::Connected);

        // A revoked key is told to every process; one already revoked is not.
        let key = wagate_domain::ApiKey {
            id: wagate_domain::ApiKeyId::from_ulid(ulid::Ulid::new()),
            org: s.org.clone(),
            name: wagate_domain::ApiKeyName::parse("k").unwrap(),
            capabilities: wagate_domain::CapabilitySet::ALL,
            prefix: "wgk_test".into(),
            created_at: now,
            expires_at: None,
            last_used_at: None,
        };
        let new = wagate_domain::NewApiKey {
            key: key.clone(),
            secret_hash: [7; 32],
        };
        a.insert_key(&new).await.unwrap();
        assert!(a.revoke_key(None, &key.id, now).await.unwrap().is_some());
        hear(&mut heard, Invalidation::ApiKey(key.id)).await;
        // Deleting a session is a change too.
        a.delete(&s.org, &s.id).await.unwrap();
        hear(&mut heard, Invalidation::Session(s.id)).await;
        assert_eq!(b_sessions.get(&s.org, &s.id).await.unwrap(), None);
        a.close().await;
        b.close().await;
    }

    #[test]
    fn invalidation_payloads_parse() {
        let id = SessionId::parse("sess_01HZY0N4Q8ZK3J4M7ZC9W4X2QF").unwrap();
        assert_eq!(
            invalidation(&format!("ab12 s {id}")),
            Some(Invalidation::Session(id))
        );
        assert_eq!(invalidation("ab12 *"), Some(Invalidation::Everything));
        for bad in [
            "",
            "ab12",
            "ab12 s",
            "ab12 s sess_x",
            "ab12 k nope",
            "ab12 z 1",
        ] {
            assert_eq!(invalidation(bad), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn two_processes_writing_at_once_keep_one_gap_free_order() {
        let Some((a, b)) = two_nodes().await else {
            return;
        };
        let now = OffsetDateTime::now_utc();
        let sessions: Vec<_> = (1..=8).map(|n| session("acme", n, now)).collect();
        for s in &sessions {
            a.insert(s).await.unwrap();
        }
        let writes = |store: PgStore, ids: Vec<SessionId>| async move {
            for round in 0..10 {
                for id in &ids {
                    let status = if round % 2 == 0 {
                        SessionStatus::Pairing
                    } else {
                        SessionStatus::New
                    };
                    store
                        .record_observed(id, &SessionPatch::status(status), now)
                        .await
                        .unwrap();
                }
            }
        };
        let (left, right) = sessions.split_at(4);
        tokio::join!(
            writes(a.clone(), left.iter().map(|s| s.id).collect()),
            writes(b.clone(), right.iter().map(|s| s.id).collect()),
        );
        let page = b
            .read_events(
                &OrgId::parse("acme").unwrap(),
                EventCursor::START,
                &EventFilter::default(),
                1000,
            )
            .await
            .unwrap();
        let seqs: Vec<u64> = page.events.iter().map(|e| e.cursor.seq()).collect();
        assert_eq!(seqs, (1..=80).collect::<Vec<_>>(), "one order, no gap");
    }

    #[tokio::test]
    async fn a_pending_delivery_is_claimed_by_one_process_at_a_time() {
        let Some((a, b)) = two_nodes().await else {
            return;
        };
        let now = OffsetDateTime::now_utc();
        let hook = Webhook {
            id: WebhookId::parse(&format!("wh_{:026}", 1)).unwrap(),
            org: OrgId::parse("acme").unwrap(),
            url: wagate_domain::WebhookUrl::parse("http://127.0.0.1:9/hook").unwrap(),
            events: Vec::new(),
            session_ids: None,
            description: wagate_domain::WebhookDescription::default(),
            enabled: true,
            disabled_reason: None,
            created_at: now,
            updated_at: now,
        };
        let secret = WebhookSecret::from_text("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        a.insert_webhook(&hook, &secret, 25).await.unwrap();
        let s = session("acme", 1, now);
        a.insert(&s).await.unwrap();
        for status in [
            SessionStatus::Pairing,
            SessionStatus::New,
            SessionStatus::Pairing,
        ] {
            a.record_observed(&s.id, &SessionPatch::status(status), now)
                .await
                .unwrap();
        }
        let hold = now + time::Duration::seconds(30);
        let mut claims = Vec::new();
        for _ in 0..5 {
            let (x, y) = tokio::join!(
                a.claim_due(&hook.id, now, hold, 2),
                b.claim_due(&hook.id, now, hold, 2)
            );
            claims.extend(x.unwrap());
            claims.extend(y.unwrap());
        }
        // One claim, by one process, of the first two; the other process
        // (and later claims) got nothing while it is held.
        let seqs: BTreeSet<u64> = claims.iter().map(|d| d.seq).collect();
        assert_eq!(claims.len(), 2, "{claims:?}");
        assert_eq!(seqs.len(), 2);
    }
}
