//! `Store`: every store port in one bundle, for wiring convenience.

use async_trait::async_trait;

use crate::error::Result;
use crate::ports::{
    AlertConfigStore, AlertHistoryStore, EventSink, EventStore, InAppStore, JobStore,
    NotificationOutbox, PreferenceStore, ProjectStore, RollupStore,
};

/// A complete store: the in-memory, SQLite and PostgreSQL stores implement it, and the
/// conformance suite runs against it.
#[async_trait]
pub trait Store:
    EventSink
    + EventStore
    + RollupStore
    + AlertConfigStore
    + AlertHistoryStore
    + NotificationOutbox
    + InAppStore
    + PreferenceStore
    + ProjectStore
    + JobStore
{
    /// A cheap round trip proving the store is reachable and migrated (for readiness).
    async fn ping(&self) -> Result<()>;

    /// The technology, for logs and `/readyz` (`memory`, `sqlite`, `postgres`).
    fn backend(&self) -> &'static str;

    /// How many `write_batch` calls are worth running at once: more than one only where
    /// the database can work on several (the collector's `writers`). One by default, for
    /// stores whose writes serialize anyway.
    fn write_concurrency(&self) -> usize {
        1
    }

    /// The connection pools behind the store, for metrics; none for a store without pools.
    fn pool_stats(&self) -> Vec<PoolStats> {
        Vec::new()
    }
}

/// A snapshot of one connection pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Which pool (`main`, `reader`, `writer`).
    pub pool: &'static str,
    /// Open connections, idle or in use.
    pub open: u32,
    /// Idle open connections.
    pub idle: u32,
    /// Most connections the pool opens.
    pub max: u32,
}
