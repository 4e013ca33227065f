//! The embedded default store: every store port of `analytics-core` (`EventSink`,
//! `EventStore`, `RollupStore`, alert configs and history, the notification outbox, in-app
//! notifications, preferences, projects and API keys, job watermarks and the singleton-job
//! lock) on one SQLite database file, so the server runs on a fresh machine with nothing
//! installed. [`SqliteStore`] passes the same conformance suite as the in-memory and
//! PostgreSQL stores.
//!
//! It does not compute anything: rollup math, alert evaluation and scheduling live in
//! `analytics-core`; this crate only stores and reads back. It reads no configuration from
//! the environment (callers pass [`SqliteStoreOptions`]), never lets a `sqlx::Error` cross a
//! port (`src/error.rs` holds the mapping), and is not meant for several server
//! replicas: that is the PostgreSQL store's job. Layout, durability settings, indexes and
//! measured figures are in `docs/stores/sqlite.md`.

mod alerts;
#[cfg(feature = "bench-baseline")]
pub mod baseline;
mod checkpoint;
mod codec;
mod error;
mod events;
mod jobs;
mod notifications;
mod options;
#[cfg(test)]
mod plans;
mod projects;
mod rollups;
mod sql;
mod store;
mod wal_sync;

pub use options::{SqliteStoreOptions, Synchronous};
pub use store::{MIGRATOR, SqliteStore};
