//! Helpers: unique temporary database files (removed again by `TempDb`) and store openers.

use std::path::{Path, PathBuf};
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use analytics_store_sqlite::{SqliteStore, SqliteStoreOptions};

/// Where the tests put their databases.
fn test_dir() -> PathBuf {
    std::env::temp_dir().join("analytics-store-sqlite-tests")
}

/// Removes databases that earlier runs left behind (older than an hour, so a concurrent run's
/// files are never touched).
fn sweep_stale_files() {
    static SWEEP: Once = Once::new();
    SWEEP.call_once(|| {
        let Ok(entries) = std::fs::read_dir(test_dir()) else {
            return;
        };
        let cutoff = SystemTime::now() - Duration::from_secs(3600);
        for entry in entries.flatten() {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t < cutoff);
            if old {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    });
}

/// A fresh, unique database path (the file does not exist yet).
pub(crate) fn temp_db_path(label: &str) -> PathBuf {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    sweep_stale_files();
    let dir = test_dir();
    std::fs::create_dir_all(&dir).expect("create test dir");
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    dir.join(format!(
        "{label}-{}-{nanos}-{}.db",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ))
}

/// A temporary database path whose files (database, WAL, shared memory, lock sidecars) are
/// removed when this is dropped.
#[derive(Debug)]
pub(crate) struct TempDb {
    pub(crate) path: PathBuf,
}

impl TempDb {
    pub(crate) fn new(label: &str) -> Self {
        Self {
            path: temp_db_path(label),
        }
    }

    pub(crate) fn url(&self) -> &str {
        self.path.to_str().expect("utf-8 temp path")
    }

    pub(crate) async fn open(&self) -> SqliteStore {
        open(&self.path).await
    }

    /// Opens the file with `options` instead of the defaults.
    pub(crate) async fn open_with(&self, options: SqliteStoreOptions) -> SqliteStore {
        SqliteStore::connect(self.url(), options)
            .await
            .expect("open")
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        let Some(dir) = self.path.parent() else {
            return;
        };
        let Some(name) = self.path.file_name().and_then(|n| n.to_str()) else {
            return;
        };
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                if entry
                    .file_name()
                    .to_str()
                    .is_some_and(|f| f.starts_with(name))
                {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
    }
}

/// Opens the database at `path` with default options.
pub(crate) async fn open(path: &Path) -> SqliteStore {
    SqliteStore::connect(
        path.to_str().expect("utf-8 temp path"),
        SqliteStoreOptions::default(),
    )
    .await
    .expect("open sqlite store")
}
