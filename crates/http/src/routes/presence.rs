//! Typing and presence: `POST …/chats/{jid}/presence`, `PUT …/presence`,
//! `POST …/contacts/{jid}/presence/subscribe`.

use actix_web::{HttpRequest, HttpResponse, web};
use wagate_domain::{ChatState, Jid};

use crate::dto::{ChatStateRequest, ErrorEnvelope, PresenceRequest};
use crate::extract::{Caller, json_body, session_id, session_item_body};
use crate::{ApiError, AppState};

#[utoipa::path(post, path = "/api/v1/sessions/{sessionId}/chats/{jid}/presence", tag = "presence",
    params(("sessionId" = String, Path, description = "`sess_` + ULID",
        pattern = r"^sess_[0-7][0-9A-HJKMNP-TV-Z]{25}$", example = "sess_01JBZ5T0Q4M6Y8V2K3N7R9S1WX"),
        ("jid" = String, Path, description = "User or LID JID; `@` raw or `%40`.",
        pattern = r"^[0-9]{5,20}(?:[.:][0-9]{1,5}){0,2}@(?:s\.whatsapp\.net|c\.us|lid)$",
        example = "14155550123@s.whatsapp.net")),
    request_body = ChatStateRequest,
    responses(
        (status = 204, description = "The contact sees it (typing shows until `paused`, or for about 25 s)."),
        (status = 400, description = "Bad JID (not a person) or `state` (`details.field`).", body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope), (status = 403, description = "Needs `send`.", body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 413, body = ErrorEnvelope), (status = 415, body = ErrorEnvelope),
        (status = 429, body = ErrorEnvelope),
        (status = 501, description = "The session is not connected (`details.status`).", body = ErrorEnvelope),
        (status = 503, body = ErrorEnvelope), (status = 504, body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn chat_state(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (id, chat, body): (_, _, ChatStateRequest) =
        session_item_body(&req, (&path.0, &path.1), |j| Ok(Jid::parse(j)?), &body)?;
    let chat_state = ChatState::parse(
        body.state
            .as_deref()
            .ok_or_else(|| ApiError::invalid("state", "is required"))?,
    )?;
    state
        .gateway
        .send_chat_state(&caller.0, &id, &chat, chat_state)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(put, path = "/api/v1/sessions/{sessionId}/presence", tag = "presence",
    params(("sessionId" = String, Path, description = "`sess_` + ULID",
        pattern = r"^sess_[0-7][0-9A-HJKMNP-TV-Z]{25}$", example = "sess_01JBZ5T0Q4M6Y8V2K3N7R9S1WX")),
    request_body = PresenceRequest,
    responses(
        (status = 204, description = "The account shows online (`available: true`) or offline to its contacts."),
        (status = 400, description = "Bad body (`details.field`: `available`).", body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope), (status = 403, description = "Needs `send`.", body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 413, body = ErrorEnvelope), (status = 415, body = ErrorEnvelope),
        (status = 429, body = ErrorEnvelope),
        (status = 501, description = "The session is not connected (`details.status`).", body = ErrorEnvelope),
        (status = 503, body = ErrorEnvelope), (status = 504, body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn set_presence(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let id = session_id(&path)?;
    let body: PresenceRequest = json_body(&req, &body, false)?;
    let available = body
        .available
        .ok_or_else(|| ApiError::invalid("available", "is required (true or false)"))?;
    state
        .gateway
        .set_presence(&caller.0, &id, available)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(post, path = "/api/v1/sessions/{sessionId}/contacts/{jid}/presence/subscribe", tag = "presence",
    params(("sessionId" = String, Path, description = "`sess_` + ULID",
        pattern = r"^sess_[0-7][0-9A-HJKMNP-TV-Z]{25}$", example = "sess_01JBZ5T0Q4M6Y8V2K3N7R9S1WX"),
        ("jid" = String, Path, description = "User or LID JID; `@` raw or `%40`.",
        pattern = r"^[0-9]{5,20}(?:[.:][0-9]{1,5}){0,2}@(?:s\.whatsapp\.net|c\.us|lid)$",
        example = "14155550123@s.whatsapp.net")),
    responses(
        (status = 204, description = "Subscribed: the contact's `presence.update` events arrive while the session stays connected (WhatsApp forgets subscriptions with the connection: subscribe again after a reconnect). Idempotent."),
        (status = 400, description = "Bad JID (not a person).", body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope), (status = 403, description = "Needs `read`.", body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope),
        (status = 429, body = ErrorEnvelope),
        (status = 501, description = "The session is not connected (`details.status`).", body = ErrorEnvelope),
        (status = 503, body = ErrorEnvelope), (status = 504, body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn subscribe(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, jid) = (session_id(&path.0)?, Jid::parse(&path.1)?);
    state
        .gateway
        .subscribe_presence(&caller.0, &id, &jid)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
