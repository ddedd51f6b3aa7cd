use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use time::{Duration, OffsetDateTime};
use wagate_domain::{ApiKey, ApiKeyId, ApiKeySecret, Clock, Principal, PrincipalKind};
use wagate_store::{ApiKeyCache, ApiKeyStore, hash_secret};

use crate::{AuthError, Authenticator};

/// How long a verified key is trusted from memory before the store is asked
/// again (bounds how late a revocation on *another* node is seen).
const CACHE_TTL: Duration = Duration::seconds(30);
/// `lastUsedAt` is written at most this often per key.
const TOUCH_EVERY: Duration = Duration::seconds(60);
/// Upper bound on cached keys; the cache is emptied when it is reached.
const CACHE_MAX: usize = 10_000;

#[derive(Debug)]
struct Cached {
    key: ApiKey,
    fetched_at: OffsetDateTime,
    /// Unix seconds of the last `lastUsedAt` write (or of the stored value).
    touched: AtomicI64,
}

/// Verifies `wgk_…` API keys against the [`ApiKeyStore`], with a short
/// in-memory cache keyed by the secret's hash.
pub struct ApiKeyVerifier {
    store: Arc<dyn ApiKeyStore>,
    clock: Arc<dyn Clock>,
    cache: RwLock<HashMap<[u8; 32], Arc<Cached>>>,
    /// Bumped by every invalidation: a lookup that began before a revocation
    /// must not put the key it read back into the cache.
    epoch: AtomicU64,
}

// The cache holds key records and hashes: print only its size.
impl std::fmt::Debug for ApiKeyVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cached = self.cache.read().map(|c| c.len()).unwrap_or(0);
        f.debug_struct("ApiKeyVerifier")
            .field("cached_keys", &cached)
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
        }
    }

    fn cached(&self, hash: &[u8; 32], now: OffsetDateTime) -> Option<Arc<Cached>> {
        let cache = self.cache.read().ok()?;
        cache
            .get(hash)
            // A clock that stepped back counts as expired, not as fresh forever.
            .filter(|c| (Duration::ZERO..CACHE_TTL).contains(&(now - c.fetched_at)))
            .cloned()
    }

    async fn fetch(
        &self,
        hash: [u8; 32],
        now: OffsetDateTime,
    ) -> Result<Option<Arc<Cached>>, AuthError> {
        let epoch = self.epoch.load(Ordering::Acquire);
        let key = self
            .store
            .find_by_hash(&hash)
            .await
            .map_err(|e| AuthError::Unavailable(e.to_string()))?;
        let Some(key) = key else { return Ok(None) };
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
        let entry = match self.cached(&hash, now) {
            Some(entry) => entry,
            None => self
                .fetch(hash, now)
                .await?
                .ok_or_else(|| AuthError::Rejected("unknown or revoked API key".into()))?,
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
    use wagate_domain::{ApiKeyName, Capability, CapabilitySet, NewApiKey, OrgId};
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

    #[tokio::test]
    async fn last_used_is_written_at_most_once_a_minute() {
        let (store, clock, v, _d) = setup().await;
        let (secret, _) = add_key(&store, clock.now(), None, 5).await;
        let first = clock.now();
        v.authenticate(secret.expose()).await.unwrap();
        let hash = hash_secret(&secret);
        let stored = || async {
            store
                .find_by_hash(&hash)
                .await
                .unwrap()
                .unwrap()
                .last_used_at
        };
        wait_for(|| async { stored().await.is_some() }).await;
        assert_eq!(
            stored().await.map(|t| t.unix_timestamp()),
            Some(first.unix_timestamp())
        );
        clock.advance(Duration::seconds(30));
        v.authenticate(secret.expose()).await.unwrap();
        clock.advance(Duration::seconds(31));
        let third = clock.now();
        v.authenticate(secret.expose()).await.unwrap();
        wait_for(|| async {
            stored().await.map(|t| t.unix_timestamp()) == Some(third.unix_timestamp())
        })
        .await;
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
