//! Migrations: applied on connect, and a no-op when run again (by a second connect or by
//! hand).

use analytics_store_sqlite::MIGRATOR;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

use crate::common::TempDb;

/// One plain connection to the file at `path`, outside the store.
async fn raw_pool(path: &std::path::Path, create: bool) -> sqlx::SqlitePool {
    SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(create),
        )
        .await
        .expect("pool")
}

async fn schema(pool: &sqlx::SqlitePool) -> (i64, Vec<(String, String)>) {
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(pool)
        .await
        .expect("count migrations");
    let objects: Vec<(String, String)> =
        sqlx::query_as("SELECT type, name FROM sqlite_master ORDER BY type, name")
            .fetch_all(pool)
            .await
            .expect("schema");
    (applied, objects)
}

#[tokio::test]
async fn migrations_run_twice_are_a_no_op() {
    let db = TempDb::new("migrate");
    let store = db.open().await;
    drop(store);
    let pool = raw_pool(&db.path, false).await;
    let before = schema(&pool).await;
    assert_eq!(before.0, MIGRATOR.iter().count() as i64);
    for table in [
        "analytics_events",
        "analytics_rollups",
        "rollup_dirty_hours",
        "alert_configs",
        "alert_config_audit",
        "alert_history",
        "alert_notifications",
        "notification_outbox",
        "notification_attempts",
        "in_app_notifications",
        "notification_preferences",
        "projects",
        "api_keys",
        "job_watermarks",
    ] {
        assert!(
            before.1.contains(&("table".to_owned(), table.to_owned())),
            "missing table {table}"
        );
    }

    MIGRATOR.run(&pool).await.expect("second run by hand");
    assert_eq!(schema(&pool).await, before);
    pool.close().await;

    // A second connect migrates again: nothing changes, data stays.
    let store = db.open().await;
    store.close().await;
    let pool = raw_pool(&db.path, false).await;
    assert_eq!(schema(&pool).await, before);
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&pool)
        .await
        .expect("journal mode");
    assert_eq!(mode, "wal");
    pool.close().await;
}

#[tokio::test]
async fn a_missing_file_is_created_only_when_allowed() {
    let db = TempDb::new("create");
    let refused = analytics_store_sqlite::SqliteStore::connect(
        db.url(),
        analytics_store_sqlite::SqliteStoreOptions {
            create_if_missing: false,
            ..Default::default()
        },
    )
    .await;
    assert!(
        matches!(refused, Err(analytics_core::Error::Unavailable(_))),
        "{refused:?}"
    );
    assert!(!db.path.exists());
    db.open().await.close().await;
    assert!(db.path.exists());
}

#[cfg(unix)]
#[tokio::test]
async fn a_new_database_file_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let db = TempDb::new("private");
    assert!(!db.path.exists());
    let store = db.open().await;
    let mode = |p: &std::path::Path| {
        std::fs::metadata(p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(&db.path), 0o600, "database file");
    let wal = std::path::PathBuf::from(format!("{}-wal", db.path.display()));
    if wal.exists() {
        assert_eq!(mode(&wal), 0o600, "wal file");
    }
    drop(store);
}

/// Migration 0003 on a store that holds events written before it: the indexed collection
/// column becomes the slug, and every hour with raw events is marked dirty (re-rolled with
/// the new specs).
#[tokio::test]
async fn migration_0003_rewrites_collections_and_marks_kept_hours_dirty() {
    use analytics_core::ports::{EventSink, EventStore};
    use analytics_core::testkit::fixtures::{event_at, t};
    use serde_json::json;

    let db = TempDb::new("migrate-0003");
    let store = db.open().await;
    let at = [t("2024-03-10T10:15:00Z"), t("2024-03-10T12:40:00Z")];
    let events: Vec<_> = at
        .iter()
        .map(|at| {
            event_at(
                json!({"kind": "product_view", "occurred_at": at.to_rfc3339(),
                       "payload": {"product_id": "p1", "collection": "black-rose"}}),
                *at,
            )
        })
        .collect();
    store.write_batch(&events).await.expect("write");
    let dirty = store.dirty_hours(10).await.expect("dirty");
    store.clear_dirty_hours(&dirty).await.expect("clear");
    store.close().await;

    let pool = raw_pool(&db.path, false).await;
    // As an older version stored it.
    sqlx::query("UPDATE analytics_events SET collection = 'Black_Rose'")
        .execute(&pool)
        .await
        .expect("old name");
    let sql = include_str!("../../migrations/0003_collection_slugs_and_reroll.sql");
    sqlx::raw_sql(sql)
        .execute(&pool)
        .await
        .expect("migration 0003");
    let collections: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT collection FROM analytics_events")
            .fetch_all(&pool)
            .await
            .expect("collections");
    assert_eq!(collections, ["black-rose"]);
    pool.close().await;

    let store = db.open().await;
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
    store.close().await;
}

#[tokio::test]
async fn migration_0012_drops_the_id_check_in_place_and_keeps_the_rows() {
    let db = TempDb::new("migrate-0012");
    let pool = raw_pool(&db.path, true).await;
    // The schema as it was before 0012, with one stored event.
    let before_0012 = sqlx::migrate::Migrator {
        migrations: std::borrow::Cow::Owned(
            MIGRATOR
                .iter()
                .filter(|m| m.version < 12)
                .cloned()
                .collect(),
        ),
        ..sqlx::migrate::Migrator::DEFAULT
    };
    before_0012
        .run(&pool)
        .await
        .expect("migrations before 0012");
    let table_sql = |pool: sqlx::SqlitePool| async move {
        let sql: String = sqlx::query_scalar(
            "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'analytics_events'",
        )
        .fetch_one(&pool)
        .await
        .expect("table sql");
        sql
    };
    assert!(
        table_sql(pool.clone())
            .await
            .contains("CHECK (length(id) = 16)")
    );
    sqlx::query(
        "INSERT INTO analytics_events (project, id, kind, occurred_at, received_at, \
         correlation_id, sample_rate, payload, properties) \
         VALUES ('shop', x'0102030405060708090a0b0c0d0e0f10', 'custom.x', 1, 1, 'c', 1.0, '{}', '{}')",
    )
    .execute(&pool)
    .await
    .expect("event before 0012");
    pool.close().await;

    // Opening the store applies 0012.
    let store = db.open().await;
    store.close().await;
    let pool = raw_pool(&db.path, false).await;
    let sql = table_sql(pool.clone()).await;
    assert!(!sql.contains("length(id)"), "{sql}");
    assert!(sql.contains("id             BLOB    NOT NULL,"), "{sql}");
    assert!(
        sql.contains("CHECK (sample_rate > 0 AND sample_rate <= 1)"),
        "other constraints stay: {sql}"
    );
    let check: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&pool)
        .await
        .expect("integrity check");
    assert_eq!(check, "ok");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM analytics_events")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(rows, 1);
    let bump: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sqlite_schema WHERE name = 'schema_version_bump_0012'",
    )
    .fetch_one(&pool)
    .await
    .expect("bump table");
    assert_eq!(bump, 0, "the table that bumped the schema version is gone");
    pool.close().await;
}
