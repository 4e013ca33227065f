//! System health figures (API.md, "System health"): request, error and latency figures of
//! the application's `api_request` events, per route and per bucket, the server's own
//! store-call latency, and the healthy/degraded/down rule. Read through the
//! [`RollupReader`], so every figure covers the whole window at every moment (complete
//! buckets from rollups, the rest from raw events) and survives raw-event retention.

use std::collections::HashMap;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde_json::{Map, json};

use crate::error::{FieldError, Result};
use crate::event::{Event, EventKind, Payload};
use crate::ids::{CorrelationId, EventId, MetricName, ProjectId};
use crate::rollup::read::{RollupReader, SeriesQuery, Source};
use crate::rollup::spec::{STORE_CALL_KIND, metrics};
use crate::rollup::{Dimensions, RollupStats};
use crate::time::{Granularity, TimeRange, Window};

/// A latency block: `{p50, p95, p99, avg}` plus `max`, each `None` without data.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Percentiles {
    /// Median.
    pub p50: Option<f64>,
    /// 95th percentile.
    pub p95: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
    /// Re-weighted mean.
    pub avg: Option<f64>,
    /// Largest value.
    pub max: Option<f64>,
}

impl Percentiles {
    /// The block of `stats` (all `None` without data).
    pub fn of(stats: Option<&RollupStats>) -> Self {
        match stats {
            Some(s) if s.samples > 0 => Self {
                p50: s.p50,
                p95: s.p95,
                p99: s.p99,
                avg: s.avg,
                max: s.max,
            },
            _ => Self::default(),
        }
    }
}

/// Requests, server errors and latency of a set of `api_request` events.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RequestFigures {
    /// Requests, re-weighted by sample rate and rounded to an integer.
    pub requests: u64,
    /// Requests answered with a status >= 500, re-weighted and rounded.
    pub errors: u64,
    /// `errors / requests` from the unrounded re-weighted figures; `None` without requests.
    pub error_rate: Option<f64>,
    /// Latency in milliseconds.
    pub latency_ms: Percentiles,
    /// Whether sampled events (rate < 1) contributed.
    pub sampled: bool,
}

impl RequestFigures {
    /// The figures from the `api.errors` statistics (count = requests, sum = errors) and
    /// the `api.latency_ms` statistics of the same events.
    pub fn from_stats(errors: Option<&RollupStats>, latency: Option<&RollupStats>) -> Self {
        let (count, failed) = errors.map_or((0.0, 0.0), |s| (s.count, s.sum));
        let sampled = [errors, latency].into_iter().flatten().any(is_sampled);
        Self {
            requests: to_count(count),
            errors: to_count(failed),
            error_rate: (count > 0.0).then(|| (failed / count).clamp(0.0, 1.0)),
            latency_ms: Percentiles::of(latency),
            sampled,
        }
    }
}

/// Whether sampled events (rate < 1) went into `s`: its re-weighted count differs from its
/// raw samples.
pub(crate) fn is_sampled(s: &RollupStats) -> bool {
    (s.count - s.samples as f64).abs() > 1e-9 * s.count.max(1.0)
}

/// A re-weighted count rounded to an integer (0 for nothing or garbage).
pub(crate) fn to_count(v: f64) -> u64 {
    if v.is_finite() && v > 0.0 {
        v.round() as u64
    } else {
        0
    }
}

/// One endpoint of `health/api`.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteFigures {
    /// Upper-case HTTP method.
    pub method: String,
    /// Route template.
    pub route: String,
    /// Its figures.
    pub figures: RequestFigures,
}

/// One bucket of `health/timeseries`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HealthPoint {
    /// The aligned bucket start.
    pub ts: DateTime<Utc>,
    /// Figures of the part of the bucket inside the window (zeros and `None` when empty).
    pub figures: RequestFigures,
}

/// The server's own store-call latency over a window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StoreLatency {
    /// Timed store calls.
    pub calls: u64,
    /// Their latency in milliseconds.
    pub latency_ms: Percentiles,
}

impl StoreLatency {
    fn of(stats: Option<&RollupStats>) -> Self {
        Self {
            calls: stats.map_or(0, |s| to_count(s.count)),
            latency_ms: Percentiles::of(stats),
        }
    }
}

/// When `health/overview` says `degraded` (configurable; `down` is when the store does not
/// answer).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HealthThresholds {
    /// Degraded when the window's error rate is above this fraction (default 0.05).
    pub max_error_rate: f64,
    /// Degraded when the window's p95 latency is above this many milliseconds (default
    /// 1000).
    pub max_p95_ms: f64,
}

impl Default for HealthThresholds {
    fn default() -> Self {
        Self {
            max_error_rate: 0.05,
            max_p95_ms: 1000.0,
        }
    }
}

/// The overall verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthStatus {
    /// Store answers, error rate and p95 within thresholds (or no traffic).
    Healthy,
    /// Error rate or p95 latency above its threshold.
    Degraded,
    /// The store does not answer.
    Down,
}

impl HealthStatus {
    /// The wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Degraded => "degraded",
            Self::Down => "down",
        }
    }

    /// The rule: `down` when the store does not answer; `degraded` when the error rate or
    /// the p95 latency is above its threshold; else `healthy`. A window without requests is
    /// healthy.
    pub fn decide(
        store_available: bool,
        figures: &RequestFigures,
        thresholds: &HealthThresholds,
    ) -> Self {
        if !store_available {
            return Self::Down;
        }
        let errors_high = figures
            .error_rate
            .is_some_and(|r| r > thresholds.max_error_rate);
        let slow = figures
            .latency_ms
            .p95
            .is_some_and(|p| p > thresholds.max_p95_ms);
        if errors_high || slow {
            Self::Degraded
        } else {
            Self::Healthy
        }
    }
}

/// The store calls the server times (the `operation` dimension of `store.latency_ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreOperation {
    /// A `write_batch` of ingested events.
    IngestWrite,
    /// A read serving an API request (event listing, health figures).
    Read,
    /// One rollup scheduler tick.
    RollupTick,
    /// A ping (readiness, `health/database`).
    Ping,
}

impl StoreOperation {
    /// The dimension value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::IngestWrite => "ingest_write",
            Self::Read => "read",
            Self::RollupTick => "rollup_tick",
            Self::Ping => "ping",
        }
    }

    /// The event recording one call that took `latency_ms` and ended at `at`: kind
    /// [`STORE_CALL_KIND`] in [`ProjectId::internal`], so it never counts as application
    /// traffic; it rolls up into [`metrics::STORE_LATENCY_MS`] (or
    /// [`metrics::ROLLUP_TICK_MS`] for ticks) like any event.
    pub fn event(self, latency_ms: f64, at: DateTime<Utc>) -> Event {
        let at = crate::time::truncate_to_micros(at);
        let mut payload = Map::new();
        payload.insert("operation".into(), json!(self.as_str()));
        payload.insert("latency_ms".into(), json!(latency_ms));
        let id = EventId::generate(at);
        Event {
            correlation_id: CorrelationId::parse(id.to_string())
                .unwrap_or_else(|_| CorrelationId::parse("store-call").expect("valid id")),
            id,
            project: ProjectId::internal(),
            kind: EventKind::Custom(STORE_CALL_KIND.to_owned()),
            occurred_at: at,
            received_at: at,
            user_id: None,
            session_id: None,
            source: Some("analytics-server".to_owned()),
            sample_rate: 1.0,
            payload: Payload::Custom(payload),
            properties: Map::new(),
        }
    }
}

/// Parses an endpoint `limit` (1..=`max`, `default` when absent or empty), field `limit`.
pub fn parse_limit(v: Option<&str>, default: usize, max: usize) -> Result<usize, FieldError> {
    match v.filter(|s| !s.is_empty()) {
        None => Ok(default),
        Some(s) => usize::from_str(s)
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| FieldError::new("limit", format!("must be from 1 to {max}"))),
    }
}

/// A default metric's name (valid by construction).
pub(crate) fn metric(name: &str) -> MetricName {
    MetricName::parse(name).unwrap_or_else(|e| panic!("default metric {name}: {e}"))
}

/// The health computations over a [`RollupReader`] with the default specs.
#[derive(Debug, Clone)]
pub struct SystemHealth {
    reader: RollupReader,
}

impl SystemHealth {
    /// Health figures read through `reader` (its specs must include the defaults'
    /// `api.errors`, `api.latency_ms` and `store.latency_ms`).
    pub fn new(reader: RollupReader) -> Self {
        Self { reader }
    }

    fn series(project: &ProjectId, name: &str) -> SeriesQuery {
        SeriesQuery {
            project: project.clone(),
            metric: metric(name),
            dimensions: Dimensions::none(),
        }
    }

    /// The project's request figures over `range`.
    pub async fn requests(&self, project: &ProjectId, range: TimeRange) -> Result<RequestFigures> {
        let errors = self
            .reader
            .stats(&Self::series(project, metrics::API_ERRORS), range)
            .await?;
        let latency = self
            .reader
            .stats(&Self::series(project, metrics::API_LATENCY_MS), range)
            .await?;
        Ok(RequestFigures::from_stats(
            errors.as_ref(),
            latency.as_ref(),
        ))
    }

    /// Figures per (method, route), most requests first (ties by route, then method), at
    /// most `limit`.
    pub async fn routes(
        &self,
        project: &ProjectId,
        range: TimeRange,
        limit: usize,
    ) -> Result<Vec<RouteFigures>> {
        let names = ["method", "route"];
        let errors = self
            .reader
            .breakdown(project, &metric(metrics::API_ERRORS), &names, range)
            .await?;
        let latency: HashMap<Dimensions, RollupStats> = self
            .reader
            .breakdown(project, &metric(metrics::API_LATENCY_MS), &names, range)
            .await?
            .into_iter()
            .collect();
        let mut out: Vec<RouteFigures> = errors
            .iter()
            .map(|(dims, stats)| RouteFigures {
                method: dims.get("method").unwrap_or_default().to_owned(),
                route: dims.get("route").unwrap_or_default().to_owned(),
                figures: RequestFigures::from_stats(Some(stats), latency.get(dims)),
            })
            .collect();
        out.sort_by(|a, b| {
            b.figures
                .requests
                .cmp(&a.figures.requests)
                .then_with(|| a.route.cmp(&b.route))
                .then_with(|| a.method.cmp(&b.method))
        });
        out.truncate(limit);
        Ok(out)
    }

    /// One point per bucket of the window, oldest first, empty buckets included; partial
    /// edge buckets count only their part inside the window.
    pub async fn timeseries(
        &self,
        project: &ProjectId,
        window: &Window,
        granularity: Granularity,
    ) -> Result<Vec<HealthPoint>> {
        let range = window.range();
        let errors = self
            .reader
            .timeseries(
                &Self::series(project, metrics::API_ERRORS),
                range,
                granularity,
            )
            .await?;
        let latency = self
            .reader
            .timeseries(
                &Self::series(project, metrics::API_LATENCY_MS),
                range,
                granularity,
            )
            .await?;
        let errors: HashMap<_, _> = errors.into_iter().collect();
        let latency: HashMap<_, _> = latency.into_iter().collect();
        Ok(window
            .buckets(granularity)
            .map(|b| HealthPoint {
                ts: b.start,
                figures: RequestFigures::from_stats(errors.get(&b.start), latency.get(&b.start)),
            })
            .collect())
    }

    /// The server's store-call latency over `range` (ingest writes, reads and pings).
    pub async fn store_latency(&self, range: TimeRange) -> Result<StoreLatency> {
        let stats = self
            .reader
            .stats(
                &Self::series(&ProjectId::internal(), metrics::STORE_LATENCY_MS),
                range,
            )
            .await?;
        Ok(StoreLatency::of(stats.as_ref()))
    }

    /// The same per operation (`ingest_write`, `read`, `ping`), by name.
    pub async fn store_latency_by_operation(
        &self,
        range: TimeRange,
    ) -> Result<Vec<(String, StoreLatency)>> {
        let mut out: Vec<(String, StoreLatency)> = self
            .reader
            .breakdown(
                &ProjectId::internal(),
                &metric(metrics::STORE_LATENCY_MS),
                &["operation"],
                range,
            )
            .await?
            .into_iter()
            .map(|(d, s)| {
                let op = d.get("operation").unwrap_or_default().to_owned();
                (op, StoreLatency::of(Some(&s)))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// The rollup scheduler's tick durations over `range`.
    pub async fn rollup_ticks(&self, range: TimeRange) -> Result<StoreLatency> {
        let stats = self
            .reader
            .stats(
                &Self::series(&ProjectId::internal(), metrics::ROLLUP_TICK_MS),
                range,
            )
            .await?;
        Ok(StoreLatency::of(stats.as_ref()))
    }

    /// Where an answer over `range` at `granularity` comes from (minute buckets are always
    /// raw).
    pub async fn source(
        &self,
        project: &ProjectId,
        range: TimeRange,
        granularity: Option<Granularity>,
    ) -> Result<Source> {
        if granularity.is_some_and(|g| !g.is_rolled()) {
            return Ok(Source::Raw);
        }
        self.reader.source(project, range).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(samples: u64, count: f64, sum: f64, p95: Option<f64>) -> RollupStats {
        RollupStats {
            samples,
            count,
            sum,
            min: p95,
            max: p95,
            avg: (count > 0.0).then(|| sum / count),
            p50: p95,
            p95,
            p99: p95,
        }
    }

    #[test]
    fn figures_without_data_are_zeros_and_nulls() {
        let f = RequestFigures::from_stats(None, None);
        assert_eq!(f.requests, 0);
        assert_eq!(f.errors, 0);
        assert_eq!(f.error_rate, None);
        assert_eq!(f.latency_ms, Percentiles::default());
        assert!(!f.sampled);
        assert_eq!(
            HealthStatus::decide(true, &f, &HealthThresholds::default()),
            HealthStatus::Healthy
        );
    }

    #[test]
    fn sampled_figures_are_reweighted_and_rounded() {
        // 3 events kept at rate 0.3: 10 requests, one error kept at rate 0.3 too.
        let e = stats(3, 10.0, 10.0 / 3.0, None);
        let f = RequestFigures::from_stats(Some(&e), None);
        assert_eq!(f.requests, 10);
        assert_eq!(f.errors, 3);
        assert!((f.error_rate.unwrap() - 1.0 / 3.0).abs() < 1e-12);
        assert!(f.sampled);
    }

    #[test]
    fn status_rule() {
        let t = HealthThresholds::default();
        let ok = RequestFigures::from_stats(
            Some(&stats(100, 100.0, 1.0, None)),
            Some(&stats(100, 100.0, 5000.0, Some(200.0))),
        );
        assert_eq!(HealthStatus::decide(true, &ok, &t), HealthStatus::Healthy);
        assert_eq!(HealthStatus::decide(false, &ok, &t), HealthStatus::Down);
        let errors = RequestFigures::from_stats(Some(&stats(100, 100.0, 6.0, None)), None);
        assert_eq!(
            HealthStatus::decide(true, &errors, &t),
            HealthStatus::Degraded
        );
        let slow = RequestFigures::from_stats(
            Some(&stats(100, 100.0, 0.0, None)),
            Some(&stats(100, 100.0, 1.0, Some(1500.0))),
        );
        assert_eq!(
            HealthStatus::decide(true, &slow, &t),
            HealthStatus::Degraded
        );
    }

    #[test]
    fn store_call_events_live_in_the_internal_project() {
        let at = DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap();
        let e = StoreOperation::IngestWrite.event(3.5, at);
        assert!(e.project.is_internal());
        assert_eq!(e.kind.as_str(), STORE_CALL_KIND);
        assert_eq!(e.occurred_at.timestamp_subsec_nanos(), 123_456_000);
        let specs = crate::rollup::spec::RollupSpecs::defaults();
        let spec = specs.get(&metric(metrics::STORE_LATENCY_MS)).unwrap();
        assert!(spec.accepts(&e));
        assert_eq!(
            crate::rollup::spec::field_value(&e, "latency_ms"),
            Some(3.5)
        );
        assert_eq!(
            crate::rollup::spec::field_text(&e, "operation").as_deref(),
            Some("ingest_write")
        );
    }

    #[test]
    fn limits_are_checked() {
        assert_eq!(parse_limit(None, 50, 500), Ok(50));
        assert_eq!(parse_limit(Some("500"), 50, 500), Ok(500));
        for bad in ["0", "501", "x", "-1"] {
            assert_eq!(parse_limit(Some(bad), 50, 500).unwrap_err().field, "limit");
        }
    }
}
