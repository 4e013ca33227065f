//! Alerting routes: config CRUD and validation, If-Match, audit, history, acknowledge,
//! resolve, bulk acknowledge, roles; and the engine loop end to end in the real server.

use std::time::Duration;

use analytics_core::alert::{NewAlert, Severity};
use analytics_core::ports::AlertHistoryStore;
use analytics_core::{MetricName, ProjectId};
use analytics_server::Role;
use chrono::Utc;
use poem::http::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Resp, TestApp};

const CONFIGS: &str = "/api/v1/analytics/alerts/configs";

fn config(name: &str) -> Value {
    json!({
        "name": name,
        "metric": "api.latency_ms",
        "stat": "p95",
        "dimensions": {"route": "/api/v1/orders"},
        "condition": "threshold_above",
        "threshold": 500.0,
        "window_secs": 300,
        "severity": "warning",
        "cooldown_secs": 900,
        "channels": ["email", "slack"],
        "recipients": [{"email": "ops@example.com"}, {"phone": "+15551234567"}],
        "enabled": true,
        "for_secs": 120,
        "recovery_threshold": 400.0,
        "auto_resolve": false,
        "no_data": "alerting",
        "project": "shop"
    })
}

async fn send(app: &TestApp, method: Method, path: &str, body: Option<&Value>, auth: &str) -> Resp {
    send_with(app, method, path, body, auth, None).await
}

async fn send_with(
    app: &TestApp,
    method: Method,
    path: &str,
    body: Option<&Value>,
    auth: &str,
    if_match: Option<&str>,
) -> Resp {
    let mut r = app
        .client
        .request(method, path)
        .header("authorization", auth);
    if let Some(v) = if_match {
        r = r.header("if-match", v);
    }
    if let Some(b) = body {
        r = r.body_json(b);
    }
    Resp::from(r.send().await).await
}

#[tokio::test]
async fn configs_are_created_read_replaced_deleted_and_audited() {
    let app = TestApp::new();
    let admin = app.admin();
    let created = send(
        &app,
        Method::POST,
        CONFIGS,
        Some(&config("p95 orders")),
        &admin,
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:#}", created.body);
    let c = &created.body;
    let id = c["id"].as_str().unwrap().to_owned();
    assert_eq!(c["version"], 1);
    assert!(c["created_at"].is_string() && c["updated_at"].is_string());
    for (k, v) in config("p95 orders").as_object().unwrap() {
        assert_eq!(&c[k], v, "field {k} round-trips");
    }

    let one = send(&app, Method::GET, &format!("{CONFIGS}/{id}"), None, &admin).await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.body, created.body);

    let listed = send(
        &app,
        Method::GET,
        &format!("{CONFIGS}?project=shop&severity=warning"),
        None,
        &admin,
    )
    .await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 1);
    let none = send(
        &app,
        Method::GET,
        &format!("{CONFIGS}?enabled=false"),
        None,
        &admin,
    )
    .await;
    assert_eq!(none.body["items"], json!([]));

    let mut changed = config("p95 orders");
    changed["severity"] = json!("critical");
    changed["recovery_threshold"] = Value::Null;
    let put = send(
        &app,
        Method::PUT,
        &format!("{CONFIGS}/{id}"),
        Some(&changed),
        &admin,
    )
    .await;
    assert_eq!(put.status, StatusCode::OK, "{:#}", put.body);
    assert_eq!(put.body["version"], 2);
    assert_eq!(put.body["severity"], "critical");
    assert_eq!(put.body["recovery_threshold"], Value::Null);

    // If-Match: the current version passes, a stale one is 412.
    let stale = send_with(
        &app,
        Method::PUT,
        &format!("{CONFIGS}/{id}"),
        Some(&changed),
        &admin,
        Some("1"),
    )
    .await;
    stale.assert_error(StatusCode::PRECONDITION_FAILED, Some("If-Match"));
    let fresh = send_with(
        &app,
        Method::PUT,
        &format!("{CONFIGS}/{id}"),
        Some(&changed),
        &admin,
        Some("\"2\""),
    )
    .await;
    assert_eq!(fresh.status, StatusCode::OK, "{:#}", fresh.body);
    assert_eq!(fresh.body["version"], 3);

    let del = send(
        &app,
        Method::DELETE,
        &format!("{CONFIGS}/{id}"),
        None,
        &admin,
    )
    .await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    send(&app, Method::GET, &format!("{CONFIGS}/{id}"), None, &admin)
        .await
        .assert_error(StatusCode::NOT_FOUND, None);
    send(
        &app,
        Method::DELETE,
        &format!("{CONFIGS}/{id}"),
        None,
        &admin,
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, None);

    let audit = send(
        &app,
        Method::GET,
        &format!("{CONFIGS}/{id}/audit"),
        None,
        &admin,
    )
    .await;
    assert_eq!(audit.status, StatusCode::OK, "{:#}", audit.body);
    let items = audit.body["items"].as_array().unwrap();
    let actions: Vec<&str> = items
        .iter()
        .map(|i| i["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["created", "updated", "updated", "deleted"]);
    assert!(items.iter().all(|i| i["by"] == "tester"));
    assert_eq!(items[0]["before"], Value::Null);
    assert_eq!(items[0]["after"]["severity"], "warning");
    assert_eq!(items[1]["after"]["severity"], "critical");
    assert_eq!(items[3]["after"], Value::Null);
    assert_eq!(items[3]["before"]["version"], 3);
    let versions: Vec<i64> = items
        .iter()
        .map(|i| i["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, [1, 2, 3, 3]);
}

#[tokio::test]
async fn bad_configs_are_400_naming_the_field_and_duplicates_409() {
    let app = TestApp::new();
    let admin = app.admin();
    let cases: Vec<(&str, Value, &str)> = vec![
        ("metric", json!("no.such_metric"), "metric"),
        ("dimensions", json!({"nope": "x"}), "dimensions.nope"),
        ("stat", json!("p95"), "stat"),
        ("window_secs", json!(10), "window_secs"),
        ("window_secs", json!(-5), "window_secs"),
        ("window_secs", json!(9_000_000_000i64), "window_secs"),
        ("channels", json!(["email", "pager"]), "channels[1]"),
        (
            "recipients",
            json!([{"email": "ops@example.com"}, {"email": "not-an-address"}]),
            "recipients[1].email",
        ),
        (
            "recipients",
            json!([{"phone": "555-1234"}]),
            "recipients[0].phone",
        ),
        // Two kinds in one recipient is none of the documented shapes.
        (
            "recipients",
            json!([{"email": "a@example.com", "phone": "+15551234567"}]),
            "body",
        ),
        // A string field sent as a number.
        ("project", json!(5), "body"),
        ("cooldown_secs", json!(-1), "cooldown_secs"),
        ("recovery_threshold", json!(900.0), "recovery_threshold"),
    ];
    for (field, value, named) in cases {
        let mut body = config("bad");
        body[field] = value;
        if field == "stat" {
            // A count metric offers no percentiles.
            body["metric"] = json!("errors.count");
            body["dimensions"] = json!({});
        }
        let r = send(&app, Method::POST, CONFIGS, Some(&body), &admin).await;
        r.assert_error(StatusCode::BAD_REQUEST, Some(named));
    }
    let first = send(&app, Method::POST, CONFIGS, Some(&config("same")), &admin).await;
    assert_eq!(first.status, StatusCode::CREATED);
    send(&app, Method::POST, CONFIGS, Some(&config("same")), &admin)
        .await
        .assert_error(StatusCode::CONFLICT, None);
    let mut elsewhere = config("same");
    elsewhere["project"] = json!("other");
    let other = send(&app, Method::POST, CONFIGS, Some(&elsewhere), &admin).await;
    assert_eq!(
        other.status,
        StatusCode::CREATED,
        "other projects may reuse a name"
    );
    // Renaming onto a taken name is 409 too.
    let id = other.body["id"].as_str().unwrap();
    let mut taken = config("taken");
    taken["project"] = json!("other");
    send(&app, Method::POST, CONFIGS, Some(&taken), &admin).await;
    let mut onto = elsewhere.clone();
    onto["name"] = json!("taken");
    send(
        &app,
        Method::PUT,
        &format!("{CONFIGS}/{id}"),
        Some(&onto),
        &admin,
    )
    .await
    .assert_error(StatusCode::CONFLICT, None);
}

#[tokio::test]
async fn the_catalog_lists_metrics_with_stats_and_dimensions() {
    let app = TestApp::new();
    let r = send(
        &app,
        Method::GET,
        "/api/v1/analytics/alerts/metrics",
        None,
        &app.admin(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let items = r.body["items"].as_array().unwrap();
    let errors = items.iter().find(|m| m["metric"] == "api.errors").unwrap();
    assert!(errors["stats"].as_array().unwrap().contains(&json!("avg")));
    assert!(
        errors["dimensions"]
            .as_array()
            .unwrap()
            .contains(&json!("route"))
    );
    assert!(
        errors["description"]
            .as_str()
            .is_some_and(|d| !d.is_empty())
    );
}

#[tokio::test]
async fn business_viewers_and_ingest_roles_get_403() {
    let app = TestApp::new();
    for role in [Role::BusinessViewer, Role::Ingest] {
        let auth = format!("Bearer {}", app.token(&[role]));
        for path in [
            "/api/v1/analytics/alerts/metrics",
            CONFIGS,
            "/api/v1/analytics/alerts/history",
            "/api/v1/analytics/alerts/active",
        ] {
            send(&app, Method::GET, path, None, &auth)
                .await
                .assert_error(StatusCode::FORBIDDEN, None);
        }
        send(&app, Method::POST, CONFIGS, Some(&config("x")), &auth)
            .await
            .assert_error(StatusCode::FORBIDDEN, None);
    }
}

fn fired(config_id: Uuid, severity: Severity, minutes_ago: i64) -> NewAlert {
    NewAlert {
        id: Uuid::new_v4(),
        config_id,
        project: ProjectId::parse("shop").unwrap(),
        metric: MetricName::parse("api.latency_ms").unwrap(),
        severity,
        triggered_at: Utc::now() - chrono::Duration::minutes(minutes_ago),
        value: 812.0,
        threshold: 500.0,
        message: "p95 above 500".into(),
    }
}

#[tokio::test]
async fn alerts_are_listed_acknowledged_resolved_and_bulk_acknowledged() {
    let app = TestApp::new();
    let admin = app.admin();
    let c = send(&app, Method::POST, CONFIGS, Some(&config("p95")), &admin).await;
    let config_id: Uuid = c.body["id"].as_str().unwrap().parse().unwrap();
    let a = fired(config_id, Severity::Warning, 30);
    let b = fired(Uuid::new_v4(), Severity::Critical, 20);
    let d = fired(Uuid::new_v4(), Severity::Critical, 10);
    for x in [&a, &b, &d] {
        app.store.open_alert(x).await.unwrap();
    }

    let active = send(
        &app,
        Method::GET,
        "/api/v1/analytics/alerts/active",
        None,
        &admin,
    )
    .await;
    assert_eq!(active.status, StatusCode::OK, "{:#}", active.body);
    let ids: Vec<&str> = active.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [d.id.to_string(), b.id.to_string(), a.id.to_string()],
        "newest first"
    );
    let rec = &active.body["items"][2];
    assert_eq!(rec["name"], "p95");
    assert_eq!(rec["stat"], "p95");
    assert_eq!(rec["condition"], "threshold_above");
    assert_eq!(rec["dimensions"], json!({"route": "/api/v1/orders"}));
    assert_eq!(
        (rec["value"].as_f64(), rec["threshold"].as_f64()),
        (Some(812.0), Some(500.0))
    );
    assert_eq!(rec["notifications"], json!([]));
    assert_eq!(rec["acknowledged_at"], Value::Null);
    assert_eq!(active.body["next_cursor"], Value::Null);

    // Paging.
    let p1 = send(
        &app,
        Method::GET,
        "/api/v1/analytics/alerts/history?limit=2",
        None,
        &admin,
    )
    .await;
    assert_eq!(p1.body["items"].as_array().unwrap().len(), 2);
    let cursor = p1.body["next_cursor"].as_str().unwrap().to_owned();
    let p2 = send(
        &app,
        Method::GET,
        &format!("/api/v1/analytics/alerts/history?limit=2&cursor={cursor}"),
        None,
        &admin,
    )
    .await;
    assert_eq!(p2.body["items"][0]["id"], a.id.to_string());
    assert_eq!(p2.body["next_cursor"], Value::Null);
    assert!(p1.body["range"]["from"].is_string());

    // Acknowledge: a note over 1000 characters is refused and changes nothing; then 200
    // with the note kept; again (without a body) 200 unchanged; unknown 404.
    let ack = format!("/api/v1/analytics/alerts/{}/acknowledge", a.id);
    let long = send(
        &app,
        Method::POST,
        &ack,
        Some(&json!({"note": "x".repeat(1001)})),
        &admin,
    )
    .await;
    long.assert_error(StatusCode::BAD_REQUEST, Some("note"));
    // An array, a number for the note: malformed bodies.
    for body in [json!(["x"]), json!({"note": 5})] {
        send(&app, Method::POST, &ack, Some(&body), &admin)
            .await
            .assert_error(StatusCode::BAD_REQUEST, Some("body"));
    }
    let note = "on it: the orders pool is saturated";
    let first = send(
        &app,
        Method::POST,
        &ack,
        Some(&json!({ "note": note })),
        &admin,
    )
    .await;
    assert_eq!(first.status, StatusCode::OK, "{:#}", first.body);
    assert_eq!(first.body["status"], "acknowledged");
    assert_eq!(first.body["acknowledged_by"], "tester");
    assert_eq!(first.body["acknowledgement_note"], note);
    let again = send(&app, Method::POST, &ack, None, &admin).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["acknowledged_at"], first.body["acknowledged_at"]);
    assert_eq!(
        again.body["acknowledgement_note"], note,
        "the first note stays"
    );
    let listed = send(
        &app,
        Method::GET,
        "/api/v1/analytics/alerts/history?status=acknowledged",
        None,
        &admin,
    )
    .await;
    assert_eq!(listed.body["items"][0]["acknowledgement_note"], note);
    send(
        &app,
        Method::POST,
        &format!("/api/v1/analytics/alerts/{}/acknowledge", Uuid::new_v4()),
        None,
        &admin,
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, None);

    // Resolve, then acknowledging is 409.
    let res = send(
        &app,
        Method::POST,
        &format!("/api/v1/analytics/alerts/{}/resolve", b.id),
        None,
        &admin,
    )
    .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(
        (
            res.body["status"].as_str(),
            res.body["resolved_by"].as_str()
        ),
        (Some("resolved"), Some("tester"))
    );
    send(
        &app,
        Method::POST,
        &format!("/api/v1/analytics/alerts/{}/acknowledge", b.id),
        None,
        &admin,
    )
    .await
    .assert_error(StatusCode::CONFLICT, None);

    // History filters.
    let q = |s: &str| format!("/api/v1/analytics/alerts/history?{s}");
    let count = |r: &Resp| r.body["items"].as_array().unwrap().len();
    assert_eq!(
        count(
            &send(
                &app,
                Method::GET,
                &q("status=active,acknowledged"),
                None,
                &admin
            )
            .await
        ),
        2
    );
    assert_eq!(
        count(&send(&app, Method::GET, &q("severity=critical"), None, &admin).await),
        2
    );
    assert_eq!(
        count(
            &send(
                &app,
                Method::GET,
                &q(&format!("config_id={config_id}")),
                None,
                &admin
            )
            .await
        ),
        1
    );
    assert_eq!(
        count(&send(&app, Method::GET, &q("metric=api.errors"), None, &admin).await),
        0
    );
    send(&app, Method::GET, &q("status=open"), None, &admin)
        .await
        .assert_error(StatusCode::BAD_REQUEST, Some("status"));

    // Bulk by ids: one new, one already, one resolved, one unknown.
    let unknown = Uuid::new_v4();
    let bulk = send(
        &app,
        Method::POST,
        "/api/v1/analytics/alerts/acknowledge",
        Some(&json!({"ids": [d.id, a.id, b.id, unknown]})),
        &admin,
    )
    .await;
    assert_eq!(bulk.status, StatusCode::OK, "{:#}", bulk.body);
    assert_eq!(bulk.body["acknowledged"], 1);
    let statuses: Vec<&str> = bulk.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        [
            "acknowledged",
            "already_acknowledged",
            "resolved",
            "not_found"
        ]
    );

    // Bulk by filter.
    let e = fired(Uuid::new_v4(), Severity::Info, 5);
    app.store.open_alert(&e).await.unwrap();
    let by_filter = send(
        &app,
        Method::POST,
        "/api/v1/analytics/alerts/acknowledge",
        Some(&json!({"filter": {"severity": "info"}})),
        &admin,
    )
    .await;
    assert_eq!(by_filter.body["acknowledged"], 1);
    assert_eq!(by_filter.body["results"][0]["id"], e.id.to_string());
    send(
        &app,
        Method::POST,
        "/api/v1/analytics/alerts/acknowledge",
        Some(&json!({})),
        &admin,
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, Some("body"));
    let active = send(
        &app,
        Method::GET,
        "/api/v1/analytics/alerts/active",
        None,
        &admin,
    )
    .await;
    assert_eq!(active.body["items"], json!([]));
}

/// The real server with a 1 s alert interval: server errors ingested over HTTP open an
/// `api.errors` (avg = error rate) alert within two intervals, listed as active with value
/// and threshold, and the warning severity's channels (in-app, Slack, email) have outbox
/// entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_opens_an_alert_from_ingested_errors_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("alerts.db").display());
    engine_opens_an_alert_from_ingested_errors(&url).await;
}

/// The same on PostgreSQL (skipped without the test cluster of `scripts/with-services`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_opens_an_alert_from_ingested_errors_on_postgres() {
    let Some(url) = crate::helpers::fresh_postgres_url().await else {
        return;
    };
    engine_opens_an_alert_from_ingested_errors(&url).await;
}

async fn engine_opens_an_alert_from_ingested_errors(url: &str) {
    let server = crate::helpers::RunningServer::start(url, |s| {
        s.alert_interval = Duration::from_secs(1);
    })
    .await;
    let store = server.store.clone();
    let base = server.base.clone();
    let http = crate::helpers::http_client();
    let auth = crate::helpers::bearer("ops", &[Role::Admin]);

    let body = json!({
        "name": "api error rate",
        "metric": "api.errors",
        "stat": "avg",
        "condition": "threshold_above",
        "threshold": 0.1,
        "window_secs": 60,
        "severity": "warning",
        "recipients": [{"email": "ops@example.com"}, {"user": "ops"}],
    });
    let created = http
        .post(format!("{base}/api/v1/analytics/alerts/configs"))
        .header("authorization", &auth)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let config: Value = created.json().await.unwrap();

    let ingested = http
        .post(format!("{base}/api/v1/analytics/events"))
        .header("authorization", &auth)
        .json(&crate::helpers::half_failing_requests("/api/v1/orders"))
        .send()
        .await
        .unwrap();
    assert!(
        ingested.status().is_success(),
        "{}",
        ingested.text().await.unwrap()
    );
    let ingested_at = std::time::Instant::now();

    let mut found = None;
    while ingested_at.elapsed() < Duration::from_millis(2500) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let active: Value = http
            .get(format!("{base}/api/v1/analytics/alerts/active"))
            .header("authorization", &auth)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(a) = active["items"].as_array().and_then(|i| i.first()) {
            found = Some(a.clone());
            break;
        }
    }
    let alert = found.expect("an alert opens within two 1 s intervals");
    assert_eq!(alert["config_id"], config["id"]);
    assert_eq!(alert["name"], "api error rate");
    assert_eq!(alert["status"], "active");
    assert!(
        (alert["value"].as_f64().unwrap() - 0.5).abs() < 1e-9,
        "{alert:#}"
    );
    assert_eq!(alert["threshold"], 0.1);
    let alert_id: Uuid = alert["id"].as_str().unwrap().parse().unwrap();
    let entries = store.alert_outbox_entries(alert_id).await.unwrap();
    let mut channels: Vec<&str> = entries
        .iter()
        .map(|e| e.notification.channel.as_str())
        .collect();
    channels.sort_unstable();
    channels.dedup();
    assert_eq!(
        channels,
        ["email", "in_app", "slack"],
        "the warning channels"
    );
    let listed: Vec<&str> = alert["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["channel"].as_str().unwrap())
        .collect();
    assert_eq!(listed.len(), entries.len(), "{alert:#}");

    server.stop().await;
}

/// Every alerting path maps to its template (ids never become metric labels).
#[test]
fn alert_paths_have_bounded_metric_labels() {
    use analytics_server::api::{PATHS, route_template};
    let id = Uuid::new_v4().to_string();
    for template in PATHS.iter().filter(|p| p.contains("/alerts/")) {
        let path = template.replace("{id}", &id);
        assert_eq!(route_template(&path), *template, "{path}");
    }
    assert_eq!(
        route_template("/api/v1/analytics/alerts/configs/x/y/z"),
        "unmatched"
    );
}

/// The runner over a store, driven with explicit instants: it opens an alert, repeats
/// nothing at the same instant, and a new runner (a restart) catches up the missed minutes, adopts the open alert instead of opening another, and
/// resolves it automatically once the error rate is back down.
#[tokio::test]
async fn the_runner_catches_up_adopts_after_a_restart_and_auto_resolves() {
    use std::sync::Arc;

    use analytics_core::alert::{AlertStatus, Condition, Stat};
    use analytics_core::memory::MemoryStore;
    use analytics_core::ports::{AlertFilter, EventSink, Store};
    use analytics_core::rollup::Dimensions;
    use analytics_core::rollup::spec::RollupSpecs;
    use analytics_core::testkit::fixtures;
    use analytics_core::{PageRequest, Threshold};
    use analytics_server::alerting::{AlertRunner, WATERMARK};

    let memory = MemoryStore::new();
    let store: Arc<dyn Store> = Arc::new(memory.clone());
    let mut spec = fixtures::alert_spec("shop", "error rate", Severity::Warning);
    spec.metric = MetricName::parse("api.errors").unwrap();
    spec.stat = Stat::Avg;
    spec.dimensions = Dimensions::none();
    spec.condition = Condition::ThresholdAbove;
    spec.threshold = Threshold::new(0.1).unwrap();
    spec.window_secs = 60;
    spec.channels = Vec::new();
    spec.cooldown_secs = 0;
    let config = store
        .create_config(Uuid::new_v4(), &spec, "ops", fixtures::now())
        .await
        .unwrap();
    let t0 = fixtures::now() + chrono::Duration::minutes(10);
    let errors: Vec<_> = (0..10)
        .map(|i| {
            let at = t0 - chrono::Duration::seconds(30 - i);
            fixtures::api_request(
                at,
                "/api/v1/orders",
                if i % 2 == 0 { 500 } else { 200 },
                5.0,
            )
        })
        .collect();
    store.write_batch(&errors).await.unwrap();
    let specs = Arc::new(RollupSpecs::defaults());
    let every = Duration::from_secs(60);
    let open = AlertFilter {
        config_id: Some(config.id),
        ..AlertFilter::default()
    };

    let mut runner = AlertRunner::new(store.clone(), specs.clone(), every);
    let first = runner.run(t0).await.unwrap();
    assert_eq!((first.steps, first.opened), (1, 1), "{first:?}");
    // The fixture's recipients: the default Slack webhook and an email address (in-app
    // needs a user recipient).
    assert_eq!(first.enqueued, 2, "{first:?}");
    assert_eq!(store.watermark(WATERMARK).await.unwrap(), Some(t0));
    let again = runner.run(t0).await.unwrap();
    assert_eq!(again.steps, 0, "nothing is due at the same instant");
    let alerts = store
        .list_alerts(&open, &PageRequest::first(10))
        .await
        .unwrap()
        .items;
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].status, AlertStatus::Active);
    assert!((alerts[0].fired.value - 0.5).abs() < 1e-9);
    assert!(
        !store
            .alert_outbox_entries(alerts[0].id())
            .await
            .unwrap()
            .is_empty()
    );

    // A restart: a new runner from the watermark, three minutes later, no data meanwhile
    // (`no_data: keep`): the alert is adopted and stays open, no second one.
    let mut restarted = AlertRunner::new(store.clone(), specs, every);
    let caught_up = restarted
        .run(t0 + chrono::Duration::minutes(3))
        .await
        .unwrap();
    assert_eq!((caught_up.steps, caught_up.opened), (3, 0), "{caught_up:?}");
    assert_eq!(
        store
            .list_alerts(&open, &PageRequest::first(10))
            .await
            .unwrap()
            .items
            .len(),
        1
    );

    // Healthy traffic: the alert recovers and is resolved as "auto".
    let healthy: Vec<_> = (0..10)
        .map(|i| {
            let at = t0 + chrono::Duration::seconds(200 + i);
            fixtures::api_request(at, "/api/v1/orders", 200, 5.0)
        })
        .collect();
    memory.write_batch(&healthy).await.unwrap();
    let recovered = restarted
        .run(t0 + chrono::Duration::minutes(4))
        .await
        .unwrap();
    assert_eq!(recovered.resolved, 1, "{recovered:?}");
    let alert = store.get_alert(alerts[0].id()).await.unwrap();
    assert_eq!(alert.status, AlertStatus::Resolved);
    assert_eq!(alert.resolved_by.as_deref(), Some("auto"));
}

/// The engine's state survives restarts: a breach that must hold `for_secs` keeps its start
/// when each evaluation runs in a new runner (a restart or a lock handover every minute),
/// so the alert fires once the breach has held long enough, not never.
#[tokio::test]
async fn a_pending_breach_keeps_its_start_across_restarts() {
    use std::sync::Arc;

    use analytics_core::Threshold;
    use analytics_core::alert::{Condition, Stat};
    use analytics_core::memory::MemoryStore;
    use analytics_core::ports::Store;
    use analytics_core::rollup::Dimensions;
    use analytics_core::rollup::spec::RollupSpecs;
    use analytics_core::testkit::fixtures;
    use analytics_server::alerting::{AlertRunner, WATERMARK};

    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let mut spec = fixtures::alert_spec("shop", "errors held", Severity::Warning);
    spec.metric = MetricName::parse("api.errors").unwrap();
    spec.stat = Stat::Avg;
    spec.dimensions = Dimensions::none();
    spec.condition = Condition::ThresholdAbove;
    spec.threshold = Threshold::new(0.1).unwrap();
    spec.window_secs = 60;
    spec.for_secs = 120;
    spec.cooldown_secs = 0;
    store
        .create_config(Uuid::new_v4(), &spec, "ops", fixtures::now())
        .await
        .unwrap();
    let t0 = fixtures::now() + chrono::Duration::minutes(10);
    let errors: Vec<_> = (0..180)
        .map(|i| fixtures::api_request(t0 - chrono::Duration::seconds(59 - i), "/x", 500, 5.0))
        .collect();
    store.write_batch(&errors).await.unwrap();
    let specs = Arc::new(RollupSpecs::defaults());
    let every = std::time::Duration::from_secs(60);
    let mut opened = Vec::new();
    for minute in 0..=2 {
        let mut runner = AlertRunner::new(store.clone(), specs.clone(), every);
        let report = runner
            .run(t0 + chrono::Duration::minutes(minute))
            .await
            .unwrap();
        assert_eq!(report.steps, 1, "{report:?}");
        opened.push(report.opened);
        assert!(
            store.job_state(WATERMARK).await.unwrap().is_some(),
            "the state is stored with the watermark"
        );
    }
    assert_eq!(opened, [0, 0, 1], "pending at 0 and 60 s, firing at 120 s");
}

/// Export, change things, import back: a conflicting import is refused whole (409 naming
/// the item) unless told to skip or replace; a dry run writes nothing; a deleted
/// configuration comes back with its id; imports are audited as `imported`; importing an
/// export of the current state changes nothing.
#[tokio::test]
async fn configs_export_and_import_round_trip_with_dry_run_and_conflict_policy() {
    let app = TestApp::new();
    let admin = app.admin();
    let mut ids = Vec::new();
    for name in ["first", "second", "third"] {
        let r = send(&app, Method::POST, CONFIGS, Some(&config(name)), &admin).await;
        assert_eq!(r.status, StatusCode::CREATED, "{:#}", r.body);
        ids.push(r.body["id"].as_str().unwrap().to_owned());
    }
    let export = send(
        &app,
        Method::GET,
        &format!("{CONFIGS}/export"),
        None,
        &admin,
    )
    .await;
    assert_eq!(export.status, StatusCode::OK, "{:#}", export.body);
    assert_eq!(export.body["format"], "analytics.alert-configs.v1");
    let items = export.body["items"].as_array().unwrap();
    assert_eq!(
        items
            .iter()
            .map(|i| i["id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ids
    );
    let shop_only = send(
        &app,
        Method::GET,
        &format!("{CONFIGS}/export?project=other"),
        None,
        &admin,
    )
    .await;
    assert_eq!(shop_only.body["items"], json!([]));

    // Drift: `second` is changed, `third` deleted.
    let mut changed = config("second");
    changed["threshold"] = json!(900.0);
    let put = send(
        &app,
        Method::PUT,
        &format!("{CONFIGS}/{}", ids[1]),
        Some(&changed),
        &admin,
    )
    .await;
    assert_eq!(put.status, StatusCode::OK);
    let del = send(
        &app,
        Method::DELETE,
        &format!("{CONFIGS}/{}", ids[2]),
        None,
        &admin,
    )
    .await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);

    let import = format!("{CONFIGS}/import");
    let refused = send(&app, Method::POST, &import, Some(&export.body), &admin).await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{:#}", refused.body);
    assert_eq!(refused.body["error"]["field"], "items[1]");
    let still = send(
        &app,
        Method::GET,
        &format!("{CONFIGS}/{}", ids[2]),
        None,
        &admin,
    )
    .await;
    assert_eq!(
        still.status,
        StatusCode::NOT_FOUND,
        "a refused import writes nothing"
    );

    let dry = send(
        &app,
        Method::POST,
        &format!("{import}?dry_run=true&on_conflict=replace"),
        Some(&export.body),
        &admin,
    )
    .await;
    assert_eq!(dry.status, StatusCode::OK, "{:#}", dry.body);
    assert_eq!(
        (
            &dry.body["dry_run"],
            &dry.body["created"],
            &dry.body["replaced"],
            &dry.body["unchanged"]
        ),
        (&json!(true), &json!(1), &json!(1), &json!(1))
    );
    let second = send(
        &app,
        Method::GET,
        &format!("{CONFIGS}/{}", ids[1]),
        None,
        &admin,
    )
    .await;
    assert_eq!(second.body["threshold"], 900.0, "a dry run writes nothing");

    let skipped = send(
        &app,
        Method::POST,
        &format!("{import}?on_conflict=skip"),
        Some(&export.body),
        &admin,
    )
    .await;
    assert_eq!(skipped.status, StatusCode::OK, "{:#}", skipped.body);
    let actions: Vec<&str> = skipped.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["unchanged", "skipped", "created"]);
    assert_eq!(
        skipped.body["results"][2]["id"],
        ids[2].as_str(),
        "restored with its id"
    );
    let second = send(
        &app,
        Method::GET,
        &format!("{CONFIGS}/{}", ids[1]),
        None,
        &admin,
    )
    .await;
    assert_eq!(second.body["threshold"], 900.0, "skip keeps the stored one");

    let replaced = send(
        &app,
        Method::POST,
        &format!("{import}?on_conflict=replace"),
        Some(&export.body),
        &admin,
    )
    .await;
    assert_eq!(replaced.status, StatusCode::OK, "{:#}", replaced.body);
    assert_eq!(replaced.body["replaced"], 1);
    assert_eq!(replaced.body["results"][1]["version"], 3);
    let second = send(
        &app,
        Method::GET,
        &format!("{CONFIGS}/{}", ids[1]),
        None,
        &admin,
    )
    .await;
    assert_eq!(
        (&second.body["threshold"], &second.body["version"]),
        (&json!(500.0), &json!(3))
    );
    let audit = send(
        &app,
        Method::GET,
        &format!("{CONFIGS}/{}/audit", ids[1]),
        None,
        &admin,
    )
    .await;
    let trail: Vec<&str> = audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(trail, ["created", "updated", "imported"]);

    // The current state, exported and imported again: nothing to do.
    let now = send(
        &app,
        Method::GET,
        &format!("{CONFIGS}/export"),
        None,
        &admin,
    )
    .await;
    let again = send(&app, Method::POST, &import, Some(&now.body), &admin).await;
    assert_eq!(again.status, StatusCode::OK, "{:#}", again.body);
    assert_eq!(
        (&again.body["unchanged"], &again.body["created"]),
        (&json!(3), &json!(0))
    );
}

/// Every import item is validated like a create, named by its position; repeated names in
/// one import are refused.
#[tokio::test]
async fn bad_import_items_are_400_naming_the_item_field() {
    let app = TestApp::new();
    let admin = app.admin();
    let import = format!("{CONFIGS}/import");
    let mut bad = config("bad");
    bad["threshold"] = json!("high");
    let r = send(
        &app,
        Method::POST,
        &import,
        Some(&json!({"items": [config("ok"), bad]})),
        &admin,
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:#}", r.body);
    let mut bad = config("bad");
    bad["metric"] = json!("no.such_metric");
    let r = send(
        &app,
        Method::POST,
        &import,
        Some(&json!({"items": [config("ok"), bad]})),
        &admin,
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:#}", r.body);
    assert_eq!(r.body["error"]["field"], "items[1].metric");
    let r = send(
        &app,
        Method::POST,
        &import,
        Some(&json!({"items": [config("twice"), config("twice")]})),
        &admin,
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:#}", r.body);
    assert_eq!(r.body["error"]["field"], "items[1].name");
    let listed = send(&app, Method::GET, CONFIGS, None, &admin).await;
    assert_eq!(
        listed.body["items"],
        json!([]),
        "nothing of a refused import is written"
    );
    let viewer = send(
        &app,
        Method::POST,
        &import,
        Some(&json!({"items": []})),
        &format!("Bearer {}", app.token(&[Role::BusinessViewer])),
    )
    .await;
    assert_eq!(viewer.status, StatusCode::FORBIDDEN);
}
