//! `/api/v1/webhooks…`: where the organization's events are pushed.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::Value;
use utoipa::IntoParams;
use wagate_app::{NewWebhook, WebhookPatch};
use wagate_domain::{
    EventCursor, EventPattern, SessionId, WebhookDescription, WebhookId, WebhookUrl,
};

use crate::dto::{
    CreateWebhookRequest, CreatedWebhookBody, DeliveryBody, DeliveryList, ErrorEnvelope,
    ReplayBody, ReplayRequest, UpdateWebhookRequest, WebhookBody, WebhookList, WebhookSecretBody,
    WebhookTestBody,
};
use crate::extract::{Caller, json_body};
use crate::routes::events::cursor_text;
use crate::{ApiError, AppState};

/// Parses the `{id}` path segment.
fn webhook_id(raw: &str) -> Result<WebhookId, ApiError> {
    WebhookId::parse(raw).map_err(|e| ApiError::invalid("id", format!("invalid id: {}", e.message)))
}

fn text<'a>(v: &'a Value, field: &'static str) -> Result<&'a str, ApiError> {
    v.as_str()
        .ok_or_else(|| ApiError::invalid(field, format!("invalid {field}: must be a string")))
}

fn url(v: &Value) -> Result<WebhookUrl, ApiError> {
    Ok(WebhookUrl::parse(text(v, "url")?)?)
}

const MAX_PATTERNS: usize = 50;
const MAX_SESSIONS: usize = 100;

fn events(v: &Value) -> Result<Vec<EventPattern>, ApiError> {
    let bad = |m: &str| ApiError::invalid("events", format!("invalid events: {m}"));
    let items = v
        .as_array()
        .ok_or_else(|| bad("must be an array such as [\"session.*\"]"))?;
    if items.is_empty() || items.len() > MAX_PATTERNS {
        return Err(bad(&format!(
            "must hold 1 to {MAX_PATTERNS} patterns, e.g. [\"session.*\"] or [\"*\"]"
        )));
    }
    let mut patterns = Vec::with_capacity(items.len());
    for item in items {
        let p = EventPattern::parse(text(item, "events")?, "events")?;
        if !patterns.contains(&p) {
            patterns.push(p);
        }
    }
    Ok(patterns)
}

fn session_ids(v: &Value) -> Result<Option<Vec<SessionId>>, ApiError> {
    let bad = |m: String| ApiError::invalid("sessionIds", format!("invalid sessionIds: {m}"));
    if v.is_null() {
        return Ok(None);
    }
    let items = v
        .as_array()
        .ok_or_else(|| bad("must be null or an array of session ids".into()))?;
    if items.is_empty() || items.len() > MAX_SESSIONS {
        return Err(bad(format!(
            "must hold 1 to {MAX_SESSIONS} session ids (null: every session)"
        )));
    }
    let mut ids = Vec::with_capacity(items.len());
    for item in items {
        let id = SessionId::parse(text(item, "sessionIds")?).map_err(|e| bad(e.message))?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(Some(ids))
}

fn description(v: &Value) -> Result<WebhookDescription, ApiError> {
    if v.is_null() {
        return Ok(WebhookDescription::default());
    }
    Ok(WebhookDescription::parse(text(v, "description")?)?)
}

fn required<'a>(v: Option<&'a Value>, field: &'static str) -> Result<&'a Value, ApiError> {
    v.filter(|v| !v.is_null())
        .ok_or_else(|| ApiError::invalid(field, format!("{field} is required")))
}

fn new_webhook(body: CreateWebhookRequest) -> Result<NewWebhook, ApiError> {
    Ok(NewWebhook {
        url: url(required(body.url.as_ref(), "url")?)?,
        events: events(required(body.events.as_ref(), "events")?)?,
        session_ids: body
            .session_ids
            .as_ref()
            .map(session_ids)
            .transpose()?
            .flatten(),
        // Absent is empty; null is not a string (it clears the description
        // only in a PATCH).
        description: match body.description {
            None => WebhookDescription::default(),
            Some(Value::Null) => {
                return Err(ApiError::invalid(
                    "description",
                    "invalid description: must be a string (leave it out for none)",
                ));
            }
            Some(v) => description(&v)?,
        },
    })
}

fn patch(body: UpdateWebhookRequest) -> Result<WebhookPatch, ApiError> {
    let not_null = |v: Option<Value>, field: &'static str| -> Result<Option<Value>, ApiError> {
        match v {
            Some(Value::Null) => Err(ApiError::invalid(
                field,
                format!("{field} cannot be null (leave it out to keep it)"),
            )),
            v => Ok(v),
        }
    };
    Ok(WebhookPatch {
        url: not_null(body.url, "url")?.as_ref().map(url).transpose()?,
        events: not_null(body.events, "events")?
            .as_ref()
            .map(events)
            .transpose()?,
        session_ids: body.session_ids.as_ref().map(session_ids).transpose()?,
        description: body.description.as_ref().map(description).transpose()?,
        enabled: not_null(body.enabled, "enabled")?
            .map(|v| {
                v.as_bool().ok_or_else(|| {
                    ApiError::invalid("enabled", "invalid enabled: must be true or false")
                })
            })
            .transpose()?,
    })
}

#[utoipa::path(post, path = "/api/v1/webhooks", tag = "webhooks", operation_id = "create_webhook",
    request_body = CreateWebhookRequest,
    responses(
        (status = 201, description = "Created. `secret` is shown only here.", body = CreatedWebhookBody,
            headers(("Location" = String, description = "`/api/v1/webhooks/{id}`"),
                    ("Cache-Control" = String, description = "`no-store`: the answer holds a secret."))),
        (status = 400, description = "Bad url (including a private target), events, sessionIds or description (`details.field`).", body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope), (status = 403, description = "Needs `admin`.", body = ErrorEnvelope),
        (status = 409, description = "`limit_reached`: the organization has `webhooks.max_per_org` webhooks already (default 25, enabled or not; `details.limit`). Delete one first.", body = ErrorEnvelope),
        (status = 413, body = ErrorEnvelope), (status = 415, body = ErrorEnvelope),
        (status = 503, description = "The database is unavailable; try again.", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let new = new_webhook(json_body(&req, &body, false)?)?;
    let created = state.gateway.create_webhook(&caller.0, new).await?;
    let webhook = WebhookBody::from(created.webhook);
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/v1/webhooks/{}", webhook.id)))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(CreatedWebhookBody {
            webhook,
            secret: created.secret.expose().to_owned(),
        }))
}

#[utoipa::path(get, path = "/api/v1/webhooks", tag = "webhooks", operation_id = "list_webhooks",
    responses(
        (status = 200, description = "Oldest first; never the secrets.", body = WebhookList),
        (status = 401, body = ErrorEnvelope), (status = 403, description = "Needs `admin`.", body = ErrorEnvelope),
        (status = 503, description = "The database is unavailable; try again.", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn list(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let webhooks = state.gateway.list_webhooks(&caller.0).await?;
    Ok(HttpResponse::Ok().json(WebhookList {
        data: webhooks.into_iter().map(WebhookBody::from).collect(),
    }))
}

#[utoipa::path(get, path = "/api/v1/webhooks/{id}", tag = "webhooks", operation_id = "get_webhook",
    params(("id" = String, Path, description = "`wh_` + ULID",
        pattern = r"^wh_[0-7][0-9A-HJKMNP-TV-Z]{25}$", example = "wh_01JBZ5T0Q4M6Y8V2K3N7R9S1WX")),
    responses(
        (status = 200, body = WebhookBody),
        (status = 400, description = "Malformed id.", body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope), (status = 403, description = "Needs `admin`.", body = ErrorEnvelope),
        (status = 404, description = "No such webhook in your organization.", body = ErrorEnvelope),
        (status = 503, description = "The database is unavailable; try again.", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn get(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = webhook_id(&path)?;
    Ok(HttpResponse::Ok().json(WebhookBody::from(
        state.gateway.get_webhook(&caller.0, &id).await?,
    )))
}

#[utoipa::path(patch, path = "/api/v1/webhooks/{id}", tag = "webhooks", operation_id = "update_webhook",
    params(("id" = String, Path, description = "`wh_` + ULID",
        pattern = r"^wh_[0-7][0-9A-HJKMNP-TV-Z]{25}$", example = "wh_01JBZ5T0Q4M6Y8V2K3N7R9S1WX")),
    request_body = UpdateWebhookRequest,
    responses(
        (status = 200, description = "The webhook after the change.", body = WebhookBody),
        (status = 400, description = "Malformed id, or bad url, events, sessionIds, description or enabled (`details.field`).", body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope), (status = 403, description = "Needs `admin`.", body = ErrorEnvelope),
        (status = 404, description = "No such webhook in your organization.", body = ErrorEnvelope),
        (status = 413, body = ErrorEnvelope), (status = 415, body = ErrorEnvelope),
        (status = 503, description = "The database is unavailable; try again.", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn update(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let id = webhook_id(&path)?;
    let patch = patch(json_body(&req, &body, false)?)?;
    Ok(HttpResponse::Ok().json(WebhookBody::from(
        state.gateway.update_webhook(&caller.0, &id, patch).await?,
    )))
}

#[utoipa::path(delete, path = "/api/v1/webhooks/{id}", tag = "webhooks", operation_id = "delete_webhook",
    params(("id" = String, Path, description = "`wh_` + ULID",
        pattern = r"^wh_[0-7][0-9A-HJKMNP-TV-Z]{25}$", example = "wh_01JBZ5T0Q4M6Y8V2K3N7R9S1WX")),
    responses(
        (status = 204, description = "Deleted with its deliveries; nothing more is sent to it."),
        (status = 400, description = "Malformed id.", body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope), (status = 403, description = "Needs `admin`.", body = ErrorEnvelope),
        (status = 404, description = "No such webhook in your organization.", body = ErrorEnvelope),
        (status = 503, description = "The database is unavailable; try again.", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn delete(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = webhook_id(&path)?;
    state.gateway.delete_webhook(&caller.0, &id).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(post, path = "/api/v1/webhooks/{id}/rotate-secret", tag = "webhooks", operation_id = "rotate_webhook_secret",
    params(("id" = String, Path, description = "`wh_` + ULID",
        pattern = r"^wh_[0-7][0-9A-HJKMNP-TV-Z]{25}$", example = "wh_01JBZ5T0Q4M6Y8V2K3N7R9S1WX")),
    responses(
        (status = 200, description = "The new secret, shown only here; the old one keeps signing beside it for 24 h.", body = WebhookSecretBody,
            headers(("Cache-Control" = String, description = "`no-store`: the answer holds a secret."))),
        (status = 400, description = "Malformed id.", body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope), (status = 403, description = "Needs `admin`.", body = ErrorEnvelope),
        (status = 404, description = "No such webhook in your organization.", body = ErrorEnvelope),
        (status = 503, description = "The database is unavailable; try again.", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn rotate_secret(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = webhook_id(&path)?;
    let secret = state.gateway.rotate_webhook_secret(&caller.0, &id).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(WebhookSecretBody {
            secret: secret.expose().to_owned(),
        }))
}

#[utoipa::path(post, path = "/api/v1/webhooks/{id}/test", tag = "webhooks", operation_id = "test_webhook",
    params(("id" = String, Path, description = "`wh_` + ULID",
        pattern = r"^wh_[0-7][0-9A-HJKMNP-TV-Z]{25}$", example = "wh_01JBZ5T0Q4M6Y8V2K3N7R9S1WX")),
    responses(
        (status = 202, description = "A `webhook.test` event is queued for this webhook alone (not in the log); its delivery shows under `…/deliveries`.", body = WebhookTestBody),
        (status = 400, description = "Malformed id.", body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope), (status = 403, description = "Needs `admin`.", body = ErrorEnvelope),
        (status = 404, description = "No such webhook in your organization.", body = ErrorEnvelope),
        (status = 409, description = "`conflict`: the webhook is disabled (nothing is sent to it); enable it first.", body = ErrorEnvelope),
        (status = 503, description = "The database is unavailable; try again.", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn test(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = webhook_id(&path)?;
    let event = state.gateway.test_webhook(&caller.0, &id).await?;
    Ok(HttpResponse::Accepted().json(WebhookTestBody {
        event_id: event.id.to_string(),
    }))
}

/// Query of `GET /api/v1/webhooks/{id}/deliveries`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DeliveriesQuery {
    /// 1 to 100 (default 50).
    #[param(value_type = u32, required = false, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// `nextCursor` of the previous page.
    #[param(value_type = String, required = false, pattern = r"^[0-9]{1,19}$")]
    cursor: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/webhooks/{id}/deliveries", tag = "webhooks", operation_id = "list_webhook_deliveries",
    params(("id" = String, Path, description = "`wh_` + ULID",
        pattern = r"^wh_[0-7][0-9A-HJKMNP-TV-Z]{25}$", example = "wh_01JBZ5T0Q4M6Y8V2K3N7R9S1WX"), DeliveriesQuery),
    responses(
        (status = 200, description = "The webhook's deliveries, newest first.", body = DeliveryList),
        (status = 400, description = "Malformed id, limit or cursor (`details.field`).", body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope), (status = 403, description = "Needs `admin`.", body = ErrorEnvelope),
        (status = 404, description = "No such webhook in your organization.", body = ErrorEnvelope),
        (status = 503, description = "The database is unavailable; try again.", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn deliveries(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    query: web::Query<DeliveriesQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = webhook_id(&path)?;
    let limit = match query.limit.as_deref() {
        None => 50,
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=100).contains(l))
            .ok_or_else(|| {
                ApiError::invalid("limit", "invalid limit: must be a number from 1 to 100")
            })?,
    };
    let before = query
        .cursor
        .as_deref()
        .map(|c| {
            cursor_text(c).map(EventCursor::seq).ok_or_else(|| {
                ApiError::invalid(
                    "cursor",
                    "invalid cursor: pass the nextCursor of the previous page",
                )
            })
        })
        .transpose()?;
    // One more than asked: whether there is a next page.
    let mut rows = state
        .gateway
        .webhook_deliveries(&caller.0, &id, before, limit + 1)
        .await?;
    let next_cursor = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(|d| d.seq.to_string())
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(DeliveryList {
        data: rows.into_iter().map(DeliveryBody::from).collect(),
        next_cursor,
    }))
}

#[utoipa::path(post, path = "/api/v1/webhooks/{id}/replay", tag = "webhooks", operation_id = "replay_webhook",
    params(("id" = String, Path, description = "`wh_` + ULID",
        pattern = r"^wh_[0-7][0-9A-HJKMNP-TV-Z]{25}$", example = "wh_01JBZ5T0Q4M6Y8V2K3N7R9S1WX")),
    request_body = ReplayRequest,
    responses(
        (status = 202, description = "Every retained event after `after` that the webhook wants is queued again (same event ids).", body = ReplayBody),
        (status = 400, description = "Malformed id or after (`details.field`).", body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope), (status = 403, description = "Needs `admin`.", body = ErrorEnvelope),
        (status = 404, description = "No such webhook in your organization.", body = ErrorEnvelope),
        (status = 409, description = "`conflict`: the webhook is disabled (nothing is sent to it); enable it first.", body = ErrorEnvelope),
        (status = 410, description = "`gone`: `after` is older than the retained events.", body = ErrorEnvelope),
        (status = 413, body = ErrorEnvelope), (status = 415, body = ErrorEnvelope),
        (status = 503, description = "The database is unavailable; try again.", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn replay(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let id = webhook_id(&path)?;
    let body: ReplayRequest = json_body(&req, &body, false)?;
    let after = required(body.after.as_ref(), "after")?;
    let after = cursor_text(text(after, "after")?)
        .ok_or_else(|| ApiError::invalid("after", "invalid after: pass the cursor of an event"))?;
    let queued = state.gateway.replay_webhook(&caller.0, &id, after).await?;
    Ok(HttpResponse::Accepted().json(ReplayBody { queued }))
}
