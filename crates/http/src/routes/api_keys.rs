//! `/api/v1/api-keys…`: the caller's organization's API keys.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use wagate_app::NewApiKeyRequest;
use wagate_domain::{ApiKeyId, ApiKeyName, Capability, CapabilitySet, parse_expiry};

use crate::dto::{ApiKeyBody, ApiKeyList, CreateApiKeyRequest, CreatedApiKeyBody, ErrorEnvelope};
use crate::extract::{Caller, json_body};
use crate::{ApiError, AppState};

fn parse_request(body: CreateApiKeyRequest) -> Result<NewApiKeyRequest, ApiError> {
    let name = ApiKeyName::parse(
        body.name
            .as_deref()
            .ok_or_else(|| ApiError::invalid("name", "name is required"))?,
    )?;
    let caps = body.capabilities.ok_or_else(|| {
        ApiError::invalid("capabilities", "capabilities is required, e.g. [\"read\"]")
    })?;
    let capabilities = caps
        .iter()
        .map(|c| Capability::parse(c))
        .collect::<Result<Vec<_>, _>>()?;
    let expires_at = body.expires_at.as_deref().map(parse_expiry).transpose()?;
    Ok(NewApiKeyRequest {
        name,
        capabilities: CapabilitySet::of(capabilities),
        expires_at,
    })
}

#[utoipa::path(post, path = "/api/v1/api-keys", tag = "api-keys", operation_id = "create_api_key",
    request_body = CreateApiKeyRequest,
    responses(
        (status = 201, description = "Created. `key` is shown only here.", body = CreatedApiKeyBody,
            headers(("Location" = String, description = "`/api/v1/api-keys/{id}`"),
                    ("Cache-Control" = String, description = "`no-store`: the answer holds a secret."))),
        (status = 400, description = "Bad name, capabilities or expiresAt (`details.field`).", body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope),
        (status = 403, description = "Needs `admin`, and every capability granted (`details.required`).", body = ErrorEnvelope),
        (status = 413, body = ErrorEnvelope), (status = 415, body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let request = parse_request(json_body(&req, &body, false)?)?;
    let created = state.gateway.create_api_key(&caller.0, request).await?;
    let key = created.key;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/v1/api-keys/{}", key.id)))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(CreatedApiKeyBody {
            id: key.id.to_string(),
            name: key.name.as_str().to_owned(),
            capabilities: key.capabilities.iter().map(|c| c.as_str()).collect(),
            created_at: key.created_at,
            expires_at: key.expires_at,
            key: created.secret.expose().to_owned(),
        }))
}

#[utoipa::path(get, path = "/api/v1/api-keys", tag = "api-keys", operation_id = "list_api_keys",
    responses(
        (status = 200, body = ApiKeyList),
        (status = 401, body = ErrorEnvelope), (status = 403, description = "Needs `admin`.", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn list(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let keys = state.gateway.list_api_keys(&caller.0).await?;
    Ok(HttpResponse::Ok().json(ApiKeyList {
        data: keys.into_iter().map(ApiKeyBody::from).collect(),
    }))
}

#[utoipa::path(delete, path = "/api/v1/api-keys/{id}", tag = "api-keys",
    params(("id" = String, Path, description = "`key_` + ULID",
        pattern = r"^key_[0-7][0-9A-HJKMNP-TV-Z]{25}$", example = "key_01JBZ5T0Q4M6Y8V2K3N7R9S1WX")),
    responses(
        (status = 204, description = "Revoked; stops working on this node at once."),
        (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
        (status = 403, description = "Needs `admin`.", body = ErrorEnvelope),
        (status = 404, description = "No such key in your organization.", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn revoke(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = ApiKeyId::parse(&path)?;
    state.gateway.revoke_api_key(&caller.0, &id).await?;
    Ok(HttpResponse::NoContent().finish())
}
