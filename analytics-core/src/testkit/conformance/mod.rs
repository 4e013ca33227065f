//! The store conformance suite: each port's contract stated once as tests, run against every
//! store implementation (memory, SQLite, PostgreSQL) through [`crate::store_conformance_tests`].
//!
//! Every case takes a fresh, empty store and asserts behaviour a wrong store would fail:
//! duplicates counted as inserted, a page that skips or repeats, an acknowledged alert still
//! listed as active, a lease that hands one entry to two claimers.

mod alerts;
mod analytics;
mod events;
mod jobs;
mod notifications;
mod projects;
mod rollups;

pub use alerts::*;
pub use analytics::*;
pub use events::*;
pub use jobs::*;
pub use notifications::*;
pub use projects::*;
pub use rollups::*;
