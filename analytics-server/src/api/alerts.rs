//! Alerting (role `admin`): the metric catalog, alert configurations (CRUD, `If-Match`,
//! audit) and alert history (listings, acknowledge, resolve, bulk acknowledge). Thin: the
//! wire types here convert to and from `analytics_core::alert`; validation is the core's
//! (`AlertConfigSpec::validate`, `MetricCatalog::check`) plus the wire-only checks (one
//! recipient kind per entry, known channels, integer ranges) with errors naming the field as
//! the client wrote it (`recipients[1].email`, `channels[0]`, `dimensions.route`).

use std::collections::{BTreeMap, HashMap};

use analytics_core::alert::{
    Alert, AlertConfig, AlertConfigSpec, AlertStatus, AuditAction, AuditEntry, Condition,
    NoDataPolicy, Severity, Stat,
};
use analytics_core::ids::{UserId, WebhookUrl};
use analytics_core::notification::{Channel, OutboxEntry, OutboxStatus, Recipient};
use analytics_core::ports::AlertFilter;
use analytics_core::rollup::Dimensions;
use analytics_core::rollup::catalog::MetricCatalog;
use analytics_core::{
    Clock, EmailAddress, MetricName, PageRequest, PhoneNumber, ProjectId, SystemClock, Threshold,
};
use chrono::{DateTime, Utc};
use poem::http::StatusCode;
use poem::{Request, RequestBody};
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::{Json, ParsePayload, Payload};
use poem_openapi::registry::{MetaSchemaRef, Registry};
use poem_openapi::types::{ParseFromJSON, Type};
use poem_openapi::{ApiResponse, Enum, Object, OpenApi, Union};
use uuid::Uuid;

use super::ApiTags;
use super::events::BearerAuth;
use super::health::{RangeBody, RangePreset, parse_window};
use super::request::{default_limit, project_filter, require_admin, visible};
use super::responses::{ApiResult, Body, Conflict, NotFound, PreconditionFailed};
use crate::error::ApiError;
use crate::state::AppState;

/// The metric catalog alert configurations are checked against.
pub(crate) fn catalog(state: &AppState) -> MetricCatalog {
    MetricCatalog::from_specs(&state.health.specs)
}

/// The alerting endpoints.
#[derive(Debug)]
pub struct AlertsApi {
    pub(crate) state: AppState,
}

macro_rules! wire_enum {
    ($(#[$doc:meta])* $name:ident => $core:ty { $($(#[$vdoc:meta])* $v:ident),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, serde::Deserialize)]
        #[oai(rename_all = "snake_case")]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vdoc])* $v,)+
        }

        impl From<$name> for $core {
            fn from(v: $name) -> Self {
                match v {
                    $($name::$v => <$core>::$v,)+
                }
            }
        }

        impl From<$core> for $name {
            fn from(v: $core) -> Self {
                match v {
                    $(<$core>::$v => $name::$v,)+
                }
            }
        }
    };
}

wire_enum!(
    /// A statistic of a metric.
    StatBody => Stat {
        /// Number of (re-weighted) observations.
        Count,
        /// Sum of values.
        Sum,
        /// Mean value.
        Avg,
        /// Smallest value.
        Min,
        /// Largest value.
        Max,
        /// Median.
        P50,
        /// 95th percentile.
        P95,
        /// 99th percentile.
        P99,
        /// Observations per second over the window.
        Rate,
    }
);

wire_enum!(
    /// The condition a configuration checks.
    ConditionBody => Condition {
        /// Breach when the value is above the threshold.
        ThresholdAbove,
        /// Breach when the value is below the threshold.
        ThresholdBelow,
        /// Breach when the value changed by more than `threshold` percent against the
        /// previous window.
        RateOfChange,
        /// Breach when the value is more than `threshold` robust standard deviations from
        /// its seasonal baseline.
        Anomaly,
    }
);

wire_enum!(
    /// How urgent an alert is.
    SeverityBody => Severity {
        /// In-app only by default.
        Info,
        /// In-app, Slack and email by default.
        Warning,
        /// Every channel, SMS included.
        Critical,
    }
);

wire_enum!(
    /// What a window without data means.
    NoDataBody => NoDataPolicy {
        /// Healthy: pending breaches drop, a firing alert recovers.
        Ok,
        /// A breach (subject to `for_secs`).
        Alerting,
        /// Nothing changes.
        Keep,
    }
);

wire_enum!(
    /// Where an alert stands.
    AlertStatusBody => AlertStatus {
        /// Fired, not acknowledged.
        Active,
        /// Someone is on it.
        Acknowledged,
        /// Over.
        Resolved,
    }
);

#[allow(clippy::derivable_impls)] // the enum comes from `wire_enum!`
impl Default for NoDataBody {
    fn default() -> Self {
        Self::Keep
    }
}

/// One recipient as stored: exactly one of the fields is present.
#[derive(Debug, Clone, Default, Object)]
pub struct RecipientBody {
    /// An email address.
    #[oai(skip_serializing_if_is_none)]
    pub email: Option<String>,
    /// A phone number in E.164 form (`+15551234567`), for SMS.
    #[oai(skip_serializing_if_is_none)]
    pub phone: Option<String>,
    /// A user of the admin UI (JWT `sub`): in-app, and their preferences.
    #[oai(skip_serializing_if_is_none)]
    pub user: Option<String>,
    /// A team (its preferences).
    #[oai(skip_serializing_if_is_none)]
    pub team: Option<String>,
    /// A Slack incoming webhook other than the default one (`https://...`).
    #[oai(skip_serializing_if_is_none)]
    pub slack_webhook: Option<String>,
}

/// An email recipient.
#[derive(Debug, Clone, Object, serde::Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct EmailRecipient {
    /// The address.
    pub email: String,
}

/// An SMS recipient.
#[derive(Debug, Clone, Object, serde::Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct PhoneRecipient {
    /// The number in E.164 form (`+15551234567`).
    pub phone: String,
}

/// A user of the admin UI (in-app, and their preferences).
#[derive(Debug, Clone, Object, serde::Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct UserRecipient {
    /// The user's JWT `sub`.
    pub user: String,
}

/// A team (its preferences).
#[derive(Debug, Clone, Object, serde::Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct TeamRecipient {
    /// The team's name.
    pub team: String,
}

/// A Slack incoming webhook other than the default one.
#[derive(Debug, Clone, Object, serde::Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct SlackWebhookRecipient {
    /// The webhook URL (`https://...`).
    pub slack_webhook: String,
}

/// One recipient as submitted: an object with exactly one of `email`, `phone`, `user`,
/// `team`, `slack_webhook`.
#[derive(Debug, Clone, Union, serde::Deserialize)]
#[oai(one_of)]
#[serde(untagged)]
pub enum RecipientInput {
    /// Email.
    Email(EmailRecipient),
    /// SMS.
    Phone(PhoneRecipient),
    /// A user.
    User(UserRecipient),
    /// A team.
    Team(TeamRecipient),
    /// A Slack webhook.
    SlackWebhook(SlackWebhookRecipient),
}

impl RecipientInput {
    fn to_core(&self, i: usize) -> Result<Recipient, ApiError> {
        let at = |name: &str| format!("recipients[{i}].{name}");
        match self {
            Self::Email(r) => EmailAddress::parse(r.email.as_str())
                .map(Recipient::Email)
                .map_err(|e| ApiError::invalid(at("email"), e.message)),
            Self::Phone(r) => PhoneNumber::parse(r.phone.as_str())
                .map(Recipient::Phone)
                .map_err(|e| ApiError::invalid(at("phone"), e.message)),
            Self::User(r) => UserId::parse(r.user.as_str())
                .map(Recipient::User)
                .map_err(|e| ApiError::invalid(at("user"), e.message)),
            Self::Team(r) => {
                let t = r.team.trim();
                if t.is_empty() || t.chars().count() > 100 {
                    return Err(ApiError::invalid(at("team"), "must be 1 to 100 characters"));
                }
                Ok(Recipient::Team(t.to_owned()))
            }
            Self::SlackWebhook(r) => WebhookUrl::parse(r.slack_webhook.as_str())
                .map(Recipient::SlackWebhook)
                .map_err(|e| ApiError::invalid(at("slack_webhook"), e.message)),
        }
    }
}

impl RecipientBody {
    fn from_core(r: &Recipient) -> Option<Self> {
        let mut out = Self::default();
        match r {
            Recipient::Email(e) => out.email = Some(e.to_string()),
            Recipient::Phone(p) => out.phone = Some(p.to_string()),
            Recipient::User(u) => out.user = Some(u.to_string()),
            Recipient::Team(t) => out.team = Some(t.clone()),
            Recipient::SlackWebhook(w) => out.slack_webhook = Some(w.to_string()),
            // The default webhook is reached whenever Slack is among the channels.
            Recipient::SlackDefault => return None,
        }
        Some(out)
    }
}

fn default_project() -> String {
    "default".to_owned()
}

/// An alert configuration as submitted (create and full replace).
#[derive(Debug, Clone, Object, serde::Deserialize)]
pub struct AlertConfigRequest {
    /// A name, 1 to 200 characters, unique in the project (409 otherwise).
    pub name: String,
    /// A metric of the catalog (`GET /api/v1/analytics/alerts/metrics`).
    pub metric: String,
    /// The statistic; one the catalog offers for the metric.
    pub stat: StatBody,
    /// Dimension values to watch (`{"route": "/api/v1/orders"}`); the names must form one
    /// of the metric's groupings. Empty, null or absent: the metric overall.
    #[oai(nullable)]
    pub dimensions: Option<BTreeMap<String, String>>,
    /// The condition.
    pub condition: ConditionBody,
    /// A finite number: the value, a percent change (`rate_of_change`, > 0) or a z-score
    /// (`anomaly`, > 0).
    pub threshold: f64,
    /// The window the metric is read over, 60 to 604800 seconds.
    pub window_secs: i64,
    /// The severity.
    pub severity: SeverityBody,
    /// After a notification, nothing more is sent for this configuration for this long
    /// (0 to 604800 seconds; default 0).
    #[oai(nullable)]
    pub cooldown_secs: Option<i64>,
    /// Channels (`in_app`, `slack`, `email`, `sms`); absent, null or empty: by severity.
    #[oai(nullable)]
    pub channels: Option<Vec<String>>,
    /// Who to tell (at most 100).
    #[oai(nullable)]
    pub recipients: Option<Vec<RecipientInput>>,
    /// Whether the engine evaluates it (default true).
    #[oai(nullable)]
    pub enabled: Option<bool>,
    /// How long a breach must hold before the alert fires (0 to 604800 seconds; default 0).
    #[oai(nullable)]
    pub for_secs: Option<i64>,
    /// Hysteresis: a firing alert recovers only once the value crosses back past this
    /// (null or absent: as soon as the condition no longer holds).
    #[oai(nullable)]
    pub recovery_threshold: Option<f64>,
    /// Whether recovery resolves the alert as `auto` (default true).
    #[oai(nullable)]
    pub auto_resolve: Option<bool>,
    /// What a window without data means (default `keep`).
    #[oai(nullable)]
    pub no_data: Option<NoDataBody>,
    /// Project slug (default `default`).
    #[oai(nullable)]
    pub project: Option<String>,
}

fn secs(field: &str, v: i64, min: i64, max: i64) -> Result<u32, ApiError> {
    if (min..=max).contains(&v) {
        u32::try_from(v).map_err(|_| ApiError::invalid(field, "is out of range"))
    } else {
        Err(ApiError::invalid(
            field,
            format!("must be from {min} to {max} seconds"),
        ))
    }
}

impl AlertConfigRequest {
    /// The core spec, checked against the catalog and the core's rules.
    pub(crate) fn to_spec(&self, catalog: &MetricCatalog) -> Result<AlertConfigSpec, ApiError> {
        let project = ProjectId::parse(self.project.clone().unwrap_or_else(default_project))
            .map_err(|e| ApiError::invalid("project", e.message))?;
        let dimensions = Dimensions::from_pairs(
            self.dimensions
                .iter()
                .flatten()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        )
        .map_err(|e| ApiError::invalid(e.field, e.message))?;
        let stat = Stat::from(self.stat);
        let info = catalog
            .check(&self.metric, stat, &dimensions)
            .map_err(|e| ApiError::invalid(e.field, e.message))?;
        let threshold = Threshold::new(self.threshold)
            .map_err(|e| ApiError::invalid("threshold", e.message))?;
        let recovery_threshold = self
            .recovery_threshold
            .map(Threshold::new)
            .transpose()
            .map_err(|e| ApiError::invalid("recovery_threshold", e.message))?;
        let window_secs = secs("window_secs", self.window_secs, 60, 604_800)?;
        let cooldown_secs = secs("cooldown_secs", self.cooldown_secs.unwrap_or(0), 0, 604_800)?;
        let for_secs = secs("for_secs", self.for_secs.unwrap_or(0), 0, 604_800)?;
        let mut channels = Vec::new();
        for (i, c) in self.channels.iter().flatten().enumerate() {
            let c: Channel = c.parse().map_err(|_| {
                ApiError::invalid(
                    format!("channels[{i}]"),
                    "must be one of in_app, slack, email, sms",
                )
            })?;
            if !channels.contains(&c) {
                channels.push(c);
            }
        }
        let given = self.recipients.as_deref().unwrap_or_default();
        if given.len() > 100 {
            return Err(ApiError::invalid(
                "recipients",
                "must have at most 100 entries",
            ));
        }
        let recipients = given
            .iter()
            .enumerate()
            .map(|(i, r)| r.to_core(i))
            .collect::<Result<Vec<_>, _>>()?;
        let spec = AlertConfigSpec {
            project,
            name: self.name.clone(),
            metric: info.metric.clone(),
            stat,
            dimensions,
            condition: self.condition.into(),
            threshold,
            window_secs,
            severity: self.severity.into(),
            cooldown_secs,
            channels,
            recipients,
            enabled: self.enabled.unwrap_or(true),
            for_secs,
            recovery_threshold,
            auto_resolve: self.auto_resolve.unwrap_or(true),
            no_data: self.no_data.unwrap_or_default().into(),
        };
        spec.validate().map_err(|e| {
            let first = e.0.into_iter().next();
            first.map_or_else(
                || ApiError::invalid("body", "invalid"),
                |f| ApiError::invalid(f.field, f.message),
            )
        })?;
        Ok(spec)
    }
}

/// A stored alert configuration.
#[derive(Debug, Clone, Object)]
pub struct AlertConfigBody {
    /// Its id.
    pub id: Uuid,
    /// 1 on creation, +1 per replace.
    pub version: u64,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Project slug.
    pub project: String,
    /// Name.
    pub name: String,
    /// Metric.
    pub metric: String,
    /// Statistic.
    pub stat: StatBody,
    /// Dimension values watched (empty: overall).
    pub dimensions: BTreeMap<String, String>,
    /// Condition.
    pub condition: ConditionBody,
    /// Threshold.
    pub threshold: f64,
    /// Window in seconds.
    pub window_secs: u32,
    /// Severity.
    pub severity: SeverityBody,
    /// Cooldown in seconds.
    pub cooldown_secs: u32,
    /// Channels configured (empty: by severity).
    pub channels: Vec<String>,
    /// Recipients.
    pub recipients: Vec<RecipientBody>,
    /// Whether the engine evaluates it.
    pub enabled: bool,
    /// How long a breach must hold, in seconds.
    pub for_secs: u32,
    /// Hysteresis threshold, if any.
    #[oai(nullable)]
    pub recovery_threshold: Option<f64>,
    /// Whether recovery resolves the alert.
    pub auto_resolve: bool,
    /// What a window without data means.
    pub no_data: NoDataBody,
}

impl From<&AlertConfig> for AlertConfigBody {
    fn from(c: &AlertConfig) -> Self {
        let s = &c.spec;
        Self {
            id: c.id,
            version: c.version,
            created_at: c.created_at,
            updated_at: c.updated_at,
            project: s.project.to_string(),
            name: s.name.clone(),
            metric: s.metric.to_string(),
            stat: s.stat.into(),
            dimensions: dims_map(&s.dimensions),
            condition: s.condition.into(),
            threshold: s.threshold.get(),
            window_secs: s.window_secs,
            severity: s.severity.into(),
            cooldown_secs: s.cooldown_secs,
            channels: s.channels.iter().map(|c| c.as_str().to_owned()).collect(),
            recipients: s
                .recipients
                .iter()
                .filter_map(RecipientBody::from_core)
                .collect(),
            enabled: s.enabled,
            for_secs: s.for_secs,
            recovery_threshold: s.recovery_threshold.map(Threshold::get),
            auto_resolve: s.auto_resolve,
            no_data: s.no_data.into(),
        }
    }
}

fn dims_map(d: &Dimensions) -> BTreeMap<String, String> {
    d.iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Configurations.
#[derive(Debug, Clone, Object)]
pub struct AlertConfigList {
    /// Oldest first.
    pub items: Vec<AlertConfigBody>,
}

/// One metric of the catalog.
#[derive(Debug, Clone, Object)]
pub struct CatalogMetric {
    /// Its name.
    pub metric: String,
    /// The statistics configs may use.
    pub stats: Vec<StatBody>,
    /// The dimensions it can be filtered by.
    pub dimensions: Vec<String>,
    /// What it measures.
    pub description: String,
}

/// The metric catalog.
#[derive(Debug, Clone, Object)]
pub struct CatalogList {
    /// Every metric.
    pub items: Vec<CatalogMetric>,
}

/// What an audit entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum AuditActionBody {
    /// Created.
    Created,
    /// Replaced.
    Updated,
    /// Deleted.
    Deleted,
    /// Imported.
    Imported,
}

/// One change of a configuration.
#[derive(Debug, Clone, Object)]
pub struct AuditBody {
    /// The version after the change (the deleted version for a deletion).
    pub version: u64,
    /// When.
    pub at: DateTime<Utc>,
    /// Who (JWT `sub`).
    pub by: String,
    /// What was done.
    pub action: AuditActionBody,
    /// The configuration before (null on creation).
    #[oai(nullable)]
    pub before: Option<AlertConfigBody>,
    /// The configuration after (null on deletion).
    #[oai(nullable)]
    pub after: Option<AlertConfigBody>,
}

/// A configuration's audit trail.
#[derive(Debug, Clone, Object)]
pub struct AuditList {
    /// Oldest first.
    pub items: Vec<AuditBody>,
}

fn audit_body(e: &AuditEntry) -> Result<AuditBody, ApiError> {
    let parse = |v: &Option<serde_json::Value>| -> Result<Option<AlertConfig>, ApiError> {
        v.clone()
            .map(serde_json::from_value::<AlertConfig>)
            .transpose()
            .map_err(ApiError::internal)
    };
    let before = parse(&e.before)?;
    let after = parse(&e.after)?;
    let version = after.as_ref().or(before.as_ref()).map_or(0, |c| c.version);
    Ok(AuditBody {
        version,
        at: e.at,
        by: e.actor.clone(),
        action: match e.action {
            AuditAction::Created => AuditActionBody::Created,
            AuditAction::Updated => AuditActionBody::Updated,
            AuditAction::Deleted => AuditActionBody::Deleted,
            AuditAction::Imported => AuditActionBody::Imported,
        },
        before: before.as_ref().map(AlertConfigBody::from),
        after: after.as_ref().map(AlertConfigBody::from),
    })
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum DeliveryStatusBody {
    /// Waiting for (another) attempt.
    Pending,
    /// Delivered.
    Sent,
    /// Never attempted: its channel is disabled or has no notifier (the reason in `error`).
    Failed,
    /// Given up at the provider: a permanent refusal (a 4xx other than 429) or retries
    /// exhausted (the provider's message in `error`).
    Dead,
}

/// One (channel, recipient) delivery of an alert's notices.
#[derive(Debug, Clone, Object)]
pub struct NotificationBody {
    /// `in_app`, `slack`, `email` or `sms`.
    pub channel: String,
    /// The recipient's label (address, number, `user:<sub>`, `slack:default`, ...).
    pub recipient: String,
    /// Where it stands.
    pub status: DeliveryStatusBody,
    /// Tries so far.
    pub attempts: u32,
    /// When delivered.
    #[oai(nullable)]
    pub sent_at: Option<DateTime<Utc>>,
    /// The last failure.
    #[oai(nullable)]
    pub error: Option<String>,
}

/// The deliveries of an alert: one per (channel, recipient), summed over its notices
/// (fired, reminders, resolved): `attempts` adds up, the newest entry gives the status.
fn notifications_of(entries: &[OutboxEntry]) -> Vec<NotificationBody> {
    let mut out: Vec<NotificationBody> = Vec::new();
    for e in entries {
        let channel = e.notification.channel.as_str().to_owned();
        let recipient = e.notification.recipient.label();
        let status = match e.status {
            OutboxStatus::Pending => DeliveryStatusBody::Pending,
            OutboxStatus::Sent => DeliveryStatusBody::Sent,
            OutboxStatus::Failed if e.gave_up_at_provider() => DeliveryStatusBody::Dead,
            OutboxStatus::Failed => DeliveryStatusBody::Failed,
        };
        match out
            .iter_mut()
            .find(|n| n.channel == channel && n.recipient == recipient)
        {
            Some(n) => {
                n.attempts = n.attempts.saturating_add(e.attempts);
                n.status = status;
                n.sent_at = e.sent_at.or(n.sent_at);
                n.error = e.last_error.clone();
            }
            None => out.push(NotificationBody {
                channel,
                recipient,
                status,
                attempts: e.attempts,
                sent_at: e.sent_at,
                error: e.last_error.clone(),
            }),
        }
    }
    out
}

/// A fired alert.
#[derive(Debug, Clone, Object)]
pub struct AlertBody {
    /// Its id.
    pub id: Uuid,
    /// The configuration that fired.
    pub config_id: Uuid,
    /// The configuration's name (its last known one if it was deleted).
    #[oai(nullable)]
    pub name: Option<String>,
    /// Project slug.
    pub project: String,
    /// Metric.
    pub metric: String,
    /// Statistic (null when the configuration is unknown).
    #[oai(nullable)]
    pub stat: Option<StatBody>,
    /// Dimension values watched.
    pub dimensions: BTreeMap<String, String>,
    /// Condition (null when the configuration is unknown).
    #[oai(nullable)]
    pub condition: Option<ConditionBody>,
    /// Severity at firing time.
    pub severity: SeverityBody,
    /// Where it stands.
    pub status: AlertStatusBody,
    /// The observed value that fired.
    pub value: f64,
    /// The threshold it was compared with.
    pub threshold: f64,
    /// Detection time.
    pub triggered_at: DateTime<Utc>,
    /// When acknowledged.
    #[oai(nullable)]
    pub acknowledged_at: Option<DateTime<Utc>>,
    /// Who acknowledged it.
    #[oai(nullable)]
    pub acknowledged_by: Option<String>,
    /// The note given with the acknowledgement (`{"note"}`), if any.
    #[oai(nullable)]
    pub acknowledgement_note: Option<String>,
    /// When resolved.
    #[oai(nullable)]
    pub resolved_at: Option<DateTime<Utc>>,
    /// `auto` or the user who resolved it.
    #[oai(nullable)]
    pub resolved_by: Option<String>,
    /// Deliveries, one per (channel, recipient).
    pub notifications: Vec<NotificationBody>,
}

/// A page of alerts.
#[derive(Debug, Clone, Object)]
pub struct AlertPage {
    /// Newest first.
    pub items: Vec<AlertBody>,
    /// Pass as `cursor` for the next page; null on the last page.
    #[oai(nullable)]
    pub next_cursor: Option<String>,
    /// The window (history only; null for `active`).
    #[oai(nullable)]
    pub range: Option<RangeBody>,
}

/// The filter of a bulk acknowledgement (every active alert when empty).
#[derive(Debug, Clone, Object, serde::Deserialize)]
pub struct BulkFilter {
    /// Only this severity.
    #[oai(nullable)]
    pub severity: Option<SeverityBody>,
    /// Only alerts of this configuration.
    #[oai(nullable)]
    pub config_id: Option<Uuid>,
}

/// Acknowledge these alerts.
#[derive(Debug, Clone, Object, serde::Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct BulkByIds {
    /// Alert ids (at most 1000).
    #[oai(validator(max_items = 1000))]
    pub ids: Vec<Uuid>,
}

/// Acknowledge every active alert matching a filter (at most 1000).
#[derive(Debug, Clone, Object, serde::Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct BulkByFilter {
    /// The filter.
    pub filter: BulkFilter,
}

/// A bulk acknowledgement: `{"ids"}` or `{"filter"}`.
#[derive(Debug, Clone, Union, serde::Deserialize)]
#[oai(one_of)]
#[serde(untagged)]
pub enum BulkAckRequest {
    /// By ids.
    Ids(BulkByIds),
    /// By filter.
    Filter(BulkByFilter),
}

/// What happened to one alert of a bulk acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum BulkStatus {
    /// Newly acknowledged.
    Acknowledged,
    /// It already was.
    AlreadyAcknowledged,
    /// It is resolved; nothing changed.
    Resolved,
    /// No such alert.
    NotFound,
}

/// One alert of a bulk acknowledgement.
#[derive(Debug, Clone, Object)]
pub struct BulkResult {
    /// The alert.
    pub id: Uuid,
    /// What happened.
    pub status: BulkStatus,
}

/// The result of a bulk acknowledgement.
#[derive(Debug, Clone, Object)]
pub struct BulkAckResponse {
    /// How many were newly acknowledged.
    pub acknowledged: u64,
    /// Per alert.
    pub results: Vec<BulkResult>,
}

/// A JSON request body documented with `T`'s schema that must also parse with serde, which
/// (unlike poem-openapi's `Json`) refuses a number or boolean where the schema says string.
#[derive(Debug)]
pub struct StrictJson<T>(pub T);

impl<T: Type> Payload for StrictJson<T> {
    const CONTENT_TYPE: &'static str = "application/json; charset=utf-8";

    fn check_content_type(content_type: &str) -> bool {
        <Json<T> as Payload>::check_content_type(content_type)
    }

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

/// The 400 of a request body that is not the JSON the operation takes, naming `body`.
fn malformed_body(message: &dyn std::fmt::Display) -> poem::Error {
    poem::Error::from(
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_body",
            format!("request body is not valid: {message}"),
        )
        .with_field("body"),
    )
}

impl<T: ParseFromJSON + serde::de::DeserializeOwned> ParsePayload for StrictJson<T> {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        let bytes = <Vec<u8> as poem::FromRequest>::from_request(request, body).await?;
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| malformed_body(&e))?;
        // serde refuses a number or boolean for a string; poem-openapi refuses an array for
        // an object (which serde's derive takes as a tuple). Both must accept.
        T::deserialize(&value).map_err(|e| malformed_body(&e))?;
        T::parse_from_json(Some(value))
            .map(StrictJson)
            .map_err(|e| malformed_body(&e.into_message()))
    }
}

// The two-argument form: the one-argument arm calls the macro unqualified.
poem_openapi::impl_apirequest_for_payload!(StrictJson<T>, T: ParseFromJSON + serde::de::DeserializeOwned);

/// An optional JSON request body: no body (with or without a content type) is `None`; a
/// body must be a JSON object that serde reads as `T`. `T`'s schema is documented, but its
/// validators are left to the rule in core, which names the field (a validator failing
/// here could only name the body).
#[derive(Debug)]
pub struct OptionalJson<T>(pub Option<T>);

impl<'a, T> poem_openapi::ApiExtractor<'a> for OptionalJson<T>
where
    T: Type + ParseFromJSON + serde::de::DeserializeOwned,
{
    const TYPES: &'static [poem_openapi::ApiExtractorType] =
        &[poem_openapi::ApiExtractorType::RequestObject];

    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        T::register(registry);
    }

    fn request_meta() -> Option<poem_openapi::registry::MetaRequest> {
        Some(poem_openapi::registry::MetaRequest {
            description: None,
            content: vec![poem_openapi::registry::MetaMediaType {
                content_type: <StrictJson<T> as Payload>::CONTENT_TYPE,
                schema: T::schema_ref(),
            }],
            required: false,
        })
    }

    async fn from_request(
        request: &'a Request,
        body: &mut poem::RequestBody,
        _param_opts: poem_openapi::ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        let bytes = <Vec<u8> as poem::FromRequest>::from_request(request, body).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(None));
        }
        match request.content_type() {
            Some(ct) if <StrictJson<T> as Payload>::check_content_type(ct) => {}
            Some(ct) => {
                return Err(poem_openapi::error::ContentTypeError::NotSupported {
                    content_type: ct.to_owned(),
                }
                .into());
            }
            None => return Err(poem_openapi::error::ContentTypeError::ExpectContentType.into()),
        }
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| malformed_body(&e))?;
        // serde's derive would take an array as the struct's fields in order.
        if !value.is_object() {
            return Err(malformed_body(&"expected a JSON object"));
        }
        T::deserialize(value)
            .map(|v| Self(Some(v)))
            .map_err(|e| malformed_body(&e))
    }
}

/// `POST {id}/acknowledge`'s optional body.
#[derive(Debug, Clone, Object, serde::Deserialize)]
#[oai(example)]
pub struct AckRequest {
    /// A note for the record (at most 1000 characters, else 400 on `note`), kept with the
    /// first acknowledgement.
    #[oai(validator(max_length = 1000))]
    pub note: Option<String>,
}

impl poem_openapi::types::Example for AckRequest {
    fn example() -> Self {
        Self {
            note: Some("Looking into it: the connection pool is saturated".to_owned()),
        }
    }
}

/// `POST configs`.
#[derive(Debug, ApiResponse)]
pub enum Created {
    /// Created.
    #[oai(status = 201)]
    Created(Json<AlertConfigBody>),
}

/// `DELETE configs/{id}`.
#[derive(Debug, ApiResponse)]
pub enum Deleted {
    /// Deleted (its history stays).
    #[oai(status = 204)]
    NoContent,
}

fn parse_if_match(v: Option<&str>) -> Result<Option<u64>, ApiError> {
    let Some(v) = v else { return Ok(None) };
    let v = v.trim();
    let v = v.strip_prefix("W/").unwrap_or(v).trim_matches('"');
    v.parse::<u64>()
        .map(Some)
        .map_err(|_| ApiError::invalid("If-Match", "must be a configuration version"))
}

fn precondition_failed(current: u64, expected: u64) -> ApiError {
    ApiError::new(
        StatusCode::PRECONDITION_FAILED,
        "precondition_failed",
        format!("the configuration is at version {current}, not {expected}"),
    )
    .with_field("If-Match")
}

impl AlertsApi {
    /// A configuration the caller's token covers (404 otherwise, like a missing one).
    async fn visible_config(&self, req: &Request, id: Uuid) -> Result<AlertConfig, ApiError> {
        let config = self.state.store.get_config(id).await?;
        visible(req, &config.spec.project, format_args!("alert config {id}"))?;
        Ok(config)
    }

    fn catalog(&self) -> MetricCatalog {
        catalog(&self.state)
    }

    /// Alert records with their configuration fields and deliveries.
    /// The record of one alert (see [`bodies`](Self::bodies)).
    async fn body(&self, alert: Alert) -> Result<AlertBody, ApiError> {
        self.bodies(vec![alert])
            .await?
            .pop()
            .ok_or_else(|| ApiError::internal("no alert body"))
    }

    pub(crate) async fn bodies(&self, alerts: Vec<Alert>) -> Result<Vec<AlertBody>, ApiError> {
        let store = &self.state.store;
        let mut configs: HashMap<Uuid, Option<AlertConfig>> = HashMap::new();
        let mut out = Vec::with_capacity(alerts.len());
        for a in alerts {
            let cid = a.fired.config_id;
            if let std::collections::hash_map::Entry::Vacant(slot) = configs.entry(cid) {
                let c = match store.get_config(cid).await {
                    Ok(c) => Some(c),
                    Err(analytics_core::Error::NotFound { .. }) => {
                        // Deleted: its last version from the audit trail.
                        store
                            .config_audit(cid)
                            .await?
                            .iter()
                            .rev()
                            .find_map(|e| e.before.clone().or(e.after.clone()))
                            .and_then(|v| serde_json::from_value::<AlertConfig>(v).ok())
                    }
                    Err(e) => return Err(e.into()),
                };
                slot.insert(c);
            }
            let config = configs.get(&cid).and_then(Option::as_ref);
            let entries = store.alert_outbox_entries(a.id()).await?;
            out.push(AlertBody {
                id: a.id(),
                config_id: cid,
                name: config.map(|c| c.spec.name.clone()),
                project: a.fired.project.to_string(),
                metric: a.fired.metric.to_string(),
                stat: config.map(|c| c.spec.stat.into()),
                dimensions: config
                    .map(|c| dims_map(&c.spec.dimensions))
                    .unwrap_or_default(),
                condition: config.map(|c| c.spec.condition.into()),
                severity: a.fired.severity.into(),
                status: a.status.into(),
                value: a.fired.value,
                threshold: a.fired.threshold,
                triggered_at: a.fired.triggered_at,
                acknowledged_at: a.acknowledged_at,
                acknowledged_by: a.acknowledged_by.clone(),
                acknowledgement_note: a.acknowledgement_note.clone(),
                resolved_at: a.resolved_at,
                resolved_by: a.resolved_by.clone(),
                notifications: notifications_of(&entries),
            });
        }
        Ok(out)
    }

    async fn page(
        &self,
        filter: AlertFilter,
        limit: u32,
        cursor: Option<String>,
        range: Option<RangeBody>,
    ) -> Result<AlertPage, ApiError> {
        let page = super::request::page_request(limit, cursor)?;
        let listed = self.state.store.list_alerts(&filter, &page).await?;
        Ok(AlertPage {
            items: self.bodies(listed.items).await?,
            next_cursor: listed.next_cursor.map(|c| c.to_string()),
            range,
        })
    }
}

#[OpenApi]
impl AlertsApi {
    /// The metric catalog (role `admin`): every metric alerts may watch, its statistics and
    /// dimensions.
    #[oai(
        path = "/api/v1/analytics/alerts/metrics",
        method = "get",
        tag = "ApiTags::Alerts"
    )]
    async fn metrics(&self, req: &Request, _auth: BearerAuth) -> ApiResult<Json<CatalogList>> {
        require_admin(req)?;
        let items = self
            .catalog()
            .iter()
            .map(|m| CatalogMetric {
                metric: m.metric.to_string(),
                stats: m.stats.iter().map(|s| (*s).into()).collect(),
                dimensions: m.dimensions.clone(),
                description: m.description.clone(),
            })
            .collect();
        Ok(Json(CatalogList { items }))
    }

    /// Alert configurations (role `admin`), oldest first; filters `enabled`, `severity`,
    /// `project`.
    #[oai(
        path = "/api/v1/analytics/alerts/configs",
        method = "get",
        tag = "ApiTags::Alerts"
    )]
    async fn list_configs(
        &self,
        req: &Request,
        _auth: BearerAuth,
        /// Only enabled (`true`) or disabled (`false`) configurations.
        enabled: Query<Option<bool>>,
        /// Only this severity.
        severity: Query<Option<SeverityBody>>,
        /// Only this project (slug).
        #[oai(validator(pattern = r"^[a-z0-9][a-z0-9_-]{0,63}$"))]
        project: Query<Option<String>>,
    ) -> ApiResult<Json<AlertConfigList>> {
        require_admin(req)?;
        let project = project_filter(req, project.0)?;
        let configs = self
            .state
            .store
            .list_configs(project.as_ref(), enabled.0 == Some(true))
            .await?;
        let items = configs
            .iter()
            .filter(|c| enabled.0.is_none_or(|e| c.spec.enabled == e))
            .filter(|c| {
                severity
                    .0
                    .is_none_or(|s| c.spec.severity == Severity::from(s))
            })
            .map(AlertConfigBody::from)
            .collect();
        Ok(Json(AlertConfigList { items }))
    }

    /// Creates an alert configuration (role `admin`): 201 with it at version 1; 400 naming
    /// the bad field; 409 when the name is taken in the project.
    #[oai(
        path = "/api/v1/analytics/alerts/configs",
        method = "post",
        tag = "ApiTags::Alerts"
    )]
    async fn create_config(
        &self,
        req: &Request,
        _auth: BearerAuth,
        body: StrictJson<AlertConfigRequest>,
    ) -> ApiResult<Created, (Body, NotFound, Conflict)> {
        let sub = require_admin(req)?;
        let spec = body.0.to_spec(&self.catalog())?;
        visible(req, &spec.project, format_args!("project {}", spec.project))?;
        let config = self
            .state
            .store
            .create_config(Uuid::new_v4(), &spec, &sub, SystemClock.now())
            .await?;
        Ok(Created::Created(Json((&config).into())))
    }

    /// One alert configuration (role `admin`).
    #[oai(
        path = "/api/v1/analytics/alerts/configs/:id",
        method = "get",
        tag = "ApiTags::Alerts"
    )]
    async fn get_config(
        &self,
        req: &Request,
        _auth: BearerAuth,
        /// The configuration id.
        id: Path<Uuid>,
    ) -> ApiResult<Json<AlertConfigBody>, NotFound> {
        require_admin(req)?;
        let config = self.visible_config(req, id.0).await?;
        Ok(Json((&config).into()))
    }

    /// Replaces an alert configuration whole (role `admin`); `version` + 1. With
    /// `If-Match: <version>` the replace happens only at that version (412 otherwise).
    #[oai(
        path = "/api/v1/analytics/alerts/configs/:id",
        method = "put",
        tag = "ApiTags::Alerts"
    )]
    async fn put_config(
        &self,
        req: &Request,
        _auth: BearerAuth,
        /// The configuration id.
        id: Path<Uuid>,
        /// The version the client last read (a number, optionally quoted).
        #[oai(name = "If-Match", validator(pattern = r#"^(W/)?"?[0-9]{1,19}"?$"#))]
        if_match: Header<Option<String>>,
        body: StrictJson<AlertConfigRequest>,
    ) -> ApiResult<Json<AlertConfigBody>, (Body, NotFound, Conflict, PreconditionFailed)> {
        let sub = require_admin(req)?;
        let expected = parse_if_match(if_match.0.as_deref())?;
        let store = &self.state.store;
        let current = self.visible_config(req, id.0).await?;
        if let Some(v) = expected.filter(|v| *v != current.version) {
            return Err(precondition_failed(current.version, v).into());
        }
        let spec = body.0.to_spec(&self.catalog())?;
        visible(req, &spec.project, format_args!("project {}", spec.project))?;
        match store
            .update_config(id.0, &spec, expected, &sub, SystemClock.now())
            .await
        {
            Ok(c) => Ok(Json((&c).into())),
            Err(analytics_core::Error::Conflict(m)) => {
                // A stale version (someone replaced it meanwhile) or a taken name.
                if let Some(v) = expected {
                    let now_at = store.get_config(id.0).await?.version;
                    if now_at != v {
                        return Err(precondition_failed(now_at, v).into());
                    }
                }
                Err(analytics_core::Error::Conflict(m).into())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes an alert configuration (role `admin`): 204; its alert history stays; the
    /// configuration is then 404.
    #[oai(
        path = "/api/v1/analytics/alerts/configs/:id",
        method = "delete",
        tag = "ApiTags::Alerts"
    )]
    async fn delete_config(
        &self,
        req: &Request,
        _auth: BearerAuth,
        /// The configuration id.
        id: Path<Uuid>,
    ) -> ApiResult<Deleted, NotFound> {
        let sub = require_admin(req)?;
        self.visible_config(req, id.0).await?;
        self.state
            .store
            .delete_config(id.0, &sub, SystemClock.now())
            .await?;
        Ok(Deleted::NoContent)
    }

    /// A configuration's audit trail (role `admin`), oldest first; kept after deletion.
    #[oai(
        path = "/api/v1/analytics/alerts/configs/:id/audit",
        method = "get",
        tag = "ApiTags::Alerts"
    )]
    async fn config_audit(
        &self,
        req: &Request,
        _auth: BearerAuth,
        /// The configuration id.
        id: Path<Uuid>,
    ) -> ApiResult<Json<AuditList>, NotFound> {
        require_admin(req)?;
        let entries = self.state.store.config_audit(id.0).await?;
        if entries.is_empty() {
            return Err(ApiError::from(analytics_core::Error::not_found(format!(
                "alert config {}",
                id.0
            )))
            .into());
        }
        // The project is in every whole config the trail holds (kept after deletion).
        let project = entries
            .iter()
            .flat_map(|e| [e.after.as_ref(), e.before.as_ref()])
            .flatten()
            .find_map(|c| c.get("project").and_then(|p| p.as_str()))
            .and_then(|p| analytics_core::ProjectId::parse(p).ok());
        if let Some(project) = project {
            visible(req, &project, format_args!("alert config {}", id.0))?;
        }
        let items = entries
            .iter()
            .map(audit_body)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Json(AuditList { items }))
    }

    /// Alert history (role `admin`): alerts triggered in the window (`range`, default 24h,
    /// or `from`/`to`), newest first; filters `status` (comma list), `severity`,
    /// `config_id`, `metric`, `project`; `limit` 1..=1000 (default 100) and `cursor`.
    #[allow(clippy::too_many_arguments)]
    #[oai(
        path = "/api/v1/analytics/alerts/history",
        method = "get",
        tag = "ApiTags::Alerts"
    )]
    async fn history(
        &self,
        req: &Request,
        _auth: BearerAuth,
        /// Comma-separated statuses: `active`, `acknowledged`, `resolved`.
        #[oai(validator(
            pattern = r"^(active|acknowledged|resolved)(,(active|acknowledged|resolved))*$"
        ))]
        status: Query<Option<String>>,
        /// Only this severity.
        severity: Query<Option<SeverityBody>>,
        /// Only alerts of this configuration.
        config_id: Query<Option<Uuid>>,
        /// Only alerts of this metric (a catalog name such as `api.errors`).
        #[oai(validator(max_length = 128, pattern = r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$"))]
        metric: Query<Option<String>>,
        /// Only this project (slug).
        #[oai(validator(pattern = r"^[a-z0-9][a-z0-9_-]{0,63}$"))]
        project: Query<Option<String>>,
        /// `1h`, `24h` (default), `7d` or `30d` ending now; not with `from`/`to`.
        range: Query<Option<RangePreset>>,
        /// Window start (RFC 3339), with `to`; before `to`, at most 400 days before it.
        from: Query<Option<DateTime<Utc>>>,
        /// Window end (RFC 3339, exclusive), with `from`.
        to: Query<Option<DateTime<Utc>>>,
        /// Most alerts returned (1..=1000).
        #[oai(
            default = "default_limit",
            validator(minimum(value = "1"), maximum(value = "1000"))
        )]
        limit: Query<u32>,
        /// The `next_cursor` of the previous page (opaque).
        #[oai(validator(pattern = r"^-?[0-9]{1,18}\.[0-9a-f]{32}$"))]
        cursor: Query<Option<String>>,
    ) -> ApiResult<Json<AlertPage>> {
        require_admin(req)?;
        let window = parse_window(range.0, from.0, to.0)?;
        let statuses = status
            .0
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.split(',')
                    .map(|p| p.parse::<AlertStatus>())
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()
            .map_err(|e| ApiError::invalid("status", e.message))?
            .unwrap_or_default();
        let metric = metric
            .0
            .filter(|m| !m.is_empty())
            .map(|m| MetricName::parse(m).map_err(|e| ApiError::invalid("metric", e.message)))
            .transpose()?;
        let filter = AlertFilter {
            project: project_filter(req, project.0)?,
            config_id: config_id.0,
            statuses,
            severity: severity.0.map(Severity::from),
            metric,
            range: Some(window.range()),
        };
        let page = self
            .page(filter, limit.0, cursor.0, Some(window.range().into()))
            .await?;
        Ok(Json(page))
    }

    /// Unacknowledged alerts (`status = active`, role `admin`), newest first, whenever they
    /// fired; filters `severity`, `config_id`, `project`; `limit` and `cursor` as history.
    #[allow(clippy::too_many_arguments)]
    #[oai(
        path = "/api/v1/analytics/alerts/active",
        method = "get",
        tag = "ApiTags::Alerts"
    )]
    async fn active(
        &self,
        req: &Request,
        _auth: BearerAuth,
        /// Only this severity.
        severity: Query<Option<SeverityBody>>,
        /// Only alerts of this configuration.
        config_id: Query<Option<Uuid>>,
        /// Only this project (slug).
        #[oai(validator(pattern = r"^[a-z0-9][a-z0-9_-]{0,63}$"))]
        project: Query<Option<String>>,
        /// Most alerts returned (1..=1000).
        #[oai(
            default = "default_limit",
            validator(minimum(value = "1"), maximum(value = "1000"))
        )]
        limit: Query<u32>,
        /// The `next_cursor` of the previous page (opaque).
        #[oai(validator(pattern = r"^-?[0-9]{1,18}\.[0-9a-f]{32}$"))]
        cursor: Query<Option<String>>,
    ) -> ApiResult<Json<AlertPage>> {
        require_admin(req)?;
        let filter = AlertFilter {
            project: project_filter(req, project.0)?,
            config_id: config_id.0,
            statuses: vec![AlertStatus::Active],
            severity: severity.0.map(Severity::from),
            ..AlertFilter::default()
        };
        Ok(Json(self.page(filter, limit.0, cursor.0, None).await?))
    }

    /// Acknowledges an alert (role `admin`): 200 with the record; again is 200 and keeps
    /// the first acknowledgement (and its note); a resolved alert is 409. An optional JSON
    /// body `{"note"}` (at most 1000 characters) is stored as `acknowledgement_note`.
    #[oai(
        path = "/api/v1/analytics/alerts/:id/acknowledge",
        method = "post",
        tag = "ApiTags::Alerts"
    )]
    async fn acknowledge(
        &self,
        req: &Request,
        _auth: BearerAuth,
        /// The alert id.
        id: Path<Uuid>,
        body: OptionalJson<AckRequest>,
    ) -> ApiResult<Json<AlertBody>, (NotFound, Conflict, Body)> {
        let sub = require_admin(req)?;
        let note = body.0.and_then(|b| b.note);
        let found = self.state.store.get_alert(id.0).await?;
        visible(req, &found.fired.project, format_args!("alert {}", id.0))?;
        let alert = self
            .state
            .store
            .acknowledge_alert(id.0, &sub, SystemClock.now(), note.as_deref())
            .await?;
        Ok(Json(self.body(alert).await?))
    }

    /// Resolves an alert (role `admin`) as the caller: 200 with the record; resolving again
    /// keeps the first resolution.
    #[oai(
        path = "/api/v1/analytics/alerts/:id/resolve",
        method = "post",
        tag = "ApiTags::Alerts"
    )]
    async fn resolve(
        &self,
        req: &Request,
        _auth: BearerAuth,
        /// The alert id.
        id: Path<Uuid>,
    ) -> ApiResult<Json<AlertBody>, NotFound> {
        let sub = require_admin(req)?;
        let found = self.state.store.get_alert(id.0).await?;
        visible(req, &found.fired.project, format_args!("alert {}", id.0))?;
        let alert = self
            .state
            .store
            .resolve_alert(id.0, &sub, SystemClock.now())
            .await?;
        Ok(Json(self.body(alert).await?))
    }

    /// Acknowledges many alerts (role `admin`): `{"ids": [...]}` (at most 1000) or
    /// `{"filter": {"severity", "config_id"}}` (every active alert matching, at most 1000).
    #[oai(
        path = "/api/v1/analytics/alerts/acknowledge",
        method = "post",
        tag = "ApiTags::Alerts"
    )]
    async fn bulk_acknowledge(
        &self,
        req: &Request,
        _auth: BearerAuth,
        body: StrictJson<BulkAckRequest>,
    ) -> ApiResult<Json<BulkAckResponse>, Body> {
        let sub = require_admin(req)?;
        let store = &self.state.store;
        let ids: Vec<Uuid> = match &body.0 {
            BulkAckRequest::Ids(BulkByIds { ids }) => {
                let mut unique = Vec::with_capacity(ids.len());
                for id in ids {
                    if !unique.contains(id) {
                        unique.push(*id);
                    }
                }
                unique
            }
            BulkAckRequest::Filter(BulkByFilter { filter: f }) => {
                let filter = AlertFilter {
                    project: project_filter(req, None)?,
                    config_id: f.config_id,
                    severity: f.severity.map(Severity::from),
                    statuses: vec![AlertStatus::Active],
                    ..AlertFilter::default()
                };
                store
                    .list_alerts(&filter, &PageRequest::first(1000))
                    .await?
                    .items
                    .iter()
                    .map(Alert::id)
                    .collect()
            }
        };
        let now = SystemClock.now();
        let mut acknowledged = 0;
        let mut results = Vec::with_capacity(ids.len());
        for id in ids {
            let status = match store.get_alert(id).await {
                Err(analytics_core::Error::NotFound { .. }) => BulkStatus::NotFound,
                Err(e) => return Err(e.into()),
                Ok(a) if visible(req, &a.fired.project, "alert").is_err() => BulkStatus::NotFound,
                Ok(a) => match a.status {
                    AlertStatus::Resolved => BulkStatus::Resolved,
                    AlertStatus::Acknowledged => BulkStatus::AlreadyAcknowledged,
                    AlertStatus::Active => match store.acknowledge_alert(id, &sub, now, None).await
                    {
                        Ok(after)
                            if after.acknowledged_by.as_deref() == Some(sub.as_str())
                                && after.acknowledged_at == Some(now) =>
                        {
                            acknowledged += 1;
                            BulkStatus::Acknowledged
                        }
                        Ok(_) => BulkStatus::AlreadyAcknowledged,
                        Err(analytics_core::Error::Conflict(_)) => BulkStatus::Resolved,
                        Err(e) => return Err(e.into()),
                    },
                },
            };
            results.push(BulkResult { id, status });
        }
        Ok(Json(BulkAckResponse {
            acknowledged,
            results,
        }))
    }
}
