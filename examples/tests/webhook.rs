//! The JSON webhook notifier against a real HTTP server (wiremock on port 0): what it sends,
//! and how each answer maps to delivered / retried / rate limited / given up, also through
//! the dispatcher's outbox.

use std::sync::Arc;
use std::time::Duration;

use analytics_core::alert::Severity;
use analytics_core::memory::MemoryStore;
use analytics_core::notification::{Channel, Notification, NotifyError, OutboxStatus, Recipient};
use analytics_core::ports::{NotificationOutbox, Notifier};
use analytics_core::{Clock, SystemClock};
use analytics_examples::webhook::JsonWebhookNotifier;
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn notification() -> Notification {
    Notification {
        id: uuid::Uuid::new_v4(),
        alert_id: Some(uuid::Uuid::new_v4()),
        severity: Severity::Critical,
        title: "error rate above 5%".to_owned(),
        body: "12% of requests failed over 5 minutes".to_owned(),
        link: Some("https://admin.example/alerts/1".to_owned()),
        channel: Channel::Slack,
        recipient: Recipient::SlackDefault,
    }
}

fn notifier_for(server: &MockServer) -> JsonWebhookNotifier {
    JsonWebhookNotifier::new(
        format!("{}/hook", server.uri()),
        Channel::Slack,
        Duration::from_secs(5),
    )
}

async fn answering(status: u16, extra: Option<(&str, &str)>) -> (MockServer, JsonWebhookNotifier) {
    let server = MockServer::start().await;
    let mut resp = ResponseTemplate::new(status);
    if let Some((k, v)) = extra {
        resp = resp.insert_header(k, v);
    }
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(resp)
        .mount(&server)
        .await;
    let notifier = notifier_for(&server);
    (server, notifier)
}

#[tokio::test]
async fn a_notification_is_posted_as_json_with_its_id_as_idempotency_key() {
    let server = MockServer::start().await;
    let n = notification();
    Mock::given(method("POST"))
        .and(path("/hook"))
        .and(header("idempotency-key", n.id.to_string().as_str()))
        .and(body_partial_json(serde_json::json!({
            "id": n.id, "alert_id": n.alert_id, "severity": "critical",
            "title": "error rate above 5%", "link": "https://admin.example/alerts/1",
        })))
        .respond_with(ResponseTemplate::new(202).insert_header("x-request-id", "msg-7"))
        .expect(1)
        .mount(&server)
        .await;
    let notifier = notifier_for(&server);
    let delivered = notifier.send(&n).await.unwrap();
    assert_eq!(delivered.provider_id.as_deref(), Some("msg-7"));
}

#[tokio::test]
async fn answers_map_to_retry_rate_limit_or_give_up() {
    let n = notification();
    let (_s, notifier) = answering(503, None).await;
    assert!(matches!(
        notifier.send(&n).await,
        Err(NotifyError::Transient(_))
    ));
    let (_s, notifier) = answering(429, Some(("retry-after", "17"))).await;
    assert_eq!(
        notifier.send(&n).await,
        Err(NotifyError::RateLimited {
            retry_after: Some(Duration::from_secs(17))
        })
    );
    let (_s, notifier) = answering(400, None).await;
    assert!(matches!(
        notifier.send(&n).await,
        Err(NotifyError::Permanent(_))
    ));
    // Nothing listening: retried later.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let notifier = JsonWebhookNotifier::new(
        format!("http://{closed}/hook"),
        Channel::Slack,
        Duration::from_secs(2),
    );
    assert!(matches!(
        notifier.send(&n).await,
        Err(NotifyError::Transient(_))
    ));
}

#[tokio::test]
async fn the_dispatcher_delivers_through_the_custom_notifier() {
    let (server, notifier) = answering(200, None).await;
    let store = Arc::new(MemoryStore::new());
    let dispatcher =
        analytics_notify::Dispatcher::new(store.clone(), Arc::new(SystemClock), Default::default())
            .with_notifier(Arc::new(notifier));
    let n = notification();
    store
        .enqueue(std::slice::from_ref(&n), SystemClock.now())
        .await
        .unwrap();
    dispatcher
        .deliver(store.outbox_entry(n.id).await.unwrap())
        .await;
    let entry = store.outbox_entry(n.id).await.unwrap();
    assert_eq!(entry.status, OutboxStatus::Sent, "{entry:?}");
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}
