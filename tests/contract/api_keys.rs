use std::time::Duration;

use crate::support::{TestApp, assert_error, json};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn create_list_use_and_revoke() {
    let app = TestApp::spawn().await;
    let admin = app.key("acme", "read,send,manage,admin").await;

    let res = app
        .post(
            "/api/v1/api-keys",
            &admin,
            Some(json!({ "name": "ci", "capabilities": ["read", "send"], "expiresAt": null })),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let created = json(res).await;
    let secret = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("wgk_") && secret.len() == 68);
    assert!(id.starts_with("key_"));
    assert_eq!(created["capabilities"], json!(["read", "send"]));
    assert!(created["expiresAt"].is_null());

    // The new key works, with exactly its capabilities.
    assert_eq!(
        app.get("/api/v1/sessions", &secret).await.status(),
        StatusCode::OK
    );
    assert_error(
        app.post("/api/v1/sessions", &secret, None).await,
        403,
        "forbidden",
    )
    .await;

    let list = json(app.get("/api/v1/api-keys", &admin).await).await;
    let row = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(row["name"], "ci");
    assert_eq!(row["prefix"], &secret[..12]);
    assert!(row.get("key").is_none(), "the secret is never listed");
    assert!(!list.to_string().contains(&secret[12..]));

    // lastUsedAt is recorded (off the request path).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let list = json(app.get("/api/v1/api-keys", &admin).await).await;
        let row = list["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["id"] == id.as_str())
            .unwrap()
            .clone();
        if row["lastUsedAt"].is_string() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "lastUsedAt never written"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let res = app.delete(&format!("/api/v1/api-keys/{id}"), &admin).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    // Stops working at once.
    assert_error(
        app.get("/api/v1/sessions", &secret).await,
        401,
        "unauthorized",
    )
    .await;
    assert_error(
        app.delete(&format!("/api/v1/api-keys/{id}"), &admin).await,
        404,
        "not_found",
    )
    .await;
    let list = json(app.get("/api/v1/api-keys", &admin).await).await;
    assert!(
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["id"] != id.as_str())
    );
}

#[tokio::test]
async fn a_key_cannot_get_more_than_its_creator_has() {
    let app = TestApp::spawn().await;
    let limited_admin = app.key("acme", "read,admin").await;
    let e = assert_error(
        app.post(
            "/api/v1/api-keys",
            &limited_admin,
            Some(json!({ "name": "x", "capabilities": ["read", "send"] })),
        )
        .await,
        403,
        "forbidden",
    )
    .await;
    assert_eq!(e["details"]["required"], "send");
    let res = app
        .post(
            "/api/v1/api-keys",
            &limited_admin,
            Some(json!({ "name": "x", "capabilities": ["read"] })),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn bad_key_requests() {
    let app = TestApp::spawn().await;
    let admin = app.key("acme", "read,send,manage,admin").await;
    for (body, field) in [
        (json!({ "capabilities": ["read"] }), "name"),
        (json!({ "name": "", "capabilities": ["read"] }), "name"),
        (
            json!({ "name": "x".repeat(101), "capabilities": ["read"] }),
            "name",
        ),
        (json!({ "name": "x" }), "capabilities"),
        (json!({ "name": "x", "capabilities": [] }), "capabilities"),
        (
            json!({ "name": "x", "capabilities": ["root"] }),
            "capabilities",
        ),
        (
            json!({ "name": "x", "capabilities": ["read"], "expiresAt": "tomorrow" }),
            "expiresAt",
        ),
        (
            json!({ "name": "x", "capabilities": ["read"], "expiresAt": "2001-01-01T00:00:00Z" }),
            "expiresAt",
        ),
    ] {
        let e = assert_error(
            app.post("/api/v1/api-keys", &admin, Some(body.clone()))
                .await,
            400,
            "invalid_argument",
        )
        .await;
        assert_eq!(e["details"]["field"], field, "{body}");
    }
    assert_error(
        app.post("/api/v1/api-keys", &admin, None).await,
        415,
        "unsupported_media_type",
    )
    .await;
    let e = assert_error(
        app.delete("/api/v1/api-keys/nope", &admin).await,
        400,
        "invalid_argument",
    )
    .await;
    assert_eq!(e["details"]["field"], "id");
    let list = json(app.get("/api/v1/api-keys", &admin).await).await;
    assert_eq!(
        list["data"].as_array().unwrap().len(),
        1,
        "nothing half-written"
    );
}

#[tokio::test]
async fn keys_of_another_organization_are_out_of_reach() {
    let app = TestApp::spawn().await;
    let a = app.key("acme", "admin,read").await;
    let b = app.key("globex", "admin,read").await;
    let theirs = json(
        app.post(
            "/api/v1/api-keys",
            &b,
            Some(json!({ "name": "theirs", "capabilities": ["read"] })),
        )
        .await,
    )
    .await;
    let id = theirs["id"].as_str().unwrap();
    assert_error(
        app.delete(&format!("/api/v1/api-keys/{id}"), &a).await,
        404,
        "not_found",
    )
    .await;
    let list = json(app.get("/api/v1/api-keys", &a).await).await;
    assert!(
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["id"] != id)
    );
    assert_eq!(
        app.get("/api/v1/sessions", theirs["key"].as_str().unwrap())
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_key_made_by_an_expiring_key_cannot_outlive_it() {
    let app = TestApp::spawn().await;
    let admin = app.key("acme", "read,admin").await;
    let res = app.post("/api/v1/api-keys", &admin, Some(json!({ "name": "temp", "capabilities": ["read", "admin"], "expiresAt": "2099-01-01T02:00:00+02:00" }))).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let temp = json(res).await;
    assert_eq!(
        temp["expiresAt"], "2099-01-01T00:00:00Z",
        "stored and shown in UTC"
    );
    let temp_key = temp["key"].as_str().unwrap();
    for expires in [json!(null), json!("2099-06-01T00:00:00Z")] {
        let e = assert_error(
            app.post(
                "/api/v1/api-keys",
                temp_key,
                Some(json!({ "name": "child", "capabilities": ["read"], "expiresAt": expires })),
            )
            .await,
            400,
            "invalid_argument",
        )
        .await;
        assert_eq!(e["details"]["field"], "expiresAt");
    }
    let res = app.post("/api/v1/api-keys", temp_key, Some(json!({ "name": "child", "capabilities": ["read"], "expiresAt": "2098-01-01T00:00:00Z" }))).await;
    assert_eq!(res.status(), StatusCode::CREATED);
}
