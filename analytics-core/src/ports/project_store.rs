//! `ProjectStore`: projects and their API keys (hashes only).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::Result;
use crate::ids::ProjectId;
use crate::project::{ApiKeyHash, ApiKeyRecord, Project, ProjectSettings};

/// Project and API key persistence.
///
/// Contract: project ids are unique (`Conflict`); a key needs an existing project
/// (`NotFound`); key hashes are unique (`Conflict`); revoking is idempotent and keeps the
/// first revocation time; a revoked key is still found by hash (so the caller can say
/// "revoked") but is not active.
#[async_trait]
pub trait ProjectStore: Send + Sync + std::fmt::Debug {
    /// Creates a project.
    async fn create_project(&self, project: &Project) -> Result<()>;

    /// One project.
    async fn get_project(&self, id: &ProjectId) -> Result<Project>;

    /// All projects, by id.
    async fn list_projects(&self) -> Result<Vec<Project>>;

    /// Replaces a project's settings.
    async fn update_project_settings(
        &self,
        id: &ProjectId,
        settings: &ProjectSettings,
    ) -> Result<Project>;

    /// Stores a new key.
    async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<()>;

    /// The key with this hash, revoked or not.
    async fn api_key_by_hash(&self, hash: &ApiKeyHash) -> Result<Option<ApiKeyRecord>>;

    /// A project's keys, oldest first.
    async fn list_api_keys(&self, project: &ProjectId) -> Result<Vec<ApiKeyRecord>>;

    /// Revokes a key.
    async fn revoke_api_key(&self, id: Uuid, at: DateTime<Utc>) -> Result<ApiKeyRecord>;

    /// Records that a key authenticated a request at `at` (keeps the latest time); an
    /// unknown key is `NotFound`.
    async fn touch_api_key(&self, id: Uuid, at: DateTime<Utc>) -> Result<()>;

    /// Deletes a project and everything of it: raw events, dirty-hour markers, rollups,
    /// alert configurations with their audit, alert history with its notifications, and
    /// API keys. `NotFound` when there is no such project.
    async fn delete_project(&self, id: &ProjectId) -> Result<()>;
}
