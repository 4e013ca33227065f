//! The alert engine loop: every interval, holding the store's `alert-engine` lock, it runs
//! core's [`AlertRunner`] (which evaluates, applies and persists; see
//! `analytics_core::alert::runner`) and logs what it did. See "Alerts" in `docs/SERVER.md`.

use std::sync::Arc;
use std::time::Duration;

use analytics_core::Result;
pub use analytics_core::alert::runner::{
    AlertRunner, LOCK_NAME, MAX_INTERVAL, MIN_INTERVAL, RunReport, WATERMARK,
};
use analytics_core::ports::Store;
use analytics_core::rollup::spec::RollupSpecs;
use chrono::{DateTime, Utc};
use tokio::sync::{Notify, watch};

/// Runs the engine every `every` (kept within [`MIN_INTERVAL`]..=[`MAX_INTERVAL`]) while
/// holding the `alert-engine` lock (see [`crate::workers::run_singleton`]); wakes the
/// notification dispatcher through `wake` whenever a run enqueued notifications.
pub async fn alert_loop(
    store: Arc<dyn Store>,
    specs: Arc<RollupSpecs>,
    every: Duration,
    wake: Arc<Notify>,
    stop: watch::Receiver<bool>,
) {
    let every = every.clamp(MIN_INTERVAL, MAX_INTERVAL);
    let job = AlertJob {
        runner: AlertRunner::new(store.clone(), specs.clone(), every),
        store: store.clone(),
        specs,
        every,
        wake,
    };
    crate::workers::run_singleton(store, every, stop, job).await;
}

/// The engine as a singleton job.
struct AlertJob {
    runner: AlertRunner,
    store: Arc<dyn Store>,
    specs: Arc<RollupSpecs>,
    every: Duration,
    /// The notification dispatcher's wake-up: notified when a run enqueued something.
    wake: Arc<Notify>,
}

#[async_trait::async_trait]
impl crate::workers::SingletonJob for AlertJob {
    fn lock_name(&self) -> &'static str {
        LOCK_NAME
    }

    fn on_acquired(&mut self) {
        // Another holder may have moved the watermark: start from the store.
        self.runner = AlertRunner::new(self.store.clone(), self.specs.clone(), self.every);
    }

    async fn step(&mut self, now: DateTime<Utc>) -> Result<()> {
        let r = self.runner.run(now).await?;
        if r.enqueued > 0 {
            self.wake.notify_one();
        }
        for alert in &r.opened_alerts {
            tracing::warn!(
                alert = %alert.id, config = %alert.config_id, metric = %alert.metric,
                severity = alert.severity.as_str(), value = alert.value,
                threshold = alert.threshold, "alert opened"
            );
        }
        for id in &r.resolved_alerts {
            tracing::info!(alert = %id, "alert resolved automatically");
        }
        tracing::debug!(
            steps = r.steps,
            skipped = r.skipped,
            opened = r.opened,
            resolved = r.resolved,
            enqueued = r.enqueued,
            suppressed = r.suppressed,
            "alert engine run"
        );
        Ok(())
    }
}
