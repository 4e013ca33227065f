//! The built-in console as served by the app: the page at `/` under a strict
//! Content-Security-Policy, every file it references embedded and served with its type, no
//! inline script or style, and the other routes undisturbed. (The pages themselves are checked
//! in headless Chromium by `scripts/browser-test`.)

use poem::http::{Method, StatusCode};

use crate::helpers::TestApp;

/// The `src` / `href` values of `text` that are paths on this server.
fn local_refs(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["src=\"", "href=\""] {
        for (at, _) in text.match_indices(attr) {
            let rest = &text[at + attr.len()..];
            let value = &rest[..rest.find('"').unwrap()];
            if value.starts_with('/') {
                out.push(value.to_owned());
            }
        }
    }
    out
}

/// The modules a JavaScript module imports (`from './x.js'`), as `/console/x.js`.
fn imports(text: &str) -> Vec<String> {
    text.match_indices("from './")
        .map(|(at, _)| {
            let rest = &text[at + "from './".len()..];
            format!("/console/{}", &rest[..rest.find('\'').unwrap()])
        })
        .collect()
}

fn content_type(r: &crate::helpers::Resp) -> &str {
    r.headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test]
async fn the_page_is_served_at_the_root_under_a_strict_policy() {
    let app = TestApp::new();
    let r = app.get("/").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(content_type(&r), "text/html; charset=utf-8");
    let csp = r.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert_eq!(r.headers["x-content-type-options"], "nosniff");
    let html = r.body.as_str().unwrap();
    assert!(
        html.contains(r#"<script type="module" src="/console/app.js"></script>"#),
        "{html}"
    );
    // Nothing the policy would block: no inline script, no style or event attributes.
    for (at, _) in html.match_indices("<script") {
        let tag = &html[at..at + html[at..].find('>').unwrap()];
        assert!(tag.contains(" src="), "inline script: {tag}");
    }
    assert!(!html.contains(" style="), "inline style attribute");
    assert!(!html.contains(" onclick="), "inline event handler");
    assert!(!html.contains("<style"), "inline style element");
}

#[tokio::test]
async fn every_file_the_console_references_is_embedded_with_its_type() {
    let app = TestApp::new();
    let html = app.get("/").await.body.as_str().unwrap().to_owned();
    let mut todo = local_refs(&html);
    assert!(todo.len() >= 5, "{todo:?}");
    let mut seen = Vec::new();
    while let Some(path) = todo.pop() {
        if seen.contains(&path) {
            continue;
        }
        let r = app.get(&path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        let expected = match path.rsplit('.').next().unwrap() {
            "js" => "text/javascript; charset=utf-8",
            "css" => "text/css; charset=utf-8",
            "ico" => "image/svg+xml",
            other => panic!("unexpected file type {other} of {path}"),
        };
        assert_eq!(content_type(&r), expected, "{path}");
        assert!(r.headers.contains_key("content-security-policy"), "{path}");
        if path.ends_with(".js") && !path.contains("/vendor/") {
            let text = r.body.as_str().unwrap();
            todo.extend(imports(text));
            // Module code builds elements from data, never from HTML strings.
            assert!(!text.contains("innerHTML"), "{path} uses innerHTML");
            assert!(!text.contains("eval("), "{path} uses eval");
        }
        seen.push(path);
    }
    for module in ["app.js", "api.js", "dom.js", "charts.js", "pages.js"] {
        assert!(seen.contains(&format!("/console/{module}")), "{seen:?}");
    }
    // The charting library's licence ships with it.
    let licence = app.get("/console/vendor/uplot/LICENSE").await;
    assert_eq!(licence.status, StatusCode::OK);
    assert!(licence.body.as_str().unwrap().contains("MIT License"));
}

#[tokio::test]
async fn unknown_files_and_other_methods_get_the_one_error_shape() {
    let app = TestApp::new();
    for path in [
        "/console/nope.js",
        "/console/../src/console.rs",
        "/console/",
    ] {
        app.get(path)
            .await
            .assert_error(StatusCode::NOT_FOUND, None);
    }
    for path in ["/", "/console/app.js"] {
        let r = app.call(Method::POST, path, None).await;
        r.assert_error(StatusCode::METHOD_NOT_ALLOWED, None);
        assert_eq!(r.headers["allow"], "GET, HEAD", "{path}");
    }
    let head = app.call(Method::HEAD, "/", None).await;
    assert_eq!(head.status, StatusCode::OK);
}

#[tokio::test]
async fn an_unchanged_file_revalidates_as_not_modified() {
    let app = TestApp::new();
    let first = app.get("/console/pages.js").await;
    assert_eq!(first.headers["cache-control"], "no-cache");
    let tag = first.headers["etag"].to_str().unwrap().to_owned();
    // The same file with its tag is a bodiless 304; another file with that tag is served.
    for (path, status) in [
        ("/console/pages.js", StatusCode::NOT_MODIFIED),
        ("/console/app.js", StatusCode::OK),
    ] {
        let r = app
            .client
            .get(path)
            .header("if-none-match", &tag)
            .send()
            .await;
        r.assert_status(status);
        if status == StatusCode::NOT_MODIFIED {
            r.assert_header("etag", tag.as_str());
        }
    }
}

#[tokio::test]
async fn the_console_leaves_the_other_routes_as_they_were() {
    let app = TestApp::new();
    for path in ["/openapi.json", "/docs", "/livez", "/metrics"] {
        assert_eq!(app.get(path).await.status, StatusCode::OK, "{path}");
    }
    let spec = app.get("/openapi.json").await;
    assert!(
        spec.body["paths"].get("/").is_none(),
        "the console is not an API path"
    );
    for (path, status) in [
        (
            "/api/v1/analytics/health/overview",
            StatusCode::UNAUTHORIZED,
        ),
        ("/nowhere", StatusCode::NOT_FOUND),
    ] {
        app.get(path).await.assert_error(status, None);
    }
    // The console's requests carry low-cardinality route labels.
    assert_eq!(app.get("/").await.status, StatusCode::OK);
    let metrics = app.get("/metrics").await;
    let text = metrics.body.as_str().unwrap();
    assert!(text.contains(r#"route="/",status="200""#), "{text}");
    use analytics_server::api::route_template;
    assert_eq!(route_template("/"), "/");
    assert_eq!(route_template("/console/app.js"), "/console");
    assert_eq!(route_template("/favicon.ico"), "/favicon.ico");
    assert_eq!(route_template("/consoles"), "unmatched");
}
