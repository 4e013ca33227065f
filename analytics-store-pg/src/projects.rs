//! `ProjectStore`: projects and their API keys (SHA-256 hashes only; the hash is unique and
//! a key's project must exist, enforced by the schema).

use analytics_core::ProjectId;
use analytics_core::error::{Error, Result};
use analytics_core::ports::ProjectStore;
use analytics_core::project::{ApiKeyHash, ApiKeyRecord, Project, ProjectSettings};
use analytics_core::time::truncate_to_micros;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use uuid::Uuid;

use crate::PgStore;
use crate::error::{corrupt, foreign_key_as, pg_error};
use crate::sql::{col, parse};

const PROJECT_COLUMNS: &str =
    "id, name, retention_days, sample_rate, settings::text AS settings, created_at";
const KEY_COLUMNS: &str = "id, project, name, prefix, hash, created_at, revoked_at, last_used_at";

fn project_from_row(row: &PgRow) -> Result<Project> {
    const WHAT: &str = "project";
    let id: String = col(row, "id", WHAT)?;
    let retention: i32 = col(row, "retention_days", WHAT)?;
    Ok(Project {
        id: parse(&id, WHAT, str::parse::<ProjectId>)?,
        name: col(row, "name", WHAT)?,
        settings: ProjectSettings::from_stored(
            u32::try_from(retention)
                .map_err(|_| corrupt(WHAT, format_args!("retention_days {retention}")))?,
            col(row, "sample_rate", WHAT)?,
            col::<Option<String>>(row, "settings", WHAT)?.as_deref(),
        )
        .map_err(|e| corrupt(WHAT, e))?,
        created_at: col(row, "created_at", WHAT)?,
    })
}

fn key_from_row(row: &PgRow) -> Result<ApiKeyRecord> {
    const WHAT: &str = "api key";
    let project: String = col(row, "project", WHAT)?;
    Ok(ApiKeyRecord {
        id: col(row, "id", WHAT)?,
        project: parse(&project, WHAT, str::parse::<ProjectId>)?,
        name: col(row, "name", WHAT)?,
        prefix: col(row, "prefix", WHAT)?,
        hash: ApiKeyHash(col(row, "hash", WHAT)?),
        created_at: col(row, "created_at", WHAT)?,
        revoked_at: col(row, "revoked_at", WHAT)?,
        last_used_at: col(row, "last_used_at", WHAT)?,
    })
}

fn retention_days(settings: &ProjectSettings) -> Result<i32> {
    i32::try_from(settings.retention_days)
        .map_err(|_| Error::invalid("retention_days", "must be below 2^31"))
}

#[async_trait]
impl ProjectStore for PgStore {
    async fn create_project(&self, project: &Project) -> Result<()> {
        sqlx::query(
            "INSERT INTO projects (id, name, retention_days, sample_rate, created_at, settings) \
             VALUES ($1, $2, $3, $4, $5, $6::jsonb)",
        )
        .bind(project.id.as_str())
        .bind(&project.name)
        .bind(retention_days(&project.settings)?)
        .bind(project.settings.sample_rate)
        .bind(project.created_at)
        .bind(project.settings.stored_extra())
        .execute(self.pool_ref())
        .await
        .map_err(pg_error)?;
        Ok(())
    }

    async fn get_project(&self, id: &ProjectId) -> Result<Project> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {PROJECT_COLUMNS} FROM projects WHERE id = $1"
        )))
        .bind(id.as_str())
        .fetch_optional(self.pool_ref())
        .await
        .map_err(pg_error)?
        .ok_or_else(|| Error::not_found(format!("project {id}")))?;
        project_from_row(&row)
    }

    async fn list_projects(&self) -> Result<Vec<Project>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {PROJECT_COLUMNS} FROM projects ORDER BY id"
        )))
        .fetch_all(self.pool_ref())
        .await
        .map_err(pg_error)?;
        rows.iter().map(project_from_row).collect()
    }

    async fn update_project_settings(
        &self,
        id: &ProjectId,
        settings: &ProjectSettings,
    ) -> Result<Project> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE projects SET retention_days = $2, sample_rate = $3, settings = $4::jsonb \
             WHERE id = $1 RETURNING {PROJECT_COLUMNS}"
        )))
        .bind(id.as_str())
        .bind(retention_days(settings)?)
        .bind(settings.sample_rate)
        .bind(settings.stored_extra())
        .fetch_optional(self.pool_ref())
        .await
        .map_err(pg_error)?
        .ok_or_else(|| Error::not_found(format!("project {id}")))?;
        project_from_row(&row)
    }

    async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO api_keys (id, project, name, prefix, hash, created_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(key.id)
        .bind(key.project.as_str())
        .bind(&key.name)
        .bind(&key.prefix)
        .bind(&key.hash.0)
        .bind(key.created_at)
        .bind(key.revoked_at)
        .execute(self.pool_ref())
        .await
        .map_err(foreign_key_as(format!("project {}", key.project)))?;
        Ok(())
    }

    async fn api_key_by_hash(&self, hash: &ApiKeyHash) -> Result<Option<ApiKeyRecord>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE hash = $1"
        )))
        .bind(&hash.0)
        .fetch_optional(self.pool_ref())
        .await
        .map_err(pg_error)?;
        row.as_ref().map(key_from_row).transpose()
    }

    async fn list_api_keys(&self, project: &ProjectId) -> Result<Vec<ApiKeyRecord>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE project = $1 ORDER BY created_at, id"
        )))
        .bind(project.as_str())
        .fetch_all(self.pool_ref())
        .await
        .map_err(pg_error)?;
        rows.iter().map(key_from_row).collect()
    }

    async fn revoke_api_key(&self, id: Uuid, at: DateTime<Utc>) -> Result<ApiKeyRecord> {
        // COALESCE keeps the first revocation time.
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1 \
             RETURNING {KEY_COLUMNS}"
        )))
        .bind(id)
        .bind(truncate_to_micros(at))
        .fetch_optional(self.pool_ref())
        .await
        .map_err(pg_error)?
        .ok_or_else(|| Error::not_found(format!("api key {id}")))?;
        key_from_row(&row)
    }

    async fn touch_api_key(&self, id: Uuid, at: DateTime<Utc>) -> Result<()> {
        let done = sqlx::query(
            "UPDATE api_keys SET last_used_at = GREATEST(COALESCE(last_used_at, $2), $2) \
             WHERE id = $1",
        )
        .bind(id)
        .bind(truncate_to_micros(at))
        .execute(self.pool_ref())
        .await
        .map_err(pg_error)?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found(format!("api key {id}")));
        }
        Ok(())
    }

    async fn delete_project(&self, id: &ProjectId) -> Result<()> {
        let mut tx = self.pool_ref().begin().await.map_err(pg_error)?;
        // Children first; the project row last, so a missing project changes nothing.
        for sql in [
            "DELETE FROM analytics_events WHERE project = $1",
            "DELETE FROM analytics_event_ids WHERE project = $1",
            "DELETE FROM rollup_dirty_hours WHERE project = $1",
            "DELETE FROM rollup_hour_versions WHERE project = $1",
            "DELETE FROM analytics_rollups WHERE project = $1",
            "DELETE FROM alert_config_audit WHERE config_id IN \
             (SELECT id FROM alert_configs WHERE project = $1)",
            "DELETE FROM alert_configs WHERE project = $1",
            "DELETE FROM alert_history WHERE project = $1",
            "DELETE FROM api_keys WHERE project = $1",
        ] {
            sqlx::query(sql)
                .bind(id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(pg_error)?;
        }
        let done = sqlx::query("DELETE FROM projects WHERE id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(pg_error)?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found(format!("project {id}")));
        }
        tx.commit().await.map_err(pg_error)?;
        Ok(())
    }
}
