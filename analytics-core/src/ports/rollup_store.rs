//! `RollupStore`: idempotent upserts and range reads of rollup rows.

use async_trait::async_trait;

use crate::error::Result;
use crate::rollup::{Rollup, RollupQuery};

/// Rollup persistence.
///
/// Contract: `upsert_rollups` replaces the row with the same [`crate::rollup::RollupKey`]
/// (so running a job twice changes nothing) and is atomic per call; `query_rollups` returns
/// the selected rows ordered by `(bucket_start, metric, dimensions)`
/// ([`crate::rollup::sort_query_rows`]).
#[async_trait]
pub trait RollupStore: Send + Sync + std::fmt::Debug {
    /// Inserts or replaces rows; returns how many were written.
    async fn upsert_rollups(&self, rows: &[Rollup]) -> Result<u64>;

    /// Reads rows; see the trait's contract for the order.
    async fn query_rollups(&self, query: &RollupQuery) -> Result<Vec<Rollup>>;
}
