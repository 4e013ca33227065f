//! Alert configuration, alert history records, and the pure evaluation of the four conditions.
//! The state machine around one evaluation (pending, firing, reminders, cooldown, recovery)
//! is [`engine`]; turning its notices into outbox entries is [`routing`].

pub mod engine;
pub mod import;
pub mod routing;
pub mod runner;

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::FieldError;
use crate::ids::{MetricName, ProjectId, Threshold};
use crate::notification::{Channel, Recipient};
use crate::ports::alert_rule::{AlertRule, Evaluation, Observation};
use crate::rollup::Dimensions;

/// How urgent an alert is; drives channel routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// In-app only by default.
    Info,
    /// In-app, Slack and email by default.
    Warning,
    /// Every channel, SMS included.
    Critical,
}

impl Severity {
    /// All severities, least urgent first.
    pub const ALL: [Severity; 3] = [Self::Info, Self::Warning, Self::Critical];

    /// The wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }
}

impl FromStr for Severity {
    type Err = FieldError;
    fn from_str(s: &str) -> Result<Self, FieldError> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| FieldError::new("severity", "must be one of info, warning, critical"))
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The condition a rule checks (PRD US-007).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// Breach when the value is above the threshold.
    ThresholdAbove,
    /// Breach when the value is below the threshold.
    ThresholdBelow,
    /// Breach when the value changed by more than `threshold` percent (either way) against
    /// the previous window.
    RateOfChange,
    /// Breach when the value is more than `threshold` robust standard deviations away from
    /// its seasonal baseline: the median (and MAD) of the same hour of the week over past
    /// weeks, given at least [`ANOMALY_MIN_SEASONS`] of them; with fewer, a z-score against
    /// the mean of the previous windows (needs at least [`ANOMALY_MIN_HISTORY`] windows).
    Anomaly,
}

/// Fewest past windows the anomaly z-score fallback needs before it can fire.
pub const ANOMALY_MIN_HISTORY: usize = 5;

/// Fewest past weeks the anomaly seasonal baseline needs; with fewer the rule falls back to
/// the z-score over recent windows.
pub const ANOMALY_MIN_SEASONS: usize = 3;

/// What a rule does with a window that has no data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoDataPolicy {
    /// No data counts as healthy: pending breaches are dropped and a firing alert recovers.
    Ok,
    /// No data counts as a breach (it must hold `for_secs` like any other).
    Alerting,
    /// No data changes nothing: an open alert stays open, a pending breach keeps its start.
    #[default]
    Keep,
}

impl NoDataPolicy {
    /// All policies.
    pub const ALL: [NoDataPolicy; 3] = [Self::Ok, Self::Alerting, Self::Keep];

    /// The wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Alerting => "alerting",
            Self::Keep => "keep",
        }
    }
}

impl FromStr for NoDataPolicy {
    type Err = FieldError;
    fn from_str(s: &str) -> Result<Self, FieldError> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| FieldError::new("no_data", "must be one of ok, alerting, keep"))
    }
}

/// Longest `for_secs` and `cooldown_secs`: one week.
pub const MAX_HOLD_SECS: u32 = 604_800;

impl Condition {
    /// All conditions.
    pub const ALL: [Condition; 4] = [
        Self::ThresholdAbove,
        Self::ThresholdBelow,
        Self::RateOfChange,
        Self::Anomaly,
    ];

    /// The wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ThresholdAbove => "threshold_above",
            Self::ThresholdBelow => "threshold_below",
            Self::RateOfChange => "rate_of_change",
            Self::Anomaly => "anomaly",
        }
    }
}

impl FromStr for Condition {
    type Err = FieldError;
    fn from_str(s: &str) -> Result<Self, FieldError> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| {
                FieldError::new(
                    "condition",
                    "must be one of threshold_above, threshold_below, rate_of_change, anomaly",
                )
            })
    }
}

/// The statistic of a metric that a rule or query reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stat {
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

impl Stat {
    /// All statistics.
    pub const ALL: [Stat; 9] = [
        Self::Count,
        Self::Sum,
        Self::Avg,
        Self::Min,
        Self::Max,
        Self::P50,
        Self::P95,
        Self::P99,
        Self::Rate,
    ];

    /// The wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Count => "count",
            Self::Sum => "sum",
            Self::Avg => "avg",
            Self::Min => "min",
            Self::Max => "max",
            Self::P50 => "p50",
            Self::P95 => "p95",
            Self::P99 => "p99",
            Self::Rate => "rate",
        }
    }
}

impl FromStr for Stat {
    type Err = FieldError;
    fn from_str(s: &str) -> Result<Self, FieldError> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| {
                FieldError::new(
                    "stat",
                    "must be one of count, sum, avg, min, max, p50, p95, p99, rate",
                )
            })
    }
}

/// What a user submits to create or replace an alert configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertConfigSpec {
    /// The project whose metric is watched.
    pub project: ProjectId,
    /// A human name, unique per project.
    pub name: String,
    /// The metric watched.
    pub metric: MetricName,
    /// Which statistic of the metric.
    pub stat: Stat,
    /// Only observations with these dimension values (empty = all).
    pub dimensions: Dimensions,
    /// The condition.
    pub condition: Condition,
    /// The threshold (a value, a percentage for rate of change, a z-score for anomaly).
    pub threshold: Threshold,
    /// The window the metric is read over, in seconds (60..=604800).
    pub window_secs: u32,
    /// How urgent a breach is.
    pub severity: Severity,
    /// After a notification for this configuration, nothing more is sent for it (re-fires
    /// and reminders included) for this long, in seconds; alerts are still recorded.
    pub cooldown_secs: u32,
    /// Channels to use; empty = route by severity.
    pub channels: Vec<Channel>,
    /// Who to tell.
    pub recipients: Vec<Recipient>,
    /// Whether the engine evaluates it.
    pub enabled: bool,
    /// How long a breach must hold before the alert fires, in seconds (0 = at once).
    #[serde(default)]
    pub for_secs: u32,
    /// Hysteresis: once firing, the alert recovers only when the value crosses back past
    /// this (at or below it for `threshold_above`, at or above it for `threshold_below`, a
    /// change or score of at most it for `rate_of_change` and `anomaly`). `None` recovers as
    /// soon as the condition no longer holds.
    #[serde(default)]
    pub recovery_threshold: Option<Threshold>,
    /// Whether recovery resolves the alert (as `"auto"`); otherwise a person must.
    #[serde(default = "default_auto_resolve")]
    pub auto_resolve: bool,
    /// What a window without data means.
    #[serde(default)]
    pub no_data: NoDataPolicy,
}

fn default_auto_resolve() -> bool {
    true
}

impl AlertConfigSpec {
    /// The `Conflict` a store answers when another configuration of the project already
    /// has this name.
    pub fn name_taken(&self) -> crate::Error {
        crate::Error::Conflict(format!(
            "an alert config named {:?} already exists in project {}",
            self.name, self.project
        ))
    }

    /// Checks the cross-field rules; one error per problem.
    pub fn validate(&self) -> Result<(), crate::ValidationErrors> {
        let mut errors = Vec::new();
        if self.name.trim().is_empty() || self.name.chars().count() > 200 {
            errors.push(FieldError::new("name", "must be 1 to 200 characters"));
        }
        if !(60..=604_800).contains(&self.window_secs) {
            errors.push(FieldError::new(
                "window_secs",
                "must be from 60 to 604800 seconds",
            ));
        }
        if self.cooldown_secs > MAX_HOLD_SECS {
            errors.push(FieldError::new(
                "cooldown_secs",
                "must be at most 604800 seconds",
            ));
        }
        if self.for_secs > MAX_HOLD_SECS {
            errors.push(FieldError::new(
                "for_secs",
                "must be at most 604800 seconds",
            ));
        }
        let t = self.threshold.get();
        match self.condition {
            Condition::RateOfChange | Condition::Anomaly if t <= 0.0 => errors.push(
                FieldError::new("threshold", "must be greater than 0 for this condition"),
            ),
            _ => {}
        }
        if let Some(r) = self.recovery_threshold.map(Threshold::get) {
            let wrong_side = match self.condition {
                Condition::ThresholdAbove => {
                    (r > t).then_some("must be at most threshold for threshold_above")
                }
                Condition::ThresholdBelow => {
                    (r < t).then_some("must be at least threshold for threshold_below")
                }
                Condition::RateOfChange | Condition::Anomaly => {
                    (r < 0.0 || r > t).then_some("must be from 0 to threshold for this condition")
                }
            };
            if let Some(message) = wrong_side {
                errors.push(FieldError::new("recovery_threshold", message));
            }
        }
        if matches!(self.stat, Stat::Count | Stat::Rate) && t < 0.0 {
            errors.push(FieldError::new(
                "threshold",
                "must not be negative for a count or rate",
            ));
        }
        if self.recipients.len() > 100 {
            errors.push(FieldError::new(
                "recipients",
                "must have at most 100 entries",
            ));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(crate::ValidationErrors(errors))
        }
    }

    /// The pure rule this configuration evaluates.
    pub fn rule(&self) -> ConditionRule {
        ConditionRule {
            condition: self.condition,
            threshold: self.threshold,
        }
    }

    /// The rule a firing alert must stop breaching to recover: the condition at
    /// `recovery_threshold`, or the configured rule without hysteresis.
    pub fn recovery_rule(&self) -> ConditionRule {
        ConditionRule {
            condition: self.condition,
            threshold: self.recovery_threshold.unwrap_or(self.threshold),
        }
    }
}

/// A stored alert configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertConfig {
    /// Its id.
    pub id: Uuid,
    /// What the user configured.
    #[serde(flatten)]
    pub spec: AlertConfigSpec,
    /// Optimistic-concurrency version, 1 on creation, +1 on every update.
    pub version: u64,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl AlertConfig {
    /// The first version of a configuration, as every store must build it.
    pub fn created(id: Uuid, spec: &AlertConfigSpec, at: DateTime<Utc>) -> AlertConfig {
        AlertConfig {
            id,
            spec: spec.clone(),
            version: 1,
            created_at: at,
            updated_at: at,
        }
    }

    /// The next version of this configuration with `spec`, as every store must build it;
    /// `Conflict` when `expected_version` is given and is not the current version.
    pub fn updated(
        &self,
        spec: &AlertConfigSpec,
        expected_version: Option<u64>,
        at: DateTime<Utc>,
    ) -> Result<AlertConfig, crate::Error> {
        if let Some(v) = expected_version.filter(|v| *v != self.version) {
            return Err(crate::Error::Conflict(format!(
                "alert config {} is at version {}, not {v}",
                self.id, self.version
            )));
        }
        Ok(AlertConfig {
            spec: spec.clone(),
            version: self.version + 1,
            updated_at: at,
            ..self.clone()
        })
    }
}

/// What happened to a configuration, for the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditAction {
    /// Created.
    Created,
    /// Changed.
    Updated,
    /// Deleted.
    Deleted,
    /// Created or replaced by an import (`AlertConfigStore::import_configs`).
    Imported,
}

impl AuditAction {
    /// The wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Updated => "updated",
            Self::Deleted => "deleted",
            Self::Imported => "imported",
        }
    }
}

/// One change to an alert configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// The entry's id.
    pub id: Uuid,
    /// The configuration changed.
    pub config_id: Uuid,
    /// What was done.
    pub action: AuditAction,
    /// Who did it (a JWT subject).
    pub actor: String,
    /// When.
    pub at: DateTime<Utc>,
    /// The configuration before (absent on creation).
    pub before: Option<serde_json::Value>,
    /// The configuration after (absent on deletion).
    pub after: Option<serde_json::Value>,
}

/// Where a fired alert stands: active -> acknowledged -> resolved (or active -> resolved).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    /// Fired, nobody has acknowledged it.
    Active,
    /// Someone is on it.
    Acknowledged,
    /// Over.
    Resolved,
}

impl AlertStatus {
    /// All statuses.
    pub const ALL: [AlertStatus; 3] = [Self::Active, Self::Acknowledged, Self::Resolved];

    /// The wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Acknowledged => "acknowledged",
            Self::Resolved => "resolved",
        }
    }
}

impl FromStr for AlertStatus {
    type Err = FieldError;
    fn from_str(s: &str) -> Result<Self, FieldError> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| {
                FieldError::new("status", "must be one of active, acknowledged, resolved")
            })
    }
}

/// The engine's request to open an alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewAlert {
    /// The alert's id (chosen by the caller so a retry is idempotent).
    pub id: Uuid,
    /// The configuration that fired.
    pub config_id: Uuid,
    /// Its project.
    pub project: ProjectId,
    /// Its metric.
    pub metric: MetricName,
    /// Its severity at firing time.
    pub severity: Severity,
    /// Detection time.
    pub triggered_at: DateTime<Utc>,
    /// The observed value.
    pub value: f64,
    /// The threshold it was compared with.
    pub threshold: f64,
    /// A one-line description.
    pub message: String,
}

/// One delivery of an alert's notification, as shown in the alert's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationRecord {
    /// The channel.
    pub channel: Channel,
    /// The recipient, as text (address, number, webhook host, user id).
    pub recipient: String,
    /// `sent`, `failed` or `pending`.
    pub outcome: String,
    /// Attempts made.
    pub attempts: u32,
    /// Time from detection to delivery, in milliseconds.
    pub latency_ms: Option<u64>,
    /// When recorded.
    pub at: DateTime<Utc>,
}

/// A fired alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// What fired.
    #[serde(flatten)]
    pub fired: NewAlert,
    /// Where it stands.
    pub status: AlertStatus,
    /// Who acknowledged it.
    pub acknowledged_by: Option<String>,
    /// When.
    pub acknowledged_at: Option<DateTime<Utc>>,
    /// The note given with the acknowledgement, if any.
    pub acknowledgement_note: Option<String>,
    /// Who resolved it.
    pub resolved_by: Option<String>,
    /// When.
    pub resolved_at: Option<DateTime<Utc>>,
    /// Notifications sent for it.
    pub notifications: Vec<NotificationRecord>,
}

/// The longest note an acknowledgement keeps, in characters.
pub const MAX_ACKNOWLEDGEMENT_NOTE_CHARS: usize = 1000;

impl Alert {
    /// A freshly opened alert.
    pub fn opened(fired: NewAlert) -> Self {
        Self {
            fired,
            status: AlertStatus::Active,
            acknowledged_by: None,
            acknowledged_at: None,
            acknowledgement_note: None,
            resolved_by: None,
            resolved_at: None,
            notifications: Vec::new(),
        }
    }

    /// The alert's id.
    pub fn id(&self) -> Uuid {
        self.fired.id
    }

    /// Applies an acknowledgement with an optional note (at most
    /// [`MAX_ACKNOWLEDGEMENT_NOTE_CHARS`] characters, else `Invalid` on `note` and nothing
    /// changes). Acknowledging again keeps the first acknowledgement (and its note);
    /// acknowledging a resolved alert is a conflict.
    pub fn acknowledge(
        &mut self,
        by: &str,
        at: DateTime<Utc>,
        note: Option<&str>,
    ) -> Result<(), crate::Error> {
        if let Some(n) = note
            && n.chars().count() > MAX_ACKNOWLEDGEMENT_NOTE_CHARS
        {
            return Err(crate::Error::invalid(
                "note",
                format!(
                    "has {} characters; at most {MAX_ACKNOWLEDGEMENT_NOTE_CHARS}",
                    n.chars().count()
                ),
            ));
        }
        match self.status {
            AlertStatus::Active => {
                self.status = AlertStatus::Acknowledged;
                self.acknowledged_by = Some(by.to_owned());
                self.acknowledged_at = Some(at);
                self.acknowledgement_note = note.map(str::to_owned);
                Ok(())
            }
            AlertStatus::Acknowledged => Ok(()),
            AlertStatus::Resolved => Err(crate::Error::Conflict(format!(
                "alert {} is already resolved",
                self.id()
            ))),
        }
    }

    /// Applies a resolution. Resolving again keeps the first resolution.
    pub fn resolve(&mut self, by: &str, at: DateTime<Utc>) {
        if self.status != AlertStatus::Resolved {
            self.status = AlertStatus::Resolved;
            self.resolved_by = Some(by.to_owned());
            self.resolved_at = Some(at);
        }
    }
}

/// The rule behind every configured condition: pure, no I/O.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConditionRule {
    /// The condition.
    pub condition: Condition,
    /// Its threshold.
    pub threshold: Threshold,
}

impl AlertRule for ConditionRule {
    fn evaluate(&self, obs: &Observation<'_>) -> Evaluation {
        let Some(current) = obs.current.filter(|v| v.is_finite()) else {
            return Evaluation::NoData;
        };
        let t = self.threshold.get();
        let (observed, breached) = match self.condition {
            Condition::ThresholdAbove => (current, current > t),
            Condition::ThresholdBelow => (current, current < t),
            Condition::RateOfChange => {
                let Some(prev) = obs.previous.filter(|v| v.is_finite()) else {
                    return Evaluation::NoData;
                };
                let change = if prev == 0.0 {
                    if current == 0.0 { 0.0 } else { f64::INFINITY }
                } else {
                    (current - prev) / prev.abs() * 100.0
                };
                (change, change.abs() > t)
            }
            Condition::Anomaly => {
                let Some(z) = anomaly_score(current, obs.seasonal, obs.history) else {
                    return Evaluation::NoData;
                };
                (z, z.abs() > t)
            }
        };
        if breached {
            Evaluation::Breach {
                value: current,
                observed,
                threshold: t,
            }
        } else {
            Evaluation::Ok { value: current }
        }
    }
}

/// The anomaly score of `current`: robust (median and MAD) against `seasonal` when it has
/// at least [`ANOMALY_MIN_SEASONS`] finite values, else the z-score against `history` when it
/// has at least [`ANOMALY_MIN_HISTORY`]; `None` with neither.
fn anomaly_score(current: f64, seasonal: &[f64], history: &[f64]) -> Option<f64> {
    let finite =
        |vs: &[f64]| -> Vec<f64> { vs.iter().copied().filter(|v| v.is_finite()).collect() };
    let seasonal = finite(seasonal);
    if seasonal.len() >= ANOMALY_MIN_SEASONS {
        let centre = median(seasonal.clone());
        let deviations: Vec<f64> = seasonal.iter().map(|v| (v - centre).abs()).collect();
        // 1.4826 * MAD estimates the standard deviation of normal data. When more than half
        // the weeks agree exactly the MAD is 0; the mean absolute deviation (scaled by
        // sqrt(pi/2)) still measures the rest of them.
        let mut scale = 1.4826 * median(deviations.clone());
        if scale == 0.0 {
            scale = 1.2533 * deviations.iter().sum::<f64>() / deviations.len() as f64;
        }
        return Some(score(current, centre, scale));
    }
    let history = finite(history);
    if history.len() < ANOMALY_MIN_HISTORY {
        return None;
    }
    let n = history.len() as f64;
    let mean = history.iter().sum::<f64>() / n;
    let var = history.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    Some(score(current, mean, var.sqrt()))
}

/// `(value - centre) / scale`; a zero scale makes any difference infinitely unusual.
fn score(value: f64, centre: f64, scale: f64) -> f64 {
    if scale == 0.0 {
        if value == centre {
            0.0
        } else {
            f64::INFINITY.copysign(value - centre)
        }
    } else {
        (value - centre) / scale
    }
}

/// The median of finite values (not empty).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(
        cond: Condition,
        threshold: f64,
        current: Option<f64>,
        previous: Option<f64>,
        history: &[f64],
        expect: &str,
    ) {
        let rule = ConditionRule {
            condition: cond,
            threshold: Threshold::new(threshold).unwrap(),
        };
        let got = rule.evaluate(&Observation {
            current,
            previous,
            history,
            seasonal: &[],
        });
        let label = match got {
            Evaluation::Breach { .. } => "breach",
            Evaluation::Ok { .. } => "ok",
            Evaluation::NoData => "nodata",
        };
        assert_eq!(
            label, expect,
            "{cond:?} t={threshold} cur={current:?} prev={previous:?} hist={history:?}: {got:?}"
        );
    }

    #[test]
    fn thresholds() {
        check(
            Condition::ThresholdAbove,
            5.0,
            Some(5.1),
            None,
            &[],
            "breach",
        );
        check(Condition::ThresholdAbove, 5.0, Some(5.0), None, &[], "ok");
        check(
            Condition::ThresholdBelow,
            5.0,
            Some(4.9),
            None,
            &[],
            "breach",
        );
        check(Condition::ThresholdBelow, 5.0, Some(5.0), None, &[], "ok");
        check(Condition::ThresholdAbove, 5.0, None, None, &[], "nodata");
        check(
            Condition::ThresholdAbove,
            5.0,
            Some(f64::NAN),
            None,
            &[],
            "nodata",
        );
    }

    #[test]
    fn rate_of_change_is_percent_either_way() {
        check(
            Condition::RateOfChange,
            50.0,
            Some(151.0),
            Some(100.0),
            &[],
            "breach",
        );
        check(
            Condition::RateOfChange,
            50.0,
            Some(150.0),
            Some(100.0),
            &[],
            "ok",
        );
        check(
            Condition::RateOfChange,
            50.0,
            Some(49.0),
            Some(100.0),
            &[],
            "breach",
        );
        check(
            Condition::RateOfChange,
            50.0,
            Some(1.0),
            Some(0.0),
            &[],
            "breach",
        );
        check(
            Condition::RateOfChange,
            50.0,
            Some(0.0),
            Some(0.0),
            &[],
            "ok",
        );
        check(
            Condition::RateOfChange,
            50.0,
            Some(1.0),
            None,
            &[],
            "nodata",
        );
        // A negative baseline still measures the change relative to its size.
        check(
            Condition::RateOfChange,
            50.0,
            Some(-40.0),
            Some(-100.0),
            &[],
            "breach",
        );
    }

    #[test]
    fn anomaly_is_a_z_score_over_history() {
        let h = [10.0, 11.0, 9.0, 10.0, 10.0];
        check(Condition::Anomaly, 3.0, Some(10.5), None, &h, "ok");
        check(Condition::Anomaly, 3.0, Some(20.0), None, &h, "breach");
        check(Condition::Anomaly, 3.0, Some(0.0), None, &h, "breach");
        check(Condition::Anomaly, 3.0, Some(20.0), None, &h[..4], "nodata");
        check(Condition::Anomaly, 3.0, Some(10.0), None, &[10.0; 6], "ok");
        check(
            Condition::Anomaly,
            3.0,
            Some(10.1),
            None,
            &[10.0; 6],
            "breach",
        );
    }

    fn seasonal(threshold: f64, current: f64, seasonal: &[f64], history: &[f64]) -> Evaluation {
        ConditionRule {
            condition: Condition::Anomaly,
            threshold: Threshold::new(threshold).unwrap(),
        }
        .evaluate(&Observation {
            current: Some(current),
            previous: None,
            history,
            seasonal,
        })
    }

    #[test]
    fn anomaly_uses_the_seasonal_median_and_mad_when_weeks_suffice() {
        // Same hour of the week: median 100, MAD 2 (robust sd 2.97); a spike in one week
        // does not move the baseline the way a mean would.
        let weeks = [98.0, 100.0, 102.0, 100.0, 400.0];
        let busy_recent = [500.0, 510.0, 490.0, 505.0, 495.0];
        assert!(matches!(
            seasonal(3.0, 104.0, &weeks, &busy_recent),
            Evaluation::Ok { .. }
        ));
        match seasonal(3.0, 130.0, &weeks, &busy_recent) {
            Evaluation::Breach { observed, .. } => {
                assert!(
                    (observed - 30.0 / (1.4826 * 2.0)).abs() < 1e-9,
                    "{observed}"
                );
            }
            other => panic!("{other:?}"),
        }
        // Most weeks equal: MAD 0, the mean absolute deviation still gives a scale.
        assert!(matches!(
            seasonal(3.0, 100.5, &[100.0, 100.0, 100.0, 104.0], &[]),
            Evaluation::Ok { .. }
        ));
        assert!(matches!(
            seasonal(3.0, 110.0, &[100.0, 100.0, 100.0, 104.0], &[]),
            Evaluation::Breach { .. }
        ));
    }

    #[test]
    fn anomaly_falls_back_to_recent_windows_when_seasons_are_short() {
        let recent = [10.0, 11.0, 9.0, 10.0, 10.0];
        // Two weeks (fewer than ANOMALY_MIN_SEASONS) are ignored: the z-score decides.
        assert!(matches!(
            seasonal(3.0, 10.5, &[50.0, 50.0], &recent),
            Evaluation::Ok { .. }
        ));
        assert!(matches!(
            seasonal(3.0, 50.0, &[50.0, 50.0], &recent),
            Evaluation::Breach { .. }
        ));
        assert_eq!(
            seasonal(3.0, 50.0, &[50.0, 50.0], &recent[..4]),
            Evaluation::NoData
        );
    }

    #[test]
    fn breach_reports_value_and_threshold() {
        let rule = ConditionRule {
            condition: Condition::RateOfChange,
            threshold: Threshold::new(10.0).unwrap(),
        };
        match rule.evaluate(&Observation {
            current: Some(200.0),
            previous: Some(100.0),
            history: &[],
            seasonal: &[],
        }) {
            Evaluation::Breach {
                value,
                observed,
                threshold,
            } => {
                assert_eq!(value, 200.0);
                assert_eq!(observed, 100.0);
                assert_eq!(threshold, 10.0);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn lifecycle() {
        let mut a = Alert::opened(NewAlert {
            id: Uuid::new_v4(),
            config_id: Uuid::new_v4(),
            project: ProjectId::default_project(),
            metric: MetricName::parse("api.error_rate").unwrap(),
            severity: Severity::Critical,
            triggered_at: DateTime::UNIX_EPOCH,
            value: 1.0,
            threshold: 0.5,
            message: "m".into(),
        });
        let t1 = DateTime::UNIX_EPOCH + chrono::Duration::seconds(1);
        let long = "x".repeat(MAX_ACKNOWLEDGEMENT_NOTE_CHARS + 1);
        assert!(matches!(
            a.acknowledge("alice", t1, Some(&long)),
            Err(crate::Error::Invalid { field, .. }) if field == "note"
        ));
        assert_eq!(
            a.status,
            AlertStatus::Active,
            "a refused note changes nothing"
        );
        a.acknowledge("alice", t1, Some("looking")).unwrap();
        assert_eq!(a.acknowledgement_note.as_deref(), Some("looking"));
        a.acknowledge("bob", t1 + chrono::Duration::seconds(1), Some("mine"))
            .unwrap();
        assert_eq!(a.acknowledged_by.as_deref(), Some("alice"));
        a.resolve("carol", t1);
        a.resolve("dave", t1);
        assert_eq!(a.resolved_by.as_deref(), Some("carol"));
        assert!(matches!(
            a.acknowledge("x", t1, None),
            Err(crate::Error::Conflict(_))
        ));
    }

    fn valid_spec() -> AlertConfigSpec {
        AlertConfigSpec {
            project: ProjectId::default_project(),
            name: "p95 latency".into(),
            metric: MetricName::parse("api.latency_ms").unwrap(),
            stat: Stat::P95,
            dimensions: Dimensions::default(),
            condition: Condition::ThresholdAbove,
            threshold: Threshold::new(500.0).unwrap(),
            window_secs: 300,
            severity: Severity::Warning,
            cooldown_secs: 900,
            channels: vec![],
            recipients: vec![],
            enabled: true,
            for_secs: 0,
            recovery_threshold: None,
            auto_resolve: true,
            no_data: NoDataPolicy::Keep,
        }
    }

    #[test]
    fn spec_validation_names_fields() {
        let mut spec = valid_spec();
        assert!(spec.validate().is_ok());
        spec.window_secs = 10;
        spec.condition = Condition::RateOfChange;
        spec.threshold = Threshold::new(0.0).unwrap();
        spec.name = " ".into();
        let e = spec.validate().unwrap_err();
        let fields: Vec<_> = e.errors().iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["name", "window_secs", "threshold"]);
    }

    #[test]
    fn engine_settings_are_validated_by_field() {
        let base = valid_spec();
        // (condition, threshold, recovery_threshold, for_secs) -> bad fields
        #[rustfmt::skip]
        type Row = (Condition, f64, Option<f64>, u32, &'static [&'static str]);
        let rows: &[Row] = &[
            (Condition::ThresholdAbove, 500.0, Some(400.0), 300, &[]),
            (Condition::ThresholdAbove, 500.0, Some(500.0), 0, &[]),
            (
                Condition::ThresholdAbove,
                500.0,
                Some(600.0),
                0,
                &["recovery_threshold"],
            ),
            (Condition::ThresholdBelow, 5.0, Some(8.0), 0, &[]),
            (
                Condition::ThresholdBelow,
                5.0,
                Some(4.0),
                0,
                &["recovery_threshold"],
            ),
            (Condition::RateOfChange, 50.0, Some(20.0), 0, &[]),
            (
                Condition::RateOfChange,
                50.0,
                Some(60.0),
                0,
                &["recovery_threshold"],
            ),
            (
                Condition::Anomaly,
                3.0,
                Some(-1.0),
                0,
                &["recovery_threshold"],
            ),
            (
                Condition::ThresholdAbove,
                500.0,
                None,
                604_801,
                &["for_secs"],
            ),
        ];
        for (condition, threshold, recovery, for_secs, bad) in rows {
            let spec = AlertConfigSpec {
                condition: *condition,
                threshold: Threshold::new(*threshold).unwrap(),
                recovery_threshold: recovery.map(|r| Threshold::new(r).unwrap()),
                for_secs: *for_secs,
                ..base.clone()
            };
            let fields: Vec<String> = spec
                .validate()
                .err()
                .map(|e| e.errors().iter().map(|e| e.field.clone()).collect())
                .unwrap_or_default();
            assert_eq!(
                fields, *bad,
                "{condition:?} {threshold} {recovery:?} {for_secs}"
            );
        }
        // A non-finite value never becomes a threshold.
        assert_eq!(Threshold::new(f64::NAN).unwrap_err().field, "threshold");
    }

    #[test]
    fn stored_configs_without_engine_settings_still_load() {
        let mut json = serde_json::to_value(valid_spec()).unwrap();
        for field in ["for_secs", "recovery_threshold", "auto_resolve", "no_data"] {
            json.as_object_mut().unwrap().remove(field);
        }
        let spec: AlertConfigSpec = serde_json::from_value(json).unwrap();
        assert_eq!(spec.for_secs, 0);
        assert_eq!(spec.recovery_threshold, None);
        assert!(spec.auto_resolve);
        assert_eq!(spec.no_data, NoDataPolicy::Keep);
        let json = serde_json::json!({"no_data": "alerting"});
        assert_eq!(
            json["no_data"].as_str().unwrap().parse(),
            Ok(NoDataPolicy::Alerting)
        );
    }
}
