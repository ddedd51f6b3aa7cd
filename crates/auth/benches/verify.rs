//! Bearer-token verification on the request path: API keys (cache hit and
//! miss against a real SQLite file) and login JWTs (RS256, ES256, EdDSA),
//! each JWT algorithm next to the bare signature check for the same key so
//! the verifier's own overhead is visible as a ratio.

// A benchmark is a test harness: a panic on broken set-up is the right
// failure report, and criterion's macros generate undocumented items.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Validation};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::runtime::Runtime;
use wagate_auth::{
    ApiKeyCache, ApiKeyVerifier, Authenticator, JwtConfig, JwtVerifier, OsEntropy, mint_api_key,
};
use wagate_domain::{
    ApiKey, ApiKeyId, ApiKeyName, Capability, CapabilitySet, NewApiKey, OrgId, PrincipalKind,
    SystemClock,
};
use wagate_store::{ApiKeyStore, SqliteStore};

const ISSUER: &str = "https://bench.wagate.invalid";
const AUDIENCE: &str = "wagate";

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

// ------------------------------------------------------------ API keys ----

fn api_key(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/bench.db", dir.path().display());
    let (verifier, secret, id) = rt.block_on(async {
        let store = Arc::new(SqliteStore::connect(&url).await.unwrap());
        store.migrate().await.unwrap();
        // Some other keys, so the lookup is not in a one-row table.
        for n in 1..=100u32 {
            insert_key(&store, n).await;
        }
        let (secret, id) = insert_key(&store, 0).await;
        let verifier = ApiKeyVerifier::new(store, Arc::new(SystemClock));
        (verifier, secret, id)
    });
    let token = secret.expose();
    let principal = rt.block_on(verifier.authenticate(token)).unwrap().unwrap();
    assert_eq!(principal.kind, PrincipalKind::ApiKey(id));

    let mut group = c.benchmark_group("api_key");
    // What every async benchmark below pays for driving one future.
    group.bench_function("block_on_empty_future", |b| {
        b.iter(|| rt.block_on(async { black_box(()) }))
    });
    group.bench_function("sha256_of_secret", |b| {
        b.iter(|| wagate_auth::hash_secret(black_box(&secret)))
    });
    group.bench_function("cache_hit", |b| {
        b.iter(|| rt.block_on(verifier.authenticate(black_box(token))))
    });
    group.bench_function("cache_miss_sqlite", |b| {
        b.iter_batched(
            || verifier.invalidate(&id),
            |()| rt.block_on(verifier.authenticate(black_box(token))),
            BatchSize::PerIteration,
        )
    });
    group.finish();
    drop(verifier);
    drop(dir);
}

async fn insert_key(store: &SqliteStore, n: u32) -> (wagate_domain::ApiKeySecret, ApiKeyId) {
    let (secret, hash) = mint_api_key(&OsEntropy);
    let id = ApiKeyId::parse(&format!("key_{n:026}")).unwrap();
    let key = ApiKey {
        id,
        org: OrgId::parse("acme").unwrap(),
        name: ApiKeyName::parse("bench").unwrap(),
        capabilities: CapabilitySet::of([Capability::Read, Capability::Send]),
        prefix: secret.display_prefix().into(),
        created_at: OffsetDateTime::now_utc(),
        expires_at: None,
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

// ----------------------------------------------------------------- JWT ----

fn key_file(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// One test key: its JWK, the raw decoding key built from that JWK (as the
/// verifier builds it), and a valid token it signed.
struct Case {
    name: &'static str,
    alg: Algorithm,
    jwk: Value,
    decoding: DecodingKey,
    token: String,
}

fn case(name: &'static str, kid: &str, alg: Algorithm) -> Case {
    let pem = key_file(&format!("{kid}.key.pem"));
    let private = match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem),
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem),
        _ => unreachable!("only the three accepted algorithms"),
    }
    .unwrap();
    let jwk: Value = serde_json::from_slice(&key_file(&format!("{kid}.jwk.json"))).unwrap();
    let decoding =
        DecodingKey::from_jwk(&serde_json::from_value::<Jwk>(jwk.clone()).unwrap()).unwrap();
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let header = json!({"alg": alg, "kid": kid, "typ": "JWT"});
    let claims = json!({
        "sub": "user-1", "org_id": "acme", "role": "owner",
        "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 24 * 3600,
    });
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let input = format!("{}.{}", b64(&header), b64(&claims));
    let signature = jsonwebtoken::crypto::sign(input.as_bytes(), &private, alg).unwrap();
    Case {
        name,
        alg,
        jwk,
        decoding,
        token: format!("{input}.{signature}"),
    }
}

fn jwt(c: &mut Criterion) {
    let rt = runtime();
    let cases = [
        case("rs256", "rsa-1", Algorithm::RS256),
        case("es256", "ec-1", Algorithm::ES256),
        case("eddsa", "ed-1", Algorithm::EdDSA),
    ];
    let mut config = JwtConfig::new("http://127.0.0.1:9/never-fetched");
    config.issuer = Some(ISSUER.into());
    config.audience = Some(AUDIENCE.into());
    let verifier = JwtVerifier::new(config.clone(), Arc::new(SystemClock));
    let jwks = json!({ "keys": cases.iter().map(|c| c.jwk.clone()).collect::<Vec<_>>() });
    let jwks_text = jwks.to_string();
    // A verifier that has never seen the token: the full check, signature
    // included (built outside the timed part).
    let fresh = || {
        let v = JwtVerifier::new(config.clone(), Arc::new(SystemClock));
        v.cache().install_json(jwks_text.as_bytes()).unwrap();
        v
    };
    let loaded = verifier
        .cache()
        .install_json(jwks.to_string().as_bytes())
        .unwrap();
    assert_eq!(loaded, cases.len());

    for case in &cases {
        let token = case.token.as_str();
        let principal = rt.block_on(verifier.authenticate(token)).unwrap().unwrap();
        assert_eq!(principal.org.as_str(), "acme");
        let (signing_input, signature) = token.rsplit_once('.').unwrap();
        assert!(
            jsonwebtoken::crypto::verify(
                signature,
                signing_input.as_bytes(),
                &case.decoding,
                case.alg
            )
            .unwrap()
        );
        // jsonwebtoken's own decode, checking the signature and nothing else.
        let mut validation = Validation::new(case.alg);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        jsonwebtoken::decode::<Value>(token, &case.decoding, &validation).unwrap();

        let mut group = c.benchmark_group(format!("jwt_{}", case.name));
        group.bench_function("raw_crypto_verify", |b| {
            b.iter(|| {
                jsonwebtoken::crypto::verify(
                    black_box(signature),
                    black_box(signing_input.as_bytes()),
                    &case.decoding,
                    case.alg,
                )
            })
        });
        group.bench_function("raw_jsonwebtoken_decode", |b| {
            b.iter(|| jsonwebtoken::decode::<Value>(black_box(token), &case.decoding, &validation))
        });
        group.bench_function("wagate_jwt_verifier", |b| {
            b.iter_batched_ref(
                fresh,
                |v| rt.block_on(v.authenticate(black_box(token))),
                criterion::BatchSize::SmallInput,
            )
        });
        // The same token again: answered from the verified-token cache.
        group.bench_function("wagate_jwt_verifier_seen_before", |b| {
            b.iter(|| rt.block_on(verifier.authenticate(black_box(token))))
        });
        group.finish();
    }
}

criterion_group!(benches, api_key, jwt);
criterion_main!(benches);
