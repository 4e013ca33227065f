//! ML pipelines (role `admin`): `GET /api/v1/analytics/ml/{overview,3d,descriptions,assets,
//! providers}`. Thin: parses the window and filters, calls `analytics_core::ml` over the
//! rollup reader, and times its store reads.

use analytics_core::event::{AssetStage, Pipeline};
use analytics_core::ml::{MlAnalytics, MlFilter, MlStats};
use analytics_core::{ProjectId, TimeRange};
use chrono::{DateTime, Utc};
use poem::Request;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{Enum, Object, OpenApi};

use super::events::BearerAuth;
use super::health::{LatencyBlock, RangeBody, RangePreset, SourceBody, parse_window};
use super::request::{readable_project, require_admin};
use super::responses::NotFound;
use super::{ApiResult, ApiTags};
use crate::state::AppState;

/// The ML endpoints.
#[derive(Debug)]
pub struct MlApi {
    pub(crate) state: AppState,
}

/// A `pipeline` filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum PipelineParam {
    /// 3D model generation.
    #[oai(rename = "3d")]
    ThreeD,
    /// Image descriptions.
    #[oai(rename = "descriptions")]
    Descriptions,
    /// Asset processing.
    #[oai(rename = "assets")]
    Assets,
}

impl From<PipelineParam> for Pipeline {
    fn from(p: PipelineParam) -> Self {
        match p {
            PipelineParam::ThreeD => Pipeline::ThreeD,
            PipelineParam::Descriptions => Pipeline::Descriptions,
            PipelineParam::Assets => Pipeline::Assets,
        }
    }
}

/// The `ml_stats` block.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct MlStatsBody {
    /// Finished jobs, each counted once by its terminal event.
    pub jobs: u64,
    /// Succeeded jobs.
    pub succeeded: u64,
    /// Failed jobs.
    pub failed: u64,
    /// Cancelled jobs.
    pub cancelled: u64,
    /// `succeeded / (succeeded + failed)`; `null` without either.
    #[oai(nullable)]
    pub success_rate: Option<f64>,
    /// Duration of the finished jobs in milliseconds.
    pub duration_ms: LatencyBlock,
    /// Cost in USD (rounded to cents): reported by the events, else estimated from the
    /// price table (`ANALYTICS_ML_PRICES`).
    pub cost_usd: f64,
    /// `events`, `price_table`, `mixed` or `none`.
    pub cost_source: String,
    /// Whether sampled events contributed.
    pub sampled: bool,
}

impl poem_openapi::types::Example for MlStatsBody {
    fn example() -> Self {
        ml_stats_example()
    }
}

fn ml_stats_example() -> MlStatsBody {
    MlStatsBody {
        jobs: 120,
        succeeded: 100,
        failed: 15,
        cancelled: 5,
        success_rate: Some(100.0 / 115.0),
        duration_ms: LatencyBlock {
            p50: Some(4200.0),
            p95: Some(18000.0),
            p99: Some(31000.0),
            avg: Some(6100.5),
        },
        cost_usd: 12.5,
        cost_source: "mixed".into(),
        sampled: false,
    }
}

impl From<MlStats> for MlStatsBody {
    fn from(s: MlStats) -> Self {
        Self {
            jobs: s.jobs,
            succeeded: s.succeeded,
            failed: s.failed,
            cancelled: s.cancelled,
            success_rate: s.success_rate,
            duration_ms: s.duration_ms.into(),
            cost_usd: s.cost_usd,
            cost_source: s.cost_source.as_str().to_owned(),
            sampled: s.sampled,
        }
    }
}

/// One pipeline's figures.
#[derive(Debug, Clone, Object)]
pub struct PipelineStats {
    /// `3d`, `descriptions` or `assets`.
    pub pipeline: String,
    /// Its figures.
    #[oai(flatten)]
    pub stats: MlStatsBody,
}

/// One provider's figures.
#[derive(Debug, Clone, Object)]
pub struct ProviderStats {
    /// Provider name, lower case.
    pub provider: String,
    /// Its figures.
    #[oai(flatten)]
    pub stats: MlStatsBody,
    /// `cost_usd / succeeded` (rounded to cents); `null` without successes.
    #[oai(nullable)]
    pub cost_per_success_usd: Option<f64>,
}

/// One assets stage's figures.
#[derive(Debug, Clone, Object)]
pub struct StageStats {
    /// `ingestion`, `versioning` or `approval`.
    pub stage: String,
    /// Its figures.
    #[oai(flatten)]
    pub stats: MlStatsBody,
}

/// `ml/overview`.
#[derive(Debug, Clone, Object)]
pub struct MlOverview {
    /// The window.
    pub range: RangeBody,
    /// The project.
    pub project: String,
    /// Where the figures come from.
    pub source: SourceBody,
    /// Every job of the window (within the filters).
    #[oai(flatten)]
    pub stats: MlStatsBody,
    /// Per pipeline.
    pub pipelines: Vec<PipelineStats>,
}

/// `ml/3d` and `ml/descriptions`.
#[derive(Debug, Clone, Object)]
pub struct MlPipeline {
    /// The window.
    pub range: RangeBody,
    /// The project.
    pub project: String,
    /// The pipeline.
    pub pipeline: String,
    /// Where the figures come from.
    pub source: SourceBody,
    /// The pipeline's jobs.
    #[oai(flatten)]
    pub stats: MlStatsBody,
    /// Per provider.
    pub providers: Vec<ProviderStats>,
}

/// `ml/assets`.
#[derive(Debug, Clone, Object)]
pub struct MlAssets {
    /// The window.
    pub range: RangeBody,
    /// The project.
    pub project: String,
    /// Where the figures come from.
    pub source: SourceBody,
    /// The assets pipeline's jobs.
    #[oai(flatten)]
    pub stats: MlStatsBody,
    /// Per stage: ingestion, versioning, approval.
    pub stages: Vec<StageStats>,
}

/// `ml/providers`.
#[derive(Debug, Clone, Object)]
pub struct MlProviders {
    /// The window.
    pub range: RangeBody,
    /// The project.
    pub project: String,
    /// Where the figures come from.
    pub source: SourceBody,
    /// Replicate, Tripo, HuggingFace, Gemini and any other seen.
    pub providers: Vec<ProviderStats>,
}

/// The parsed common parameters.
/// What every ML route reads from its request.
pub(crate) struct Common {
    /// The project.
    pub(crate) project: ProjectId,
    /// The window.
    pub(crate) range: TimeRange,
    /// Only this provider (lower case).
    pub(crate) provider: Option<String>,
}

fn provider_stats(list: Vec<(String, MlStats)>) -> Vec<ProviderStats> {
    list.into_iter()
        .map(|(provider, s)| ProviderStats {
            provider,
            cost_per_success_usd: s.cost_per_success(),
            stats: s.into(),
        })
        .collect()
}

impl MlApi {
    /// The ML overview (the `ml/overview` answer; the dashboard's `ml_pipelines` section).
    pub(crate) async fn overview_of(
        &self,
        c: &Common,
        pipeline: Option<Pipeline>,
    ) -> Result<MlOverview, crate::error::ApiError> {
        let ml = self.ml();
        let filter = MlFilter {
            pipeline,
            provider: c.provider.clone(),
            stage: None,
        };
        let read = async {
            let mut pipelines = ml
                .by_pipeline(&c.project, c.range, c.provider.as_deref())
                .await?;
            if let Some(p) = filter.pipeline {
                pipelines.retain(|(x, _)| *x == p);
            }
            Ok::<_, analytics_core::Error>((
                ml.stats(&c.project, c.range, &filter).await?,
                pipelines,
                self.source(c).await?,
            ))
        };
        let (stats, pipelines, source) = self.state.timed_read(read).await?;
        Ok(MlOverview {
            range: c.range.into(),
            project: c.project.to_string(),
            source,
            stats: stats.into(),
            pipelines: pipelines
                .into_iter()
                .map(|(p, s)| PipelineStats {
                    pipeline: p.as_str().to_owned(),
                    stats: s.into(),
                })
                .collect(),
        })
    }

    fn ml(&self) -> MlAnalytics {
        MlAnalytics::new(
            self.state.health.reader(self.state.store.clone()),
            self.state.analytics.prices.clone(),
        )
    }

    fn common(
        req: &Request,
        range: Option<RangePreset>,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        project: Option<String>,
        provider: Option<String>,
    ) -> Result<Common, crate::error::ApiError> {
        require_admin(req)?;
        let window = parse_window(range, from, to)?;
        Ok(Common {
            project: readable_project(req, project)?,
            range: window.range(),
            provider: provider
                .filter(|p| !p.is_empty())
                .map(|p| p.to_ascii_lowercase()),
        })
    }

    async fn source(&self, c: &Common) -> analytics_core::Result<SourceBody> {
        let reader = self.state.health.reader(self.state.store.clone());
        Ok(reader.source(&c.project, c.range).await?.into())
    }

    async fn pipeline(
        &self,
        c: Common,
        pipeline: Pipeline,
    ) -> ApiResult<Json<MlPipeline>, NotFound> {
        let ml = self.ml();
        let filter = MlFilter {
            pipeline: Some(pipeline),
            provider: c.provider.clone(),
            stage: None,
        };
        let read = async {
            Ok::<_, analytics_core::Error>((
                ml.stats(&c.project, c.range, &filter).await?,
                ml.by_provider(&c.project, c.range, &filter).await?,
                self.source(&c).await?,
            ))
        };
        let (stats, providers, source) = self.state.timed_read(read).await?;
        Ok(Json(MlPipeline {
            range: c.range.into(),
            project: c.project.to_string(),
            pipeline: pipeline.as_str().to_owned(),
            source,
            stats: stats.into(),
            providers: provider_stats(providers),
        }))
    }
}

#[OpenApi]
impl MlApi {
    /// Every ML pipeline (role `admin`): finished jobs (each counted once, by its terminal
    /// event), success rate, duration and cost, overall and per pipeline; filters `provider`
    /// and `pipeline`.
    #[allow(clippy::too_many_arguments)]
    #[oai(
        path = "/api/v1/analytics/ml/overview",
        method = "get",
        tag = "ApiTags::Ml"
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
        /// Only jobs of this provider (case-insensitive).
        #[oai(validator(max_length = 64))]
        provider: Query<Option<String>>,
        /// Only jobs of this pipeline.
        pipeline: Query<Option<PipelineParam>>,
    ) -> ApiResult<Json<MlOverview>, NotFound> {
        let c = Self::common(req, range.0, from.0, to.0, project.0, provider.0)?;
        Ok(Json(
            self.overview_of(&c, pipeline.0.map(Pipeline::from)).await?,
        ))
    }

    /// The 3D pipeline (role `admin`): its figures and one entry per provider.
    #[oai(path = "/api/v1/analytics/ml/3d", method = "get", tag = "ApiTags::Ml")]
    #[allow(clippy::too_many_arguments)]
    async fn three_d(
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
        /// Only jobs of this provider (case-insensitive).
        #[oai(validator(max_length = 64))]
        provider: Query<Option<String>>,
    ) -> ApiResult<Json<MlPipeline>, NotFound> {
        let c = Self::common(req, range.0, from.0, to.0, project.0, provider.0)?;
        self.pipeline(c, Pipeline::ThreeD).await
    }

    /// The descriptions pipeline (role `admin`): its figures and one entry per provider.
    #[oai(
        path = "/api/v1/analytics/ml/descriptions",
        method = "get",
        tag = "ApiTags::Ml"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn descriptions(
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
        /// Only jobs of this provider (case-insensitive).
        #[oai(validator(max_length = 64))]
        provider: Query<Option<String>>,
    ) -> ApiResult<Json<MlPipeline>, NotFound> {
        let c = Self::common(req, range.0, from.0, to.0, project.0, provider.0)?;
        self.pipeline(c, Pipeline::Descriptions).await
    }

    /// The assets pipeline (role `admin`): its figures and one entry per stage
    /// (ingestion, versioning, approval).
    #[oai(
        path = "/api/v1/analytics/ml/assets",
        method = "get",
        tag = "ApiTags::Ml"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn assets(
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
        /// Only jobs of this provider (case-insensitive).
        #[oai(validator(max_length = 64))]
        provider: Query<Option<String>>,
    ) -> ApiResult<Json<MlAssets>, NotFound> {
        let c = Self::common(req, range.0, from.0, to.0, project.0, provider.0)?;
        let ml = self.ml();
        let filter = MlFilter {
            pipeline: Some(Pipeline::Assets),
            provider: c.provider.clone(),
            stage: None,
        };
        let read = async {
            Ok::<_, analytics_core::Error>((
                ml.stats(&c.project, c.range, &filter).await?,
                ml.by_stage(&c.project, c.range, c.provider.as_deref())
                    .await?,
                self.source(&c).await?,
            ))
        };
        let (stats, stages, source) = self.state.timed_read(read).await?;
        Ok(Json(MlAssets {
            range: c.range.into(),
            project: c.project.to_string(),
            source,
            stats: stats.into(),
            stages: stages
                .into_iter()
                .map(|(s, x): (AssetStage, MlStats)| StageStats {
                    stage: s.as_str().to_owned(),
                    stats: x.into(),
                })
                .collect(),
        }))
    }

    /// Per provider (role `admin`): Replicate, Tripo, HuggingFace, Gemini and any other
    /// seen, with cost per successful job; filters `provider` and `pipeline`.
    #[allow(clippy::too_many_arguments)]
    #[oai(
        path = "/api/v1/analytics/ml/providers",
        method = "get",
        tag = "ApiTags::Ml"
    )]
    async fn providers(
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
        /// Only this provider (case-insensitive).
        #[oai(validator(max_length = 64))]
        provider: Query<Option<String>>,
        /// Only jobs of this pipeline.
        pipeline: Query<Option<PipelineParam>>,
    ) -> ApiResult<Json<MlProviders>, NotFound> {
        let c = Self::common(req, range.0, from.0, to.0, project.0, provider.0)?;
        let ml = self.ml();
        let filter = MlFilter {
            pipeline: pipeline.0.map(Pipeline::from),
            provider: c.provider.clone(),
            stage: None,
        };
        let read = async {
            Ok::<_, analytics_core::Error>((
                ml.by_provider(&c.project, c.range, &filter).await?,
                self.source(&c).await?,
            ))
        };
        let (providers, source) = self.state.timed_read(read).await?;
        Ok(Json(MlProviders {
            range: c.range.into(),
            project: c.project.to_string(),
            source,
            providers: provider_stats(providers),
        }))
    }
}
