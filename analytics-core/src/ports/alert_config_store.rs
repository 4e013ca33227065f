//! `AlertConfigStore`: alert configurations with an audit trail of every change.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::alert::import::ConfigImport;
use crate::alert::{AlertConfig, AlertConfigSpec, AuditEntry};
use crate::error::Result;
use crate::ids::ProjectId;

/// Alert configuration persistence.
///
/// Contract: every create, update and delete writes an [`AuditEntry`] in the same
/// transaction; the audit trail outlives the configuration. Names are unique per project
/// (`Conflict`). `update_config` with `expected_version` fails with `Conflict` when the
/// stored version differs (optimistic concurrency).
#[async_trait]
pub trait AlertConfigStore: Send + Sync + std::fmt::Debug {
    /// Creates a configuration with version 1.
    async fn create_config(
        &self,
        id: Uuid,
        spec: &AlertConfigSpec,
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<AlertConfig>;

    /// Replaces a configuration's spec and bumps its version.
    async fn update_config(
        &self,
        id: Uuid,
        spec: &AlertConfigSpec,
        expected_version: Option<u64>,
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<AlertConfig>;

    /// Deletes a configuration (`NotFound` if absent). Its alert history is kept.
    async fn delete_config(&self, id: Uuid, actor: &str, at: DateTime<Utc>) -> Result<()>;

    /// One configuration.
    async fn get_config(&self, id: Uuid) -> Result<AlertConfig>;

    /// Configurations, oldest first; optionally of one project and only enabled ones.
    async fn list_configs(
        &self,
        project: Option<&ProjectId>,
        enabled_only: bool,
    ) -> Result<Vec<AlertConfig>>;

    /// The audit trail of one configuration, oldest first.
    async fn config_audit(&self, config_id: Uuid) -> Result<Vec<AuditEntry>>;

    /// Applies an import plan in one transaction: each write creates a configuration (as
    /// `create_config`) or replaces one at its expected version (as `update_config`), audited
    /// as `imported`. Any failure (a name taken, a version moved) writes nothing.
    async fn import_configs(
        &self,
        writes: &[ConfigImport],
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<Vec<AlertConfig>>;
}
