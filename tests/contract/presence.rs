//! Typing and presence (issue 21) on the fake adapter: shown to a contact,
//! and a contact's arriving as ephemeral `presence.update` / `chat.state`
//! events (the fake's `presence_of` and `chat_state_from` play the
//! contact): never stored as messages, never kept for a reconnect,
//! filterable like any type, bounded per session. Then the same both ways
//! on the live adapter against wa-sim, whose contacts see the account's
//! typing and send their own presence and chat states.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use wagate_domain::{ChatState, Jid, SessionId};
use wagate_whatsapp_port::FakeAction;

use crate::support::{FAKE_PHONE, TestApp, assert_error, eventually, json};

const ALICE: &str = "14155550123@s.whatsapp.net";
const PLAIN: &str = "14155550199@s.whatsapp.net";

async fn events(app: &TestApp, key: &str, types: &str) -> Vec<Value> {
    let page = json(
        app.get(&format!("/api/v1/events?types={types}&limit=1000"), key)
            .await,
    )
    .await;
    page["data"].as_array().expect("data").clone()
}

#[tokio::test]
async fn the_account_shows_typing_and_presence() {
    let app = TestApp::spawn().await;
    let fake = app.fake.clone().unwrap();
    let key = app.key("acme", "read,send,manage").await;
    let id = app.connected_session(&key).await;
    let s = format!("/api/v1/sessions/{id}");
    let sid = SessionId::parse(&id).unwrap();

    let res = app
        .post(
            &format!("{s}/chats/{ALICE}/presence"),
            &key,
            Some(json!({ "state": "typing" })),
        )
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = app
        .req(Method::PUT, &format!("{s}/presence"), &key)
        .json(&json!({ "available": false }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let actions = fake.actions(&sid);
    assert!(actions.contains(&FakeAction::ChatStateSent {
        chat: Jid::parse(ALICE).unwrap(),
        state: ChatState::Typing
    }));
    assert!(actions.contains(&FakeAction::PresenceSet { available: false }));

    for (path, body, field) in [
        (
            format!("{s}/chats/{ALICE}/presence"),
            json!({ "state": "composing" }),
            "state",
        ),
        (format!("{s}/chats/{ALICE}/presence"), json!({}), "state"),
        (
            format!("{s}/chats/120363025246125486@g.us/presence"),
            json!({ "state": "typing" }),
            "jid",
        ),
    ] {
        let e = assert_error(
            app.post(&path, &key, Some(body)).await,
            400,
            "invalid_argument",
        )
        .await;
        assert_eq!(e["details"]["field"], field, "{path}");
    }
    let e = assert_error(
        app.req(Method::PUT, &format!("{s}/presence"), &key)
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
        400,
        "invalid_argument",
    )
    .await;
    assert_eq!(e["details"]["field"], "available");
    // Not connected: 501.
    app.post(&format!("{s}/disconnect"), &key, None).await;
    let e = assert_error(
        app.post(
            &format!("{s}/chats/{ALICE}/presence"),
            &key,
            Some(json!({ "state": "paused" })),
        )
        .await,
        501,
        "not_implemented",
    )
    .await;
    assert!(e["details"]["status"].is_string());
}

#[tokio::test]
async fn a_contact_s_presence_and_typing_are_ephemeral_events() {
    let app = TestApp::spawn().await;
    let fake = app.fake.clone().unwrap();
    let key = app.key("acme", "read,send,manage,admin").await;
    let id = app.connected_session(&key).await;
    let s = format!("/api/v1/sessions/{id}");
    let sid = SessionId::parse(&id).unwrap();
    let alice = Jid::parse(ALICE).unwrap();

    // Presence is told only to subscribers.
    assert!(!fake.presence_of(&sid, &alice, true, None).await);
    let res = app
        .post(
            &format!("{s}/contacts/{ALICE}/presence/subscribe"),
            &key,
            None,
        )
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let seen = time::macros::datetime!(2026-12-04 23:00 UTC);
    assert!(fake.presence_of(&sid, &alice, false, Some(seen)).await);
    assert!(
        !fake
            .presence_of(&sid, &Jid::parse(PLAIN).unwrap(), true, None)
            .await
    );
    let got = events(&app, &key, "presence.update").await;
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0]["data"],
        json!({ "jid": ALICE, "available": false, "lastSeen": "2026-12-04T23:00:00.000Z" })
    );
    assert_eq!(got[0]["sessionId"], id.as_str());

    assert!(fake.chat_state_from(&sid, &alice, ChatState::Typing).await);
    let got = events(&app, &key, "chat.*").await;
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0]["data"],
        json!({ "chat": ALICE, "jid": ALICE, "state": "typing" })
    );
    // Not messages.
    let list = json(app.get(&format!("{s}/messages"), &key).await).await;
    assert!(list["data"].as_array().unwrap().is_empty());
    // Webhooks may ask for them, or leave them out, like any type.
    for events in [json!(["presence.update"]), json!(["chat.*", "message.*"])] {
        let res = app
            .post(
                "/api/v1/webhooks",
                &key,
                Some(json!({ "url": "https://hooks.example.com/in", "events": events })),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED, "{events}");
    }

    // Never kept for a reconnect: what happens offline is gone, and the
    // subscription ends with the connection.
    app.post(&format!("{s}/disconnect"), &key, None).await;
    assert!(!fake.chat_state_from(&sid, &alice, ChatState::Paused).await);
    assert!(!fake.presence_of(&sid, &alice, true, None).await);
    app.post(&format!("{s}/connect"), &key, None).await;
    app.wait_for_status(&id, &key, "connected").await;
    assert!(!fake.presence_of(&sid, &alice, true, None).await);
    assert_eq!(events(&app, &key, "chat.state").await.len(), 1);
    assert_eq!(events(&app, &key, "presence.update").await.len(), 1);
}

#[tokio::test]
async fn a_chatty_contact_is_bounded_per_session() {
    let app = TestApp::spawn().await;
    let fake = app.fake.clone().unwrap();
    let key = app.key("acme", "read,send,manage").await;
    let id = app.connected_session(&key).await;
    let other = app.connected_session(&key).await;
    let alice = Jid::parse(ALICE).unwrap();
    let started = std::time::Instant::now();
    for i in 0..100 {
        let state = if i % 2 == 0 {
            ChatState::Typing
        } else {
            ChatState::Paused
        };
        assert!(
            fake.chat_state_from(&SessionId::parse(&id).unwrap(), &alice, state)
                .await
        );
    }
    let secs = started.elapsed().as_secs_f64();
    // Another session has an allowance of its own.
    assert!(
        fake.chat_state_from(
            &SessionId::parse(&other).unwrap(),
            &alice,
            ChatState::Typing
        )
        .await
    );
    let got = events(&app, &key, "chat.state").await;
    let of = |s: &str| got.iter().filter(|e| e["sessionId"] == s).count();
    // A burst of 20, then 5 a second.
    let bound = 20 + (5.0 * secs).ceil() as usize;
    assert!(
        (20..=bound).contains(&of(&id)),
        "{} of 100 written in {secs:.2} s (bound {bound})",
        of(&id)
    );
    assert_eq!(of(&other), 1);
}

/// The simulator's log of what the account showed Alice, once `done`
/// holds for it.
async fn alice_saw(
    sim: &wagate_whatsapp_sim::SimulatorHandle,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    eventually(what, || async {
        let shown = sim
            .admin()
            .shown_presence(FAKE_PHONE, "14155550123")
            .expect("the simulator's presence log");
        done(&shown).then_some(shown)
    })
    .await
}

/// The session's events of `types`, once there are `n` of them.
async fn n_events(app: &TestApp, key: &str, types: &str, n: usize) -> Vec<Value> {
    eventually(&format!("{n} {types} events"), || async {
        let got = events(app, key, types).await;
        (got.len() >= n).then_some(got)
    })
    .await
}

/// The live adapter against wa-sim: the account's typing, recording and
/// presence reach the simulator's contact; the contact's presence arrives
/// once subscribed (its last one at once, then each change) and its chat
/// states always, named by phone number even when WhatsApp names the
/// contact by LID (the number learned from its earlier message). A dropped
/// connection comes back subscribed (whatsapp-rust renews subscriptions);
/// `disconnect` and `connect` start afresh, nothing kept from offline.
#[tokio::test]
async fn on_the_live_adapter_presence_and_typing_go_both_ways() {
    let app = TestApp::spawn_live().await;
    let sim = app.sim.clone().unwrap();
    let admin = sim.admin();
    let key = app.key("acme", "read,send,manage").await;
    let id = app.connected_session(&key).await;
    let s = format!("/api/v1/sessions/{id}");

    // The account's side, as the contact sees it.
    for state in ["typing", "recording", "paused"] {
        let res = app
            .post(
                &format!("{s}/chats/{ALICE}/presence"),
                &key,
                Some(json!({ "state": state })),
            )
            .await;
        assert_eq!(res.status(), StatusCode::NO_CONTENT, "{state}");
    }
    let res = app
        .req(Method::PUT, &format!("{s}/presence"), &key)
        .json(&json!({ "available": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let shown = alice_saw(
        &sim,
        "the contact sees typing, then recording, then paused",
        |v| v["chatStates"].as_array().is_some_and(|s| s.len() == 3) && v["available"] == true,
    )
    .await;
    let states: Vec<&str> = shown["chatStates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["composing", "recording", "paused"]);
    assert_eq!(shown["subscribed"], false);

    // Presence is told to subscribers only: nobody is told yet.
    let seen_at = 1_733_353_200; // 2024-12-04T23:00:00Z
    let online = json!({ "from": "14155550123", "available": true });
    assert_eq!(admin.contact_presence(FAKE_PHONE, &online).unwrap(), 0);
    let res = app
        .post(
            &format!("{s}/contacts/{ALICE}/presence/subscribe"),
            &key,
            None,
        )
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    // Subscribing answers with the contact's presence now.
    let got = n_events(&app, &key, "presence.update", 1).await;
    assert_eq!(
        got[0]["data"],
        json!({ "jid": ALICE, "available": true, "lastSeen": null })
    );
    assert_eq!(got[0]["sessionId"], id.as_str());
    let shown = alice_saw(&sim, "the subscription", |v| v["subscribed"] == true).await;
    assert_eq!(shown["subscriptions"][0]["jid"], ALICE);
    // Then each change; by LID too (WhatsApp names LID-addressed contacts
    // so), once the client knows the number behind it (from a message).
    let mid = app.contact_writes(&id, ALICE, "brb").await;
    eventually("Alice's message arrives", || async {
        let m = app.get(&format!("{s}/messages/{mid}"), &key).await;
        (m.status() == StatusCode::OK).then_some(())
    })
    .await;
    let away = json!({ "from": "14155550123", "available": false, "lastSeen": seen_at,
                       "addressing": "lid" });
    assert_eq!(admin.contact_presence(FAKE_PHONE, &away).unwrap(), 1);
    let got = n_events(&app, &key, "presence.update", 2).await;
    assert_eq!(
        got[1]["data"],
        json!({ "jid": ALICE, "available": false, "lastSeen": "2024-12-04T23:00:00.000Z" })
    );
    // Another contact's presence is not told: the account did not ask.
    let other = json!({ "from": "14155550199", "available": true });
    assert_eq!(admin.contact_presence(FAKE_PHONE, &other).unwrap(), 0);

    // Chat states arrive without a subscription, by number or by LID (one
    // at a time: whatsapp-rust handles these stanzas concurrently, so two
    // sent at once may arrive in either order).
    for (n, (state, addressing, want)) in [
        ("composing", "lid", "typing"),
        ("recording", "pn", "recording"),
        ("paused", "lid", "paused"),
    ]
    .into_iter()
    .enumerate()
    {
        let body = json!({ "from": "14155550123", "state": state, "addressing": addressing });
        assert_eq!(admin.contact_chat_state(FAKE_PHONE, &body).unwrap(), 1);
        let got = n_events(&app, &key, "chat.state", n + 1).await;
        assert_eq!(
            got[n]["data"],
            json!({ "chat": ALICE, "jid": ALICE, "state": want }),
            "{state} by {addressing}"
        );
    }
    // Not messages: the list holds Alice's one text.
    let list = json(app.get(&format!("{s}/messages"), &key).await).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);

    // A dropped connection comes back subscribed: the client renews its
    // subscriptions itself, and the answer is Alice's presence now.
    assert_eq!(admin.drop_connections(FAKE_PHONE), 1);
    let got = n_events(&app, &key, "presence.update", 3).await;
    assert_eq!(
        got[2]["data"],
        json!({ "jid": ALICE, "available": false, "lastSeen": "2024-12-04T23:00:00.000Z" })
    );
    app.wait_for_status(&id, &key, "connected").await;

    // Disconnected, nothing is told and nothing waits for the next
    // connect, which starts without subscriptions.
    app.post(&format!("{s}/disconnect"), &key, None).await;
    app.wait_for_status(&id, &key, "disconnected").await;
    eventually("the simulator sees the device go", || async {
        let account = admin.account(FAKE_PHONE).expect("the account");
        account.devices.iter().all(|d| !d.connected).then_some(())
    })
    .await;
    let typing = json!({ "from": "14155550123", "state": "composing" });
    assert_eq!(admin.contact_chat_state(FAKE_PHONE, &typing).unwrap(), 0);
    assert_eq!(admin.contact_presence(FAKE_PHONE, &online).unwrap(), 0);
    app.post(&format!("{s}/connect"), &key, None).await;
    app.wait_for_status(&id, &key, "connected").await;
    // A chat state now is the next one written: the offline ones are gone.
    let paused = json!({ "from": "14155550123", "state": "paused" });
    eventually(
        "the contact's chat state reaches the reconnected session",
        || async { (admin.contact_chat_state(FAKE_PHONE, &paused).unwrap() == 1).then_some(()) },
    )
    .await;
    let got = n_events(&app, &key, "chat.state", 4).await;
    assert_eq!(got[3]["data"]["state"], "paused");
    assert_eq!(events(&app, &key, "presence.update").await.len(), 3);
    let shown = alice_saw(&sim, "the log", |_| true).await;
    assert_eq!(shown["subscribed"], false);
}
