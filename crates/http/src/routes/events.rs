//! `/api/v1/events…`: the organization's event log, pulled by cursor or
//! followed as server-sent events.

use std::future::Future;
use std::sync::Arc;

use actix_web::http::header::{self, HeaderName};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};
use utoipa::{IntoParams, ToSchema};
use wagate_app::{AppError, EventPage, EventQuery, Gateway};
use wagate_auth::{AuthError, Authenticator};
use wagate_domain::{EventCursor, EventFilter, EventPattern, Principal, SessionId};

use crate::dto::{ErrorEnvelope, EventList, event_pattern_regex};
use crate::extract::{Caller, bearer_token};
use crate::stream::{self, PAGE, Source, TooMany};
use crate::{ApiError, AppState};

static LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");

/// Query of `GET /api/v1/events`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventsQuery {
    /// A cursor (an event's `cursor`, or a previous `nextCursor`): events
    /// after it. Absent: from the oldest retained event.
    #[param(value_type = String, required = false, pattern = r"^[0-9]{1,19}$", example = "42")]
    after: Option<String>,
    /// 1 to 1000 (default 100).
    #[param(value_type = u32, required = false, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// Comma-separated types or prefixes (`session.*`), `*` for all; absent: all.
    #[param(schema_with = types_param, required = false)]
    types: Option<String>,
    /// Only this session's events.
    #[param(value_type = String, required = false,
        pattern = r"^sess_[0-7][0-9A-HJKMNP-TV-Z]{25}$")]
    #[serde(rename = "sessionId")]
    session_id: Option<String>,
}

/// Query of `GET /api/v1/events/stream`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct StreamQuery {
    /// A cursor: events after it (the `Last-Event-ID` header wins when both
    /// are sent; each must be a cursor). Absent: from the oldest retained
    /// event.
    #[param(value_type = String, required = false, pattern = r"^[0-9]{1,19}$", example = "42")]
    after: Option<String>,
    /// Comma-separated types or prefixes (`session.*`), `*` for all; absent: all.
    #[param(schema_with = types_param, required = false)]
    types: Option<String>,
    /// Only this session's events.
    #[param(value_type = String, required = false,
        pattern = r"^sess_[0-7][0-9A-HJKMNP-TV-Z]{25}$")]
    #[serde(rename = "sessionId")]
    session_id: Option<String>,
}

/// Headers of `GET /api/v1/events/stream`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // documents the header the handler reads
pub(crate) struct StreamHeaders {
    /// The `id` of the last message received: the stream resumes right
    /// after it, with no gap and no duplicate (wins over `after`).
    #[param(rename = "Last-Event-ID", value_type = String, required = false,
        pattern = r"^[0-9]{1,19}$", example = "42")]
    last_event_id: Option<String>,
}

/// One message of the event stream (`text/event-stream`) as an SSE client
/// reads it: the event's cursor, type and JSON. (In OpenAPI 3.1 the schema
/// of an event stream describes each message, not the stream's text.)
#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code)] // documents `stream::frame`; never built
pub(crate) struct EventStreamMessage {
    /// The event's `cursor`: send it back as `Last-Event-ID` (an
    /// `EventSource` does) to resume right after this event.
    #[schema(pattern = r"^[0-9]{1,19}$", example = "42")]
    id: String,
    /// The event's `type` (more types will come: ignore those you do not
    /// know).
    #[schema(example = "session.status")]
    event: String,
    /// The event object, as JSON on one line.
    #[schema(schema_with = event_json)]
    data: String,
}

/// `data` of a stream message: a string holding an event's JSON.
fn event_json() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .content_media_type("application/json")
        // JSON Schema 2020-12 `contentSchema` (utoipa has no builder for it).
        .extensions(Some(Extensions::from_iter([(
            "contentSchema",
            serde_json::json!({ "$ref": "#/components/schemas/EventBody" }),
        )])))
        .description(Some("The event object (`EventBody`), as JSON on one line."))
        .examples([serde_json::json!(STREAM_EXAMPLE_DATA)])
        .build()
}

/// An event's JSON, as the examples show it.
const STREAM_EXAMPLE_DATA: &str = r#"{"id":"evt_01JBZ5T0Q4M6Y8V2K3N7R9S1WX","cursor":"42","type":"session.status","orgId":"acme","sessionId":"sess_01JBZ5T0Q4M6Y8V2K3N7R9S1WX","occurredAt":"2026-11-28T10:00:00.123Z","data":{"status":"connected","previous":"pairing","lastError":null}}"#;

/// The schema of `types`: a comma-separated list of patterns.
fn types_param() -> Object {
    let one = event_pattern_regex();
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(format!("^{one}(?:,{one})*$")))
        .description(Some(
            "Comma-separated event types (`session.status`), prefixes (`session.*`) or `*`.",
        ))
        .examples([serde_json::json!("session.status,session.qr")])
        .build()
}

/// The filter `types` and `sessionId` describe.
fn filter(types: Option<&str>, session: Option<&str>) -> Result<EventFilter, ApiError> {
    let types = match types {
        None => Vec::new(),
        Some(list) => {
            let mut patterns = Vec::new();
            for item in list.split(',') {
                let p = EventPattern::parse(item.trim(), "types")?;
                if !patterns.contains(&p) {
                    patterns.push(p);
                }
            }
            patterns
        }
    };
    let sessions = session
        .map(|s| {
            SessionId::parse(s).map_err(|e| {
                ApiError::invalid("sessionId", format!("invalid sessionId: {}", e.message))
            })
        })
        .transpose()?
        .map(|s| vec![s]);
    Ok(EventFilter { types, sessions })
}

/// A cursor as the document describes it (`^[0-9]{1,19}$`): `None` for
/// anything else, the empty text included.
pub(crate) fn cursor_text(raw: &str) -> Option<EventCursor> {
    if raw.len() > 19 {
        return None;
    }
    EventCursor::parse(raw, "after").ok()
}

fn cursor(raw: Option<&str>, field: &'static str) -> Result<Option<EventCursor>, ApiError> {
    raw.map(|c| {
        cursor_text(c).ok_or_else(|| {
            ApiError::invalid(
                field,
                format!("invalid {field}: pass the cursor of an event (or a nextCursor)"),
            )
        })
    })
    .transpose()
}

#[utoipa::path(get, path = "/api/v1/events", tag = "events", operation_id = "list_events",
    params(EventsQuery),
    responses(
        (status = 200, description = "Events after `after` in cursor order; poll again with `nextCursor`.", body = EventList),
        (status = 400, description = "Bad after, limit, types or sessionId (`details.field`).", body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope), (status = 403, description = "Needs `read`.", body = ErrorEnvelope),
        (status = 410, description = "`gone`: `after` is older than the retained events (`events.retention_days`); start again without it.", body = ErrorEnvelope),
        (status = 503, description = "The database is unavailable; try again.", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<EventsQuery>,
) -> Result<HttpResponse, ApiError> {
    let after = cursor(query.after.as_deref(), "after")?;
    let limit = match query.limit.as_deref() {
        None => 100,
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=1000).contains(l))
            .ok_or_else(|| {
                ApiError::invalid("limit", "invalid limit: must be a number from 1 to 1000")
            })?,
    };
    let filter = filter(query.types.as_deref(), query.session_id.as_deref())?;
    let page = state
        .gateway
        .read_events(
            &caller.0,
            &EventQuery {
                after,
                filter,
                limit,
            },
        )
        .await?;
    Ok(HttpResponse::Ok().json(EventList {
        data: page.events.iter().map(|e| e.to_json()).collect(),
        next_cursor: page.next.to_string(),
    }))
}

#[utoipa::path(get, path = "/api/v1/events/stream", tag = "events", operation_id = "stream_events",
    params(StreamQuery, StreamHeaders),
    responses(
        (status = 200, description = "Server-sent events, until the client or the server closes. Each event is one message: \
            `id: <cursor>`, `event: <type>`, `data: <the event object on one line>`; the schema describes one message \
            (`EventStreamMessage`), as an SSE client reads it. A `: keep-alive` comment comes at least every 15 s. A client \
            that leaves its buffer full for 30 s is disconnected; the stream also ends when the server shuts down or the \
            credential stops working (a revoked key, an expired login: checked every keep-alive period, however busy the \
            stream is): reconnect with `Last-Event-ID`. On the wire:\n\n\
            ```\nid: 42\nevent: session.status\ndata: {\"id\":\"evt_01JBZ5T0Q4M6Y8V2K3N7R9S1WX\",\"cursor\":\"42\",\"type\":\"session.status\",…}\n\n: keep-alive\n```",
            content_type = "text/event-stream", body = EventStreamMessage),
        (status = 400, description = "Bad after or Last-Event-ID (each checked, also when both are sent), types or sessionId (`details.field`).", body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope), (status = 403, description = "Needs `read`.", body = ErrorEnvelope),
        (status = 410, description = "`gone`: the cursor is older than the retained events; start again without it.", body = ErrorEnvelope),
        (status = 429, description = "`rate_limited`: the credential already has `events.max_streams_per_credential` (default 5) streams open, \
            or the organization `events.max_streams_per_org` (default 20); `details.limit` is the cap reached.", body = ErrorEnvelope),
        (status = 503, description = "The database is unavailable; try again.", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn stream(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    query: web::Query<StreamQuery>,
) -> Result<HttpResponse, ApiError> {
    // Last-Event-ID (a reconnecting EventSource) wins over the URL's
    // `after`; both are checked, so a malformed one is never ignored.
    let after = cursor(query.after.as_deref(), "after")?;
    let after = match req.headers().get(&LAST_EVENT_ID) {
        Some(v) => cursor(
            Some(v.to_str().map_err(|_| {
                ApiError::invalid("Last-Event-ID", "invalid Last-Event-ID: not a cursor")
            })?),
            "Last-Event-ID",
        )?,
        None => after,
    };
    let filter = filter(query.types.as_deref(), query.session_id.as_deref())?;
    // Subscribed before the first read: no commit after it is missed.
    let wake = state.gateway.watch_events(&caller.0)?;
    let slot = state
        .stream_slots
        .take(&caller.0, &state.event_stream)
        .map_err(too_many_streams)?;
    let token = bearer_token(req.headers())?.to_owned();
    let mut source = GatewaySource {
        gateway: state.gateway.clone(),
        authenticator: state.authenticator.clone(),
        token,
        principal: caller.0,
        filter,
    };
    // The first page here, so a bad cursor is a status, not a broken stream.
    let first = match after {
        Some(after) => source.read(after).await?,
        None => {
            source
                .gateway
                .read_events(
                    &source.principal,
                    &EventQuery {
                        after: None,
                        filter: source.filter.clone(),
                        limit: PAGE,
                    },
                )
                .await?
        }
    };
    let body = stream::start(
        source,
        first,
        wake,
        state.shutdown.subscribe(),
        state.event_stream,
        Some(slot),
    );
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        // Proxies that buffer (nginx) pass it through as it comes.
        .insert_header(("X-Accel-Buffering", "no"))
        // A stream's connection is never reused: when it ends, it closes
        // (so an ended stream does not hold graceful shutdown either).
        .force_close()
        .streaming(body))
}

/// 429 for one stream too many, naming the cap.
fn too_many_streams(cap: TooMany) -> ApiError {
    let (what, limit) = match cap {
        TooMany::Credential(limit) => (
            format!(
                "this credential already has {limit} event streams open (events.max_streams_per_credential)"
            ),
            limit,
        ),
        TooMany::Org(limit) => (
            format!(
                "this organization already has {limit} event streams open (events.max_streams_per_org)"
            ),
            limit,
        ),
    };
    // A slot frees when a stream ends; a reconnecting client should not
    // hammer the gateway meanwhile.
    ApiError::too_many(&what, 5).detail("limit", limit)
}

/// A stream's events from the gateway, as its caller may read them.
struct GatewaySource {
    gateway: Arc<Gateway>,
    authenticator: Arc<dyn Authenticator>,
    /// The bearer token, checked again at every keep-alive.
    token: String,
    principal: Principal,
    filter: EventFilter,
}

impl Source for GatewaySource {
    fn read(
        &mut self,
        after: EventCursor,
    ) -> impl Future<Output = Result<EventPage, AppError>> + Send {
        let query = EventQuery {
            after: Some(after),
            filter: self.filter.clone(),
            limit: PAGE,
        };
        async move { self.gateway.read_events(&self.principal, &query).await }
    }

    async fn still_allowed(&mut self) -> bool {
        match self.authenticator.authenticate(&self.token).await {
            // Capabilities are checked by the next read.
            Ok(Some(p)) if p.org == self.principal.org => {
                self.principal = p;
                true
            }
            Ok(_) | Err(AuthError::Rejected(_)) => false,
            // Cannot tell now (the JWKS is unreachable): keep going.
            Err(AuthError::Unavailable(_)) => true,
        }
    }
}
