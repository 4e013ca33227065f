//! `Checkpointer`: copies the WAL back into the database file from a connection of its own,
//! so the writer connection does not.
//!
//! SQLite's automatic checkpoint runs inside the commit that takes the WAL past
//! `wal_autocheckpoint` pages, on the writer connection: it reads the new frames, writes
//! their pages into the database file and syncs both files, and the next transaction waits
//! for all of it. Here a connection of the store's own, on its own thread, runs
//! `PRAGMA wal_checkpoint(PASSIVE)` after commits, at most once per
//! [`SqliteStoreOptions::checkpoint_interval`](crate::SqliteStoreOptions), while the writer
//! goes on with the next transaction. A passive checkpoint takes no lock a writer or a
//! reader waits for, and copies only frames no reader still needs.
//!
//! SQLite starts writing the WAL from its beginning again only when a write transaction
//! begins with every frame copied back, which constant writes may never leave room for,
//! so the writer keeps its own automatic checkpoint at `wal_autocheckpoint` pages as the
//! bound on the WAL's size: by then this one has copied nearly all of it, and the writer
//! copies the rest. The durability argument of `wal_sync.rs` is unchanged: every checkpoint,
//! whichever connection runs it, syncs the WAL before copying and the database file after.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use analytics_core::Result;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions as _, Connection as _, SqliteConnection};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::error::DbResultExt;

/// A background connection that checkpoints the WAL after commits.
#[derive(Debug)]
pub(crate) struct Checkpointer {
    /// "A transaction committed": at most one waits, later ones join it. `None` once closed.
    commits: Mutex<Option<mpsc::Sender<()>>>,
    task: Mutex<Option<JoinHandle<()>>>,
    /// Checkpoints run (including ones that had nothing to copy).
    runs: Arc<AtomicU64>,
}

impl Checkpointer {
    /// Opens the checkpointing connection with `options` and starts its task.
    pub(crate) async fn start(options: SqliteConnectOptions, interval: Duration) -> Result<Self> {
        let conn = options.connect().await.db("open checkpoint connection")?;
        let (commits, rx) = mpsc::channel(1);
        let runs = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(run(conn, rx, interval, runs.clone()));
        Ok(Self {
            commits: Mutex::new(Some(commits)),
            task: Mutex::new(Some(task)),
            runs,
        })
    }

    /// Notes that a write transaction committed: a checkpoint follows within the interval.
    pub(crate) fn committed(&self) {
        let commits = self.commits.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = commits.as_ref() {
            // Full: a checkpoint is already due, and it will copy this commit too.
            let _ = tx.try_send(());
        }
    }

    /// Stops the task after the checkpoint it may be running and closes its connection.
    pub(crate) async fn close(&self) {
        drop(
            self.commits
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
        );
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    /// How many checkpoints the background connection ran.
    pub(crate) fn runs(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }
}

async fn run(
    mut conn: SqliteConnection,
    mut commits: mpsc::Receiver<()>,
    interval: Duration,
    runs: Arc<AtomicU64>,
) {
    while commits.recv().await.is_some() {
        let started = tokio::time::Instant::now();
        // (busy, frames in the WAL, frames copied back); a busy result means another
        // checkpoint (the writer's own) is running, and the next commit tries again.
        match sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&mut conn)
            .await
        {
            Ok(_) => {
                runs.fetch_add(1, Ordering::Relaxed);
            }
            // Not fatal: the writer's own automatic checkpoint still bounds the WAL.
            Err(e) => tracing::warn!(error = %e, "background wal checkpoint failed"),
        }
        // At most one checkpoint per interval: commits meanwhile wait as one notice.
        tokio::time::sleep_until(started + interval).await;
    }
    let _ = conn.close().await;
}
