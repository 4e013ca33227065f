//! Notifications end to end: an alert opened by the engine in the real server reaches a
//! wiremock Twilio and Slack; disabled channels show in `/readyz` and `/metrics`; and with
//! the real binary, a `kill -9` between a send and its record loses nothing and repeats at
//! most once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use analytics_core::notification::OutboxStatus;
use analytics_server::Role;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::helpers::{RunningServer, bearer, fire_alert, http_client, metrics_text};

const SMS_PATH: &str = "/2010-04-01/Accounts/AC1/Messages.json";

/// Creates a critical `api.errors` configuration sending SMS to `phones`, and ingests
/// events with a 50 % error rate, so the engine opens an alert at its next run.
async fn fire_critical_alert(base: &str, phones: &[&str]) -> Value {
    let recipients: Vec<Value> = phones.iter().map(|p| json!({"phone": p})).collect();
    let config = json!({
        "name": format!("checkout errors {}", Uuid::new_v4().simple()),
        "metric": "api.errors",
        "stat": "avg",
        "condition": "threshold_above",
        "threshold": 0.1,
        "window_secs": 60,
        "severity": "critical",
        "channels": ["sms", "slack"],
        "recipients": recipients,
    });
    let auth = bearer("ops", &[Role::Admin]);
    fire_alert(&http_client(), base, &auth, &config, "/api/v1/checkout").await
}

fn form(req: &Request) -> HashMap<String, String> {
    url::form_urlencoded::parse(&req.body)
        .into_owned()
        .collect()
}

async fn wait_for_requests(server: &MockServer, n: usize, within: Duration) -> Vec<Request> {
    let deadline = Instant::now() + within;
    loop {
        let got = server.received_requests().await.unwrap();
        if got.len() >= n || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_critical_alert_reaches_twilio_and_slack_and_disabled_channels_are_reported() {
    let twilio = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(SMS_PATH))
        .respond_with(ResponseTemplate::new(201).set_body_string(r#"{"sid": "SM1"}"#))
        .mount(&twilio)
        .await;
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&slack)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("notify.db").display());
    let (twilio_base, slack_hook) = (twilio.uri(), format!("{}/services/T/B/SECRET", slack.uri()));
    let server = RunningServer::start(&url, |s| {
        s.alert_interval = Duration::from_secs(1);
        let n = &mut s.notify;
        n.allow_private_targets = true;
        n.twilio_api_base = Some(twilio_base);
        n.twilio_account_sid = Some("AC1".into());
        n.twilio_auth_token = Some(analytics_notify::Secret::new("token"));
        n.twilio_from = Some("+15550001111".into());
        n.slack_webhook = Some(analytics_notify::Secret::new(slack_hook));
    })
    .await;
    let http = http_client();

    let ready: Value =
        crate::helpers::get_json(&http, &format!("{}/readyz", server.base), None).await;
    let channels = ready["channels"].as_array().unwrap();
    let email = channels.iter().find(|c| c["channel"] == "email").unwrap();
    assert_eq!(email["enabled"], false, "{ready:#}");
    assert!(
        email["reason"]
            .as_str()
            .unwrap()
            .contains("ANALYTICS_SMTP_URL"),
        "{ready:#}"
    );
    let sms = channels.iter().find(|c| c["channel"] == "sms").unwrap();
    assert_eq!(sms["enabled"], true);
    assert_eq!(sms["reason"], Value::Null);

    fire_critical_alert(&server.base, &["+15551230001"]).await;
    let sms = wait_for_requests(&twilio, 1, Duration::from_secs(10)).await;
    assert_eq!(sms.len(), 1, "one SMS");
    let f = form(&sms[0]);
    assert_eq!(f["To"], "+15551230001");
    assert_eq!(f["From"], "+15550001111");
    assert!(f["Body"].contains("CRITICAL"), "{f:?}");
    let slack_calls = wait_for_requests(&slack, 1, Duration::from_secs(10)).await;
    assert_eq!(slack_calls.len(), 1);
    assert_eq!(slack_calls[0].url.path(), "/services/T/B/SECRET");

    let metrics = metrics_text(&http, &server.base).await;
    assert!(
        metrics.contains(r#"analytics_notify_channel_enabled{channel="email"} 0"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"analytics_notify_channel_enabled{channel="sms"} 1"#));
    // The counter is set when /metrics renders; the SMS was recorded right after it was sent.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = metrics_text(&http, &server.base).await;
        if m.contains(r#"analytics_notify_attempts_total{channel="sms",outcome="sent"} 1"#) {
            break;
        }
        assert!(Instant::now() < deadline, "{m}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!metrics.contains("SECRET"));
    server.stop().await;
}

/// An HTTP server that reads each request, records its idempotency key, and never
/// answers: the send is in flight, unrecorded, when the process is killed.
async fn black_hole() -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut socket, _)) = listener.accept().await {
            let tx = tx.clone();
            let mut buf = vec![0u8; 16 * 1024];
            let mut read = 0;
            // Read until the head is complete (the form body is small and follows it).
            while read < buf.len() {
                match socket.read(&mut buf[read..]).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => read += n,
                }
                let text = String::from_utf8_lossy(&buf[..read]).to_ascii_lowercase();
                if let Some(line) = text
                    .lines()
                    .find(|l| l.starts_with("idempotency-key:"))
                    .filter(|_| text.contains("\r\n\r\n"))
                {
                    let _ = tx.send(line["idempotency-key:".len()..].trim().to_owned());
                    break;
                }
            }
            held.push(socket);
        }
    });
    (base, rx)
}

/// With the real binary: the SMS requests reach a provider that never answers, the process
/// is killed with SIGKILL before any answer is recorded, and the restarted process (now
/// pointed at a provider that answers) delivers every entry, each at most twice in all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_between_send_and_record_loses_nothing_and_repeats_at_most_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("kill.db").display());
    let (hole, mut keys) = black_hole().await;
    let phones = ["+15551230001", "+15551230002"];
    let common = [
        ("ANALYTICS_ALERT_INTERVAL_SECS", "1"),
        ("ANALYTICS_ALLOW_PRIVATE_TARGETS", "true"),
        ("TWILIO_ACCOUNT_SID", "AC1"),
        ("TWILIO_AUTH_TOKEN", "token"),
        ("TWILIO_FROM_NUMBER", "+15550001111"),
        ("ANALYTICS_NOTIFY_TIMEOUT_SECS", "3"),
        ("ANALYTICS_NOTIFY_LEASE_SECS", "6"),
    ];
    let mut env = common.to_vec();
    env.push(("TWILIO_API_BASE", hole.as_str()));
    let mut first = crate::helpers::BinaryServer::spawn(&db, &env);
    fire_critical_alert(&first.base, &phones).await;
    // Wait until both SMS are in flight at the black hole, then kill.
    let mut in_flight = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while in_flight.len() < phones.len() && Instant::now() < deadline {
        if let Ok(Some(k)) = tokio::time::timeout(Duration::from_millis(200), keys.recv()).await {
            in_flight.push(k);
        }
    }
    first.child.kill().unwrap(); // SIGKILL: nothing is recorded
    first.child.wait().unwrap();
    assert_eq!(in_flight.len(), 2, "both SMS were sent before the kill");

    let twilio = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(SMS_PATH))
        .respond_with(ResponseTemplate::new(201).set_body_string(r#"{"sid": "SM1"}"#))
        .mount(&twilio)
        .await;
    let twilio_base = twilio.uri();
    let mut env = common.to_vec();
    env.push(("TWILIO_API_BASE", twilio_base.as_str()));
    let mut second = crate::helpers::BinaryServer::spawn(&db, &env);
    // Redelivered once the 6 s lease of the killed claim ends.
    let delivered = wait_for_requests(&twilio, 2, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let delivered_after = twilio.received_requests().await.unwrap();
    assert_eq!(
        delivered_after.len(),
        delivered.len(),
        "nothing more after delivery"
    );
    let mut keys_after: Vec<String> = delivered
        .iter()
        .map(|r| r.headers["idempotency-key"].to_str().unwrap().to_owned())
        .collect();
    keys_after.sort();
    in_flight.sort();
    assert_eq!(
        keys_after, in_flight,
        "every entry delivered once after the restart"
    );
    let mut to: Vec<String> = delivered.iter().map(|r| form(r)["To"].clone()).collect();
    to.sort();
    assert_eq!(to, phones);

    // The records agree: every SMS entry is sent.
    let http = http_client();
    let active: Value = http
        .get(format!("{}/api/v1/analytics/alerts/active", second.base))
        .header("authorization", bearer("ops", &[Role::Admin]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let deliveries = active["items"][0]["notifications"]
        .as_array()
        .unwrap()
        .clone();
    let sms: Vec<&Value> = deliveries
        .iter()
        .filter(|n| n["channel"] == "sms")
        .collect();
    assert_eq!(sms.len(), 2, "{active:#}");
    for n in sms {
        assert_eq!(n["status"], OutboxStatus::Sent.as_str(), "{n:#}");
    }
    second.child.kill().unwrap();
    second.child.wait().unwrap();
}
