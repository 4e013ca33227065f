//! The HTTP server of the analytics backend: poem + poem-openapi endpoints for event
//! ingest and listing, authentication (JWT and project API keys), Prometheus metrics,
//! startup and graceful shutdown, the command line, and the built-in console (embedded
//! HTML, CSS and JavaScript over the same JSON API).
//!
//! It owns no domain logic: validation, the collector, rollups and storage come from
//! `analytics-core` and the store crates. It is the only crate that reads configuration.

pub mod age_limits;
pub mod alerting;
pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod console;
pub mod demo;
pub mod embed;
pub mod error;
pub mod ingest_stats;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod rate_limit;
pub mod realtime;
pub mod redis_link;
mod serve;
pub mod sessions;
pub mod startup;
pub mod state;
pub mod summary_cache;
mod workers;

pub use api::build_app;
pub use auth::{Claims, Identity, JwtSettings, Role, Secret};
pub use error::ApiError;
pub use startup::{Application, BackgroundJobs, Settings, ShutdownHandle, connect_store};
pub use state::{AppState, ConnectionLimits, HttpLimits};
