//! A custom notification channel: the generic JSON webhook of `webhook.rs` plugged into the
//! outbox dispatcher in place of Slack. A small receiver on a free loopback port stands in
//! for the webhook; a notification is enqueued, delivered, and its outbox entry read back.
//!
//! Run with `cargo run -p analytics-examples --example webhook_notifier`
//! (`WEBHOOK_URL=https://...` sends to a real endpoint instead).

use std::sync::Arc;
use std::time::Duration;

use analytics_core::alert::Severity;
use analytics_core::memory::MemoryStore;
use analytics_core::notification::{Channel, Notification, Recipient};
use analytics_core::ports::NotificationOutbox;
use analytics_core::{Clock, SystemClock};
use analytics_examples::webhook::JsonWebhookNotifier;
use analytics_notify::{Dispatcher, DispatcherOptions};
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::Json;
use poem::{Route, Server, handler, post};
use serde_json::Value;

#[handler]
fn receive(Json(body): Json<Value>) -> &'static str {
    eprintln!("webhook received: {body}");
    "ok"
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = match std::env::var("WEBHOOK_URL") {
        Ok(url) => url,
        Err(_) => {
            let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await?;
            let addr = acceptor.local_addr()[0].to_string();
            let addr = addr.trim_start_matches("socket://").to_owned();
            tokio::spawn(
                Server::new_with_acceptor(acceptor).run(Route::new().at("/hook", post(receive))),
            );
            format!("http://{addr}/hook")
        }
    };
    let store = Arc::new(MemoryStore::new());
    let dispatcher = Dispatcher::new(
        store.clone(),
        Arc::new(SystemClock),
        DispatcherOptions::default(),
    )
    .with_notifier(Arc::new(JsonWebhookNotifier::new(
        url.clone(),
        Channel::Slack,
        Duration::from_secs(5),
    )));

    let notification = Notification {
        id: uuid::Uuid::new_v4(),
        alert_id: None,
        severity: Severity::Warning,
        title: "p95 latency of /api/v1/products/:id above 800 ms".to_owned(),
        body: "p95 was 1240 ms over the last 5 minutes (threshold 800 ms).".to_owned(),
        link: None,
        channel: Channel::Slack,
        recipient: Recipient::SlackDefault,
    };
    store
        .enqueue(std::slice::from_ref(&notification), SystemClock.now())
        .await?;
    let entry = store.outbox_entry(notification.id).await?;
    dispatcher.deliver(entry).await;
    let entry = store.outbox_entry(notification.id).await?;
    eprintln!(
        "outbox entry {} to {url}: {:?} after {} attempt(s){}",
        notification.id,
        entry.status,
        entry.attempts,
        entry
            .last_error
            .map(|e| format!(" ({e})"))
            .unwrap_or_default()
    );
    Ok(())
}
