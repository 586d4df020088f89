//! The web UI: static files built into the binary (or read from `ui_dir`),
//! served under the content path (`/ui/`). The UI is a client of the `/v1`
//! API like any other, so serving it needs no token; every call it makes
//! carries the user's.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

/// The UI's files: name, bytes, content type.
const FILES: &[(&str, &[u8], &str)] = &[
    (
        "index.html",
        include_bytes!("../assets/index.html"),
        "text/html; charset=utf-8",
    ),
    (
        "app.js",
        include_bytes!("../assets/app.js"),
        "text/javascript; charset=utf-8",
    ),
    (
        "style.css",
        include_bytes!("../assets/style.css"),
        "text/css; charset=utf-8",
    ),
];

/// Longest file name the UI routes look up.
const MAX_NAME_BYTES: usize = 128;

struct Ui {
    dir: Option<PathBuf>,
}

fn content_type(name: &str) -> &'static str {
    match Path::new(name).extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

/// A file name the UI may serve: plain names only, no directories.
fn safe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

async fn file(ui: &Ui, name: &str) -> Response {
    if !safe_name(name) {
        return (StatusCode::NOT_FOUND, "no such UI file").into_response();
    }
    let body: Vec<u8> = match &ui.dir {
        Some(dir) => match tokio::fs::read(dir.join(name)).await {
            Ok(b) => b,
            Err(_) => return (StatusCode::NOT_FOUND, "no such UI file").into_response(),
        },
        None => match FILES.iter().find(|(n, _, _)| *n == name) {
            Some((_, bytes, _)) => bytes.to_vec(),
            None => return (StatusCode::NOT_FOUND, "no such UI file").into_response(),
        },
    };
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(name)),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    // The UI talks only to this agent and runs only its own script.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'",
        ),
    );
    resp
}

/// The UI's routes: `/` and the content path without its slash redirect to
/// the content path, which serves `index.html` and the files beside it.
pub fn router(content_path: &str, dir: Option<PathBuf>) -> Router {
    let base = content_path.trim_end_matches('/').to_string();
    let with_slash = format!("{base}/");
    let ui = Arc::new(Ui { dir });
    let to_ui = {
        let target = with_slash.clone();
        move || async move { Redirect::temporary(&target) }
    };
    Router::new()
        .route("/", get(to_ui.clone()))
        .route(&base, get(to_ui))
        .route(
            &with_slash,
            get(|State(ui): State<Arc<Ui>>| async move { file(&ui, "index.html").await }),
        )
        .route(
            &format!("{with_slash}{{file}}"),
            get(
                |State(ui): State<Arc<Ui>>, UrlPath(name): UrlPath<String>| async move {
                    file(&ui, &name).await
                },
            ),
        )
        .with_state(ui)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_are_served() {
        for bad in ["", "../etc/passwd", ".hidden", "a/b", "a\\b", "%2e%2e"] {
            assert!(!safe_name(bad), "{bad:?}");
        }
        for good in ["index.html", "app.js", "style.css", "logo-1.svg"] {
            assert!(safe_name(good), "{good:?}");
        }
    }

    #[test]
    fn every_builtin_file_has_its_type() {
        for (name, _, ty) in FILES {
            assert_eq!(content_type(name), *ty);
        }
    }
}
