//! The login-JWT verifier against real keys (RSA 2048, P-256, Ed25519 in
//! `tests/keys/`) served by a real local JWKS endpoint that each test can
//! change, break, and count requests on.

// clippy's allow-unwrap-in-tests covers #[test] functions only, not the
// helpers of an integration test, where a panic is the failure report too.
#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use wagate_auth::{AuthError, Authenticator, JwtConfig, JwtVerifier, RolePolicy};
use wagate_domain::{Capability, CapabilitySet, Clock, PrincipalKind, Role};

// ---------------------------------------------------------------- keys ----

fn key_file(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// A signing key and its public JWK.
struct Key {
    kid: &'static str,
    alg: Algorithm,
    private: EncodingKey,
    jwk: Value,
}

impl Key {
    fn load(kid: &'static str, alg: Algorithm) -> Self {
        let pem = key_file(&format!("{kid}.key.pem"));
        let private = match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem),
            Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem),
            _ => unreachable!(),
        }
        .unwrap();
        let jwk = serde_json::from_slice(&key_file(&format!("{kid}.jwk.json"))).unwrap();
        Key {
            kid,
            alg,
            private,
            jwk,
        }
    }
}

struct Keys {
    rsa: Key,
    rsa2: Key,
    ec: Key,
    ed: Key,
    attacker: Key,
}

fn keys() -> Keys {
    Keys {
        rsa: Key::load("rsa-1", Algorithm::RS256),
        rsa2: Key::load("rsa-2", Algorithm::RS256),
        ec: Key::load("ec-1", Algorithm::ES256),
        ed: Key::load("ed-1", Algorithm::EdDSA),
        attacker: Key::load("attacker-rsa", Algorithm::RS256),
    }
}

fn jwks(keys: &[&Key]) -> String {
    json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() }).to_string()
}

// -------------------------------------------------------------- tokens ----

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A compact JWS of exactly this header and these claims.
fn sign_raw(header: &Value, claims: &Value, key: &EncodingKey, alg: Algorithm) -> String {
    let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
    let signature = jsonwebtoken::crypto::sign(input.as_bytes(), key, alg).unwrap();
    format!("{input}.{signature}")
}

fn sign(key: &Key, claims: &Value) -> String {
    sign_raw(
        &json!({"alg": key.alg, "kid": key.kid, "typ": "JWT"}),
        claims,
        &key.private,
        key.alg,
    )
}

fn claims(clock: &TestClock) -> Value {
    let now = clock.now().unix_timestamp();
    json!({"sub": "user-1", "org_id": "acme", "role": "member", "iat": now, "exp": now + 600})
}

fn with(mut claims: Value, changes: Value) -> Value {
    for (name, value) in changes.as_object().unwrap() {
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(name);
        } else {
            claims[name] = value.clone();
        }
    }
    claims
}

// --------------------------------------------------------------- clock ----

#[derive(Debug)]
struct TestClock(Mutex<OffsetDateTime>);

impl Clock for TestClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap()
    }
}

impl TestClock {
    fn advance(&self, secs: i64) {
        *self.0.lock().unwrap() += time::Duration::seconds(secs);
    }
}

// ---------------------------------------------------------- JWKS server ---

#[derive(Debug, Clone)]
enum Mode {
    /// 200 with this body.
    Serve(String),
    /// This status, small body.
    Status(u16),
    /// Accept, read the request, close without answering.
    Close,
    /// Accept and never answer (the fetch timeout must end it).
    Hang,
}

/// A minimal HTTP server answering every request according to its mode.
struct JwksServer {
    url: String,
    mode: Arc<Mutex<Mode>>,
    hits: Arc<AtomicUsize>,
}

impl JwksServer {
    async fn start(mode: Mode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().unwrap()
        );
        let mode = Arc::new(Mutex::new(mode));
        let hits = Arc::new(AtomicUsize::new(0));
        let (m, h) = (mode.clone(), hits.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let (m, h) = (m.clone(), h.clone());
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    h.fetch_add(1, Ordering::SeqCst);
                    let mode = m.lock().unwrap().clone();
                    let (status, body) = match mode {
                        Mode::Serve(body) => (200, body),
                        Mode::Status(code) => (code, "oops".to_owned()),
                        Mode::Close => return,
                        Mode::Hang => {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                            return;
                        }
                    };
                    let response = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        JwksServer { url, mode, hits }
    }

    async fn serving(keys: &[&Key]) -> Self {
        Self::start(Mode::Serve(jwks(keys))).await
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn serve(&self, keys: &[&Key]) {
        self.set(Mode::Serve(jwks(keys)));
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

// ------------------------------------------------------------- helpers ----

/// Polls `cond` until it holds, failing after a generous deadline.
async fn wait_until<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn config(server: &JwksServer) -> JwtConfig {
    let mut config = JwtConfig::new(server.url.clone());
    // Long enough that only what a test does causes a fetch.
    config.refresh_interval = Duration::from_secs(3600);
    config.fetch_timeout = Duration::from_secs(5);
    config
}

fn clock() -> Arc<TestClock> {
    Arc::new(TestClock(Mutex::new(OffsetDateTime::now_utc())))
}

/// A started verifier whose first load has completed.
async fn ready(config: JwtConfig) -> (Arc<TestClock>, Arc<JwtVerifier>) {
    let clock = clock();
    let verifier = JwtVerifier::start_with_clock(config, clock.clone());
    wait_until("first JWKS load", || async { verifier.is_ready() }).await;
    (clock, verifier)
}

/// Asserts `token` is refused, returning the reason (which must not echo the token).
async fn rejected(verifier: &JwtVerifier, token: &str) -> String {
    match verifier.authenticate(token).await {
        Err(AuthError::Rejected(reason)) => {
            for part in token.split('.').filter(|p| p.len() > 8) {
                assert!(!reason.contains(part), "reason echoes the token: {reason}");
            }
            reason
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
}

async fn accepted(verifier: &JwtVerifier, token: &str) -> wagate_domain::Principal {
    match verifier.authenticate(token).await {
        Ok(Some(principal)) => principal,
        other => panic!("expected a principal, got {other:?}"),
    }
}

fn user(role: &str) -> PrincipalKind {
    PrincipalKind::User {
        subject: Some("user-1".into()),
        role: Role::new(role),
    }
}

// --------------------------------------------------------------- tests ----

#[tokio::test]
async fn valid_tokens_of_each_kind_pass() {
    let k = keys();
    let server = JwksServer::serving(&[&k.rsa, &k.ec, &k.ed]).await;
    let (clock, v) = ready(config(&server)).await;

    let p = accepted(
        &v,
        &sign(&k.rsa, &with(claims(&clock), json!({"role": "owner"}))),
    )
    .await;
    assert_eq!(p.org.as_str(), "acme");
    assert_eq!(p.capabilities, CapabilitySet::ALL);
    assert_eq!(p.kind, user("owner"));

    let p = accepted(&v, &sign(&k.ec, &claims(&clock))).await;
    assert_eq!(
        p.capabilities,
        CapabilitySet::of([Capability::Read, Capability::Send])
    );
    assert_eq!(p.kind, user("member"));

    let p = accepted(
        &v,
        &sign(
            &k.ed,
            &with(claims(&clock), json!({"role": "viewer", "org_id": "org_2"})),
        ),
    )
    .await;
    assert_eq!(p.org.as_str(), "org_2");
    assert_eq!(p.capabilities, CapabilitySet::of([Capability::Read]));
    assert_eq!(p.kind, user("viewer"));

    // No (string) subject is fine.
    let p = accepted(
        &v,
        &sign(&k.rsa, &with(claims(&clock), json!({"sub": null}))),
    )
    .await;
    assert_eq!(
        p.kind,
        PrincipalKind::User {
            subject: None,
            role: Role::new("member")
        }
    );
    assert_eq!(server.hits(), 1, "verification fetches nothing");
}

#[tokio::test]
async fn roles_map_through_the_policy() {
    let k = keys();
    let server = JwksServer::serving(&[&k.rsa]).await;
    let mut cfg = config(&server);
    cfg.policy = RolePolicy::with_overrides([("support", CapabilitySet::of([Capability::Read]))]);
    let (clock, v) = ready(cfg).await;

    let p = accepted(
        &v,
        &sign(&k.rsa, &with(claims(&clock), json!({"role": "intern"}))),
    )
    .await;
    assert!(
        p.capabilities.is_empty(),
        "unknown role: authenticated, allowed nothing"
    );
    assert_eq!(p.kind, user("intern"));
    let p = accepted(
        &v,
        &sign(&k.rsa, &with(claims(&clock), json!({"role": null}))),
    )
    .await;
    assert!(p.capabilities.is_empty(), "no role: no capabilities");
    let p = accepted(
        &v,
        &sign(&k.rsa, &with(claims(&clock), json!({"role": "support"}))),
    )
    .await;
    assert_eq!(p.capabilities, CapabilitySet::of([Capability::Read]));
    let reason = rejected(
        &v,
        &sign(&k.rsa, &with(claims(&clock), json!({"role": ["admin"]}))),
    )
    .await;
    assert!(reason.contains("role"), "{reason}");
}

#[tokio::test]
async fn custom_claim_names() {
    let k = keys();
    let server = JwksServer::serving(&[&k.ec]).await;
    let mut cfg = config(&server);
    cfg.org_claim = "https://example.com/tenant".into();
    cfg.role_claim = "grp".into();
    let (clock, v) = ready(cfg).await;

    let custom = with(
        claims(&clock),
        json!({"https://example.com/tenant": "globex", "grp": "admin", "org_id": null, "role": null}),
    );
    let p = accepted(&v, &sign(&k.ec, &custom)).await;
    assert_eq!(p.org.as_str(), "globex");
    assert_eq!(p.capabilities, CapabilitySet::ALL);
    assert_eq!(p.kind, user("admin"));
    // The default names mean nothing now.
    let reason = rejected(&v, &sign(&k.ec, &claims(&clock))).await;
    assert!(reason.contains("org claim missing"), "{reason}");
}

#[tokio::test]
async fn other_kinds_of_token_are_not_ours() {
    let k = keys();
    let server = JwksServer::serving(&[&k.rsa]).await;
    let (clock, v) = ready(config(&server)).await;
    let valid = sign(&k.rsa, &claims(&clock));
    for token in [
        "wgk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_owned(),
        format!("wgk_{valid}"),
        "opaque-token".to_owned(),
        "only.two".to_owned(),
        "a.b.c.d".to_owned(),
        "a.b.c.d.e".to_owned(), // JWE compact form
        format!("{valid}="),
        format!("{valid} "),
        "ey J.x.y".to_owned(),
    ] {
        assert_eq!(v.authenticate(&token).await, Ok(None), "{token}");
    }
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn forged_algorithms_are_refused_before_any_signature_work() {
    let k = keys();
    let server = JwksServer::serving(&[&k.rsa, &k.ec, &k.ed]).await;
    let (clock, v) = ready(config(&server)).await;
    let c = claims(&clock);
    let payload = b64(c.to_string());

    // alg none, unsigned and with a real signature's bytes attached.
    for alg in ["none", "None", "NONE"] {
        let header = b64(json!({"alg": alg, "kid": "rsa-1", "typ": "JWT"}).to_string());
        let reason = rejected(&v, &format!("{header}.{payload}.")).await;
        assert!(reason.contains("none"), "{reason}");
        let stolen = sign(&k.rsa, &c).rsplit('.').next().unwrap().to_owned();
        rejected(&v, &format!("{header}.{payload}.{stolen}")).await;
    }
    let reason = rejected(&v, &format!("{}.{payload}.", b64(r#"{"alg":"none"}"#))).await;
    assert!(reason.contains("none"), "{reason}");

    // HS256 "signed" with the RSA public key as the HMAC secret: the PEM
    // text, its SPKI DER, and the PKCS#1 DER.
    let pem = key_file("rsa-1.pub.pem");
    let spki_der = STANDARD
        .decode(
            String::from_utf8(pem.clone())
                .unwrap()
                .lines()
                .filter(|l| !l.starts_with("-----"))
                .collect::<String>(),
        )
        .unwrap();
    let pkcs1_der = key_file("rsa-1.pub.pkcs1.der");
    for secret in [&pem, &spki_der, &pkcs1_der] {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let token = sign_raw(
                &json!({"alg": alg, "kid": "rsa-1"}),
                &c,
                &EncodingKey::from_secret(secret),
                alg,
            );
            let reason = rejected(&v, &token).await;
            assert!(reason.contains("HMAC"), "{reason}");
        }
    }

    // The kid names a key of another type than the alg.
    let rs_on_ec = sign_raw(
        &json!({"alg": "RS256", "kid": "ec-1"}),
        &c,
        &k.rsa.private,
        Algorithm::RS256,
    );
    let es_on_rsa = sign_raw(
        &json!({"alg": "ES256", "kid": "rsa-1"}),
        &c,
        &k.ec.private,
        Algorithm::ES256,
    );
    let ed_on_ec = sign_raw(
        &json!({"alg": "EdDSA", "kid": "ec-1"}),
        &c,
        &k.ed.private,
        Algorithm::EdDSA,
    );
    for token in [rs_on_ec, es_on_rsa, ed_on_ec] {
        let reason = rejected(&v, &token).await;
        assert!(reason.contains("does not match"), "{reason}");
    }

    // Algorithms outside the three.
    for alg in [
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::ES384,
    ] {
        let header = json!({"alg": alg, "kid": "rsa-1"});
        let token = format!("{}.{payload}.{}", b64(header.to_string()), b64([7u8; 256]));
        let reason = rejected(&v, &token).await;
        assert!(reason.contains("unsupported alg"), "{reason}");
    }
    assert_eq!(
        server.hits(),
        1,
        "none of these reaches the key set fetcher"
    );
}

#[tokio::test]
async fn headers_naming_their_own_key_are_attacks() {
    let k = keys();
    let server = JwksServer::serving(&[&k.rsa]).await;
    // The attacker's own JWKS, which must never be fetched.
    let evil = JwksServer::serving(&[&k.attacker]).await;
    let (clock, v) = ready(config(&server)).await;
    let c = claims(&clock);
    let attacker_jwk = k.attacker.jwk.clone();
    let cert = STANDARD.encode([0x30u8; 64]);

    let headers = [
        json!({"alg": "RS256", "kid": "attacker-rsa", "jku": evil.url}),
        json!({"alg": "RS256", "kid": "rsa-1", "jku": evil.url}),
        json!({"alg": "RS256", "kid": "attacker-rsa", "x5u": evil.url}),
        json!({"alg": "RS256", "kid": "rsa-1", "x5u": evil.url}),
        json!({"alg": "RS256", "kid": "attacker-rsa", "jwk": attacker_jwk}),
        json!({"alg": "RS256", "kid": "rsa-1", "jwk": attacker_jwk}),
        json!({"alg": "RS256", "jwk": attacker_jwk}),
        json!({"alg": "RS256", "kid": "rsa-1", "x5c": [cert]}),
    ];
    for header in headers {
        let reason = rejected(
            &v,
            &sign_raw(&header, &c, &k.attacker.private, Algorithm::RS256),
        )
        .await;
        assert!(reason.contains("own key"), "{header}: {reason}");
    }
    // Even signed by the real key, such a header is refused.
    let real = sign_raw(
        &json!({"alg": "RS256", "kid": "rsa-1", "jku": server.url}),
        &c,
        &k.rsa.private,
        Algorithm::RS256,
    );
    assert!(rejected(&v, &real).await.contains("own key"));

    for crit in [json!(["exp"]), json!(["b64"]), json!([])] {
        let header = json!({"alg": "RS256", "kid": "rsa-1", "crit": crit, "exp": 1, "b64": true});
        let reason = rejected(&v, &sign_raw(&header, &c, &k.rsa.private, Algorithm::RS256)).await;
        assert!(reason.contains("crit"), "{reason}");
    }
    let no_kid = sign_raw(
        &json!({"alg": "RS256"}),
        &c,
        &k.rsa.private,
        Algorithm::RS256,
    );
    assert!(rejected(&v, &no_kid).await.contains("kid"));

    assert_eq!(evil.hits(), 0, "jku/x5u are never followed");
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn claim_rules() {
    let k = keys();
    let server = JwksServer::serving(&[&k.rsa, &k.ec]).await;
    let mut cfg = config(&server);
    cfg.issuer = Some("https://app.example.com".into());
    cfg.audience = Some("wagate".into());
    let (clock, v) = ready(cfg).await;
    let now = clock.now().unix_timestamp();
    let good = with(
        claims(&clock),
        json!({"iss": "https://app.example.com", "aud": ["web", "wagate"]}),
    );
    accepted(&v, &sign(&k.rsa, &good)).await;
    accepted(
        &v,
        &sign(&k.ec, &with(good.clone(), json!({"aud": "wagate"}))),
    )
    .await;
    accepted(
        &v,
        &sign(&k.rsa, &with(good.clone(), json!({"exp": now - 30}))),
    )
    .await; // leeway
    accepted(
        &v,
        &sign(&k.rsa, &with(good.clone(), json!({"nbf": now + 30}))),
    )
    .await; // leeway

    let cases = [
        (json!({"exp": now - 61}), "expired"),
        (json!({"exp": null}), "exp claim missing"),
        (json!({"exp": "tomorrow"}), "exp"),
        (json!({"nbf": now + 120}), "not yet valid"),
        (json!({"iss": "https://evil.example.com"}), "issuer"),
        (json!({"iss": null}), "issuer"),
        (json!({"aud": "other-api"}), "audience"),
        (json!({"aud": ["web"]}), "audience"),
        (json!({"aud": null}), "audience"),
        (json!({"org_id": null}), "org claim missing"),
        (json!({"org_id": 42}), "org claim is not a string"),
        (json!({"org_id": "acme corp"}), "organization id"),
        (json!({"org_id": ""}), "organization id"),
    ];
    for (change, why) in cases {
        let reason = rejected(&v, &sign(&k.rsa, &with(good.clone(), change.clone()))).await;
        assert!(reason.contains(why), "{change}: {reason}");
    }

    // Time moves on: the same token expires (with the leeway).
    let token = sign(&k.ec, &good);
    clock.advance(600 + 59);
    accepted(&v, &token).await;
    clock.advance(2);
    assert!(rejected(&v, &token).await.contains("expired"));
}

#[tokio::test]
async fn tampering_and_size() {
    let k = keys();
    let server = JwksServer::serving(&[&k.rsa, &k.ec, &k.ed]).await;
    let (clock, v) = ready(config(&server)).await;

    for key in [&k.rsa, &k.ec, &k.ed] {
        let token = sign(key, &claims(&clock));
        let [header, _, signature]: [&str; 3] =
            token.split('.').collect::<Vec<_>>().try_into().unwrap();
        // Payload swapped for a more generous one, signature kept.
        let forged =
            b64(with(claims(&clock), json!({"role": "owner", "org_id": "victim"})).to_string());
        assert!(
            rejected(&v, &format!("{header}.{forged}.{signature}"))
                .await
                .contains("signature")
        );
        // One bit of the signature flipped.
        let mut sig = URL_SAFE_NO_PAD.decode(signature).unwrap();
        sig[10] ^= 1;
        let flipped = format!(
            "{header}.{}.{}",
            token.split('.').nth(1).unwrap(),
            b64(&sig)
        );
        assert!(rejected(&v, &flipped).await.contains("signature"));
        // Truncated and empty signatures.
        let payload = token.split('.').nth(1).unwrap();
        assert!(
            rejected(&v, &format!("{header}.{payload}.{}", b64(&sig[..20])))
                .await
                .contains("signature")
        );
        assert!(
            rejected(&v, &format!("{header}.{payload}."))
                .await
                .contains("signature")
        );
    }
    // Garbage in the parts.
    assert!(rejected(&v, "e30.e30.e30").await.contains("header"));
    assert!(rejected(&v, "a.b.c").await.contains("header"));

    // Just under 8 KiB passes; over is refused unparsed.
    let pad = |n: usize| with(claims(&clock), json!({"pad": "x".repeat(n)}));
    let big = sign(&k.ed, &pad(5_500));
    assert!(big.len() < 8 * 1024);
    accepted(&v, &big).await;
    let huge = sign(&k.ed, &pad(6_500));
    assert!(huge.len() > 8 * 1024);
    assert!(rejected(&v, &huge).await.contains("8 KiB"));
    assert!(rejected(&v, &"a".repeat(100_000)).await.contains("8 KiB"));
}

#[tokio::test]
async fn symmetric_keys_in_the_jwks_are_ignored() {
    let k = keys();
    let secret = b"a shared secret the frontend should not publish";
    let oct = json!({"kty": "oct", "kid": "hmac-1", "alg": "HS256", "k": b64(secret)});
    let body = json!({"keys": [oct, k.rsa.jwk]}).to_string();
    let server = JwksServer::start(Mode::Serve(body)).await;
    let (clock, v) = ready(config(&server)).await;
    assert_eq!(
        v.cache().current().unwrap().kids().collect::<Vec<_>>(),
        ["rsa-1"]
    );

    let hs = sign_raw(
        &json!({"alg": "HS256", "kid": "hmac-1"}),
        &claims(&clock),
        &EncodingKey::from_secret(secret),
        Algorithm::HS256,
    );
    assert!(rejected(&v, &hs).await.contains("HMAC"));
    let rs = sign_raw(
        &json!({"alg": "RS256", "kid": "hmac-1"}),
        &claims(&clock),
        &k.rsa.private,
        Algorithm::RS256,
    );
    assert!(rejected(&v, &rs).await.contains("unknown kid"));
}

#[tokio::test]
async fn key_rotation_is_picked_up_by_the_unknown_kid_refetch() {
    let k = keys();
    let server = JwksServer::serving(&[&k.rsa]).await;
    let (clock, v) = ready(config(&server)).await;
    assert_eq!(server.hits(), 1);

    server.serve(&[&k.rsa, &k.rsa2]);
    let p = accepted(&v, &sign(&k.rsa2, &claims(&clock))).await;
    assert_eq!(p.org.as_str(), "acme");
    assert_eq!(server.hits(), 2, "one refetch, no restart");
    accepted(&v, &sign(&k.rsa, &claims(&clock))).await;
    accepted(&v, &sign(&k.rsa2, &claims(&clock))).await;
    assert_eq!(server.hits(), 2, "known kids fetch nothing");
}

#[tokio::test]
async fn unknown_kid_refetch_is_throttled() {
    let k = keys();
    let server = JwksServer::serving(&[&k.rsa]).await;
    let (clock, v) = ready(config(&server)).await;
    let c = claims(&clock);
    // Refused before the signature is looked at, so any bytes will do.
    let random_kid = |i: usize| {
        format!(
            "{}.{}.{}",
            b64(json!({"alg": "RS256", "kid": format!("random-{i}")}).to_string()),
            b64(c.to_string()),
            b64([7u8; 256])
        )
    };

    assert!(rejected(&v, &random_kid(0)).await.contains("unknown kid"));
    assert_eq!(server.hits(), 2, "the first unknown kid refetches");
    for i in 1..200 {
        assert!(rejected(&v, &random_kid(i)).await.contains("unknown kid"));
    }
    assert_eq!(
        server.hits(),
        2,
        "a flood of kids within 30 s fetches nothing more"
    );

    // A real rotation inside the window waits for the window to pass.
    server.serve(&[&k.rsa, &k.rsa2]);
    clock.advance(29);
    rejected(&v, &sign(&k.rsa2, &c)).await;
    assert_eq!(server.hits(), 2);
    clock.advance(2);
    accepted(&v, &sign(&k.rsa2, &c)).await;
    assert_eq!(server.hits(), 3);

    // Concurrent tokens with the same new kid share one fetch.
    clock.advance(31);
    server.serve(&[&k.rsa, &k.rsa2, &k.ed]);
    let token = Arc::new(sign(&k.ed, &claims(&clock)));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (v, token) = (v.clone(), token.clone());
        tasks.spawn(async move { v.authenticate(&token).await });
    }
    while let Some(result) = tasks.join_next().await {
        assert!(matches!(result.unwrap(), Ok(Some(_))));
    }
    assert_eq!(server.hits(), 4);
}

#[tokio::test]
async fn a_removed_key_stops_working_after_the_next_refresh() {
    let k = keys();
    let server = JwksServer::serving(&[&k.rsa, &k.ec]).await;
    let mut cfg = config(&server);
    cfg.refresh_interval = Duration::from_millis(50);
    let (clock, v) = ready(cfg).await;
    let rsa_token = sign(&k.rsa, &claims(&clock));
    let ec_token = sign(&k.ec, &claims(&clock));
    accepted(&v, &rsa_token).await;

    server.serve(&[&k.ec]);
    wait_until("rsa-1 dropped by a refresh", || async {
        v.authenticate(&rsa_token).await.is_err()
    })
    .await;
    assert!(rejected(&v, &rsa_token).await.contains("unknown kid"));
    accepted(&v, &ec_token).await;
}

#[tokio::test]
async fn cached_keys_survive_the_endpoint_going_down() {
    let k = keys();
    let server = JwksServer::serving(&[&k.rsa, &k.ed]).await;
    let mut cfg = config(&server);
    cfg.refresh_interval = Duration::from_millis(50);
    cfg.fetch_timeout = Duration::from_millis(200);
    let (clock, v) = ready(cfg).await;
    let token = sign(&k.rsa, &claims(&clock));

    let failures = [
        Mode::Status(500),
        Mode::Status(404),
        Mode::Serve("<html>maintenance</html>".into()),
        Mode::Serve(r#"{"keys": []}"#.into()),
        Mode::Serve(r#"{"keys": [{"kty": "oct", "kid": "x", "k": "AAAA"}]}"#.into()),
        Mode::Close,
        Mode::Hang,
    ];
    for mode in failures {
        server.set(mode.clone());
        let before = server.hits();
        wait_until("two failed refreshes", || async {
            server.hits() >= before + 2
        })
        .await;
        assert!(v.is_ready(), "{mode:?}");
        accepted(&v, &token).await;
        accepted(&v, &sign(&k.ed, &claims(&clock))).await;
    }
    // Back up: a changed set is picked up again.
    server.serve(&[&k.ec]);
    wait_until("recovery", || async {
        v.authenticate(&token).await.is_err()
    })
    .await;
    accepted(&v, &sign(&k.ec, &claims(&clock))).await;
}

#[tokio::test]
async fn not_ready_and_every_jwt_refused_until_a_set_loads() {
    let k = keys();
    let server = JwksServer::start(Mode::Status(503)).await;
    let clock = clock();
    let v = JwtVerifier::start_with_clock(config(&server), clock.clone());
    wait_until("first attempt", || async { server.hits() >= 1 }).await;
    assert!(!v.is_ready());
    let token = sign(&k.rsa, &claims(&clock));
    assert!(rejected(&v, &token).await.contains("no key set"));
    assert!(
        rejected(&v, &sign(&k.ed, &claims(&clock)))
            .await
            .contains("no key set")
    );
    assert!(!v.is_ready());

    // The endpoint comes up: the background retry (1 s) loads the set.
    server.serve(&[&k.rsa]);
    wait_until("background retry loads the set", || async { v.is_ready() }).await;
    accepted(&v, &token).await;
}

#[tokio::test]
async fn an_endpoint_that_never_answers_leaves_the_verifier_not_ready() {
    let k = keys();
    // Accepts and hangs up; then a port that never answers.
    let server = JwksServer::start(Mode::Close).await;
    let clock = clock();
    let v = JwtVerifier::start_with_clock(config(&server), clock.clone());
    wait_until("first attempt", || async { server.hits() >= 1 }).await;
    assert!(!v.is_ready());
    assert!(
        rejected(&v, &sign(&k.rsa, &claims(&clock)))
            .await
            .contains("no key set")
    );

    // Bound but never accepting: connections open, no answer ever comes.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut cfg = JwtConfig::new(format!("http://{}/jwks.json", silent.local_addr().unwrap()));
    cfg.fetch_timeout = Duration::from_millis(500);
    let v = JwtVerifier::start_with_clock(cfg, clock.clone());
    // The token's unknown kid makes it fetch (and fail) itself: no sleeping needed.
    assert!(
        rejected(&v, &sign(&k.rsa, &claims(&clock)))
            .await
            .contains("no key set")
    );
    assert!(!v.is_ready());
    drop(silent);
}

#[tokio::test]
async fn a_set_loaded_on_demand_after_a_failed_start() {
    let k = keys();
    let server = JwksServer::start(Mode::Status(500)).await;
    let clock = clock();
    let v = JwtVerifier::start_with_clock(config(&server), clock.clone());
    wait_until("first attempt", || async { server.hits() >= 1 }).await;
    let token = sign(&k.ec, &claims(&clock));
    rejected(&v, &token).await; // the first unknown kid: refetch (fails)
    server.serve(&[&k.ec]);
    clock.advance(31);
    accepted(&v, &token).await; // the refetch window passed: fetched on demand
    assert!(v.is_ready());
}

#[tokio::test]
async fn shutdown_and_drop_stop_the_refresh_task() {
    let k = keys();
    let server = JwksServer::serving(&[&k.rsa]).await;
    let mut cfg = config(&server);
    cfg.refresh_interval = Duration::from_millis(20);
    let (clock, v) = ready(cfg.clone()).await;
    let cache = v.cache().clone();
    wait_until("some refreshes", || async { server.hits() >= 3 }).await;
    v.shutdown();
    // The task owned the other reference to the cache.
    wait_until("task ended", || async { Arc::strong_count(&cache) == 2 }).await;
    accepted(&v, &sign(&k.rsa, &claims(&clock))).await;
    assert!(v.is_ready(), "loaded keys stay after shutdown");

    let (_, v) = ready(cfg).await;
    let cache = v.cache().clone();
    drop(v);
    wait_until("task ended on drop", || async {
        Arc::strong_count(&cache) == 1
    })
    .await;
}

#[tokio::test]
async fn a_verifier_without_background_task_can_be_fed_a_set() {
    let k = keys();
    let clock = clock();
    let v = JwtVerifier::new(JwtConfig::new("http://127.0.0.1:9/unused"), clock.clone());
    assert!(!v.is_ready());
    assert_eq!(
        v.cache().install_json(jwks(&[&k.rsa, &k.ed]).as_bytes()),
        Ok(2)
    );
    assert!(v.is_ready());
    accepted(&v, &sign(&k.ed, &claims(&clock))).await;
}

#[tokio::test]
async fn a_remembered_token_still_expires_and_still_needs_its_key() {
    let k = keys();
    let server = JwksServer::serving(&[&k.rsa, &k.ec]).await;
    let (clock, v) = ready(config(&server)).await;
    let token = sign(&k.rsa, &claims(&clock));
    accepted(&v, &token).await;
    assert_eq!(v.verified_cache_hits(), 0, "the first time is a full check");
    let first = accepted(&v, &token).await;
    assert_eq!(
        v.verified_cache_hits(),
        1,
        "answered from the verified-token cache"
    );
    assert_eq!(first.kind, user("member"), "with the same principal");
    // Within exp + leeway (600 s + 60 s): still from the cache.
    clock.advance(659);
    accepted(&v, &token).await;
    assert_eq!(v.verified_cache_hits(), 2);
    // Past it: refused although it was verified before.
    clock.advance(2);
    assert!(rejected(&v, &token).await.contains("expired"));
    assert_eq!(v.verified_cache_hits(), 2);

    // A key removed from the set: a token verified with it is refused after the refresh.
    let token = sign(&k.ec, &claims(&clock));
    accepted(&v, &token).await;
    accepted(&v, &token).await;
    assert_eq!(v.verified_cache_hits(), 3);
    server.set(Mode::Serve(jwks(&[&k.rsa])));
    v.cache().refresh().await.unwrap();
    assert!(rejected(&v, &token).await.contains("unknown kid"));
    assert_eq!(v.verified_cache_hits(), 3, "a new key set is not a hit");

    // The same set fetched again is a new set too: remembered tokens are
    // checked once more against it, then remembered again.
    let token = sign(&k.rsa, &claims(&clock));
    accepted(&v, &token).await;
    v.cache().refresh().await.unwrap();
    accepted(&v, &token).await;
    assert_eq!(v.verified_cache_hits(), 3);
    accepted(&v, &token).await;
    assert_eq!(v.verified_cache_hits(), 4);
}

#[tokio::test]
async fn a_required_typ_is_checked_as_a_media_type() {
    let k = keys();
    let server = JwksServer::serving(&[&k.rsa]).await;
    let typed = |typ: Value, claims: &Value| {
        let mut header = json!({"alg": "RS256", "kid": "rsa-1"});
        if !typ.is_null() {
            header["typ"] = typ;
        }
        sign_raw(&header, claims, &k.rsa.private, Algorithm::RS256)
    };

    // Not configured: typ is not looked at.
    let (clock, v) = ready(config(&server)).await;
    let c = claims(&clock);
    for typ in [json!("JWT"), json!("at+jwt"), Value::Null, json!(7)] {
        accepted(&v, &typed(typ, &c)).await;
    }

    let mut cfg = config(&server);
    cfg.required_typ = Some("at+jwt".into());
    let (clock, v) = ready(cfg).await;
    let c = claims(&clock);
    for typ in [
        "at+jwt",
        "AT+JWT",
        "application/at+jwt",
        "Application/At+Jwt",
    ] {
        accepted(&v, &typed(json!(typ), &c)).await;
    }
    for (typ, why) in [
        (json!("JWT"), "wrong typ"),
        (json!("jwt"), "wrong typ"),
        (json!("application/jwt"), "wrong typ"),
        (json!("text/at+jwt"), "wrong typ"),
        (json!("at+jwt; charset=utf-8"), "wrong typ"),
        (Value::Null, "no typ"),
        (json!(["at+jwt"]), "not a string"),
    ] {
        let reason = rejected(&v, &typed(typ.clone(), &c)).await;
        assert!(reason.contains(why), "{typ}: {reason}");
    }
    // Checked before any key work: an unknown kid with a wrong typ fetches nothing.
    let before = server.hits();
    let wrong = sign_raw(
        &json!({"alg": "RS256", "kid": "rsa-9", "typ": "JWT"}),
        &c,
        &k.rsa.private,
        Algorithm::RS256,
    );
    assert!(rejected(&v, &wrong).await.contains("wrong typ"));
    assert_eq!(server.hits(), before);

    // Configured in the long form: the short form in tokens matches too.
    let mut cfg = config(&server);
    cfg.required_typ = Some("application/JWT".into());
    let (clock, v) = ready(cfg).await;
    accepted(&v, &sign(&k.rsa, &claims(&clock))).await; // typ "JWT"
}
