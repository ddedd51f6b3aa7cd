//! Login JWTs (verified against a real local JWKS) through the HTTP app.

use std::sync::Arc;

use crate::support::{
    AUDIENCE, Frontend, GHOST, ISSUER, TestApp, assert_error, json, routes, test_config,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use wagate::Application;
use wagate::config::JwtSettings;

#[tokio::test]
async fn every_role_gets_exactly_its_capabilities_route_by_route() {
    let frontend = Frontend::start().await;
    let app = TestApp::spawn_with_frontend(&frontend).await;
    let table: [(&str, &[&str]); 6] = [
        ("owner", &["read", "send", "manage", "admin"]),
        ("admin", &["read", "send", "manage", "admin"]),
        ("member", &["read", "send"]),
        ("viewer", &["read"]),
        ("guest", &[]),
        ("", &[]),
    ];
    for (role, caps) in table {
        // One person per role: each has its own request limit.
        let token = frontend.token(
            "rsa-1",
            json!({ "org_id": "acme", "role": role, "sub": format!("user-{role}") }),
        );
        for (method, path, needed) in routes(GHOST) {
            let res = app.call(&method, &path, &token).await;
            if caps.contains(&needed) {
                assert_ne!(
                    res.status(),
                    StatusCode::FORBIDDEN,
                    "{role}: {method} {path}"
                );
                assert_ne!(
                    res.status(),
                    StatusCode::UNAUTHORIZED,
                    "{role}: {method} {path}"
                );
            } else {
                let e = assert_error(res, 403, "forbidden").await;
                assert_eq!(e["details"]["required"], needed, "{role}: {method} {path}");
            }
        }
    }
}

#[tokio::test]
async fn rs256_es256_and_eddsa_tokens_all_work_and_scope_to_their_org() {
    let frontend = Frontend::start().await;
    let app = TestApp::spawn_with_frontend(&frontend).await;
    let mut ids = Vec::new();
    for kid in ["rsa-1", "ec-1", "ed-1"] {
        let token = frontend.token(kid, json!({ "org_id": "acme", "role": "owner" }));
        ids.push(app.connected_session(&token).await);
    }
    let other = frontend.token("ed-1", json!({ "org_id": "globex", "role": "owner" }));
    assert_error(
        app.get(&format!("/api/v1/sessions/{}", ids[0]), &other)
            .await,
        404,
        "not_found",
    )
    .await;
    let list = json(app.get("/api/v1/sessions", &other).await).await;
    assert_eq!(list["data"], json!([]));
    // API keys still work beside JWTs.
    let key = app.key("acme", "read").await;
    let list = json(app.get("/api/v1/sessions", &key).await).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn an_admin_creates_keys_no_stronger_than_their_role() {
    let frontend = Frontend::start().await;
    let app = TestApp::spawn_with_frontend(&frontend).await;
    let admin = frontend.token("ec-1", json!({ "org_id": "acme", "role": "admin" }));
    let res = app
        .post(
            "/api/v1/api-keys",
            &admin,
            Some(json!({ "name": "bot", "capabilities": ["read", "send"] })),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let key = json(res).await["key"].as_str().unwrap().to_owned();
    assert_eq!(
        app.get("/api/v1/sessions", &key).await.status(),
        StatusCode::OK
    );

    let mut policy_config = test_config(&app.dir);
    policy_config.auth.roles.insert(
        "support".into(),
        wagate::config::StringList(vec!["read".into(), "admin".into()]),
    );
    policy_config.auth.jwt.jwks_url = Some(frontend.jwks_url.clone());
    policy_config.auth.jwt.audience = Some(AUDIENCE.into());
    let dir = Arc::new(tempfile::tempdir().unwrap());
    policy_config.database.url =
        wagate::config::Secret::new(format!("sqlite://{}/w.db", dir.path().display()));
    let app2 = TestApp::spawn_with(policy_config, dir).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while app2.get("/readyz", "").await.status() != StatusCode::OK {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // A configured role: may manage keys, but not grant what it lacks.
    let support = frontend.token("rsa-1", json!({ "org_id": "acme", "role": "support" }));
    let e = assert_error(
        app2.post(
            "/api/v1/api-keys",
            &support,
            Some(json!({ "name": "x", "capabilities": ["send"] })),
        )
        .await,
        403,
        "forbidden",
    )
    .await;
    assert_eq!(e["details"]["required"], "send");
    let res = app2
        .post(
            "/api/v1/api-keys",
            &support,
            Some(json!({ "name": "x", "capabilities": ["read"] })),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn bad_tokens_are_plain_401s() {
    let frontend = Frontend::start().await;
    let app = TestApp::spawn_with_frontend(&frontend).await;
    let good = frontend.token("rsa-1", json!({ "org_id": "acme", "role": "owner" }));
    let mut tampered = good.clone();
    tampered.pop();
    tampered.push(if good.ends_with('A') { 'B' } else { 'A' });
    for token in [
        frontend.token("rsa-1", json!({ "role": "owner" })), // no org claim
        frontend.token("rsa-1", json!({ "org_id": "acme", "exp": 1_000_000 })), // expired
        frontend.token(
            "rsa-1",
            json!({ "org_id": "acme", "iss": "https://evil.test" }),
        ), // wrong issuer
        frontend.token("rsa-1", json!({ "org_id": "acme", "aud": "someone-else" })), // wrong audience
        frontend.token("rsa-1", json!({ "org_id": "not a valid org!" })),
        tampered,
    ] {
        let res = app.get("/api/v1/sessions", &token).await;
        let e = assert_error(res, 401, "unauthorized").await;
        assert_eq!(e["message"], "missing or invalid bearer token");
    }
}

#[tokio::test]
async fn not_ready_until_the_key_set_loads() {
    // Nothing listens on this port: the JWKS never loads.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    config.auth.jwt.jwks_url = Some(format!("http://127.0.0.1:{port}/jwks.json"));
    config.auth.jwt.audience = Some(AUDIENCE.into());
    let app = TestApp::spawn_with(config, dir).await;
    let e = assert_error(app.get("/readyz", "").await, 503, "unavailable").await;
    assert_eq!(e["details"]["auth"], "key set not loaded");
    assert_eq!(app.get("/healthz", "").await.status(), StatusCode::OK);
    // API keys keep working while JWTs cannot be checked.
    let key = app.key("acme", "read").await;
    assert_eq!(
        app.get("/api/v1/sessions", &key).await.status(),
        StatusCode::OK
    );
}

/// A gateway accepting `frontend`'s JWTs (issuer and audience checked) with
/// `tweak` applied to its `auth.jwt.*` settings, ready when this returns.
async fn spawn_jwt_app(frontend: &Frontend, tweak: impl FnOnce(&mut JwtSettings)) -> TestApp {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(&dir);
    config.auth.jwt.jwks_url = Some(frontend.jwks_url.clone());
    config.auth.jwt.issuer = Some(ISSUER.into());
    config.auth.jwt.audience = Some(AUDIENCE.into());
    tweak(&mut config.auth.jwt);
    let app = TestApp::spawn_with(config, dir).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while app.get("/readyz", "").await.status() != StatusCode::OK {
        assert!(tokio::time::Instant::now() < deadline, "JWKS never loaded");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    app
}

/// A login JWT signed with the frontend's `rsa-1` key (as
/// [`Frontend::token`]), with header `typ` set to `typ` (absent on `None`).
fn token_with_typ(typ: Option<&str>, claims: &Value) -> String {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let pem = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../crates/auth/tests/keys/rsa-1.key.pem"
    ))
    .unwrap();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".into());
    header.typ = typ.map(str::to_owned);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut body =
        json!({ "iss": ISSUER, "aud": AUDIENCE, "sub": "user-1", "iat": now, "exp": now + 600 });
    for (k, v) in claims.as_object().unwrap() {
        body[k] = v.clone();
    }
    jsonwebtoken::encode(&header, &body, &EncodingKey::from_rsa_pem(&pem).unwrap()).unwrap()
}

#[tokio::test]
async fn login_jwts_without_an_audience_refuse_to_start() {
    let frontend = Frontend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir);
    config.auth.jwt.jwks_url = Some(frontend.jwks_url.clone());
    let err = format!(
        "{:#}",
        Application::build(config.clone()).await.unwrap_err()
    );
    assert!(
        err.contains("auth.jwt.audience") && err.contains("auth.jwt.allow_any_audience"),
        "{err}"
    );
    assert!(
        !dir.path().join("wagate.db").exists(),
        "refused before the database is opened"
    );
    // Both an audience and the opt-out: contradictory, refused too.
    config.auth.jwt.audience = Some(AUDIENCE.into());
    config.auth.jwt.allow_any_audience = true;
    let err = format!("{:#}", Application::build(config).await.unwrap_err());
    assert!(err.contains("contradict"), "{err}");

    // The explicit opt-out starts, and then any audience (or none) passes.
    let app = spawn_jwt_app(&frontend, |jwt| {
        jwt.audience = None;
        jwt.allow_any_audience = true;
    })
    .await;
    for aud in [
        json!(AUDIENCE),
        json!("someone-else"),
        json!(["a", "b"]),
        Value::Null,
    ] {
        let token = frontend.token(
            "rsa-1",
            json!({ "org_id": "acme", "role": "viewer", "aud": aud }),
        );
        assert_eq!(
            app.get("/api/v1/sessions", &token).await.status(),
            StatusCode::OK,
            "{aud}"
        );
    }
}

#[tokio::test]
async fn a_required_typ_is_enforced() {
    let frontend = Frontend::start().await;
    let claims = json!({ "org_id": "acme", "role": "viewer" });
    let app = spawn_jwt_app(&frontend, |jwt| jwt.required_typ = Some("at+jwt".into())).await;
    for typ in ["at+jwt", "AT+JWT", "application/at+jwt"] {
        let res = app
            .get("/api/v1/sessions", &token_with_typ(Some(typ), &claims))
            .await;
        assert_eq!(res.status(), StatusCode::OK, "{typ}");
    }
    for typ in [
        Some("JWT"),
        Some("application/jwt"),
        Some("at+jwt; v=1"),
        None,
    ] {
        let res = app
            .get("/api/v1/sessions", &token_with_typ(typ, &claims))
            .await;
        let e = assert_error(res, 401, "unauthorized").await;
        assert_eq!(e["message"], "missing or invalid bearer token", "{typ:?}");
    }

    // Not configured: typ is not looked at.
    let app = spawn_jwt_app(&frontend, |_| {}).await;
    for typ in [Some("JWT"), Some("at+jwt"), None] {
        let res = app
            .get("/api/v1/sessions", &token_with_typ(typ, &claims))
            .await;
        assert_eq!(res.status(), StatusCode::OK, "{typ:?}");
    }
}
