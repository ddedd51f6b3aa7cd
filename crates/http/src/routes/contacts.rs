//! `/api/v1/sessions/{sessionId}/contacts…` and the blocklist: live calls.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};
use wagate_domain::{Jid, PictureType, SessionId};

use crate::dto::{AboutBody, BlockedBody, BlocklistBody, ErrorEnvelope, PictureBody};
use crate::extract::{Caller, session_id};
use crate::{ApiError, AppState};

/// Query of `GET …/picture`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PictureQuery {
    /// `image` (default) or `preview`.
    #[serde(rename = "type")]
    #[param(rename = "type", schema_with = picture_type, required = false)]
    kind: Option<String>,
}

/// The schema of `type`: `image` or `preview`.
fn picture_type() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(["image", "preview"]))
        .description(Some("`image` (default) or `preview`."))
        .default(Some("image".into()))
        .build()
}

fn ids(path: &(String, String)) -> Result<(SessionId, Jid), ApiError> {
    Ok((session_id(&path.0)?, Jid::parse(&path.1)?))
}

#[utoipa::path(get, path = "/api/v1/sessions/{sessionId}/contacts/{jid}/picture", tag = "contacts",
    params(("sessionId" = String, Path, description = "`sess_` + ULID",
        pattern = r"^sess_[0-7][0-9A-HJKMNP-TV-Z]{25}$", example = "sess_01JBZ5T0Q4M6Y8V2K3N7R9S1WX"),
           ("jid" = String, Path, description = "User, LID, group or channel JID; `@` raw or `%40`; a device (`:12`) or agent part is dropped.",
        pattern = r"^(?:[0-9]{5,20}(?:[.:][0-9]{1,5}){0,2}@(?:s\.whatsapp\.net|c\.us|lid)|(?:[0-9]{5,30}|[0-9]{5,20}-[0-9]{1,20})@g\.us|[0-9]{5,30}@newsletter)$",
        example = "14155550123@s.whatsapp.net"), PictureQuery),
    responses(
        (status = 200, body = PictureBody),
        (status = 400, description = "Bad id, JID or type (`details.field`).", body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope), (status = 403, description = "Needs `read`.", body = ErrorEnvelope),
        (status = 404, description = "No such session, or no picture (`details.reason`: `not_set` or `hidden`).", body = ErrorEnvelope),
        (status = 501, description = "The session is not connected (`details.status`).", body = ErrorEnvelope),
        (status = 503, body = ErrorEnvelope), (status = 504, body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn picture(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
    query: web::Query<PictureQuery>,
) -> Result<HttpResponse, ApiError> {
    let (id, jid) = ids(&path)?;
    let kind = query
        .kind
        .as_deref()
        .map(PictureType::parse)
        .transpose()?
        .unwrap_or_default();
    let picture = state
        .gateway
        .profile_picture(&caller.0, &id, &jid, kind)
        .await?;
    Ok(HttpResponse::Ok().json(PictureBody::from(picture)))
}

#[utoipa::path(get, path = "/api/v1/sessions/{sessionId}/contacts/{jid}/about", tag = "contacts",
    params(("sessionId" = String, Path, description = "`sess_` + ULID",
        pattern = r"^sess_[0-7][0-9A-HJKMNP-TV-Z]{25}$", example = "sess_01JBZ5T0Q4M6Y8V2K3N7R9S1WX"),
           ("jid" = String, Path, description = "User or LID JID; `@` raw or `%40`; a device (`:12`) or agent part is dropped.",
        pattern = r"^[0-9]{5,20}(?:[.:][0-9]{1,5}){0,2}@(?:s\.whatsapp\.net|c\.us|lid)$",
        example = "14155550123@s.whatsapp.net")),
    responses(
        (status = 200, body = AboutBody),
        (status = 400, description = "Bad id or JID (`details.field`).", body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope), (status = 403, description = "Needs `read`.", body = ErrorEnvelope),
        (status = 404, description = "No such session, or no about text (or hidden).", body = ErrorEnvelope),
        (status = 501, body = ErrorEnvelope), (status = 503, body = ErrorEnvelope), (status = 504, body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn about(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, jid) = ids(&path)?;
    Ok(HttpResponse::Ok().json(AboutBody::from(
        state.gateway.about(&caller.0, &id, &jid).await?,
    )))
}

#[utoipa::path(post, path = "/api/v1/sessions/{sessionId}/contacts/{jid}/block", tag = "contacts",
    params(("sessionId" = String, Path, description = "`sess_` + ULID",
        pattern = r"^sess_[0-7][0-9A-HJKMNP-TV-Z]{25}$", example = "sess_01JBZ5T0Q4M6Y8V2K3N7R9S1WX"),
           ("jid" = String, Path, description = "User or LID JID; `@` raw or `%40`; a device (`:12`) or agent part is dropped.",
        pattern = r"^[0-9]{5,20}(?:[.:][0-9]{1,5}){0,2}@(?:s\.whatsapp\.net|c\.us|lid)$",
        example = "14155550123@s.whatsapp.net")),
    responses(
        (status = 204, description = "Blocked (idempotent)."),
        (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
        (status = 403, description = "Needs `send`.", body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 501, body = ErrorEnvelope), (status = 503, body = ErrorEnvelope), (status = 504, body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn block(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, jid) = ids(&path)?;
    state.gateway.block(&caller.0, &id, &jid).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(post, path = "/api/v1/sessions/{sessionId}/contacts/{jid}/unblock", tag = "contacts",
    params(("sessionId" = String, Path, description = "`sess_` + ULID",
        pattern = r"^sess_[0-7][0-9A-HJKMNP-TV-Z]{25}$", example = "sess_01JBZ5T0Q4M6Y8V2K3N7R9S1WX"),
           ("jid" = String, Path, description = "User or LID JID; `@` raw or `%40`; a device (`:12`) or agent part is dropped.",
        pattern = r"^[0-9]{5,20}(?:[.:][0-9]{1,5}){0,2}@(?:s\.whatsapp\.net|c\.us|lid)$",
        example = "14155550123@s.whatsapp.net")),
    responses(
        (status = 204, description = "Unblocked (idempotent)."),
        (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
        (status = 403, description = "Needs `send`.", body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 501, body = ErrorEnvelope), (status = 503, body = ErrorEnvelope), (status = 504, body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn unblock(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, jid) = ids(&path)?;
    state.gateway.unblock(&caller.0, &id, &jid).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(get, path = "/api/v1/sessions/{sessionId}/blocklist", tag = "contacts",
    params(("sessionId" = String, Path, description = "`sess_` + ULID",
        pattern = r"^sess_[0-7][0-9A-HJKMNP-TV-Z]{25}$", example = "sess_01JBZ5T0Q4M6Y8V2K3N7R9S1WX")),
    responses(
        (status = 200, body = BlocklistBody),
        (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
        (status = 403, description = "Needs `read`.", body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 501, body = ErrorEnvelope), (status = 503, body = ErrorEnvelope), (status = 504, body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn blocklist(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = session_id(&path)?;
    let list = state.gateway.blocklist(&caller.0, &id).await?;
    Ok(HttpResponse::Ok().json(BlocklistBody {
        data: list.into_iter().map(BlockedBody::from).collect(),
    }))
}
