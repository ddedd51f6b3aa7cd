//! Request pieces turned into typed values: the caller, path ids, bodies.

use actix_web::http::header;
use actix_web::{FromRequest, HttpMessage, HttpRequest, dev::Payload};
use serde::de::DeserializeOwned;
use wagate_domain::{Principal, SessionId};

use crate::ApiError;

/// The authenticated caller of an `/api/v1` route.
///
/// The [`crate::middleware::authenticate`] middleware of the `/api/v1` scope
/// has already checked the bearer token (so a 401 comes before any other
/// answer) and left the [`Principal`] in the request's extensions.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let principal = req.extensions().get::<Principal>().cloned();
        std::future::ready(
            principal
                .map(Caller)
                .ok_or_else(|| ApiError::internal(&"route outside the authenticated scope")),
        )
    }
}

/// The token of an `Authorization: Bearer <token>` header.
pub(crate) fn bearer_token(headers: &header::HeaderMap) -> Result<&str, ApiError> {
    let value = headers.get(header::AUTHORIZATION).ok_or_else(|| {
        tracing::debug!("no Authorization header");
        ApiError::unauthorized()
    })?;
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

/// The preamble of a route that changes one thing of a session
/// (`…/{sessionId}/…/{item}` with a JSON body): the session, the item
/// parsed by `item`, and the body, refused in that order.
pub(crate) fn session_item_body<I, B: DeserializeOwned + Default>(
    req: &HttpRequest,
    (session, raw_item): (&str, &str),
    item: impl FnOnce(&str) -> Result<I, ApiError>,
    body: &[u8],
) -> Result<(SessionId, I, B), ApiError> {
    let id = session_id(session)?;
    let item = item(raw_item)?;
    Ok((id, item, json_body(req, body, false)?))
}

/// `Ok` when the request says its body is JSON (`application/json` or
/// `application/…+json`); 415 otherwise.
pub(crate) fn require_json(req: &HttpRequest) -> Result<(), ApiError> {
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
    if json {
        Ok(())
    } else {
        Err(ApiError::for_status(
            actix_web::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ))
    }
}

/// Parses a JSON body. An empty body is `T::default()` when `empty_ok`;
/// otherwise the body must be `application/json`, a JSON object, and valid
/// for `T`.
pub(crate) fn json_body<T: DeserializeOwned + Default>(
    req: &HttpRequest,
    body: &[u8],
    empty_ok: bool,
) -> Result<T, ApiError> {
    if body.is_empty() && empty_ok {
        return Ok(T::default());
    }
    require_json(req)?;
    let parsed = serde_json::from_slice(body).map_err(|e| {
        let msg = match e.classify() {
            serde_json::error::Category::Data => {
                format!("request body does not match the expected shape: {e}")
            }
            _ => format!("request body is not valid JSON: {e}"),
        };
        ApiError::invalid("body", msg)
    })?;
    // serde also reads a struct from an array of its fields in order
    // (`["a name"]`, even `[null]`): not a body any client means to send.
    let first = body
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    if first != Some(&b'{') {
        return Err(ApiError::invalid(
            "body",
            "request body does not match the expected shape: it must be a JSON object",
        ));
    }
    Ok(parsed)
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
        assert_eq!(bearer_token(ok.headers()).unwrap(), "abc");
        for bad in ["Basic abc", "Bearer", "Bearer   ", "abc"] {
            let req = TestRequest::default()
                .insert_header(("Authorization", bad))
                .to_http_request();
            assert!(bearer_token(req.headers()).is_err(), "{bad}");
        }
        assert!(bearer_token(TestRequest::default().to_http_request().headers()).is_err());
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
        // A struct's fields as an array are not an object.
        for array in [&b"[null]"[..], b" [\"x\"]"] {
            let e = json_body::<Body>(&json, array, true).unwrap_err();
            assert_eq!(e.code(), "invalid_argument");
            assert!(e.to_string().contains("JSON object"), "{e}");
        }
        assert!(json_body::<Body>(&json, b" \r\n\t{}", false).is_ok());
    }
}
