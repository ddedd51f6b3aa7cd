//! The one HTTP client every session's media traffic goes through, and the
//! few lookups that need a live client (LID ↔ phone number) for the pure
//! conversions of [`crate::messages`].
//!
//! whatsapp-rust builds media URLs as `https://{host}{path}` from the hosts
//! of the media-connection IQ. Against a local server (wa-sim) those hosts
//! are not reachable over HTTPS, so [`MediaHttp`] sends them to the server
//! the adapter is configured with instead (see [`MediaHttp::new`]).

use std::io::{Seek, SeekFrom, Write};
use std::sync::Arc;
use std::time::Duration;

use wagate_whatsapp_port::MediaSender;
use whatsapp_rust::Client;
use whatsapp_rust::anyhow::Result;
use whatsapp_rust::download::DownloadWriter;
use whatsapp_rust::http::{HttpClient, HttpRequest, HttpResponse, UreqHttpClient};
use whatsapp_rust::wacore::net::{StreamingHttpResponse, UploadBody};
use whatsapp_rust::{Jid, Server};

use crate::messages::{Alternates, Own};

/// whatsapp-rust's `ureq` client, shared by all sessions (one connection
/// pool per process, not per session), with media URLs redirected to a
/// local server when one is configured.
#[derive(Debug, Clone)]
pub(crate) struct MediaHttp {
    inner: Arc<UreqHttpClient>,
    /// `scheme://authority` that media requests go to instead of WhatsApp's
    /// hosts, when redirected.
    redirect: Option<Redirect>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Redirect {
    /// `http` or `https`.
    scheme: &'static str,
    /// `host:port` of the configured server.
    authority: String,
}

/// How long the media host may take to connect, to answer, and to send a
/// whole file: a download never holds its (blocking) thread longer.
const MEDIA_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
const MEDIA_ANSWER_TIMEOUT: Duration = Duration::from_secs(60);
const MEDIA_BODY_TIMEOUT: Duration = Duration::from_secs(600);

/// whatsapp-rust's `ureq` agent (its small buffers, a small pool) with
/// time limits: its default has none, so a media host that stops sending
/// would hold a download's thread forever.
fn agent() -> ureq::Agent {
    ureq::config::Config::builder()
        .input_buffer_size(16 * 1024)
        .output_buffer_size(16 * 1024)
        .max_idle_connections(3)
        .max_idle_connections_per_host(2)
        .timeout_connect(Some(MEDIA_CONNECT_TIMEOUT))
        .timeout_recv_response(Some(MEDIA_ANSWER_TIMEOUT))
        .timeout_recv_body(Some(MEDIA_BODY_TIMEOUT))
        .build()
        .into()
}

impl MediaHttp {
    /// `server_url` is the configured chat server (`None`: WhatsApp's).
    /// Media is redirected when the server is a custom one and either this
    /// build has the `simulator` feature or the server speaks plain `ws://`
    /// (WhatsApp only speaks `wss://`, so such a server is always a local
    /// one): to `http://host:port` of a `ws://` URL, `https://host:port` of
    /// a `wss://` one. A media host that is already an address with a port
    /// (the server naming itself) keeps its authority, only the scheme
    /// changes.
    pub(crate) fn new(server_url: Option<&str>) -> Self {
        Self {
            inner: Arc::new(UreqHttpClient::with_agent(agent())),
            redirect: server_url.and_then(redirect_for),
        }
    }

    fn rewrite(&self, mut request: HttpRequest) -> HttpRequest {
        if let Some(redirect) = &self.redirect {
            request.url = redirect.apply(&request.url);
        }
        request
    }
}

fn redirect_for(url: &str) -> Option<Redirect> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "ws" => "http",
        "wss" if cfg!(feature = "simulator") => "https",
        _ => return None,
    };
    let authority = rest.split(['/', '?', '#']).next()?.to_owned();
    if authority.is_empty() || authority.eq_ignore_ascii_case("web.whatsapp.com") {
        return None;
    }
    Some(Redirect { scheme, authority })
}

impl Redirect {
    fn apply(&self, url: &str) -> String {
        let Some(rest) = url.strip_prefix("https://") else {
            return url.to_owned();
        };
        let (host, tail) = match rest.find(['/', '?', '#']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        // A host with an explicit port is the server telling its own
        // address: keep it. A name (WhatsApp's CDN) goes to the server.
        let authority = if has_port(host) {
            host
        } else {
            &self.authority
        };
        format!("{}://{authority}{tail}", self.scheme)
    }
}

fn has_port(host: &str) -> bool {
    host.rsplit_once(':').is_some_and(|(h, port)| {
        !h.is_empty() && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())
    })
}

#[whatsapp_rust::async_trait]
impl HttpClient for MediaHttp {
    async fn execute(&self, request: HttpRequest) -> Result<HttpResponse> {
        self.inner.execute(self.rewrite(request)).await
    }

    fn supports_streaming(&self) -> bool {
        self.inner.supports_streaming()
    }

    fn execute_streaming(&self, request: HttpRequest) -> Result<StreamingHttpResponse> {
        self.inner.execute_streaming(self.rewrite(request))
    }

    fn supports_upload_streaming(&self) -> bool {
        self.inner.supports_upload_streaming()
    }

    fn execute_upload(
        &self,
        request: HttpRequest,
        body: UploadBody,
        content_length: u64,
    ) -> Result<HttpResponse> {
        self.inner
            .execute_upload(self.rewrite(request), body, content_length)
    }
}

/// Bytes handed to the reader at a time.
const CHUNK: usize = 64 * 1024;

/// Where a download's decrypted bytes go: to the [`MediaSender`] of the
/// client's request, [`CHUNK`] at a time, from the download's blocking
/// thread. It refuses more than `max_bytes` in all, and stops the download
/// (an error from `write`) as soon as the reader is gone or takes nothing
/// for `patience`.
///
/// whatsapp-rust writes plaintext as it decrypts and checks the MAC at the
/// end; the last chunk is handed over only after that check
/// ([`MediaSink::finish`]), and a download that fails the check fails the
/// response instead of ending it.
pub(crate) struct MediaSink {
    tx: MediaSender,
    runtime: tokio::runtime::Handle,
    patience: Duration,
    max_bytes: u64,
    buffer: Vec<u8>,
    /// Bytes written (handed over and buffered).
    written: u64,
    /// Bytes handed over: those cannot be taken back.
    sent: u64,
    /// Why the download was stopped, when this sink stopped it.
    pub(crate) stopped: Option<SinkStop>,
}

/// Why a [`MediaSink`] stopped its download.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SinkStop {
    /// More than `max_bytes`.
    TooLarge,
    /// The reader went away or took nothing for too long.
    ReaderGone,
}

impl MediaSink {
    pub(crate) fn new(
        tx: MediaSender,
        runtime: tokio::runtime::Handle,
        max_bytes: u64,
        patience: Duration,
    ) -> Self {
        Self {
            tx,
            runtime,
            patience,
            max_bytes,
            buffer: Vec::with_capacity(CHUNK),
            written: 0,
            sent: 0,
            stopped: None,
        }
    }

    fn stop(&mut self, why: SinkStop) -> std::io::Error {
        self.stopped = Some(why);
        std::io::Error::other(match why {
            SinkStop::TooLarge => "the media is larger than allowed",
            SinkStop::ReaderGone => "nobody reads the media any more",
        })
    }

    /// Hands the verified rest over and ends the download (async: called
    /// once the download returned).
    pub(crate) async fn finish(mut self) {
        let rest = std::mem::take(&mut self.buffer);
        if (rest.is_empty() || self.tx.send(rest).await) && !self.tx.is_closed() {
            self.tx.finish().await;
        }
    }
}

impl Write for MediaSink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.written.saturating_add(data.len() as u64) > self.max_bytes {
            return Err(self.stop(SinkStop::TooLarge));
        }
        if self.tx.is_closed() {
            return Err(self.stop(SinkStop::ReaderGone));
        }
        self.buffer.extend_from_slice(data);
        self.written += data.len() as u64;
        if self.buffer.len() >= CHUNK {
            let chunk = std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK));
            self.sent += chunk.len() as u64;
            if !self.tx.send_blocking(&self.runtime, chunk, self.patience) {
                return Err(self.stop(SinkStop::ReaderGone));
            }
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Seek for MediaSink {
    /// Only the rewinds whatsapp-rust makes (before a try, and after a
    /// verified download): nothing is ever read back.
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        match to {
            SeekFrom::Start(0) => Ok(0),
            _ => Err(std::io::Error::other("a media stream cannot seek")),
        }
    }
}

impl DownloadWriter for MediaSink {
    /// Emptied before each try: possible while nothing was handed over (a
    /// host that failed early is retried on the next), not after.
    fn truncate(&mut self, len: u64) -> std::io::Result<()> {
        if len == 0 && self.sent == 0 {
            self.buffer.clear();
            self.written = 0;
            Ok(())
        } else {
            Err(std::io::Error::other(
                "part of the media was already sent to the client",
            ))
        }
    }
}

/// The client's own identity (bare JIDs).
pub(crate) fn own(client: &Client) -> Own {
    Own {
        pn: client.pn().map(|j| j.to_non_ad()),
        lid: client.lid().map(|j| j.to_non_ad()),
    }
}

/// Looks up the other form (LID ↔ phone number) of each JID the client has
/// learned a mapping for. A failed lookup is treated as unknown.
pub(crate) async fn alternates(client: &Client, jids: impl IntoIterator<Item = Jid>) -> Alternates {
    let mut out = Alternates::new();
    for jid in jids {
        let key = jid.to_string();
        if out.contains_key(&key) {
            continue;
        }
        match client.get_lid_pn_entry(&jid).await {
            Ok(Some(entry)) => {
                let alt = if jid.server == Server::Lid {
                    Jid::new(&*entry.phone_number, Server::Pn)
                } else {
                    Jid::new(&*entry.lid, Server::Lid)
                };
                out.insert(key, alt);
            }
            Ok(None) => {}
            Err(e) => tracing::debug!(error = %e, "could not read a LID mapping"),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_sink_streams_bounded_chunks_and_stops_when_told() {
        use wagate_whatsapp_port::MediaDownload;
        let runtime = tokio::runtime::Handle::current();
        // Everything, in chunks, once finished.
        let (tx, download) = MediaDownload::channel();
        let mut sink = MediaSink::new(tx, runtime.clone(), 1_000_000, Duration::from_secs(5));
        let writer = tokio::task::spawn_blocking(move || {
            sink.truncate(0).unwrap();
            for _ in 0..10 {
                sink.write_all(&[7u8; 20_000]).unwrap();
            }
            sink.rewind().unwrap();
            sink
        });
        let reader = tokio::spawn(download.collect());
        writer.await.unwrap().finish().await;
        assert_eq!(reader.await.unwrap().unwrap(), vec![7u8; 200_000]);

        // Over the limit: the write fails, and says why.
        let (tx, _download) = MediaDownload::channel();
        let mut sink = MediaSink::new(tx, runtime.clone(), 100, Duration::from_secs(5));
        let sink = tokio::task::spawn_blocking(move || {
            assert!(sink.write_all(&[0u8; 101]).is_err());
            sink
        })
        .await
        .unwrap();
        assert_eq!(sink.stopped, Some(SinkStop::TooLarge));

        // The reader gone (or asleep): the next chunk fails the write.
        let (tx, download) = MediaDownload::channel();
        drop(download);
        let mut sink = MediaSink::new(tx, runtime.clone(), u64::MAX, Duration::from_secs(5));
        let sink = tokio::task::spawn_blocking(move || {
            assert!(sink.write_all(&[0u8; CHUNK]).is_err());
            sink
        })
        .await
        .unwrap();
        assert_eq!(sink.stopped, Some(SinkStop::ReaderGone));
        let (tx, _asleep) = MediaDownload::channel();
        let mut sink = MediaSink::new(tx, runtime, u64::MAX, Duration::from_millis(50));
        let mut sink = tokio::task::spawn_blocking(move || {
            let mut result = Ok(());
            // Four chunks fill the channel; the fifth waits in vain.
            for _ in 0..6 {
                result = sink.write_all(&[0u8; CHUNK]);
                if result.is_err() {
                    break;
                }
            }
            assert!(result.is_err());
            sink
        })
        .await
        .unwrap();
        assert_eq!(sink.stopped, Some(SinkStop::ReaderGone));
        assert!(sink.truncate(0).is_err());
    }

    #[test]
    fn media_goes_to_a_plain_local_server() {
        let r = redirect_for("ws://127.0.0.1:7000/ws/chat").unwrap();
        assert_eq!(
            r.apply("https://mmg.whatsapp.net/mms/image/TOKEN?auth=A&token=T"),
            "http://127.0.0.1:7000/mms/image/TOKEN?auth=A&token=T"
        );
        assert_eq!(
            r.apply("https://127.0.0.1:7001/v/t62/x.enc?token=T"),
            "http://127.0.0.1:7001/v/t62/x.enc?token=T",
            "a host with a port is kept"
        );
        assert_eq!(r.apply("https://host"), "http://127.0.0.1:7000");
        assert_eq!(r.apply("http://else/x"), "http://else/x");
        assert_eq!(redirect_for("wss://web.whatsapp.com/ws/chat"), None);
        assert_eq!(redirect_for("nonsense"), None);
        assert_eq!(
            redirect_for("wss://sim.local:8443/ws/chat").is_some(),
            cfg!(feature = "simulator")
        );
        let none = MediaHttp::new(None);
        let req = none.rewrite(HttpRequest::get("https://mmg.whatsapp.net/x"));
        assert_eq!(req.url, "https://mmg.whatsapp.net/x");
    }
}
