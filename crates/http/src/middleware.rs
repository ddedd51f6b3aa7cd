//! The edge of every request: request id, panic catching, the error
//! envelope on answers actix makes itself, metrics and the access log.

use std::panic::AssertUnwindSafe;
use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::error::InternalError;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, ResponseError, web};

use futures_util::FutureExt;

use wagate_domain::{Principal, PrincipalKind};

use crate::extract::bearer_token;
use crate::forward;
use crate::rate_limit::Decision;
use crate::{ApiError, AppState};

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A client's request id is echoed only when it is short and plain.
fn acceptable_id(v: &HeaderValue) -> bool {
    (1..=128).contains(&v.len())
        && v.as_bytes()
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

fn is_json(res: &ServiceResponse<BoxBody>) -> bool {
    res.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// The method as a metrics label: a fixed set, so clients cannot grow the
/// label space with made-up methods.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// Records and logs one answered request.
fn finish(
    state: Option<&web::Data<AppState>>,
    route: &str,
    method: &'static str,
    status: StatusCode,
    request_id: &HeaderValue,
    started: Instant,
) {
    let elapsed = started.elapsed();
    if let Some(state) = state {
        state
            .metrics
            .observe(route, method, status.as_u16(), elapsed.as_secs_f64());
    }
    let status = status.as_u16();
    let elapsed_ms = elapsed.as_secs_f64() * 1000.0;
    if status >= 500 {
        tracing::error!(request_id = ?request_id, method, route, status, elapsed_ms, "request failed");
    } else {
        tracing::debug!(request_id = ?request_id, method, route, status, elapsed_ms, "request");
    }
}

/// The edge middleware (use with `actix_web::middleware::from_fn`).
pub(crate) async fn edge(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let started = Instant::now();
    let request_id = match req.headers().get(&REQUEST_ID) {
        Some(v) if acceptable_id(v) => v.clone(),
        _ => HeaderValue::from_str(&ulid::Ulid::new().to_string())
            .unwrap_or(HeaderValue::from_static("-")),
    };
    let method = method_label(req.method());
    // No clone of the request may live across `next.call`: routing needs
    // the only reference to it.
    let state = req.app_data::<web::Data<AppState>>().cloned();

    let outcome = AssertUnwindSafe(next.call(req)).catch_unwind().await;
    let mut res = match outcome {
        Ok(Ok(res)) => res.map_into_boxed_body(),
        // Without the request (moved into the call) there is no
        // ServiceResponse to build: answer with an error whose response is
        // the envelope, request id included.
        Ok(Err(e)) => {
            let status = e.as_response_error().status_code();
            return Err(envelope_error(
                state.as_ref(),
                method,
                status,
                &request_id,
                started,
            ));
        }
        Err(_) => {
            tracing::error!(request_id = ?request_id, "handler panicked");
            return Err(envelope_error(
                state.as_ref(),
                method,
                StatusCode::INTERNAL_SERVER_ERROR,
                &request_id,
                started,
            ));
        }
    };

    // Answers actix made itself (405, 413, …) get the envelope too.
    let status = res.status();
    if (status.is_client_error() || status.is_server_error()) && !is_json(&res) {
        let mut envelope = ApiError::for_status(status).error_response();
        if let Some(allow) = res.headers().get(header::ALLOW) {
            envelope.headers_mut().insert(header::ALLOW, allow.clone());
        }
        res = res.into_response(envelope);
    }
    res.headers_mut()
        .insert(REQUEST_ID.clone(), request_id.clone());
    let route = res.request().match_name().unwrap_or("unmatched");
    finish(
        state.as_ref(),
        route,
        method,
        res.status(),
        &request_id,
        started,
    );
    Ok(res)
}

fn envelope_error(
    state: Option<&web::Data<AppState>>,
    method: &'static str,
    status: StatusCode,
    request_id: &HeaderValue,
    started: Instant,
) -> actix_web::Error {
    let mut res = ApiError::for_status(status).error_response();
    res.headers_mut()
        .insert(REQUEST_ID.clone(), request_id.clone());
    finish(state, "unmatched", method, status, request_id, started);
    InternalError::from_response(ApiError::for_status(status), res).into()
}

/// Authenticates every request of the `/api/v1` scope before anything else
/// is looked at (so a bad token is 401 even with a bad query or body),
/// takes one request from the credential's rate limit (429 when it is used
/// up), and leaves the [`Principal`](wagate_domain::Principal) for the
/// [`Caller`](crate::Caller) extractor.
///
/// A request another gateway forwarded (it carries
/// `X-Wagate-Forwarded-By`) is admitted by its inter-node signature instead:
/// the caller it names was authenticated, and rate-limited, there.
pub(crate) async fn authenticate(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    if req.headers().contains_key(&forward::FORWARDED_BY) {
        let admitted = match req.app_data::<web::Data<AppState>>().cloned() {
            Some(state) => match state.link.clone() {
                Some(link) => {
                    let limit = crate::send_body_limit(&state.gateway);
                    link.admit(&mut req, limit).await
                }
                None => {
                    tracing::warn!(
                        "refused a forwarded request: this gateway has no cluster.secret"
                    );
                    Err(ApiError::unauthorized())
                }
            },
            None => Err(ApiError::internal(&"application state missing")),
        };
        if let Some(state) = req.app_data::<web::Data<AppState>>() {
            state.metrics.between_nodes(if admitted.is_ok() {
                "admitted"
            } else {
                "refused"
            });
        }
        return match admitted {
            Ok(principal) => {
                req.extensions_mut().insert(principal);
                req.extensions_mut().insert(forward::Forwarded);
                Ok(next.call(req).await?.map_into_boxed_body())
            }
            Err(e) => Ok(req.into_response(e.error_response())),
        };
    }
    let result = match (
        req.app_data::<web::Data<AppState>>(),
        bearer_token(req.headers()),
    ) {
        (Some(state), Ok(token)) => match state.authenticator.authenticate(token).await {
            Ok(Some(principal)) => admit(state, &principal).map(|()| principal),
            Ok(None) => Err(ApiError::unauthorized()),
            Err(e) => Err(ApiError::from(e)),
        },
        (None, _) => Err(ApiError::internal(&"application state missing")),
        (_, Err(e)) => Err(e),
    };
    match result {
        Ok(principal) => {
            req.extensions_mut().insert(principal);
            Ok(next.call(req).await?.map_into_boxed_body())
        }
        Err(e) => Ok(req.into_response(e.error_response())),
    }
}

/// Takes one request from `principal`'s rate limit, or refuses it with 429.
fn admit(state: &AppState, principal: &Principal) -> Result<(), ApiError> {
    let Some(limiter) = &state.limiter else {
        return Ok(());
    };
    match limiter.check(principal, Instant::now()) {
        Decision::Allowed => Ok(()),
        Decision::Limited { retry_after_secs } => {
            let kind = match principal.kind {
                PrincipalKind::ApiKey(_) => "api_key",
                PrincipalKind::User { .. } => "user",
            };
            state.metrics.rate_limited(kind);
            tracing::debug!(kind, org = %principal.org, retry_after_secs, "rate limited");
            Err(ApiError::rate_limited(retry_after_secs))
        }
    }
}

#[cfg(test)]
mod tests {
    use actix_web::{App, HttpResponse, test, web};

    use super::*;

    #[actix_web::test]
    async fn panics_and_bare_errors_become_envelopes_with_a_request_id() {
        let app = test::init_service(
            App::new()
                .wrap(actix_web::middleware::from_fn(edge))
                .route(
                    "/boom",
                    web::get().to(|| async {
                        if std::hint::black_box(true) {
                            panic!("handler bug");
                        }
                        HttpResponse::Ok().finish()
                    }),
                )
                .route(
                    "/teapot",
                    web::get().to(|| async { HttpResponse::ImATeapot().body("short and stout") }),
                ),
        )
        .await;

        // actix answers the middleware's `Err` with its `error_response`.
        let err = test::try_call_service(&app, test::TestRequest::get().uri("/boom").to_request())
            .await
            .unwrap_err();
        let res = err.error_response();
        assert_eq!(res.status(), 500);
        assert!(res.headers().get("x-request-id").is_some());
        let body = actix_web::body::to_bytes(res.into_body()).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "internal");

        let res = test::call_service(
            &app,
            test::TestRequest::get()
                .uri("/teapot")
                .insert_header(("x-request-id", "r-1"))
                .to_request(),
        )
        .await;
        assert_eq!(res.headers().get("x-request-id").unwrap(), "r-1");
        let body: serde_json::Value = test::read_body_json(res).await;
        assert_eq!(body["error"]["code"], "invalid_argument");
        assert_eq!(body["error"]["details"], serde_json::json!({}));
    }
}
