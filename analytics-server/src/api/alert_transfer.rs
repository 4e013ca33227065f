//! Export and import of alert configurations: the whole set as one JSON document that
//! round-trips (export, then import, writes nothing), with a dry run and a conflict policy.
//! The matching rules are core's (`alert::import`); an import is one store transaction.

use analytics_core::alert::import::{self, ConflictPolicy, ImportAction, ImportError, ImportItem};
use analytics_core::{Clock, SystemClock};
use chrono::{DateTime, Utc};
use poem::Request;
use poem::http::StatusCode;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{Enum, Object, OpenApi};
use uuid::Uuid;

use super::ApiTags;
use super::alerts::{AlertConfigBody, AlertConfigRequest, StrictJson};
use super::events::BearerAuth;
use super::request::{project_filter, require_admin, visible};
use super::responses::{ApiResult, Body, Conflict, NotFound};
use crate::error::ApiError;
use crate::state::AppState;

/// The format name of an export document.
pub const EXPORT_FORMAT: &str = "analytics.alert-configs.v1";

/// The most configurations one import may carry.
const MAX_ITEMS: usize = 5_000;

/// Alert configuration export and import.
#[derive(Debug)]
pub struct AlertTransferApi {
    pub(crate) state: AppState,
}

/// Every alert configuration, as an import takes it back.
#[derive(Debug, Clone, Object)]
pub struct ConfigExport {
    /// `analytics.alert-configs.v1`.
    pub format: String,
    /// When the export was made.
    pub exported_at: DateTime<Utc>,
    /// The configurations, oldest first, with their ids and versions.
    pub items: Vec<AlertConfigBody>,
}

/// One configuration to import: a config body (as for create), optionally with the id it
/// should have. Exported items fit as they are (their other fields are ignored).
#[derive(Debug, Clone, Object, serde::Deserialize)]
pub struct ImportItemBody {
    /// The id: a stored configuration with this id is the one this item updates; a new
    /// configuration gets it. Absent: matched by project and name, new ones get a fresh id.
    #[oai(nullable)]
    #[serde(default)]
    pub id: Option<Uuid>,
    /// The configuration.
    #[oai(flatten)]
    #[serde(flatten)]
    pub config: AlertConfigRequest,
}

/// An import document (an export document is one).
#[derive(Debug, Clone, Object, serde::Deserialize)]
pub struct ImportRequest {
    /// The configurations (at most 5000).
    pub items: Vec<ImportItemBody>,
}

/// What to do with an item that differs from the stored configuration it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum OnConflict {
    /// 409 and nothing is written (the default).
    Fail,
    /// Keep the stored configuration.
    Skip,
    /// Replace the stored configuration (version + 1).
    Replace,
}

/// What happened (or, in a dry run, would happen) to one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum ImportActionBody {
    /// A new configuration.
    Created,
    /// The stored configuration was replaced.
    Replaced,
    /// The stored configuration already says this; nothing written.
    Unchanged,
    /// It differs from the stored configuration, which was kept.
    Skipped,
}

/// One item's outcome.
#[derive(Debug, Clone, Object)]
pub struct ImportResultBody {
    /// The item's position in `items`.
    pub index: u64,
    /// The configuration's id.
    pub id: Uuid,
    /// Its project.
    pub project: String,
    /// Its name.
    pub name: String,
    /// What happened.
    pub action: ImportActionBody,
    /// Its version after the import (null in a dry run for a new or replaced one).
    #[oai(nullable)]
    pub version: Option<u64>,
}

/// The outcome of an import.
#[derive(Debug, Clone, Object)]
pub struct ImportResponse {
    /// Whether this was a dry run (nothing written).
    pub dry_run: bool,
    /// Configurations created.
    pub created: u64,
    /// Configurations replaced.
    pub replaced: u64,
    /// Items equal to their stored configuration.
    pub unchanged: u64,
    /// Items skipped by `on_conflict=skip`.
    pub skipped: u64,
    /// Per item, in order.
    pub results: Vec<ImportResultBody>,
}

fn prefixed(index: usize, mut e: ApiError) -> ApiError {
    e.field = Some(match e.field {
        Some(f) => format!("items[{index}].{f}"),
        None => format!("items[{index}]"),
    });
    e
}

#[OpenApi]
impl AlertTransferApi {
    /// Every alert configuration as one document (role `admin`), to keep in version control
    /// or move to another installation with the import; `project` limits it to one project.
    #[oai(
        path = "/api/v1/analytics/alerts/configs/export",
        method = "get",
        tag = "ApiTags::Alerts"
    )]
    async fn export_configs(
        &self,
        req: &Request,
        _auth: BearerAuth,
        /// Only this project (slug).
        #[oai(validator(pattern = r"^[a-z0-9][a-z0-9_-]{0,63}$"))]
        project: Query<Option<String>>,
    ) -> ApiResult<Json<ConfigExport>> {
        require_admin(req)?;
        let project = project_filter(req, project.0)?;
        let configs = self
            .state
            .store
            .list_configs(project.as_ref(), false)
            .await?;
        Ok(Json(ConfigExport {
            format: EXPORT_FORMAT.to_owned(),
            exported_at: SystemClock.now(),
            items: configs.iter().map(AlertConfigBody::from).collect(),
        }))
    }

    /// Imports alert configurations (role `admin`) in one transaction: an item matches the
    /// stored configuration with its `id`, else the one with its project and name; equal
    /// ones are `unchanged`, differing ones follow `on_conflict` (`fail`: 409 naming the
    /// first, nothing written; `skip`; `replace`: version + 1), the rest are created.
    /// Imported changes are audited as `imported`. `dry_run=true` answers the same without
    /// writing. Every item is validated like a create (400 naming `items[i].field`).
    #[oai(
        path = "/api/v1/analytics/alerts/configs/import",
        method = "post",
        tag = "ApiTags::Alerts"
    )]
    async fn import_configs(
        &self,
        req: &Request,
        _auth: BearerAuth,
        /// Only report what would happen (default false).
        dry_run: Query<Option<bool>>,
        /// What to do with items that differ from their stored configuration (default
        /// `fail`).
        on_conflict: Query<Option<OnConflict>>,
        body: StrictJson<ImportRequest>,
    ) -> ApiResult<Json<ImportResponse>, (Body, NotFound, Conflict)> {
        let sub = require_admin(req)?;
        let dry_run = dry_run.0.unwrap_or(false);
        let policy = match on_conflict.0.unwrap_or(OnConflict::Fail) {
            OnConflict::Fail => ConflictPolicy::Fail,
            OnConflict::Skip => ConflictPolicy::Skip,
            OnConflict::Replace => ConflictPolicy::Replace,
        };
        let request = body.0;
        if request.items.len() > MAX_ITEMS {
            return Err(ApiError::invalid("items", format!("at most {MAX_ITEMS} items")).into());
        }
        let catalog = super::alerts::catalog(&self.state);
        let mut items = Vec::with_capacity(request.items.len());
        for (i, item) in request.items.iter().enumerate() {
            let spec = item.config.to_spec(&catalog).map_err(|e| prefixed(i, e))?;
            visible(req, &spec.project, format_args!("project {}", spec.project))
                .map_err(|e| e.with_field(format!("items[{i}].project")))?;
            items.push(ImportItem { id: item.id, spec });
        }
        let stored = self.state.store.list_configs(None, false).await?;
        let actions = import::plan(&stored, &items, policy, Uuid::new_v4).map_err(|e| match e {
            ImportError::DuplicateId { index } => {
                ApiError::invalid(format!("items[{index}].id"), "repeats an earlier item's id")
            }
            ImportError::DuplicateName { index } => ApiError::invalid(
                format!("items[{index}].name"),
                "repeats an earlier item's project and name",
            ),
            ImportError::NameTaken { index } => ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                "another configuration of the project already has this name",
            )
            .with_field(format!("items[{index}].name")),
        })?;
        if let Some(index) = actions
            .iter()
            .position(|a| matches!(a, ImportAction::Conflict { .. }))
        {
            let conflicts = actions
                .iter()
                .filter(|a| matches!(a, ImportAction::Conflict { .. }))
                .count();
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!(
                    "{conflicts} item(s) differ from the stored configuration they match; \
                     nothing was imported (on_conflict=skip keeps the stored ones, \
                     on_conflict=replace overwrites them)"
                ),
            )
            .with_field(format!("items[{index}]"))
            .into());
        }
        let versions: Vec<Option<u64>> = if dry_run {
            actions
                .iter()
                .map(|a| match a {
                    ImportAction::Unchanged { id } | ImportAction::Skip { id } => {
                        stored.iter().find(|c| c.id == *id).map(|c| c.version)
                    }
                    _ => None,
                })
                .collect()
        } else {
            let written = self
                .state
                .store
                .import_configs(&import::writes(&items, &actions), &sub, SystemClock.now())
                .await?;
            actions
                .iter()
                .map(|a| {
                    written
                        .iter()
                        .chain(stored.iter())
                        .find(|c| c.id == a.id())
                        .map(|c| c.version)
                })
                .collect()
        };
        let mut response = ImportResponse {
            dry_run,
            created: 0,
            replaced: 0,
            unchanged: 0,
            skipped: 0,
            results: Vec::with_capacity(actions.len()),
        };
        for (index, ((item, action), version)) in
            items.iter().zip(&actions).zip(versions).enumerate()
        {
            let action = match action {
                ImportAction::Create { .. } => {
                    response.created += 1;
                    ImportActionBody::Created
                }
                ImportAction::Replace { .. } => {
                    response.replaced += 1;
                    ImportActionBody::Replaced
                }
                ImportAction::Unchanged { .. } => {
                    response.unchanged += 1;
                    ImportActionBody::Unchanged
                }
                ImportAction::Skip { .. } | ImportAction::Conflict { .. } => {
                    response.skipped += 1;
                    ImportActionBody::Skipped
                }
            };
            response.results.push(ImportResultBody {
                index: index as u64,
                id: actions[index].id(),
                project: item.spec.project.to_string(),
                name: item.spec.name.clone(),
                action,
                version,
            });
        }
        Ok(Json(response))
    }
}
