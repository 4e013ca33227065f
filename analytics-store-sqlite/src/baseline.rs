//! The baseline the benchmarks measure writes against (feature `bench-baseline`): the same
//! rows, encoded the same way, written with prepared multi-row `INSERT`s into a table that
//! has only its primary key (no dedup key, no secondary indexes, no dirty-hour markers), one
//! transaction per batch, on a connection with the store's own pragmas. It is what SQLite can
//! take at best for these rows, not a way to store events.

use analytics_core::{Event, Result};

use crate::codec::{MAX_BIND_PARAMS, chunk_sizes, value_rows};
use crate::error::DbResultExt;
use crate::events::{EVENT_COLUMNS, INSERT_COLUMNS, Interner, encode};
use crate::{SqliteStore, SqliteStoreOptions};

/// A database file with the baseline table `bench_baseline_events`.
#[derive(Debug, Clone)]
pub struct RawInsert {
    store: SqliteStore,
}

impl RawInsert {
    /// Opens (creating it) the database at `path` with `options`, as the store would, and
    /// creates the baseline table beside the store's (empty) schema.
    pub async fn create(path: &str, options: SqliteStoreOptions) -> Result<Self> {
        let store = SqliteStore::connect(path, options).await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS bench_baseline_events (
                seq INTEGER PRIMARY KEY, project TEXT NOT NULL, id BLOB NOT NULL,
                kind TEXT NOT NULL, occurred_at INTEGER NOT NULL, received_at INTEGER NOT NULL,
                correlation_id TEXT NOT NULL, user_id TEXT, session_id TEXT, source TEXT,
                sample_rate REAL NOT NULL, provider TEXT, route TEXT, collection TEXT,
                status TEXT, payload TEXT NOT NULL, properties TEXT NOT NULL)",
        )
        .execute(&store.inner.writer)
        .await
        .db("create baseline table")?;
        Ok(Self { store })
    }

    /// Inserts `events` in one transaction, in statements of the store's
    /// `insert_chunk_rows` rows.
    pub async fn write(&self, events: &[Event]) -> Result<()> {
        let mut interner = Interner::default();
        let rows = events
            .iter()
            .map(|e| encode(e, &mut interner))
            .collect::<Result<Vec<_>>>()?;
        let max = self
            .store
            .inner
            .options
            .insert_chunk_rows
            .clamp(1, MAX_BIND_PARAMS / EVENT_COLUMNS);
        let mut tx = self.store.begin_write("baseline batch").await?;
        let mut rows = rows.into_iter();
        for size in chunk_sizes(events.len(), max) {
            let sql = format!(
                "INSERT INTO bench_baseline_events ({INSERT_COLUMNS}) VALUES {}",
                value_rows(size, EVENT_COLUMNS)
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for r in rows.by_ref().take(size) {
                q = r.bind(q);
            }
            q.execute(&mut *tx).await.db("baseline batch")?;
        }
        self.store.commit(tx, "commit baseline batch").await?;
        Ok(())
    }

    /// Rows in the baseline table.
    pub async fn count(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM bench_baseline_events")
            .fetch_one(self.store.reader())
            .await
            .db("count baseline rows")?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Closes the database.
    pub async fn close(&self) {
        self.store.close().await;
    }
}
