//! Device keys on PostgreSQL: a session linked by one adapter connects from
//! another started after the first is gone (as a second gateway process
//! would: its own pool, nothing on disk), without a new QR code, and its
//! Signal sessions still work both ways. Needs a throwaway PostgreSQL
//! (`wagate-test-postgres`; skipped, saying so, without one).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::sync::Arc;

use common::{
    FRIEND, PHONE, WaitingSink, friend_world as world, jid, session, start_on, status_of,
};
use wagate_domain::{MessageId, MessageStatus, SessionId};
use wagate_whatsapp_live::{KeyStoreLocation, LiveWhatsApp};
use wagate_whatsapp_port::{OutgoingContent, OutgoingMessage, SessionEventKind, WhatsAppPort};
use wagate_whatsapp_sim::Simulator;

/// Sends `text` to the friend and waits until WhatsApp has delivered it.
async fn send(live: &LiveWhatsApp, sink: &WaitingSink, s: &SessionId, id: &str, text: &str) {
    let id = MessageId::parse(id).unwrap();
    let mark = sink.mark();
    live.send_message(
        s,
        &OutgoingMessage {
            id: id.clone(),
            to: jid(&format!("{FRIEND}@s.whatsapp.net")),
            content: OutgoingContent::Text(text.into()),
            reply_to: None,
            mentions: Vec::new(),
        },
    )
    .await
    .unwrap();
    sink.wait_after(mark, s, "Delivered", |k| {
        status_of(k, id.as_str()).is_some_and(|u| u.status == MessageStatus::Delivered)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_linked_on_one_adapter_connects_from_the_next_without_a_qr_code() {
    let Some(pg) = wagate_test_postgres::shared() else {
        return;
    };
    let url = pg.fresh_database();
    let store = || KeyStoreLocation::Postgres {
        url: url.clone(),
        connections: 4,
    };
    let sim = Simulator::start(world()).await.unwrap();
    let sink = Arc::new(WaitingSink::default());
    let s = session(1);
    let me = jid(&format!("{PHONE}@s.whatsapp.net"));

    // Linked through the first adapter, a message sent and one received.
    let first = start_on(sim.url(), store(), sink.clone()).await;
    let from = sink.mark();
    first.connect(&s, None).await.unwrap();
    sink.wait_after(from, &s, "Pairing", |k| *k == SessionEventKind::Pairing)
        .await;
    let qr = first.qr(&s).await.unwrap();
    sim.admin().scan_qr(&qr.code, PHONE).await.unwrap();
    sink.wait_after(from, &s, "Connected", |k| {
        matches!(k, SessionEventKind::Connected { .. })
    })
    .await;
    send(&first, &sink, &s, "3EB0PG0000000000000001", "before").await;
    let id = sim
        .admin()
        .send_message(PHONE, &serde_json::json!({ "from": FRIEND, "text": "one" }))
        .await
        .unwrap();
    sink.wait_message("the first reply", |m| m.id.as_str() == id)
        .await;
    first.shutdown().await;
    drop(first);

    // The next adapter: its own pool, the same database.
    let second = start_on(sim.url(), store(), sink.clone()).await;
    let mark = sink.mark();
    second.connect(&s, Some(me.clone())).await.unwrap();
    let (at, _) = sink
        .wait_after(
            mark,
            &s,
            "Connected on the second adapter",
            |k| matches!(k, SessionEventKind::Connected { jid, .. } if *jid == me),
        )
        .await;
    assert!(
        !sink.events()[mark..at]
            .iter()
            .any(|e| e.kind == SessionEventKind::Pairing),
        "no QR code on the second adapter"
    );

    // The Signal sessions moved with it: the friend reads what it sends,
    // and it reads what the friend sends.
    send(&second, &sink, &s, "3EB0PG0000000000000002", "after").await;
    let view = sim.admin().messages(PHONE, FRIEND).unwrap();
    assert!(
        view["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "3EB0PG0000000000000002" && m["text"] == "after"),
        "{view:#}"
    );
    let id = sim
        .admin()
        .send_message(PHONE, &serde_json::json!({ "from": FRIEND, "text": "two" }))
        .await
        .unwrap();
    sink.wait_message("the second reply", |m| m.id.as_str() == id)
        .await;

    second.shutdown().await;
    sim.shutdown().await;
}
