//! The store conformance suite from `analytics-core`, run on a fresh database file per case
//! and on a fresh in-memory database per case.

mod file {
    use analytics_core::ports::Store;

    /// A store on a new temporary file. The file is left behind for inspection; the next run
    /// sweeps files older than an hour.
    async fn fresh() -> Box<dyn Store> {
        Box::new(crate::common::open(&crate::common::temp_db_path("conformance")).await)
    }

    analytics_core::store_conformance_tests!(fresh);
}

mod memory {
    use analytics_core::ports::Store;
    use analytics_store_sqlite::{SqliteStore, SqliteStoreOptions};

    async fn fresh() -> Box<dyn Store> {
        Box::new(
            SqliteStore::connect("sqlite::memory:", SqliteStoreOptions::default())
                .await
                .expect("open in-memory store"),
        )
    }

    analytics_core::store_conformance_tests!(fresh);
}
