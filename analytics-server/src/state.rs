//! The shared state of the HTTP layer: store, collector, auth settings, metrics, limits.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use analytics_core::ports::Store;
use analytics_core::{AnalyticsEventCollector, CollectorOptions, EventLimits};

use crate::age_limits::{AgeLimitCache, DEFAULT_AGE_LIMIT_TTL};
use crate::auth::{ApiKeyCache, JwtSettings};
use crate::metrics::Metrics;

/// How long a verified API key is trusted without asking the store again, by default.
pub const DEFAULT_API_KEY_TTL: Duration = Duration::from_secs(30);

/// Request limits of the ingest endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpLimits {
    /// Largest request body in bytes (1 MiB), enforced while reading (chunked bodies too).
    pub max_body_bytes: usize,
    /// Most events per ingest request (1000).
    pub max_events: usize,
    /// Per-event limits.
    pub events: EventLimits,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            max_events: 1000,
            events: EventLimits::default(),
        }
    }
}

/// Everything a handler needs; cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The group-committing collector in front of the store.
    pub collector: Arc<AnalyticsEventCollector>,
    /// JWT verification.
    pub jwt: Arc<JwtSettings>,
    /// Metrics registry.
    pub metrics: Metrics,
    /// Limits.
    pub limits: Arc<HttpLimits>,
    /// Recently verified API keys.
    pub api_keys: ApiKeyCache,
    /// Recently read age limits of projects (how old an ingested event may be).
    pub age_limits: AgeLimitCache,
    draining: Arc<AtomicBool>,
}

impl AppState {
    /// Builds the state and starts the collector's flusher (needs a tokio runtime).
    pub fn new(
        store: Arc<dyn Store>,
        jwt: JwtSettings,
        collector: CollectorOptions,
        limits: HttpLimits,
    ) -> Self {
        let sink: Arc<dyn analytics_core::ports::EventSink> = Arc::new(SinkAdapter(store.clone()));
        Self {
            collector: Arc::new(AnalyticsEventCollector::start(sink, collector)),
            store,
            jwt: Arc::new(jwt),
            metrics: Metrics::new(),
            limits: Arc::new(limits),
            api_keys: ApiKeyCache::new(DEFAULT_API_KEY_TTL),
            age_limits: AgeLimitCache::new(DEFAULT_AGE_LIMIT_TTL),
            draining: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Sets how long a verified API key is trusted without asking the store again (zero:
    /// ask every time).
    #[must_use]
    pub fn with_api_key_ttl(mut self, ttl: Duration) -> Self {
        self.api_keys = ApiKeyCache::new(ttl);
        self
    }

    /// Sets how long a project's age limit (its retention and seal) is trusted without
    /// asking the store again (zero: ask every time).
    #[must_use]
    pub fn with_age_limit_ttl(mut self, ttl: Duration) -> Self {
        self.age_limits = AgeLimitCache::new(ttl);
        self
    }

    /// Whether the server is shutting down (readiness answers 503).
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Marks the server as shutting down.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.metrics.set_draining(true);
    }
}

/// Lets an `Arc<dyn Store>` serve as the collector's `Arc<dyn EventSink>`.
#[derive(Debug)]
struct SinkAdapter(Arc<dyn Store>);

#[async_trait::async_trait]
impl analytics_core::ports::EventSink for SinkAdapter {
    async fn write_batch(
        &self,
        events: &[analytics_core::Event],
    ) -> analytics_core::Result<analytics_core::ports::WriteReport> {
        self.0.write_batch(events).await
    }
}
