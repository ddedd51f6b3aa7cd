//! Where a connection is served: on the simulator's login threads from its
//! Noise handshake until its key digest query is answered, then with the
//! established connections (`/admin/health` `loggingIn`), so that a burst
//! of logins does not hold up the requests of clients already logged in.

// Integration tests: a failed expectation should panic with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{PHONE, TestBot, WORLD, admin_post, init_logs, scan_qr};
use serde_json::json;
use wagate_whatsapp_sim::{Simulator, SimulatorHandle, World};
use whatsapp_rust::types::events::Event;

/// A connection stays on the login threads this long at most in these
/// tests: far more than [`PATIENCE`], so a connection that leaves them
/// within it was moved by its digest's answer.
const LOGIN_PHASE: Duration = Duration::from_secs(600);

/// How long a test waits for a login to be over (a loaded machine's debug
/// build; the wait ends as soon as it is).
const PATIENCE: Duration = Duration::from_secs(60);

/// Waits until no connection is logging in and `logged_in` are logged in.
async fn wait_settled(sim: &SimulatorHandle, logged_in: usize) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let health = sim.admin().health();
        if health.logging_in == 0 && health.logged_in == logged_in {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still logging in after {PATIENCE:?}: {health:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_leaves_the_login_threads_once_its_digest_is_answered() {
    init_logs();
    let sim = Simulator::builder(World::from_json(WORLD).unwrap())
        .login_phase(LOGIN_PHASE)
        .start()
        .await
        .unwrap();
    assert_eq!(sim.admin().health().logging_in, 0);
    let dir = tempfile::tempdir().unwrap();
    let mut bot = TestBot::start(&sim.url(), &dir.path().join("wa.db")).await;

    // A companion showing QR codes is logging in.
    let qr = bot.next_qr().await;
    let health = sim.admin().health();
    assert_eq!(
        (health.connections, health.logging_in),
        (1, 1),
        "{health:?}"
    );

    // Linked: the client logs in on a new connection, asks for its key
    // digest, and that connection moves to the established ones.
    scan_qr(&sim, &qr, PHONE).await;
    bot.wait_connected(30).await;
    wait_settled(&sim, 1).await;

    // A login with keys (a reconnect) goes the same way.
    let (status, dropped) = admin_post(
        &sim.admin_url(),
        &format!("/accounts/{PHONE}/drop"),
        json!({}),
    )
    .await;
    assert_eq!((status, &dropped["dropped"]), (200, &json!(1)), "{dropped}");
    bot.wait_for(10, "Disconnected", |e| matches!(e, Event::Disconnected(_)))
        .await;
    bot.wait_connected(30).await;
    wait_settled(&sim, 1).await;

    // The moved connection is still served: a contact's message reaches it.
    let (status, posted) = admin_post(
        &sim.admin_url(),
        &format!("/accounts/{PHONE}/messages"),
        json!({ "from": "14155550123", "text": "still served" }),
    )
    .await;
    assert_eq!(status, 200, "{posted}");
    bot.wait_text(15, "still served").await;
    assert_eq!(sim.admin().health().overlaps, 0);
    bot.stop().await;
}
