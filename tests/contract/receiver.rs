//! A webhook receiver for tests: a small axum server on loopback that
//! records every request it gets and answers as the test scripts it (200
//! unless told otherwise). Signatures are checked with the reference
//! `standardwebhooks` library, as a customer's receiver would.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::sync::mpsc;

/// How long a test waits for a delivery before failing (a generous bound
/// for a loaded machine; waits end as soon as the delivery arrives).
pub const PATIENCE: Duration = Duration::from_secs(30);

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Hit {
    /// Its path.
    pub path: String,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body, as sent.
    pub body: Bytes,
}

impl Hit {
    /// Whether the reference library verifies it with `secret`.
    pub fn verifies_with(&self, secret: &str) -> bool {
        standardwebhooks::Webhook::new(secret)
            .and_then(|w| w.verify(&self.body, &self.headers))
            .is_ok()
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    /// The body as JSON (the event object).
    pub fn event(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    /// `webhook-id`: the event id.
    pub fn id(&self) -> &str {
        self.header("webhook-id")
    }
}

/// An answer the receiver gives.
#[derive(Debug, Clone, Copy)]
pub enum Reply {
    /// This status, body "answer".
    Status(u16),
    /// `302 Found` to this location.
    Redirect(&'static str),
    /// Never answers (the request is recorded, the connection stays open).
    Hang,
}

#[derive(Debug)]
struct Shared {
    hits: mpsc::UnboundedSender<Hit>,
    script: Mutex<HashMap<String, VecDeque<Reply>>>,
    always: Mutex<HashMap<String, Reply>>,
}

/// The receiver; stops when dropped.
#[derive(Debug)]
pub struct Receiver {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    hits: mpsc::UnboundedReceiver<Hit>,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let scripted = shared
        .script
        .lock()
        .expect("script")
        .get_mut(&path)
        .and_then(VecDeque::pop_front);
    let reply = scripted
        .or_else(|| shared.always.lock().expect("always").get(&path).copied())
        .unwrap_or(Reply::Status(200));
    let _ = shared.hits.send(Hit {
        path,
        headers,
        body,
    });
    match reply {
        Reply::Status(s) => (
            StatusCode::from_u16(s).expect("a status"),
            "answer".to_owned(),
        )
            .into_response(),
        Reply::Redirect(to) => (StatusCode::FOUND, [(header::LOCATION, to)]).into_response(),
        Reply::Hang => std::future::pending().await,
    }
}

impl Receiver {
    /// A receiver on a free loopback port.
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0".parse().expect("address")).await
    }

    /// A receiver on `addr`.
    pub async fn start_on(addr: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let (tx, hits) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            hits: tx,
            script: Mutex::default(),
            always: Mutex::default(),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            base: format!("http://127.0.0.1:{port}"),
            hits,
            shared,
            task,
        }
    }

    /// The URL of `path` on this receiver.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Answers the next requests to `path` with `replies`, in turn.
    pub fn script(&self, path: &str, replies: &[Reply]) {
        self.shared
            .script
            .lock()
            .expect("script")
            .insert(path.to_owned(), replies.iter().copied().collect());
    }

    /// Answers every request to `path` (once its script is used up) with `reply`.
    pub fn always(&self, path: &str, reply: Reply) {
        self.shared
            .always
            .lock()
            .expect("always")
            .insert(path.to_owned(), reply);
    }

    /// The next request, failing after [`PATIENCE`].
    pub async fn next(&mut self) -> Hit {
        tokio::time::timeout(PATIENCE, self.hits.recv())
            .await
            .expect("no delivery came")
            .expect("receiver running")
    }

    /// The next request to `path` whose event satisfies `wanted`, skipping
    /// others.
    pub async fn next_where(&mut self, path: &str, wanted: impl Fn(&Value) -> bool) -> Hit {
        loop {
            let hit = self.next().await;
            if hit.path == path && wanted(&hit.event()) {
                return hit;
            }
        }
    }

    /// A request already received, if any (without waiting).
    pub fn try_next(&mut self) -> Option<Hit> {
        self.hits.try_recv().ok()
    }
}
