//! `AlertHistoryStore`: fired alerts and their lifecycle (active -> acknowledged -> resolved).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::alert::{Alert, AlertStatus, NewAlert, NotificationRecord, Severity};
use crate::error::Result;
use crate::ids::{MetricName, ProjectId};
use crate::notification::Notification;
use crate::page::{Cursor, Page, PageRequest};
use crate::time::TimeRange;

/// Which alerts to list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertFilter {
    /// Only this project.
    pub project: Option<ProjectId>,
    /// Only alerts of this configuration.
    pub config_id: Option<Uuid>,
    /// Only these statuses (empty = all).
    pub statuses: Vec<AlertStatus>,
    /// Only this severity.
    pub severity: Option<Severity>,
    /// Only alerts of this metric.
    pub metric: Option<MetricName>,
    /// Only alerts triggered in this range.
    pub range: Option<TimeRange>,
}

impl AlertFilter {
    /// Whether `a` passes (the reference semantics).
    pub fn matches(&self, a: &Alert) -> bool {
        self.project.as_ref().is_none_or(|p| &a.fired.project == p)
            && self.config_id.is_none_or(|c| a.fired.config_id == c)
            && (self.statuses.is_empty() || self.statuses.contains(&a.status))
            && self.severity.is_none_or(|s| a.fired.severity == s)
            && self.metric.as_ref().is_none_or(|m| &a.fired.metric == m)
            && self.range.is_none_or(|r| r.contains(a.fired.triggered_at))
    }
}

/// The result of trying to open an alert.
#[derive(Debug, Clone, PartialEq)]
pub enum OpenOutcome {
    /// A new active alert.
    Opened(Alert),
    /// The configuration already has an unresolved alert (or this id was already opened);
    /// nothing was written.
    AlreadyOpen(Alert),
}

/// One write of an alert-engine step; a step's writes are applied in order.
#[derive(Debug, Clone, PartialEq)]
pub enum AlertWrite {
    /// Open this alert, unless its id exists or its configuration has an unresolved alert
    /// (then the open is skipped, and so are the step's notifications about this id).
    Open(NewAlert),
    /// Resolve this alert as `by` at `at` (skipped when the alert does not exist).
    Resolve {
        /// The alert.
        alert_id: Uuid,
        /// `"auto"` or a user.
        by: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// Put these notifications into the outbox (idempotent on their ids), due at the step's
    /// instant.
    Enqueue(Vec<Notification>),
}

impl AlertWrite {
    /// The notifications of an `Enqueue` that a store writes: all but those about an alert
    /// whose `Open` the same step skipped (its id in `skipped`).
    pub fn kept(
        notifications: &[Notification],
        skipped: &std::collections::HashSet<Uuid>,
    ) -> Vec<Notification> {
        notifications
            .iter()
            .filter(|n| n.alert_id.is_none_or(|id| !skipped.contains(&id)))
            .cloned()
            .collect()
    }
}

/// Everything one alert-engine step writes: its transitions, their outbox entries, the job
/// watermark and the engine's state, committed together or not at all.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertStepCommit {
    /// The job whose watermark and state this step moves.
    pub job: String,
    /// The evaluated instant (the new watermark; also when the notifications fall due).
    pub at: DateTime<Utc>,
    /// The engine's state after the step, as an opaque document (JSON).
    pub state: String,
    /// The writes, in order.
    pub writes: Vec<AlertWrite>,
}

/// What a committed step changed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertStepApplied {
    /// Alerts opened (skipped opens are not listed).
    pub opened: Vec<Uuid>,
    /// Alerts resolved by this step (already resolved or absent ones are not listed).
    pub resolved: Vec<Uuid>,
    /// Outbox entries newly written.
    pub enqueued: u64,
}

/// Alert history persistence.
///
/// Contract: at most one unresolved (active or acknowledged) alert per configuration;
/// acknowledging is idempotent and keeps the first acknowledgement; acknowledging a resolved
/// alert is a `Conflict`; resolving is idempotent. Listings are newest first by
/// `(triggered_at, id)`. `commit_alert_step` is atomic: after a crash either every write of
/// the step, its watermark and its state are stored, or none is.
#[async_trait]
pub trait AlertHistoryStore: Send + Sync + std::fmt::Debug {
    /// Opens an alert unless its configuration has an unresolved one.
    async fn open_alert(&self, alert: &NewAlert) -> Result<OpenOutcome>;

    /// One alert (`NotFound` if absent).
    async fn get_alert(&self, id: Uuid) -> Result<Alert>;

    /// Lists alerts.
    async fn list_alerts(&self, filter: &AlertFilter, page: &PageRequest) -> Result<Page<Alert>>;

    /// Marks an alert acknowledged, with an optional note (see [`Alert::acknowledge`]:
    /// a second acknowledgement changes nothing, a resolved alert is a conflict).
    async fn acknowledge_alert(
        &self,
        id: Uuid,
        by: &str,
        at: DateTime<Utc>,
        note: Option<&str>,
    ) -> Result<Alert>;

    /// Marks an alert resolved.
    async fn resolve_alert(&self, id: Uuid, by: &str, at: DateTime<Utc>) -> Result<Alert>;

    /// When the configuration last fired (for cooldowns).
    async fn last_fired(&self, config_id: Uuid) -> Result<Option<DateTime<Utc>>>;

    /// Appends a notification record to an alert.
    async fn record_notification(&self, alert_id: Uuid, record: &NotificationRecord) -> Result<()>;

    /// Applies one engine step in one transaction (see [`AlertStepCommit`]).
    async fn commit_alert_step(&self, step: &AlertStepCommit) -> Result<AlertStepApplied>;
}

/// The pagination key of an alert record: `(triggered_at, id)` of its firing, the order
/// every listing of alerts is newest first in.
pub fn alert_cursor(a: &Alert) -> Cursor {
    Cursor {
        at: a.fired.triggered_at,
        id: a.fired.id,
    }
}
