//! Prometheus metrics of the server: HTTP requests by route template and status, the
//! collector's ingest counters, the store's reachability and its connection pools, and the
//! process's own `process_*` metrics (CPU, memory, file descriptors; on Linux).
//!
//! Conventions: a counter's name ends in `_total`; a name carries its unit (`_seconds`,
//! `_bytes`) or what it counts (`_events`, `_connections`); one metric never mixes counters
//! and gauges under a label.

use crate::summary_cache::CacheMetrics;
use analytics_core::CollectorStats;
use analytics_core::ports::PoolStats;
use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

/// The `method` label of a request: the standard methods by name, anything else `other`, so
/// that clients cannot grow the label set.
pub fn method_label(method: &poem::http::Method) -> &'static str {
    use poem::http::Method as M;
    match *method {
        M::GET => "GET",
        M::HEAD => "HEAD",
        M::POST => "POST",
        M::PUT => "PUT",
        M::PATCH => "PATCH",
        M::DELETE => "DELETE",
        M::OPTIONS => "OPTIONS",
        M::TRACE => "TRACE",
        M::CONNECT => "CONNECT",
        _ => "other",
    }
}

/// The server's metrics registry.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    ingest: IngestMetrics,
    store_up: IntGaugeVec,
    pool: IntGaugeVec,
    draining: IntGauge,
    summary_redis_up: IntGauge,
    summary_redis_errors: IntCounter,
    summary_computations: IntCounter,
    channel_enabled: IntGaugeVec,
    notifications: IntCounterVec,
    raw_hours_lookups: IntCounterVec,
    raw_hours_events: IntGauge,
    project_ingest: IntCounterVec,
    rate_limit_redis_up: IntGauge,
    rate_limit_redis_errors: IntCounter,
    rate_limit_decisions: IntCounterVec,
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests served"),
            &["method", "route", "status"],
        )
        .expect("valid metric");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency in seconds",
            ),
            &["method", "route", "status"],
        )
        .expect("valid metric");
        let ingest = IngestMetrics::new();
        let store_up = IntGaugeVec::new(
            Opts::new(
                "analytics_store_up",
                "1 when the store answered the last ping",
            ),
            &["backend"],
        )
        .expect("valid metric");
        let pool = IntGaugeVec::new(
            Opts::new(
                "analytics_db_pool_connections",
                "Database pool connections by pool and state (open, idle, max)",
            ),
            &["pool", "state"],
        )
        .expect("valid metric");
        let draining =
            IntGauge::new("analytics_draining", "1 while shutting down").expect("valid metric");
        let summary_redis_up = IntGauge::new(
            "analytics_dashboard_cache_redis_up",
            "1 while the dashboard summary cache is shared through Redis; 0 while it caches \
             in-process only (no REDIS_URL, or Redis unreachable)",
        )
        .expect("valid metric");
        let summary_redis_errors = IntCounter::new(
            "analytics_dashboard_cache_redis_errors_total",
            "Failed or timed-out Redis calls of the dashboard summary cache",
        )
        .expect("valid metric");
        let summary_computations = IntCounter::new(
            "analytics_dashboard_cache_computations_total",
            "Dashboard summary sections computed (cache misses) by this process",
        )
        .expect("valid metric");
        let channel_enabled = IntGaugeVec::new(
            Opts::new(
                "analytics_notify_channel_enabled",
                "1 when the notification channel has its settings, 0 when it is disabled",
            ),
            &["channel"],
        )
        .expect("valid metric");
        let notifications = IntCounterVec::new(
            Opts::new(
                "analytics_notify_attempts_total",
                "Delivery attempts since start by channel and outcome (sent, retry, failed)",
            ),
            &["channel", "outcome"],
        )
        .expect("valid metric");
        let raw_hours_lookups = IntCounterVec::new(
            Opts::new(
                "analytics_raw_hour_cache_lookups_total",
                "Reads of a whole hour of raw events (window edges, the open hour) answered \
                 from memory (hit) or from the store (miss)",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let raw_hours_events = IntGauge::new(
            "analytics_raw_hour_cache_events",
            "Raw events held in memory by the readers' hour cache",
        )
        .expect("valid metric");
        let project_ingest = IntCounterVec::new(
            Opts::new(
                "analytics_project_ingest_events_total",
                "Events per project and outcome since start (accepted, duplicate, rejected, \
                 sampled_out, rate_limited, late)",
            ),
            &["project", "outcome"],
        )
        .expect("valid metric");
        let rate_limit_redis_up = IntGauge::new(
            "analytics_rate_limit_redis_up",
            "1 while ingest rate limits are shared through Redis; 0 while they are enforced \
             per process only (no REDIS_URL, or Redis unreachable)",
        )
        .expect("valid metric");
        let rate_limit_redis_errors = IntCounter::new(
            "analytics_rate_limit_redis_errors_total",
            "Failed or timed-out Redis calls of the rate limiter (each fell back to the \
             in-process limit)",
        )
        .expect("valid metric");
        let rate_limit_decisions = IntCounterVec::new(
            Opts::new(
                "analytics_rate_limit_decisions_total",
                "Rate limit checks by limit (key, ip), where decided (redis, local) and result",
            ),
            &["limit", "backend", "result"],
        )
        .expect("valid metric");
        for c in [
            Box::new(project_ingest.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(rate_limit_redis_up.clone()),
            Box::new(rate_limit_redis_errors.clone()),
            Box::new(rate_limit_decisions.clone()),
            Box::new(requests.clone()),
            Box::new(duration.clone()),
            Box::new(store_up.clone()),
            Box::new(pool.clone()),
            Box::new(draining.clone()),
            Box::new(summary_redis_up.clone()),
            Box::new(summary_redis_errors.clone()),
            Box::new(summary_computations.clone()),
            Box::new(channel_enabled.clone()),
            Box::new(notifications.clone()),
            Box::new(raw_hours_lookups.clone()),
            Box::new(raw_hours_events.clone()),
        ] {
            registry.register(c).expect("unique metric");
        }
        ingest.register(&registry);
        // Series whose labels come from fixed sets start at 0, so that rates and alerts see
        // them before their first event.
        for channel in analytics_core::notification::Channel::ALL {
            for outcome in ["sent", "retry", "failed", "capped"] {
                notifications.with_label_values(&[channel.as_str(), outcome]);
            }
        }
        for outcome in ["hit", "miss"] {
            raw_hours_lookups.with_label_values(&[outcome]);
        }
        for limit in ["key", "ip"] {
            for backend in ["redis", "local"] {
                for result in ["allowed", "limited"] {
                    rate_limit_decisions.with_label_values(&[limit, backend, result]);
                }
            }
        }
        register_process_metrics(&registry);
        Self {
            registry,
            requests,
            duration,
            ingest,
            store_up,
            pool,
            draining,
            summary_redis_up,
            summary_redis_errors,
            summary_computations,
            channel_enabled,
            notifications,
            raw_hours_lookups,
            raw_hours_events,
            project_ingest,
            rate_limit_redis_up,
            rate_limit_redis_errors,
            rate_limit_decisions,
        }
    }

    /// The per-project ingest counter (registered here).
    pub fn project_ingest(&self) -> IntCounterVec {
        self.project_ingest.clone()
    }

    /// The rate limiter's metrics (registered here).
    pub fn rate_limit_metrics(&self) -> crate::rate_limit::LimiterMetrics {
        crate::rate_limit::LimiterMetrics {
            redis_up: self.rate_limit_redis_up.clone(),
            redis_errors: self.rate_limit_redis_errors.clone(),
            decisions: self.rate_limit_decisions.clone(),
        }
    }

    /// Copies the raw-hour cache's counters.
    pub fn set_raw_hours(&self, cache: &analytics_core::rollup::raw_hours::RawHours) {
        let (hits, misses) = cache.hits_and_misses();
        for (outcome, n) in [("hit", hits), ("miss", misses)] {
            advance(&self.raw_hours_lookups.with_label_values(&[outcome]), n);
        }
        self.raw_hours_events
            .set(i64::try_from(cache.held()).unwrap_or(i64::MAX));
    }

    /// The summary cache's metrics (registered here).
    pub fn summary_cache_metrics(&self) -> CacheMetrics {
        CacheMetrics {
            redis_up: self.summary_redis_up.clone(),
            redis_errors: self.summary_redis_errors.clone(),
            computations: self.summary_computations.clone(),
        }
    }

    /// Records one served request. Every label must come from a bounded set: `method` from
    /// [`method_label`], `route` from the route templates, `status` a status code this
    /// server sends.
    pub fn observe_request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let status = status.to_string();
        let labels = [method, route, status.as_str()];
        self.requests.with_label_values(&labels).inc();
        self.duration.with_label_values(&labels).observe(seconds);
    }

    /// Copies the collector's counters.
    pub fn set_ingest(&self, s: &CollectorStats) {
        self.ingest.set(s);
    }

    /// Records the store's reachability.
    pub fn set_store_up(&self, backend: &str, up: bool) {
        self.store_up
            .with_label_values(&[backend])
            .set(i64::from(up));
    }

    /// Copies the store's pool gauges.
    pub fn set_pools(&self, pools: &[PoolStats]) {
        for p in pools {
            for (state, v) in [("open", p.open), ("idle", p.idle), ("max", p.max)] {
                self.pool
                    .with_label_values(&[p.pool, state])
                    .set(i64::from(v));
            }
        }
    }

    /// Records whether the server is draining.
    pub fn set_draining(&self, draining: bool) {
        self.draining.set(i64::from(draining));
    }

    /// Copies the notification channels' state and the dispatcher's counters.
    pub fn set_channels(&self, report: &crate::notify::ChannelReport) {
        let Some(stats) = &report.stats else {
            return;
        };
        for c in analytics_core::notification::Channel::ALL {
            self.channel_enabled
                .with_label_values(&[c.as_str()])
                .set(i64::from(!report.disabled.contains_key(&c)));
        }
        for ((channel, outcome), n) in stats.snapshot() {
            advance(
                &self
                    .notifications
                    .with_label_values(&[channel.as_str(), outcome]),
                n,
            );
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "metrics encoding failed");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// Moves a counter up to `total`, a running count kept elsewhere since the process started
/// (counters only go up: a smaller `total` leaves it as it is).
fn advance(counter: &IntCounter, total: u64) {
    counter.inc_by(total.saturating_sub(counter.get()));
}

fn int_gauge(name: &str, help: &str) -> IntGauge {
    IntGauge::new(name, help).expect("valid metric")
}

fn int_counter(name: &str, help: &str) -> IntCounter {
    IntCounter::new(name, help).expect("valid metric")
}

/// The collector's counters and gauges, one metric each.
#[derive(Debug, Clone)]
struct IngestMetrics {
    queue: IntGauge,
    committed: IntCounter,
    duplicates: IntCounter,
    failed: IntCounter,
    rejected_backpressure: IntCounter,
    batches: IntCounter,
    splits: IntCounter,
    write_errors: IntCounter,
    last_batch: IntGauge,
    avg_batch: Gauge,
    sink_down: IntGauge,
}

impl IngestMetrics {
    fn new() -> Self {
        Self {
            queue: int_gauge(
                "analytics_ingest_queue_events",
                "Events waiting in the collector's queue now",
            ),
            committed: int_counter(
                "analytics_ingest_committed_events_total",
                "Events written to the store by the collector",
            ),
            duplicates: int_counter(
                "analytics_ingest_duplicate_events_total",
                "Events the store already held (same event id)",
            ),
            failed: int_counter(
                "analytics_ingest_failed_events_total",
                "Events not stored because the store failed or refused them",
            ),
            rejected_backpressure: int_counter(
                "analytics_ingest_rejected_events_total",
                "Events refused because the collector's queue was full (backpressure)",
            ),
            batches: int_counter(
                "analytics_ingest_batches_total",
                "Batches written to the store",
            ),
            splits: int_counter(
                "analytics_ingest_batch_splits_total",
                "Failed batches split in two to isolate the events the store refuses",
            ),
            write_errors: int_counter(
                "analytics_ingest_write_errors_total",
                "Failed batch writes, retried ones included",
            ),
            last_batch: int_gauge(
                "analytics_ingest_last_batch_events",
                "Events in the last batch written",
            ),
            avg_batch: Gauge::new(
                "analytics_ingest_avg_batch_events",
                "Average events per batch written",
            )
            .expect("valid metric"),
            sink_down: int_gauge(
                "analytics_ingest_sink_down",
                "1 while the store looks down to the collector (its last batch failed after \
                 all retries)",
            ),
        }
    }

    fn register(&self, registry: &Registry) {
        for c in [
            Box::new(self.queue.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(self.committed.clone()),
            Box::new(self.duplicates.clone()),
            Box::new(self.failed.clone()),
            Box::new(self.rejected_backpressure.clone()),
            Box::new(self.batches.clone()),
            Box::new(self.splits.clone()),
            Box::new(self.write_errors.clone()),
            Box::new(self.last_batch.clone()),
            Box::new(self.avg_batch.clone()),
            Box::new(self.sink_down.clone()),
        ] {
            registry.register(c).expect("unique metric");
        }
    }

    fn set(&self, s: &CollectorStats) {
        let as_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.queue.set(as_i64(s.queued));
        advance(&self.committed, s.committed);
        advance(&self.duplicates, s.duplicates);
        advance(&self.failed, s.failed);
        advance(&self.rejected_backpressure, s.rejected_backpressure);
        advance(&self.batches, s.batches);
        advance(&self.splits, s.splits);
        advance(&self.write_errors, s.write_errors);
        self.last_batch.set(as_i64(s.last_batch_size));
        self.avg_batch.set(s.avg_batch_size);
        self.sink_down.set(i64::from(s.sink_down));
    }
}

/// The process's CPU time, memory, open file descriptors, threads and start time
/// (`process_*`, read from /proc on Linux; nothing elsewhere).
#[cfg(target_os = "linux")]
fn register_process_metrics(registry: &Registry) {
    let collector = prometheus::process_collector::ProcessCollector::for_self();
    if let Err(e) = registry.register(Box::new(collector)) {
        tracing::warn!(error = %e, "process metrics unavailable");
    }
}

#[cfg(not(target_os = "linux"))]
fn register_process_metrics(_registry: &Registry) {}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
