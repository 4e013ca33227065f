//! `SqliteStoreOptions`: the knobs of a SQLite store, with defaults that keep the product's
//! durability promise.

use std::time::Duration;

/// How hard SQLite works to make a commit survive a crash (`PRAGMA synchronous`), in WAL mode.
///
/// Every level survives the application crashing (`kill -9`, a panic, an OOM kill): a
/// committed transaction is in the WAL file, which the operating system keeps. They differ on
/// power loss and operating-system crashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// `synchronous=NORMAL`: the WAL is synced only at checkpoints. A committed transaction
    /// survives an application crash, but the last transactions before a power loss or an
    /// operating-system crash may be rolled back (the database stays consistent).
    Normal,
    /// The default: a write returns only once its transaction is synced to stable storage,
    /// so it survives power loss too, as with `synchronous=FULL`. This is what lets the
    /// server acknowledge an event with 2xx only once it can never be lost.
    ///
    /// On a file, the writer connection commits with `synchronous=NORMAL` and the store then
    /// syncs the WAL file itself, off the connection: the next transaction runs during the
    /// sync, and one sync covers every commit that returned before it began (see
    /// `docs/stores/sqlite.md`, "Durability"). An in-memory database uses `FULL` as is.
    #[default]
    Full,
    /// `synchronous=EXTRA`: like `Full`, and also syncs the directory after a journal is
    /// deleted. Only matters outside WAL mode (in-memory databases); offered for completeness.
    Extra,
}

/// Options of [`crate::SqliteStore::connect`]. Build with `SqliteStoreOptions::default()` and
/// struct update syntax; the library reads no environment variables.
#[derive(Debug, Clone, PartialEq)]
pub struct SqliteStoreOptions {
    /// Durability of commits; see [`Synchronous`].
    pub synchronous: Synchronous,
    /// Reader connections (WAL readers never block the writer). All writes go through one
    /// dedicated writer connection, so writers in this process queue instead of failing with
    /// "database is locked". An in-memory database uses one connection for everything.
    pub max_connections: u32,
    /// How long a statement waits for another process's lock before failing with
    /// [`analytics_core::Error::Unavailable`] (`PRAGMA busy_timeout`).
    pub busy_timeout: Duration,
    /// How long a call waits for a free connection of this store before failing with
    /// [`analytics_core::Error::Unavailable`].
    pub acquire_timeout: Duration,
    /// Create the database file when it does not exist.
    pub create_if_missing: bool,
    /// Page cache per connection, in KiB (`PRAGMA cache_size = -N`). Pages outside it are
    /// read through the memory map (`mmap_size_bytes`) without a copy, so this only needs
    /// to hold what one write transaction dirties plus the hot upper index levels.
    pub cache_size_kib: u32,
    /// How much of the database file SQLite maps into memory (`PRAGMA mmap_size`). Reads of
    /// mapped pages are served from the operating system's page cache without a system call
    /// or a copy; writes still go through the WAL. `0` turns mapping off.
    pub mmap_size_bytes: u64,
    /// WAL size, in pages, after which a commit on the writer connection checkpoints it into
    /// the database file (`PRAGMA wal_autocheckpoint`). With the background checkpoint on
    /// (`checkpoint_interval`), that has copied nearly everything by then, so this only
    /// bounds the WAL's size: SQLite reuses the WAL from its start only after a checkpoint
    /// that leaves nothing to copy, which constant writes may never leave room for.
    pub wal_autocheckpoint_pages: u32,
    /// On a file, a connection of its own checkpoints the WAL at most this often while
    /// writes commit (`PRAGMA wal_checkpoint(PASSIVE)`), so the writer connection does not
    /// copy pages or sync the database file between transactions. `Duration::ZERO` turns it
    /// off: the writer then checkpoints every `wal_autocheckpoint_pages` pages, as SQLite
    /// does by default.
    pub checkpoint_interval: Duration,
    /// Rows per multi-row `INSERT` in `write_batch` (clamped to SQLite's bind-variable limit).
    pub insert_chunk_rows: usize,
    /// Most rows deleted per retention transaction. Each batch commits on its own, so a
    /// writer waits for at most one batch.
    pub retention_batch_rows: u32,
    /// How long one retention transaction should take: the batch size halves when a batch
    /// takes longer and doubles (up to `retention_batch_rows`) when it takes under a quarter.
    pub retention_batch_time: Duration,
}

impl Default for SqliteStoreOptions {
    fn default() -> Self {
        Self {
            synchronous: Synchronous::Full,
            max_connections: 4,
            busy_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(30),
            create_if_missing: true,
            cache_size_kib: 32 * 1024,
            mmap_size_bytes: 1 << 30,
            wal_autocheckpoint_pages: 10_000,
            checkpoint_interval: Duration::from_millis(100),
            insert_chunk_rows: 512,
            retention_batch_rows: 10_000,
            retention_batch_time: Duration::from_millis(100),
        }
    }
}

impl Synchronous {
    pub(crate) fn to_sqlx(self) -> sqlx::sqlite::SqliteSynchronous {
        use sqlx::sqlite::SqliteSynchronous as S;
        match self {
            Self::Normal => S::Normal,
            Self::Full => S::Full,
            Self::Extra => S::Extra,
        }
    }
}
