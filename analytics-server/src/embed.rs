//! Embedding in a poem service: the analytics routes as one endpoint a host app nests at any
//! prefix ([`AnalyticsRoutes`]), and a middleware recording every request of the host app
//! as an `api_request` event ([`RecordRequests`]). See `docs/EMBEDDING.md`.
//!
//! ```no_run
//! # async fn host(state: analytics_server::AppState) {
//! use analytics_server::embed::{AnalyticsRoutes, RecordRequests};
//! use analytics_core::ProjectId;
//! use poem::{EndpointExt, Route};
//!
//! let app = Route::new()
//!     // .at("/api/v1/products/:id", ...) the host's own routes
//!     .nest("/api/v1/analytics", AnalyticsRoutes::new(state.clone()))
//!     .with(RecordRequests::new(state.collector.clone(), ProjectId::parse("shop").unwrap()));
//! # }
//! ```

use std::sync::Arc;
use std::time::Instant;

use analytics_core::{
    AgeLimits, AnalyticsEventCollector, Clock, CorrelationId, Event, EventInput, EventLimits,
    IngestContext, ProjectId, SystemClock,
};
use poem::PathPattern;
use poem::endpoint::BoxEndpoint;
use poem::http::uri::PathAndQuery;
use poem::http::{HeaderValue, Uri};
use poem::{Endpoint, IntoResponse, Middleware, Request, Response};
use serde_json::{Value, json};

use crate::auth::Identity;
use crate::state::AppState;

/// The header carrying the correlation id of a request (FR-7).
pub const CORRELATION_HEADER: &str = "x-correlation-id";

/// The route recorded for a request no route of the host matched (a bounded placeholder:
/// the raw path is never recorded; event routes are templates starting with `/`).
pub const UNMATCHED_ROUTE: &str = "/{unmatched}";

/// The prefix the analytics operations are declared under; [`AnalyticsRoutes`] serves them
/// under whatever prefix the host nests it at.
const API_PREFIX: &str = "/api/v1/analytics";

/// An identity the host established, handed to the analytics routes in place of their own
/// token check (only [`AnalyticsRoutes`] in [`AuthMode::Host`] sets it, so no client and no
/// other code path can).
#[derive(Debug, Clone)]
pub(crate) struct HostIdentity(pub(crate) Option<Identity>);

/// Who authenticates the requests of the mounted analytics routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMode {
    /// Ours: JWTs signed with the state's secret and project API keys (as the binary).
    #[default]
    Own,
    /// The host's: a host middleware in front of the routes puts an
    /// [`Identity`](crate::Identity) into the request's extensions
    /// (`req.extensions_mut().insert(identity)`); a request without one gets 401.
    Host,
}

/// The analytics API (every `/api/v1/analytics/...` operation, with its authentication,
/// limits, error shape and metrics) as one endpoint that a host app nests at any prefix:
/// `Route::new().nest("/api/v1/analytics", AnalyticsRoutes::new(state))` serves
/// `/api/v1/analytics/health/api`, `.nest("/analytics", ...)` serves
/// `/analytics/health/api`. Operations, console and docs of the standalone binary stay
/// out (the host has its own).
pub struct AnalyticsRoutes {
    inner: Arc<BoxEndpoint<'static, Response>>,
    auth: AuthMode,
}

impl std::fmt::Debug for AnalyticsRoutes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnalyticsRoutes")
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl AnalyticsRoutes {
    /// The routes over `state`, authenticating with our own JWTs and API keys.
    pub fn new(state: AppState) -> Self {
        Self {
            inner: Arc::new(crate::api::build_app(state)),
            auth: AuthMode::Own,
        }
    }

    /// Chooses who authenticates (see [`AuthMode`]).
    #[must_use]
    pub fn auth(mut self, auth: AuthMode) -> Self {
        self.auth = auth;
        self
    }
}

impl Endpoint for AnalyticsRoutes {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Response> {
        // The host's nest stripped its prefix; the operations are declared under ours.
        let host_pattern = req.data::<PathPattern>().map(|p| p.0.clone());
        let path_and_query = req.uri().path_and_query().map_or("/", PathAndQuery::as_str);
        let inner_path = format!("{API_PREFIX}{path_and_query}");
        let template = crate::api::route_template(inner_path.split('?').next().unwrap_or(""));
        let mut parts = std::mem::take(req.uri_mut()).into_parts();
        parts.path_and_query =
            Some(PathAndQuery::try_from(inner_path).map_err(poem::error::BadRequest)?);
        *req.uri_mut() = Uri::from_parts(parts).map_err(poem::error::BadRequest)?;
        // The inner router computes its own pattern from scratch.
        req.extensions_mut().remove::<PathPattern>();
        if self.auth == AuthMode::Host {
            let identity = req.extensions_mut().remove::<Identity>();
            req.extensions_mut().insert(HostIdentity(identity));
        } else {
            req.extensions_mut().remove::<HostIdentity>();
        }
        let mut resp = self.inner.call(req).await?;
        // Report the operation under the host's prefix with its parameter names
        // (`/analytics/alerts/configs/{id}`), or the bounded placeholder.
        if let Some(host) = host_pattern {
            let rest = template.strip_prefix(API_PREFIX).unwrap_or(UNMATCHED_ROUTE);
            let host = host.trim_end_matches('/');
            resp.set_data(PathPattern(format!("{host}{rest}").into()));
        }
        Ok(resp)
    }
}

/// A poem middleware recording every request of the host app as an `api_request` event of
/// one project: method, route template (the pattern poem matched, e.g.
/// `/api/v1/products/:id`; [`UNMATCHED_ROUTE`] when none did, never the raw path), status
/// and latency, with the correlation id taken from `X-Correlation-Id` or generated and set
/// on the request (for the handlers) and on the response (not on a `poem::Error`, which is
/// passed on unchanged for the host's error handling).
///
/// Events go through the collector's fire-and-forget path
/// ([`AnalyticsEventCollector::record`]): the host's request never waits for the store and
/// never fails because of it; when the queue is full the event is dropped and counted in
/// [`RecordRequests::dropped`].
#[derive(Debug, Clone)]
pub struct RecordRequests {
    inner: Arc<Recorder>,
}

#[derive(Debug)]
struct Recorder {
    collector: Arc<AnalyticsEventCollector>,
    project: ProjectId,
    source: Option<String>,
    limits: EventLimits,
    dropped: std::sync::atomic::AtomicU64,
}

impl RecordRequests {
    /// Records into `project` through `collector` (e.g. an [`AppState`]'s).
    pub fn new(collector: Arc<AnalyticsEventCollector>, project: ProjectId) -> Self {
        Self {
            inner: Arc::new(Recorder {
                collector,
                project,
                source: None,
                limits: EventLimits::default(),
                dropped: Default::default(),
            }),
        }
    }

    /// Names the reporting component (`source` of the events).
    #[must_use]
    pub fn source(self, source: impl Into<String>) -> Self {
        let r = &self.inner;
        Self {
            inner: Arc::new(Recorder {
                collector: r.collector.clone(),
                project: r.project.clone(),
                source: Some(source.into()),
                limits: r.limits.clone(),
                dropped: Default::default(),
            }),
        }
    }

    /// Events not recorded so far (queue full or collector stopped).
    pub fn dropped(&self) -> u64 {
        self.inner
            .dropped
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl<E: Endpoint> Middleware<E> for RecordRequests {
    type Output = RecordRequestsEndpoint<E>;

    fn transform(&self, ep: E) -> Self::Output {
        RecordRequestsEndpoint {
            ep,
            recorder: self.inner.clone(),
        }
    }
}

/// The endpoint [`RecordRequests`] wraps around the host app.
#[derive(Debug)]
pub struct RecordRequestsEndpoint<E> {
    ep: E,
    recorder: Arc<Recorder>,
}

/// The request's valid `X-Correlation-Id`, else a fresh one.
fn correlation_of(req: &Request, now: chrono::DateTime<chrono::Utc>) -> CorrelationId {
    req.headers()
        .get(CORRELATION_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| CorrelationId::parse(v).ok())
        .unwrap_or_else(|| CorrelationId::generate(now))
}

impl<E: Endpoint> Endpoint for RecordRequestsEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Response> {
        let started = Instant::now();
        let at = SystemClock.now();
        let correlation = correlation_of(&req, at);
        let header = HeaderValue::from_str(correlation.as_str()).ok();
        if let Some(v) = &header {
            req.headers_mut().insert(CORRELATION_HEADER, v.clone());
        }
        let method = crate::metrics::method_label(req.method());
        let result = self.ep.call(req).await;
        let (status, route, result) = match result {
            Ok(out) => {
                let mut resp = out.into_response();
                let route = resp.data::<PathPattern>().map(|p| p.0.clone());
                if let Some(v) = header {
                    resp.headers_mut().insert(CORRELATION_HEADER, v);
                }
                (resp.status().as_u16(), route, Ok(resp))
            }
            Err(e) => {
                let route = e.data::<PathPattern>().map(|p| p.0.clone());
                (e.status().as_u16(), route, Err(e))
            }
        };
        let latency_ms = started.elapsed().as_secs_f64() * 1e3;
        let r = &self.recorder;
        // Through the event validation like any ingested event (bounded route, status and
        // latency); an event it refuses is dropped, never the request.
        let input = EventInput {
            kind: Some(Value::from("api_request")),
            occurred_at: Some(Value::from(at.to_rfc3339())),
            source: r.source.clone().map(Value::from),
            payload: Some(json!({
                "method": method,
                "route": route.as_deref().unwrap_or(UNMATCHED_ROUTE),
                "status": status,
                "latency_ms": latency_ms,
            })),
            ..EventInput::default()
        };
        let ctx = IngestContext {
            now: at,
            default_project: &r.project,
            fixed_project: true,
            request_correlation_id: Some(&correlation),
            limits: &r.limits,
            age_limits: &AgeLimits::default(),
        };
        let recorded = Event::parse(input, &ctx)
            .map_err(|e| e.to_string())
            .and_then(|event| r.collector.record(event).map_err(|e| e.to_string()));
        if let Err(e) = recorded {
            r.dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::debug!(error = %e, "api_request event dropped");
        }
        result
    }
}
