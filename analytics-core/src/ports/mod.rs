//! The ports: every trait through which core logic talks to the outside world, one module
//! each. All are object-safe and `Send + Sync`, usable as `Arc<dyn Port>`.

pub mod alert_config_store;
pub mod alert_history_store;
pub mod alert_rule;
pub mod event_sink;
pub mod event_store;
pub mod in_app_store;
pub mod job_store;
pub mod metrics_source;
pub mod notification_outbox;
pub mod notifier;
pub mod preference_store;
pub mod project_store;
pub mod rollup_store;
pub mod store;

pub use alert_config_store::AlertConfigStore;
pub use alert_history_store::{
    AlertFilter, AlertHistoryStore, AlertStepApplied, AlertStepCommit, AlertWrite, OpenOutcome,
    alert_cursor,
};
pub use alert_rule::{AlertRule, Evaluation, Observation};
pub use event_sink::{EventSink, WriteOutcome, WriteReport};
pub use event_store::{DirtyHour, EventFilter, EventStore};
pub use in_app_store::{InAppStore, in_app_cursor};
pub use job_store::{JobLease, JobStore};
pub use metrics_source::{MetricQuery, MetricsSource};
pub use notification_outbox::NotificationOutbox;
pub use notifier::Notifier;
pub use preference_store::PreferenceStore;
pub use project_store::ProjectStore;
pub use rollup_store::RollupStore;
pub use store::{PoolStats, Store};
