//! Messages across a `kill -9` of the gateway, both ways: none lost, none
//! duplicated.
//!
//! Out: messages accepted (202) and still waiting in the session's paced
//! queue when the gateway is killed are sent after the restart, under
//! their ids; wa-sim's contact has each exactly once. A request retried
//! with its `Idempotency-Key` after the restart gets the first answer and
//! sends nothing new.
//!
//! In: the contact writes while the gateway runs, is killed, and is down;
//! WhatsApp (wa-sim) redelivers what the gateway did not acknowledge, and
//! the event log holds exactly one `message.received` per message.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{PATIENCE, PHONE, Proc, Rig};

/// The world contact on both ends.
const PEER: &str = "14155550123";
/// Messages each way.
const N: usize = 24;

impl Rig {
    /// `POST …/messages` with `Idempotency-Key: key`, retried (same key)
    /// while the gateway is unreachable; the accepted message's id.
    async fn send_text(&self, session: &str, key: &str, text: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let sent = self
                .http
                .post(self.api(&format!("/sessions/{session}/messages")))
                .bearer_auth(&self.key)
                .header("Idempotency-Key", key)
                .json(
                    &json!({"to": format!("{PEER}@s.whatsapp.net"), "type": "text", "text": text}),
                )
                .send()
                .await;
            match sent {
                Ok(res) if res.status() == 202 => {
                    let body: Value = res.json().await.unwrap();
                    return body["id"].as_str().unwrap().to_owned();
                }
                // Down, or not connected again yet (501): the caller retries.
                Ok(res) => assert!(
                    res.status() == 501 || res.status() == 503,
                    "send {key}: {}",
                    res.status()
                ),
                Err(_) => {}
            }
            assert!(Instant::now() < deadline, "send {key} never accepted");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What wa-sim's contact received from the account: text → count.
    async fn peer_received(&self) -> BTreeMap<String, usize> {
        let got: Value = self
            .http
            .get(self.admin(&format!("/accounts/{PHONE}/messages?peer={PEER}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let mut texts = BTreeMap::new();
        for m in got["data"].as_array().unwrap() {
            *texts
                .entry(m["text"].as_str().unwrap_or_default().to_owned())
                .or_insert(0) += 1;
        }
        texts
    }

    /// The contact writes `text` to the account (wa-sim's admin API).
    async fn peer_writes(&self, text: &str) -> String {
        let res = self
            .http
            .post(self.admin(&format!("/accounts/{PHONE}/messages")))
            .json(&json!({"from": PEER, "text": text}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        res.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Every `message.received` event of `session`: message id → how many
    /// events carry it. (Other sessions linked to the same account get
    /// their own copy: WhatsApp sends to every device.)
    pub(super) async fn received_events(&self, session: &str) -> BTreeMap<String, usize> {
        let mut ids = BTreeMap::new();
        let mut after: Option<String> = None;
        loop {
            let mut url = self.api("/events?types=message.received&limit=100");
            if let Some(a) = &after {
                url.push_str(&format!("&after={a}"));
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
            let events = page["data"].as_array().unwrap();
            for e in events.iter().filter(|e| e["sessionId"] == session) {
                *ids.entry(e["data"]["id"].as_str().unwrap().to_owned())
                    .or_insert(0) += 1;
            }
            if events.is_empty() {
                return ids;
            }
            after = page["nextCursor"].as_str().map(str::to_owned);
        }
    }
}

/// Waits until `check` holds, polling.
pub(super) async fn eventually<T: std::fmt::Debug>(
    what: &str,
    mut probe: impl AsyncFnMut() -> T,
    check: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let got = probe().await;
        if check(&got) {
            return got;
        }
        assert!(Instant::now() < deadline, "{what}: never happened: {got:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The scenario; `gw` runs with `messages.send_rate` low enough that
/// accepted messages wait in the queue when the kill comes. Returns the
/// gateway it leaves running.
pub async fn no_message_lost_or_duplicated(rig: &Rig, gw: Proc, session: &str) -> Proc {
    // Out: the first half accepted, then the kill while they wait.
    let mut ids = BTreeMap::new();
    for i in 0..N / 2 {
        let id = rig
            .send_text(session, &format!("out-{i}"), &format!("out {i}"))
            .await;
        ids.insert(i, id);
    }
    // In: the contact writes while the gateway runs …
    let mut written = BTreeSet::new();
    for i in 0..N / 2 {
        written.insert(rig.peer_writes(&format!("in {i}")).await);
    }
    // The kill must find accepted messages still queued (paced), or it
    // proves nothing about them.
    let listed: Value = rig
        .http
        .get(rig.api(&format!(
            "/sessions/{session}/messages?chat={PEER}@s.whatsapp.net&limit=100"
        )))
        .bearer_auth(&rig.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let pending = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["status"] == "pending")
        .count();
    assert!(pending > 0, "nothing was pending at the kill: {listed}");
    gw.kill_nine();
    // … and while it is down.
    for i in N / 2..N {
        written.insert(rig.peer_writes(&format!("in {i}")).await);
    }
    let gw = rig.start_gateway().await;
    rig.wait_for(session, |s| s.as_ref().unwrap()["status"] == "connected")
        .await;
    // A retried request of the first half: the first answer, nothing sent.
    let again = rig.send_text(session, "out-0", "out 0").await;
    assert_eq!(again, ids[&0], "Idempotency-Key gave another message");
    for i in N / 2..N {
        let id = rig
            .send_text(session, &format!("out-{i}"), &format!("out {i}"))
            .await;
        ids.insert(i, id);
    }
    assert_eq!(
        ids.values().collect::<BTreeSet<_>>().len(),
        N,
        "message ids repeat"
    );

    let wanted: BTreeMap<String, usize> = (0..N).map(|i| (format!("out {i}"), 1)).collect();
    let got = eventually(
        "every message reached the contact",
        async || rig.peer_received().await,
        |got| got.len() >= N,
    )
    .await;
    assert_eq!(got, wanted, "lost or duplicated on the way out");

    let events = eventually(
        "every message written to the account became an event",
        async || rig.received_events(session).await,
        |got| written.iter().all(|id| got.contains_key(id)),
    )
    .await;
    let dups: Vec<_> = events.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        dups.is_empty(),
        "duplicate message.received events: {dups:?}"
    );
    assert_eq!(
        events.keys().cloned().collect::<BTreeSet<_>>(),
        written,
        "message.received events for messages never written"
    );
    println!(
        "faults: {N} messages out ({pending} of them queued at the kill) and {N} in across kill -9: none lost, none duplicated"
    );
    gw
}
