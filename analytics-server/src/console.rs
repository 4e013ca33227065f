//! The built-in console: the HTML, CSS and JavaScript under `analytics-server/console/`,
//! embedded in the binary and served at `/` (the page) and `/console/...` (its assets), with a
//! Content-Security-Policy that allows only this origin's scripts and styles.
//!
//! The console holds no data of its own: every figure comes from the JSON API with the
//! token the user pasted (kept in the browser's session storage), so it shows exactly what
//! that token's role may see.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, OnceLock};

use poem::http::{HeaderValue, Method, StatusCode, header};
use poem::{Endpoint, EndpointExt, IntoResponse, Request, Response};

use crate::error::ApiError;

/// The policy of every console response: scripts, styles and API calls from this origin only
/// (no inline script, no `eval`), images from this origin or `data:` URLs, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// One embedded file: its path under `/console/`, content type and bytes.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $ty:literal) => {
        Asset {
            path: $path,
            content_type: $ty,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/console/", $path)),
        }
    };
}

/// Every file of the console; `index.html` is served at `/`.
static ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("console.css", "text/css; charset=utf-8"),
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("api.js", "text/javascript; charset=utf-8"),
    asset!("charts.js", "text/javascript; charset=utf-8"),
    asset!("pages.js", "text/javascript; charset=utf-8"),
    asset!("dom.js", "text/javascript; charset=utf-8"),
    asset!(
        "vendor/uplot/uPlot.iife.min.js",
        "text/javascript; charset=utf-8"
    ),
    asset!("vendor/uplot/uPlot.min.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("vendor/uplot/LICENSE", "text/plain; charset=utf-8"),
];

/// Serves the page at `/` and the icon at `/favicon.ico` (GET and HEAD; other methods get
/// 405) and passes every other request to `ep`: a middleware rather than a route, because the
/// OpenAPI service nested at `/` also claims the bare `/`.
pub async fn with_index<E: Endpoint>(ep: Arc<E>, req: Request) -> poem::Result<Response> {
    let file = match req.uri().path() {
        "/" => "index.html",
        "/favicon.ico" => "favicon.svg",
        _ => return ep.call(req).await.map(IntoResponse::into_response),
    };
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return Err(poem::Error::from_status(StatusCode::METHOD_NOT_ALLOWED));
    }
    Ok(serve(&req, file).unwrap_or_else(IntoResponse::into_response))
}

/// The assets, nested at `/console` (GET and HEAD; other methods get 405).
pub fn assets() -> impl Endpoint<Output = Response> {
    poem::get(poem::endpoint::make_sync(|req: Request| {
        serve(&req, req.uri().path().trim_start_matches('/'))
    }))
    .map_to_response()
}

/// The route label of a console path (`/` or `/console`), if it is one.
pub fn route_template(path: &str) -> Option<&'static str> {
    match path {
        "/" => Some("/"),
        "/favicon.ico" => Some("/favicon.ico"),
        p if p == "/console" || p.starts_with("/console/") => Some("/console"),
        _ => None,
    }
}

/// The entity tag of each asset (a hash of its bytes, computed once): `no-cache` makes the
/// browser revalidate on every load, and an unchanged file is then a bodiless 304.
fn etag(index: usize) -> &'static str {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    &TAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let mut h = DefaultHasher::new();
                a.body.hash(&mut h);
                format!("\"{:016x}\"", h.finish())
            })
            .collect()
    })[index]
}

fn serve(req: &Request, path: &str) -> Result<Response, ApiError> {
    let index = ASSETS
        .iter()
        .position(|a| a.path == path)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such console file"))?;
    let asset = &ASSETS[index];
    let tag = etag(index);
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = asset.body.into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
        r
    };
    let headers = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(tag) {
        headers.insert(header::ETAG, v);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file under `console/` is embedded (a new module cannot be forgotten), except the
    /// vendored library's own notes.
    #[test]
    fn every_console_file_is_embedded() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("console");
        let mut files = Vec::new();
        let mut dirs = vec![root.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    let rel = path
                        .strip_prefix(&root)
                        .unwrap()
                        .to_str()
                        .unwrap()
                        .to_owned();
                    files.push(rel);
                }
            }
        }
        files.retain(|f| !f.ends_with("README.md"));
        files.sort();
        let mut embedded: Vec<String> = ASSETS.iter().map(|a| a.path.to_owned()).collect();
        embedded.sort();
        assert_eq!(files, embedded);
    }

    #[test]
    fn paths_outside_the_console_have_no_console_label() {
        assert_eq!(route_template("/"), Some("/"));
        assert_eq!(route_template("/console"), Some("/console"));
        assert_eq!(
            route_template("/console/vendor/uplot/LICENSE"),
            Some("/console")
        );
        assert_eq!(route_template("/consoles"), None);
        assert_eq!(route_template("/docs"), None);
    }
}
