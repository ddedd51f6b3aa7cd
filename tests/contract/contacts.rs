use crate::support::{TestApp, assert_error, json};
use reqwest::StatusCode;
use serde_json::json;

const ALICE: &str = "14155550123@s.whatsapp.net";
const ALICE_LID: &str = "123456789012345@lid";

on_both_adapters! {
async fn picture_in_both_sizes_by_any_spelling_of_the_jid(app) {
    let key = app.key("acme", "read,manage").await;
    let id = app.connected_session(&key).await;
    let base = format!("/api/v1/sessions/{id}/contacts");

    let res = app.get(&format!("{base}/{ALICE}/picture"), &key).await;
    assert_eq!(res.status(), StatusCode::OK);
    let p = json(res).await;
    assert_eq!(p["id"], "1712345678");
    assert_eq!(p["url"], "https://pps.whatsapp.net/v/t61/abc.jpg");
    assert_eq!(p["type"], "image");
    assert_eq!(p["directPath"], "/v/t61/abc.jpg");
    assert!(p["hash"].is_string());

    let preview = json(
        app.get(&format!("{base}/{ALICE}/picture?type=preview"), &key)
            .await,
    )
    .await;
    assert_eq!(preview["type"], "preview");
    for spelling in [
        "14155550123%40s.whatsapp.net",
        "14155550123:7@s.whatsapp.net",
        ALICE_LID,
    ] {
        let p = json(app.get(&format!("{base}/{spelling}/picture"), &key).await).await;
        assert_eq!(p["id"], "1712345678", "{spelling}");
    }
    let group = json(
        app.get(&format!("{base}/120363025246125486@g.us/picture"), &key)
            .await,
    )
    .await;
    assert_eq!(group["id"], "1699999999");

    let e = assert_error(
        app.get(&format!("{base}/{ALICE}/picture?type=huge"), &key)
            .await,
        400,
        "invalid_argument",
    )
    .await;
    assert_eq!(e["details"]["field"], "type");
}

async fn missing_and_hidden_pictures_say_why(app) {
    let key = app.key("acme", "read,manage").await;
    let id = app.connected_session(&key).await;
    let base = format!("/api/v1/sessions/{id}/contacts");

    let e = assert_error(
        app.get(&format!("{base}/14155550199@s.whatsapp.net/picture"), &key)
            .await,
        404,
        "not_found",
    )
    .await;
    assert_eq!(e["message"], "profile picture not found");
    assert_eq!(e["details"]["reason"], "not_set");
    let e = assert_error(
        app.get(&format!("{base}/14155550155@s.whatsapp.net/picture"), &key)
            .await,
        404,
        "not_found",
    )
    .await;
    assert_eq!(e["details"]["reason"], "hidden");
}

async fn about_text(app) {
    let key = app.key("acme", "read,manage").await;
    let id = app.connected_session(&key).await;
    let base = format!("/api/v1/sessions/{id}/contacts");

    let a = json(app.get(&format!("{base}/{ALICE}/about"), &key).await).await;
    assert_eq!(
        a,
        json!({ "about": "Hey there!", "setAt": "2024-01-01T00:00:00Z" })
    );
    assert_error(
        app.get(&format!("{base}/14155550199@s.whatsapp.net/about"), &key)
            .await,
        404,
        "not_found",
    )
    .await;
    assert_error(
        app.get(&format!("{base}/14155550155@s.whatsapp.net/about"), &key)
            .await,
        404,
        "not_found",
    )
    .await;
    for wrong_kind in ["120363025246125486@g.us", "120363144038483540@newsletter"] {
        let e = assert_error(
            app.get(&format!("{base}/{wrong_kind}/about"), &key).await,
            400,
            "invalid_argument",
        )
        .await;
        assert_eq!(e["details"]["field"], "jid");
    }
}

async fn malformed_jids_are_invalid_arguments(app) {
    let key = app.key("acme", "read,send,manage").await;
    let id = app.connected_session(&key).await;
    for jid in [
        "nobody",
        "abc@s.whatsapp.net",
        "14155550123@example.com",
        "123@s.whatsapp.net",
        "14155550123%41x",
    ] {
        for (method, route) in [
            ("GET", "picture"),
            ("GET", "about"),
            ("POST", "block"),
            ("POST", "unblock"),
        ] {
            let path = format!("/api/v1/sessions/{id}/contacts/{jid}/{route}");
            let res = if method == "GET" {
                app.get(&path, &key).await
            } else {
                app.post(&path, &key, None).await
            };
            let e = assert_error(res, 400, "invalid_argument").await;
            assert_eq!(e["details"]["field"], "jid", "{jid} {route}");
        }
    }
}

async fn block_and_unblock_are_idempotent(app) {
    let key = app.key("acme", "read,send,manage").await;
    let id = app.connected_session(&key).await;
    let base = format!("/api/v1/sessions/{id}");

    for _ in 0..2 {
        let res = app
            .post(&format!("{base}/contacts/{ALICE}/block"), &key, None)
            .await;
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        assert!(res.bytes().await.unwrap().is_empty());
    }
    // Blocking by LID is the same contact.
    assert_eq!(
        app.post(&format!("{base}/contacts/{ALICE_LID}/block"), &key, None)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    let list = json(app.get(&format!("{base}/blocklist"), &key).await).await;
    assert_eq!(
        list,
        json!({ "data": [ { "jid": ALICE_LID, "phoneJid": ALICE } ] })
    );

    // A contact whose LID is unknown is listed by phone number.
    app.post(
        &format!("{base}/contacts/14155550199@s.whatsapp.net/block"),
        &key,
        None,
    )
    .await;
    let list = json(app.get(&format!("{base}/blocklist"), &key).await).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 2);

    for _ in 0..2 {
        assert_eq!(
            app.post(&format!("{base}/contacts/{ALICE}/unblock"), &key, None)
                .await
                .status(),
            StatusCode::NO_CONTENT
        );
    }
    app.post(
        &format!("{base}/contacts/14155550199@s.whatsapp.net/unblock"),
        &key,
        None,
    )
    .await;
    assert_eq!(
        json(app.get(&format!("{base}/blocklist"), &key).await).await,
        json!({ "data": [] })
    );

    let e = assert_error(
        app.post(
            &format!("{base}/contacts/120363025246125486@g.us/block"),
            &key,
            None,
        )
        .await,
        400,
        "invalid_argument",
    )
    .await;
    assert_eq!(e["details"]["field"], "jid");
}

async fn upstream_timeouts_and_outages(app) {
    let key = app.key("acme", "read,send,manage").await;
    let id = app.connected_session(&key).await;
    let base = format!("/api/v1/sessions/{id}/contacts");
    assert_error(
        app.get(&format!("{base}/14155550100@s.whatsapp.net/picture"), &key)
            .await,
        504,
        "timeout",
    )
    .await;
    assert_error(
        app.post(
            &format!("{base}/14155550100@s.whatsapp.net/block"),
            &key,
            None,
        )
        .await,
        504,
        "timeout",
    )
    .await;
    assert_error(
        app.get(&format!("{base}/14155550101@s.whatsapp.net/about"), &key)
            .await,
        503,
        "unavailable",
    )
    .await;
}

async fn live_calls_need_a_connected_session(app) {
    let key = app.key("acme", "read,send,manage").await;
    let id = app.create_session(&key).await;
    let base = format!("/api/v1/sessions/{id}");
    for res in [
        app.get(&format!("{base}/contacts/{ALICE}/picture"), &key)
            .await,
        app.get(&format!("{base}/contacts/{ALICE}/about"), &key)
            .await,
        app.post(&format!("{base}/contacts/{ALICE}/block"), &key, None)
            .await,
        app.post(&format!("{base}/contacts/{ALICE}/unblock"), &key, None)
            .await,
        app.get(&format!("{base}/blocklist"), &key).await,
    ] {
        let e = assert_error(res, 501, "not_implemented").await;
        assert_eq!(e["message"], "session is not connected");
        assert_eq!(e["details"]["status"], "new");
    }
}
}

#[tokio::test]
async fn a_custom_fixtures_file_changes_the_world() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let fixtures = dir.path().join("world.json");
    std::fs::write(
        &fixtures,
        r#"{ "phone": "4915112345678", "contacts": { "4915199999999@s.whatsapp.net": { "about": { "text": "Moin", "setAt": null } } } }"#,
    )
    .unwrap();
    let mut config = crate::support::test_config(&dir);
    config.whatsapp.fake.fixtures = Some(fixtures);
    let app = TestApp::spawn_with(config, dir).await;
    let key = app.key("acme", "read,manage").await;
    let id = app.create_session(&key).await;
    app.post(&format!("/api/v1/sessions/{id}/connect"), &key, None)
        .await;
    app.get(&format!("/api/v1/sessions/{id}/qr"), &key).await;
    assert_eq!(
        json(app.get(&format!("/api/v1/sessions/{id}"), &key).await).await["jid"],
        "4915112345678@s.whatsapp.net"
    );
    let a = json(
        app.get(
            &format!("/api/v1/sessions/{id}/contacts/4915199999999@s.whatsapp.net/about"),
            &key,
        )
        .await,
    )
    .await;
    assert_eq!(a, json!({ "about": "Moin", "setAt": null }));
    assert_error(
        app.get(
            &format!("/api/v1/sessions/{id}/contacts/{ALICE}/about"),
            &key,
        )
        .await,
        404,
        "not_found",
    )
    .await;
}
