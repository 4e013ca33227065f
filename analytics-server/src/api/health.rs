//! System health (role `admin`): `GET /api/v1/analytics/health/{overview,api,database,
//! timeseries}`. Thin: parses the window and parameters, calls `analytics_core::health`
//! over the rollup reader, adds the live Prometheus view, the store's ping and pools, and
//! times its own store reads.

use std::time::{Duration, Instant};

use analytics_core::health::{
    HealthStatus, Percentiles, RequestFigures, StoreOperation, SystemHealth,
};
use analytics_core::rollup::read::Source;
use analytics_core::{Clock, Granularity, ProjectId, SystemClock, TimeRange, Window};
use chrono::{DateTime, Utc};
use poem::Request;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{Enum, Object, OpenApi};

use super::events::BearerAuth;
use super::request::{project_param, require_admin};
use super::{ApiResult, ApiTags};
use crate::error::ApiError;
use crate::realtime::Realtime;
use crate::state::AppState;

/// How long `health/database` waits for the ping.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// The system health endpoints.
#[derive(Debug)]
pub struct HealthApi {
    pub(crate) state: AppState,
}

/// The window an answer covers.
#[derive(Debug, Clone, Object)]
pub struct RangeBody {
    /// Inclusive start (RFC 3339, UTC).
    pub from: DateTime<Utc>,
    /// Exclusive end.
    pub to: DateTime<Utc>,
}

impl From<TimeRange> for RangeBody {
    fn from(r: TimeRange) -> Self {
        Self {
            from: r.start(),
            to: r.end(),
        }
    }
}

/// Latency in milliseconds; each `null` without data.
#[derive(Debug, Clone, Object)]
pub struct LatencyBlock {
    /// Median.
    #[oai(nullable)]
    pub p50: Option<f64>,
    /// 95th percentile.
    #[oai(nullable)]
    pub p95: Option<f64>,
    /// 99th percentile.
    #[oai(nullable)]
    pub p99: Option<f64>,
    /// Mean (re-weighted by sample rate).
    #[oai(nullable)]
    pub avg: Option<f64>,
}

impl From<Percentiles> for LatencyBlock {
    fn from(p: Percentiles) -> Self {
        Self {
            p50: p.p50,
            p95: p.p95,
            p99: p.p99,
            avg: p.avg,
        }
    }
}

/// Latency in milliseconds with the maximum; each `null` without data.
#[derive(Debug, Clone, Object)]
pub struct LatencyBlockMax {
    /// Median.
    #[oai(nullable)]
    pub p50: Option<f64>,
    /// 95th percentile.
    #[oai(nullable)]
    pub p95: Option<f64>,
    /// 99th percentile.
    #[oai(nullable)]
    pub p99: Option<f64>,
    /// Mean (re-weighted by sample rate).
    #[oai(nullable)]
    pub avg: Option<f64>,
    /// Largest.
    #[oai(nullable)]
    pub max: Option<f64>,
}

impl From<Percentiles> for LatencyBlockMax {
    fn from(p: Percentiles) -> Self {
        Self {
            p50: p.p50,
            p95: p.p95,
            p99: p.p99,
            avg: p.avg,
            max: p.max,
        }
    }
}

/// Live latency percentiles in milliseconds from the histogram buckets.
#[derive(Debug, Clone, Object)]
pub struct RealtimeLatency {
    /// Median.
    #[oai(nullable)]
    pub p50: Option<f64>,
    /// 95th percentile.
    #[oai(nullable)]
    pub p95: Option<f64>,
    /// 99th percentile.
    #[oai(nullable)]
    pub p99: Option<f64>,
}

/// The live view from the Prometheus exposition endpoint.
#[derive(Debug, Clone, Object)]
pub struct RealtimeBody {
    /// Whether the endpoint answered with usable figures within the budget (500 ms).
    pub available: bool,
    /// The endpoint URL (`ANALYTICS_PROMETHEUS_URL`, default this server's `/metrics`).
    pub source: String,
    /// When it was scraped.
    #[oai(nullable)]
    pub scraped_at: Option<DateTime<Utc>>,
    /// Requests per second since the previous scrape (`null` on the first one).
    #[oai(nullable)]
    pub requests_per_second: Option<f64>,
    /// Share of 5xx answers since the previous scrape; `null` without requests.
    #[oai(nullable)]
    pub error_rate: Option<f64>,
    /// Latency percentiles (`null` when unavailable).
    #[oai(nullable)]
    pub latency_ms: Option<RealtimeLatency>,
    /// Why the view is unavailable (unreachable, slow, not Prometheus text).
    #[oai(nullable)]
    pub reason: Option<String>,
}

impl From<Realtime> for RealtimeBody {
    fn from(r: Realtime) -> Self {
        Self {
            latency_ms: r.available.then_some(RealtimeLatency {
                p50: r.p50_ms,
                p95: r.p95_ms,
                p99: r.p99_ms,
            }),
            available: r.available,
            source: r.source,
            scraped_at: r.scraped_at,
            requests_per_second: r.requests_per_second,
            error_rate: r.error_rate,
            reason: r.reason,
        }
    }
}

/// The overall verdict.
#[derive(Debug, Clone, Copy, Enum)]
#[oai(rename_all = "lowercase")]
pub enum StatusBody {
    /// Store answers; error rate and p95 within thresholds.
    Healthy,
    /// Error rate or p95 latency above its threshold.
    Degraded,
    /// The store does not answer.
    Down,
}

impl From<HealthStatus> for StatusBody {
    fn from(s: HealthStatus) -> Self {
        match s {
            HealthStatus::Healthy => Self::Healthy,
            HealthStatus::Degraded => Self::Degraded,
            HealthStatus::Down => Self::Down,
        }
    }
}

/// Where the figures come from (FR-4).
#[derive(Debug, Clone, Copy, Enum)]
#[oai(rename_all = "lowercase")]
pub enum SourceBody {
    /// Rollups, raw events only for the unaligned edges and the open hour.
    Rollups,
    /// Raw events only.
    Raw,
}

impl From<Source> for SourceBody {
    fn from(s: Source) -> Self {
        match s {
            Source::Rollups => Self::Rollups,
            Source::Raw => Self::Raw,
        }
    }
}

/// `health/overview`.
#[derive(Debug, Clone, Object)]
pub struct HealthOverview {
    /// The window.
    pub range: RangeBody,
    /// The project.
    pub project: String,
    /// `down` when the store does not answer; `degraded` when `error_rate` or
    /// `latency_ms.p95` passes its threshold (`ANALYTICS_HEALTH_MAX_ERROR_RATE`, default
    /// 0.05; `ANALYTICS_HEALTH_MAX_P95_MS`, default 1000); else `healthy`.
    pub status: StatusBody,
    /// Seconds since this server process started.
    pub uptime_seconds: u64,
    /// `api_request` events in the window (re-weighted by sample rate).
    pub requests: u64,
    /// Those answered with a status >= 500.
    pub errors: u64,
    /// `errors / requests`; `null` without requests.
    #[oai(nullable)]
    pub error_rate: Option<f64>,
    /// Request latency.
    pub latency_ms: LatencyBlock,
    /// Whether sampled events contributed.
    pub sampled: bool,
    /// Where the figures come from.
    pub source: SourceBody,
    /// Whether the store answered (when not, the figures are empty).
    pub store_available: bool,
    /// The live view (FR-3).
    pub realtime: RealtimeBody,
}

/// One endpoint of `health/api`.
#[derive(Debug, Clone, Object)]
pub struct RouteHealth {
    /// HTTP method.
    pub method: String,
    /// Route template.
    pub route: String,
    /// Requests.
    pub requests: u64,
    /// Requests answered with a status >= 500.
    pub errors: u64,
    /// `errors / requests`.
    #[oai(nullable)]
    pub error_rate: Option<f64>,
    /// Latency.
    pub latency_ms: LatencyBlockMax,
    /// Whether sampled events contributed.
    pub sampled: bool,
}

/// `health/api`.
#[derive(Debug, Clone, Object)]
pub struct ApiHealth {
    /// The window.
    pub range: RangeBody,
    /// The project.
    pub project: String,
    /// Where the figures come from.
    pub source: SourceBody,
    /// Endpoints, most requests first.
    pub routes: Vec<RouteHealth>,
}

/// Connection pool of the store (summed over its pools).
#[derive(Debug, Clone, Object)]
pub struct PoolBody {
    /// Open connections.
    pub size: u32,
    /// Idle open connections.
    pub idle: u32,
    /// Connections in use.
    pub in_use: u32,
    /// Most connections the pools open.
    pub max: u32,
}

/// `health/database`.
#[derive(Debug, Clone, Object)]
pub struct DatabaseHealth {
    /// The window of `query_latency_ms`.
    pub range: RangeBody,
    /// `postgres`, `sqlite` or `memory`.
    pub backend: String,
    /// Whether the store answered a ping now.
    pub available: bool,
    /// That ping's round trip in milliseconds (`null` when it failed).
    #[oai(nullable)]
    pub ping_ms: Option<f64>,
    /// The store's connection pools.
    pub pool: PoolBody,
    /// The server's own store-call latency over the window (ingest writes, reads, rollup
    /// ticks, pings).
    pub query_latency_ms: LatencyBlock,
    /// Store calls timed in the window.
    pub queries: u64,
    /// The same per operation (`ingest_write`, `read`, `ping`).
    pub operations: Vec<OperationLatency>,
    /// The rollup scheduler's ticks in the window (kept apart from the queries).
    pub rollup_ticks: u64,
    /// Their duration.
    pub rollup_tick_ms: LatencyBlock,
    /// Where the figures come from.
    pub source: SourceBody,
}

/// Store-call latency of one operation.
#[derive(Debug, Clone, Object)]
pub struct OperationLatency {
    /// `ingest_write`, `read` or `ping`.
    pub operation: String,
    /// Timed calls.
    pub calls: u64,
    /// Their latency in milliseconds.
    pub latency_ms: LatencyBlock,
}

/// One bucket of `health/timeseries`.
#[derive(Debug, Clone, Object)]
pub struct HealthPointBody {
    /// Bucket start.
    pub ts: DateTime<Utc>,
    /// Requests in the part of the bucket inside the window.
    pub requests: u64,
    /// Those answered with a status >= 500.
    pub errors: u64,
    /// `errors / requests`.
    #[oai(nullable)]
    pub error_rate: Option<f64>,
    /// Latency.
    pub latency_ms: LatencyBlock,
}

/// `health/timeseries`.
#[derive(Debug, Clone, Object)]
pub struct HealthTimeseries {
    /// The window.
    pub range: RangeBody,
    /// The project.
    pub project: String,
    /// `minute`, `hour` or `day`.
    pub granularity: String,
    /// Where the figures come from.
    pub source: SourceBody,
    /// One point per bucket, oldest first, empty buckets included.
    pub points: Vec<HealthPointBody>,
}

/// A `range` preset of the API's window rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum RangePreset {
    /// The last hour.
    #[oai(rename = "1h")]
    Hour,
    /// The last 24 hours.
    #[oai(rename = "24h")]
    Day,
    /// The last 7 days.
    #[oai(rename = "7d")]
    Week,
    /// The last 30 days.
    #[oai(rename = "30d")]
    Month,
}

impl RangePreset {
    /// The wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hour => "1h",
            Self::Day => "24h",
            Self::Week => "7d",
            Self::Month => "30d",
        }
    }
}

/// A timeseries `granularity` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum GranularityParam {
    /// Minute buckets.
    Minute,
    /// Hour buckets.
    Hour,
    /// Day buckets.
    Day,
}

impl GranularityParam {
    /// The wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Minute => "minute",
            Self::Hour => "hour",
            Self::Day => "day",
        }
    }
}

fn default_route_limit() -> u32 {
    50
}

/// The window of a request: a `range` preset or `from` + `to` (API.md, "Time window").
pub(crate) fn parse_window(
    range: Option<RangePreset>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> Result<Window, ApiError> {
    let from = from.map(|t| t.to_rfc3339());
    let to = to.map(|t| t.to_rfc3339());
    Window::parse(
        range.map(RangePreset::as_str),
        from.as_deref(),
        to.as_deref(),
        SystemClock.now(),
    )
    .map_err(ApiError::from)
}

/// The `project` parameter of the health routes (default `default`).
fn parse_project(p: Option<String>) -> Result<ProjectId, ApiError> {
    Ok(project_param(p)?.unwrap_or_else(ProjectId::default_project))
}

impl HealthApi {
    /// The health overview of `project` over `window` (the `health/overview` answer; the
    /// dashboard summary's `system_health` section).
    pub(crate) async fn overview_of(
        &self,
        project: &ProjectId,
        window: &Window,
    ) -> Result<HealthOverview, ApiError> {
        let range = window.range();
        let health = self.health();
        let figures = async {
            let figures = self.timed(health.requests(project, range)).await?;
            let source = self.timed(health.source(project, range, None)).await?;
            Ok::<_, analytics_core::Error>((figures, source))
        };
        let (figures, realtime) = tokio::join!(figures, self.realtime());
        let (figures, source, store_available) = match figures {
            Ok((f, s)) => (f, s, true),
            Err(analytics_core::Error::Unavailable(reason)) => {
                tracing::warn!(error = %reason, "health overview: store unavailable");
                (RequestFigures::default(), Source::Raw, false)
            }
            Err(e) => return Err(e.into()),
        };
        let status = HealthStatus::decide(store_available, &figures, &self.state.health.thresholds);
        Ok(HealthOverview {
            range: range.into(),
            project: project.to_string(),
            status: status.into(),
            uptime_seconds: self.state.health.started.elapsed().as_secs(),
            requests: figures.requests,
            errors: figures.errors,
            error_rate: figures.error_rate,
            latency_ms: figures.latency_ms.into(),
            sampled: figures.sampled,
            source: source.into(),
            store_available,
            realtime,
        })
    }

    fn health(&self) -> SystemHealth {
        SystemHealth::new(self.state.health.reader(self.state.store.clone()))
    }

    /// Runs a store read and records its timing.
    async fn timed<T>(
        &self,
        read: impl Future<Output = analytics_core::Result<T>>,
    ) -> analytics_core::Result<T> {
        self.state.timed_read(read).await
    }

    async fn realtime(&self) -> RealtimeBody {
        match &self.state.health.realtime {
            Some(source) => source.realtime().await.into(),
            None => Realtime::unavailable("", "no prometheus endpoint configured").into(),
        }
    }
}

fn figures_of_route(r: analytics_core::health::RouteFigures) -> RouteHealth {
    let RequestFigures {
        requests,
        errors,
        error_rate,
        latency_ms,
        sampled,
    } = r.figures;
    RouteHealth {
        method: r.method,
        route: r.route,
        requests,
        errors,
        error_rate,
        latency_ms: latency_ms.into(),
        sampled,
    }
}

#[OpenApi]
impl HealthApi {
    /// System health overview (role `admin`): status, uptime, requests, errors, error rate
    /// and latency of the window (`range=1h|24h|7d|30d`, default 24h, or `from`/`to`), and
    /// the live view scraped from the Prometheus endpoint within 500 ms.
    #[oai(
        path = "/api/v1/analytics/health/overview",
        method = "get",
        tag = "ApiTags::Health"
    )]
    async fn overview(
        &self,
        req: &Request,
        _auth: BearerAuth,
        /// `1h`, `24h` (default), `7d` or `30d` ending now; not with `from`/`to`.
        range: Query<Option<RangePreset>>,
        /// Window start (RFC 3339), with `to`; before `to`, at most 400 days before it.
        from: Query<Option<DateTime<Utc>>>,
        /// Window end (RFC 3339, exclusive), with `from`.
        to: Query<Option<DateTime<Utc>>>,
        /// Project slug (default `default`).
        #[oai(validator(pattern = r"^[a-z0-9][a-z0-9_-]{0,63}$"))]
        project: Query<Option<String>>,
    ) -> ApiResult<Json<HealthOverview>> {
        require_admin(req)?;
        let window = parse_window(range.0, from.0, to.0)?;
        let project = parse_project(project.0)?;
        Ok(Json(self.overview_of(&project, &window).await?))
    }

    /// Latency and errors by endpoint (role `admin`): one entry per (method, route), most
    /// requests first; `limit` 1..=500 (default 50).
    #[allow(clippy::too_many_arguments)]
    #[oai(
        path = "/api/v1/analytics/health/api",
        method = "get",
        tag = "ApiTags::Health"
    )]
    async fn api(
        &self,
        req: &Request,
        _auth: BearerAuth,
        /// `1h`, `24h` (default), `7d` or `30d` ending now; not with `from`/`to`.
        range: Query<Option<RangePreset>>,
        /// Window start (RFC 3339), with `to`; before `to`, at most 400 days before it.
        from: Query<Option<DateTime<Utc>>>,
        /// Window end (RFC 3339, exclusive), with `from`.
        to: Query<Option<DateTime<Utc>>>,
        /// Project slug (default `default`).
        #[oai(validator(pattern = r"^[a-z0-9][a-z0-9_-]{0,63}$"))]
        project: Query<Option<String>>,
        /// Most routes returned (1..=500).
        #[oai(
            default = "default_route_limit",
            validator(minimum(value = "1"), maximum(value = "500"))
        )]
        limit: Query<u32>,
    ) -> ApiResult<Json<ApiHealth>> {
        require_admin(req)?;
        let window = parse_window(range.0, from.0, to.0)?;
        let project = parse_project(project.0)?;
        let limit = limit.0 as usize;
        let range = window.range();
        let health = self.health();
        let routes = self
            .timed(health.routes(&project, range, limit))
            .await
            .map_err(ApiError::from)?;
        let source = self
            .timed(health.source(&project, range, None))
            .await
            .map_err(ApiError::from)?;
        Ok(Json(ApiHealth {
            range: range.into(),
            project: project.to_string(),
            source: source.into(),
            routes: routes.into_iter().map(figures_of_route).collect(),
        }))
    }

    /// The store (role `admin`): backend, availability and ping measured now, connection
    /// pools, and the server's own store-call latency over the window.
    #[oai(
        path = "/api/v1/analytics/health/database",
        method = "get",
        tag = "ApiTags::Health"
    )]
    async fn database(
        &self,
        req: &Request,
        _auth: BearerAuth,
        /// `1h`, `24h` (default), `7d` or `30d` ending now; not with `from`/`to`.
        range: Query<Option<RangePreset>>,
        /// Window start (RFC 3339), with `to`; before `to`, at most 400 days before it.
        from: Query<Option<DateTime<Utc>>>,
        /// Window end (RFC 3339, exclusive), with `from`.
        to: Query<Option<DateTime<Utc>>>,
    ) -> ApiResult<Json<DatabaseHealth>> {
        require_admin(req)?;
        let window = parse_window(range.0, from.0, to.0)?;
        let range = window.range();
        let started = Instant::now();
        let ping = tokio::time::timeout(PING_TIMEOUT, self.state.store.ping()).await;
        let ping_ms = started.elapsed().as_secs_f64() * 1e3;
        let available = matches!(ping, Ok(Ok(())));
        if available {
            self.state.record_store_call(StoreOperation::Ping, started);
        }
        self.state
            .metrics
            .set_store_up(self.state.store.backend(), available);
        let pools = self.state.store.pool_stats();
        let sum = |f: fn(&analytics_core::ports::PoolStats) -> u32| {
            pools.iter().map(f).fold(0u32, u32::saturating_add)
        };
        let (size, idle, max) = (sum(|p| p.open), sum(|p| p.idle), sum(|p| p.max));
        let health = self.health();
        let (latency, operations, ticks, source) = if available {
            let read = async {
                Ok::<_, analytics_core::Error>((
                    health.store_latency(range).await?,
                    health.store_latency_by_operation(range).await?,
                    health.rollup_ticks(range).await?,
                    health.source(&ProjectId::internal(), range, None).await?,
                ))
            };
            self.timed(read).await.map_err(ApiError::from)?
        } else {
            (
                Default::default(),
                Vec::new(),
                Default::default(),
                Source::Raw,
            )
        };
        Ok(Json(DatabaseHealth {
            range: range.into(),
            backend: self.state.store.backend().to_owned(),
            available,
            ping_ms: available.then_some(ping_ms),
            pool: PoolBody {
                size,
                idle,
                in_use: size.saturating_sub(idle),
                max,
            },
            query_latency_ms: latency.latency_ms.into(),
            queries: latency.calls,
            operations: operations
                .into_iter()
                .map(|(operation, l)| OperationLatency {
                    operation,
                    calls: l.calls,
                    latency_ms: l.latency_ms.into(),
                })
                .collect(),
            rollup_ticks: ticks.calls,
            rollup_tick_ms: ticks.latency_ms.into(),
            source: source.into(),
        }))
    }

    /// Requests, errors and latency per bucket (role `admin`): `granularity` minute, hour
    /// or day (default by range: 1h minute, 24h hour, 7d hour, 30d day; minute only for
    /// windows up to 24 h); every bucket of the window, empty ones included, oldest first.
    #[oai(
        path = "/api/v1/analytics/health/timeseries",
        method = "get",
        tag = "ApiTags::Health"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn timeseries(
        &self,
        req: &Request,
        _auth: BearerAuth,
        /// `1h`, `24h` (default), `7d` or `30d` ending now; not with `from`/`to`.
        range: Query<Option<RangePreset>>,
        /// Window start (RFC 3339), with `to`; before `to`, at most 400 days before it.
        from: Query<Option<DateTime<Utc>>>,
        /// Window end (RFC 3339, exclusive), with `from`.
        to: Query<Option<DateTime<Utc>>>,
        /// Project slug (default `default`).
        #[oai(validator(pattern = r"^[a-z0-9][a-z0-9_-]{0,63}$"))]
        project: Query<Option<String>>,
        /// `minute` (windows up to 24 h), `hour` or `day`; default by range.
        granularity: Query<Option<GranularityParam>>,
    ) -> ApiResult<Json<HealthTimeseries>> {
        require_admin(req)?;
        let window = parse_window(range.0, from.0, to.0)?;
        let project = parse_project(project.0)?;
        let g = window
            .granularity(
                granularity.0.map(GranularityParam::as_str),
                &[Granularity::Minute, Granularity::Hour, Granularity::Day],
            )
            .map_err(ApiError::from)?;
        let health = self.health();
        let points = self
            .timed(health.timeseries(&project, &window, g))
            .await
            .map_err(ApiError::from)?;
        let source = self
            .timed(health.source(&project, window.range(), Some(g)))
            .await
            .map_err(ApiError::from)?;
        Ok(Json(HealthTimeseries {
            range: window.range().into(),
            project: project.to_string(),
            granularity: g.as_str().to_owned(),
            source: source.into(),
            points: points
                .into_iter()
                .map(|p| HealthPointBody {
                    ts: p.ts,
                    requests: p.figures.requests,
                    errors: p.figures.errors,
                    error_rate: p.figures.error_rate,
                    latency_ms: p.figures.latency_ms.into(),
                })
                .collect(),
        }))
    }
}
