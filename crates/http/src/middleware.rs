//! The edge of every request: request id, panic catching, the error
//! envelope on answers actix makes itself, metrics and the access log.

use std::panic::AssertUnwindSafe;
use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{ResponseError, web};

use futures_util::FutureExt;

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

/// The middleware (use with `actix_web::middleware::from_fn`).
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
    // No clone of the request may live across `next.call`: routing needs
    // the only reference to it.
    let state = req.app_data::<web::Data<AppState>>().cloned();

    let mut res = match AssertUnwindSafe(next.call(req)).catch_unwind().await {
        Ok(Ok(res)) => res.map_into_boxed_body(),
        // Handler errors are already responses; this is a middleware's error.
        // actix answers an `Err` with its `error_response`: make that the envelope.
        Ok(Err(e)) => return Err(ApiError::for_status(e.as_response_error().status_code()).into()),
        Err(_) => {
            tracing::error!(request_id = ?request_id, "handler panicked");
            return Err(ApiError::for_status(StatusCode::INTERNAL_SERVER_ERROR).into());
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
    let elapsed = started.elapsed();
    if let Some(state) = state {
        state.metrics.observe(
            route,
            res.request().method().as_str(),
            status_of(&res),
            elapsed.as_secs_f64(),
        );
    }
    let status = res.status().as_u16();
    if status >= 500 {
        tracing::error!(request_id = ?request_id, method = %res.request().method(), route, status, elapsed_ms = elapsed.as_secs_f64() * 1000.0, "request failed");
    } else {
        tracing::debug!(request_id = ?request_id, method = %res.request().method(), route, status, elapsed_ms = elapsed.as_secs_f64() * 1000.0, "request");
    }
    Ok(res)
}

fn status_of(res: &ServiceResponse<BoxBody>) -> u16 {
    res.status().as_u16()
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
