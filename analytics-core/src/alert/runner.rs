//! The alert engine's orchestration over the store (the alert counterpart of
//! `rollup::scheduler`): at each due instant (missed ones caught up with
//! `engine::due_instants`) it reads every enabled configuration's observation through the
//! rollup reader, runs the pure `engine::tick`, applies the transitions (open, resolve, route
//! notices into the outbox) and stores the evaluated instant as the job watermark
//! `alert-engine`. `now` is an argument; the server's loop calls [`AlertRunner::run`].
//!
//! State: the `EngineState` lives in the runner between steps; only its `last_evaluated`
//! is persisted (the watermark). After a restart (or a lock handover) the engine starts from
//! the stored alerts: it adopts every unresolved alert, so nothing is opened twice and
//! resolution still works; what is lost is a pending breach's start (it begins again), the
//! cooldown's last notice and the reminder schedule (reminders restart from the adoption).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::alert::engine::{
    self, ConfigInput, EngineOptions, EngineState, MAX_CATCH_UP_STEPS, StoredAlert, Transition,
};
use crate::alert::routing;
use crate::alert::{ANOMALY_MIN_HISTORY, AlertConfig, AlertStatus, Condition, NewAlert};
use crate::notification::{PreferenceSubject, Recipient};
use crate::ports::alert_rule::Observation;
use crate::ports::metrics_source::MetricQuery;
use crate::ports::{AlertFilter, MetricsSource, OpenOutcome, Store};
use crate::rollup::read::RollupReader;
use crate::rollup::spec::RollupSpecs;
use crate::{PageRequest, Result, TimeRange};

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
        }
    }

    /// Evaluates every instant due up to `now` and applies what each step decided; the
    /// watermark moves after each applied step.
    pub async fn run(&mut self, now: DateTime<Utc>) -> Result<RunReport> {
        let mut state = match self.state.take() {
            Some(s) => s,
            None => EngineState {
                last_evaluated: self.store.watermark(WATERMARK).await?,
                ..EngineState::default()
            },
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

    async fn step(
        &self,
        at: DateTime<Utc>,
        state: &EngineState,
        report: &mut RunReport,
    ) -> Result<EngineState> {
        let configs = self.store.list_configs(None, true).await?;
        let mut observed = Vec::with_capacity(configs.len());
        for c in &configs {
            observed.push(self.observe(c, at).await?);
        }
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
        for t in &step.transitions {
            self.apply(t, &configs, at, report).await?;
        }
        self.store.set_watermark(WATERMARK, at).await?;
        Ok(step.state)
    }

    async fn value(
        &self,
        c: &AlertConfig,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Option<f64>> {
        let Ok(window) = TimeRange::new(start, end) else {
            return Ok(None);
        };
        self.reader
            .metric_value(&MetricQuery {
                project: c.spec.project.clone(),
                metric: c.spec.metric.clone(),
                stat: c.spec.stat,
                dimensions: c.spec.dimensions.clone(),
                window,
            })
            .await
    }

    async fn observe(&self, c: &AlertConfig, at: DateTime<Utc>) -> Result<Observed> {
        let w = chrono::Duration::seconds(i64::from(c.spec.window_secs));
        let current = self.value(c, at - w, at).await?;
        let mut previous = None;
        let mut history = Vec::new();
        let mut seasonal = Vec::new();
        match c.spec.condition {
            Condition::RateOfChange => previous = self.value(c, at - w - w, at - w).await?,
            Condition::Anomaly => {
                for k in (1..=ANOMALY_MIN_HISTORY as i64 + 1).rev() {
                    let end = at - w * k as i32;
                    if let Some(v) = self.value(c, end - w, end).await? {
                        history.push(v);
                    }
                }
                for k in (1..=SEASONS).rev() {
                    let end = at - chrono::Duration::weeks(k);
                    if let Some(v) = self.value(c, end - w, end).await? {
                        seasonal.push(v);
                    }
                }
            }
            Condition::ThresholdAbove | Condition::ThresholdBelow => {}
        }
        let filter = AlertFilter {
            config_id: Some(c.id),
            statuses: vec![AlertStatus::Active, AlertStatus::Acknowledged],
            ..AlertFilter::default()
        };
        let stored = self
            .store
            .list_alerts(&filter, &PageRequest::first(1))
            .await?
            .items
            .first()
            .map(StoredAlert::from);
        Ok(Observed {
            current,
            previous,
            history,
            seasonal,
            stored,
        })
    }

    async fn apply(
        &self,
        t: &Transition,
        configs: &[AlertConfig],
        at: DateTime<Utc>,
        report: &mut RunReport,
    ) -> Result<()> {
        match t {
            Transition::Open { alert } => {
                if let OpenOutcome::Opened(_) = self.store.open_alert(alert).await? {
                    report.opened += 1;
                    report.opened_alerts.push(alert.clone());
                }
            }
            Transition::Resolve {
                alert_id, by, at, ..
            } => {
                self.store.resolve_alert(*alert_id, by, *at).await?;
                report.resolved += 1;
                report.resolved_alerts.push(*alert_id);
            }
            Transition::Notify { notice } => {
                let Some(config) = configs.iter().find(|c| c.id == notice.config_id) else {
                    return Ok(());
                };
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
                let notifications = routing::route(notice, &config.spec, &preferences);
                report.enqueued += self.store.enqueue(&notifications, at).await?;
            }
            Transition::Suppressed { .. } => report.suppressed += 1,
        }
        Ok(())
    }
}
