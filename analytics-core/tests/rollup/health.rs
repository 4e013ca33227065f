//! System health figures against the truth recomputed from the generated raw events: for
//! 1h, 24h, 7d and 30d windows, before and after the rollup tick, and after retention
//! deleted older raw events; and the documented zeros and nulls.

use std::sync::Arc;

use analytics_core::event::Event;
use analytics_core::health::{HealthPoint, RequestFigures, StoreOperation, SystemHealth};
use analytics_core::memory::MemoryStore;
use analytics_core::ports::Store;
use analytics_core::rollup::read::Source;
use analytics_core::testkit;
use analytics_core::testkit::fixtures::{event_at, project, t};
use analytics_core::testkit::health::{check, generated, now, truth};

fn health(store: &Arc<MemoryStore>) -> SystemHealth {
    let store: Arc<dyn Store> = store.clone();
    testkit::health::health(&store)
}

async fn tick(store: &MemoryStore, retention_days: u32) {
    testkit::health::tick(store, retention_days).await;
}
use analytics_core::{Granularity, ProjectId, RangePreset, Window};
use chrono::Duration;
use serde_json::json;

use super::ingest;

#[tokio::test]
async fn figures_equal_the_raw_truth_before_and_after_the_rollup_tick() {
    testkit::health::health_figures_equal_the_raw_truth_before_and_after_the_rollup_tick(Arc::new(
        MemoryStore::new(),
    ))
    .await;
}

#[tokio::test]
async fn figures_keep_their_totals_after_retention_deletes_raw_events() {
    testkit::health::health_figures_keep_their_totals_after_retention_deletes_raw_events(Arc::new(
        MemoryStore::new(),
    ))
    .await;
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
