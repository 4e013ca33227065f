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
use super::request::{default_limit, identity};
use super::responses::{ApiResult, Body, RateLimited};
use crate::auth::{Identity, Role};
use crate::error::ApiError;
use crate::ingest_stats::{LATE_AFTER, Outcome};
use crate::rate_limit::LimitKind;
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
    /// Dropped by the project's sampling (not stored).
    #[oai(rename = "sampled_out")]
    #[serde(rename = "sampled_out")]
    SampledOut,
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
    /// The event id (`null` when a rejected event had no string id).
    #[oai(nullable)]
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
    /// Events dropped by the project's sampling (not stored).
    pub sampled_out: u64,
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
    /// Pass as `cursor` for the next page; `null` on the last page.
    #[oai(nullable)]
    pub next_cursor: Option<String>,
}

fn header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// January 1st of `year` (UTC): the missing bound of a half-open time filter. -4000 and
/// 10001 lie beyond every RFC 3339 timestamp (4-digit years, offsets under a day) and within
/// what both stores can compare.
fn open_bound(year: i32) -> DateTime<Utc> {
    chrono::NaiveDate::from_ymd_opt(year, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map_or(DateTime::UNIX_EPOCH, |d| d.and_utc())
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

/// The reason a rejected event is counted under: the top-level field its first problem
/// names (`payload`, `occurred_at`, `project`, ...), bounded so labels stay few.
fn reason(field: &str) -> &'static str {
    let top = field.split(['.', '[']).next().unwrap_or("");
    match top {
        "id" => "id",
        "kind" => "kind",
        "occurred_at" => "occurred_at",
        "payload" => "payload",
        "properties" => "properties",
        "project" => "project",
        "correlation_id" => "correlation_id",
        "user_id" => "user_id",
        "session_id" => "session_id",
        "source" => "source",
        "sample_rate" => "sample_rate",
        "events" => "not_an_object",
        _ => "other",
    }
}

/// A fast generator for sampling draws (splitmix64), seeded per request from the operating
/// system.
struct Draws(u64);

impl Draws {
    fn seeded() -> Self {
        let mut b = [0u8; 8];
        let _ = getrandom::fill(&mut b);
        Self(u64::from_le_bytes(b))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl EventsApi {
    /// Refuses the request (429, nothing stored) when the caller's key or IP is over the
    /// project's limits.
    async fn check_rate_limits(
        &self,
        caller: &Identity,
        project: &ProjectId,
        settings: &analytics_core::project::ProjectSettings,
        ip: &str,
        events: usize,
    ) -> Result<(), ApiError> {
        let who = match caller {
            Identity::ApiKey { key_id, .. } => format!("key:{key_id}"),
            Identity::User { sub, .. } => format!("sub:{sub}"),
        };
        let limits = [
            (LimitKind::Key, settings.rate_limit.per_key_per_second, who),
            (
                LimitKind::Ip,
                settings.rate_limit.per_ip_per_minute,
                ip.to_owned(),
            ),
        ];
        for (kind, limit, who) in limits {
            let Some(limit) = limit else { continue };
            let v = self
                .state
                .rate_limiter
                .check(kind, &format!("{project}|{who}"), limit)
                .await;
            if !v.allowed {
                self.state
                    .ingest_stats
                    .add(project, Outcome::RateLimited, events as u64);
                let what = match kind {
                    LimitKind::Key => "per key per second",
                    LimitKind::Ip => "per client IP per minute",
                };
                return Err(ApiError::rate_limited(
                    format!("rate limited: project {project} allows {limit} requests {what}"),
                    v.limit,
                    v.remaining,
                    v.reset_secs,
                ));
            }
        }
        Ok(())
    }

    /// Gives events without a user a pseudonymous one and events without a session a derived
    /// one, then applies each project's sampling: dropped events are marked `sampled_out`
    /// and counted; kept ones carry the rate they were kept with.
    async fn sessions_and_sampling(
        &self,
        events: Vec<Event>,
        positions: Vec<usize>,
        results: &mut [EventResult],
        ip: &str,
        user_agent: &str,
    ) -> Result<(Vec<Event>, Vec<usize>, u64), ApiError> {
        let mut settings: std::collections::HashMap<
            ProjectId,
            std::sync::Arc<analytics_core::project::ProjectSettings>,
        > = std::collections::HashMap::new();
        let mut draws = Draws::seeded();
        let mut kept = Vec::with_capacity(events.len());
        let mut kept_at = Vec::with_capacity(events.len());
        let mut sampled_out = 0;
        for (mut e, i) in events.into_iter().zip(positions) {
            let s = match settings.get(&e.project) {
                Some(s) => s.clone(),
                None => {
                    let limits = self
                        .state
                        .age_limits
                        .limits(&*self.state.store, &e.project)
                        .await?;
                    settings.insert(e.project.clone(), limits.settings.clone());
                    limits.settings
                }
            };
            if e.user_id.is_none() && !ip.is_empty() {
                e.user_id = Some(self.state.user_id_key.user_id(
                    e.received_at.date_naive(),
                    &e.project,
                    ip,
                    user_agent,
                ));
            }
            if e.session_id.is_none()
                && let Some(user) = &e.user_id
            {
                let timeout = chrono::Duration::minutes(i64::from(s.session_timeout_minutes));
                e.session_id = Some(self.state.sessions.assign(
                    &e.project,
                    user,
                    e.occurred_at,
                    timeout,
                ));
            }
            let d = analytics_core::sampling::decide(&s.sampling, &s.sources, &e, draws.next());
            if d.keep {
                e.sample_rate *= d.rate;
                kept.push(e);
                kept_at.push(i);
            } else {
                results[i].status = ResultStatus::SampledOut;
                sampled_out += 1;
                self.state
                    .ingest_stats
                    .add(&e.project, Outcome::SampledOut, 1);
            }
        }
        Ok((kept, kept_at, sampled_out))
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
    ) -> ApiResult<IngestResponse, (Body, RateLimited)> {
        let caller = identity(req)?;
        let (project, fixed_project) = match caller {
            Identity::ApiKey { project, .. } => (project.clone(), true),
            id @ Identity::User { projects, .. } => {
                if !(id.has_role(Role::Admin) || id.has_role(Role::Ingest)) {
                    return Err(ApiError::forbidden("ingest needs the admin or ingest role").into());
                }
                // A token limited to projects writes to its first project by default.
                let default = ProjectId::default_project();
                match projects.as_deref() {
                    Some([only]) => (only.clone(), true),
                    Some(list) if !list.contains(&default) && !list.is_empty() => {
                        (list[0].clone(), false)
                    }
                    _ => (default, false),
                }
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
        let own = self
            .state
            .age_limits
            .limits(&*self.state.store, &project)
            .await
            .map_err(ApiError::from)?;
        let client_ip = req
            .remote_addr()
            .as_socket_addr()
            .map(|a| a.ip().to_string())
            .unwrap_or_default();
        self.check_rate_limits(caller, &project, &own.settings, &client_ip, inputs.len())
            .await?;
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
            let parsed = parsed.and_then(|e| {
                let refusal = if e.project.as_str() == ProjectId::INTERNAL {
                    Some("is reserved for the server's own telemetry")
                } else if !caller.may_access(&e.project) {
                    Some("this token may not write to that project")
                } else {
                    None
                };
                match refusal {
                    None => Ok(e),
                    Some(why) => Err(analytics_core::ValidationErrors(vec![
                        analytics_core::FieldError::new("project", why),
                    ])),
                }
            });
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
        let stats = &self.state.ingest_stats;
        for r in &results {
            if let Some(problem) = &r.error {
                stats.add(&project, Outcome::Rejected(reason(&problem.field)), 1);
            }
        }
        let mut rejected = (results.len() - valid.len()) as u64;
        let user_agent = header(req, "user-agent").unwrap_or("");
        let (valid, valid_at, sampled_out) = self
            .sessions_and_sampling(valid, valid_at, &mut results, &client_ip, user_agent)
            .await?;
        let mut duplicates = 0;
        if !valid.is_empty() {
            let projects: Vec<(ProjectId, bool)> = valid
                .iter()
                .map(|e| {
                    (
                        e.project.clone(),
                        e.received_at - e.occurred_at > LATE_AFTER,
                    )
                })
                .collect();
            let report = self.state.collector.submit(valid).await?;
            for ((outcome, i), (p, late)) in report.outcomes.into_iter().zip(valid_at).zip(projects)
            {
                match outcome {
                    Ok(WriteOutcome::Inserted) => {
                        stats.add(&p, Outcome::Accepted, 1);
                        if late {
                            stats.add(&p, Outcome::Late, 1);
                        }
                    }
                    Ok(WriteOutcome::Duplicate) => {
                        results[i].status = ResultStatus::Duplicate;
                        duplicates += 1;
                        stats.add(&p, Outcome::Duplicate, 1);
                    }
                    // The store refused this event alone; the rest is stored.
                    Err(e) => {
                        results[i].status = ResultStatus::Rejected;
                        results[i].error = Some(store_refusal(&e, i));
                        rejected += 1;
                        stats.add(&p, Outcome::Rejected("store"), 1);
                    }
                }
            }
        }
        let accepted = results.len() as u64 - rejected - duplicates - sampled_out;
        Ok(IngestResponse::Accepted(SerdeJson(IngestResponseBody {
            accepted,
            duplicates,
            rejected,
            sampled_out,
            results,
        })))
    }

    /// Lists raw events, newest first (role `admin`), of `project` (default `default`).
    /// Pass `next_cursor` of a page as `cursor` for the next one.
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
        /// Comma-separated event kinds: known kinds (`api_request`, `page_view`, ...) or
        /// custom names of lowercase letters, digits and `_.:-`.
        #[oai(validator(pattern = r"^[a-z][a-z0-9_.:-]{0,63}(,[a-z][a-z0-9_.:-]{0,63})*$"))]
        kind: Query<Option<String>>,
        /// Project slug.
        #[oai(validator(pattern = r"^[a-z0-9][a-z0-9_-]{0,63}$"))]
        project: Query<Option<String>>,
        /// Events at or after this instant (RFC 3339); must be before `to`.
        from: Query<Option<DateTime<Utc>>>,
        /// Events before this instant (RFC 3339).
        to: Query<Option<DateTime<Utc>>>,
        /// `payload.provider` equals.
        provider: Query<Option<String>>,
        /// `payload.route` equals.
        route: Query<Option<String>>,
        /// `payload.collection` equals.
        collection: Query<Option<String>>,
        /// `payload.status` equals.
        status: Query<Option<String>>,
        /// Correlation id equals.
        correlation_id: Query<Option<String>>,
        /// User id equals.
        user_id: Query<Option<String>>,
        /// Session id equals.
        session_id: Query<Option<String>>,
        /// Page size.
        #[oai(
            default = "default_limit",
            validator(minimum(value = "1"), maximum(value = "1000"))
        )]
        limit: Query<u32>,
        /// `next_cursor` of the previous page (opaque).
        #[oai(validator(pattern = r"^-?[0-9]{1,18}\.[0-9a-f]{32}$"))]
        cursor: Query<Option<String>>,
    ) -> ApiResult<Json<EventsPage>, super::responses::NotFound> {
        identity(req)?.require(Role::Admin)?;
        let kinds = match kind.0 {
            None => Vec::new(),
            Some(k) => k
                .split(',')
                .map(str::parse::<EventKind>)
                .collect::<Result<_, _>>()
                .map_err(|e| ApiError::invalid("kind", e.message))?,
        };
        // API.md: `project` defaults to `default` (so the server's own telemetry in the
        // internal project is listed only when asked for by name).
        let project = Some(
            project
                .0
                .map(ProjectId::parse)
                .transpose()
                .map_err(|e| ApiError::invalid("project", e.message))?
                .unwrap_or_else(ProjectId::default_project),
        );
        if let Some(p) = &project {
            super::request::visible(req, p, format_args!("project {p}"))?;
        }
        let range = match (from.0, to.0) {
            (None, None) => None,
            (f, t) => {
                let start = f.unwrap_or_else(|| open_bound(-4000));
                let end = t.unwrap_or_else(|| open_bound(10_001));
                Some(
                    TimeRange::new(start, end)
                        .map_err(|_| ApiError::invalid("from", "must be before `to`"))?,
                )
            }
        };
        let cursor = cursor
            .0
            .map(|c| c.parse::<Cursor>())
            .transpose()
            .map_err(|e| ApiError::invalid("cursor", e.message))?;
        let page_req =
            PageRequest::new(limit.0, cursor).map_err(|e| ApiError::invalid("limit", e.message))?;
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
        let started = std::time::Instant::now();
        let page = self.state.store.query_events(&filter, &page_req).await;
        self.state
            .record_store_call(analytics_core::health::StoreOperation::Read, started);
        let page = page?;
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
