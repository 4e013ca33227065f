//! System health figures against the truth recomputed from the generated raw events: for
//! 1h, 24h, 7d and 30d windows, before and after the rollup tick, and after retention
//! deleted older raw events; and the documented zeros and nulls.

use std::sync::Arc;

use analytics_core::event::Event;
use analytics_core::health::{
    HealthPoint, Percentiles, RequestFigures, StoreOperation, SystemHealth,
};
use analytics_core::memory::MemoryStore;
use analytics_core::ports::{EventFilter, EventStore, Store};
use analytics_core::rollup::read::{RollupReader, Source};
use analytics_core::rollup::scheduler::{RollupScheduler, SchedulerOptions};
use analytics_core::rollup::spec::RollupSpecs;
use analytics_core::testkit::fixtures::{event_at, project, t};
use analytics_core::{
    Granularity, PageRequest, Payload, ProjectId, RangePreset, TimeRange, Window,
};
use chrono::{DateTime, Duration, Utc};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use serde_json::json;

use super::ingest;

/// "Now" of these tests: not on an hour boundary, so windows have partial edge buckets.
fn now() -> DateTime<Utc> {
    t("2024-03-10T10:17:00Z")
}

const ROUTES: [&str; 5] = [
    "/products",
    "/products/:id",
    "/cart",
    "/checkout",
    "/search",
];

/// 35 days of `api_request` traffic in project `shop` ending just before `now()`: ~12
/// requests an hour, two methods, ~4% server errors, log-normal-ish latencies, and a
/// quarter of the events kept at sample rate 0.5 (so counts are re-weighted).
fn generated() -> Vec<Event> {
    let mut rng = SmallRng::seed_from_u64(7);
    let start = now() - Duration::days(35);
    let mut out = Vec::new();
    let mut at = start;
    while at < now() {
        at += Duration::milliseconds(rng.random_range(1_000..600_000));
        if at >= now() {
            break;
        }
        let route = ROUTES[rng.random_range(0..ROUTES.len())];
        let method = if rng.random_range(0..4) == 0 {
            "POST"
        } else {
            "GET"
        };
        let status = match rng.random_range(0..100) {
            0..4 => 503,
            4..10 => 404,
            _ => 200,
        };
        let base: f64 = rng.random_range(1.0..50.0);
        let latency = if rng.random_range(0..20) == 0 {
            base * 40.0
        } else {
            base
        };
        let sample_rate = if rng.random_range(0..4) == 0 {
            0.5
        } else {
            1.0
        };
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
struct Truth {
    requests: f64,
    errors: f64,
    latency_sum: f64,
    latencies: Vec<f64>,
}

fn truth(events: &[Event], range: TimeRange, key: Option<(&str, &str)>) -> Truth {
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
fn check(what: &str, got: &RequestFigures, want: &Truth) {
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

fn health(store: &Arc<MemoryStore>) -> SystemHealth {
    let store: Arc<dyn Store> = store.clone();
    SystemHealth::new(RollupReader::new(store, Arc::new(RollupSpecs::defaults())))
}

async fn tick(store: &MemoryStore, retention_days: u32) {
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
async fn check_every_window(h: &SystemHealth, events: &[Event], head_hour: bool, when: &str) {
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

#[tokio::test]
async fn figures_equal_the_raw_truth_before_and_after_the_rollup_tick() {
    let store = Arc::new(MemoryStore::new());
    let events = generated();
    ingest(store.as_ref(), &events).await;
    let h = health(&store);
    let shop = project("shop");

    check_every_window(&h, &events, false, "before tick").await;
    let month = Window::preset(RangePreset::Last30Days, now()).range();
    assert_eq!(h.source(&shop, month, None).await.unwrap(), Source::Raw);

    tick(&store, 60).await;
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

#[tokio::test]
async fn figures_keep_their_totals_after_retention_deletes_raw_events() {
    let store = Arc::new(MemoryStore::new());
    let events = generated();
    ingest(store.as_ref(), &events).await;
    tick(&store, 3).await;
    let raw_left = count_raw(&store).await;
    assert!(
        raw_left < events.len() / 5,
        "retention deleted older raw events ({raw_left} of {} left)",
        events.len()
    );
    check_every_window(&health(&store), &events, true, "after retention").await;
}

async fn count_raw(store: &MemoryStore) -> usize {
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

#[tokio::test]
async fn empty_future_and_single_event_windows_give_documented_zeros_and_nulls() {
    let store = Arc::new(MemoryStore::new());
    let h = health(&store);
    let shop = project("shop");
    let day = Window::preset(RangePreset::Last24Hours, now());

    // Empty: zeros, null rate and latencies, no routes, 25 empty hourly points.
    let empty = h.requests(&shop, day.range()).await.unwrap();
    assert_eq!(empty, RequestFigures::default());
    assert!(h.routes(&shop, day.range(), 50).await.unwrap().is_empty());
    let points = h.timeseries(&shop, &day, Granularity::Hour).await.unwrap();
    assert_eq!(points.len(), 25);
    assert_eq!(points[0].ts, t("2024-03-09T10:00:00Z"));
    assert!(
        points
            .iter()
            .all(|p| p.figures == RequestFigures::default())
    );
    assert_eq!(
        h.source(&shop, day.range(), None).await.unwrap(),
        Source::Raw
    );

    // One event.
    let one = event_at(
        json!({"kind": "api_request", "occurred_at": "2024-03-10T09:30:00Z",
               "payload": {"method": "GET", "route": "/one", "status": 200, "latency_ms": 42.5}}),
        t("2024-03-10T09:30:00Z"),
    );
    ingest(store.as_ref(), std::slice::from_ref(&one)).await;
    let f = h.requests(&shop, day.range()).await.unwrap();
    assert_eq!((f.requests, f.errors, f.error_rate), (1, 0, Some(0.0)));
    let l = f.latency_ms;
    assert_eq!(
        (l.p50, l.p95, l.p99, l.avg, l.max),
        (Some(42.5), Some(42.5), Some(42.5), Some(42.5), Some(42.5))
    );
    assert!(!f.sampled);
    let points: Vec<HealthPoint> = h.timeseries(&shop, &day, Granularity::Hour).await.unwrap();
    let busy: Vec<_> = points.iter().filter(|p| p.figures.requests > 0).collect();
    assert_eq!(busy.len(), 1);
    assert_eq!(busy[0].ts, t("2024-03-10T09:00:00Z"));

    // A window in the future: nothing, with every bucket present.
    let future = Window::between(now() + Duration::days(1), now() + Duration::days(2)).unwrap();
    assert_eq!(
        h.requests(&shop, future.range()).await.unwrap(),
        RequestFigures::default()
    );
    let points = h
        .timeseries(&shop, &future, Granularity::Hour)
        .await
        .unwrap();
    // Unaligned at 10:17: 25 hourly buckets, every one empty.
    assert_eq!(points.len(), 25);
    assert!(
        points
            .iter()
            .all(|p| p.figures == RequestFigures::default())
    );
    // Another project sees none of it.
    assert_eq!(
        h.requests(&project("other"), day.range()).await.unwrap(),
        RequestFigures::default()
    );
}

#[tokio::test]
async fn store_call_timings_roll_up_apart_from_application_traffic() {
    let store = Arc::new(MemoryStore::new());
    let h = health(&store);
    let calls: Vec<Event> = (0..40)
        .map(|i| {
            let op = if i % 2 == 0 {
                StoreOperation::IngestWrite
            } else {
                StoreOperation::Read
            };
            op.event(
                f64::from(i) + 1.0,
                now() - Duration::hours(i64::from(i)) - Duration::minutes(1),
            )
        })
        .collect();
    ingest(store.as_ref(), &calls).await;
    // A long rollup catch-up is kept apart from the query latency.
    let ticks = [StoreOperation::RollupTick.event(30_000.0, now() - Duration::minutes(5))];
    ingest(store.as_ref(), &ticks).await;
    let month = Window::preset(RangePreset::Last30Days, now()).range();
    for when in ["before tick", "after tick"] {
        let s = h.store_latency(month).await.unwrap();
        assert_eq!(s.calls, 40, "{when}");
        assert_eq!(s.latency_ms.max, Some(40.0));
        assert_eq!(s.latency_ms.avg, Some(20.5));
        // 40 values: the digest is exact.
        assert_eq!(s.latency_ms.p50, Some(20.0));
        assert_eq!(s.latency_ms.p95, Some(38.0));
        let ops = h.store_latency_by_operation(month).await.unwrap();
        let names: Vec<&str> = ops.iter().map(|(o, _)| o.as_str()).collect();
        assert_eq!(names, ["ingest_write", "read"], "{when}");
        assert_eq!(ops[0].1.calls, 20);
        assert_eq!(ops[0].1.latency_ms.max, Some(39.0));
        let t = h.rollup_ticks(month).await.unwrap();
        assert_eq!((t.calls, t.latency_ms.max), (1, Some(30_000.0)), "{when}");
        // Never counted as application requests.
        let shop = h.requests(&project("shop"), month).await.unwrap();
        assert_eq!(shop.requests, 0);
        let internal = h.requests(&ProjectId::internal(), month).await.unwrap();
        assert_eq!(internal.requests, 0);
        tick(&store, 60).await;
    }
    let day = Window::preset(RangePreset::Last24Hours, now()).range();
    assert_eq!(h.store_latency(day).await.unwrap().calls, 24);
}

#[tokio::test]
async fn late_events_into_an_already_rolled_hour_count_before_the_next_tick() {
    let store = Arc::new(MemoryStore::new());
    let h = health(&store);
    let shop = project("shop");
    let events: Vec<Event> = generated()
        .into_iter()
        .filter(|e| e.occurred_at >= now() - Duration::days(2))
        .collect();
    let (early, late): (Vec<Event>, Vec<Event>) = events
        .iter()
        .cloned()
        .partition(|e| e.occurred_at.timestamp() % 7 != 0);
    ingest(store.as_ref(), &early).await;
    tick(&store, 60).await;
    // The late events land in hours the tick already rolled (behind the watermark).
    ingest(store.as_ref(), &late).await;
    for when in ["before the next tick", "after it"] {
        for preset in [RangePreset::Last24Hours, RangePreset::Last7Days] {
            let window = Window::preset(preset, now());
            let what = format!("{when} {preset}");
            let got = h.requests(&shop, window.range()).await.unwrap();
            check(&what, &got, &truth(&events, window.range(), None));
            let routes = h.routes(&shop, window.range(), 500).await.unwrap();
            for r in &routes {
                let want = truth(&events, window.range(), Some((&r.method, &r.route)));
                check(&what, &r.figures, &want);
            }
            let points = h
                .timeseries(&shop, &window, Granularity::Hour)
                .await
                .unwrap();
            for (p, b) in points.iter().zip(window.buckets(Granularity::Hour)) {
                check(&what, &p.figures, &truth(&events, b.covered, None));
            }
        }
        tick(&store, 60).await;
    }
}
