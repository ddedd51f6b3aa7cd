use std::sync::Arc;

use crate::support::{FAKE_PHONE_JID, TestApp, assert_error, json, test_config};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn create_get_and_delete() {
    let app = TestApp::spawn().await;
    let key = app.key("acme", "read,manage").await;

    let res = app
        .post(
            "/api/v1/sessions",
            &key,
            Some(json!({ "name": "  support line " })),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let s = json(res).await;
    let id = s["id"].as_str().unwrap();
    assert!(id.starts_with("sess_") && id.len() == 31);
    assert_eq!(location, format!("/api/v1/sessions/{id}"));
    assert_eq!(s["name"], "support line");
    assert_eq!(s["status"], "new");
    assert!(
        s["jid"].is_null()
            && s["pushName"].is_null()
            && s["lastConnectedAt"].is_null()
            && s["lastError"].is_null()
    );
    assert!(s["createdAt"].as_str().unwrap().ends_with('Z'));

    let got = json(app.get(&location, &key).await).await;
    assert_eq!(got, s);

    let res = app.delete(&location, &key).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert!(res.bytes().await.unwrap().is_empty());
    assert_error(app.get(&location, &key).await, 404, "not_found").await;
    assert_error(app.delete(&location, &key).await, 404, "not_found").await;
}

#[tokio::test]
async fn create_accepts_an_empty_body_and_refuses_bad_input() {
    let app = TestApp::spawn().await;
    let key = app.key("acme", "manage").await;

    let res = app.post("/api/v1/sessions", &key, None).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert!(json(res).await["name"].is_null());

    let e = assert_error(
        app.post(
            "/api/v1/sessions",
            &key,
            Some(json!({ "name": "x".repeat(101) })),
        )
        .await,
        400,
        "invalid_argument",
    )
    .await;
    assert_eq!(e["details"]["field"], "name");
    let e = assert_error(
        app.post("/api/v1/sessions", &key, Some(json!({ "name": "   " })))
            .await,
        400,
        "invalid_argument",
    )
    .await;
    assert_eq!(e["details"]["field"], "name");
    assert_error(
        app.post("/api/v1/sessions", &key, Some(json!({ "name": 5 })))
            .await,
        400,
        "invalid_argument",
    )
    .await;

    let bad_json = app
        .req(Method::POST, "/api/v1/sessions", &key)
        .header("content-type", "application/json")
        .body("{\"name\":")
        .send()
        .await
        .unwrap();
    let e = assert_error(bad_json, 400, "invalid_argument").await;
    assert!(e["message"].as_str().unwrap().contains("not valid JSON"));
    let text = app
        .req(Method::POST, "/api/v1/sessions", &key)
        .header("content-type", "text/plain")
        .body("name=x")
        .send()
        .await
        .unwrap();
    assert_error(text, 415, "unsupported_media_type").await;
    let huge = format!("{{\"name\":\"{}\"}}", "x".repeat(70 * 1024));
    let res = app
        .req(Method::POST, "/api/v1/sessions", &key)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_error(res, 413, "payload_too_large").await;

    // Nothing half-written: only the one good session exists.
    let list = json(
        app.get("/api/v1/sessions", &app.key("acme", "read").await)
            .await,
    )
    .await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn list_is_newest_first_paged_and_checked() {
    let app = TestApp::spawn().await;
    let key = app.key("acme", "read,manage").await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(app.create_session(&key).await);
    }
    ids.reverse();

    let page1 = json(app.get("/api/v1/sessions?limit=2", &key).await).await;
    let got: Vec<_> = page1["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(got, ids[..2]);
    let cursor = page1["nextCursor"].as_str().unwrap();
    let page2 = json(
        app.get(&format!("/api/v1/sessions?limit=2&cursor={cursor}"), &key)
            .await,
    )
    .await;
    assert_eq!(page2["data"][0]["id"], ids[2].as_str());
    let cursor = page2["nextCursor"].as_str().unwrap();
    let page3 = json(
        app.get(&format!("/api/v1/sessions?limit=2&cursor={cursor}"), &key)
            .await,
    )
    .await;
    assert_eq!(page3["data"].as_array().unwrap().len(), 1);
    assert!(page3["nextCursor"].is_null());
    let all = json(app.get("/api/v1/sessions", &key).await).await;
    assert_eq!(all["data"].as_array().unwrap().len(), 5);
    assert!(all["nextCursor"].is_null());

    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=abc", "limit"),
        ("cursor=nope", "cursor"),
    ] {
        let e = assert_error(
            app.get(&format!("/api/v1/sessions?{query}"), &key).await,
            400,
            "invalid_argument",
        )
        .await;
        assert_eq!(e["details"]["field"], field, "{query}");
    }
}

#[tokio::test]
async fn ids_of_the_wrong_shape_are_invalid_and_unknown_ones_not_found() {
    let app = TestApp::spawn().await;
    let key = app.key("acme", "read,manage").await;
    for path in [
        "/api/v1/sessions/123",
        "/api/v1/sessions/sess_xyz",
        "/api/v1/sessions/key_01JBZ5T0Q4M6Y8V2K3N7R9S1WX",
    ] {
        let e = assert_error(app.get(path, &key).await, 400, "invalid_argument").await;
        assert_eq!(e["details"]["field"], "sessionId");
    }
    let e = assert_error(
        app.get("/api/v1/sessions/sess_01JBZ5T0Q4M6Y8V2K3N7R9S1WX", &key)
            .await,
        404,
        "not_found",
    )
    .await;
    assert_eq!(e["message"], "session not found");
    assert_error(
        app.post(
            "/api/v1/sessions/sess_01JBZ5T0Q4M6Y8V2K3N7R9S1WX/connect",
            &key,
            None,
        )
        .await,
        404,
        "not_found",
    )
    .await;
}

on_both_adapters! {
async fn connect_pairs_by_qr_then_disconnect_and_reconnect_keep_the_link(app) {
    let key = app.key("acme", "read,send,manage").await;
    let id = app.create_session(&key).await;
    let base = format!("/api/v1/sessions/{id}");

    assert_error(app.get(&format!("{base}/qr"), &key).await, 409, "conflict").await;
    let res = app.post(&format!("{base}/connect"), &key, None).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let s = json(res).await;
    assert!(s["status"] == "connecting" || s["status"] == "pairing", "{s}");
    app.wait_for_status(&id, &key, "pairing").await;
    // Idempotent.
    let res = app.post(&format!("{base}/connect"), &key, None).await;
    assert_eq!((res.status(), json(res).await["status"].clone()), (StatusCode::ACCEPTED, json!("pairing")));
    let e = assert_error(app.get(&format!("{base}/contacts/14155550123@s.whatsapp.net/about"), &key).await, 501, "not_implemented").await;
    assert_eq!(e["details"]["status"], "pairing");

    // The phone scans the QR code.
    let s = app.link(&id, &key).await;
    assert_eq!(s["jid"], FAKE_PHONE_JID);
    assert_eq!(s["pushName"], "Wagate Demo");
    assert!(s["lastConnectedAt"].as_str().is_some());
    let e = assert_error(app.get(&format!("{base}/qr"), &key).await, 409, "conflict").await;
    assert_eq!(e["details"]["status"], "connected");

    let res = app.post(&format!("{base}/disconnect"), &key, None).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let s = json(res).await;
    assert_eq!((s["status"].clone(), s["jid"].clone()), (json!("disconnected"), json!(FAKE_PHONE_JID)));
    let e = assert_error(app.get(&format!("{base}/blocklist"), &key).await, 501, "not_implemented").await;
    assert_eq!(e["details"]["status"], "disconnected");

    // Linked: connecting again needs no QR.
    app.post(&format!("{base}/connect"), &key, None).await;
    app.wait_for_status(&id, &key, "connected").await;
    assert_eq!(app.get(&format!("{base}/blocklist"), &key).await.status(), StatusCode::OK);
}

async fn qr_as_json_png_and_svg(app) {
    let key = app.key("acme", "manage,read").await;
    let id = app.create_session(&key).await;
    app.post(&format!("/api/v1/sessions/{id}/connect"), &key, None).await;
    app.wait_for_status(&id, &key, "pairing").await;
    let e = assert_error(app.get(&format!("/api/v1/sessions/{id}/qr?format=gif"), &key).await, 400, "invalid_argument").await;
    assert_eq!(e["details"]["field"], "format");
    for (format, mime, magic) in [("png", "image/png", &b"\x89PNG"[..]), ("svg", "image/svg+xml", &b"<?xml"[..])] {
        let id = app.create_session(&key).await;
        app.post(&format!("/api/v1/sessions/{id}/connect"), &key, None).await;
        app.wait_for_status(&id, &key, "pairing").await;
        let res = app.get(&format!("/api/v1/sessions/{id}/qr?format={format}"), &key).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["content-type"], mime);
        let body = res.bytes().await.unwrap();
        assert!(body.starts_with(magic) || (format == "svg" && body.starts_with(b"<svg")), "{format}");
    }
    let qr = json(app.get(&format!("/api/v1/sessions/{id}/qr"), &key).await).await;
    assert!(qr["code"].as_str().unwrap().starts_with("2@"));
    assert!(qr["expiresAt"].as_str().unwrap().ends_with('Z'));
}

async fn pairing_code_links_by_phone_number(app) {
    let key = app.key("acme", "read,manage").await;
    let id = app.create_session(&key).await;
    let path = format!("/api/v1/sessions/{id}/pairing-code");

    let e = assert_error(app.post(&path, &key, Some(json!({ "phoneNumber": "+1 415 555 0123" }))).await, 409, "conflict").await;
    assert_eq!(e["details"]["status"], "new");
    app.post(&format!("/api/v1/sessions/{id}/connect"), &key, None).await;
    app.wait_for_status(&id, &key, "pairing").await;
    for bad in [json!({ "phoneNumber": "12" }), json!({ "phoneNumber": "+1 abc" }), json!({})] {
        let e = assert_error(app.post(&path, &key, Some(bad)).await, 400, "invalid_argument").await;
        assert_eq!(e["details"]["field"], "phoneNumber");
    }
    let res = app.post(&path, &key, Some(json!({ "phoneNumber": "+44 20 7946 0958" }))).await;
    let status = res.status();
    let body = json(res).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let code = body["code"].as_str().unwrap().to_owned();
    assert_eq!(code.len(), 9);
    assert_eq!(code.as_bytes()[4], b'-');
    // The phone owner types the code (the fake's phone does so at once).
    if let Some(sim) = &app.sim {
        sim.admin().pair_code("442079460958", &code.replace('-', "")).await.unwrap();
    }
    let s = app.wait_for_status(&id, &key, "connected").await;
    assert_eq!(s["jid"], "442079460958@s.whatsapp.net");
}

async fn logout_unlinks_and_connect_pairs_again(app) {
    let key = app.key("acme", "read,manage").await;
    let id = app.connected_session(&key).await;
    let base = format!("/api/v1/sessions/{id}");

    let res = app.post(&format!("{base}/logout"), &key, None).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let s = json(res).await;
    assert_eq!((s["status"].clone(), s["jid"].clone()), (json!("logged_out"), json!(null)));
    let e = assert_error(app.get(&format!("{base}/contacts/14155550123@s.whatsapp.net/picture"), &key).await, 501, "not_implemented").await;
    assert_eq!(e["details"]["status"], "logged_out");

    app.post(&format!("{base}/connect"), &key, None).await;
    app.wait_for_status(&id, &key, "pairing").await;
    assert_eq!(app.get(&format!("{base}/qr"), &key).await.status(), StatusCode::OK);
}

async fn concurrent_lifecycle_calls_leave_a_consistent_status(app) {
    let key = app.key("acme", "read,manage").await;
    let id = app.create_session(&key).await;
    let path = format!("/api/v1/sessions/{id}/connect");
    let calls: Vec<_> = (0..8).map(|_| tokio::spawn(app.req(Method::POST, &path, &key).send())).collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap().status(), StatusCode::ACCEPTED);
    }
    app.wait_for_status(&id, &key, "pairing").await;
    assert_eq!(app.get(&format!("/api/v1/sessions/{id}/qr"), &key).await.status(), StatusCode::OK);

    // Linked once, logged out, pairing again, then disconnected: `logged_out`, not `new`.
    let linked = app.connected_session(&key).await;
    app.post(&format!("/api/v1/sessions/{linked}/logout"), &key, None).await;
    app.post(&format!("/api/v1/sessions/{linked}/connect"), &key, None).await;
    app.wait_for_status(&linked, &key, "pairing").await;
    let s = json(app.post(&format!("/api/v1/sessions/{linked}/disconnect"), &key, None).await).await;
    assert_eq!(s["status"], "logged_out");
    // Logging out a session never linked leaves it `new`.
    let fresh = app.create_session(&key).await;
    let s = json(app.post(&format!("/api/v1/sessions/{fresh}/logout"), &key, None).await).await;
    assert_eq!(s["status"], "new");
}
}

#[tokio::test]
async fn sessions_are_reconnected_after_a_restart() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let (key, connected, kept_off) = {
        let app = TestApp::spawn_with(test_config(&dir), dir.clone()).await;
        let key = app.key("acme", "read,manage").await;
        let connected = app.connected_session(&key).await;
        let kept_off = app.connected_session(&key).await;
        app.post(
            &format!("/api/v1/sessions/{kept_off}/disconnect"),
            &key,
            None,
        )
        .await;
        app.shut_down().await;
        (key, connected, kept_off)
    };
    let app = TestApp::spawn_with(test_config(&dir), dir.clone()).await;
    let s = app.wait_for_status(&connected, &key, "connected").await;
    assert_eq!(s["jid"], FAKE_PHONE_JID);
    assert_eq!(
        app.get(
            &format!("/api/v1/sessions/{connected}/contacts/14155550123@s.whatsapp.net/about"),
            &key
        )
        .await
        .status(),
        StatusCode::OK
    );
    // A session disconnected on purpose stays disconnected.
    let s = json(app.get(&format!("/api/v1/sessions/{kept_off}"), &key).await).await;
    assert_eq!(s["status"], "disconnected");
}
