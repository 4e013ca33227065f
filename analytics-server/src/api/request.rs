//! What every handler reads from an authenticated request: the caller, the admin role, the
//! `project` parameter and the default page size. One copy, used by every route module.

use analytics_core::ProjectId;
use poem::Request;

use crate::auth::{Identity, Role};
use crate::error::ApiError;

/// The caller the middleware authenticated (401 when there is none).
pub(crate) fn identity(req: &Request) -> Result<&Identity, ApiError> {
    req.extensions()
        .get::<Identity>()
        .ok_or_else(|| ApiError::unauthorized("authentication required"))
}

/// Requires the admin role (403 otherwise, also for API keys); the caller's JWT `sub`.
pub(crate) fn require_admin(req: &Request) -> Result<String, ApiError> {
    let id = identity(req)?;
    id.require(Role::Admin)?;
    match id {
        Identity::User { sub, .. } => Ok(sub.clone()),
        Identity::ApiKey { .. } => Err(ApiError::forbidden("this operation needs a JWT")),
    }
}

/// The signed-in user (any role) as a user id; 403 for an API key.
pub(crate) fn caller(req: &Request) -> Result<analytics_core::ids::UserId, ApiError> {
    match identity(req)? {
        Identity::User { sub, .. } => analytics_core::ids::UserId::parse(sub.clone())
            .map_err(|_| ApiError::forbidden("the token's subject is not a valid user id")),
        Identity::ApiKey { .. } => Err(ApiError::forbidden("this operation needs a JWT")),
    }
}

/// The `project` query parameter: `None` when absent or empty, 400 naming `project` when it
/// is not a slug.
pub(crate) fn project_param(p: Option<String>) -> Result<Option<ProjectId>, ApiError> {
    p.filter(|s| !s.is_empty())
        .map(ProjectId::parse)
        .transpose()
        .map_err(ApiError::from)
}

/// The page size of list routes when `limit` is not given.
pub(crate) fn default_limit() -> u32 {
    100
}

/// Requires a role that may read business figures (`admin` or `business_viewer`; 403
/// otherwise, also for API keys).
pub(crate) fn require_business(req: &Request) -> Result<(), ApiError> {
    let id = identity(req)?;
    if id.has_role(Role::BusinessViewer) {
        return Ok(());
    }
    id.require(Role::Admin)
}

/// The `project` parameter of the analytics routes (default `default`), which the caller's
/// token must cover: a project outside a `projects` claim is 404 (not 403), like every
/// route's.
pub(crate) fn readable_project(req: &Request, p: Option<String>) -> Result<ProjectId, ApiError> {
    let project = project_param(p)?.unwrap_or_else(ProjectId::default_project);
    visible(req, &project, format_args!("project {project}"))?;
    Ok(project)
}

/// 404 unless the caller's token covers `project` (what a token may not see does not
/// exist for it).
pub(crate) fn visible(
    req: &Request,
    project: &ProjectId,
    what: impl std::fmt::Display,
) -> Result<(), ApiError> {
    if identity(req)?.may_access(project) {
        Ok(())
    } else {
        Err(ApiError::new(
            poem::http::StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        ))
    }
}

/// The `project` filter of a list route for this caller: a named project must be visible
/// (404 otherwise); without one, a token limited to projects lists its first project only
/// (name `project` to list another), an unlimited token everything.
pub(crate) fn project_filter(
    req: &Request,
    p: Option<String>,
) -> Result<Option<ProjectId>, ApiError> {
    match project_param(p)? {
        Some(project) => {
            visible(req, &project, format_args!("project {project}"))?;
            Ok(Some(project))
        }
        None => Ok(match identity(req)? {
            crate::auth::Identity::User {
                projects: Some(list),
                ..
            } => Some(
                list.first()
                    .cloned()
                    .unwrap_or_else(ProjectId::default_project),
            ),
            _ => None,
        }),
    }
}

/// The page a list route asks for: `limit` and the opaque `cursor` (empty: the first page);
/// 400 naming `cursor` or `limit`.
pub(crate) fn page_request(
    limit: u32,
    cursor: Option<String>,
) -> Result<analytics_core::PageRequest, ApiError> {
    let cursor = cursor
        .filter(|c| !c.is_empty())
        .map(|c| c.parse::<analytics_core::Cursor>())
        .transpose()
        .map_err(|e| ApiError::invalid("cursor", e.message))?;
    analytics_core::PageRequest::new(limit, cursor)
        .map_err(|e| ApiError::invalid(e.field, e.message))
}
