//! `wagate db copy`: a deployment on SQLite with a linked session, stopped,
//! copied into an empty PostgreSQL database. The gateway's rows arrive as
//! they were, and a live adapter whose device keys are on that database
//! connects the session without a new QR code. Needs a throwaway
//! PostgreSQL (`wagate-test-postgres`; skipped, saying so, without one).

use std::sync::Arc;

use wagate_domain::{Jid, OrgId, SessionId, SessionStatus, SystemClock};
use wagate_whatsapp_live::{KeyStoreLocation, LiveConfig, LiveWhatsApp};
use wagate_whatsapp_port::{RecordingSink, SessionEventKind, WhatsAppPort as _};

use crate::support::{FAKE_PHONE_JID, TestApp, eventually};

#[tokio::test]
async fn a_session_linked_on_sqlite_connects_from_postgres_after_a_copy() {
    let Some(pg) = wagate_test_postgres::shared() else {
        return;
    };
    let app = TestApp::spawn_live().await;
    let sim = app.sim.clone().unwrap();
    let key = app.key("acme", "read,send,manage").await;
    let id = app.connected_session(&key).await;
    let dir = app.dir.clone();
    app.shut_down().await;

    let from = format!("sqlite://{}/wagate.db", dir.path().display());
    let to = pg.fresh_database();
    let mut out = Vec::new();
    wagate::cli::db_copy(&from, &to, None, &mut out)
        .await
        .unwrap();
    let printed = String::from_utf8(out).unwrap();
    assert!(printed.contains("public.sessions\t1"), "{printed}");
    assert!(printed.contains("whatsapp.device\t1"), "{printed}");
    let rows = |table: &str| -> u64 {
        printed
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{table}\t")))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    assert!(rows("public.events") > 0, "{printed}");
    assert!(rows("public.api_keys") > 0, "{printed}");
    assert!(rows("whatsapp.prekeys") > 0, "{printed}");
    assert!(rows("whatsapp.wagate_live_sessions") == 1, "{printed}");

    // Only into an empty database.
    let refused = wagate::cli::db_copy(&from, &to, None, &mut Vec::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("not empty"), "{refused}");

    // The gateway's rows, as they were.
    let store = wagate_store::open(&to).await.unwrap();
    let session = SessionId::parse(&id).unwrap();
    let row = store
        .get(&OrgId::parse("acme").unwrap(), &session)
        .await
        .unwrap()
        .expect("the session was copied");
    let me = Jid::parse(FAKE_PHONE_JID).unwrap();
    assert_eq!(row.jid.as_ref(), Some(&me));
    assert_eq!(row.status, SessionStatus::Connected);
    store.close().await;

    // The device keys: connected from PostgreSQL, no QR code.
    let sink = Arc::new(RecordingSink::default());
    let live = LiveWhatsApp::start(
        LiveConfig {
            url: Some(sim.url()),
            version: Some((2, 3000, 1_042_742_319)),
            store: KeyStoreLocation::Postgres {
                url: to,
                connections: 2,
            },
        },
        sink.clone(),
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    live.connect(&session, Some(me.clone())).await.unwrap();
    eventually("connected from PostgreSQL", || async {
        sink.events()
            .into_iter()
            .find(|e| matches!(&e.kind, SessionEventKind::Connected { jid, .. } if *jid == me))
    })
    .await;
    assert!(
        !sink
            .events()
            .iter()
            .any(|e| e.kind == SessionEventKind::Pairing),
        "no QR code after the copy"
    );
    live.shutdown().await;
}
