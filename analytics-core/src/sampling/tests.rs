//! Sampling: the kept share and the re-weighted rollups against the truth, whole sessions,
//! the precedence of levels, and the windows.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, Utc};
use rand::{RngExt as _, SeedableRng as _};
use serde_json::json;

use super::*;
use crate::event::{AgeLimits, EventInput, EventLimits, IngestContext};
use crate::ids::ProjectId;
use crate::rollup::aggregate::aggregate;
use crate::rollup::spec::{RollupSpecs, metrics};
use crate::time::Granularity;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn event(v: serde_json::Value) -> Event {
    let input: EventInput = serde_json::from_value(v).unwrap();
    let project = ProjectId::parse("shop").unwrap();
    let limits = EventLimits::default();
    let ages = AgeLimits::default();
    let ctx = IngestContext {
        now: at("2026-03-02T12:00:00Z"),
        default_project: &project,
        fixed_project: false,
        request_correlation_id: None,
        limits: &limits,
        age_limits: &ages,
    };
    Event::parse(input, &ctx).unwrap()
}

fn request(i: u64, occurred: DateTime<Utc>) -> Event {
    event(json!({
        "kind": "api_request", "occurred_at": occurred.to_rfc3339(),
        "session_id": format!("s{}", i / 10),
        "payload": {"method": "GET", "route": "/x", "status": 200, "latency_ms": 5.0 + (i % 50) as f64}
    }))
}

fn settings(strategy: SamplingStrategy, rate: f64) -> SamplingSettings {
    SamplingSettings {
        strategy,
        rate,
        ..SamplingSettings::default()
    }
}

/// Applies the decision the way ingest does: the kept event carries the rate.
fn sample(
    s: &SamplingSettings,
    sources: &BTreeMap<String, SourceSettings>,
    events: Vec<Event>,
    seed: u64,
) -> Vec<Event> {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    events
        .into_iter()
        .filter_map(|mut e| {
            let d = decide(s, sources, &e, rng.random());
            d.keep.then(|| {
                e.sample_rate *= d.rate;
                e
            })
        })
        .collect()
}

#[test]
fn rate_one_tenth_keeps_a_tenth_and_rollups_reweight_to_the_truth() {
    const N: u64 = 100_000;
    let hour = at("2026-03-02T10:00:00Z");
    let events: Vec<Event> = (0..N)
        .map(|i| request(i, hour + Duration::milliseconds((i * 30) as i64)))
        .collect();
    for strategy in [SamplingStrategy::Random, SamplingStrategy::Deterministic] {
        let kept = sample(
            &settings(strategy, 0.1),
            &BTreeMap::new(),
            events.clone(),
            7,
        );
        // Binomial(N, 0.1) for random; sessions of 10 events for deterministic, so the
        // count is 10 x Binomial(N / 10, 0.1): its standard deviation is sqrt(10) times wider.
        let sd = match strategy {
            SamplingStrategy::Deterministic => (10.0 * N as f64 * 0.1 * 0.9).sqrt(),
            _ => (N as f64 * 0.1 * 0.9).sqrt(),
        };
        let expected = N as f64 * 0.1;
        assert!(
            (kept.len() as f64 - expected).abs() <= 3.0 * sd,
            "{strategy:?}: kept {} of {N}, expected {expected} ± {}",
            kept.len(),
            3.0 * sd
        );
        assert!(kept.iter().all(|e| e.sample_rate == 0.1));
        let rows = aggregate(
            &RollupSpecs::defaults(),
            &kept,
            &ProjectId::parse("shop").unwrap(),
            Granularity::Hour,
            hour,
            hour + Duration::hours(1),
        );
        let total = rows
            .iter()
            .find(|r| {
                r.key.metric.as_str() == metrics::API_LATENCY_MS && r.key.dimensions.is_empty()
            })
            .map(|r| r.stats.count)
            .unwrap();
        // Within 3 % for independent draws (3.2 standard deviations); whole sessions of 10
        // make the estimate sqrt(10) times noisier, so they get the same 3 deviations.
        let bound = match strategy {
            SamplingStrategy::Deterministic => 3.0 * sd * 10.0 / N as f64,
            _ => 0.03,
        };
        assert!(
            (total - N as f64).abs() / N as f64 <= bound,
            "{strategy:?}: re-weighted count {total} vs {N} (bound {bound})"
        );
    }
}

#[test]
fn deterministic_sampling_keeps_or_drops_whole_sessions() {
    let hour = at("2026-03-02T10:00:00Z");
    let events: Vec<Event> = (0..20_000)
        .map(|i| request(i, hour + Duration::seconds((i % 3600) as i64)))
        .collect();
    let kept = sample(
        &settings(SamplingStrategy::Deterministic, 0.3),
        &BTreeMap::new(),
        events,
        1,
    );
    let mut per_session: HashMap<String, usize> = HashMap::new();
    for e in &kept {
        *per_session
            .entry(e.session_id.clone().unwrap())
            .or_default() += 1;
    }
    assert!(!per_session.is_empty());
    assert!(
        per_session.values().all(|n| *n == 10),
        "a session was split: {per_session:?}"
    );
    // The draw is not used: the same sessions are kept whatever the random numbers.
    let again = sample(
        &settings(SamplingStrategy::Deterministic, 0.3),
        &BTreeMap::new(),
        (0..20_000)
            .map(|i| request(i, hour + Duration::seconds((i % 3600) as i64)))
            .collect(),
        99,
    );
    assert_eq!(kept.len(), again.len());
}

#[test]
fn precedence_is_event_kind_then_source_then_project() {
    let mut project = settings(SamplingStrategy::Random, 0.5);
    project.kinds.insert("page_view".into(), 0.2);
    let web = SourceSettings {
        description: None,
        sampling: Some(SourceSampling {
            rate: Some(0.25),
            kinds: BTreeMap::from([("cart_add".to_owned(), 0.75)]),
        }),
    };
    let bare = SourceSettings::default();
    let k = |s: &str| s.parse::<EventKind>().unwrap();
    // A source's kind entry beats everything; the project's kind entry beats the source rate.
    assert_eq!(rate_for(&project, Some(&web), &k("cart_add")), 0.75);
    assert_eq!(rate_for(&project, Some(&web), &k("page_view")), 0.2);
    // The source's rate beats the project's.
    assert_eq!(rate_for(&project, Some(&web), &k("api_request")), 0.25);
    assert_eq!(rate_for(&project, Some(&bare), &k("api_request")), 0.5);
    assert_eq!(rate_for(&project, None, &k("api_request")), 0.5);
    // Errors and orders stay at 1 unless a kinds entry says otherwise.
    assert_eq!(rate_for(&project, Some(&web), &k("error")), 1.0);
    assert_eq!(rate_for(&project, None, &k("order")), 1.0);
    project.kinds.insert("error".into(), 0.5);
    assert_eq!(rate_for(&project, None, &k("error")), 0.5);
}

#[test]
fn decide_uses_the_source_of_the_event_and_never_samples_without_a_strategy() {
    let sources = BTreeMap::from([(
        "web".to_owned(),
        SourceSettings {
            description: None,
            sampling: Some(SourceSampling {
                rate: Some(0.5),
                kinds: BTreeMap::new(),
            }),
        },
    )]);
    let mut e = request(1, at("2026-03-02T10:00:00Z"));
    e.source = Some("web".into());
    let project = settings(SamplingStrategy::Random, 0.1);
    // A draw just above 0.1 keeps the event at the source's 0.5.
    let d = decide(&project, &sources, &e, (u64::MAX / 10) * 2);
    assert_eq!(
        d,
        Decision {
            keep: true,
            rate: 0.5
        }
    );
    let d = decide(&project, &sources, &e, u64::MAX);
    assert!(!d.keep);
    let none = settings(SamplingStrategy::None, 0.1);
    assert_eq!(
        decide(&none, &sources, &e, u64::MAX),
        Decision {
            keep: true,
            rate: 1.0
        }
    );
    let order = event(
        json!({"kind": "order", "occurred_at": "2026-03-02T10:00:00Z",
        "payload": {"order_id": "o1", "amount": 10.0, "currency": "USD", "items": []}}),
    );
    assert!(decide(&project, &sources, &order, u64::MAX).keep);
}

#[test]
fn time_window_keeps_everything_inside_and_samples_outside() {
    let mut s = settings(SamplingStrategy::TimeWindow, 0.1);
    s.windows = vec![
        SamplingWindow {
            start: "09:00".into(),
            end: "10:00".into(),
        },
        SamplingWindow {
            start: "23:30".into(),
            end: "00:30".into(),
        },
    ];
    let none = BTreeMap::new();
    for inside in [
        "2026-03-02T09:00:00Z",
        "2026-03-02T09:59:59Z",
        "2026-03-02T23:45:00Z",
        "2026-03-02T00:10:00Z",
    ] {
        let e = request(1, at(inside));
        assert_eq!(
            decide(&s, &none, &e, u64::MAX),
            Decision {
                keep: true,
                rate: 1.0
            },
            "{inside}"
        );
    }
    for outside in [
        "2026-03-02T10:00:00Z",
        "2026-03-02T08:59:00Z",
        "2026-03-02T00:30:00Z",
    ] {
        let e = request(1, at(outside));
        assert_eq!(
            decide(&s, &none, &e, u64::MAX),
            Decision {
                keep: false,
                rate: 0.1
            },
            "{outside}"
        );
        assert_eq!(
            decide(&s, &none, &e, 0),
            Decision {
                keep: true,
                rate: 0.1
            },
            "{outside}"
        );
    }
}

#[test]
fn settings_are_checked_with_field_paths() {
    let mut s = settings(SamplingStrategy::TimeWindow, 0.0);
    s.windows = vec![SamplingWindow {
        start: "9am".into(),
        end: "10:00".into(),
    }];
    s.kinds.insert("page_view".into(), 2.0);
    s.kinds.insert("Not A Kind".into(), 0.5);
    let mut errors = Vec::new();
    s.check("sampling.", &mut errors);
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "sampling.rate",
            "sampling.windows[0].start",
            "sampling.kinds.Not A Kind",
            "sampling.kinds.page_view"
        ]
    );
}
