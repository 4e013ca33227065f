//! The health figures against the truth recomputed from generated raw events, on any store:
//! for 1h, 24h, 7d and 30d windows, before and after the rollup tick, and after retention
//! deleted older raw events. Each store crate runs these on its own store.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use crate::event::Event;
use crate::health::{Percentiles, RequestFigures, SystemHealth};
use crate::ports::{EventFilter, Store};
use crate::rollup::read::{RollupReader, Source};
use crate::rollup::scheduler::{RollupScheduler, SchedulerOptions};
use crate::rollup::spec::RollupSpecs;
use crate::testkit::fixtures::{Lcg, event_at, project, t};
use crate::{Granularity, PageRequest, Payload, RangePreset, TimeRange, Window};

async fn ingest(store: &dyn Store, events: &[Event]) {
    for chunk in events.chunks(500) {
        store.write_batch(chunk).await.expect("write");
    }
}

/// "Now" of these tests: not on an hour boundary, so windows have partial edge buckets.
pub fn now() -> DateTime<Utc> {
    t("2024-03-10T10:17:00Z")
}

pub const ROUTES: [&str; 5] = [
    "/products",
    "/products/:id",
    "/cart",
    "/checkout",
    "/search",
];

/// 35 days of `api_request` traffic in project `shop` ending just before `now()`: ~12
/// requests an hour, two methods, ~4% server errors, log-normal-ish latencies, and a
/// quarter of the events kept at sample rate 0.5 (so counts are re-weighted).
pub fn generated() -> Vec<Event> {
    let mut rng = Lcg(7);
    let start = now() - Duration::days(35);
    let mut out = Vec::new();
    let mut at = start;
    while at < now() {
        at += Duration::milliseconds(1_000 + rng.below(599_000) as i64);
        if at >= now() {
            break;
        }
        let route = ROUTES[rng.below(ROUTES.len() as u64) as usize];
        let method = if rng.below(4) == 0 { "POST" } else { "GET" };
        let status = match rng.below(100) {
            0..4 => 503,
            4..10 => 404,
            _ => 200,
        };
        let base = 1.0 + rng.below(49_000) as f64 / 1000.0;
        let latency = if rng.below(20) == 0 {
            base * 40.0
        } else {
            base
        };
        let sample_rate = if rng.below(4) == 0 { 0.5 } else { 1.0 };
        out.push(event_at(
            json!({"kind": "api_request", "occurred_at": at.to_rfc3339(),
                   "sample_rate": sample_rate,
                   "payload": {"method": method, "route": route, "status": status,
                               "latency_ms": (latency * 1000.0).round() / 1000.0}}),
            at,
        ));
    }
    out
}

/// The exact figures of the events in `range` (matching `method`/`route` when given).
#[allow(missing_docs)]
#[derive(Debug)]
pub struct Truth {
    requests: f64,
    errors: f64,
    latency_sum: f64,
    latencies: Vec<f64>,
}

pub fn truth(events: &[Event], range: TimeRange, key: Option<(&str, &str)>) -> Truth {
    let mut out = Truth {
        requests: 0.0,
        errors: 0.0,
        latency_sum: 0.0,
        latencies: Vec::new(),
    };
    for e in events.iter().filter(|e| range.contains(e.occurred_at)) {
        let Payload::ApiRequest(r) = &e.payload else {
            continue;
        };
        if key.is_some_and(|(m, route)| r.method != m || r.route != route) {
            continue;
        }
        let w = 1.0 / e.sample_rate;
        out.requests += w;
        if r.status >= 500 {
            out.errors += w;
        }
        out.latency_sum += r.latency_ms * w;
        out.latencies.push(r.latency_ms);
    }
    out.latencies.sort_by(f64::total_cmp);
    out
}

fn nearest_rank(sorted: &[f64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Checks figures against the truth: counts exact (re-weighted, rounded), the error rate
/// and average to float precision, max exact, and each percentile within one rank point of
/// the exact nearest-rank quantile (the digest's accuracy after merging hour, day and week
/// digests at these sizes; it answers exactly up to 100 values).
pub fn check(what: &str, got: &RequestFigures, want: &Truth) {
    assert_eq!(
        got.requests,
        want.requests.round() as u64,
        "{what}: requests"
    );
    assert_eq!(got.errors, want.errors.round() as u64, "{what}: errors");
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
    if want.requests == 0.0 {
        assert_eq!(got.error_rate, None, "{what}");
        assert_eq!(got.latency_ms, Percentiles::default(), "{what}");
        return;
    }
    let rate = got.error_rate.expect("error rate");
    assert!(
        close(rate, want.errors / want.requests),
        "{what}: error rate {rate}"
    );
    let avg = got.latency_ms.avg.expect("avg");
    assert!(
        close(avg, want.latency_sum / want.requests),
        "{what}: avg {avg}"
    );
    assert_eq!(
        got.latency_ms.max,
        want.latencies.last().copied(),
        "{what}: max"
    );
    for (q, est) in [
        (0.5, got.latency_ms.p50),
        (0.95, got.latency_ms.p95),
        (0.99, got.latency_ms.p99),
    ] {
        let est = est.expect("percentile");
        let lo = nearest_rank(&want.latencies, (q - 0.01_f64).max(0.0));
        let hi = nearest_rank(&want.latencies, (q + 0.01_f64).min(1.0));
        assert!(
            lo <= est && est <= hi,
            "{what}: p{q} = {est}, exact {} (allowed {lo}..={hi})",
            nearest_rank(&want.latencies, q)
        );
    }
}

pub fn health(store: &Arc<dyn Store>) -> SystemHealth {
    SystemHealth::new(RollupReader::new(
        store.clone(),
        Arc::new(RollupSpecs::defaults()),
    ))
}

pub async fn tick(store: &dyn Store, retention_days: u32) {
    let s = RollupScheduler::new(
        RollupSpecs::defaults(),
        SchedulerOptions {
            default_retention_days: retention_days,
            ..Default::default()
        },
    );
    s.tick(store, now()).await.expect("tick");
}

/// Every figure of every preset window against the truth. `head_hour`: the window start is
/// older than the retention, so the reader counts its whole first hour (documented).
pub async fn check_every_window(h: &SystemHealth, events: &[Event], head_hour: bool, when: &str) {
    let shop = project("shop");
    for preset in RangePreset::ALL {
        let window = Window::preset(preset, now());
        let range = window.range();
        let effective = if head_hour && preset.duration() > Duration::days(3) {
            TimeRange::new(Granularity::Hour.bucket_start(range.start()), range.end()).unwrap()
        } else {
            range
        };
        let what = format!("{when} {preset}");
        let got = h.requests(&shop, range).await.expect("requests");
        check(&what, &got, &truth(events, effective, None));
        assert!(got.sampled, "{what}: sampled events contributed");

        let routes = h.routes(&shop, range, 500).await.expect("routes");
        let mut seen = 0;
        for r in &routes {
            let want = truth(events, effective, Some((&r.method, &r.route)));
            check(
                &format!("{what} {} {}", r.method, r.route),
                &r.figures,
                &want,
            );
            seen += 1;
        }
        let distinct: std::collections::HashSet<_> = events
            .iter()
            .filter(|e| effective.contains(e.occurred_at))
            .filter_map(|e| match &e.payload {
                Payload::ApiRequest(r) => Some((r.method.clone(), r.route.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(
            seen,
            distinct.len(),
            "{what}: one entry per (method, route)"
        );
        assert!(
            routes
                .windows(2)
                .all(|w| w[0].figures.requests >= w[1].figures.requests),
            "{what}: most requests first"
        );
        let top = h.routes(&shop, range, 3).await.expect("routes");
        assert_eq!(top, routes[..3].to_vec(), "{what}: limit keeps the top");

        let g = window.default_granularity();
        let points = h.timeseries(&shop, &window, g).await.expect("timeseries");
        let buckets: Vec<_> = window.buckets(g).collect();
        assert_eq!(points.len(), buckets.len(), "{what}: one point per bucket");
        for (i, (p, b)) in points.iter().zip(&buckets).enumerate() {
            assert_eq!(p.ts, b.start);
            let covered = if i == 0 {
                effective.start().max(b.start)
            } else {
                b.covered.start()
            };
            let part = TimeRange::new(covered, b.covered.end()).unwrap();
            check(
                &format!("{what} point {}", p.ts),
                &p.figures,
                &truth(events, part, None),
            );
        }
        let total: u64 = points.iter().map(|p| p.figures.requests).sum();
        let whole = truth(events, effective, None).requests.round() as u64;
        // Rounding per point may differ from rounding the whole by at most half a point each.
        assert!(
            total.abs_diff(whole) <= points.len() as u64 / 2 + 1,
            "{what}"
        );
    }
}

/// Every health figure of every preset window equals the truth recomputed from the raw
/// events, before and after the rollup tick (`store` must be empty).
pub async fn health_figures_equal_the_raw_truth_before_and_after_the_rollup_tick(
    store: Arc<dyn Store>,
) {
    let events = generated();
    ingest(store.as_ref(), &events).await;
    let h = health(&store);
    let shop = project("shop");

    check_every_window(&h, &events, false, "before tick").await;
    let month = Window::preset(RangePreset::Last30Days, now()).range();
    assert_eq!(h.source(&shop, month, None).await.unwrap(), Source::Raw);

    tick(store.as_ref(), 60).await;
    check_every_window(&h, &events, false, "after tick").await;
    // FR-4: long windows come from rollups; minute buckets always from raw events.
    assert_eq!(h.source(&shop, month, None).await.unwrap(), Source::Rollups);
    let hour = Window::preset(RangePreset::LastHour, now()).range();
    assert_eq!(
        h.source(&shop, hour, Some(Granularity::Minute))
            .await
            .unwrap(),
        Source::Raw
    );
}

/// The same figures after retention deleted the raw events of the older days (`store`
/// must be empty).
pub async fn health_figures_keep_their_totals_after_retention_deletes_raw_events(
    store: Arc<dyn Store>,
) {
    let events = generated();
    ingest(store.as_ref(), &events).await;
    tick(store.as_ref(), 3).await;
    let raw_left = count_raw(store.as_ref()).await;
    assert!(
        raw_left < events.len() / 5,
        "retention deleted older raw events ({raw_left} of {} left)",
        events.len()
    );
    check_every_window(&health(&store), &events, true, "after retention").await;
}

pub async fn count_raw(store: &dyn Store) -> usize {
    let mut n = 0;
    let mut cursor = None;
    loop {
        let page = store
            .query_events(
                &EventFilter::default(),
                &PageRequest::new(1000, cursor).unwrap(),
            )
            .await
            .unwrap();
        n += page.items.len();
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return n,
        }
    }
}
