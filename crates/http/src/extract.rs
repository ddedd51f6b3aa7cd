//! Request pieces turned into typed values: the caller, path ids, bodies.

use std::future::Future;
use std::pin::Pin;

use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use serde::de::DeserializeOwned;
use wagate_auth::MAX_TOKEN_LEN;
use wagate_domain::{Principal, SessionId};

use crate::{ApiError, AppState};

/// The authenticated caller of an `/api/v1` route.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let token = bearer_token(req).map(str::to_owned);
        Box::pin(async move {
            let state = state.ok_or_else(|| ApiError::internal(&"application state missing"))?;
            let token = token?;
            match state.authenticator.authenticate(&token).await? {
                Some(principal) => Ok(Caller(principal)),
                None => Err(ApiError::unauthorized()),
            }
        })
    }
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer_token(req: &HttpRequest) -> Result<&str, ApiError> {
    let value = req.headers().get(header::AUTHORIZATION).ok_or_else(|| {
        tracing::debug!("no Authorization header");
        ApiError::unauthorized()
    })?;
    // Checked before any parsing: a huge header costs nothing more.
    if value.len() > MAX_TOKEN_LEN + 16 {
        return Err(ApiError::unauthorized());
    }
    let value = value.to_str().map_err(|_| ApiError::unauthorized())?;
    let (scheme, token) = value.split_once(' ').ok_or_else(ApiError::unauthorized)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(ApiError::unauthorized());
    }
    Ok(token)
}

/// Parses the `{sessionId}` path segment.
pub(crate) fn session_id(raw: &str) -> Result<SessionId, ApiError> {
    SessionId::parse(raw).map_err(ApiError::from)
}

/// Parses a JSON body. An empty body is `T::default()` when `empty_ok`;
/// otherwise the body must be `application/json` and valid for `T`.
pub(crate) fn json_body<T: DeserializeOwned + Default>(
    req: &HttpRequest,
    body: &[u8],
    empty_ok: bool,
) -> Result<T, ApiError> {
    if body.is_empty() && empty_ok {
        return Ok(T::default());
    }
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            let m = m.trim();
            m.eq_ignore_ascii_case("application/json")
                || (m.starts_with("application/") && m.ends_with("+json"))
        });
    if !json {
        return Err(ApiError::for_status(
            actix_web::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        let msg = match e.classify() {
            serde_json::error::Category::Data => {
                format!("request body does not match the expected shape: {e}")
            }
            _ => format!("request body is not valid JSON: {e}"),
        };
        ApiError::invalid("body", msg)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn bearer_parsing() {
        let ok = TestRequest::default()
            .insert_header(("Authorization", "bearer abc"))
            .to_http_request();
        assert_eq!(bearer_token(&ok).unwrap(), "abc");
        for bad in ["Basic abc", "Bearer", "Bearer   ", "abc"] {
            let req = TestRequest::default()
                .insert_header(("Authorization", bad))
                .to_http_request();
            assert!(bearer_token(&req).is_err(), "{bad}");
        }
        let huge = format!("Bearer {}", "a".repeat(MAX_TOKEN_LEN + 100));
        let req = TestRequest::default()
            .insert_header(("Authorization", huge))
            .to_http_request();
        assert!(bearer_token(&req).is_err());
        assert!(bearer_token(&TestRequest::default().to_http_request()).is_err());
    }

    #[derive(Debug, Default, serde::Deserialize)]
    struct Body {
        #[allow(dead_code)]
        name: Option<String>,
    }

    #[test]
    fn json_bodies() {
        let json = TestRequest::default()
            .insert_header(("Content-Type", "application/json; charset=utf-8"))
            .to_http_request();
        let text = TestRequest::default()
            .insert_header(("Content-Type", "text/plain"))
            .to_http_request();
        assert!(json_body::<Body>(&json, br#"{"name":"x"}"#, false).is_ok());
        assert!(json_body::<Body>(&text, b"", true).is_ok());
        assert_eq!(
            json_body::<Body>(&text, b"{}", true).unwrap_err().code(),
            "unsupported_media_type"
        );
        assert_eq!(
            json_body::<Body>(&json, b"{", true).unwrap_err().code(),
            "invalid_argument"
        );
        assert_eq!(
            json_body::<Body>(&json, br#"{"name":1}"#, true)
                .unwrap_err()
                .code(),
            "invalid_argument"
        );
    }
}
