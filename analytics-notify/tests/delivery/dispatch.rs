//! The dispatcher over the in-memory outbox against real HTTP and SMTP servers: retries,
//! Retry-After, dead entries, disabled channels, and a hanging channel beside a fast one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use analytics_core::alert::Severity;
use analytics_core::memory::MemoryStore;
use analytics_core::notification::{Channel, OutboxStatus, Recipient};
use analytics_core::ports::{InAppStore, NotificationOutbox};
use analytics_core::{PageRequest, SystemClock};
use analytics_notify::{InAppNotifier, SlackNotifier, SmtpEmailNotifier, SmtpSettings};
use url::Url;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::channels::twilio;
use crate::helpers::{
    ALLOW_PRIVATE, Running, Sequence, SmtpSink, email, fast_options, notification, phone, user,
};

async fn mock(responses: Vec<ResponseTemplate>) -> (MockServer, Sequence) {
    let server = MockServer::start().await;
    let seq = Sequence::new(responses);
    Mock::given(method("POST"))
        .respond_with(seq.clone())
        .mount(&server)
        .await;
    (server, seq)
}

#[tokio::test]
async fn slack_500_500_200_is_exactly_three_calls() {
    let (server, seq) = mock(vec![
        ResponseTemplate::new(500),
        ResponseTemplate::new(500),
        ResponseTemplate::new(200).set_body_string("ok"),
    ])
    .await;
    let hook = Url::parse(&format!("{}/hook", server.uri())).unwrap();
    let slack = Arc::new(SlackNotifier::new(
        Some(hook),
        ALLOW_PRIVATE,
        Duration::from_secs(5),
    ));
    let run = Running::start(
        Arc::new(MemoryStore::new()),
        |d| d.with_notifier(slack),
        fast_options(),
    );
    let n = notification(Severity::Warning, Channel::Slack, Recipient::SlackDefault);
    run.enqueue(std::slice::from_ref(&n)).await;
    let e = run.wait_for(n.id, |e| e.status == OutboxStatus::Sent).await;
    assert_eq!(e.attempts, 3);
    // Nothing more comes after delivery.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(seq.requests().len(), 3);
    let attempts = run.store.delivery_attempts(n.id).await.unwrap();
    assert_eq!(attempts.len(), 3);
}

#[tokio::test]
async fn twilio_429_with_retry_after_is_not_called_again_before_it() {
    let (server, seq) = mock(vec![
        ResponseTemplate::new(429).insert_header("Retry-After", "2"),
        ResponseTemplate::new(201).set_body_string(r#"{"sid": "SM1"}"#),
    ])
    .await;
    let run = Running::start(
        Arc::new(MemoryStore::new()),
        |d| d.with_notifier(Arc::new(twilio(&server, ALLOW_PRIVATE))),
        fast_options(),
    );
    let n = notification(Severity::Critical, Channel::Sms, phone());
    run.enqueue(std::slice::from_ref(&n)).await;
    let e = run.wait_for(n.id, |e| e.status == OutboxStatus::Sent).await;
    assert_eq!(e.attempts, 2);
    let reqs = seq.requests();
    assert_eq!(reqs.len(), 2);
    let gap = reqs[1].0 - reqs[0].0;
    assert!(gap >= Duration::from_secs(2), "retried after {gap:?}");
}

#[tokio::test]
async fn twilio_400_is_one_call_and_a_dead_entry_with_the_provider_message() {
    let (server, seq) = mock(vec![ResponseTemplate::new(400).set_body_string(
        r#"{"code": 21211, "message": "The 'To' number +15551234567 is not a valid phone number.", "status": 400}"#,
    )])
    .await;
    let run = Running::start(
        Arc::new(MemoryStore::new()),
        |d| d.with_notifier(Arc::new(twilio(&server, ALLOW_PRIVATE))),
        fast_options(),
    );
    let n = notification(Severity::Critical, Channel::Sms, phone());
    run.enqueue(std::slice::from_ref(&n)).await;
    let e = run
        .wait_for(n.id, |e| e.status == OutboxStatus::Failed)
        .await;
    assert_eq!(e.attempts, 1);
    assert!(
        e.gave_up_at_provider(),
        "a provider refusal is dead, not failed"
    );
    let err = e.last_error.unwrap();
    assert!(err.contains("is not a valid phone number"), "{err}");
    assert!(!err.contains("tok-secret"));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(seq.requests().len(), 1);
}

#[tokio::test]
async fn a_disabled_channel_fails_its_entries_with_the_reason() {
    let run = Running::start(
        Arc::new(MemoryStore::new()),
        |d| d.with_disabled(Channel::Sms, "TWILIO_ACCOUNT_SID is unset"),
        fast_options(),
    );
    let n = notification(Severity::Critical, Channel::Sms, phone());
    run.enqueue(std::slice::from_ref(&n)).await;
    let e = run
        .wait_for(n.id, |e| e.status == OutboxStatus::Failed)
        .await;
    assert_eq!(e.attempts, 1);
    assert!(
        !e.gave_up_at_provider(),
        "never attempted: failed, not dead"
    );
    assert!(
        e.last_error
            .unwrap()
            .contains("TWILIO_ACCOUNT_SID is unset")
    );
}

#[tokio::test]
async fn in_app_entries_land_in_the_users_list() {
    let store = Arc::new(MemoryStore::new());
    let in_app = Arc::new(InAppNotifier::new(store.clone(), Arc::new(SystemClock)));
    let run = Running::start(store.clone(), |d| d.with_notifier(in_app), fast_options());
    let n = notification(Severity::Info, Channel::InApp, user("alice"));
    run.enqueue(std::slice::from_ref(&n)).await;
    run.wait_for(n.id, |e| e.status == OutboxStatus::Sent).await;
    let alice = analytics_core::ids::UserId::parse("alice").unwrap();
    let page = store
        .list_in_app(&alice, false, &PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].id, n.id);
    assert_eq!(store.unread_in_app(&alice).await.unwrap(), 1);
}

/// The SMS of an alert leaves while the email of the same alert hangs on an SMTP server that
/// never answers: the SMS is delivered before the email's first attempt even ends.
#[tokio::test]
async fn a_hanging_smtp_server_does_not_delay_the_sms_of_the_same_alert() {
    let hanging = SmtpSink::start(true).await;
    let (server, seq) = mock(vec![
        ResponseTemplate::new(201).set_body_string(r#"{"sid": "SM1"}"#),
    ])
    .await;
    let mailer = Arc::new(
        SmtpEmailNotifier::new(
            SmtpSettings::parse(
                &format!("smtp://127.0.0.1:{}", hanging.port),
                "alerts@example.com",
            )
            .unwrap(),
            Duration::from_secs(30),
        )
        .unwrap(),
    );
    let mut options = fast_options();
    options.call_timeout = Duration::from_secs(4);
    let run = Running::start(
        Arc::new(MemoryStore::new()),
        |d| {
            d.with_notifier(mailer)
                .with_notifier(Arc::new(twilio(&server, ALLOW_PRIVATE)))
        },
        options,
    );
    let mail = notification(Severity::Critical, Channel::Email, email());
    let mut sms = notification(Severity::Critical, Channel::Sms, phone());
    sms.alert_id = mail.alert_id;
    // The email first in the batch: it is claimed first and hangs.
    run.enqueue(std::slice::from_ref(&mail)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    run.enqueue(std::slice::from_ref(&sms)).await;
    let started = Instant::now();
    run.wait_for(sms.id, |e| e.status == OutboxStatus::Sent)
        .await;
    assert_eq!(seq.requests().len(), 1);
    let mail_entry = run.store.outbox_entry(mail.id).await.unwrap();
    assert_eq!(
        mail_entry.attempts, 0,
        "the email attempt is still hanging when the SMS is delivered"
    );
    // And the hanging call ends at the per-call timeout as a retryable failure.
    let e = run.wait_for(mail.id, |e| e.attempts >= 1).await;
    assert_eq!(e.status, OutboxStatus::Pending);
    assert!(e.last_error.unwrap().contains("timed out"));
    assert!(started.elapsed() >= Duration::from_secs(3));
}

/// An hourly cap of one SMS: the second SMS is not sent but put back until the next hour.
#[tokio::test]
async fn the_sms_hourly_cap_defers_what_is_over_it_to_the_next_hour() {
    let (server, seq) = mock(vec![
        ResponseTemplate::new(201).set_body_string(r#"{"sid": "SM1"}"#),
    ])
    .await;
    let mut options = fast_options();
    options.hourly_caps.insert(Channel::Sms, 1);
    let run = Running::start(
        Arc::new(MemoryStore::new()),
        |d| d.with_notifier(Arc::new(twilio(&server, ALLOW_PRIVATE))),
        options,
    );
    let first = notification(Severity::Critical, Channel::Sms, phone());
    let second = notification(Severity::Critical, Channel::Sms, phone());
    run.enqueue(&[first.clone(), second.clone()]).await;
    let a = run.wait_for(first.id, |e| e.attempts >= 1).await;
    let b = run.wait_for(second.id, |e| e.attempts >= 1).await;
    let (sent, capped) = if a.status == OutboxStatus::Sent {
        (a, b)
    } else {
        (b, a)
    };
    assert_eq!(sent.status, OutboxStatus::Sent);
    assert_eq!(capped.status, OutboxStatus::Pending);
    assert!(capped.last_error.unwrap().contains("hourly cap of 1"));
    let next_hour = capped.next_attempt_at;
    assert_eq!(
        next_hour.timestamp() % 3600,
        0,
        "retried at the top of the hour"
    );
    assert!(next_hour > chrono::Utc::now());
    assert_eq!(seq.requests().len(), 1);
}
