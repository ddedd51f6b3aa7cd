//! Helpers shared by the live adapter's integration tests.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use wagate_domain::{SessionErrorCode, SessionId, SystemClock};
use wagate_whatsapp_live::{Jitter, LiveConfig, LiveOptions, LiveWhatsApp, ReconnectPolicy};
use wagate_whatsapp_port::{SessionEvent, SessionEventKind, SessionEventSink};

/// The version the simulator (and offline tests) are pinned to.
pub const VERSION: (u32, u32, u32) = (2, 3000, 1042742319);

/// How long a test waits for one event before failing (never a fixed sleep:
/// the wait ends as soon as the event arrives).
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A sink that records events and lets a test wait for one.
#[derive(Debug, Default)]
pub struct WaitingSink {
    events: Mutex<Vec<SessionEvent>>,
    notify: Notify,
}

impl WaitingSink {
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
        self.events.lock().unwrap().push(event);
        self.notify.notify_waiters();
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
    init_logs();
    let config = LiveConfig {
        url: Some(url),
        version: Some(VERSION),
        store_path: store.to_path_buf(),
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
