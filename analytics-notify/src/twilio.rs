//! `TwilioSmsNotifier`: one SMS through Twilio's Messages API (a form POST with basic auth
//! to `{base}/2010-04-01/Accounts/{sid}/Messages.json`), the body kept within two GSM-7
//! segments.

use std::time::Duration;

use analytics_core::notification::{Channel, Delivered, Notification, NotifyError, Recipient};
use analytics_core::ports::Notifier;
use async_trait::async_trait;
use url::Url;

use crate::http::{classify, transport_error};
use crate::secret::Secret;
use crate::target::TargetPolicy;

/// The most characters an SMS body gets: two concatenated GSM-7 segments (2 x 153).
pub const MAX_SMS_CHARS: usize = 306;

/// Twilio account settings.
#[derive(Debug, Clone)]
pub struct TwilioSettings {
    /// `TWILIO_API_BASE` (default `https://api.twilio.com`).
    pub api_base: Url,
    /// `TWILIO_ACCOUNT_SID`.
    pub account_sid: String,
    /// `TWILIO_AUTH_TOKEN`.
    pub auth_token: Secret,
    /// `TWILIO_FROM_NUMBER` (E.164).
    pub from: analytics_core::ids::PhoneNumber,
}

/// SMS through Twilio.
#[derive(Debug)]
pub struct TwilioSmsNotifier {
    client: reqwest::Client,
    settings: TwilioSettings,
    policy: TargetPolicy,
}

impl TwilioSmsNotifier {
    /// A notifier for one account; each request gives up after `timeout`.
    pub fn new(settings: TwilioSettings, policy: TargetPolicy, timeout: Duration) -> Self {
        Self {
            client: policy.client(timeout),
            settings,
            policy,
        }
    }

    fn messages_url(&self) -> Result<Url, NotifyError> {
        let base = self.settings.api_base.as_str().trim_end_matches('/');
        Url::parse(&format!(
            "{base}/2010-04-01/Accounts/{}/Messages.json",
            self.settings.account_sid
        ))
        .map_err(|_| NotifyError::Permanent("invalid TWILIO_API_BASE".into()))
    }
}

/// The SMS text: title (which names the severity), body and link, cut to [`MAX_SMS_CHARS`].
pub fn sms_body(n: &Notification) -> String {
    let mut text = format!("{}: {}", n.title, n.body);
    if let Some(link) = &n.link {
        text.push(' ');
        text.push_str(link);
    }
    let text: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() <= MAX_SMS_CHARS {
        return text;
    }
    let mut cut: String = text.chars().take(MAX_SMS_CHARS - 3).collect();
    cut.push_str("...");
    cut
}

#[async_trait]
impl Notifier for TwilioSmsNotifier {
    fn channel(&self) -> Channel {
        Channel::Sms
    }

    async fn send(&self, n: &Notification) -> Result<Delivered, NotifyError> {
        let Recipient::Phone(to) = &n.recipient else {
            return Err(NotifyError::Permanent(format!(
                "sms cannot reach recipient {}",
                n.recipient.label()
            )));
        };
        let url = self.messages_url()?;
        self.policy.check_url(&url)?;
        let form = [
            ("To", to.as_str().to_owned()),
            ("From", self.settings.from.as_str().to_owned()),
            ("Body", sms_body(n)),
        ];
        let response = self
            .client
            .post(url)
            .basic_auth(
                &self.settings.account_sid,
                Some(self.settings.auth_token.expose()),
            )
            .header("Idempotency-Key", n.id.to_string())
            .form(&form)
            .send()
            .await
            .map_err(transport_error)?;
        let body = classify(response).await?;
        let sid = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("sid").and_then(|s| s.as_str()).map(str::to_owned));
        Ok(Delivered { provider_id: sid })
    }
}
