use reqwest::{Method, StatusCode};
use serde_json::json;
use wagate_contract_tests::{TestApp, assert_error, json};

const GHOST: &str = "sess_01JBZ5T0Q4M6Y8V2K3N7R9S1WX";

/// Every `/api/v1` route and the capability it needs (api.md).
fn routes(session: &str) -> Vec<(Method, String, &'static str)> {
    let s = format!("/api/v1/sessions/{session}");
    let c = format!("{s}/contacts/14155550123@s.whatsapp.net");
    vec![
        (Method::POST, "/api/v1/sessions".into(), "manage"),
        (Method::GET, "/api/v1/sessions".into(), "read"),
        (Method::GET, s.clone(), "read"),
        (Method::DELETE, s.clone(), "manage"),
        (Method::POST, format!("{s}/connect"), "manage"),
        (Method::POST, format!("{s}/disconnect"), "manage"),
        (Method::POST, format!("{s}/logout"), "manage"),
        (Method::GET, format!("{s}/qr"), "manage"),
        (Method::POST, format!("{s}/pairing-code"), "manage"),
        (Method::GET, format!("{c}/picture"), "read"),
        (Method::GET, format!("{c}/about"), "read"),
        (Method::POST, format!("{c}/block"), "send"),
        (Method::POST, format!("{c}/unblock"), "send"),
        (Method::GET, format!("{s}/blocklist"), "read"),
        (Method::POST, "/api/v1/api-keys".into(), "admin"),
        (Method::GET, "/api/v1/api-keys".into(), "admin"),
        (
            Method::DELETE,
            "/api/v1/api-keys/key_01JBZ5T0Q4M6Y8V2K3N7R9S1WX".into(),
            "admin",
        ),
    ]
}

fn body_for(path: &str) -> Option<serde_json::Value> {
    if path.ends_with("pairing-code") {
        Some(json!({ "phoneNumber": "+1 415 555 0123" }))
    } else if path == "/api/v1/api-keys" {
        Some(json!({ "name": "k", "capabilities": ["admin"] }))
    } else {
        None
    }
}

#[tokio::test]
async fn every_route_needs_a_valid_bearer_token() {
    let app = TestApp::spawn().await;
    let (other_secret, _) = wagate_auth_free_key();
    let bad_tokens = [
        String::new(),
        "wgk_short".into(),
        other_secret,
        "not-a-token".into(),
        "eyJhbGciOiJub25lIn0.eyJvcmdfaWQiOiJhY21lIn0.".into(),
        "x".repeat(10 * 1024),
    ];
    for (method, path, _) in routes(GHOST) {
        for token in &bad_tokens {
            let mut r = app.req(method.clone(), &path, token);
            if let Some(b) = body_for(&path) {
                r = r.json(&b);
            }
            let res = r.send().await.unwrap();
            assert_eq!(
                res.headers()
                    .get("www-authenticate")
                    .map(|v| v.to_str().unwrap()),
                Some("Bearer"),
                "{method} {path}"
            );
            let e = assert_error(res, 401, "unauthorized").await;
            assert_eq!(e["message"], "missing or invalid bearer token");
        }
    }
    for header in ["Basic dXNlcjpwYXNz", "Bearer", "Bearer  ", "wgk_abc"] {
        let res = app
            .client
            .get(format!("{}/api/v1/sessions", app.address))
            .header("authorization", header)
            .send()
            .await
            .unwrap();
        assert_error(res, 401, "unauthorized").await;
    }
}

/// A well-formed key that was never issued.
fn wagate_auth_free_key() -> (String, ()) {
    (format!("wgk_{}", "ab".repeat(32)), ())
}

#[tokio::test]
async fn each_route_refuses_a_caller_without_its_capability_before_any_lookup() {
    let app = TestApp::spawn().await;
    let all = ["read", "send", "manage", "admin"];
    let owner = app.key("acme", "read,send,manage,admin").await;
    let real = app.connected_session(&owner).await;
    let foreign = app
        .connected_session(&app.key("globex", "read,manage").await)
        .await;

    for session in [GHOST, real.as_str(), foreign.as_str()] {
        for (method, path, needed) in routes(session) {
            let others: Vec<_> = all.iter().filter(|c| **c != needed).copied().collect();
            let key = app.key("acme", &others.join(",")).await;
            let mut r = app.req(method.clone(), &path, &key);
            if let Some(b) = body_for(&path) {
                r = r.json(&b);
            }
            let e = assert_error(r.send().await.unwrap(), 403, "forbidden").await;
            assert_eq!(e["details"]["required"], needed, "{method} {path}");
        }
    }

    // With exactly the capability, the route answers something other than 403.
    for (method, path, needed) in routes(GHOST) {
        let key = app.key("acme", needed).await;
        let mut r = app.req(method.clone(), &path, &key);
        if let Some(b) = body_for(&path) {
            r = r.json(&b);
        }
        let res = r.send().await.unwrap();
        assert_ne!(res.status(), StatusCode::FORBIDDEN, "{method} {path}");
    }
}

#[tokio::test]
async fn another_organizations_session_does_not_exist_for_you() {
    let app = TestApp::spawn().await;
    let a = app.key("acme", "read,send,manage,admin").await;
    let b = app.key("globex", "read,send,manage,admin").await;
    let theirs = app.connected_session(&b).await;
    let mine = app.create_session(&a).await;

    for (method, path, _) in routes(&theirs) {
        if !path.contains(&theirs) {
            continue;
        }
        let mut r = app.req(method.clone(), &path, &a);
        if let Some(body) = body_for(&path) {
            r = r.json(&body);
        }
        let e = assert_error(r.send().await.unwrap(), 404, "not_found").await;
        assert_eq!(e["message"], "session not found", "{method} {path}");
    }
    // Untouched by all of that: still connected, and listed only for its owner.
    let s = json(app.get(&format!("/api/v1/sessions/{theirs}"), &b).await).await;
    assert_eq!(s["status"], "connected");
    let list = json(app.get("/api/v1/sessions", &a).await).await;
    let ids: Vec<_> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![mine.as_str()]);
}
