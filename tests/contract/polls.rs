//! Polls (issue 21) on the fake adapter: sent through the API, voted on by
//! contacts (the echo contact `14155550142` votes for a poll's first
//! option; `FakeWhatsApp::vote_from` casts any vote), the votes as
//! `message.poll_vote` events and tallied at `GET …/messages/{id}/poll`;
//! a contact's own poll stored and tallied too.

use reqwest::StatusCode;
use serde_json::{Value, json};
use wagate_domain::{Jid, MessageId, Poll, RichContent, SessionId};
use wagate_whatsapp_port::OutgoingContent;

use crate::support::{READER, TestApp, assert_error, eventually, json};

const ALICE: &str = "14155550123@s.whatsapp.net";

fn unpaced(config: &mut wagate::Config) {
    config.messages.send_rate = 0;
}

/// The `message.poll_vote` events, once there are `n`.
async fn votes(app: &TestApp, key: &str, n: usize) -> Vec<Value> {
    eventually(&format!("{n} message.poll_vote events"), || async {
        let page = json(
            app.get("/api/v1/events?types=message.poll_vote&limit=1000", key)
                .await,
        )
        .await;
        let events = page["data"].as_array().expect("data").clone();
        (events.len() >= n).then_some(events)
    })
    .await
}

/// The tally of poll `poll`, once `done` holds for it.
async fn tally(
    app: &TestApp,
    key: &str,
    session: &str,
    poll: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    eventually("the tally", || async {
        let res = app
            .get(
                &format!("/api/v1/sessions/{session}/messages/{poll}/poll"),
                key,
            )
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        let t = json(res).await;
        done(&t).then_some(t)
    })
    .await
}

fn counts(t: &Value) -> Vec<(String, u64)> {
    t["options"]
        .as_array()
        .expect("options")
        .iter()
        .map(|o| {
            (
                o["name"].as_str().unwrap().to_owned(),
                o["votes"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn polls_are_sent_voted_on_and_tallied() {
    let app = TestApp::spawn_tuned(unpaced).await;
    let fake = app.fake.clone().unwrap();
    let key = app.key("acme", "read,send,manage").await;
    let id = app.connected_session(&key).await;
    let session = SessionId::parse(&id).unwrap();
    let base = format!("/api/v1/sessions/{id}/messages");
    let poll =
        json!({ "question": "Which day?", "options": ["Mon", "Tue", "Wed"], "selectableCount": 2 });

    let res = app
        .post(
            &base,
            &key,
            Some(json!({ "to": READER, "type": "poll", "poll": poll })),
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let m = json(res).await;
    assert_eq!((m["type"].as_str(), &m["poll"]), (Some("poll"), &poll));
    let pid = m["id"].as_str().unwrap().to_owned();

    // The echo contact votes for the first option: one event, the tally.
    let got = votes(&app, &key, 1).await;
    assert_eq!(got[0]["data"]["message"]["id"], pid.as_str());
    assert_eq!(got[0]["data"]["message"]["poll"], poll);
    assert_eq!(got[0]["data"]["voter"], READER);
    assert_eq!(got[0]["data"]["selected"], json!(["Mon"]));
    let t = tally(&app, &key, &id, &pid, |t| t["voters"] == 1).await;
    assert_eq!(t["question"], "Which day?");
    assert_eq!(t["selectableCount"], 2);
    assert_eq!(t["options"][0]["voters"], json!([READER]));
    assert!(t["updatedAt"].is_string());

    // Its later vote replaces the first; another contact's adds to it.
    let target = MessageId::parse(&pid).unwrap();
    let reader = Jid::parse(READER).unwrap();
    fake.vote_from(&session, &reader, &target, &["Wed", "Tue"])
        .await
        .unwrap();
    fake.vote_from(&session, &Jid::parse(ALICE).unwrap(), &target, &["Tue"])
        .await
        .unwrap();
    let got = votes(&app, &key, 3).await;
    assert_eq!(got.len(), 3);
    assert_eq!(got[1]["data"]["selected"], json!(["Tue", "Wed"]));
    let t = tally(&app, &key, &id, &pid, |t| t["voters"] == 2).await;
    assert_eq!(
        counts(&t),
        [("Mon".into(), 0), ("Tue".into(), 2), ("Wed".into(), 1)]
    );
    // Taken back: it counts no more.
    fake.vote_from(&session, &reader, &target, &[])
        .await
        .unwrap();
    let t = tally(&app, &key, &id, &pid, |t| t["voters"] == 1).await;
    assert_eq!(t["options"][1]["voters"], json!([ALICE]));
    assert_eq!(votes(&app, &key, 4).await[3]["data"]["selected"], json!([]));

    // Not a poll; no such message.
    let text = json(
        app.post(
            &base,
            &key,
            Some(json!({ "to": ALICE, "type": "text", "text": "hi" })),
        )
        .await,
    )
    .await;
    let e = assert_error(
        app.get(
            &format!("{base}/{}/poll", text["id"].as_str().unwrap()),
            &key,
        )
        .await,
        409,
        "conflict",
    )
    .await;
    assert_eq!(e["details"]["reason"], "not_a_poll");
    assert_error(
        app.get(&format!("{base}/3EB0NOSUCHPOLL/poll"), &key).await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn bad_polls_are_refused_with_the_field() {
    let app = TestApp::spawn_tuned(unpaced).await;
    let key = app.key("acme", "read,send,manage").await;
    let id = app.connected_session(&key).await;
    let base = format!("/api/v1/sessions/{id}/messages");
    let many: Vec<String> = (0..13).map(|i| format!("o{i}")).collect();
    for (body, field) in [
        (json!({ "type": "poll" }), "poll"),
        (
            json!({ "type": "poll", "poll": { "question": "", "options": ["a", "b"] } }),
            "poll.question",
        ),
        (
            json!({ "type": "poll", "poll": { "question": "q", "options": ["a"] } }),
            "poll.options",
        ),
        (
            json!({ "type": "poll", "poll": { "question": "q", "options": many } }),
            "poll.options",
        ),
        (
            json!({ "type": "poll", "poll": { "question": "q", "options": ["a", "a"] } }),
            "poll.options",
        ),
        (
            json!({ "type": "poll", "poll": { "question": "q", "options": ["a", "b"], "selectableCount": 3 } }),
            "poll.selectableCount",
        ),
        (
            json!({ "type": "poll", "poll": { "question": "q", "options": ["a", "b"], "selectableCount": 0 } }),
            "poll.selectableCount",
        ),
        (
            json!({ "type": "poll", "text": "x", "poll": { "question": "q", "options": ["a", "b"] } }),
            "text",
        ),
        (
            json!({ "type": "text", "text": "x", "poll": { "question": "q", "options": ["a", "b"] } }),
            "poll",
        ),
    ] {
        let mut body = body;
        body["to"] = json!(ALICE);
        let e = assert_error(
            app.post(&base, &key, Some(body.clone())).await,
            400,
            "invalid_argument",
        )
        .await;
        assert_eq!(e["details"]["field"], field, "{body}");
    }
    // Nothing was stored.
    let list = json(app.get(&base, &key).await).await;
    assert_eq!(list["data"], json!([]));
}

#[tokio::test]
async fn a_contact_s_poll_is_stored_and_tallied() {
    let app = TestApp::spawn_tuned(unpaced).await;
    let fake = app.fake.clone().unwrap();
    let key = app.key("acme", "read,send,manage").await;
    let id = app.connected_session(&key).await;
    let session = SessionId::parse(&id).unwrap();
    let alice = Jid::parse(ALICE).unwrap();
    let poll = Poll::new(
        "Pizza or sushi?".into(),
        vec!["Pizza".into(), "Sushi".into()],
        1,
    )
    .unwrap();
    let pid = fake
        .deliver_from(
            &session,
            &alice,
            OutgoingContent::Rich(RichContent::Poll(poll)),
        )
        .await
        .unwrap();
    let received = eventually("the poll arrives", || async {
        let page = json(
            app.get("/api/v1/events?types=message.received&limit=1000", &key)
                .await,
        )
        .await;
        page["data"].as_array().and_then(|e| e.first()).cloned()
    })
    .await;
    assert_eq!(received["data"]["type"], "poll");
    assert_eq!(
        received["data"]["poll"],
        json!({ "question": "Pizza or sushi?", "options": ["Pizza", "Sushi"], "selectableCount": 1 })
    );
    fake.vote_from(&session, &alice, &pid, &["Sushi"])
        .await
        .unwrap();
    let t = tally(&app, &key, &id, pid.as_str(), |t| t["voters"] == 1).await;
    assert_eq!(counts(&t), [("Pizza".into(), 0), ("Sushi".into(), 1)]);
    assert_eq!(votes(&app, &key, 1).await[0]["data"]["voter"], ALICE);
}

/// What the simulator's contact `14155550199` sends the account through
/// wa-sim's admin API (`POST /admin/accounts/{phone}/messages`).
async fn contact_sends(sim: &wagate_whatsapp_sim::SimulatorHandle, body: Value) -> String {
    let mut body = body;
    body["from"] = json!("14155550199");
    sim.admin()
        .send_message(crate::support::FAKE_PHONE, &body)
        .await
        .expect("the contact sends it")
}

/// The live adapter against wa-sim: a poll the gateway sends is voted on by
/// the simulator's contact (its vote encrypted with the poll's secret, as
/// WhatsApp's clients do) and tallied; what the contact sends — a location,
/// contact cards, a poll and a vote on it, an edit and a deletion of its
/// text — arrives as the same events as on the fake.
#[tokio::test]
async fn on_the_live_adapter_polls_are_voted_on_and_a_contact_s_conversation_arrives() {
    let app = TestApp::spawn_live_tuned(unpaced).await;
    let sim = app.sim.clone().unwrap();
    let key = app.key("acme", "read,send,manage").await;
    let id = app.connected_session(&key).await;
    let base = format!("/api/v1/sessions/{id}/messages");
    const PLAIN: &str = "14155550199@s.whatsapp.net";

    let poll =
        json!({ "question": "Which day?", "options": ["Mon", "Tue", "Wed"], "selectableCount": 2 });
    let res = app
        .post(
            &base,
            &key,
            Some(json!({ "to": PLAIN, "type": "poll", "poll": poll })),
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let pid = json(res).await["id"].as_str().unwrap().to_owned();
    eventually("the contact gets the poll", || async {
        let chat = sim
            .admin()
            .messages(crate::support::FAKE_PHONE, "14155550199")
            .expect("the simulator's chat");
        chat["data"]
            .as_array()
            .expect("data")
            .iter()
            .any(|m| m["id"] == pid.as_str() && m["type"] == "poll" && m["text"] == "Which day?")
            .then_some(())
    })
    .await;
    contact_sends(
        &sim,
        json!({ "type": "vote", "target": pid, "options": ["Wed", "Mon"] }),
    )
    .await;
    let t = tally(&app, &key, &id, &pid, |t| t["voters"] == 1).await;
    assert_eq!(
        counts(&t),
        [("Mon".into(), 1), ("Tue".into(), 0), ("Wed".into(), 1)]
    );
    assert_eq!(t["options"][0]["voters"], json!([PLAIN]));
    contact_sends(
        &sim,
        json!({ "type": "vote", "target": pid, "options": ["Tue"] }),
    )
    .await;
    let t = tally(&app, &key, &id, &pid, |t| t["options"][1]["votes"] == 1).await;
    assert_eq!(
        counts(&t),
        [("Mon".into(), 0), ("Tue".into(), 1), ("Wed".into(), 0)]
    );
    let got = votes(&app, &key, 2).await;
    assert_eq!(got[1]["data"]["selected"], json!(["Tue"]));
    assert_eq!(got[1]["data"]["voter"], PLAIN);

    // The contact's side of a conversation.
    let text = contact_sends(&sim, json!({ "text": "see you at 5" })).await;
    let place = contact_sends(
        &sim,
        json!({ "type": "location", "location": { "latitude": -33.8568, "longitude": 151.2153, "name": "Opera House" } }),
    )
    .await;
    let vcard = "BEGIN:VCARD\nVERSION:3.0\nFN:Ana Lima\nEND:VCARD";
    let card = contact_sends(
        &sim,
        json!({ "type": "contacts", "contacts": [{ "displayName": "Ana Lima", "vcard": vcard }] }),
    )
    .await;
    let theirs = contact_sends(
        &sim,
        json!({ "type": "poll", "poll": { "question": "Tea?", "options": ["Yes", "No"] } }),
    )
    .await;
    let received = eventually("the contact's messages arrive", || async {
        let page = json(
            app.get("/api/v1/events?types=message.received&limit=1000", &key)
                .await,
        )
        .await;
        let events = page["data"].as_array().expect("data").clone();
        (events.len() >= 4).then_some(events)
    })
    .await;
    let of = |mid: &str| {
        received
            .iter()
            .find(|e| e["data"]["id"] == mid)
            .map(|e| e["data"].clone())
            .unwrap_or_else(|| panic!("{mid} not received"))
    };
    assert_eq!(of(&text)["text"], "see you at 5");
    assert_eq!(of(&place)["type"], "location");
    assert_eq!(of(&place)["location"]["name"], "Opera House");
    assert_eq!(of(&place)["location"]["latitude"], -33.8568);
    assert_eq!(
        of(&card)["contacts"],
        json!([{ "displayName": "Ana Lima", "vcard": vcard }])
    );
    assert_eq!(
        of(&theirs)["poll"],
        json!({ "question": "Tea?", "options": ["Yes", "No"], "selectableCount": 1 })
    );
    contact_sends(
        &sim,
        json!({ "type": "vote", "target": theirs, "options": ["No"] }),
    )
    .await;
    let t = tally(&app, &key, &id, &theirs, |t| t["voters"] == 1).await;
    assert_eq!(counts(&t), [("Yes".into(), 0), ("No".into(), 1)]);

    contact_sends(
        &sim,
        json!({ "type": "edit", "target": text, "text": "see you at 6" }),
    )
    .await;
    contact_sends(&sim, json!({ "type": "revoke", "target": place })).await;
    let edited = eventually("the edit arrives", || async {
        let page = json(
            app.get(
                "/api/v1/events?types=message.edited,message.revoked&limit=1000",
                &key,
            )
            .await,
        )
        .await;
        let events = page["data"].as_array().expect("data").clone();
        (events.len() >= 2).then_some(events)
    })
    .await;
    assert_eq!(edited[0]["type"], "message.edited");
    assert_eq!(edited[0]["data"]["previousText"], "see you at 5");
    assert_eq!(edited[0]["data"]["message"]["text"], "see you at 6");
    assert_eq!(edited[1]["type"], "message.revoked");
    let gone = json(app.get(&format!("{base}/{place}"), &key).await).await;
    assert_eq!(
        (gone["type"].as_str(), &gone["location"]),
        (Some("revoked"), &Value::Null)
    );
}
