//! CORS for browser ingest: `POST /api/v1/analytics/events` from an origin listed in the
//! project's `allowed_origins` (`*` allows any). A preflight carries no credentials, so it is
//! answered for an origin that some project allows; the real request is then checked
//! against its own project's list, and only an allowed origin gets the
//! `Access-Control-Allow-Origin` header (a browser refuses the answer otherwise).

use analytics_core::ProjectId;
use poem::http::{HeaderValue, StatusCode, header};
use poem::{Request, Response};

use crate::auth::Identity;
use crate::state::AppState;

/// The request headers a browser may send to ingest.
const ALLOWED_HEADERS: &str =
    "authorization, content-type, x-api-key, x-request-id, x-correlation-id";

fn allows(origins: &[String], origin: &str) -> bool {
    origins.iter().any(|o| o == "*" || o == origin)
}

/// The `Origin` of a request, when it has one.
pub(crate) fn origin(req: &Request) -> Option<String> {
    req.headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Whether `req` is a CORS preflight.
pub(crate) fn is_preflight(req: &Request) -> bool {
    req.method() == poem::http::Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// The answer to a preflight of ingest from `origin`: 204 with the CORS headers when some
/// project allows the origin, 204 without them (the browser then refuses) otherwise.
pub(crate) async fn preflight(state: &AppState, origin: &str) -> Response {
    let allowed = match state.store.list_projects().await {
        Ok(projects) => projects
            .iter()
            .any(|p| allows(&p.settings.allowed_origins, origin)),
        Err(e) => {
            tracing::warn!(error = %e, "cors preflight: projects unavailable");
            false
        }
    };
    let mut resp = Response::builder().status(StatusCode::NO_CONTENT).finish();
    let h = resp.headers_mut();
    h.insert(header::VARY, HeaderValue::from_static("origin"));
    if allowed && let Ok(v) = HeaderValue::from_str(origin) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("POST"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOWED_HEADERS),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
    }
    resp
}

/// The project an ingest request writes to by default (what its origin is checked against).
pub(crate) fn ingest_project(identity: &Identity) -> ProjectId {
    match identity {
        Identity::ApiKey { project, .. } => project.clone(),
        Identity::User { projects, .. } => projects
            .as_deref()
            .and_then(<[ProjectId]>::first)
            .cloned()
            .unwrap_or_else(ProjectId::default_project),
    }
}

/// Adds `Access-Control-Allow-Origin` to an ingest answer when `project` allows `origin`.
pub(crate) async fn allow_origin(
    resp: &mut Response,
    state: &AppState,
    project: &ProjectId,
    origin: &str,
) {
    resp.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("origin"));
    let Ok(limits) = state.age_limits.limits(&*state.store, project).await else {
        return;
    };
    if allows(&limits.settings.allowed_origins, origin)
        && let Ok(v) = HeaderValue::from_str(origin)
    {
        resp.headers_mut()
            .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
    }
}
