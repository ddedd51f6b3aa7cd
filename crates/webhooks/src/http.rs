//! [`HttpTransport`]: the [`WebhookTransport`] on reqwest.
//!
//! ## Why the SSRF rule cannot be bypassed at delivery time
//!
//! The rule must hold for the address the gateway *connects to*, not for
//! what a name resolved to when the webhook was created (a name can be made
//! to resolve elsewhere later, or differently on each lookup: DNS
//! rebinding). Every way this client reaches an address is covered:
//!
//! - **Names** are resolved only by [`PolicyResolver`], the client's
//!   resolver: it resolves, checks every address with
//!   [`AddressPolicy::check_ip`], and hands the connector exactly the
//!   addresses it checked (refusing the name when any is not allowed). The
//!   connector connects to nothing else, and does not resolve again, so
//!   there is no window between the check and the connect.
//! - **Address literals** (`http://10.0.0.1/`, `http://[::1]/`, and the
//!   numeric forms the URL parser turns into addresses, such as
//!   `http://2130706433/`) skip the resolver; [`HttpTransport::send`]
//!   checks them first, on the URL exactly as the client parses it.
//! - **No proxy**: environment proxies (`HTTP_PROXY`, …) are ignored, so the
//!   connection goes to the checked address and nowhere else.
//! - **No redirects**: a `3xx` is an answer (a failed delivery), never a
//!   request to another host.
//! - **Pooled connections** are reused only for the same scheme, host and
//!   port, and were made to an address checked when they were opened.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use wagate_domain::WebhookUrl;

use crate::targets::{Host, client_host};
use crate::{AddressPolicy, Answer, SendError, TargetRefused, WebhookTransport};

/// How much of an answer's body is read (and kept): 64 KiB.
pub const MAX_ANSWER_BODY: usize = 64 * 1024;

/// Resolves names with the system resolver and lets through only addresses
/// the policy allows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PolicyResolver {
    policy: AddressPolicy,
}

impl PolicyResolver {
    /// A resolver under `policy`.
    pub(crate) fn new(policy: AddressPolicy) -> Self {
        Self { policy }
    }
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if addrs.is_empty() {
                return Err(TargetRefused(format!("the host '{host}' does not resolve")).into());
            }
            // Every address must be allowed, as at creation.
            for a in &addrs {
                policy.check_ip(a.ip())?;
            }
            Ok::<Addrs, Box<dyn std::error::Error + Send + Sync>>(Box::new(addrs.into_iter()))
        })
    }
}

/// Delivers over HTTP(S) with reqwest (rustls): `POST`, `Content-Type:
/// application/json`, redirects not followed, one timeout for the whole
/// exchange (connect, answer and the body read), no proxy, and the SSRF
/// rule checked against the address actually connected to (see the
/// module documentation).
#[derive(Debug, Clone)]
pub struct HttpTransport {
    client: reqwest::Client,
    policy: AddressPolicy,
}

impl HttpTransport {
    /// A transport under `policy`, giving up on an exchange after `timeout`.
    ///
    /// # Errors
    ///
    /// [`SendError::Other`] when the HTTP client cannot be built (TLS
    /// setup).
    pub fn new(policy: AddressPolicy, timeout: Duration) -> Result<Self, SendError> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(timeout)
            .dns_resolver(Arc::new(PolicyResolver { policy }))
            .user_agent(concat!("wagate-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SendError::Other(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self { client, policy })
    }
}

/// The error's whole chain, for people (reqwest's top message alone says
/// little: "error sending request").
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// The policy's refusal inside `e`, if that is what failed.
pub(crate) fn refusal(e: &(dyn std::error::Error + 'static)) -> Option<TargetRefused> {
    let mut source = Some(e);
    while let Some(s) = source {
        if let Some(r) = s.downcast_ref::<TargetRefused>() {
            return Some(r.clone());
        }
        source = s.source();
    }
    None
}

fn send_error(e: &reqwest::Error) -> SendError {
    if let Some(r) = refusal(e) {
        SendError::Refused(r)
    } else if e.is_timeout() {
        SendError::Timeout
    } else if e.is_connect() || e.is_request() {
        SendError::Connect(chain(e))
    } else {
        SendError::Other(chain(e))
    }
}

#[async_trait]
impl WebhookTransport for HttpTransport {
    async fn send(
        &self,
        url: &WebhookUrl,
        headers: &[(&'static str, String)],
        body: &str,
    ) -> Result<Answer, SendError> {
        // Address literals never reach the resolver: check them here.
        match client_host(url).map_err(SendError::Refused)? {
            (Host::Ip(ip), _) => self.policy.check_ip(ip).map_err(SendError::Refused)?,
            (Host::Name(_), _) => {} // checked by the resolver, on what it connects to
        }
        let mut request = self
            .client
            .post(url.as_str())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_owned());
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let mut response = request.send().await.map_err(|e| send_error(&e))?;
        let status = response.status().as_u16();
        let mut body_prefix = Vec::new();
        while body_prefix.len() < MAX_ANSWER_BODY {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let room = MAX_ANSWER_BODY - body_prefix.len();
                    body_prefix.extend_from_slice(&chunk[..chunk.len().min(room)]);
                }
                // The status is the answer; a body cut short is kept as read.
                Ok(None) | Err(_) => break,
            }
        }
        Ok(Answer {
            status,
            body_prefix,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    /// One request as a tiny server saw it: its head and body.
    #[derive(Debug)]
    struct Seen {
        head: String,
        body: String,
    }

    /// A one-connection-at-a-time HTTP/1.1 server on loopback answering
    /// every request with `answer` (raw bytes); what it receives goes to
    /// the channel.
    async fn server(answer: &'static [u8]) -> (SocketAddr, mpsc::UnboundedReceiver<Seen>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let n = socket.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        let text = String::from_utf8_lossy(&buf).to_string();
                        let Some((head, body)) = text.split_once("\r\n\r\n") else {
                            continue;
                        };
                        let len = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if body.len() < len {
                            continue;
                        }
                        let _ = tx.send(Seen {
                            head: head.to_owned(),
                            body: body.to_owned(),
                        });
                        let _ = socket.write_all(answer).await;
                        let _ = socket.shutdown().await;
                        return;
                    }
                });
            }
        });
        (addr, rx)
    }

    fn url(text: &str) -> WebhookUrl {
        WebhookUrl::parse(text).unwrap()
    }

    fn transport(allow_private: bool) -> HttpTransport {
        HttpTransport::new(AddressPolicy::new(allow_private), Duration::from_secs(5)).unwrap()
    }

    #[tokio::test]
    async fn posts_json_with_the_headers_and_reads_the_answer() {
        let (addr, mut seen) =
            server(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                .await;
        let answer = transport(true)
            .send(
                &url(&format!("http://{addr}/hook?x=1")),
                &[("webhook-id", "evt_1".into())],
                r#"{"a":1}"#,
            )
            .await
            .unwrap();
        assert_eq!(answer.status, 201);
        assert_eq!(answer.body_prefix, b"ok");
        let req = seen.recv().await.unwrap();
        let head = req.head.to_ascii_lowercase();
        assert!(head.starts_with("post /hook?x=1 http/1.1"), "{head}");
        assert!(head.contains("content-type: application/json"), "{head}");
        assert!(head.contains("webhook-id: evt_1"), "{head}");
        assert_eq!(req.body, r#"{"a":1}"#);
    }

    #[tokio::test]
    async fn redirects_are_answers_not_followed() {
        let (addr, mut seen) = server(
            b"HTTP/1.1 307 Temporary Redirect\r\nLocation: /elsewhere\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .await;
        let answer = transport(true)
            .send(&url(&format!("http://{addr}/hook")), &[], "{}")
            .await
            .unwrap();
        assert_eq!(answer.status, 307);
        assert!(seen.recv().await.unwrap().head.contains("/hook"));
        assert!(seen.try_recv().is_err(), "the redirect was followed");
    }

    #[tokio::test]
    async fn only_the_first_64_kib_of_an_answer_are_read() {
        let big: &'static [u8] = {
            let mut v =
                b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 100000\r\nConnection: close\r\n\r\n"
                    .to_vec();
            v.extend(std::iter::repeat_n(b'x', 100_000));
            Box::leak(v.into_boxed_slice())
        };
        let (addr, _seen) = server(big).await;
        let answer = transport(true)
            .send(&url(&format!("http://{addr}/")), &[], "{}")
            .await
            .unwrap();
        assert_eq!(answer.status, 500);
        assert_eq!(answer.body_prefix.len(), MAX_ANSWER_BODY);
    }

    /// The SSRF rule at delivery time: loopback by address (any spelling)
    /// and by name is refused before any connection is made.
    #[tokio::test]
    async fn private_addresses_are_refused_at_delivery_without_connecting() {
        let (addr, mut seen) = server(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await;
        let port = addr.port();
        let strict = transport(false);
        for target in [
            format!("http://127.0.0.1:{port}/"),
            format!("http://2130706433:{port}/"),
            format!("http://0x7f.0.0.1:{port}/"),
            format!("http://[::ffff:127.0.0.1]:{port}/"),
            format!("http://localhost:{port}/"),
        ] {
            let e = strict.send(&url(&target), &[], "{}").await.unwrap_err();
            assert!(matches!(e, SendError::Refused(_)), "{target}: {e:?}");
        }
        assert!(
            seen.try_recv().is_err(),
            "a refused target was connected to"
        );
        // Allowed, the same target is reached.
        transport(true)
            .send(&url(&format!("http://localhost:{port}/")), &[], "{}")
            .await
            .unwrap();
        assert!(seen.recv().await.is_some());
    }

    #[tokio::test]
    async fn timeouts_and_refused_connections_are_errors() {
        // A listener that accepts and never answers.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let quick =
            HttpTransport::new(AddressPolicy::new(true), Duration::from_millis(200)).unwrap();
        let e = quick
            .send(&url(&format!("http://{addr}/")), &[], "{}")
            .await
            .unwrap_err();
        assert_eq!(e, SendError::Timeout);
        hold.abort();
        // A port nobody listens on.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let e = quick
            .send(&url(&format!("http://{closed}/")), &[], "{}")
            .await
            .unwrap_err();
        assert!(matches!(e, SendError::Connect(_)), "{e:?}");
    }
}
