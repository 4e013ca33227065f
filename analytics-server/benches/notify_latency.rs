//! Latency from an alert transition to the Twilio request, through the real server
//! (`Application` over SQLite, the alert engine every second, the outbox dispatcher with its
//! default settings) and a wiremock Twilio on loopback.
//!
//! Each sample creates one critical configuration (SMS to its own number) over metrics that
//! already breach it; the engine opens its alert at the next run and enqueues the SMS in the
//! outbox. The transition instant is the start of the store poll (every 5 ms) that first
//! sees the alert (so the figure may be short by up to one poll period plus a poll's
//! duration); the delivery instant is when the Twilio mock
//! receives the request. The baseline, in the same run, is a direct POST of the same form to
//! the same mock: the figure reported is the pipeline's latency and its ratio to that.
//!
//! `cargo bench -p analytics-server --bench notify_latency` (`BENCH_SAMPLES`, default 60).
//! Without `--bench` (as `cargo test` runs it) it takes 3 samples and checks only that each
//! SMS arrives after its alert opened.

// A benchmark reports its figures on stdout.
#![allow(clippy::print_stdout)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use analytics_core::ports::AlertFilter;
use analytics_core::{PageRequest, TimeRange};
use analytics_server::{Application, JwtSettings, Role, Secret, Settings};
use chrono::Utc;
use serde_json::{Value, json};
use uuid::Uuid;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const SECRET: &str = "bench-secret-0123456789-0123456789-0123456789";

/// Records when each `To` number's request arrived.
#[derive(Clone, Default)]
struct Arrivals(Arc<Mutex<HashMap<String, Instant>>>);

impl Respond for Arrivals {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let at = Instant::now();
        if let Some((_, to)) = url::form_urlencoded::parse(&request.body).find(|(k, _)| k == "To") {
            self.0.lock().unwrap().entry(to.into_owned()).or_insert(at);
        }
        ResponseTemplate::new(201).set_body_string(r#"{"sid": "SM1"}"#)
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let bench = std::env::args().any(|a| a == "--bench");
    let samples: usize = if bench {
        std::env::var("BENCH_SAMPLES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(60)
    } else {
        3
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let twilio = MockServer::start().await;
    let arrivals = Arrivals::default();
    Mock::given(method("POST"))
        .respond_with(arrivals.clone())
        .mount(&twilio)
        .await;

    let dir = tempfile::tempdir()?;
    let jwt = JwtSettings::new(Secret::new(SECRET));
    let mut settings = Settings::new(
        "127.0.0.1:0",
        format!("sqlite://{}", dir.path().join("bench.db").display()),
        jwt.clone(),
    );
    settings.alert_interval = Duration::from_secs(1);
    settings.drain_delay = Duration::ZERO;
    let n = &mut settings.notify;
    n.allow_private_targets = true;
    n.twilio_api_base = Some(twilio.uri());
    n.twilio_account_sid = Some("AC1".into());
    n.twilio_auth_token = Some(analytics_notify::Secret::new("token"));
    n.twilio_from = Some("+15550001111".into());
    let app = Application::build(settings).await?;
    let base = format!("http://127.0.0.1:{}", app.port());
    let store = app.state().store.clone();
    let stop = app.shutdown_handle();
    let server = tokio::spawn(app.run_until_stopped());

    let http = reqwest::Client::new();
    let auth = format!(
        "Bearer {}",
        jwt.issue("bench", &[Role::Admin], Utc::now().timestamp(), 3600)?
    );
    let now = Utc::now();
    let events: Vec<Value> = (0..40)
        .map(|i| {
            json!({
                "id": Uuid::new_v4().to_string(), "kind": "api_request",
                "occurred_at": (now - chrono::Duration::seconds(5)).to_rfc3339(),
                "payload": {"method": "GET", "route": "/api/v1/orders",
                            "status": if i % 2 == 0 { 500 } else { 200 }, "latency_ms": 10.0},
            })
        })
        .collect();
    let r = http
        .post(format!("{base}/api/v1/analytics/events"))
        .header("authorization", &auth)
        .json(&json!({"events": events}))
        .send()
        .await?;
    anyhow::ensure!(r.status().is_success(), "ingest: {}", r.text().await?);

    let mut pipeline = Vec::new();
    let mut direct = Vec::new();
    for i in 0..samples {
        // Events must stay inside the 60 s window of the configurations.
        if i > 0 && i % 20 == 0 {
            let events: Vec<Value> = (0..40)
                .map(|k| {
                    json!({
                        "id": Uuid::new_v4().to_string(), "kind": "api_request",
                        "occurred_at": (Utc::now() - chrono::Duration::seconds(2)).to_rfc3339(),
                        "payload": {"method": "GET", "route": "/api/v1/orders",
                                    "status": if k % 2 == 0 { 500 } else { 200 },
                                    "latency_ms": 10.0},
                    })
                })
                .collect();
            http.post(format!("{base}/api/v1/analytics/events"))
                .header("authorization", &auth)
                .json(&json!({"events": events}))
                .send()
                .await?;
        }
        let phone = format!("+1555200{i:04}");
        let created: Value = http
            .post(format!("{base}/api/v1/analytics/alerts/configs"))
            .header("authorization", &auth)
            .json(&json!({
                "name": format!("latency {i}"), "metric": "api.errors", "stat": "avg",
                "condition": "threshold_above", "threshold": 0.1, "window_secs": 60,
                "severity": "critical", "channels": ["sms"],
                "recipients": [{"phone": phone}],
            }))
            .send()
            .await?
            .json()
            .await?;
        let config_id: Uuid = created["id"].as_str().unwrap_or_default().parse()?;
        let filter = AlertFilter {
            config_id: Some(config_id),
            range: TimeRange::new(
                Utc::now() - chrono::Duration::hours(1),
                Utc::now() + chrono::Duration::hours(1),
            )
            .ok(),
            ..AlertFilter::default()
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        // The alert was committed after the previous (empty) poll started and before the
        // successful one returned; its start is taken as the transition instant.
        let mut previous = Instant::now();
        let (committed_after, opened) = loop {
            let start = Instant::now();
            let page = store.list_alerts(&filter, &PageRequest::first(1)).await?;
            if !page.items.is_empty() {
                break (previous, start);
            }
            previous = start;
            anyhow::ensure!(Instant::now() < deadline, "alert {i} never opened");
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let arrived = loop {
            if let Some(t) = arrivals.0.lock().unwrap().get(&phone) {
                break *t;
            }
            anyhow::ensure!(Instant::now() < deadline, "sms {i} never arrived");
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        // The SMS may arrive while the successful poll runs: count that as 0.
        pipeline.push(arrived.saturating_duration_since(opened).as_secs_f64() * 1e3);
        anyhow::ensure!(
            arrived >= committed_after,
            "sms {i} arrived before its alert could have opened"
        );
        // Baseline: the same request sent directly.
        let direct_phone = format!("+1555300{i:04}");
        let t = Instant::now();
        http.post(format!(
            "{}/2010-04-01/Accounts/AC1/Messages.json",
            twilio.uri()
        ))
        .basic_auth("AC1", Some("token"))
        .form(&[
            ("To", direct_phone.as_str()),
            ("From", "+15550001111"),
            ("Body", "x"),
        ])
        .send()
        .await?;
        direct.push(t.elapsed().as_secs_f64() * 1e3);
    }
    stop.shutdown();
    server.await??;

    pipeline.sort_by(f64::total_cmp);
    direct.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&pipeline, 0.5), percentile(&pipeline, 0.99));
    let (d50, d99) = (percentile(&direct, 0.5), percentile(&direct, 0.99));
    println!("notify_latency: {} samples", pipeline.len());
    println!(
        "alert transition -> Twilio request: p50 {p50:.1} ms, p99 {p99:.1} ms, max {:.1} ms",
        pipeline[pipeline.len() - 1]
    );
    println!("direct POST to the same mock (baseline): p50 {d50:.2} ms, p99 {d99:.2} ms");
    println!(
        "ratio pipeline / direct: p50 {:.1}x, p99 {:.1}x",
        p50 / d50.max(1e-3),
        p99 / d99.max(1e-3)
    );
    Ok(())
}
