//! Two server processes (the real binary) on one PostgreSQL database evaluate alerts once:
//! one alert and one set of outbox entries, never two; when the process holding the engine's
//! lock is killed, the other takes over and resolves the alert.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use analytics_core::ports::NotificationOutbox;
use analytics_server::Role;
use analytics_store_pg::{PgStore, PgStoreOptions};
use chrono::Utc;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{BinaryServer, bearer, fresh_postgres_url, http_client};

async fn ingest(http: &reqwest::Client, base: &str, auth: &str, statuses: &[u16]) {
    let at = (Utc::now() - chrono::Duration::seconds(2)).to_rfc3339();
    let events: Vec<Value> = statuses
        .iter()
        .map(|s| {
            json!({"id": Uuid::new_v4().to_string(), "kind": "api_request", "occurred_at": at,
                   "payload": {"method": "GET", "route": "/api/v1/orders", "status": s,
                               "latency_ms": 10.0}})
        })
        .collect();
    let r = http
        .post(format!("{base}/api/v1/analytics/events"))
        .header("authorization", auth)
        .json(&json!({ "events": events }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
}

async fn history(http: &reqwest::Client, base: &str, auth: &str) -> Vec<Value> {
    let r: Value = crate::helpers::get_json(
        http,
        &format!("{base}/api/v1/analytics/alerts/history?range=1h"),
        Some(auth),
    )
    .await;
    r["items"].as_array().cloned().unwrap_or_default()
}

/// (channel, recipient) -> how many outbox entries.
async fn deliveries(store: &PgStore, alert: Uuid) -> BTreeMap<(String, String), usize> {
    let mut out = BTreeMap::new();
    for e in store.alert_outbox_entries(alert).await.unwrap() {
        let key = (
            e.notification.channel.as_str().to_owned(),
            e.notification.recipient.label(),
        );
        *out.entry(key).or_default() += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_server_processes_open_one_alert_and_one_set_of_outbox_entries() {
    let Some(url) = fresh_postgres_url().await else {
        return;
    };
    let env = [("ANALYTICS_ALERT_INTERVAL_SECS", "1")];
    let mut a = BinaryServer::spawn(&url, &env);
    let b = BinaryServer::spawn(&url, &env);
    let store = PgStore::connect(&url, PgStoreOptions::default())
        .await
        .unwrap();
    let http = http_client();
    let auth = bearer("ops", &[Role::Admin]);

    let created = http
        .post(format!("{}/api/v1/analytics/alerts/configs", a.base))
        .header("authorization", &auth)
        .json(&json!({
            "name": "api error rate", "metric": "api.errors", "stat": "avg",
            "condition": "threshold_above", "threshold": 0.1, "window_secs": 60,
            "severity": "warning", "cooldown_secs": 0,
            "recipients": [{"email": "ops@example.com"}, {"user": "ops"}],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    // Half the requests fail, sent to both processes.
    ingest(&http, &a.base, &auth, &[500, 200, 500, 200]).await;
    ingest(&http, &b.base, &auth, &[500, 200, 500, 200]).await;

    let started = Instant::now();
    let alert = loop {
        let items = history(&http, &b.base, &auth).await;
        if let Some(first) = items.first() {
            break first.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no alert opened"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Both keep ticking every second for a while: still one alert, one set of entries.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let items = history(&http, &a.base, &auth).await;
    assert_eq!(items.len(), 1, "{items:#?}");
    let alert_id: Uuid = alert["id"].as_str().unwrap().parse().unwrap();
    let opened = deliveries(&store, alert_id).await;
    assert_eq!(
        opened.keys().map(|(c, _)| c.as_str()).collect::<Vec<_>>(),
        ["email", "in_app", "slack"],
        "{opened:?}"
    );
    assert!(opened.values().all(|n| *n == 1), "{opened:?}");

    // Kill whichever holds the lock (both, one after the other, would end the test): kill
    // `a`; if it held the lock, `b` takes over once PostgreSQL drops `a`'s session.
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    ingest(&http, &b.base, &auth, &[200; 200]).await;
    let started = Instant::now();
    loop {
        let items = history(&http, &b.base, &auth).await;
        assert_eq!(items.len(), 1, "{items:#?}");
        if items[0]["status"] == "resolved" {
            assert_eq!(items[0]["resolved_by"], "auto");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the surviving process did not resolve the alert: {:#}",
            items[0]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = deliveries(&store, alert_id).await;
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        opened.keys().collect::<Vec<_>>()
    );
    assert!(
        after.values().all(|n| *n == 2),
        "one fired and one resolved notice per channel and recipient: {after:?}"
    );
    drop(b);
}
