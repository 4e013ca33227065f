//! Scheduler behaviour with a fake clock: catch-up after downtime, late events, retention
//! that never changes sealed rows, and idempotent ticks.

use analytics_core::ports::{EventStore, JobStore, ProjectStore, Store};
use analytics_core::rollup::scheduler::{
    DAY_WATERMARK, HOUR_WATERMARK, RollupScheduler, SchedulerOptions, WEEK_WATERMARK,
};
use analytics_core::rollup::spec::metrics;
use analytics_core::testkit::fixtures::{self, project, t};
use analytics_core::{Clock, Granularity, ManualClock};
use chrono::Duration;

use super::{ingest, rows, setup, traffic};

fn scheduler() -> RollupScheduler {
    RollupScheduler::new(
        analytics_core::rollup::spec::RollupSpecs::defaults(),
        SchedulerOptions::default(),
    )
}

#[tokio::test]
async fn three_days_of_downtime_fill_every_hour_day_and_the_week() {
    let (store, _) = setup();
    // Sunday 2024-03-03 00:00 is a week start; 72 hours of traffic, then the first tick.
    let start = t("2024-03-03T00:00:00Z");
    let events = traffic(start, 72, 20);
    ingest(store.as_ref(), &events).await;
    let clock = ManualClock::new(t("2024-03-06T00:05:00Z"));
    let report = scheduler()
        .tick(store.as_ref(), clock.now())
        .await
        .expect("tick");
    assert_eq!(report.hours_rolled, 72);
    assert!(!report.backlog);

    let hours = rows(
        store.as_ref(),
        Granularity::Hour,
        Some(metrics::API_LATENCY_MS),
    )
    .await;
    assert_eq!(hours.len(), 72, "every hour of the downtime is rolled up");
    assert!(hours.iter().all(|r| r.stats.samples == 20));
    let days = rows(
        store.as_ref(),
        Granularity::Day,
        Some(metrics::API_LATENCY_MS),
    )
    .await;
    assert_eq!(
        days.iter().map(|r| r.key.bucket_start).collect::<Vec<_>>(),
        [
            t("2024-03-03T00:00:00Z"),
            t("2024-03-04T00:00:00Z"),
            t("2024-03-05T00:00:00Z")
        ]
    );
    assert!(
        days.iter()
            .all(|r| r.stats.samples == 480 && r.stats.count == 480.0)
    );
    let weeks = rows(
        store.as_ref(),
        Granularity::Week,
        Some(metrics::API_LATENCY_MS),
    )
    .await;
    assert_eq!(weeks.len(), 1);
    assert_eq!(weeks[0].key.bucket_start, start);
    assert_eq!(weeks[0].stats.samples, 1440);
    let exact_sum: f64 = events
        .iter()
        .map(|e| match &e.payload {
            analytics_core::Payload::ApiRequest(r) => r.latency_ms,
            _ => 0.0,
        })
        .sum();
    assert!((weeks[0].stats.sum - exact_sum).abs() < 1e-6);

    // Error rate rows: 1 in 10 requests is a 5xx.
    let err_days = rows(store.as_ref(), Granularity::Day, Some(metrics::API_ERRORS)).await;
    assert!(
        err_days
            .iter()
            .all(|r| (r.stats.avg.unwrap() - 0.1).abs() < 1e-9)
    );

    assert_eq!(
        store.watermark(HOUR_WATERMARK).await.unwrap(),
        Some(t("2024-03-06T00:00:00Z"))
    );
    assert_eq!(
        store.watermark(DAY_WATERMARK).await.unwrap(),
        Some(t("2024-03-06T00:00:00Z"))
    );
    assert_eq!(
        store.watermark(WEEK_WATERMARK).await.unwrap(),
        Some(t("2024-03-03T00:00:00Z"))
    );
    assert!(store.dirty_hours(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn the_open_hour_and_the_grace_period_wait() {
    let (store, _) = setup();
    ingest(store.as_ref(), &traffic(t("2024-03-05T10:00:00Z"), 2, 5)).await;
    // 12:00:10 is within the 30 s grace after 12:00, so only 10:00 is complete.
    let report = scheduler()
        .tick(store.as_ref(), t("2024-03-05T12:00:10Z"))
        .await
        .expect("tick");
    assert_eq!(report.hours_rolled, 1);
    assert_eq!(store.dirty_hours(10).await.unwrap().len(), 1);
    let report = scheduler()
        .tick(store.as_ref(), t("2024-03-05T12:00:31Z"))
        .await
        .expect("tick");
    assert_eq!(report.hours_rolled, 1);
    assert_eq!(report.hour_watermark, Some(t("2024-03-05T12:00:00Z")));
}

#[tokio::test]
async fn a_late_event_updates_its_hour_day_and_week() {
    let (store, _) = setup();
    let start = t("2024-03-03T00:00:00Z");
    ingest(store.as_ref(), &traffic(start, 72, 10)).await;
    let now = t("2024-03-06T00:05:00Z");
    scheduler().tick(store.as_ref(), now).await.expect("tick");
    let before_hour = rows(
        store.as_ref(),
        Granularity::Hour,
        Some(metrics::API_LATENCY_MS),
    )
    .await;
    let before_day = rows(
        store.as_ref(),
        Granularity::Day,
        Some(metrics::API_LATENCY_MS),
    )
    .await;
    let before_week = rows(
        store.as_ref(),
        Granularity::Week,
        Some(metrics::API_LATENCY_MS),
    )
    .await;

    // An event 30 hours back: 2024-03-04 18:05, an hour of Monday.
    let late_at = now - Duration::hours(30);
    assert_eq!(late_at, t("2024-03-04T18:05:00Z"));
    ingest(
        store.as_ref(),
        &[fixtures::api_request(late_at, "/a", 200, 99_999.0)],
    )
    .await;
    let later = now + Duration::minutes(1);
    let report = scheduler().tick(store.as_ref(), later).await.expect("tick");
    assert_eq!(
        (report.hours_rolled, report.days_merged, report.weeks_merged),
        (1, 1, 1)
    );

    let hour = rows(
        store.as_ref(),
        Granularity::Hour,
        Some(metrics::API_LATENCY_MS),
    )
    .await;
    for (b, a) in before_hour.iter().zip(&hour) {
        if a.key.bucket_start == t("2024-03-04T18:00:00Z") {
            assert_eq!(a.stats.samples, b.stats.samples + 1);
            assert_eq!(a.stats.max, Some(99_999.0));
        } else {
            assert_eq!(a, b, "other hours are untouched");
        }
    }
    let day = rows(
        store.as_ref(),
        Granularity::Day,
        Some(metrics::API_LATENCY_MS),
    )
    .await;
    for (b, a) in before_day.iter().zip(&day) {
        if a.key.bucket_start == t("2024-03-04T00:00:00Z") {
            assert_eq!(a.stats.samples, b.stats.samples + 1);
            assert_eq!(a.stats.max, Some(99_999.0));
        } else {
            assert_eq!(a, b, "other days are untouched");
        }
    }
    let week = rows(
        store.as_ref(),
        Granularity::Week,
        Some(metrics::API_LATENCY_MS),
    )
    .await;
    assert_eq!(week[0].stats.samples, before_week[0].stats.samples + 1);
    assert_eq!(week[0].stats.max, Some(99_999.0));
}

#[tokio::test]
async fn retention_deletes_raw_events_and_leaves_every_rollup_identical() {
    let (store, _) = setup();
    let start = t("2024-03-03T00:00:00Z");
    let events = traffic(start, 48, 10);
    ingest(store.as_ref(), &events).await;
    let s = scheduler();
    s.tick(store.as_ref(), t("2024-03-05T00:01:00Z"))
        .await
        .expect("tick");
    let snapshot = |store: std::sync::Arc<analytics_core::memory::MemoryStore>| async move {
        let mut all = Vec::new();
        for g in Granularity::ROLLED {
            all.extend(rows(store.as_ref(), g, None).await);
        }
        all
    };
    let before = snapshot(store.clone()).await;
    assert!(!before.is_empty());

    // Nine days later the 7-day retention deletes every raw event of those two days.
    let report = s
        .tick(store.as_ref(), t("2024-03-14T00:01:00Z"))
        .await
        .expect("tick");
    assert_eq!(report.events_deleted, events.len() as u64);
    let left = store
        .query_events(&Default::default(), &analytics_core::PageRequest::first(10))
        .await
        .unwrap();
    assert!(left.items.is_empty());
    assert_eq!(
        snapshot(store.clone()).await,
        before,
        "deleting raw events changes no rollup row"
    );

    // A late event into a sealed hour is stored but never recomputes the sealed rows.
    ingest(
        store.as_ref(),
        &[fixtures::api_request(
            t("2024-03-03T05:30:00Z"),
            "/a",
            200,
            1.0,
        )],
    )
    .await;
    let report = s
        .tick(store.as_ref(), t("2024-03-14T00:02:00Z"))
        .await
        .expect("tick");
    assert_eq!((report.hours_rolled, report.sealed_skipped), (0, 1));
    assert_eq!(
        snapshot(store.clone()).await,
        before,
        "a sealed bucket never changes"
    );
}

#[tokio::test]
async fn running_a_job_twice_changes_nothing() {
    let (store, _) = setup();
    ingest(store.as_ref(), &traffic(t("2024-03-09T20:00:00Z"), 30, 7)).await;
    let now = t("2024-03-11T03:00:00Z");
    let s = scheduler();
    s.tick(store.as_ref(), now).await.expect("first");
    let mut first = Vec::new();
    for g in Granularity::ROLLED {
        first.extend(rows(store.as_ref(), g, None).await);
    }
    let again = s.tick(store.as_ref(), now).await.expect("second");
    assert_eq!(
        (again.hours_rolled, again.rows_written, again.events_deleted),
        (0, 0, 0)
    );
    let later = s
        .tick(store.as_ref(), now + Duration::hours(2))
        .await
        .expect("later");
    assert_eq!(later.rows_written, 0);
    let mut second = Vec::new();
    for g in Granularity::ROLLED {
        second.extend(rows(store.as_ref(), g, None).await);
    }
    assert_eq!(first, second);
    // The week spans Sunday 2024-03-10: two week rows.
    let weeks = rows(
        store.as_ref(),
        Granularity::Week,
        Some(metrics::API_LATENCY_MS),
    )
    .await;
    assert_eq!(
        weeks.iter().map(|r| r.key.bucket_start).collect::<Vec<_>>(),
        [t("2024-03-03T00:00:00Z"), t("2024-03-10T00:00:00Z")]
    );
}

#[tokio::test]
async fn unknown_projects_are_registered_with_the_default_retention() {
    let (store, _) = setup();
    let mut e = fixtures::api_request(t("2024-03-09T20:00:00Z"), "/a", 200, 1.0);
    e.project = project("newcomer");
    ingest(store.as_ref(), &[e]).await;
    scheduler()
        .tick(store.as_ref(), t("2024-03-10T00:00:00Z"))
        .await
        .expect("tick");
    let p = store
        .get_project(&project("newcomer"))
        .await
        .expect("registered");
    assert_eq!(p.settings.retention_days, 7);
    let _: &dyn Store = store.as_ref();
}

#[tokio::test]
async fn a_tick_limit_leaves_a_backlog_and_holds_the_watermark() {
    let (store, _) = setup();
    ingest(store.as_ref(), &traffic(t("2024-03-03T00:00:00Z"), 10, 2)).await;
    let s = RollupScheduler::new(
        analytics_core::rollup::spec::RollupSpecs::defaults(),
        SchedulerOptions {
            max_hours_per_tick: 4,
            ..Default::default()
        },
    );
    let r = s
        .tick(store.as_ref(), t("2024-03-04T00:00:00Z"))
        .await
        .expect("tick");
    assert_eq!(
        (r.hours_rolled, r.backlog, r.hour_watermark),
        (4, true, None)
    );
    let r = s
        .tick(store.as_ref(), t("2024-03-04T00:00:00Z"))
        .await
        .expect("tick");
    assert_eq!(r.hours_rolled, 4);
    let r = s
        .tick(store.as_ref(), t("2024-03-04T00:00:00Z"))
        .await
        .expect("tick");
    assert_eq!((r.hours_rolled, r.backlog), (2, false));
    assert_eq!(r.hour_watermark, Some(t("2024-03-03T23:00:00Z")));
}

/// Retention deletes what every project has expired in one all-projects call (where a
/// store can drop whole days), recorded by the `rollup.retention` watermark, and the rest
/// per project: a project with a longer retention keeps its events.
#[tokio::test]
async fn retention_deletes_what_every_project_expired_at_once_and_spares_longer_retentions() {
    use analytics_core::project::{Project, ProjectSettings};
    use analytics_core::rollup::scheduler::{RETENTION_WATERMARK, seal_key};
    let (store, _) = setup();
    let archive = project("archive");
    store
        .create_project(&Project {
            id: archive.clone(),
            name: "archive".into(),
            settings: ProjectSettings {
                retention_days: 30,
                ..Default::default()
            },
            created_at: t("2024-01-01T00:00:00Z"),
        })
        .await
        .expect("project");
    let now = t("2024-03-20T12:00:00Z");
    let mut events = Vec::new();
    for days in [10, 5] {
        let at = now - Duration::days(days);
        events.push(fixtures::api_request(at, "/a", 200, 1.0));
        let mut a = fixtures::api_request(at, "/a", 200, 1.0);
        a.project = archive.clone();
        events.push(a);
    }
    ingest(store.as_ref(), &events).await;
    let s = scheduler();
    let report = s.tick(store.as_ref(), now).await.expect("tick");
    assert_eq!(report.events_deleted, 1, "only shop's 10-day-old event");
    let kept = |i: usize| {
        let store = store.clone();
        let e = events[i].clone();
        async move {
            store
                .get_event(&e.project, e.id)
                .await
                .expect("get")
                .is_some()
        }
    };
    assert_eq!(
        [kept(0).await, kept(1).await, kept(2).await, kept(3).await],
        [false, true, true, true]
    );
    assert_eq!(
        store.watermark(RETENTION_WATERMARK).await.expect("wm"),
        Some(now - Duration::days(30)),
        "the earliest cutoff of all projects"
    );
    assert_eq!(
        store.watermark(&seal_key(&archive)).await.expect("seal"),
        Some(now - Duration::days(30))
    );

    // With a shorter retention, archive's cutoff passes shop's: the all-projects call
    // takes everything before shop's (7 days), archive's own call the rest.
    store
        .update_project_settings(
            &archive,
            &ProjectSettings {
                retention_days: 3,
                ..Default::default()
            },
        )
        .await
        .expect("settings");
    let later = now + Duration::hours(1);
    let report = s.tick(store.as_ref(), later).await.expect("tick");
    assert_eq!(report.events_deleted, 2);
    assert_eq!(
        [kept(0).await, kept(1).await, kept(2).await, kept(3).await],
        [false, false, true, false]
    );
    assert_eq!(
        store.watermark(RETENTION_WATERMARK).await.expect("wm"),
        Some(later - Duration::days(7))
    );
}
