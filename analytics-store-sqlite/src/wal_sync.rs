//! `WalSync`: the sync that makes a commit survive power loss, done after the commit and
//! off the writer connection, shared by every commit that finished before it started.
//!
//! With `synchronous=FULL` SQLite syncs the WAL inside each commit, on the one writer
//! connection, so the next transaction waits for the disk. The store instead commits with
//! `synchronous=NORMAL` (the commit's frames are written to the WAL file, not synced) and
//! then syncs the WAL file itself before the write returns: the writer connection is free
//! for the next transaction during the sync, and one `fdatasync` covers every commit that
//! returned before it began (group sync). A write still returns only once its transaction
//! is on stable storage, as with `FULL`.
//!
//! Why this is as safe as `FULL`: a commit's frames, its commit record last, are in the
//! operating system's page cache when the commit returns, and `fdatasync` of the WAL file
//! writes out every page the file had dirty when it was called. In `NORMAL` mode SQLite
//! itself syncs the WAL before each checkpoint and the database file after it, before the
//! WAL is reused, so frames are never overwritten before they are durable elsewhere. The
//! file is opened anew for every sync, so a WAL file SQLite recreated is the one synced.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use analytics_core::{Error, Result};

use crate::error::from_io;

/// Syncs a database's WAL file after commits, one sync for all commits that precede it.
#[derive(Debug)]
pub(crate) struct WalSync {
    wal: PathBuf,
    /// Commits that returned so far (each takes the next number).
    committed: AtomicU64,
    /// The highest commit number known durable; held while a sync runs.
    durable: tokio::sync::Mutex<u64>,
    /// `fdatasync` calls made, for tests and the benchmarks.
    syncs: AtomicU64,
}

impl WalSync {
    /// For the database file `db` (its WAL is `<db>-wal`).
    pub(crate) fn new(db: &Path) -> Self {
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        Self {
            wal: PathBuf::from(wal),
            committed: AtomicU64::new(0),
            durable: tokio::sync::Mutex::new(0),
            syncs: AtomicU64::new(0),
        }
    }

    /// Returns once the commit that has just returned is on stable storage. Call it after
    /// every commit of a write transaction, without holding the writer connection.
    pub(crate) async fn committed(&self) -> Result<()> {
        let mine = self.committed.fetch_add(1, Ordering::AcqRel) + 1;
        let mut durable = self.durable.lock().await;
        if *durable >= mine {
            // A sync that began after this commit returned has covered it.
            return Ok(());
        }
        // Every commit numbered up to here has returned, so its frames are in the file.
        let upto = self.committed.load(Ordering::Acquire);
        let wal = self.wal.clone();
        tokio::task::spawn_blocking(move || {
            std::fs::OpenOptions::new()
                .write(true)
                .open(&wal)
                .and_then(|f| f.sync_data())
        })
        .await
        .map_err(|e| Error::Internal(format!("wal sync task failed: {e}")))?
        .map_err(|e| from_io("sync wal", &e))?;
        self.syncs.fetch_add(1, Ordering::Relaxed);
        *durable = upto;
        Ok(())
    }

    /// How many times the WAL file was synced.
    pub(crate) fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_sync_covers_the_commits_that_returned_before_it() {
        let dir = tempfile::tempdir().expect("dir");
        let db = dir.path().join("a.db");
        std::fs::write(format!("{}-wal", db.display()), b"frames").expect("wal");
        let sync = std::sync::Arc::new(WalSync::new(&db));
        // Hold the gate so every commit below queues behind one sync.
        let gate = sync.durable.lock().await;
        let waiters: Vec<_> = (0..8)
            .map(|_| {
                let sync = sync.clone();
                tokio::spawn(async move { sync.committed().await })
            })
            .collect();
        while sync.committed.load(Ordering::Acquire) < 8 {
            tokio::task::yield_now().await;
        }
        drop(gate);
        for w in waiters {
            w.await.expect("join").expect("synced");
        }
        assert_eq!(sync.syncs(), 1, "the first sync covered all eight commits");
        sync.committed().await.expect("synced");
        assert_eq!(sync.syncs(), 2, "a later commit needs a sync of its own");
    }

    #[tokio::test]
    async fn a_missing_wal_file_fails_the_write_instead_of_passing_silently() {
        let dir = tempfile::tempdir().expect("dir");
        let sync = WalSync::new(&dir.path().join("none.db"));
        let err = sync.committed().await.expect_err("no wal file");
        assert!(
            matches!(&err, Error::Unavailable(m) if m.contains("sync wal")),
            "{err:?}"
        );
    }
}
