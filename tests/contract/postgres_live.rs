//! The gateway on PostgreSQL with the live adapter: a session linked
//! through one gateway connects from the next one started after the first
//! is gone, without a new QR code. The two share nothing but the database
//! (each has a folder of its own): the device keys come from PostgreSQL.
//! Needs a throwaway PostgreSQL (`wagate-test-postgres`; skipped, saying
//! so, without one).

use std::sync::Arc;

use crate::support::{FAKE_PHONE_JID, TestApp, live_config};

#[tokio::test]
async fn a_session_linked_on_one_gateway_connects_from_the_next_without_a_qr_code() {
    let Some(pg) = wagate_test_postgres::shared() else {
        return;
    };
    let database = pg.fresh_database();
    let sim = Arc::new(
        wagate_whatsapp_sim::Simulator::start(crate::support::sim_world())
            .await
            .unwrap(),
    );
    let gateway = |dir: &tempfile::TempDir| {
        let mut config = live_config(dir, &sim);
        config.database.url = wagate::config::Secret::new(database.clone());
        config.cluster.secret = Some(wagate::config::Secret::new(
            "contract-tests-cluster-secret-0123456789".into(),
        ));
        config
    };

    let first_dir = Arc::new(tempfile::tempdir().unwrap());
    let first = TestApp::spawn_live_with(gateway(&first_dir), first_dir.clone(), sim.clone()).await;
    let key = first.key("acme", "read,send,manage").await;
    let id = first.connected_session(&key).await;
    first.shut_down().await;
    drop(first_dir);

    // Nothing of the first gateway is left but the database.
    let second_dir = Arc::new(tempfile::tempdir().unwrap());
    let second =
        TestApp::spawn_live_with(gateway(&second_dir), second_dir.clone(), sim.clone()).await;
    // Resumed from the database: connected, never pairing (a QR code would
    // leave it waiting in `pairing` for a scan that never comes).
    let s = second
        .wait_for(&id, &key, |s| {
            assert_ne!(s["status"], "pairing", "a new QR code was asked for: {s}");
            s["status"] == "connected"
        })
        .await;
    assert_eq!(s["jid"], FAKE_PHONE_JID);
    assert_eq!(
        second
            .get(
                &format!("/api/v1/sessions/{id}/contacts/14155550123@s.whatsapp.net/about"),
                &key
            )
            .await
            .status(),
        reqwest::StatusCode::OK
    );
    assert!(
        std::fs::read_dir(second_dir.path())
            .unwrap()
            .next()
            .is_none(),
        "the second gateway wrote no local file"
    );
    second.shut_down().await;
}
