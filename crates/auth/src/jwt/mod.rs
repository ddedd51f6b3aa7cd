//! Login JWTs minted by the frontend, checked against its JWKS.
//!
//! The order of the checks matters: everything that needs no key (shape,
//! size, algorithm allow-list, refused header members, the required `typ`)
//! comes before the key lookup, the key lookup before any signature work,
//! and the signature before any claim is trusted.

mod jwks;
mod token;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::task::AbortHandle;
use wagate_domain::{
    ApiKeySecret, CapabilitySet, Clock, OrgId, Principal, PrincipalKind, Role, SystemClock,
};

pub use jwks::{JwksCache, JwksError, KeySet};

use crate::{AuthError, Authenticator, MAX_TOKEN_LEN, RolePolicy};
use token::{ClaimNames, Claims, Expect, Rejection};

/// Settings of the [`JwtVerifier`] (the `auth.jwt.*` configuration keys).
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// URL of the frontend's JWKS (`auth.jwt.jwks_url`).
    pub jwks_url: String,
    /// Required `iss`, checked when set.
    pub issuer: Option<String>,
    /// Required `aud` (or one of them), checked when set.
    pub audience: Option<String>,
    /// Required header `typ`, checked when set (RFC 8725 §3.11 explicit
    /// typing): a media type compared ASCII case-insensitively, with the
    /// `application/` prefix optional on either side, so `at+jwt` matches
    /// `AT+JWT` and `application/at+jwt`. Unset: `typ` is not looked at.
    pub required_typ: Option<String>,
    /// Claim holding the organization id (default `org_id`).
    pub org_claim: String,
    /// Claim holding the role (default `role`).
    pub role_claim: String,
    /// Clock skew allowed on `exp` and `nbf`, in seconds (default 60).
    pub leeway_secs: u64,
    /// How often the JWKS is fetched again (default 5 minutes; raised to
    /// 10 ms if smaller).
    pub refresh_interval: Duration,
    /// HTTP timeout of each JWKS fetch, connecting included (default 5 s).
    pub fetch_timeout: Duration,
    /// Maps the role claim to capabilities.
    pub policy: RolePolicy,
}

impl JwtConfig {
    /// Default claim holding the organization id.
    pub const DEFAULT_ORG_CLAIM: &'static str = "org_id";
    /// Default claim holding the role.
    pub const DEFAULT_ROLE_CLAIM: &'static str = "role";
    /// Default clock skew allowed, in seconds.
    pub const DEFAULT_LEEWAY_SECS: u64 = 60;
    /// Default JWKS refresh interval.
    pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(300);
    /// Default HTTP timeout of a JWKS fetch.
    pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

    /// The defaults for the JWKS at `jwks_url`: no issuer, audience or
    /// `typ` check, claims `org_id` and `role`, 60 s leeway, refresh every 5 minutes,
    /// 5 s fetch timeout, the default [`RolePolicy`].
    pub fn new(jwks_url: impl Into<String>) -> Self {
        Self {
            jwks_url: jwks_url.into(),
            issuer: None,
            audience: None,
            required_typ: None,
            org_claim: Self::DEFAULT_ORG_CLAIM.to_owned(),
            role_claim: Self::DEFAULT_ROLE_CLAIM.to_owned(),
            leeway_secs: Self::DEFAULT_LEEWAY_SECS,
            refresh_interval: Self::DEFAULT_REFRESH_INTERVAL,
            fetch_timeout: Self::DEFAULT_FETCH_TIMEOUT,
            policy: RolePolicy::default(),
        }
    }
}

/// Shortest refresh interval, so a zero in the configuration cannot spin.
const MIN_REFRESH_INTERVAL: Duration = Duration::from_millis(10);
/// First retry delay while no key set has ever loaded (doubling up to the
/// refresh interval), so a frontend that starts after us is picked up soon.
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// Verifies login JWTs (RS256, ES256 or EdDSA) against the frontend's JWKS.
///
/// A token is taken as a JWT when it is three dot-separated base64url parts
/// and does not start with `wgk_`; anything else is `Ok(None)`, left to the
/// next verifier. The rules are those of the API contract: the header must
/// name an accepted algorithm and a `kid` of that key's type and no key
/// source of its own (`jku`, `x5u`, `jwk`, `x5c`) and no `crit`, and the
/// required `typ` when one is configured; `exp` is required, `nbf`, `iss`
/// and `aud` are checked (the last two when configured); the org claim must
/// be an [`OrgId`]; the role claim maps to capabilities through the
/// [`RolePolicy`].
///
/// ```no_run
/// use wagate_auth::{Authenticator, JwtConfig, JwtVerifier};
///
/// # async fn demo() {
/// let mut config = JwtConfig::new("https://app.example.com/.well-known/jwks.json");
/// config.issuer = Some("https://app.example.com".into());
/// let jwt = JwtVerifier::start(config); // fetches the JWKS in the background
/// let ready = jwt.is_ready(); // false until the key set has loaded once
/// # }
/// ```
#[derive(Debug)]
pub struct JwtVerifier {
    cache: Arc<JwksCache>,
    issuer: Option<String>,
    audience: Option<String>,
    required_typ: Option<String>,
    org_claim: String,
    role_claim: String,
    leeway_secs: u64,
    policy: RolePolicy,
    clock: Arc<dyn Clock>,
    refresh_interval: Duration,
    task: Mutex<Option<AbortHandle>>,
    verified: VerifiedTokens,
}

/// Tokens already verified, by SHA-256 of the whole token: a signature check
/// (16–40 µs) dominates a request, and clients send the same token many
/// times. An entry is used only while the key set it was checked against is
/// still the current one and within the token's own `nbf`/`exp` (with
/// leeway); a new key set or a full table empties it.
#[derive(Debug, Default)]
struct VerifiedTokens {
    map: std::sync::RwLock<std::collections::HashMap<[u8; 32], Verified>>,
    /// Tokens answered from `map` (no signature check).
    hits: AtomicU64,
}

#[derive(Debug, Clone)]
struct Verified {
    principal: Principal,
    keys: Arc<KeySet>,
    /// Unix seconds, leeway included.
    from: i64,
    until: i64,
}

/// Upper bound on remembered tokens.
const VERIFIED_MAX: usize = 10_000;

impl VerifiedTokens {
    fn get(&self, hash: &[u8; 32], keys: Option<&Arc<KeySet>>, now: i64) -> Option<Principal> {
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        let v = map.get(hash)?;
        let same_keys = keys.is_some_and(|k| Arc::ptr_eq(k, &v.keys));
        let hit = same_keys && (v.from..v.until).contains(&now);
        if hit {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        hit.then(|| v.principal.clone())
    }

    fn put(&self, hash: [u8; 32], verified: Verified) {
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= VERIFIED_MAX
            || map
                .values()
                .next()
                .is_some_and(|v| !Arc::ptr_eq(&v.keys, &verified.keys))
        {
            map.clear();
        }
        map.insert(hash, verified);
    }
}

fn seconds(claim: Option<&Value>) -> Option<i64> {
    claim.and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)))
}

impl JwtVerifier {
    /// Builds the verifier and spawns the background task that loads the
    /// JWKS at once and refreshes it every `refresh_interval`.
    ///
    /// # Panics
    ///
    /// When called outside a tokio runtime (as `tokio::spawn` does).
    pub fn start(config: JwtConfig) -> Arc<JwtVerifier> {
        Self::start_with_clock(config, Arc::new(SystemClock))
    }

    /// As [`start`](Self::start), with `clock` as "now" for `exp`/`nbf` and
    /// the unknown-`kid` refetch throttle (tests pass a clock they move).
    ///
    /// # Panics
    ///
    /// When called outside a tokio runtime.
    pub fn start_with_clock(config: JwtConfig, clock: Arc<dyn Clock>) -> Arc<JwtVerifier> {
        let verifier = Arc::new(Self::new(config, clock));
        // The task holds the cache only, so dropping the last verifier ends it (see Drop).
        let handle = tokio::spawn(refresh_loop(
            verifier.cache.clone(),
            verifier.refresh_interval,
        ));
        *verifier.task.lock().unwrap_or_else(PoisonError::into_inner) = Some(handle.abort_handle());
        verifier
    }

    /// The verifier without its background task: nothing is fetched until
    /// [`JwksCache::refresh`] is called (or a token with an unknown `kid`
    /// arrives), or a set is put in with [`JwksCache::install_json`].
    /// Benchmarks and tools use this; the gateway uses [`start`](Self::start).
    pub fn new(config: JwtConfig, clock: Arc<dyn Clock>) -> Self {
        let cache = Arc::new(JwksCache::new(
            config.jwks_url,
            config.fetch_timeout,
            clock.clone(),
        ));
        Self {
            cache,
            issuer: config.issuer,
            audience: config.audience,
            required_typ: config.required_typ,
            org_claim: config.org_claim,
            role_claim: config.role_claim,
            leeway_secs: config.leeway_secs,
            policy: config.policy,
            clock,
            refresh_interval: config.refresh_interval.max(MIN_REFRESH_INTERVAL),
            task: Mutex::new(None),
            verified: VerifiedTokens::default(),
        }
    }

    /// The key set holder (for readiness details or a manual refresh).
    pub fn cache(&self) -> &Arc<JwksCache> {
        &self.cache
    }

    /// How many tokens were accepted from the verified-token cache (no
    /// signature check) since the verifier was built: for tests and metrics.
    pub fn verified_cache_hits(&self) -> u64 {
        self.verified.hits.load(Ordering::Relaxed)
    }

    /// Stops the background refresh (also done when the verifier is
    /// dropped). Keys already loaded keep working; an unknown `kid` can
    /// still cause a throttled refetch.
    pub fn shutdown(&self) {
        if let Some(task) = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
    }

    async fn check(&self, token: &str) -> Result<Option<Principal>, Rejection> {
        // Cheapest test first: the length, before looking at a single byte.
        if token.len() > MAX_TOKEN_LEN {
            return Err("token longer than 8 KiB");
        }
        if token.starts_with(ApiKeySecret::PREFIX) {
            return Ok(None);
        }
        let Some(parts) = token::split(token) else {
            return Ok(None);
        };
        let now = self.clock.now().unix_timestamp();
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(principal) = self.verified.get(&hash, self.cache.current().as_ref(), now) {
            return Ok(Some(principal));
        }

        let header_json =
            token::decode_part(parts.header).map_err(|_| "malformed header encoding")?;
        let header = token::parse_header(&header_json)?;
        if let Some(required) = &self.required_typ {
            token::check_typ(header.typ.as_ref(), required)?;
        }

        let set = match self.cache.current() {
            Some(set) if set.contains(&header.kid) => set,
            _ => self
                .cache
                .refetch_for_kid(&header.kid)
                .await
                .ok_or("no key set loaded")?,
        };
        let key = set.get(&header.kid).ok_or("unknown kid")?;
        // The kid picks the key and the key fixes the algorithm: a token may
        // not make an RSA or EC key check some other algorithm.
        if key.alg != header.alg {
            return Err("alg does not match the key named by kid");
        }
        match jsonwebtoken::crypto::verify(
            parts.signature,
            parts.signing_input.as_bytes(),
            &key.key,
            header.alg,
        ) {
            Ok(true) => {}
            Ok(false) | Err(_) => return Err("bad signature"),
        }

        let payload =
            token::decode_part(parts.payload).map_err(|_| "malformed payload encoding")?;
        let names = ClaimNames {
            org: &self.org_claim,
            role: &self.role_claim,
        };
        let claims = Claims::parse(&payload, names)?;
        claims.validate(Expect {
            now,
            leeway_secs: self.leeway_secs,
            issuer: self.issuer.as_deref(),
            audience: self.audience.as_deref(),
        })?;
        let leeway = i64::try_from(self.leeway_secs).unwrap_or(i64::MAX);
        let from = seconds(claims.nbf.as_ref()).map_or(i64::MIN, |nbf| nbf.saturating_sub(leeway));
        let until = seconds(claims.exp.as_ref()).map(|exp| exp.saturating_add(leeway));
        let principal = self.principal(claims)?;
        // `exp` is required, so `until` is always known for a valid token.
        if let Some(until) = until {
            self.verified.put(
                hash,
                Verified {
                    principal: principal.clone(),
                    keys: set.clone(),
                    from,
                    until,
                },
            );
        }
        Ok(Some(principal))
    }

    fn principal(&self, claims: Claims) -> Result<Principal, Rejection> {
        let org = match claims.org {
            None => return Err("org claim missing"),
            Some(Value::String(org)) => {
                OrgId::parse(&org).map_err(|_| "org claim is not a valid organization id")?
            }
            Some(_) => return Err("org claim is not a string"),
        };
        let (role, capabilities) = match claims.role {
            // No role: authenticated, but allowed nothing.
            None | Some(Value::Null) => (Role::new(""), CapabilitySet::EMPTY),
            Some(Value::String(name)) => {
                let role = Role::new(&name);
                let capabilities = self.policy.capabilities(&role);
                (role, capabilities)
            }
            Some(_) => return Err("role claim is not a string"),
        };
        let subject = match claims.sub {
            Some(Value::String(sub)) => Some(sub),
            _ => None,
        };
        Ok(Principal {
            org,
            capabilities,
            kind: PrincipalKind::User { subject, role },
            // A person may create lasting keys; the token's own `exp` does not bound them.
            credential_expires_at: None,
        })
    }
}

impl Drop for JwtVerifier {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[async_trait]
impl Authenticator for JwtVerifier {
    async fn authenticate(&self, token: &str) -> Result<Option<Principal>, AuthError> {
        self.check(token).await.map_err(|reason| {
            tracing::debug!(reason, "JWT rejected");
            AuthError::Rejected(reason.to_owned())
        })
    }

    /// Ready once a key set has loaded.
    fn is_ready(&self) -> bool {
        self.cache.is_loaded()
    }
}

/// Loads the key set at once, then every `every`; while none has ever
/// loaded, retries sooner (1 s, doubling up to `every`).
async fn refresh_loop(cache: Arc<JwksCache>, every: Duration) {
    let mut retry = FIRST_RETRY.min(every);
    loop {
        let wait = match cache.refresh().await {
            Ok(keys) => {
                tracing::debug!(keys, "JWKS refreshed");
                every
            }
            Err(e) if cache.is_loaded() => {
                tracing::warn!(error = %e, url = %cache.url(), "JWKS refresh failed; keeping the last good key set");
                every
            }
            Err(e) => {
                tracing::warn!(error = %e, url = %cache.url(), retry_in = ?retry, "JWKS not loaded yet; every JWT is rejected until it is");
                let wait = retry;
                retry = (retry * 2).min(every);
                wait
            }
        };
        tokio::time::sleep(wait).await;
    }
}
