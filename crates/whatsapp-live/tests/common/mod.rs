//! Helpers shared by the live adapter's integration tests.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use wagate_domain::{Jid, SessionErrorCode, SessionId, SystemClock};
use wagate_whatsapp_live::{
    Jitter, KeyStoreLocation, LiveConfig, LiveOptions, LiveWhatsApp, ReconnectPolicy,
};
use wagate_whatsapp_port::StatusUpdate;
use wagate_whatsapp_port::{
    InboundMessage, NotRecorded, SessionEvent, SessionEventKind, SessionEventSink,
};
use wagate_whatsapp_sim::World;

/// The version the simulator (and offline tests) are pinned to.
pub const VERSION: (u32, u32, u32) = (2, 3000, 1042742319);

/// How long a test waits for one event before failing (never a fixed sleep:
/// the wait ends as soon as the event arrives).
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A sink that records events and lets a test wait for one.
#[derive(Debug, Default)]
pub struct WaitingSink {
    events: Mutex<Vec<SessionEvent>>,
    /// When each event was published, Unix milliseconds (beside `events`).
    published_ms: Mutex<Vec<u64>>,
    notify: Notify,
    /// Every message recorded (deduplicated like a real sink), and how many
    /// record calls saw each (session, chat, sender, id) again.
    messages: Mutex<Vec<(SessionId, InboundMessage)>>,
    /// How many record calls were made.
    record_calls: std::sync::atomic::AtomicUsize,
    /// How many of the next record calls fail.
    failing: std::sync::atomic::AtomicUsize,
    /// The id of every message offered to a record call that succeeded,
    /// duplicates included.
    offered: Mutex<Vec<String>>,
}

/// Now, in Unix milliseconds (the simulator's clock for its login records).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl WaitingSink {
    /// When each `Connected` was published, Unix milliseconds, in order.
    pub fn connected_ms(&self) -> Vec<u64> {
        let events = self.events.lock().unwrap();
        let times = self.published_ms.lock().unwrap();
        events
            .iter()
            .zip(times.iter())
            .filter(|(e, _)| matches!(e.kind, SessionEventKind::Connected { .. }))
            .map(|(_, t)| *t)
            .collect()
    }

    pub fn messages(&self) -> Vec<(SessionId, InboundMessage)> {
        self.messages.lock().unwrap().clone()
    }

    /// How many successful record calls offered message `id`.
    pub fn times_offered(&self, id: &str) -> usize {
        self.offered
            .lock()
            .unwrap()
            .iter()
            .filter(|o| *o == id)
            .count()
    }

    pub fn record_calls(&self) -> usize {
        self.record_calls.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Makes the next `n` record calls fail (as a database that is down).
    pub fn fail_next_records(&self, n: usize) {
        self.failing.store(n, std::sync::atomic::Ordering::SeqCst);
    }

    /// Waits until a recorded message matches `want`.
    pub async fn wait_message(
        &self,
        what: &str,
        want: impl Fn(&InboundMessage) -> bool,
    ) -> InboundMessage {
        let found = tokio::time::timeout(PATIENCE, async {
            loop {
                let notified = self.notify.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if let Some((_, m)) = self.messages.lock().unwrap().iter().find(|(_, m)| want(m)) {
                    return m.clone();
                }
                notified.await;
            }
        })
        .await;
        match found {
            Ok(m) => m,
            Err(_) => panic!(
                "no {what} message recorded within {PATIENCE:?}; got {:#?}",
                self.messages()
            ),
        }
    }

    /// Waits until `cond` holds of the sink (checked on every event or record).
    pub async fn wait_until(&self, what: &str, cond: impl Fn(&Self) -> bool) {
        let ok = tokio::time::timeout(PATIENCE, async {
            loop {
                let notified = self.notify.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if cond(self) {
                    return;
                }
                notified.await;
            }
        })
        .await;
        assert!(
            ok.is_ok(),
            "{what} did not happen within {PATIENCE:?}; events {:#?}",
            self.events()
        );
    }

    pub fn events(&self) -> Vec<SessionEvent> {
        self.events.lock().unwrap().clone()
    }

    /// How many events have arrived so far (a cursor for `wait_after`).
    pub fn mark(&self) -> usize {
        self.events.lock().unwrap().len()
    }

    /// Waits for the first event of `session` at or after position `from`
    /// that matches `want`, and returns it with its position.
    pub async fn wait_after(
        &self,
        from: usize,
        session: &SessionId,
        what: &str,
        want: impl Fn(&SessionEventKind) -> bool,
    ) -> (usize, SessionEventKind) {
        let found = tokio::time::timeout(PATIENCE, async {
            loop {
                let notified = self.notify.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                {
                    let events = self.events.lock().unwrap();
                    if let Some((i, e)) = events
                        .iter()
                        .enumerate()
                        .skip(from)
                        .find(|(_, e)| e.session == *session && want(&e.kind))
                    {
                        return (i, e.kind.clone());
                    }
                }
                notified.await;
            }
        })
        .await;
        match found {
            Ok(found) => found,
            Err(_) => panic!(
                "no {what} event for {session} within {PATIENCE:?}; got {:#?}",
                self.events()
            ),
        }
    }
}

#[async_trait]
impl SessionEventSink for WaitingSink {
    async fn publish(&self, event: SessionEvent) {
        // Both under the events' lock: a time per event, in step.
        let mut events = self.events.lock().unwrap();
        self.published_ms.lock().unwrap().push(unix_ms());
        events.push(event);
        drop(events);
        self.notify.notify_waiters();
    }

    async fn record_messages(
        &self,
        session: &SessionId,
        messages: &[InboundMessage],
    ) -> Result<(), NotRecorded> {
        use std::sync::atomic::Ordering;
        self.record_calls.fetch_add(1, Ordering::SeqCst);
        let failing = self
            .failing
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if failing.is_ok() {
            self.notify.notify_waiters();
            return Err(NotRecorded("the test database is down".into()));
        }
        {
            let mut recorded = self.messages.lock().unwrap();
            let mut offered = self.offered.lock().unwrap();
            for m in messages {
                offered.push(m.id.to_string());
                let seen = recorded.iter().any(|(s, r)| {
                    s == session && r.id == m.id && r.chat == m.chat && r.sender == m.sender
                });
                if !seen {
                    recorded.push((*session, m.clone()));
                }
            }
        }
        self.notify.notify_waiters();
        Ok(())
    }
}

/// Jitter that always answers the middle: exact backoff values.
#[derive(Debug)]
pub struct NoJitter;

impl Jitter for NoJitter {
    fn sample(&self) -> f64 {
        0.5
    }
}

/// Fast, deterministic reconnects for tests.
pub fn fast_options() -> LiveOptions {
    LiveOptions {
        reconnect: ReconnectPolicy {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(400),
            jitter: 0.0,
        },
        jitter: Arc::new(NoJitter),
        stop_timeout: Duration::from_secs(10),
        logins_at_once: wagate_whatsapp_live::DEFAULT_LOGINS_AT_ONCE,
    }
}

/// Logs to the test output when `RUST_LOG` is set.
pub fn init_logs() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

pub async fn start(
    url: String,
    store: &std::path::Path,
    sink: Arc<WaitingSink>,
) -> Arc<LiveWhatsApp> {
    start_on(url, KeyStoreLocation::Sqlite(store.to_path_buf()), sink).await
}

/// [`start`] with the device keys wherever `store` says.
pub async fn start_on(
    url: String,
    store: KeyStoreLocation,
    sink: Arc<WaitingSink>,
) -> Arc<LiveWhatsApp> {
    init_logs();
    let config = LiveConfig {
        url: Some(url),
        version: Some(VERSION),
        store,
    };
    LiveWhatsApp::start_with(config, sink, Arc::new(SystemClock), fast_options())
        .await
        .expect("the adapter starts")
}

pub fn session(n: u32) -> SessionId {
    SessionId::parse(&format!("sess_01HZY0N4Q8ZK3J4M7ZC9W4X{n:03}")).unwrap()
}

pub fn is_unreachable(kind: &SessionEventKind) -> bool {
    matches!(kind, SessionEventKind::Disconnected { error: Some(e) } if e.code == SessionErrorCode::Unreachable)
}

/// A local port nobody listens on.
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The simulator's phone.
pub const PHONE: &str = "15550001111";
/// A friend of the phone in [`friend_world`].
pub const FRIEND: &str = "14155550123";

/// The simulator's phone and one friend (with a LID), for messaging.
pub fn friend_world() -> World {
    World::from_json(
        r#"{
          "phone": "15550001111",
          "pushName": "Wagate Sim",
          "contacts": {
            "14155550123@s.whatsapp.net": { "lid": "123456789012345@lid" }
          }
        }"#,
    )
    .unwrap()
}

pub fn jid(s: &str) -> Jid {
    Jid::parse(s).unwrap()
}

/// The status update of message `id` that `kind` carries, if any.
pub fn status_of<'a>(kind: &'a SessionEventKind, id: &str) -> Option<&'a StatusUpdate> {
    match kind {
        SessionEventKind::MessageStatus(u) if u.ids.iter().any(|i| i.as_str() == id) => Some(u),
        _ => None,
    }
}
