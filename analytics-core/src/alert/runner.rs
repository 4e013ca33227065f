//! The alert engine's orchestration over the store (the alert counterpart of
//! `rollup::scheduler`): at each due instant (missed ones caught up with
//! `engine::due_instants`) it reads every enabled configuration's observation through the
//! rollup reader, runs the pure `engine::tick`, applies the transitions (open, resolve, route
//! notices into the outbox) and stores the evaluated instant as the job watermark
//! `alert-engine`. `now` is an argument; the server's loop calls [`AlertRunner::run`].
//!
//! Durability: each step is one `AlertHistoryStore::commit_alert_step`: the alerts it opens
//! and resolves, their outbox entries, the watermark and the whole `EngineState` (pending
//! breaches, cooldowns, reminder schedules, as JSON) are committed together or not at all. A
//! crash mid-step leaves the previous step's watermark and state, and the step is evaluated
//! again from the same data. After a restart or a lock handover the next holder loads that
//! state, so a pending breach keeps its start and a cooldown its last notice. Without a
//! stored state (a store written before it was kept) the engine adopts every unresolved
//! alert, so nothing is opened twice.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::alert::engine::{
    self, ConfigInput, EngineOptions, EngineState, MAX_CATCH_UP_STEPS, StoredAlert, Transition,
};
use crate::alert::routing;
use crate::alert::{ANOMALY_MIN_HISTORY, AlertConfig, AlertStatus, Condition, NewAlert};
use crate::ids::{MetricName, ProjectId};
use crate::notification::{NotificationPreferences, PreferenceSubject, Recipient};
use crate::page::MAX_PAGE_SIZE;
use crate::ports::alert_rule::Observation;
use crate::ports::{AlertFilter, AlertStepCommit, AlertWrite, Store};
use crate::rollup::Rollup;
use crate::rollup::read::{RollupReader, SeriesQuery, observed_value, series_stats};
use crate::rollup::spec::RollupSpecs;
use crate::{PageRequest, Result, TimeRange};
use uuid::Uuid;

/// The singleton lock of the alert engine among replicas.
pub const LOCK_NAME: &str = "alert-engine";

/// The job watermark holding the last evaluated instant.
pub const WATERMARK: &str = "alert-engine";

/// The longest evaluation interval (FR-5).
pub const MAX_INTERVAL: Duration = Duration::from_secs(60);

/// The shortest evaluation interval (a zero interval would spin).
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// Past weeks read for an anomaly's seasonal baseline.
const SEASONS: i64 = 4;

/// The most raw events a runner keeps in memory by default (see
/// [`AlertRunner::with_raw_hours_limit`]).
pub const DEFAULT_RAW_HOURS_LIMIT: usize = 1_000_000;

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunReport {
    /// Instants evaluated.
    pub steps: usize,
    /// Due instants skipped (more than the catch-up bound).
    pub skipped: u64,
    /// Alerts opened.
    pub opened: usize,
    /// Alerts resolved.
    pub resolved: usize,
    /// Notifications newly enqueued.
    pub enqueued: u64,
    /// Notices held back by a cooldown.
    pub suppressed: usize,
    /// The alerts opened, for the caller's log.
    pub opened_alerts: Vec<NewAlert>,
    /// The alerts resolved automatically, for the caller's log.
    pub resolved_alerts: Vec<uuid::Uuid>,
}

/// The engine with its state and the metric reader.
#[derive(Debug)]
pub struct AlertRunner {
    store: Arc<dyn Store>,
    reader: RollupReader,
    interval: chrono::Duration,
    options: EngineOptions,
    state: Option<EngineState>,
    raw_hours_limit: usize,
}

/// Everything read for one configuration at one instant.
struct Observed {
    current: Option<f64>,
    previous: Option<f64>,
    history: Vec<f64>,
    seasonal: Vec<f64>,
    stored: Option<StoredAlert>,
}

impl AlertRunner {
    /// A runner evaluating every `interval` (kept within [`MIN_INTERVAL`]..=[`MAX_INTERVAL`]).
    pub fn new(store: Arc<dyn Store>, specs: Arc<RollupSpecs>, interval: Duration) -> Self {
        let interval = interval.clamp(MIN_INTERVAL, MAX_INTERVAL);
        Self {
            reader: RollupReader::new(store.clone(), specs),
            store,
            interval: chrono::Duration::from_std(interval).unwrap_or(chrono::Duration::seconds(60)),
            options: EngineOptions::default(),
            state: None,
            raw_hours_limit: DEFAULT_RAW_HOURS_LIMIT,
        }
    }

    /// Caps the raw events the runner keeps in memory (default
    /// [`DEFAULT_RAW_HOURS_LIMIT`]; 0 keeps none).
    ///
    /// The windows of a tick end at unaligned instants, so their edges (and those of the
    /// previous, recent and seasonal windows of `rate_of_change` and `anomaly`
    /// configurations, up to four weeks back) are read from raw events, a whole hour at a
    /// time. The next tick, a minute later, needs nearly the same hours. After each step the
    /// runner sizes its [`RawHours`](crate::rollup::raw_hours::RawHours) to that step's
    /// demand plus a quarter, within this cap: a least-recently-used cache smaller than a
    /// cyclic working set would miss on every lookup.
    pub fn with_raw_hours_limit(mut self, limit: usize) -> Self {
        self.raw_hours_limit = limit;
        self.fit_raw_hours(0);
        self
    }

    /// The reader's raw-hour cache (for metrics).
    pub fn raw_hours(&self) -> &Arc<crate::rollup::raw_hours::RawHours> {
        self.reader.raw_hours()
    }

    /// Sizes the raw-hour cache to `demand` plus a quarter, at least the default and at most
    /// the limit.
    fn fit_raw_hours(&self, demand: usize) {
        let wanted = demand
            .saturating_add(demand / 4)
            .max(crate::rollup::raw_hours::DEFAULT_CAPACITY_EVENTS)
            .min(self.raw_hours_limit);
        let raw = self.reader.raw_hours();
        if raw.capacity() != wanted {
            raw.set_capacity(wanted);
        }
    }

    /// Evaluates every instant due up to `now` and applies what each step decided; the
    /// watermark moves after each applied step.
    pub async fn run(&mut self, now: DateTime<Utc>) -> Result<RunReport> {
        let mut state = match self.state.take() {
            Some(s) => s,
            None => self.stored_state().await?,
        };
        let due =
            engine::due_instants(state.last_evaluated, now, self.interval, MAX_CATCH_UP_STEPS);
        let mut report = RunReport {
            skipped: due.skipped,
            ..RunReport::default()
        };
        let mut outcome = Ok(());
        for at in due.instants {
            match self.step(at, &state, &mut report).await {
                Ok(next) => {
                    state = next;
                    report.steps += 1;
                }
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        self.state = Some(state);
        outcome.map(|()| report)
    }

    /// The state the last committed step stored, else one starting at the watermark.
    async fn stored_state(&self) -> Result<EngineState> {
        let watermark = self.store.watermark(WATERMARK).await?;
        let stored = self
            .store
            .job_state(WATERMARK)
            .await?
            .and_then(|json| serde_json::from_str::<EngineState>(&json).ok())
            .filter(|s| s.last_evaluated == watermark);
        Ok(stored.unwrap_or(EngineState {
            last_evaluated: watermark,
            ..EngineState::default()
        }))
    }

    async fn step(
        &self,
        at: DateTime<Utc>,
        state: &EngineState,
        report: &mut RunReport,
    ) -> Result<EngineState> {
        let configs = self.store.list_configs(None, true).await?;
        self.reader.raw_hours().begin_round();
        let reads = self.read_windows(&configs, at).await?;
        self.fit_raw_hours(self.reader.raw_hours().round_demand());
        let unresolved = self.unresolved_alerts().await?;
        let observed: Vec<Observed> = configs
            .iter()
            .map(|c| observe(c, at, &reads, unresolved.get(&c.id).copied()))
            .collect::<Result<_>>()?;
        let inputs: Vec<ConfigInput<'_>> = configs
            .iter()
            .zip(&observed)
            .map(|(config, o)| ConfigInput {
                config,
                observation: Observation {
                    current: o.current,
                    previous: o.previous,
                    history: &o.history,
                    seasonal: &o.seasonal,
                },
                stored: o.stored,
            })
            .collect();
        let step = engine::tick(at, &inputs, state, &self.options);
        let mut writes = Vec::with_capacity(step.transitions.len());
        let mut opening = Vec::new();
        for t in &step.transitions {
            match t {
                Transition::Open { alert } => {
                    opening.push(alert.clone());
                    writes.push(AlertWrite::Open(alert.clone()));
                }
                Transition::Resolve {
                    alert_id, by, at, ..
                } => writes.push(AlertWrite::Resolve {
                    alert_id: *alert_id,
                    by: by.clone(),
                    at: *at,
                }),
                Transition::Notify { notice } => {
                    if let Some(config) = configs.iter().find(|c| c.id == notice.config_id) {
                        let preferences = self.preferences(config).await?;
                        let routed = routing::route(notice, &config.spec, &preferences);
                        writes.push(AlertWrite::Enqueue(routed));
                    }
                }
                Transition::Suppressed { .. } => report.suppressed += 1,
            }
        }
        let state_json = serde_json::to_string(&step.state)
            .map_err(|e| crate::Error::Internal(format!("engine state does not serialize: {e}")))?;
        let applied = self
            .store
            .commit_alert_step(&AlertStepCommit {
                job: WATERMARK.to_owned(),
                at,
                state: state_json,
                writes,
            })
            .await?;
        report.opened += applied.opened.len();
        report.resolved += applied.resolved.len();
        report.enqueued += applied.enqueued;
        report.opened_alerts.extend(
            opening
                .into_iter()
                .filter(|a| applied.opened.contains(&a.id)),
        );
        report.resolved_alerts.extend(applied.resolved);
        Ok(step.state)
    }

    /// The stored preferences of a configuration's user and team recipients.
    async fn preferences(&self, config: &AlertConfig) -> Result<Vec<NotificationPreferences>> {
        let mut preferences = Vec::new();
        for r in &config.spec.recipients {
            let subject = match r {
                Recipient::User(u) => PreferenceSubject::User(u.clone()),
                Recipient::Team(t) => PreferenceSubject::Team(t.clone()),
                _ => continue,
            };
            if let Some(p) = self.store.preferences(&subject).await? {
                preferences.push(p);
            }
        }
        Ok(preferences)
    }

    /// Reads every window the configurations need once: each distinct (project, window)
    /// is one [`RollupReader::window_rows`] of the series shapes (metric and dimension
    /// names) watched over it, however many configurations share it.
    async fn read_windows(&self, configs: &[AlertConfig], at: DateTime<Utc>) -> Result<Reads> {
        let mut wanted: BTreeMap<WindowKey, BTreeSet<(MetricName, Vec<String>)>> = BTreeMap::new();
        for c in configs {
            let mut names: Vec<String> = c.spec.dimensions.names().map(str::to_owned).collect();
            names.sort();
            for (start, end) in windows(c, at) {
                wanted
                    .entry((c.spec.project.clone(), start, end))
                    .or_default()
                    .insert((c.spec.metric.clone(), names.clone()));
            }
        }
        // One plan of what is rolled up for the whole step.
        let reader = self.reader.snapshot();
        let mut reads = Reads::new();
        for ((project, start, end), shapes) in wanted {
            let Ok(range) = TimeRange::new(start, end) else {
                continue;
            };
            let shapes: Vec<(MetricName, Vec<String>)> = shapes.into_iter().collect();
            let rows = reader.window_rows(&project, &shapes, range).await?;
            reads.insert((project, start, end), rows);
        }
        Ok(reads)
    }

    /// The newest unresolved alert of every configuration, in one listing.
    async fn unresolved_alerts(&self) -> Result<HashMap<Uuid, StoredAlert>> {
        let filter = AlertFilter {
            statuses: vec![AlertStatus::Active, AlertStatus::Acknowledged],
            ..AlertFilter::default()
        };
        let mut out = HashMap::new();
        let mut page = PageRequest::first(MAX_PAGE_SIZE);
        loop {
            let listed = self.store.list_alerts(&filter, &page).await?;
            for a in &listed.items {
                // Newest first: the first seen of a configuration is its newest.
                out.entry(a.fired.config_id)
                    .or_insert_with(|| StoredAlert::from(a));
            }
            match listed.next_cursor {
                Some(c) => page.cursor = Some(c),
                None => return Ok(out),
            }
        }
    }
}

/// A window of one project: `(project, start, end)`.
type WindowKey = (ProjectId, DateTime<Utc>, DateTime<Utc>);

/// The rows read per window.
type Reads = HashMap<WindowKey, Vec<Rollup>>;

/// Every window a configuration's observation at `at` needs: the current one, then the
/// previous one (`rate_of_change`) or the recent and seasonal ones (`anomaly`).
fn windows(c: &AlertConfig, at: DateTime<Utc>) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let w = chrono::Duration::seconds(i64::from(c.spec.window_secs));
    let mut out = vec![(at - w, at)];
    match c.spec.condition {
        Condition::RateOfChange => out.push((at - w - w, at - w)),
        Condition::Anomaly => {
            for k in 1..=ANOMALY_MIN_HISTORY as i32 + 1 {
                let end = at - w * k;
                out.push((end - w, end));
            }
            for k in 1..=SEASONS {
                let end = at - chrono::Duration::weeks(k);
                out.push((end - w, end));
            }
        }
        Condition::ThresholdAbove | Condition::ThresholdBelow => {}
    }
    out
}

/// The configuration's value over one window, from the rows read for it.
fn value(
    c: &AlertConfig,
    reads: &Reads,
    (start, end): (DateTime<Utc>, DateTime<Utc>),
) -> Result<Option<f64>> {
    let Ok(window) = TimeRange::new(start, end) else {
        return Ok(None);
    };
    let rows = reads
        .get(&(c.spec.project.clone(), start, end))
        .map_or(&[][..], Vec::as_slice);
    let q = SeriesQuery {
        project: c.spec.project.clone(),
        metric: c.spec.metric.clone(),
        dimensions: c.spec.dimensions.clone(),
    };
    let stats = series_stats(rows, &q)?;
    Ok(observed_value(stats.as_ref(), c.spec.stat, window))
}

/// Everything observed for one configuration at `at` (windows as [`windows`] lists them).
fn observe(
    c: &AlertConfig,
    at: DateTime<Utc>,
    reads: &Reads,
    stored: Option<StoredAlert>,
) -> Result<Observed> {
    let ws = windows(c, at);
    let current = value(c, reads, ws[0])?;
    let mut previous = None;
    let mut history = Vec::new();
    let mut seasonal = Vec::new();
    match c.spec.condition {
        Condition::RateOfChange => previous = value(c, reads, ws[1])?,
        Condition::Anomaly => {
            // Oldest first, as the engine expects.
            let recent = &ws[1..=ANOMALY_MIN_HISTORY + 1];
            for w in recent.iter().rev() {
                if let Some(v) = value(c, reads, *w)? {
                    history.push(v);
                }
            }
            for w in ws[ANOMALY_MIN_HISTORY + 2..].iter().rev() {
                if let Some(v) = value(c, reads, *w)? {
                    seasonal.push(v);
                }
            }
        }
        Condition::ThresholdAbove | Condition::ThresholdBelow => {}
    }
    Ok(Observed {
        current,
        previous,
        history,
        seasonal,
        stored,
    })
}
