//! Retention in batches: every old event goes, in as many short transactions as it takes,
//! and nothing newer is touched.

use analytics_core::ports::{EventSink, EventStore};
use analytics_core::testkit::fixtures::{self, now, project};
use analytics_store_sqlite::SqliteStoreOptions;
use chrono::Duration;

use crate::common::TempDb;

#[tokio::test]
async fn retention_deletes_across_many_batches() {
    let db = TempDb::new("retention");
    let store = db
        .open_with(SqliteStoreOptions {
            retention_batch_rows: 100,
            ..SqliteStoreOptions::default()
        })
        .await;
    let cutoff = now() - Duration::days(7);
    let mut batch: Vec<_> = (0..1050)
        .map(|i| fixtures::api_request(cutoff - Duration::minutes(i + 1), "/old", 200, 1.0))
        .collect();
    batch.extend(
        (0..10).map(|i| fixtures::api_request(cutoff + Duration::minutes(i), "/new", 200, 1.0)),
    );
    let mut other = fixtures::api_request(cutoff - Duration::days(1), "/old", 200, 1.0);
    other.project = project("other");
    batch.push(other);
    store.write_batch(&batch).await.expect("write");

    let deleted = store
        .delete_events_before(Some(&project("shop")), cutoff)
        .await
        .expect("retention");
    assert_eq!(deleted, 1050);
    assert_eq!(store.event_count().await.expect("count"), 11);
    assert_eq!(
        store.delete_events_before(None, cutoff).await.expect("all"),
        1
    );
    assert_eq!(store.event_count().await.expect("count"), 10);
}
