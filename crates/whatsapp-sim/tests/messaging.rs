//! Messages between a stock whatsapp-rust client and the world's contacts,
//! which the simulator plays as Signal users: client → contact is decrypted
//! and logged, acked by the server and receipted by the contact; contact →
//! client (admin API) arrives decrypted, is redelivered to a device that was
//! away, and survives a simulator restart on its state file.

// Integration tests: a failed expectation should panic with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use common::{PHONE, TestBot, admin_get, admin_post, init_logs, paired_bot};
use wagate_whatsapp_sim::{Simulator, SimulatorHandle, World};
use whatsapp_rust::Jid;
use whatsapp_rust::types::events::Event;
use whatsapp_rust::types::presence::ReceiptType;

/// A contact that reads (200 ms after delivery) and one that does not.
const READER: &str = "14155550123";
const SILENT: &str = "14155550199";

const WORLD: &str = r#"{
  "phone": "15550001111",
  "pushName": "Sim Tester",
  "receiptDelayMs": 20,
  "contacts": {
    "14155550123@s.whatsapp.net": { "lid": "123456789012345@lid", "readsAfterMs": 200,
                                    "pushName": "Reader" },
    "14155550199@s.whatsapp.net": {},
    "120363025246125486@g.us": {}
  }
}"#;

fn text(s: &str) -> waproto::whatsapp::Message {
    waproto::whatsapp::Message {
        conversation: Some(s.to_owned()),
        ..Default::default()
    }
}

fn jid(phone: &str) -> Jid {
    format!("{phone}@s.whatsapp.net").parse().unwrap()
}

/// Sends `body` to the contact and waits for the server ack of it.
async fn send_text(bot: &mut TestBot, to: &str, body: &str) -> String {
    let sent = bot.client.send_message(jid(to), text(body)).await.unwrap();
    let id = sent.message_id.clone();
    bot.wait_for(
        10,
        "the server ack",
        |e| matches!(e, Event::ServerAck(a) if a.id == id && a.class.as_deref() == Some("message")),
    )
    .await;
    id
}

/// Polls the admin log of (account, peer) until `pred` holds.
async fn wait_log(
    admin_url: &str,
    peer: &str,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, log) = admin_get(
            admin_url,
            &format!("/accounts/{PHONE}/messages?peer={peer}"),
        )
        .await;
        assert_eq!(status, 200, "{log}");
        if pred(&log) {
            return log;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {what} within 10 s: {log}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits for an incoming message with this text from the reader; returns
/// its id.
async fn wait_text(bot: &mut TestBot, body: &str) -> String {
    let info = bot.wait_text(15, body).await;
    assert_eq!(info.source.sender.user, READER);
    assert!(!info.source.is_from_me);
    info.id
}

async fn post(sim_admin: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    admin_post(sim_admin, &format!("/accounts/{PHONE}/messages"), body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_to_contact_is_decrypted_acked_and_receipted() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(World::from_json(WORLD).unwrap())
        .await
        .unwrap();
    let mut bot = paired_bot(&sim, &dir.path().join("wa.db"), PHONE).await;

    let id = send_text(&mut bot, READER, "hello reader").await;
    let delivered = bot
        .wait_for(10, "the delivery receipt", |e| {
            matches!(e, Event::Receipt(r) if r.message_ids.contains(&id)
                && r.r#type == ReceiptType::Delivered)
        })
        .await;
    let Event::Receipt(r) = &*delivered else {
        unreachable!()
    };
    assert_eq!(r.source.chat.user, READER);
    bot.wait_for(10, "the read receipt", |e| {
        matches!(e, Event::Receipt(r) if r.message_ids.contains(&id)
            && r.r#type == ReceiptType::Read)
    })
    .await;

    // A second message rides the established session (a `msg`, not a pkmsg).
    let id2 = send_text(&mut bot, READER, "second").await;
    let log = wait_log(&sim.admin_url(), READER, "both messages", |l| {
        l["data"].as_array().is_some_and(|d| d.len() == 2)
    })
    .await;
    let data = log["data"].as_array().unwrap();
    assert_eq!(data[0]["id"], id.as_str());
    assert_eq!(data[0]["type"], "text");
    assert_eq!(data[0]["text"], "hello reader");
    assert_eq!(data[0]["media"], serde_json::Value::Null);
    assert!(data[0]["at"].as_str().unwrap().ends_with('Z'), "{log}");
    assert_eq!(data[1]["id"], id2.as_str());
    assert_eq!(data[1]["text"], "second");

    // A contact without readsAfterMs delivers but never reads.
    let id3 = send_text(&mut bot, SILENT, "to the silent one").await;
    bot.wait_for(10, "the silent contact's delivery receipt", |e| {
        matches!(e, Event::Receipt(r) if r.message_ids.contains(&id3)
            && r.r#type == ReceiptType::Delivered)
    })
    .await;
    let (_, silent) = admin_get(
        &sim.admin_url(),
        &format!("/accounts/{PHONE}/messages?peer={SILENT}"),
    )
    .await;
    assert_eq!(silent["data"][0]["text"], "to the silent one", "{silent}");
    // The other chat is separate.
    let (_, reader) = admin_get(
        &sim.admin_url(),
        &format!("/accounts/{PHONE}/messages?peer=%2B{READER}"),
    )
    .await;
    assert_eq!(reader["data"].as_array().unwrap().len(), 2, "{reader}");

    bot.stop().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contact_to_client_arrives_and_waits_for_an_absent_device() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("wa.db");
    let sim = Simulator::start(World::from_json(WORLD).unwrap())
        .await
        .unwrap();
    let mut bot = paired_bot(&sim, &db, PHONE).await;

    let (status, posted) = post(
        &sim.admin_url(),
        serde_json::json!({ "from": READER, "text": "hi from the contact" }),
    )
    .await;
    assert_eq!(status, 200, "{posted}");
    let id = posted["id"].as_str().unwrap().to_owned();
    assert_eq!(wait_text(&mut bot, "hi from the contact").await, id);
    // The client's delivery receipt is logged.
    wait_log(&sim.admin_url(), READER, "the delivery receipt", |l| {
        l["receipts"].as_array().is_some_and(|r| {
            r.iter()
                .any(|r| r["id"] == id.as_str() && r["type"] == "delivered")
        })
    })
    .await;
    // A read receipt the client sends is logged as read.
    let chat = jid(READER);
    bot.client
        .mark_as_read(&chat, None, &[id.as_str()])
        .await
        .unwrap();
    wait_log(&sim.admin_url(), READER, "the read receipt", |l| {
        l["receipts"].as_array().is_some_and(|r| {
            r.iter()
                .any(|r| r["id"] == id.as_str() && r["type"] == "read")
        })
    })
    .await;
    // A reply in the same chat decrypts on the contact's side.
    send_text(&mut bot, READER, "reply").await;

    // The device goes away; the contact writes meanwhile; the message waits
    // and arrives when the device is back.
    bot.stop().await;
    let (status, posted) = post(
        &sim.admin_url(),
        serde_json::json!({ "from": READER, "text": "while you were away" }),
    )
    .await;
    assert_eq!(status, 200, "{posted}");
    // Not waiting for Connected first: the queued message may come before
    // that event, and waiting would skip it.
    let mut bot = TestBot::start(&sim.url(), &db).await;
    assert_eq!(
        wait_text(&mut bot, "while you were away").await,
        posted["id"].as_str().unwrap()
    );
    bot.stop().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_from_a_contact_is_encrypted_media_on_the_media_host() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(World::from_json(WORLD).unwrap())
        .await
        .unwrap();
    let mut bot = paired_bot(&sim, &dir.path().join("wa.db"), PHONE).await;
    let picture: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let (status, posted) = post(
        &sim.admin_url(),
        serde_json::json!({ "from": READER, "caption": "look",
            "image": { "data": base64::engine::general_purpose::STANDARD.encode(&picture),
                       "mimetype": "image/jpeg" } }),
    )
    .await;
    assert_eq!(status, 200, "{posted}");
    let e = bot
        .wait_for(15, "the image message", |e| match e {
            Event::Messages(b) => b.messages.iter().any(|m| m.message.image_message.is_set()),
            _ => false,
        })
        .await;
    let Event::Messages(batch) = &*e else {
        unreachable!()
    };
    let image = batch.messages[0]
        .message
        .image_message
        .as_option()
        .unwrap()
        .clone();
    assert_eq!(image.caption.as_deref(), Some("look"));
    assert_eq!(image.mimetype.as_deref(), Some("image/jpeg"));
    assert_eq!(image.file_length, Some(picture.len() as u64));
    // The media host serves the encrypted bytes at the direct path; they
    // decrypt (HMAC checked) with the message's media key to the picture.
    let path = image.direct_path.clone().unwrap();
    let enc = reqwest::get(format!("http://{}{path}", sim.addr()))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let plain = wacore::download::DownloadUtils::verify_and_decrypt(
        &enc,
        image.media_key.as_deref().unwrap(),
        wacore::download::MediaType::Image,
    )
    .unwrap();
    assert_eq!(plain, picture);

    // A client's upload is stored and served back.
    let (status, up) = {
        let resp = reqwest::Client::new()
            .post(format!(
                "http://{}/mms/image/tok?auth=sim&token=tok",
                sim.addr()
            ))
            .body(vec![7u8; 100])
            .send()
            .await
            .unwrap();
        (
            resp.status().as_u16(),
            resp.json::<serde_json::Value>().await.unwrap(),
        )
    };
    assert_eq!(status, 200, "{up}");
    let back = reqwest::get(format!(
        "http://{}{}",
        sim.addr(),
        up["direct_path"].as_str().unwrap()
    ))
    .await
    .unwrap();
    assert_eq!(back.bytes().await.unwrap().to_vec(), vec![7u8; 100]);
    bot.stop().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_admin_input_is_a_clear_error() {
    init_logs();
    let sim = Simulator::start(World::from_json(WORLD).unwrap())
        .await
        .unwrap();
    let admin = sim.admin_url();
    for (body, want) in [
        (serde_json::json!({ "from": READER }), 400),
        (serde_json::json!({ "from": READER, "text": "" }), 400),
        (
            serde_json::json!({ "from": READER, "text": "a", "image": { "data": "", "mimetype": "image/png" } }),
            400,
        ),
        (
            serde_json::json!({ "from": READER, "text": "a", "caption": "c" }),
            400,
        ),
        (
            serde_json::json!({ "from": READER, "image": { "data": "!!", "mimetype": "image/png" } }),
            400,
        ),
        (
            serde_json::json!({ "from": READER, "image": { "data": "AAAA", "mimetype": "png" } }),
            400,
        ),
        (
            serde_json::json!({ "from": READER, "text": "a", "extra": 1 }),
            400,
        ),
        (
            serde_json::json!({ "from": "not a phone", "text": "a" }),
            400,
        ),
        (
            serde_json::json!({ "from": "19999999999", "text": "a" }),
            404,
        ),
        (
            serde_json::json!({ "from": "120363025246125486", "text": "a" }),
            404,
        ),
        (serde_json::json!([1, 2]), 400),
    ] {
        let (status, answer) = post(&admin, body.clone()).await;
        assert_eq!(status, want, "{body} → {answer}");
        assert!(answer["error"].is_string(), "{body} → {answer}");
    }
    let (status, answer) = admin_post(
        &admin,
        "/accounts/19999999999/messages",
        serde_json::json!({ "from": READER, "text": "a" }),
    )
    .await;
    assert_eq!(status, 404, "{answer}");
    let (status, answer) = admin_get(&admin, &format!("/accounts/{PHONE}/messages")).await;
    assert_eq!(status, 400, "{answer}");
    let (status, answer) = admin_get(&admin, &format!("/accounts/{PHONE}/messages?peer=x")).await;
    assert_eq!(status, 400, "{answer}");
    let (status, answer) =
        admin_get(&admin, &format!("/accounts/{PHONE}/messages?peer={READER}")).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer, serde_json::json!({ "data": [], "receipts": [] }));
    sim.shutdown().await;
}

async fn start_on(state: &Path, addr: Option<std::net::SocketAddr>) -> SimulatorHandle {
    let mut b = Simulator::builder(World::from_json(WORLD).unwrap()).state_file(state);
    if let Some(addr) = addr {
        b = b.listen(addr);
    }
    b.start().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_a_restart_on_the_state_file() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let sim = start_on(&state, None).await;
    let addr = sim.addr();
    let mut bot = paired_bot(&sim, &dir.path().join("wa.db"), PHONE).await;
    send_text(&mut bot, READER, "before").await;
    let (status, _) = post(
        &sim.admin_url(),
        serde_json::json!({ "from": READER, "text": "before, from the contact" }),
    )
    .await;
    assert_eq!(status, 200);
    wait_text(&mut bot, "before, from the contact").await;
    wait_log(&sim.admin_url(), READER, "the receipt", |l| {
        l["receipts"].as_array().is_some_and(|r| !r.is_empty())
    })
    .await;

    sim.shutdown().await;
    bot.wait_for(10, "Disconnected", |e| matches!(e, Event::Disconnected(_)))
        .await;
    let sim = start_on(&state, Some(addr)).await;
    bot.wait_connected(30).await;
    // Both directions continue on the saved sessions.
    send_text(&mut bot, READER, "after").await;
    let log = wait_log(
        &sim.admin_url(),
        READER,
        "the message after the restart",
        |l| l["data"].as_array().is_some_and(|d| d.len() == 2),
    )
    .await;
    assert_eq!(log["data"][0]["text"], "before", "{log}");
    assert_eq!(log["data"][1]["text"], "after", "{log}");
    let (status, _) = post(
        &sim.admin_url(),
        serde_json::json!({ "from": READER, "text": "after, from the contact" }),
    )
    .await;
    assert_eq!(status, 200);
    wait_text(&mut bot, "after, from the contact").await;
    bot.stop().await;
    sim.shutdown().await;
}
