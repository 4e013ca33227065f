//! The HTTP surface: the OpenAPI service (events + operations endpoints), Swagger UI, and the
//! observing middleware (request id, body limit, authentication, metrics, error shape).

pub mod alert_transfer;
pub mod alerts;
mod allow;
pub mod business;
mod cors;
pub mod dashboard;
mod events;
mod health;
mod ingest_body;
pub mod ml;
pub mod notifications;
mod ops;
pub mod projects;
mod request;
pub mod responses;

use std::sync::Arc;
use std::time::Instant;

use poem::endpoint::BoxEndpoint;
use poem::http::{HeaderValue, Method, StatusCode};
use poem::{Endpoint, EndpointExt, IntoResponse, Request, Response, Route};
use poem_openapi::{OpenApiService, Tags};

pub use events::{
    EventResult, EventsPage, FieldProblem, IngestRequest, IngestResponseBody, ResultStatus,
};
pub use health::{
    ApiHealth, DatabaseHealth, GranularityParam, HealthOverview, HealthPointBody, HealthTimeseries,
    RangePreset, RealtimeBody, RouteHealth,
};
pub use ops::{ChannelState, Readiness, ReadyResponse};
pub use responses::ApiResult;

pub(crate) use ingest_body::EventEntry;

use crate::auth::authenticate;
use crate::error::{ApiError, REQUEST_ID};
use crate::state::AppState;

/// The tags grouping endpoints in the spec.
#[derive(Debug, Tags)]
pub enum ApiTags {
    /// Alert configurations, the metric catalog and alert history (role admin).
    Alerts,
    /// The admin dashboard in one call (roles admin, business_viewer).
    Dashboard,
    /// Business analytics: revenue, orders, products, collections, the session funnel
    /// (roles admin, business_viewer).
    Business,
    /// Event ingestion and listing.
    Events,
    /// System health: request figures, endpoints, the store, timeseries (role admin).
    Health,
    /// ML pipelines: jobs, success rates, durations and costs per pipeline, provider and
    /// stage (role admin).
    Ml,
    /// In-app notifications and notification preferences (any signed-in user, for
    /// themselves; admin for anyone).
    Notifications,
    /// Health, readiness and metrics.
    Operations,
    /// Projects and ingest controls: settings, sampling, sources, API keys, ingest counters
    /// (role admin).
    Projects,
}

/// Every path the API serves (the spec test checks that each is documented).
pub const PATHS: &[&str] = &[
    "/api/v1/analytics/dashboard/summary",
    "/api/v1/analytics/alerts/metrics",
    "/api/v1/analytics/alerts/configs",
    "/api/v1/analytics/alerts/configs/export",
    "/api/v1/analytics/alerts/configs/import",
    "/api/v1/analytics/alerts/configs/{id}",
    "/api/v1/analytics/alerts/configs/{id}/audit",
    "/api/v1/analytics/alerts/history",
    "/api/v1/analytics/alerts/active",
    "/api/v1/analytics/alerts/{id}/acknowledge",
    "/api/v1/analytics/alerts/{id}/resolve",
    "/api/v1/analytics/alerts/acknowledge",
    "/api/v1/analytics/events",
    "/api/v1/analytics/notifications",
    "/api/v1/analytics/notifications/{id}/read",
    "/api/v1/analytics/notifications/read-all",
    "/api/v1/analytics/notifications/preferences",
    "/api/v1/analytics/notifications/preferences/users/{user}",
    "/api/v1/analytics/notifications/preferences/teams/{team}",
    "/api/v1/analytics/health/overview",
    "/api/v1/analytics/health/api",
    "/api/v1/analytics/health/database",
    "/api/v1/analytics/health/timeseries",
    "/api/v1/analytics/ml/overview",
    "/api/v1/analytics/ml/3d",
    "/api/v1/analytics/ml/descriptions",
    "/api/v1/analytics/ml/assets",
    "/api/v1/analytics/ml/providers",
    "/api/v1/analytics/business/overview",
    "/api/v1/analytics/business/sales",
    "/api/v1/analytics/business/products",
    "/api/v1/analytics/business/collections",
    "/api/v1/analytics/business/funnel",
    "/api/v1/analytics/projects",
    "/api/v1/analytics/projects/{id}",
    "/api/v1/analytics/projects/{id}/sources",
    "/api/v1/analytics/projects/{id}/sources/{name}",
    "/api/v1/analytics/projects/{id}/api-keys",
    "/api/v1/analytics/projects/{id}/api-keys/{key_id}",
    "/api/v1/analytics/projects/{id}/ingest-stats",
    "/livez",
    "/readyz",
    "/metrics",
];

/// Every operation of the API.
type Operations = (
    events::EventsApi,
    health::HealthApi,
    alerts::AlertsApi,
    alert_transfer::AlertTransferApi,
    dashboard::DashboardApi,
    ml::MlApi,
    business::BusinessApi,
    notifications::NotificationsApi,
    projects::ProjectsApi,
    ops::OpsApi,
);

/// The OpenAPI service of the endpoints.
pub fn openapi_service(state: AppState) -> OpenApiService<Operations, ()> {
    OpenApiService::new(
        (
            events::EventsApi {
                state: state.clone(),
            },
            health::HealthApi {
                state: state.clone(),
            },
            alerts::AlertsApi {
                state: state.clone(),
            },
            alert_transfer::AlertTransferApi {
                state: state.clone(),
            },
            dashboard::DashboardApi {
                state: state.clone(),
            },
            ml::MlApi {
                state: state.clone(),
            },
            business::BusinessApi {
                state: state.clone(),
            },
            notifications::NotificationsApi {
                state: state.clone(),
            },
            projects::ProjectsApi {
                state: state.clone(),
            },
            ops::OpsApi { state },
        ),
        "Analytics API",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "Event ingestion and querying of the analytics backend. Authenticate with \
         `Authorization: Bearer <JWT>` (roles admin, business_viewer, ingest) or, for ingest, \
         a project API key in `X-API-Key` or `Authorization: Bearer ak_...`.",
    )
}

/// The OpenAPI document as JSON (no state needed beyond a placeholder).
pub fn openapi_spec(state: AppState) -> String {
    openapi_service(state).spec()
}

/// The whole application endpoint.
pub fn build_app(state: AppState) -> BoxEndpoint<'static, Response> {
    let api = openapi_service(state.clone());
    let ui = api.swagger_ui();
    let spec = api.spec_endpoint();
    let route = Route::new()
        .nest("/console", crate::console::assets())
        .nest("/docs", ui)
        .at("/openapi.json", poem::get(spec))
        .nest("/", api);
    let allow = Arc::new(allow::AllowTable::of::<Operations>());
    route
        .around(crate::console::with_index)
        .around(move |ep, req| allow::with_allow(ep, req, allow.clone()))
        .around(move |ep, req| observe(ep, req, state.clone()))
        .boxed()
}

/// The low-cardinality route label of a path.
pub fn route_template(path: &str) -> &'static str {
    match path {
        "/api/v1/analytics/events" => "/api/v1/analytics/events",
        "/api/v1/analytics/health/overview" => "/api/v1/analytics/health/overview",
        "/api/v1/analytics/health/api" => "/api/v1/analytics/health/api",
        "/api/v1/analytics/health/database" => "/api/v1/analytics/health/database",
        "/api/v1/analytics/health/timeseries" => "/api/v1/analytics/health/timeseries",
        "/api/v1/analytics/dashboard/summary" => "/api/v1/analytics/dashboard/summary",
        "/livez" => "/livez",
        "/readyz" => "/readyz",
        "/metrics" => "/metrics",
        "/openapi.json" => "/openapi.json",
        p if p == "/docs" || p.starts_with("/docs/") => "/docs",
        p => PATHS
            .iter()
            .copied()
            .find(|known| !known.contains('{') && *known == p)
            .or_else(|| alert_route(p))
            .or_else(|| notification_route(p))
            .or_else(|| crate::console::route_template(p))
            .or_else(|| project_route(p))
            .unwrap_or("unmatched"),
    }
}

/// The template of a projects path (slugs, names and ids replaced), if it is one.
fn project_route(path: &str) -> Option<&'static str> {
    let rest = path.strip_prefix("/api/v1/analytics/projects")?;
    let segments: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
    Some(match segments.as_slice() {
        [""] => "/api/v1/analytics/projects",
        [id] if !id.is_empty() => "/api/v1/analytics/projects/{id}",
        [id, "sources"] if !id.is_empty() => "/api/v1/analytics/projects/{id}/sources",
        [id, "sources", n] if !id.is_empty() && !n.is_empty() => {
            "/api/v1/analytics/projects/{id}/sources/{name}"
        }
        [id, "api-keys"] if !id.is_empty() => "/api/v1/analytics/projects/{id}/api-keys",
        [id, "api-keys", k] if !id.is_empty() && !k.is_empty() => {
            "/api/v1/analytics/projects/{id}/api-keys/{key_id}"
        }
        [id, "ingest-stats"] if !id.is_empty() => "/api/v1/analytics/projects/{id}/ingest-stats",
        _ => return None,
    })
}

/// The template of a notifications path (ids and names replaced), if it is one.
fn notification_route(path: &str) -> Option<&'static str> {
    let rest = path.strip_prefix("/api/v1/analytics/notifications")?;
    let segments: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
    Some(match segments.as_slice() {
        [""] => "/api/v1/analytics/notifications",
        ["read-all"] => "/api/v1/analytics/notifications/read-all",
        ["preferences"] => "/api/v1/analytics/notifications/preferences",
        ["preferences", "users", u] if !u.is_empty() => {
            "/api/v1/analytics/notifications/preferences/users/{user}"
        }
        ["preferences", "teams", t] if !t.is_empty() => {
            "/api/v1/analytics/notifications/preferences/teams/{team}"
        }
        [id, "read"] if !id.is_empty() => "/api/v1/analytics/notifications/{id}/read",
        _ => return None,
    })
}

/// The template of an alerting path (ids replaced by `{id}`), if it is one.
fn alert_route(path: &str) -> Option<&'static str> {
    let rest = path.strip_prefix("/api/v1/analytics/alerts/")?;
    let segments: Vec<&str> = rest.split('/').collect();
    Some(match segments.as_slice() {
        ["metrics"] => "/api/v1/analytics/alerts/metrics",
        ["configs"] => "/api/v1/analytics/alerts/configs",
        ["history"] => "/api/v1/analytics/alerts/history",
        ["active"] => "/api/v1/analytics/alerts/active",
        ["acknowledge"] => "/api/v1/analytics/alerts/acknowledge",
        ["configs", "export"] => "/api/v1/analytics/alerts/configs/export",
        ["configs", "import"] => "/api/v1/analytics/alerts/configs/import",
        ["configs", id] if !id.is_empty() => "/api/v1/analytics/alerts/configs/{id}",
        ["configs", id, "audit"] if !id.is_empty() => "/api/v1/analytics/alerts/configs/{id}/audit",
        [id, "acknowledge"] if !id.is_empty() => "/api/v1/analytics/alerts/{id}/acknowledge",
        [id, "resolve"] if !id.is_empty() => "/api/v1/analytics/alerts/{id}/resolve",
        _ => return None,
    })
}

fn request_id_of(req: &Request) -> String {
    req.headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

async fn observe<E: Endpoint>(ep: Arc<E>, req: Request, state: AppState) -> poem::Result<Response> {
    let started = Instant::now();
    let request_id = request_id_of(&req);
    let method = crate::metrics::method_label(req.method());
    let route = route_template(req.uri().path());
    let mut resp = REQUEST_ID
        .scope(request_id.clone(), async {
            match handle(&*ep, req, &state, route).await {
                Ok(r) => r,
                Err(e) => e.into_response(),
            }
        })
        .await;
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    let status = resp.status().as_u16();
    let elapsed = started.elapsed();
    state
        .metrics
        .observe_request(method, route, status, elapsed.as_secs_f64());
    tracing::info!(
        method, route, status, request_id = %request_id,
        elapsed_ms = elapsed.as_secs_f64() * 1e3, "request"
    );
    Ok(resp)
}

/// Refuses request targets and header sections over the limits with the one error shape
/// (hyper's own, far higher limits answer without a body).
fn check_head(req: &Request, limits: &crate::state::HttpLimits) -> Result<(), ApiError> {
    let uri_len = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if uri_len > limits.max_uri_bytes {
        return Err(ApiError::new(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!(
                "the request target has {uri_len} bytes; at most {} are accepted",
                limits.max_uri_bytes
            ),
        ));
    }
    let headers = req.headers();
    if headers.len() > limits.max_headers {
        return Err(ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!(
                "the request has {} headers; at most {} are accepted",
                headers.len(),
                limits.max_headers
            ),
        ));
    }
    let bytes: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if bytes > limits.max_header_bytes {
        return Err(ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!(
                "the request headers have {bytes} bytes; at most {} are accepted",
                limits.max_header_bytes
            ),
        ));
    }
    Ok(())
}

async fn handle<E: Endpoint>(
    ep: &E,
    mut req: Request,
    state: &AppState,
    route: &str,
) -> Result<Response, ApiError> {
    check_head(&req, &state.limits)?;
    // Browser ingest: the preflight carries no credentials; the real request's origin is
    // checked against its project once the caller is known.
    let ingest_origin = (route == "/api/v1/analytics/events")
        .then(|| cors::origin(&req))
        .flatten();
    if let Some(origin) = &ingest_origin
        && cors::is_preflight(&req)
    {
        return Ok(cors::preflight(state, origin).await);
    }
    let ingest_origin = ingest_origin.filter(|_| *req.method() == Method::POST);
    // Credentials first: an unauthenticated client never gets its body read (or buffered).
    if route.starts_with("/api/") {
        // Mounted with the host's authentication: its identity, never a token check.
        let identity = match req.extensions_mut().remove::<crate::embed::HostIdentity>() {
            Some(host) => host.0,
            None => authenticate(&req, &state.jwt, &*state.store, &state.api_keys).await?,
        };
        match identity {
            Some(identity) => {
                // API keys only ingest, whichever header carries them.
                let ingest = route == "/api/v1/analytics/events" && *req.method() == Method::POST;
                if !ingest && matches!(identity, crate::auth::Identity::ApiKey { .. }) {
                    return Err(ApiError::forbidden(
                        "api keys may only ingest events; this operation needs a JWT",
                    ));
                }
                req.extensions_mut().insert(identity);
            }
            None => return Err(ApiError::unauthorized("authentication required")),
        }
    }
    let limit = state.limits.max_body_bytes;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request body exceeds {limit} bytes"),
        )
        .with_field("body")
    };
    if matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH) {
        let declared = req
            .headers()
            .get(poem::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        // Read with the limit enforced as bytes arrive (chunked bodies included), within
        // the body read timeout.
        let timeout = state.limits.body_read_timeout;
        let read = tokio::time::timeout(timeout, req.take_body().into_bytes_limit(limit));
        match read.await {
            Ok(Ok(bytes)) => req.set_body(bytes),
            Ok(Err(poem::error::ReadBodyError::PayloadTooLarge)) => return Err(too_large()),
            Ok(Err(e)) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    format!("could not read the request body: {e}"),
                ));
            }
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "body_timeout",
                    format!(
                        "the request body did not arrive within {} s",
                        timeout.as_secs_f64()
                    ),
                )
                .with_field("body"));
            }
        }
    }
    let cors_project = ingest_origin.as_ref().and_then(|_| {
        req.extensions()
            .get::<crate::auth::Identity>()
            .map(cors::ingest_project)
    });
    let result = match ep.call(req).await {
        Ok(r) => Ok(r.into_response()),
        Err(e) => {
            // Keep the matched route on error answers too (the embedding recorder reads it).
            let pattern = e.data::<poem::PathPattern>().cloned();
            let mut resp = ApiError::from_poem(e).into_response();
            if let Some(p) = pattern {
                resp.set_data(p);
            }
            Ok(resp)
        }
    };
    match (ingest_origin, cors_project) {
        (Some(origin), Some(project)) => {
            let mut resp = result.unwrap_or_else(IntoResponse::into_response);
            cors::allow_origin(&mut resp, state, &project, &origin).await;
            Ok(resp)
        }
        _ => result,
    }
}
