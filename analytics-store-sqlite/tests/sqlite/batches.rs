//! `write_batch` beyond the conformance suite: re-sent batches, atomic rejection of a bad
//! event, batches larger than one INSERT statement, and agreement with the reference store.

use analytics_core::memory::MemoryStore;
use analytics_core::ports::{EventFilter, EventSink, EventStore, WriteOutcome};
use analytics_core::testkit::fixtures::{self, now, project};
use analytics_core::{Error, Event, EventId, PageRequest, Payload};
use analytics_store_sqlite::SqliteStoreOptions;
use chrono::Duration;
use uuid::Uuid;

use crate::common::TempDb;

fn events(n: usize) -> Vec<Event> {
    (0..n)
        .map(|i| {
            fixtures::api_request(
                now() - Duration::seconds(i as i64 * 37),
                "/api/v1/orders",
                200,
                i as f64,
            )
        })
        .collect()
}

#[tokio::test]
async fn the_same_batch_twice_is_all_duplicates_the_second_time() {
    let db = TempDb::new("twice");
    let store = db.open().await;
    let batch = events(300);
    let first = store.write_batch(&batch).await.expect("first");
    assert_eq!(first.inserted(), 300);
    let dirty = store.dirty_hours(1000).await.expect("dirty");
    let again = store.write_batch(&batch).await.expect("second");
    assert_eq!(again.outcomes, vec![WriteOutcome::Duplicate; 300]);
    assert_eq!(store.event_count().await.expect("count"), 300);
    assert_eq!(
        store.dirty_hours(1000).await.expect("dirty"),
        dirty,
        "duplicates do not touch the dirty markers"
    );
}

#[tokio::test]
async fn a_bad_event_fails_the_whole_batch_and_is_named() {
    let db = TempDb::new("bad");
    let store = db.open().await;
    let mut batch = events(5);
    if let Payload::ApiRequest(r) = &mut batch[3].payload {
        r.latency_ms = f64::NAN;
    }
    let err = store.write_batch(&batch).await.expect_err("rejected");
    match &err {
        Error::Invalid { field, reason } => {
            assert_eq!(field, "events[3].payload.latency_ms");
            assert!(reason.contains("finite"), "{reason}");
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    assert_eq!(store.event_count().await.expect("count"), 0, "never half");
    assert!(store.dirty_hours(10).await.expect("dirty").is_empty());

    let mut batch = events(3);
    batch[1].sample_rate = 0.0;
    let err = store.write_batch(&batch).await.expect_err("rejected");
    assert!(
        matches!(&err, Error::Invalid { field, .. } if field == "events[1].sample_rate"),
        "{err:?}"
    );
    assert_eq!(store.event_count().await.expect("count"), 0);

    // The valid events go through once the bad one is taken out.
    batch.remove(1);
    assert_eq!(store.write_batch(&batch).await.expect("ok").inserted(), 2);
}

/// Batches spanning several INSERT statements, mixing new events, stored ones, repeats within
/// the batch and the same id in two projects, report exactly what the reference store does.
#[tokio::test]
async fn large_mixed_batches_agree_with_the_reference_store() {
    let db = TempDb::new("mixed");
    let store = db
        .open_with(SqliteStoreOptions {
            insert_chunk_rows: 100,
            ..SqliteStoreOptions::default()
        })
        .await;
    let reference = MemoryStore::new();
    let pool = events(1500);
    let mut batches: Vec<Vec<Event>> = Vec::new();
    batches.push(pool[..700].to_vec());
    // Half stored already, repeats inside the batch, and ids reused in another project.
    let mut second: Vec<Event> = pool[350..1200].to_vec();
    second.extend(pool[1000..1050].iter().cloned());
    for e in &pool[0..40] {
        let mut other = e.clone();
        other.project = project("other");
        second.push(other.clone());
        second.push(other);
    }
    batches.push(second);
    batches.push(pool.clone());
    for (i, batch) in batches.iter().enumerate() {
        let got = store.write_batch(batch).await.expect("sqlite write");
        let want = reference.write_batch(batch).await.expect("memory write");
        assert_eq!(got, want, "batch {i}");
    }
    assert_eq!(store.event_count().await.expect("count"), 1540);
    assert_eq!(
        store.dirty_hours(10_000).await.expect("dirty").len(),
        reference.dirty_hours(10_000).await.expect("dirty").len()
    );
    // Spot-check that rows read back equal what was written.
    for e in pool.iter().step_by(97) {
        let got = store.get_event(&e.project, e.id).await.expect("get");
        assert_eq!(got.as_ref(), Some(e));
    }
    let page = store
        .query_events(&EventFilter::default(), &PageRequest::first(1000))
        .await
        .expect("page");
    assert_eq!(page.items.len(), 1000);
    assert!(page.next_cursor.is_some());
}

#[tokio::test]
async fn events_with_the_same_id_in_one_statement_and_two_projects_are_both_inserted() {
    let db = TempDb::new("same-id");
    let store = db.open().await;
    let a = fixtures::api_request(now(), "/a", 200, 1.0);
    let mut b = a.clone();
    b.project = project("other");
    let mut c = a.clone();
    c.id = EventId(Uuid::new_v4());
    let report = store
        .write_batch(&[a.clone(), b.clone(), c, a, b])
        .await
        .expect("write");
    assert_eq!(
        report.outcomes,
        [
            WriteOutcome::Inserted,
            WriteOutcome::Inserted,
            WriteOutcome::Inserted,
            WriteOutcome::Duplicate,
            WriteOutcome::Duplicate
        ]
    );
}

/// A batch whose rows are partly stored already marks only the hours of its new rows: the
/// hours are marked after the insert, from the rows it reports inserted, so an hour that only
/// received duplicates keeps its marker's version. With 3-row statements two of the three
/// statements skip rows, so each skipped row goes through the check that it is stored.
#[tokio::test]
async fn a_partly_stored_batch_marks_only_the_hours_of_its_new_rows() {
    let db = TempDb::new("partly-stored");
    let store = db
        .open_with(SqliteStoreOptions {
            insert_chunk_rows: 3,
            ..SqliteStoreOptions::default()
        })
        .await;
    let h1 = now() - Duration::hours(5);
    let h2 = now() - Duration::hours(2);
    let old: Vec<Event> = (0..4)
        .map(|i| fixtures::api_request(h1 + Duration::seconds(i), "/a", 200, 1.0))
        .collect();
    store.write_batch(&old).await.expect("first");
    let before = store.dirty_hours(10).await.expect("dirty");
    assert_eq!(before.len(), 1);

    let mut batch = old.clone();
    let new: Vec<Event> = (0..4)
        .map(|i| fixtures::api_request(h2 + Duration::seconds(i), "/a", 200, 1.0))
        .collect();
    batch.splice(2..2, new.iter().cloned());
    let report = store.write_batch(&batch).await.expect("mixed");
    assert_eq!(report.inserted(), 4);
    assert_eq!(report.duplicates(), 4);
    let after = store.dirty_hours(10).await.expect("dirty");
    assert_eq!(after.len(), 2);
    assert_eq!(
        after[0], before[0],
        "the duplicates' hour keeps its version"
    );
    assert!(after[1].version > before[0].version);
    assert_eq!(store.event_count().await.expect("count"), 8);
}
