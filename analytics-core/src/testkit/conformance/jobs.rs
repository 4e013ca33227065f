//! Contracts of `JobStore` and `Store::ping`.

use chrono::Duration;

use crate::ports::Store;
use crate::testkit::fixtures::now;

/// Watermarks are per job and overwritten.
pub async fn watermarks_round_trip(store: &dyn Store) {
    assert_eq!(store.watermark("rollup.hour").await.expect("none"), None);
    store
        .set_watermark("rollup.hour", now())
        .await
        .expect("set");
    store
        .set_watermark("rollup.day", now() - Duration::days(1))
        .await
        .expect("set");
    assert_eq!(
        store.watermark("rollup.hour").await.expect("get"),
        Some(now())
    );
    let later = now() + Duration::hours(1);
    store
        .set_watermark("rollup.hour", later)
        .await
        .expect("overwrite");
    assert_eq!(
        store.watermark("rollup.hour").await.expect("get"),
        Some(later)
    );
    assert_eq!(
        store.watermark("rollup.day").await.expect("get"),
        Some(now() - Duration::days(1))
    );
}

/// A lock has one holder; dropping the lease frees it; names are independent.
pub async fn job_locks_are_exclusive_until_dropped(store: &dyn Store) {
    let lease = store
        .try_lock("scheduler")
        .await
        .expect("lock")
        .expect("granted");
    assert_eq!(lease.name(), "scheduler");
    assert!(
        store.try_lock("scheduler").await.expect("lock").is_none(),
        "a held lock is not granted twice"
    );
    let other = store.try_lock("alerts").await.expect("lock");
    assert!(other.is_some(), "locks are independent");
    drop(lease);
    // Release may be asynchronous in a store; allow it a moment.
    let mut regained = None;
    for _ in 0..50 {
        regained = store.try_lock("scheduler").await.expect("lock");
        if regained.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(regained.is_some(), "dropping the lease releases the lock");
}

/// The store answers a ping and names its backend.
pub async fn ping_answers(store: &dyn Store) {
    store.ping().await.expect("ping");
    assert!(["memory", "sqlite", "postgres"].contains(&store.backend()));
}
