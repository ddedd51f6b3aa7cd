use crate::support::{GHOST, TestApp, assert_error, json, routes};
use reqwest::StatusCode;

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
            let res = app.call(&method, &path, token).await;
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

on_both_adapters! {
async fn each_route_refuses_a_caller_without_its_capability_before_any_lookup(app) {
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
            let e = assert_error(app.call(&method, &path, &key).await, 403, "forbidden").await;
            assert_eq!(e["details"]["required"], needed, "{method} {path}");
        }
    }

    // With exactly the capability, the route answers something other than 403.
    for (method, path, needed) in routes(GHOST) {
        let key = app.key("acme", needed).await;
        let res = app.call(&method, &path, &key).await;
        assert_ne!(res.status(), StatusCode::FORBIDDEN, "{method} {path}");
    }
}

async fn another_organizations_session_does_not_exist_for_you(app) {
    let a = app.key("acme", "read,send,manage,admin").await;
    let b = app.key("globex", "read,send,manage,admin").await;
    let theirs = app.connected_session(&b).await;
    let mine = app.create_session(&a).await;

    for (method, path, _) in routes(&theirs) {
        if !path.contains(&theirs) {
            continue;
        }
        let e = assert_error(app.call(&method, &path, &a).await, 404, "not_found").await;
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
}
