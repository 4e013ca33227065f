//! Table tests of event parsing: one bad input per row, the field it must be reported on.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use super::*;

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2024-03-10T12:00:00.123456789Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn parse_with(
    v: Value,
    fixed_project: bool,
    request_cid: Option<&str>,
) -> Result<Event, ValidationErrors> {
    parse_aged(v, fixed_project, request_cid, &AgeLimits::default())
}

fn parse_aged(
    v: Value,
    fixed_project: bool,
    request_cid: Option<&str>,
    age_limits: &AgeLimits,
) -> Result<Event, ValidationErrors> {
    let input: EventInput = serde_json::from_value(v).expect("input shape");
    let project = ProjectId::parse("shop").unwrap();
    let cid = request_cid.map(|c| CorrelationId::parse(c).unwrap());
    let limits = EventLimits::default();
    let ctx = IngestContext {
        now: now(),
        default_project: &project,
        fixed_project,
        request_correlation_id: cid.as_ref(),
        limits: &limits,
        age_limits,
    };
    Event::parse(input, &ctx)
}

fn parse(v: Value) -> Result<Event, ValidationErrors> {
    parse_with(v, false, None)
}

/// Asserts that `v` is rejected with exactly these fields named.
fn check_rejected(v: Value, fields: &[&str]) {
    let err = parse(v.clone()).expect_err(&format!("{v} should be rejected"));
    let got: Vec<&str> = err.errors().iter().map(|e| e.field.as_str()).collect();
    assert_eq!(got, fields, "{v}: {err}");
    for e in err.errors() {
        assert!(!e.message.is_empty());
        assert!(!e.message.ends_with('.'), "{}", e.message);
    }
}

fn api(payload: Value) -> Value {
    json!({"kind": "api_request", "payload": payload})
}

fn good_api() -> Value {
    json!({"method": "get", "route": "/api/v1/products/:id", "status": 200, "latency_ms": 12.5})
}

#[test]
fn a_minimal_api_request_gets_defaults() {
    let e = parse(api(good_api())).unwrap();
    assert_eq!(e.kind, EventKind::ApiRequest);
    assert_eq!(e.project.as_str(), "shop");
    assert_eq!(e.sample_rate, 1.0);
    // Timestamps are kept at microsecond precision.
    assert_eq!(e.occurred_at.timestamp_subsec_nanos(), 123_456_000);
    assert_eq!(e.received_at, e.occurred_at);
    assert_eq!(e.route(), Some("/api/v1/products/:id"));
    assert_eq!(e.status().as_deref(), Some("200"));
    match &e.payload {
        Payload::ApiRequest(r) => assert_eq!(r.method, "GET"),
        other => panic!("{other:?}"),
    }
    // A correlation id is always present.
    assert!(!e.correlation_id.as_str().is_empty());
}

#[test]
fn correlation_id_comes_from_event_then_request_then_is_generated() {
    let from_event = parse_with(
        json!({"kind": "page_view", "correlation_id": "evt-1", "payload": {"path": "/"}}),
        false,
        Some("req-1"),
    )
    .unwrap();
    assert_eq!(from_event.correlation_id.as_str(), "evt-1");
    let from_request = parse_with(
        json!({"kind": "page_view", "payload": {"path": "/"}}),
        false,
        Some("req-1"),
    )
    .unwrap();
    assert_eq!(from_request.correlation_id.as_str(), "req-1");
    let a = parse(json!({"kind": "page_view", "payload": {"path": "/"}})).unwrap();
    let b = parse(json!({"kind": "page_view", "payload": {"path": "/"}})).unwrap();
    assert_ne!(a.correlation_id, b.correlation_id);
}

#[test]
fn client_ids_are_kept_and_generated_ids_differ() {
    let id = "5b0f4d4e-5b39-4a4e-9b0e-1df0f4a4c001";
    let e =
        parse(json!({"id": id, "kind": "error", "payload": {"error_type": "Timeout"}})).unwrap();
    assert_eq!(e.id.to_string(), id);
    let a = parse(api(good_api())).unwrap();
    let b = parse(api(good_api())).unwrap();
    assert_ne!(a.id, b.id);
}

#[test]
fn every_kind_parses() {
    let ok = [
        api(good_api()),
        json!({"kind": "ml_job", "payload": {"pipeline": "3d", "provider": "Tripo", "status": "succeeded", "duration_ms": 5400, "cost_usd": 0.12}}),
        json!({"kind": "ml_job", "payload": {"pipeline": "descriptions", "provider": "gemini", "status": "failed", "duration_ms": 0}}),
        json!({"kind": "order", "payload": {"order_id": "o-1", "amount": 120.0, "currency": "usd", "items": [
            {"product_id": "p1", "collection": "black-rose", "quantity": 2, "unit_price": 60.0}]}}),
        json!({"kind": "error", "payload": {"error_type": "db.timeout", "message": "line 1\nline 2", "route": "/x", "status": 500}}),
        json!({"kind": "alert", "payload": {"metric": "api.error_rate", "severity": "critical", "value": 0.2}}),
        json!({"kind": "page_view", "payload": {"path": "/collections/love-hurts", "collection": "love-hurts"}}),
        json!({"kind": "product_view", "payload": {"product_id": "p1", "collection": "signature"}}),
        json!({"kind": "cart_add", "payload": {"product_id": "p1", "quantity": 1, "value": 60}}),
        json!({"kind": "checkout_start", "payload": {"value": 120}}),
        json!({"kind": "checkout_start"})
            .as_object()
            .map(|_| json!({"kind": "checkout_start", "payload": {}}))
            .unwrap(),
        json!({"kind": "newsletter.signup", "payload": {"anything": [1, 2, {"deep": true}]}}),
        json!({"kind": "custom_ping"}),
    ];
    for v in ok {
        let e = parse(v.clone()).unwrap_or_else(|err| panic!("{v}: {err}"));
        // What a store keeps rebuilds the same event.
        let stored = StoredEvent {
            id: e.id.0,
            project: e.project.to_string(),
            kind: e.kind.to_string(),
            occurred_at: e.occurred_at,
            received_at: e.received_at,
            correlation_id: e.correlation_id.to_string(),
            user_id: e.user_id.clone(),
            session_id: e.session_id.clone(),
            source: e.source.clone(),
            sample_rate: e.sample_rate,
            payload: e.payload.to_json(),
            properties: Value::Object(e.properties.clone()),
        };
        assert_eq!(Event::from_stored(stored).unwrap(), e, "{v}");
    }
    let ml = parse(json!({"kind": "ml_job", "payload": {"pipeline": "3d", "provider": "Tripo", "status": "succeeded", "duration_ms": 1}})).unwrap();
    assert_eq!(ml.provider(), Some("tripo"));
    assert_eq!(ml.status().as_deref(), Some("succeeded"));
    let order = parse(json!({"kind": "order", "payload": {"order_id": "o-1", "amount": 1, "currency": "eur", "items": [
        {"product_id": "p1", "collection": "signature", "quantity": 1, "unit_price": 1}]}})).unwrap();
    assert_eq!(order.collection(), Some("signature"));
}

#[test]
fn envelope_errors_name_their_field() {
    check_rejected(json!({"payload": {}}), &["kind"]);
    check_rejected(json!({"kind": "Bad Kind!"}), &["kind"]);
    check_rejected(json!({"kind": 7}), &["kind"]);
    check_rejected(json!({"kind": "x".repeat(65)}), &["kind"]);
    check_rejected(json!({"id": "not-a-uuid", "kind": "custom_x"}), &["id"]);
    check_rejected(json!({"id": 12, "kind": "custom_x"}), &["id"]);
    check_rejected(
        json!({"kind": "custom_x", "project": "Not A Slug"}),
        &["project"],
    );
    check_rejected(
        json!({"kind": "custom_x", "occurred_at": "yesterday"}),
        &["occurred_at"],
    );
    check_rejected(
        json!({"kind": "custom_x", "occurred_at": 1700000000}),
        &["occurred_at"],
    );
    check_rejected(
        json!({"kind": "custom_x", "correlation_id": "has spaces"}),
        &["correlation_id"],
    );
    check_rejected(
        json!({"kind": "custom_x", "user_id": "u".repeat(257)}),
        &["user_id"],
    );
    check_rejected(
        json!({"kind": "custom_x", "session_id": ""}),
        &["session_id"],
    );
    check_rejected(json!({"kind": "custom_x", "source": 5}), &["source"]);
    check_rejected(
        json!({"kind": "custom_x", "sample_rate": 0}),
        &["sample_rate"],
    );
    check_rejected(
        json!({"kind": "custom_x", "sample_rate": 1.5}),
        &["sample_rate"],
    );
    check_rejected(
        json!({"kind": "custom_x", "sample_rate": "half"}),
        &["sample_rate"],
    );
    check_rejected(
        json!({"kind": "custom_x", "properties": [1]}),
        &["properties"],
    );
    check_rejected(json!({"kind": "custom_x", "payload": "text"}), &["payload"]);
    // Several problems are all reported, in field order.
    check_rejected(
        json!({"id": "x", "kind": "custom_x", "sample_rate": -1}),
        &["id", "sample_rate"],
    );
}

#[test]
fn timestamps_more_than_a_day_ahead_are_rejected() {
    let ahead = |d: Duration| json!({"kind": "custom_x", "occurred_at": (now() + d).to_rfc3339()});
    assert!(
        parse(ahead(Duration::hours(23))).is_ok(),
        "clock skew within a day is fine"
    );
    check_rejected(ahead(Duration::days(3)), &["occurred_at"]);
    // Offsets are normalised to UTC.
    let e = parse(json!({"kind": "custom_x", "occurred_at": "2024-03-10T14:00:00+02:00"})).unwrap();
    assert_eq!(e.occurred_at.to_rfc3339(), "2024-03-10T12:00:00+00:00");
}

fn at(t: &str) -> Value {
    json!({"kind": "custom_x", "occurred_at": t})
}

fn occurred_at_message(r: Result<Event, ValidationErrors>) -> String {
    let err = r.expect_err("must be rejected");
    assert_eq!(err.errors().len(), 1, "{err}");
    assert_eq!(err.errors()[0].field, "occurred_at");
    err.errors()[0].message.clone()
}

#[test]
fn events_older_than_their_projects_retention_are_rejected_with_how_to_backfill() {
    let ago = |d: Duration| json!({"kind": "custom_x", "occurred_at": (now() - d).to_rfc3339()});
    // Without a project record: the default retention, 7 days.
    assert!(parse(ago(Duration::days(7) - Duration::seconds(1))).is_ok());
    let msg = occurred_at_message(parse(ago(Duration::days(7) + Duration::seconds(1))));
    assert!(msg.contains("project shop (7 days"), "{msg}");
    assert!(msg.contains("not before 2024-03-03T12:00:00Z"), "{msg}");
    assert!(
        msg.contains("raise the project's retention_days (at most 400)"),
        "{msg}"
    );
    assert!(!msg.ends_with('.'), "{msg}");

    // A project's own retention, also for events naming another project.
    let mut limits = AgeLimits::default();
    let archive = ProjectId::parse("archive").unwrap();
    limits.projects.insert(
        archive.clone(),
        AgeLimit::new(
            &crate::project::ProjectSettings {
                retention_days: 30,
                ..Default::default()
            },
            None,
        ),
    );
    let mut old = ago(Duration::days(20));
    assert!(parse_aged(old.clone(), false, None, &limits).is_err());
    old["project"] = json!("archive");
    let e = parse_aged(old, false, None, &limits).unwrap();
    assert_eq!(e.project, archive);

    // However long a stored retention is, the bound holds.
    let huge = AgeLimit::new(
        &crate::project::ProjectSettings {
            retention_days: 100_000,
            ..Default::default()
        },
        None,
    );
    assert_eq!(huge.retention_days, crate::project::MAX_RETENTION_DAYS);
    assert_eq!(huge.oldest(now()), now() - Duration::days(400));
}

#[test]
fn years_zero_and_below_and_other_far_past_timestamps_are_rejected_at_parse_time() {
    for t in [
        "0000-01-01T00:00:00+01:00",
        "0000-01-01T00:00:00Z",
        "0001-01-01T00:00:00Z",
        "1900-01-01T00:00:00Z",
        "1970-01-01T00:00:00Z",
    ] {
        let msg = occurred_at_message(parse(at(t)));
        assert!(msg.contains("older than the raw retention"), "{t}: {msg}");
    }
}

#[test]
fn events_in_sealed_hours_are_rejected_even_within_a_raised_retention() {
    // The project kept 7 days, so hours before 2024-03-03T12:00Z are sealed; its
    // retention was then raised to 30 days.
    let seal = now() - Duration::days(7);
    let limits = AgeLimits {
        unknown: AgeLimit {
            retention_days: 30,
            sealed_before: Some(seal),
        },
        ..Default::default()
    };
    assert_eq!(limits.unknown.oldest(now()), seal);
    assert!(parse_aged(at("2024-03-04T00:00:00Z"), false, None, &limits).is_ok());
    let msg = occurred_at_message(parse_aged(at("2024-03-01T00:00:00Z"), false, None, &limits));
    assert!(msg.contains("is before 2024-03-03T12:00:00Z"), "{msg}");
    assert!(msg.contains("cannot be backfilled"), "{msg}");
    // Once the retention passes the seal, the retention is the limit again.
    let limits = AgeLimits {
        unknown: AgeLimit {
            retention_days: 3,
            sealed_before: Some(seal),
        },
        ..Default::default()
    };
    let msg = occurred_at_message(parse_aged(at("2024-03-05T00:00:00Z"), false, None, &limits));
    assert!(msg.contains("3 days"), "{msg}");
}

#[test]
fn properties_over_64_kib_are_rejected() {
    let big = "x".repeat(64 * 1024);
    check_rejected(
        json!({"kind": "custom_x", "properties": {"blob": big}}),
        &["properties"],
    );
    let fits = "x".repeat(60 * 1024);
    assert!(parse(json!({"kind": "custom_x", "properties": {"blob": fits}})).is_ok());
    let huge_custom = "y".repeat(65 * 1024);
    check_rejected(
        json!({"kind": "custom_x", "payload": {"blob": huge_custom}}),
        &["payload"],
    );
}

#[test]
fn api_request_payload_errors() {
    check_rejected(json!({"kind": "api_request"}), &["payload"]);
    check_rejected(
        api(json!({})),
        &[
            "payload.method",
            "payload.route",
            "payload.status",
            "payload.latency_ms",
        ],
    );
    let with = |k: &str, v: Value| {
        let mut p = good_api();
        p[k] = v;
        api(p)
    };
    check_rejected(with("latency_ms", json!(-1)), &["payload.latency_ms"]);
    check_rejected(with("latency_ms", json!("fast")), &["payload.latency_ms"]);
    check_rejected(with("latency_ms", Value::Null), &["payload.latency_ms"]);
    check_rejected(with("status", json!(99)), &["payload.status"]);
    check_rejected(with("status", json!(200.5)), &["payload.status"]);
    check_rejected(with("route", json!("api/no-slash")), &["payload.route"]);
    check_rejected(
        with("route", json!(format!("/{}", "r".repeat(600)))),
        &["payload.route"],
    );
    check_rejected(with("method", json!("GE T")), &["payload.method"]);
    check_rejected(with("extra", json!(1)), &["payload.extra"]);
}

#[test]
fn non_finite_numbers_are_rejected() {
    // JSON cannot carry NaN, but embedders can build inputs by hand.
    let mut p = serde_json::Map::new();
    p.insert("method".into(), json!("GET"));
    p.insert("route".into(), json!("/"));
    p.insert("status".into(), json!(200));
    let nan = serde_json::Number::from_f64(f64::NAN);
    assert!(nan.is_none(), "serde_json refuses NaN numbers");
    p.insert("latency_ms".into(), Value::Null);
    check_rejected(api(Value::Object(p)), &["payload.latency_ms"]);
    // Overflowing literals parse as infinity under arbitrary precision; serde_json rejects them.
    assert!(serde_json::from_str::<Value>("{\"latency_ms\": 1e999}").is_err());
}

#[test]
fn ml_job_payload_errors() {
    let ml = |p: Value| json!({"kind": "ml_job", "payload": p});
    check_rejected(
        ml(json!({})),
        &[
            "payload.pipeline",
            "payload.provider",
            "payload.status",
            "payload.duration_ms",
        ],
    );
    check_rejected(
        ml(
            json!({"pipeline": "video", "provider": "tripo", "status": "succeeded", "duration_ms": 1}),
        ),
        &["payload.pipeline"],
    );
    check_rejected(
        ml(json!({"pipeline": "3d", "provider": "tripo", "status": "done", "duration_ms": 1})),
        &["payload.status"],
    );
    check_rejected(
        ml(
            json!({"pipeline": "3d", "provider": "tripo", "status": "failed", "duration_ms": 1, "cost_usd": -0.5}),
        ),
        &["payload.cost_usd"],
    );
}

#[test]
fn order_payload_errors() {
    let order = |p: Value| json!({"kind": "order", "payload": p});
    check_rejected(
        order(json!({"order_id": "o", "amount": -5, "currency": "USD", "items": []})),
        &["payload.amount"],
    );
    check_rejected(
        order(json!({"order_id": "o", "amount": 5, "currency": "dollars", "items": []})),
        &["payload.currency"],
    );
    check_rejected(
        order(
            json!({"order_id": "o", "amount": 5, "currency": "USD", "items": [
                {"product_id": "p", "quantity": 0, "unit_price": 5},
                {"quantity": 1, "unit_price": -1},
                "nope"
            ]}),
        ),
        &[
            "payload.items[0].quantity",
            "payload.items[1].product_id",
            "payload.items[1].unit_price",
            "payload.items[2]",
        ],
    );
    let many: Vec<Value> = (0..501)
        .map(|i| json!({"product_id": format!("p{i}"), "quantity": 1, "unit_price": 1}))
        .collect();
    check_rejected(
        order(json!({"order_id": "o", "amount": 5, "currency": "USD", "items": many})),
        &["payload.items"],
    );
}

#[test]
fn funnel_and_other_payload_errors() {
    check_rejected(
        json!({"kind": "page_view", "payload": {}}),
        &["payload.path"],
    );
    check_rejected(
        json!({"kind": "product_view", "payload": {"collection": "x"}}),
        &["payload.product_id"],
    );
    check_rejected(
        json!({"kind": "cart_add", "payload": {"product_id": "p", "quantity": -1}}),
        &["payload.quantity"],
    );
    check_rejected(
        json!({"kind": "error", "payload": {"message": "m"}}),
        &["payload.error_type"],
    );
    check_rejected(
        json!({"kind": "alert", "payload": {"metric": "m", "severity": "panic"}}),
        &["payload.severity"],
    );
}

#[test]
fn an_api_key_bound_project_cannot_be_overridden() {
    let e = parse_with(json!({"kind": "custom_x", "project": "other"}), true, None).unwrap_err();
    assert!(e.has_field("project"));
    assert!(parse_with(json!({"kind": "custom_x", "project": "shop"}), true, None).is_ok());
    assert_eq!(
        parse(json!({"kind": "custom_x", "project": "other"}))
            .unwrap()
            .project
            .as_str(),
        "other"
    );
}

#[test]
fn nul_characters_are_rejected_where_databases_cannot_store_them() {
    check_rejected(
        json!({"kind": "custom_x", "properties": {"a": {"b": ["x\u{0}y"]}}}),
        &["properties"],
    );
    check_rejected(
        json!({"kind": "custom_x", "properties": {"k\u{0}": 1}}),
        &["properties"],
    );
    check_rejected(
        json!({"kind": "custom_x", "payload": {"text": "a\u{0}"}}),
        &["payload"],
    );
    check_rejected(
        json!({"kind": "error", "payload": {"error_type": "x", "message": "line\u{0}"}}),
        &["payload.message"],
    );
    check_rejected(
        api(json!({"method": "GET", "route": "/a\u{0}", "status": 200, "latency_ms": 1})),
        &["payload.route"],
    );
    // Newlines and tabs in free text stay allowed.
    assert!(
        parse(json!({"kind": "error", "payload": {"error_type": "x", "message": "a\n\tb"}}))
            .is_ok()
    );
}
