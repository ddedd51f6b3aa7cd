//! Shared harness: a stock whatsapp-rust `Bot` pointed at a simulator, with
//! its events funneled into a channel the test waits on.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use whatsapp_rust::bot::{Bot, BotHandle};
use whatsapp_rust::store::SqliteStore;
use whatsapp_rust::transport::TokioWebSocketTransportFactory;
use whatsapp_rust::types::events::Event;
use whatsapp_rust::types::message::MessageInfo;
use whatsapp_rust::waproto::whatsapp::Message;
use whatsapp_rust::{Client, TokioRuntime};

/// The version the crate compiles in; pinned so no HTTPS fetch happens.
pub const VERSION: (u32, u32, u32) = (2, 3000, 1_042_742_319);

/// A phone number the tests pair as.
pub const PHONE: &str = "15550001111";

pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// A running bot and the events it has seen.
pub struct TestBot {
    pub handle: Option<BotHandle>,
    pub client: Arc<Client>,
    events: mpsc::UnboundedReceiver<Arc<Event>>,
}

impl TestBot {
    /// Starts a bot on the SQLite store at `db`, connecting to `url`.
    pub async fn start(url: &str, db: &Path) -> Self {
        Self::start_with(url, db, None).await
    }

    /// As [`TestBot::start`], asking to pair by phone-number code.
    pub async fn start_with(
        url: &str,
        db: &Path,
        pair_code: Option<whatsapp_rust::pair_code::PairCodeOptions>,
    ) -> Self {
        let store = SqliteStore::new(&db.display().to_string())
            .await
            .expect("sqlite store");
        Self::start_on_store(url, store, pair_code).await
    }

    /// As [`TestBot::start_with`], on an open store: bots given clones of
    /// one store share its device (and its database pool).
    pub async fn start_on_store(
        url: &str,
        store: SqliteStore,
        pair_code: Option<whatsapp_rust::pair_code::PairCodeOptions>,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut builder = Bot::builder()
            .with_backend(store)
            .with_transport_factory(TokioWebSocketTransportFactory::new().with_url(url))
            .with_http_client(whatsapp_rust::http::UreqHttpClient::new())
            .with_runtime(TokioRuntime)
            .with_version(VERSION)
            .on_event(move |event, _client| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(event);
                }
            });
        if let Some(options) = pair_code {
            builder = builder.with_pair_code(options);
        }
        let bot = builder.build().await.expect("bot builds");
        let client = bot.client();
        let handle = bot.spawn();
        Self {
            handle: Some(handle),
            client,
            events: rx,
        }
    }

    /// Waits up to `secs` for an event matching `pred`, skipping others.
    pub async fn wait_for(
        &mut self,
        secs: u64,
        what: &str,
        pred: impl Fn(&Event) -> bool,
    ) -> Arc<Event> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(e)) if pred(&e) => return e,
                Ok(Some(_)) => {}
                Ok(None) => panic!("event stream ended while waiting for {what}"),
                Err(_) => panic!("no {what} within {secs} s"),
            }
        }
    }

    /// Waits up to `secs` for an incoming message whose text is `body`;
    /// returns how it arrived (sender, chat, id…).
    pub async fn wait_text(&mut self, secs: u64, body: &str) -> MessageInfo {
        let text_is = |m: &Message| m.conversation.as_deref() == Some(body);
        let e = self
            .wait_for(secs, &format!("the message '{body}'"), |e| {
                matches!(e, Event::Messages(batch) if batch.messages.iter().any(|m| text_is(&m.message)))
            })
            .await;
        let Event::Messages(batch) = &*e else {
            unreachable!()
        };
        let m = batch.messages.iter().find(|m| text_is(&m.message));
        MessageInfo::clone(&m.unwrap().info)
    }

    /// Every event seen so far (non-blocking).
    pub fn drain(&mut self) -> Vec<Arc<Event>> {
        let mut out = Vec::new();
        while let Ok(e) = self.events.try_recv() {
            out.push(e);
        }
        out
    }

    /// Waits for the next QR code and returns it.
    pub async fn next_qr(&mut self) -> String {
        let e = self
            .wait_for(20, "a QR code", |e| matches!(e, Event::PairingQrCode(_)))
            .await;
        match &*e {
            Event::PairingQrCode(q) => q.code.clone(),
            _ => unreachable!(),
        }
    }

    pub async fn wait_connected(&mut self, secs: u64) {
        self.wait_for(secs, "Connected", |e| matches!(e, Event::Connected(_)))
            .await;
    }

    /// Stops the bot and waits for its run loop to end.
    pub async fn stop(mut self) {
        if let Some(h) = self.handle.take() {
            tokio::time::timeout(Duration::from_secs(10), h.shutdown())
                .await
                .expect("bot stops");
        }
    }
}

/// POSTs JSON to the simulator's admin API.
pub async fn admin_post(
    admin_url: &str,
    path: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let resp = reqwest::Client::new()
        .post(format!("{admin_url}{path}"))
        .json(&body)
        .send()
        .await
        .expect("admin API reachable");
    let status = resp.status().as_u16();
    let json = resp.json().await.unwrap_or(serde_json::Value::Null);
    (status, json)
}

/// GETs JSON from the simulator's admin API.
pub async fn admin_get(admin_url: &str, path: &str) -> (u16, serde_json::Value) {
    let resp = reqwest::Client::new()
        .get(format!("{admin_url}{path}"))
        .send()
        .await
        .expect("admin API reachable");
    let status = resp.status().as_u16();
    let json = resp.json().await.unwrap_or(serde_json::Value::Null);
    (status, json)
}

/// Starts a bot on a fresh store at `db`, scans its QR code as `phone` and
/// waits until it is Connected.
pub async fn paired_bot(
    sim: &wagate_whatsapp_sim::SimulatorHandle,
    db: &Path,
    phone: &str,
) -> TestBot {
    let mut bot = TestBot::start(&sim.url(), db).await;
    let qr = bot.next_qr().await;
    scan_qr(sim, &qr, phone).await;
    bot.wait_connected(30).await;
    bot
}

/// Has the simulator's phone `phone` scan `qr` (`POST /admin/scan-qr`);
/// the answer (the linked device's `jid`).
pub async fn scan_qr(
    sim: &wagate_whatsapp_sim::SimulatorHandle,
    qr: &str,
    phone: &str,
) -> serde_json::Value {
    let (status, linked) = admin_post(
        &sim.admin_url(),
        "/scan-qr",
        serde_json::json!({ "qr": qr, "phone": phone }),
    )
    .await;
    assert_eq!(status, 200, "scan-qr: {linked}");
    linked
}

/// The world the contact tests use.
pub const WORLD: &str = r#"{
  "phone": "15550001111",
  "pushName": "Sim Tester",
  "contacts": {
    "14155550123@s.whatsapp.net": {
      "picture": { "id": "1712345678", "url": "https://pps.whatsapp.net/v/t61/abc.jpg",
                   "directPath": "/v/t61/abc.jpg", "hash": "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=" },
      "about": { "text": "Hey there!", "setAt": "2024-01-01T00:00:00Z" },
      "lid": "123456789012345@lid"
    },
    "14155550199@s.whatsapp.net": {},
    "14155550100@s.whatsapp.net": { "fail": "timeout" },
    "14155550101@s.whatsapp.net": { "fail": "unavailable" },
    "14155550155@s.whatsapp.net": {
      "picture": { "id": "1700000000", "url": "https://pps.whatsapp.net/v/t61/hidden.jpg" },
      "about": { "text": "private", "setAt": null },
      "hidden": ["picture", "about"]
    }
  }
}"#;
