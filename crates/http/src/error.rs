//! The one place where every failure becomes the error envelope.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use serde_json::{Map, Value};
use wagate_app::AppError;
use wagate_auth::AuthError;
use wagate_domain::DomainError;

/// An error answer: `{ "error": { "code", "message", "details" } }`.
#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    details: Map<String, Value>,
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: Body<'a>,
}

#[derive(Serialize)]
struct Body<'a> {
    code: &'a str,
    message: &'a str,
    details: &'a Map<String, Value>,
}

impl ApiError {
    /// An error with `status`, `code` and a message for people.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: Map::new(),
        }
    }

    /// Adds `details.<key> = value`.
    #[must_use]
    pub fn detail(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details.insert(key.to_owned(), value.into());
        self
    }

    /// 400 `invalid_argument` about `field`.
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_argument", message).detail("field", field)
    }

    /// 401 `unauthorized`, one message for every reason.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or invalid bearer token",
        )
    }

    /// 429 `rate_limited`: the caller's credential has used up its requests;
    /// `Retry-After` and `details.retryAfterSecs` say how many whole seconds
    /// (at least 1) until the next one is allowed.
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        Self::too_many("too many requests", retry_after_secs)
    }

    /// 429 `rate_limited` about `what`, with `Retry-After`.
    pub(crate) fn too_many(what: &str, retry_after_secs: u64) -> Self {
        let retry_after_secs = retry_after_secs.max(1);
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("{what}; retry in {retry_after_secs} s"),
        )
        .detail("retryAfterSecs", retry_after_secs)
    }

    /// 503 `unavailable` with `Retry-After` (whole seconds, at least 1):
    /// nothing can serve the call now, and it may work shortly.
    pub fn unavailable(message: &str, retry_after_secs: u64) -> Self {
        let retry_after_secs = retry_after_secs.max(1);
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("{message}; retry in {retry_after_secs} s"),
        )
        .detail("retryAfterSecs", retry_after_secs)
    }

    /// 500 `internal`: the cause goes to the log, not to the caller.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }

    /// The envelope for a bare status (unknown route, 405, oversized body,
    /// anything actix answered on its own).
    pub fn for_status(status: StatusCode) -> Self {
        let (code, message) = match status.as_u16() {
            400 => ("invalid_argument", "malformed request"),
            401 => ("unauthorized", "missing or invalid bearer token"),
            403 => ("forbidden", "forbidden"),
            404 => ("not_found", "no such route"),
            405 => ("method_not_allowed", "method not allowed on this route"),
            408 => ("timeout", "request timed out"),
            409 => ("conflict", "conflict"),
            413 => ("payload_too_large", "request body larger than 64 KiB"),
            415 => (
                "unsupported_media_type",
                "request body must be application/json",
            ),
            429 => ("rate_limited", "too many requests"),
            501 => ("not_implemented", "not implemented"),
            503 => ("unavailable", "temporarily unavailable; try again"),
            504 => ("timeout", "timed out"),
            s if s >= 500 => ("internal", "internal error"),
            _ => ("invalid_argument", "request refused"),
        };
        Self::new(status, code, message)
    }

    /// The error's code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The envelope as JSON bytes.
    pub fn to_json(&self) -> Vec<u8> {
        let body = Envelope {
            error: Body {
                code: self.code,
                message: &self.message,
                details: &self.details,
            },
        };
        // Serializing strings and a JSON map cannot fail.
        serde_json::to_vec(&body).unwrap_or_default()
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status);
        res.insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ));
        if self.status == StatusCode::UNAUTHORIZED {
            res.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
        }
        // The header always says what the body says.
        if let Some(secs) = self
            .details
            .get("retryAfterSecs")
            .and_then(Value::as_u64)
            .filter(|_| {
                self.status == StatusCode::TOO_MANY_REQUESTS
                    || self.status == StatusCode::SERVICE_UNAVAILABLE
            })
        {
            res.insert_header((header::RETRY_AFTER, secs));
        }
        res.body(self.to_json())
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        Self::invalid(e.field, format!("invalid {}: {}", e.field, e.message))
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Rejected(reason) => {
                tracing::debug!(%reason, "bearer token rejected");
                Self::unauthorized()
            }
            AuthError::Unavailable(cause) => {
                tracing::warn!(%cause, "cannot authenticate now");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "authentication is temporarily unavailable; try again",
                )
            }
        }
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        match e {
            AppError::InvalidArgument(d) => d.into(),
            AppError::Forbidden { required } => Self::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("this call needs the '{required}' capability"),
            )
            .detail("required", required.as_str()),
            AppError::NotFound { what, reason } => {
                let e = Self::new(StatusCode::NOT_FOUND, "not_found", what);
                match reason {
                    Some(r) => e.detail("reason", r.as_str()),
                    None => e,
                }
            }
            AppError::Conflict { message, status } => {
                let e = Self::new(StatusCode::CONFLICT, "conflict", message);
                match status {
                    Some(s) => e.detail("status", s.as_str()),
                    None => e,
                }
            }
            AppError::MessageConflict { message, reason } => {
                Self::new(StatusCode::CONFLICT, "conflict", message).detail("reason", reason)
            }
            AppError::NotConnected { status } => Self::new(
                StatusCode::NOT_IMPLEMENTED,
                "not_implemented",
                "session is not connected",
            )
            .detail("status", status.as_str()),
            AppError::RateLimited { retry_after } => Self::too_many(
                "too many WhatsApp calls on this session",
                crate::rate_limit::whole_seconds(retry_after),
            ),
            AppError::PayloadTooLarge { limit } => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the media is larger than {limit} bytes (messages.max_media_bytes)"),
            )
            .detail("limit", limit),
            AppError::LimitReached { message, limit } => {
                Self::new(StatusCode::CONFLICT, "limit_reached", message).detail("limit", limit)
            }
            AppError::Gone => Self::new(
                StatusCode::GONE,
                "gone",
                "the cursor is older than the events kept (events.retention_days); start again without it",
            ),
            AppError::Timeout => Self::new(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                "WhatsApp did not answer in time",
            ),
            AppError::Unavailable(cause) => {
                tracing::warn!(%cause, "upstream unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "temporarily unavailable; try again",
                )
            }
            AppError::Internal(cause) => Self::internal(&cause),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wagate_domain::{Absence, Capability, SessionStatus};

    fn json(e: &ApiError) -> Value {
        serde_json::from_slice(&e.to_json()).unwrap()
    }

    #[test]
    fn envelope_shape_and_mappings() {
        let e: ApiError = AppError::Forbidden {
            required: Capability::Send,
        }
        .into();
        assert_eq!(e.status_code(), 403);
        assert_eq!(json(&e)["error"]["details"]["required"], "send");

        let e: ApiError = AppError::NotFound {
            what: "profile picture not found",
            reason: Some(Absence::Hidden),
        }
        .into();
        assert_eq!(
            json(&e),
            serde_json::json!({"error": {"code": "not_found", "message": "profile picture not found", "details": {"reason": "hidden"}}})
        );

        let e: ApiError = AppError::NotConnected {
            status: SessionStatus::Pairing,
        }
        .into();
        assert_eq!(
            (e.status_code().as_u16(), e.code()),
            (501, "not_implemented")
        );

        let e: ApiError = AppError::Internal("db file /secret/path broke".into()).into();
        assert!(!String::from_utf8(e.to_json()).unwrap().contains("secret"));

        let e = ApiError::for_status(StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(json(&e)["error"]["details"], serde_json::json!({}));
        let res = ApiError::unauthorized().error_response();
        assert_eq!(res.headers().get("www-authenticate").unwrap(), "Bearer");
    }

    #[test]
    fn rate_limited_has_retry_after_in_header_and_details() {
        let e = ApiError::rate_limited(3);
        assert_eq!((e.status_code().as_u16(), e.code()), (429, "rate_limited"));
        assert_eq!(json(&e)["error"]["details"]["retryAfterSecs"], 3);
        let res = e.error_response();
        assert_eq!(res.headers().get("retry-after").unwrap(), "3");
        // Never "retry in 0 s".
        let e = ApiError::rate_limited(0);
        assert_eq!(json(&e)["error"]["details"]["retryAfterSecs"], 1);
        assert_eq!(
            e.error_response().headers().get("retry-after").unwrap(),
            "1"
        );
        // The session's WhatsApp pace: the same answer, rounded up.
        let e: ApiError = AppError::RateLimited {
            retry_after: std::time::Duration::from_millis(2001),
        }
        .into();
        assert_eq!((e.status_code().as_u16(), e.code()), (429, "rate_limited"));
        assert_eq!(json(&e)["error"]["details"]["retryAfterSecs"], 3);
        assert_eq!(
            e.error_response().headers().get("retry-after").unwrap(),
            "3"
        );
        // A bare 429 (not ours) has no Retry-After to invent.
        let res = ApiError::for_status(StatusCode::TOO_MANY_REQUESTS).error_response();
        assert!(res.headers().get("retry-after").is_none());
    }
}
