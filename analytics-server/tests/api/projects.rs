//! Projects and ingest controls: the admin routes, project isolation over every route,
//! sampling, rate limits (one process, and two processes sharing Redis), ingest counters.

use std::collections::BTreeSet;

use analytics_core::ProjectId;
use analytics_core::alert::Severity;
use analytics_core::ports::{AlertConfigStore, AlertHistoryStore, ProjectStore};
use analytics_core::testkit::fixtures;
use analytics_server::Role;
use chrono::Utc;
use poem::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Resp, TestApp, batch, page_view};

const PROJECTS: &str = "/api/v1/analytics/projects";

impl TestApp {
    /// Sends `method` to `path` with a JSON body (or none) as `auth`.
    async fn send(&self, method: Method, path: &str, body: Option<&Value>, auth: &str) -> Resp {
        let mut r = self
            .client
            .request(method, path)
            .header("authorization", auth);
        if let Some(b) = body {
            r = r.body_json(b);
        }
        Resp::from(r.send().await).await
    }

    /// An admin token limited to `projects`.
    fn scoped_admin(&self, projects: &[&str]) -> String {
        let list: Vec<ProjectId> = projects
            .iter()
            .map(|p| ProjectId::parse(*p).unwrap())
            .collect();
        let t = self
            .jwt
            .issue_scoped(
                "scoped",
                &[Role::Admin],
                Some(&list),
                Utc::now().timestamp(),
                3600,
            )
            .unwrap();
        format!("Bearer {t}")
    }

    async fn create_project(&self, id: &str, settings: Value) -> Resp {
        self.send(
            Method::POST,
            PROJECTS,
            Some(&json!({"id": id, "name": id.to_uppercase(), "settings": settings})),
            &self.admin(),
        )
        .await
    }
}

#[tokio::test]
async fn projects_sources_and_keys_round_trip_over_http() {
    let app = TestApp::new();
    let admin = app.admin();
    let r = app
        .create_project(
            "shop",
            json!({"currency": "EUR", "sampling": {"strategy": "random", "rate": 0.5}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:#}", r.body);
    let s = &r.body["settings"];
    assert_eq!(s["currency"], "EUR");
    assert_eq!(s["retention_days"], 7);
    assert_eq!(s["session_timeout_minutes"], 60);
    assert_eq!(s["allowed_origins"], json!([]));
    assert_eq!(
        s["rate_limit"],
        json!({"per_key_per_second": null, "per_ip_per_minute": null})
    );
    assert_eq!(s["sampling"]["strategy"], "random");
    assert_eq!(s["sampling"]["rate"], 0.5);
    app.create_project("shop", json!({}))
        .await
        .assert_error(StatusCode::CONFLICT, None);
    app.create_project("blog", json!({"sampling": {"rate": 1.5}}))
        .await
        .assert_error(StatusCode::BAD_REQUEST, Some("body"));
    // What the schema cannot state, the settings check names.
    app.create_project("blog", json!({"sampling": {"kinds": {"Not A Kind": 0.5}}}))
        .await
        .assert_error(
            StatusCode::BAD_REQUEST,
            Some("settings.sampling.kinds.Not A Kind"),
        );

    // PATCH merges the fields it names; every answer carries the whole settings object.
    let r = app
        .send(
            Method::PATCH,
            &format!("{PROJECTS}/shop"),
            Some(
                &json!({"settings": {"rate_limit": {"per_ip_per_minute": 100},
                                      "session_timeout_minutes": 30}}),
            ),
            &admin,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:#}", r.body);
    let s = &r.body["settings"];
    assert_eq!(s["currency"], "EUR", "untouched fields stay");
    assert_eq!(s["sampling"]["rate"], 0.5);
    assert_eq!(s["session_timeout_minutes"], 30);
    assert_eq!(
        s["rate_limit"],
        json!({"per_key_per_second": null, "per_ip_per_minute": 100})
    );
    let got = app
        .send(Method::GET, &format!("{PROJECTS}/shop"), None, &admin)
        .await;
    assert_eq!(got.body, r.body);
    let list = app.send(Method::GET, PROJECTS, None, &admin).await;
    let ids: Vec<&str> = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["shop"]);

    // Sources.
    let sources = format!("{PROJECTS}/shop/sources");
    let r = app
        .send(
            Method::POST,
            &sources,
            Some(&json!({"name": "web", "sampling": {"rate": 0.25}})),
            &admin,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:#}", r.body);
    assert_eq!(
        r.body,
        json!({"name": "web", "description": null, "sampling": {"rate": 0.25, "kinds": {}}})
    );
    app.send(
        Method::POST,
        &sources,
        Some(&json!({"name": "web"})),
        &admin,
    )
    .await
    .assert_error(StatusCode::CONFLICT, None);
    let r = app
        .send(
            Method::PATCH,
            &format!("{sources}/web"),
            Some(&json!({"description": "storefront", "sampling": {"kinds": {"page_view": 0.5}}})),
            &admin,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:#}", r.body);
    assert_eq!(r.body["description"], "storefront");
    assert_eq!(
        r.body["sampling"],
        json!({"rate": null, "kinds": {"page_view": 0.5}})
    );
    let listed = app.send(Method::GET, &sources, None, &admin).await;
    assert_eq!(listed.body["items"], json!([r.body]));
    let gone = app
        .send(Method::DELETE, &format!("{sources}/web"), None, &admin)
        .await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
    app.send(Method::DELETE, &format!("{sources}/web"), None, &admin)
        .await
        .assert_error(StatusCode::NOT_FOUND, None);

    // Keys: the secret once, listed by prefix with last use; revocation is immediate here.
    let keys = format!("{PROJECTS}/shop/api-keys");
    let created = app
        .send(Method::POST, &keys, Some(&json!({"name": "web"})), &admin)
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:#}", created.body);
    let secret = created.body["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with(created.body["prefix"].as_str().unwrap()));
    let listed = app.send(Method::GET, &keys, None, &admin).await;
    let item = &listed.body["items"][0];
    assert!(item.get("secret").is_none(), "{item}");
    assert_eq!(item["last_used_at"], Value::Null);
    let key_auth = format!("Bearer {secret}");
    let r = app
        .post_events(&batch(vec![page_view(1)]), Some(&key_auth))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:#}", r.body);
    let listed = app.send(Method::GET, &keys, None, &admin).await;
    assert!(
        listed.body["items"][0]["last_used_at"].is_string(),
        "{:#}",
        listed.body
    );
    let id = created.body["id"].as_str().unwrap();
    let revoked = app
        .send(Method::DELETE, &format!("{keys}/{id}"), None, &admin)
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    app.post_events(&batch(vec![page_view(2)]), Some(&key_auth))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, None);

    // Deleting removes the project and its data.
    let r = app
        .send(Method::DELETE, &format!("{PROJECTS}/shop"), None, &admin)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    app.send(Method::GET, &format!("{PROJECTS}/shop"), None, &admin)
        .await
        .assert_error(StatusCode::NOT_FOUND, None);
    let events = app.get_events("?project=shop", Some(&admin)).await;
    assert_eq!(events.body["events"], json!([]), "{:#}", events.body);
}

/// How a route is reached with another project's data, or why it has none.
enum Case {
    /// The path (and query) to call, and a body.
    Call(&'static str, Option<Value>),
    /// The route holds no project's data.
    NoProjectData(&'static str),
}

#[tokio::test]
async fn every_route_with_project_data_is_404_for_a_token_of_another_project() {
    let app = TestApp::new();
    app.create_project("mine", json!({})).await;
    app.create_project("theirs", json!({})).await;
    let spec = fixtures::alert_spec("theirs", "theirs-errors", Severity::Warning);
    let config = app
        .store
        .create_config(uuid::Uuid::from_u128(7), &spec, "ops", Utc::now())
        .await
        .unwrap();
    let mut alert = fixtures::new_alert(config.id, Utc::now(), Severity::Warning);
    alert.project = ProjectId::parse("theirs").unwrap();
    app.store.open_alert(&alert).await.unwrap();
    let (_, key) = app.api_key("theirs").await;
    let theirs_config = json!({
        "name": "x", "metric": "api.latency_ms", "stat": "p95", "condition": "threshold_above",
        "threshold": 500.0, "window_secs": 300, "severity": "warning", "cooldown_secs": 900,
        "recipients": [{"email": "ops@example.com"}], "enabled": true, "project": "theirs"
    });
    let config_path: &'static str =
        Box::leak(format!("/api/v1/analytics/alerts/configs/{}", config.id).into_boxed_str());
    let audit_path: &'static str = Box::leak(format!("{config_path}/audit").into_boxed_str());
    let ack_path: &'static str =
        Box::leak(format!("/api/v1/analytics/alerts/{}/acknowledge", alert.id).into_boxed_str());
    let resolve_path: &'static str =
        Box::leak(format!("/api/v1/analytics/alerts/{}/resolve", alert.id).into_boxed_str());
    let key_path: &'static str =
        Box::leak(format!("{PROJECTS}/theirs/api-keys/{}", key.id).into_boxed_str());
    use Case::*;
    let table: Vec<((&str, &str), Case)> = vec![
        (
            ("get", "/api/v1/analytics/projects"),
            NoProjectData("lists only visible projects (checked below)"),
        ),
        (
            ("post", "/api/v1/analytics/projects"),
            Call(PROJECTS, Some(json!({"id": "theirs", "name": "x"}))),
        ),
        (
            ("get", "/api/v1/analytics/projects/{id}"),
            Call("/api/v1/analytics/projects/theirs", None),
        ),
        (
            ("patch", "/api/v1/analytics/projects/{id}"),
            Call(
                "/api/v1/analytics/projects/theirs",
                Some(json!({"settings": {}})),
            ),
        ),
        (
            ("delete", "/api/v1/analytics/projects/{id}"),
            Call("/api/v1/analytics/projects/theirs", None),
        ),
        (
            ("get", "/api/v1/analytics/projects/{id}/sources"),
            Call("/api/v1/analytics/projects/theirs/sources", None),
        ),
        (
            ("post", "/api/v1/analytics/projects/{id}/sources"),
            Call(
                "/api/v1/analytics/projects/theirs/sources",
                Some(json!({"name": "web"})),
            ),
        ),
        (
            ("patch", "/api/v1/analytics/projects/{id}/sources/{name}"),
            Call(
                "/api/v1/analytics/projects/theirs/sources/web",
                Some(json!({})),
            ),
        ),
        (
            ("delete", "/api/v1/analytics/projects/{id}/sources/{name}"),
            Call("/api/v1/analytics/projects/theirs/sources/web", None),
        ),
        (
            ("get", "/api/v1/analytics/projects/{id}/api-keys"),
            Call("/api/v1/analytics/projects/theirs/api-keys", None),
        ),
        (
            ("post", "/api/v1/analytics/projects/{id}/api-keys"),
            Call(
                "/api/v1/analytics/projects/theirs/api-keys",
                Some(json!({"name": "k"})),
            ),
        ),
        (
            (
                "delete",
                "/api/v1/analytics/projects/{id}/api-keys/{key_id}",
            ),
            Call(key_path, None),
        ),
        (
            ("get", "/api/v1/analytics/projects/{id}/ingest-stats"),
            Call("/api/v1/analytics/projects/theirs/ingest-stats", None),
        ),
        (
            ("get", "/api/v1/analytics/events"),
            Call("/api/v1/analytics/events?project=theirs", None),
        ),
        (
            ("post", "/api/v1/analytics/events"),
            NoProjectData("an event naming another project is rejected per event (ingest tests)"),
        ),
        (
            ("get", "/api/v1/analytics/alerts/metrics"),
            NoProjectData("the metric catalog"),
        ),
        (
            ("get", "/api/v1/analytics/alerts/configs"),
            Call("/api/v1/analytics/alerts/configs?project=theirs", None),
        ),
        (
            ("post", "/api/v1/analytics/alerts/configs"),
            Call(
                "/api/v1/analytics/alerts/configs",
                Some(theirs_config.clone()),
            ),
        ),
        (
            ("get", "/api/v1/analytics/alerts/configs/export"),
            Call(
                "/api/v1/analytics/alerts/configs/export?project=theirs",
                None,
            ),
        ),
        (
            ("post", "/api/v1/analytics/alerts/configs/import"),
            Call(
                "/api/v1/analytics/alerts/configs/import",
                Some(json!({"items": [theirs_config]})),
            ),
        ),
        (
            ("get", "/api/v1/analytics/alerts/configs/{id}"),
            Call(config_path, None),
        ),
        (
            ("put", "/api/v1/analytics/alerts/configs/{id}"),
            Call(config_path, Some(theirs_config.clone())),
        ),
        (
            ("delete", "/api/v1/analytics/alerts/configs/{id}"),
            Call(config_path, None),
        ),
        (
            ("get", "/api/v1/analytics/alerts/configs/{id}/audit"),
            Call(audit_path, None),
        ),
        (
            ("get", "/api/v1/analytics/alerts/history"),
            Call("/api/v1/analytics/alerts/history?project=theirs", None),
        ),
        (
            ("get", "/api/v1/analytics/alerts/active"),
            Call("/api/v1/analytics/alerts/active?project=theirs", None),
        ),
        (
            ("post", "/api/v1/analytics/alerts/{id}/acknowledge"),
            Call(ack_path, None),
        ),
        (
            ("post", "/api/v1/analytics/alerts/{id}/resolve"),
            Call(resolve_path, None),
        ),
        (
            ("post", "/api/v1/analytics/alerts/acknowledge"),
            NoProjectData("answers per id: another project's alert is not_found (checked below)"),
        ),
        (
            ("get", "/api/v1/analytics/dashboard/summary"),
            Call("/api/v1/analytics/dashboard/summary?project=theirs", None),
        ),
        (
            ("get", "/api/v1/analytics/ml/overview"),
            Call("/api/v1/analytics/ml/overview?project=theirs", None),
        ),
        (
            ("get", "/api/v1/analytics/ml/3d"),
            Call("/api/v1/analytics/ml/3d?project=theirs", None),
        ),
        (
            ("get", "/api/v1/analytics/ml/descriptions"),
            Call("/api/v1/analytics/ml/descriptions?project=theirs", None),
        ),
        (
            ("get", "/api/v1/analytics/ml/assets"),
            Call("/api/v1/analytics/ml/assets?project=theirs", None),
        ),
        (
            ("get", "/api/v1/analytics/ml/providers"),
            Call("/api/v1/analytics/ml/providers?project=theirs", None),
        ),
        (
            ("get", "/api/v1/analytics/business/overview"),
            Call("/api/v1/analytics/business/overview?project=theirs", None),
        ),
        (
            ("get", "/api/v1/analytics/business/sales"),
            Call("/api/v1/analytics/business/sales?project=theirs", None),
        ),
        (
            ("get", "/api/v1/analytics/business/products"),
            Call("/api/v1/analytics/business/products?project=theirs", None),
        ),
        (
            ("get", "/api/v1/analytics/business/collections"),
            Call(
                "/api/v1/analytics/business/collections?project=theirs",
                None,
            ),
        ),
        (
            ("get", "/api/v1/analytics/business/funnel"),
            Call("/api/v1/analytics/business/funnel?project=theirs", None),
        ),
        (
            ("get", "/api/v1/analytics/health/overview"),
            NoProjectData("the server's own telemetry, not a project's"),
        ),
        (
            ("get", "/api/v1/analytics/health/api"),
            NoProjectData("the server's own telemetry, not a project's"),
        ),
        (
            ("get", "/api/v1/analytics/health/database"),
            NoProjectData("the server's own telemetry, not a project's"),
        ),
        (
            ("get", "/api/v1/analytics/health/timeseries"),
            NoProjectData("the server's own telemetry, not a project's"),
        ),
        (
            ("get", "/api/v1/analytics/notifications"),
            NoProjectData("the caller's own notifications"),
        ),
        (
            ("post", "/api/v1/analytics/notifications/{id}/read"),
            NoProjectData("the caller's own notifications"),
        ),
        (
            ("post", "/api/v1/analytics/notifications/read-all"),
            NoProjectData("the caller's own notifications"),
        ),
        (
            ("get", "/api/v1/analytics/notifications/preferences"),
            NoProjectData("the caller's own preferences"),
        ),
        (
            ("put", "/api/v1/analytics/notifications/preferences"),
            NoProjectData("the caller's own preferences"),
        ),
        (
            (
                "get",
                "/api/v1/analytics/notifications/preferences/users/{user}",
            ),
            NoProjectData("per user"),
        ),
        (
            (
                "put",
                "/api/v1/analytics/notifications/preferences/users/{user}",
            ),
            NoProjectData("per user"),
        ),
        (
            (
                "get",
                "/api/v1/analytics/notifications/preferences/teams/{team}",
            ),
            NoProjectData("per team"),
        ),
        (
            (
                "put",
                "/api/v1/analytics/notifications/preferences/teams/{team}",
            ),
            NoProjectData("per team"),
        ),
        (("get", "/livez"), NoProjectData("operations")),
        (("get", "/readyz"), NoProjectData("operations")),
        (("get", "/metrics"), NoProjectData("operations")),
    ];

    // Every operation of the spec is in the table: a new route must say how it is isolated.
    let spec: Value =
        serde_json::from_str(&analytics_server::api::openapi_spec(app.state.clone())).unwrap();
    let mut documented = BTreeSet::new();
    for (path, ops) in spec["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            documented.insert((method.clone(), path.clone()));
        }
    }
    let listed: BTreeSet<(String, String)> = table
        .iter()
        .map(|((m, p), _)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(
        documented, listed,
        "the isolation table must list every operation"
    );

    let scoped = app.scoped_admin(&["mine"]);
    for ((method, template), case) in &table {
        let (path, body) = match case {
            Case::Call(path, body) => (path, body),
            Case::NoProjectData(why) => {
                assert!(
                    !why.is_empty(),
                    "{method} {template} must say why it is exempt"
                );
                continue;
            }
        };
        let m: Method = method.to_uppercase().parse().unwrap();
        let r = app.send(m, path, body.as_ref(), &scoped).await;
        assert_eq!(
            r.status,
            StatusCode::NOT_FOUND,
            "{method} {template}: {:#}",
            r.body
        );
        assert_eq!(r.body["error"]["code"], "not_found", "{method} {template}");
    }
    // Nothing of theirs changed.
    assert!(
        app.store
            .get_project(&ProjectId::parse("theirs").unwrap())
            .await
            .is_ok()
    );
    assert!(app.store.get_config(config.id).await.is_ok());
    // Lists show only what the token covers.
    let list = app.send(Method::GET, PROJECTS, None, &scoped).await;
    assert_eq!(
        list.body["items"].as_array().unwrap().len(),
        1,
        "{:#}",
        list.body
    );
    assert_eq!(list.body["items"][0]["id"], "mine");
    let configs = app
        .send(
            Method::GET,
            "/api/v1/analytics/alerts/configs",
            None,
            &scoped,
        )
        .await;
    assert_eq!(configs.body["items"], json!([]), "{:#}", configs.body);
    let bulk = app
        .send(
            Method::POST,
            "/api/v1/analytics/alerts/acknowledge",
            Some(&json!({"ids": [alert.id]})),
            &scoped,
        )
        .await;
    assert_eq!(
        bulk.body["results"][0]["status"], "not_found",
        "{:#}",
        bulk.body
    );
    // The unlimited admin still sees theirs.
    let r = app.send(Method::GET, config_path, None, &app.admin()).await;
    assert_eq!(r.status, StatusCode::OK);
}

/// `n` page views with session ids `s0..` (10 events each), plus `errors` error events.
fn views(n: u128, errors: u128) -> Value {
    let mut events: Vec<Value> = (0..n)
        .map(|i| {
            let mut e = page_view(i);
            e["session_id"] = json!(format!("s{}", i / 10));
            e
        })
        .collect();
    events.extend((0..errors).map(|i| {
        json!({"id": uuid::Uuid::from_u128(10_000 + i).to_string(), "kind": "error",
               "payload": {"message": "boom", "error_type": "E"}})
    }));
    batch(events)
}

#[tokio::test]
async fn sampling_at_ingest_drops_whole_sessions_keeps_errors_and_counts() {
    let app = TestApp::new();
    let r = app
        .create_project(
            "default",
            json!({"sampling": {"strategy": "deterministic", "rate": 0.2}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:#}", r.body);
    let r = app.post_events(&views(900, 50), Some(&app.admin())).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:#}", r.body);
    let sampled = r.body["sampled_out"].as_u64().unwrap();
    let accepted = r.body["accepted"].as_u64().unwrap();
    assert_eq!(accepted + sampled, 950, "{:#}", r.body);
    let results = r.body["results"].as_array().unwrap();
    // Errors are never sampled without a kinds entry.
    assert!(results[900..].iter().all(|x| x["status"] == "accepted"));
    // Whole sessions: the 10 events of a session share one outcome.
    for s in results[..900].chunks(10) {
        let first = &s[0]["status"];
        assert!(s.iter().all(|x| &x["status"] == first), "{s:?}");
        assert!(*first == "accepted" || *first == "sampled_out");
    }
    // About 20 % of 90 sessions (3 standard deviations: ±11.4 sessions).
    let kept_sessions = (accepted - 50) / 10;
    assert!((7..=29).contains(&kept_sessions), "{kept_sessions}");
    // Kept events carry the rate, errors rate 1.
    let listed = app
        .get_events("?kind=page_view&limit=1000", Some(&app.admin()))
        .await;
    let stored = listed.body["events"].as_array().unwrap();
    assert_eq!(stored.len() as u64, accepted - 50);
    assert!(
        stored.iter().all(|e| e["sample_rate"] == 0.2),
        "{:#}",
        stored[0]
    );
    let stats = app
        .send(
            Method::GET,
            &format!("{PROJECTS}/default/ingest-stats"),
            None,
            &app.admin(),
        )
        .await;
    assert_eq!(stats.status, StatusCode::OK, "{:#}", stats.body);
    assert_eq!(stats.body["accepted"], accepted);
    assert_eq!(stats.body["sampled_out"], sampled);
    assert_eq!(stats.body["duplicates"], 0);
    // Sending the same batch again: the kept ones are duplicates, the same ones dropped.
    let again = app.post_events(&views(900, 50), Some(&app.admin())).await;
    assert_eq!(again.body["duplicates"], accepted);
    assert_eq!(again.body["sampled_out"], sampled);
    let metrics = app.get("/metrics").await;
    let text = metrics.body.as_str().unwrap().to_owned();
    assert!(
        text.contains(&format!(
            "analytics_project_ingest_events_total{{outcome=\"sampled_out\",project=\"default\"}} {}",
            2 * sampled
        )),
        "{text}"
    );
}

#[tokio::test]
async fn a_rate_limited_request_answers_429_with_headers_and_stores_nothing() {
    let app = TestApp::new();
    app.create_project(
        "shop",
        json!({"rate_limit": {"per_key_per_second": 1000, "per_ip_per_minute": 3}}),
    )
    .await;
    let (key, _) = app.api_key("shop").await;
    let auth = format!("Bearer {key}");
    for i in 0..3 {
        let r = app
            .post_events(&batch(vec![page_view(i)]), Some(&auth))
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{:#}", r.body);
    }
    let r = app
        .post_events(&batch(vec![page_view(3), page_view(4)]), Some(&auth))
        .await;
    r.assert_error(StatusCode::TOO_MANY_REQUESTS, None);
    let h = |n: &str| {
        r.headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let retry: u64 = h("retry-after")
        .unwrap_or_else(|| panic!("{:?} {:#}", r.headers, r.body))
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(h("ratelimit-limit").as_deref(), Some("3"));
    assert_eq!(h("ratelimit-remaining").as_deref(), Some("0"));
    assert_eq!(h("ratelimit-reset"), h("retry-after"));
    let listed = app.get_events("?project=shop", Some(&app.admin())).await;
    assert_eq!(
        listed.body["events"].as_array().unwrap().len(),
        3,
        "nothing of the 429 is stored"
    );
    let stats = app
        .send(
            Method::GET,
            &format!("{PROJECTS}/shop/ingest-stats"),
            None,
            &app.admin(),
        )
        .await;
    assert_eq!(stats.body["rate_limited"], 2);
    assert_eq!(stats.body["accepted"], 3);
}

#[tokio::test]
async fn a_rejected_event_is_counted_by_reason() {
    let app = TestApp::new();
    app.create_project("default", json!({})).await;
    let r = app
        .post_events(
            &batch(vec![
                page_view(1),
                json!({"kind": "page_view", "occurred_at": "yesterday", "payload": {"path": "/"}}),
                json!(3),
            ]),
            Some(&app.admin()),
        )
        .await;
    assert_eq!(r.body["rejected"], 2, "{:#}", r.body);
    let stats = app
        .send(
            Method::GET,
            &format!("{PROJECTS}/default/ingest-stats"),
            None,
            &app.admin(),
        )
        .await;
    assert_eq!(stats.body["rejected"]["total"], 2, "{:#}", stats.body);
    assert_eq!(
        stats.body["rejected"]["by_reason"]["not_an_object"], 1,
        "{:#}",
        stats.body
    );
}

/// Two server processes sharing Redis enforce one budget: a project allowing 6 requests per
/// client IP per minute gets 6 through across both, and the refused ones store nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_sharing_redis_enforce_one_rate_limit_budget() {
    let Some(redis) = analytics_core::testkit::services::redis_url() else {
        return;
    };
    let Some(url) = crate::helpers::fresh_postgres_url().await else {
        return;
    };
    // A database of its own in Redis is not needed: the test's project is fresh.
    let env = [("REDIS_URL", redis.as_str())];
    let a = crate::helpers::BinaryServer::spawn(&url, &env);
    let b = crate::helpers::BinaryServer::spawn(&url, &env);
    let http = crate::helpers::http_client();
    let admin = crate::helpers::bearer("ops", &[Role::Admin]);
    let project = format!("p{}", uuid::Uuid::new_v4().simple());
    let r = http
        .post(format!("{}{PROJECTS}", a.base))
        .header("authorization", &admin)
        .json(&json!({"id": project, "name": "limited",
                      "settings": {"rate_limit": {"per_ip_per_minute": 6}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let key: Value = http
        .post(format!("{}{PROJECTS}/{project}/api-keys", b.base))
        .header("authorization", &admin)
        .json(&json!({"name": "k"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = format!("Bearer {}", key["secret"].as_str().unwrap());
    let (mut allowed, mut limited) = (0, 0);
    for i in 0..12u128 {
        let base = if i % 2 == 0 { &a.base } else { &b.base };
        let r = http
            .post(format!("{base}/api/v1/analytics/events"))
            .header("authorization", &key)
            .json(&batch(vec![page_view(i)]))
            .send()
            .await
            .unwrap();
        match r.status().as_u16() {
            202 => allowed += 1,
            429 => {
                assert!(r.headers().contains_key("retry-after"));
                assert_eq!(r.headers()["ratelimit-limit"], "6");
                limited += 1;
            }
            s => panic!("{s}: {}", r.text().await.unwrap()),
        }
    }
    assert_eq!(
        (allowed, limited),
        (6, 6),
        "one budget across both processes"
    );
    let listed: Value = crate::helpers::get_json(
        &http,
        &format!("{}/api/v1/analytics/events?project={project}", a.base),
        Some(&admin),
    )
    .await;
    assert_eq!(
        listed["events"].as_array().unwrap().len(),
        6,
        "nothing of a 429 is stored"
    );
    let metrics = crate::helpers::metrics_text(&http, &a.base).await;
    assert!(
        metrics.contains("analytics_rate_limit_redis_up 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn browser_ingest_is_allowed_from_the_projects_origins_only() {
    let app = TestApp::new();
    app.create_project(
        "shop",
        json!({"allowed_origins": ["https://shop.example.com"]}),
    )
    .await;
    let (key, _) = app.api_key("shop").await;
    let preflight = |origin: &'static str| {
        app.client
            .request(Method::OPTIONS, "/api/v1/analytics/events")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "x-api-key, content-type")
            .send()
    };
    let ok = Resp::from(preflight("https://shop.example.com").await).await;
    assert_eq!(ok.status, StatusCode::NO_CONTENT);
    assert_eq!(
        ok.headers["access-control-allow-origin"],
        "https://shop.example.com"
    );
    assert!(
        ok.headers["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("x-api-key")
    );
    let other = Resp::from(preflight("https://evil.example.com").await).await;
    assert!(other.headers.get("access-control-allow-origin").is_none());

    let post = |origin: &'static str| {
        app.client
            .post("/api/v1/analytics/events")
            .header("origin", origin)
            .header("x-api-key", key.clone())
            .body_json(&batch(vec![page_view(1)]))
            .send()
    };
    let r = Resp::from(post("https://shop.example.com").await).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(
        r.headers["access-control-allow-origin"],
        "https://shop.example.com"
    );
    let r = Resp::from(post("https://evil.example.com").await).await;
    assert!(r.headers.get("access-control-allow-origin").is_none());
}
