//! Integration tests of `SqliteStore`: the store conformance suite on a database file and in
//! memory, plus what only a real SQLite file shows (idempotent re-sends, atomic batches,
//! durability across reopening, the cross-instance job lock, migrations, concurrent writers).

mod batches;
mod common;
mod concurrency;
mod conformance;
mod durability;
mod health;
mod locks;
mod migrations;
mod retention;
