//! `PgStoreOptions`: the pool and behaviour knobs of a [`crate::PgStore`], with defaults that
//! suit one server replica. The library reads no environment; the binary fills this in.

use std::time::Duration;

/// Options of a [`crate::PgStore`].
#[derive(Debug, Clone, PartialEq)]
pub struct PgStoreOptions {
    /// Most pooled connections (the singleton-job lock uses one more, outside the pool).
    pub max_connections: u32,
    /// Connections kept open when idle.
    pub min_connections: u32,
    /// How long a call waits for a pooled connection (including connecting) before it fails
    /// with `Unavailable`.
    pub acquire_timeout: Duration,
    /// Idle connections are closed after this long.
    pub idle_timeout: Option<Duration>,
    /// Connections are replaced after this long.
    pub max_lifetime: Option<Duration>,
    /// Server-side limit per statement (`statement_timeout`); `None` keeps the server's.
    pub statement_timeout: Option<Duration>,
    /// How long partition DDL (create on write, drop on retention) waits for the events
    /// table's lock before failing with `Unavailable` instead of queueing every reader
    /// behind it.
    pub ddl_lock_timeout: Duration,
    /// Apply the embedded migrations on connect (idempotent; serialised by sqlx's
    /// migration lock when several replicas start together).
    pub run_migrations: bool,
    /// `application_name` of the connections, shown in `pg_stat_activity`.
    pub application_name: String,
    /// Rows per statement inside one `write_batch` transaction (larger batches are split
    /// into several statements, still committed together; a batch of at most this many
    /// rows is one statement and needs no explicit transaction).
    pub write_chunk_rows: usize,
    /// Rows per statement when retention deletes rows (rather than dropping partitions).
    pub delete_chunk_rows: usize,
}

impl Default for PgStoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 10,
            min_connections: 0,
            acquire_timeout: Duration::from_secs(5),
            idle_timeout: Some(Duration::from_secs(600)),
            max_lifetime: Some(Duration::from_secs(1800)),
            statement_timeout: Some(Duration::from_secs(60)),
            ddl_lock_timeout: Duration::from_secs(2),
            run_migrations: true,
            application_name: "analytics-store-pg".to_owned(),
            write_chunk_rows: 5_000,
            delete_chunk_rows: 10_000,
        }
    }
}
