//! The floor wagate's HTTP throughput is measured against: actix-web with
//! the same worker count, answering the picture and session routes with
//! the JSON bodies the gateway gives for the built-in fake world, with no
//! authentication, no database and no WhatsApp port behind it.
//!
//! ```text
//! wagate-bench-baseline [ADDR]     # ADDR, else $BASELINE_BIND, else 127.0.0.1:8081
//! ```
//!
//! `$BASELINE_WORKERS` sets the worker count (default: one per CPU, as the
//! gateway's `server.workers`).

use actix_web::{App, HttpResponse, HttpServer, web};
use serde::Serialize;

/// The gateway's `PictureBody` (crates/http/src/dto.rs), field for field.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PictureBody {
    id: String,
    url: String,
    #[serde(rename = "type")]
    kind: &'static str,
    direct_path: Option<String>,
    hash: Option<String>,
}

/// The gateway's `SessionBody` for a connected session, field for field.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SessionBody {
    id: String,
    name: Option<String>,
    status: &'static str,
    jid: Option<String>,
    push_name: Option<String>,
    created_at: &'static str,
    updated_at: &'static str,
    last_connected_at: Option<&'static str>,
    last_error: Option<()>,
}

/// `14155550123@s.whatsapp.net` of the built-in fake world
/// (crates/whatsapp-port/src/fake.rs), built per request as the gateway does.
async fn picture(path: web::Path<(String, String)>) -> HttpResponse {
    let _ = path.into_inner();
    HttpResponse::Ok().json(PictureBody {
        id: "1712345678".to_owned(),
        url: "https://pps.whatsapp.net/v/t61/abc.jpg".to_owned(),
        kind: "image",
        direct_path: Some("/v/t61/abc.jpg".to_owned()),
        hash: Some("n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=".to_owned()),
    })
}

async fn session(path: web::Path<String>) -> HttpResponse {
    HttpResponse::Ok().json(SessionBody {
        id: path.into_inner(),
        name: Some("bench".to_owned()),
        status: "connected",
        jid: Some("15550001111@s.whatsapp.net".to_owned()),
        push_name: Some("Wagate Demo".to_owned()),
        created_at: "2026-01-01T00:00:00.000000000Z",
        updated_at: "2026-01-01T00:00:00.000000000Z",
        last_connected_at: Some("2026-01-01T00:00:00.000000000Z"),
        last_error: None,
    })
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("BASELINE_BIND").ok())
        .unwrap_or_else(|| "127.0.0.1:8081".to_owned());
    let workers = match std::env::var("BASELINE_WORKERS") {
        Ok(n) => Some(
            n.parse::<usize>()
                .map_err(|e| std::io::Error::other(format!("BASELINE_WORKERS: {e}")))?,
        ),
        Err(_) => None,
    };
    let mut server = HttpServer::new(|| {
        App::new()
            .route(
                "/api/v1/sessions/{sessionId}/contacts/{jid}/picture",
                web::get().to(picture),
            )
            .route("/api/v1/sessions/{sessionId}", web::get().to(session))
    });
    if let Some(n) = workers {
        server = server.workers(n);
    }
    let server = server.bind(&addr)?;
    eprintln!("wagate-bench-baseline listening on {addr}");
    server.run().await
}
