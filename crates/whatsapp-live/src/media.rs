//! The one HTTP client every session's media traffic goes through, and the
//! few lookups that need a live client (LID ↔ phone number) for the pure
//! conversions of [`crate::messages`].
//!
//! whatsapp-rust builds media URLs as `https://{host}{path}` from the hosts
//! of the media-connection IQ. Against a local server (wa-sim) those hosts
//! are not reachable over HTTPS, so [`MediaHttp`] sends them to the server
//! the adapter is configured with instead (see [`MediaHttp::new`]).

use std::sync::Arc;

use whatsapp_rust::Client;
use whatsapp_rust::anyhow::Result;
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
            inner: Arc::new(UreqHttpClient::new()),
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
