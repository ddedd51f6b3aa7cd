use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use time::{Duration, OffsetDateTime};
use wagate_domain::{
    ApiKey, ApiKeyId, ApiKeySecret, Clock, NewApiKey, OrgId, Principal, PrincipalKind,
};
use wagate_store::{
    ApiKeyCache, ApiKeyStore, Invalidation, InvalidationListener, StoreError, hash_secret,
};

use crate::{AuthError, Authenticator};

/// How long a verified key is trusted from memory before the store is asked
/// again (bounds how late a revocation on *another* node is seen).
const CACHE_TTL: Duration = Duration::seconds(30);
/// `lastUsedAt` is written at most this often per key.
const TOUCH_EVERY: Duration = Duration::seconds(60);
/// Upper bound on cached keys; the cache is emptied when it is reached.
const CACHE_MAX: usize = 10_000;
/// How long a hash the store did not know is refused from memory before the
/// store is asked again (bounds how late a key created on *another* node is
/// seen by someone who tried its exact secret before it existed, which the
/// 2^256 secrets make impossible in practice).
const UNKNOWN_TTL: Duration = Duration::seconds(30);
/// Upper bound on remembered unknown hashes; the oldest is dropped first, so
/// a flood of made-up keys costs bounded memory.
const UNKNOWN_MAX: usize = 10_000;

#[derive(Debug)]
struct Cached {
    key: ApiKey,
    fetched_at: OffsetDateTime,
    /// Unix seconds of the last `lastUsedAt` write (or of the stored value).
    touched: AtomicI64,
}

/// Whether an entry made at `at` is still fresh at `now` (a clock that
/// stepped back counts as expired, not as fresh forever).
fn fresh(at: OffsetDateTime, now: OffsetDateTime, ttl: Duration) -> bool {
    (Duration::ZERO..ttl).contains(&(now - at))
}

/// Hashes of well-formed keys the store did not know: the negative cache.
#[derive(Debug, Default)]
struct UnknownHashes {
    /// When each hash was found missing.
    seen: HashMap<[u8; 32], OffsetDateTime>,
    /// The same entries, oldest first. An entry that was forgotten or
    /// renewed since stays here until it reaches the front (it is then
    /// skipped), and the queue is rebuilt if such entries pile up.
    order: VecDeque<([u8; 32], OffsetDateTime)>,
}

impl UnknownHashes {
    fn contains(&self, hash: &[u8; 32], now: OffsetDateTime) -> bool {
        self.seen
            .get(hash)
            .is_some_and(|at| fresh(*at, now, UNKNOWN_TTL))
    }

    /// Remembers `hash` as unknown at `now`, keeping at most `max` entries.
    fn insert(&mut self, hash: [u8; 32], now: OffsetDateTime, max: usize) {
        if self.contains(&hash, now) {
            return; // a concurrent lookup of the same hash got here first
        }
        // Drop from the front what is stale, expired, or over the bound.
        while let Some(&(front, at)) = self.order.front() {
            let current = self.seen.get(&front) == Some(&at);
            if current && fresh(at, now, UNKNOWN_TTL) && self.seen.len() < max {
                break;
            }
            self.order.pop_front();
            if current {
                self.seen.remove(&front);
            }
        }
        match self.seen.entry(hash) {
            // Expired (or from a clock that stepped back): renewed.
            Entry::Occupied(mut e) => {
                e.insert(now);
            }
            Entry::Vacant(e) => {
                if max == 0 {
                    return;
                }
                e.insert(now);
            }
        }
        self.order.push_back((hash, now));
        if self.order.len() > max.saturating_mul(2) {
            // Only forgotten or renewed entries make the queue longer than
            // the map: rebuild it from the map, oldest first.
            let mut live: Vec<_> = self.seen.iter().map(|(h, at)| (*h, *at)).collect();
            live.sort_unstable_by_key(|(_, at)| *at);
            self.order = live.into();
        }
    }

    fn remove(&mut self, hash: &[u8; 32]) {
        self.seen.remove(hash);
    }

    fn len(&self) -> usize {
        self.seen.len()
    }
}

/// Verifies `wgk_…` API keys against the [`ApiKeyStore`], with a short
/// in-memory cache keyed by the secret's hash: of the keys found (30 s), and
/// of the well-formed keys not found (30 s, at most 10,000 hashes, oldest
/// dropped first), so a repeated unknown key costs one query, not one per
/// request.
///
/// The verifier is also an [`ApiKeyStore`] itself, passing every call to
/// the store it wraps: the API-key use cases write through it, so a key
/// created on this node works at once even if its hash was looked up (and
/// found missing) just before, and a key revoked through it leaves the
/// cache at once.
pub struct ApiKeyVerifier {
    store: Arc<dyn ApiKeyStore>,
    clock: Arc<dyn Clock>,
    cache: RwLock<HashMap<[u8; 32], Arc<Cached>>>,
    /// Bumped by every invalidation: a lookup that began before a revocation
    /// must not put the key it read back into the cache.
    epoch: AtomicU64,
    unknown: RwLock<UnknownHashes>,
    /// Bumped by every key created through this verifier: a lookup that
    /// began before a creation must not remember its hash as unknown.
    created: AtomicU64,
    /// Bound on `unknown` ([`UNKNOWN_MAX`]; tests lower it).
    unknown_max: usize,
}

// The caches hold key records and hashes: print only their sizes.
impl std::fmt::Debug for ApiKeyVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cached = self.cache.read().map(|c| c.len()).unwrap_or(0);
        let unknown = self.unknown.read().map(|u| u.len()).unwrap_or(0);
        f.debug_struct("ApiKeyVerifier")
            .field("cached_keys", &cached)
            .field("unknown_hashes", &unknown)
            .finish_non_exhaustive()
    }
}

impl ApiKeyVerifier {
    /// A verifier over `store`.
    pub fn new(store: Arc<dyn ApiKeyStore>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            cache: RwLock::new(HashMap::new()),
            epoch: AtomicU64::new(0),
            unknown: RwLock::new(UnknownHashes::default()),
            created: AtomicU64::new(0),
            unknown_max: UNKNOWN_MAX,
        }
    }

    fn cached(&self, hash: &[u8; 32], now: OffsetDateTime) -> Option<Arc<Cached>> {
        let cache = self.cache.read().ok()?;
        cache
            .get(hash)
            .filter(|c| fresh(c.fetched_at, now, CACHE_TTL))
            .cloned()
    }

    fn known_unknown(&self, hash: &[u8; 32], now: OffsetDateTime) -> bool {
        self.unknown
            .read()
            .is_ok_and(|unknown| unknown.contains(hash, now))
    }

    async fn fetch(
        &self,
        hash: [u8; 32],
        now: OffsetDateTime,
    ) -> Result<Option<Arc<Cached>>, AuthError> {
        let epoch = self.epoch.load(Ordering::Acquire);
        let created = self.created.load(Ordering::Acquire);
        let key = self
            .store
            .find_by_hash(&hash)
            .await
            .map_err(|e| AuthError::Unavailable(e.to_string()))?;
        let Some(key) = key else {
            if let Ok(mut unknown) = self.unknown.write() {
                // Checked under the lock `forget_unknown` also takes: a key
                // created since the lookup began is not remembered as unknown.
                if self.created.load(Ordering::Acquire) == created {
                    unknown.insert(hash, now, self.unknown_max);
                }
            }
            return Ok(None);
        };
        let touched = key.last_used_at.map_or(i64::MIN, |t| t.unix_timestamp());
        let entry = Arc::new(Cached {
            key,
            fetched_at: now,
            touched: AtomicI64::new(touched),
        });
        if let Ok(mut cache) = self.cache.write() {
            // Checked under the lock `invalidate` also takes: no revocation
            // can slip between this check and the insert.
            if self.epoch.load(Ordering::Acquire) == epoch {
                if cache.len() >= CACHE_MAX {
                    cache.clear();
                }
                cache.insert(hash, entry.clone());
            }
        }
        Ok(Some(entry))
    }

    /// Forgets that `hash` was unknown (a key with it was just created).
    fn forget_unknown(&self, hash: &[u8; 32]) {
        if let Ok(mut unknown) = self.unknown.write() {
            self.created.fetch_add(1, Ordering::AcqRel);
            unknown.remove(hash);
        }
    }
    /// Writes `lastUsedAt` when the last write is a minute old, off the
    /// request's path.
    fn touch(&self, entry: &Cached, now: OffsetDateTime) {
        let last = entry.touched.load(Ordering::Relaxed);
        let now_s = now.unix_timestamp();
        if now_s.saturating_sub(last) < TOUCH_EVERY.whole_seconds() {
            return;
        }
        // Only the request that wins the swap writes.
        if entry
            .touched
            .compare_exchange(last, now_s, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let store = self.store.clone();
        let id = entry.key.id;
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = store.touch_key(&id, now).await {
                    tracing::warn!(key = %id, error = %e, "could not record API key use");
                }
            });
        }
    }
}

impl ApiKeyCache for ApiKeyVerifier {
    fn invalidate(&self, id: &ApiKeyId) {
        if let Ok(mut cache) = self.cache.write() {
            self.epoch.fetch_add(1, Ordering::AcqRel);
            cache.retain(|_, c| c.key.id != *id);
        }
    }
}

/// Told of revocations on every node sharing the database (PostgreSQL
/// `LISTEN`/`NOTIFY`): a key revoked on another node is refused here as
/// soon as that is heard, and after 30 s at the latest should it go
/// unheard.
impl InvalidationListener for ApiKeyVerifier {
    fn changed(&self, what: Invalidation) {
        match what {
            Invalidation::ApiKey(id) => self.invalidate(&id),
            Invalidation::Everything => {
                if let Ok(mut cache) = self.cache.write() {
                    self.epoch.fetch_add(1, Ordering::AcqRel);
                    cache.clear();
                }
            }
            Invalidation::Session(_) => {}
        }
    }
}

/// Every call goes to the wrapped store; writes also keep this node's
/// caches exact (see [`ApiKeyVerifier`]).
#[async_trait]
impl ApiKeyStore for ApiKeyVerifier {
    async fn insert_key(&self, key: &NewApiKey) -> Result<(), StoreError> {
        self.store.insert_key(key).await?;
        self.forget_unknown(&key.secret_hash);
        Ok(())
    }

    async fn find_by_hash(&self, hash: &[u8; 32]) -> Result<Option<ApiKey>, StoreError> {
        self.store.find_by_hash(hash).await
    }

    async fn list_keys(&self, org: &OrgId) -> Result<Vec<ApiKey>, StoreError> {
        self.store.list_keys(org).await
    }

    async fn revoke_key(
        &self,
        org: Option<&OrgId>,
        id: &ApiKeyId,
        now: OffsetDateTime,
    ) -> Result<Option<ApiKey>, StoreError> {
        let revoked = self.store.revoke_key(org, id, now).await;
        // Also after a failure: the write may have happened all the same.
        self.invalidate(id);
        revoked
    }

    async fn touch_key(&self, id: &ApiKeyId, at: OffsetDateTime) -> Result<(), StoreError> {
        self.store.touch_key(id, at).await
    }
}

#[async_trait]
impl Authenticator for ApiKeyVerifier {
    async fn authenticate(&self, token: &str) -> Result<Option<Principal>, AuthError> {
        if !token.starts_with(ApiKeySecret::PREFIX) {
            return Ok(None);
        }
        let secret = ApiKeySecret::parse(token)
            .map_err(|_| AuthError::Rejected("malformed API key".into()))?;
        let hash = hash_secret(&secret);
        let now = self.clock.now();
        let unknown = || AuthError::Rejected("unknown or revoked API key".into());
        let entry = match self.cached(&hash, now) {
            Some(entry) => entry,
            None if self.known_unknown(&hash, now) => return Err(unknown()),
            None => self.fetch(hash, now).await?.ok_or_else(unknown)?,
        };
        if entry.key.is_expired(now) {
            return Err(AuthError::Rejected(format!(
                "API key {} expired",
                entry.key.id
            )));
        }
        self.touch(&entry, now);
        Ok(Some(Principal {
            org: entry.key.org.clone(),
            capabilities: entry.key.capabilities,
            kind: PrincipalKind::ApiKey(entry.key.id),
            credential_expires_at: entry.key.expires_at,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use wagate_domain::{ApiKeyName, Capability, CapabilitySet};
    use wagate_store::{Entropy, SqliteStore, mint_api_key};

    #[derive(Debug)]
    struct TestClock(Mutex<OffsetDateTime>);
    impl Clock for TestClock {
        fn now(&self) -> OffsetDateTime {
            *self.0.lock().unwrap()
        }
    }
    impl TestClock {
        fn advance(&self, d: Duration) {
            *self.0.lock().unwrap() += d;
        }
    }

    #[derive(Debug, Clone, Copy)]
    struct FixedEntropy(u8);
    impl Entropy for FixedEntropy {
        fn fill(&self, buf: &mut [u8]) {
            buf.fill(self.0);
        }
    }

    async fn setup() -> (
        Arc<SqliteStore>,
        Arc<TestClock>,
        ApiKeyVerifier,
        tempfile::TempDir,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(
            SqliteStore::connect(&format!("sqlite://{}/k.db", dir.path().display()))
                .await
                .unwrap(),
        );
        store.migrate().await.unwrap();
        let clock = Arc::new(TestClock(Mutex::new(OffsetDateTime::now_utc())));
        let verifier = ApiKeyVerifier::new(store.clone(), clock.clone());
        (store, clock, verifier, dir)
    }

    async fn add_key(
        store: &SqliteStore,
        now: OffsetDateTime,
        expires_at: Option<OffsetDateTime>,
        seed: u8,
    ) -> (ApiKeySecret, ApiKeyId) {
        let (secret, hash) = mint_api_key(&FixedEntropy(seed));
        let id = ApiKeyId::parse(&format!("key_{:026}", seed)).unwrap();
        let key = ApiKey {
            id,
            org: OrgId::parse("acme").unwrap(),
            name: ApiKeyName::parse("ci").unwrap(),
            capabilities: CapabilitySet::of([Capability::Read]),
            prefix: secret.display_prefix().into(),
            created_at: now,
            expires_at,
            last_used_at: None,
        };
        store
            .insert_key(&NewApiKey {
                key,
                secret_hash: hash,
            })
            .await
            .unwrap();
        (secret, id)
    }

    #[tokio::test]
    async fn accepts_valid_keys_and_ignores_other_tokens() {
        let (store, clock, v, _d) = setup().await;
        let (secret, id) = add_key(&store, clock.now(), None, 1).await;
        let p = v.authenticate(secret.expose()).await.unwrap().unwrap();
        assert_eq!(p.org.as_str(), "acme");
        assert_eq!(p.kind, PrincipalKind::ApiKey(id));
        assert_eq!(v.authenticate("eyJhbGciOi.x.y").await, Ok(None));
        assert!(matches!(
            v.authenticate("wgk_short").await,
            Err(AuthError::Rejected(_))
        ));
        let (unknown, _) = mint_api_key(&FixedEntropy(99));
        assert!(matches!(
            v.authenticate(unknown.expose()).await,
            Err(AuthError::Rejected(_))
        ));
    }

    /// A store whose key lookups read, then wait for the test's go-ahead.
    #[derive(Debug)]
    struct GatedStore {
        inner: Arc<SqliteStore>,
        read: tokio::sync::Notify,
        gate: tokio::sync::Semaphore,
    }

    #[async_trait]
    impl ApiKeyStore for GatedStore {
        async fn insert_key(&self, key: &NewApiKey) -> Result<(), wagate_store::StoreError> {
            self.inner.insert_key(key).await
        }
        async fn find_by_hash(
            &self,
            hash: &[u8; 32],
        ) -> Result<Option<ApiKey>, wagate_store::StoreError> {
            let found = self.inner.find_by_hash(hash).await;
            self.read.notify_one();
            let _permit = self.gate.acquire().await;
            found
        }
        async fn list_keys(&self, org: &OrgId) -> Result<Vec<ApiKey>, wagate_store::StoreError> {
            self.inner.list_keys(org).await
        }
        async fn revoke_key(
            &self,
            org: Option<&OrgId>,
            id: &ApiKeyId,
            now: OffsetDateTime,
        ) -> Result<Option<ApiKey>, wagate_store::StoreError> {
            self.inner.revoke_key(org, id, now).await
        }
        async fn touch_key(
            &self,
            id: &ApiKeyId,
            at: OffsetDateTime,
        ) -> Result<(), wagate_store::StoreError> {
            self.inner.touch_key(id, at).await
        }
    }

    #[tokio::test]
    async fn a_lookup_racing_a_revocation_does_not_cache_the_revoked_key() {
        let (store, clock, _, _d) = setup().await;
        let (secret, id) = add_key(&store, clock.now(), None, 6).await;
        let gated = Arc::new(GatedStore {
            inner: store.clone(),
            read: tokio::sync::Notify::new(),
            gate: tokio::sync::Semaphore::new(0),
        });
        let v = Arc::new(ApiKeyVerifier::new(gated.clone(), clock.clone()));
        let in_flight = {
            let (v, token) = (v.clone(), secret.expose().to_owned());
            tokio::spawn(async move { v.authenticate(&token).await })
        };
        // The lookup has read the live key and waits; now the key is revoked.
        gated.read.notified().await;
        store.revoke_key(None, &id, clock.now()).await.unwrap();
        v.invalidate(&id);
        gated.gate.add_permits(10);
        // It began before the revocation, so it may still pass …
        let _ = in_flight.await.unwrap();
        // … but the key must not have been cached.
        assert!(matches!(
            v.authenticate(secret.expose()).await,
            Err(AuthError::Rejected(_))
        ));
    }

    #[tokio::test]
    async fn revocation_is_seen_at_once_after_invalidate() {
        let (store, clock, v, _d) = setup().await;
        let (secret, id) = add_key(&store, clock.now(), None, 2).await;
        assert!(v.authenticate(secret.expose()).await.is_ok());
        store.revoke_key(None, &id, clock.now()).await.unwrap();
        // Still cached until invalidated (another node's revocation waits for the TTL).
        assert!(v.authenticate(secret.expose()).await.is_ok());
        v.invalidate(&id);
        assert!(matches!(
            v.authenticate(secret.expose()).await,
            Err(AuthError::Rejected(_))
        ));
    }

    #[tokio::test]
    async fn cache_expires_and_expired_keys_are_refused() {
        let (store, clock, v, _d) = setup().await;
        let (secret, id) = add_key(
            &store,
            clock.now(),
            Some(clock.now() + Duration::minutes(5)),
            3,
        )
        .await;
        assert!(v.authenticate(secret.expose()).await.is_ok());
        store.revoke_key(None, &id, clock.now()).await.unwrap();
        clock.advance(CACHE_TTL);
        assert!(
            v.authenticate(secret.expose()).await.is_err(),
            "TTL passed: the store is asked again"
        );

        let (secret, _) = add_key(
            &store,
            clock.now(),
            Some(clock.now() + Duration::minutes(5)),
            4,
        )
        .await;
        assert!(v.authenticate(secret.expose()).await.is_ok());
        clock.advance(Duration::minutes(5));
        assert!(
            matches!(v.authenticate(secret.expose()).await, Err(AuthError::Rejected(m)) if m.contains("expired"))
        );
    }

    /// The SQLite store, counting the key lookups that reach it and
    /// recording every `lastUsedAt` write asked of it (at the call, before
    /// the write itself).
    #[derive(Debug)]
    struct CountingStore {
        inner: Arc<SqliteStore>,
        lookups: std::sync::atomic::AtomicUsize,
        touches: Mutex<Vec<(ApiKeyId, i64)>>,
    }

    impl CountingStore {
        fn new(inner: Arc<SqliteStore>) -> Arc<Self> {
            Arc::new(Self {
                inner,
                lookups: std::sync::atomic::AtomicUsize::new(0),
                touches: Mutex::new(Vec::new()),
            })
        }

        fn lookups(&self) -> usize {
            self.lookups.load(Ordering::SeqCst)
        }

        fn touches(&self) -> Vec<(ApiKeyId, i64)> {
            self.touches.lock().unwrap().clone()
        }
    }

    #[async_trait]
    impl ApiKeyStore for CountingStore {
        async fn insert_key(&self, key: &NewApiKey) -> Result<(), StoreError> {
            self.inner.insert_key(key).await
        }
        async fn find_by_hash(&self, hash: &[u8; 32]) -> Result<Option<ApiKey>, StoreError> {
            self.lookups.fetch_add(1, Ordering::SeqCst);
            self.inner.find_by_hash(hash).await
        }
        async fn list_keys(&self, org: &OrgId) -> Result<Vec<ApiKey>, StoreError> {
            self.inner.list_keys(org).await
        }
        async fn revoke_key(
            &self,
            org: Option<&OrgId>,
            id: &ApiKeyId,
            now: OffsetDateTime,
        ) -> Result<Option<ApiKey>, StoreError> {
            self.inner.revoke_key(org, id, now).await
        }
        async fn touch_key(&self, id: &ApiKeyId, at: OffsetDateTime) -> Result<(), StoreError> {
            self.touches
                .lock()
                .unwrap()
                .push((*id, at.unix_timestamp()));
            self.inner.touch_key(id, at).await
        }
    }

    /// A verifier over a [`CountingStore`] on `store`.
    fn counted(
        store: &Arc<SqliteStore>,
        clock: &Arc<TestClock>,
    ) -> (Arc<CountingStore>, ApiKeyVerifier) {
        let counting = CountingStore::new(store.clone());
        let v = ApiKeyVerifier::new(counting.clone(), clock.clone());
        (counting, v)
    }

    fn is_rejected(r: Result<Option<Principal>, AuthError>) -> bool {
        matches!(r, Err(AuthError::Rejected(_)))
    }

    #[tokio::test]
    async fn a_revocation_heard_from_another_node_is_refused_at_once() {
        let (store, clock, v, _d) = setup().await;
        let (secret, id) = add_key(&store, clock.now(), None, 6).await;
        let (other, _) = add_key(&store, clock.now(), None, 7).await;
        assert!(v.authenticate(secret.expose()).await.unwrap().is_some());
        assert!(v.authenticate(other.expose()).await.unwrap().is_some());
        // Another node revokes both, straight in the database: cached here.
        for key in [&secret, &other] {
            let key = store
                .find_by_hash(&hash_secret(key))
                .await
                .unwrap()
                .unwrap();
            store.revoke_key(None, &key.id, clock.now()).await.unwrap();
        }
        assert!(v.authenticate(secret.expose()).await.unwrap().is_some());
        let session = wagate_domain::SessionId::parse("sess_01HZY0N4Q8ZK3J4M7ZC9W4X2QF").unwrap();
        InvalidationListener::changed(&v, Invalidation::Session(session));
        assert!(v.authenticate(secret.expose()).await.unwrap().is_some());
        // Heard: refused at once, the other key still cached until told.
        InvalidationListener::changed(&v, Invalidation::ApiKey(id));
        assert!(is_rejected(v.authenticate(secret.expose()).await));
        assert!(v.authenticate(other.expose()).await.unwrap().is_some());
        InvalidationListener::changed(&v, Invalidation::Everything);
        assert!(is_rejected(v.authenticate(other.expose()).await));
    }

    #[tokio::test]
    async fn last_used_is_written_at_most_once_a_minute() {
        let (store, clock, _, _d) = setup().await;
        let (counting, v) = counted(&store, &clock);
        let (secret, id) = add_key(&store, clock.now(), None, 5).await;
        let hash = hash_secret(&secret);
        // What the database holds, read past the verifier and its caches.
        let stored = || async {
            store
                .find_by_hash(&hash)
                .await
                .unwrap()
                .unwrap()
                .last_used_at
                .map(|t| t.unix_timestamp())
        };
        assert_eq!(stored().await, None);

        let first = clock.now().unix_timestamp();
        v.authenticate(secret.expose()).await.unwrap();
        wait_for(|| async { stored().await == Some(first) }).await;

        // Within the minute: no write, also after the key cache expired (30 s)
        // and the key was read again with the stored lastUsedAt.
        for step in [1, 29, 29] {
            clock.advance(Duration::seconds(step));
            v.authenticate(secret.expose()).await.unwrap();
        }
        assert_eq!(counting.lookups(), 2, "the key was read again after 30 s");
        clock.advance(Duration::seconds(2)); // 61 s after the first write
        let third = clock.now().unix_timestamp();
        v.authenticate(secret.expose()).await.unwrap();
        wait_for(|| async { stored().await == Some(third) }).await;

        // A write asked for in between would have reached the store before
        // this later one (spawned tasks run in order on the test's runtime).
        assert_eq!(
            counting.touches(),
            [(id, first), (id, third)],
            "exactly one write per minute of use"
        );
    }

    #[tokio::test]
    async fn an_unknown_key_costs_one_query_then_is_refused_from_memory() {
        let (store, clock, _, _d) = setup().await;
        let (counting, v) = counted(&store, &clock);
        let (unknown, _) = mint_api_key(&FixedEntropy(42));
        for _ in 0..5 {
            assert!(is_rejected(v.authenticate(unknown.expose()).await));
        }
        assert_eq!(counting.lookups(), 1, "only the first lookup queries");
        // Malformed keys never reach the store, nor the negative cache.
        assert!(is_rejected(v.authenticate("wgk_short").await));
        assert_eq!(counting.lookups(), 1);
        assert_eq!(v.unknown.read().unwrap().len(), 1);

        clock.advance(UNKNOWN_TTL - Duration::seconds(1));
        assert!(is_rejected(v.authenticate(unknown.expose()).await));
        assert_eq!(counting.lookups(), 1, "still inside the TTL");
        clock.advance(Duration::seconds(1));
        assert!(is_rejected(v.authenticate(unknown.expose()).await));
        assert_eq!(
            counting.lookups(),
            2,
            "TTL passed: the store is asked again"
        );
        assert!(is_rejected(v.authenticate(unknown.expose()).await));
        assert_eq!(counting.lookups(), 2, "and the answer remembered again");

        // A clock that stepped back does not make an entry fresh forever.
        clock.advance(-Duration::seconds(5));
        assert!(is_rejected(v.authenticate(unknown.expose()).await));
        assert_eq!(counting.lookups(), 3);
    }

    #[tokio::test]
    async fn unknown_hashes_are_bounded_oldest_first() {
        let (store, clock, _, _d) = setup().await;
        let counting = CountingStore::new(store.clone());
        let mut v = ApiKeyVerifier::new(counting.clone(), clock.clone());
        v.unknown_max = 3;
        let keys: Vec<_> = (0..4u8)
            .map(|n| mint_api_key(&FixedEntropy(100 + n)).0)
            .collect();
        for key in &keys {
            assert!(is_rejected(v.authenticate(key.expose()).await));
        }
        assert_eq!(counting.lookups(), 4);
        assert_eq!(v.unknown.read().unwrap().len(), 3, "the bound holds");
        // The newest are remembered …
        for key in &keys[1..] {
            assert!(is_rejected(v.authenticate(key.expose()).await));
        }
        assert_eq!(counting.lookups(), 4);
        // … the oldest was dropped to make room.
        assert!(is_rejected(v.authenticate(keys[0].expose()).await));
        assert_eq!(counting.lookups(), 5);

        // A flood of made-up keys: memory stays bounded, queue included.
        for n in 0..200u8 {
            clock.advance(Duration::milliseconds(10));
            let (key, _) = mint_api_key(&FixedEntropy(n));
            assert!(is_rejected(v.authenticate(key.expose()).await));
        }
        let unknown = v.unknown.read().unwrap();
        assert_eq!(unknown.len(), 3);
        assert!(unknown.order.len() <= 6, "{}", unknown.order.len());
        assert!(format!("{v:?}").contains("unknown_hashes: 3"));
    }

    #[tokio::test]
    async fn a_key_created_after_its_hash_was_refused_works_at_once() {
        let (store, clock, _, _d) = setup().await;
        let (counting, v) = counted(&store, &clock);
        let (secret, _) = mint_api_key(&FixedEntropy(7));
        assert!(is_rejected(v.authenticate(secret.expose()).await));
        assert!(is_rejected(v.authenticate(secret.expose()).await));
        assert_eq!(counting.lookups(), 1, "remembered as unknown");

        // Created through the verifier (as the API-key use cases do).
        let (created, id) = key_with(&secret, 7, clock.now());
        v.insert_key(&created).await.unwrap();
        let p = v.authenticate(secret.expose()).await.unwrap().unwrap();
        assert_eq!(p.kind, PrincipalKind::ApiKey(id));

        // Created past this node (another gateway, the CLI): seen once the
        // negative entry has expired.
        let (secret, _) = mint_api_key(&FixedEntropy(8));
        assert!(is_rejected(v.authenticate(secret.expose()).await));
        store
            .insert_key(&key_with(&secret, 8, clock.now()).0)
            .await
            .unwrap();
        assert!(is_rejected(v.authenticate(secret.expose()).await));
        clock.advance(UNKNOWN_TTL);
        assert!(v.authenticate(secret.expose()).await.is_ok());

        // Revoked through the verifier: refused at once.
        v.revoke_key(None, &id, clock.now()).await.unwrap();
        assert!(is_rejected(
            v.authenticate(created_secret(7).expose()).await
        ));
    }

    #[tokio::test]
    async fn a_lookup_racing_a_creation_does_not_remember_the_hash_as_unknown() {
        let (store, clock, _, _d) = setup().await;
        let gated = Arc::new(GatedStore {
            inner: store.clone(),
            read: tokio::sync::Notify::new(),
            gate: tokio::sync::Semaphore::new(0),
        });
        let v = Arc::new(ApiKeyVerifier::new(gated.clone(), clock.clone()));
        let secret = created_secret(9);
        let in_flight = {
            let (v, token) = (v.clone(), secret.expose().to_owned());
            tokio::spawn(async move { v.authenticate(&token).await })
        };
        // The lookup has found nothing and waits; now the key is created.
        gated.read.notified().await;
        v.insert_key(&key_with(&secret, 9, clock.now()).0)
            .await
            .unwrap();
        gated.gate.add_permits(10);
        assert!(
            is_rejected(in_flight.await.unwrap()),
            "it read before the insert"
        );
        assert!(v.authenticate(secret.expose()).await.is_ok());
    }

    #[tokio::test]
    async fn a_failed_lookup_is_not_remembered() {
        let (store, clock, _, _d) = setup().await;
        let (counting, v) = counted(&store, &clock);
        let secret = created_secret(10);
        store.close().await;
        assert!(matches!(
            v.authenticate(secret.expose()).await,
            Err(AuthError::Unavailable(_))
        ));
        assert!(matches!(
            v.authenticate(secret.expose()).await,
            Err(AuthError::Unavailable(_))
        ));
        assert_eq!(counting.lookups(), 2);
        assert_eq!(v.unknown.read().unwrap().len(), 0);
    }

    /// The secret [`FixedEntropy`]`(seed)` mints.
    fn created_secret(seed: u8) -> ApiKeySecret {
        mint_api_key(&FixedEntropy(seed)).0
    }

    /// A new key record for `secret`, with an id made from `seed`.
    fn key_with(secret: &ApiKeySecret, seed: u8, now: OffsetDateTime) -> (NewApiKey, ApiKeyId) {
        let id = ApiKeyId::parse(&format!("key_{:026}", seed)).unwrap();
        let key = ApiKey {
            id,
            org: OrgId::parse("acme").unwrap(),
            name: ApiKeyName::parse("ci").unwrap(),
            capabilities: CapabilitySet::of([Capability::Read]),
            prefix: secret.display_prefix().into(),
            created_at: now,
            expires_at: None,
            last_used_at: None,
        };
        let new = NewApiKey {
            key,
            secret_hash: hash_secret(secret),
        };
        (new, id)
    }

    /// Polls a condition the spawned write will make true.
    async fn wait_for<F, Fut>(mut cond: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        for _ in 0..500 {
            if cond().await {
                return;
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        panic!("condition not reached");
    }
}
