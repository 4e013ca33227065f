//! Notifications: channels, recipients, messages, the delivery outbox, in-app notifications
//! and per-user or per-team preferences, with the default severity routing.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::alert::Severity;
use crate::error::FieldError;
use crate::ids::{EmailAddress, PhoneNumber, UserId, WebhookUrl};

/// A way of telling people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// Stored in the database, shown in the admin UI.
    InApp,
    /// A Slack incoming webhook.
    Slack,
    /// SMTP email.
    Email,
    /// SMS through Twilio.
    Sms,
}

impl Channel {
    /// All channels.
    pub const ALL: [Channel; 4] = [Self::InApp, Self::Slack, Self::Email, Self::Sms];

    /// The wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InApp => "in_app",
            Self::Slack => "slack",
            Self::Email => "email",
            Self::Sms => "sms",
        }
    }

    /// The default routing: info -> in-app; warning -> in-app, Slack, email;
    /// critical -> all of them plus SMS.
    pub fn defaults_for(severity: Severity) -> &'static [Channel] {
        match severity {
            Severity::Info => &[Self::InApp],
            Severity::Warning => &[Self::InApp, Self::Slack, Self::Email],
            Severity::Critical => &[Self::InApp, Self::Slack, Self::Email, Self::Sms],
        }
    }
}

impl FromStr for Channel {
    type Err = FieldError;
    fn from_str(s: &str) -> Result<Self, FieldError> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| FieldError::new("channel", "must be one of in_app, slack, email, sms"))
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who (or where) a notification goes to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum Recipient {
    /// A user of the admin UI (in-app), also the key for their preferences.
    User(UserId),
    /// A team; members' preferences apply through the team's.
    Team(String),
    /// An email address.
    Email(EmailAddress),
    /// A phone number for SMS.
    Phone(PhoneNumber),
    /// A Slack webhook other than the default one.
    SlackWebhook(WebhookUrl),
    /// The configured default Slack channel.
    SlackDefault,
}

impl Recipient {
    /// The channel that can reach this recipient.
    pub fn channel(&self) -> Option<Channel> {
        match self {
            Self::User(_) => Some(Channel::InApp),
            Self::Team(_) => None,
            Self::Email(_) => Some(Channel::Email),
            Self::Phone(_) => Some(Channel::Sms),
            Self::SlackWebhook(_) | Self::SlackDefault => Some(Channel::Slack),
        }
    }

    /// A short label for logs and history; webhook URLs are reduced to their host so the
    /// secret path never leaks.
    pub fn label(&self) -> String {
        match self {
            Self::User(u) => format!("user:{u}"),
            Self::Team(t) => format!("team:{t}"),
            Self::Email(e) => e.to_string(),
            Self::Phone(p) => p.to_string(),
            Self::SlackWebhook(w) => {
                let rest = w.as_str().split("://").nth(1).unwrap_or("");
                format!("slack:{}", rest.split('/').next().unwrap_or(""))
            }
            Self::SlackDefault => "slack:default".to_owned(),
        }
    }
}

/// One message to one recipient on one channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Idempotency key: a retry of the same delivery carries the same id.
    pub id: Uuid,
    /// The alert it is about, if any.
    pub alert_id: Option<Uuid>,
    /// Urgency.
    pub severity: Severity,
    /// Short subject line.
    pub title: String,
    /// Body text.
    pub body: String,
    /// A link to the alert in the admin UI.
    pub link: Option<String>,
    /// The channel.
    pub channel: Channel,
    /// Who receives it.
    pub recipient: Recipient,
}

/// A successful delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivered {
    /// The provider's message id, when it gives one.
    pub provider_id: Option<String>,
}

/// Why a delivery failed, as the retry logic needs it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    /// May succeed if tried again (timeouts, 5xx, connection refused).
    #[error("transient delivery failure: {0}")]
    Transient(String),
    /// Will fail again (bad recipient, 4xx other than 429, not configured).
    #[error("permanent delivery failure: {0}")]
    Permanent(String),
    /// The provider asked us to slow down.
    #[error("rate limited by the provider")]
    RateLimited {
        /// How long the provider asked us to wait, if it said.
        retry_after: Option<Duration>,
    },
}

impl NotifyError {
    /// Whether a retry may succeed.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, Self::Permanent(_))
    }
}

/// Where an outbox entry stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutboxStatus {
    /// Waiting for (another) attempt.
    Pending,
    /// Delivered.
    Sent,
    /// Given up.
    Failed,
}

impl OutboxStatus {
    /// The wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sent => "sent",
            Self::Failed => "failed",
        }
    }
}

impl FromStr for OutboxStatus {
    type Err = FieldError;
    fn from_str(s: &str) -> Result<Self, FieldError> {
        match s {
            "pending" => Ok(Self::Pending),
            "sent" => Ok(Self::Sent),
            "failed" => Ok(Self::Failed),
            _ => Err(FieldError::new("status", "must be pending, sent or failed")),
        }
    }
}

/// A notification waiting in, or done with, the outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// The message (its `id` is the entry's id and idempotency key).
    pub notification: Notification,
    /// Where it stands.
    pub status: OutboxStatus,
    /// Attempts made.
    pub attempts: u32,
    /// When it may next be tried (also a claim's lease expiry).
    pub next_attempt_at: DateTime<Utc>,
    /// The last failure.
    pub last_error: Option<String>,
    /// When it was enqueued.
    pub created_at: DateTime<Utc>,
    /// When it was delivered.
    pub sent_at: Option<DateTime<Utc>>,
}

/// How the failure of an entry that never reached a provider starts (its channel is disabled
/// or has no notifier): such an entry is `failed`; one a provider refused, or that ran out of
/// retries, is `dead` (see [`OutboxEntry::gave_up_at_provider`]).
pub const NOT_ATTEMPTED_PREFIX: &str = "not attempted: ";

impl OutboxEntry {
    /// Whether the outbox gave up on it after reaching the provider (a permanent refusal or
    /// retries exhausted), as opposed to never being able to try (`failed`, its error
    /// starting with [`NOT_ATTEMPTED_PREFIX`]). Shown as `dead` in alert records.
    pub fn gave_up_at_provider(&self) -> bool {
        self.status == OutboxStatus::Failed
            && !self
                .last_error
                .as_deref()
                .is_some_and(|e| e.starts_with(NOT_ATTEMPTED_PREFIX))
    }

    /// Applies one attempt's result, as every store must: counts the attempt and moves the
    /// entry to sent, to pending (retry at the given time) or to failed.
    pub fn record(&mut self, attempt: &DeliveryAttempt) {
        self.attempts = self.attempts.saturating_add(1);
        match &attempt.outcome {
            AttemptOutcome::Delivered { .. } => {
                self.status = OutboxStatus::Sent;
                self.sent_at = Some(attempt.at);
                self.last_error = None;
            }
            AttemptOutcome::Failed { error, retry_at } => {
                self.last_error = Some(error.clone());
                match retry_at {
                    Some(t) => {
                        self.status = OutboxStatus::Pending;
                        self.next_attempt_at = *t;
                    }
                    None => self.status = OutboxStatus::Failed,
                }
            }
        }
    }
}

/// The result of one delivery attempt, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryAttempt {
    /// When the attempt ended.
    pub at: DateTime<Utc>,
    /// `Ok` or the failure.
    pub outcome: AttemptOutcome,
    /// How long the attempt took, in milliseconds.
    pub duration_ms: u64,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// Delivered.
    Delivered {
        /// Provider message id.
        provider_id: Option<String>,
    },
    /// Failed; retry at `retry_at` if set, else give up.
    Failed {
        /// The error text.
        error: String,
        /// When to try again; `None` gives up.
        retry_at: Option<DateTime<Utc>>,
    },
}

/// A notification shown in the admin UI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InAppNotification {
    /// Its id.
    pub id: Uuid,
    /// The user it is for.
    pub user: UserId,
    /// The alert it is about.
    pub alert_id: Option<Uuid>,
    /// Urgency.
    pub severity: Severity,
    /// Subject.
    pub title: String,
    /// Text.
    pub body: String,
    /// When created.
    pub created_at: DateTime<Utc>,
    /// When the user read it.
    pub read_at: Option<DateTime<Utc>>,
}

/// Whose preferences: a user's own, or a team's (applied to alerts routed to the team).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "type", content = "id", rename_all = "snake_case")]
pub enum PreferenceSubject {
    /// A user.
    User(UserId),
    /// A team.
    Team(String),
}

/// Per-user or per-team notification preferences.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationPreferences {
    /// Whose.
    pub subject: PreferenceSubject,
    /// For each severity, the channels wanted; a severity not listed uses the default routing.
    pub channels: Vec<(Severity, Vec<Channel>)>,
    /// Email for this subject.
    pub email: Option<EmailAddress>,
    /// Phone for SMS.
    pub phone: Option<PhoneNumber>,
    /// Slack webhook for this subject, else the default one.
    pub slack_webhook: Option<WebhookUrl>,
    /// Mute everything but critical alerts.
    pub mute_non_critical: bool,
    /// Hours in which only in-app notifications are sent (critical alerts override them).
    #[serde(default)]
    pub quiet_hours: Option<QuietHours>,
    /// A team's members (each also gets the team's alerts as a user); empty for a user.
    #[serde(default)]
    pub members: Vec<UserId>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// A daily quiet period in a time zone: from `start` to `end` local time (`end` before
/// `start` spans midnight; equal times mean none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuietHours {
    /// Local start time.
    pub start: chrono::NaiveTime,
    /// Local end time (exclusive).
    pub end: chrono::NaiveTime,
    /// An IANA time zone name (`Europe/Berlin`, `UTC`).
    pub timezone: String,
}

impl QuietHours {
    /// Parses `HH:MM` times and an IANA zone; errors name `quiet_hours.start`, `.end` or
    /// `.timezone`.
    pub fn parse(start: &str, end: &str, timezone: &str) -> Result<Self, FieldError> {
        let time = |field: &str, v: &str| {
            chrono::NaiveTime::parse_from_str(v, "%H:%M")
                .map_err(|_| FieldError::new(field, "must be a time HH:MM"))
        };
        let q = Self {
            start: time("quiet_hours.start", start)?,
            end: time("quiet_hours.end", end)?,
            timezone: timezone.to_owned(),
        };
        q.zone()?;
        Ok(q)
    }

    fn zone(&self) -> Result<chrono_tz::Tz, FieldError> {
        self.timezone.parse::<chrono_tz::Tz>().map_err(|_| {
            FieldError::new(
                "quiet_hours.timezone",
                "must be an IANA time zone such as Europe/Berlin or UTC",
            )
        })
    }

    /// Whether `at` falls inside the quiet period (an unknown zone is never quiet).
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        let Ok(zone) = self.zone() else {
            return false;
        };
        let local = at.with_timezone(&zone).time();
        if self.start <= self.end {
            self.start <= local && local < self.end
        } else {
            local >= self.start || local < self.end
        }
    }
}

impl NotificationPreferences {
    /// The channels to use for `severity` at `at`: [`Self::channels_for`], reduced to
    /// in-app during quiet hours unless the alert is critical.
    pub fn channels_at(&self, severity: Severity, at: DateTime<Utc>) -> Vec<Channel> {
        let mut channels = self.channels_for(severity);
        if severity != Severity::Critical
            && self.quiet_hours.as_ref().is_some_and(|q| q.contains(at))
        {
            channels.retain(|c| *c == Channel::InApp);
        }
        channels
    }

    /// The channels to use for `severity` under these preferences.
    pub fn channels_for(&self, severity: Severity) -> Vec<Channel> {
        if self.mute_non_critical && severity != Severity::Critical {
            return Vec::new();
        }
        self.channels
            .iter()
            .find(|(s, _)| *s == severity)
            .map(|(_, c)| c.clone())
            .unwrap_or_else(|| Channel::defaults_for(severity).to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_routing_follows_severity() {
        assert_eq!(Channel::defaults_for(Severity::Info), [Channel::InApp]);
        assert_eq!(
            Channel::defaults_for(Severity::Warning),
            [Channel::InApp, Channel::Slack, Channel::Email]
        );
        assert!(Channel::defaults_for(Severity::Critical).contains(&Channel::Sms));
        assert!(!Channel::defaults_for(Severity::Warning).contains(&Channel::Sms));
    }

    #[test]
    fn preferences_override_by_severity_and_mute() {
        let mut p = NotificationPreferences {
            subject: PreferenceSubject::User(UserId::parse("alice").unwrap()),
            channels: vec![(Severity::Warning, vec![Channel::Email])],
            email: None,
            phone: None,
            slack_webhook: None,
            mute_non_critical: false,
            quiet_hours: None,
            members: Vec::new(),
            updated_at: DateTime::UNIX_EPOCH,
        };
        assert_eq!(p.channels_for(Severity::Warning), [Channel::Email]);
        assert_eq!(p.channels_for(Severity::Info), [Channel::InApp]);
        p.mute_non_critical = true;
        assert!(p.channels_for(Severity::Warning).is_empty());
        assert!(p.channels_for(Severity::Critical).contains(&Channel::Sms));
    }

    #[test]
    fn quiet_hours_keep_only_in_app_unless_critical() {
        let q = QuietHours::parse("22:00", "07:00", "Europe/Berlin").unwrap();
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        // 23:30 in Berlin (winter, UTC+1) is quiet; 12:00 is not; 06:59 is.
        assert!(q.contains(at("2026-01-15T22:30:00Z")));
        assert!(!q.contains(at("2026-01-15T11:00:00Z")));
        assert!(q.contains(at("2026-01-15T05:59:00Z")));
        assert!(!q.contains(at("2026-01-15T06:00:00Z")));
        let p = NotificationPreferences {
            subject: PreferenceSubject::User(UserId::parse("bob").unwrap()),
            channels: Vec::new(),
            email: None,
            phone: None,
            slack_webhook: None,
            mute_non_critical: false,
            quiet_hours: Some(q),
            members: Vec::new(),
            updated_at: DateTime::UNIX_EPOCH,
        };
        let night = at("2026-01-15T22:30:00Z");
        assert_eq!(p.channels_at(Severity::Warning, night), [Channel::InApp]);
        assert!(
            p.channels_at(Severity::Critical, night)
                .contains(&Channel::Sms)
        );
        assert_eq!(
            p.channels_at(Severity::Warning, at("2026-01-15T11:00:00Z")),
            Channel::defaults_for(Severity::Warning)
        );
        assert_eq!(
            QuietHours::parse("22:00", "07:00", "Mars/Olympus")
                .unwrap_err()
                .field,
            "quiet_hours.timezone"
        );
        assert_eq!(
            QuietHours::parse("25:00", "07:00", "UTC")
                .unwrap_err()
                .field,
            "quiet_hours.start"
        );
    }

    #[test]
    fn webhook_labels_hide_the_secret_path() {
        let r = Recipient::SlackWebhook(
            WebhookUrl::parse("https://hooks.slack.com/services/T0/B0/SECRET").unwrap(),
        );
        assert_eq!(r.label(), "slack:hooks.slack.com");
        assert_eq!(r.channel(), Some(Channel::Slack));
        assert!(!NotifyError::Permanent("x".into()).is_retryable());
        assert!(NotifyError::RateLimited { retry_after: None }.is_retryable());
    }
}
