//! The per-device login counts of `/admin/health` (`overlaps`,
//! `maxPerDevice`): a fault-injection observable for simultaneous
//! connections of one device.

// Integration tests: a failed expectation should panic with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{PHONE, TestBot, admin_get, admin_post, init_logs, paired_bot};
use serde_json::json;
use wagate_whatsapp_sim::{Simulator, World};
use whatsapp_rust::store::SqliteStore;
use whatsapp_rust::types::events::Event;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_after_drop_is_not_an_overlap() {
    init_logs();
    let sim = Simulator::start(World::empty()).await.unwrap();
    let health = sim.admin().health();
    assert_eq!((health.overlaps, health.max_per_device), (0, 0));

    // Pairing: the pairing connection is closed (515) and the client logs
    // in on a new one; the pairing connection never logged in.
    let dir = tempfile::tempdir().unwrap();
    let mut bot = paired_bot(&sim, &dir.path().join("wa.db"), PHONE).await;
    let health = sim.admin().health();
    assert_eq!((health.overlaps, health.max_per_device), (0, 1));

    for _ in 0..2 {
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
    }

    let (status, health) = admin_get(&sim.admin_url(), "/health").await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["replaced"], 0, "{health}");
    assert_eq!(health["overlaps"], 0, "{health}");
    // The device's logins: the two dropped, then the open one, none
    // overlapping.
    let (status, logins) = admin_get(&sim.admin_url(), "/logins").await;
    assert_eq!(status, 200, "{logins}");
    let device = &logins["devices"][0];
    assert_eq!(device["phone"], PHONE, "{logins}");
    let list = device["logins"].as_array().unwrap();
    assert_eq!(list.len(), 3, "{logins}");
    assert_eq!(list[0]["cause"], "dropped", "{logins}");
    assert_eq!(list[1]["cause"], "dropped", "{logins}");
    assert!(
        list[2]["closedAtMs"].is_null() && list[2]["cause"].is_null(),
        "{logins}"
    );
    for pair in list.windows(2) {
        assert!(
            pair[0]["closedAtMs"].as_u64().unwrap() <= pair[1]["openedAtMs"].as_u64().unwrap(),
            "{logins}"
        );
    }
    assert_eq!(health["maxPerDevice"], 1, "{health}");
    assert_eq!(health["loggedIn"], 1, "{health}");
    bot.stop().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_device_connecting_twice_at_once_overlaps() {
    init_logs();
    let sim = Simulator::start(World::empty()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("wa.db");
    paired_bot(&sim, &db, PHONE).await.stop().await;

    // Two clients on one device store connect at once: the later login
    // replaces the earlier connection, which was still logged in.
    let store = SqliteStore::new(&db.display().to_string())
        .await
        .expect("sqlite store");
    let url = sim.url();
    let (mut a, mut b) = tokio::join!(
        TestBot::start_on_store(&url, store.clone(), None),
        TestBot::start_on_store(&url, store, None),
    );
    let replaced = |e: &Event| matches!(e, Event::StreamReplaced(_));
    let a_replaced = tokio::select! {
        _ = a.wait_for(30, "StreamReplaced (a)", replaced) => true,
        _ = b.wait_for(30, "StreamReplaced (b)", replaced) => false,
    };
    let (mut survivor, replaced_bot) = if a_replaced { (b, a) } else { (a, b) };
    survivor.wait_connected(30).await;

    let health = sim.admin().health();
    assert!(health.overlaps >= 1, "{health:?}");
    assert!(health.max_per_device >= 2, "{health:?}");
    // The older connection was closed as WhatsApp does: `replaced`.
    assert!(health.replaced >= 1, "{health:?}");
    let logins = sim.admin().logins();
    let causes: Vec<_> = logins.devices[0].logins.iter().map(|l| l.cause).collect();
    assert!(causes.contains(&Some("replaced")), "{logins:?}");
    let (_, json) = admin_get(&sim.admin_url(), "/health").await;
    assert!(json["overlaps"].as_u64().unwrap() >= 1, "{json}");
    assert!(json["maxPerDevice"].as_u64().unwrap() >= 2, "{json}");
    let (_, account) = admin_get(&sim.admin_url(), &format!("/accounts/{PHONE}")).await;
    assert_eq!(account["devices"][0]["connected"], true, "{account}");

    survivor.stop().await;
    replaced_bot.stop().await;
    sim.shutdown().await;
}
