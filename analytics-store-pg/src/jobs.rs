//! `JobStore`: watermarks, and the singleton-job lock.
//!
//! The lock is a session-level `pg_try_advisory_lock(namespace, hashtext(name))` taken on a
//! connection of its own, opened for the lease and never part of the pool: the lock cannot
//! leak to another pool user, and a pooled connection being recycled cannot drop it.
//! Dropping the [`JobLease`] closes that connection, which releases the lock; if the
//! process dies, the server ends the session and releases it too.

use analytics_core::error::{Error, Result};
use analytics_core::ports::{JobLease, JobStore};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{Connection, PgConnection};

use crate::PgStore;
use crate::error::pg_error;
use crate::sql::ADVISORY_NAMESPACE;

/// Keeps the lock's connection open; dropping it closes the connection (politely when a
/// Tokio runtime is at hand, else by closing the socket), which releases the lock.
struct LockGuard {
    conn: Option<PgConnection>,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(async move {
                if let Err(e) = conn.close().await {
                    tracing::debug!(error = %e, "closing a job-lock connection failed");
                }
            });
        }
    }
}

/// Sets a job's watermark and state inside the caller's transaction.
pub(crate) async fn put_job_state(
    conn: &mut PgConnection,
    job: &str,
    at: DateTime<Utc>,
    state: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO job_watermarks (job, at, state) VALUES ($1, $2, $3) \
         ON CONFLICT (job) DO UPDATE SET at = EXCLUDED.at, state = EXCLUDED.state",
    )
    .bind(job)
    .bind(at)
    .bind(state)
    .execute(conn)
    .await
    .map_err(pg_error)?;
    Ok(())
}

#[async_trait]
impl JobStore for PgStore {
    async fn watermark(&self, job: &str) -> Result<Option<DateTime<Utc>>> {
        sqlx::query_scalar("SELECT at FROM job_watermarks WHERE job = $1")
            .bind(job)
            .fetch_optional(self.pool_ref())
            .await
            .map_err(pg_error)
    }

    async fn set_watermark(&self, job: &str, at: DateTime<Utc>) -> Result<()> {
        sqlx::query(
            "INSERT INTO job_watermarks (job, at) VALUES ($1, $2) \
             ON CONFLICT (job) DO UPDATE SET at = EXCLUDED.at",
        )
        .bind(job)
        .bind(at)
        .execute(self.pool_ref())
        .await
        .map_err(pg_error)?;
        Ok(())
    }

    async fn job_state(&self, job: &str) -> Result<Option<String>> {
        let state: Option<Option<String>> =
            sqlx::query_scalar("SELECT state FROM job_watermarks WHERE job = $1")
                .bind(job)
                .fetch_optional(self.pool_ref())
                .await
                .map_err(pg_error)?;
        Ok(state.flatten())
    }

    async fn try_lock(&self, name: &str) -> Result<Option<JobLease>> {
        let options = self.pool_ref().connect_options();
        // Bounded like a pool acquire: a black-holed server must not hang the scheduler.
        let timeout = self.inner.options.acquire_timeout;
        let mut conn = tokio::time::timeout(timeout, PgConnection::connect_with(&options))
            .await
            .map_err(|_| {
                Error::Unavailable(format!(
                    "no postgresql connection for the job lock within {timeout:?}"
                ))
            })?
            .map_err(pg_error)?;
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, hashtext($2))")
            .bind(ADVISORY_NAMESPACE)
            .bind(name)
            .fetch_one(&mut conn)
            .await
            .map_err(pg_error)?;
        if !got {
            let _ = conn.close().await;
            return Ok(None);
        }
        Ok(Some(JobLease::new(
            name,
            Box::new(LockGuard { conn: Some(conn) }),
        )))
    }
}
