//! The OpenAPI document lists every endpoint; ops endpoints and docs are served.

use analytics_server::api::{PATHS, openapi_spec};
use poem::http::StatusCode;

use crate::helpers::TestApp;

#[tokio::test]
async fn spec_contains_every_endpoint_path() {
    let app = TestApp::new();
    let spec: serde_json::Value = serde_json::from_str(&openapi_spec(app.state.clone())).unwrap();
    let paths = spec["paths"].as_object().unwrap();
    for p in PATHS {
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
        "analytics_ingest_events{counter=\"committed\"}",
        "analytics_ingest_events{counter=\"sink_down\"} 0",
        "analytics_store_up{backend=\"memory\"} 1",
    ] {
        assert!(text.contains(needle), "{needle} not in\n{text}");
    }
}
