//! The frontend's key set: fetching it, keeping the last good one, and the
//! throttled refetch on an unknown `kid`.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use thiserror::Error;
use time::OffsetDateTime;
use wagate_domain::Clock;

/// Why a JWKS fetch or parse failed. The last good key set stays in use.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum JwksError {
    /// The HTTP client could not be built, so nothing can be fetched.
    #[error("HTTP client unavailable: {0}")]
    Client(String),
    /// The request failed: connection refused or reset, timeout, bad URL…
    #[error("JWKS request failed: {0}")]
    Http(String),
    /// The endpoint answered with a non-success status.
    #[error("JWKS endpoint answered HTTP {0}")]
    Status(u16),
    /// The body is larger than [`JwksCache::MAX_BODY_BYTES`].
    #[error("JWKS body larger than {} bytes", JwksCache::MAX_BODY_BYTES)]
    TooLarge,
    /// The body is not a JWK set (`{"keys": [...]}`).
    #[error("JWKS body is not a JWK set: {0}")]
    Malformed(String),
    /// The set holds no key we can use (RS256, ES256 on P-256, EdDSA on
    /// Ed25519, with a `kid`). Treated as a failure rather than "revoke
    /// everything": an identity provider never publishes an empty signing set
    /// on purpose, a broken deployment does.
    #[error("JWKS holds no usable signing key")]
    NoUsableKeys,
}

/// One usable public key, parsed once when the set is fetched.
#[derive(Debug)]
pub(crate) struct VerifyKey {
    /// The only algorithm this key checks: from the key's type and curve,
    /// and equal to the JWK's own `alg` when it has one.
    pub alg: Algorithm,
    pub key: DecodingKey,
}

/// A parsed JWK set: the usable signing keys by `kid`.
///
/// Built once per fetch; verification only looks keys up.
pub struct KeySet {
    keys: HashMap<String, VerifyKey>,
}

impl fmt::Debug for KeySet {
    /// Key ids only: the keys are public, but there is no use in logging them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet")
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

impl KeySet {
    /// Parses a JWKS document, keeping the keys we can use and skipping
    /// (with a debug log) the others: symmetric (`oct`) keys, other
    /// algorithms or curves, encryption keys, keys without `kid`, keys that
    /// do not parse. A `kid` given to two usable keys is dropped entirely,
    /// as it cannot select a key.
    ///
    /// # Errors
    ///
    /// [`JwksError::Malformed`] when the document is not a JWK set;
    /// [`JwksError::NoUsableKeys`] when no key is usable.
    pub fn from_json(json: &[u8]) -> Result<Self, JwksError> {
        let raw: RawSet =
            serde_json::from_slice(json).map_err(|e| JwksError::Malformed(e.to_string()))?;
        let mut keys = HashMap::with_capacity(raw.keys.len());
        let mut ambiguous = Vec::new();
        for (index, value) in raw.keys.into_iter().enumerate() {
            // One key at a time, so one odd key (a new key type, say) does not spoil the set.
            let jwk = match serde_json::from_value::<Jwk>(value) {
                Ok(jwk) => jwk,
                Err(e) => {
                    tracing::debug!(index, error = %e, "JWKS: skipping a key of an unsupported kind");
                    continue;
                }
            };
            let kid = jwk.common.key_id.clone();
            match (kid, usable(&jwk)) {
                (None, _) => tracing::debug!(index, "JWKS: skipping a key without kid"),
                (Some(kid), Err(why)) => tracing::debug!(index, kid, why, "JWKS: skipping key"),
                (Some(kid), Ok(key)) => {
                    if keys.insert(kid.clone(), key).is_some() {
                        ambiguous.push(kid);
                    }
                }
            }
        }
        for kid in ambiguous {
            tracing::warn!(kid, "JWKS: two keys share this kid; neither is used");
            keys.remove(&kid);
        }
        if keys.is_empty() {
            return Err(JwksError::NoUsableKeys);
        }
        Ok(Self { keys })
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there is no usable key (never true for a set that loaded).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether a usable key has this `kid`.
    pub fn contains(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    /// The `kid`s of the usable keys, in no particular order.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    pub(crate) fn get(&self, kid: &str) -> Option<&VerifyKey> {
        self.keys.get(kid)
    }
}

/// Checks a JWK is a signing key of a supported kind and builds its
/// [`DecodingKey`]. Sizes are checked here so that a broken key is skipped
/// at load rather than failing every token later.
fn usable(jwk: &Jwk) -> Result<VerifyKey, &'static str> {
    if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
        return Err("use is not sig");
    }
    if matches!(&jwk.common.key_operations, Some(ops) if !ops.contains(&KeyOperations::Verify)) {
        return Err("key_ops lacks verify");
    }
    let (alg, declared) = match &jwk.algorithm {
        AlgorithmParameters::RSA(p) => {
            let n = decoded_len(&p.n)?;
            // aws-lc verifies RS256 only with 2048- to 8192-bit moduli.
            if !(256..=1025).contains(&n) {
                return Err("RSA modulus not 2048 to 8192 bits");
            }
            (Algorithm::RS256, KeyAlgorithm::RS256)
        }
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
            if decoded_len(&p.x)? != 32 || decoded_len(&p.y)? != 32 {
                return Err("P-256 coordinates not 32 bytes");
            }
            (Algorithm::ES256, KeyAlgorithm::ES256)
        }
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            if decoded_len(&p.x)? != 32 {
                return Err("Ed25519 key not 32 bytes");
            }
            (Algorithm::EdDSA, KeyAlgorithm::EdDSA)
        }
        AlgorithmParameters::OctetKey(_) => return Err("symmetric (oct) key: never used"),
        _ => return Err("unsupported curve"),
    };
    if matches!(jwk.common.key_algorithm, Some(a) if a != declared) {
        return Err("alg not usable with this key type");
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|_| "key does not parse")?;
    Ok(VerifyKey { alg, key })
}

fn decoded_len(b64: &str) -> Result<usize, &'static str> {
    URL_SAFE_NO_PAD
        .decode(b64)
        .map(|v| v.len())
        .map_err(|_| "key member is not base64url")
}

/// The current key set and the generation of the fetch that produced it.
#[derive(Debug, Default)]
struct Current {
    generation: u64,
    keys: Option<Arc<KeySet>>,
}

/// Holds the frontend's JWK set and fetches it.
///
/// Verification reads the current [`KeySet`] as an `Arc` taken under a
/// read lock held for a pointer copy; a fetch parses the whole set (and
/// every [`DecodingKey`]) first and then swaps the `Arc`. A failed fetch
/// changes nothing, so the last good set keeps working while the endpoint
/// is down or answers garbage. [`JwksCache::refetch_for_kid`] lets a token
/// signed with a newly rotated key in without waiting for the next periodic
/// refresh, at most once per [`JwksCache::KID_REFETCH_INTERVAL`].
#[derive(Debug)]
pub struct JwksCache {
    url: String,
    client: Result<reqwest::Client, String>,
    clock: Arc<dyn Clock>,
    current: RwLock<Current>,
    /// Numbers fetches in start order, so a slow fetch never replaces the
    /// set installed by one that started after it.
    next_generation: AtomicU64,
    /// When an unknown `kid` last caused a fetch. The async lock also makes
    /// tokens with the same new `kid` wait for that one fetch instead of
    /// being refused while it runs.
    last_kid_refetch: tokio::sync::Mutex<Option<OffsetDateTime>>,
}

impl JwksCache {
    /// Minimum time between two fetches caused by unknown `kid`s, so a flood
    /// of made-up `kid`s cannot hammer the frontend.
    pub const KID_REFETCH_INTERVAL: time::Duration = time::Duration::seconds(30);
    /// Largest JWKS body accepted.
    pub const MAX_BODY_BYTES: usize = 1024 * 1024;

    /// A cache of the set at `url`, empty until the first successful
    /// [`refresh`](Self::refresh). Each fetch is bounded by `fetch_timeout`
    /// (connecting included); `clock` times the unknown-`kid` throttle.
    pub fn new(url: impl Into<String>, fetch_timeout: Duration, clock: Arc<dyn Clock>) -> Self {
        let client = reqwest::Client::builder()
            .timeout(fetch_timeout)
            .connect_timeout(fetch_timeout)
            // The JWKS URL is configuration; a redirect elsewhere is not.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string());
        if let Err(e) = &client {
            tracing::error!(error = %e, "cannot build the JWKS HTTP client; every JWT will be rejected");
        }
        Self {
            url: url.into(),
            client,
            clock,
            current: RwLock::new(Current::default()),
            next_generation: AtomicU64::new(1),
            last_kid_refetch: tokio::sync::Mutex::new(None),
        }
    }

    /// The JWKS URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether a key set has loaded at least once.
    pub fn is_loaded(&self) -> bool {
        self.current().is_some()
    }

    /// The current key set (`None` until one has loaded).
    pub fn current(&self) -> Option<Arc<KeySet>> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys
            .clone()
    }

    /// Fetches the set now and installs it; on failure the current set stays.
    /// Returns the number of usable keys.
    ///
    /// # Errors
    ///
    /// A [`JwksError`] saying why the fetch or the parse failed.
    pub async fn refresh(&self) -> Result<usize, JwksError> {
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let body = self.fetch().await?;
        let set = KeySet::from_json(&body)?;
        Ok(self.install(generation, set))
    }

    /// Parses `json` and installs it as the current set, as a successful
    /// fetch would (for a set obtained some other way, e.g. a file).
    ///
    /// # Errors
    ///
    /// As [`KeySet::from_json`]; the current set then stays.
    pub fn install_json(&self, json: &[u8]) -> Result<usize, JwksError> {
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let set = KeySet::from_json(json)?;
        Ok(self.install(generation, set))
    }

    fn install(&self, generation: u64, set: KeySet) -> usize {
        let len = set.len();
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        if generation > current.generation {
            *current = Current {
                generation,
                keys: Some(Arc::new(set)),
            };
        }
        len
    }

    /// A token named `kid`, which the current set lacks: fetches the set
    /// again unless an unknown `kid` already caused a fetch within
    /// [`Self::KID_REFETCH_INTERVAL`], and returns the set to look in again
    /// (`None` when no set has ever loaded).
    pub async fn refetch_for_kid(&self, kid: &str) -> Option<Arc<KeySet>> {
        let mut last = self.last_kid_refetch.lock().await;
        // Another token may have fetched (or the periodic refresh run)
        // while we waited for the lock.
        let current = self.current();
        if current.as_ref().is_some_and(|set| set.contains(kid)) {
            return current;
        }
        let now = self.clock.now();
        if last.is_some_and(|at| now - at < Self::KID_REFETCH_INTERVAL) {
            tracing::debug!("JWKS: unknown kid, refetch throttled");
            return current;
        }
        *last = Some(now);
        match self.refresh().await {
            Ok(keys) => tracing::info!(keys, "JWKS refetched for an unknown kid"),
            Err(e) => {
                tracing::warn!(error = %e, url = %self.url, "JWKS refetch failed; keeping the last good key set")
            }
        }
        self.current()
    }

    async fn fetch(&self) -> Result<Vec<u8>, JwksError> {
        let client = self
            .client
            .as_ref()
            .map_err(|e| JwksError::Client(e.clone()))?;
        let mut response = client
            .get(&self.url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| JwksError::Http(e.without_url().to_string()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(JwksError::Status(status.as_u16()));
        }
        if response
            .content_length()
            .is_some_and(|len| len > Self::MAX_BODY_BYTES as u64)
        {
            return Err(JwksError::TooLarge);
        }
        // Read in chunks so a body without (or lying about) its length is still capped.
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| JwksError::Http(e.without_url().to_string()))?
        {
            if body.len() + chunk.len() > Self::MAX_BODY_BYTES {
                return Err(JwksError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn rsa(kid: &str) -> serde_json::Value {
        json!({"kty": "RSA", "kid": kid, "n": b64(&[0xc5; 256]), "e": "AQAB"})
    }

    fn ec(kid: &str) -> serde_json::Value {
        json!({"kty": "EC", "kid": kid, "crv": "P-256", "x": b64(&[1; 32]), "y": b64(&[2; 32])})
    }

    fn ed(kid: &str) -> serde_json::Value {
        json!({"kty": "OKP", "kid": kid, "crv": "Ed25519", "x": b64(&[3; 32])})
    }

    fn parse(keys: Vec<serde_json::Value>) -> Result<KeySet, JwksError> {
        KeySet::from_json(json!({ "keys": keys }).to_string().as_bytes())
    }

    #[test]
    fn keeps_supported_keys_with_their_algorithm() {
        let set = parse(vec![rsa("r"), ec("e"), ed("d")]).unwrap();
        assert_eq!(set.len(), 3);
        assert_eq!(set.get("r").unwrap().alg, Algorithm::RS256);
        assert_eq!(set.get("e").unwrap().alg, Algorithm::ES256);
        assert_eq!(set.get("d").unwrap().alg, Algorithm::EdDSA);
        let mut kids: Vec<_> = set.kids().collect();
        kids.sort_unstable();
        assert_eq!(kids, ["d", "e", "r"]);
        assert!(
            !format!("{set:?}").contains(&b64(&[0xc5; 256])),
            "Debug shows kids only"
        );
    }

    #[test]
    fn skips_unusable_keys() {
        let with = |extra: serde_json::Value| {
            let mut k = rsa("x");
            for (name, value) in extra.as_object().unwrap() {
                k[name] = value.clone();
            }
            k
        };
        let skipped = vec![
            json!({"kty": "oct", "kid": "hmac", "k": b64(b"secret"), "alg": "HS256"}),
            json!({"kty": "EC", "kid": "p384", "crv": "P-384", "x": b64(&[1; 48]), "y": b64(&[2; 48])}),
            json!({"kty": "EC", "kid": "short", "crv": "P-256", "x": b64(&[1; 31]), "y": b64(&[2; 32])}),
            json!({"kty": "OKP", "kid": "x25519", "crv": "X25519", "x": b64(&[3; 32])}),
            json!({"kty": "AKP", "kid": "future", "alg": "ML-DSA-44", "pub": "AAAA"}),
            json!({"kty": "RSA", "n": b64(&[0xc5; 256]), "e": "AQAB"}),
            json!({"kty": "RSA", "kid": "small", "n": b64(&[0xc5; 128]), "e": "AQAB"}),
            json!({"kty": "RSA", "kid": "bad64", "n": "***", "e": "AQAB"}),
            with(json!({"kid": "enc", "use": "enc"})),
            with(json!({"kid": "ops", "key_ops": ["encrypt"]})),
            with(json!({"kid": "ps", "alg": "PS256"})),
            with(json!({"kid": "rs512", "alg": "RS512"})),
            json!({"kty": "EC", "kid": "ec-as-rs", "alg": "RS256", "crv": "P-256", "x": b64(&[1; 32]), "y": b64(&[2; 32])}),
            "not an object".into(),
        ];
        let mut keys = skipped.clone();
        keys.push(with(
            json!({"kid": "good", "use": "sig", "key_ops": ["verify"], "alg": "RS256"}),
        ));
        let set = parse(keys).unwrap();
        assert_eq!(set.kids().collect::<Vec<_>>(), ["good"]);
        assert_eq!(parse(skipped).unwrap_err(), JwksError::NoUsableKeys);
    }

    #[test]
    fn a_shared_kid_selects_nothing() {
        let set = parse(vec![rsa("dup"), ec("dup"), ed("ok")]).unwrap();
        assert!(!set.contains("dup"));
        assert!(set.contains("ok"));
    }

    #[test]
    fn garbage_is_not_a_set() {
        for body in [&b"<html>"[..], b"{}", br#"{"keys": {}}"#, b""] {
            assert!(matches!(
                KeySet::from_json(body),
                Err(JwksError::Malformed(_))
            ));
        }
        assert_eq!(
            KeySet::from_json(br#"{"keys": []}"#).unwrap_err(),
            JwksError::NoUsableKeys
        );
    }

    #[test]
    fn an_older_fetch_never_replaces_a_newer_one() {
        let cache = JwksCache::new(
            "http://127.0.0.1:9/jwks",
            Duration::from_secs(1),
            Arc::new(wagate_domain::SystemClock),
        );
        assert!(!cache.is_loaded());
        let older = cache.next_generation.fetch_add(1, Ordering::Relaxed);
        let newer = cache.next_generation.fetch_add(1, Ordering::Relaxed);
        cache.install(newer, parse(vec![rsa("new")]).unwrap());
        cache.install(older, parse(vec![rsa("old")]).unwrap());
        assert!(cache.current().unwrap().contains("new"));
        assert!(cache.install_json(b"garbage").is_err());
        assert!(
            cache.current().unwrap().contains("new"),
            "a failed load keeps the last good set"
        );
        assert_eq!(
            cache.install_json(json!({"keys": [ed("later")]}).to_string().as_bytes()),
            Ok(1)
        );
        assert!(cache.current().unwrap().contains("later"));
    }
}
