//! `POST /admin/outage`: every client connection dropped at once, new ones
//! refused for the outage, accepted again afterwards.

// Integration tests: a failed expectation should panic with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{PHONE, admin_get, admin_post, init_logs, paired_bot};
use serde_json::json;
use tokio_tungstenite::tungstenite;
use wagate_whatsapp_sim::{Simulator, World};
use whatsapp_rust::types::events::Event;

/// Opens a WebSocket to the simulator: `Ok` if accepted, else the HTTP
/// status it was refused with.
async fn try_connect(url: &str) -> Result<(), u16> {
    match tokio_tungstenite::connect_async(url).await {
        Ok((mut ws, _)) => {
            let _ = ws.close(None).await;
            Ok(())
        }
        Err(tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("neither accepted nor refused with a status: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_drops_clients_refuses_reconnects_then_lets_them_back() {
    init_logs();
    let sim = Simulator::start(World::empty()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut bot = paired_bot(&sim, &dir.path().join("wa.db"), PHONE).await;
    assert_eq!(sim.admin().health().refused, 0);

    let outage = Duration::from_secs(2);
    let began = Instant::now();
    let (status, body) = admin_post(&sim.admin_url(), "/outage", json!({ "seconds": 2 })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["dropped"], 1, "{body}");
    assert_eq!(body["seconds"], 2.0, "{body}");
    bot.wait_for(10, "Disconnected", |e| matches!(e, Event::Disconnected(_)))
        .await;

    // During the outage a new connection is refused …
    let (_, health) = admin_get(&sim.admin_url(), "/health").await;
    assert_eq!(health["outage"], true, "{health}");
    assert_eq!(try_connect(&sim.url()).await, Err(503));
    assert!(
        began.elapsed() < outage,
        "the refused attempt fell inside the outage"
    );

    // … and so are the client's own retries: it is back only after the
    // outage, by itself.
    bot.wait_connected(30).await;
    assert!(
        began.elapsed() >= outage,
        "connected {:?} into a {outage:?} outage",
        began.elapsed()
    );
    let health = sim.admin().health();
    assert!(!health.outage, "{health:?}");
    assert!(
        health.refused >= 2,
        "our attempt and at least one of the client's were refused: {health:?}"
    );
    let (_, account) = admin_get(&sim.admin_url(), &format!("/accounts/{PHONE}")).await;
    assert_eq!(account["devices"][0]["connected"], true, "{account}");
    assert_eq!(try_connect(&sim.url()).await, Ok(()));
    bot.stop().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_can_end_early_and_refuses_bad_bodies() {
    init_logs();
    let sim = Simulator::start(World::empty()).await.unwrap();
    let admin = sim.admin_url();

    for body in [
        json!({}),
        json!({ "seconds": -1 }),
        json!({ "seconds": "2" }),
        json!({ "seconds": 86_401 }),
        json!({ "seconds": 2, "minutes": 1 }),
    ] {
        let (status, answer) = admin_post(&admin, "/outage", body.clone()).await;
        assert_eq!(status, 400, "{body} → {answer}");
        let error = answer["error"].as_str().expect("a JSON error");
        assert!(error.contains("{\"seconds\": N}"), "{error}");
    }
    let resp = reqwest::Client::new()
        .post(format!("{admin}/outage"))
        .body("seconds=2")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let answer: serde_json::Value = resp.json().await.unwrap();
    assert!(answer["error"].as_str().is_some(), "{answer}");
    // None of those started an outage.
    assert_eq!(try_connect(&sim.url()).await, Ok(()));

    // A long outage, then `0` ends it at once.
    let (status, body) = admin_post(&admin, "/outage", json!({ "seconds": 600 })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(try_connect(&sim.url()).await, Err(503));
    let (status, body) = admin_post(&admin, "/outage", json!({ "seconds": 0 })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(try_connect(&sim.url()).await, Ok(()));
    assert_eq!(sim.admin().health().refused, 1);
    sim.shutdown().await;
}
