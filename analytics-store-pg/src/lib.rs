//! The PostgreSQL store: [`PgStore`] implements every store port of `analytics-core`
//! (events, rollups, alert configs and history, the notification outbox, in-app
//! notifications, preferences, projects and API keys, job watermarks and the singleton-job
//! lock) on one sqlx connection pool, with its schema in embedded migrations that
//! [`PgStore::connect`] applies. Raw events are partitioned by UTC day so retention drops
//! whole partitions; writes are idempotent on `(project, event id)` across partitions.
//!
//! It does not decide anything: no rollup math, no alert logic, no scheduling, no
//! configuration reading (callers pass [`PgStoreOptions`]), and no driver type crosses its
//! API: every `sqlx::Error` becomes an [`analytics_core::Error`] in one module (`error.rs`).
//! Design notes and measurements are in `docs/stores/postgres.md`.

pub mod admin;
mod alerts;
#[cfg(feature = "bench-baseline")]
pub mod baseline;
mod error;
mod events;
mod jobs;
mod notifications;
mod options;
mod projects;
mod rollups;
mod sql;

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use analytics_core::error::{Error, Result};
use analytics_core::ports::{PoolStats, Store};
use async_trait::async_trait;
use chrono::NaiveDate;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

pub use options::PgStoreOptions;

/// The embedded schema migrations (`analytics-store-pg/migrations`).
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Every store port on PostgreSQL. Cheap to clone: clones share the pool.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    options: PgStoreOptions,
    /// Days whose event partition this process has seen attached (a cache: a miss costs
    /// one catalog query, a stale hit is detected on insert and corrected).
    partitions: Mutex<HashSet<NaiveDate>>,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The connect options hold the password: never print them.
        let connect = self.inner.pool.connect_options();
        f.debug_struct("PgStore")
            .field("host", &connect.get_host())
            .field("port", &connect.get_port())
            .field("database", &connect.get_database())
            .field("pool_size", &self.inner.pool.size())
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects a pool to `url` (`postgres://user:pass@host:port/db?...`), checks that the
    /// server answers, and applies the migrations (unless `options.run_migrations` is off).
    /// Running it again, or from several processes at once, applies nothing twice.
    ///
    /// Fails with `Invalid` for a malformed URL, `Unavailable` when the server cannot be
    /// reached within `options.acquire_timeout`.
    pub async fn connect(url: &str, options: PgStoreOptions) -> Result<Self> {
        let connect = PgConnectOptions::from_str(url)
            .map_err(|e| Error::invalid("database_url", format!("is not a postgres url: {e}")))?;
        Self::connect_with(connect, options).await
    }

    /// Like [`PgStore::connect`], from parsed connect options.
    pub async fn connect_with(connect: PgConnectOptions, options: PgStoreOptions) -> Result<Self> {
        let mut server_options: Vec<(&str, String)> = Vec::new();
        if let Some(t) = options.statement_timeout {
            server_options.push(("statement_timeout", format!("{}ms", t.as_millis())));
        }
        let connect = connect
            .application_name(&options.application_name)
            .options(server_options);
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .min_connections(options.min_connections)
            .acquire_timeout(options.acquire_timeout)
            .idle_timeout(options.idle_timeout)
            .max_lifetime(options.max_lifetime)
            // A connection that died with a server restart is noticed and replaced here,
            // not handed to a caller.
            .test_before_acquire(true)
            .connect_with(connect)
            .await
            .map_err(error::pg_error)?;
        Self::with_pool(pool, options).await
    }

    /// Wraps an existing pool (an embedder that shares its pool), applying the migrations
    /// unless `options.run_migrations` is off. The pool settings in `options` are ignored.
    pub async fn with_pool(pool: PgPool, options: PgStoreOptions) -> Result<Self> {
        if options.run_migrations {
            MIGRATOR.run(&pool).await.map_err(|e| match e {
                sqlx::migrate::MigrateError::Execute(e) => error::pg_error(e),
                other => Error::Internal(format!("migration failed: {other}")),
            })?;
        }
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                options,
                partitions: Mutex::new(HashSet::new()),
            }),
        })
    }

    /// The pool, for queries outside the ports (dashboards, benchmarks).
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The options the store was built with.
    pub fn options(&self) -> &PgStoreOptions {
        &self.inner.options
    }

    /// Closes the pool; later calls fail with `Unavailable`.
    pub async fn close(&self) {
        self.inner.pool.close().await;
    }

    fn pool_ref(&self) -> &PgPool {
        &self.inner.pool
    }
}

#[async_trait]
impl Store for PgStore {
    async fn ping(&self) -> Result<()> {
        // Proves the server answers and the schema is there.
        sqlx::query("SELECT 1 FROM job_watermarks LIMIT 1")
            .fetch_optional(self.pool_ref())
            .await
            .map_err(error::pg_error)?;
        Ok(())
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn write_concurrency(&self) -> usize {
        // Concurrent writes let PostgreSQL use more cores (measured: 4 writers beat 1, 2
        // and 8 on 2 cores, docs/PERFORMANCE.md); keep half the pool for readers.
        (self.pool_ref().options().get_max_connections() as usize / 2).clamp(1, 4)
    }

    fn pool_stats(&self) -> Vec<PoolStats> {
        vec![pool_stats("main", self.pool_ref())]
    }
}

fn pool_stats(name: &'static str, pool: &PgPool) -> PoolStats {
    PoolStats {
        pool: name,
        open: pool.size(),
        idle: u32::try_from(pool.num_idle()).unwrap_or(u32::MAX),
        max: pool.options().get_max_connections(),
    }
}
