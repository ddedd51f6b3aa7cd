//! The rest of a conversation (issue 21) on the fake adapter: editing and
//! deleting for everyone (the account's own messages through the API, a
//! contact's arriving as events), locations and contact cards both ways.
//! A contact's side is driven through the fake's inbound fixtures
//! (`FakeWhatsApp::edit_from`, `revoke_from`, `deliver_from`); the echo
//! contact (`14155550142`) answers a location or a card with the same.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use wagate_domain::{Jid, MessageId, SessionId};
use wagate_whatsapp_port::{FakeAction, OutgoingContent};

use crate::support::{READER, TestApp, assert_error, eventually, json};

const ALICE: &str = "14155550123@s.whatsapp.net";
const PLAIN: &str = "14155550199@s.whatsapp.net";
const VCARD: &str = "BEGIN:VCARD\nVERSION:3.0\nFN:Ana Lima\nTEL;type=CELL;waid=14155550123:+1 415 555 0123\nEND:VCARD";

fn unpaced(config: &mut wagate::Config) {
    config.messages.send_rate = 0;
}

/// The session's `message.*` events of `kind`, once `done` holds for them.
async fn events_of(
    app: &TestApp,
    key: &str,
    kind: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    eventually(&format!("{kind} events"), || async {
        let page = json(
            app.get(&format!("/api/v1/events?types={kind}&limit=1000"), key)
                .await,
        )
        .await;
        let events = page["data"].as_array().expect("data").clone();
        done(&events).then_some(events)
    })
    .await
}

async fn patch(app: &TestApp, key: &str, path: &str, body: Value) -> reqwest::Response {
    app.req(Method::PATCH, path, key)
        .json(&body)
        .send()
        .await
        .expect("request")
}

/// Sends `body` and waits until WhatsApp's server has it (`sent` or
/// beyond); its id.
async fn sent(app: &TestApp, key: &str, session: &str, body: Value) -> String {
    let res = app
        .post(
            &format!("/api/v1/sessions/{session}/messages"),
            key,
            Some(body),
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let id = json(res).await["id"].as_str().unwrap().to_owned();
    eventually("the message is sent", || async {
        let m = json(
            app.get(&format!("/api/v1/sessions/{session}/messages/{id}"), key)
                .await,
        )
        .await;
        (m["status"] != "pending").then_some(())
    })
    .await;
    id
}

fn ids(session: &str) -> SessionId {
    SessionId::parse(session).unwrap()
}

#[tokio::test]
async fn own_messages_are_edited_and_deleted_for_everyone() {
    let app = TestApp::spawn_tuned(unpaced).await;
    let fake = app.fake.clone().unwrap();
    let key = app.key("acme", "read,send,manage").await;
    let id = app.connected_session(&key).await;
    let base = format!("/api/v1/sessions/{id}/messages");
    let mid = sent(
        &app,
        &key,
        &id,
        json!({ "to": PLAIN, "type": "text", "text": "helo" }),
    )
    .await;

    // Edited: WhatsApp gets it, the stored message shows it, one event.
    let res = patch(
        &app,
        &key,
        &format!("{base}/{mid}"),
        json!({ "text": "hello" }),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let m = json(res).await;
    assert_eq!(
        (m["text"].as_str(), m["type"].as_str()),
        (Some("hello"), Some("text"))
    );
    assert!(m["editedAt"].is_string());
    let got = json(app.get(&format!("{base}/{mid}"), &key).await).await;
    assert_eq!(got["text"], "hello");
    assert!(fake.actions(&ids(&id)).contains(&FakeAction::Edited {
        chat: Jid::parse(PLAIN).unwrap(),
        target: MessageId::parse(&mid).unwrap(),
        text: "hello".into(),
    }));
    let edits = events_of(&app, &key, "message.edited", |e| !e.is_empty()).await;
    assert_eq!(edits.len(), 1);
    assert_eq!(edits[0]["data"]["message"]["id"], mid.as_str());
    assert_eq!(edits[0]["data"]["message"]["text"], "hello");
    assert_eq!(edits[0]["data"]["previousText"], "helo");

    // What cannot be edited says why.
    let e = assert_error(
        patch(
            &app,
            &key,
            &format!("{base}/{mid}"),
            json!({ "caption": "x" }),
        )
        .await,
        400,
        "invalid_argument",
    )
    .await;
    assert_eq!(e["details"]["field"], "caption");
    let e = assert_error(
        patch(&app, &key, &format!("{base}/{mid}"), json!({})).await,
        400,
        "invalid_argument",
    )
    .await;
    assert_eq!(e["details"]["field"], "text");
    assert_error(
        patch(
            &app,
            &key,
            &format!("{base}/3EB0NOPE"),
            json!({ "text": "x" }),
        )
        .await,
        404,
        "not_found",
    )
    .await;
    let theirs = app.contact_writes(&id, ALICE, "not yours").await;
    let e = assert_error(
        patch(
            &app,
            &key,
            &format!("{base}/{theirs}"),
            json!({ "text": "mine now" }),
        )
        .await,
        409,
        "conflict",
    )
    .await;
    assert_eq!(e["details"]["reason"], "not_own_message");

    // Deleted for everyone: id and times stay, the content goes.
    let res = app.delete(&format!("{base}/{mid}"), &key).await;
    assert_eq!(res.status(), StatusCode::OK);
    let m = json(res).await;
    assert_eq!(
        (m["id"].as_str(), m["type"].as_str()),
        (Some(mid.as_str()), Some("revoked"))
    );
    assert_eq!(
        (m["text"].clone(), m["status"].is_string()),
        (Value::Null, true)
    );
    assert_eq!(m["timestamp"], got["timestamp"]);
    assert!(fake.actions(&ids(&id)).contains(&FakeAction::Revoked {
        chat: Jid::parse(PLAIN).unwrap(),
        target: MessageId::parse(&mid).unwrap(),
    }));
    let revokes = events_of(&app, &key, "message.revoked", |e| !e.is_empty()).await;
    assert_eq!(revokes.len(), 1);
    assert_eq!(revokes[0]["data"]["message"]["type"], "revoked");
    let e = assert_error(
        app.delete(&format!("{base}/{mid}"), &key).await,
        409,
        "conflict",
    )
    .await;
    assert_eq!(e["details"]["reason"], "revoked");
    let e = assert_error(
        patch(
            &app,
            &key,
            &format!("{base}/{mid}"),
            json!({ "text": "back" }),
        )
        .await,
        409,
        "conflict",
    )
    .await;
    assert_eq!(e["details"]["reason"], "revoked");

    // Without `send`: 403 before anything is looked up.
    let reader = app.key("acme", "read").await;
    assert_error(
        app.delete(&format!("{base}/{theirs}"), &reader).await,
        403,
        "forbidden",
    )
    .await;
    // Another organization: the message does not exist.
    let other = app.key("other", "read,send,manage").await;
    assert_error(
        app.delete(&format!("{base}/{theirs}"), &other).await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn a_contact_s_edit_and_deletion_change_the_stored_message_once() {
    let app = TestApp::spawn_tuned(unpaced).await;
    let fake = app.fake.clone().unwrap();
    let key = app.key("acme", "read,send,manage").await;
    let id = app.connected_session(&key).await;
    let base = format!("/api/v1/sessions/{id}/messages");
    let alice = Jid::parse(ALICE).unwrap();
    let first = app.contact_writes(&id, ALICE, "see you at 5").await;
    let target = MessageId::parse(&first).unwrap();

    fake.edit_from(&ids(&id), &alice, &target, "see you at 6")
        .await
        .unwrap();
    let edits = events_of(&app, &key, "message.edited", |e| !e.is_empty()).await;
    assert_eq!(edits.len(), 1);
    let data = &edits[0]["data"];
    assert_eq!(
        (
            data["message"]["id"].as_str(),
            data["message"]["text"].as_str(),
            data["previousText"].as_str()
        ),
        (
            Some(first.as_str()),
            Some("see you at 6"),
            Some("see you at 5")
        )
    );
    assert_eq!(data["message"]["fromMe"], false);
    let m = json(app.get(&format!("{base}/{first}"), &key).await).await;
    assert_eq!(m["text"], "see you at 6");
    assert!(m["editedAt"].is_string());

    // Offline, a deletion waits; on reconnect it arrives, once.
    let res = app
        .post(&format!("/api/v1/sessions/{id}/disconnect"), &key, None)
        .await;
    assert!(res.status().is_success());
    fake.revoke_from(&ids(&id), &alice, &target).await.unwrap();
    assert!(
        events_of(&app, &key, "message.revoked", |_| true)
            .await
            .is_empty()
    );
    let res = app
        .post(&format!("/api/v1/sessions/{id}/connect"), &key, None)
        .await;
    assert!(res.status().is_success());
    let revokes = events_of(&app, &key, "message.revoked", |e| !e.is_empty()).await;
    assert_eq!(revokes.len(), 1);
    let m = json(app.get(&format!("{base}/{first}"), &key).await).await;
    assert_eq!(
        (m["type"].as_str(), m["text"].clone()),
        (Some("revoked"), Value::Null)
    );
    assert_eq!(m["status"], "received");

    // A change naming a message never seen changes nothing, no event.
    fake.revoke_from(&ids(&id), &alice, &MessageId::parse("3EB0UNSEEN").unwrap())
        .await
        .unwrap();
    let later = app.contact_writes(&id, ALICE, "after").await;
    events_of(&app, &key, "message.received", |e| {
        e.iter().any(|e| e["data"]["id"] == later.as_str())
    })
    .await;
    assert_eq!(
        events_of(&app, &key, "message.revoked", |_| true)
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn locations_and_contact_cards_go_both_ways() {
    let app = TestApp::spawn_tuned(unpaced).await;
    let fake = app.fake.clone().unwrap();
    let key = app.key("acme", "read,send,manage").await;
    let id = app.connected_session(&key).await;
    let base = format!("/api/v1/sessions/{id}/messages");
    let place = json!({ "latitude": 52.520008, "longitude": 13.404954, "name": "Head office", "address": "Alexanderplatz 1" });

    // To the echo contact, which answers with the same.
    let loc = sent(
        &app,
        &key,
        &id,
        json!({ "to": READER, "type": "location", "location": place }),
    )
    .await;
    let m = json(app.get(&format!("{base}/{loc}"), &key).await).await;
    assert_eq!(m["type"], "location");
    assert_eq!(m["location"], place);
    assert_eq!(
        (m["text"].clone(), m["contacts"].clone()),
        (Value::Null, Value::Null)
    );
    let cards = sent(
        &app,
        &key,
        &id,
        json!({ "to": READER, "type": "contacts", "contacts": [{ "displayName": "Ana Lima", "vcard": VCARD }] }),
    )
    .await;
    let sent_ids: Vec<_> = fake
        .actions(&ids(&id))
        .into_iter()
        .filter_map(|a| match a {
            FakeAction::Sent { id, .. } => Some(id.as_str().to_owned()),
            _ => None,
        })
        .collect();
    assert_eq!(sent_ids, [loc.clone(), cards.clone()]);
    let received = events_of(&app, &key, "message.received", |e| e.len() >= 2).await;
    let answer = |reply_to: &str| {
        received
            .iter()
            .find(|e| e["data"]["replyTo"] == reply_to)
            .map(|e| e["data"].clone())
            .expect("an answer")
    };
    assert_eq!(answer(&loc)["type"], "location");
    assert_eq!(answer(&loc)["location"], place);
    assert_eq!(answer(&cards)["type"], "contacts");
    assert_eq!(
        answer(&cards)["contacts"],
        json!([{ "displayName": "Ana Lima", "vcard": VCARD }])
    );

    // A contact sends a location of its own.
    let there = wagate_domain::Location::new(-33.8568, 151.2153, None, None).unwrap();
    let mid = fake
        .deliver_from(
            &ids(&id),
            &Jid::parse(ALICE).unwrap(),
            OutgoingContent::Rich(wagate_domain::RichContent::Location(there)),
        )
        .await
        .unwrap();
    let m = json(app.get(&format!("{base}/{mid}"), &key).await).await;
    assert_eq!(
        (
            m["type"].as_str(),
            m["location"]["latitude"].as_f64(),
            m["location"]["name"].clone()
        ),
        (Some("location"), Some(-33.8568), Value::Null)
    );

    // Bad bodies name their field; nothing is stored.
    for (body, field) in [
        (json!({ "to": PLAIN, "type": "location" }), "location"),
        (
            json!({ "to": PLAIN, "type": "location", "location": { "latitude": 91, "longitude": 0 } }),
            "location.latitude",
        ),
        (
            json!({ "to": PLAIN, "type": "location", "location": place, "text": "hi" }),
            "text",
        ),
        (
            json!({ "to": PLAIN, "type": "text", "text": "hi", "location": place }),
            "location",
        ),
        (
            json!({ "to": PLAIN, "type": "contacts", "contacts": [] }),
            "contacts",
        ),
        (
            json!({ "to": PLAIN, "type": "contacts", "contacts": [{ "displayName": "X", "vcard": "FN:X" }] }),
            "contacts.vcard",
        ),
        (json!({ "to": PLAIN, "type": "revoked" }), "type"),
    ] {
        let e = assert_error(
            app.post(&base, &key, Some(body.clone())).await,
            400,
            "invalid_argument",
        )
        .await;
        assert_eq!(e["details"]["field"], field, "{body}");
    }
    // A location cannot be edited.
    let e = assert_error(
        patch(&app, &key, &format!("{base}/{loc}"), json!({ "text": "x" })).await,
        409,
        "conflict",
    )
    .await;
    assert_eq!(e["details"]["reason"], "not_editable");
}

#[tokio::test]
async fn mentions_go_out_and_received_ones_are_listed() {
    let app = TestApp::spawn_tuned(unpaced).await;
    let key = app.key("acme", "read,send,manage").await;
    let id = app.connected_session(&key).await;
    let base = format!("/api/v1/sessions/{id}/messages");
    let lid = "123456789012345@lid";

    // The echo contact answers mentioning whom it was told about.
    let mid = sent(
        &app,
        &key,
        &id,
        json!({ "to": READER, "type": "text", "text": "ask @14155550123", "mentions": [ALICE, lid] }),
    )
    .await;
    let m = json(app.get(&format!("{base}/{mid}"), &key).await).await;
    assert_eq!(m["mentions"], json!([ALICE, lid]));
    let received = events_of(&app, &key, "message.received", |e| !e.is_empty()).await;
    assert_eq!(received[0]["data"]["replyTo"], mid.as_str());
    assert_eq!(received[0]["data"]["mentions"], json!([ALICE, lid]));
    // A caption mentions too; a message without any lists none.
    let data = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b"png");
    let image = sent(
        &app,
        &key,
        &id,
        json!({ "to": PLAIN, "type": "image", "caption": "@14155550123", "mentions": [ALICE],
                "media": { "data": data, "mimetype": "image/png" } }),
    )
    .await;
    let m = json(app.get(&format!("{base}/{image}"), &key).await).await;
    assert_eq!(m["mentions"], json!([ALICE]));
    let plain = sent(
        &app,
        &key,
        &id,
        json!({ "to": PLAIN, "type": "text", "text": "hi" }),
    )
    .await;
    let m = json(app.get(&format!("{base}/{plain}"), &key).await).await;
    assert_eq!(m["mentions"], json!([]));

    let many: Vec<String> = (0..51)
        .map(|n| format!("1415555{n:04}@s.whatsapp.net"))
        .collect();
    for body in [
        json!({ "to": PLAIN, "type": "text", "text": "x", "mentions": ["120363025246125486@g.us"] }),
        json!({ "to": PLAIN, "type": "text", "text": "x", "mentions": ["nope"] }),
        json!({ "to": PLAIN, "type": "text", "text": "x", "mentions": many }),
        json!({ "to": PLAIN, "type": "location", "location": { "latitude": 1, "longitude": 2 }, "mentions": [ALICE] }),
    ] {
        let e = assert_error(
            app.post(&base, &key, Some(body.clone())).await,
            400,
            "invalid_argument",
        )
        .await;
        assert_eq!(e["details"]["field"], "mentions", "{body}");
    }
}

/// The live adapter against wa-sim: an edit, a deletion for everyone and a
/// location reach the simulator's contact (which logs an edit or a
/// deletion under the id of the message it changes).
#[tokio::test]
async fn on_the_live_adapter_edits_deletions_and_locations_reach_the_contact() {
    let app = TestApp::spawn_live_tuned(unpaced).await;
    let sim = app.sim.clone().unwrap();
    let key = app.key("acme", "read,send,manage").await;
    let id = app.connected_session(&key).await;
    let base = format!("/api/v1/sessions/{id}/messages");
    let mid = sent(
        &app,
        &key,
        &id,
        json!({ "to": PLAIN, "type": "text", "text": "helo" }),
    )
    .await;
    let res = patch(
        &app,
        &key,
        &format!("{base}/{mid}"),
        json!({ "text": "hello" }),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app.delete(&format!("{base}/{mid}"), &key).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(json(res).await["type"], "revoked");
    let place =
        json!({ "latitude": 52.52, "longitude": 13.405, "name": "Head office", "address": null });
    let loc = sent(
        &app,
        &key,
        &id,
        json!({ "to": PLAIN, "type": "location", "location": place }),
    )
    .await;
    let wanted = [
        (mid.clone(), "text", Some("helo")),
        (mid.clone(), "edit", Some("hello")),
        (mid.clone(), "revoke", None),
        (loc.clone(), "location", Some("Head office")),
    ];
    eventually(
        "the contact gets the edit, the deletion and the location",
        || async {
            let chat = sim
                .admin()
                .messages(crate::support::FAKE_PHONE, "14155550199")
                .expect("the simulator's chat");
            let got: Vec<(String, String, Option<String>)> = chat["data"]
                .as_array()
                .expect("data")
                .iter()
                .map(|m| {
                    (
                        m["id"].as_str().unwrap_or_default().to_owned(),
                        m["type"].as_str().unwrap_or_default().to_owned(),
                        m["text"].as_str().map(str::to_owned),
                    )
                })
                .collect();
            let want: Vec<(String, String, Option<String>)> = wanted
                .iter()
                .map(|(i, k, t)| (i.clone(), (*k).to_owned(), t.map(str::to_owned)))
                .collect();
            (got == want).then_some(())
        },
    )
    .await;
}

/// The live adapter against wa-sim: mentions both ways. The simulator's
/// contact writes a text and an image caption @mentioning people (its
/// context's `mentionedJid`), which arrive listed on `message.received`
/// and the stored message; the account's mentions reach the contact.
#[tokio::test]
async fn on_the_live_adapter_mentions_go_both_ways() {
    let app = TestApp::spawn_live_tuned(unpaced).await;
    let sim = app.sim.clone().unwrap();
    let key = app.key("acme", "read,send,manage").await;
    let id = app.connected_session(&key).await;
    let base = format!("/api/v1/sessions/{id}/messages");
    let lid = "123456789012345@lid";
    let me = crate::support::FAKE_PHONE_JID;

    let contact_sends = |body: Value| {
        let sim = sim.clone();
        async move {
            let mut body = body;
            body["from"] = json!("14155550199");
            sim.admin()
                .send_message(crate::support::FAKE_PHONE, &body)
                .await
                .expect("the contact sends it")
        }
    };
    let text = contact_sends(
        json!({ "text": "@15550001111 meet @123456789012345", "mentions": ["15550001111", lid] }),
    )
    .await;
    let data = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b"png");
    let image = contact_sends(json!({
        "image": { "data": data, "mimetype": "image/png" },
        "caption": "@14155550123", "mentions": [ALICE]
    }))
    .await;
    let plain = contact_sends(json!({ "text": "no one" })).await;
    let received = events_of(&app, &key, "message.received", |e| e.len() >= 3).await;
    let of = |mid: &str| {
        received
            .iter()
            .find(|e| e["data"]["id"] == mid)
            .map(|e| e["data"].clone())
            .unwrap_or_else(|| panic!("{mid} not received"))
    };
    assert_eq!(of(&text)["text"], "@15550001111 meet @123456789012345");
    assert_eq!(of(&text)["mentions"], json!([me, lid]));
    assert_eq!(of(&image)["caption"], "@14155550123");
    assert_eq!(of(&image)["mentions"], json!([ALICE]));
    assert_eq!(of(&plain)["mentions"], json!([]));
    let stored = json(app.get(&format!("{base}/{text}"), &key).await).await;
    assert_eq!(stored["mentions"], json!([me, lid]));

    // The simulator refuses mentions on a kind that carries none.
    let e = sim
        .admin()
        .send_message(
            crate::support::FAKE_PHONE,
            &json!({ "from": "14155550199", "type": "location", "mentions": [ALICE],
                     "location": { "latitude": 1.0, "longitude": 2.0 } }),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("mentions"), "{e}");

    // The account's mentions reach the contact.
    let mid = sent(
        &app,
        &key,
        &id,
        json!({ "to": PLAIN, "type": "text", "text": "ask @14155550123", "mentions": [ALICE, lid] }),
    )
    .await;
    eventually("the contact gets the mentions", || async {
        let chat = sim
            .admin()
            .messages(crate::support::FAKE_PHONE, "14155550199")
            .expect("the simulator's chat");
        chat["data"]
            .as_array()
            .expect("data")
            .iter()
            .any(|m| m["id"] == mid.as_str() && m["mentions"] == json!([ALICE, lid]))
            .then_some(())
    })
    .await;
}
