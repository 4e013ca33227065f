//! Test support: a fresh database per test on the cluster `scripts/with-services` started,
//! and stores connected to it.

use std::time::Duration;

use analytics_core::memory::MemoryStore;
use analytics_core::ports::Store;
use analytics_core::testkit::services::{postgres_url, with_database};
use analytics_store_pg::admin::create_database;
use analytics_store_pg::{PgStore, PgStoreOptions};

/// Creates an empty database `t_<uuid>` and returns its URL; `None` when no cluster is
/// configured (a local run without services: the caller skips).
pub(crate) async fn fresh_database_url() -> Option<String> {
    let admin = postgres_url()?;
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    create_database(&admin, &name)
        .await
        .expect("create the test database");
    Some(with_database(&admin, &name))
}

/// Options for tests: a small pool (many tests run at once against one cluster).
pub(crate) fn test_options() -> PgStoreOptions {
    PgStoreOptions {
        max_connections: 4,
        acquire_timeout: Duration::from_secs(30),
        ..PgStoreOptions::default()
    }
}

/// A migrated store on a fresh database, or `None` without a cluster.
pub(crate) async fn fresh_pg_with(options: PgStoreOptions) -> Option<(PgStore, String)> {
    let url = fresh_database_url().await?;
    let store = PgStore::connect(&url, options)
        .await
        .expect("connect and migrate");
    Some((store, url))
}

/// A migrated store on a fresh database, or `None` without a cluster.
pub(crate) async fn fresh_pg() -> Option<PgStore> {
    fresh_pg_with(test_options()).await.map(|(s, _)| s)
}

/// For the conformance suite, whose macro needs a store every time: a `PgStore` on a fresh
/// database, or, when no cluster is configured (a local run without services), the
/// in-memory store so the case still runs and says so. Under CI a missing cluster panics
/// in `postgres_url()` instead.
pub(crate) async fn fresh() -> Box<dyn Store> {
    match fresh_pg().await {
        Some(store) => Box::new(store),
        None => {
            eprintln!("no PostgreSQL configured: running this case against MemoryStore");
            Box::new(MemoryStore::new())
        }
    }
}
