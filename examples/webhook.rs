//! A custom [`Notifier`]: a generic JSON webhook. Each notification is POSTed as one JSON
//! object to a configured URL with its id as `Idempotency-Key`; the answer decides what the
//! dispatcher does next (2xx delivered, 429 rate limited honouring `Retry-After`, 5xx and
//! network errors retried, other 4xx given up). `webhook_notifier.rs` runs it through the
//! dispatcher; `tests/webhook.rs` checks each answer against a real HTTP server.

use std::time::Duration;

use analytics_core::notification::{Channel, Delivered, Notification, NotifyError};
use analytics_core::ports::Notifier;
use serde_json::json;

/// Delivers one channel's notifications to a JSON webhook.
#[derive(Debug, Clone)]
pub struct JsonWebhookNotifier {
    url: String,
    channel: Channel,
    client: reqwest::Client,
}

impl JsonWebhookNotifier {
    /// Delivers `channel` (e.g. [`Channel::Slack`], replacing the built-in Slack notifier)
    /// to `url`, each call bounded by `timeout`.
    pub fn new(url: impl Into<String>, channel: Channel, timeout: Duration) -> Self {
        // reqwest is built without a default TLS provider: install ring once.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a client with rustls and ring");
        Self {
            url: url.into(),
            channel,
            client,
        }
    }
}

#[async_trait::async_trait]
impl Notifier for JsonWebhookNotifier {
    fn channel(&self) -> Channel {
        self.channel
    }

    async fn send(&self, n: &Notification) -> Result<Delivered, NotifyError> {
        let body = json!({
            "id": n.id,
            "alert_id": n.alert_id,
            "severity": n.severity,
            "title": n.title,
            "body": n.body,
            "link": n.link,
        });
        let resp = self
            .client
            .post(&self.url)
            .header("Idempotency-Key", n.id.to_string())
            .json(&body)
            .send()
            .await
            .map_err(|e| NotifyError::Transient(format!("webhook unreachable: {e}")))?;
        let status = resp.status();
        if status.is_success() {
            let provider_id = resp
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            return Ok(Delivered { provider_id });
        }
        if status.as_u16() == 429 {
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            return Err(NotifyError::RateLimited { retry_after });
        }
        let message = format!("webhook answered {status}");
        if status.is_server_error() {
            Err(NotifyError::Transient(message))
        } else {
            Err(NotifyError::Permanent(message))
        }
    }
}
