//! Groups on the live adapter against wa-sim: every group route through
//! whatsapp-rust's `w:g2` IQs, the `group.*` events of what contacts do
//! (the simulator's `w:gp2` notifications), and group messages with sender
//! keys both ways — decrypted by every member in the simulator (a member
//! added later included, a removed one not), and a member's message (one
//! known by LID alone too) received once; reactions and replies both ways,
//! and each member's receipts making a sent message's status. Waits are
//! on conditions polled with a deadline, never fixed.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use wagate_whatsapp_sim::{Simulator, SimulatorHandle, World};

use crate::support::{
    FAKE_PHONE, FAKE_PHONE_JID, TestApp, assert_error, eventually, json, live_config,
};

const ANN: &str = "14155550123";
const ANN_JID: &str = "14155550123@s.whatsapp.net";
const ANN_LID: &str = "100000000000123@lid";
const BOB: &str = "14155550124";
const BOB_JID: &str = "14155550124@s.whatsapp.net";
const BOB_LID: &str = "100000000000124@lid";
const CAROL: &str = "14155550125";
const CAROL_JID: &str = "14155550125@s.whatsapp.net";
const CAROL_LID: &str = "100000000000125@lid";
/// Known by its LID alone in groups.
const DAN: &str = "14155550126";
const DAN_LID: &str = "100000000000126@lid";
/// Eve and Fay send their group receipts when the test says
/// (`manualGroupReceipts`).
const EVE: &str = "14155550127";
const EVE_JID: &str = "14155550127@s.whatsapp.net";
const FAY: &str = "14155550128";
const FAY_JID: &str = "14155550128@s.whatsapp.net";

const WORLD: &str = r#"{
  "phone": "15550001111",
  "pushName": "Gateway",
  "receiptDelayMs": 20,
  "contacts": {
    "14155550123@s.whatsapp.net": { "lid": "100000000000123@lid", "pushName": "Ann" },
    "14155550124@s.whatsapp.net": { "lid": "100000000000124@lid", "pushName": "Bob" },
    "14155550125@s.whatsapp.net": { "lid": "100000000000125@lid", "pushName": "Carol" },
    "14155550126@s.whatsapp.net": { "lid": "100000000000126@lid", "lidOnly": true },
    "14155550127@s.whatsapp.net": { "lid": "100000000000127@lid", "pushName": "Eve", "manualGroupReceipts": true },
    "14155550128@s.whatsapp.net": { "lid": "100000000000128@lid", "pushName": "Fay", "manualGroupReceipts": true }
  }
}"#;

/// A gateway on the live adapter and a simulator of [`WORLD`], with a
/// connected session: (app, key, session id).
async fn connected() -> (TestApp, String, String) {
    let sim = Arc::new(
        Simulator::start(World::from_json(WORLD).expect("world"))
            .await
            .expect("simulator"),
    );
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let app = TestApp::spawn_live_with(live_config(&dir, &sim), dir, sim).await;
    let key = app.key("acme", "read,send,manage").await;
    let id = app.connected_session(&key).await;
    (app, key, id)
}

fn sim(app: &TestApp) -> &SimulatorHandle {
    app.sim.as_deref().expect("the simulator")
}

/// The simulator's admin API (a new connection each time: nothing pooled).
async fn admin(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> Value {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let mut req = client.request(method, format!("{}{path}", sim(app).admin_url()));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.expect("admin API");
    let status = res.status();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{path}: {status} {body}");
    body
}

/// A contact creates a group with these members; its JID.
async fn contact_creates(app: &TestApp, creator: &str, subject: &str, members: &[&str]) -> String {
    let created = admin(
        app,
        Method::POST,
        "/groups",
        Some(json!({ "creator": creator, "subject": subject, "participants": members })),
    )
    .await;
    created["jid"].as_str().expect("jid").to_owned()
}

/// The `group.*` events once `done` holds for them.
async fn group_events(app: &TestApp, key: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let page = json(
            app.get("/api/v1/events?types=group.*&limit=1000", key)
                .await,
        )
        .await;
        let events = page["data"].as_array().expect("data").clone();
        if done(&events) {
            return events;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the group events never got there: {events:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn of<'a>(events: &'a [Value], kind: &str, group: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| {
            e["type"] == kind && (e["data"]["group"] == group || e["data"]["group"]["jid"] == group)
        })
        .collect()
}

fn member<'a>(group: &'a Value, jid: &str) -> Option<&'a Value> {
    group["participants"]
        .as_array()
        .expect("participants")
        .iter()
        .find(|p| p["jid"] == jid || p["pn"] == jid || p["lid"] == jid)
}

async fn patch(app: &TestApp, path: &str, key: &str, body: Value) -> reqwest::Response {
    app.req(Method::PATCH, path, key)
        .json(&body)
        .send()
        .await
        .expect("request")
}

/// What `member` decrypted in `group`, once `done` holds for it.
async fn received(
    app: &TestApp,
    group: &str,
    member: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let log = admin(
            app,
            Method::GET,
            &format!("/groups/{group}/messages?member={member}"),
            None,
        )
        .await;
        let data = log["data"].as_array().cloned().unwrap_or_default();
        if done(&data) {
            return data;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{member} never got that in {group}: {log}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn texts(data: &[Value]) -> Vec<&str> {
    data.iter().filter_map(|m| m["text"].as_str()).collect()
}

#[tokio::test]
async fn live_group_routes_answer_through_the_simulator() {
    let (app, key, id) = connected().await;
    let base = format!("/api/v1/sessions/{id}/groups");

    // Created with outcomes; the account is its superadmin.
    let res = app
        .post(
            &base,
            &key,
            Some(json!({ "subject": "Launch crew", "participants": [ANN_JID, CAROL_JID] })),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let created = json(res).await;
    let g = created["jid"].as_str().unwrap().to_owned();
    let outcomes: Vec<_> = created["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["jid"].as_str().unwrap(), o["status"].as_str().unwrap()))
        .collect();
    assert_eq!(outcomes, [(ANN_JID, "ok"), (CAROL_JID, "ok")]);
    assert_eq!(
        member(&created, FAKE_PHONE_JID).unwrap()["role"],
        "superadmin"
    );
    let ann = member(&created, ANN_JID).expect("Ann");
    assert_eq!(
        (&ann["pn"], &ann["lid"]),
        (&json!(ANN_JID), &json!(ANN_LID))
    );
    let joined = group_events(&app, &key, |e| !of(e, "group.joined", &g).is_empty()).await;
    assert_eq!(
        of(&joined, "group.joined", &g)[0]["data"]["by"],
        Value::Null
    );
    let shown = json(app.get(&format!("{base}/{g}"), &key).await).await;
    assert_eq!(shown["subject"], "Launch crew");
    assert_eq!(shown["size"], 3);

    // Membership: each participant's outcome, the simulator follows.
    let participants_path = format!("{base}/{g}/participants");
    let change = |action: &str, who: Vec<&str>| {
        app.post(
            &participants_path,
            &key,
            Some(json!({ "action": action, "participants": who })),
        )
    };
    let added =
        json(change("add", vec![BOB_JID, ANN_JID, "19995550000@s.whatsapp.net"]).await).await;
    let statuses: Vec<_> = added["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["ok", "already_member", "not_on_whatsapp"]);
    let promoted = json(change("promote", vec![BOB_JID]).await).await;
    assert_eq!(promoted["data"][0]["status"], "ok");
    let in_sim = admin(&app, Method::GET, &format!("/groups/{g}"), None).await;
    let bob = in_sim["participants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["phone"] == BOB)
        .unwrap();
    assert_eq!(bob["admin"], true, "{in_sim}");
    json(change("demote", vec![BOB_JID]).await).await;
    let removed = json(change("remove", vec![BOB_JID]).await).await;
    assert_eq!(removed["data"][0]["status"], "ok");
    let events = group_events(&app, &key, |e| of(e, "group.participants", &g).len() >= 4).await;
    let actions: Vec<_> = of(&events, "group.participants", &g)
        .iter()
        .map(|e| e["data"]["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["add", "promote", "demote", "remove"]);

    // Subject, description and settings.
    let res = patch(
        &app,
        &format!("{base}/{g}"),
        &key,
        json!({"subject": "Crew EU", "description": "Where the crew talks",
               "settings": {"announce": true, "approval": true}}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let after = json(res).await;
    assert_eq!(after["subject"], "Crew EU");
    assert_eq!(after["description"], "Where the crew talks");
    assert_eq!(
        after["settings"],
        json!({"announce": true, "locked": false, "approval": true})
    );
    let in_sim = admin(&app, Method::GET, &format!("/groups/{g}"), None).await;
    assert_eq!(
        (&in_sim["subject"], &in_sim["announce"], &in_sim["approval"]),
        (&json!("Crew EU"), &json!(true), &json!(true))
    );
    // A second description replaces the first (WhatsApp wants the previous id).
    let res = patch(
        &app,
        &format!("{base}/{g}"),
        &key,
        json!({"description": "v2"}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    group_events(&app, &key, |e| of(e, "group.updated", &g).len() >= 2).await;

    // Invite link, revoked.
    let invite = json(app.get(&format!("{base}/{g}/invite"), &key).await).await;
    let code = invite["code"].as_str().unwrap().to_owned();
    assert_eq!(invite["url"], format!("https://chat.whatsapp.com/{code}"));
    let revoked = json(
        app.post(&format!("{base}/{g}/invite/revoke"), &key, None)
            .await,
    )
    .await;
    assert_ne!(revoked["code"], code.as_str());

    // Requests to join (approval is on): Bob asks, the account approves.
    admin(
        &app,
        Method::POST,
        &format!("/groups/{g}/requests"),
        Some(json!({ "phone": BOB })),
    )
    .await;
    let requests = json(app.get(&format!("{base}/{g}/requests"), &key).await).await;
    assert_eq!(requests["data"][0]["jid"], BOB_JID, "{requests}");
    let answered = json(
        app.post(
            &format!("{base}/{g}/requests"),
            &key,
            Some(json!({"action": "approve", "participants": [BOB_JID, CAROL_JID]})),
        )
        .await,
    )
    .await;
    assert_eq!(
        answered["data"],
        json!([{"jid": BOB_JID, "status": "ok"}, {"jid": CAROL_JID, "status": "not_member"}])
    );
    let requests = json(app.get(&format!("{base}/{g}/requests"), &key).await).await;
    assert_eq!(requests["data"], json!([]));

    // Ann's group: joined by its code, then left.
    let other = contact_creates(&app, ANN, "Ann's", &[BOB]).await;
    let info = admin(&app, Method::GET, &format!("/groups/{other}"), None).await;
    let joined = json(
        app.post(
            &format!("{base}/join"),
            &key,
            Some(json!({ "code": info["invite"] })),
        )
        .await,
    )
    .await;
    assert_eq!(
        (&joined["jid"], &joined["status"]),
        (&json!(other), &json!("joined"))
    );
    // A member, not an admin: no settings.
    assert_error(
        patch(
            &app,
            &format!("{base}/{other}"),
            &key,
            json!({"settings": {"locked": true}}),
        )
        .await,
        409,
        "conflict",
    )
    .await;
    let res = app.post(&format!("{base}/{other}/leave"), &key, None).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_error(
        app.get(&format!("{base}/{other}"), &key).await,
        404,
        "not_found",
    )
    .await;
    let events = group_events(&app, &key, |e| !of(e, "group.left", &other).is_empty()).await;
    assert_eq!(
        of(&events, "group.left", &other)[0]["data"],
        json!({"group": other, "by": null})
    );
    let listed = json(app.get(&base, &key).await).await;
    let jids: Vec<_> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["jid"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(jids, std::slice::from_ref(&g));
}

#[tokio::test]
async fn what_contacts_do_in_a_group_arrives_as_events() {
    let (app, key, id) = connected().await;
    let base = format!("/api/v1/sessions/{id}/groups");

    // Ann creates a group with the account: joined, by Ann, listed.
    let g = contact_creates(&app, ANN, "Team", &[BOB, DAN, FAKE_PHONE]).await;
    let events = group_events(&app, &key, |e| !of(e, "group.joined", &g).is_empty()).await;
    let joined = &of(&events, "group.joined", &g)[0]["data"];
    assert_eq!(joined["by"], ANN_JID);
    assert_eq!(joined["group"]["subject"], "Team");
    assert_eq!(
        member(&joined["group"], ANN_JID).unwrap()["role"],
        "superadmin"
    );
    // Dan is known by his LID alone.
    let dan = member(&joined["group"], DAN_LID).expect("Dan");
    assert_eq!((&dan["jid"], &dan["pn"]), (&json!(DAN_LID), &Value::Null));
    eventually("the store lists it", || async {
        let page = json(app.get(&base, &key).await).await;
        (page["data"][0]["jid"] == g.as_str()).then_some(())
    })
    .await;

    // Ann adds Carol and promotes Bob; she renames the group and locks it.
    admin(
        &app,
        Method::POST,
        &format!("/groups/{g}/participants"),
        Some(json!({ "by": ANN, "action": "add", "participants": [CAROL] })),
    )
    .await;
    admin(
        &app,
        Method::POST,
        &format!("/groups/{g}/participants"),
        Some(json!({ "by": ANN, "action": "promote", "participants": [BOB] })),
    )
    .await;
    admin(
        &app,
        Method::PATCH,
        &format!("/groups/{g}"),
        Some(json!({ "by": ANN, "subject": "Team EU", "locked": true })),
    )
    .await;
    let events = group_events(&app, &key, |e| {
        of(e, "group.participants", &g).len() >= 2 && of(e, "group.updated", &g).len() >= 2
    })
    .await;
    // (whatsapp-rust handles notifications concurrently: their events may
    // come in either order.)
    let changes = of(&events, "group.participants", &g);
    let find = |action: &str| {
        changes
            .iter()
            .find(|e| e["data"]["action"] == action)
            .map(|e| e["data"].clone())
            .unwrap_or_else(|| panic!("no {action}: {changes:#?}"))
    };
    let add = find("add");
    assert_eq!(add["by"], ANN_JID);
    assert_eq!(add["participants"][0]["pn"], CAROL_JID);
    assert_eq!(find("promote")["participants"][0]["pn"], BOB_JID);
    let updates = of(&events, "group.updated", &g);
    let renamed = updates
        .iter()
        .find(|e| e["data"]["subject"] == "Team EU")
        .expect("the subject change");
    assert_eq!(renamed["data"]["by"], ANN_JID);
    assert!(
        updates
            .iter()
            .any(|e| e["data"]["settings"]["locked"] == true),
        "{updates:#?}"
    );
    let stored = eventually("the store follows", || async {
        let page = json(app.get(&base, &key).await).await;
        let g0 = page["data"][0].clone();
        (g0["subject"] == "Team EU" && g0["settings"]["locked"] == true).then_some(g0)
    })
    .await;
    assert!(member(&stored, CAROL_JID).is_some(), "{stored}");

    // Ann removes the account: left, by Ann.
    admin(
        &app,
        Method::POST,
        &format!("/groups/{g}/participants"),
        Some(json!({ "by": ANN, "action": "remove", "participants": [FAKE_PHONE] })),
    )
    .await;
    let events = group_events(&app, &key, |e| !of(e, "group.left", &g).is_empty()).await;
    assert_eq!(
        of(&events, "group.left", &g)[0]["data"],
        json!({"group": g, "by": ANN_JID})
    );
}

#[tokio::test]
async fn group_messages_use_sender_keys_both_ways() {
    let (app, key, id) = connected().await;
    let messages = format!("/api/v1/sessions/{id}/messages");
    let g = contact_creates(&app, ANN, "Team", &[BOB, DAN, FAKE_PHONE]).await;
    group_events(&app, &key, |e| !of(e, "group.joined", &g).is_empty()).await;
    let send = |text: &str| {
        app.post(
            &messages,
            &key,
            Some(json!({"to": g, "type": "text", "text": text})),
        )
    };

    // The gateway's message: every member decrypts it.
    let res = send("hello team").await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let first = json(res).await["id"].as_str().unwrap().to_owned();
    for m in [ANN, BOB, DAN] {
        let got = received(&app, &g, m, |d| !d.is_empty()).await;
        assert_eq!(
            (got[0]["id"].as_str(), got[0]["from"].as_str()),
            (Some(first.as_str()), Some(FAKE_PHONE))
        );
    }

    // Carol is added after: the next message carries the key to her.
    admin(
        &app,
        Method::POST,
        &format!("/groups/{g}/participants"),
        Some(json!({ "by": ANN, "action": "add", "participants": [CAROL] })),
    )
    .await;
    group_events(&app, &key, |e| !of(e, "group.participants", &g).is_empty()).await;
    send("welcome carol").await;
    let carol = received(&app, &g, CAROL, |d| !d.is_empty()).await;
    assert_eq!(texts(&carol), ["welcome carol"]);

    // Bob is removed: he gets nothing more.
    admin(
        &app,
        Method::POST,
        &format!("/groups/{g}/participants"),
        Some(json!({ "by": ANN, "action": "remove", "participants": [BOB] })),
    )
    .await;
    group_events(&app, &key, |e| of(e, "group.participants", &g).len() >= 2).await;
    send("after bob").await;
    let ann = received(&app, &g, ANN, |d| d.len() == 3).await;
    assert_eq!(texts(&ann), ["hello team", "welcome carol", "after bob"]);
    received(&app, &g, CAROL, |d| d.len() == 2).await;
    let bob = received(&app, &g, BOB, |_| true).await;
    assert_eq!(texts(&bob), ["hello team", "welcome carol"]);

    // Ann wrote to the account one to one before (a session the client
    // keys by her number; her LID came with it): her group message, from
    // her LID, decrypts on what the client learned.
    app.contact_writes(&id, ANN_JID, "hello one to one").await;
    eventually("the one-to-one message", || async {
        let page = json(app.get("/api/v1/events?types=message.received", &key).await).await;
        (page["data"].as_array().map(Vec::len) == Some(1)).then_some(())
    })
    .await;

    // Members write: Ann, Carol (number disclosed) and Dan (LID alone),
    // each received once, the group as the chat.
    for (from, text) in [
        (ANN, "hi from ann"),
        (CAROL, "hi from carol"),
        (DAN, "hi from dan"),
    ] {
        admin(
            &app,
            Method::POST,
            &format!("/groups/{g}/messages"),
            Some(json!({ "from": from, "text": text })),
        )
        .await;
    }
    let events = eventually("both members' messages", || async {
        let page = json(
            app.get("/api/v1/events?types=message.received&limit=100", &key)
                .await,
        )
        .await;
        let events = page["data"].as_array().unwrap().clone();
        (events.len() >= 4).then_some(events)
    })
    .await;
    let by_text = |t: &str| {
        events
            .iter()
            .filter(|e| e["data"]["text"] == t)
            .map(|e| e["data"].clone())
            .collect::<Vec<_>>()
    };
    let ann = by_text("hi from ann");
    assert_eq!(ann.len(), 1, "{events:#?}");
    assert_eq!(
        (&ann[0]["chat"], &ann[0]["fromPn"], &ann[0]["fromLid"]),
        (&json!(g), &json!(ANN_JID), &json!(ANN_LID))
    );
    let carol = by_text("hi from carol");
    assert_eq!(carol.len(), 1, "{events:#?}");
    assert_eq!(
        (&carol[0]["chat"], &carol[0]["fromPn"], &carol[0]["fromLid"]),
        (&json!(g), &json!(CAROL_JID), &json!(CAROL_LID))
    );
    let dan = by_text("hi from dan");
    assert_eq!(dan.len(), 1, "{events:#?}");
    assert_eq!(
        (
            &dan[0]["chat"],
            &dan[0]["from"],
            &dan[0]["fromPn"],
            &dan[0]["fromLid"]
        ),
        (&json!(g), &json!(DAN_LID), &Value::Null, &json!(DAN_LID))
    );
    let chat = json(app.get(&format!("{messages}?chat={g}"), &key).await).await;
    // Three sent, three received.
    assert_eq!(chat["data"].as_array().unwrap().len(), 6, "{chat}");
}

/// A member posts to the group through the simulator; the message id.
async fn member_posts(app: &TestApp, group: &str, body: Value) -> String {
    let posted = admin(
        app,
        Method::POST,
        &format!("/groups/{group}/messages"),
        Some(body),
    )
    .await;
    posted["id"].as_str().expect("id").to_owned()
}

/// The events of `kind` once one carries `data.id == id` (or, for a
/// reaction, names it); that one's data.
async fn event_of(app: &TestApp, key: &str, kind: &str, id: &str) -> Value {
    eventually("the event", || async {
        let page = json(
            app.get(&format!("/api/v1/events?types={kind}&limit=1000"), key)
                .await,
        )
        .await;
        page["data"]
            .as_array()
            .expect("data")
            .iter()
            .find(|e| e["data"]["id"] == id)
            .map(|e| e["data"].clone())
    })
    .await
}

#[tokio::test]
async fn reactions_replies_and_reads_cross_a_group_both_ways() {
    let (app, key, id) = connected().await;
    let messages = format!("/api/v1/sessions/{id}/messages");
    let g = contact_creates(&app, ANN, "Lunch", &[BOB, FAKE_PHONE]).await;
    group_events(&app, &key, |e| !of(e, "group.joined", &g).is_empty()).await;

    // Ann asks; the gateway reacts to her message: both members have the
    // reaction, naming her message.
    let asked = member_posts(&app, &g, json!({"from": ANN, "text": "lunch at 1?"})).await;
    event_of(&app, &key, "message.received", &asked).await;
    let res = app
        .post(
            &format!("{messages}/{asked}/reaction"),
            &key,
            Some(json!({"emoji": "👍"})),
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    for m in [ANN, BOB] {
        let got = received(&app, &g, m, |d| d.iter().any(|r| r["type"] == "reaction")).await;
        let reaction = got.iter().find(|r| r["type"] == "reaction").unwrap();
        assert_eq!(
            (&reaction["text"], &reaction["target"], &reaction["from"]),
            (&json!("👍"), &json!(asked), &json!(FAKE_PHONE)),
            "{m}: {got:#?}"
        );
    }

    // The gateway reads Ann's message: the receipt names her, and she has it.
    let res = app
        .post(
            &format!("/api/v1/sessions/{id}/chats/{g}/read"),
            &key,
            Some(json!({"messageIds": [asked]})),
        )
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    eventually("Ann has the read receipt", || async {
        let log = admin(
            &app,
            Method::GET,
            &format!("/groups/{g}/messages?member={ANN}"),
            None,
        )
        .await;
        log["receipts"]
            .as_array()?
            .iter()
            .any(|r| r["id"] == asked.as_str() && r["type"] == "read")
            .then_some(())
    })
    .await;
    let stored = json(app.get(&format!("{messages}/{asked}"), &key).await).await;
    assert_eq!(stored["status"], "read", "{stored}");

    // The gateway answers Ann's message: the reply quotes it for both.
    let res = app
        .post(
            &messages,
            &key,
            Some(json!({"to": g, "type": "text", "text": "yes, see you", "replyTo": asked})),
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let answer = json(res).await["id"].as_str().unwrap().to_owned();
    for m in [ANN, BOB] {
        let got = received(&app, &g, m, |d| {
            d.iter().any(|r| r["id"] == answer.as_str())
        })
        .await;
        let reply = got.iter().find(|r| r["id"] == answer.as_str()).unwrap();
        assert_eq!(
            (&reply["text"], &reply["quoted"]),
            (&json!("yes, see you"), &json!(asked)),
            "{m}: {got:#?}"
        );
    }

    // Bob reacts to the gateway's answer: a `message.reaction` naming it,
    // from Bob, in the group.
    member_posts(
        &app,
        &g,
        json!({"from": BOB, "type": "reaction", "target": answer, "emoji": "🎉"}),
    )
    .await;
    let reaction = event_of(&app, &key, "message.reaction", &answer).await;
    assert_eq!(
        (&reaction["chat"], &reaction["emoji"]),
        (&json!(g), &json!("🎉")),
        "{reaction}"
    );
    // As a group message's `from`: the member as the group names them.
    assert_eq!(reaction["from"], BOB_LID, "{reaction}");

    // Ann replies to the gateway's answer: received quoting it.
    let again = member_posts(
        &app,
        &g,
        json!({"from": ANN, "text": "great", "replyTo": answer}),
    )
    .await;
    let got = event_of(&app, &key, "message.received", &again).await;
    assert_eq!(
        (
            &got["chat"],
            &got["text"],
            &got["replyTo"],
            &got["from"],
            &got["fromPn"]
        ),
        (
            &json!(g),
            &json!("great"),
            &json!(answer),
            &json!(ANN_LID),
            &json!(ANN_JID)
        ),
        "{got}"
    );
    let stored = json(app.get(&format!("{messages}/{again}"), &key).await).await;
    assert_eq!(stored["replyTo"], answer.as_str(), "{stored}");

    // A reaction taken back reaches the members as an empty one.
    let res = app
        .post(
            &format!("{messages}/{asked}/reaction"),
            &key,
            Some(json!({"emoji": ""})),
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    received(&app, &g, BOB, |d| {
        d.iter()
            .any(|r| r["type"] == "reaction" && r["text"] == "" && r["target"] == asked.as_str())
    })
    .await;
}

/// What `GET …/receipts` lists: (number, status) by member.
async fn who_has_what(app: &TestApp, key: &str, path: &str) -> Vec<(String, String)> {
    let page = json(app.get(path, key).await).await;
    page["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|r| {
            (
                r["pn"].as_str().unwrap_or_default().to_owned(),
                r["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn each_member_s_receipts_make_a_group_message_s_status() {
    let (app, key, id) = connected().await;
    let messages = format!("/api/v1/sessions/{id}/messages");
    // Ann receipts on her own; Eve and Fay when told.
    let g = contact_creates(&app, ANN, "Standup", &[EVE, FAY, FAKE_PHONE]).await;
    group_events(&app, &key, |e| !of(e, "group.joined", &g).is_empty()).await;
    eventually("the gateway knows the members", || async {
        let group = json(
            app.get(&format!("/api/v1/sessions/{id}/groups/{g}"), &key)
                .await,
        )
        .await;
        (group["participants"].as_array().map(Vec::len) == Some(4)).then_some(())
    })
    .await;
    let res = app
        .post(
            &messages,
            &key,
            Some(json!({"to": g, "type": "text", "text": "standup at 10"})),
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let mid = json(res).await["id"].as_str().unwrap().to_owned();
    let receipts = format!("{messages}/{mid}/receipts");
    let status = || async {
        json(app.get(&format!("{messages}/{mid}"), &key).await).await["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let has = |who: &str, what: &str| (who.to_owned(), what.to_owned());
    let listed = |want: Vec<(String, String)>| {
        let (app, key, receipts) = (&app, &key, &receipts);
        async move {
            eventually("the receipts are listed", || {
                let want = want.clone();
                async move {
                    let got = who_has_what(app, key, receipts).await;
                    (got == want).then_some(())
                }
            })
            .await;
        }
    };
    let member_receipt = |who: &str, what: &str| {
        let path = format!("/groups/{g}/receipts");
        let body = json!({"from": who, "ids": [mid], "type": what});
        let app = &app;
        async move {
            admin(app, Method::POST, &path, Some(body)).await;
        }
    };

    // Ann has it; Eve and Fay not yet: still `sent`.
    listed(vec![
        has(ANN_JID, "delivered"),
        has(EVE_JID, "pending"),
        has(FAY_JID, "pending"),
    ])
    .await;
    assert_eq!(status().await, "sent");
    member_receipt(EVE, "delivered").await;
    listed(vec![
        has(ANN_JID, "delivered"),
        has(EVE_JID, "delivered"),
        has(FAY_JID, "pending"),
    ])
    .await;
    assert_eq!(status().await, "sent", "Fay has not got it yet");
    // Every member has it: delivered.
    member_receipt(FAY, "delivered").await;
    eventually("delivered", || async {
        (status().await == "delivered").then_some(())
    })
    .await;

    // Ann and Eve read it (Eve twice: nothing more); Fay has not yet.
    member_receipt(ANN, "read").await;
    member_receipt(EVE, "read").await;
    member_receipt(EVE, "read").await;
    listed(vec![
        has(ANN_JID, "read"),
        has(EVE_JID, "read"),
        has(FAY_JID, "delivered"),
    ])
    .await;
    assert_eq!(status().await, "delivered", "Fay has not read it yet");
    member_receipt(FAY, "read").await;
    eventually("read", || async {
        (status().await == "read").then_some(())
    })
    .await;
    listed(vec![
        has(ANN_JID, "read"),
        has(EVE_JID, "read"),
        has(FAY_JID, "read"),
    ])
    .await;

    // One event per status of the message, however many receipts.
    let page = json(
        app.get("/api/v1/events?types=message.status&limit=1000", &key)
            .await,
    )
    .await;
    let statuses: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["data"]["id"] == mid.as_str())
        .filter_map(|e| e["data"]["status"].as_str())
        .collect();
    assert_eq!(statuses, ["sent", "delivered", "read"]);
}
