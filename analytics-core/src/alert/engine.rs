//! The alert engine: one pure step from (now, configurations with their observations, state)
//! to the next state and the transitions the server must apply (open, resolve, notify).
//!
//! Per configuration the state is a small machine: `ok` -> `pending` (a breach must hold
//! `for_secs`) -> `firing` (an open alert; reminders with backoff) -> `acknowledged` (no
//! reminders) -> `resolved` (on recovery past `recovery_threshold` when `auto_resolve`), plus
//! `no_data`. Cooldown is per configuration: after a notice was sent, further notices of the
//! configuration are suppressed (fired, resolved) or deferred (reminders) until it passes;
//! alerts are opened and resolved regardless. Every id the step creates is derived from its
//! inputs, so repeating a step (after a crash between applying its transitions and saving the
//! state) produces the same alert ids and notification keys. See "Alert engine" in
//! `docs/ARCHITECTURE.md`.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::alert::{Alert, AlertConfig, AlertStatus, NewAlert, NoDataPolicy, Severity};
use crate::ports::alert_rule::{AlertRule, Evaluation, Observation};

/// The engine's knobs (the evaluation interval is the caller's loop).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineOptions {
    /// The first reminder of an unacknowledged alert comes this long after it fired.
    pub reminder_first: Duration,
    /// Each reminder doubles the wait before the next, up to this.
    pub reminder_max: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            reminder_first: Duration::hours(1),
            reminder_max: Duration::hours(24),
        }
    }
}

/// The engine's whole state: plain data the server stores between steps (for example as
/// one JSON document in the job store).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EngineState {
    /// The last instant a step evaluated; steps at or before it change nothing.
    pub last_evaluated: Option<DateTime<Utc>>,
    /// Per configuration id.
    pub configs: BTreeMap<Uuid, ConfigState>,
}

/// One configuration's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigState {
    /// Where its machine stands.
    pub phase: Phase,
    /// When a notice of this configuration was last sent: the cooldown runs from here.
    pub last_notified_at: Option<DateTime<Utc>>,
    /// The last finite value observed.
    pub last_value: Option<f64>,
}

impl Default for ConfigState {
    fn default() -> Self {
        Self {
            phase: Phase::Ok,
            last_notified_at: None,
            last_value: None,
        }
    }
}

/// Where a configuration's machine stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Phase {
    /// Within bounds (or never evaluated).
    Ok,
    /// Breached since `since`; fires once the breach has held `for_secs`.
    Pending {
        /// The first breached evaluation of this run.
        since: DateTime<Utc>,
    },
    /// An open, unacknowledged alert.
    Firing(OpenAlert),
    /// An open alert someone acknowledged: no reminders, still resolves on recovery.
    Acknowledged(OpenAlert),
    /// The last alert was resolved (automatically or by a person); behaves like `ok`.
    Resolved {
        /// The alert.
        alert_id: Uuid,
        /// When the engine resolved it or saw it resolved.
        at: DateTime<Utc>,
    },
    /// The last evaluation had no data (and no alert is open).
    NoData {
        /// The first evaluation without data.
        since: DateTime<Utc>,
    },
}

impl Phase {
    /// The state's name: `ok`, `pending`, `firing`, `acknowledged`, `resolved`, `no_data`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Pending { .. } => "pending",
            Self::Firing(_) => "firing",
            Self::Acknowledged(_) => "acknowledged",
            Self::Resolved { .. } => "resolved",
            Self::NoData { .. } => "no_data",
        }
    }

    fn open(&self) -> Option<&OpenAlert> {
        match self {
            Self::Firing(a) | Self::Acknowledged(a) => Some(a),
            _ => None,
        }
    }
}

/// The open alert a firing or acknowledged configuration tracks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenAlert {
    /// The alert's id.
    pub alert_id: Uuid,
    /// When it fired.
    pub triggered_at: DateTime<Utc>,
    /// The sequence number of its next notice (0 is the fired notice).
    pub next_seq: u32,
    /// When the next reminder is due.
    pub next_reminder_at: DateTime<Utc>,
    /// The wait that led to `next_reminder_at`, in seconds; doubles per reminder.
    pub reminder_interval_secs: i64,
}

/// The configuration's unresolved alert as the history store has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredAlert {
    /// Its id.
    pub id: Uuid,
    /// `Active` or `Acknowledged`.
    pub status: AlertStatus,
    /// When it fired.
    pub triggered_at: DateTime<Utc>,
}

impl From<&Alert> for StoredAlert {
    fn from(a: &Alert) -> Self {
        Self {
            id: a.id(),
            status: a.status,
            triggered_at: a.fired.triggered_at,
        }
    }
}

/// One configuration to evaluate in a step.
#[derive(Debug, Clone, Copy)]
pub struct ConfigInput<'a> {
    /// The configuration (disabled ones are skipped and forgotten).
    pub config: &'a AlertConfig,
    /// Its metric at this instant: the window ending at the instant, the window before (for
    /// `rate_of_change`), recent windows and the same hour of past weeks (for `anomaly`).
    pub observation: Observation<'a>,
    /// Its unresolved alert in the history store (`AlertFilter` with statuses active and
    /// acknowledged), read after the previous step's transitions were applied. Lets the
    /// engine see acknowledgements and manual resolutions, and recover a lost state.
    pub stored: Option<StoredAlert>,
}

/// What a notice announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    /// The alert opened.
    Fired,
    /// The alert is still active and unacknowledged.
    Reminder,
    /// The alert was resolved automatically.
    Resolved,
}

impl NoticeKind {
    /// The wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fired => "fired",
            Self::Reminder => "reminder",
            Self::Resolved => "resolved",
        }
    }
}

/// A notice about one alert transition, before routing to channels and recipients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    /// The configuration.
    pub config_id: Uuid,
    /// The alert.
    pub alert_id: Uuid,
    /// Which transition.
    pub kind: NoticeKind,
    /// The notice's number within its alert (0 = fired); part of the idempotency key.
    pub seq: u32,
    /// The configuration's severity.
    pub severity: Severity,
    /// The evaluation instant.
    pub at: DateTime<Utc>,
    /// Subject line.
    pub title: String,
    /// Text.
    pub body: String,
}

/// What the server must do after a step, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Transition {
    /// Open this alert (`AlertHistoryStore::open_alert`; idempotent on its id).
    Open {
        /// The alert.
        alert: NewAlert,
    },
    /// Resolve this alert as `by` (`AlertHistoryStore::resolve_alert`).
    Resolve {
        /// The configuration.
        config_id: Uuid,
        /// The alert.
        alert_id: Uuid,
        /// Always `"auto"`.
        by: String,
        /// The evaluation instant.
        at: DateTime<Utc>,
    },
    /// Send this notice: route it ([`super::routing::route`]) and enqueue the result.
    Notify {
        /// The notice.
        notice: Notice,
    },
    /// A notice the cooldown held back; nothing is sent (log or count it).
    Suppressed {
        /// The notice.
        notice: Notice,
        /// When the cooldown ends.
        until: DateTime<Utc>,
    },
}

/// The result of a step.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The state to store.
    pub state: EngineState,
    /// What to apply, in order.
    pub transitions: Vec<Transition>,
}

/// Where one evaluation leaves the configuration, after the `no_data` policy.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Signal {
    /// The condition holds (`None`: no data under the `alerting` policy).
    Breach { value: Option<f64> },
    /// The condition does not hold, and a firing alert may recover (`data` is false for no
    /// data under the `ok` policy).
    Clear { data: bool },
    /// The condition does not hold, but the value has not crossed back past the recovery
    /// threshold: a firing alert stays, nothing new fires.
    Between,
    /// No data and the policy is `keep`.
    Hold,
}

/// A stable UUID for `key` (a version-8 UUID from its SHA-256), so a repeated step names
/// the same alerts and notifications.
pub fn stable_id(key: &str) -> Uuid {
    let hash = Sha256::digest(key.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&hash[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// One evaluation step at `now`. Configurations absent from `inputs`, or disabled, are
/// dropped from the state (their open alert, if any, stays as it is in the store). A step at
/// or before `state.last_evaluated` returns the state unchanged and no transitions.
pub fn tick(
    now: DateTime<Utc>,
    inputs: &[ConfigInput<'_>],
    state: &EngineState,
    options: &EngineOptions,
) -> Step {
    if state.last_evaluated.is_some_and(|last| now <= last) {
        return Step {
            state: state.clone(),
            transitions: Vec::new(),
        };
    }
    let mut next = EngineState {
        last_evaluated: Some(now),
        configs: BTreeMap::new(),
    };
    let mut transitions = Vec::new();
    for input in inputs.iter().filter(|i| i.config.spec.enabled) {
        let id = input.config.id;
        let mut cs = state.configs.get(&id).cloned().unwrap_or_default();
        reconcile(&mut cs, input.stored, now, options);
        let mut ctx = Ctx {
            config: input.config,
            now,
            options,
            out: &mut transitions,
        };
        step_config(&mut ctx, &mut cs, &input.observation);
        next.configs.insert(id, cs);
    }
    Step {
        state: next,
        transitions,
    }
}

/// The instants a step is due at between the last evaluated one and `now`, on the grid
/// `last + k * interval`, oldest first and at most `max` of them (the latest; `skipped`
/// counts the older ones left out). Without a last instant it is just `now`.
pub fn due_instants(
    last: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    interval: Duration,
    max: usize,
) -> CatchUp {
    let Some(last) = last else {
        return CatchUp {
            instants: vec![now],
            skipped: 0,
        };
    };
    let step = interval.num_microseconds().unwrap_or(i64::MAX).max(1);
    let elapsed = (now - last).num_microseconds().unwrap_or(i64::MAX);
    if elapsed <= 0 {
        return CatchUp::default();
    }
    let due = u64::try_from(elapsed / step).unwrap_or(0);
    let kept = due.min(max as u64);
    let skipped = due - kept;
    let instants = (skipped + 1..=due)
        .map(|k| last + Duration::microseconds(step.saturating_mul(k as i64)))
        .collect();
    CatchUp { instants, skipped }
}

/// The instants a catch-up evaluates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatchUp {
    /// Oldest first.
    pub instants: Vec<DateTime<Utc>>,
    /// Due instants left out because there were more than the maximum.
    pub skipped: u64,
}

/// The catch-up bound the server should use: one hour of one-minute steps.
pub const MAX_CATCH_UP_STEPS: usize = 60;

struct Ctx<'a> {
    config: &'a AlertConfig,
    now: DateTime<Utc>,
    options: &'a EngineOptions,
    out: &'a mut Vec<Transition>,
}

/// Aligns the state with the store's view of the configuration's unresolved alert.
fn reconcile(
    cs: &mut ConfigState,
    stored: Option<StoredAlert>,
    now: DateTime<Utc>,
    options: &EngineOptions,
) {
    let open = cs.phase.open().cloned();
    match (open, stored) {
        // Resolved by a person (or deleted) since the last step.
        (Some(a), None) => {
            cs.phase = Phase::Resolved {
                alert_id: a.alert_id,
                at: now,
            }
        }
        (Some(a), Some(s)) if a.alert_id == s.id => {
            if s.status == AlertStatus::Acknowledged {
                cs.phase = Phase::Acknowledged(a);
            }
        }
        // The store knows an alert the state does not (state lost or replaced): adopt it.
        // Its earlier notices are unknown, so numbering restarts after the fired notice.
        (_, Some(s)) => {
            let a = OpenAlert {
                alert_id: s.id,
                triggered_at: s.triggered_at,
                next_seq: 1,
                next_reminder_at: now + options.reminder_first,
                reminder_interval_secs: options.reminder_first.num_seconds(),
            };
            cs.phase = if s.status == AlertStatus::Acknowledged {
                Phase::Acknowledged(a)
            } else {
                Phase::Firing(a)
            };
        }
        (None, None) => {}
    }
}

fn signal(config: &AlertConfig, obs: &Observation<'_>, cs: &mut ConfigState) -> Signal {
    let spec = &config.spec;
    match spec.rule().evaluate(obs) {
        Evaluation::Breach { value, .. } => {
            cs.last_value = Some(value);
            Signal::Breach { value: Some(value) }
        }
        Evaluation::Ok { value } => {
            cs.last_value = Some(value);
            let firing = cs.phase.open().is_some();
            if firing
                && matches!(
                    spec.recovery_rule().evaluate(obs),
                    Evaluation::Breach { .. }
                )
            {
                Signal::Between
            } else {
                Signal::Clear { data: true }
            }
        }
        Evaluation::NoData => match spec.no_data {
            NoDataPolicy::Ok => Signal::Clear { data: false },
            NoDataPolicy::Alerting => Signal::Breach { value: None },
            NoDataPolicy::Keep => Signal::Hold,
        },
    }
}

fn step_config(ctx: &mut Ctx<'_>, cs: &mut ConfigState, obs: &Observation<'_>) {
    let signal = signal(ctx.config, obs, cs);
    let now = ctx.now;
    let spec = &ctx.config.spec;
    let hold = Duration::seconds(i64::from(spec.for_secs));
    match (cs.phase.clone(), signal) {
        (Phase::Firing(a) | Phase::Acknowledged(a), Signal::Clear { .. }) if spec.auto_resolve => {
            ctx.out.push(Transition::Resolve {
                config_id: ctx.config.id,
                alert_id: a.alert_id,
                by: "auto".to_owned(),
                at: now,
            });
            let notice = ctx.notice(&a, NoticeKind::Resolved, cs.last_value);
            ctx.send(cs, notice);
            cs.phase = Phase::Resolved {
                alert_id: a.alert_id,
                at: now,
            };
        }
        (Phase::Firing(mut a), _) => {
            if now >= a.next_reminder_at {
                ctx.remind(cs, &mut a);
            }
            cs.phase = Phase::Firing(a);
        }
        (Phase::Acknowledged(_), _) => {}
        (Phase::Pending { since }, Signal::Breach { value }) => {
            if now - since >= hold {
                ctx.fire(cs, value);
            }
        }
        (_, Signal::Breach { value }) => {
            if hold <= Duration::zero() {
                ctx.fire(cs, value);
            } else {
                cs.phase = Phase::Pending { since: now };
            }
        }
        (Phase::Pending { .. }, Signal::Hold) => {}
        (Phase::NoData { .. }, Signal::Hold | Signal::Clear { data: false }) => {}
        (_, Signal::Hold | Signal::Clear { data: false }) => {
            cs.phase = Phase::NoData { since: now }
        }
        (Phase::Resolved { .. }, Signal::Clear { .. } | Signal::Between) => {}
        (_, Signal::Clear { .. } | Signal::Between) => cs.phase = Phase::Ok,
    }
}

impl Ctx<'_> {
    /// Opens a new alert. A no-data alert (`value` `None`) records the last value seen, or
    /// 0: the store needs a finite number; its message says there was no data.
    fn fire(&mut self, cs: &mut ConfigState, value: Option<f64>) {
        let spec = &self.config.spec;
        let no_data = value.is_none();
        let value = value.or(cs.last_value).unwrap_or(0.0);
        let alert_id = stable_id(&format!(
            "alert/{}/{}",
            self.config.id,
            self.now.timestamp_micros()
        ));
        let message = if no_data {
            format!(
                "{}: no data for {} of {} over {}s",
                spec.name,
                spec.stat.as_str(),
                spec.metric,
                spec.window_secs
            )
        } else {
            format!(
                "{}: {} of {} is {value} over {}s ({} {})",
                spec.name,
                spec.stat.as_str(),
                spec.metric,
                spec.window_secs,
                spec.condition.as_str(),
                spec.threshold.get()
            )
        };
        self.out.push(Transition::Open {
            alert: NewAlert {
                id: alert_id,
                config_id: self.config.id,
                project: spec.project.clone(),
                metric: spec.metric.clone(),
                severity: spec.severity,
                triggered_at: self.now,
                value,
                threshold: spec.threshold.get(),
                message,
            },
        });
        let mut a = OpenAlert {
            alert_id,
            triggered_at: self.now,
            next_seq: 0,
            next_reminder_at: self.now + self.options.reminder_first,
            reminder_interval_secs: self.options.reminder_first.num_seconds(),
        };
        let notice = self.notice(&a, NoticeKind::Fired, (!no_data).then_some(value));
        a.next_seq = 1;
        self.send(cs, notice);
        cs.phase = Phase::Firing(a);
    }

    /// A due reminder is sent, or deferred to the end of the cooldown.
    fn remind(&mut self, cs: &mut ConfigState, a: &mut OpenAlert) {
        if let Some(until) = self.cooldown_until(cs) {
            a.next_reminder_at = until;
            return;
        }
        let notice = self.notice(a, NoticeKind::Reminder, cs.last_value);
        a.next_seq += 1;
        let max = self.options.reminder_max.num_seconds();
        a.reminder_interval_secs = a.reminder_interval_secs.saturating_mul(2).min(max);
        a.next_reminder_at = self.now + Duration::seconds(a.reminder_interval_secs);
        self.send(cs, notice);
    }

    fn cooldown_until(&self, cs: &ConfigState) -> Option<DateTime<Utc>> {
        let cooldown = Duration::seconds(i64::from(self.config.spec.cooldown_secs));
        cs.last_notified_at
            .map(|t| t + cooldown)
            .filter(|until| self.now < *until)
    }

    fn send(&mut self, cs: &mut ConfigState, notice: Notice) {
        match self.cooldown_until(cs) {
            Some(until) => self.out.push(Transition::Suppressed { notice, until }),
            None => {
                cs.last_notified_at = Some(self.now);
                self.out.push(Transition::Notify { notice });
            }
        }
    }

    fn notice(&self, a: &OpenAlert, kind: NoticeKind, value: Option<f64>) -> Notice {
        let spec = &self.config.spec;
        let state = match kind {
            NoticeKind::Fired => "firing",
            NoticeKind::Reminder => "still firing",
            NoticeKind::Resolved => "resolved",
        };
        let value = value.map_or_else(|| "no data".to_owned(), |v| v.to_string());
        Notice {
            config_id: self.config.id,
            alert_id: a.alert_id,
            kind,
            seq: a.next_seq,
            severity: spec.severity,
            at: self.now,
            title: format!(
                "[{}] {state}: {}",
                spec.severity.as_str().to_uppercase(),
                spec.name
            ),
            body: format!(
                "{} of {} over {}s is {value} ({} {}); fired at {}",
                spec.stat.as_str(),
                spec.metric,
                spec.window_secs,
                spec.condition.as_str(),
                spec.threshold.get(),
                a.triggered_at.to_rfc3339()
            ),
        }
    }
}

#[cfg(test)]
mod tests;
