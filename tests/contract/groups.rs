//! Groups on the fake adapter: the list from the store (read on connect,
//! kept current by `group.*` events), the live routes, their outcomes and
//! refusals, and what others do in a group arriving as events. Tenancy and
//! capabilities of every group route are checked with all routes
//! (`support::routes`, in auth.rs). Waits are on conditions polled with a
//! deadline, never fixed.
//!
//! The built-in fake world's groups (`BUILTIN_FAKE_GROUPS`): "Wagate Team"
//! (the account an admin, Alice its superadmin, `14155550177` asking to
//! join), "Announcements" (locked; the account a member) and "Open
//! Community" (not joined; invite code `WagateOpenInvite1`).

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use wagate_domain::{GroupJid, GroupSubject, Jid, ParticipantAction, SessionId};

use crate::support::{
    FAKE_PHONE_JID, GHOST_MESSAGE, GROUP, TestApp, assert_error, eventually, json,
};

const ALICE: &str = "14155550123@s.whatsapp.net";
const ALICE_LID: &str = "123456789012345@lid";
const READER: &str = "14155550142@s.whatsapp.net";
const PLAIN: &str = "14155550199@s.whatsapp.net";
/// Not on WhatsApp in the built-in world.
const NOBODY: &str = "14155550177@s.whatsapp.net";
/// Can only be invited (`inviteOnly`).
const INVITE_ONLY: &str = "14155550145@s.whatsapp.net";
const ANNOUNCEMENTS: &str = "120363000000000002@g.us";
const COMMUNITY: &str = "120363000000000003@g.us";

/// The `group.*` events of the organization once `done` holds for them.
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
            "events never got there: {events:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn of<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

/// A connected session whose groups have been read into the store.
async fn session_with_groups(app: &TestApp, key: &str) -> String {
    let id = app.connected_session(key).await;
    eventually("the groups are read on connect", || async {
        let page = json(app.get(&format!("/api/v1/sessions/{id}/groups"), key).await).await;
        (page["data"].as_array().map(Vec::len) == Some(2)).then_some(())
    })
    .await;
    id
}

async fn listed(app: &TestApp, key: &str, id: &str) -> Vec<Value> {
    let page = json(app.get(&format!("/api/v1/sessions/{id}/groups"), key).await).await;
    page["data"].as_array().expect("data").clone()
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

#[tokio::test]
async fn the_list_comes_from_the_store_read_on_connect_and_pages_by_jid() {
    let app = TestApp::spawn().await;
    let key = app.key("acme", "read,send,manage").await;
    let id = session_with_groups(&app, &key).await;
    let base = format!("/api/v1/sessions/{id}/groups");

    let groups = listed(&app, &key, &id).await;
    let jids: Vec<_> = groups.iter().map(|g| g["jid"].as_str().unwrap()).collect();
    assert_eq!(jids, [ANNOUNCEMENTS, GROUP]);
    let team = &groups[1];
    assert_eq!(team["subject"], "Wagate Team");
    assert_eq!(team["description"], "Where the team talks");
    assert_eq!(team["owner"], ALICE);
    assert_eq!(team["createdAt"], "2024-01-01T00:00:00.000Z");
    assert_eq!(team["size"], 4);
    assert_eq!(
        team["settings"],
        json!({"announce": false, "locked": false, "approval": true})
    );
    let alice = member(team, ALICE).expect("Alice is a member");
    assert_eq!(
        (&alice["pn"], &alice["lid"], &alice["role"]),
        (&json!(ALICE), &json!(ALICE_LID), &json!("superadmin"))
    );
    assert_eq!(member(team, FAKE_PHONE_JID).unwrap()["role"], "admin");

    let first = json(app.get(&format!("{base}?limit=1"), &key).await).await;
    assert_eq!(first["data"][0]["jid"], ANNOUNCEMENTS);
    let next = first["nextCursor"].as_str().expect("a next page");
    let second = json(
        app.get(&format!("{base}?limit=1&cursor={next}"), &key)
            .await,
    )
    .await;
    assert_eq!(second["data"][0]["jid"], GROUP);
    assert_eq!(second["nextCursor"], Value::Null);

    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=x", "limit"),
        ("cursor=14155550123@s.whatsapp.net", "cursor"),
    ] {
        let e = assert_error(
            app.get(&format!("{base}?{query}"), &key).await,
            400,
            "invalid_argument",
        )
        .await;
        assert_eq!(e["details"]["field"], field, "{query}");
    }

    // Offline, the list still answers (from the store); live calls do not.
    let res = app
        .post(&format!("/api/v1/sessions/{id}/disconnect"), &key, None)
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    app.wait_for_status(&id, &key, "disconnected").await;
    assert_eq!(listed(&app, &key, &id).await.len(), 2);
    let e = assert_error(
        app.get(&format!("{base}/{GROUP}"), &key).await,
        501,
        "not_implemented",
    )
    .await;
    assert_eq!(e["details"]["status"], "disconnected");
}

#[tokio::test]
async fn a_created_group_answers_each_participant_s_outcome_and_is_reported_joined() {
    let app = TestApp::spawn().await;
    let key = app.key("acme", "read,send,manage").await;
    let id = session_with_groups(&app, &key).await;
    let base = format!("/api/v1/sessions/{id}/groups");

    let res = app
        .post(
            &base,
            &key,
            Some(json!({
                "subject": "  Launch crew ",
                "participants": [ALICE, ALICE_LID, NOBODY, INVITE_ONLY, READER],
            })),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let created = json(res).await;
    let jid = created["jid"].as_str().unwrap().to_owned();
    assert!(jid.ends_with("@g.us"));
    assert_eq!(location, format!("{base}/{jid}"));
    assert_eq!(created["subject"], "Launch crew");
    assert_eq!(created["owner"], FAKE_PHONE_JID);
    let outcomes: Vec<_> = created["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["jid"].as_str().unwrap(), o["status"].as_str().unwrap()))
        .collect();
    // Alice named again by her LID is the same person.
    assert_eq!(
        outcomes,
        [
            (ALICE, "ok"),
            (ALICE_LID, "already_member"),
            (NOBODY, "not_on_whatsapp"),
            (INVITE_ONLY, "invite_needed"),
            (READER, "ok"),
        ]
    );
    assert_eq!(
        member(&created, FAKE_PHONE_JID).unwrap()["role"],
        "superadmin"
    );
    assert_eq!(created["size"], 3);

    let events = group_events(&app, &key, |e| !of(e, "group.joined").is_empty()).await;
    let joined = of(&events, "group.joined")[0];
    assert_eq!(joined["sessionId"], id);
    assert_eq!(joined["data"]["group"]["jid"], jid);
    assert_eq!(joined["data"]["group"]["size"], 3);
    assert_eq!(joined["data"]["by"], Value::Null);
    // The store follows the event: listed at once.
    assert!(
        listed(&app, &key, &id)
            .await
            .iter()
            .any(|g| g["jid"] == jid)
    );
    let live = json(app.get(&format!("{base}/{jid}"), &key).await).await;
    assert_eq!(live["participants"], created["participants"]);

    for (body, field) in [
        (json!({"participants": [ALICE]}), "subject"),
        (json!({"subject": " "}), "subject"),
        (json!({"subject": "a\nb"}), "subject"),
        (
            json!({"subject": "x", "participants": [GROUP]}),
            "participants",
        ),
        (
            json!({"subject": "x", "participants": ["nope"]}),
            "participants",
        ),
        (json!({"subject": "x", "extra": 1}), "body"),
    ] {
        let e = assert_error(
            app.post(&base, &key, Some(body.clone())).await,
            400,
            "invalid_argument",
        )
        .await;
        assert_eq!(e["details"]["field"], field, "{body}");
    }
}

#[tokio::test]
async fn membership_changes_answer_outcomes_and_the_store_follows_their_events() {
    let app = TestApp::spawn().await;
    let key = app.key("acme", "read,send,manage").await;
    let id = session_with_groups(&app, &key).await;
    let path = format!("/api/v1/sessions/{id}/groups/{GROUP}/participants");
    let change = |action: &str, who: Vec<&str>| json!({"action": action, "participants": who});

    let out = json(
        app.post(
            &path,
            &key,
            Some(change("add", vec![INVITE_ONLY, NOBODY, READER])),
        )
        .await,
    )
    .await;
    assert_eq!(
        out["data"],
        json!([
            {"jid": INVITE_ONLY, "status": "invite_needed"},
            {"jid": NOBODY, "status": "not_on_whatsapp"},
            {"jid": READER, "status": "already_member"},
        ])
    );
    let out = json(
        app.post(&path, &key, Some(change("promote", vec![READER])))
            .await,
    )
    .await;
    assert_eq!(out["data"][0]["status"], "ok");
    let out = json(
        app.post(&path, &key, Some(change("remove", vec![PLAIN])))
            .await,
    )
    .await;
    assert_eq!(out["data"][0]["status"], "ok");
    let out = json(
        app.post(&path, &key, Some(change("demote", vec![PLAIN])))
            .await,
    )
    .await;
    assert_eq!(out["data"][0]["status"], "not_member");

    let events = group_events(&app, &key, |e| of(e, "group.participants").len() == 2).await;
    let changes = of(&events, "group.participants");
    assert_eq!(changes[0]["data"]["group"], GROUP);
    assert_eq!(changes[0]["data"]["action"], "promote");
    assert_eq!(changes[0]["data"]["participants"][0]["jid"], READER);
    assert_eq!(changes[0]["data"]["participants"][0]["role"], "admin");
    assert_eq!(changes[0]["data"]["by"], FAKE_PHONE_JID);
    assert_eq!(changes[1]["data"]["action"], "remove");

    let team = listed(&app, &key, &id)
        .await
        .into_iter()
        .find(|g| g["jid"] == GROUP)
        .unwrap();
    assert_eq!(member(&team, READER).unwrap()["role"], "admin");
    assert!(member(&team, PLAIN).is_none());
    assert_eq!(team["size"], 3);

    for (body, field) in [
        (change("join", vec![ALICE]), "action"),
        (change("add", vec![]), "participants"),
        (json!({"action": "add"}), "participants"),
        (change("add", vec![GROUP]), "participants"),
    ] {
        let e = assert_error(
            app.post(&path, &key, Some(body.clone())).await,
            400,
            "invalid_argument",
        )
        .await;
        assert_eq!(e["details"]["field"], field, "{body}");
    }
    // Not an admin of the announcement group: WhatsApp says no.
    let e = assert_error(
        app.post(
            &format!("/api/v1/sessions/{id}/groups/{ANNOUNCEMENTS}/participants"),
            &key,
            Some(change("add", vec![READER])),
        )
        .await,
        409,
        "conflict",
    )
    .await;
    assert!(e["message"].as_str().unwrap().contains("admin"));
}

#[tokio::test]
async fn subject_description_and_settings_change_where_the_account_may() {
    let app = TestApp::spawn().await;
    let key = app.key("acme", "read,send,manage").await;
    let id = session_with_groups(&app, &key).await;
    let team = format!("/api/v1/sessions/{id}/groups/{GROUP}");

    let res = patch(
        &app,
        &team,
        &key,
        json!({"subject": "Team EU", "description": "", "settings": {"announce": true}}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let after = json(res).await;
    assert_eq!(after["subject"], "Team EU");
    assert_eq!(after["description"], Value::Null);
    assert_eq!(
        after["settings"],
        json!({"announce": true, "locked": false, "approval": true})
    );
    let events = group_events(&app, &key, |e| !of(e, "group.updated").is_empty()).await;
    let updated = &of(&events, "group.updated")[0]["data"];
    assert_eq!(
        *updated,
        json!({
            "group": GROUP, "subject": "Team EU", "description": null,
            "settings": {"announce": true, "locked": false, "approval": true},
            "by": FAKE_PHONE_JID,
        })
    );
    let stored = listed(&app, &key, &id)
        .await
        .into_iter()
        .find(|g| g["jid"] == GROUP)
        .unwrap();
    assert_eq!(stored["subject"], "Team EU");
    assert_eq!(stored["settings"]["announce"], true);

    for (body, field) in [
        (json!({}), "body"),
        (json!({"subject": ""}), "subject"),
        (json!({"description": "x".repeat(2049)}), "description"),
        (json!({"settings": {"loud": true}}), "body"),
    ] {
        let e = assert_error(
            patch(&app, &team, &key, body.clone()).await,
            400,
            "invalid_argument",
        )
        .await;
        assert_eq!(e["details"]["field"], field, "{body}");
    }
    // Locked, and the account is no admin there.
    assert_error(
        patch(
            &app,
            &format!("/api/v1/sessions/{id}/groups/{ANNOUNCEMENTS}"),
            &key,
            json!({"subject": "Mine now"}),
        )
        .await,
        409,
        "conflict",
    )
    .await;
    let e = assert_error(
        patch(
            &app,
            &format!("/api/v1/sessions/{id}/groups/{ALICE}"),
            &key,
            json!({"subject": "x"}),
        )
        .await,
        400,
        "invalid_argument",
    )
    .await;
    assert_eq!(e["details"]["field"], "groupJid");
}

#[tokio::test]
async fn invites_joining_leaving_and_requests_to_join() {
    let app = TestApp::spawn().await;
    let key = app.key("acme", "read,send,manage").await;
    let id = session_with_groups(&app, &key).await;
    let base = format!("/api/v1/sessions/{id}/groups");

    let invite = json(app.get(&format!("{base}/{GROUP}/invite"), &key).await).await;
    let code = invite["code"].as_str().unwrap().to_owned();
    assert_eq!(invite["url"], format!("https://chat.whatsapp.com/{code}"));
    let again = json(app.get(&format!("{base}/{GROUP}/invite"), &key).await).await;
    assert_eq!(again["code"], code.as_str());
    let revoked = json(
        app.post(&format!("{base}/{GROUP}/invite/revoke"), &key, None)
            .await,
    )
    .await;
    assert_ne!(revoked["code"], code.as_str());
    assert_error(
        app.get(&format!("{base}/{ANNOUNCEMENTS}/invite"), &key)
            .await,
        409,
        "conflict",
    )
    .await;

    // Joining by link (the whole link works as well as the code).
    let joined = json(
        app.post(
            &format!("{base}/join"),
            &key,
            Some(json!({"code": "https://chat.whatsapp.com/WagateOpenInvite1"})),
        )
        .await,
    )
    .await;
    assert_eq!(
        (&joined["jid"], &joined["status"]),
        (&json!(COMMUNITY), &json!("joined"))
    );
    assert_eq!(joined["group"]["subject"], "Open Community");
    let e = assert_error(
        app.post(
            &format!("{base}/join"),
            &key,
            Some(json!({"code": "UnknownCode123"})),
        )
        .await,
        404,
        "not_found",
    )
    .await;
    assert_eq!(e["message"], "invite code not found");
    let e = assert_error(
        app.post(&format!("{base}/join"), &key, Some(json!({"code": "no"})))
            .await,
        400,
        "invalid_argument",
    )
    .await;
    assert_eq!(e["details"]["field"], "code");

    // Leaving.
    let res = app
        .post(&format!("{base}/{ANNOUNCEMENTS}/leave"), &key, None)
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let e = assert_error(
        app.get(&format!("{base}/{ANNOUNCEMENTS}"), &key).await,
        404,
        "not_found",
    )
    .await;
    assert_eq!(e["message"], "group not found");
    assert_error(
        app.post(&format!("{base}/{ANNOUNCEMENTS}/leave"), &key, None)
            .await,
        404,
        "not_found",
    )
    .await;

    // Requests to join the team.
    let requests = json(app.get(&format!("{base}/{GROUP}/requests"), &key).await).await;
    assert_eq!(requests["data"][0]["jid"], NOBODY);
    let answered = json(
        app.post(
            &format!("{base}/{GROUP}/requests"),
            &key,
            Some(json!({"action": "approve", "participants": [NOBODY, PLAIN]})),
        )
        .await,
    )
    .await;
    assert_eq!(
        answered["data"],
        json!([{"jid": NOBODY, "status": "ok"}, {"jid": PLAIN, "status": "not_member"}])
    );
    let requests = json(app.get(&format!("{base}/{GROUP}/requests"), &key).await).await;
    assert_eq!(requests["data"], json!([]));
    let e = assert_error(
        app.post(
            &format!("{base}/{GROUP}/requests"),
            &key,
            Some(json!({"action": "maybe", "participants": [NOBODY]})),
        )
        .await,
        400,
        "invalid_argument",
    )
    .await;
    assert_eq!(e["details"]["field"], "action");

    let events = group_events(&app, &key, |e| {
        !of(e, "group.left").is_empty() && !of(e, "group.participants").is_empty()
    })
    .await;
    assert_eq!(
        of(&events, "group.joined")[0]["data"]["group"]["jid"],
        COMMUNITY
    );
    assert_eq!(
        of(&events, "group.left")[0]["data"],
        json!({"group": ANNOUNCEMENTS, "by": null})
    );
    let approved = &of(&events, "group.participants")[0]["data"];
    assert_eq!(
        (&approved["action"], &approved["participants"][0]["jid"]),
        (&json!("add"), &json!(NOBODY))
    );
    let jids: Vec<_> = listed(&app, &key, &id)
        .await
        .iter()
        .map(|g| g["jid"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(jids, [COMMUNITY, GROUP]);
}

#[tokio::test]
async fn what_others_do_in_a_group_arrives_as_events() {
    let app = TestApp::spawn().await;
    let key = app.key("acme", "read,send,manage").await;
    let id = session_with_groups(&app, &key).await;
    let fake = app.fake.clone().expect("the fake adapter");
    let session = SessionId::parse(&id).unwrap();
    let jid = |s: &str| Jid::parse(s).unwrap();
    let team = GroupJid::parse(GROUP, "jid").unwrap();

    // Alice (the team's superadmin) adds a member, then a contact creates a
    // group with the account in it, then Alice removes the account.
    fake.contact_changes_members(
        &session,
        &team,
        &jid(ALICE),
        ParticipantAction::Add,
        &[jid("14155550155@s.whatsapp.net")],
    )
    .await
    .unwrap();
    let created = fake
        .contact_creates_group(
            &session,
            &jid(PLAIN),
            &GroupSubject::parse("Weekend").unwrap(),
            &[jid(FAKE_PHONE_JID), jid(ALICE)],
        )
        .await
        .unwrap();
    fake.contact_changes_members(
        &session,
        &team,
        &jid(ALICE),
        ParticipantAction::Remove,
        &[jid(FAKE_PHONE_JID)],
    )
    .await
    .unwrap();
    // A member who is no admin changes nothing.
    assert!(
        fake.contact_changes_members(
            &session,
            &created,
            &jid(ALICE),
            ParticipantAction::Add,
            &[jid(READER)]
        )
        .await
        .is_err()
    );

    let events = group_events(&app, &key, |e| e.len() >= 3).await;
    let kinds: Vec<_> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["group.participants", "group.joined", "group.left"]);
    assert_eq!(events[0]["data"]["by"], ALICE);
    assert_eq!(
        events[0]["data"]["participants"][0]["jid"],
        "14155550155@s.whatsapp.net"
    );
    assert_eq!(events[1]["data"]["group"]["jid"], created.to_string());
    assert_eq!(events[1]["data"]["by"], PLAIN);
    assert_eq!(
        member(&events[1]["data"]["group"], PLAIN).unwrap()["role"],
        "superadmin"
    );
    assert_eq!(events[2]["data"], json!({"group": GROUP, "by": ALICE}));

    let mut jids: Vec<_> = listed(&app, &key, &id)
        .await
        .iter()
        .map(|g| g["jid"].as_str().unwrap().to_owned())
        .collect();
    let mut expected = vec![ANNOUNCEMENTS.to_owned(), created.to_string()];
    jids.sort();
    expected.sort();
    assert_eq!(jids, expected);
    // Webhooks and the stream get them like any event: `group.*` patterns.
    let hook = app
        .post(
            "/api/v1/webhooks",
            &app.key("acme", "admin").await,
            Some(json!({"url": "http://127.0.0.1:9/hook", "events": ["group.*"]})),
        )
        .await;
    assert_eq!(hook.status(), StatusCode::CREATED);
}

/// The message `id` of `session` once `done` holds for it.
async fn message_until(
    app: &TestApp,
    key: &str,
    session: &str,
    id: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    eventually("the message gets there", || async {
        let m = json(
            app.get(&format!("/api/v1/sessions/{session}/messages/{id}"), key)
                .await,
        )
        .await;
        done(&m).then_some(m)
    })
    .await
}

#[tokio::test]
async fn group_messages_go_out_to_members_and_come_in_from_them() {
    let app = TestApp::spawn_tuned(|c| c.messages.send_rate = 0).await;
    let key = app.key("acme", "read,send,manage").await;
    let id = session_with_groups(&app, &key).await;
    let fake = app.fake.clone().expect("the fake adapter");
    let session = SessionId::parse(&id).unwrap();
    let messages = format!("/api/v1/sessions/{id}/messages");
    let send = |to: &str, text: &str| {
        app.post(
            &messages,
            &key,
            Some(json!({"to": to, "type": "text", "text": text})),
        )
    };

    // To the team: every member's devices have it (delivered); not every
    // member reads at once, so it stays delivered.
    let res = send(GROUP, "Hello team").await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let sent = json(res).await;
    assert_eq!(sent["chat"], GROUP);
    let mid = sent["id"].as_str().unwrap().to_owned();
    let m = message_until(&app, &key, &id, &mid, |m| m["status"] == "delivered").await;
    assert_eq!(m["to"], GROUP);
    assert!(fake.actions(&session).iter().any(|a| matches!(
        a,
        wagate_whatsapp_port::FakeAction::Sent { id, to } if id.as_str() == mid && to.to_string() == GROUP
    )));
    // An announcement group where the account is no admin, and a group it
    // is not in: refused for good.
    for to in [ANNOUNCEMENTS, COMMUNITY] {
        let refused = json(send(to, "Hi").await).await;
        let rid = refused["id"].as_str().unwrap().to_owned();
        let m = message_until(&app, &key, &id, &rid, |m| m["status"] == "failed").await;
        assert_eq!(m["error"]["code"], "rejected", "{to}");
    }

    // A member writes in the group: the chat is the group, the sender the member.
    let team = GroupJid::parse(GROUP, "jid").unwrap();
    let text = |t: &str| wagate_whatsapp_port::OutgoingContent::Text(t.into());
    let got = fake
        .member_writes(
            &session,
            &team,
            &Jid::parse(ALICE_LID).unwrap(),
            text("Hi all"),
        )
        .await
        .unwrap();
    assert!(
        fake.member_writes(
            &session,
            &team,
            &Jid::parse(NOBODY).unwrap(),
            text("let me in")
        )
        .await
        .is_err()
    );
    let events = eventually("the group message arrives", || async {
        let page = json(app.get("/api/v1/events?types=message.received", &key).await).await;
        let events = page["data"].as_array().unwrap().clone();
        (!events.is_empty()).then_some(events)
    })
    .await;
    assert_eq!(events.len(), 1);
    let received = &events[0]["data"];
    assert_eq!(received["id"], got.as_str());
    assert_eq!(
        (
            &received["chat"],
            &received["from"],
            &received["fromPn"],
            &received["fromLid"]
        ),
        (
            &json!(GROUP),
            &json!(ALICE),
            &json!(ALICE),
            &json!(ALICE_LID)
        )
    );
    let chat = json(
        app.get(
            &format!("/api/v1/sessions/{id}/messages?chat={GROUP}"),
            &key,
        )
        .await,
    )
    .await;
    assert_eq!(chat["data"].as_array().unwrap().len(), 2);

    // Read receipts and reactions in the group.
    let res = app
        .post(
            &format!("/api/v1/sessions/{id}/chats/{GROUP}/read"),
            &key,
            Some(json!({"messageIds": [got.as_str()]})),
        )
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = app
        .post(
            &format!("/api/v1/sessions/{id}/messages/{}/reaction", got.as_str()),
            &key,
            Some(json!({"emoji": "👍"})),
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let actions = fake.actions(&session);
    assert!(actions.iter().any(|a| matches!(
        a,
        wagate_whatsapp_port::FakeAction::MarkedRead { chat, .. } if chat.to_string() == GROUP
    )));
    assert!(actions.iter().any(|a| matches!(
        a,
        wagate_whatsapp_port::FakeAction::Reacted { chat, emoji, .. } if chat.to_string() == GROUP && emoji == "👍"
    )));
    // Channels are still refused.
    let e = assert_error(
        send("120363144038483540@newsletter", "x").await,
        400,
        "invalid_argument",
    )
    .await;
    assert_eq!(e["details"]["field"], "to");
}

/// The `message.status` events of message `id` once `done` holds for them.
async fn statuses_of(
    app: &TestApp,
    key: &str,
    id: &str,
    done: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    eventually("the statuses get there", || async {
        let page = json(
            app.get("/api/v1/events?types=message.status&limit=1000", key)
                .await,
        )
        .await;
        let statuses: Vec<String> = page["data"]
            .as_array()
            .expect("data")
            .iter()
            .filter(|e| e["data"]["id"] == id)
            .map(|e| e["data"]["status"].as_str().unwrap_or_default().to_owned())
            .collect();
        done(&statuses).then_some(statuses)
    })
    .await
}

/// What `GET …/receipts` lists: (jid, status) in order.
fn who_has_what(page: &Value) -> Vec<(String, String)> {
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

/// A group message is `delivered` once every member it went to has it and
/// `read` once every one read it (the fake's members send their receipts
/// when told: `hold_group_receipts`, `member_receipt`); each member's
/// receipts are listed, paged; a redelivered receipt changes nothing.
#[tokio::test]
async fn a_group_message_s_status_follows_every_member_s_receipts() {
    let app = TestApp::spawn_tuned(|c| c.messages.send_rate = 0).await;
    let key = app.key("acme", "read,send,manage").await;
    let id = session_with_groups(&app, &key).await;
    let fake = app.fake.clone().expect("the fake adapter");
    let session = SessionId::parse(&id).unwrap();
    fake.hold_group_receipts(true);
    let sent = json(
        app.post(
            &format!("/api/v1/sessions/{id}/messages"),
            &key,
            Some(json!({"to": GROUP, "type": "text", "text": "Standup at 10"})),
        )
        .await,
    )
    .await;
    let mid = sent["id"].as_str().unwrap().to_owned();
    message_until(&app, &key, &id, &mid, |m| m["status"] == "sent").await;
    let receipts = format!("/api/v1/sessions/{id}/messages/{mid}/receipts");
    let page = json(app.get(&receipts, &key).await).await;
    // The members when it was sent, the account left out, by number.
    let pending = |who: &str| (who.to_owned(), "pending".to_owned());
    assert_eq!(
        who_has_what(&page),
        vec![pending(ALICE), pending(READER), pending(PLAIN)]
    );
    assert_eq!(page["data"][0]["lid"], ALICE_LID);
    assert_eq!(page["data"][0]["at"], Value::Null);

    let team = GroupJid::parse(GROUP, "jid").unwrap();
    let ids = [wagate_domain::MessageId::parse(&mid).unwrap()];
    let receipt = |who: &str, status| {
        let fake = fake.clone();
        let team = team.clone();
        let ids = ids.clone();
        let who = Jid::parse(who).unwrap();
        async move {
            fake.member_receipt(&session, &team, &who, &ids, status)
                .await
                .unwrap();
        }
    };
    use wagate_domain::MessageStatus::{Delivered, Read};
    // Alice's receipt names her by LID.
    receipt(ALICE_LID, Delivered).await;
    receipt(READER, Delivered).await;
    let m = json(
        app.get(&format!("/api/v1/sessions/{id}/messages/{mid}"), &key)
            .await,
    )
    .await;
    assert_eq!(m["status"], "sent", "one member has not got it yet");
    receipt(PLAIN, Delivered).await;
    message_until(&app, &key, &id, &mid, |m| m["status"] == "delivered").await;
    // Redelivered receipts, and reads but the last.
    receipt(PLAIN, Delivered).await;
    receipt(ALICE, Read).await;
    receipt(READER, Read).await;
    receipt(READER, Read).await;
    let m = json(
        app.get(&format!("/api/v1/sessions/{id}/messages/{mid}"), &key)
            .await,
    )
    .await;
    assert_eq!(m["status"], "delivered", "one member has not read it yet");
    receipt(PLAIN, Read).await;
    let m = message_until(&app, &key, &id, &mid, |m| m["status"] == "read").await;
    assert!(m["statusAt"]["delivered"].is_string());
    assert_eq!(
        statuses_of(&app, &key, &mid, |s| s.len() >= 3).await,
        vec!["sent", "delivered", "read"],
        "one event per status of the message, however many receipts"
    );

    // Paged by number: two, then the rest.
    let first = json(app.get(&format!("{receipts}?limit=2"), &key).await).await;
    let read = |who: &str| (who.to_owned(), "read".to_owned());
    assert_eq!(who_has_what(&first), vec![read(ALICE), read(READER)]);
    assert_eq!(first["nextCursor"], READER);
    assert!(first["data"][0]["at"].is_string());
    let rest = json(
        app.get(&format!("{receipts}?limit=2&cursor={READER}"), &key)
            .await,
    )
    .await;
    assert_eq!(who_has_what(&rest), vec![read(PLAIN)]);
    assert_eq!(rest["nextCursor"], Value::Null);
    for bad in [
        "limit=0",
        "limit=1001",
        "limit=x",
        "cursor=120363025246125486@g.us",
    ] {
        assert_error(
            app.get(&format!("{receipts}?{bad}"), &key).await,
            400,
            "invalid_argument",
        )
        .await;
    }

    // Another organization's message, an unknown one: not found.
    let other = app.key("globex", "read").await;
    assert_error(app.get(&receipts, &other).await, 404, "not_found").await;
    assert_error(
        app.get(
            &format!("/api/v1/sessions/{id}/messages/{GHOST_MESSAGE}/receipts"),
            &key,
        )
        .await,
        404,
        "not_found",
    )
    .await;

    // A one-to-one message: its one recipient, as the message stands.
    fake.hold_group_receipts(false);
    let one = json(
        app.post(
            &format!("/api/v1/sessions/{id}/messages"),
            &key,
            Some(json!({"to": READER, "type": "text", "text": "Hi"})),
        )
        .await,
    )
    .await;
    let one = one["id"].as_str().unwrap().to_owned();
    message_until(&app, &key, &id, &one, |m| m["status"] == "read").await;
    let page = json(
        app.get(
            &format!("/api/v1/sessions/{id}/messages/{one}/receipts"),
            &key,
        )
        .await,
    )
    .await;
    assert_eq!(who_has_what(&page), vec![read(READER)]);
    assert_eq!(page["data"][0]["jid"], READER);

    // A member's message: no receipts of the account's to list.
    let got = fake
        .member_writes(
            &session,
            &team,
            &Jid::parse(PLAIN).unwrap(),
            wagate_whatsapp_port::OutgoingContent::Text("ok".into()),
        )
        .await
        .unwrap();
    eventually("the member's message is recorded", || async {
        let res = app
            .get(
                &format!("/api/v1/sessions/{id}/messages/{}", got.as_str()),
                &key,
            )
            .await;
        (res.status() == StatusCode::OK).then_some(())
    })
    .await;
    let e = assert_error(
        app.get(
            &format!("/api/v1/sessions/{id}/messages/{}/receipts", got.as_str()),
            &key,
        )
        .await,
        409,
        "conflict",
    )
    .await;
    assert_eq!(e["details"]["reason"], "not_own_message");
}
