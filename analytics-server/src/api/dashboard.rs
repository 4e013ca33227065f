//! `GET /api/v1/analytics/dashboard/summary`: the admin dashboard in one call. Each section is
//! the answer of its own route family's computation (not an HTTP call), computed
//! concurrently and cached per (project, window, section, role view) in the
//! [`SummaryCache`](crate::summary_cache::SummaryCache); one failing section carries an
//! `error` and the others still answer.

use std::collections::BTreeSet;

use analytics_core::ProjectId;
use analytics_core::alert::{AlertStatus, Severity};
use analytics_core::ports::AlertFilter;
use analytics_core::time::Window;
use chrono::{DateTime, Utc};
use poem::Request;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::types::{ParseFromJSON, ToJSON};
use poem_openapi::{Object, OpenApi, Union};

use super::ApiTags;
use super::alerts::{AlertBody, AlertsApi};
use super::business::{BusinessApi, BusinessOverview};
use super::events::BearerAuth;
use super::health::{HealthApi, HealthOverview, RangeBody, RangePreset, parse_window};
use super::ml::{MlApi, MlOverview};
use super::request::{identity, readable_project};
use super::responses::{ApiResult, NotFound};
use crate::auth::Role;
use crate::error::ApiError;
use crate::state::AppState;

/// The dashboard endpoint.
#[derive(Debug)]
pub struct DashboardApi {
    pub(crate) state: AppState,
}

/// A section of the summary (the `sections` parameter's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Section {
    /// `system_health`: the health overview (admin).
    Health,
    /// `ml_pipelines`: the ML overview (admin).
    Ml,
    /// `business`: the business overview (admin, business_viewer).
    Business,
    /// `active_alerts`: count, by severity and the newest 10 (admin).
    Alerts,
}

impl Section {
    const ALL: [Section; 4] = [Self::Health, Self::Ml, Self::Business, Self::Alerts];

    fn name(self) -> &'static str {
        match self {
            Self::Health => "health",
            Self::Ml => "ml",
            Self::Business => "business",
            Self::Alerts => "alerts",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.name() == s)
    }

    /// Whether a business viewer may see it.
    fn for_business_viewers(self) -> bool {
        self == Self::Business
    }
}

/// Why a section has no answer.
#[derive(Debug, Clone, Object)]
pub struct SectionErrorBody {
    /// Stable code (`unavailable`, `internal`, ...).
    pub code: String,
    /// What went wrong.
    pub message: String,
}

/// A section that failed; the other sections still answer.
#[derive(Debug, Clone, Object)]
pub struct SectionFailure {
    /// The failure.
    pub error: SectionErrorBody,
}

/// Alert counts per severity.
#[derive(Debug, Clone, Object)]
pub struct SeverityCounts {
    /// Info.
    pub info: u64,
    /// Warning.
    pub warning: u64,
    /// Critical.
    pub critical: u64,
}

/// The active (unacknowledged) alerts of the project.
#[derive(Debug, Clone, Object)]
pub struct ActiveAlerts {
    /// How many.
    pub count: u64,
    /// How many per severity.
    pub by_severity: SeverityCounts,
    /// The newest 10.
    pub items: Vec<AlertBody>,
}

/// `system_health`: the health overview, or its failure.
// One value per response, built once: boxing the answer would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Union)]
#[oai(one_of)]
pub enum HealthSection {
    /// The answer of `health/overview`.
    Ok(HealthOverview),
    /// It failed.
    Failed(SectionFailure),
}

/// `ml_pipelines`: the ML overview, or its failure.
// One value per response, built once: boxing the answer would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Union)]
#[oai(one_of)]
pub enum MlSection {
    /// The answer of `ml/overview`.
    Ok(MlOverview),
    /// It failed.
    Failed(SectionFailure),
}

/// `business`: the business overview (in USD), or its failure.
// One value per response, built once: boxing the answer would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Union)]
#[oai(one_of)]
pub enum BusinessSection {
    /// The answer of `business/overview`.
    Ok(BusinessOverview),
    /// It failed.
    Failed(SectionFailure),
}

/// `active_alerts`, or its failure.
// One value per response, built once: boxing the answer would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Union)]
#[oai(one_of)]
pub enum AlertsSection {
    /// The active alerts.
    Ok(ActiveAlerts),
    /// It failed.
    Failed(SectionFailure),
}

/// The sections answered (absent: not asked for, or omitted for the caller's role).
#[derive(Debug, Clone, Object)]
pub struct SummarySections {
    /// The health overview.
    #[oai(skip_serializing_if_is_none)]
    pub system_health: Option<HealthSection>,
    /// The ML overview.
    #[oai(skip_serializing_if_is_none)]
    pub ml_pipelines: Option<MlSection>,
    /// The business overview (in USD).
    #[oai(skip_serializing_if_is_none)]
    pub business: Option<BusinessSection>,
    /// The active alerts.
    #[oai(skip_serializing_if_is_none)]
    pub active_alerts: Option<AlertsSection>,
}

/// The dashboard summary.
#[derive(Debug, Clone, Object)]
pub struct DashboardSummary {
    /// When the oldest section of this answer was computed.
    pub generated_at: DateTime<Utc>,
    /// Whether any section was served from the cache rather than computed for this request.
    pub cached: bool,
    /// The window.
    pub range: RangeBody,
    /// The project.
    pub project: String,
    /// The sections.
    pub sections: SummarySections,
    /// Sections asked for (or defaulted) that the caller's role may not see.
    pub omitted: Vec<String>,
}

/// A section's computed value, or why it failed (cloneable, for the single-flight cache).
type SectionResult = Result<String, (String, String)>;

fn failure((code, message): (String, String)) -> SectionFailure {
    SectionFailure {
        error: SectionErrorBody { code, message },
    }
}

fn to_json<T: ToJSON>(v: &T) -> String {
    v.to_json_string()
}

fn from_json<T: ParseFromJSON>(json: &str) -> Result<T, (String, String)> {
    let value: serde_json::Value = serde_json::from_str(json).map_err(|e| {
        (
            "internal".to_owned(),
            format!("cached section is not JSON: {e}"),
        )
    })?;
    T::parse_from_json(Some(value)).map_err(|e| {
        (
            "internal".to_owned(),
            format!("cached section: {}", e.into_message()),
        )
    })
}

fn section_error(e: ApiError) -> (String, String) {
    (e.code.to_owned(), e.message)
}

/// What one section gave: its body (or failure), when it was computed, and whether this
/// request computed it.
struct Got<T> {
    value: Result<T, SectionFailure>,
    generated_at: Option<DateTime<Utc>>,
    computed: bool,
}

impl<T> Got<T> {
    /// The section's answer, after telling `note` its freshness.
    fn into_section<S>(
        self,
        note: &mut impl FnMut(Option<DateTime<Utc>>, bool),
        ok: fn(T) -> S,
        failed: fn(SectionFailure) -> S,
    ) -> S {
        note(self.generated_at, self.computed);
        self.value.map_or_else(failed, ok)
    }
}

impl DashboardApi {
    /// One section through the cache; `None` when it is not among `allowed`.
    async fn section<T, F, Fut>(
        &self,
        allowed: &[Section],
        section: Section,
        key: String,
        compute: F,
    ) -> Option<Got<T>>
    where
        T: ParseFromJSON,
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = SectionResult>,
    {
        if !allowed.contains(&section) {
            return None;
        }
        Some(
            match self.state.summary_cache.get_or_compute(&key, compute).await {
                Ok((entry, computed)) => Got {
                    value: from_json::<T>(&entry.json).map_err(failure),
                    generated_at: Some(entry.generated_at),
                    computed,
                },
                Err(e) => Got {
                    value: Err(failure(e)),
                    generated_at: None,
                    computed: true,
                },
            },
        )
    }

    async fn active_alerts(&self, project: &ProjectId) -> Result<ActiveAlerts, ApiError> {
        let filter = AlertFilter {
            project: Some(project.clone()),
            statuses: vec![AlertStatus::Active],
            ..AlertFilter::default()
        };
        let mut page = analytics_core::PageRequest::first(analytics_core::page::MAX_PAGE_SIZE);
        let mut counts = SeverityCounts {
            info: 0,
            warning: 0,
            critical: 0,
        };
        let mut newest = Vec::new();
        loop {
            let listed = self.state.store.list_alerts(&filter, &page).await?;
            for a in &listed.items {
                match a.fired.severity {
                    Severity::Info => counts.info += 1,
                    Severity::Warning => counts.warning += 1,
                    Severity::Critical => counts.critical += 1,
                }
            }
            if newest.len() < 10 {
                newest.extend(listed.items.into_iter().take(10 - newest.len()));
            }
            match listed.next_cursor {
                Some(c) => page.cursor = Some(c),
                None => break,
            }
        }
        let alerts = AlertsApi {
            state: self.state.clone(),
        };
        Ok(ActiveAlerts {
            count: counts.info + counts.warning + counts.critical,
            by_severity: counts,
            items: alerts.bodies(newest).await?,
        })
    }
}

/// The window's part of a cache key: the preset (entries follow "now" within their TTL) or
/// the exact bounds.
fn window_key(window: &Window) -> String {
    match window.preset_used() {
        Some(p) => p.as_str().to_owned(),
        None => {
            let r = window.range();
            format!(
                "{}..{}",
                r.start().timestamp_micros(),
                r.end().timestamp_micros()
            )
        }
    }
}

#[OpenApi]
impl DashboardApi {
    /// The admin dashboard in one call (roles `admin`, `business_viewer`): the health
    /// overview (`system_health`), the ML overview (`ml_pipelines`), the business overview
    /// (`business`) and the active alerts (`active_alerts`: count, by severity, newest 10),
    /// computed concurrently and cached 60 s (Redis when `REDIS_URL` is set, shared by every
    /// replica). `sections` picks some (`health,ml,business,alerts`; default all the caller
    /// may see); a `business_viewer` gets `business` only and the rest are listed in
    /// `omitted`. A failing section carries an `error`; the others still answer.
    #[allow(clippy::too_many_arguments)]
    #[oai(
        path = "/api/v1/analytics/dashboard/summary",
        method = "get",
        tag = "ApiTags::Dashboard"
    )]
    async fn summary(
        &self,
        req: &Request,
        _auth: BearerAuth,
        /// Comma-separated sections: `health`, `ml`, `business`, `alerts`.
        #[oai(validator(
            max_length = 64,
            pattern = r"^(health|ml|business|alerts)(,(health|ml|business|alerts))*$"
        ))]
        sections: Query<Option<String>>,
        /// `1h`, `24h` (default), `7d` or `30d` ending now; not with `from`/`to`.
        range: Query<Option<RangePreset>>,
        /// Window start (RFC 3339), with `to`.
        from: Query<Option<DateTime<Utc>>>,
        /// Window end (RFC 3339, exclusive), with `from`.
        to: Query<Option<DateTime<Utc>>>,
        /// Project slug (default `default`).
        #[oai(validator(pattern = r"^[a-z0-9][a-z0-9_-]{0,63}$"))]
        project: Query<Option<String>>,
    ) -> ApiResult<Json<DashboardSummary>, NotFound> {
        let id = identity(req)?;
        let view = if id.has_role(Role::Admin) {
            "admin"
        } else if id.has_role(Role::BusinessViewer) {
            "business"
        } else {
            return Err(ApiError::forbidden(
                "the dashboard needs the admin or business_viewer role",
            )
            .into());
        };
        let mut wanted = BTreeSet::new();
        match sections
            .0
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            None => wanted.extend(Section::ALL),
            Some(list) => {
                for name in list.split(',').map(str::trim) {
                    let s = Section::parse(name).ok_or_else(|| {
                        ApiError::invalid(
                            "sections",
                            format!("unknown section {name:?} (health, ml, business, alerts)"),
                        )
                    })?;
                    wanted.insert(s);
                }
            }
        }
        let window = parse_window(range.0, from.0, to.0)?;
        let project = readable_project(req, project.0)?;
        let (allowed, omitted): (Vec<Section>, Vec<Section>) = wanted
            .into_iter()
            .partition(|s| view == "admin" || s.for_business_viewers());
        let key = |s: Section| {
            format!(
                "analytics:summary:v1:{project}:{}:{}:{view}",
                window_key(&window),
                s.name()
            )
        };
        let health = HealthApi {
            state: self.state.clone(),
        };
        let health_section = self.section::<HealthOverview, _, _>(
            &allowed,
            Section::Health,
            key(Section::Health),
            || async {
                health
                    .overview_of(&project, &window)
                    .await
                    .map(|o| to_json(&o))
                    .map_err(section_error)
            },
        );
        let ml = MlApi {
            state: self.state.clone(),
        };
        let ml_section =
            self.section::<MlOverview, _, _>(&allowed, Section::Ml, key(Section::Ml), || async {
                let c = super::ml::Common {
                    project: project.clone(),
                    range: window.range(),
                    provider: None,
                };
                ml.overview_of(&c, None)
                    .await
                    .map(|o| to_json(&o))
                    .map_err(section_error)
            });
        let business = BusinessApi {
            state: self.state.clone(),
        };
        let business_section = self.section::<BusinessOverview, _, _>(
            &allowed,
            Section::Business,
            key(Section::Business),
            || async {
                let c = super::business::Common {
                    project: project.clone(),
                    window,
                    currency: business
                        .default_currency(&project)
                        .await
                        .map_err(section_error)?,
                    compare: None,
                    comparison: None,
                };
                business
                    .overview_of(&c)
                    .await
                    .map(|o| to_json(&o))
                    .map_err(section_error)
            },
        );
        let alerts_section = self.section::<ActiveAlerts, _, _>(
            &allowed,
            Section::Alerts,
            key(Section::Alerts),
            || async {
                self.active_alerts(&project)
                    .await
                    .map(|a| to_json(&a))
                    .map_err(section_error)
            },
        );
        let (health_got, ml_got, business_got, alerts_got) =
            tokio::join!(health_section, ml_section, business_section, alerts_section);

        let mut generated_at: Option<DateTime<Utc>> = None;
        let mut cached = false;
        let mut note = |g: Option<DateTime<Utc>>, computed: bool| {
            if let Some(g) = g {
                generated_at = Some(generated_at.map_or(g, |a| a.min(g)));
            }
            cached |= !computed;
        };
        let system_health =
            health_got.map(|g| g.into_section(&mut note, HealthSection::Ok, HealthSection::Failed));
        let ml_pipelines =
            ml_got.map(|g| g.into_section(&mut note, MlSection::Ok, MlSection::Failed));
        let business = business_got
            .map(|g| g.into_section(&mut note, BusinessSection::Ok, BusinessSection::Failed));
        let active_alerts =
            alerts_got.map(|g| g.into_section(&mut note, AlertsSection::Ok, AlertsSection::Failed));
        Ok(Json(DashboardSummary {
            generated_at: generated_at.unwrap_or_else(Utc::now),
            cached,
            range: window.range().into(),
            project: project.to_string(),
            sections: SummarySections {
                system_health,
                ml_pipelines,
                business,
                active_alerts,
            },
            omitted: omitted.into_iter().map(|s| s.name().to_owned()).collect(),
        }))
    }
}
