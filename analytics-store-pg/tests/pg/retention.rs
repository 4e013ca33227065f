//! Retention on the day-partitioned events table: whole days are dropped, the partly
//! covered day and single projects lose rows, dedup keys go with their events, and the
//! returned count is exact.

use analytics_core::Event;
use analytics_core::ports::{EventSink, EventStore, ProjectStore, WriteOutcome};
use analytics_core::project::{Project, ProjectSettings};
use analytics_core::rollup::scheduler::{RollupScheduler, SchedulerOptions};
use analytics_core::rollup::spec::RollupSpecs;
use analytics_core::testkit::fixtures::{self, project, t};
use analytics_store_pg::PgStore;
use chrono::{DateTime, Duration, Utc};

use crate::support::fresh_pg;

/// Four events per day from 2024-03-01 to 2024-03-05 at 00:00, 06:00, 12:00, 18:00, in
/// project `shop` and the same in `other`.
fn five_days() -> Vec<Event> {
    let mut out = Vec::new();
    for d in 0..5 {
        for h in [0, 6, 12, 18] {
            let at = t("2024-03-01T00:00:00Z") + Duration::days(d) + Duration::hours(h);
            let e = fixtures::api_request(at, "/r", 200, 1.0);
            let mut o = fixtures::api_request(at, "/r", 200, 1.0);
            o.project = project("other");
            out.push(e);
            out.push(o);
        }
    }
    out
}

async fn partitions(store: &PgStore) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         WHERE i.inhparent = 'analytics_events'::regclass ORDER BY 1",
    )
    .fetch_all(store.pool())
    .await
    .expect("partitions")
}

async fn count(store: &PgStore, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(store.pool())
        .await
        .expect(sql)
}

fn older(events: &[Event], project_slug: Option<&str>, before: DateTime<Utc>) -> usize {
    events
        .iter()
        .filter(|e| e.occurred_at < before && project_slug.is_none_or(|p| e.project.as_str() == p))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_drops_whole_days_and_deletes_the_rest_exactly() {
    let Some(store) = fresh_pg().await else {
        return;
    };
    let events = five_days();
    store.write_batch(&events).await.expect("write");
    assert_eq!(partitions(&store).await.len(), 5);

    // One project: rows only, every partition stays.
    let first_cut = t("2024-03-03T12:00:00Z");
    let n = store
        .delete_events_before(Some(&project("shop")), first_cut)
        .await
        .expect("project retention");
    assert_eq!(n, older(&events, Some("shop"), first_cut) as u64);
    assert_eq!(n, 10);
    assert_eq!(partitions(&store).await.len(), 5);
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM analytics_event_ids WHERE project = 'shop'"
        )
        .await,
        10,
        "the keys of deleted events are gone"
    );

    // All projects: 03-01..03-03 are dropped whole, 03-04 loses its first two hours' rows.
    let cut = t("2024-03-04T06:00:00Z");
    let n = store
        .delete_events_before(None, cut)
        .await
        .expect("global retention");
    // Everything before the cut except what the project run already deleted.
    let expected = older(&events, None, cut) - older(&events, Some("shop"), first_cut);
    assert_eq!(n, expected as u64);
    assert_eq!(n, 16);
    assert_eq!(
        partitions(&store).await,
        ["analytics_events_p20240304", "analytics_events_p20240305"]
    );
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM pg_class WHERE relname LIKE 'analytics_events_retired%'"
        )
        .await,
        0,
        "retired partitions are dropped"
    );
    assert_eq!(
        count(&store, "SELECT count(*) FROM analytics_events").await,
        14
    );
    assert_eq!(
        count(&store, "SELECT count(*) FROM analytics_event_ids").await,
        14
    );
    for e in &events {
        let got = store.get_event(&e.project, e.id).await.expect("get");
        assert_eq!(got.is_some(), e.occurred_at >= cut, "{}", e.occurred_at);
    }
    assert_eq!(
        store.delete_events_before(None, cut).await.expect("again"),
        0
    );

    // A late event for a dropped day gets its partition back.
    let late = fixtures::api_request(t("2024-03-02T03:00:00Z"), "/late", 200, 1.0);
    let report = store
        .write_batch(std::slice::from_ref(&late))
        .await
        .expect("late write");
    assert_eq!(report.outcomes, [WriteOutcome::Inserted]);
    assert!(
        partitions(&store)
            .await
            .contains(&"analytics_events_p20240302".to_owned())
    );
    assert_eq!(
        store
            .delete_events_before(None, cut)
            .await
            .expect("once more"),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_retired_by_a_crashed_run_is_dropped_and_counted_next_time() {
    let Some(store) = fresh_pg().await else {
        return;
    };
    let events = five_days();
    store.write_batch(&events).await.expect("write");
    // What a run that died between detaching and dropping leaves behind.
    for sql in [
        "ALTER TABLE analytics_events DETACH PARTITION analytics_events_p20240301",
        "ALTER TABLE analytics_events_p20240301 RENAME TO analytics_events_retired_p20240301_0000",
    ] {
        sqlx::query(sql).execute(store.pool()).await.expect(sql);
    }
    let n = store
        .delete_events_before(None, t("2024-03-01T00:00:00Z"))
        .await
        .expect("retention");
    assert_eq!(
        n, 8,
        "the retired day's rows are counted once they are dropped"
    );
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM pg_class WHERE relname LIKE 'analytics_events_retired%'"
        )
        .await,
        0
    );
}

/// Four events a day (00:00, 06:00, 12:00, 18:00) for the 12 days up to 2024-03-10, in
/// project `shop`, and the same in `archive`.
fn twelve_days() -> Vec<Event> {
    let mut out = Vec::new();
    for d in 0..12 {
        for h in [0, 6, 12, 18] {
            let at = t("2024-02-28T00:00:00Z") + Duration::days(d) + Duration::hours(h);
            let mut a = fixtures::api_request(at, "/r", 200, 1.0);
            a.project = project("archive");
            out.push(fixtures::api_request(at, "/r", 200, 1.0));
            out.push(a);
        }
    }
    out
}

/// What the running server does every minute is a scheduler tick: its retention path used to
/// delete rows project by project, which never drops a partition, so expired days stayed
/// attached (empty) forever. Now the days every project has expired are dropped whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rollup_schedulers_retention_drops_expired_day_partitions() {
    let Some(store) = fresh_pg().await else {
        return;
    };
    // `archive` keeps 9 days; `shop` is registered by the scheduler with the default 7.
    store
        .create_project(&Project {
            id: project("archive"),
            name: "archive".into(),
            settings: ProjectSettings {
                retention_days: 9,
                ..Default::default()
            },
            created_at: t("2024-01-01T00:00:00Z"),
        })
        .await
        .expect("project");
    let events = twelve_days();
    store.write_batch(&events).await.expect("write");
    assert_eq!(partitions(&store).await.len(), 12);

    let scheduler = RollupScheduler::new(RollupSpecs::defaults(), SchedulerOptions::default());
    let now = t("2024-03-10T12:00:00Z");
    let report = scheduler.tick(&store, now).await.expect("tick");
    // Cutoffs: shop 2024-03-03T12:00, archive 2024-03-01T12:00. Days before 03-01 are gone
    // for everyone: dropped whole.
    let shop_cut = t("2024-03-03T12:00:00Z");
    let archive_cut = t("2024-03-01T12:00:00Z");
    let expected =
        older(&events, Some("shop"), shop_cut) + older(&events, Some("archive"), archive_cut);
    assert_eq!(report.events_deleted, expected as u64);
    let left = partitions(&store).await;
    assert_eq!(
        left.first().map(String::as_str),
        Some("analytics_events_p20240301")
    );
    assert_eq!(left.len(), 10);
    for e in &events {
        let cut = if e.project.as_str() == "shop" {
            shop_cut
        } else {
            archive_cut
        };
        let got = store.get_event(&e.project, e.id).await.expect("get");
        assert_eq!(
            got.is_some(),
            e.occurred_at >= cut,
            "{} {}",
            e.project,
            e.occurred_at
        );
    }

    // Two days later both cutoffs moved past 03-02: 03-01 and 03-02 go whole.
    let report = scheduler
        .tick(&store, now + Duration::days(2))
        .await
        .expect("later tick");
    assert!(report.events_deleted > 0);
    assert_eq!(
        partitions(&store).await.first().map(String::as_str),
        Some("analytics_events_p20240303")
    );
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM pg_class WHERE relname LIKE 'analytics_events_retired%'"
        )
        .await,
        0
    );
}
