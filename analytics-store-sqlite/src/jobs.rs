//! `JobStore` on SQLite: job watermarks, and the singleton-job lock (an in-process set plus,
//! for a database file, an OS file lock on `<db path>.<lock name>.lock`).

use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use analytics_core::Result;
use analytics_core::ports::{JobLease, JobStore};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{Sqlite, Transaction};

use crate::codec::{micros, opt_from_micros};
use crate::error::{DbResultExt, from_io};
use crate::store::SqliteStore;

/// The sidecar file that carries the OS lock for `name`: `<db path>.<name>.lock`, with every
/// byte outside `[A-Za-z0-9._-]` written as `%XX` so distinct names never share a file.
pub(crate) fn lock_file_path(db: &Path, name: &str) -> PathBuf {
    let mut safe = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            safe.push(char::from(b));
        } else {
            let _ = write!(safe, "%{b:02X}");
        }
    }
    PathBuf::from(format!("{}.{safe}.lock", db.display()))
}

/// Holds a singleton lock; dropping it releases both halves.
struct LockGuard {
    locks: Arc<Mutex<HashSet<String>>>,
    name: String,
    /// The locked sidecar file. Closing it releases the OS lock; so does the process dying,
    /// so a crashed holder never blocks the next one.
    file: Option<File>,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Some(file) = self.file.take() {
            // Closing the descriptor releases the lock too; unlocking first makes the
            // release immediate even if something else still shares the descriptor.
            let _ = file.unlock();
        }
        self.locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.name);
    }
}

/// Takes the OS lock on the sidecar file without waiting: `Ok(None)` when another process
/// (or another store on the same file in this process) holds it.
fn try_file_lock(path: &Path) -> std::io::Result<Option<File>> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(e),
    }
}

/// Sets a job's watermark and state inside the caller's transaction.
pub(crate) async fn put_job_state(
    tx: &mut Transaction<'static, Sqlite>,
    job: &str,
    at: DateTime<Utc>,
    state: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO job_watermarks (job, at, state) VALUES (?, ?, ?) \
         ON CONFLICT (job) DO UPDATE SET at = excluded.at, state = excluded.state",
    )
    .bind(job)
    .bind(micros(at))
    .bind(state)
    .execute(&mut **tx)
    .await
    .db("set job state")?;
    Ok(())
}

#[async_trait]
impl JobStore for SqliteStore {
    async fn watermark(&self, job: &str) -> Result<Option<DateTime<Utc>>> {
        let at: Option<i64> = sqlx::query_scalar("SELECT at FROM job_watermarks WHERE job = ?")
            .bind(job)
            .fetch_optional(self.reader())
            .await
            .db("read watermark")?;
        opt_from_micros("watermark", at)
    }

    async fn set_watermark(&self, job: &str, at: DateTime<Utc>) -> Result<()> {
        let mut tx = self.begin_write("set watermark").await?;
        sqlx::query(
            "INSERT INTO job_watermarks (job, at) VALUES (?, ?) \
             ON CONFLICT (job) DO UPDATE SET at = excluded.at",
        )
        .bind(job)
        .bind(micros(at))
        .execute(&mut *tx)
        .await
        .db("set watermark")?;
        self.commit(tx, "commit watermark").await?;
        Ok(())
    }

    async fn job_state(&self, job: &str) -> Result<Option<String>> {
        let state: Option<Option<String>> =
            sqlx::query_scalar("SELECT state FROM job_watermarks WHERE job = ?")
                .bind(job)
                .fetch_optional(self.reader())
                .await
                .db("read job state")?;
        Ok(state.flatten())
    }

    async fn try_lock(&self, name: &str) -> Result<Option<JobLease>> {
        let locks = Arc::clone(&self.inner.locks);
        // In-process first: the same store (or a clone) never grants a held lock twice.
        if !locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned())
        {
            return Ok(None);
        }
        let mut guard = LockGuard {
            locks,
            name: name.to_owned(),
            file: None,
        };
        // Then across processes, for a database file. (An in-memory database is private to
        // this store, so the set is all there is to exclude.)
        if let Some(db) = self.path() {
            match try_file_lock(&lock_file_path(db, name)) {
                Ok(Some(file)) => guard.file = Some(file),
                Ok(None) => return Ok(None), // dropping the guard frees the set entry
                Err(e) => return Err(from_io("take job lock", &e)),
            }
        }
        Ok(Some(JobLease::new(name, Box::new(guard))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_files_sit_beside_the_database_with_escaped_names() {
        let db = Path::new("/data/analytics.db");
        assert_eq!(
            lock_file_path(db, "scheduler"),
            PathBuf::from("/data/analytics.db.scheduler.lock")
        );
        assert_eq!(
            lock_file_path(db, "rollup.hour"),
            PathBuf::from("/data/analytics.db.rollup.hour.lock")
        );
        assert_eq!(
            lock_file_path(db, "a/b c"),
            PathBuf::from("/data/analytics.db.a%2Fb%20c.lock")
        );
        assert_ne!(lock_file_path(db, "a/b"), lock_file_path(db, "a%2Fb"));
    }
}
