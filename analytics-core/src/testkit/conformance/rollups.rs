//! Contracts of `RollupStore`.

use chrono::Duration;

use crate::ids::MetricName;
use crate::ports::Store;
use crate::rollup::{Dimensions, RollupQuery};
use crate::testkit::fixtures::{self, project, t};
use crate::time::{Granularity, TimeRange};

fn query(granularity: Granularity, from: &str, to: &str) -> RollupQuery {
    RollupQuery {
        project: project("shop"),
        granularity,
        range: TimeRange::new(t(from), t(to)).expect("range"),
        metrics: vec![],
        dimensions: Dimensions::none(),
        dimension_names: None,
    }
}

/// Upserting the same key replaces the row; writing it twice changes nothing.
pub async fn rollup_upserts_replace_by_key(store: &dyn Store) {
    let h = t("2024-03-10T08:00:00Z");
    let row = fixtures::rollup(
        Granularity::Hour,
        h,
        "api.latency_ms",
        &[("route", "/a")],
        10.0,
    );
    assert_eq!(
        store
            .upsert_rollups(std::slice::from_ref(&row))
            .await
            .expect("upsert"),
        1
    );
    assert_eq!(
        store
            .upsert_rollups(std::slice::from_ref(&row))
            .await
            .expect("upsert again"),
        1
    );
    let q = query(
        Granularity::Hour,
        "2024-03-10T00:00:00Z",
        "2024-03-11T00:00:00Z",
    );
    assert_eq!(
        store.query_rollups(&q).await.expect("query"),
        vec![row.clone()]
    );

    let mut changed = fixtures::rollup(
        Granularity::Hour,
        h,
        "api.latency_ms",
        &[("route", "/a")],
        20.0,
    );
    changed.stats.min = None;
    changed.stats.p99 = None;
    store
        .upsert_rollups(std::slice::from_ref(&changed))
        .await
        .expect("replace");
    let got = store.query_rollups(&q).await.expect("query");
    assert_eq!(
        got,
        vec![changed],
        "the newer row replaces the older one, None values included"
    );
}

/// Queries select by project, granularity, bucket range (start inclusive, end exclusive),
/// metric and dimensions, ordered by (bucket, metric, dimensions).
pub async fn rollup_queries_filter_and_order(store: &dyn Store) {
    let h0 = t("2024-03-10T08:00:00Z");
    let mut rows = Vec::new();
    for i in 0..4 {
        let h = h0 + Duration::hours(i);
        rows.push(fixtures::rollup(
            Granularity::Hour,
            h,
            "api.latency_ms",
            &[],
            1.0,
        ));
        rows.push(fixtures::rollup(
            Granularity::Hour,
            h,
            "api.latency_ms",
            &[("route", "/a")],
            2.0,
        ));
        rows.push(fixtures::rollup(
            Granularity::Hour,
            h,
            "api.latency_ms",
            &[("route", "/b")],
            3.0,
        ));
        rows.push(fixtures::rollup(
            Granularity::Hour,
            h,
            "api.latency_ms",
            &[("route", "/a"), ("status_class", "5xx")],
            4.0,
        ));
        rows.push(fixtures::rollup(
            Granularity::Hour,
            h,
            "api.requests",
            &[],
            5.0,
        ));
    }
    rows.push(fixtures::rollup(
        Granularity::Day,
        t("2024-03-10T00:00:00Z"),
        "api.latency_ms",
        &[],
        6.0,
    ));
    let mut other = fixtures::rollup(Granularity::Hour, h0, "api.latency_ms", &[], 7.0);
    other.key.project = project("other");
    rows.push(other);
    // Written in reverse to prove ordering is the store's job.
    let reversed: Vec<_> = rows.iter().rev().cloned().collect();
    store.upsert_rollups(&reversed).await.expect("upsert");

    let all_hours = store
        .query_rollups(&query(
            Granularity::Hour,
            "2024-03-10T00:00:00Z",
            "2024-03-11T00:00:00Z",
        ))
        .await
        .expect("query");
    assert_eq!(
        all_hours.len(),
        20,
        "other projects and granularities are excluded"
    );
    let keys: Vec<_> = all_hours
        .iter()
        .map(|r| {
            (
                r.key.bucket_start,
                r.key.metric.clone(),
                r.key.dimensions.clone(),
            )
        })
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(
        keys, sorted,
        "ordered by (bucket_start, metric, dimensions)"
    );

    // Range: start inclusive, end exclusive.
    let two = store
        .query_rollups(&query(
            Granularity::Hour,
            "2024-03-10T09:00:00Z",
            "2024-03-10T11:00:00Z",
        ))
        .await
        .expect("query");
    assert_eq!(two.len(), 10);
    assert!(
        two.iter()
            .all(|r| r.key.bucket_start >= t("2024-03-10T09:00:00Z")
                && r.key.bucket_start < t("2024-03-10T11:00:00Z"))
    );

    let mut q = query(
        Granularity::Hour,
        "2024-03-10T00:00:00Z",
        "2024-03-11T00:00:00Z",
    );
    q.metrics = vec![MetricName::parse("api.requests").expect("metric")];
    assert_eq!(store.query_rollups(&q).await.expect("query").len(), 4);

    let mut q = query(
        Granularity::Hour,
        "2024-03-10T00:00:00Z",
        "2024-03-11T00:00:00Z",
    );
    q.dimensions = Dimensions::from_pairs([("route", "/a")]).expect("dims");
    let by_route = store.query_rollups(&q).await.expect("query");
    assert_eq!(
        by_route.len(),
        8,
        "rows including route=/a, with or without more dimensions"
    );

    q.dimension_names = Some(vec!["route".into()]);
    let exact = store.query_rollups(&q).await.expect("query");
    assert_eq!(exact.len(), 4, "only rows grouped by exactly [route]");
    assert!(exact.iter().all(|r| r.stats.avg == Some(2.0)));

    let mut overall = query(
        Granularity::Hour,
        "2024-03-10T00:00:00Z",
        "2024-03-11T00:00:00Z",
    );
    overall.metrics = vec![MetricName::parse("api.latency_ms").expect("metric")];
    overall.dimension_names = Some(vec![]);
    let rows = store.query_rollups(&overall).await.expect("query");
    assert_eq!(rows.len(), 4);
    assert!(rows.iter().all(|r| r.key.dimensions.is_empty()));

    let days = store
        .query_rollups(&query(
            Granularity::Day,
            "2024-03-01T00:00:00Z",
            "2024-03-11T00:00:00Z",
        ))
        .await
        .expect("query");
    assert_eq!(days.len(), 1);
    assert_eq!(
        days[0].digest,
        vec![1, 2, 3, 6],
        "the digest blob round-trips"
    );
}
