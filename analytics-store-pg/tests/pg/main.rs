//! Integration tests of the PostgreSQL store against a real server (the cluster of
//! `scripts/with-services`); each test gets its own fresh database. Without
//! `TEST_DATABASE_URL` they skip (the conformance cases run on the in-memory store).

mod alert_step;
mod conformance;
mod health;
mod listing;
mod lock;
mod retention;
mod support;
mod writes;
