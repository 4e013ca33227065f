//! `AlertHistoryStore`: fired alerts and their lifecycle (active -> acknowledged -> resolved).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::alert::{Alert, AlertStatus, NewAlert, NotificationRecord, Severity};
use crate::error::Result;
use crate::ids::{MetricName, ProjectId};
use crate::page::{Page, PageRequest};
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

/// Alert history persistence.
///
/// Contract: at most one unresolved (active or acknowledged) alert per configuration;
/// acknowledging is idempotent and keeps the first acknowledgement; acknowledging a resolved
/// alert is a `Conflict`; resolving is idempotent. Listings are newest first by
/// `(triggered_at, id)`.
#[async_trait]
pub trait AlertHistoryStore: Send + Sync + std::fmt::Debug {
    /// Opens an alert unless its configuration has an unresolved one.
    async fn open_alert(&self, alert: &NewAlert) -> Result<OpenOutcome>;

    /// One alert (`NotFound` if absent).
    async fn get_alert(&self, id: Uuid) -> Result<Alert>;

    /// Lists alerts.
    async fn list_alerts(&self, filter: &AlertFilter, page: &PageRequest) -> Result<Page<Alert>>;

    /// Marks an alert acknowledged.
    async fn acknowledge_alert(&self, id: Uuid, by: &str, at: DateTime<Utc>) -> Result<Alert>;

    /// Marks an alert resolved.
    async fn resolve_alert(&self, id: Uuid, by: &str, at: DateTime<Utc>) -> Result<Alert>;

    /// When the configuration last fired (for cooldowns).
    async fn last_fired(&self, config_id: Uuid) -> Result<Option<DateTime<Utc>>>;

    /// Appends a notification record to an alert.
    async fn record_notification(&self, alert_id: Uuid, record: &NotificationRecord) -> Result<()>;
}
