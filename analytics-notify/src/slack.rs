//! `SlackNotifier`: posts a Block Kit message, coloured by severity, to a Slack incoming
//! webhook: the recipient's own webhook, or the default one (`SLACK_ANALYTICS_WEBHOOK`).

use std::time::Duration;

use analytics_core::alert::Severity;
use analytics_core::notification::{Channel, Delivered, Notification, NotifyError, Recipient};
use analytics_core::ports::Notifier;
use async_trait::async_trait;
use serde_json::{Value, json};
use url::Url;

use crate::http::{classify, transport_error};
use crate::target::TargetPolicy;

/// Slack through incoming webhooks. The webhook URLs are secrets: they appear in no log and
/// no error.
pub struct SlackNotifier {
    client: reqwest::Client,
    default_webhook: Option<Url>,
    policy: TargetPolicy,
}

impl std::fmt::Debug for SlackNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackNotifier")
            .field(
                "default_webhook",
                &self.default_webhook.as_ref().map(|_| "***"),
            )
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl SlackNotifier {
    /// A notifier with an optional default webhook; each request gives up after `timeout`.
    pub fn new(default_webhook: Option<Url>, policy: TargetPolicy, timeout: Duration) -> Self {
        Self {
            client: policy.client(timeout),
            default_webhook,
            policy,
        }
    }

    /// Whether a default webhook is configured.
    pub fn has_default(&self) -> bool {
        self.default_webhook.is_some()
    }
}

/// The attachment colour of a severity.
fn colour(severity: Severity) -> &'static str {
    match severity {
        Severity::Info => "#2eb67d",
        Severity::Warning => "#ecb22e",
        Severity::Critical => "#e01e5a",
    }
}

/// The webhook payload: a plain-text fallback and one attachment of blocks in the
/// severity's colour.
pub fn payload(n: &Notification) -> Value {
    let mut context = format!("Severity: *{}*", n.severity.as_str());
    if let Some(link) = &n.link {
        context.push_str(&format!(" | <{link}|Open the alert>"));
    }
    json!({
        "text": n.title,
        "attachments": [{
            "color": colour(n.severity),
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": truncate(&n.title, 150)}},
                {"type": "section", "text": {"type": "mrkdwn", "text": truncate(&n.body, 3000)}},
                {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]}
            ]
        }]
    })
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

#[async_trait]
impl Notifier for SlackNotifier {
    fn channel(&self) -> Channel {
        Channel::Slack
    }

    async fn send(&self, n: &Notification) -> Result<Delivered, NotifyError> {
        let url = match &n.recipient {
            Recipient::SlackWebhook(w) => Url::parse(w.as_str())
                .map_err(|_| NotifyError::Permanent("invalid slack webhook url".into()))?,
            Recipient::SlackDefault => self.default_webhook.clone().ok_or_else(|| {
                NotifyError::Permanent(
                    "slack is not configured (SLACK_ANALYTICS_WEBHOOK is unset)".into(),
                )
            })?,
            other => {
                return Err(NotifyError::Permanent(format!(
                    "slack cannot reach recipient {}",
                    other.label()
                )));
            }
        };
        self.policy.check_url(&url)?;
        let response = self
            .client
            .post(url)
            .header("Idempotency-Key", n.id.to_string())
            .json(&payload(n))
            .send()
            .await
            .map_err(transport_error)?;
        classify(response).await?;
        Ok(Delivered { provider_id: None })
    }
}
