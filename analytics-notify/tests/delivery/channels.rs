//! Each notifier alone against a real server: the request it sends and how it reads the
//! answer; the SSRF guard; secrets kept out of errors.

use std::time::Duration;

use analytics_core::alert::Severity;
use analytics_core::ids::{PhoneNumber, WebhookUrl};
use analytics_core::notification::{Channel, NotifyError, Recipient};
use analytics_core::ports::Notifier;
use analytics_notify::{Secret, SlackNotifier, TargetPolicy, TwilioSettings, TwilioSmsNotifier};
use url::Url;
use wiremock::matchers::{basic_auth, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{ALLOW_PRIVATE, notification, phone};

pub(crate) fn twilio(server: &MockServer, policy: TargetPolicy) -> TwilioSmsNotifier {
    TwilioSmsNotifier::new(
        TwilioSettings {
            api_base: Url::parse(&server.uri()).unwrap(),
            account_sid: "AC123".into(),
            auth_token: Secret::new("tok-secret"),
            from: PhoneNumber::parse("+15550001111").unwrap(),
        },
        policy,
        Duration::from_secs(5),
    )
}

#[tokio::test]
async fn twilio_posts_the_form_fields_with_basic_auth() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/2010-04-01/Accounts/AC123/Messages.json"))
        .and(basic_auth("AC123", "tok-secret"))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .respond_with(ResponseTemplate::new(201).set_body_string(r#"{"sid": "SM42"}"#))
        .expect(1)
        .mount(&server)
        .await;
    let n = notification(Severity::Critical, Channel::Sms, phone());
    let d = twilio(&server, ALLOW_PRIVATE).send(&n).await.unwrap();
    assert_eq!(d.provider_id.as_deref(), Some("SM42"));
    let req = &server.received_requests().await.unwrap()[0];
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&req.body)
        .into_owned()
        .collect();
    let get = |k: &str| form.iter().find(|(f, _)| f == k).map(|(_, v)| v.clone());
    assert_eq!(get("To").as_deref(), Some("+15551234567"));
    assert_eq!(get("From").as_deref(), Some("+15550001111"));
    let body = get("Body").unwrap();
    assert!(
        body.starts_with("[CRITICAL] firing: checkout errors: p95"),
        "{body}"
    );
    assert!(body.chars().count() <= analytics_notify::twilio::MAX_SMS_CHARS);
    assert_eq!(
        req.headers
            .get("idempotency-key")
            .unwrap()
            .to_str()
            .unwrap(),
        n.id.to_string()
    );
}

#[tokio::test]
async fn a_long_sms_is_cut_to_two_segments() {
    let mut n = notification(Severity::Critical, Channel::Sms, phone());
    n.body = "x".repeat(1000);
    let body = analytics_notify::twilio::sms_body(&n);
    assert_eq!(
        body.chars().count(),
        analytics_notify::twilio::MAX_SMS_CHARS
    );
    assert!(body.ends_with("..."));
}

#[tokio::test]
async fn slack_posts_blocks_coloured_by_severity_and_keeps_the_webhook_secret() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/services/T0/B0/SECRETPATH"))
        .respond_with(ResponseTemplate::new(500).set_body_string("oops"))
        .mount(&server)
        .await;
    let hook = Url::parse(&format!("{}/services/T0/B0/SECRETPATH", server.uri())).unwrap();
    let slack = SlackNotifier::new(Some(hook), ALLOW_PRIVATE, Duration::from_secs(5));
    assert!(!format!("{slack:?}").contains("SECRETPATH"));
    let n = notification(Severity::Critical, Channel::Slack, Recipient::SlackDefault);
    let err = slack.send(&n).await.unwrap_err();
    assert!(matches!(err, NotifyError::Transient(_)), "{err:?}");
    assert!(!err.to_string().contains("SECRETPATH"), "{err}");
    let req = &server.received_requests().await.unwrap()[0];
    let body: serde_json::Value = req.body_json().unwrap();
    assert_eq!(body["text"], n.title.as_str());
    assert_eq!(body["attachments"][0]["color"], "#e01e5a");
    assert_eq!(body["attachments"][0]["blocks"][0]["type"], "header");
    assert_eq!(
        body["attachments"][0]["blocks"][1]["text"]["text"],
        n.body.as_str()
    );
}

#[tokio::test]
async fn slack_without_a_default_webhook_fails_permanently() {
    let slack = SlackNotifier::new(None, ALLOW_PRIVATE, Duration::from_secs(1));
    let n = notification(Severity::Warning, Channel::Slack, Recipient::SlackDefault);
    assert!(matches!(
        slack.send(&n).await,
        Err(NotifyError::Permanent(m)) if m.contains("SLACK_ANALYTICS_WEBHOOK")
    ));
}

/// Every forbidden target is refused before any byte reaches it, with a permanent error.
#[tokio::test]
async fn ssrf_guard_refuses_private_targets_by_default() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let port = server.address().port();
    let strict = SlackNotifier::new(None, TargetPolicy::STRICT, Duration::from_secs(3));
    for url in [
        format!("https://127.0.0.1:{port}/hook"),
        format!("http://127.0.0.1:{port}/hook"),
        format!("https://localhost:{port}/hook"),
        format!("https://[::1]:{port}/hook"),
        "https://10.0.0.1/hook".into(),
        "https://172.16.5.4/hook".into(),
        "https://192.168.0.10/hook".into(),
        "https://169.254.169.254/latest/meta-data/".into(),
        "https://[fd12:3456::1]/hook".into(),
    ] {
        let n = notification(
            Severity::Warning,
            Channel::Slack,
            Recipient::SlackWebhook(WebhookUrl::parse(url.clone()).unwrap()),
        );
        match strict.send(&n).await {
            Err(NotifyError::Permanent(m)) => {
                assert!(
                    m.contains("https") || m.contains("not a public address"),
                    "{url}: {m}"
                )
            }
            other => panic!("{url}: {other:?}"),
        }
    }
    // Twilio's base URL goes through the same guard.
    let sms = twilio(&server, TargetPolicy::STRICT);
    let n = notification(Severity::Critical, Channel::Sms, phone());
    assert!(matches!(sms.send(&n).await, Err(NotifyError::Permanent(_))));
    assert!(server.received_requests().await.unwrap().is_empty());
    // Allowed explicitly, the same loopback target is reached.
    let open = SlackNotifier::new(None, ALLOW_PRIVATE, Duration::from_secs(3));
    let n = notification(
        Severity::Warning,
        Channel::Slack,
        Recipient::SlackWebhook(WebhookUrl::parse(format!("http://localhost:{port}/h")).unwrap()),
    );
    open.send(&n).await.unwrap();
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}
