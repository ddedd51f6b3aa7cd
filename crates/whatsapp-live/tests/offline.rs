//! The live adapter with no WhatsApp to talk to: what a session reports
//! when the server cannot be reached, and the calls that need no server.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::sync::Arc;

use common::{WaitingSink, closed_port, is_unreachable, session, start};
use wagate_domain::{Jid, PictureType, SessionErrorCode};
use wagate_whatsapp_port::{SessionEventKind, WhatsAppError, WhatsAppPort};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_reported_not_hung_on() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(WaitingSink::default());
    let url = format!("ws://127.0.0.1:{}/ws/chat", closed_port());
    let live = start(url.clone(), &dir.path().join("keys.db"), sink.clone()).await;
    let s = session(1);

    live.connect(&s, None).await.unwrap();
    // Connecting again while the first attempt runs does nothing more.
    live.connect(&s, None).await.unwrap();
    let (_, kind) = sink.wait_after(0, &s, "unreachable", is_unreachable).await;
    let SessionEventKind::Disconnected { error: Some(e) } = kind else {
        unreachable!()
    };
    assert!(e.message.contains(&url), "{}", e.message);

    // It keeps retrying quietly (one report per outage), and nothing works.
    assert_eq!(live.qr(&s).await.unwrap_err(), WhatsAppError::NotPairing);
    let jid = Jid::parse("14155550123@s.whatsapp.net").unwrap();
    assert_eq!(
        live.profile_picture(&s, &jid, PictureType::Image)
            .await
            .unwrap_err(),
        WhatsAppError::NotConnected
    );
    assert_eq!(
        live.about(&s, &jid).await.unwrap_err(),
        WhatsAppError::NotConnected
    );
    assert_eq!(
        live.blocklist(&s).await.unwrap_err(),
        WhatsAppError::NotConnected
    );
    let group = Jid::parse("120363025246125486@g.us").unwrap();
    assert!(matches!(
        live.block(&s, &group).await.unwrap_err(),
        WhatsAppError::InvalidTarget(_)
    ));

    // Disconnect stops the retries; nothing is published for it.
    let before = sink.mark();
    live.disconnect(&s).await.unwrap();
    live.disconnect(&s).await.unwrap();
    assert_eq!(sink.mark(), before);
    live.shutdown().await;
    assert!(
        live.connect(&s, None).await.is_err(),
        "refused after shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linked_session_without_keys_is_reported_logged_out() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(WaitingSink::default());
    let url = format!("ws://127.0.0.1:{}/ws/chat", closed_port());
    let live = start(url, &dir.path().join("keys.db"), sink.clone()).await;
    let s = session(2);
    let jid = Jid::parse("15550001111@s.whatsapp.net").unwrap();

    live.connect(&s, Some(jid)).await.unwrap();
    let events = sink.events();
    assert_eq!(
        events.len(),
        1,
        "published before connect returns: {events:#?}"
    );
    let SessionEventKind::LoggedOut { error: Some(e) } = &events[0].kind else {
        panic!("{events:#?}");
    };
    assert_eq!(e.code, SessionErrorCode::Internal);

    // Logout and remove of a session that never linked are no-ops.
    live.logout(&s).await.unwrap();
    live.remove(&s).await.unwrap();
    live.remove(&s).await.unwrap();
    live.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_sessions_fail_independently_and_shut_down_together() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(WaitingSink::default());
    let url = format!("ws://127.0.0.1:{}/ws/chat", closed_port());
    let live = start(url, &dir.path().join("keys.db"), sink.clone()).await;
    let sessions: Vec<_> = (10..16).map(session).collect();
    for s in &sessions {
        live.connect(s, None).await.unwrap();
    }
    for s in &sessions {
        sink.wait_after(0, s, "unreachable", is_unreachable).await;
    }
    live.shutdown().await;
}
