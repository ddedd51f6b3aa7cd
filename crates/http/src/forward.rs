//! Any gateway answers any request: a live call (one that needs the
//! session's WhatsApp client) runs on the node that owns the session. The
//! [`forward_live`] and [`forward_unless_get`] middlewares ask
//! [`SessionOwnership`](wagate_store::SessionOwnership) where the call must
//! run, and pass it there once over HTTP ([`NodeLink`]), signed with
//! `cluster.secret`; the owner's answer goes back to the caller unchanged.
//!
//! A forwarded request carries the caller's principal (the forwarding node
//! has authenticated the caller), the forwarding node's id (the loop
//! guard: a forwarded request is never forwarded again), a timestamp and
//! the body's SHA-256, all under one HMAC-SHA256. The receiving node
//! ([`NodeLink::admit`], from the authentication middleware) checks the
//! signature in constant time, the timestamp against a short window and the
//! body against its digest; anything else is 401.

use std::sync::Arc;
use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpResponse, ResponseError, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2_011::{Digest, Sha256};
use time::OffsetDateTime;
use wagate_domain::{
    ApiKeyId, CapabilitySet, Clock, NodeId, OrgId, Principal, PrincipalKind, Role, SessionId,
};
use wagate_store::SessionOwner;

use crate::large_bodies::{self, Full};
use crate::{ApiError, AppState};

/// The forwarding node's id; its presence marks a forwarded request.
pub(crate) static FORWARDED_BY: HeaderName = HeaderName::from_static("x-wagate-forwarded-by");
/// Unix seconds when the request was forwarded.
static FORWARDED_AT: HeaderName = HeaderName::from_static("x-wagate-forwarded-at");
/// The caller, as the forwarding node authenticated it.
static PRINCIPAL: HeaderName = HeaderName::from_static("x-wagate-principal");
/// The body's SHA-256.
static CONTENT_SHA256: HeaderName = HeaderName::from_static("x-wagate-content-sha256");
/// HMAC-SHA256 over everything above, the method and the path.
static SIGNATURE: HeaderName = HeaderName::from_static("x-wagate-signature");

/// How far a forwarded request's timestamp may be from the receiver's
/// clock (either way): long enough for clocks kept by NTP and a slow
/// network, short enough that a captured request is soon useless.
pub const SIGNATURE_WINDOW: Duration = Duration::from_secs(15);

/// How many whole seconds a caller is asked to wait when no node can serve
/// a session now (its owner died and its lease has not run out, or it is
/// moving).
pub const RETRY_AFTER_SECS: u64 = 2;

/// Every operation that runs on the session's owner (registered with
/// `live!` or behind `forward_unless_get` in [`configure`](crate::configure)),
/// as (method, OpenAPI path): the OpenAPI document declares their `503
/// unavailable` with `Retry-After` from this list, and a contract test
/// holds it to what the routes do.
pub(crate) const FORWARDED_OPERATIONS: &[(&str, &str)] = &[
    ("delete", "/api/v1/sessions/{sessionId}"),
    ("post", "/api/v1/sessions/{sessionId}/connect"),
    ("post", "/api/v1/sessions/{sessionId}/disconnect"),
    ("post", "/api/v1/sessions/{sessionId}/logout"),
    ("get", "/api/v1/sessions/{sessionId}/qr"),
    ("post", "/api/v1/sessions/{sessionId}/pairing-code"),
    ("get", "/api/v1/sessions/{sessionId}/contacts/{jid}/picture"),
    ("get", "/api/v1/sessions/{sessionId}/contacts/{jid}/about"),
    ("post", "/api/v1/sessions/{sessionId}/contacts/{jid}/block"),
    (
        "post",
        "/api/v1/sessions/{sessionId}/contacts/{jid}/unblock",
    ),
    ("get", "/api/v1/sessions/{sessionId}/blocklist"),
    (
        "post",
        "/api/v1/sessions/{sessionId}/contacts/{jid}/presence/subscribe",
    ),
    ("post", "/api/v1/sessions/{sessionId}/chats/{jid}/presence"),
    ("put", "/api/v1/sessions/{sessionId}/presence"),
    ("post", "/api/v1/sessions/{sessionId}/groups"),
    ("post", "/api/v1/sessions/{sessionId}/groups/join"),
    ("get", "/api/v1/sessions/{sessionId}/groups/{groupJid}"),
    ("patch", "/api/v1/sessions/{sessionId}/groups/{groupJid}"),
    (
        "post",
        "/api/v1/sessions/{sessionId}/groups/{groupJid}/participants",
    ),
    (
        "get",
        "/api/v1/sessions/{sessionId}/groups/{groupJid}/invite",
    ),
    (
        "post",
        "/api/v1/sessions/{sessionId}/groups/{groupJid}/invite/revoke",
    ),
    (
        "post",
        "/api/v1/sessions/{sessionId}/groups/{groupJid}/leave",
    ),
    (
        "get",
        "/api/v1/sessions/{sessionId}/groups/{groupJid}/requests",
    ),
    (
        "post",
        "/api/v1/sessions/{sessionId}/groups/{groupJid}/requests",
    ),
    ("post", "/api/v1/sessions/{sessionId}/messages"),
    ("patch", "/api/v1/sessions/{sessionId}/messages/{messageId}"),
    (
        "delete",
        "/api/v1/sessions/{sessionId}/messages/{messageId}",
    ),
    (
        "get",
        "/api/v1/sessions/{sessionId}/messages/{messageId}/media",
    ),
    (
        "post",
        "/api/v1/sessions/{sessionId}/messages/{messageId}/reaction",
    ),
    ("post", "/api/v1/sessions/{sessionId}/chats/{jid}/read"),
];

/// Answers bodies up to this size are read whole and passed on with their
/// length; larger ones (media) are streamed as they come.
const BUFFERED_ANSWER: u64 = 1024 * 1024;

/// Marks a request that came from another node (it is never forwarded
/// again).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Forwarded;

/// How this gateway talks to the others: it signs the requests it forwards
/// and checks those forwarded to it.
pub struct NodeLink {
    node: NodeId,
    key: Box<[u8]>,
    client: reqwest::Client,
    clock: Arc<dyn Clock>,
    answer_timeout: Duration,
}

impl std::fmt::Debug for NodeLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeLink")
            .field("node", &self.node)
            .field("key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// Why a forwarded request was refused (logged, never answered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Missing(&'static str),
    Malformed(&'static str),
    Stale,
    Signature,
    Digest,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Missing(h) => write!(f, "header {h} missing"),
            Refusal::Malformed(h) => write!(f, "header {h} malformed"),
            Refusal::Stale => f.write_str("timestamp outside the window"),
            Refusal::Signature => f.write_str("signature does not verify"),
            Refusal::Digest => f.write_str("body does not match its digest"),
        }
    }
}

impl NodeLink {
    /// The link of node `node`, signing with `secret` (`cluster.secret`).
    /// `answer_timeout` bounds the wait for an owner's answer to start (the
    /// owner's own WhatsApp deadline, plus slack); a streamed answer may
    /// take longer as long as bytes keep coming.
    ///
    /// # Errors
    ///
    /// When the HTTP client cannot be built.
    pub fn new(
        node: NodeId,
        secret: &str,
        clock: Arc<dyn Clock>,
        answer_timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            // Nodes talk directly; an environment proxy is not for them.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(2))
            .read_timeout(answer_timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()?;
        Ok(Self {
            node,
            key: secret.as_bytes().into(),
            client,
            clock,
            answer_timeout,
        })
    }

    /// This node's id.
    pub fn node(&self) -> &NodeId {
        &self.node
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes keys of any length: this cannot fail.
        <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"))
    }

    /// The MAC over one forwarded request's parts.
    fn signed(&self, parts: &SignedParts<'_>) -> Hmac<Sha256> {
        let mut mac = self.mac();
        for part in [
            b"wagate-forward-v1".as_slice(),
            parts.method.as_bytes(),
            parts.path.as_bytes(),
            parts.node.as_bytes(),
            parts.at.as_bytes(),
            parts.principal.as_bytes(),
            parts.digest.as_bytes(),
        ] {
            // Length-prefixed: no two different requests sign the same bytes.
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac
    }

    /// The headers that make a request to another node: this node's id,
    /// the time, the caller, the body's digest and their signature.
    fn sign(
        &self,
        method: &str,
        path: &str,
        principal: &Principal,
        body: &[u8],
    ) -> Vec<(&'static HeaderName, String)> {
        let node = self.node.to_string();
        let at = self.clock.now().unix_timestamp().to_string();
        let principal = encode_principal(principal);
        let digest = B64.encode(Sha256::digest(body));
        let parts = SignedParts {
            method,
            path,
            node: &node,
            at: &at,
            principal: &principal,
            digest: &digest,
        };
        let signature = B64.encode(self.signed(&parts).finalize().into_bytes());
        vec![
            (&FORWARDED_BY, node),
            (&FORWARDED_AT, at),
            (&PRINCIPAL, principal),
            (&CONTENT_SHA256, digest),
            (&SIGNATURE, signature),
        ]
    }

    /// Checks a forwarded request's signature and time (before its body is
    /// read), returning the caller it carries and the digest its body must
    /// have.
    fn verify(
        &self,
        method: &str,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<(Principal, Vec<u8>), Refusal> {
        let get = |name: &'static HeaderName| -> Result<&str, Refusal> {
            headers
                .get(name)
                .ok_or(Refusal::Missing(name.as_str()))?
                .to_str()
                .map_err(|_| Refusal::Malformed(name.as_str()))
        };
        let parts = SignedParts {
            method,
            path,
            node: get(&FORWARDED_BY)?,
            at: get(&FORWARDED_AT)?,
            principal: get(&PRINCIPAL)?,
            digest: get(&CONTENT_SHA256)?,
        };
        let signature = B64
            .decode(get(&SIGNATURE)?)
            .map_err(|_| Refusal::Malformed(SIGNATURE.as_str()))?;
        // Constant time: the comparison reveals nothing of the right tag.
        self.signed(&parts)
            .verify_slice(&signature)
            .map_err(|_| Refusal::Signature)?;
        let at: i64 = parts
            .at
            .parse()
            .map_err(|_| Refusal::Malformed(FORWARDED_AT.as_str()))?;
        let now = self.clock.now().unix_timestamp();
        let window = i64::try_from(SIGNATURE_WINDOW.as_secs()).unwrap_or(i64::MAX);
        if now.abs_diff(at) > window.unsigned_abs() {
            return Err(Refusal::Stale);
        }
        let principal =
            decode_principal(parts.principal).ok_or(Refusal::Malformed(PRINCIPAL.as_str()))?;
        let digest = B64
            .decode(parts.digest)
            .map_err(|_| Refusal::Malformed(CONTENT_SHA256.as_str()))?;
        Ok((principal, digest))
    }

    /// Admits a request another node forwarded: its signature, time and
    /// body must verify. The body is read here (up to `limit` bytes) and put
    /// back for the handler.
    ///
    /// # Errors
    ///
    /// 401 when anything does not verify (logged without secrets), 413 for
    /// a body over `limit`.
    pub(crate) async fn admit(
        &self,
        req: &mut ServiceRequest,
        limit: usize,
    ) -> Result<Principal, ApiError> {
        let path = path_and_query(req);
        let from = req
            .headers()
            .get(&FORWARDED_BY)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(40).collect::<String>())
            .unwrap_or_default();
        let refuse = |reason: Refusal| {
            tracing::warn!(%reason, from_node = %from, path = %req_path(&path),
                "refused a forwarded request: check that cluster.secret is the same on every node");
            ApiError::unauthorized()
        };
        let (principal, digest) = self
            .verify(req.method().as_str(), &path, req.headers())
            .map_err(refuse)?;
        let expected = large_bodies::content_length(req.request());
        if expected.is_some_and(|n| n > limit) {
            return Err(ApiError::for_status(StatusCode::PAYLOAD_TOO_LARGE));
        }
        let body = large_bodies::read(req.take_payload(), limit, expected, || {
            ApiError::for_status(StatusCode::PAYLOAD_TOO_LARGE)
        })
        .await?;
        // The digest was signed; comparing it in constant time costs nothing.
        let actual = Sha256::digest(&body);
        if !constant_time_eq(&actual, &digest) {
            return Err(refuse(Refusal::Digest));
        }
        req.set_payload(actix_web::dev::Payload::from(body));
        Ok(principal)
    }

    /// Passes `req` (whose body is `body`) to the node at `owner` and
    /// returns its answer unchanged, streaming a large one.
    async fn forward(
        &self,
        req: &ServiceRequest,
        principal: &Principal,
        body: web::Bytes,
        owner: &str,
    ) -> Result<HttpResponse, ApiError> {
        let path = path_and_query(req);
        let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes())
            .map_err(|e| ApiError::internal(&e))?;
        let mut out = reqwest::header::HeaderMap::new();
        for (name, value) in req.headers() {
            if !passes_on_request(name) {
                continue;
            }
            if let (Ok(n), Ok(v)) = (
                reqwest::header::HeaderName::from_bytes(name.as_str().as_bytes()),
                reqwest::header::HeaderValue::from_bytes(value.as_bytes()),
            ) {
                out.append(n, v);
            }
        }
        for (name, value) in self.sign(req.method().as_str(), &path, principal, &body) {
            if let (Ok(n), Ok(v)) = (
                reqwest::header::HeaderName::from_bytes(name.as_str().as_bytes()),
                reqwest::header::HeaderValue::from_str(&value),
            ) {
                out.insert(n, v);
            }
        }
        let url = format!("{}{path}", owner.trim_end_matches('/'));
        let sent = self
            .client
            .request(method, &url)
            .headers(out)
            .body(body)
            .send();
        let answer = match tokio::time::timeout(self.answer_timeout, sent).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => {
                tracing::warn!(owner, error = %e, "cannot reach the session's owner");
                return Err(unavailable(
                    "the gateway serving this session cannot be reached",
                ));
            }
            Err(_) => {
                tracing::warn!(owner, "the session's owner did not answer in time");
                return Err(ApiError::for_status(StatusCode::GATEWAY_TIMEOUT));
            }
        };
        let status =
            StatusCode::from_u16(answer.status().as_u16()).map_err(|e| ApiError::internal(&e))?;
        if status == StatusCode::UNAUTHORIZED {
            // The caller was authenticated here: the owner refused this node.
            tracing::error!(
                owner,
                "the session's owner refused this node's signature: cluster.secret must be \
                 the same on every node (and their clocks within {} s)",
                SIGNATURE_WINDOW.as_secs()
            );
            return Err(unavailable(
                "the gateway serving this session refused this one",
            ));
        }
        let mut res = HttpResponse::build(status);
        for (name, value) in answer.headers() {
            if !passes_on_answer(name.as_str()) {
                continue;
            }
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_str().as_bytes()),
                HeaderValue::from_bytes(value.as_bytes()),
            ) {
                res.append_header((n, v));
            }
        }
        if answer
            .content_length()
            .is_some_and(|n| n <= BUFFERED_ANSWER)
        {
            let bytes = answer.bytes().await.map_err(|e| {
                tracing::warn!(owner, error = %e, "the owner's answer broke off");
                unavailable("the gateway serving this session stopped answering")
            })?;
            return Ok(res.body(bytes));
        }
        // Large or of unknown length (media): bytes go on as they come; a
        // break closes the connection before the end, as the owner's would.
        let stream = futures_util::stream::unfold(answer, |mut answer| async move {
            match answer.chunk().await {
                Ok(Some(chunk)) => Some((Ok::<_, reqwest::Error>(chunk), answer)),
                Ok(None) => None,
                Err(e) => Some((Err(e), answer)),
            }
        });
        Ok(res.streaming(stream))
    }
}

/// What one signature covers.
struct SignedParts<'a> {
    method: &'a str,
    path: &'a str,
    node: &'a str,
    at: &'a str,
    principal: &'a str,
    digest: &'a str,
}

/// The caller, as it travels between nodes.
#[derive(Debug, Serialize, Deserialize)]
struct WirePrincipal {
    org: OrgId,
    caps: CapabilitySet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<ApiKeyId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user: Option<WireUser>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    expires: Option<OffsetDateTime>,
}

#[derive(Debug, Serialize, Deserialize)]
struct WireUser {
    sub: Option<String>,
    role: String,
}

fn encode_principal(p: &Principal) -> String {
    let (key, user) = match &p.kind {
        PrincipalKind::ApiKey(id) => (Some(*id), None),
        PrincipalKind::User { subject, role } => (
            None,
            Some(WireUser {
                sub: subject.clone(),
                role: role.as_str().to_owned(),
            }),
        ),
    };
    let wire = WirePrincipal {
        org: p.org.clone(),
        caps: p.capabilities,
        key,
        user,
        expires: p.credential_expires_at,
    };
    // Ids, strings and a set: serializing cannot fail.
    B64.encode(serde_json::to_vec(&wire).unwrap_or_default())
}

fn decode_principal(text: &str) -> Option<Principal> {
    let wire: WirePrincipal = serde_json::from_slice(&B64.decode(text).ok()?).ok()?;
    let kind = match (wire.key, wire.user) {
        (Some(id), None) => PrincipalKind::ApiKey(id),
        (None, Some(user)) => PrincipalKind::User {
            subject: user.sub,
            role: Role::new(&user.role),
        },
        _ => return None,
    };
    Some(Principal {
        org: wire.org,
        capabilities: wire.caps,
        kind,
        credential_expires_at: wire.expires,
    })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn path_and_query(req: &ServiceRequest) -> String {
    req.uri()
        .path_and_query()
        .map_or_else(|| req.path().to_owned(), |p| p.as_str().to_owned())
}

/// The path without its query, for a log line.
fn req_path(path_and_query: &str) -> &str {
    path_and_query.split('?').next().unwrap_or_default()
}

/// Whether a request header goes on to the owner: not the caller's token
/// (the signed principal replaces it), not connection-level ones, not ours
/// (the signature's are set afresh).
fn passes_on_request(name: &HeaderName) -> bool {
    let n = name.as_str();
    !(is_hop_by_hop(n)
        || n == "authorization"
        || n == "host"
        || n == "content-length"
        || n.starts_with("x-wagate-"))
}

/// Whether an answer header goes back to the caller.
fn passes_on_answer(name: &str) -> bool {
    !(is_hop_by_hop(name) || name == "content-length" || name == "date" || name == "server")
}

fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// 503 `unavailable` with `Retry-After`.
fn unavailable(message: &str) -> ApiError {
    ApiError::unavailable(message, RETRY_AFTER_SECS)
}

/// Forwards every method of the resource it wraps when another node owns
/// the session (use with `actix_web::middleware::from_fn`).
pub(crate) async fn forward_live(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    route(req, next).await
}

/// As [`forward_live`] for every method but GET, which reads the database
/// here (a resource whose GET is a read and whose other methods are live).
pub(crate) async fn forward_unless_get(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    if req.method() == actix_web::http::Method::GET {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    route(req, next).await
}

/// Where a live call runs.
enum Route {
    Here,
    There(String),
}

async fn route(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let decided = decide(&req).await;
    let metrics = req
        .app_data::<web::Data<AppState>>()
        .map(|s| s.metrics.clone());
    let count = |outcome| {
        if let Some(m) = &metrics {
            m.between_nodes(outcome);
        }
    };
    match decided {
        Ok(Route::Here) => Ok(next.call(req).await?.map_into_boxed_body()),
        Ok(Route::There(owner)) => {
            let answer = pass_on(&mut req, &owner).await;
            let res = match answer {
                Ok(res) => {
                    count("forwarded");
                    res
                }
                Err(e) => {
                    if e.code() == "unavailable" {
                        count("unavailable");
                    }
                    e.error_response()
                }
            };
            Ok(req.into_response(res))
        }
        Err(e) => {
            if e.code() == "unavailable" {
                count("unavailable");
            }
            Ok(req.into_response(e.error_response()))
        }
    }
}

/// Whether the call runs here or on another node (or nowhere now).
async fn decide(req: &ServiceRequest) -> Result<Route, ApiError> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::internal(&"application state missing"))?;
    let principal = req
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| ApiError::internal(&"route outside the authenticated scope"))?;
    // A malformed id, or another organization's session: the handler
    // answers (400, 404) without anyone locating it.
    let Some(session) = req
        .match_info()
        .get("sessionId")
        .and_then(|raw| SessionId::parse(raw).ok())
    else {
        return Ok(Route::Here);
    };
    if !state.gateway.has_session(&principal.org, &session).await? {
        return Ok(Route::Here);
    }
    let owner = state
        .ownership
        .owner_for_call(&session)
        .await
        .map_err(|e| {
            tracing::warn!(session = %session, error = %e, "cannot tell which node serves the session");
            unavailable("cannot tell which gateway serves this session now")
        })?;
    let forwarded = req.extensions().get::<Forwarded>().is_some();
    match owner {
        SessionOwner::Here => Ok(Route::Here),
        SessionOwner::Node { id, .. } if state.link.as_ref().is_some_and(|l| l.node == id) => {
            Ok(Route::Here)
        }
        SessionOwner::Node { id, .. } if forwarded => {
            // The loop guard: the node that sent it here thought this one
            // was the owner; ownership is moving. Never a second hop.
            tracing::info!(session = %session, owner = %id, "forwarded call for a session owned elsewhere");
            Err(unavailable("this session is moving between gateways"))
        }
        SessionOwner::Node { advertise_url, .. } => {
            if state.link.is_none() {
                tracing::error!(session = %session, "another node owns the session but cluster.secret is not set");
                return Err(unavailable(
                    "the gateway serving this session cannot be reached",
                ));
            }
            Ok(Route::There(advertise_url))
        }
        SessionOwner::Nobody => Err(unavailable("no gateway can serve this session right now")),
    }
}

/// Reads the request's body (bounded like a message send) and forwards it.
async fn pass_on(req: &mut ServiceRequest, owner: &str) -> Result<HttpResponse, ApiError> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::internal(&"application state missing"))?;
    let link = state
        .link
        .clone()
        .ok_or_else(|| ApiError::internal(&"no node link"))?;
    let principal = req
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| ApiError::internal(&"route outside the authenticated scope"))?;
    let limit = crate::send_body_limit(&state.gateway);
    let expected = large_bodies::content_length(req.request());
    if expected.is_some_and(|n| n > limit) {
        return Err(ApiError::for_status(StatusCode::PAYLOAD_TOO_LARGE));
    }
    // A large body is held here while it is signed and sent: it takes one
    // of the bounded places, as it would on the owner.
    let _place = if large_bodies::is_large(expected) {
        Some(state.large_bodies.take(&principal.org).map_err(|full| {
            let what = match full {
                Full::Org => {
                    "this organization already has as many large bodies in flight as it may"
                }
                Full::All => "the gateway is reading as many large bodies as it may",
            };
            ApiError::too_many(what, 1)
        })?)
    } else {
        None
    };
    let body = large_bodies::read(req.take_payload(), limit, expected, || {
        ApiError::for_status(StatusCode::PAYLOAD_TOO_LARGE)
    })
    .await?;
    link.forward(req, &principal, body, owner).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;
    use std::sync::Mutex;

    #[derive(Debug)]
    struct At(Mutex<OffsetDateTime>);
    impl Clock for At {
        fn now(&self) -> OffsetDateTime {
            *self.0.lock().unwrap()
        }
    }

    fn link(secret: &str, clock: Arc<At>) -> NodeLink {
        NodeLink::new(
            NodeId::from_ulid(ulid::Ulid::new()),
            secret,
            clock,
            Duration::from_secs(5),
        )
        .unwrap()
    }

    fn principal() -> Principal {
        Principal {
            org: OrgId::parse("acme").unwrap(),
            capabilities: CapabilitySet::parse_list("read,send").unwrap(),
            kind: PrincipalKind::User {
                subject: Some("u-1".into()),
                role: Role::new("agent"),
            },
            credential_expires_at: None,
        }
    }

    fn headers(signed: &[(&'static HeaderName, String)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (n, v) in signed {
            map.insert((*n).clone(), HeaderValue::from_str(v).unwrap());
        }
        map
    }

    const SECRET: &str = "a-cluster-secret-of-at-least-32-chars";

    #[test]
    fn a_signed_request_verifies_and_carries_the_caller() {
        let clock = Arc::new(At(Mutex::new(OffsetDateTime::now_utc())));
        let (a, b) = (link(SECRET, clock.clone()), link(SECRET, clock.clone()));
        let path = "/api/v1/sessions/sess_01HZY0N4Q8ZK3J4M7ZC9W4X2QF/connect?x=1";
        let signed = headers(&a.sign("POST", path, &principal(), b"{}"));
        let (p, digest) = b.verify("POST", path, &signed).unwrap();
        assert_eq!(p, principal());
        assert_eq!(digest, Sha256::digest(b"{}").to_vec());

        // Another method, path or secret: refused.
        assert_eq!(
            b.verify("GET", path, &signed).unwrap_err(),
            Refusal::Signature
        );
        assert_eq!(
            b.verify("POST", "/api/v1/sessions", &signed).unwrap_err(),
            Refusal::Signature
        );
        let other = link("another-secret-of-at-least-32-characters", clock.clone());
        assert_eq!(
            other.verify("POST", path, &signed).unwrap_err(),
            Refusal::Signature
        );
        // A changed caller: refused.
        let mut forged = signed.clone();
        let mut admin = principal();
        admin.capabilities = CapabilitySet::ALL;
        forged.insert(
            PRINCIPAL.clone(),
            HeaderValue::from_str(&encode_principal(&admin)).unwrap(),
        );
        assert_eq!(
            b.verify("POST", path, &forged).unwrap_err(),
            Refusal::Signature
        );
        // No signature at all.
        let mut bare = signed.clone();
        bare.remove(&SIGNATURE);
        assert!(matches!(
            b.verify("POST", path, &bare).unwrap_err(),
            Refusal::Missing(_)
        ));
    }

    #[test]
    fn a_signature_expires_with_the_window() {
        let start = OffsetDateTime::now_utc();
        let clock = Arc::new(At(Mutex::new(start)));
        let node = link(SECRET, clock.clone());
        let signed = headers(&node.sign("GET", "/x", &principal(), b""));
        *clock.0.lock().unwrap() = start + SIGNATURE_WINDOW;
        assert!(node.verify("GET", "/x", &signed).is_ok());
        *clock.0.lock().unwrap() = start + SIGNATURE_WINDOW + time::Duration::seconds(1);
        assert_eq!(
            node.verify("GET", "/x", &signed).unwrap_err(),
            Refusal::Stale
        );
        *clock.0.lock().unwrap() = start - SIGNATURE_WINDOW - time::Duration::seconds(1);
        assert_eq!(
            node.verify("GET", "/x", &signed).unwrap_err(),
            Refusal::Stale
        );
    }

    #[test]
    fn principals_travel_whole() {
        let mut key = principal();
        key.kind = PrincipalKind::ApiKey(ApiKeyId::from_ulid(ulid::Ulid::new()));
        key.credential_expires_at = Some(time::macros::datetime!(2030-01-02 03:04:05.5 UTC));
        for p in [principal(), key] {
            assert_eq!(decode_principal(&encode_principal(&p)).unwrap(), p);
        }
        assert!(decode_principal("not base64!").is_none());
        assert!(decode_principal(&B64.encode(br#"{"org":"acme","caps":[]}"#)).is_none());
    }

    #[test]
    fn only_end_to_end_headers_pass() {
        for ok in ["content-type", "idempotency-key", "x-request-id", "accept"] {
            assert!(passes_on_request(&HeaderName::from_static(ok)), "{ok}");
        }
        for no in [
            "authorization",
            "host",
            "connection",
            "transfer-encoding",
            "x-wagate-signature",
            "x-wagate-principal",
        ] {
            assert!(!passes_on_request(&HeaderName::from_static(no)), "{no}");
        }
        assert!(passes_on_answer("retry-after") && passes_on_answer("content-disposition"));
        assert!(!passes_on_answer("transfer-encoding") && !passes_on_answer("content-length"));
        let req = TestRequest::get().uri("/a/b?c=d").to_srv_request();
        assert_eq!(path_and_query(&req), "/a/b?c=d");
        assert_eq!(req_path("/a/b?c=d"), "/a/b");
    }
}
