//! Tests of the alert engine: every transition of the state machine for every condition,
//! flapping with and without hysteresis, cooldown, reminders, re-fires, no-data policies and
//! catch-up instants.

use chrono::TimeZone;

use super::*;
use crate::alert::{AlertConfigSpec, Condition, Stat};
use crate::ids::{MetricName, ProjectId, Threshold};
use crate::rollup::Dimensions;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 3, 12, 0, 0).unwrap()
}

fn at(minutes: i64) -> DateTime<Utc> {
    t0() + Duration::minutes(minutes)
}

fn threshold(v: f64) -> Threshold {
    Threshold::new(v).unwrap()
}

fn config(condition: Condition) -> AlertConfig {
    let (t, recovery) = match condition {
        Condition::ThresholdAbove => (100.0, 80.0),
        Condition::ThresholdBelow => (10.0, 20.0),
        Condition::RateOfChange => (50.0, 20.0),
        Condition::Anomaly => (3.0, 1.5),
    };
    let spec = AlertConfigSpec {
        project: ProjectId::default_project(),
        name: "checkout latency".into(),
        metric: MetricName::parse("api.latency_ms").unwrap(),
        stat: Stat::P95,
        dimensions: Dimensions::default(),
        condition,
        threshold: threshold(t),
        window_secs: 300,
        severity: Severity::Warning,
        cooldown_secs: 600,
        channels: vec![],
        recipients: vec![],
        enabled: true,
        for_secs: 300,
        recovery_threshold: Some(threshold(recovery)),
        auto_resolve: true,
        no_data: NoDataPolicy::Keep,
    };
    spec.validate().unwrap();
    AlertConfig::created(stable_id(condition.as_str()), &spec, t0())
}

/// What a metric does in one evaluation, per condition.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Sig {
    Breach,
    /// Not breached, but not past the recovery threshold either.
    Between,
    Clear,
    NoData,
}

/// The seasonal baseline of the anomaly rows: median 100, MAD 1.
const SEASONS: [f64; 5] = [100.0, 100.0, 102.0, 98.0, 101.0];

fn observation(condition: Condition, sig: Sig) -> Observation<'static> {
    let current = match (condition, sig) {
        (_, Sig::NoData) => None,
        (Condition::ThresholdAbove, Sig::Breach) => Some(120.0),
        (Condition::ThresholdAbove, Sig::Between) => Some(90.0),
        (Condition::ThresholdAbove, Sig::Clear) => Some(70.0),
        (Condition::ThresholdBelow, Sig::Breach) => Some(5.0),
        (Condition::ThresholdBelow, Sig::Between) => Some(15.0),
        (Condition::ThresholdBelow, Sig::Clear) => Some(25.0),
        // Percent change against the previous window's 100.
        (Condition::RateOfChange, Sig::Breach) => Some(200.0),
        (Condition::RateOfChange, Sig::Between) => Some(130.0),
        (Condition::RateOfChange, Sig::Clear) => Some(110.0),
        // Robust scores 6.7, 2.0 and 0.3.
        (Condition::Anomaly, Sig::Breach) => Some(110.0),
        (Condition::Anomaly, Sig::Between) => Some(103.0),
        (Condition::Anomaly, Sig::Clear) => Some(100.5),
    };
    Observation {
        current,
        previous: Some(100.0),
        history: &[],
        seasonal: &SEASONS,
    }
}

/// The state a table row starts from, at `now` = minute 30.
#[derive(Debug, Clone, Copy)]
enum Start {
    Ok,
    /// Breached since a minute ago (for_secs not held yet).
    PendingFresh,
    /// Breached for five minutes (for_secs held).
    PendingHeld,
    /// Firing, its reminder not due.
    Firing,
    /// Firing, its reminder due, the cooldown over.
    FiringReminderDue,
    /// Firing, its reminder due, a notice sent a minute ago.
    FiringInCooldown,
    /// Acknowledged, its reminder (which it never gets) due.
    Acknowledged,
    Resolved,
    NoData,
    /// Ok, a notice of this configuration sent a minute ago.
    OkInCooldown,
}

/// How a row's configuration differs from [`config`].
#[derive(Debug, Clone, Copy)]
enum Cfg {
    Default,
    /// `for_secs` 0.
    Immediate,
    NoDataOk,
    /// `no_data: alerting`, `for_secs` 0.
    NoDataAlerting,
    /// `no_data: alerting`, `for_secs` 300.
    NoDataAlertingHeld,
    ManualResolve,
}

const NOW: i64 = 30;

fn alert_id() -> Uuid {
    stable_id("the open alert")
}

fn start(from: Start) -> (ConfigState, Option<StoredAlert>) {
    let now = at(NOW);
    let open = |reminder_at: i64| OpenAlert {
        alert_id: alert_id(),
        triggered_at: at(0),
        next_seq: 1,
        next_reminder_at: at(reminder_at),
        reminder_interval_secs: 3600,
    };
    let stored = |status| {
        Some(StoredAlert {
            id: alert_id(),
            status,
            triggered_at: at(0),
        })
    };
    let long_ago = Some(at(0));
    let recently = Some(now - Duration::minutes(1));
    let (phase, notified, store) = match from {
        Start::Ok => (Phase::Ok, None, None),
        Start::PendingFresh => (Phase::Pending { since: at(NOW - 1) }, None, None),
        Start::PendingHeld => (Phase::Pending { since: at(NOW - 5) }, None, None),
        Start::Firing => (
            Phase::Firing(open(60)),
            long_ago,
            stored(AlertStatus::Active),
        ),
        Start::FiringReminderDue => (
            Phase::Firing(open(NOW)),
            long_ago,
            stored(AlertStatus::Active),
        ),
        Start::FiringInCooldown => (
            Phase::Firing(open(NOW)),
            recently,
            stored(AlertStatus::Active),
        ),
        Start::Acknowledged => (
            Phase::Acknowledged(open(NOW)),
            long_ago,
            stored(AlertStatus::Acknowledged),
        ),
        Start::Resolved => (
            Phase::Resolved {
                alert_id: alert_id(),
                at: at(10),
            },
            long_ago,
            None,
        ),
        Start::NoData => (Phase::NoData { since: at(20) }, None, None),
        Start::OkInCooldown => (Phase::Ok, recently, None),
    };
    let state = ConfigState {
        phase,
        last_notified_at: notified,
        last_value: Some(1.0),
    };
    (state, store)
}

/// A short summary of a step's transitions: `open`, `resolve`, `notify:<kind>`,
/// `suppressed:<kind>`.
fn actions(transitions: &[Transition]) -> Vec<String> {
    transitions
        .iter()
        .map(|t| match t {
            Transition::Open { .. } => "open".to_owned(),
            Transition::Resolve { .. } => "resolve".to_owned(),
            Transition::Notify { notice } => format!("notify:{}", notice.kind.as_str()),
            Transition::Suppressed { notice, .. } => {
                format!("suppressed:{}", notice.kind.as_str())
            }
        })
        .collect()
}

fn check(condition: Condition, from: Start, cfg: Cfg, sig: Sig, phase: &str, expect: &[&str]) {
    let mut config = config(condition);
    let spec = &mut config.spec;
    match cfg {
        Cfg::Default => {}
        Cfg::Immediate => spec.for_secs = 0,
        Cfg::NoDataOk => spec.no_data = NoDataPolicy::Ok,
        Cfg::NoDataAlerting => {
            spec.no_data = NoDataPolicy::Alerting;
            spec.for_secs = 0;
        }
        Cfg::NoDataAlertingHeld => spec.no_data = NoDataPolicy::Alerting,
        Cfg::ManualResolve => spec.auto_resolve = false,
    }
    let (cs, stored) = start(from);
    let mut state = EngineState::default();
    state.configs.insert(config.id, cs);
    let step = tick(
        at(NOW),
        &[ConfigInput {
            config: &config,
            observation: observation(condition, sig),
            stored,
        }],
        &state,
        &EngineOptions::default(),
    );
    let got_phase = step.state.configs[&config.id].phase.name();
    let got = actions(&step.transitions);
    assert_eq!(
        (got_phase, got),
        (phase, expect.iter().map(|s| s.to_string()).collect()),
        "{condition:?} from {from:?} with {cfg:?} on {sig:?}"
    );
}

#[test]
fn every_transition_of_the_state_machine_for_every_condition() {
    use Cfg as C;
    use Sig as S;
    use Start as F;
    #[rustfmt::skip]
    let rows: &[(Start, Cfg, Sig, &str, &[&str])] = &[
        // ok: a breach starts the for_secs timer, or fires at once without one.
        (F::Ok, C::Default, S::Breach, "pending", &[]),
        (F::Ok, C::Immediate, S::Breach, "firing", &["open", "notify:fired"]),
        (F::Ok, C::Default, S::Between, "ok", &[]),
        (F::Ok, C::Default, S::Clear, "ok", &[]),
        (F::Ok, C::Default, S::NoData, "no_data", &[]),
        // pending: fires once the breach held for_secs; any healthy value resets it.
        (F::PendingFresh, C::Default, S::Breach, "pending", &[]),
        (F::PendingHeld, C::Default, S::Breach, "firing", &["open", "notify:fired"]),
        (F::PendingFresh, C::Default, S::Between, "ok", &[]),
        (F::PendingHeld, C::Default, S::Clear, "ok", &[]),
        (F::PendingFresh, C::Default, S::NoData, "pending", &[]),
        (F::PendingFresh, C::NoDataOk, S::NoData, "no_data", &[]),
        (F::PendingHeld, C::NoDataAlertingHeld, S::NoData, "firing", &["open", "notify:fired"]),
        // firing: stays until the value crosses back past the recovery threshold.
        (F::Firing, C::Default, S::Breach, "firing", &[]),
        (F::Firing, C::Default, S::Between, "firing", &[]),
        (F::Firing, C::Default, S::Clear, "resolved", &["resolve", "notify:resolved"]),
        (F::Firing, C::Default, S::NoData, "firing", &[]),
        (F::Firing, C::NoDataOk, S::NoData, "resolved", &["resolve", "notify:resolved"]),
        (F::Firing, C::NoDataAlerting, S::NoData, "firing", &[]),
        (F::Firing, C::ManualResolve, S::Clear, "firing", &[]),
        // reminders: due ones go out whatever the value, unless the cooldown defers them.
        (F::FiringReminderDue, C::Default, S::Breach, "firing", &["notify:reminder"]),
        (F::FiringReminderDue, C::Default, S::Between, "firing", &["notify:reminder"]),
        (F::FiringReminderDue, C::Default, S::NoData, "firing", &["notify:reminder"]),
        (F::FiringReminderDue, C::ManualResolve, S::Clear, "firing", &["notify:reminder"]),
        (F::FiringReminderDue, C::Default, S::Clear, "resolved", &["resolve", "notify:resolved"]),
        // cooldown: alerts are still opened and resolved, the notices are held back.
        (F::FiringInCooldown, C::Default, S::Breach, "firing", &[]),
        (F::FiringInCooldown, C::Default, S::Clear, "resolved", &["resolve", "suppressed:resolved"]),
        (F::OkInCooldown, C::Immediate, S::Breach, "firing", &["open", "suppressed:fired"]),
        // acknowledged: no reminders, still resolves on recovery.
        (F::Acknowledged, C::Default, S::Breach, "acknowledged", &[]),
        (F::Acknowledged, C::Default, S::Between, "acknowledged", &[]),
        (F::Acknowledged, C::Default, S::NoData, "acknowledged", &[]),
        (F::Acknowledged, C::Default, S::Clear, "resolved", &["resolve", "notify:resolved"]),
        (F::Acknowledged, C::ManualResolve, S::Clear, "acknowledged", &[]),
        // resolved: behaves like ok; a new breach goes through pending again.
        (F::Resolved, C::Default, S::Breach, "pending", &[]),
        (F::Resolved, C::Immediate, S::Breach, "firing", &["open", "notify:fired"]),
        (F::Resolved, C::Default, S::Between, "resolved", &[]),
        (F::Resolved, C::Default, S::Clear, "resolved", &[]),
        (F::Resolved, C::Default, S::NoData, "no_data", &[]),
        // no data: data coming back decides; `alerting` fires on no data itself.
        (F::NoData, C::Default, S::Breach, "pending", &[]),
        (F::NoData, C::Default, S::Clear, "ok", &[]),
        (F::NoData, C::Default, S::NoData, "no_data", &[]),
        (F::NoData, C::NoDataOk, S::NoData, "no_data", &[]),
        (F::NoData, C::NoDataAlerting, S::NoData, "firing", &["open", "notify:fired"]),
        (F::Ok, C::NoDataAlerting, S::NoData, "firing", &["open", "notify:fired"]),
        (F::Ok, C::NoDataAlertingHeld, S::NoData, "pending", &[]),
    ];
    for condition in Condition::ALL {
        for (from, cfg, sig, phase, expect) in rows {
            check(condition, *from, *cfg, *sig, phase, expect);
        }
    }
}

/// One configuration driven step by step against a fake history store that applies the
/// transitions the way the server must.
struct Sim {
    config: AlertConfig,
    options: EngineOptions,
    state: EngineState,
    stored: Option<StoredAlert>,
    log: Vec<(DateTime<Utc>, Transition)>,
}

impl Sim {
    fn new(config: AlertConfig) -> Self {
        Self {
            config,
            options: EngineOptions::default(),
            state: EngineState::default(),
            stored: None,
            log: Vec::new(),
        }
    }

    fn value(&mut self, now: DateTime<Utc>, value: Option<f64>) -> Vec<String> {
        self.step(
            now,
            Observation {
                current: value,
                previous: None,
                history: &[],
                seasonal: &[],
            },
        )
    }

    fn step(&mut self, now: DateTime<Utc>, observation: Observation<'_>) -> Vec<String> {
        let step = tick(
            now,
            &[ConfigInput {
                config: &self.config,
                observation,
                stored: self.stored,
            }],
            &self.state,
            &self.options,
        );
        for t in &step.transitions {
            match t {
                Transition::Open { alert } => {
                    self.stored = Some(StoredAlert {
                        id: alert.id,
                        status: AlertStatus::Active,
                        triggered_at: alert.triggered_at,
                    })
                }
                Transition::Resolve { .. } => self.stored = None,
                _ => {}
            }
            self.log.push((now, t.clone()));
        }
        self.state = step.state;
        actions(&step.transitions)
    }

    fn phase(&self) -> &'static str {
        self.state.configs[&self.config.id].phase.name()
    }

    fn count(&self, action: &str) -> usize {
        let all: Vec<Transition> = self.log.iter().map(|(_, t)| t.clone()).collect();
        actions(&all).iter().filter(|a| *a == action).count()
    }

    fn opened(&self) -> Vec<Uuid> {
        self.log
            .iter()
            .filter_map(|(_, t)| match t {
                Transition::Open { alert } => Some(alert.id),
                _ => None,
            })
            .collect()
    }

    fn notices(&self) -> Vec<(DateTime<Utc>, NoticeKind, u32)> {
        self.log
            .iter()
            .filter_map(|(_, t)| match t {
                Transition::Notify { notice } => Some((notice.at, notice.kind, notice.seq)),
                _ => None,
            })
            .collect()
    }
}

fn above(t: f64, recovery: Option<f64>) -> AlertConfig {
    let mut c = config(Condition::ThresholdAbove);
    c.spec.threshold = threshold(t);
    c.spec.recovery_threshold = recovery.map(threshold);
    c.spec.for_secs = 0;
    c.spec.cooldown_secs = 0;
    c
}

/// A sine wave (mean 50, amplitude 40, period 4 hours) whose peak crosses 78 for about an
/// hour, with uniform noise of +-4 from a fixed-seed generator, one value per minute.
fn noisy_sine() -> Vec<f64> {
    let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
    (0..240)
        .map(|minute| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let unit = (seed >> 11) as f64 / (1u64 << 53) as f64;
            let phase = std::f64::consts::TAU * f64::from(minute) / 240.0;
            50.0 + 40.0 * phase.sin() + (unit * 8.0 - 4.0)
        })
        .collect()
}

fn run_sine(config: AlertConfig) -> Sim {
    let mut sim = Sim::new(config);
    for (minute, v) in noisy_sine().into_iter().enumerate() {
        sim.value(at(minute as i64), Some(v));
    }
    sim
}

/// The minutes at which alerts opened and resolved.
fn timeline(sim: &Sim) -> Vec<(&'static str, i64)> {
    sim.log
        .iter()
        .filter_map(|(t, tr)| {
            let what = match tr {
                Transition::Open { .. } => "open",
                Transition::Resolve { .. } => "resolve",
                _ => return None,
            };
            Some((what, (*t - t0()).num_minutes()))
        })
        .collect()
}

#[test]
fn noisy_sine_with_hysteresis_fires_and_resolves_exactly_once() {
    let wave = noisy_sine();
    let above_78 = wave.iter().filter(|v| **v > 78.0).count();
    assert!((50..=70).contains(&above_78), "{above_78} minutes above");
    let sim = run_sine(above(78.0, Some(68.0)));
    assert_eq!(timeline(&sim), [("open", 29), ("resolve", 100)]);
    assert_eq!(sim.count("notify:fired"), 1);
    assert_eq!(sim.count("notify:resolved"), 1);
    assert_eq!(sim.phase(), "resolved");
}

#[test]
fn noisy_sine_without_hysteresis_flaps() {
    // Documented in docs/ARCHITECTURE.md ("Alert engine").
    let sim = run_sine(above(78.0, None));
    #[rustfmt::skip]
    assert_eq!(
        timeline(&sim),
        [("open", 29), ("resolve", 31), ("open", 34), ("resolve", 88), ("open", 89), ("resolve", 92)]
    );
    // for_secs alone: one alert, but 10 minutes late and resolved 12 minutes early.
    let mut held = above(78.0, None);
    held.spec.for_secs = 300;
    let sim = run_sine(held);
    assert_eq!(timeline(&sim), [("open", 39), ("resolve", 88)]);
}

#[test]
fn cooldown_suppresses_notifications_but_alerts_are_still_recorded() {
    let mut c = above(100.0, None);
    c.spec.cooldown_secs = 1800;
    let mut sim = Sim::new(c);
    assert_eq!(sim.value(at(0), Some(150.0)), ["open", "notify:fired"]);
    assert_eq!(
        sim.value(at(5), Some(50.0)),
        ["resolve", "suppressed:resolved"]
    );
    assert_eq!(sim.value(at(10), Some(150.0)), ["open", "suppressed:fired"]);
    assert_eq!(
        sim.value(at(15), Some(50.0)),
        ["resolve", "suppressed:resolved"]
    );
    // The cooldown runs from the last notice actually sent (minute 0).
    assert_eq!(sim.value(at(30), Some(150.0)), ["open", "notify:fired"]);
    assert_eq!(sim.opened().len(), 3);
    match &sim.log[3].1 {
        Transition::Suppressed { until, .. } => assert_eq!(*until, at(30)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn reminders_back_off_and_stop_once_acknowledged() {
    let mut sim = Sim::new(above(100.0, None));
    for minute in 0..=(16 * 60) {
        sim.value(at(minute), Some(150.0));
    }
    let reminders: Vec<_> = sim
        .notices()
        .into_iter()
        .filter(|(_, kind, _)| *kind == NoticeKind::Reminder)
        .map(|(t, _, seq)| ((t - t0()).num_minutes(), seq))
        .collect();
    // 1h, then 2h, 4h and 8h apart; numbered after the fired notice.
    assert_eq!(reminders, [(60, 1), (180, 2), (420, 3), (900, 4)]);

    sim.stored.as_mut().unwrap().status = AlertStatus::Acknowledged;
    for minute in (16 * 60 + 1)..(40 * 60) {
        sim.value(at(minute), Some(150.0));
    }
    assert_eq!(sim.phase(), "acknowledged");
    assert_eq!(sim.count("notify:reminder"), 4);
    // Still resolves automatically, with the next sequence number.
    assert_eq!(
        sim.value(at(40 * 60), Some(50.0)),
        ["resolve", "notify:resolved"]
    );
    assert_eq!(sim.notices().last().unwrap().2, 5);
}

#[test]
fn reminder_backoff_is_capped() {
    let mut sim = Sim::new(above(100.0, None));
    sim.options.reminder_max = Duration::hours(2);
    for minute in 0..=(9 * 60) {
        sim.value(at(minute), Some(150.0));
    }
    let times: Vec<i64> = sim
        .notices()
        .into_iter()
        .filter(|(_, kind, _)| *kind == NoticeKind::Reminder)
        .map(|(t, _, _)| (t - t0()).num_minutes())
        .collect();
    assert_eq!(times, [60, 180, 300, 420, 540]);
}

#[test]
fn a_reminder_due_in_cooldown_is_deferred_to_its_end() {
    let mut c = above(100.0, None);
    c.spec.cooldown_secs = 2 * 3600;
    let mut sim = Sim::new(c);
    for minute in 0..=180 {
        sim.value(at(minute), Some(150.0));
    }
    let times: Vec<i64> = sim
        .notices()
        .into_iter()
        .map(|(t, _, _)| (t - t0()).num_minutes())
        .collect();
    assert_eq!(times, [0, 120]);
}

#[test]
fn a_refire_after_resolution_opens_a_new_alert() {
    let mut sim = Sim::new(above(100.0, None));
    sim.value(at(0), Some(150.0));
    sim.value(at(1), Some(50.0));
    assert_eq!(sim.phase(), "resolved");
    sim.value(at(2), Some(150.0));
    let ids = sim.opened();
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1]);
    let notices = sim.notices();
    assert_eq!(
        notices.iter().map(|n| (n.1, n.2)).collect::<Vec<_>>(),
        [
            (NoticeKind::Fired, 0),
            (NoticeKind::Resolved, 1),
            (NoticeKind::Fired, 0)
        ]
    );
}

#[test]
fn a_manual_resolution_is_seen_and_a_later_breach_fires_anew() {
    let mut sim = Sim::new(above(100.0, None));
    sim.value(at(0), Some(150.0));
    let first = sim.opened()[0];
    sim.stored = None; // a person resolved it
    assert!(sim.value(at(1), Some(90.0)).is_empty());
    assert_eq!(
        sim.state.configs[&sim.config.id].phase,
        Phase::Resolved {
            alert_id: first,
            at: at(1)
        }
    );
    assert_eq!(sim.value(at(2), Some(150.0)), ["open", "notify:fired"]);
}

#[test]
fn no_data_policies() {
    // keep: an open alert stays open through a gap; ok: the gap resolves it; alerting: a
    // gap that holds for_secs opens a no-data alert carrying the last value seen.
    for (policy, expect_after_gap) in [
        (NoDataPolicy::Keep, "firing"),
        (NoDataPolicy::Ok, "resolved"),
        (NoDataPolicy::Alerting, "firing"),
    ] {
        let mut c = above(100.0, None);
        c.spec.no_data = policy;
        let mut sim = Sim::new(c);
        sim.value(at(0), Some(150.0));
        sim.value(at(1), None);
        assert_eq!(sim.phase(), expect_after_gap, "{policy:?}");
    }

    let mut c = above(100.0, None);
    c.spec.no_data = NoDataPolicy::Alerting;
    c.spec.for_secs = 120;
    let mut sim = Sim::new(c);
    sim.value(at(0), Some(42.0));
    assert!(sim.value(at(1), None).is_empty());
    assert!(sim.value(at(2), None).is_empty());
    assert_eq!(sim.value(at(3), None), ["open", "notify:fired"]);
    match &sim.log[0].1 {
        Transition::Open { alert } => {
            assert_eq!(alert.value, 42.0);
            assert!(alert.message.contains("no data"), "{}", alert.message);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn repeating_a_step_gives_the_same_ids_and_a_stale_step_changes_nothing() {
    let c = above(100.0, None);
    let input = [ConfigInput {
        config: &c,
        observation: Observation {
            current: Some(150.0),
            previous: None,
            history: &[],
            seasonal: &[],
        },
        stored: None,
    }];
    let options = EngineOptions::default();
    let state = EngineState::default();
    let a = tick(at(0), &input, &state, &options);
    let b = tick(at(0), &input, &state, &options);
    assert_eq!(a, b);
    assert_eq!(a.transitions.len(), 2);

    let stale = tick(at(0), &input, &a.state, &options);
    assert_eq!(stale.state, a.state);
    assert!(stale.transitions.is_empty());
}

#[test]
fn state_round_trips_through_json_and_forgets_disabled_configs() {
    let mut sim = Sim::new(above(100.0, None));
    sim.value(at(0), Some(150.0));
    let json = serde_json::to_string(&sim.state).unwrap();
    let back: EngineState = serde_json::from_str(&json).unwrap();
    assert_eq!(back, sim.state);
    assert!(json.contains(r#""state":"firing""#), "{json}");

    sim.config.spec.enabled = false;
    assert!(sim.value(at(1), Some(150.0)).is_empty());
    assert!(sim.state.configs.is_empty());
}

#[test]
fn a_lost_state_adopts_the_stored_alert() {
    let c = above(100.0, None);
    let stored = StoredAlert {
        id: stable_id("older alert"),
        status: AlertStatus::Active,
        triggered_at: at(-30),
    };
    let step = tick(
        at(0),
        &[ConfigInput {
            config: &c,
            observation: Observation {
                current: Some(50.0),
                previous: None,
                history: &[],
                seasonal: &[],
            },
            stored: Some(stored),
        }],
        &EngineState::default(),
        &EngineOptions::default(),
    );
    match &step.transitions[..] {
        [
            Transition::Resolve { alert_id, by, .. },
            Transition::Notify { notice },
        ] => {
            assert_eq!(*alert_id, stored.id);
            assert_eq!(by, "auto");
            assert_eq!((notice.kind, notice.seq), (NoticeKind::Resolved, 1));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_opened_alert_carries_value_threshold_and_time() {
    let mut sim = Sim::new(above(100.0, None));
    sim.value(at(7), Some(150.5));
    match &sim.log[0].1 {
        Transition::Open { alert } => {
            assert_eq!(alert.config_id, sim.config.id);
            assert_eq!(alert.value, 150.5);
            assert_eq!(alert.threshold, 100.0);
            assert_eq!(alert.triggered_at, at(7));
            assert_eq!(alert.severity, Severity::Warning);
        }
        other => panic!("{other:?}"),
    }
}

/// (last, now, max) -> (instants, skipped), times in minutes.
type CatchUpRow = (Option<i64>, i64, usize, &'static [i64], u64);

#[test]
fn catch_up_instants() {
    let minute = Duration::minutes(1);
    #[rustfmt::skip]
    let rows: &[CatchUpRow] = &[
        // (last, now, max) -> (instants, skipped), in minutes
        (None, 10, 60, &[10], 0),
        (Some(10), 10, 60, &[], 0),
        (Some(10), 9, 60, &[], 0),
        (Some(10), 11, 60, &[11], 0),
        (Some(10), 14, 60, &[11, 12, 13, 14], 0),
        (Some(10), 3 * 60 + 10, 3, &[188, 189, 190], 177),
    ];
    for (last, now, max, instants, skipped) in rows {
        let got = due_instants(last.map(at), at(*now), minute, *max);
        let want = CatchUp {
            instants: instants.iter().map(|m| at(*m)).collect(),
            skipped: *skipped,
        };
        assert_eq!(got, want, "last {last:?} now {now} max {max}");
    }
    // Between grid points: the last due instant, not `now` itself.
    let got = due_instants(Some(at(0)), at(2) + Duration::seconds(30), minute, 60);
    assert_eq!(got.instants, [at(1), at(2)]);
}

#[test]
fn catch_up_steps_give_the_same_result_as_live_steps() {
    let values = [150.0, 150.0, 50.0, 150.0, 150.0];
    let mut live = Sim::new(above(100.0, None));
    for (m, v) in values.iter().enumerate() {
        live.value(at(m as i64), Some(*v));
    }
    let mut late = Sim::new(above(100.0, None));
    late.value(at(0), Some(values[0]));
    let due = due_instants(late.state.last_evaluated, at(4), Duration::minutes(1), 60);
    for t in due.instants {
        let m = (t - t0()).num_minutes() as usize;
        late.value(t, Some(values[m]));
    }
    assert_eq!(late.log, live.log);
}
