//! The HTTP surface: the OpenAPI service (events + operations endpoints), Swagger UI, and the
//! observing middleware (request id, body limit, authentication, metrics, error shape).

mod events;
mod ingest_body;
mod ops;

use std::sync::Arc;
use std::time::Instant;

use poem::endpoint::BoxEndpoint;
use poem::http::{HeaderValue, Method, StatusCode};
use poem::{Endpoint, EndpointExt, IntoResponse, Request, Response, Route};
use poem_openapi::{OpenApiService, Tags};

pub use events::{
    EventResult, EventsPage, FieldProblem, IngestRequest, IngestResponseBody, ResultStatus,
};
pub use ops::{Readiness, ReadyResponse};

pub(crate) use ingest_body::EventEntry;

use crate::auth::authenticate;
use crate::error::{ApiError, REQUEST_ID};
use crate::state::AppState;

/// The tags grouping endpoints in the spec.
#[derive(Debug, Tags)]
pub enum ApiTags {
    /// Event ingestion and listing.
    Events,
    /// Health, readiness and metrics.
    Operations,
}

/// Every path the API serves (the spec test checks that each is documented).
pub const PATHS: [&str; 4] = ["/api/v1/analytics/events", "/livez", "/readyz", "/metrics"];

/// The OpenAPI service of the endpoints.
pub fn openapi_service(state: AppState) -> OpenApiService<(events::EventsApi, ops::OpsApi), ()> {
    OpenApiService::new(
        (
            events::EventsApi {
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
        .nest("/docs", ui)
        .at("/openapi.json", spec)
        .nest("/", api);
    route
        .around(move |ep, req| observe(ep, req, state.clone()))
        .boxed()
}

/// The low-cardinality route label of a path.
pub fn route_template(path: &str) -> &'static str {
    match path {
        "/api/v1/analytics/events" => "/api/v1/analytics/events",
        "/livez" => "/livez",
        "/readyz" => "/readyz",
        "/metrics" => "/metrics",
        "/openapi.json" => "/openapi.json",
        p if p == "/docs" || p.starts_with("/docs/") => "/docs",
        _ => "unmatched",
    }
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
    let method = req.method().clone();
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
        .observe_request(method.as_str(), route, status, elapsed.as_secs_f64());
    tracing::info!(
        %method, route, status, request_id = %request_id,
        elapsed_ms = elapsed.as_secs_f64() * 1e3, "request"
    );
    Ok(resp)
}

async fn handle<E: Endpoint>(
    ep: &E,
    mut req: Request,
    state: &AppState,
    route: &str,
) -> Result<Response, ApiError> {
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
        // Read with the limit enforced as bytes arrive (chunked bodies included).
        match req.take_body().into_bytes_limit(limit).await {
            Ok(bytes) => req.set_body(bytes),
            Err(poem::error::ReadBodyError::PayloadTooLarge) => return Err(too_large()),
            Err(e) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    format!("could not read the request body: {e}"),
                ));
            }
        }
    }
    if route.starts_with("/api/") {
        match authenticate(&req, &state.jwt, &*state.store, &state.api_keys).await? {
            Some(identity) => {
                req.extensions_mut().insert(identity);
            }
            None => return Err(ApiError::unauthorized("authentication required")),
        }
    }
    ep.call(req)
        .await
        .map(IntoResponse::into_response)
        .map_err(ApiError::from_poem)
}
