//! `/api/v1/sessions…`: the session lifecycle.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};
use wagate_domain::{PageRequest, PhoneNumber, SessionId, SessionName};

use crate::dto::{
    CreateSessionRequest, ErrorEnvelope, PairingCodeBody, PairingCodeRequest, PngImage, QrBody,
    SessionBody, SessionList, SvgImage,
};
use crate::extract::{Caller, json_body, session_id};
use crate::{ApiError, AppState, qr};

/// Query of `GET /api/v1/sessions`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// 1 to 100 (default 50).
    #[param(value_type = u32, required = false, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// `nextCursor` of the previous page.
    #[param(value_type = String, required = false,
        pattern = r"^sess_[0-7][0-9A-HJKMNP-TV-Z]{25}$")]
    cursor: Option<String>,
}

/// Query of `GET …/qr`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct QrQuery {
    /// `json` (default), `png` or `svg`.
    #[param(schema_with = qr_format, required = false)]
    format: Option<String>,
}

/// The schema of `format`: one of three names.
fn qr_format() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(["json", "png", "svg"]))
        .description(Some("`json` (default), `png` or `svg`."))
        .default(Some("json".into()))
        .build()
}

#[utoipa::path(post, path = "/api/v1/sessions", tag = "sessions", operation_id = "create_session",
    // By reference: the body is optional (not `required`), but never `null`.
    request_body(content = ref("#/components/schemas/CreateSessionRequest"), description = "May be empty."),
    responses(
        (status = 201, description = "Created; `Location` names it.", body = SessionBody,
            headers(("Location" = String, description = "`/api/v1/sessions/{sessionId}`"))),
        (status = 400, description = "Invalid name or body.", body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope), (status = 403, description = "Needs `manage`.", body = ErrorEnvelope),
        (status = 413, body = ErrorEnvelope), (status = 415, body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let body: CreateSessionRequest = json_body(&req, &body, true)?;
    let name = body.name.as_deref().map(SessionName::parse).transpose()?;
    let session = state.gateway.create_session(&caller.0, name).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/v1/sessions/{}", session.id)))
        .json(SessionBody::from(session)))
}

#[utoipa::path(get, path = "/api/v1/sessions", tag = "sessions", operation_id = "list_sessions", params(ListQuery),
    responses(
        (status = 200, body = SessionList),
        (status = 400, description = "Bad limit or cursor.", body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope), (status = 403, description = "Needs `read`.", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = query
        .limit
        .as_deref()
        .map(|l| {
            l.parse::<u32>().map_err(|_| {
                ApiError::invalid("limit", "invalid limit: must be a number from 1 to 100")
            })
        })
        .transpose()?;
    let cursor = query
        .cursor
        .as_deref()
        .map(|c| {
            SessionId::parse(c).map_err(|_| {
                ApiError::invalid(
                    "cursor",
                    "invalid cursor: pass the nextCursor of the previous page",
                )
            })
        })
        .transpose()?;
    let page = state
        .gateway
        .list_sessions(&caller.0, PageRequest::new(limit, cursor)?)
        .await?;
    Ok(HttpResponse::Ok().json(SessionList {
        data: page.items.into_iter().map(SessionBody::from).collect(),
        next_cursor: page.next_cursor.map(|c| c.to_string()),
    }))
}

#[utoipa::path(get, path = "/api/v1/sessions/{sessionId}", tag = "sessions", operation_id = "get_session",
    params(("sessionId" = String, Path, description = "`sess_` + ULID",
        pattern = r"^sess_[0-7][0-9A-HJKMNP-TV-Z]{25}$", example = "sess_01JBZ5T0Q4M6Y8V2K3N7R9S1WX")),
    responses(
        (status = 200, body = SessionBody),
        (status = 400, description = "Malformed id.", body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope), (status = 403, description = "Needs `read`.", body = ErrorEnvelope),
        (status = 404, description = "No such session in your organization.", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn get(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = session_id(&path)?;
    Ok(HttpResponse::Ok().json(SessionBody::from(
        state.gateway.get_session(&caller.0, &id).await?,
    )))
}

#[utoipa::path(delete, path = "/api/v1/sessions/{sessionId}", tag = "sessions", operation_id = "delete_session",
    params(("sessionId" = String, Path, description = "`sess_` + ULID",
        pattern = r"^sess_[0-7][0-9A-HJKMNP-TV-Z]{25}$", example = "sess_01JBZ5T0Q4M6Y8V2K3N7R9S1WX")),
    responses(
        (status = 204, description = "Deleted: unlinked from WhatsApp, device keys erased."),
        (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
        (status = 403, description = "Needs `manage`.", body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 503, description = "WhatsApp or the database is unavailable; try again.", body = ErrorEnvelope),
        (status = 504, description = "Not done within the request deadline; it finishes in the background.", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn delete(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = session_id(&path)?;
    state.gateway.delete_session(&caller.0, &id).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(post, path = "/api/v1/sessions/{sessionId}/connect", tag = "sessions",
    params(("sessionId" = String, Path, description = "`sess_` + ULID",
        pattern = r"^sess_[0-7][0-9A-HJKMNP-TV-Z]{25}$", example = "sess_01JBZ5T0Q4M6Y8V2K3N7R9S1WX")),
    responses(
        (status = 202, description = "Connecting (or pairing when not linked); kept connected until disconnect or logout.", body = SessionBody),
        (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
        (status = 403, description = "Needs `manage`.", body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 409, description = "A logout or delete of the session is still being finished (`details.status`).", body = ErrorEnvelope),
        (status = 503, description = "WhatsApp or the database is unavailable; try again.", body = ErrorEnvelope),
        (status = 504, description = "Not done within the request deadline; it finishes in the background.", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn connect(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = session_id(&path)?;
    Ok(HttpResponse::Accepted().json(SessionBody::from(
        state.gateway.connect_session(&caller.0, &id).await?,
    )))
}

#[utoipa::path(post, path = "/api/v1/sessions/{sessionId}/disconnect", tag = "sessions",
    params(("sessionId" = String, Path, description = "`sess_` + ULID",
        pattern = r"^sess_[0-7][0-9A-HJKMNP-TV-Z]{25}$", example = "sess_01JBZ5T0Q4M6Y8V2K3N7R9S1WX")),
    responses(
        (status = 202, description = "Disconnected; the link is kept.", body = SessionBody),
        (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
        (status = 403, description = "Needs `manage`.", body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 503, description = "WhatsApp or the database is unavailable; try again.", body = ErrorEnvelope),
        (status = 504, description = "Not done within the request deadline; it finishes in the background.", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn disconnect(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = session_id(&path)?;
    Ok(HttpResponse::Accepted().json(SessionBody::from(
        state.gateway.disconnect_session(&caller.0, &id).await?,
    )))
}

#[utoipa::path(post, path = "/api/v1/sessions/{sessionId}/logout", tag = "sessions",
    params(("sessionId" = String, Path, description = "`sess_` + ULID",
        pattern = r"^sess_[0-7][0-9A-HJKMNP-TV-Z]{25}$", example = "sess_01JBZ5T0Q4M6Y8V2K3N7R9S1WX")),
    responses(
        (status = 202, description = "Unlinked, device keys erased; status `logged_out`.", body = SessionBody),
        (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
        (status = 403, description = "Needs `manage`.", body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 503, description = "WhatsApp or the database is unavailable; try again.", body = ErrorEnvelope),
        (status = 504, description = "Not done within the request deadline; it finishes in the background.", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn logout(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = session_id(&path)?;
    Ok(HttpResponse::Accepted().json(SessionBody::from(
        state.gateway.logout_session(&caller.0, &id).await?,
    )))
}

#[utoipa::path(get, path = "/api/v1/sessions/{sessionId}/qr", tag = "sessions",
    params(("sessionId" = String, Path, description = "`sess_` + ULID",
        pattern = r"^sess_[0-7][0-9A-HJKMNP-TV-Z]{25}$", example = "sess_01JBZ5T0Q4M6Y8V2K3N7R9S1WX"), QrQuery),
    responses(
        (status = 200, description = "The QR code: JSON, or an image with `format=png|svg`.",
            content((QrBody = "application/json"), (inline(PngImage) = "image/png"), (inline(SvgImage) = "image/svg+xml"))),
        (status = 400, description = "Bad id or format.", body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
        (status = 403, description = "Needs `manage`.", body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 409, description = "The session is not pairing.", body = ErrorEnvelope),
        (status = 503, description = "WhatsApp or the database is unavailable; try again.", body = ErrorEnvelope),
        (status = 504, description = "Not done within the request deadline; it finishes in the background.", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn qr_code(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    query: web::Query<QrQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = session_id(&path)?;
    let format = query.format.as_deref().unwrap_or("json");
    if !matches!(format, "json" | "png" | "svg") {
        return Err(ApiError::invalid(
            "format",
            "invalid format: must be json, png or svg",
        ));
    }
    let code = state.gateway.session_qr(&caller.0, &id).await?;
    let res = match format {
        "png" => HttpResponse::Ok()
            .content_type("image/png")
            .body(qr::png(&code.code)?),
        "svg" => HttpResponse::Ok()
            .content_type("image/svg+xml")
            .body(qr::svg(&code.code)?),
        _ => HttpResponse::Ok().json(QrBody::from(code)),
    };
    Ok(res)
}

#[utoipa::path(post, path = "/api/v1/sessions/{sessionId}/pairing-code", tag = "sessions",
    params(("sessionId" = String, Path, description = "`sess_` + ULID",
        pattern = r"^sess_[0-7][0-9A-HJKMNP-TV-Z]{25}$", example = "sess_01JBZ5T0Q4M6Y8V2K3N7R9S1WX")),
    request_body = PairingCodeRequest,
    responses(
        (status = 200, description = "Type this code on the phone (WhatsApp → Linked devices → Link with phone number).", body = PairingCodeBody),
        (status = 400, description = "Bad id or phone number.", body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
        (status = 403, description = "Needs `manage`.", body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 409, description = "The session is not pairing.", body = ErrorEnvelope),
        (status = 413, body = ErrorEnvelope), (status = 415, body = ErrorEnvelope),
        (status = 503, description = "WhatsApp or the database is unavailable; try again.", body = ErrorEnvelope),
        (status = 504, description = "Not done within the request deadline; it finishes in the background.", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn pairing_code(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let id = session_id(&path)?;
    let body: PairingCodeRequest = json_body(&req, &body, false)?;
    let phone = body
        .phone_number
        .ok_or_else(|| ApiError::invalid("phoneNumber", "phoneNumber is required"))?;
    let phone = PhoneNumber::parse(&phone)?;
    let code = state
        .gateway
        .session_pairing_code(&caller.0, &id, &phone)
        .await?;
    Ok(HttpResponse::Ok().json(PairingCodeBody {
        code: code.as_str().to_owned(),
    }))
}
