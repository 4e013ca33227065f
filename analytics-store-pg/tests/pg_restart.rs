//! PostgreSQL stopped and started under a live store: writes fail with `Unavailable` while
//! it is down and succeed again afterwards on the same store (the pool reconnects).
//!
//! This stops the shared test cluster, so it is a test binary of its own with a single
//! test: cargo runs test binaries one after another, never two at once.

#[allow(dead_code)]
#[path = "pg/support.rs"]
mod support;

use std::time::Duration;

use analytics_core::Event;
use analytics_core::error::Error;
use analytics_core::ports::{EventSink, WriteOutcome};
use analytics_core::testkit::fixtures;
use analytics_core::testkit::services::StoppedPostgres;
use analytics_store_pg::{PgStore, PgStoreOptions};

fn batch(n: usize, minute: i64) -> Vec<Event> {
    (0..n)
        .map(|i| {
            fixtures::api_request(
                fixtures::now()
                    + chrono::Duration::minutes(minute)
                    + chrono::Duration::seconds(i as i64),
                "/restart",
                200,
                1.0,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_fail_unavailable_while_postgres_is_down_and_recover_on_the_same_store() {
    let Some(url) = support::fresh_database_url().await else {
        return;
    };
    let options = PgStoreOptions {
        max_connections: 2,
        acquire_timeout: Duration::from_secs(2),
        ..PgStoreOptions::default()
    };
    let store = PgStore::connect(&url, options).await.expect("connect");
    let (b1, b2, b3) = (batch(50, 0), batch(50, 1), batch(50, 2));

    assert_eq!(
        store.write_batch(&b1).await.expect("batch 1").inserted(),
        50
    );

    let Some(mut server) = StoppedPostgres::stop() else {
        return;
    };
    let started = std::time::Instant::now();
    let down = store.write_batch(&b2).await;
    assert!(
        matches!(down, Err(Error::Unavailable(_))),
        "a write while the server is down must fail as Unavailable, got {down:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the failure comes within the acquire timeout, took {:?}",
        started.elapsed()
    );
    server.start();

    let b3_report = store.write_batch(&b3).await.expect("batch 3 after restart");
    assert_eq!(b3_report.inserted(), 50);
    let b2_report = store.write_batch(&b2).await.expect("batch 2 re-sent");
    assert_eq!(
        b2_report.outcomes,
        vec![WriteOutcome::Inserted; 50],
        "nothing of the failed batch was committed"
    );
    let b1_report = store.write_batch(&b1).await.expect("batch 1 re-sent");
    assert_eq!(b1_report.outcomes, vec![WriteOutcome::Duplicate; 50]);
}
