//! Messaging (../shared/spec/messaging.md): sending through the durable
//! queue, statuses, receiving, media, reactions, read receipts,
//! idempotency and every refusal, on both adapters (the live one against
//! wa-sim). Contacts write through [`TestApp::contact_writes`]. Waits are
//! on events or conditions (polled with a deadline), never fixed.
//!
//! Fake only: the fake's echo contact (`14155550142` answers what it is
//! sent); the simulator's contacts never answer by themselves, so on the
//! live adapter that contact only reads.

use std::time::Duration;

use base64::Engine;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::receiver::Receiver;
use crate::support::{Got, READER, TestApp, assert_error, eventually, json};

/// A contact of the built-in world (delivers, does not read).
const PLAIN: &str = "14155550199@s.whatsapp.net";
/// A contact of the built-in world known by phone number and LID.
const ALICE: &str = "14155550123@s.whatsapp.net";
const ALICE_LID: &str = "123456789012345@lid";

/// Sending unpaced.
fn unpaced(config: &mut wagate::Config) {
    config.messages.send_rate = 0;
}

/// Polls the event log (`message.*`) until `done` holds for the events
/// seen so far; fails after 30 s.
async fn events_until(app: &TestApp, key: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let page = json(
            app.get("/api/v1/events?types=message.*&limit=1000", key)
                .await,
        )
        .await;
        let events = page["data"].as_array().expect("data").clone();
        if done(&events) {
            return events;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "events never got there: {events:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn of<'a>(events: &'a [Value], kind: &str, id: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["type"] == kind && e["data"]["id"] == id)
        .collect()
}

fn statuses(events: &[Value], id: &str) -> Vec<Value> {
    of(events, "message.status", id)
        .iter()
        .map(|e| e["data"]["status"].clone())
        .collect()
}

async fn send(app: &TestApp, key: &str, session: &str, body: Value) -> reqwest::Response {
    app.post(
        &format!("/api/v1/sessions/{session}/messages"),
        key,
        Some(body),
    )
    .await
}

/// Sends `body`; the 202's message.
async fn accepted(app: &TestApp, key: &str, session: &str, body: Value) -> Value {
    let res = send(app, key, session, body).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let location = res.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    let m = json(res).await;
    assert_eq!(
        location,
        format!(
            "/api/v1/sessions/{session}/messages/{}",
            m["id"].as_str().expect("id")
        )
    );
    m
}

/// Waits until the contact `to` got exactly what `wanted` says.
async fn contact_gets(app: &TestApp, session: &str, to: &str, wanted: &[Got]) {
    eventually(&format!("{to} gets {wanted:?}"), || async {
        (app.contact_got(session, to).await == wanted).then_some(())
    })
    .await;
}

on_both_adapters! {
async fn a_text_is_accepted_pending_then_sent_delivered_and_read(app, unpaced) {
    let key = app.key("acme", "read,send,manage").await;
    let id = app.connected_session(&key).await;
    let m = accepted(
        &app,
        &key,
        &id,
        json!({ "to": PLAIN, "type": "text", "text": "Hello" }),
    )
    .await;
    assert_eq!(m["status"], "pending");
    assert_eq!(
        (m["fromMe"].clone(), m["from"].clone(), m["to"].clone()),
        (
            json!(true),
            json!("15550001111@s.whatsapp.net"),
            json!(PLAIN)
        )
    );
    assert_eq!(m["text"], "Hello");
    let mid = m["id"].as_str().unwrap().to_owned();
    assert!(mid.starts_with("3EB0") && mid.len() == 22, "{mid}");

    let events = events_until(&app, &key, |e| {
        statuses(e, &mid).contains(&json!("delivered"))
    })
    .await;
    let sent = of(&events, "message.sent", &mid);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["data"]["source"], "api");
    assert_eq!(sent[0]["data"]["status"], "sent");
    assert_eq!(sent[0]["sessionId"], id.as_str());
    assert_eq!(statuses(&events, &mid), vec![json!("sent"), json!("delivered")]);
    contact_gets(&app, &id, PLAIN, &[Got::Message(mid.clone())]).await;

    let got = json(
        app.get(&format!("/api/v1/sessions/{id}/messages/{mid}"), &key)
            .await,
    )
    .await;
    assert_eq!(got["status"], "delivered");
    assert!(got["statusAt"]["sent"].is_string() && got["statusAt"]["delivered"].is_string());
    assert_eq!(got["statusAt"]["read"], Value::Null);

    // A contact that reads: → read.
    let second = accepted(
        &app,
        &key,
        &id,
        json!({ "to": READER, "type": "text", "text": "second" }),
    )
    .await;
    let sid = second["id"].as_str().unwrap().to_owned();
    let events = events_until(&app, &key, |e| statuses(e, &sid).contains(&json!("read"))).await;
    assert_eq!(
        statuses(&events, &sid),
        vec![json!("sent"), json!("delivered"), json!("read")]
    );
    let got = json(
        app.get(&format!("/api/v1/sessions/{id}/messages/{sid}"), &key)
            .await,
    )
    .await;
    assert_eq!(got["status"], "read");
    assert!(got["statusAt"]["read"].is_string());

    // Listed, newest first, filtered by chat, paged.
    let all = json(
        app.get(&format!("/api/v1/sessions/{id}/messages"), &key)
            .await,
    )
    .await;
    assert!(all["data"].as_array().unwrap().len() >= 2);
    let plain = json(
        app.get(
            &format!("/api/v1/sessions/{id}/messages?chat={PLAIN}"),
            &key,
        )
        .await,
    )
    .await;
    assert_eq!(plain["data"].as_array().unwrap().len(), 1);
    assert_eq!(plain["data"][0]["id"], mid.as_str());
    let page = json(
        app.get(&format!("/api/v1/sessions/{id}/messages?limit=1"), &key)
            .await,
    )
    .await;
    let cursor = page["nextCursor"].as_str().expect("a next page").to_owned();
    let next = json(
        app.get(
            &format!("/api/v1/sessions/{id}/messages?limit=1&cursor={cursor}"),
            &key,
        )
        .await,
    )
    .await;
    assert_ne!(next["data"][0]["id"], page["data"][0]["id"]);
    let e = assert_error(
        app.get(&format!("/api/v1/sessions/{id}/messages/3EB0NOPE"), &key)
            .await,
        404,
        "not_found",
    )
    .await;
    assert_eq!(e["message"], "message not found");
}

async fn a_contact_message_arrives_once_as_an_event_and_a_webhook(app, unpaced) {
    let key = app.key("acme", "read,send,manage,admin").await;
    let mut receiver = Receiver::start().await;
    let res = app
        .post(
            "/api/v1/webhooks",
            &key,
            Some(json!({ "url": receiver.url("/in"), "events": ["message.received"] })),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let id = app.connected_session(&key).await;

    let rid = app.contact_writes(&id, ALICE, "hi there").await;
    let events = events_until(&app, &key, |e| !of(e, "message.received", &rid).is_empty()).await;
    let r = &of(&events, "message.received", &rid)[0]["data"];
    assert_eq!(
        (r["fromMe"].clone(), r["from"].clone(), r["chat"].clone()),
        (json!(false), json!(ALICE), json!(ALICE)),
        "{r}"
    );
    assert_eq!((r["fromPn"].clone(), r["fromLid"].clone()), (json!(ALICE), json!(ALICE_LID)));
    assert_eq!(r["type"], "text");
    assert_eq!(r["text"], "hi there");
    assert_eq!(r["status"], "received");
    assert_eq!(r["replyTo"], Value::Null);
    // Once: a later message arrives, the first still has one event.
    let later = app.contact_writes(&id, ALICE, "again").await;
    let events = events_until(&app, &key, |e| !of(e, "message.received", &later).is_empty()).await;
    assert_eq!(of(&events, "message.received", &rid).len(), 1);
    assert_eq!(of(&events, "message.received", &later).len(), 1);
    assert_eq!(
        events.iter().filter(|e| e["type"] == "message.received").count(),
        2
    );

    let hit = receiver
        .next_where("/in", |e| e["data"]["id"] == rid.as_str())
        .await;
    assert_eq!(hit.event()["type"], "message.received");
    assert_eq!(hit.event()["data"]["text"], "hi there");

    // Read receipts for it: the contact gets them, the message is read.
    let res = app
        .post(
            &format!("/api/v1/sessions/{id}/chats/{ALICE}/read"),
            &key,
            Some(json!({ "messageIds": [rid] })),
        )
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let got = json(
        app.get(&format!("/api/v1/sessions/{id}/messages/{rid}"), &key)
            .await,
    )
    .await;
    assert_eq!(got["status"], "read");
    eventually("the contact gets the read receipt", || async {
        app.read_receipts_to(&id, ALICE)
            .await
            .contains(&rid)
            .then_some(())
    })
    .await;

    // A reaction to it, then its removal: the contact gets both.
    for emoji in ["👍", ""] {
        let res = app
            .post(
                &format!("/api/v1/sessions/{id}/messages/{rid}/reaction"),
                &key,
                Some(json!({ "emoji": emoji })),
            )
            .await;
        assert_eq!(res.status(), StatusCode::ACCEPTED);
    }
    contact_gets(
        &app,
        &id,
        ALICE,
        &[Got::Reaction("👍".into()), Got::Reaction(String::new())],
    )
    .await;
    assert_error(
        app.post(
            &format!("/api/v1/sessions/{id}/messages/3EB0NOPE/reaction"),
            &key,
            Some(json!({ "emoji": "👍" })),
        )
        .await,
        404,
        "not_found",
    )
    .await;
    let e = assert_error(
        app.post(
            &format!("/api/v1/sessions/{id}/chats/{ALICE}/read"),
            &key,
            Some(json!({ "messageIds": [] })),
        )
        .await,
        400,
        "invalid_argument",
    )
    .await;
    assert_eq!(e["details"]["field"], "messageIds");
}

async fn media_is_sent_and_a_received_image_downloads(app, unpaced) {
    let key = app.key("acme", "read,send,manage").await;
    let id = app.connected_session(&key).await;
    let bytes: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    let data = base64::engine::general_purpose::STANDARD.encode(&bytes);
    let m = accepted(
        &app,
        &key,
        &id,
        json!({ "to": PLAIN, "type": "image", "caption": "look", "media": { "data": data, "mimetype": "image/png" } }),
    )
    .await;
    assert_eq!(m["media"]["size"], 5000);
    assert_eq!(m["media"]["mimetype"], "image/png");
    assert_eq!(m["caption"], "look");
    let mid = m["id"].as_str().unwrap().to_owned();
    events_until(&app, &key, |e| statuses(e, &mid).contains(&json!("delivered"))).await;
    contact_gets(&app, &id, PLAIN, &[Got::Message(mid.clone())]).await;
    // The gateway does not keep the bytes once sent.
    let e = assert_error(
        app.get(&format!("/api/v1/sessions/{id}/messages/{mid}/media"), &key)
            .await,
        404,
        "not_found",
    )
    .await;
    assert_eq!(e["message"], "media no longer available");

    // The contact sends the same picture back: it downloads.
    let rid = app
        .contact_sends_image(&id, PLAIN, &bytes, "image/png", "back")
        .await;
    let events = events_until(&app, &key, |e| !of(e, "message.received", &rid).is_empty()).await;
    let r = &of(&events, "message.received", &rid)[0]["data"];
    assert_eq!(r["type"], "image");
    assert_eq!(r["caption"], "back");
    assert_eq!(r["media"]["size"], 5000);
    assert_eq!(r["media"]["mimetype"], "image/png");
    assert_eq!(r["media"]["sha256"], m["media"]["sha256"]);
    let res = app
        .get(&format!("/api/v1/sessions/{id}/messages/{rid}/media"), &key)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "image/png");
    assert_eq!(res.bytes().await.unwrap().to_vec(), bytes);

    // A text has no media.
    let t = accepted(
        &app,
        &key,
        &id,
        json!({ "to": PLAIN, "type": "text", "text": "x" }),
    )
    .await;
    let tid = t["id"].as_str().unwrap();
    let e = assert_error(
        app.get(&format!("/api/v1/sessions/{id}/messages/{tid}/media"), &key)
            .await,
        404,
        "not_found",
    )
    .await;
    assert_eq!(e["message"], "message has no media");
}

async fn an_idempotency_key_returns_the_first_answer_and_sends_nothing_new(app, unpaced) {
    let key = app.key("acme", "read,send,manage").await;
    let id = app.connected_session(&key).await;
    let body = json!({ "to": PLAIN, "type": "text", "text": "once" });
    let post = |idempotency_key: &'static str, body: &Value| {
        app.req(
            reqwest::Method::POST,
            &format!("/api/v1/sessions/{id}/messages"),
            &key,
        )
        .header("Idempotency-Key", idempotency_key)
        .json(body)
        .send()
    };
    let first = post("order-42", &body).await.unwrap();
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let first = json(first).await;
    let again = post("order-42", &body).await.unwrap();
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(json(again).await["id"], first["id"]);
    let other = post(
        "order-42",
        &json!({ "to": PLAIN, "type": "text", "text": "twice" }),
    )
    .await
    .unwrap();
    assert_error(other, 409, "conflict").await;
    let bad = post("", &body).await.unwrap();
    assert_eq!(
        assert_error(bad, 400, "invalid_argument").await["details"]["field"],
        "Idempotency-Key"
    );
    let mid = first["id"].as_str().unwrap().to_owned();
    let events = events_until(&app, &key, |e| statuses(e, &mid).len() >= 2).await;
    assert_eq!(
        events
            .iter()
            .filter(|e| e["type"] == "message.sent")
            .count(),
        1
    );
    contact_gets(&app, &id, PLAIN, &[Got::Message(mid)]).await;
    let list = json(
        app.get(&format!("/api/v1/sessions/{id}/messages"), &key)
            .await,
    )
    .await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
}

async fn a_number_without_whatsapp_fails_the_message(app, unpaced) {
    let key = app.key("acme", "read,send,manage").await;
    let id = app.connected_session(&key).await;
    // A number the world does not know (the simulator's usync says "out").
    let nobody = "14155550177@s.whatsapp.net";
    let m = accepted(
        &app,
        &key,
        &id,
        json!({ "to": nobody, "type": "text", "text": "hi" }),
    )
    .await;
    let mid = m["id"].as_str().unwrap().to_owned();
    let events = events_until(&app, &key, |e| !of(e, "message.status", &mid).is_empty()).await;
    let s = of(&events, "message.status", &mid)[0];
    assert_eq!(s["data"]["status"], "failed");
    assert_eq!(s["data"]["error"]["code"], "not_on_whatsapp");
    assert!(of(&events, "message.sent", &mid).is_empty());
    let got = json(
        app.get(&format!("/api/v1/sessions/{id}/messages/{mid}"), &key)
            .await,
    )
    .await;
    assert_eq!(got["status"], "failed");
    assert_eq!(got["error"]["code"], "not_on_whatsapp");
    assert!(app.contact_got(&id, nobody).await.is_empty());
}

async fn refusals_name_what_is_wrong(app, |c| {
    c.messages.send_rate = 0;
    c.messages.max_media_bytes = 1024;
}) {
    let key = app.key("acme", "read,send,manage").await;
    let id = app.connected_session(&key).await;
    let text = |to: &str| json!({ "to": to, "type": "text", "text": "hi" });

    let e = assert_error(
        send(&app, &key, &id, text("120363144038483540@newsletter")).await,
        400,
        "invalid_argument",
    )
    .await;
    assert_eq!(e["details"]["field"], "to");
    let big = base64::engine::general_purpose::STANDARD.encode(vec![7u8; 1025]);
    let e = assert_error(
        send(&app, &key, &id, json!({ "to": PLAIN, "type": "document", "media": { "data": big, "mimetype": "application/pdf", "filename": "a.pdf" } })).await,
        413,
        "payload_too_large",
    )
    .await;
    assert_eq!(e["details"]["limit"], 1024);
    // Far over the limit: refused before the JSON is read.
    let huge = "A".repeat(3 * 1024 * 1024);
    assert_error(
        send(&app, &key, &id, json!({ "to": PLAIN, "type": "image", "media": { "data": huge, "mimetype": "image/png" } })).await,
        413,
        "payload_too_large",
    )
    .await;
    // A media URL is held to the SSRF rule (private targets are allowed in
    // tests, so: a URL that is not http).
    let e = assert_error(
        send(
            &app,
            &key,
            &id,
            json!({ "to": PLAIN, "type": "image", "media": { "url": "file:///etc/passwd" } }),
        )
        .await,
        400,
        "invalid_argument",
    )
    .await;
    assert_eq!(e["details"]["field"], "media.url");

    // Not connected: 501 with the status.
    let offline = app.create_session(&key).await;
    let e = assert_error(
        send(&app, &key, &offline, text(PLAIN)).await,
        501,
        "not_implemented",
    )
    .await;
    assert_eq!(e["details"]["status"], "new");
    // Another organization's session does not exist.
    let theirs = app.key("other", "read,send").await;
    assert_error(
        send(&app, &theirs, &id, text(PLAIN)).await,
        404,
        "not_found",
    )
    .await;
    assert_error(
        app.get(&format!("/api/v1/sessions/{id}/messages"), &theirs)
            .await,
        404,
        "not_found",
    )
    .await;
    // Capabilities: send to send, read to read.
    let reader = app.key("acme", "read").await;
    let e = assert_error(
        send(&app, &reader, &id, text(PLAIN)).await,
        403,
        "forbidden",
    )
    .await;
    assert_eq!(e["details"]["required"], "send");
    let sender = app.key("acme", "send").await;
    let e = assert_error(
        app.get(&format!("/api/v1/sessions/{id}/messages"), &sender)
            .await,
        403,
        "forbidden",
    )
    .await;
    assert_eq!(e["details"]["required"], "read");
    // None of it reached WhatsApp.
    assert!(app.contact_got(&id, PLAIN).await.is_empty());
}

async fn a_full_queue_is_429_with_retry_after(app, |c| {
    // One message a minute, two may wait.
    c.messages.send_rate = 1;
    c.messages.max_queue = 2;
}) {
    let key = app.key("acme", "read,send,manage").await;
    let id = app.connected_session(&key).await;
    let text = json!({ "to": PLAIN, "type": "text", "text": "hi" });
    let first = accepted(&app, &key, &id, text.clone()).await;
    let fid = first["id"].as_str().unwrap().to_owned();
    // The first goes at once; the next ones wait for the pace.
    events_until(&app, &key, |e| !of(e, "message.sent", &fid).is_empty()).await;
    accepted(&app, &key, &id, text.clone()).await;
    accepted(&app, &key, &id, text.clone()).await;
    let res = send(&app, &key, &id, text).await;
    assert!(res.headers().contains_key("retry-after"), "{res:?}");
    assert_error(res, 429, "rate_limited").await;
    assert_eq!(app.contact_got(&id, PLAIN).await, vec![Got::Message(fid)]);
}
}

/// Fake only: the fake's echo contact answers what it is sent (quoting it)
/// and reads it; the simulator's contacts never answer by themselves.
#[tokio::test]
async fn the_fake_echo_contact_answers_once_and_reads() {
    let app = TestApp::spawn_tuned(unpaced).await;
    let key = app.key("acme", "read,send,manage").await;
    let id = app.connected_session(&key).await;
    let m = accepted(
        &app,
        &key,
        &id,
        json!({ "to": READER, "type": "text", "text": "ping" }),
    )
    .await;
    let mid = m["id"].as_str().unwrap().to_owned();
    let events = events_until(&app, &key, |e| {
        statuses(e, &mid).contains(&json!("read"))
            && e.iter().any(|e| e["type"] == "message.received")
    })
    .await;
    let received: Vec<_> = events
        .iter()
        .filter(|e| e["type"] == "message.received")
        .collect();
    assert_eq!(received.len(), 1);
    let r = &received[0]["data"];
    assert_eq!(
        (r["fromMe"].clone(), r["from"].clone(), r["chat"].clone()),
        (json!(false), json!(READER), json!(READER))
    );
    assert_eq!(r["text"], "You said: ping");
    assert_eq!(r["replyTo"], mid.as_str());
}

/// The built-in world's contact whose calls time out.
const SILENT: &str = "14155550100@s.whatsapp.net";

/// The fake's contact that refuses everything for good (WhatsApp's 403).
const REFUSING: &str = "14155550143@s.whatsapp.net";

/// The new user's first try (issue 18): one message to the contact that
/// never answers, then one to the echo contact. The second goes at the
/// session's pace (two a second here), not after the first gives up; the
/// first keeps trying, still `pending`.
#[tokio::test]
async fn a_contact_that_does_not_answer_holds_no_other_chat() {
    let app = TestApp::spawn_tuned(|c| c.messages.send_rate = 120).await;
    let key = app.key("acme", "read,send,manage").await;
    let id = app.connected_session(&key).await;
    let text = |to: &str| json!({ "to": to, "type": "text", "text": "hello" });
    let stuck = accepted(&app, &key, &id, text(SILENT)).await;
    let sid = stuck["id"].as_str().unwrap().to_owned();
    let echo = accepted(&app, &key, &id, text(READER)).await;
    let eid = echo["id"].as_str().unwrap().to_owned();
    events_until(&app, &key, |e| statuses(e, &eid).contains(&json!("read"))).await;
    let got = json(
        app.get(&format!("/api/v1/sessions/{id}/messages/{sid}"), &key)
            .await,
    )
    .await;
    assert_eq!(got["status"], "pending");
    assert_eq!(app.contact_got(&id, READER).await, vec![Got::Message(eid)]);
}

/// A refusal for good (WhatsApp's 4xx, here the fake's `fail: refused`
/// contact) fails the message at once, with WhatsApp's code, and the
/// chat's next message is tried in its turn.
#[tokio::test]
async fn a_refusal_for_good_fails_the_message_at_once() {
    let app = TestApp::spawn_tuned(unpaced).await;
    let key = app.key("acme", "read,send,manage").await;
    let id = app.connected_session(&key).await;
    let text = json!({ "to": REFUSING, "type": "text", "text": "hello" });
    let first = accepted(&app, &key, &id, text.clone()).await;
    let second = accepted(&app, &key, &id, text).await;
    let (fid, sid) = (
        first["id"].as_str().unwrap().to_owned(),
        second["id"].as_str().unwrap().to_owned(),
    );
    let events = events_until(&app, &key, |e| {
        !of(e, "message.status", &fid).is_empty() && !of(e, "message.status", &sid).is_empty()
    })
    .await;
    for mid in [&fid, &sid] {
        let s = of(&events, "message.status", mid)[0];
        assert_eq!(s["data"]["status"], "failed");
        assert_eq!(s["data"]["error"]["code"], "rejected");
        assert_eq!(s["data"]["error"]["details"]["nackCode"], 403);
    }
    // Media the media server refuses fails as such.
    let image = base64::engine::general_purpose::STANDARD.encode([1u8, 2, 3]);
    let m = accepted(
        &app,
        &key,
        &id,
        json!({ "to": "14155550144@s.whatsapp.net", "type": "image",
                "media": { "data": image, "mimetype": "image/png" } }),
    )
    .await;
    let mid = m["id"].as_str().unwrap().to_owned();
    let events = events_until(&app, &key, |e| !of(e, "message.status", &mid).is_empty()).await;
    let s = of(&events, "message.status", &mid)[0];
    assert_eq!(s["data"]["status"], "failed");
    assert_eq!(s["data"]["error"]["code"], "media_rejected");
}

/// A client retrying an accepted request while the session is briefly
/// disconnected gets the first answer, not 501.
#[tokio::test]
async fn an_idempotent_retry_answers_as_the_first_time_while_disconnected() {
    let app = TestApp::spawn_tuned(unpaced).await;
    let key = app.key("acme", "read,send,manage").await;
    let id = app.connected_session(&key).await;
    let body = json!({ "to": PLAIN, "type": "text", "text": "once" });
    let post = || {
        app.req(
            reqwest::Method::POST,
            &format!("/api/v1/sessions/{id}/messages"),
            &key,
        )
        .header("Idempotency-Key", "order-7")
        .json(&body)
        .send()
    };
    let first = post().await.unwrap();
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let first = json(first).await;
    let res = app
        .post(&format!("/api/v1/sessions/{id}/disconnect"), &key, None)
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let again = post().await.unwrap();
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(json(again).await["id"], first["id"]);
    // A new request still needs the session connected.
    let other = send(
        &app,
        &key,
        &id,
        json!({ "to": PLAIN, "type": "text", "text": "new" }),
    )
    .await;
    assert_error(other, 501, "not_implemented").await;
}
