//! A stock whatsapp-rust client pairs with the simulator by QR code, reaches
//! Connected, and logs in again after a restart without a new QR code.

// Integration tests: a failed expectation should panic with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{PHONE, TestBot, admin_get, init_logs, scan_qr};
use wagate_whatsapp_sim::{Simulator, World};
use whatsapp_rust::types::events::Event;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qr_pairing_connects_and_restart_logs_in_without_qr() {
    init_logs();
    let sim = Simulator::start(World::empty()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("wa.db");

    let mut bot = TestBot::start(&sim.url(), &db).await;
    let qr = bot.next_qr().await;
    let linked = scan_qr(&sim, &qr, PHONE).await;
    assert_eq!(linked["jid"], format!("{PHONE}:1@s.whatsapp.net"));
    bot.wait_for(10, "PairSuccess", |e| matches!(e, Event::PairSuccess(_)))
        .await;
    bot.wait_connected(30).await;

    let (status, account) = admin_get(&sim.admin_url(), &format!("/accounts/{PHONE}")).await;
    assert_eq!(status, 200);
    assert_eq!(account["devices"][0]["device"], 1);
    assert_eq!(account["devices"][0]["connected"], true);
    bot.stop().await;

    // A new Bot on the same store logs in with its stored identity.
    let mut bot = TestBot::start(&sim.url(), &db).await;
    bot.wait_connected(30).await;
    assert!(
        !bot.drain()
            .iter()
            .any(|e| matches!(**e, Event::PairingQrCode(_))),
        "no QR code after a restart"
    );
    assert!(bot.client.is_logged_in());
    bot.stop().await;
    sim.shutdown().await;
}
