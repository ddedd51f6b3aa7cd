//! The dashboard at `/ui`: a single-page app that is a client of the public
//! API with the signed-in user's own token — it has no route of its own.
//!
//! Its files are hand-written ES modules and CSS committed under
//! `crates/http/ui/` and embedded with `include_bytes!`: nothing is built
//! with Node.js and nothing is downloaded at run time. Every answer carries
//! a strict Content-Security-Policy (only this origin; images also from
//! `blob:`, which is how the QR code and media fetched with the bearer
//! token are shown; no inline script or style) and is revalidated by its
//! `ETag`, so a new binary's files are picked up at once.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::OnceLock;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};

use crate::ApiError;

/// Where the dashboard lives; `/` redirects here.
pub(crate) const UI_PATH: &str = "/ui";

/// What the dashboard's pages may load: this origin only; images also from
/// `blob:` (object URLs of the QR code and of media fetched with the token).
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' blob:; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $type:literal) => {
        Asset {
            name: $name,
            content_type: $type,
            bytes: include_bytes!(concat!("../ui/", $name)),
        }
    };
}

/// Every file of the dashboard; the page is the first.
const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("api.js", "text/javascript; charset=utf-8"),
    asset!("dom.js", "text/javascript; charset=utf-8"),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("icon.svg", "image/svg+xml"),
];

/// The embedded file called `name` (empty: the page).
fn asset(name: &str) -> Option<&'static Asset> {
    let name = if name.is_empty() { "index.html" } else { name };
    ASSETS.iter().find(|a| a.name == name)
}

/// A strong validator per file, computed once: files change only with the
/// binary.
fn etag(asset: &Asset) -> &'static str {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let mut h = DefaultHasher::new();
                a.bytes.hash(&mut h);
                format!("\"{:016x}\"", h.finish())
            })
            .collect()
    });
    ASSETS
        .iter()
        .position(|a| a.name == asset.name)
        .and_then(|i| tags.get(i))
        .map_or("\"\"", String::as_str)
}

fn secure(res: &mut HttpResponse) {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Cached, but checked again on every use (a cheap 304).
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
}

fn serve(req: &HttpRequest, name: &str) -> Result<HttpResponse, ApiError> {
    let asset = asset(name).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such file of the dashboard",
        )
    })?;
    let tag = etag(asset);
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    let mut res = if fresh {
        HttpResponse::NotModified().finish()
    } else {
        HttpResponse::Ok()
            .content_type(asset.content_type)
            .body(web::Bytes::from_static(asset.bytes))
    };
    if let Ok(v) = HeaderValue::from_str(tag) {
        res.headers_mut().insert(header::ETAG, v);
    }
    secure(&mut res);
    Ok(res)
}

/// `GET /`: to the dashboard.
#[utoipa::path(get, path = "/", tag = "operations",
    responses((status = 302, description = "To `/ui`, the dashboard.",
        headers(("Location" = String, description = "`/ui`")))))]
pub(crate) async fn root() -> HttpResponse {
    HttpResponse::Found()
        .insert_header((header::LOCATION, UI_PATH))
        .finish()
}

/// `GET /ui` and `GET /ui/`: the page.
#[utoipa::path(get, path = "/ui", tag = "operations",
    responses((status = 200, description = "The dashboard: a single page, a client of this API (sign in with an API key or a login JWT). \
        Served from the binary under a Content-Security-Policy of this origin only; `/ui/` is the same page.", content_type = "text/html"),
        (status = 304, description = "Unchanged since the `ETag` sent in `If-None-Match`.")))]
pub(crate) async fn page(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    serve(&req, "")
}

/// `GET /ui/{file}`: a file the page loads.
#[utoipa::path(get, path = "/ui/{file}", tag = "operations",
    params(("file" = String, Path, description = "A file of the dashboard (`app.js`, `app.css`, …)")),
    responses((status = 200, description = "The file (script, style sheet or icon)."),
        (status = 304, description = "Unchanged since the `ETag` sent in `If-None-Match`."),
        (status = 404, description = "No such file of the dashboard.", body = crate::dto::ErrorEnvelope)))]
pub(crate) async fn file(
    req: HttpRequest,
    file: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    serve(&req, &file)
}

#[cfg(test)]
mod tests {
    use actix_web::App;
    use actix_web::test as web_test;

    use super::*;

    fn app() -> App<
        impl actix_web::dev::ServiceFactory<
            actix_web::dev::ServiceRequest,
            Config = (),
            Response = actix_web::dev::ServiceResponse,
            Error = actix_web::Error,
            InitError = (),
        >,
    > {
        App::new()
            .route("/", web::get().to(root))
            .route("/ui", web::get().to(page))
            .route("/ui/", web::get().to(page))
            .route("/ui/{file}", web::get().to(file))
    }

    #[actix_web::test]
    async fn serves_the_page_and_its_files_with_a_strict_policy() {
        let app = web_test::init_service(app()).await;
        let res =
            web_test::call_service(&app, web_test::TestRequest::get().uri("/").to_request()).await;
        assert_eq!(res.status(), 302);
        assert_eq!(res.headers().get("location").unwrap(), "/ui");

        for (uri, kind) in [
            ("/ui", "text/html"),
            ("/ui/", "text/html"),
            ("/ui/app.js", "text/javascript"),
            ("/ui/api.js", "text/javascript"),
            ("/ui/dom.js", "text/javascript"),
            ("/ui/app.css", "text/css"),
            ("/ui/icon.svg", "image/svg+xml"),
        ] {
            let res =
                web_test::call_service(&app, web_test::TestRequest::get().uri(uri).to_request())
                    .await;
            assert_eq!(res.status(), 200, "{uri}");
            let h = res.headers();
            assert!(
                h.get("content-type")
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .starts_with(kind),
                "{uri}"
            );
            assert_eq!(
                h.get("content-security-policy").unwrap(),
                CONTENT_SECURITY_POLICY
            );
            assert_eq!(h.get("x-content-type-options").unwrap(), "nosniff");
            let tag = h.get("etag").unwrap().clone();
            // Revalidation answers 304 while the file is the same.
            let again = web_test::call_service(
                &app,
                web_test::TestRequest::get()
                    .uri(uri)
                    .insert_header(("if-none-match", tag))
                    .to_request(),
            )
            .await;
            assert_eq!(again.status(), 304, "{uri}");
        }
        let res = web_test::call_service(
            &app,
            web_test::TestRequest::get()
                .uri("/ui/secret.txt")
                .to_request(),
        )
        .await;
        assert_eq!(res.status(), 404);
    }

    #[test]
    fn nothing_loads_from_another_origin_or_inline() {
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
        assert!(!CONTENT_SECURITY_POLICY.contains("http"));
        // The page and the style sheet load things; the scripts' strings
        // (an example webhook URL) do not.
        for a in ASSETS.iter().filter(|a| !a.name.ends_with(".js")) {
            let text = String::from_utf8_lossy(a.bytes);
            // The SVG's namespace is an identifier, not a fetch.
            let text = text.replace("http://www.w3.org/2000/svg", "");
            assert!(
                !text.contains("http://") && !text.contains("https://"),
                "{} names another origin",
                a.name
            );
            if a.name == "index.html" {
                assert!(!text.contains("<script>") && !text.contains("style="));
                assert!(!text.contains("<style"));
            }
        }
    }
}
