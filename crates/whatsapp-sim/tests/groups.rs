//! Groups between a stock whatsapp-rust client and the world's contacts:
//! the `w:g2` IQs it sends, sender keys both ways (a member added later
//! gets the key, a removed one gets nothing more), members' receipts with
//! the participant, and the notifications of contacts' changes.

// Integration tests: a failed expectation should panic with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{PHONE, TestBot, admin_get, admin_post, init_logs, paired_bot};
use wagate_whatsapp_sim::{Simulator, World};
use whatsapp_rust::types::events::Event;
use whatsapp_rust::types::presence::ReceiptType;
use whatsapp_rust::{GroupCreateOptions, Jid, ParticipantType};

const ANN: &str = "14155550123";
const BOB: &str = "14155550124";
const CAROL: &str = "14155550125";
/// Known by its LID alone in groups.
const DAN: &str = "14155550126";
const DAN_LID: &str = "100000000000126";

const WORLD: &str = r#"{
  "phone": "15550001111",
  "pushName": "Sim Tester",
  "receiptDelayMs": 20,
  "contacts": {
    "14155550123@s.whatsapp.net": { "lid": "100000000000123@lid", "pushName": "Ann", "readsAfterMs": 50 },
    "14155550124@s.whatsapp.net": { "lid": "100000000000124@lid", "pushName": "Bob" },
    "14155550125@s.whatsapp.net": { "lid": "100000000000125@lid", "pushName": "Carol" },
    "14155550126@s.whatsapp.net": { "lid": "100000000000126@lid", "lidOnly": true }
  }
}"#;

fn text(s: &str) -> waproto::whatsapp::Message {
    waproto::whatsapp::Message {
        conversation: Some(s.to_owned()),
        ..Default::default()
    }
}

/// Polls what `member` decrypted in `group` until `pred` holds.
async fn wait_received(
    admin_url: &str,
    group: &str,
    member: &str,
    pred: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, log) = admin_get(
            admin_url,
            &format!("/groups/{group}/messages?member={member}"),
        )
        .await;
        assert_eq!(status, 200, "{log}");
        let data = log["data"].as_array().cloned().unwrap_or_default();
        if pred(&data) {
            return data;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{member} never got what was expected in {group}: {log}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn texts(data: &[serde_json::Value]) -> Vec<&str> {
    data.iter().filter_map(|m| m["text"].as_str()).collect()
}

/// Sends `body` to the group and waits for the server's ack.
async fn send(bot: &mut TestBot, group: &Jid, body: &str) -> String {
    let sent = bot
        .client
        .send_message(group.clone(), text(body))
        .await
        .unwrap();
    let id = sent.message_id.clone();
    bot.wait_for(
        20,
        "the server ack",
        |e| matches!(e, Event::ServerAck(a) if a.id == id && a.class.as_deref() == Some("message")),
    )
    .await;
    id
}

/// Waits for a group message with this text; returns (sender, sender_alt,
/// chat).
async fn wait_group_text(bot: &mut TestBot, body: &str) -> (Jid, Option<Jid>, Jid) {
    let info = bot.wait_text(20, body).await;
    assert!(info.source.is_group, "{:?}", info.source);
    (info.source.sender, info.source.sender_alt, info.source.chat)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sender_keys_both_ways_follow_the_membership() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(World::from_json(WORLD).unwrap())
        .await
        .unwrap();
    let admin = sim.admin_url();
    let mut bot = paired_bot(&sim, &dir.path().join("wa.db"), PHONE).await;

    // Ann creates a group with Bob, Dan and the account.
    let (status, created) = admin_post(
        &admin,
        "/groups",
        serde_json::json!({ "creator": ANN, "subject": "Team", "participants": [BOB, DAN, PHONE] }),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    let gjid = created["jid"].as_str().unwrap().to_owned();
    let group: Jid = gjid.parse().unwrap();
    bot.wait_for(
        10,
        "the create notification",
        |e| matches!(e, Event::GroupUpdate(u) if u.group_jid == group),
    )
    .await;
    let (_, shown) = admin_get(&admin, &format!("/groups/{gjid}")).await;
    assert_eq!(shown["subject"], "Team");
    let phones: Vec<(&str, bool)> = shown["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["phone"].as_str().unwrap(), p["admin"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        phones,
        [(ANN, true), (BOB, false), (DAN, false), (PHONE, false)]
    );

    // The account sees the group, LID-addressed; Dan's number stays hidden.
    let all = bot.client.groups().get_participating().await.unwrap();
    let meta = all.get(&group).expect("the group is listed");
    assert_eq!(meta.participants.len(), 4);
    let dan = meta
        .participants
        .iter()
        .find(|p| p.jid.user == DAN_LID)
        .unwrap();
    assert!(dan.jid.is_lid() && dan.phone_number.is_none(), "{dan:?}");
    let ann = meta
        .participants
        .iter()
        .find(|p| p.phone_number.as_ref().is_some_and(|n| n.user == ANN))
        .unwrap();
    assert_eq!(ann.participant_type, ParticipantType::SuperAdmin);

    // Gateway → group: every member contact decrypts, and receipts it.
    let first = send(&mut bot, &group, "hello team").await;
    for member in [ANN, BOB, DAN] {
        let got = wait_received(&admin, &gjid, member, |d| !d.is_empty()).await;
        assert_eq!(got[0]["id"], first.as_str());
        assert_eq!(got[0]["from"], PHONE);
        assert_eq!(got[0]["type"], "text");
    }
    let read = bot
        .wait_for(10, "Ann's read receipt", |e| {
            matches!(e, Event::Receipt(r) if r.message_ids.contains(&first)
                && r.r#type == ReceiptType::Read)
        })
        .await;
    let Event::Receipt(r) = &*read else {
        unreachable!()
    };
    // (whatsapp-rust leaves `is_group` unset on receipts: the chat says it.)
    assert_eq!(r.source.chat, group);
    assert_eq!(r.source.sender.user, "100000000000123");
    assert_eq!(
        r.source.sender_alt.as_ref().map(|j| j.user.to_string()),
        Some(ANN.to_owned())
    );

    // Ann adds Carol: the account is told, and its next message carries
    // the sender key to her; Bob is removed and gets nothing more.
    let (status, changed) = admin_post(
        &admin,
        &format!("/groups/{gjid}/participants"),
        serde_json::json!({ "by": ANN, "action": "add", "participants": [CAROL] }),
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    bot.wait_for(
        10,
        "the add notification",
        |e| matches!(e, Event::GroupUpdate(u) if u.group_jid == group),
    )
    .await;
    let second = send(&mut bot, &group, "welcome carol").await;
    let carol = wait_received(&admin, &gjid, CAROL, |d| !d.is_empty()).await;
    assert_eq!(texts(&carol), ["welcome carol"]);
    assert_eq!(carol[0]["id"], second.as_str());
    let (status, _) = admin_post(
        &admin,
        &format!("/groups/{gjid}/participants"),
        serde_json::json!({ "by": ANN, "action": "remove", "participants": [BOB] }),
    )
    .await;
    assert_eq!(status, 200);
    bot.wait_for(
        10,
        "the remove notification",
        |e| matches!(e, Event::GroupUpdate(u) if u.group_jid == group),
    )
    .await;
    send(&mut bot, &group, "after bob").await;
    wait_received(&admin, &gjid, CAROL, |d| d.len() == 2).await;
    let ann_got = wait_received(&admin, &gjid, ANN, |d| d.len() == 3).await;
    assert_eq!(
        texts(&ann_got),
        ["hello team", "welcome carol", "after bob"]
    );
    let (_, bob) = admin_get(&admin, &format!("/groups/{gjid}/messages?member={BOB}")).await;
    assert_eq!(
        texts(bob["data"].as_array().unwrap()),
        ["hello team", "welcome carol"]
    );

    // Member → group: the account decrypts with the member's sender key;
    // Dan is known by LID alone.
    let (status, posted) = admin_post(
        &admin,
        &format!("/groups/{gjid}/messages"),
        serde_json::json!({ "from": CAROL, "text": "hi all" }),
    )
    .await;
    assert_eq!(status, 200, "{posted}");
    let (sender, alt, chat) = wait_group_text(&mut bot, "hi all").await;
    assert_eq!(chat, group);
    assert_eq!(sender.user, "100000000000125");
    assert_eq!(alt.map(|a| a.user.to_string()), Some(CAROL.to_owned()));
    admin_post(
        &admin,
        &format!("/groups/{gjid}/messages"),
        serde_json::json!({ "from": CAROL, "text": "second from carol" }),
    )
    .await;
    wait_group_text(&mut bot, "second from carol").await;
    // Other members decrypt it too.
    let ann_got = wait_received(&admin, &gjid, ANN, |d| d.len() == 5).await;
    assert_eq!(ann_got[3]["from"], CAROL);
    let (status, _) = admin_post(
        &admin,
        &format!("/groups/{gjid}/messages"),
        serde_json::json!({ "from": DAN, "text": "from the lid" }),
    )
    .await;
    assert_eq!(status, 200);
    let (sender, alt, _) = wait_group_text(&mut bot, "from the lid").await;
    assert_eq!(sender.user, DAN_LID);
    assert!(alt.is_none(), "{alt:?}");

    // Bob is no member any more: he cannot post.
    let (status, _) = admin_post(
        &admin,
        &format!("/groups/{gjid}/messages"),
        serde_json::json!({ "from": BOB, "text": "let me in" }),
    )
    .await;
    assert_eq!(status, 409);

    bot.stop().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_group_iqs_manage_groups() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(World::from_json(WORLD).unwrap())
        .await
        .unwrap();
    let admin = sim.admin_url();
    let bot = paired_bot(&sim, &dir.path().join("wa.db"), PHONE).await;
    let groups = bot.client.groups();
    let pn = |p: &str| Jid::pn(p);

    // Create: the account is the superadmin; an unknown number is left out.
    let created = groups
        .create_group(
            GroupCreateOptions::builder()
                .subject("Ops")
                .participants(vec![
                    whatsapp_rust::wacore::iq::groups::GroupParticipantOptions::new(pn(ANN)),
                    whatsapp_rust::wacore::iq::groups::GroupParticipantOptions::new(pn(
                        "19995550000",
                    )),
                ])
                .build(),
        )
        .await
        .unwrap();
    let g = created.metadata.id.clone();
    assert_eq!(created.metadata.participants.len(), 2);
    let gjid = g.to_string();

    // Membership: add, promote, demote, remove, each with its outcome.
    let added = groups
        .add_participants(g.clone(), &[pn(BOB), pn(ANN), pn("19995550000")])
        .await
        .unwrap();
    let errors: Vec<Option<&str>> = added.iter().map(|r| r.error.as_deref()).collect();
    assert_eq!(errors, [None, Some("409"), Some("404")]);
    groups
        .promote_participants(g.clone(), &[pn(BOB)])
        .await
        .unwrap();
    let (_, shown) = admin_get(&admin, &format!("/groups/{gjid}")).await;
    assert!(
        shown["participants"][2]["admin"].as_bool().unwrap(),
        "{shown}"
    );
    groups
        .demote_participants(g.clone(), &[pn(BOB)])
        .await
        .unwrap();
    let removed = groups
        .remove_participants(g.clone(), &[pn(BOB)])
        .await
        .unwrap();
    assert!(removed[0].is_ok());

    // Subject, description (twice: the second names the first), settings.
    groups
        .set_subject(
            g.clone(),
            whatsapp_rust::GroupSubject::new("Ops 2").unwrap(),
        )
        .await
        .unwrap();
    for d in ["first", "second"] {
        groups
            .set_description(
                g.clone(),
                Some(whatsapp_rust::GroupDescription::new(d).unwrap()),
                whatsapp_rust::PreviousDescription::Resolve,
            )
            .await
            .unwrap();
    }
    groups.set_announce(g.clone(), true).await.unwrap();
    groups.set_locked(g.clone(), true).await.unwrap();
    groups
        .set_membership_approval(g.clone(), whatsapp_rust::MembershipApprovalMode::On)
        .await
        .unwrap();
    let meta = groups.get_metadata(&g).await.unwrap();
    assert_eq!(meta.subject.as_str(), "Ops 2");
    assert_eq!(meta.description.as_deref(), Some("second"));
    assert!(meta.is_announcement && meta.is_locked && meta.membership_approval);

    // Invite codes; a join request while approval is on, approved.
    let link = groups.get_invite_link(g.clone(), false).await.unwrap();
    let revoked = groups.get_invite_link(g.clone(), true).await.unwrap();
    assert_ne!(link, revoked);
    let (status, _) = admin_post(
        &admin,
        &format!("/groups/{gjid}/requests"),
        serde_json::json!({ "phone": CAROL }),
    )
    .await;
    assert_eq!(status, 200);
    let requests = groups.get_membership_requests(g.clone()).await.unwrap();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].jid.user, CAROL);
    let approved = groups
        .approve_membership_requests(g.clone(), &[pn(CAROL)])
        .await
        .unwrap();
    assert!(approved[0].is_ok());
    let (_, shown) = admin_get(&admin, &format!("/groups/{gjid}")).await;
    assert_eq!(
        shown["participants"].as_array().unwrap().len(),
        3,
        "{shown}"
    );

    // A member (not admin) may not change settings: Ann's group, joined by
    // its invite code.
    let (_, other) = admin_post(
        &admin,
        "/groups",
        serde_json::json!({ "creator": ANN, "subject": "Ann's", "participants": [BOB] }),
    )
    .await;
    let other_jid: Jid = other["jid"].as_str().unwrap().parse().unwrap();
    let (_, info) = admin_get(
        &admin,
        &format!("/groups/{}", other["jid"].as_str().unwrap()),
    )
    .await;
    let code = info["invite"].as_str().unwrap();
    let joined = groups.join_with_invite_code(code).await.unwrap();
    assert_eq!(joined.group_jid(), &other_jid);
    let refused = groups.set_announce(other_jid.clone(), true).await;
    assert!(refused.is_err(), "{refused:?}");
    groups.leave(other_jid.clone()).await.unwrap();
    let listed = groups.get_participating().await.unwrap();
    assert!(listed.contains_key(&g) && !listed.contains_key(&other_jid));
    assert!(groups.get_metadata(&other_jid).await.is_err());

    bot.stop().await;
    sim.shutdown().await;
}
