//! Black-box: the real `Application` on port 0, driven by reqwest, over a SQLite temp file
//! and over a fresh PostgreSQL database on the test cluster (`scripts/with-services`).

use analytics_server::Role;
use serde_json::Value;

use crate::helpers::{RunningServer, batch, bearer, fresh_postgres_url, http_client, page_view};

async fn spawn(db_url: &str) -> RunningServer {
    RunningServer::start(db_url, |_| {}).await
}

fn client() -> reqwest::Client {
    http_client()
}

fn admin() -> String {
    bearer("bb", &[Role::Admin])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_server_acknowledges_only_stored_events_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("bb.db").display());
    acknowledges_only_stored_events_and_stops_cleanly(&url, "sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_server_acknowledges_only_stored_events_and_stops_cleanly() {
    let Some(url) = fresh_postgres_url().await else {
        return;
    };
    acknowledges_only_stored_events_and_stops_cleanly(&url, "postgres").await;
}

/// 160 events from 8 concurrent clients are acknowledged, a graceful stop loses none of
/// them (a new server on the same database lists all 160), and unauthenticated ingest is
/// refused.
async fn acknowledges_only_stored_events_and_stops_cleanly(url: &str, backend: &str) {
    let server = spawn(url).await;
    let http = client();

    let ready = http
        .get(format!("{}/readyz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["backend"], backend);
    assert_eq!(ready["status"], "ready");

    // Concurrent clients share batches.
    let mut tasks = Vec::new();
    for c in 0..8u128 {
        let http = http.clone();
        let base = server.base.clone();
        tasks.push(tokio::spawn(async move {
            let events = (0..20).map(|i| page_view(c * 100 + i)).collect();
            let r = http
                .post(format!("{base}/api/v1/analytics/events"))
                .header("authorization", admin())
                .json(&batch(events))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 202);
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["accepted"], 20);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }

    let unauth = http
        .post(format!("{}/api/v1/analytics/events", server.base))
        .json(&batch(vec![page_view(1)]))
        .send()
        .await
        .unwrap();
    assert_eq!(unauth.status(), 401);
    assert_eq!(unauth.headers()["www-authenticate"], "Bearer");

    server.stop().await;

    // Restart on the same database: everything acknowledged is there.
    let again = spawn(url).await;
    let r = http
        .get(format!("{}/api/v1/analytics/events?limit=1000", again.base))
        .header("authorization", admin())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["events"].as_array().unwrap().len(), 160);
    // A single time bound leaves the other open, down to before year 0 and past 9999:
    // both stores compare such instants.
    for (q, n) in [
        ("from=0000-01-01T00:00:00%2B23:59", 160),
        ("to=9999-12-31T23:59:59-23:59", 160),
        ("to=1900-01-01T00:00:00Z", 0),
    ] {
        let r = http
            .get(format!(
                "{}/api/v1/analytics/events?limit=1000&{q}",
                again.base
            ))
            .header("authorization", admin())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{q}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["events"].as_array().unwrap().len(), n, "{q}");
    }
    let metrics = crate::helpers::metrics_text(&http, &again.base).await;
    assert!(metrics.contains("http_requests_total"));
    // The store's connection pools are exported: PostgreSQL's one pool (10 connections),
    // SQLite's writer (1) and readers.
    let pool = match backend {
        "postgres" => "analytics_db_pool_connections{pool=\"main\",state=\"max\"} 10",
        _ => "analytics_db_pool_connections{pool=\"writer\",state=\"max\"} 1",
    };
    assert!(metrics.contains(pool), "{pool} not in\n{metrics}");
    again.handle.shutdown();
    again.task.await.unwrap().expect("clean stop");
}
