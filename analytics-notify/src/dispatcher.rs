//! The outbox `Dispatcher`: claims due entries with a lease (critical first, as the store
//! orders them), delivers each in its own task with a per-call timeout, records every
//! attempt and schedules retries by the [`RetryPolicy`].
//!
//! - A slow or hanging channel delays no other: every delivery is a task of its own, bounded
//!   per channel, and the claiming loop never waits for one.
//! - It wakes at once when [`Dispatcher::waker`] is notified (the alert loop does after it
//!   enqueues), else every `poll_interval` (retries come due that way).
//! - A channel without settings is reported by [`Dispatcher::disabled`]; its entries are
//!   recorded as failed with that reason instead of being retried.
//! - At least once: an entry is recorded only after its send returned; a crash in between
//!   leaves it pending under its lease, so it is sent again once the lease ends (one
//!   duplicate at most per crash, never a loss). The entry's id is the idempotency key given
//!   to providers.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use analytics_core::Clock;
use analytics_core::notification::{
    AttemptOutcome, Channel, DeliveryAttempt, NOT_ATTEMPTED_PREFIX, NotifyError, OutboxEntry,
};
use analytics_core::ports::{NotificationOutbox, Notifier};
use chrono::{DateTime, Utc};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::retry::RetryPolicy;

/// Dispatcher tuning.
#[derive(Debug, Clone, PartialEq)]
pub struct DispatcherOptions {
    /// Entries claimed at once.
    pub batch: usize,
    /// How long a claimed entry stays hidden from other claimers; longer than `call_timeout`.
    pub lease: Duration,
    /// Longest wait for one provider call.
    pub call_timeout: Duration,
    /// How often the outbox is polled when nobody wakes the dispatcher.
    pub poll_interval: Duration,
    /// Deliveries in flight per channel.
    pub per_channel_concurrency: usize,
    /// Retry rules.
    pub retry: RetryPolicy,
    /// Most deliveries started per channel per clock hour in this process (SMS cost); an
    /// entry over the cap is put back until the next hour. Absent: no cap.
    pub hourly_caps: BTreeMap<Channel, u32>,
}

impl Default for DispatcherOptions {
    fn default() -> Self {
        Self {
            batch: 64,
            lease: Duration::from_secs(60),
            call_timeout: Duration::from_secs(10),
            poll_interval: Duration::from_millis(500),
            per_channel_concurrency: 8,
            retry: RetryPolicy::default(),
            hourly_caps: BTreeMap::new(),
        }
    }
}

/// Counters of what the dispatcher did, per channel and outcome (`sent`, `retry`,
/// `failed`, `capped`), for `/metrics`.
#[derive(Debug, Default)]
pub struct DispatcherStats {
    counts: Mutex<BTreeMap<(Channel, &'static str), u64>>,
    record_errors: AtomicU64,
}

impl DispatcherStats {
    fn count(&self, channel: Channel, outcome: &'static str) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        *c.entry((channel, outcome)).or_default() += 1;
    }

    /// Attempts so far by (channel, outcome).
    pub fn snapshot(&self) -> BTreeMap<(Channel, &'static str), u64> {
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Attempts whose result could not be recorded (they come back after their lease).
    pub fn record_errors(&self) -> u64 {
        self.record_errors.load(Ordering::Relaxed)
    }
}

/// Delivers the outbox.
#[derive(Debug)]
pub struct Dispatcher {
    outbox: Arc<dyn NotificationOutbox>,
    clock: Arc<dyn Clock>,
    options: DispatcherOptions,
    notifiers: HashMap<Channel, Arc<dyn Notifier>>,
    disabled: BTreeMap<Channel, String>,
    limits: HashMap<Channel, Arc<Semaphore>>,
    in_flight: Arc<Mutex<HashSet<Uuid>>>,
    wake: Arc<Notify>,
    stats: Arc<DispatcherStats>,
    /// Per channel: the clock hour (seconds / 3600) and the deliveries started in it.
    this_hour: Mutex<HashMap<Channel, (i64, u32)>>,
}

impl Dispatcher {
    /// A dispatcher with no channel yet: add them with [`Dispatcher::with_notifier`] or
    /// [`Dispatcher::with_disabled`].
    pub fn new(
        outbox: Arc<dyn NotificationOutbox>,
        clock: Arc<dyn Clock>,
        options: DispatcherOptions,
    ) -> Self {
        let limits = Channel::ALL
            .into_iter()
            .map(|c| {
                (
                    c,
                    Arc::new(Semaphore::new(options.per_channel_concurrency.max(1))),
                )
            })
            .collect();
        Self {
            outbox,
            clock,
            options,
            notifiers: HashMap::new(),
            disabled: BTreeMap::new(),
            limits,
            in_flight: Arc::default(),
            wake: Arc::new(Notify::new()),
            stats: Arc::default(),
            this_hour: Mutex::default(),
        }
    }

    /// Delivers the notifier's channel with it.
    pub fn with_notifier(mut self, notifier: Arc<dyn Notifier>) -> Self {
        self.disabled.remove(&notifier.channel());
        self.notifiers.insert(notifier.channel(), notifier);
        self
    }

    /// Marks a channel disabled, with the reason its entries are failed with.
    pub fn with_disabled(mut self, channel: Channel, reason: impl Into<String>) -> Self {
        self.notifiers.remove(&channel);
        self.disabled.insert(channel, reason.into());
        self
    }

    /// Reports a channel as disabled while keeping its notifier (Slack without a default
    /// webhook still reaches the recipients' own webhooks).
    pub fn with_disabled_report(mut self, channel: Channel, reason: impl Into<String>) -> Self {
        self.disabled.insert(channel, reason.into());
        self
    }

    /// Shares a wake-up signal (the alert loop notifies it after enqueueing).
    pub fn with_waker(mut self, wake: Arc<Notify>) -> Self {
        self.wake = wake;
        self
    }

    /// The wake-up signal: `notify_one` makes the loop claim at once.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Channels without settings, with the reason.
    pub fn disabled(&self) -> &BTreeMap<Channel, String> {
        &self.disabled
    }

    /// What the dispatcher did so far.
    pub fn stats(&self) -> Arc<DispatcherStats> {
        self.stats.clone()
    }

    /// Claims due entries and starts a delivery task for each one not already in flight;
    /// returns how many were claimed.
    pub async fn claim_and_spawn(
        self: &Arc<Self>,
        tasks: &mut JoinSet<()>,
    ) -> analytics_core::Result<usize> {
        let lease = chrono::Duration::from_std(self.options.lease)
            .unwrap_or_else(|_| chrono::Duration::seconds(60));
        let entries = self
            .outbox
            .claim_due(self.clock.now(), self.options.batch.max(1), lease)
            .await?;
        let claimed = entries.len();
        for entry in entries {
            let id = entry.notification.id;
            if !self.lock_in_flight().insert(id) {
                // Still being delivered here; the claim only renewed its lease.
                continue;
            }
            let me = self.clone();
            tasks.spawn(async move {
                me.deliver(entry).await;
                me.lock_in_flight().remove(&id);
            });
        }
        Ok(claimed)
    }

    fn lock_in_flight(&self) -> std::sync::MutexGuard<'_, HashSet<Uuid>> {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one delivery against the channel's hourly cap; `Some(next hour)` when the cap
    /// is reached.
    fn over_cap(&self, channel: Channel, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let cap = *self.options.hourly_caps.get(&channel)?;
        let hour = now.timestamp().div_euclid(3600);
        let mut counts = self.this_hour.lock().unwrap_or_else(|p| p.into_inner());
        let slot = counts.entry(channel).or_insert((hour, 0));
        if slot.0 != hour {
            *slot = (hour, 0);
        }
        if slot.1 >= cap {
            return DateTime::from_timestamp((hour + 1) * 3600, 0);
        }
        slot.1 += 1;
        None
    }

    /// One attempt at one entry, recorded.
    pub async fn deliver(&self, entry: OutboxEntry) {
        let n = &entry.notification;
        let channel = n.channel;
        let started = Instant::now();
        if let Some(next_hour) = self.over_cap(channel, self.clock.now()) {
            let cap = self.options.hourly_caps[&channel];
            tracing::warn!(
                notification = %n.id, channel = channel.as_str(), cap,
                "hourly cap reached; the delivery waits for the next hour"
            );
            self.stats.count(channel, "capped");
            let attempt = DeliveryAttempt {
                at: self.clock.now(),
                outcome: AttemptOutcome::Failed {
                    error: format!("{channel} hourly cap of {cap} reached; retried next hour"),
                    retry_at: Some(next_hour),
                },
                duration_ms: 0,
            };
            self.record(n.id, &attempt).await;
            return;
        }
        let result = match (self.notifiers.get(&channel), self.disabled.get(&channel)) {
            (Some(notifier), _) => {
                let _permit = self.limits[&channel].acquire().await;
                match tokio::time::timeout(self.options.call_timeout, notifier.send(n)).await {
                    Ok(r) => r,
                    Err(_) => Err(NotifyError::Transient(format!(
                        "{channel} call timed out after {} ms",
                        self.options.call_timeout.as_millis()
                    ))),
                }
            }
            (None, Some(reason)) => Err(NotifyError::Permanent(format!(
                "{NOT_ATTEMPTED_PREFIX}channel {channel} is disabled: {reason}"
            ))),
            (None, None) => Err(NotifyError::Permanent(format!(
                "{NOT_ATTEMPTED_PREFIX}channel {channel} has no notifier"
            ))),
        };
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let now = self.clock.now();
        let attempts = entry.attempts.saturating_add(1);
        let outcome = match &result {
            Ok(d) => AttemptOutcome::Delivered {
                provider_id: d.provider_id.clone(),
            },
            Err(e) => AttemptOutcome::Failed {
                // A delivery never attempted keeps its reason first, so it reads as `failed`
                // rather than `dead` (`OutboxEntry::gave_up_at_provider`).
                error: match e {
                    NotifyError::Permanent(m) if m.starts_with(NOT_ATTEMPTED_PREFIX) => m.clone(),
                    e => e.to_string(),
                },
                retry_at: self
                    .options
                    .retry
                    .retry_at(attempts, e, now, fastrand::f64()),
            },
        };
        let label = match &outcome {
            AttemptOutcome::Delivered { .. } => "sent",
            AttemptOutcome::Failed {
                retry_at: Some(_), ..
            } => "retry",
            AttemptOutcome::Failed { retry_at: None, .. } => "failed",
        };
        match &outcome {
            AttemptOutcome::Delivered { .. } => tracing::info!(
                notification = %n.id, channel = channel.as_str(), recipient = %n.recipient.label(),
                attempts, duration_ms, "notification delivered"
            ),
            AttemptOutcome::Failed { error, retry_at } => tracing::warn!(
                notification = %n.id, channel = channel.as_str(), recipient = %n.recipient.label(),
                attempts, duration_ms, error = %error, retry_at = ?retry_at, "notification attempt failed"
            ),
        }
        let attempt = DeliveryAttempt {
            at: now,
            outcome,
            duration_ms,
        };
        self.stats.count(channel, label);
        self.record(n.id, &attempt).await;
    }

    async fn record(&self, id: Uuid, attempt: &DeliveryAttempt) {
        if let Err(e) = self.outbox.record_attempt(id, attempt).await {
            self.stats.record_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                notification = %id, error = %e,
                "cannot record the attempt; the entry comes back after its lease"
            );
        }
    }

    /// Runs until `stop`: claims whenever woken or every `poll_interval`, and on stop
    /// waits up to `call_timeout` for deliveries in flight to be recorded.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut tasks = JoinSet::new();
        loop {
            while tasks.try_join_next().is_some() {}
            let full = match self.claim_and_spawn(&mut tasks).await {
                Ok(n) => n >= self.options.batch.max(1),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot claim outbox entries");
                    false
                }
            };
            if full {
                // More may be due: claim again after letting the tasks start.
                tokio::task::yield_now().await;
                if *stop.borrow() {
                    break;
                }
                continue;
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.options.poll_interval) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        let drain = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(self.options.call_timeout, drain)
            .await
            .is_err()
        {
            tracing::warn!(
                "deliveries still in flight at shutdown; they come back after their lease"
            );
        }
    }
}
