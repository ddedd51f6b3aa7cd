//! The error envelope: `ApiError::to_json` next to `serde_json::to_vec` of a
//! plain struct with the same JSON, so the cost of the envelope's own shape
//! (a `details` map of JSON values) is visible.

// A benchmark is a test harness: a panic on broken set-up is the right
// failure report, and criterion's macros generate undocumented items.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;

use actix_web::http::StatusCode;
use criterion::{Criterion, criterion_group, criterion_main};
use serde::Serialize;
use wagate_http::ApiError;

#[derive(Serialize)]
struct PlainEnvelope<'a> {
    error: PlainBody<'a>,
}

#[derive(Serialize)]
struct PlainBody<'a> {
    code: &'a str,
    message: &'a str,
    details: PlainDetails<'a>,
}

#[derive(Serialize)]
struct PlainDetails<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

const MESSAGE: &str = "a person's JID must be 5 to 20 digits before the '@'";

fn envelope(c: &mut Criterion) {
    let invalid = ApiError::invalid("jid", MESSAGE);
    let unauthorized = ApiError::unauthorized();
    let plain_invalid = PlainEnvelope {
        error: PlainBody {
            code: "invalid_argument",
            message: MESSAGE,
            details: PlainDetails { field: Some("jid") },
        },
    };
    let plain_unauthorized = PlainEnvelope {
        error: PlainBody {
            code: "unauthorized",
            message: "missing or invalid bearer token",
            details: PlainDetails { field: None },
        },
    };
    // Same bytes, or the comparison means nothing.
    assert_eq!(
        invalid.to_json(),
        serde_json::to_vec(&plain_invalid).unwrap()
    );
    assert_eq!(
        unauthorized.to_json(),
        serde_json::to_vec(&plain_unauthorized).unwrap()
    );

    let mut group = c.benchmark_group("error_envelope");
    group.bench_function("plain_struct_to_vec/invalid_argument", |b| {
        b.iter(|| serde_json::to_vec(black_box(&plain_invalid)))
    });
    group.bench_function("api_error_to_json/invalid_argument", |b| {
        b.iter(|| black_box(&invalid).to_json())
    });
    group.bench_function("api_error_build_and_to_json/invalid_argument", |b| {
        b.iter(|| ApiError::invalid("jid", black_box(MESSAGE)).to_json())
    });
    group.bench_function("plain_struct_to_vec/unauthorized", |b| {
        b.iter(|| serde_json::to_vec(black_box(&plain_unauthorized)))
    });
    group.bench_function("api_error_to_json/unauthorized", |b| {
        b.iter(|| black_box(&unauthorized).to_json())
    });
    group.bench_function("api_error_for_status/404", |b| {
        b.iter(|| ApiError::for_status(black_box(StatusCode::NOT_FOUND)).to_json())
    });
    group.finish();
}

criterion_group!(benches, envelope);
criterion_main!(benches);
