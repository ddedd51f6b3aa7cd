//! # wagate-http
//!
//! wagate's HTTP API on actix-web: every route of the v1 contract, the
//! [`Caller`] extractor that authenticates the bearer token, one error
//! envelope ([`ApiError`]) for every non-2xx answer — including unknown
//! routes, wrong methods, malformed or oversized bodies and panics —,
//! `X-Request-Id` on every answer, a request limit per credential (a
//! [`RateLimit`], by default [`DEFAULT_REQUEST_LIMIT`]; 429 over it),
//! Prometheus [`Metrics`], the OpenAPI document ([`openapi::json`]) and
//! Swagger UI over it at `/docs/`, and the dashboard at `/ui` (embedded
//! static files; a client of the API, with no route of its own).
//!
//! The handlers are thin: they parse the request into domain values, call
//! one use case of [`wagate_app::Gateway`], and turn its answer into JSON.
//! A route that needs the session's WhatsApp client runs on the gateway
//! that owns the session: when that is another one, it is forwarded there
//! once, signed ([`NodeLink`], [`AppState::with_cluster`]).
//!
//! ```no_run
//! # use std::sync::Arc;
//! # fn demo(gateway: Arc<wagate_app::Gateway>, auth: Arc<dyn wagate_auth::Authenticator>) -> std::io::Result<()> {
//! let state = wagate_http::AppState::new(gateway, auth).map_err(std::io::Error::other)?;
//! let listener = std::net::TcpListener::bind("127.0.0.1:8080")?;
//! let server = wagate_http::server(listener, state, None)?; // await it inside an actix/tokio runtime
//! # Ok(()) }
//! ```

mod docs;
mod dto;
mod error;
mod extract;
mod forward;
mod large_bodies;
mod metrics;
mod middleware;
pub mod openapi;
mod qr;
mod rate_limit;
mod routes;
mod stream;
mod ui;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Instant;

use actix_web::{App, HttpServer, web};
use wagate_app::Gateway;
use wagate_auth::Authenticator;
use wagate_domain::RateLimit;
use wagate_store::{SessionOwnership, SingleNode};

pub use error::ApiError;
pub use extract::Caller;
pub use forward::{NodeLink, RETRY_AFTER_SECS, SIGNATURE_WINDOW};
pub use metrics::Metrics;
pub use rate_limit::DEFAULT_REQUEST_LIMIT;
pub use stream::{EventStreamConfig, Shutdown};

/// The largest request body accepted (64 KiB).
pub const MAX_BODY: usize = 64 * 1024;

/// Everything the handlers share; built once by the binary.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The use cases.
    pub gateway: Arc<Gateway>,
    /// The bearer-token chain (JWT, then API key).
    pub authenticator: Arc<dyn Authenticator>,
    /// The metrics registry.
    pub metrics: Metrics,
    /// Which gateway runs a session's live calls.
    ownership: Arc<dyn SessionOwnership>,
    /// How this gateway reaches the others (`None`: `cluster.secret` is
    /// not set, so it neither forwards nor accepts forwarded requests).
    link: Option<Arc<NodeLink>>,
    /// Request limits per credential (`None`: unlimited).
    limiter: Option<Arc<rate_limit::RateLimiter>>,
    /// How event streams behave.
    event_stream: EventStreamConfig,
    /// The open event streams, counted per credential and organization.
    stream_slots: Arc<stream::StreamSlots>,
    /// Places for send bodies over 64 KiB.
    large_bodies: Arc<large_bodies::LargeBodies>,
    /// Ends the event streams when the server stops.
    shutdown: Shutdown,
    openapi_json: web::Bytes,
    swagger_ui: docs::SwaggerUi,
}

impl AppState {
    /// The state of an app over `gateway`, authenticating with
    /// `authenticator`, with the [`DEFAULT_REQUEST_LIMIT`] per credential
    /// (change it with [`AppState::with_request_limit`]).
    ///
    /// # Errors
    ///
    /// When the metrics cannot be registered (a bug).
    pub fn new(
        gateway: Arc<Gateway>,
        authenticator: Arc<dyn Authenticator>,
    ) -> Result<Self, prometheus::Error> {
        let openapi_json = web::Bytes::from(openapi::json());
        let large_bodies = Arc::new(large_bodies::LargeBodies::new(send_body_limit(&gateway)));
        Ok(Self {
            gateway,
            authenticator,
            metrics: Metrics::new()?,
            ownership: Arc::new(SingleNode),
            link: None,
            limiter: None,
            event_stream: EventStreamConfig::default(),
            stream_slots: Arc::default(),
            large_bodies,
            shutdown: Shutdown::default(),
            openapi_json,
            swagger_ui: docs::SwaggerUi::new("/openapi.json"),
        }
        .with_request_limit(Some(DEFAULT_REQUEST_LIMIT)))
    }

    /// Limits every credential (an API key; a person, by organization and
    /// the login JWT's subject) to `limit` on the `/api/v1` routes, checked
    /// right after authentication; `None` lifts the limit.
    #[must_use]
    pub fn with_request_limit(mut self, limit: Option<RateLimit>) -> Self {
        self.limiter =
            limit.map(|limit| Arc::new(rate_limit::RateLimiter::new(limit, Instant::now())));
        self
    }

    /// Runs each session's live calls where `ownership` says, forwarding
    /// them to another node over `link` (which also admits the requests
    /// other nodes forward here). Without it, every call runs here and a
    /// forwarded request is refused.
    #[must_use]
    pub fn with_cluster(
        mut self,
        ownership: Arc<dyn SessionOwnership>,
        link: Option<Arc<NodeLink>>,
    ) -> Self {
        self.ownership = ownership;
        self.link = link;
        self
    }

    /// Sets how event streams (`GET /api/v1/events/stream`) keep alive,
    /// how much they buffer for a slow client and how many may be open.
    #[must_use]
    pub fn with_event_stream(mut self, config: EventStreamConfig) -> Self {
        self.event_stream = config;
        self
    }

    /// Ends the event streams of this state's server. [`server`] closes it
    /// on SIGTERM and Ctrl-C; close it before stopping the server another
    /// way, or graceful shutdown waits for open streams until its timeout.
    pub fn shutdown(&self) -> Shutdown {
        self.shutdown.clone()
    }
}

/// The body limit of a message send: media up to
/// `messages.max_media_bytes`, base64 (4/3 as large), plus the rest of the
/// JSON.
pub(crate) fn send_body_limit(gateway: &Gateway) -> usize {
    let max_media = gateway.outbox().settings().max_media_bytes;
    usize::try_from(max_media / 3 * 4 + 4)
        .unwrap_or(usize::MAX)
        .saturating_add(MAX_BODY)
}

/// Registers every route, the shared state and the extractor limits on `cfg`.
/// Wrap the app in the edge middleware (as [`server`] does) to get request
/// ids, metrics and the envelope on answers actix makes itself.
pub fn configure(cfg: &mut web::ServiceConfig, state: web::Data<AppState>) {
    use actix_web::middleware::from_fn;
    use routes::{
        api_keys, contacts, conversation, events, groups, messages, ops, polls, presence, receipts,
        sessions, webhooks,
    };

    // Routes are named by their full pattern, so metrics label them without
    // allocating: `api!` names a route of the /api/v1 scope, `op!` an
    // operations route.
    macro_rules! api {
        ($path:literal) => {
            web::resource($path).name(concat!("/api/v1", $path))
        };
    }
    // `live!` names a route that needs the session's WhatsApp client: it
    // runs on the node that owns the session (forwarded there if need be).
    macro_rules! live {
        ($path:literal) => {
            api!($path).wrap(from_fn(forward::forward_live))
        };
    }
    macro_rules! op {
        ($path:literal) => {
            web::resource($path).name($path)
        };
    }

    let api = web::scope("/api/v1")
        // Every /api/v1 request is authenticated first: a bad token is 401
        // whatever else is wrong with the request.
        .wrap(actix_web::middleware::from_fn(middleware::authenticate))
        .service(
            api!("/sessions")
                .route(web::post().to(sessions::create))
                .route(web::get().to(sessions::list)),
        )
        .service(
            api!("/sessions/{sessionId}")
                .wrap(from_fn(forward::forward_unless_get))
                .route(web::get().to(sessions::get))
                .route(web::delete().to(sessions::delete)),
        )
        .service(live!("/sessions/{sessionId}/connect").route(web::post().to(sessions::connect)))
        .service(
            live!("/sessions/{sessionId}/disconnect").route(web::post().to(sessions::disconnect)),
        )
        .service(live!("/sessions/{sessionId}/logout").route(web::post().to(sessions::logout)))
        .service(live!("/sessions/{sessionId}/qr").route(web::get().to(sessions::qr_code)))
        .service(
            live!("/sessions/{sessionId}/pairing-code")
                .route(web::post().to(sessions::pairing_code)),
        )
        .service(
            live!("/sessions/{sessionId}/contacts/{jid}/picture")
                .route(web::get().to(contacts::picture)),
        )
        .service(
            live!("/sessions/{sessionId}/contacts/{jid}/about")
                .route(web::get().to(contacts::about)),
        )
        .service(
            live!("/sessions/{sessionId}/contacts/{jid}/block")
                .route(web::post().to(contacts::block)),
        )
        .service(
            live!("/sessions/{sessionId}/contacts/{jid}/unblock")
                .route(web::post().to(contacts::unblock)),
        )
        .service(live!("/sessions/{sessionId}/blocklist").route(web::get().to(contacts::blocklist)))
        .service(
            live!("/sessions/{sessionId}/contacts/{jid}/presence/subscribe")
                .route(web::post().to(presence::subscribe)),
        )
        .service(
            live!("/sessions/{sessionId}/chats/{jid}/presence")
                .route(web::post().to(presence::chat_state)),
        )
        .service(
            live!("/sessions/{sessionId}/presence").route(web::put().to(presence::set_presence)),
        )
        .service(
            api!("/sessions/{sessionId}/groups")
                // The list is the store's; creating a group is live.
                .wrap(from_fn(forward::forward_unless_get))
                .route(web::get().to(groups::list))
                .route(web::post().to(groups::create)),
        )
        // Before `{groupJid}`: "join" is not a group.
        .service(live!("/sessions/{sessionId}/groups/join").route(web::post().to(groups::join)))
        .service(
            live!("/sessions/{sessionId}/groups/{groupJid}")
                .route(web::get().to(groups::get))
                .route(web::patch().to(groups::update)),
        )
        .service(
            live!("/sessions/{sessionId}/groups/{groupJid}/participants")
                .route(web::post().to(groups::participants)),
        )
        .service(
            live!("/sessions/{sessionId}/groups/{groupJid}/invite")
                .route(web::get().to(groups::invite)),
        )
        .service(
            live!("/sessions/{sessionId}/groups/{groupJid}/invite/revoke")
                .route(web::post().to(groups::revoke_invite)),
        )
        .service(
            live!("/sessions/{sessionId}/groups/{groupJid}/leave")
                .route(web::post().to(groups::leave)),
        )
        .service(
            live!("/sessions/{sessionId}/groups/{groupJid}/requests")
                .route(web::get().to(groups::requests))
                .route(web::post().to(groups::answer_requests)),
        )
        .service(
            api!("/sessions/{sessionId}/messages")
                .wrap(from_fn(forward::forward_unless_get))
                .route(web::post().to(messages::send))
                .route(web::get().to(messages::list)),
        )
        .service(
            // Reading is local; an edit or a deletion needs the client.
            api!("/sessions/{sessionId}/messages/{messageId}")
                .wrap(from_fn(forward::forward_unless_get))
                .route(web::get().to(messages::get))
                .route(web::patch().to(conversation::edit_message))
                .route(web::delete().to(conversation::revoke_message)),
        )
        .service(
            live!("/sessions/{sessionId}/messages/{messageId}/media")
                .route(web::get().to(messages::media)),
        )
        .service(
            api!("/sessions/{sessionId}/messages/{messageId}/poll")
                .route(web::get().to(polls::results)),
        )
        .service(
            api!("/sessions/{sessionId}/messages/{messageId}/receipts")
                .route(web::get().to(receipts::list)),
        )
        .service(
            live!("/sessions/{sessionId}/messages/{messageId}/reaction")
                .route(web::post().to(messages::react)),
        )
        .service(
            live!("/sessions/{sessionId}/chats/{jid}/read").route(web::post().to(messages::read)),
        )
        .service(
            api!("/api-keys")
                .route(web::post().to(api_keys::create))
                .route(web::get().to(api_keys::list)),
        )
        .service(api!("/api-keys/{id}").route(web::delete().to(api_keys::revoke)))
        .service(api!("/events").route(web::get().to(events::list)))
        .service(api!("/events/stream").route(web::get().to(events::stream)))
        .service(
            api!("/webhooks")
                .route(web::post().to(webhooks::create))
                .route(web::get().to(webhooks::list)),
        )
        .service(
            api!("/webhooks/{id}")
                .route(web::get().to(webhooks::get))
                .route(web::patch().to(webhooks::update))
                .route(web::delete().to(webhooks::delete)),
        )
        .service(
            api!("/webhooks/{id}/rotate-secret").route(web::post().to(webhooks::rotate_secret)),
        )
        .service(api!("/webhooks/{id}/test").route(web::post().to(webhooks::test)))
        .service(api!("/webhooks/{id}/deliveries").route(web::get().to(webhooks::deliveries)))
        .service(api!("/webhooks/{id}/replay").route(web::post().to(webhooks::replay)));

    cfg.app_data(state)
        .app_data(web::PayloadConfig::new(MAX_BODY))
        .app_data(web::QueryConfig::default().error_handler(|e, _| {
            ApiError::invalid("query", format!("malformed query string: {e}")).into()
        }))
        .app_data(
            web::PathConfig::default().error_handler(|e, _| {
                ApiError::invalid("path", format!("malformed path: {e}")).into()
            }),
        )
        .service(api)
        .service(op!("/healthz").route(web::get().to(ops::healthz)))
        .service(op!("/readyz").route(web::get().to(ops::readyz)))
        .service(op!("/openapi.json").route(web::get().to(ops::openapi)))
        .service(op!("/docs").route(web::get().to(ops::docs)))
        // Swagger UI's page (`/docs/`) and the files it loads.
        .service(
            web::resource("/docs/{file:.*}")
                .name("/docs/{file}")
                .route(web::get().to(ops::docs_file)),
        )
        .service(op!("/metrics").route(web::get().to(ops::metrics)))
        // The dashboard: static files only (it calls the API above).
        .service(op!("/").route(web::get().to(ui::root)))
        .service(
            web::scope(ui::UI_PATH)
                .wrap(actix_web::middleware::Compress::default())
                .service(web::resource("").name("/ui").route(web::get().to(ui::page)))
                .service(
                    web::resource("/")
                        .name("/ui/")
                        .route(web::get().to(ui::page)),
                )
                .service(
                    web::resource("/{file}")
                        .name("/ui/{file}")
                        .route(web::get().to(ui::file)),
                ),
        )
        .default_service(web::to(|| async {
            Err::<actix_web::HttpResponse, _>(ApiError::new(
                actix_web::http::StatusCode::NOT_FOUND,
                "not_found",
                "no such route",
            ))
        }));
}

/// An HTTP server on `listener` serving the whole API (not started until
/// awaited). It stops gracefully on SIGTERM or Ctrl-C: event streams end,
/// other requests in flight finish (up to 10 s), then the returned future
/// resolves. Stopping it through its handle instead, close
/// [`AppState::shutdown`] first.
///
/// # Errors
///
/// When the listener cannot be used.
pub fn server(
    listener: TcpListener,
    state: AppState,
    workers: Option<usize>,
) -> std::io::Result<actix_web::dev::Server> {
    close_streams_on_signal(state.shutdown());
    let state = web::Data::new(state);
    let mut server = HttpServer::new(move || {
        App::new()
            .wrap(actix_web::middleware::from_fn(middleware::edge))
            .configure(|cfg| configure(cfg, state.clone()))
    })
    .shutdown_timeout(10);
    if let Some(n) = workers {
        server = server.workers(n);
    }
    Ok(server.listen(listener)?.run())
}

/// Closes `shutdown` on SIGTERM or Ctrl-C (actix stops the server on the
/// same signals), so graceful shutdown does not wait for event streams.
fn close_streams_on_signal(shutdown: Shutdown) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        #[cfg(unix)]
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = terminate => {}
            // Stopped another way: nothing left to wait for.
            () = shutdown.closed() => return,
        }
        shutdown.close();
    });
}

/// The README's example, compiled (and run) as a doc test so it stays true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
