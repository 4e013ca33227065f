//! The OpenAPI document lists every endpoint; ops endpoints and docs are served.

use analytics_server::api::{PATHS, openapi_spec};
use poem::http::StatusCode;

use crate::helpers::TestApp;

#[tokio::test]
async fn spec_contains_every_endpoint_path() {
    let app = TestApp::new();
    let spec: serde_json::Value = serde_json::from_str(&openapi_spec(app.state.clone())).unwrap();
    let paths = spec["paths"].as_object().unwrap();
    for &p in PATHS {
        assert!(paths.contains_key(p), "{p} missing from the spec");
    }
    let events = &paths["/api/v1/analytics/events"];
    assert!(events["get"].is_object() && events["post"].is_object());
    assert_eq!(events["post"]["tags"][0], "Events");
    assert_eq!(
        events["post"]["security"],
        serde_json::json!([{"BearerAuth": []}, {"ApiKeyAuth": []}])
    );
    assert_eq!(
        events["get"]["security"],
        serde_json::json!([{"BearerAuth": []}])
    );
    // The ingest body and answer are (de)serialized by hand-picked payload types; their
    // documented schemas must still be the `Object` types.
    let post = &events["post"];
    let json = "application/json; charset=utf-8";
    assert_eq!(
        post["requestBody"]["content"][json]["schema"]["$ref"],
        "#/components/schemas/IngestRequest"
    );
    assert_eq!(post["requestBody"]["required"], true);
    assert_eq!(
        post["responses"]["202"]["content"][json]["schema"]["$ref"],
        "#/components/schemas/IngestResponseBody"
    );
    let schemas = &spec["components"]["schemas"];
    for name in [
        "IngestRequest",
        "IngestResponseBody",
        "EventResult",
        "FieldProblem",
    ] {
        assert!(schemas[name].is_object(), "{name} schema missing");
    }
    let served = app.get("/openapi.json").await;
    assert_eq!(served.status, StatusCode::OK);
    assert!(served.body["paths"].is_object());
    assert_eq!(app.get("/docs").await.status, StatusCode::OK);
}

#[tokio::test]
async fn ops_endpoints() {
    let app = TestApp::new();
    let live = app.get("/livez").await;
    assert_eq!(live.status, StatusCode::OK);
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status, StatusCode::OK, "{:#}", ready.body);
    assert_eq!(ready.body["backend"], "memory");
    app.state.start_draining();
    let draining = app.get("/readyz").await;
    assert_eq!(draining.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(draining.body["status"], "draining");
    app.get("/nope")
        .await
        .assert_error(StatusCode::NOT_FOUND, None);
    let metrics = app.get("/metrics").await;
    assert_eq!(metrics.status, StatusCode::OK);
    let text = metrics.body.as_str().unwrap();
    for needle in [
        "http_requests_total{method=\"GET\",route=\"/livez\",status=\"200\"} 1",
        "http_request_duration_seconds_bucket",
        "route=\"unmatched\"",
        "analytics_ingest_committed_events_total 0",
        "analytics_ingest_sink_down 0",
        "analytics_store_up{backend=\"memory\"} 1",
    ] {
        assert!(text.contains(needle), "{needle} not in\n{text}");
    }
    assert_prometheus_conventions(text);
}

/// The exposition follows Prometheus' naming conventions: every metric has HELP and TYPE, a
/// counter's name ends in `_total` and nothing else's does, and the process's own metrics are
/// there (on Linux).
fn assert_prometheus_conventions(text: &str) {
    let mut types = std::collections::BTreeMap::new();
    let mut helps = std::collections::BTreeSet::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("#"), Some("TYPE"), Some(name)) => {
                types.insert(name.to_owned(), words.next().unwrap_or_default().to_owned());
            }
            (Some("#"), Some("HELP"), Some(name)) => {
                helps.insert(name.to_owned());
            }
            _ => {}
        }
    }
    assert!(types.len() > 20, "{text}");
    for (name, ty) in &types {
        assert!(helps.contains(name), "{name} has no HELP");
        assert_eq!(
            ty == "counter",
            name.ends_with("_total"),
            "{name} is a {ty}: counters and only counters end in _total"
        );
        assert!(
            !name.contains("_ms") && !name.contains("millis"),
            "{name}: durations are in seconds"
        );
    }
    for name in [
        "analytics_ingest_committed_events_total",
        "analytics_ingest_queue_events",
        "analytics_notify_attempts_total",
        "http_request_duration_seconds",
    ] {
        assert!(types.contains_key(name), "{name} missing");
    }
    if cfg!(target_os = "linux") {
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_start_time_seconds",
        ] {
            assert_eq!(
                types.get(name).map(String::as_str),
                Some(if name.ends_with("_total") {
                    "counter"
                } else {
                    "gauge"
                }),
                "{name}"
            );
        }
    }
}

fn spec() -> serde_json::Value {
    serde_json::from_str(&openapi_spec(TestApp::new().state.clone())).unwrap()
}

/// Every `/api` operation documents the standard error answers in the one error shape, with
/// the headers they carry; operations reading a body also document 413 and 415.
#[tokio::test]
async fn every_api_operation_documents_its_error_answers() {
    let spec = spec();
    let json = "application/json; charset=utf-8";
    let mut seen = 0;
    for (path, item) in spec["paths"].as_object().unwrap() {
        if !path.starts_with("/api/") {
            continue;
        }
        for (method, op) in item.as_object().unwrap() {
            seen += 1;
            let responses = &op["responses"];
            let mut expected = vec!["400", "401", "403", "500", "503"];
            if op.get("requestBody").is_some() {
                expected.extend(["413", "415"]);
            }
            for status in expected {
                let r = &responses[status];
                assert_eq!(
                    r["content"][json]["schema"]["$ref"], "#/components/schemas/ErrorBody",
                    "{method} {path} does not document {status}: {:#}",
                    responses
                );
            }
            assert!(
                responses["401"]["headers"]["WWW-Authenticate"].is_object(),
                "{method} {path}"
            );
            let retry = &responses["503"]["headers"]["Retry-After"];
            assert_eq!(retry["required"], true, "{method} {path}");
            assert_eq!(retry["schema"]["type"], "integer", "{method} {path}");
        }
    }
    assert!(seen >= 2, "no /api operations found");
    let schemas = &spec["components"]["schemas"];
    assert_eq!(
        schemas["ErrorBody"]["required"],
        serde_json::json!(["error", "request_id"])
    );
    assert_eq!(
        schemas["ErrorDetail"]["required"],
        serde_json::json!(["code", "message"])
    );
    // Public endpoints document what they answer, and readiness its 503.
    let readyz = &spec["paths"]["/readyz"]["get"]["responses"];
    assert!(readyz["200"].is_object() && readyz["503"].is_object());
}

/// Fields sent as `null` are declared nullable (API.md: `next_cursor` is null on the last
/// page; a rejected event without a string id has `id: null`).
#[tokio::test]
async fn fields_sent_as_null_are_nullable() {
    let spec = spec();
    let schemas = &spec["components"]["schemas"];
    let next_cursor = &schemas["EventsPage"]["properties"]["next_cursor"];
    assert_eq!(next_cursor["type"], "string");
    assert_eq!(next_cursor["nullable"], true);
    let id = &schemas["EventResult"]["properties"]["id"];
    assert_eq!(id["type"], "string");
    assert_eq!(id["nullable"], true);

    // And they are sent as null.
    let app = TestApp::new();
    let admin = app.admin();
    let page = app.get_events("", Some(&admin)).await;
    assert_eq!(page.status, StatusCode::OK, "{:#}", page.body);
    assert!(page.body["next_cursor"].is_null());
    assert!(page.body.as_object().unwrap().contains_key("next_cursor"));
    let ingest = app
        .post_events(&serde_json::json!({"events": [42]}), Some(&admin))
        .await;
    assert_eq!(ingest.status, StatusCode::ACCEPTED, "{:#}", ingest.body);
    assert!(ingest.body["results"][0]["id"].is_null());
}

/// Numeric and structured query parameters are declared with their type and bounds, so that
/// every schema-valid request is accepted.
#[tokio::test]
async fn query_parameters_declare_their_types_and_bounds() {
    let spec = spec();
    let params = spec["paths"]["/api/v1/analytics/events"]["get"]["parameters"]
        .as_array()
        .unwrap();
    let schema = |name: &str| {
        params
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{name} not documented"))["schema"]
            .clone()
    };
    let limit = schema("limit");
    assert_eq!(limit["type"], "integer");
    assert_eq!(limit["minimum"], 1.0);
    assert_eq!(limit["maximum"], 1000.0);
    assert_eq!(limit["default"], 100);
    for name in ["from", "to"] {
        assert_eq!(schema(name)["format"], "date-time", "{name}");
    }
    for name in ["kind", "project", "cursor"] {
        assert!(schema(name)["pattern"].is_string(), "{name}");
    }
}

/// A method a path does not serve is 405 in the one error shape, with `Allow` listing the
/// methods the path serves (authenticated first on `/api` paths).
#[tokio::test]
async fn method_not_allowed_lists_the_allowed_methods() {
    use poem::http::Method;
    let app = TestApp::new();
    let admin = app.admin();
    for (method, path, allow) in [
        (
            Method::DELETE,
            "/api/v1/analytics/events",
            "GET, HEAD, POST",
        ),
        (
            Method::OPTIONS,
            "/api/v1/analytics/events",
            "GET, HEAD, POST",
        ),
        (Method::POST, "/livez", "GET, HEAD"),
        (Method::PUT, "/readyz", "GET, HEAD"),
        (Method::DELETE, "/openapi.json", "GET, HEAD"),
    ] {
        let r = app.call(method.clone(), path, Some(&admin)).await;
        r.assert_error(StatusCode::METHOD_NOT_ALLOWED, None);
        assert_eq!(r.body["error"]["code"], "method_not_allowed");
        assert_eq!(
            r.headers.get("allow").and_then(|v| v.to_str().ok()),
            Some(allow),
            "{method} {path}"
        );
    }
    app.call(Method::DELETE, "/api/v1/analytics/events", None)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, None);
}
