//! Ingest: per-event validation, limits, duplicates, and the 202-after-commit contract.

use analytics_core::ports::EventStore;
use analytics_core::{PageRequest, ProjectId};
use poem::http::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, api_request, batch, page_view};

#[tokio::test]
async fn valid_batch_is_committed_before_202() {
    let app = TestApp::new();
    let r = app
        .post_events(
            &batch(vec![page_view(1), api_request(2, "/x/:id", 200)]),
            Some(&app.admin()),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:#}", r.body);
    assert_eq!(r.body["accepted"], 2);
    assert_eq!(r.body["duplicates"], 0);
    assert_eq!(r.body["rejected"], 0);
    assert_eq!(r.body["results"][0]["status"], "accepted");
    assert!(r.headers.contains_key("x-request-id"));
    // Acknowledged means stored: no waiting.
    let page = app
        .store
        .query_events(&Default::default(), &PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 2);
    assert!(
        page.items
            .iter()
            .all(|e| e.project == ProjectId::default_project())
    );
}

#[tokio::test]
async fn resending_a_batch_reports_all_duplicates() {
    let app = TestApp::new();
    let body = batch((0..5).map(page_view).collect());
    let first = app.post_events(&body, Some(&app.admin())).await;
    assert_eq!(first.body["accepted"], 5);
    let again = app.post_events(&body, Some(&app.admin())).await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_eq!(again.body["accepted"], 0);
    assert_eq!(again.body["duplicates"], 5);
    for r in again.body["results"].as_array().unwrap() {
        assert_eq!(r["status"], "duplicate");
    }
}

#[tokio::test]
async fn invalid_events_are_rejected_by_field_and_valid_ones_committed() {
    let app = TestApp::new();
    let future = (chrono::Utc::now() + chrono::Duration::days(3)).to_rfc3339();
    let big = "x".repeat(65 * 1024);
    let body = batch(vec![
        page_view(1),
        json!({"kind": "Not A Kind!", "payload": {}}),
        json!({"kind": "api_request", "payload": {"method": "GET", "status": 200, "latency_ms": 1}}),
        json!({"kind": "page_view", "payload": {"path": "/"}, "properties": {"blob": big}}),
        json!({"kind": "page_view", "payload": {"path": "/"}, "occurred_at": future}),
        json!("not an object"),
        json!([{"kind": "page_view"}]),
        json!(null),
    ]);
    let r = app.post_events(&body, Some(&app.admin())).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:#}", r.body);
    assert_eq!(r.body["accepted"], 1);
    assert_eq!(r.body["rejected"], 7);
    let results = r.body["results"].as_array().unwrap();
    let fields: Vec<&str> = results[1..]
        .iter()
        .map(|r| {
            assert_eq!(r["status"], "rejected");
            r["error"]["field"].as_str().unwrap()
        })
        .collect();
    assert_eq!(
        fields,
        [
            "kind",
            "payload.route",
            "properties",
            "occurred_at",
            "events[5]",
            "events[6]",
            "events[7]"
        ]
    );
    let stored = app
        .store
        .query_events(&Default::default(), &PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(stored.items.len(), 1);
}

#[tokio::test]
async fn malformed_json_is_400() {
    let app = TestApp::new();
    let r = app.post_raw("{\"events\": [", Some(&app.admin())).await;
    r.assert_error(StatusCode::BAD_REQUEST, Some("body"));
    let r = app.post_raw("{\"nope\": 1}", Some(&app.admin())).await;
    r.assert_error(StatusCode::BAD_REQUEST, Some("events"));
    let r = app.post_raw("{\"events\": {}}", Some(&app.admin())).await;
    r.assert_error(StatusCode::BAD_REQUEST, Some("events"));
    let r = app.post_raw("[]", Some(&app.admin())).await;
    r.assert_error(StatusCode::BAD_REQUEST, Some("body"));
}

#[tokio::test]
async fn a_body_that_is_not_json_is_415() {
    let app = TestApp::new();
    let body = serde_json::to_string(&batch(vec![page_view(1)])).unwrap();
    let admin = app.admin();
    for content_type in ["text/plain", "application/x-www-form-urlencoded"] {
        let r = app
            .post_typed(body.clone(), content_type, Some(&admin))
            .await;
        r.assert_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, None);
        assert_eq!(r.body["error"]["code"], "unsupported_media_type");
    }
    // `application/json` with parameters, and `+json` types, are JSON.
    let r = app
        .post_typed(
            body,
            "application/vnd.api+json; charset=utf-8",
            Some(&admin),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:#}", r.body);
}

#[tokio::test]
async fn nan_is_refused_as_invalid_json_or_per_field() {
    let app = TestApp::new();
    // A bare NaN (what Python's json.dumps writes) is not JSON: the request is refused.
    let raw = r#"{"events": [{"kind": "api_request", "payload": {"method": "GET",
        "route": "/a", "status": 200, "latency_ms": NaN}}]}"#;
    let r = app.post_raw(raw, Some(&app.admin())).await;
    r.assert_error(StatusCode::BAD_REQUEST, Some("body"));
    // As a string or null it is one rejected event naming the field; the rest commit.
    let body = batch(vec![
        json!({"kind": "api_request", "payload": {"method": "GET", "route": "/a",
            "status": 200, "latency_ms": "NaN"}}),
        json!({"kind": "api_request", "payload": {"method": "GET", "route": "/a",
            "status": 200, "latency_ms": null}}),
        page_view(7),
    ]);
    let r = app.post_events(&body, Some(&app.admin())).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:#}", r.body);
    assert_eq!(r.body["accepted"], 1);
    for i in 0..2 {
        assert_eq!(r.body["results"][i]["status"], "rejected");
        assert_eq!(
            r.body["results"][i]["error"]["field"], "payload.latency_ms",
            "{:#}",
            r.body
        );
    }
}

#[tokio::test]
async fn more_than_1000_events_is_413_naming_events() {
    let app = TestApp::new();
    let body = batch((0..1001).map(|_| json!({"kind": "page_view"})).collect());
    let r = app.post_events(&body, Some(&app.admin())).await;
    r.assert_error(StatusCode::PAYLOAD_TOO_LARGE, Some("events"));
}

#[tokio::test]
async fn body_over_1_mib_is_413_also_when_chunked() {
    let app = TestApp::new();
    let big = format!(
        "{{\"events\": [{{\"kind\": \"page_view\", \"properties\": {{\"x\": \"{}\"}}}}]}}",
        "a".repeat(1024 * 1024 + 10)
    );
    let r = app.post_raw(big.clone(), Some(&app.admin())).await;
    r.assert_error(StatusCode::PAYLOAD_TOO_LARGE, Some("body"));
    // No Content-Length: the limit is enforced while reading.
    let reader = std::io::Cursor::new(big.into_bytes());
    let r = app
        .post_raw(poem::Body::from_async_read(reader), Some(&app.admin()))
        .await;
    r.assert_error(StatusCode::PAYLOAD_TOO_LARGE, Some("body"));
}

#[tokio::test]
async fn api_key_events_go_to_the_key_project() {
    let app = TestApp::new();
    let (key, _) = app.api_key("shop").await;
    let r = app
        .post_with_header(&batch(vec![page_view(7)]), "x-api-key", &key)
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:#}", r.body);
    let r = app
        .post_events(&batch(vec![page_view(8)]), Some(&format!("Bearer {key}")))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:#}", r.body);
    // A key is bound to its project.
    let mut other = page_view(9);
    other["project"] = json!("other");
    let r = app
        .post_with_header(&batch(vec![other]), "x-api-key", &key)
        .await;
    assert_eq!(r.body["results"][0]["error"]["field"], "project");
    let shop = app
        .store
        .query_events(
            &analytics_core::ports::EventFilter {
                project: Some(ProjectId::parse("shop").unwrap()),
                ..Default::default()
            },
            &PageRequest::first(10),
        )
        .await
        .unwrap();
    assert_eq!(shop.items.len(), 2);
}

#[tokio::test]
async fn correlation_id_header_is_applied() {
    let app = TestApp::new();
    let r = app
        .post_with_header(&batch(vec![page_view(1)]), "x-correlation-id", "corr-123")
        .await;
    // No auth: the header alone does not authenticate.
    r.assert_error(StatusCode::UNAUTHORIZED, None);
    let req = app
        .client
        .post("/api/v1/analytics/events")
        .header("authorization", app.admin())
        .header("x-correlation-id", "corr-123")
        .body_json(&batch(vec![page_view(1)]))
        .send()
        .await;
    req.assert_status(StatusCode::ACCEPTED);
    let page = app
        .store
        .query_events(&Default::default(), &PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(page.items[0].correlation_id.as_str(), "corr-123");
}

#[tokio::test]
async fn full_queue_is_503_with_retry_after() {
    let app = TestApp::new();
    // Stop the collector: new submissions are refused, never silently dropped.
    app.state.collector.shutdown().await;
    let r = app
        .post_events(&batch(vec![page_view(1)]), Some(&app.admin()))
        .await;
    r.assert_error(StatusCode::SERVICE_UNAVAILABLE, None);
    assert!(r.headers.contains_key("retry-after"));
}

/// A post of 1,000 events dated 1900-01-01 + i days used to create 1,000 day partitions
/// (and with them, listing failures). Events older than their project's raw retention are
/// now rejected one by one, naming `occurred_at`, the limit and how to backfill; the rest
/// of the request is stored.
#[tokio::test]
async fn events_older_than_the_projects_retention_are_rejected_per_event() {
    let app = TestApp::new();
    let start = chrono::NaiveDate::from_ymd_opt(1900, 1, 1).unwrap();
    let mut events: Vec<_> = (0..999u32)
        .map(|i| {
            let day = start + chrono::Days::new(u64::from(i));
            let mut e = page_view(u128::from(i));
            e["occurred_at"] = json!(format!("{day}T00:00:00Z"));
            e
        })
        .collect();
    events.push(page_view(5000));
    let r = app.post_events(&batch(events), Some(&app.admin())).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:#}", r.body);
    assert_eq!(
        (r.body["accepted"].as_u64(), r.body["rejected"].as_u64()),
        (Some(1), Some(999))
    );
    let first = &r.body["results"][0];
    assert_eq!(first["status"], "rejected");
    assert_eq!(first["error"]["field"], "occurred_at");
    let msg = first["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("raw retention of project default (7 days"),
        "{msg}"
    );
    assert!(msg.contains("retention_days (at most 400)"), "{msg}");
    assert_eq!(r.body["results"][999]["status"], "accepted");

    // Year 0 with an offset (-0001-12-31T23:00Z), which poisoned group-committed batches.
    let mut year_zero = page_view(6000);
    year_zero["occurred_at"] = json!("0000-01-01T00:00:00+01:00");
    let r = app
        .post_events(&batch(vec![year_zero, page_view(6001)]), Some(&app.admin()))
        .await;
    assert_eq!(
        r.body["results"][0]["error"]["field"], "occurred_at",
        "{:#}",
        r.body
    );
    assert_eq!(r.body["accepted"], 1);
    // The application's events only (the server's own store-call timings live in the
    // internal project).
    let filter = analytics_core::ports::EventFilter {
        project: Some(analytics_core::ProjectId::default_project()),
        ..Default::default()
    };
    let stored = app
        .store
        .query_events(&filter, &PageRequest::first(100))
        .await
        .unwrap();
    assert_eq!(stored.items.len(), 2);
}

/// The explicit path for older events: a project whose retention covers them (at most
/// 400 days) accepts them, through its API key and for JWT callers naming it.
#[tokio::test]
async fn a_projects_longer_retention_admits_its_backfill() {
    use analytics_core::ports::ProjectStore;
    use analytics_core::project::{Project, ProjectSettings};
    let app = TestApp::new();
    app.store
        .create_project(&Project {
            id: ProjectId::parse("archive").unwrap(),
            name: "archive".into(),
            settings: ProjectSettings {
                retention_days: 90,
                ..Default::default()
            },
            created_at: chrono::Utc::now(),
        })
        .await
        .unwrap();
    let (key, _) = app.api_key("archive").await;
    let aged = |n: u128, days: i64| {
        let mut e = page_view(n);
        e["occurred_at"] = json!((chrono::Utc::now() - chrono::Duration::days(days)).to_rfc3339());
        e
    };
    let r = app
        .post_with_header(&batch(vec![aged(1, 60), aged(2, 100)]), "x-api-key", &key)
        .await;
    assert_eq!(r.body["results"][0]["status"], "accepted", "{:#}", r.body);
    assert_eq!(r.body["results"][1]["error"]["field"], "occurred_at");
    assert!(
        r.body["results"][1]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("project archive (90 days")
    );
    // A JWT caller: each event is held to its own project's retention.
    let mut named = aged(3, 60);
    named["project"] = json!("archive");
    let r = app
        .post_events(&batch(vec![named, aged(4, 60)]), Some(&app.admin()))
        .await;
    assert_eq!(r.body["results"][0]["status"], "accepted", "{:#}", r.body);
    assert_eq!(r.body["results"][1]["error"]["field"], "occurred_at");
}
