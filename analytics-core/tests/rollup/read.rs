//! The reader: range planning, merged statistics over any range, the raw tail, timeseries.

use std::sync::Arc;

use analytics_core::alert::Stat;
use analytics_core::ports::{MetricQuery, MetricsSource, Store};
use analytics_core::rollup::Dimensions;
use analytics_core::rollup::read::{Piece, RollupReader, SeriesQuery, plan};
use analytics_core::rollup::scheduler::{RollupScheduler, SchedulerOptions};
use analytics_core::rollup::spec::{RollupSpecs, metrics};
use analytics_core::testkit::fixtures::{project, t};
use analytics_core::{Granularity, MetricName, Payload, TimeRange};

use super::{ingest, setup, traffic};

fn r(a: &str, b: &str) -> TimeRange {
    TimeRange::new(t(a), t(b)).expect("range")
}

#[test]
fn plans_use_the_coarsest_complete_buckets() {
    use Granularity::*;
    let check = |range: TimeRange, wm: Option<&str>, want: Vec<Piece>| {
        assert_eq!(plan(range, wm.map(t), None), want, "{range} wm {wm:?}");
    };
    // Nothing rolled up yet: all raw.
    check(
        r("2024-03-01T00:00:00Z", "2024-03-02T00:00:00Z"),
        None,
        vec![Piece::Raw(r(
            "2024-03-01T00:00:00Z",
            "2024-03-02T00:00:00Z",
        ))],
    );
    // 30 days ending at an unaligned now with the watermark at the last full hour:
    // unaligned head raw, hours to midnight, days to Sunday, weeks, days, hours, raw tail.
    check(
        r("2024-02-09T10:30:00Z", "2024-03-10T12:15:00Z"),
        Some("2024-03-10T12:00:00Z"),
        vec![
            Piece::Raw(r("2024-02-09T10:30:00Z", "2024-02-09T11:00:00Z")),
            Piece::Rollups(Hour, r("2024-02-09T11:00:00Z", "2024-02-10T00:00:00Z")),
            Piece::Rollups(Day, r("2024-02-10T00:00:00Z", "2024-02-11T00:00:00Z")),
            Piece::Rollups(Week, r("2024-02-11T00:00:00Z", "2024-03-10T00:00:00Z")),
            Piece::Rollups(Hour, r("2024-03-10T00:00:00Z", "2024-03-10T12:00:00Z")),
            Piece::Raw(r("2024-03-10T12:00:00Z", "2024-03-10T12:15:00Z")),
        ],
    );
    // The watermark lagging behind: everything after it is raw.
    check(
        r("2024-03-10T00:00:00Z", "2024-03-10T06:00:00Z"),
        Some("2024-03-10T02:00:00Z"),
        vec![
            Piece::Rollups(Hour, r("2024-03-10T00:00:00Z", "2024-03-10T02:00:00Z")),
            Piece::Raw(r("2024-03-10T02:00:00Z", "2024-03-10T06:00:00Z")),
        ],
    );
    // An unaligned start whose raw events were deleted reads its whole first hour.
    assert_eq!(
        plan(
            r("2024-03-01T10:20:00Z", "2024-03-01T12:30:00Z"),
            Some(t("2024-03-10T00:00:00Z")),
            Some(t("2024-03-03T00:00:00Z"))
        ),
        vec![
            Piece::Rollups(Hour, r("2024-03-01T10:00:00Z", "2024-03-01T12:00:00Z")),
            Piece::Raw(r("2024-03-01T12:00:00Z", "2024-03-01T12:30:00Z")),
        ],
    );
}

async fn rolled_store(hours: i64, per_hour: i64) -> (Arc<dyn Store>, Vec<analytics_core::Event>) {
    let (store, _) = setup();
    let events = traffic(t("2024-02-25T00:00:00Z"), hours, per_hour);
    ingest(store.as_ref(), &events).await;
    // Keep every raw event, so unaligned edges are read exactly.
    let options = SchedulerOptions {
        default_retention_days: 60,
        ..Default::default()
    };
    let s = RollupScheduler::new(RollupSpecs::defaults(), options);
    let end = t("2024-02-25T00:00:00Z") + chrono::Duration::hours(hours);
    s.tick(store.as_ref(), end + chrono::Duration::minutes(1))
        .await
        .expect("tick");
    (store, events)
}

fn latencies(events: &[analytics_core::Event], range: TimeRange, route: Option<&str>) -> Vec<f64> {
    let mut v: Vec<f64> = events
        .iter()
        .filter(|e| range.contains(e.occurred_at) && route.is_none_or(|r| e.route() == Some(r)))
        .filter_map(|e| match &e.payload {
            Payload::ApiRequest(r) => Some(r.latency_ms),
            _ => None,
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v
}

fn nearest_rank(sorted: &[f64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[tokio::test]
async fn any_range_merges_digests_and_matches_the_raw_truth() {
    // 16 days of traffic: weeks, days and hours all take part.
    let (store, events) = rolled_store(16 * 24, 40).await;
    let reader = RollupReader::new(store.clone(), Arc::new(RollupSpecs::defaults()));
    let q = SeriesQuery {
        project: project("shop"),
        metric: MetricName::parse(metrics::API_LATENCY_MS).unwrap(),
        dimensions: Dimensions::none(),
    };
    for range in [
        r("2024-02-25T00:00:00Z", "2024-03-12T00:00:00Z"),
        r("2024-02-26T07:00:00Z", "2024-03-08T13:00:00Z"),
        r("2024-02-29T00:00:00Z", "2024-03-01T00:00:00Z"),
        r("2024-03-02T03:20:00Z", "2024-03-05T11:45:00Z"),
    ] {
        let stats = reader.stats(&q, range).await.expect("stats").expect("data");
        let truth = latencies(&events, range, None);
        assert_eq!(stats.samples as usize, truth.len(), "{range}");
        assert_eq!(stats.min, truth.first().copied());
        assert_eq!(stats.max, truth.last().copied());
        let sum: f64 = truth.iter().sum();
        assert!((stats.sum - sum).abs() < 1e-6 * sum.max(1.0));
        for (qv, est) in [(0.5, stats.p50), (0.95, stats.p95), (0.99, stats.p99)] {
            let exact = nearest_rank(&truth, qv);
            let est = est.expect("quantile");
            // Latencies here are integers 1..=500: a value error of a few units at most.
            assert!(
                (est - exact).abs() <= 0.02 * exact.max(10.0),
                "{range} q{qv}: {est} vs {exact}"
            );
        }
    }
    // A dimension series.
    let by_route = SeriesQuery {
        dimensions: Dimensions::from_pairs([("route", "/a")]).unwrap(),
        ..q.clone()
    };
    let range = r("2024-02-25T00:00:00Z", "2024-03-12T00:00:00Z");
    let stats = reader.stats(&by_route, range).await.unwrap().unwrap();
    assert_eq!(
        stats.samples as usize,
        latencies(&events, range, Some("/a")).len()
    );
    // A grouping the spec does not define is an error naming the field.
    let bad = SeriesQuery {
        dimensions: Dimensions::from_pairs([("method", "GET")]).unwrap(),
        ..q
    };
    let err = reader.stats(&bad, range).await.unwrap_err();
    assert!(
        matches!(err, analytics_core::Error::Invalid { ref field, .. } if field == "dimensions"),
        "{err}"
    );
}

#[tokio::test]
async fn an_unaligned_start_past_retention_reads_its_whole_first_hour() {
    let (store, _) = setup();
    let events = traffic(t("2024-02-25T00:00:00Z"), 16 * 24, 10);
    ingest(store.as_ref(), &events).await;
    let s = RollupScheduler::new(RollupSpecs::defaults(), SchedulerOptions::default());
    let report = s
        .tick(store.as_ref(), t("2024-03-12T00:01:00Z"))
        .await
        .expect("tick");
    assert!(report.events_deleted > 0, "retention ran");
    let reader = RollupReader::new(store.clone(), Arc::new(RollupSpecs::defaults()));
    let q = SeriesQuery {
        project: project("shop"),
        metric: MetricName::parse(metrics::API_LATENCY_MS).unwrap(),
        dimensions: Dimensions::none(),
    };
    let stats = reader
        .stats(&q, r("2024-03-02T03:20:00Z", "2024-03-05T11:45:00Z"))
        .await
        .unwrap()
        .unwrap();
    let expected = latencies(
        &events,
        r("2024-03-02T03:00:00Z", "2024-03-05T11:45:00Z"),
        None,
    );
    assert_eq!(stats.samples as usize, expected.len());
}

#[tokio::test]
async fn the_open_hour_comes_from_raw_events() {
    let (store, events) = rolled_store(24, 10).await;
    // New events in the open hour after the last tick.
    let open = traffic(t("2024-02-26T00:00:00Z"), 1, 6);
    ingest(store.as_ref(), &open[..3]).await;
    let reader = RollupReader::new(store.clone(), Arc::new(RollupSpecs::defaults()));
    let window = r("2024-02-25T00:00:00Z", "2024-02-26T00:45:00Z");
    let value = reader
        .metric_value(&MetricQuery {
            project: project("shop"),
            metric: MetricName::parse(metrics::API_LATENCY_MS).unwrap(),
            stat: Stat::Count,
            dimensions: Dimensions::none(),
            window,
        })
        .await
        .unwrap();
    assert_eq!(
        value,
        Some((events.len() + 3) as f64),
        "the newest hour is never missing"
    );

    let series = reader
        .timeseries(
            &SeriesQuery {
                project: project("shop"),
                metric: MetricName::parse(metrics::API_LATENCY_MS).unwrap(),
                dimensions: Dimensions::none(),
            },
            window,
            Granularity::Hour,
        )
        .await
        .unwrap();
    assert_eq!(series.len(), 25);
    assert!(series[..24].iter().all(|(_, s)| s.samples == 10));
    assert_eq!(series[24].1.samples, 3);

    // An empty window: count 0, percentiles absent.
    let empty = r("2023-01-01T00:00:00Z", "2023-01-02T00:00:00Z");
    let q = |stat| MetricQuery {
        project: project("shop"),
        metric: MetricName::parse(metrics::API_LATENCY_MS).unwrap(),
        stat,
        dimensions: Dimensions::none(),
        window: empty,
    };
    assert_eq!(
        reader.metric_value(&q(Stat::Count)).await.unwrap(),
        Some(0.0)
    );
    assert_eq!(reader.metric_value(&q(Stat::P95)).await.unwrap(), None);
}

/// One window read of several metrics answers every series of them exactly as a read per
/// series does (rolled-up parts, unaligned raw edges and every grouping).
#[tokio::test]
async fn one_window_read_answers_every_series_like_a_read_per_series() {
    use analytics_core::rollup::read::series_stats;

    let (store, _) = rolled_store(3 * 24, 30).await;
    let reader = RollupReader::new(store.clone(), Arc::new(RollupSpecs::defaults()));
    let metrics_read = [
        MetricName::parse(metrics::API_LATENCY_MS).unwrap(),
        MetricName::parse("api.errors").unwrap(),
    ];
    let route = Dimensions::from_pairs([("route", "/a")]).unwrap();
    for range in [
        r("2024-02-25T00:00:00Z", "2024-02-28T00:00:00Z"),
        r("2024-02-25T10:17:00Z", "2024-02-27T03:40:00Z"),
    ] {
        let shapes: Vec<(MetricName, Vec<String>)> = metrics_read
            .iter()
            .flat_map(|m| [(m.clone(), vec![]), (m.clone(), vec!["route".to_owned()])])
            .collect();
        let rows = reader
            .window_rows(&project("shop"), &shapes, range)
            .await
            .expect("window rows");
        for metric in &metrics_read {
            for dimensions in [Dimensions::none(), route.clone()] {
                let q = SeriesQuery {
                    project: project("shop"),
                    metric: metric.clone(),
                    dimensions,
                };
                let one = reader.stats(&q, range).await.expect("stats");
                let batched = series_stats(&rows, &q).expect("series");
                assert!(one.is_some(), "{q:?} has data");
                assert_eq!(batched, one, "{q:?} over {range}");
            }
        }
    }
}

/// The reader keeps whole raw hours in memory under the store's hour versions: a repeated
/// read of an edge is answered from memory, and an insert into a kept hour (open or already
/// rolled up, before or after the next tick clears its marker) is seen by the next read.
#[tokio::test]
async fn kept_raw_hours_never_hide_a_later_insert() {
    let (store, _) = rolled_store(6, 40).await;
    let reader = RollupReader::new(store.clone(), Arc::new(RollupSpecs::defaults()));
    let q = SeriesQuery {
        project: project("shop"),
        metric: MetricName::parse(metrics::API_LATENCY_MS).unwrap(),
        dimensions: Dimensions::none(),
    };
    // Unaligned at both ends: two raw edges in rolled-up hours.
    let range = r("2024-02-25T01:20:00Z", "2024-02-25T04:40:00Z");
    let count = |reader: RollupReader| {
        let q = q.clone();
        async move {
            reader
                .stats(&q, range)
                .await
                .expect("stats")
                .map_or(0.0, |s| s.count)
        }
    };
    let before = count(reader.clone()).await;
    let (hits, misses) = reader.raw_hours().hits_and_misses();
    assert_eq!(
        (hits, misses),
        (0, 2),
        "both edge hours read from the store"
    );
    assert_eq!(count(reader.clone()).await, before);
    assert_eq!(
        reader.raw_hours().hits_and_misses(),
        (2, 2),
        "then from memory"
    );

    // A late event in the first edge hour: a new version, read again.
    let late =
        analytics_core::testkit::fixtures::api_request(t("2024-02-25T01:30:00Z"), "/a", 200, 5.0);
    ingest(store.as_ref(), std::slice::from_ref(&late)).await;
    assert_eq!(count(reader.clone()).await, before + 1.0);

    // The next tick rolls the hour and clears its marker: the kept hour stays right.
    let s = RollupScheduler::new(
        RollupSpecs::defaults(),
        SchedulerOptions {
            default_retention_days: 60,
            ..Default::default()
        },
    );
    s.tick(store.as_ref(), t("2024-02-25T06:02:00Z"))
        .await
        .expect("tick");
    assert_eq!(count(reader.clone()).await, before + 1.0);
    let again =
        analytics_core::testkit::fixtures::api_request(t("2024-02-25T04:10:00Z"), "/b", 200, 5.0);
    ingest(store.as_ref(), &[again]).await;
    s.tick(store.as_ref(), t("2024-02-25T06:03:00Z"))
        .await
        .expect("tick");
    assert_eq!(
        count(reader.clone()).await,
        before + 2.0,
        "an insert rolled up and cleared between two reads is seen"
    );
}
