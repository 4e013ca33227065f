//! Projects and ingest controls (role admin): projects and their settings, event sources,
//! API keys, and the per-project ingest counters. A token with a `projects` claim sees only
//! those projects; any other is 404, never 403.

use std::collections::BTreeMap;

use analytics_core::project::{ApiKeyRecord, ApiKeySecret, Project, ProjectSettings};
use analytics_core::sampling::{
    SamplingSettings, SamplingStrategy, SamplingWindow, SourceSampling, SourceSettings,
};
use analytics_core::{Clock, ProjectId, SystemClock};
use chrono::{DateTime, Utc};
use poem::Request;
use poem::http::StatusCode;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use serde::Deserialize;
use uuid::Uuid;

use super::ApiTags;
use super::alerts::StrictJson;
use super::events::BearerAuth;
use super::request::{identity, require_admin};
use super::responses::{ApiResult, Body, Conflict, NotFound};
use crate::error::ApiError;
use crate::state::AppState;

/// The project endpoints.
#[derive(Debug)]
pub struct ProjectsApi {
    pub(crate) state: AppState,
}

/// How a project samples at ingest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Deserialize)]
#[oai(rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum StrategyBody {
    /// Everything is kept.
    None,
    /// An independent draw per event.
    Random,
    /// By a hash of the session (else user) id: whole sessions are kept or dropped.
    Deterministic,
    /// Everything inside `windows`, random sampling outside.
    TimeWindow,
}

impl From<StrategyBody> for SamplingStrategy {
    fn from(s: StrategyBody) -> Self {
        match s {
            StrategyBody::None => Self::None,
            StrategyBody::Random => Self::Random,
            StrategyBody::Deterministic => Self::Deterministic,
            StrategyBody::TimeWindow => Self::TimeWindow,
        }
    }
}

impl From<SamplingStrategy> for StrategyBody {
    fn from(s: SamplingStrategy) -> Self {
        match s {
            SamplingStrategy::None => Self::None,
            SamplingStrategy::Random => Self::Random,
            SamplingStrategy::Deterministic => Self::Deterministic,
            SamplingStrategy::TimeWindow => Self::TimeWindow,
        }
    }
}

/// A daily UTC window of `time_window` sampling.
#[derive(Debug, Clone, Object, Deserialize)]
pub struct WindowBody {
    /// Start, `HH:MM` UTC.
    #[oai(validator(pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"))]
    pub start: String,
    /// End (exclusive), `HH:MM` UTC; before `start` wraps past midnight.
    #[oai(validator(pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"))]
    pub end: String,
}

/// Ingest rate limits; `null`: no limit of that kind.
#[derive(Debug, Clone, Object)]
pub struct RateLimitBody {
    /// Ingest requests per second per API key (or token subject).
    #[oai(nullable)]
    pub per_key_per_second: Option<u32>,
    /// Ingest requests per minute per client IP.
    #[oai(nullable)]
    pub per_ip_per_minute: Option<u32>,
}

/// Sampling settings.
#[derive(Debug, Clone, Object)]
pub struct SamplingBody {
    /// `none | random | deterministic | time_window`.
    pub strategy: StrategyBody,
    /// The project's rate, in `(0, 1]`.
    pub rate: f64,
    /// `time_window` only: the windows kept whole.
    pub windows: Vec<WindowBody>,
    /// Per event kind rates (they win over sources and the project).
    pub kinds: BTreeMap<String, f64>,
}

/// A project's settings (every answer carries all of them).
#[derive(Debug, Clone, Object)]
pub struct SettingsBody {
    /// Days raw events are kept.
    pub retention_days: u32,
    /// The project's currency (ISO 4217), `null` when unset.
    #[oai(nullable)]
    pub currency: Option<String>,
    /// The inactivity gap that ends a derived session.
    pub session_timeout_minutes: u32,
    /// Origins allowed to ingest from browsers.
    pub allowed_origins: Vec<String>,
    /// Ingest rate limits.
    pub rate_limit: RateLimitBody,
    /// Sampling at ingest.
    pub sampling: SamplingBody,
}

impl From<&ProjectSettings> for SettingsBody {
    fn from(s: &ProjectSettings) -> Self {
        Self {
            retention_days: s.retention_days,
            currency: s.currency.clone(),
            session_timeout_minutes: s.session_timeout_minutes,
            allowed_origins: s.allowed_origins.clone(),
            rate_limit: RateLimitBody {
                per_key_per_second: s.rate_limit.per_key_per_second,
                per_ip_per_minute: s.rate_limit.per_ip_per_minute,
            },
            sampling: SamplingBody {
                strategy: s.sampling.strategy.into(),
                rate: s.sampling.rate,
                windows: s
                    .sampling
                    .windows
                    .iter()
                    .map(|w| WindowBody {
                        start: w.start.clone(),
                        end: w.end.clone(),
                    })
                    .collect(),
                kinds: s.sampling.kinds.clone(),
            },
        }
    }
}

/// Rate limits to change: the fields named replace the current ones.
#[derive(Debug, Clone, Default, Object, Deserialize)]
#[serde(default)]
pub struct RateLimitPatch {
    /// Requests per second per key; `null` removes the limit.
    #[oai(nullable, validator(minimum(value = "1")))]
    pub per_key_per_second: MaybeUndefined<u32>,
    /// Requests per minute per IP; `null` removes the limit.
    #[oai(nullable, validator(minimum(value = "1")))]
    pub per_ip_per_minute: MaybeUndefined<u32>,
}

/// Sampling to change: the fields named replace the current ones.
#[derive(Debug, Clone, Default, Object, Deserialize)]
#[serde(default)]
pub struct SamplingPatch {
    /// `none | random | deterministic | time_window`.
    #[oai(nullable)]
    pub strategy: Option<StrategyBody>,
    /// The project's rate, in `(0, 1]`.
    #[oai(
        nullable,
        validator(minimum(value = "0", exclusive), maximum(value = "1"))
    )]
    pub rate: Option<f64>,
    /// `time_window` only.
    #[oai(nullable)]
    pub windows: Option<Vec<WindowBody>>,
    /// Per event kind rates (replaces the whole map).
    #[oai(nullable)]
    pub kinds: Option<BTreeMap<String, f64>>,
}

/// Settings to change (`PATCH`) or to start from (`POST`): only the fields named change.
#[derive(Debug, Clone, Default, Object, Deserialize)]
#[serde(default)]
pub struct SettingsPatch {
    /// Days raw events are kept (1 to 400).
    #[oai(nullable, validator(minimum(value = "1"), maximum(value = "400")))]
    pub retention_days: Option<u32>,
    /// ISO 4217 code; `null` unsets it.
    #[oai(nullable, validator(pattern = r"^[A-Z]{3}$"))]
    pub currency: MaybeUndefined<String>,
    /// Minutes of inactivity that end a derived session (1 to 1440).
    #[oai(nullable, validator(minimum(value = "1"), maximum(value = "1440")))]
    pub session_timeout_minutes: Option<u32>,
    /// Origins allowed to ingest from browsers (replaces the list): `*` or
    /// `scheme://host[:port]`.
    #[oai(
        nullable,
        validator(max_items = 100, pattern = r"^(\*|https?://[^/\s]+)$")
    )]
    pub allowed_origins: Option<Vec<String>>,
    /// Rate limits.
    #[oai(nullable)]
    pub rate_limit: Option<RateLimitPatch>,
    /// Sampling.
    #[oai(nullable)]
    pub sampling: Option<SamplingPatch>,
}

fn windows(w: Vec<WindowBody>) -> Vec<SamplingWindow> {
    w.into_iter()
        .map(|w| SamplingWindow {
            start: w.start,
            end: w.end,
        })
        .collect()
}

fn merge_maybe<T>(into: &mut Option<T>, patch: MaybeUndefined<T>) {
    match patch {
        MaybeUndefined::Undefined => {}
        MaybeUndefined::Null => *into = None,
        MaybeUndefined::Value(v) => *into = Some(v),
    }
}

impl SettingsPatch {
    /// `settings` with the named fields replaced, checked (400 naming the field).
    fn apply(self, mut s: ProjectSettings) -> Result<ProjectSettings, ApiError> {
        if let Some(v) = self.retention_days {
            s.retention_days = v;
        }
        merge_maybe(&mut s.currency, self.currency);
        if let Some(v) = self.session_timeout_minutes {
            s.session_timeout_minutes = v;
        }
        if let Some(v) = self.allowed_origins {
            s.allowed_origins = v;
        }
        if let Some(r) = self.rate_limit {
            merge_maybe(&mut s.rate_limit.per_key_per_second, r.per_key_per_second);
            merge_maybe(&mut s.rate_limit.per_ip_per_minute, r.per_ip_per_minute);
        }
        if let Some(p) = self.sampling {
            let sampling: &mut SamplingSettings = &mut s.sampling;
            if let Some(v) = p.strategy {
                sampling.strategy = v.into();
            }
            if let Some(v) = p.rate {
                sampling.rate = v;
            }
            if let Some(v) = p.windows {
                sampling.windows = windows(v);
            }
            if let Some(v) = p.kinds {
                sampling.kinds = v;
            }
        }
        // The legacy column mirrors the strategy's rate.
        s.sample_rate = match s.sampling.strategy {
            SamplingStrategy::None => 1.0,
            _ => s.sampling.rate,
        };
        s.validate().map_err(first_problem)?;
        Ok(s)
    }
}

fn first_problem(e: analytics_core::ValidationErrors) -> ApiError {
    match e.first() {
        Some(f) => ApiError::invalid(f.field.clone(), f.message.clone()),
        None => ApiError::invalid("settings", "is not valid"),
    }
}

/// A project.
#[derive(Debug, Clone, Object)]
pub struct ProjectBody {
    /// Its slug.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Every setting.
    pub settings: SettingsBody,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

impl From<&Project> for ProjectBody {
    fn from(p: &Project) -> Self {
        Self {
            id: p.id.to_string(),
            name: p.name.clone(),
            settings: (&p.settings).into(),
            created_at: p.created_at,
        }
    }
}

/// `POST projects`.
#[derive(Debug, Clone, Object, Deserialize)]
pub struct ProjectCreate {
    /// The slug (lowercase letters, digits, `_` and `-`; starts with a letter or digit).
    #[oai(validator(pattern = r"^[a-z0-9][a-z0-9_-]{0,63}$"))]
    pub id: String,
    /// Display name.
    #[oai(validator(min_length = 1, max_length = 200))]
    pub name: String,
    /// Settings different from the defaults.
    #[serde(default)]
    #[oai(nullable)]
    pub settings: Option<SettingsPatch>,
}

/// `PATCH projects/{id}`.
#[derive(Debug, Clone, Default, Object, Deserialize)]
#[serde(default)]
pub struct ProjectPatch {
    /// Settings to change (the name is fixed at creation).
    #[oai(nullable)]
    pub settings: Option<SettingsPatch>,
}

/// Projects.
#[derive(Debug, Clone, Object)]
pub struct ProjectList {
    /// By id.
    pub items: Vec<ProjectBody>,
}

/// A source's sampling overrides.
#[derive(Debug, Clone, Object, Deserialize)]
pub struct SourceSamplingBody {
    /// The source's rate, in `(0, 1]`; `null`: the project's.
    #[oai(
        nullable,
        validator(minimum(value = "0", exclusive), maximum(value = "1"))
    )]
    #[serde(default)]
    pub rate: Option<f64>,
    /// Per event kind rates of this source (they win over the project's).
    #[serde(default)]
    #[oai(default)]
    pub kinds: BTreeMap<String, f64>,
}

/// An event source (matched on the events' `source`).
#[derive(Debug, Clone, Object)]
pub struct EventSourceBody {
    /// The name events carry in `source`.
    pub name: String,
    /// A description.
    #[oai(nullable)]
    pub description: Option<String>,
    /// Sampling overrides; `null`: the project's.
    #[oai(nullable)]
    pub sampling: Option<SourceSamplingBody>,
}

fn event_source_body(name: &str, s: &SourceSettings) -> EventSourceBody {
    EventSourceBody {
        name: name.to_owned(),
        description: s.description.clone(),
        sampling: s.sampling.as_ref().map(|x| SourceSamplingBody {
            rate: x.rate,
            kinds: x.kinds.clone(),
        }),
    }
}

/// `POST sources`.
#[derive(Debug, Clone, Object, Deserialize)]
pub struct SourceCreate {
    /// The name events carry in `source`.
    #[oai(validator(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"))]
    pub name: String,
    /// A description.
    #[serde(default)]
    #[oai(nullable, validator(max_length = 500))]
    pub description: Option<String>,
    /// Sampling overrides.
    #[serde(default)]
    #[oai(nullable)]
    pub sampling: Option<SourceSamplingBody>,
}

/// `PATCH sources/{name}`: the fields named replace the current ones.
#[derive(Debug, Clone, Default, Object, Deserialize)]
#[serde(default)]
pub struct SourcePatch {
    /// A description; `null` removes it.
    #[oai(nullable, validator(max_length = 500))]
    pub description: MaybeUndefined<String>,
    /// Sampling overrides; `null` removes them.
    #[oai(nullable)]
    pub sampling: MaybeUndefined<SourceSamplingBody>,
}

/// Sources of a project.
#[derive(Debug, Clone, Object)]
pub struct SourceList {
    /// By name.
    pub items: Vec<EventSourceBody>,
}

/// `POST api-keys`.
#[derive(Debug, Clone, Object, Deserialize)]
pub struct KeyCreate {
    /// A label.
    #[oai(validator(min_length = 1, max_length = 200))]
    pub name: String,
}

/// A new key: the only answer that carries its secret.
#[derive(Debug, Clone, Object)]
pub struct KeyCreated {
    /// Its id.
    pub id: Uuid,
    /// Its label.
    pub name: String,
    /// The public prefix shown in listings.
    pub prefix: String,
    /// The key; shown in this answer only (the server keeps its SHA-256).
    pub secret: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// A key in a listing (no secret).
#[derive(Debug, Clone, Object)]
pub struct KeyBody {
    /// Its id.
    pub id: Uuid,
    /// Its label.
    pub name: String,
    /// The public prefix.
    pub prefix: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// When it last authenticated a request (to within the key cache's TTL), `null` if never.
    #[oai(nullable)]
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it was revoked, `null` while active.
    #[oai(nullable)]
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<&ApiKeyRecord> for KeyBody {
    fn from(k: &ApiKeyRecord) -> Self {
        Self {
            id: k.id,
            name: k.name.clone(),
            prefix: k.prefix.clone(),
            created_at: k.created_at,
            last_used_at: k.last_used_at,
            revoked_at: k.revoked_at,
        }
    }
}

/// A project's keys.
#[derive(Debug, Clone, Object)]
pub struct KeyList {
    /// Oldest first.
    pub items: Vec<KeyBody>,
}

/// Rejected events by reason.
#[derive(Debug, Clone, Object)]
pub struct RejectedBody {
    /// All rejected events.
    pub total: u64,
    /// By reason (the field the first problem named, or `store`).
    pub by_reason: BTreeMap<String, u64>,
}

/// A project's ingest counters.
#[derive(Debug, Clone, Object)]
pub struct IngestStatsBody {
    /// The project.
    pub project: String,
    /// What the counters cover: `from` is when this server process started counting.
    pub range: super::health::RangeBody,
    /// Events stored.
    pub accepted: u64,
    /// Events already stored (same id).
    pub duplicates: u64,
    /// Events refused.
    pub rejected: RejectedBody,
    /// Events dropped by sampling.
    pub sampled_out: u64,
    /// Events of requests refused by a rate limit.
    pub rate_limited: u64,
    /// Accepted events whose `occurred_at` was more than an hour before they arrived.
    pub late: u64,
}

/// `201` answers.
#[derive(Debug, ApiResponse)]
pub enum ProjectCreated {
    /// Created.
    #[oai(status = 201)]
    Created(Json<ProjectBody>),
}

/// `201` answers.
#[derive(Debug, ApiResponse)]
pub enum SourceCreated {
    /// Created.
    #[oai(status = 201)]
    Created(Json<EventSourceBody>),
}

/// `201` answers.
#[derive(Debug, ApiResponse)]
pub enum KeyCreatedResponse {
    /// Created; the secret is in this answer only.
    #[oai(status = 201)]
    Created(Json<KeyCreated>),
}

/// `204` answers.
#[derive(Debug, ApiResponse)]
pub enum Deleted {
    /// Deleted.
    #[oai(status = 204)]
    NoContent,
}

fn not_found(what: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("{what} not found"),
    )
}

fn source_sampling(b: SourceSamplingBody) -> Result<SourceSampling, ApiError> {
    let s = SourceSampling {
        rate: b.rate,
        kinds: b.kinds,
    };
    let mut errors = Vec::new();
    s.check("sampling.", &mut errors);
    match errors.into_iter().next() {
        Some(f) => Err(ApiError::invalid(f.field, f.message)),
        None => Ok(s),
    }
}

impl ProjectsApi {
    /// The project named by a path, which the caller must see (404 otherwise, also when the
    /// slug is malformed).
    async fn visible(&self, req: &Request, id: &str) -> Result<Project, ApiError> {
        require_admin(req)?;
        let project = ProjectId::parse(id).map_err(|_| not_found(format!("project {id}")))?;
        if !identity(req)?.may_access(&project) {
            return Err(not_found(format!("project {project}")));
        }
        Ok(self.state.store.get_project(&project).await?)
    }

    /// Stores new settings and forgets this replica's cached copy (other replicas within
    /// the settings cache's TTL).
    async fn save(
        &self,
        project: &Project,
        settings: &ProjectSettings,
    ) -> Result<Project, ApiError> {
        let saved = self
            .state
            .store
            .update_project_settings(&project.id, settings)
            .await?;
        self.state.age_limits.forget(&project.id).await;
        Ok(saved)
    }
}

#[OpenApi]
impl ProjectsApi {
    /// Creates a project (role `admin`); 409 when the slug is taken.
    #[oai(
        path = "/api/v1/analytics/projects",
        method = "post",
        tag = "ApiTags::Projects"
    )]
    async fn create(
        &self,
        req: &Request,
        _auth: BearerAuth,
        body: StrictJson<ProjectCreate>,
    ) -> ApiResult<ProjectCreated, (Body, NotFound, Conflict)> {
        require_admin(req)?;
        let body = body.0;
        let id =
            ProjectId::parse(body.id.as_str()).map_err(|e| ApiError::invalid("id", e.message))?;
        if id.as_str() == ProjectId::INTERNAL {
            return Err(
                ApiError::invalid("id", "is reserved for the server's own telemetry").into(),
            );
        }
        if !identity(req)?.may_access(&id) {
            return Err(not_found(format!("project {id}")).into());
        }
        let settings = body
            .settings
            .unwrap_or_default()
            .apply(ProjectSettings::default())
            .map_err(|e| match e.field.clone() {
                Some(f) => ApiError::invalid(format!("settings.{f}"), e.message),
                None => e,
            })?;
        let project = Project {
            id,
            name: body.name,
            settings,
            created_at: analytics_core::time::truncate_to_micros(SystemClock.now()),
        };
        self.state.store.create_project(&project).await?;
        self.state.age_limits.forget(&project.id).await;
        Ok(ProjectCreated::Created(Json((&project).into())))
    }

    /// Lists the projects the caller may see (role `admin`), by id.
    #[oai(
        path = "/api/v1/analytics/projects",
        method = "get",
        tag = "ApiTags::Projects"
    )]
    async fn list(&self, req: &Request, _auth: BearerAuth) -> ApiResult<Json<ProjectList>> {
        require_admin(req)?;
        let caller = identity(req)?;
        let items = self
            .state
            .store
            .list_projects()
            .await?
            .iter()
            .filter(|p| caller.may_access(&p.id) && p.id.as_str() != ProjectId::INTERNAL)
            .map(ProjectBody::from)
            .collect();
        Ok(Json(ProjectList { items }))
    }

    /// One project with its settings (role `admin`).
    #[oai(
        path = "/api/v1/analytics/projects/:id",
        method = "get",
        tag = "ApiTags::Projects"
    )]
    async fn get(
        &self,
        req: &Request,
        _auth: BearerAuth,
        /// The project slug.
        id: Path<String>,
    ) -> ApiResult<Json<ProjectBody>, NotFound> {
        let project = self.visible(req, &id.0).await?;
        Ok(Json((&project).into()))
    }

    /// Changes a project's name or settings (role `admin`): only the fields named change.
    #[oai(
        path = "/api/v1/analytics/projects/:id",
        method = "patch",
        tag = "ApiTags::Projects"
    )]
    async fn patch(
        &self,
        req: &Request,
        _auth: BearerAuth,
        /// The project slug.
        id: Path<String>,
        body: StrictJson<ProjectPatch>,
    ) -> ApiResult<Json<ProjectBody>, (Body, NotFound)> {
        let project = self.visible(req, &id.0).await?;
        let settings = body
            .0
            .settings
            .unwrap_or_default()
            .apply(project.settings.clone())
            .map_err(|e| match e.field.clone() {
                Some(f) => ApiError::invalid(format!("settings.{f}"), e.message),
                None => e,
            })?;
        let saved = self.save(&project, &settings).await?;
        Ok(Json((&saved).into()))
    }

    /// Deletes a project and all its data: events, rollups, alert configurations and
    /// history, sources and API keys (role `admin`).
    #[oai(
        path = "/api/v1/analytics/projects/:id",
        method = "delete",
        tag = "ApiTags::Projects"
    )]
    async fn delete(
        &self,
        req: &Request,
        _auth: BearerAuth,
        /// The project slug.
        id: Path<String>,
    ) -> ApiResult<Deleted, NotFound> {
        let project = self.visible(req, &id.0).await?;
        let keys = self.state.store.list_api_keys(&project.id).await?;
        self.state.store.delete_project(&project.id).await?;
        for k in &keys {
            self.state.api_keys.forget(&k.hash).await;
        }
        self.state.age_limits.forget(&project.id).await;
        Ok(Deleted::NoContent)
    }

    /// A project's event sources (role `admin`), by name.
    #[oai(
        path = "/api/v1/analytics/projects/:id/sources",
        method = "get",
        tag = "ApiTags::Projects"
    )]
    async fn list_sources(
        &self,
        req: &Request,
        _auth: BearerAuth,
        /// The project slug.
        id: Path<String>,
    ) -> ApiResult<Json<SourceList>, NotFound> {
        let project = self.visible(req, &id.0).await?;
        let items = project
            .settings
            .sources
            .iter()
            .map(|(n, s)| event_source_body(n, s))
            .collect();
        Ok(Json(SourceList { items }))
    }

    /// Adds an event source with optional sampling overrides (role `admin`); 409 when the
    /// name is taken.
    #[oai(
        path = "/api/v1/analytics/projects/:id/sources",
        method = "post",
        tag = "ApiTags::Projects"
    )]
    async fn create_source(
        &self,
        req: &Request,
        _auth: BearerAuth,
        /// The project slug.
        id: Path<String>,
        body: StrictJson<SourceCreate>,
    ) -> ApiResult<SourceCreated, (Body, NotFound, Conflict)> {
        let project = self.visible(req, &id.0).await?;
        let body = body.0;
        if project.settings.sources.contains_key(&body.name) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("source {} already exists", body.name),
            )
            .into());
        }
        let source = SourceSettings {
            description: body.description,
            sampling: body.sampling.map(source_sampling).transpose()?,
        };
        let mut settings = project.settings.clone();
        settings.sources.insert(body.name.clone(), source.clone());
        self.save(&project, &settings).await?;
        Ok(SourceCreated::Created(Json(event_source_body(
            &body.name, &source,
        ))))
    }

    /// Changes an event source (role `admin`): only the fields named change.
    #[oai(
        path = "/api/v1/analytics/projects/:id/sources/:name",
        method = "patch",
        tag = "ApiTags::Projects"
    )]
    async fn patch_source(
        &self,
        req: &Request,
        _auth: BearerAuth,
        /// The project slug.
        id: Path<String>,
        /// The source name.
        name: Path<String>,
        body: StrictJson<SourcePatch>,
    ) -> ApiResult<Json<EventSourceBody>, (Body, NotFound)> {
        let project = self.visible(req, &id.0).await?;
        let mut settings = project.settings.clone();
        let source = settings
            .sources
            .get_mut(&name.0)
            .ok_or_else(|| not_found(format!("source {}", name.0)))?;
        let body = body.0;
        merge_maybe(&mut source.description, body.description);
        match body.sampling {
            MaybeUndefined::Undefined => {}
            MaybeUndefined::Null => source.sampling = None,
            MaybeUndefined::Value(v) => source.sampling = Some(source_sampling(v)?),
        }
        let answer = event_source_body(&name.0, source);
        self.save(&project, &settings).await?;
        Ok(Json(answer))
    }

    /// Removes an event source (role `admin`); its events keep their `source`.
    #[oai(
        path = "/api/v1/analytics/projects/:id/sources/:name",
        method = "delete",
        tag = "ApiTags::Projects"
    )]
    async fn delete_source(
        &self,
        req: &Request,
        _auth: BearerAuth,
        /// The project slug.
        id: Path<String>,
        /// The source name.
        name: Path<String>,
    ) -> ApiResult<Deleted, NotFound> {
        let project = self.visible(req, &id.0).await?;
        let mut settings = project.settings.clone();
        if settings.sources.remove(&name.0).is_none() {
            return Err(not_found(format!("source {}", name.0)).into());
        }
        self.save(&project, &settings).await?;
        Ok(Deleted::NoContent)
    }

    /// A project's API keys (role `admin`), oldest first, without secrets.
    #[oai(
        path = "/api/v1/analytics/projects/:id/api-keys",
        method = "get",
        tag = "ApiTags::Projects"
    )]
    async fn list_keys(
        &self,
        req: &Request,
        _auth: BearerAuth,
        /// The project slug.
        id: Path<String>,
    ) -> ApiResult<Json<KeyList>, NotFound> {
        let project = self.visible(req, &id.0).await?;
        let items = self
            .state
            .store
            .list_api_keys(&project.id)
            .await?
            .iter()
            .map(KeyBody::from)
            .collect();
        Ok(Json(KeyList { items }))
    }

    /// Creates an API key (role `admin`); the secret is in this answer only.
    #[oai(
        path = "/api/v1/analytics/projects/:id/api-keys",
        method = "post",
        tag = "ApiTags::Projects"
    )]
    async fn create_key(
        &self,
        req: &Request,
        _auth: BearerAuth,
        /// The project slug.
        id: Path<String>,
        body: StrictJson<KeyCreate>,
    ) -> ApiResult<KeyCreatedResponse, (Body, NotFound)> {
        let project = self.visible(req, &id.0).await?;
        let secret = ApiKeySecret::generate()?;
        let record = ApiKeyRecord {
            id: Uuid::new_v4(),
            project: project.id,
            name: body.0.name,
            prefix: secret.prefix(),
            hash: secret.hash(),
            created_at: analytics_core::time::truncate_to_micros(SystemClock.now()),
            revoked_at: None,
            last_used_at: None,
        };
        self.state.store.create_api_key(&record).await?;
        Ok(KeyCreatedResponse::Created(Json(KeyCreated {
            id: record.id,
            name: record.name,
            prefix: record.prefix,
            secret: secret.expose().to_owned(),
            created_at: record.created_at,
        })))
    }

    /// Revokes an API key (role `admin`). This replica refuses it at once; other replicas
    /// within the key cache's TTL (`ANALYTICS_API_KEY_CACHE_SECS`, 30 s by default).
    #[oai(
        path = "/api/v1/analytics/projects/:id/api-keys/:key_id",
        method = "delete",
        tag = "ApiTags::Projects"
    )]
    async fn revoke_key(
        &self,
        req: &Request,
        _auth: BearerAuth,
        /// The project slug.
        id: Path<String>,
        /// The key id.
        key_id: Path<String>,
    ) -> ApiResult<Deleted, NotFound> {
        let project = self.visible(req, &id.0).await?;
        let key_id =
            Uuid::parse_str(&key_id.0).map_err(|_| not_found(format!("api key {}", key_id.0)))?;
        let key = self
            .state
            .store
            .list_api_keys(&project.id)
            .await?
            .into_iter()
            .find(|k| k.id == key_id)
            .ok_or_else(|| not_found(format!("api key {key_id}")))?;
        self.state
            .store
            .revoke_api_key(key.id, SystemClock.now())
            .await?;
        self.state.api_keys.forget(&key.hash).await;
        Ok(Deleted::NoContent)
    }

    /// A project's ingest counters (role `admin`), counted by this server process since it
    /// started.
    #[oai(
        path = "/api/v1/analytics/projects/:id/ingest-stats",
        method = "get",
        tag = "ApiTags::Projects"
    )]
    async fn ingest_stats(
        &self,
        req: &Request,
        _auth: BearerAuth,
        /// The project slug.
        id: Path<String>,
    ) -> ApiResult<Json<IngestStatsBody>, NotFound> {
        let project = self.visible(req, &id.0).await?;
        let c = self.state.ingest_stats.snapshot(&project.id);
        Ok(Json(IngestStatsBody {
            project: project.id.to_string(),
            range: super::health::RangeBody {
                from: self.state.ingest_stats.since(),
                to: SystemClock.now(),
            },
            accepted: c.accepted,
            duplicates: c.duplicates,
            rejected: RejectedBody {
                total: c.rejected.values().sum(),
                by_reason: c.rejected,
            },
            sampled_out: c.sampled_out,
            rate_limited: c.rate_limited,
            late: c.late,
        }))
    }
}
