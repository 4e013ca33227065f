//! Notification delivery wiring: the channel settings read by the binary, the dispatcher
//! built from them (a channel without settings is disabled, with the reason its entries
//! fail with), and what `/readyz` and `/metrics` report about each channel. The delivery
//! logic itself is `analytics_notify`.

use std::collections::BTreeMap;
use std::sync::Arc;

use analytics_core::SystemClock;
use analytics_core::ids::PhoneNumber;
use analytics_core::notification::Channel;
use analytics_core::ports::Store;
use analytics_notify::{
    Dispatcher, DispatcherOptions, DispatcherStats, InAppNotifier, Secret, SlackNotifier,
    SmtpEmailNotifier, SmtpSettings, TargetPolicy, TwilioSettings, TwilioSmsNotifier,
};
use tokio::sync::Notify;
use url::Url;

/// The default Twilio API base.
pub const TWILIO_DEFAULT_BASE: &str = "https://api.twilio.com";

/// Channel settings, from the environment (see "Notifications" in `docs/SERVER.md`).
/// `Debug` shows which are set, never their values.
#[derive(Clone, Default)]
pub struct NotifySettings {
    /// `SLACK_ANALYTICS_WEBHOOK`.
    pub slack_webhook: Option<Secret>,
    /// `TWILIO_ACCOUNT_SID`.
    pub twilio_account_sid: Option<String>,
    /// `TWILIO_AUTH_TOKEN`.
    pub twilio_auth_token: Option<Secret>,
    /// `TWILIO_FROM_NUMBER`.
    pub twilio_from: Option<String>,
    /// `TWILIO_API_BASE` (default [`TWILIO_DEFAULT_BASE`]).
    pub twilio_api_base: Option<String>,
    /// `ANALYTICS_SMTP_URL`.
    pub smtp_url: Option<Secret>,
    /// `ANALYTICS_SMTP_FROM`.
    pub smtp_from: Option<String>,
    /// `ANALYTICS_PUBLIC_URL`: the admin UI's base, for links in emails.
    pub public_url: Option<String>,
    /// `ANALYTICS_ALLOW_PRIVATE_TARGETS`.
    pub allow_private_targets: bool,
    /// Dispatcher tuning.
    pub dispatcher: DispatcherOptions,
}

impl std::fmt::Debug for NotifySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |o: bool| if o { "set" } else { "unset" };
        f.debug_struct("NotifySettings")
            .field("slack_webhook", &set(self.slack_webhook.is_some()))
            .field("twilio_account_sid", &self.twilio_account_sid)
            .field("twilio_auth_token", &set(self.twilio_auth_token.is_some()))
            .field("twilio_from", &self.twilio_from)
            .field("twilio_api_base", &self.twilio_api_base)
            .field("smtp_url", &set(self.smtp_url.is_some()))
            .field("smtp_from", &self.smtp_from)
            .field("public_url", &self.public_url)
            .field("allow_private_targets", &self.allow_private_targets)
            .field("dispatcher", &self.dispatcher)
            .finish()
    }
}

/// Whether each channel is enabled, and why not; plus the dispatcher's counters.
#[derive(Debug, Default)]
pub struct ChannelReport {
    /// Disabled channels with the reason (absent: enabled).
    pub disabled: BTreeMap<Channel, String>,
    /// The running dispatcher's counters (none before it starts).
    pub stats: Option<Arc<DispatcherStats>>,
}

impl NotifySettings {
    fn policy(&self) -> TargetPolicy {
        TargetPolicy {
            allow_private: self.allow_private_targets,
        }
    }

    /// Builds the dispatcher over `store` (call inside the Tokio runtime: the SMTP pool
    /// needs it) with every channel that has settings; the others are disabled with the
    /// reason. Settings that are present but invalid disable their channel too, and are
    /// logged without their values.
    pub fn dispatcher(&self, store: Arc<dyn Store>, wake: Arc<Notify>) -> Dispatcher {
        let timeout = self.dispatcher.call_timeout;
        let policy = self.policy();
        let mut d = Dispatcher::new(
            store.clone(),
            Arc::new(SystemClock),
            self.dispatcher.clone(),
        )
        .with_waker(wake)
        .with_notifier(Arc::new(InAppNotifier::new(store, Arc::new(SystemClock))));
        d = match self.slack() {
            Ok(url) => {
                let slack = SlackNotifier::new(url.clone(), policy, timeout);
                let d = d.with_notifier(Arc::new(slack));
                // Recipients' own webhooks still work without a default one.
                if url.is_none() {
                    d.with_disabled_report(Channel::Slack, "SLACK_ANALYTICS_WEBHOOK is unset")
                } else {
                    d
                }
            }
            Err(reason) => d.with_disabled(Channel::Slack, reason),
        };
        d = match self.twilio() {
            Ok(s) => d.with_notifier(Arc::new(TwilioSmsNotifier::new(s, policy, timeout))),
            Err(reason) => d.with_disabled(Channel::Sms, reason),
        };
        d = match self.smtp().and_then(|s| SmtpEmailNotifier::new(s, timeout)) {
            Ok(mailer) => d.with_notifier(Arc::new(mailer)),
            Err(reason) => d.with_disabled(Channel::Email, reason),
        };
        for (channel, reason) in d.disabled() {
            tracing::info!(
                channel = channel.as_str(),
                reason = reason.as_str(),
                "notification channel disabled"
            );
        }
        d
    }

    fn slack(&self) -> Result<Option<Url>, String> {
        let Some(hook) = &self.slack_webhook else {
            return Ok(None);
        };
        let url = Url::parse(hook.expose())
            .map_err(|_| "SLACK_ANALYTICS_WEBHOOK is not a URL".to_owned())?;
        self.policy()
            .check_url(&url)
            .map_err(|e| format!("SLACK_ANALYTICS_WEBHOOK is refused: {e}"))?;
        Ok(Some(url))
    }

    fn twilio(&self) -> Result<TwilioSettings, String> {
        let missing: Vec<&str> = [
            ("TWILIO_ACCOUNT_SID", self.twilio_account_sid.is_none()),
            ("TWILIO_AUTH_TOKEN", self.twilio_auth_token.is_none()),
            ("TWILIO_FROM_NUMBER", self.twilio_from.is_none()),
        ]
        .into_iter()
        .filter_map(|(name, absent)| absent.then_some(name))
        .collect();
        if !missing.is_empty() {
            return Err(format!("{} unset", missing.join(", ")));
        }
        let base = self
            .twilio_api_base
            .as_deref()
            .unwrap_or(TWILIO_DEFAULT_BASE);
        let api_base = Url::parse(base).map_err(|_| "TWILIO_API_BASE is not a URL".to_owned())?;
        self.policy()
            .check_url(&api_base)
            .map_err(|e| format!("TWILIO_API_BASE is refused: {e}"))?;
        let from = PhoneNumber::parse(self.twilio_from.clone().unwrap_or_default())
            .map_err(|e| format!("TWILIO_FROM_NUMBER {}", e.message))?;
        Ok(TwilioSettings {
            api_base,
            account_sid: self.twilio_account_sid.clone().unwrap_or_default(),
            auth_token: self.twilio_auth_token.clone().unwrap_or(Secret::new("")),
            from,
        })
    }

    fn smtp(&self) -> Result<SmtpSettings, String> {
        let (Some(url), Some(from)) = (&self.smtp_url, &self.smtp_from) else {
            return Err(match (&self.smtp_url, &self.smtp_from) {
                (None, None) => "ANALYTICS_SMTP_URL, ANALYTICS_SMTP_FROM unset",
                (None, _) => "ANALYTICS_SMTP_URL unset",
                _ => "ANALYTICS_SMTP_FROM unset",
            }
            .to_owned());
        };
        let mut s = SmtpSettings::parse(url.expose(), from)?;
        s.link_base = self.public_url.clone();
        Ok(s)
    }
}
