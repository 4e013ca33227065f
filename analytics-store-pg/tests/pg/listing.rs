//! Listing with as many day partitions as the configuration allows (a raw retention of at
//! most `MAX_RETENTION_DAYS` days): every statement reads a bounded window of days, so a
//! listing without a time range answers, also when many run at once.

use analytics_core::event::Event;
use analytics_core::ports::{EventFilter, EventSink, EventStore};
use analytics_core::project::MAX_RETENTION_DAYS;
use analytics_core::testkit::fixtures::{self, t};
use analytics_core::{EventId, PageRequest};
use analytics_store_pg::{PgStore, PgStoreOptions};
use chrono::Duration;

use crate::support::{fresh_pg_with, test_options};

const NEWEST: &str = "2024-03-10T12:00:00Z";

/// A store holding one event a day for more days than the longest retention keeps (the
/// oldest on route `/oldest`), newest first.
async fn store_with_most_days() -> Option<(PgStore, Vec<Event>)> {
    let options = PgStoreOptions {
        max_connections: 16,
        ..test_options()
    };
    let (store, _) = fresh_pg_with(options).await?;
    let days = i64::from(MAX_RETENTION_DAYS) + 10;
    let events: Vec<Event> = (0..days)
        .map(|d| {
            let route = if d == days - 1 { "/oldest" } else { "/r" };
            fixtures::api_request(t(NEWEST) - Duration::days(d), route, 200, 1.0)
        })
        .collect();
    for chunk in events.chunks(100) {
        store.write_batch(chunk).await.expect("write");
    }
    let partitions: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_inherits WHERE inhparent = 'analytics_events'::regclass",
    )
    .fetch_one(store.pool())
    .await
    .expect("count partitions");
    assert_eq!(partitions, days);
    Some((store, events))
}

fn ids(items: &[Event]) -> Vec<EventId> {
    items.iter().map(|e| e.id).collect()
}

/// One listing statement over every partition locked each partition and its six indexes
/// (~2,900 relations for 410 days) until it ended; with a few of them the server's shared
/// lock table was full (`53200 out of shared memory`) and every listing without a time
/// range failed. Here another transaction holds `ACCESS EXCLUSIVE` on the partition 200
/// days back: a listing whose page lies in the newest days must not wait for it, and one
/// that needs that day waits holding only its window's locks.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_listing_locks_only_a_window_of_day_partitions() {
    let Some((store, events)) = store_with_most_days().await else {
        return;
    };
    let day_200 = (t(NEWEST) - Duration::days(200)).format("%Y%m%d");
    let mut blocker = store.pool().begin().await.expect("begin");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "LOCK TABLE analytics_events_p{day_200} IN ACCESS EXCLUSIVE MODE"
    )))
    .execute(&mut *blocker)
    .await
    .expect("lock");

    let first = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        store.query_events(&EventFilter::default(), &PageRequest::first(100)),
    )
    .await
    .expect("the first page does not wait for a partition it does not read")
    .expect("listing answers");
    assert_eq!(ids(&first.items), ids(&events[..100]));

    let oldest = EventFilter {
        route: Some("/oldest".into()),
        ..Default::default()
    };
    let reader = store.clone();
    let waiting =
        tokio::spawn(async move { reader.query_events(&oldest, &PageRequest::first(10)).await });
    let pid = {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let pid: Option<i32> = sqlx::query_scalar(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
                 AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()",
            )
            .fetch_optional(store.pool())
            .await
            .expect("activity");
            if let Some(pid) = pid {
                break pid;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the listing never reached day 200"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    let held: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_locks WHERE pid = $1 AND granted")
        .bind(pid)
        .fetch_one(store.pool())
        .await
        .expect("locks");
    assert!(held < 100, "a listing statement held {held} locks");
    blocker.rollback().await.expect("release");
    let page = waiting.await.expect("task").expect("the listing goes on");
    assert_eq!(ids(&page.items), ids(&events[events.len() - 1..]));
    assert!(page.next_cursor.is_none());
}

/// With the most days a configuration allows, listings without a time range answer: many
/// at once, every page down to the oldest day, a filter only the oldest day matches, and the
/// lookup by id.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn listing_without_a_time_range_answers_with_the_most_partitions_retention_allows() {
    let Some((store, events)) = store_with_most_days().await else {
        return;
    };
    for _ in 0..3 {
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .query_events(&EventFilter::default(), &PageRequest::first(100))
                        .await
                })
            })
            .collect();
        for task in tasks {
            let page = task.await.expect("task").expect("listing answers");
            assert_eq!(ids(&page.items), ids(&events[..100]));
            assert!(page.next_cursor.is_some());
        }
    }

    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .query_events(
                &EventFilter::default(),
                &PageRequest::new(150, cursor).expect("page"),
            )
            .await
            .expect("page answers");
        seen.extend(ids(&page.items));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, ids(&events));

    let oldest = EventFilter {
        route: Some("/oldest".into()),
        ..Default::default()
    };
    let page = store
        .query_events(&oldest, &PageRequest::first(10))
        .await
        .expect("oldest");
    assert_eq!(ids(&page.items), ids(&events[events.len() - 1..]));
    assert!(page.next_cursor.is_none());

    let last = &events[events.len() - 1];
    let got = store.get_event(&last.project, last.id).await.expect("get");
    assert_eq!(got.as_ref(), Some(last));
}
