//! `EventSink`: durable, idempotent writes of validated events.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::event::Event;

/// What happened to one event of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WriteOutcome {
    /// Stored now.
    Inserted,
    /// An event with the same `(project, id)` was already stored (or appeared earlier in
    /// the same batch); nothing was written for it.
    Duplicate,
}

/// The per-event outcomes of a batch, in the batch's order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteReport {
    /// One entry per input event.
    pub outcomes: Vec<WriteOutcome>,
}

impl WriteReport {
    /// Events stored now.
    pub fn inserted(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| **o == WriteOutcome::Inserted)
            .count()
    }

    /// Events that were already stored.
    pub fn duplicates(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| **o == WriteOutcome::Duplicate)
            .count()
    }
}

/// Durable event storage.
///
/// Contract (checked by the conformance suite):
/// - `write_batch` is atomic: on `Ok` every event is durably stored (or was already); on
///   `Err` nothing of the batch is.
/// - It is idempotent on `(project, id)`: a re-sent event is reported `Duplicate` and stored
///   once, also when repeated within one batch (the first occurrence wins).
/// - Each inserted event marks its `(project, hour)` bucket dirty for the rollup scheduler
///   (see [`crate::ports::EventStore::dirty_hours`]) in the same transaction.
#[async_trait]
pub trait EventSink: Send + Sync + std::fmt::Debug {
    /// Stores a batch; see the trait's contract.
    async fn write_batch(&self, events: &[Event]) -> Result<WriteReport>;
}
