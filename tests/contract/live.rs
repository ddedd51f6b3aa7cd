//! The live adapter end to end: the real HTTP app, whatsapp-rust clients and
//! the wa-sim simulator playing WhatsApp and the phone.

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::json;

use crate::support::{FAKE_PHONE, FAKE_PHONE_JID, TestApp, assert_error, json, live_config};

const ALICE: &str = "14155550123@s.whatsapp.net";
const ALICE_LID: &str = "123456789012345@lid";

#[tokio::test]
async fn the_whole_session_lifecycle_against_the_simulator() {
    let app = TestApp::spawn_live().await;
    let sim = app.sim.clone().unwrap();
    let key = app.key("acme", "read,send,manage").await;
    let id = app.create_session(&key).await;
    let base = format!("/api/v1/sessions/{id}");

    // connect → pairing, QR as JSON and PNG.
    let res = app.post(&format!("{base}/connect"), &key, None).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    app.wait_for_status(&id, &key, "pairing").await;
    let png = app.get(&format!("{base}/qr?format=png"), &key).await;
    assert_eq!(png.headers()["content-type"], "image/png");
    assert!(png.bytes().await.unwrap().starts_with(b"\x89PNG"));
    let qr = json(app.get(&format!("{base}/qr"), &key).await).await;
    assert!(qr["code"].as_str().unwrap().starts_with("2@"));
    assert!(qr["expiresAt"].is_string());

    // The phone scans it: connected as the simulator's phone.
    sim.admin()
        .scan_qr(qr["code"].as_str().unwrap(), FAKE_PHONE)
        .await
        .unwrap();
    let s = app.wait_for_status(&id, &key, "connected").await;
    assert_eq!(s["jid"], FAKE_PHONE_JID);
    assert!(s["lastConnectedAt"].is_string());
    assert!(s["lastError"].is_null());

    // Contacts.
    let p = json(
        app.get(&format!("{base}/contacts/{ALICE}/picture"), &key)
            .await,
    )
    .await;
    assert_eq!(p["id"], "1712345678");
    assert!(p["url"].as_str().unwrap().starts_with("https://"));
    let e = assert_error(
        app.get(
            &format!("{base}/contacts/14155550155@s.whatsapp.net/picture"),
            &key,
        )
        .await,
        404,
        "not_found",
    )
    .await;
    assert_eq!(e["details"]["reason"], "hidden");
    let a = json(
        app.get(&format!("{base}/contacts/{ALICE}/about"), &key)
            .await,
    )
    .await;
    assert_eq!(a["about"], "Hey there!");
    for _ in 0..2 {
        assert_eq!(
            app.post(&format!("{base}/contacts/{ALICE}/block"), &key, None)
                .await
                .status(),
            StatusCode::NO_CONTENT
        );
    }
    let account = sim.admin().account(FAKE_PHONE).unwrap();
    assert_eq!(
        account.blocklist.len(),
        1,
        "blocked once on the phone's side: {account:?}"
    );
    let list = json(app.get(&format!("{base}/blocklist"), &key).await).await;
    assert_eq!(
        list,
        json!({ "data": [ { "jid": ALICE_LID, "phoneJid": ALICE } ] })
    );
    for _ in 0..2 {
        assert_eq!(
            app.post(&format!("{base}/contacts/{ALICE}/unblock"), &key, None)
                .await
                .status(),
            StatusCode::NO_CONTENT
        );
    }
    assert!(
        sim.admin()
            .account(FAKE_PHONE)
            .unwrap()
            .blocklist
            .is_empty()
    );
    assert_eq!(
        json(app.get(&format!("{base}/blocklist"), &key).await).await,
        json!({ "data": [] })
    );

    // Restart the gateway on the same database: connected again, no QR.
    let dir = app.dir.clone();
    app.shut_down().await;
    let app = TestApp::spawn_live_with(live_config(&dir, &sim), dir.clone(), sim.clone()).await;
    let s = app.wait_for_status(&id, &key, "connected").await;
    assert_eq!(s["jid"], FAKE_PHONE_JID);
    assert_eq!(
        app.get(&format!("{base}/contacts/{ALICE}/about"), &key)
            .await
            .status(),
        StatusCode::OK
    );

    // The connection drops: back to connected by itself (a new connect time).
    let before = s["lastConnectedAt"].clone();
    assert!(sim.admin().drop_connections(FAKE_PHONE) > 0);
    app.wait_for(&id, &key, |s| {
        s["status"] == "connected" && s["lastConnectedAt"] != before
    })
    .await;
    assert_eq!(
        app.get(&format!("{base}/contacts/{ALICE}/about"), &key)
            .await
            .status(),
        StatusCode::OK
    );

    // The phone unlinks us: logged_out, 501 on contacts.
    sim.admin().logout(FAKE_PHONE).unwrap();
    let s = app.wait_for_status(&id, &key, "logged_out").await;
    assert!(s["jid"].is_null());
    assert_eq!(s["lastError"]["code"], "logged_out_by_phone");
    let e = assert_error(
        app.get(&format!("{base}/contacts/{ALICE}/picture"), &key)
            .await,
        501,
        "not_implemented",
    )
    .await;
    assert_eq!(e["details"]["status"], "logged_out");

    // Connect again: a new QR.
    app.post(&format!("{base}/connect"), &key, None).await;
    app.wait_for_status(&id, &key, "pairing").await;
    let again = json(app.get(&format!("{base}/qr"), &key).await).await;
    assert_ne!(again["code"], qr["code"]);
}

#[tokio::test]
async fn a_simulator_that_is_down_is_a_clear_last_error() {
    let app = TestApp::spawn_live().await;
    let key = app.key("acme", "read,manage").await;
    let id = app.connected_session(&key).await;
    let sim = app.sim.clone().unwrap();
    let dir = app.dir.clone();
    app.shut_down().await;
    // The gateway restarts while WhatsApp cannot be reached.
    Arc::try_unwrap(sim).expect("only handle").shutdown().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut config = crate::support::test_config(&dir);
    config.whatsapp.adapter = wagate::config::AdapterKind::Live;
    config.whatsapp.live.url = Some(format!("ws://127.0.0.1:{port}/ws/chat"));
    config.whatsapp.live.version = Some("2.3000.1042742319".into());
    let app = TestApp::spawn_with(config, dir).await;
    let s = app.wait_for_status(&id, &key, "disconnected").await;
    assert_eq!(s["lastError"]["code"], "unreachable", "{s}");
    assert!(
        s["lastError"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    assert_eq!(app.get("/healthz", "").await.status(), StatusCode::OK);
    assert_eq!(app.get("/readyz", "").await.status(), StatusCode::OK);
    let e = assert_error(
        app.get(
            &format!("/api/v1/sessions/{id}/contacts/{ALICE}/about"),
            &key,
        )
        .await,
        501,
        "not_implemented",
    )
    .await;
    assert_eq!(e["details"]["status"], "disconnected");
}
