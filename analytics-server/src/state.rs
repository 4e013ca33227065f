//! The shared state of the HTTP layer: store, collector, auth settings, metrics, limits.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use analytics_core::health::{HealthThresholds, StoreOperation};
use analytics_core::ports::Store;
use analytics_core::rollup::raw_hours::RawHours;
use analytics_core::rollup::read::RollupReader;
use analytics_core::rollup::spec::RollupSpecs;
use analytics_core::{AnalyticsEventCollector, Clock, CollectorOptions, EventLimits, SystemClock};

use crate::age_limits::{AgeLimitCache, DEFAULT_AGE_LIMIT_TTL};
use crate::auth::{ApiKeyCache, JwtSettings};
use crate::metrics::Metrics;
use crate::realtime::PrometheusScrapeSource;
use crate::summary_cache::{DEFAULT_TTL as SUMMARY_TTL, SummaryCache};

/// How long a verified API key is trusted without asking the store again, by default.
pub const DEFAULT_API_KEY_TTL: Duration = Duration::from_secs(30);

/// A cache of what was read from the store recently, for `ttl` and at most 10,000 entries;
/// `None` (ask every time) for a zero `ttl`. The API-key and age-limit caches use it.
pub(crate) fn ttl_cache<K, V>(ttl: Duration) -> Option<moka::future::Cache<K, V>>
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    (!ttl.is_zero()).then(|| {
        moka::future::Cache::builder()
            .max_capacity(10_000)
            .time_to_live(ttl)
            .build()
    })
}

/// Request limits, checked by the middleware before a handler runs.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpLimits {
    /// Largest request body in bytes (1 MiB), enforced while reading (chunked bodies too).
    pub max_body_bytes: usize,
    /// Longest time reading a whole request body may take (30 s); 408 after it.
    pub body_read_timeout: Duration,
    /// Largest request target (path and query) in bytes (8 KiB); 414 over it.
    pub max_uri_bytes: usize,
    /// Largest total size of the request's header names and values in bytes (16 KiB);
    /// 431 over it.
    pub max_header_bytes: usize,
    /// Most request headers (100); 431 over it.
    pub max_headers: usize,
    /// Most events per ingest request (1000).
    pub max_events: usize,
    /// Per-event limits.
    pub events: EventLimits,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            body_read_timeout: Duration::from_secs(30),
            max_uri_bytes: 8 * 1024,
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            max_events: 1000,
            events: EventLimits::default(),
        }
    }
}

/// Connection limits of the listener (see `serve.rs`).
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionLimits {
    /// Most open connections (1024); more clients wait in the kernel's accept backlog.
    pub max_connections: usize,
    /// Longest wait for a complete request head, also between keep-alive requests (10 s).
    pub header_read_timeout: Duration,
    /// A connection with no request in flight on which no byte moved this long is closed
    /// (60 s; HTTP/2 connections included).
    pub idle_timeout: Duration,
    /// The middleware's header limit, so that hyper's own (answered without our error
    /// shape) is only reached far above it.
    pub max_header_bytes: usize,
    /// The middleware's header-count limit, likewise.
    pub max_headers: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        let http = HttpLimits::default();
        Self {
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_header_bytes: http.max_header_bytes + http.max_uri_bytes,
            max_headers: http.max_headers,
        }
    }
}

impl ConnectionLimits {
    /// hyper's buffer for a request head: four times ours, at least 64 KiB.
    pub(crate) fn hyper_max_buf_size(&self) -> usize {
        (self.max_header_bytes.saturating_mul(4)).max(64 * 1024)
    }

    /// hyper's header count limit: four times ours.
    pub(crate) fn hyper_max_headers(&self) -> usize {
        self.max_headers.saturating_mul(4).max(100)
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
    /// What the health endpoints need beyond the store.
    pub health: Arc<HealthContext>,
    /// Recently read age limits of projects (how old an ingested event may be).
    pub age_limits: AgeLimitCache,
    /// The dashboard summary's cache (in-process; Redis with [`Self::with_summary_cache`]).
    pub summary_cache: Arc<SummaryCache>,
    /// The ML price table and the business collections.
    pub analytics: Arc<AnalyticsSettings>,
    /// Which notification channels are enabled, and the dispatcher's counters.
    pub channels: Arc<crate::notify::ChannelReport>,
    /// Per-project ingest counters (`ingest-stats`, `/metrics`).
    pub ingest_stats: crate::ingest_stats::IngestStats,
    /// Ingest rate limits (in-process; Redis with [`Self::with_rate_limiter`]).
    pub rate_limiter: Arc<crate::rate_limit::IngestLimiter>,
    /// The key of the daily salt of pseudonymous user ids (see `docs/SERVER.md`).
    pub user_id_key: Arc<crate::sessions::UserIdKey>,
    /// Recent sessions derived per user (events without a `session_id`).
    pub sessions: Arc<crate::sessions::SessionTracker>,
    draining: Arc<AtomicBool>,
}

/// The health endpoints' settings and the process start.
#[derive(Debug)]
pub struct HealthContext {
    /// When this process started serving (for `uptime_seconds`).
    pub started: Instant,
    /// When `health/overview` says `degraded`.
    pub thresholds: HealthThresholds,
    /// The rollup specs the reader answers from.
    pub specs: Arc<RollupSpecs>,
    /// The live Prometheus view; `None`: `realtime.available = false`.
    pub realtime: Option<PrometheusScrapeSource>,
    /// Whole hours of raw events shared by every request's reader (the window edges and
    /// the open hour), checked against the store's hour versions on each read.
    pub raw_hours: Arc<RawHours>,
}

impl HealthContext {
    /// One request's reader over `store` ([`RollupReader::snapshot`]: it plans every read
    /// from one look at the watermarks), sharing this process's raw-hour cache.
    pub fn reader(&self, store: Arc<dyn Store>) -> RollupReader {
        RollupReader::with_raw_hours(store, self.specs.clone(), self.raw_hours.clone()).snapshot()
    }
}

/// What the ML and business endpoints need beyond the store.
#[derive(Debug, Clone, Default)]
pub struct AnalyticsSettings {
    /// Estimated USD per finished job of providers whose events carry no cost
    /// (`ANALYTICS_ML_PRICES`).
    pub prices: analytics_core::ml::PriceTable,
    /// The configured collections and their display names (`ANALYTICS_COLLECTIONS`).
    pub collections: analytics_core::business::Collections,
}

impl Default for HealthContext {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            thresholds: HealthThresholds::default(),
            specs: Arc::new(RollupSpecs::defaults()),
            realtime: None,
            raw_hours: Arc::new(RawHours::default()),
        }
    }
}

impl AppState {
    /// Builds the state and starts the collector's flusher (needs a tokio runtime).
    pub fn new(
        store: Arc<dyn Store>,
        jwt: JwtSettings,
        collector: CollectorOptions,
        limits: HttpLimits,
    ) -> Self {
        let timer = Arc::new(OnceLock::new());
        let sink: Arc<dyn analytics_core::ports::EventSink> = Arc::new(SinkAdapter {
            store: store.clone(),
            timer: timer.clone(),
        });
        let collector = Arc::new(AnalyticsEventCollector::start(sink, collector));
        let _ = timer.set(Arc::downgrade(&collector));
        let metrics = Metrics::new();
        let summary_cache = SummaryCache::new(SUMMARY_TTL, None, metrics.summary_cache_metrics())
            .expect("an in-process cache needs no URL");
        let rate_limiter =
            crate::rate_limit::IngestLimiter::new(None, metrics.rate_limit_metrics())
                .expect("an in-process limiter needs no URL");
        let ingest_stats = crate::ingest_stats::IngestStats::new(
            analytics_core::Clock::now(&analytics_core::SystemClock),
            metrics.project_ingest(),
        );
        Self {
            summary_cache: Arc::new(summary_cache),
            collector,
            health: Arc::new(HealthContext::default()),
            store,
            jwt: Arc::new(jwt),
            metrics,
            limits: Arc::new(limits),
            api_keys: ApiKeyCache::new(DEFAULT_API_KEY_TTL),
            age_limits: AgeLimitCache::new(DEFAULT_AGE_LIMIT_TTL),
            analytics: Arc::new(AnalyticsSettings::default()),
            channels: Arc::default(),
            ingest_stats,
            rate_limiter: Arc::new(rate_limiter),
            user_id_key: Arc::new(crate::sessions::UserIdKey::random()),
            sessions: Arc::new(crate::sessions::SessionTracker::default()),
            draining: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Shares the dashboard summary cache through Redis at `url` (entries live `ttl`).
    pub fn with_summary_cache(
        mut self,
        ttl: Duration,
        redis_url: Option<&str>,
    ) -> Result<Self, redis::RedisError> {
        self.summary_cache = Arc::new(SummaryCache::new(
            ttl,
            redis_url,
            self.metrics.summary_cache_metrics(),
        )?);
        Ok(self)
    }

    /// Shares the ingest rate limits through Redis at `url` (every replica one budget).
    pub fn with_rate_limiter(mut self, redis_url: Option<&str>) -> Result<Self, redis::RedisError> {
        self.rate_limiter = Arc::new(crate::rate_limit::IngestLimiter::new(
            redis_url,
            self.metrics.rate_limit_metrics(),
        )?);
        Ok(self)
    }

    /// Sets the key that pseudonymous user ids are derived with (replicas must share it).
    #[must_use]
    pub fn with_user_id_key(mut self, key: crate::sessions::UserIdKey) -> Self {
        self.user_id_key = Arc::new(key);
        self
    }

    /// Sets how long a verified API key is trusted without asking the store again (zero:
    /// ask every time).
    #[must_use]
    pub fn with_api_key_ttl(mut self, ttl: Duration) -> Self {
        self.api_keys = ApiKeyCache::new(ttl);
        self
    }

    /// Sets the ML price table and the business collections.
    #[must_use]
    pub fn with_analytics(mut self, analytics: AnalyticsSettings) -> Self {
        self.analytics = Arc::new(analytics);
        self
    }

    /// Runs a store read serving a request and records its timing (operation `read`).
    pub async fn timed_read<T>(
        &self,
        read: impl Future<Output = analytics_core::Result<T>>,
    ) -> analytics_core::Result<T> {
        let started = Instant::now();
        let out = read.await;
        self.record_store_call(StoreOperation::Read, started);
        out
    }

    /// Sets the health endpoints' context (thresholds, the Prometheus source).
    #[must_use]
    pub fn with_health(mut self, health: HealthContext) -> Self {
        self.health = Arc::new(health);
        self
    }

    /// Records a store call that started at `started` as a `store_call` event of the
    /// internal project (fire and forget: dropped when the ingest queue is full).
    pub fn record_store_call(&self, op: StoreOperation, started: Instant) {
        record_store_call(&self.collector, op, started);
    }

    /// Sets how long a project's age limit (its retention and seal) is trusted without
    /// asking the store again (zero: ask every time).
    #[must_use]
    pub fn with_age_limit_ttl(mut self, ttl: Duration) -> Self {
        self.age_limits = AgeLimitCache::new(ttl);
        self
    }

    /// Sets what `/readyz` and `/metrics` report about the notification channels.
    #[must_use]
    pub fn with_channels(mut self, channels: crate::notify::ChannelReport) -> Self {
        self.channels = Arc::new(channels);
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

/// Records one timed store call through the collector's fire-and-forget path.
pub fn record_store_call(
    collector: &AnalyticsEventCollector,
    op: StoreOperation,
    started: Instant,
) {
    let ms = started.elapsed().as_secs_f64() * 1e3;
    if let Err(e) = collector.record(op.event(ms, SystemClock.now())) {
        tracing::debug!(error = %e, operation = op.as_str(), "store-call timing dropped");
    }
}

/// Lets an `Arc<dyn Store>` serve as the collector's `Arc<dyn EventSink>`, timing each
/// write. Batches holding only the internal project's events (the timings themselves) are
/// not timed, so recording a timing never causes another one.
#[derive(Debug)]
struct SinkAdapter {
    store: Arc<dyn Store>,
    timer: Arc<OnceLock<Weak<AnalyticsEventCollector>>>,
}

#[async_trait::async_trait]
impl analytics_core::ports::EventSink for SinkAdapter {
    async fn write_batch(
        &self,
        events: &[analytics_core::Event],
    ) -> analytics_core::Result<analytics_core::ports::WriteReport> {
        let started = Instant::now();
        let result = self.store.write_batch(events).await;
        let application = events.iter().any(|e| !e.project.is_internal());
        if application
            && result.is_ok()
            && let Some(collector) = self.timer.get().and_then(Weak::upgrade)
        {
            record_store_call(&collector, StoreOperation::IngestWrite, started);
        }
        result
    }
}
