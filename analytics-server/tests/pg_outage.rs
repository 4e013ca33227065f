//! The in-process server over PostgreSQL while the cluster is stopped and started again:
//! ingest answers 503 with `Retry-After` (never 2xx) and `/readyz` 503 while it is down;
//! after the restart the same server, not restarted, commits the failed batch (nothing of it
//! was committed before) and reports it as duplicates when re-sent; a batch refused while
//! down and never re-sent is not stored.
//!
//! This stops the shared test cluster, so it is a test binary of its own with a single
//! test: cargo runs test binaries one after another, never two at once.

#[allow(dead_code)]
#[path = "api/helpers.rs"]
mod helpers;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use analytics_core::testkit::services::StoppedPostgres;
use analytics_server::{Application, JwtSettings, Role, Secret, Settings};
use serde_json::{Value, json};

use crate::helpers::{SECRET, fresh_postgres_url};

fn admin() -> String {
    crate::helpers::bearer("pg-outage", &[Role::Admin])
}

/// `n` page views with ids `first+1 ..= first+n`.
fn batch(first: u128, n: u128) -> (Vec<String>, Value) {
    let ids: Vec<String> = (first..first + n)
        .map(|i| uuid::Uuid::from_u128(i + 1).to_string())
        .collect();
    let events: Vec<Value> = ids
        .iter()
        .map(|id| json!({"id": id, "kind": "page_view", "payload": {"path": "/outage"}}))
        .collect();
    (ids, json!({ "events": events }))
}

/// POSTs `body`; returns the status, the `Retry-After` header and the JSON body.
async fn post(http: &reqwest::Client, base: &str, body: &Value) -> (u16, Option<String>, Value) {
    let r = http
        .post(format!("{base}/api/v1/analytics/events"))
        .header("authorization", admin())
        .json(body)
        .send()
        .await
        .expect("an answer within the client timeout");
    let status = r.status().as_u16();
    let retry_after = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap_or("<not text>").to_owned());
    let body = r.json().await.expect("a JSON body");
    (status, retry_after, body)
}

/// Asserts a 202 whose every result has `status` (`accepted` or `duplicate`).
fn assert_all(answer: &(u16, Option<String>, Value), n: usize, status: &str) {
    let (code, _, body) = answer;
    assert_eq!(*code, 202, "{body:#}");
    let results = body["results"].as_array().expect("results");
    assert_eq!(results.len(), n, "{body:#}");
    assert!(
        results.iter().all(|r| r["status"] == status),
        "every event must be {status}: {body:#}"
    );
    let (accepted, duplicates) = if status == "accepted" { (n, 0) } else { (0, n) };
    assert_eq!(body["accepted"], accepted, "{body:#}");
    assert_eq!(body["duplicates"], duplicates, "{body:#}");
    assert_eq!(body["rejected"], 0, "{body:#}");
}

async fn readyz(http: &reqwest::Client, base: &str) -> (u16, Value) {
    let r = http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .expect("readyz answers");
    let status = r.status().as_u16();
    (status, r.json().await.expect("readyz JSON"))
}

/// Every stored event id and how many times it is listed.
async fn listed_ids(http: &reqwest::Client, base: &str) -> HashMap<String, usize> {
    let mut ids = HashMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{base}/api/v1/analytics/events?limit=1000");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let r = http
            .get(url)
            .header("authorization", admin())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        for e in body["events"].as_array().unwrap() {
            *ids.entry(e["id"].as_str().unwrap().to_owned()).or_default() += 1;
        }
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return ids,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_answers_503_while_postgres_is_down_and_recovers_without_a_restart() {
    let Some(url) = fresh_postgres_url().await else {
        return;
    };

    let mut settings = Settings::new("127.0.0.1:0", url, JwtSettings::new(Secret::new(SECRET)));
    settings.drain_delay = Duration::from_millis(0);
    let app = Application::build(settings).await.expect("server builds");
    let base = format!("http://127.0.0.1:{}", app.port());
    let handle = app.shutdown_handle();
    let task = tokio::spawn(app.run_until_stopped());
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();

    let (ids1, b1) = batch(0, 25);
    let (ids2, b2) = batch(1000, 25);
    assert_all(&post(&http, &base, &b1).await, 25, "accepted");
    assert_eq!(readyz(&http, &base).await.0, 200);

    let Some(mut cluster) = StoppedPostgres::stop() else {
        return;
    };
    let started = Instant::now();
    let (status, retry_after, body) = post(&http, &base, &b2).await;
    let took = started.elapsed();
    eprintln!(
        "ingest answered {status} (Retry-After {retry_after:?}) {took:?} after the cluster stopped"
    );
    assert_eq!(status, 503, "ingest while PostgreSQL is down: {body:#}");
    assert_eq!(body["error"]["code"], "unavailable", "{body:#}");
    let retry_after = retry_after.expect("a 503 carries Retry-After");
    assert!(
        retry_after.parse::<u64>().is_ok_and(|s| s > 0),
        "Retry-After must be a positive number of seconds, got {retry_after:?}"
    );
    assert!(
        took < Duration::from_secs(20),
        "the 503 must come within seconds, took {took:?}"
    );
    // A second batch while it is still down: also refused, nothing acknowledged.
    let (_, b3) = batch(2000, 25);
    let started = Instant::now();
    let (status, retry_after, body) = post(&http, &base, &b3).await;
    let took = started.elapsed();
    eprintln!("a second ingest while down answered {status} in {took:?}");
    assert_eq!(
        status, 503,
        "second ingest while PostgreSQL is down: {body:#}"
    );
    assert!(retry_after.is_some(), "a 503 carries Retry-After");
    assert!(
        took < Duration::from_secs(20),
        "the 503 must come within seconds, took {took:?}"
    );
    let started = Instant::now();
    let (status, ready) = readyz(&http, &base).await;
    eprintln!("readyz answered {status} in {:?}", started.elapsed());
    assert_eq!(status, 503, "readyz while PostgreSQL is down: {ready:#}");
    assert_eq!(ready["status"], "store_unavailable", "{ready:#}");
    assert_eq!(ready["backend"], "postgres", "{ready:#}");

    cluster.start();

    // The same server, not restarted: nothing of the failed batch was committed.
    let started = Instant::now();
    let again = post(&http, &base, &b2).await;
    eprintln!(
        "first ingest after the restart answered {} in {:?}",
        again.0,
        started.elapsed()
    );
    assert_all(&again, 25, "accepted");
    assert_all(&post(&http, &base, &b2).await, 25, "duplicate");
    let (status, ready) = readyz(&http, &base).await;
    assert_eq!(status, 200, "readyz after the restart: {ready:#}");

    let listed = listed_ids(&http, &base).await;
    let expected: HashMap<String, usize> =
        ids1.iter().chain(&ids2).map(|id| (id.clone(), 1)).collect();
    assert_eq!(
        listed, expected,
        "both batches, each event exactly once, and nothing of the batch refused while down"
    );

    handle.shutdown();
    task.await.unwrap().expect("clean stop");
}
