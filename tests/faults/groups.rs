//! Group messages across a `kill -9` of the gateway: none lost, none
//! duplicated.
//!
//! Two world contacts post a burst to a group the account is in (wa-sim's
//! `POST /admin/groups/{jid}/messages`, each encrypted with the member's
//! sender key); the gateway is killed while the burst is still coming, and
//! the rest arrives while it is down. WhatsApp (wa-sim) redelivers what the
//! gateway did not acknowledge; after the restart the group's chat lists
//! every message exactly once, and the event log holds exactly one
//! `message.received` per message.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::messages::eventually;
use super::{PATIENCE, PHONE, Proc, Rig};

/// The contact who creates the group (and posts to it).
const CREATOR: &str = "14155550123";
/// The other member contact who posts.
const MEMBER: &str = "14155550199";
/// Messages in the burst.
const N: usize = 30;
/// How many the gateway may have seen when it is killed.
const KILL_AFTER: usize = N / 3;

impl Rig {
    /// `GET …/messages?chat={group}`, every page: message id → how many
    /// times it is listed.
    async fn listed(&self, session: &str, group: &str) -> BTreeMap<String, usize> {
        let mut ids = BTreeMap::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut url = self.api(&format!(
                "/sessions/{session}/messages?chat={group}&limit=100"
            ));
            if let Some(c) = &cursor {
                url.push_str(&format!("&cursor={c}"));
            }
            let page: Value = self
                .http
                .get(url)
                .bearer_auth(&self.key)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            for m in page["data"].as_array().unwrap() {
                assert_eq!(m["chat"], group, "another chat's message listed: {m}");
                *ids.entry(m["id"].as_str().unwrap().to_owned()).or_insert(0) += 1;
            }
            match page["nextCursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return ids,
            }
        }
    }
}

/// A member posts `text` to the group; its message id.
async fn post(http: &reqwest::Client, url: &str, from: &str, text: &str) -> String {
    let res = http
        .post(url)
        .json(&json!({"from": from, "text": text}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{from} could not post {text}");
    res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The scenario on the connected `session`. Returns the gateway it leaves
/// running.
pub async fn no_group_message_lost_or_duplicated(rig: &Rig, gw: Proc, session: &str) -> Proc {
    let created: Value = rig
        .http
        .post(rig.admin("/groups"))
        .json(&json!({"creator": CREATOR, "subject": "Burst", "participants": [MEMBER, PHONE]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let group = created["jid"].as_str().unwrap().to_owned();
    // The account is in it before the burst (the `create` notification).
    eventually(
        "the gateway knows the group",
        async || {
            rig.http
                .get(rig.api(&format!("/sessions/{session}/groups/{group}")))
                .bearer_auth(&rig.key)
                .send()
                .await
                .unwrap()
                .status()
        },
        |s| *s == 200,
    )
    .await;

    // The burst: the members take turns, without pause; the kill comes
    // once a third of it is posted, and the rest is posted while the
    // gateway is down.
    let posted = Arc::new(AtomicUsize::new(0));
    let burst = {
        let (http, url, posted) = (
            rig.http.clone(),
            rig.admin(&format!("/groups/{group}/messages")),
            posted.clone(),
        );
        tokio::spawn(async move {
            let mut ids = BTreeSet::new();
            for i in 0..N {
                let from = if i % 2 == 0 { CREATOR } else { MEMBER };
                ids.insert(post(&http, &url, from, &format!("burst {i}")).await);
                posted.fetch_add(1, Ordering::SeqCst);
            }
            ids
        })
    };
    let deadline = Instant::now() + PATIENCE;
    while posted.load(Ordering::SeqCst) < KILL_AFTER {
        assert!(Instant::now() < deadline, "the burst never got going");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    gw.kill_nine();
    let at_kill = posted.load(Ordering::SeqCst);
    let written = burst.await.unwrap();
    assert_eq!(written.len(), N, "wa-sim gave two posts one id");
    assert!(at_kill < N, "the burst was over before the kill");

    let gw = rig.start_gateway().await;
    rig.wait_for(session, |s| s.as_ref().unwrap()["status"] == "connected")
        .await;
    let listed = eventually(
        "every group message is listed after the restart",
        async || rig.listed(session, &group).await,
        |got| written.iter().all(|id| got.contains_key(id)),
    )
    .await;
    let twice: Vec<_> = listed.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "group messages listed twice: {twice:?}");
    assert_eq!(
        listed.keys().cloned().collect::<BTreeSet<_>>(),
        written,
        "the group's chat lists messages nobody posted"
    );

    let events = rig.received_events(session).await;
    for id in &written {
        assert_eq!(
            events.get(id),
            Some(&1),
            "message.received events of group message {id}"
        );
    }
    println!(
        "faults: {N} group messages from 2 members ({at_kill} posted before the kill) across kill -9: each listed once, one event each"
    );
    gw
}
