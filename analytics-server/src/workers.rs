//! The background loops that run on one replica at a time (rollup scheduler, alert engine):
//! each holds a named store lock while it runs its step every interval.

use std::sync::Arc;
use std::time::Duration;

use analytics_core::ports::{JobLease, Store};
use analytics_core::{Clock, SystemClock};
use chrono::{DateTime, Utc};
use tokio::sync::watch;

/// A step that must run on one replica at a time.
#[async_trait::async_trait]
pub(crate) trait SingletonJob: Send {
    /// The store lock (`JobStore::try_lock`) held while the job runs.
    fn lock_name(&self) -> &'static str;

    /// Called each time the lock is (re-)taken: another holder may have moved shared state.
    fn on_acquired(&mut self) {}

    /// One step at `now`; reports what it did in its own log line.
    async fn step(&mut self, now: DateTime<Utc>) -> analytics_core::Result<()>;
}

/// Runs `job` every `every` until `stop`, holding its lock: taken before the first step,
/// kept between steps, given up after a failed step and re-taken on the next tick.
pub(crate) async fn run_singleton(
    store: Arc<dyn Store>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
    mut job: impl SingletonJob,
) {
    let lock = job.lock_name();
    let mut lease: Option<JobLease> = None;
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if lease.is_none() {
            match store.try_lock(lock).await {
                Ok(Some(l)) => {
                    tracing::info!(lock, "lock acquired");
                    job.on_acquired();
                    lease = Some(l);
                }
                Ok(None) => {
                    tracing::debug!(lock, "lock held elsewhere");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, lock, "cannot take the lock");
                    continue;
                }
            }
        }
        let result = tokio::select! {
            r = job.step(SystemClock.now()) => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, lock, "step failed; re-taking the lock next time");
            lease = None;
        }
    }
}
