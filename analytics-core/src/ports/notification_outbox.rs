//! `NotificationOutbox`: durable queue of deliveries with attempts, leases and retries.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use crate::error::Result;
use crate::notification::{DeliveryAttempt, Notification, OutboxEntry};

/// The notification outbox.
///
/// Contract: `enqueue` is idempotent on the notification id. `claim_due` hands each due
/// pending entry to one claimer: it moves the entry's `next_attempt_at` to `now + lease`, so
/// a second claim before the lease ends does not return it, and a claimer that dies lets it
/// come back after the lease. Critical entries are claimed before others.
/// `record_attempt` counts the attempt and moves the entry to sent, pending (retry at the
/// given time) or failed.
#[async_trait]
pub trait NotificationOutbox: Send + Sync + std::fmt::Debug {
    /// Enqueues notifications, due at `at`; returns how many were new.
    async fn enqueue(&self, notifications: &[Notification], at: DateTime<Utc>) -> Result<u64>;

    /// Claims up to `limit` due entries for `lease`.
    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<OutboxEntry>>;

    /// Records one attempt's result.
    async fn record_attempt(&self, id: Uuid, attempt: &DeliveryAttempt) -> Result<OutboxEntry>;

    /// One entry (`NotFound` if absent).
    async fn outbox_entry(&self, id: Uuid) -> Result<OutboxEntry>;

    /// Every attempt of one entry, oldest first.
    async fn delivery_attempts(&self, id: Uuid) -> Result<Vec<DeliveryAttempt>>;

    /// Every entry about one alert, oldest first by `(created_at, id)` (empty if none).
    async fn alert_outbox_entries(&self, alert_id: Uuid) -> Result<Vec<OutboxEntry>>;
}
