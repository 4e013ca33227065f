//! System health routes: auth, parameter errors naming their field, figures equal to the
//! ingested data (in-process over `MemoryStore`, and black-box over SQLite and PostgreSQL),
//! and the live Prometheus view against real loopback servers (good, hanging, garbage,
//! down).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use analytics_server::realtime::PrometheusScrapeSource;
use analytics_server::state::HealthContext;
use analytics_server::{Role, build_app};
use chrono::{DateTime, Utc};
use poem::http::StatusCode;
use poem::test::TestClient;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::helpers::{Resp, TestApp, batch, fresh_postgres_url};

const ROUTES: [&str; 4] = [
    "/api/v1/analytics/health/overview",
    "/api/v1/analytics/health/api",
    "/api/v1/analytics/health/database",
    "/api/v1/analytics/health/timeseries",
];

async fn get(app: &TestApp, path: &str, auth: Option<&str>) -> Resp {
    let mut r = app.client.get(path);
    if let Some(a) = auth {
        r = r.header("authorization", a);
    }
    Resp::from(r.send().await).await
}

/// `n` api requests spread over the last ~50 minutes: `(method, route, status, latency,
/// sample rate)` cycles through a fixed pattern.
fn requests(now: DateTime<Utc>, n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let (method, route) = [
                ("GET", "/products"),
                ("GET", "/products"),
                ("POST", "/cart"),
                ("GET", "/products/:id"),
            ][i % 4];
            let status = if i % 10 == 3 { 503 } else { 200 };
            let at = now - chrono::Duration::seconds(30 + (i as i64 * 97) % 3000);
            json!({
                "id": uuid::Uuid::from_u128(9_000 + i as u128).to_string(),
                "kind": "api_request",
                "occurred_at": at.to_rfc3339(),
                "sample_rate": if i % 8 == 0 { 0.5 } else { 1.0 },
                "payload": {"method": method, "route": route, "status": status,
                            "latency_ms": 5.0 + (i % 17) as f64},
            })
        })
        .collect()
}

/// The truth of `requests(now, n)` (all inside any window of an hour or more).
struct Truth {
    requests: f64,
    errors: f64,
    latency_sum: f64,
    max: f64,
}

fn truth(events: &[Value], key: Option<(&str, &str)>) -> Truth {
    let mut t = Truth {
        requests: 0.0,
        errors: 0.0,
        latency_sum: 0.0,
        max: 0.0,
    };
    for e in events {
        let p = &e["payload"];
        if key.is_some_and(|(m, r)| p["method"] != m || p["route"] != r) {
            continue;
        }
        let w = 1.0 / e["sample_rate"].as_f64().unwrap();
        t.requests += w;
        if p["status"].as_u64().unwrap() >= 500 {
            t.errors += w;
        }
        let l = p["latency_ms"].as_f64().unwrap();
        t.latency_sum += l * w;
        t.max = t.max.max(l);
    }
    t
}

fn close(a: &Value, b: f64) -> bool {
    a.as_f64()
        .is_some_and(|a| (a - b).abs() <= 1e-9 * b.abs().max(1.0))
}

/// Checks `requests`, `errors`, `error_rate` and `latency_ms.avg` of `body` against `t`.
fn check_figures(what: &str, body: &Value, t: &Truth) {
    assert_eq!(
        body["requests"],
        t.requests.round() as u64,
        "{what}: {body:#}"
    );
    assert_eq!(body["errors"], t.errors.round() as u64, "{what}: {body:#}");
    assert!(
        close(&body["error_rate"], t.errors / t.requests),
        "{what}: {body:#}"
    );
    assert!(
        close(&body["latency_ms"]["avg"], t.latency_sum / t.requests),
        "{what}: {body:#}"
    );
    // Counts are JSON integers.
    assert!(
        body["requests"].is_u64() && body["errors"].is_u64(),
        "{what}"
    );
}

#[tokio::test]
async fn health_routes_need_an_admin_token() {
    let app = TestApp::new();
    let viewer = format!("Bearer {}", app.token(&[Role::BusinessViewer]));
    let ingest = format!("Bearer {}", app.token(&[Role::Ingest]));
    let admin = app.admin();
    for path in ROUTES {
        get(&app, path, None)
            .await
            .assert_error(StatusCode::UNAUTHORIZED, None);
        get(&app, path, Some(&viewer))
            .await
            .assert_error(StatusCode::FORBIDDEN, None);
        get(&app, path, Some(&ingest))
            .await
            .assert_error(StatusCode::FORBIDDEN, None);
        let ok = get(&app, path, Some(&admin)).await;
        assert_eq!(ok.status, StatusCode::OK, "{path}: {:#}", ok.body);
    }
}

#[tokio::test]
async fn bad_window_and_parameters_name_their_field() {
    let app = TestApp::new();
    let admin = app.admin();
    let from = "from=2024-03-01T00:00:00Z";
    let to = "to=2024-03-02T00:00:00Z";
    let cases = [
        ("overview", "range=2d".to_owned(), "range"),
        ("overview", format!("range=1h&{from}&{to}"), "range"),
        ("overview", to.to_owned(), "from"),
        ("api", from.to_owned(), "to"),
        ("api", format!("from=yesterday&{to}"), "from"),
        ("database", format!("{from}&to=2024-13-01"), "to"),
        (
            "timeseries",
            format!("{from}&to=2024-03-01T00:00:00Z"),
            "from",
        ),
        (
            "timeseries",
            "from=2023-01-01T00:00:00Z&to=2024-03-01T00:00:00Z".to_owned(),
            "to",
        ),
        ("timeseries", "granularity=week".to_owned(), "granularity"),
        (
            "timeseries",
            "granularity=minute&range=7d".to_owned(),
            "granularity",
        ),
        ("api", "limit=0".to_owned(), "limit"),
        ("api", "limit=501".to_owned(), "limit"),
        ("overview", "project=Not%20A%20Slug".to_owned(), "project"),
    ];
    for (route, query, field) in cases {
        let r = get(
            &app,
            &format!("/api/v1/analytics/health/{route}?{query}"),
            Some(&admin),
        )
        .await;
        r.assert_error(StatusCode::BAD_REQUEST, Some(field));
    }
}

#[tokio::test]
async fn health_figures_match_the_ingested_requests() {
    let app = TestApp::new();
    let admin = app.admin();
    let now = Utc::now();
    let events = requests(now, 120);
    let r = app.post_events(&batch(events.clone()), Some(&admin)).await;
    assert_eq!(r.body["accepted"], 120, "{:#}", r.body);

    for range in ["1h", "24h", "7d", "30d"] {
        let o = get(
            &app,
            &format!("/api/v1/analytics/health/overview?range={range}"),
            Some(&admin),
        )
        .await;
        assert_eq!(o.status, StatusCode::OK, "{:#}", o.body);
        let all = truth(&events, None);
        check_figures(range, &o.body, &all);
        assert_eq!(o.body["latency_ms"]["p99"], all.max);
        assert_eq!(o.body["sampled"], true);
        assert_eq!(o.body["source"], "raw");
        assert_eq!(o.body["project"], "default");
        // 10% errors > the 5% threshold.
        assert_eq!(o.body["status"], "degraded");
        assert!(o.body["uptime_seconds"].is_u64());
        // No Prometheus endpoint in this in-process app: unavailable, still 200.
        assert_eq!(o.body["realtime"]["available"], false);
        assert!(o.body["realtime"]["reason"].is_string());
        let from: DateTime<Utc> = o.body["range"]["from"].as_str().unwrap().parse().unwrap();
        let to: DateTime<Utc> = o.body["range"]["to"].as_str().unwrap().parse().unwrap();
        let want = analytics_core::RangePreset::ALL
            .into_iter()
            .find(|p| p.as_str() == range)
            .unwrap()
            .duration();
        assert_eq!(to - from, want);
    }

    let a = get(&app, "/api/v1/analytics/health/api?range=24h", Some(&admin)).await;
    assert_eq!(a.status, StatusCode::OK, "{:#}", a.body);
    let routes = a.body["routes"].as_array().unwrap();
    assert_eq!(routes.len(), 3);
    assert_eq!(
        (&routes[0]["method"], &routes[0]["route"]),
        (&json!("GET"), &json!("/products"))
    );
    for r in routes {
        let key = (r["method"].as_str().unwrap(), r["route"].as_str().unwrap());
        let t = truth(&events, Some(key));
        check_figures(&format!("{key:?}"), r, &t);
        assert_eq!(r["latency_ms"]["max"], t.max);
    }
    let top = get(&app, "/api/v1/analytics/health/api?limit=1", Some(&admin)).await;
    assert_eq!(top.body["routes"].as_array().unwrap().len(), 1);

    // Every minute of the hour; the points add up to the total.
    let ts = get(
        &app,
        "/api/v1/analytics/health/timeseries?range=1h",
        Some(&admin),
    )
    .await;
    assert_eq!(ts.status, StatusCode::OK, "{:#}", ts.body);
    assert_eq!(ts.body["granularity"], "minute");
    assert_eq!(ts.body["source"], "raw");
    let points = ts.body["points"].as_array().unwrap();
    assert!((60..=61).contains(&points.len()), "{}", points.len());
    let total: f64 = points.iter().map(|p| p["requests"].as_f64().unwrap()).sum();
    assert!((total - truth(&events, None).requests).abs() <= points.len() as f64 / 2.0);
    let empty = points
        .iter()
        .find(|p| p["requests"] == 0)
        .expect("an empty minute");
    assert_eq!(empty["error_rate"], Value::Null);
    assert_eq!(empty["latency_ms"]["p50"], Value::Null);
    let day = get(
        &app,
        "/api/v1/analytics/health/timeseries?range=24h",
        Some(&admin),
    )
    .await;
    assert_eq!(day.body["granularity"], "hour");
    let n = day.body["points"].as_array().unwrap().len();
    assert!((24..=25).contains(&n), "{n}");

    // The store: the memory backend, pinged now; the ingest write and the reads above were
    // timed into the internal project.
    app.state.collector.flush().await.unwrap();
    let d = get(&app, "/api/v1/analytics/health/database", Some(&admin)).await;
    assert_eq!(d.status, StatusCode::OK, "{:#}", d.body);
    assert_eq!(d.body["backend"], "memory");
    assert_eq!(d.body["available"], true);
    assert!(d.body["ping_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(
        d.body["pool"],
        json!({"size": 0, "idle": 0, "in_use": 0, "max": 0})
    );
    assert!(d.body["queries"].as_u64().unwrap() >= 5, "{:#}", d.body);
    assert!(d.body["query_latency_ms"]["p95"].is_number());
    let ops: Vec<&str> = d.body["operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["operation"].as_str().unwrap())
        .collect();
    assert!(
        ops.contains(&"ingest_write") && ops.contains(&"read"),
        "{ops:?}"
    );
    // No rollup scheduler runs in this in-process app.
    assert_eq!(d.body["rollup_ticks"], 0);
    // ... and never show up as application traffic or in the default event listing.
    let o = get(&app, "/api/v1/analytics/health/overview", Some(&admin)).await;
    assert_eq!(
        o.body["requests"],
        truth(&events, None).requests.round() as u64
    );
    let listed = app.get_events("?limit=1000", Some(&admin)).await;
    assert_eq!(listed.body["events"].as_array().unwrap().len(), 120);
}

#[tokio::test]
async fn an_empty_project_gives_zeros_and_nulls() {
    let app = TestApp::new();
    let admin = app.admin();
    let o = get(
        &app,
        "/api/v1/analytics/health/overview?project=nothing-here",
        Some(&admin),
    )
    .await;
    assert_eq!(o.status, StatusCode::OK, "{:#}", o.body);
    assert_eq!(o.body["requests"], 0);
    assert_eq!(o.body["errors"], 0);
    assert_eq!(o.body["error_rate"], Value::Null);
    assert_eq!(
        o.body["latency_ms"],
        json!({"p50": null, "p95": null, "p99": null, "avg": null})
    );
    assert_eq!(o.body["status"], "healthy");
    let a = get(
        &app,
        "/api/v1/analytics/health/api?project=nothing-here",
        Some(&admin),
    )
    .await;
    assert_eq!(a.body["routes"], json!([]));
}

// ----------------------------------------------------------------- the live Prometheus view

/// A loopback HTTP server answering every request with `status` and the current `body`.
async fn serve(status: u16, body: Arc<Mutex<String>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/metrics", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let body = body.lock().unwrap().clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut req = Vec::new();
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let head = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: text/plain; version=0.0.4\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(body.as_bytes()).await;
            });
        }
    });
    url
}

/// A loopback server that accepts connections and never answers.
async fn serve_hanging() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/metrics", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    url
}

/// Real exposition text: counters (one route being the scrape itself), a gauge, a
/// histogram, a summary, escaped label values and comments.
fn exposition(ok: u64, failed: u64) -> String {
    let h = |le: &str, n: u64| {
        format!(
            "http_request_duration_seconds_bucket{{method=\"GET\",route=\"/api/x\",status=\"200\",le=\"{le}\"}} {n}\n"
        )
    };
    format!(
        "# HELP http_requests_total HTTP requests served\n\
         # TYPE http_requests_total counter\n\
         http_requests_total{{method=\"GET\",route=\"/api/x\",status=\"200\"}} {ok}\n\
         http_requests_total{{method=\"POST\",route=\"/api/x\",status=\"503\"}} {failed}\n\
         http_requests_total{{method=\"GET\",route=\"/metrics\",status=\"200\"}} 999\n\
         http_requests_total{{method=\"GET\",route=\"/q\\\"uoted\\\\path\",status=\"404\"}} 0\n\
         # a free comment line\n\
         # HELP process_open_fds Open file descriptors.\n\
         # TYPE process_open_fds gauge\n\
         process_open_fds 12\n\
         # HELP http_request_duration_seconds HTTP request latency in seconds\n\
         # TYPE http_request_duration_seconds histogram\n\
         {}{}{}{}{}\
         http_request_duration_seconds_sum{{method=\"GET\",route=\"/api/x\",status=\"200\"}} 20.5\n\
         http_request_duration_seconds_count{{method=\"GET\",route=\"/api/x\",status=\"200\"}} {}\n\
         # TYPE rpc_duration_seconds summary\n\
         rpc_duration_seconds{{quantile=\"0.5\"}} 0.01\n\
         rpc_duration_seconds{{quantile=\"0.99\"}} 0.2\n\
         rpc_duration_seconds_sum 1.5\n\
         rpc_duration_seconds_count 100\n",
        h("0.005", 0),
        h("0.1", (ok + failed) / 2),
        h("0.5", (ok + failed) * 9 / 10),
        h("1", ok + failed),
        h("+Inf", ok + failed),
        ok + failed,
    )
}

#[tokio::test]
async fn realtime_view_reads_counters_and_histograms_of_a_real_endpoint() {
    let body = Arc::new(Mutex::new(exposition(90, 10)));
    let url = serve(200, body.clone()).await;
    let source = PrometheusScrapeSource::new(url.clone(), Duration::from_millis(500));
    let first = source.realtime().await;
    assert!(first.available, "{first:?}");
    assert_eq!(first.source, url);
    // The scrape route itself (/metrics) is left out: 100 requests, 10 errors.
    assert_eq!(first.error_rate, Some(0.1));
    assert_eq!(first.requests_per_second, None, "no baseline yet");
    assert_eq!(first.p50_ms, Some(100.0));
    assert!((first.p95_ms.unwrap() - 750.0).abs() < 1e-9, "{first:?}");
    assert!((first.p99_ms.unwrap() - 950.0).abs() < 1e-9, "{first:?}");

    // 200 more requests, 40 of them failed: rates are deltas against the first scrape.
    tokio::time::sleep(Duration::from_millis(200)).await;
    *body.lock().unwrap() = exposition(250, 50);
    let second = source.realtime().await;
    assert!(second.available, "{second:?}");
    assert_eq!(second.error_rate, Some(0.2));
    let elapsed = (second.scraped_at.unwrap() - first.scraped_at.unwrap()).num_milliseconds();
    let rps = second.requests_per_second.unwrap();
    assert!(
        (rps - 200.0 / (elapsed as f64 / 1000.0)).abs() < 1e-6,
        "{rps}"
    );
}

#[tokio::test]
async fn realtime_view_of_a_hanging_endpoint_answers_within_the_budget() {
    let url = serve_hanging().await;
    let source = PrometheusScrapeSource::new(url, Duration::from_millis(500));
    let started = Instant::now();
    let r = source.realtime().await;
    let took = started.elapsed();
    assert!(!r.available);
    assert!(r.reason.as_deref().unwrap().contains("500 ms"), "{r:?}");
    assert!(took < Duration::from_millis(800), "took {took:?}");
}

#[tokio::test]
async fn realtime_view_of_garbage_or_a_down_endpoint_is_unavailable_with_a_reason() {
    let html = serve(
        200,
        Arc::new(Mutex::new("<html><body>hello</body></html>".into())),
    )
    .await;
    let r = PrometheusScrapeSource::new(html, Duration::from_millis(500))
        .realtime()
        .await;
    assert!(!r.available);
    assert!(r.reason.unwrap().contains("not prometheus text"));

    let other = serve(200, Arc::new(Mutex::new("# TYPE up gauge\nup 1\n".into()))).await;
    let r = PrometheusScrapeSource::new(other, Duration::from_millis(500))
        .realtime()
        .await;
    assert!(!r.available);
    assert!(r.reason.unwrap().contains("http_requests_total"));

    let error = serve(500, Arc::new(Mutex::new("boom".into()))).await;
    let r = PrometheusScrapeSource::new(error, Duration::from_millis(500))
        .realtime()
        .await;
    assert!(r.reason.unwrap().contains("HTTP 500"));

    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/metrics", l.local_addr().unwrap())
    };
    let started = Instant::now();
    let r = PrometheusScrapeSource::new(down, Duration::from_millis(500))
        .realtime()
        .await;
    assert!(!r.available);
    assert!(r.reason.unwrap().contains("unreachable"));
    assert!(started.elapsed() < Duration::from_millis(800));
}

#[tokio::test]
async fn overview_is_served_quickly_when_the_prometheus_endpoint_hangs() {
    let mut app = TestApp::new();
    let url = serve_hanging().await;
    app.state = app.state.clone().with_health(HealthContext {
        realtime: Some(PrometheusScrapeSource::new(
            url.clone(),
            Duration::from_millis(500),
        )),
        ..HealthContext::default()
    });
    app.client = TestClient::new(build_app(app.state.clone()));
    let admin = app.admin();
    let started = Instant::now();
    let o = get(&app, "/api/v1/analytics/health/overview", Some(&admin)).await;
    assert_eq!(o.status, StatusCode::OK, "{:#}", o.body);
    assert!(started.elapsed() < Duration::from_millis(900));
    assert_eq!(o.body["realtime"]["available"], false);
    assert_eq!(o.body["realtime"]["source"], url);
    assert!(o.body["realtime"]["reason"].is_string());
}

// ---------------------------------------------------------------------------- black box

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_server_answers_health_from_ingested_data() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("health.db").display());
    health_end_to_end(&url, "sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_server_answers_health_from_ingested_data() {
    let Some(url) = fresh_postgres_url().await else {
        return;
    };
    health_end_to_end(&url, "postgres").await;
}

async fn health_end_to_end(db_url: &str, backend: &str) {
    let server = crate::helpers::RunningServer::start(db_url, |_| {}).await;
    let base = server.base.clone();
    let http = crate::helpers::http_client();
    let auth = crate::helpers::bearer("bb", &[Role::Admin]);
    let get = |path: String| {
        let http = http.clone();
        let auth = auth.clone();
        async move {
            let r = http
                .get(path)
                .header("authorization", auth)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    let events = requests(Utc::now(), 80);
    let r = http
        .post(format!("{base}/api/v1/analytics/events"))
        .header("authorization", &auth)
        .json(&batch(events.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);

    let (status, o) = get(format!("{base}/api/v1/analytics/health/overview?range=7d")).await;
    assert_eq!(status, 200, "{o:#}");
    check_figures(backend, &o, &truth(&events, None));
    // The live view scrapes this server's own /metrics.
    assert_eq!(o["realtime"]["available"], true, "{o:#}");
    assert_eq!(o["realtime"]["source"], format!("{base}/metrics"));
    let (_, o2) = get(format!("{base}/api/v1/analytics/health/overview?range=7d")).await;
    assert!(o2["realtime"]["requests_per_second"].is_number(), "{o2:#}");

    let (status, a) = get(format!("{base}/api/v1/analytics/health/api?range=24h")).await;
    assert_eq!(status, 200, "{a:#}");
    for r in a["routes"].as_array().unwrap() {
        let key = (r["method"].as_str().unwrap(), r["route"].as_str().unwrap());
        check_figures(backend, r, &truth(&events, Some(key)));
    }

    let (status, ts) = get(format!(
        "{base}/api/v1/analytics/health/timeseries?range=24h"
    ))
    .await;
    assert_eq!(status, 200, "{ts:#}");
    let total: u64 = ts["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["requests"].as_u64().unwrap())
        .sum();
    assert!(total.abs_diff(truth(&events, None).requests.round() as u64) <= 3);

    let (status, d) = get(format!("{base}/api/v1/analytics/health/database")).await;
    assert_eq!(status, 200, "{d:#}");
    assert_eq!(d["backend"], backend);
    assert_eq!(d["available"], true);
    assert!(d["pool"]["max"].as_u64().unwrap() >= 1, "{d:#}");
    assert!(d["ping_ms"].is_number());

    server.stop().await;
}
