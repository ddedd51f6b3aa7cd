//! The state file: a simulator restarted on the same file still knows the
//! devices linked before (a stock client reconnects as the same device, not
//! logged out), their blocklists, and the unlinking of a device; a corrupt
//! or unwritable file stops the start with a clear error.

// Integration tests: a failed expectation should panic with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{PHONE, TestBot, WORLD, admin_get, init_logs, paired_bot};
use wagate_whatsapp_sim::{SimError, Simulator, SimulatorHandle, StateError, World};
use whatsapp_rust::Jid;
use whatsapp_rust::types::events::Event;

/// A contact of [`WORLD`] with a LID, so it can be blocked.
const BLOCKED: &str = "14155550123@s.whatsapp.net";
const BLOCKED_LID: &str = "123456789012345@lid";

async fn start(state: &Path, addr: Option<std::net::SocketAddr>) -> SimulatorHandle {
    let mut builder = Simulator::builder(World::from_json(WORLD).unwrap()).state_file(state);
    if let Some(addr) = addr {
        builder = builder.listen(addr);
    }
    builder.start().await.unwrap()
}

/// Waits for the client to be let in or turned away, and says which.
async fn connected_or_logged_out(bot: &mut TestBot) -> Arc<Event> {
    bot.wait_for(30, "Connected or LoggedOut", |e| {
        matches!(e, Event::Connected(_) | Event::LoggedOut(_))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_on_the_same_state_file_keeps_devices_and_blocklists() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let db = dir.path().join("wa.db");

    let sim = start(&state, None).await;
    assert!(state.exists(), "the state file is written at start");
    let addr = sim.addr();
    let mut bot = paired_bot(&sim, &db, PHONE).await;
    let blocked: Jid = BLOCKED.parse().unwrap();
    // Blocking needs the contact's LID, which the client learns by asking.
    bot.client
        .contacts()
        .is_on_whatsapp(std::slice::from_ref(&blocked))
        .await
        .unwrap();
    bot.client.blocking().block(&blocked).await.unwrap();
    let (_, before) = admin_get(&sim.admin_url(), &format!("/accounts/{PHONE}")).await;
    assert_eq!(before["devices"].as_array().unwrap().len(), 1, "{before}");

    // The simulator goes away; the client notices and keeps retrying.
    sim.shutdown().await;
    bot.wait_for(10, "Disconnected", |e| matches!(e, Event::Disconnected(_)))
        .await;
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert_eq!(saved["version"], 1);
    assert_eq!(saved["accounts"][0]["devices"][0]["device"], 1, "{saved}");

    // A new simulator on the same file and port: the running client's own
    // retry logs in as the same device.
    let sim = start(&state, Some(addr)).await;
    let e = connected_or_logged_out(&mut bot).await;
    assert!(
        matches!(*e, Event::Connected(_)),
        "the device is recognized, not logged out: {e:?}"
    );
    assert!(bot.client.is_logged_in());
    let (status, after) = admin_get(&sim.admin_url(), &format!("/accounts/{PHONE}")).await;
    assert_eq!(status, 200);
    let device = &after["devices"][0];
    assert_eq!(after["devices"].as_array().unwrap().len(), 1, "{after}");
    for field in ["device", "jid", "lid", "keyIndex", "linkedAt", "platform"] {
        assert_eq!(device[field], before["devices"][0][field], "{field}");
    }
    assert_eq!(after["lid"], before["lid"]);
    assert_eq!(device["connected"], true, "{after}");
    let list = after["blocklist"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{after}");
    assert_eq!(list[0]["jid"], BLOCKED_LID);
    assert_eq!(list[0]["pnJid"], BLOCKED);
    // The client reads the same blocklist from the server.
    assert_eq!(
        bot.client.blocking().get_blocklist().await.unwrap().len(),
        1
    );
    assert!(bot.client.blocking().is_blocked(&blocked).await.unwrap());
    bot.stop().await;

    // A new client on the same store (a restarted gateway) logs in too,
    // without a QR code.
    let mut bot = TestBot::start(&sim.url(), &db).await;
    let e = connected_or_logged_out(&mut bot).await;
    assert!(matches!(*e, Event::Connected(_)), "{e:?}");
    assert!(
        !bot.drain()
            .iter()
            .any(|e| matches!(**e, Event::PairingQrCode(_))),
        "no QR code"
    );

    // Unlinking is saved too: after another restart the device is refused.
    assert_eq!(sim.admin().logout(PHONE).unwrap(), 1);
    bot.wait_for(10, "LoggedOut", |e| matches!(e, Event::LoggedOut(_)))
        .await;
    bot.stop().await;
    sim.shutdown().await;
    let sim = start(&state, None).await;
    let mut bot = TestBot::start(&sim.url(), &db).await;
    let e = connected_or_logged_out(&mut bot).await;
    let Event::LoggedOut(out) = &*e else {
        panic!("an unlinked device must stay unlinked: {e:?}");
    };
    assert!(out.on_connect);
    let (_, account) = admin_get(&sim.admin_url(), &format!("/accounts/{PHONE}")).await;
    assert_eq!(account["devices"].as_array().unwrap().len(), 0, "{account}");
    assert_eq!(
        account["blocklist"].as_array().unwrap().len(),
        1,
        "{account}"
    );
    bot.stop().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_state_file_stops_the_start_with_a_clear_error() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    std::fs::write(&state, "{\"version\": 1, \"server\": {").unwrap();
    let err = Simulator::builder(World::empty())
        .state_file(&state)
        .start()
        .await
        .expect_err("a corrupt state file is refused");
    assert!(
        matches!(err, SimError::State(StateError::Corrupt { .. })),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains(&state.display().to_string()), "{msg}");
    assert!(msg.contains("corrupt"), "{msg}");
    // The file is left as it was, for a person to look at.
    assert_eq!(
        std::fs::read_to_string(&state).unwrap(),
        "{\"version\": 1, \"server\": {"
    );

    // A path that cannot be written fails at start, not at the first link.
    let err = Simulator::builder(World::empty())
        .state_file(dir.path().join("missing-dir").join("state.json"))
        .start()
        .await
        .expect_err("an unwritable state file is refused");
    assert!(
        matches!(err, SimError::State(StateError::Write { .. })),
        "{err:?}"
    );
}
