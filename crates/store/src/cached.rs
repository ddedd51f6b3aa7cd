//! [`SessionCache`]: the session registry with reads served from memory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use time::OffsetDateTime;
use wagate_domain::{OrgId, Page, PageRequest, Session, SessionId, SessionStatus};

use crate::{Invalidation, InvalidationListener, SessionPatch, SessionRegistry, StoreError};

/// How long a session is served from memory before it is read again: the
/// backstop should a change made by another process go unheard.
pub const SESSION_TTL: Duration = Duration::from_secs(10);

/// A [`SessionRegistry`] in front of another that answers [`get`] from
/// memory: every authenticated call looks its session up, and a database
/// round trip per request dominated the gateway's cost.
///
/// Every write goes to the inner registry first and then *forgets* the
/// session, so the next read loads what was committed; a read that raced a
/// write never stores what it read (a generation counter, bumped by every
/// write under the same lock, tells). It is exact as long as this process
/// is the only writer of the sessions (one gateway per database, as with
/// SQLite); with several, each is told of the others' writes as an
/// [`InvalidationListener`] (PostgreSQL `LISTEN`/`NOTIFY`), and an entry
/// lives at most [`SESSION_TTL`] should a notification be lost.
///
/// [`get`]: SessionRegistry::get
#[derive(Debug)]
pub struct SessionCache {
    inner: Arc<dyn SessionRegistry>,
    sessions: RwLock<HashMap<SessionId, (Session, Instant)>>,
    generation: AtomicU64,
    ttl: Duration,
}

impl SessionCache {
    /// A cache in front of `inner`.
    pub fn new(inner: Arc<dyn SessionRegistry>) -> Self {
        Self::with_ttl(inner, SESSION_TTL)
    }

    /// A cache in front of `inner` whose entries live at most `ttl`.
    pub fn with_ttl(inner: Arc<dyn SessionRegistry>, ttl: Duration) -> Self {
        Self {
            inner,
            sessions: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(0),
            ttl,
        }
    }

    fn forget_all(&self) {
        let mut sessions = self
            .sessions
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        self.generation.fetch_add(1, Ordering::AcqRel);
        sessions.clear();
    }

    fn forget(&self, id: &SessionId) {
        let mut sessions = self
            .sessions
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        self.generation.fetch_add(1, Ordering::AcqRel);
        sessions.remove(id);
    }
}

#[async_trait]
impl SessionRegistry for SessionCache {
    async fn insert(&self, session: &Session) -> Result<(), StoreError> {
        self.inner.insert(session).await?;
        self.forget(&session.id);
        Ok(())
    }

    async fn get(&self, org: &OrgId, id: &SessionId) -> Result<Option<Session>, StoreError> {
        if let Some((s, _)) = self
            .sessions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .filter(|(_, at)| at.elapsed() < self.ttl)
        {
            // Another organization's session does not exist for this caller.
            return Ok((s.org == *org).then(|| s.clone()));
        }
        let generation = self.generation.load(Ordering::Acquire);
        let read_at = Instant::now();
        let found = self.inner.get(org, id).await?;
        if let Some(s) = &found {
            let mut sessions = self
                .sessions
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            if self.generation.load(Ordering::Acquire) == generation {
                sessions.insert(*id, (s.clone(), read_at));
            }
        }
        Ok(found)
    }

    async fn list(&self, org: &OrgId, page: PageRequest) -> Result<Page<Session>, StoreError> {
        self.inner.list(org, page).await
    }

    async fn update(
        &self,
        org: &OrgId,
        id: &SessionId,
        patch: &SessionPatch,
        now: OffsetDateTime,
    ) -> Result<Option<Session>, StoreError> {
        let result = self.inner.update(org, id, patch, now).await;
        self.forget(id);
        result
    }

    async fn record_observed(
        &self,
        id: &SessionId,
        patch: &SessionPatch,
        now: OffsetDateTime,
    ) -> Result<Option<Session>, StoreError> {
        let result = self.inner.record_observed(id, patch, now).await;
        self.forget(id);
        result
    }

    async fn record_observed_all(
        &self,
        patches: &[(SessionId, SessionPatch)],
        now: OffsetDateTime,
    ) -> Result<Vec<Result<Option<Session>, StoreError>>, StoreError> {
        let result = self.inner.record_observed_all(patches, now).await;
        for (id, _) in patches {
            self.forget(id);
        }
        result
    }

    async fn delete(&self, org: &OrgId, id: &SessionId) -> Result<bool, StoreError> {
        let result = self.inner.delete(org, id).await;
        self.forget(id);
        result
    }

    async fn to_resume(&self) -> Result<Vec<Session>, StoreError> {
        self.inner.to_resume().await
    }

    async fn count_by_status(&self) -> Result<Vec<(SessionStatus, u64)>, StoreError> {
        self.inner.count_by_status().await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}

impl InvalidationListener for SessionCache {
    fn changed(&self, what: Invalidation) {
        match what {
            Invalidation::Session(id) => self.forget(&id),
            Invalidation::Everything => self.forget_all(),
            Invalidation::ApiKey(_) => {}
        }
    }
}

#[cfg(test)]
#[cfg(feature = "sqlite")]
mod tests {
    use super::*;
    use crate::SqliteStore;
    use crate::test_support::session;

    #[tokio::test]
    async fn reads_come_from_memory_and_writes_are_seen_at_once() {
        let sqlite = Arc::new(SqliteStore::connect("sqlite::memory:").await.unwrap());
        sqlite.migrate().await.unwrap();
        let cache = SessionCache::new(sqlite.clone());
        let now = OffsetDateTime::now_utc();
        let s = session("acme", 1, now);
        cache.insert(&s).await.unwrap();
        let acme = OrgId::parse("acme").unwrap();
        assert_eq!(cache.get(&acme, &s.id).await.unwrap(), Some(s.clone()));
        // Cached: the other organization still sees nothing.
        assert_eq!(
            cache
                .get(&OrgId::parse("other").unwrap(), &s.id)
                .await
                .unwrap(),
            None
        );

        let patched = cache
            .record_observed(&s.id, &SessionPatch::status(SessionStatus::Connected), now)
            .await
            .unwrap();
        assert_eq!(patched.unwrap().status, SessionStatus::Connected);
        assert_eq!(
            cache.get(&acme, &s.id).await.unwrap().unwrap().status,
            SessionStatus::Connected
        );

        // Served from memory: the database is not asked again.
        sqlite.close().await;
        assert_eq!(
            cache.get(&acme, &s.id).await.unwrap().unwrap().status,
            SessionStatus::Connected
        );
        assert!(cache.delete(&acme, &s.id).await.is_err());
        // A failed write still forgets: the next read goes to the database.
        assert!(cache.get(&acme, &s.id).await.is_err());
    }

    #[tokio::test]
    async fn another_writers_change_is_seen_once_told_or_once_stale() {
        let sqlite = Arc::new(SqliteStore::connect("sqlite::memory:").await.unwrap());
        sqlite.migrate().await.unwrap();
        let now = OffsetDateTime::now_utc();
        let acme = OrgId::parse("acme").unwrap();
        let (s, t) = (session("acme", 1, now), session("acme", 2, now));
        sqlite.insert(&s).await.unwrap();
        sqlite.insert(&t).await.unwrap();
        let cache = SessionCache::new(sqlite.clone());
        let status = async |id| cache.get(&acme, id).await.unwrap().unwrap().status;
        let new = status(&s.id).await;
        status(&t.id).await;
        // Another process writes both (straight to the database).
        for id in [&s.id, &t.id] {
            sqlite
                .record_observed(id, &SessionPatch::status(SessionStatus::Connected), now)
                .await
                .unwrap();
        }
        assert_eq!(status(&s.id).await, new, "served from memory");
        cache.changed(Invalidation::ApiKey(wagate_domain::ApiKeyId::from_ulid(
            ulid::Ulid::new(),
        )));
        assert_eq!(
            status(&s.id).await,
            new,
            "a key's change is not a session's"
        );
        cache.changed(Invalidation::Session(s.id));
        assert_eq!(status(&s.id).await, SessionStatus::Connected);
        assert_eq!(status(&t.id).await, new);
        cache.changed(Invalidation::Everything);
        assert_eq!(status(&t.id).await, SessionStatus::Connected);

        // Unheard changes last at most the entries' lifetime.
        let brief = SessionCache::with_ttl(sqlite.clone(), Duration::ZERO);
        assert_eq!(
            brief.get(&acme, &s.id).await.unwrap().unwrap().status,
            SessionStatus::Connected
        );
        sqlite
            .record_observed(
                &s.id,
                &SessionPatch::status(SessionStatus::Disconnected),
                now,
            )
            .await
            .unwrap();
        assert_eq!(
            brief.get(&acme, &s.id).await.unwrap().unwrap().status,
            SessionStatus::Disconnected
        );
    }
}
