//! Messaging through the live adapter against the simulator: sending (the
//! contact decrypts it; server ack and receipts come back as statuses),
//! receiving (recorded once; not acknowledged, so delivered again, when
//! recording fails).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::sync::Arc;

use common::{FRIEND, PHONE, WaitingSink, friend_world as world, jid, session, start, status_of};
use wagate_domain::{MessageId, MessageStatus, SessionId};
use wagate_whatsapp_live::LiveWhatsApp;
use wagate_whatsapp_port::{
    InboundContent, OutgoingContent, OutgoingMessage, SessionEventKind, WhatsAppError, WhatsAppPort,
};
use wagate_whatsapp_sim::{Simulator, SimulatorHandle};

async fn link(live: &LiveWhatsApp, sim: &SimulatorHandle, sink: &WaitingSink, s: &SessionId) {
    let from = sink.mark();
    live.connect(s, None).await.unwrap();
    sink.wait_after(from, s, "Pairing", |k| *k == SessionEventKind::Pairing)
        .await;
    let qr = live.qr(s).await.unwrap();
    sim.admin().scan_qr(&qr.code, PHONE).await.unwrap();
    sink.wait_after(from, s, "Connected", |k| {
        matches!(k, SessionEventKind::Connected { .. })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_then_sent_and_delivered() {
    let sim = Simulator::start(world()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(WaitingSink::default());
    let live = start(sim.url(), &dir.path().join("keys.db"), sink.clone()).await;
    let s = session(1);
    link(&live, &sim, &sink, &s).await;

    let id = MessageId::parse("3EB0LIVE00000000000001").unwrap();
    let message = OutgoingMessage {
        id: id.clone(),
        to: jid(&format!("{FRIEND}@s.whatsapp.net")),
        content: OutgoingContent::Text("Hello from wagate".into()),
        reply_to: None,
        mentions: Vec::new(),
    };
    let mark = sink.mark();
    live.send_message(&s, &message).await.unwrap();
    let (at, kind) = sink
        .wait_after(mark, &s, "Sent", |k| {
            status_of(k, id.as_str()).is_some_and(|u| u.status == MessageStatus::Sent)
        })
        .await;
    let sent = status_of(&kind, id.as_str()).unwrap();
    assert_eq!(sent.chat, jid(&format!("{FRIEND}@s.whatsapp.net")));
    assert_eq!(sent.error_code, None);
    sink.wait_after(at, &s, "Delivered after Sent", |k| {
        status_of(k, id.as_str()).is_some_and(|u| u.status == MessageStatus::Delivered)
    })
    .await;

    // The contact has it, decrypted, once — also after sending it again
    // under the same id (a retry).
    live.send_message(&s, &message).await.unwrap();
    let view = sim.admin().messages(PHONE, FRIEND).unwrap();
    let data = view["data"].as_array().unwrap();
    let ours: Vec<_> = data.iter().filter(|m| m["id"] == id.as_str()).collect();
    assert!(!ours.is_empty(), "{view:#}");
    assert_eq!(ours[0]["text"], "Hello from wagate");
    assert_eq!(ours[0]["type"], "text");

    // Neither a person nor a group (a channel): refused before anything is
    // sent.
    let to_channel = OutgoingMessage {
        to: jid("120363144038483540@newsletter"),
        ..message.clone()
    };
    assert!(matches!(
        live.send_message(&s, &to_channel).await.unwrap_err(),
        WhatsAppError::InvalidTarget(_)
    ));
    // Offline: NotConnected, the caller keeps it.
    live.disconnect(&s).await.unwrap();
    assert_eq!(
        live.send_message(&s, &message).await.unwrap_err(),
        WhatsAppError::NotConnected
    );
    live.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn received_messages_are_recorded_once_and_redelivered_when_not() {
    let sim = Simulator::start(world()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(WaitingSink::default());
    let live = start(sim.url(), &dir.path().join("keys.db"), sink.clone()).await;
    let s = session(1);
    link(&live, &sim, &sink, &s).await;

    // A contact writes: recorded once, with both forms of the sender.
    let id = sim
        .admin()
        .send_message(
            PHONE,
            &serde_json::json!({ "from": FRIEND, "text": "hi there" }),
        )
        .await
        .unwrap();
    let m = sink
        .wait_message("the contact's text", |m| m.id.as_str() == id)
        .await;
    assert_eq!(m.content, InboundContent::Text("hi there".into()));
    assert!(!m.from_me);
    assert_eq!(m.chat, jid(&format!("{FRIEND}@s.whatsapp.net")));
    assert_eq!(m.sender_pn, Some(jid(&format!("{FRIEND}@s.whatsapp.net"))));
    assert_eq!(sink.times_offered(&id), 1);

    // Recording fails once: not acknowledged, so WhatsApp delivers it again
    // after a reconnect, and it is recorded once.
    sink.fail_next_records(1);
    let calls = sink.record_calls();
    let second = sim
        .admin()
        .send_message(
            PHONE,
            &serde_json::json!({ "from": FRIEND, "text": "again" }),
        )
        .await
        .unwrap();
    sink.wait_until("the failed record call", |k| k.record_calls() > calls)
        .await;
    assert_eq!(sink.times_offered(&second), 0);
    let mark = sink.mark();
    assert_eq!(sim.admin().drop_connections(PHONE), 1);
    sink.wait_after(mark, &s, "Connected again", |k| {
        matches!(k, SessionEventKind::Connected { .. })
    })
    .await;
    let m = sink
        .wait_message("the redelivered text", |m| m.id.as_str() == second)
        .await;
    assert_eq!(m.content, InboundContent::Text("again".into()));
    assert_eq!(sink.times_offered(&second), 1);
    assert_eq!(
        sink.messages()
            .iter()
            .filter(|(_, m)| m.id.as_str() == id)
            .count(),
        1,
        "the first message is not recorded twice"
    );
    live.shutdown().await;
    sim.shutdown().await;
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_both_ways() {
    let sim = Simulator::start(world()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(WaitingSink::default());
    let live = start(sim.url(), &dir.path().join("keys.db"), sink.clone()).await;
    let s = session(1);
    link(&live, &sim, &sink, &s).await;

    // Sent: uploaded to the simulator, decrypted by the contact.
    let picture: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let id = MessageId::parse("3EB0LIVEMEDIA000000001").unwrap();
    let mark = sink.mark();
    live.send_message(
        &s,
        &OutgoingMessage {
            id: id.clone(),
            to: jid(&format!("{FRIEND}@s.whatsapp.net")),
            content: OutgoingContent::Media(wagate_whatsapp_port::OutgoingMedia {
                kind: wagate_domain::MessageType::Image,
                mimetype: "image/png".into(),
                filename: None,
                caption: Some("a picture".into()),
                voice_note: false,
                data: picture.clone(),
            }),
            reply_to: None,
            mentions: Vec::new(),
        },
    )
    .await
    .unwrap();
    sink.wait_after(mark, &s, "Delivered", |k| {
        status_of(k, id.as_str()).is_some_and(|u| u.status == MessageStatus::Delivered)
    })
    .await;
    let view = sim.admin().messages(PHONE, FRIEND).unwrap();
    let ours = view["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == id.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("{view:#}"));
    assert_eq!(ours["type"], "image");
    assert_eq!(ours["caption"], "a picture");
    assert_eq!(ours["media"]["size"], 5000);

    // Received: recorded with its media reference, downloaded and decrypted.
    let got = sim
        .admin()
        .send_message(
            PHONE,
            &serde_json::json!({ "from": FRIEND, "caption": "look",
                "image": { "data": base64(&picture), "mimetype": "image/jpeg" } }),
        )
        .await
        .unwrap();
    let m = sink
        .wait_message("the contact's image", |m| m.id.as_str() == got)
        .await;
    let InboundContent::Media {
        kind,
        info,
        caption,
        media,
        ..
    } = m.content
    else {
        panic!("{m:?}");
    };
    assert_eq!(kind, wagate_domain::MessageType::Image);
    assert_eq!(caption.as_deref(), Some("look"));
    assert_eq!(info.mimetype, "image/jpeg");
    assert_eq!(info.size, 5000);
    let download = live.download_media(&s, &media, 5000).await.unwrap();
    assert_eq!(download.collect().await.unwrap(), picture);
    // Declared over the limit: refused before anything is fetched.
    assert!(live.download_media(&s, &media, 4999).await.is_err());
    assert_eq!(
        live.download_media(&s, &wagate_whatsapp_port::MediaRef(vec![9, 9]), 5000)
            .await
            .unwrap_err(),
        WhatsAppError::NotFound(None)
    );
    live.shutdown().await;
    sim.shutdown().await;
}
