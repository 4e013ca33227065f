//! `POST /api/v1/analytics/events` (ingest, answered after commit) and
//! `GET /api/v1/analytics/events` (filtered, cursor-paginated listing).

use analytics_core::ports::{EventFilter, WriteOutcome};
use analytics_core::{
    Clock, CorrelationId, Cursor, Event, EventKind, IngestContext, PageRequest, ProjectId,
    SystemClock, TimeRange,
};
use chrono::{DateTime, Utc};
use poem::Request;
use poem::http::StatusCode;
use poem_openapi::auth::{ApiKey, Bearer};
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi, SecurityScheme};
use serde::Serialize;

use super::ApiTags;
use super::ingest_body::{EventEntry, IngestBody, SerdeJson};
use crate::auth::{Identity, Role};
use crate::error::ApiError;
use crate::state::AppState;

/// The event endpoints.
#[derive(Debug)]
pub struct EventsApi {
    pub(crate) state: AppState,
}

/// A JWT (HS256) as `Authorization: Bearer <token>`; ingest also accepts a project API key
/// as `Bearer ak_...`. Verified by the middleware before the handler runs; this type only
/// documents the scheme.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT")]
#[allow(dead_code)] // extracted only to document the scheme
pub(crate) struct BearerAuth(Bearer);

/// A project API key in `X-API-Key` (ingest only).
#[derive(SecurityScheme)]
#[oai(ty = "api_key", key_name = "X-API-Key", key_in = "header")]
#[allow(dead_code)] // extracted only to document the scheme
pub(crate) struct ApiKeyAuth(ApiKey);

/// Either credential accepted by ingest.
#[derive(SecurityScheme)]
#[allow(dead_code)] // extracted only to document the scheme
pub(crate) enum IngestAuth {
    /// JWT or `ak_` key as a bearer token.
    Bearer(BearerAuth),
    /// `X-API-Key`.
    ApiKey(ApiKeyAuth),
}

// Hand-written so that credentials can never be printed.
impl std::fmt::Debug for BearerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerAuth(***)")
    }
}

impl std::fmt::Debug for ApiKeyAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKeyAuth(***)")
    }
}

impl std::fmt::Debug for IngestAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IngestAuth(***)")
    }
}

/// An ingest request (the documented schema; the handler reads it as
/// [`IngestBody`](super::ingest_body::IngestBody), with the same shape).
#[derive(Debug, Object)]
pub struct IngestRequest {
    /// At most 1000 events: objects with `id` (UUID, recommended for deduplication),
    /// `kind`, `occurred_at` (RFC 3339), `payload`, `properties`, `correlation_id`,
    /// `user_id`, `session_id`, `source`, `sample_rate`, `project`.
    pub events: Vec<serde_json::Value>,
}

/// What happened to one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Serialize)]
#[oai(rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum ResultStatus {
    /// Stored now.
    Accepted,
    /// Already stored (same id in the same project).
    Duplicate,
    /// Invalid; see `error`.
    Rejected,
}

/// A field-level problem.
#[derive(Debug, Clone, Object, Serialize)]
pub struct FieldProblem {
    /// Dotted field path.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// The outcome of one event, in request order.
#[derive(Debug, Clone, Object, Serialize)]
pub struct EventResult {
    /// The event id (absent when a rejected event had no valid id).
    pub id: Option<String>,
    /// Outcome.
    pub status: ResultStatus,
    /// For rejected events, the first problem.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<FieldProblem>,
}

/// The answer to an ingest request, sent only after the accepted events are committed.
#[derive(Debug, Clone, Object, Serialize)]
pub struct IngestResponseBody {
    /// Events stored now.
    pub accepted: u64,
    /// Events already stored.
    pub duplicates: u64,
    /// Invalid events (not stored).
    pub rejected: u64,
    /// Per-event outcomes, in request order.
    pub results: Vec<EventResult>,
}

/// Ingest answers.
#[derive(Debug, ApiResponse)]
pub enum IngestResponse {
    /// Every valid event is committed.
    #[oai(status = 202)]
    Accepted(SerdeJson<IngestResponseBody>),
}

/// One page of events.
#[derive(Debug, Object)]
pub struct EventsPage {
    /// Events, newest first.
    pub events: Vec<serde_json::Value>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

fn header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

fn identity(req: &Request) -> Result<&Identity, ApiError> {
    req.extensions()
        .get::<Identity>()
        .ok_or_else(|| ApiError::unauthorized("authentication required"))
}

fn parse_time(field: &str, v: Option<String>) -> Result<Option<DateTime<Utc>>, ApiError> {
    v.map(|s| {
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| ApiError::invalid(field, "must be an RFC 3339 timestamp"))
    })
    .transpose()
}

fn non_empty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.is_empty())
}

/// The per-event problem of event `i` that the store refused on its own. An `Invalid`
/// names the field (without the store's `events[N].` batch position: the result is already
/// this event's); anything else is logged and answered generically.
fn store_refusal(e: &analytics_core::Error, i: usize) -> FieldProblem {
    match e {
        analytics_core::Error::Invalid { field, reason } => FieldProblem {
            field: match field.split_once("].") {
                Some((position, rest)) if position.starts_with("events[") => rest.to_owned(),
                _ => field.clone(),
            },
            message: reason.clone(),
        },
        other => {
            tracing::error!(error = %other, event = i, "the store refused an event");
            FieldProblem {
                field: format!("events[{i}]"),
                message: "could not be stored (the other events are not affected; the \
                          details are logged under the request id)"
                    .to_owned(),
            }
        }
    }
}

#[OpenApi]
impl EventsApi {
    /// Ingests a batch of events (API key, or JWT with role `admin` or `ingest`).
    ///
    /// Answers 202 only after the valid events are committed; invalid events are reported
    /// per event and do not fail the batch. 503 with `Retry-After` when the store is
    /// unavailable or the ingest queue is full.
    #[oai(
        path = "/api/v1/analytics/events",
        method = "post",
        tag = "ApiTags::Events"
    )]
    async fn ingest(
        &self,
        req: &Request,
        _auth: IngestAuth,
        body: IngestBody,
    ) -> poem::Result<IngestResponse> {
        let (project, fixed_project) = match identity(req)? {
            Identity::ApiKey { project, .. } => (project.clone(), true),
            id @ Identity::User { .. } => {
                if !(id.has_role(Role::Admin) || id.has_role(Role::Ingest)) {
                    return Err(ApiError::forbidden("ingest needs the admin or ingest role").into());
                }
                (ProjectId::default_project(), false)
            }
        };
        let inputs = body.events;
        let max = self.state.limits.max_events;
        if inputs.len() > max {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_many_events",
                format!("at most {max} events per request, got {}", inputs.len()),
            )
            .with_field("events")
            .into());
        }
        let correlation = header(req, "x-correlation-id")
            .or_else(|| header(req, "x-request-id"))
            .and_then(|v| CorrelationId::parse(v).ok());
        let age_limits = self
            .state
            .age_limits
            .for_request(&*self.state.store, &project, fixed_project, &inputs)
            .await
            .map_err(ApiError::from)?;
        let ctx = IngestContext {
            now: SystemClock.now(),
            default_project: &project,
            fixed_project,
            request_correlation_id: correlation.as_ref(),
            limits: &self.state.limits.events,
            age_limits: &age_limits,
        };

        let mut results = Vec::with_capacity(inputs.len());
        let mut valid: Vec<Event> = Vec::new();
        let mut valid_at = Vec::new();
        for (i, entry) in inputs.into_iter().enumerate() {
            let (raw_id, parsed) = match entry {
                EventEntry::Object(input) => {
                    let raw_id = match &input.id {
                        Some(serde_json::Value::String(s)) => Some(s.clone()),
                        _ => None,
                    };
                    (raw_id, Event::parse(*input, &ctx))
                }
                EventEntry::NotObject => (
                    None,
                    Err(analytics_core::ValidationErrors(vec![
                        analytics_core::FieldError::new(
                            format!("events[{i}]"),
                            "must be an object",
                        ),
                    ])),
                ),
            };
            match parsed {
                Ok(e) => {
                    results.push(EventResult {
                        id: Some(e.id.to_string()),
                        status: ResultStatus::Accepted,
                        error: None,
                    });
                    valid_at.push(i);
                    valid.push(e);
                }
                Err(errs) => results.push(EventResult {
                    id: raw_id,
                    status: ResultStatus::Rejected,
                    error: errs.first().map(|f| FieldProblem {
                        field: f.field.clone(),
                        message: f.message.clone(),
                    }),
                }),
            }
        }
        let mut rejected = (results.len() - valid.len()) as u64;
        let mut duplicates = 0;
        if !valid.is_empty() {
            let report = self
                .state
                .collector
                .submit(valid)
                .await
                .map_err(ApiError::from)?;
            for (outcome, i) in report.outcomes.into_iter().zip(valid_at) {
                match outcome {
                    Ok(WriteOutcome::Inserted) => {}
                    Ok(WriteOutcome::Duplicate) => {
                        results[i].status = ResultStatus::Duplicate;
                        duplicates += 1;
                    }
                    // The store refused this event alone; the rest is stored.
                    Err(e) => {
                        results[i].status = ResultStatus::Rejected;
                        results[i].error = Some(store_refusal(&e, i));
                        rejected += 1;
                    }
                }
            }
        }
        let accepted = results.len() as u64 - rejected - duplicates;
        Ok(IngestResponse::Accepted(SerdeJson(IngestResponseBody {
            accepted,
            duplicates,
            rejected,
            results,
        })))
    }

    /// Lists raw events, newest first (role `admin`). `kind` takes a comma-separated list;
    /// `from`/`to` are RFC 3339; `limit` is 1..=1000 (default 100); pass `next_cursor` of
    /// a page as `cursor` for the next one.
    #[allow(clippy::too_many_arguments)]
    #[oai(
        path = "/api/v1/analytics/events",
        method = "get",
        tag = "ApiTags::Events"
    )]
    async fn list(
        &self,
        req: &Request,
        _auth: BearerAuth,
        kind: Query<Option<String>>,
        project: Query<Option<String>>,
        from: Query<Option<String>>,
        to: Query<Option<String>>,
        provider: Query<Option<String>>,
        route: Query<Option<String>>,
        collection: Query<Option<String>>,
        status: Query<Option<String>>,
        correlation_id: Query<Option<String>>,
        user_id: Query<Option<String>>,
        session_id: Query<Option<String>>,
        limit: Query<Option<String>>,
        cursor: Query<Option<String>>,
    ) -> poem::Result<Json<EventsPage>> {
        identity(req)?.require(Role::Admin)?;
        let kinds = match non_empty(kind.0) {
            None => Vec::new(),
            Some(k) => k
                .split(',')
                .map(|s| s.trim().parse::<EventKind>())
                .collect::<Result<_, _>>()
                .map_err(|e| ApiError::invalid("kind", e.message))?,
        };
        let project = non_empty(project.0)
            .map(ProjectId::parse)
            .transpose()
            .map_err(|e| ApiError::invalid("project", e.message))?;
        let from = parse_time("from", non_empty(from.0))?;
        let to = parse_time("to", non_empty(to.0))?;
        let range = match (from, to) {
            (None, None) => None,
            (f, t) => {
                let start = f.unwrap_or(DateTime::UNIX_EPOCH);
                let end = t.unwrap_or_else(|| {
                    DateTime::from_timestamp(253_402_300_799, 0).unwrap_or(DateTime::UNIX_EPOCH)
                });
                Some(
                    TimeRange::new(start, end)
                        .map_err(|_| ApiError::invalid("from", "must be before `to`"))?,
                )
            }
        };
        let limit = match non_empty(limit.0) {
            None => 100,
            Some(l) => l
                .parse::<u32>()
                .map_err(|_| ApiError::invalid("limit", "must be from 1 to 1000"))?,
        };
        let cursor = non_empty(cursor.0)
            .map(|c| c.parse::<Cursor>())
            .transpose()
            .map_err(|e| ApiError::invalid("cursor", e.message))?;
        let page_req =
            PageRequest::new(limit, cursor).map_err(|e| ApiError::invalid("limit", e.message))?;
        let filter = EventFilter {
            project,
            kinds,
            range,
            provider: non_empty(provider.0),
            route: non_empty(route.0),
            collection: non_empty(collection.0),
            status: non_empty(status.0),
            correlation_id: non_empty(correlation_id.0),
            user_id: non_empty(user_id.0),
            session_id: non_empty(session_id.0),
        };
        let page = self
            .state
            .store
            .query_events(&filter, &page_req)
            .await
            .map_err(ApiError::from)?;
        let events = page
            .items
            .iter()
            .map(serde_json::to_value)
            .collect::<Result<_, _>>()
            .map_err(ApiError::internal)?;
        Ok(Json(EventsPage {
            events,
            next_cursor: page.next_cursor.map(|c| c.to_string()),
        }))
    }
}
