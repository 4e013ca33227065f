//! `JobStore`: background-job watermarks and the singleton lock that lets one process run
//! the scheduler and the alert engine among several replicas.

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::Result;

/// A held singleton lock; dropping it releases the lock. If the holding process dies, the
/// store releases it too (a PostgreSQL advisory lock dies with its session).
pub struct JobLease {
    name: String,
    _guard: Box<dyn Send + Sync>,
}

impl JobLease {
    /// Wraps whatever keeps the lock held; `guard` must release it when dropped.
    pub fn new(name: impl Into<String>, guard: Box<dyn Send + Sync>) -> Self {
        Self {
            name: name.into(),
            _guard: guard,
        }
    }

    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Debug for JobLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobLease")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Job bookkeeping.
#[async_trait]
pub trait JobStore: Send + Sync + std::fmt::Debug {
    /// The job's watermark (the end of the last bucket it completed), if any.
    async fn watermark(&self, job: &str) -> Result<Option<DateTime<Utc>>>;

    /// Sets the job's watermark.
    async fn set_watermark(&self, job: &str, at: DateTime<Utc>) -> Result<()>;

    /// The state document stored with the job's watermark (by
    /// `AlertHistoryStore::commit_alert_step`), if any.
    async fn job_state(&self, job: &str) -> Result<Option<String>>;

    /// Takes the named lock if nobody holds it; `None` when it is held elsewhere.
    async fn try_lock(&self, name: &str) -> Result<Option<JobLease>>;
}
