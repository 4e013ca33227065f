//! The core of the analytics backend: the domain model (events, rollups, alerts,
//! notifications, projects), the ports through which it reaches storage and the outside
//! world, the pure rollup and alert logic, and an in-memory implementation of every store
//! port.
//!
//! It does no network or database I/O and never reads the wall clock: time arrives as an
//! argument or through the [`Clock`] port. Adapters live in sibling crates named after their
//! technology (`analytics-store-pg`, `analytics-store-sqlite`, `analytics-notify`).
//!
//! With the `testkit` feature it also exports the store conformance suite
//! ([`testkit::conformance`]) that every store implementation runs.

pub mod alert;
pub mod business;
pub mod clock;
pub mod collector;
pub mod error;
pub mod event;
pub mod funnel;
pub mod health;
pub mod ids;
pub mod memory;
pub mod ml;
pub mod notification;
pub mod page;
pub mod ports;
pub mod project;
pub mod rollup;
pub mod sampling;
pub mod session;
pub mod time;

#[cfg(feature = "testkit")]
pub mod testkit;

pub use clock::{Clock, ManualClock, SystemClock};
pub use collector::{AnalyticsEventCollector, CollectorError, CollectorOptions, CollectorStats};
pub use error::{Error, FieldError, Result, ValidationErrors};
pub use event::{
    AgeLimit, AgeLimits, Event, EventInput, EventKind, EventLimits, IngestContext, Payload,
};
pub use ids::{
    CorrelationId, EmailAddress, EventId, MetricName, PhoneNumber, ProjectId, Quantile, Threshold,
    UserId, WebhookUrl,
};
pub use page::{Cursor, Page, PageRequest};
pub use time::{Bucket, Comparison, Granularity, RangePreset, TimeRange, Window};
