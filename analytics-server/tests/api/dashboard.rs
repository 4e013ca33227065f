//! The dashboard summary: role views, section selection, the cache (freshness flags, single
//! flight under a stampede, sharing through Redis between two server processes, Redis going
//! away), and a failing section that leaves the others answering.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use analytics_core::alert::Severity;
use analytics_core::ports::AlertHistoryStore;
use analytics_core::testkit::fixtures;
use analytics_server::Role;
use futures_util::future::join_all;
use poem::http::{Method, StatusCode};
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::{
    BinaryServer, RunningServer, TestApp, bearer, fresh_postgres_url, http_client,
};

const SUMMARY: &str = "/api/v1/analytics/dashboard/summary";

fn computations(metrics: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("analytics_dashboard_cache_computations_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

#[tokio::test]
async fn admins_get_every_section_and_viewers_only_business() {
    let app = TestApp::new();
    let alert = fixtures::new_alert(Uuid::new_v4(), chrono::Utc::now(), Severity::Critical);
    let mut alert = alert;
    alert.project = analytics_core::ProjectId::default_project();
    app.store.open_alert(&alert).await.unwrap();

    let admin = app.admin();
    let r = app.call(Method::GET, SUMMARY, Some(&admin)).await;
    assert_eq!(r.status, StatusCode::OK, "{:#}", r.body);
    let s = &r.body["sections"];
    assert!(s["system_health"]["status"].is_string(), "{:#}", r.body);
    assert_eq!(s["ml_pipelines"]["jobs"], 0, "{:#}", r.body);
    assert_eq!(s["business"]["revenue"], 0.0, "{:#}", r.body);
    assert_eq!(s["business"]["currency"], "USD");
    assert_eq!(r.body["omitted"], serde_json::json!([]));
    assert_eq!(s["active_alerts"]["count"], 1);
    assert_eq!(s["active_alerts"]["by_severity"]["critical"], 1);
    assert_eq!(s["active_alerts"]["items"][0]["id"], alert.id.to_string());
    assert_eq!(r.body["cached"], false);
    assert!(r.body["generated_at"].is_string());
    let again = app.call(Method::GET, SUMMARY, Some(&admin)).await;
    assert_eq!(again.body["cached"], true);
    assert_eq!(again.body["generated_at"], r.body["generated_at"]);

    // The viewer, after the admin's entries are cached: business only, never the rest.
    let viewer = format!("Bearer {}", app.token(&[Role::BusinessViewer]));
    let v = app.call(Method::GET, SUMMARY, Some(&viewer)).await;
    assert_eq!(v.status, StatusCode::OK, "{:#}", v.body);
    let sections = v.body["sections"].as_object().unwrap();
    assert_eq!(
        sections.keys().collect::<Vec<_>>(),
        ["business"],
        "{:#}",
        v.body
    );
    assert_eq!(sections["business"]["orders"], 0);
    assert!(!sections.contains_key("system_health"), "{:#}", v.body);
    assert!(!sections.contains_key("active_alerts"), "{:#}", v.body);
    assert!(!sections.contains_key("ml_pipelines"), "{:#}", v.body);
    let omitted: Vec<&str> = v.body["omitted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_str().unwrap())
        .collect();
    for o in ["health", "ml", "alerts"] {
        assert!(omitted.contains(&o), "{omitted:?}");
    }
    let asked = app
        .call(
            Method::GET,
            &format!("{SUMMARY}?sections=health"),
            Some(&viewer),
        )
        .await;
    assert_eq!(asked.status, StatusCode::OK);
    assert_eq!(asked.body["omitted"], serde_json::json!(["health"]));
    assert!(asked.body["sections"].get("system_health").is_none());

    let ingest = format!("Bearer {}", app.token(&[Role::Ingest]));
    assert_eq!(
        app.call(Method::GET, SUMMARY, Some(&ingest)).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.call(Method::GET, SUMMARY, None).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn sections_filter_and_an_unknown_one_is_400_naming_it() {
    let app = TestApp::new();
    let admin = app.admin();
    let r = app
        .call(
            Method::GET,
            &format!("{SUMMARY}?sections=alerts"),
            Some(&admin),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:#}", r.body);
    let sections = r.body["sections"].as_object().unwrap();
    assert_eq!(sections.keys().collect::<Vec<_>>(), ["active_alerts"]);
    assert_eq!(r.body["omitted"], serde_json::json!([]));
    let bad = app
        .call(
            Method::GET,
            &format!("{SUMMARY}?sections=health,bogus"),
            Some(&admin),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.body["error"]["field"], "sections");
    let bad = app
        .call(Method::GET, &format!("{SUMMARY}?range=2d"), Some(&admin))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

/// 200 concurrent requests on a cold key: one computation, everyone gets its answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stampede_on_an_expired_key_computes_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("dash.db").display());
    let server = RunningServer::start(&url, |_| {}).await;
    let http = http_client();
    let auth = bearer("ops", &[Role::Admin]);
    let metrics = || async { crate::helpers::metrics_text(&http, &server.base).await };
    let before = computations(&metrics().await);
    let requests = (0..200).map(|_| {
        http.get(format!("{}{SUMMARY}?sections=health", server.base))
            .header("authorization", &auth)
            .send()
    });
    let answers = join_all(requests).await;
    let mut generated = std::collections::HashSet::new();
    for a in answers {
        let a = a.unwrap();
        assert_eq!(a.status(), 200);
        let body: Value = a.json().await.unwrap();
        generated.insert(body["generated_at"].as_str().unwrap().to_owned());
    }
    assert_eq!(generated.len(), 1, "one computed answer for all");
    assert_eq!(computations(&metrics().await) - before, 1);
}

/// A section whose data cannot be read carries an `error`; the others answer (200).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_section_does_not_fail_the_others() {
    let Some(url) = fresh_postgres_url().await else {
        return;
    };
    let server = RunningServer::start(&url, |_| {}).await;
    // The alert history becomes unreadable (as a broken table or revoked grant would).
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    sqlx::raw_sql("ALTER TABLE alert_history RENAME TO alert_history_gone")
        .execute(&mut conn)
        .await
        .unwrap();
    let r = http_client()
        .get(format!("{}{SUMMARY}", server.base))
        .header("authorization", bearer("ops", &[Role::Admin]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let s = &body["sections"];
    assert!(
        s["active_alerts"]["error"]["message"].is_string(),
        "{body:#}"
    );
    assert!(s["system_health"]["status"].is_string(), "{body:#}");
}

/// A throwaway Redis on a free port, stopped when dropped.
struct Redis {
    child: Child,
    url: String,
}

impl Redis {
    fn start() -> Option<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        Some(Self {
            child,
            url: format!("redis://127.0.0.1:{port}/"),
        })
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Two server processes sharing one Redis compute a summary once per TTL between them;
/// with Redis stopped they keep answering from their own caches and computations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_entries_through_redis_and_survive_its_loss() {
    if std::env::var("TEST_REDIS_URL").is_err() {
        return; // no Redis on this machine (scripts/with-services installs it)
    }
    let Some(mut redis) = Redis::start() else {
        panic!("redis-server did not start");
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("shared.db").display());
    let env = [("REDIS_URL", redis.url.as_str())];
    let a = BinaryServer::spawn(&db, &env);
    let b = BinaryServer::spawn(&db, &env);
    let http = http_client();
    let auth = bearer("ops", &[Role::Admin]);
    let get = |base: String| {
        let http = http.clone();
        let auth = auth.clone();
        async move {
            let r = http
                .get(format!("{base}{SUMMARY}?sections=health,alerts"))
                .header("authorization", auth)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    let metric = |base: String| {
        let http = http.clone();
        async move {
            computations(
                &http
                    .get(format!("{base}/metrics"))
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap(),
            )
        }
    };
    let first = get(a.base.clone()).await;
    assert_eq!(first["cached"], false);
    let second = get(b.base.clone()).await;
    assert_eq!(second["cached"], true, "{second:#}");
    assert_eq!(second["generated_at"], first["generated_at"]);
    for _ in 0..5 {
        get(a.base.clone()).await;
        get(b.base.clone()).await;
    }
    let total = metric(a.base.clone()).await + metric(b.base.clone()).await;
    assert_eq!(
        total, 2,
        "two sections computed once between both processes"
    );
    let up = crate::helpers::metrics_text(&http, &b.base).await;
    assert!(up.contains("analytics_dashboard_cache_redis_up 1"), "{up}");

    redis.stop();
    for base in [&a.base, &b.base] {
        let other = get(base.to_string()).await;
        assert!(other["sections"]["system_health"]["status"].is_string());
        let fresh = http
            .get(format!("{base}{SUMMARY}?sections=health&range=1h"))
            .header("authorization", &auth)
            .send()
            .await
            .unwrap();
        assert_eq!(fresh.status(), 200, "a new key is computed without Redis");
    }
    let down = crate::helpers::metrics_text(&http, &a.base).await;
    assert!(
        down.contains("analytics_dashboard_cache_redis_up 0"),
        "{down}"
    );
}
