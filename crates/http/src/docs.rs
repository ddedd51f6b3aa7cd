//! The `/docs` page: Swagger UI, reading `/openapi.json`.
//!
//! Its files come from `utoipa-swagger-ui` with the `vendored` feature: the
//! Swagger UI release is a crates.io package, unpacked at build time and
//! embedded in the binary, so neither the build nor the page fetches
//! anything from the internet (the online spec validator is turned off too).

use std::borrow::Cow;
use std::sync::Arc;

use actix_web::web::Bytes;

/// Where Swagger UI lives; its page is this path, its files sit beside it.
pub(crate) const DOCS_PATH: &str = "/docs/";

/// Swagger UI's settings, shared by every request.
#[derive(Clone)]
pub(crate) struct SwaggerUi(Arc<utoipa_swagger_ui::Config<'static>>);

impl std::fmt::Debug for SwaggerUi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SwaggerUi")
    }
}

/// One file of Swagger UI.
#[derive(Debug)]
pub(crate) struct DocsFile {
    /// Its media type.
    pub(crate) content_type: String,
    /// Its bytes (borrowed from the binary when they are served as built).
    pub(crate) bytes: Bytes,
}

impl SwaggerUi {
    /// Swagger UI over the document at `openapi_url`: "try it out" sends
    /// the bearer token entered under "Authorize" (the document declares
    /// the `bearer` scheme on every `/api/v1` route).
    pub(crate) fn new(openapi_url: &'static str) -> Self {
        let config = utoipa_swagger_ui::Config::new([openapi_url])
            // Swagger's online validator would be a request to the internet.
            .validator_url("none")
            .try_it_out_enabled(true)
            .display_request_duration(true);
        Self(Arc::new(config))
    }

    /// The file at `path` below [`DOCS_PATH`] (empty: the page itself), or
    /// `None` when Swagger UI has no such file.
    pub(crate) fn file(&self, path: &str) -> Option<DocsFile> {
        match utoipa_swagger_ui::serve(path, self.0.clone()) {
            Ok(Some(file)) => Some(DocsFile {
                content_type: file.content_type,
                bytes: match file.bytes {
                    Cow::Borrowed(b) => Bytes::from_static(b),
                    Cow::Owned(v) => Bytes::from(v),
                },
            }),
            Ok(None) => None,
            Err(e) => {
                // Only the settings file is built at run time (from JSON
                // that cannot fail to serialize).
                tracing::error!(error = %e, path, "cannot serve a Swagger UI file");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_the_page_and_its_files_offline() {
        let ui = SwaggerUi::new("/openapi.json");
        let page = ui.file("").unwrap();
        assert!(page.content_type.starts_with("text/html"));
        let html = std::str::from_utf8(&page.bytes).unwrap();
        assert!(html.contains("swagger-ui"), "{html}");
        // Everything the page loads is relative, so served from here.
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "{html}"
        );
        for file in [
            "swagger-ui.css",
            "index.css",
            "swagger-ui-bundle.js",
            "swagger-ui-standalone-preset.js",
        ] {
            assert!(ui.file(file).is_some(), "{file} missing");
        }
        let init = ui.file("swagger-initializer.js").unwrap();
        let init = std::str::from_utf8(&init.bytes).unwrap();
        assert!(init.contains(r#""url": "/openapi.json""#), "{init}");
        assert!(init.contains(r#""validatorUrl": "none""#), "{init}");
        assert!(ui.file("no-such-file.js").is_none());
        // Only Swagger UI's own files, never another file of the machine.
        let up = "../".repeat(20);
        for path in [format!("{up}etc/passwd"), "/etc/passwd".to_owned()] {
            assert!(ui.file(&path).is_none(), "{path}");
        }
    }
}
