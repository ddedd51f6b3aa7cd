//! Presence and chat states between a stock whatsapp-rust client and the
//! world's contacts: the contact's `<presence>` reaches a subscribed client
//! only (as `Event::Presence`, with its last seen) and its `<chatstate>`
//! every client (as `Event::ChatPresence`), by phone number or LID; what
//! the client shows a contact (typing, its presence, its subscription) is
//! logged for the admin API.

// Integration tests: a failed expectation should panic with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{PHONE, WORLD, admin_get, admin_post, init_logs, paired_bot};
use serde_json::json;
use wagate_whatsapp_sim::{Simulator, World};
use whatsapp_rust::Jid;
use whatsapp_rust::types::events::Event;
use whatsapp_rust::types::presence::{ChatPresence, ChatPresenceMedia};

const ALICE: &str = "14155550123";
const ALICE_LID: &str = "123456789012345@lid";

/// Polls what the account showed Alice until `pred` holds.
async fn wait_shown(
    admin_url: &str,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, shown) = admin_get(
            admin_url,
            &format!("/accounts/{PHONE}/presence?peer={ALICE}"),
        )
        .await;
        assert_eq!(status, 200, "{shown}");
        if pred(&shown) {
            return shown;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {what} within 10 s: {shown}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_and_chat_states_go_both_ways() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(World::from_json(WORLD).unwrap())
        .await
        .unwrap();
    let mut bot = paired_bot(&sim, &dir.path().join("wa.db"), PHONE).await;
    let admin = sim.admin_url();
    let presence_path = format!("/accounts/{PHONE}/presence");
    let chatstate_path = format!("/accounts/{PHONE}/chatstate");
    let alice: Jid = format!("{ALICE}@s.whatsapp.net").parse().unwrap();

    // Told to subscribers only: nobody yet.
    let (status, told) = admin_post(
        &admin,
        &presence_path,
        json!({ "from": ALICE, "available": true }),
    )
    .await;
    assert_eq!((status, &told["delivered"]), (200, &json!(0)), "{told}");
    bot.client
        .presence()
        .subscribe(alice.clone())
        .await
        .unwrap();
    // The subscription is answered with the presence the server knows.
    let e = bot
        .wait_for(10, "Alice's presence", |e| matches!(e, Event::Presence(_)))
        .await;
    let Event::Presence(p) = &*e else {
        unreachable!()
    };
    assert_eq!(
        (p.from.to_string(), p.unavailable, p.last_seen),
        (format!("{ALICE}@s.whatsapp.net"), false, None)
    );
    let shown = wait_shown(&admin, "the subscription", |s| s["subscribed"] == true).await;
    assert_eq!(
        shown["subscriptions"][0]["jid"],
        format!("{ALICE}@s.whatsapp.net")
    );
    // Then each change, here by LID.
    let (status, told) = admin_post(
        &admin,
        &presence_path,
        json!({ "from": ALICE, "available": false, "lastSeen": 1_733_353_200, "addressing": "lid" }),
    )
    .await;
    assert_eq!((status, &told["delivered"]), (200, &json!(1)), "{told}");
    let e = bot
        .wait_for(
            10,
            "Alice going offline",
            |e| matches!(e, Event::Presence(p) if p.unavailable),
        )
        .await;
    let Event::Presence(p) = &*e else {
        unreachable!()
    };
    assert_eq!(p.from.to_string(), ALICE_LID);
    assert_eq!(p.last_seen.map(|t| t.timestamp()), Some(1_733_353_200));

    // Chat states need no subscription.
    for (state, addressing, want, media) in [
        (
            "composing",
            "pn",
            ChatPresence::Composing,
            ChatPresenceMedia::Text,
        ),
        (
            "recording",
            "lid",
            ChatPresence::Composing,
            ChatPresenceMedia::Audio,
        ),
        (
            "paused",
            "pn",
            ChatPresence::Paused,
            ChatPresenceMedia::Text,
        ),
    ] {
        let (status, told) = admin_post(
            &admin,
            &chatstate_path,
            json!({ "from": ALICE, "state": state, "addressing": addressing }),
        )
        .await;
        assert_eq!((status, &told["delivered"]), (200, &json!(1)), "{told}");
        let e = bot
            .wait_for(10, state, |e| matches!(e, Event::ChatPresence(_)))
            .await;
        let Event::ChatPresence(c) = &*e else {
            unreachable!()
        };
        assert_eq!((c.state, c.media), (want, media), "{state}");
        let from = if addressing == "lid" {
            ALICE_LID.to_owned()
        } else {
            format!("{ALICE}@s.whatsapp.net")
        };
        assert_eq!(c.source.sender.to_string(), from, "{state}");
        assert!(!c.source.is_group && !c.source.is_from_me);
    }

    // What the client shows Alice is logged.
    bot.client.chatstate().send_composing(&alice).await.unwrap();
    bot.client.chatstate().send_recording(&alice).await.unwrap();
    bot.client.presence().set_available().await.unwrap();
    let shown = wait_shown(&admin, "typing, recording and the presence", |s| {
        s["chatStates"].as_array().is_some_and(|c| c.len() == 2) && s["available"] == true
    })
    .await;
    assert_eq!(shown["chatStates"][0]["state"], "composing");
    assert_eq!(shown["chatStates"][1]["state"], "recording");
    bot.client.presence().unsubscribe(&alice).await.unwrap();
    wait_shown(&admin, "the end of the subscription", |s| {
        s["subscribed"] == false
    })
    .await;

    // Malformed or unknown.
    for (path, body, want) in [
        (
            &chatstate_path,
            json!({ "from": ALICE, "state": "typing" }),
            400,
        ),
        (&chatstate_path, json!({ "from": ALICE }), 400),
        (
            &presence_path,
            json!({ "from": ALICE, "available": true, "extra": 1 }),
            400,
        ),
        (
            &presence_path,
            json!({ "from": ALICE, "available": true, "lastSeen": -1 }),
            400,
        ),
        (
            &presence_path,
            json!({ "from": "14155550000", "available": true }),
            404,
        ),
        (
            &"/accounts/19999999999/chatstate".to_owned(),
            json!({ "from": ALICE, "state": "paused" }),
            404,
        ),
    ] {
        let (status, e) = admin_post(&admin, path, body.clone()).await;
        assert_eq!(status, want, "{body}: {e}");
    }
    let (status, _) = admin_get(&admin, &format!("/accounts/{PHONE}/presence")).await;
    assert_eq!(status, 400);

    bot.stop().await;
    sim.shutdown().await;
}
