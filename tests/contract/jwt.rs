//! Login JWTs (verified against a real local JWKS) through the HTTP app.

use std::sync::Arc;

use crate::support::{Frontend, GHOST, TestApp, assert_error, json, routes, test_config};
use reqwest::StatusCode;
use serde_json::json;

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
        let token = frontend.token("rsa-1", json!({ "org_id": "acme", "role": role }));
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
