use crate::support::{TestApp, assert_error};
use reqwest::Method;

#[tokio::test]
async fn unknown_routes_and_wrong_methods_have_the_envelope() {
    let app = TestApp::spawn().await;
    let key = app.key("acme", "read").await;
    let e = assert_error(app.get("/api/v2/nothing", &key).await, 404, "not_found").await;
    assert_eq!(e["message"], "no such route");
    assert_error(app.get("/nothing-here", "").await, 404, "not_found").await;
    for (method, path) in [
        (Method::PUT, "/api/v1/sessions"),
        (
            Method::PATCH,
            "/api/v1/sessions/sess_01JBZ5T0Q4M6Y8V2K3N7R9S1WX",
        ),
        (Method::POST, "/healthz"),
        (
            Method::GET,
            "/api/v1/sessions/sess_01JBZ5T0Q4M6Y8V2K3N7R9S1WX/connect",
        ),
    ] {
        let res = app.req(method.clone(), path, &key).send().await.unwrap();
        assert!(
            res.headers().get("allow").is_some() || res.status() == 405,
            "{method} {path}"
        );
        assert_error(res, 405, "method_not_allowed").await;
    }
}

#[tokio::test]
async fn request_ids_are_echoed_or_made() {
    let app = TestApp::spawn().await;
    let res = app
        .client
        .get(format!("{}/healthz", app.address))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "abc-123");
    let res = app
        .client
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"].len(), 26);
    let res = app
        .client
        .get(format!("{}/healthz", app.address))
        .header("x-request-id", "bad id with spaces")
        .send()
        .await
        .unwrap();
    assert_ne!(res.headers()["x-request-id"], "bad id with spaces");
    let res = app
        .client
        .get(format!("{}/api/v1/sessions", app.address))
        .header("x-request-id", "req-9")
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.headers()["x-request-id"],
        "req-9",
        "error answers carry it too"
    );
}

#[tokio::test]
async fn malformed_query_strings_are_invalid_arguments() {
    let app = TestApp::spawn().await;
    let key = app.key("acme", "read").await;
    let e = assert_error(
        app.get("/api/v1/sessions?limit=%ZZ", &key).await,
        400,
        "invalid_argument",
    )
    .await;
    assert!(e["details"]["field"].is_string());
}

#[tokio::test]
async fn a_bad_token_is_401_whatever_else_is_wrong() {
    let app = TestApp::spawn().await;
    let never_issued = format!("wgk_{}", "cd".repeat(32));
    let e = assert_error(
        app.get("/api/v1/sessions?limit=%ZZ", &never_issued).await,
        401,
        "unauthorized",
    )
    .await;
    assert_eq!(e["details"], serde_json::json!({}));
    let huge = format!("{{\"name\":\"{}\"}}", "x".repeat(70 * 1024));
    let res = app
        .req(Method::POST, "/api/v1/sessions", &never_issued)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_error(res, 401, "unauthorized").await;
    let res = app
        .req(Method::POST, "/api/v1/sessions", "")
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_error(res, 401, "unauthorized").await;
    assert_error(
        app.get("/api/v1/no-such-route", "").await,
        401,
        "unauthorized",
    )
    .await;
    let key = app.key("acme", "read").await;
    assert_error(
        app.get("/api/v1/no-such-route", &key).await,
        404,
        "not_found",
    )
    .await;
}

/// Found by scripts/fuzz-api.sh: serde reads a struct from an array of its
/// fields in order, so `[null]` created a session, `["bot", ["admin"], null]`
/// an API key and `["+1 415 555 0123"]` a pairing code. Every request body
/// is a JSON object, or a 400.
#[tokio::test]
async fn a_json_array_is_not_a_request_body() {
    let app = TestApp::spawn().await;
    let key = app.key("acme", "read,manage,admin").await;
    let session = app.create_session(&key).await;
    app.post(&format!("/api/v1/sessions/{session}/connect"), &key, None)
        .await;
    for (path, array) in [
        ("/api/v1/sessions".to_owned(), serde_json::json!([null])),
        (
            "/api/v1/sessions".to_owned(),
            serde_json::json!(["by position"]),
        ),
        (
            "/api/v1/api-keys".to_owned(),
            serde_json::json!(["by position", ["read"], null]),
        ),
        (
            format!("/api/v1/sessions/{session}/pairing-code"),
            serde_json::json!(["+1 415 555 0123"]),
        ),
    ] {
        let e = assert_error(
            app.post(&path, &key, Some(array)).await,
            400,
            "invalid_argument",
        )
        .await;
        assert_eq!(e["details"]["field"], "body", "{path}");
    }
    // Nothing was made: the one session, the one key.
    let sessions = crate::support::json(app.get("/api/v1/sessions", &key).await).await;
    assert_eq!(sessions["data"].as_array().unwrap().len(), 1);
    let keys = crate::support::json(app.get("/api/v1/api-keys", &key).await).await;
    assert_eq!(keys["data"].as_array().unwrap().len(), 1);
    // The same fields as an object are fine.
    let res = app
        .post(
            &format!("/api/v1/sessions/{session}/pairing-code"),
            &key,
            Some(serde_json::json!({ "phoneNumber": "+1 415 555 0123" })),
        )
        .await;
    assert_eq!(res.status(), 200);
}
