//! `ProjectStore` on SQLite: projects and their API keys (SHA-256 hashes only, unique).

use analytics_core::ports::ProjectStore;
use analytics_core::project::{ApiKeyHash, ApiKeyRecord, Project, ProjectSettings};
use analytics_core::{Error, ProjectId, Result};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use uuid::Uuid;

use crate::codec::{get, get_opt_time, get_time, get_u32, micros};
use crate::error::{DbResultExt, corrupt};
use crate::store::SqliteStore;

fn decode_project(row: &SqliteRow) -> Result<Project> {
    const W: &str = "project";
    Ok(Project {
        id: ProjectId::parse(get::<String>(row, W, "id")?).map_err(|e| corrupt(W, e))?,
        name: get(row, W, "name")?,
        settings: ProjectSettings::from_stored(
            get_u32(row, W, "retention_days")?,
            get(row, W, "sample_rate")?,
            get::<Option<String>>(row, W, "settings")?.as_deref(),
        )
        .map_err(|e| corrupt(W, e))?,
        created_at: get_time(row, W, "created_at")?,
    })
}

const SELECT_KEY: &str =
    "SELECT id, project, name, prefix, hash, created_at, revoked_at, last_used_at FROM api_keys";

const PROJECT_COLUMNS: &str = "id, name, retention_days, sample_rate, settings, created_at";

fn decode_key(row: &SqliteRow) -> Result<ApiKeyRecord> {
    const W: &str = "api key";
    Ok(ApiKeyRecord {
        id: get(row, W, "id")?,
        project: ProjectId::parse(get::<String>(row, W, "project")?).map_err(|e| corrupt(W, e))?,
        name: get(row, W, "name")?,
        prefix: get(row, W, "prefix")?,
        hash: ApiKeyHash(get(row, W, "hash")?),
        created_at: get_time(row, W, "created_at")?,
        revoked_at: get_opt_time(row, W, "revoked_at")?,
        last_used_at: get_opt_time(row, W, "last_used_at")?,
    })
}

#[async_trait]
impl ProjectStore for SqliteStore {
    async fn create_project(&self, project: &Project) -> Result<()> {
        let mut tx = self.begin_write("create project").await?;
        let result = sqlx::query(
            "INSERT INTO projects (id, name, retention_days, sample_rate, settings, created_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(project.id.as_str())
        .bind(&project.name)
        .bind(i64::from(project.settings.retention_days))
        .bind(project.settings.sample_rate)
        .bind(project.settings.stored_extra())
        .bind(micros(project.created_at))
        .execute(&mut *tx)
        .await
        .db("create project");
        match result {
            Err(Error::Conflict(_)) => {
                return Err(Error::Conflict(format!(
                    "project {} already exists",
                    project.id
                )));
            }
            other => other?,
        };
        self.commit(tx, "commit project").await?;
        Ok(())
    }

    async fn get_project(&self, id: &ProjectId) -> Result<Project> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {PROJECT_COLUMNS} FROM projects WHERE id = ?"
        )))
        .bind(id.as_str())
        .fetch_optional(self.reader())
        .await
        .db("read project")?
        .ok_or_else(|| Error::not_found(format!("project {id}")))?;
        decode_project(&row)
    }

    async fn list_projects(&self) -> Result<Vec<Project>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {PROJECT_COLUMNS} FROM projects ORDER BY id"
        )))
        .fetch_all(self.reader())
        .await
        .db("list projects")?;
        rows.iter().map(decode_project).collect()
    }

    async fn update_project_settings(
        &self,
        id: &ProjectId,
        settings: &ProjectSettings,
    ) -> Result<Project> {
        let mut tx = self.begin_write("update project").await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE projects SET retention_days = ?, sample_rate = ?, settings = ? WHERE id = ? \
             RETURNING {PROJECT_COLUMNS}"
        )))
        .bind(i64::from(settings.retention_days))
        .bind(settings.sample_rate)
        .bind(settings.stored_extra())
        .bind(id.as_str())
        .fetch_optional(&mut *tx)
        .await
        .db("update project")?
        .ok_or_else(|| Error::not_found(format!("project {id}")))?;
        let project = decode_project(&row)?;
        self.commit(tx, "commit project").await?;
        Ok(project)
    }

    async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<()> {
        let mut tx = self.begin_write("create api key").await?;
        let project: Option<i64> = sqlx::query_scalar("SELECT 1 FROM projects WHERE id = ?")
            .bind(key.project.as_str())
            .fetch_optional(&mut *tx)
            .await
            .db("create api key")?;
        if project.is_none() {
            return Err(Error::not_found(format!("project {}", key.project)));
        }
        let result = sqlx::query(
            "INSERT INTO api_keys (id, project, name, prefix, hash, created_at, revoked_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(key.id)
        .bind(key.project.as_str())
        .bind(&key.name)
        .bind(&key.prefix)
        .bind(&key.hash.0)
        .bind(micros(key.created_at))
        .bind(key.revoked_at.map(micros))
        .execute(&mut *tx)
        .await
        .db("create api key");
        match result {
            Err(Error::Conflict(_)) => {
                return Err(Error::Conflict("api key already exists".into()));
            }
            other => other?,
        };
        self.commit(tx, "commit api key").await?;
        Ok(())
    }

    async fn api_key_by_hash(&self, hash: &ApiKeyHash) -> Result<Option<ApiKeyRecord>> {
        let sql = format!("{SELECT_KEY} WHERE hash = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&hash.0)
            .fetch_optional(self.reader())
            .await
            .db("find api key")?;
        row.as_ref().map(decode_key).transpose()
    }

    async fn list_api_keys(&self, project: &ProjectId) -> Result<Vec<ApiKeyRecord>> {
        let sql = format!("{SELECT_KEY} WHERE project = ? ORDER BY created_at, id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(project.as_str())
            .fetch_all(self.reader())
            .await
            .db("list api keys")?;
        rows.iter().map(decode_key).collect()
    }

    async fn revoke_api_key(&self, id: Uuid, at: DateTime<Utc>) -> Result<ApiKeyRecord> {
        let mut tx = self.begin_write("revoke api key").await?;
        let row = sqlx::query(
            "UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?) WHERE id = ? \
             RETURNING id, project, name, prefix, hash, created_at, revoked_at, last_used_at",
        )
        .bind(micros(at))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .db("revoke api key")?
        .ok_or_else(|| Error::not_found(format!("api key {id}")))?;
        let key = decode_key(&row)?;
        self.commit(tx, "commit api key").await?;
        Ok(key)
    }

    async fn touch_api_key(&self, id: Uuid, at: DateTime<Utc>) -> Result<()> {
        let mut tx = self.begin_write("touch api key").await?;
        let done = sqlx::query(
            "UPDATE api_keys SET last_used_at = max(coalesce(last_used_at, ?1), ?1) WHERE id = ?2",
        )
        .bind(micros(at))
        .bind(id)
        .execute(&mut *tx)
        .await
        .db("touch api key")?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found(format!("api key {id}")));
        }
        self.commit(tx, "commit api key").await?;
        Ok(())
    }

    async fn delete_project(&self, id: &ProjectId) -> Result<()> {
        let mut tx = self.begin_write("delete project").await?;
        // Children first; the project row last, so a missing project changes nothing.
        for sql in [
            "DELETE FROM analytics_events WHERE project = ?",
            "DELETE FROM rollup_dirty_hours WHERE project = ?",
            "DELETE FROM rollup_hour_versions WHERE project = ?",
            "DELETE FROM analytics_rollups WHERE project = ?",
            "DELETE FROM alert_config_audit WHERE config_id IN \
             (SELECT id FROM alert_configs WHERE project = ?)",
            "DELETE FROM alert_configs WHERE project = ?",
            "DELETE FROM alert_notifications WHERE alert_id IN \
             (SELECT id FROM alert_history WHERE project = ?)",
            "DELETE FROM alert_history WHERE project = ?",
            "DELETE FROM api_keys WHERE project = ?",
        ] {
            sqlx::query(sql)
                .bind(id.as_str())
                .execute(&mut *tx)
                .await
                .db("delete project")?;
        }
        let done = sqlx::query("DELETE FROM projects WHERE id = ?")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .db("delete project")?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found(format!("project {id}")));
        }
        self.commit(tx, "commit project deletion").await?;
        Ok(())
    }
}
