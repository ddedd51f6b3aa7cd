//! Session lifecycle against the simulator: the phone logging a companion
//! out, a dropped connection, and pairing by phone-number code.

// Integration tests: a failed expectation should panic with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{PHONE, TestBot, admin_get, admin_post, init_logs, paired_bot};
use serde_json::json;
use wagate_whatsapp_sim::{Simulator, World};
use whatsapp_rust::pair_code::PairCodeOptions;
use whatsapp_rust::types::events::Event;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phone_logout_reaches_the_client() {
    init_logs();
    let sim = Simulator::start(World::empty()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("wa.db");
    let mut bot = paired_bot(&sim, &db, PHONE).await;

    let (status, body) = admin_post(
        &sim.admin_url(),
        &format!("/accounts/{PHONE}/logout"),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["unlinked"], 1);
    bot.wait_for(10, "LoggedOut", |e| matches!(e, Event::LoggedOut(_)))
        .await;
    let (_, account) = admin_get(&sim.admin_url(), &format!("/accounts/{PHONE}")).await;
    assert_eq!(account["devices"].as_array().unwrap().len(), 0, "{account}");

    let (status, _) = admin_post(&sim.admin_url(), "/accounts/19999999999/logout", json!({})).await;
    assert_eq!(status, 404);
    bot.stop().await;

    // The unlinked credentials no longer log in.
    let mut bot = TestBot::start(&sim.url(), &db).await;
    let e = bot
        .wait_for(10, "LoggedOut on connect", |e| {
            matches!(e, Event::LoggedOut(_))
        })
        .await;
    let Event::LoggedOut(out) = &*e else {
        unreachable!()
    };
    assert!(out.on_connect);
    bot.stop().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_logout_unlinks_its_device() {
    init_logs();
    let sim = Simulator::start(World::empty()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut bot = paired_bot(&sim, &dir.path().join("wa.db"), PHONE).await;
    bot.client.logout().await;
    bot.wait_for(10, "LoggedOut", |e| matches!(e, Event::LoggedOut(_)))
        .await;
    let (_, account) = admin_get(&sim.admin_url(), &format!("/accounts/{PHONE}")).await;
    assert_eq!(account["devices"].as_array().unwrap().len(), 0, "{account}");
    bot.stop().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connection_reconnects_by_itself() {
    init_logs();
    let sim = Simulator::start(World::empty()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut bot = paired_bot(&sim, &dir.path().join("wa.db"), PHONE).await;

    let (status, body) = admin_post(
        &sim.admin_url(),
        &format!("/accounts/{PHONE}/drop"),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["dropped"], 1);
    bot.wait_for(10, "Disconnected", |e| matches!(e, Event::Disconnected(_)))
        .await;
    bot.wait_connected(30).await;
    let (_, account) = admin_get(&sim.admin_url(), &format!("/accounts/{PHONE}")).await;
    assert_eq!(account["devices"][0]["connected"], true, "{account}");
    bot.stop().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairing_code_links_the_companion() {
    init_logs();
    let sim = Simulator::start(World::empty()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let phone = "15550002222";
    let mut bot = TestBot::start_with(
        &sim.url(),
        &dir.path().join("wa.db"),
        Some(PairCodeOptions {
            phone_number: phone.to_owned(),
            ..Default::default()
        }),
    )
    .await;
    let e = bot
        .wait_for(30, "a pairing code", |e| matches!(e, Event::PairingCode(_)))
        .await;
    let Event::PairingCode(code) = &*e else {
        unreachable!()
    };
    // A wrong code is refused …
    let (status, body) = admin_post(
        &sim.admin_url(),
        "/pair-code",
        json!({ "phone": phone, "code": "ZZZZ9999" }),
    )
    .await;
    assert_ne!(status, 200, "{body}");
    // … the right one links.
    let (status, body) = admin_post(
        &sim.admin_url(),
        "/pair-code",
        json!({ "phone": phone, "code": code.code }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["jid"], format!("{phone}:1@s.whatsapp.net"));
    bot.wait_connected(30).await;
    bot.stop().await;
    sim.shutdown().await;
}
