//! Per-project ingest counters (accepted, duplicates, rejected by reason, sampled out, rate
//! limited, late), kept by this process since it started and exported on `/metrics` as
//! `analytics_project_ingest_events_total{project, outcome}`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use analytics_core::ProjectId;
use chrono::{DateTime, Utc};
use prometheus::IntCounterVec;

/// One project's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectCounts {
    /// Events stored.
    pub accepted: u64,
    /// Events already stored.
    pub duplicates: u64,
    /// Refused events by reason.
    pub rejected: BTreeMap<String, u64>,
    /// Events dropped by sampling.
    pub sampled_out: u64,
    /// Events of requests refused by a rate limit.
    pub rate_limited: u64,
    /// Accepted events that arrived more than [`LATE_AFTER`] after they occurred.
    pub late: u64,
}

/// An accepted event is late when it arrives this long after its `occurred_at`.
pub const LATE_AFTER: chrono::Duration = chrono::Duration::hours(1);

/// What happened to events of one project in one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome<'a> {
    /// Stored.
    Accepted,
    /// Already stored.
    Duplicate,
    /// Refused, with the reason.
    Rejected(&'a str),
    /// Dropped by sampling.
    SampledOut,
    /// The request was rate limited.
    RateLimited,
    /// Stored, and late.
    Late,
}

/// The counters of every project, shared by the handlers.
#[derive(Debug, Clone)]
pub struct IngestStats {
    since: DateTime<Utc>,
    counts: Arc<Mutex<HashMap<ProjectId, ProjectCounts>>>,
    exported: IntCounterVec,
}

impl IngestStats {
    /// Counters starting now, exported through `exported` (labels `project`, `outcome`).
    pub fn new(since: DateTime<Utc>, exported: IntCounterVec) -> Self {
        Self {
            since,
            counts: Arc::default(),
            exported,
        }
    }

    /// When counting started.
    pub fn since(&self) -> DateTime<Utc> {
        self.since
    }

    /// Adds `n` events of `project` with `outcome`.
    pub fn add(&self, project: &ProjectId, outcome: Outcome<'_>, n: u64) {
        if n == 0 {
            return;
        }
        {
            let mut all = self.counts.lock().unwrap_or_else(|e| e.into_inner());
            let c = all.entry(project.clone()).or_default();
            match outcome {
                Outcome::Accepted => c.accepted += n,
                Outcome::Duplicate => c.duplicates += n,
                Outcome::Rejected(reason) => *c.rejected.entry(reason.to_owned()).or_default() += n,
                Outcome::SampledOut => c.sampled_out += n,
                Outcome::RateLimited => c.rate_limited += n,
                Outcome::Late => c.late += n,
            }
        }
        let label = match outcome {
            Outcome::Accepted => "accepted",
            Outcome::Duplicate => "duplicate",
            Outcome::Rejected(_) => "rejected",
            Outcome::SampledOut => "sampled_out",
            Outcome::RateLimited => "rate_limited",
            Outcome::Late => "late",
        };
        self.exported
            .with_label_values(&[project.as_str(), label])
            .inc_by(n);
    }

    /// One project's counters (zeros when it has none).
    pub fn snapshot(&self, project: &ProjectId) -> ProjectCounts {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(project)
            .cloned()
            .unwrap_or_default()
    }
}
