//! The singleton-job lock across two `SqliteStore` instances on one file, as two server
//! processes would hold them: exactly one holder, freed by dropping the lease.

use analytics_core::ports::JobStore;
use analytics_store_sqlite::{SqliteStore, SqliteStoreOptions};

use crate::common::TempDb;

#[tokio::test]
async fn two_instances_on_one_file_contend_for_the_lock() {
    let db = TempDb::new("locks");
    let a = db.open().await;
    let b = db.open().await;

    let lease = a
        .try_lock("scheduler")
        .await
        .expect("lock")
        .expect("granted");
    assert!(
        b.try_lock("scheduler").await.expect("lock").is_none(),
        "b must not get it"
    );
    assert!(
        a.try_lock("scheduler").await.expect("lock").is_none(),
        "nor a again"
    );
    assert!(
        a.clone()
            .try_lock("scheduler")
            .await
            .expect("lock")
            .is_none(),
        "nor a clone of a"
    );
    let lock_file = format!("{}.scheduler.lock", db.path.display());
    assert!(
        std::path::Path::new(&lock_file).exists(),
        "the sidecar lock file"
    );

    // Other names are independent, in either instance.
    let alerts = b.try_lock("alerts").await.expect("lock").expect("granted");
    assert!(a.try_lock("alerts").await.expect("lock").is_none());

    drop(lease);
    let lease_b = b
        .try_lock("scheduler")
        .await
        .expect("lock")
        .expect("freed by dropping");
    assert!(a.try_lock("scheduler").await.expect("lock").is_none());
    drop(lease_b);
    drop(alerts);
    assert!(a.try_lock("scheduler").await.expect("lock").is_some());
}

#[tokio::test]
async fn a_lock_held_by_a_closed_instance_is_free() {
    let db = TempDb::new("locks-closed");
    let a = db.open().await;
    let lease = a.try_lock("alerts").await.expect("lock").expect("granted");
    // The holder goes away (its process would die): the OS lock goes with the file handle.
    drop(lease);
    drop(a);
    let b = db.open().await;
    assert!(b.try_lock("alerts").await.expect("lock").is_some());
}

#[tokio::test]
async fn in_memory_stores_lock_within_the_store() {
    let a = SqliteStore::connect("sqlite::memory:", SqliteStoreOptions::default())
        .await
        .expect("open");
    let b = SqliteStore::connect("sqlite::memory:", SqliteStoreOptions::default())
        .await
        .expect("open");
    let lease = a
        .try_lock("scheduler")
        .await
        .expect("lock")
        .expect("granted");
    assert!(a.try_lock("scheduler").await.expect("lock").is_none());
    assert!(
        b.try_lock("scheduler").await.expect("lock").is_some(),
        "separate in-memory databases share nothing"
    );
    drop(lease);
    assert!(a.try_lock("scheduler").await.expect("lock").is_some());
}
