//! `write_batch` beyond the conformance suite: batches larger than one statement, dedup
//! across partitions and under concurrency, and bad input that PostgreSQL would reject (the
//! batch fails whole, nothing is stored).

use std::collections::HashSet;

use analytics_core::error::Error;
use analytics_core::ports::{
    EventFilter, EventSink, EventStore, InAppStore, NotificationOutbox, WriteOutcome,
};
use analytics_core::testkit::fixtures::{self, project, t};
use analytics_core::{Event, PageRequest};
use analytics_store_pg::{PgStore, PgStoreOptions};
use chrono::Duration;
use serde_json::json;

use crate::support::{fresh_pg, fresh_pg_with, test_options};

/// Row counts of the event tables: (events, dedup keys, dirty hours).
async fn counts(store: &PgStore) -> (i64, i64, i64) {
    let one = |sql: &'static str| async move {
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(store.pool())
            .await
            .expect(sql)
    };
    (
        one("SELECT count(*) FROM analytics_events").await,
        one("SELECT count(*) FROM analytics_event_ids").await,
        one("SELECT count(*) FROM rollup_dirty_hours").await,
    )
}

/// `n` api_request events spread over `days` days from 2024-03-08.
fn spread(n: usize, days: i64) -> Vec<Event> {
    let start = t("2024-03-08T00:00:00Z");
    let step = Duration::days(days).num_seconds() / n as i64;
    (0..n)
        .map(|i| {
            let at = start + Duration::seconds(step * i as i64);
            fixtures::api_request(at, "/api/v1/products/:id", 200, i as f64)
        })
        .collect()
}

/// A store that splits batches into statements of `chunk` rows.
async fn store_with(chunk: usize) -> Option<PgStore> {
    let options = PgStoreOptions {
        write_chunk_rows: chunk,
        ..test_options()
    };
    fresh_pg_with(options).await.map(|(s, _)| s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_batch_twice_is_all_duplicates_and_changes_nothing() {
    // One statement, and three statements in one transaction.
    for chunk in [5000, 1000] {
        let Some(store) = store_with(chunk).await else {
            return;
        };
        // Three days.
        let batch = spread(2500, 3);
        let first = store.write_batch(&batch).await.expect("first");
        assert_eq!(first.inserted(), 2500, "chunk {chunk}");
        let after_first = counts(&store).await;
        assert_eq!(after_first.0, 2500);
        assert_eq!(after_first.1, 2500);
        assert_eq!(after_first.2, 72, "three days of dirty hours");
        let dirty = store.dirty_hours(100).await.expect("dirty");

        let second = store.write_batch(&batch).await.expect("second");
        assert_eq!(
            second.outcomes,
            vec![WriteOutcome::Duplicate; 2500],
            "chunk {chunk}"
        );
        assert_eq!(
            counts(&store).await,
            after_first,
            "chunk {chunk}: nothing changed"
        );
        assert_eq!(
            store.dirty_hours(100).await.expect("dirty"),
            dirty,
            "chunk {chunk}: duplicates do not touch the dirty markers"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_follow_the_batch_order_across_statements() {
    let Some(store) = store_with(64).await else {
        return;
    };
    let mut events = spread(300, 2);
    // In-batch duplicates (first wins), the same id in another project (distinct).
    let mut dup = events[10].clone();
    dup.payload = events[11].payload.clone();
    events.push(dup);
    events.push(events[20].clone());
    let mut elsewhere = events[30].clone();
    elsewhere.project = project("other");
    events.push(elsewhere);
    let half = store.write_batch(&events[..150]).await.expect("half");
    assert_eq!(half.inserted(), 150);
    let report = store.write_batch(&events).await.expect("all");
    let mut want = vec![WriteOutcome::Duplicate; 150];
    want.extend(vec![WriteOutcome::Inserted; 150]);
    want.extend([
        WriteOutcome::Duplicate,
        WriteOutcome::Duplicate,
        WriteOutcome::Inserted,
    ]);
    assert_eq!(report.outcomes, want);
    let got = store
        .get_event(&events[10].project, events[10].id)
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(got, events[10], "the first occurrence wins");
    assert_eq!(counts(&store).await.0, 301);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_event_with_another_timestamp_is_still_a_duplicate() {
    let Some(store) = fresh_pg().await else {
        return;
    };
    let original = fixtures::api_request(t("2024-03-10T10:00:00Z"), "/a", 200, 1.0);
    store
        .write_batch(std::slice::from_ref(&original))
        .await
        .expect("write");
    // Same id, three days later: another partition, same dedup key.
    let mut moved = original.clone();
    moved.occurred_at = original.occurred_at + Duration::days(3);
    let report = store
        .write_batch(std::slice::from_ref(&moved))
        .await
        .expect("resend");
    assert_eq!(report.outcomes, [WriteOutcome::Duplicate]);
    assert_eq!(
        store
            .get_event(&original.project, original.id)
            .await
            .expect("get"),
        Some(original),
        "the stored event is the first one"
    );
    assert_eq!(counts(&store).await.0, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_batches_sharing_ids_insert_each_event_once() {
    let Some(store) = fresh_pg().await else {
        return;
    };
    let events = spread(2000, 2);
    // Four writers, overlapping halves, in different orders.
    let mut reversed = events.clone();
    reversed.reverse();
    let slices = [
        events[..1200].to_vec(),
        reversed[..1200].to_vec(),
        events[500..].to_vec(),
        reversed.clone(),
    ];
    let tasks: Vec<_> = slices
        .into_iter()
        .map(|batch| {
            let store = store.clone();
            tokio::spawn(async move { store.write_batch(&batch).await })
        })
        .collect();
    let mut inserted = 0;
    for task in tasks {
        inserted += task.await.expect("join").expect("write").inserted();
    }
    assert_eq!(inserted, 2000, "every event inserted by exactly one writer");
    assert_eq!(counts(&store).await.0, 2000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_characters_fail_the_whole_batch_naming_the_event() {
    for chunk in [5000, 2] {
        let Some(store) = store_with(chunk).await else {
            return;
        };
        let mut batch = spread(5, 1);
        batch[3]
            .properties
            .insert("note".into(), json!("bad\u{0}value"));
        let err = store.write_batch(&batch).await.unwrap_err();
        assert_eq!(
            err,
            Error::invalid(
                "events[3].properties",
                "contains a NUL character (\\u0000), which PostgreSQL cannot store"
            ),
            "chunk {chunk}"
        );
        let mut routed = spread(2, 1);
        // `Event::parse` refuses NUL too; an embedder can still build such an event by hand.
        routed[1] = fixtures::api_request(routed[1].occurred_at, "/ab", 200, 1.0);
        if let analytics_core::Payload::ApiRequest(r) = &mut routed[1].payload {
            r.route = "/a\u{0}b".into();
        }
        match store.write_batch(&routed).await {
            Err(Error::Invalid { field, .. }) => assert_eq!(field, "events[1].payload.route"),
            other => panic!("chunk {chunk}: {other:?}"),
        }
        assert_eq!(
            counts(&store).await,
            (0, 0, 0),
            "nothing of either batch is stored"
        );
        // Without the bad row the same batch goes in.
        batch[3].properties.remove("note");
        assert_eq!(
            store.write_batch(&batch).await.expect("clean").inserted(),
            5
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_the_server_rejects_mid_transaction_leaves_nothing_behind() {
    let Some(store) = fresh_pg().await else {
        return;
    };
    // A table squatting on the name of 2024-01-01's partition: the partition cannot be
    // created, so the insert of that day's row fails inside the batch's transaction.
    sqlx::query("CREATE TABLE analytics_events_p20240101 (x int)")
        .execute(store.pool())
        .await
        .expect("squat");
    let mut batch = spread(10, 1);
    batch.push(fixtures::api_request(
        t("2024-01-01T12:00:00Z"),
        "/a",
        200,
        1.0,
    ));
    let err = store.write_batch(&batch).await.unwrap_err();
    assert!(
        matches!(&err, Error::Internal(m) if m.contains("no partition")),
        "{err:?}"
    );
    assert_eq!(
        counts(&store).await,
        (0, 0, 0),
        "the valid rows were not kept either"
    );
    assert_eq!(
        store
            .write_batch(&batch[..10])
            .await
            .expect("valid")
            .inserted(),
        10
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_postgres_rejects_elsewhere_map_to_invalid() {
    let Some(store) = fresh_pg().await else {
        return;
    };
    // Only events are checked before they are sent; other ports rely on the server: a NUL
    // in text (22021) or in jsonb (22P05) comes back as `Invalid`, and nothing is stored.
    let mut n = fixtures::in_app("alice", fixtures::now());
    n.title = "a\u{0}b".into();
    let err = store.create_in_app(&n).await.unwrap_err();
    assert!(matches!(err, Error::Invalid { .. }), "{err:?}");
    let mut queued = fixtures::notification(
        analytics_core::notification::Channel::Email,
        analytics_core::alert::Severity::Warning,
    );
    queued.body = "x\u{0}".into();
    let err = store.enqueue(&[queued], fixtures::now()).await.unwrap_err();
    assert!(matches!(err, Error::Invalid { .. }), "{err:?}");
    let user = analytics_core::UserId::parse("alice").expect("user");
    assert_eq!(store.unread_in_app(&user).await.expect("count"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_create_the_same_new_partitions_concurrently() {
    let Some((first, url)) = fresh_pg_with(test_options()).await else {
        return;
    };
    // Separate processes have separate partition caches: two stores stand in for them.
    let second = PgStore::connect(&url, test_options())
        .await
        .expect("second");
    let mut tasks = Vec::new();
    for (i, store) in [first.clone(), second, first.clone(), first.clone()]
        .into_iter()
        .enumerate()
    {
        let batch: Vec<Event> = (0..40)
            .map(|d| {
                fixtures::api_request(
                    t("2023-06-01T12:00:00Z") + Duration::days(d) + Duration::seconds(i as i64),
                    "/p",
                    200,
                    1.0,
                )
            })
            .collect();
        tasks.push(tokio::spawn(async move { store.write_batch(&batch).await }));
    }
    for task in tasks {
        assert_eq!(task.await.expect("join").expect("write").inserted(), 40);
    }
    let partitions: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_inherits WHERE inhparent = 'analytics_events'::regclass",
    )
    .fetch_one(first.pool())
    .await
    .expect("count");
    assert_eq!(partitions, 40);
    let page = first
        .query_events(&EventFilter::default(), &PageRequest::first(1000))
        .await
        .expect("read");
    assert_eq!(
        page.items
            .iter()
            .map(|e| e.id)
            .collect::<HashSet<_>>()
            .len(),
        160
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_concurrency_follows_the_pool_and_keeps_half_for_readers() {
    use analytics_core::ports::Store;
    for (max_connections, expected) in [(10, 4), (4, 2), (1, 1)] {
        let Some((store, _)) = fresh_pg_with(PgStoreOptions {
            max_connections,
            ..test_options()
        })
        .await
        else {
            return;
        };
        assert_eq!(
            store.write_concurrency(),
            expected,
            "pool of {max_connections}"
        );
    }
}

/// Every year <= 0 used to be named `analytics_events_p0000MMDD`: the first such day
/// created the name, another year's same date found it taken by a partition of the wrong
/// day, and its insert failed (and, group-committed, failed everyone else's events too).
/// Ingest no longer accepts such timestamps, but the store must not mis-route them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_of_years_zero_and_below_land_in_partitions_of_their_own() {
    let Some(store) = fresh_pg().await else {
        return;
    };
    let at = |y: i32, m: u32, d: u32, h: u32| {
        chrono::NaiveDate::from_ymd_opt(y, m, d)
            .unwrap()
            .and_hms_opt(h, 0, 0)
            .unwrap()
            .and_utc()
    };
    // `0000-01-01T00:00:00+01:00` is -0001-12-31T23:00Z; then the same date in other years.
    let times = [
        at(-1, 12, 31, 23),
        at(0, 12, 31, 12),
        at(-2, 12, 31, 0),
        at(0, 1, 1, 0),
    ];
    let events: Vec<Event> = times
        .iter()
        .map(|&t| {
            let mut e = fixtures::api_request(fixtures::now(), "/a", 200, 1.0);
            e.occurred_at = t;
            e
        })
        .collect();
    for e in &events {
        let report = store
            .write_batch(std::slice::from_ref(e))
            .await
            .expect("each day gets its own partition");
        assert_eq!(report.outcomes, [WriteOutcome::Inserted]);
    }
    for e in &events {
        let got = store.get_event(&e.project, e.id).await.expect("get");
        assert_eq!(got.map(|g| g.occurred_at), Some(e.occurred_at));
    }
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         WHERE i.inhparent = 'analytics_events'::regclass ORDER BY 1",
    )
    .fetch_all(store.pool())
    .await
    .expect("partitions");
    assert_eq!(
        names,
        [
            "analytics_events_py-1_1231",
            "analytics_events_py-2_1231",
            "analytics_events_py0_0101",
            "analytics_events_py0_1231",
        ]
    );
    // Retention finds and drops them like any other day.
    let deleted = store
        .delete_events_before(None, fixtures::now())
        .await
        .expect("retention");
    assert_eq!(deleted, 4);
}

/// Migration 0008 on a store that holds events written before it: the indexed collection
/// column becomes the slug, and every hour with raw events is marked dirty (re-rolled with
/// the new specs).
#[tokio::test]
async fn migration_0008_rewrites_collections_and_marks_kept_hours_dirty() {
    use analytics_core::testkit::fixtures::{event_at, t};
    let Some(store) = crate::support::fresh_pg().await else {
        return;
    };
    let at = [t("2024-03-10T10:15:00Z"), t("2024-03-10T12:40:00Z")];
    let events: Vec<_> = at
        .iter()
        .map(|at| {
            event_at(
                serde_json::json!({"kind": "product_view", "occurred_at": at.to_rfc3339(),
                       "payload": {"product_id": "p1", "collection": "black-rose"}}),
                *at,
            )
        })
        .collect();
    store.write_batch(&events).await.expect("write");
    let dirty = store.dirty_hours(10).await.expect("dirty");
    store.clear_dirty_hours(&dirty).await.expect("clear");
    // As an older version stored it.
    sqlx::query("UPDATE analytics_events SET collection = 'Black  Rose'")
        .execute(store.pool())
        .await
        .expect("old name");
    let sql = include_str!("../../migrations/0008_collection_slugs_and_reroll.sql");
    sqlx::raw_sql(sql)
        .execute(store.pool())
        .await
        .expect("migration 0008");
    let collections: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT collection FROM analytics_events")
            .fetch_all(store.pool())
            .await
            .expect("collections");
    assert_eq!(collections, ["black-rose"]);
    let hours: Vec<_> = store
        .dirty_hours(10)
        .await
        .expect("dirty")
        .into_iter()
        .map(|d| d.hour)
        .collect();
    assert_eq!(
        hours,
        [t("2024-03-10T10:00:00Z"), t("2024-03-10T12:00:00Z")]
    );
}
