//! `SqliteStore`: opening the database (file or memory), its connection pools, migrations,
//! and the `Store` bundle impl.

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use analytics_core::ports::{PoolStats, Store};
use analytics_core::{Error, Result};
use async_trait::async_trait;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::{Sqlite, Transaction};

use crate::checkpoint::Checkpointer;
use crate::error::{DbResultExt, from_io};
use crate::options::{SqliteStoreOptions, Synchronous};
use crate::wal_sync::WalSync;

/// The embedded migrations (`migrations/*.sql`); applied by [`SqliteStore::connect`].
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Every store port on one SQLite database. Clones share the pools and the lock table.
///
/// Writes go through one dedicated writer connection (`BEGIN IMMEDIATE` transactions), so
/// concurrent writers in this process queue in the pool instead of failing with "database is
/// locked"; reads use a pool of WAL readers that never block the writer. Another process on
/// the same file is held off by SQLite's own locking, waited for up to the busy timeout.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) writer: SqlitePool,
    pub(crate) reader: SqlitePool,
    /// The database file; `None` for an in-memory database.
    pub(crate) path: Option<PathBuf>,
    pub(crate) options: SqliteStoreOptions,
    /// Singleton-job locks held by this store (and its clones).
    pub(crate) locks: Arc<Mutex<HashSet<String>>>,
    /// Syncs the WAL after each write commit when the options ask for `Synchronous::Full`
    /// on a file (the writer then commits with `synchronous=NORMAL`); `None` otherwise.
    pub(crate) wal_sync: Option<WalSync>,
    /// Checkpoints the WAL off the writer connection (`checkpoint.rs`); `None` in memory or
    /// with a zero `checkpoint_interval`.
    pub(crate) checkpointer: Option<Checkpointer>,
}

/// What `connect` was asked to open.
struct Target {
    options: SqliteConnectOptions,
    path: Option<PathBuf>,
    /// `synchronous=` from the URL's query, which overrides the options'.
    synchronous: Option<Synchronous>,
}

/// Takes `synchronous=normal|full|extra` out of a `sqlite:` URL's query (sqlx does not know
/// the parameter), so a deployment can choose it in `DATABASE_URL`.
fn take_synchronous(url: &str) -> Result<(String, Option<Synchronous>)> {
    let Some((head, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), None));
    };
    let mut synchronous = None;
    let mut rest = Vec::new();
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("synchronous", value)) => {
                synchronous = Some(match value.to_ascii_lowercase().as_str() {
                    "normal" => Synchronous::Normal,
                    "full" => Synchronous::Full,
                    "extra" => Synchronous::Extra,
                    _ => {
                        return Err(Error::invalid(
                            "database_url",
                            format!("synchronous must be normal, full or extra, not {value:?}"),
                        ));
                    }
                });
            }
            _ => rest.push(pair),
        }
    }
    let url = if rest.is_empty() {
        head.to_owned()
    } else {
        format!("{head}?{}", rest.join("&"))
    };
    Ok((url, synchronous))
}

fn parse_target(url_or_path: &str) -> Result<Target> {
    let bad = |e: sqlx::Error| Error::invalid("database_url", e.to_string());
    let trimmed = url_or_path.trim();
    if trimmed.is_empty() {
        return Err(Error::invalid("database_url", "must not be empty"));
    }
    if matches!(
        trimmed,
        ":memory:" | "sqlite::memory:" | "sqlite://:memory:"
    ) {
        return Ok(Target {
            options: SqliteConnectOptions::from_str("sqlite::memory:").map_err(bad)?,
            path: None,
            synchronous: None,
        });
    }
    if trimmed.starts_with("sqlite:") {
        let (url, synchronous) = take_synchronous(trimmed)?;
        let options = SqliteConnectOptions::from_str(&url).map_err(bad)?;
        let in_memory = url.contains("mode=memory");
        let path = (!in_memory).then(|| options.get_filename().to_path_buf());
        return Ok(Target {
            options,
            path,
            synchronous,
        });
    }
    Ok(Target {
        options: SqliteConnectOptions::new().filename(trimmed),
        path: Some(PathBuf::from(trimmed)),
        synchronous: None,
    })
}

/// An exclusive OS lock on `<db path>.migrate.lock`, held while a process opens and migrates
/// the database, so two processes starting at once do not race on `journal_mode` or on the
/// migrations table.
/// Opens `path` for writing, creating it readable and writable by its owner only (the
/// database holds every event; SQLite gives its `-wal` and `-shm` files the database
/// file's permissions). An existing file keeps its permissions.
fn open_private(path: &Path) -> std::io::Result<File> {
    let mut options = File::options();
    options.create(true).truncate(false).write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options.open(path)
}

/// Creates the database file with owner-only permissions if it does not exist yet.
async fn create_private(db: &Path) -> Result<()> {
    let path = db.to_path_buf();
    tokio::task::spawn_blocking(move || {
        if !path.exists() {
            open_private(&path).map_err(|e| from_io("create database file", &e))?;
        }
        Ok(())
    })
    .await
    .map_err(|e| Error::Internal(format!("create database task failed: {e}")))?
}

async fn migration_lock(db: &Path) -> Result<File> {
    let path = PathBuf::from(format!("{}.migrate.lock", db.display()));
    tokio::task::spawn_blocking(move || {
        let file = open_private(&path).map_err(|e| from_io("open migration lock", &e))?;
        file.lock()
            .map_err(|e| from_io("take migration lock", &e))?;
        Ok(file)
    })
    .await
    .map_err(|e| Error::Internal(format!("migration lock task failed: {e}")))?
}

impl SqliteStore {
    /// Opens (creating it if missing and allowed) the database at `url_or_path` and applies
    /// the migrations; running them again is a no-op.
    ///
    /// `url_or_path` is a file path (`./analytics.db`), a `sqlite:` URL
    /// (`sqlite://analytics.db?mode=rwc`), or `sqlite::memory:` for a private in-memory
    /// database (one connection serves every call, and the data lives as long as the store).
    /// A URL's `synchronous=normal|full|extra` overrides `options.synchronous`.
    pub async fn connect(url_or_path: &str, mut options: SqliteStoreOptions) -> Result<Self> {
        let target = parse_target(url_or_path)?;
        if let Some(s) = target.synchronous {
            options.synchronous = s;
        }
        let in_memory = target.path.is_none();
        let mut base = target
            .options
            .create_if_missing(options.create_if_missing)
            .busy_timeout(options.busy_timeout)
            .synchronous(options.synchronous.to_sqlx())
            .foreign_keys(true)
            .pragma("cache_size", format!("-{}", options.cache_size_kib))
            .pragma("temp_store", "memory")
            .pragma("mmap_size", options.mmap_size_bytes.to_string())
            .pragma(
                "wal_autocheckpoint",
                options.wal_autocheckpoint_pages.to_string(),
            )
            // Keeps `PRAGMA optimize` (statistics for the query planner) cheap at any size.
            .analysis_limit(1000);
        if !in_memory {
            base = base.journal_mode(SqliteJournalMode::Wal);
        }

        let migrating = match &target.path {
            Some(path) => {
                if options.create_if_missing {
                    create_private(path).await?;
                }
                Some(migration_lock(path).await?)
            }
            None => None,
        };
        // `Full` on a file: the writer commits with `NORMAL` and the store syncs the WAL
        // after the commit, off the connection (`wal_sync.rs`).
        let wal_sync = match &target.path {
            Some(path) if options.synchronous == Synchronous::Full => Some(WalSync::new(path)),
            _ => None,
        };
        let writer_options = if wal_sync.is_some() {
            base.clone().synchronous(Synchronous::Normal.to_sqlx())
        } else {
            base.clone()
        };
        // One writer connection, kept open for the store's lifetime: an in-memory database
        // lives exactly as long as it.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(options.acquire_timeout)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(writer_options)
            .await
            .db("open database")?;
        MIGRATOR
            .run(&writer)
            .await
            .map_err(sqlx::Error::from)
            .db("migrate")?;
        drop(migrating);
        // Planner statistics for tables that have none or whose size changed a lot; the
        // retention job refreshes them as the data turns over.
        sqlx::query("PRAGMA optimize=0x10002")
            .execute(&writer)
            .await
            .db("optimize")?;

        let checkpointer = if in_memory || options.checkpoint_interval.is_zero() {
            None
        } else {
            Some(Checkpointer::start(base.clone(), options.checkpoint_interval).await?)
        };
        let reader = if in_memory {
            writer.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(options.max_connections.max(1))
                .acquire_timeout(options.acquire_timeout)
                .connect_with(base.pragma("query_only", "ON"))
                .await
                .db("open reader")?
        };
        Ok(Self {
            inner: Arc::new(Inner {
                writer,
                reader,
                path: target.path,
                options,
                locks: Arc::default(),
                wal_sync,
                checkpointer,
            }),
        })
    }

    /// The database file, or `None` for an in-memory database.
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &SqliteStoreOptions {
        &self.inner.options
    }

    /// Closes every connection (waiting for them to finish), checkpointing the WAL. The store
    /// and its clones fail with `Unavailable` afterwards. Dropping the last clone without
    /// calling this is also safe: committed data is durable either way.
    pub async fn close(&self) {
        if let Some(c) = &self.inner.checkpointer {
            c.close().await;
        }
        self.inner.reader.close().await;
        self.inner.writer.close().await;
    }

    /// Starts a write transaction on the writer connection. `BEGIN IMMEDIATE` takes the
    /// database's write lock up front, so a transaction never fails halfway on a lock
    /// upgrade; another process holding it is waited for up to the busy timeout.
    pub(crate) async fn begin_write(&self, context: &str) -> Result<Transaction<'static, Sqlite>> {
        self.inner
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .db(context)
    }

    /// Commits a write transaction started with [`Self::begin_write`] and returns once it is
    /// as durable as the options promise: with `Synchronous::Full` on a file, after the WAL
    /// sync that covers it (the writer connection is already free for the next
    /// transaction meanwhile).
    pub(crate) async fn commit(
        &self,
        tx: Transaction<'static, Sqlite>,
        context: &str,
    ) -> Result<()> {
        tx.commit().await.db(context)?;
        if let Some(c) = &self.inner.checkpointer {
            c.committed();
        }
        match &self.inner.wal_sync {
            Some(wal) => wal.committed().await,
            None => Ok(()),
        }
    }

    /// How many times the store synced its WAL file after commits (always 0 unless the
    /// options ask for `Synchronous::Full` on a file).
    pub fn wal_syncs(&self) -> u64 {
        self.inner.wal_sync.as_ref().map_or(0, WalSync::syncs)
    }

    /// How many checkpoints the background connection ran (always 0 in memory or with a
    /// zero `checkpoint_interval`).
    pub fn background_checkpoints(&self) -> u64 {
        self.inner
            .checkpointer
            .as_ref()
            .map_or(0, Checkpointer::runs)
    }

    /// The pool reads go to.
    pub(crate) fn reader(&self) -> &SqlitePool {
        &self.inner.reader
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<()> {
        let latest = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
        let applied: Option<i64> = sqlx::query_scalar(
            "SELECT version FROM _sqlx_migrations WHERE version = ? AND success",
        )
        .bind(latest)
        .fetch_optional(self.reader())
        .await
        .db("ping")?;
        match applied {
            Some(_) => Ok(()),
            None => Err(Error::Unavailable(format!(
                "sqlite store is not migrated to version {latest}"
            ))),
        }
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }

    /// Two when commits are synced off the writer connection: one batch's transaction runs
    /// while the previous one waits for its WAL sync. One otherwise (writes serialize on the
    /// one writer connection, syncs included).
    fn write_concurrency(&self) -> usize {
        if self.inner.wal_sync.is_some() { 2 } else { 1 }
    }

    fn pool_stats(&self) -> Vec<PoolStats> {
        let stats = |pool: &'static str, p: &SqlitePool| PoolStats {
            pool,
            open: p.size(),
            idle: u32::try_from(p.num_idle()).unwrap_or(u32::MAX),
            max: p.options().get_max_connections(),
        };
        vec![
            stats("writer", &self.inner.writer),
            stats("reader", &self.inner.reader),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_files_urls_or_memory() {
        assert!(parse_target("sqlite::memory:").unwrap().path.is_none());
        assert!(parse_target(":memory:").unwrap().path.is_none());
        assert_eq!(
            parse_target("./analytics.db").unwrap().path,
            Some(PathBuf::from("./analytics.db"))
        );
        assert_eq!(
            parse_target("sqlite://data/a.db?mode=rwc").unwrap().path,
            Some(PathBuf::from("data/a.db"))
        );
        assert!(matches!(
            parse_target("  "),
            Err(Error::Invalid { field, .. }) if field == "database_url"
        ));
        assert!(matches!(
            parse_target("sqlite://x.db?mode=bogus"),
            Err(Error::Invalid { .. })
        ));
    }
}
