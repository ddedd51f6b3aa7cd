//! # wagate-store
//!
//! Where wagate keeps what must survive a restart: the [`SessionRegistry`]
//! (sessions, scoped by organization), the [`ApiKeyStore`] (API keys, kept
//! only as hashes), the [`EventLog`], the [`WebhookStore`] (webhooks and
//! their deliveries), the [`MessageStore`] and the [`GroupStore`]. The traits are the contract
//! the rest of wagate codes against; [`open`] gives all of them as one
//! [`Store`] on the database a URL names:
//!
//! - [`SqliteStore`] (feature `sqlite`): one file, one gateway; the default.
//! - [`PgStore`] (feature `postgres`): PostgreSQL, which several gateway
//!   processes can share (row locks, claims with `SKIP LOCKED`, commits
//!   announced to every process with `LISTEN`/`NOTIFY`).
//!
//! Both run the same statements (`conn`) and map rows the same way
//! (`rows`); the traits are implemented once for both (`impls`), and the
//! same contract tests run on both. Migrations are embedded in the binary
//! and applied on start. Nothing outside this crate knows sqlx.
//! [`SessionOwnership`] says which gateway process serves a session's live
//! calls ([`SingleNode`] when there is one).
//!
//! ```no_run
//! use wagate_store::SessionRegistry;
//!
//! # async fn demo() -> Result<(), wagate_store::StoreError> {
//! let store = wagate_store::open("sqlite://data/wagate.db").await?; // creates file and folder, migrates
//! store.ping().await?;
//! # Ok(()) }
//! ```

use async_trait::async_trait;
use thiserror::Error;
use time::OffsetDateTime;
use wagate_domain::{
    ApiKey, ApiKeyId, Delivery, Event, EventCursor, EventData, EventFilter, EventPattern, Jid,
    LastError, NewApiKey, OrgId, Page, PageRequest, PendingLifecycle, Session, SessionId,
    SessionStatus, Webhook, WebhookDescription, WebhookId, WebhookSecret, WebhookUrl,
};

mod cached;
mod cluster;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod conn;
#[cfg(all(test, feature = "sqlite", feature = "postgres"))]
mod contract;
#[cfg(all(feature = "sqlite", feature = "postgres"))]
mod copy;
mod groups;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod impls;
mod messages;
mod ownership;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod polls;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod rows;
mod secrets;
#[cfg(feature = "sqlite")]
mod sqlite;

pub use cached::SessionCache;
pub use cluster::{Claim, Fence, LeaseOwner, NodeLeases, NodeStatus, Owned};
#[cfg(all(feature = "sqlite", feature = "postgres"))]
pub use copy::{CopyReport, CopySource, copy_sqlite_to_postgres};
pub use groups::{GroupPage, GroupStore};
pub use messages::{
    Accepted, IdempotencyClaim, InboundBody, InboundRecord, MediaSource, MessagePage, MessageStore,
    ParticipantReceipt, ReceiptPage, StatusChange,
};
pub use ownership::{SessionOwner, SessionOwnership, SingleNode};
#[cfg(feature = "postgres")]
pub use postgres::{PgLeases, PgStore};
pub use secrets::{ApiKeyCache, Entropy, OsEntropy, hash_secret, mint_api_key};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;

/// Everything wagate keeps, on one database: what [`open`] returns.
#[async_trait]
pub trait Store:
    SessionRegistry + ApiKeyStore + EventLog + WebhookStore + MessageStore + GroupStore
{
    /// Sets who is told when events commit (once; later calls are ignored).
    /// On PostgreSQL that includes the commits of other processes sharing
    /// the database.
    fn set_commit_listener(&self, listener: std::sync::Arc<dyn CommitListener>);

    /// Sets who is told when a process sharing the database changed a
    /// record processes cache (a session, an API key), so caches stay
    /// correct across processes (once; later calls are ignored). A database
    /// only one process uses (SQLite) has nothing to tell: the default
    /// ignores it.
    fn set_invalidation_listener(&self, _listener: std::sync::Arc<dyn InvalidationListener>) {}

    /// Closes every connection; later calls fail.
    async fn close(&self);

    /// The live gateway nodes sharing this database (PostgreSQL), or
    /// `None` when the database has no cluster (SQLite: one gateway).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`]; [`StoreError::Corrupt`].
    async fn cluster_nodes(&self) -> Result<Option<Vec<NodeStatus>>, StoreError>;
}

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `sqlite:…`: one file (or memory), one gateway.
    Sqlite,
    /// `postgres://…` or `postgresql://…`.
    Postgres,
}

impl Backend {
    /// The backend of `url`, or `None` for another scheme.
    pub fn of(url: &str) -> Option<Self> {
        let scheme = url.split(':').next().unwrap_or_default();
        match scheme.to_ascii_lowercase().as_str() {
            "sqlite" => Some(Backend::Sqlite),
            "postgres" | "postgresql" => Some(Backend::Postgres),
            _ => None,
        }
    }
}

/// Opens the database at `url` (`sqlite:…`, or `postgres://…` with the
/// `postgres` feature) and applies its migrations.
///
/// # Errors
///
/// [`StoreError::Setup`] for a URL of another kind (or of a backend this
/// build lacks), or when opening or migrating fails.
pub async fn open(url: &str) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    match Backend::of(url) {
        #[cfg(feature = "sqlite")]
        Some(Backend::Sqlite) => {
            let store = SqliteStore::connect(url).await?;
            store.migrate().await?;
            Ok(std::sync::Arc::new(store))
        }
        #[cfg(feature = "postgres")]
        Some(Backend::Postgres) => {
            let store = PgStore::connect(url).await?;
            store.migrate().await?;
            Ok(std::sync::Arc::new(store))
        }
        #[allow(unreachable_patterns)]
        Some(backend) => Err(StoreError::Setup(format!(
            "this build has no {backend:?} support"
        ))),
        None => Err(StoreError::Setup(
            "database.url must start with sqlite: or postgres://".into(),
        )),
    }
}

/// What a store call can fail with.
#[derive(Debug, Error)]
pub enum StoreError {
    /// A row with the same unique value exists, or the row's state forbids
    /// the change (a disabled webhook).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database cannot be reached or is busy; retrying may work.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A stored row does not parse into a domain value (written by a newer
    /// version, or edited by hand).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// Setting the database up (opening, migrating) failed.
    #[error("database setup failed: {0}")]
    Setup(String),
    /// A patch named a revision ([`SessionPatch::expected_revision`]) and
    /// the session has changed since: read it again and decide anew.
    #[error("the session changed since it was read")]
    Changed,
    /// This process no longer owns the session it wrote for (another
    /// gateway claimed it, or this one fenced itself): nothing was written,
    /// and its WhatsApp client must stop.
    #[error("the session is owned by another gateway now")]
    Fenced,
    /// A cursor points before what the event log still keeps (retention).
    #[error("the cursor is older than the events kept")]
    Gone,
    /// The organization already has as many as it may
    /// ([`WebhookStore::insert_webhook`]'s `max_per_org`).
    #[error("limit reached: at most {limit}")]
    LimitReached {
        /// The limit.
        limit: u32,
    },
}

/// A change to a session; fields left `None` stay as they are. One patch is
/// applied atomically, so concurrent patches of different fields never lose
/// each other's writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionPatch {
    /// New status.
    pub status: Option<SessionStatus>,
    /// With `status`: the status to write instead when the session has no
    /// JID (is not linked), decided atomically on the stored row.
    pub status_if_unlinked: Option<SessionStatus>,
    /// With `status`: stored statuses that `status` must not overwrite
    /// (checked atomically on the row, so an event that landed since the
    /// caller read the session wins).
    pub status_unless: Vec<SessionStatus>,
    /// New own JID (`Some(None)` clears it).
    pub jid: Option<Option<Jid>>,
    /// New push name (`Some(None)` clears it).
    pub push_name: Option<Option<String>>,
    /// Whether the gateway should keep the session connected.
    pub keep_connected: Option<bool>,
    /// When it last reached `connected`: left as it is when the stored
    /// session is already connected.
    pub last_connected_at: Option<OffsetDateTime>,
    /// New last error (`Some(None)` clears it).
    pub last_error: Option<Option<LastError>>,
    /// New pending lifecycle request (`Some(None)` clears it).
    pub pending: Option<Option<PendingLifecycle>>,
    /// An event to record with this change, in the same transaction (a
    /// `session.status` event is recorded by the store itself whenever the
    /// status changes).
    pub event: Option<EventData>,
    /// Apply only if the session is still at this revision, else
    /// [`StoreError::Changed`]: for writes decided on a read the adapter's
    /// events may have overtaken.
    pub expected_revision: Option<u64>,
}

impl SessionPatch {
    /// A patch that sets only the status.
    pub fn status(status: SessionStatus) -> Self {
        Self {
            status: Some(status),
            ..Self::default()
        }
    }

    /// `current` with this patch applied at `now` (revision bumped,
    /// `updated_at = now`), or `None` when the patch changes nothing (a
    /// write that changes nothing does not touch `updated_at`). Every store
    /// applies patches with this one function, on the row it read, and
    /// stores the result only if the row is still at the revision it read.
    ///
    /// # Errors
    ///
    /// [`StoreError::Changed`] when [`SessionPatch::expected_revision`] is
    /// set and `current` is at another revision.
    pub fn apply(
        &self,
        current: &Session,
        now: OffsetDateTime,
    ) -> Result<Option<Session>, StoreError> {
        if self
            .expected_revision
            .is_some_and(|r| r != current.revision)
        {
            return Err(StoreError::Changed);
        }
        let mut next = current.clone();
        if let Some(status) = self.status {
            let status = match self.status_if_unlinked {
                Some(unlinked) if current.jid.is_none() => unlinked,
                _ => status,
            };
            if !self.status_unless.contains(&current.status) {
                next.status = status;
            }
        }
        if let Some(jid) = &self.jid {
            next.jid.clone_from(jid);
        }
        if let Some(push_name) = &self.push_name {
            next.push_name.clone_from(push_name);
        }
        if let Some(keep) = self.keep_connected {
            next.keep_connected = keep;
        }
        // "When it last reached connected": a session already connected
        // did not reach it again (a republished `Connected` changes nothing).
        if let Some(at) = self.last_connected_at
            && (current.status != SessionStatus::Connected || current.last_connected_at.is_none())
        {
            next.last_connected_at = Some(at);
        }
        if let Some(error) = &self.last_error {
            next.last_error.clone_from(error);
        }
        if let Some(pending) = self.pending {
            next.pending = pending;
        }
        if next == *current {
            return Ok(None);
        }
        next.updated_at = now;
        next.revision = current.revision.wrapping_add(1);
        Ok(Some(next))
    }

    /// The events a patch records as it turns `current` into `next` (`None`:
    /// nothing changed): `session.status` when the status moved, then the
    /// patch's own.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub(crate) fn events(&self, current: &Session, next: Option<&Session>) -> Vec<EventData> {
        let mut events = Vec::new();
        if let Some(next) = next
            && next.status != current.status
        {
            events.push(EventData::SessionStatus {
                status: next.status,
                previous: current.status,
                last_error: next.last_error.clone(),
            });
        }
        events.extend(self.event.clone());
        events
    }
}

/// The sessions of every organization. Every call a caller's request can
/// reach takes the caller's [`OrgId`], and a session of another organization
/// is indistinguishable from one that does not exist.
#[async_trait]
pub trait SessionRegistry: Send + Sync + std::fmt::Debug {
    /// Stores a new session.
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] if the id exists; [`StoreError::Unavailable`].
    async fn insert(&self, session: &Session) -> Result<(), StoreError>;

    /// The session `id` of organization `org`, or `None`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`]; [`StoreError::Corrupt`].
    async fn get(&self, org: &OrgId, id: &SessionId) -> Result<Option<Session>, StoreError>;

    /// One page of `org`'s sessions, newest first.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`]; [`StoreError::Corrupt`].
    async fn list(&self, org: &OrgId, page: PageRequest) -> Result<Page<Session>, StoreError>;

    /// Applies `patch` to session `id` of `org` at `now`; the updated
    /// session, or `None` if there is no such session.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`]; [`StoreError::Corrupt`].
    async fn update(
        &self,
        org: &OrgId,
        id: &SessionId,
        patch: &SessionPatch,
        now: OffsetDateTime,
    ) -> Result<Option<Session>, StoreError>;

    /// Applies `patch` to session `id` whatever its organization. Only for
    /// what the WhatsApp adapter observes (its events carry no organization);
    /// no caller's request reaches it.
    ///
    /// # Errors
    ///
    /// As [`SessionRegistry::update`].
    async fn record_observed(
        &self,
        id: &SessionId,
        patch: &SessionPatch,
        now: OffsetDateTime,
    ) -> Result<Option<Session>, StoreError>;

    /// [`SessionRegistry::record_observed`] for many sessions in one
    /// transaction (a restart or a take-over marks every session it
    /// resumes: one commit, not one each). Per session, in order: the
    /// updated session, `None` if there is no such session, or
    /// `Err(StoreError::Fenced)` (nothing written for it) when another
    /// gateway owns it.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`]; [`StoreError::Corrupt`] (nothing is
    /// written then).
    async fn record_observed_all(
        &self,
        patches: &[(SessionId, SessionPatch)],
        now: OffsetDateTime,
    ) -> Result<Vec<Result<Option<Session>, StoreError>>, StoreError>;

    /// Deletes session `id` of `org`; whether it existed.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    async fn delete(&self, org: &OrgId, id: &SessionId) -> Result<bool, StoreError>;

    /// Every session a gateway starting up must act on: those to keep
    /// connected, those with a [`PendingLifecycle`] to finish, and those
    /// whose stored status says a client is running (`pairing`,
    /// `connecting`, `connected`: stale after a restart). Oldest first.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`]; [`StoreError::Corrupt`].
    async fn to_resume(&self) -> Result<Vec<Session>, StoreError>;

    /// How many sessions are in each status (for metrics). Stores keep these
    /// counts as they write, so a metrics scrape costs no query.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    async fn count_by_status(&self) -> Result<Vec<(SessionStatus, u64)>, StoreError>;

    /// Checks that the database answers.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    async fn ping(&self) -> Result<(), StoreError>;
}

/// API keys, stored as the SHA-256 of their secret.
#[async_trait]
pub trait ApiKeyStore: Send + Sync + std::fmt::Debug {
    /// Stores a new key.
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] on a duplicate id or hash; [`StoreError::Unavailable`].
    async fn insert_key(&self, key: &NewApiKey) -> Result<(), StoreError>;

    /// The live (not revoked) key whose secret hashes to `hash`, expired or
    /// not: the caller decides what expiry means.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`]; [`StoreError::Corrupt`].
    async fn find_by_hash(&self, hash: &[u8; 32]) -> Result<Option<ApiKey>, StoreError>;

    /// `org`'s keys that are not revoked, oldest first.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`]; [`StoreError::Corrupt`].
    async fn list_keys(&self, org: &OrgId) -> Result<Vec<ApiKey>, StoreError>;

    /// Revokes key `id` (of `org`, when given: the CLI acts on any
    /// organization); the revoked key, or `None` if there was no live key.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`]; [`StoreError::Corrupt`].
    async fn revoke_key(
        &self,
        org: Option<&OrgId>,
        id: &ApiKeyId,
        now: OffsetDateTime,
    ) -> Result<Option<ApiKey>, StoreError>;

    /// Records that key `id` was used at `at`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    async fn touch_key(&self, id: &ApiKeyId, at: OffsetDateTime) -> Result<(), StoreError>;
}

/// Told after a transaction that wrote events commits (the SSE streams and
/// the webhook dispatcher of this process wait on it).
pub trait CommitListener: Send + Sync + std::fmt::Debug {
    /// Events of `org` were committed; `deliveries` whether webhook
    /// deliveries were queued with them.
    fn committed(&self, org: &OrgId, deliveries: bool);
}

/// A record that changed, which every process that caches it must forget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalidation {
    /// A session changed or was deleted.
    Session(SessionId),
    /// An API key was revoked.
    ApiKey(ApiKeyId),
    /// Changes may have gone unheard (the notifications' connection was
    /// lost): forget everything.
    Everything,
}

/// Told when a record processes cache changed, in this process or in
/// another sharing the database (PostgreSQL `LISTEN`/`NOTIFY`, channel
/// `wagate_invalidate`).
pub trait InvalidationListener: Send + Sync + std::fmt::Debug {
    /// `what` changed: forget it.
    fn changed(&self, what: Invalidation);
}

/// Several caches told of the same changes.
impl InvalidationListener for Vec<std::sync::Arc<dyn InvalidationListener>> {
    fn changed(&self, what: Invalidation) {
        for listener in self {
            listener.changed(what);
        }
    }
}

/// One page of an organization's event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventPage {
    /// Events in cursor order.
    pub events: Vec<Event>,
    /// The cursor to continue from: the last event's, or the `after` asked.
    pub next: EventCursor,
}

/// The per-organization event log, read side. Events are written by the
/// state changes they report ([`SessionRegistry`] writes), in the same
/// transaction.
#[async_trait]
pub trait EventLog: Send + Sync + std::fmt::Debug {
    /// Up to `limit` events of `org` after `after` that pass `filter`, in
    /// cursor order. A reader that has seen cursor C never later finds a
    /// new event at or before C.
    ///
    /// # Errors
    ///
    /// [`StoreError::Gone`] when events after `after` were pruned (judged
    /// on the same snapshot as the page: a pruning that commits during the
    /// read never makes it skip events); [`StoreError::Unavailable`];
    /// [`StoreError::Corrupt`].
    async fn read_events(
        &self,
        org: &OrgId,
        after: EventCursor,
        filter: &EventFilter,
        limit: u32,
    ) -> Result<EventPage, StoreError>;

    /// The first cursor still kept for `org` minus one: reading from here
    /// returns the oldest retained event first.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    async fn oldest_cursor(&self, org: &OrgId) -> Result<EventCursor, StoreError>;

    /// Removes events that occurred before `before` (and deliveries that
    /// are finished and refer to them); how many events went.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    async fn prune_events(&self, before: OffsetDateTime) -> Result<u64, StoreError>;
}

/// A change to a webhook; `None` fields stay.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookPatch {
    /// New target.
    pub url: Option<WebhookUrl>,
    /// New event patterns.
    pub events: Option<Vec<EventPattern>>,
    /// New session restriction (`Some(None)`: all sessions).
    pub session_ids: Option<Option<Vec<SessionId>>>,
    /// New description.
    pub description: Option<WebhookDescription>,
    /// Enable or disable (enabling clears `disabled_reason`).
    pub enabled: Option<bool>,
}

impl WebhookPatch {
    /// Applies the patch to `w` at `now`.
    pub fn apply(&self, w: &mut Webhook, now: OffsetDateTime) {
        if let Some(url) = &self.url {
            w.url = url.clone();
        }
        if let Some(events) = &self.events {
            w.events.clone_from(events);
        }
        if let Some(ids) = &self.session_ids {
            w.session_ids.clone_from(ids);
        }
        if let Some(d) = &self.description {
            w.description = d.clone();
        }
        if let Some(enabled) = self.enabled {
            if enabled {
                w.disabled_reason = None;
            }
            w.enabled = enabled;
        }
        w.updated_at = now;
    }
}

/// One due delivery, with what sending it needs.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    /// The delivery's row.
    pub seq: u64,
    /// The webhook.
    pub webhook: WebhookId,
    /// Its organization.
    pub org: OrgId,
    /// Where to send.
    pub url: WebhookUrl,
    /// Secrets that sign (the current one first; the previous one while a
    /// rotation's grace period lasts).
    pub secrets: Vec<WebhookSecret>,
    /// The body: the event object.
    pub body: String,
    /// The event id (`webhook-id`).
    pub event_id: wagate_domain::EventId,
    /// Attempts made before this one.
    pub attempt: u32,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// 2xx.
    Delivered {
        /// The status.
        status: u16,
    },
    /// Try again at `next_at`.
    Retry {
        /// The status, if one came.
        status: Option<u16>,
        /// What went wrong.
        error: String,
        /// When to try again.
        next_at: OffsetDateTime,
    },
    /// Given up (schedule exhausted).
    Failed {
        /// The status, if one came.
        status: Option<u16>,
        /// What went wrong.
        error: String,
    },
    /// The receiver answered 410: the webhook is disabled and its pending
    /// deliveries fail.
    Gone,
    /// Not attempted after all (the webhook changed or went while its
    /// batch was under way, the claim's lease ran short, or the dispatcher
    /// is stopping): the claim is released and the delivery is due again at
    /// once, its attempts unchanged.
    Released,
}

/// A webhook with deliveries due ([`WebhookStore::webhooks_due`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueWebhook {
    /// The webhook.
    pub id: WebhookId,
    /// Its organization (deliveries are shared out fairly per organization).
    pub org: OrgId,
}

/// Webhooks and their deliveries. Every method a request reaches takes the
/// caller's organization; another organization's webhook does not exist.
#[async_trait]
pub trait WebhookStore: Send + Sync + std::fmt::Debug {
    /// Stores a new webhook with its secret, unless its organization
    /// already has `max_per_org` webhooks (enabled or not; counted and
    /// inserted in one transaction, so concurrent creations cannot pass it).
    ///
    /// # Errors
    ///
    /// [`StoreError::LimitReached`] at the cap; [`StoreError::Conflict`];
    /// [`StoreError::Unavailable`].
    async fn insert_webhook(
        &self,
        w: &Webhook,
        secret: &WebhookSecret,
        max_per_org: u32,
    ) -> Result<(), StoreError>;

    /// Webhook `id` of `org`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`]; [`StoreError::Corrupt`].
    async fn get_webhook(&self, org: &OrgId, id: &WebhookId)
    -> Result<Option<Webhook>, StoreError>;

    /// `org`'s webhooks, oldest first.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`]; [`StoreError::Corrupt`].
    async fn list_webhooks(&self, org: &OrgId) -> Result<Vec<Webhook>, StoreError>;

    /// Applies `patch`; the webhook after, or `None`. Read and written in
    /// one transaction: concurrent patches of different fields both stay,
    /// and a patch that does not name `enabled` never re-enables a webhook
    /// disabled meanwhile (by a 410, or by `disable_after`). Disabling
    /// fails what is pending.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`]; [`StoreError::Corrupt`].
    async fn update_webhook(
        &self,
        org: &OrgId,
        id: &WebhookId,
        patch: &WebhookPatch,
        now: OffsetDateTime,
    ) -> Result<Option<Webhook>, StoreError>;

    /// Deletes the webhook and its deliveries; whether it existed.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    async fn delete_webhook(&self, org: &OrgId, id: &WebhookId) -> Result<bool, StoreError>;

    /// Makes `secret` the signing secret; the old one keeps signing beside
    /// it until `old_until`. Whether the webhook exists.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    async fn rotate_secret(
        &self,
        org: &OrgId,
        id: &WebhookId,
        secret: &WebhookSecret,
        old_until: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    /// Queues `event` (not in the log: a test) for webhook `id` alone.
    /// Whether the webhook exists.
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] when the webhook is disabled (nothing is
    /// queued: it would wait forever); [`StoreError::Unavailable`].
    async fn queue_test(
        &self,
        org: &OrgId,
        id: &WebhookId,
        event: &Event,
    ) -> Result<bool, StoreError>;

    /// Queues again every retained event after `after` that the webhook
    /// wants (same event ids); how many. `None` when there is no such webhook.
    ///
    /// # Errors
    ///
    /// [`StoreError::Gone`] when events after `after` were pruned;
    /// [`StoreError::Conflict`] when the webhook is disabled (also when it
    /// is disabled while the replay runs: what was queued before is failed
    /// by the disabling); [`StoreError::Unavailable`].
    async fn replay(
        &self,
        org: &OrgId,
        id: &WebhookId,
        after: EventCursor,
        now: OffsetDateTime,
    ) -> Result<Option<u64>, StoreError>;

    /// The webhook's deliveries, newest first, before `before` (a
    /// delivery's `seq`).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`]; [`StoreError::Corrupt`].
    async fn deliveries(
        &self,
        org: &OrgId,
        id: &WebhookId,
        before: Option<u64>,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError>;

    /// Webhooks with a pending delivery due at `now` that nobody holds,
    /// with their organizations.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`]; [`StoreError::Corrupt`].
    async fn webhooks_due(&self, now: OffsetDateTime) -> Result<Vec<DueWebhook>, StoreError>;

    /// When the next pending delivery falls due, if any.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    async fn next_due(&self) -> Result<Option<OffsetDateTime>, StoreError>;

    /// Claims up to `limit` due deliveries of webhook `id`, holding them
    /// until `hold_until` (a claim that is not finished by then falls due
    /// again: a crashed dispatcher's work is redone). Nothing is claimed
    /// while another claim of the webhook is held, so one holder at a time
    /// sends to a webhook, in order. First attempts are due from their
    /// commit and come first, in cursor order (the order their events
    /// committed in, whatever clock times their writers read); due retries
    /// follow them.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`]; [`StoreError::Corrupt`].
    async fn claim_due(
        &self,
        id: &WebhookId,
        now: OffsetDateTime,
        hold_until: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<DueDelivery>, StoreError>;

    /// Records attempts, in order, in one write: each delivery's outcome
    /// (its claim released); a webhook failing without a success since
    /// `disable_after` ago is disabled. An attempt of a delivery that is
    /// gone (its webhook deleted) is skipped; one of a delivery that is no
    /// longer pending (failed when its webhook was disabled during the
    /// attempt) is recorded but stays failed, and a
    /// [`AttemptOutcome::Released`] one is left as it is.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`]: none of them was recorded.
    async fn finish_attempts(
        &self,
        attempts: &[FinishedAttempt],
        now: OffsetDateTime,
        disable_after: time::Duration,
    ) -> Result<(), StoreError>;

    /// Whether a claimed delivery is still to be sent as it was claimed:
    /// still pending, its webhook enabled and at the same URL. Asked before
    /// each send of a batch, so that deleting, disabling or moving a
    /// webhook stops its batch under way.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    async fn still_current(&self, delivery: &DueDelivery) -> Result<bool, StoreError>;
}

/// One attempt of a delivery, to record ([`WebhookStore::finish_attempts`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedAttempt {
    /// The delivery.
    pub seq: u64,
    /// How it ended.
    pub outcome: AttemptOutcome,
    /// How long it took.
    pub duration_ms: u64,
}

#[cfg(test)]
pub(crate) mod test_support {
    use time::OffsetDateTime;
    use wagate_domain::{OrgId, Session, SessionId, SessionName, SessionStatus};

    /// Session number `n` of `org`, new, made at `now`.
    pub(crate) fn session(org: &str, n: u32, now: OffsetDateTime) -> Session {
        Session {
            id: SessionId::parse(&format!("sess_{n:026}")).unwrap(),
            org: OrgId::parse(org).unwrap(),
            name: Some(SessionName::parse("support").unwrap()),
            status: SessionStatus::New,
            jid: None,
            push_name: None,
            keep_connected: false,
            created_at: now,
            updated_at: now,
            last_connected_at: None,
            last_error: None,
            pending: None,
            revision: 0,
        }
    }
}

/// The README's example, compiled (and run) as a doc test so it stays true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
