//! The one place where driver errors become the core's error kinds: `sqlx::Error` never
//! crosses a port.
//!
//! | SQLite / sqlx condition | core error |
//! |---|---|
//! | `SQLITE_BUSY`, `SQLITE_LOCKED` (another connection or process holds the lock past the busy timeout) | `Unavailable` |
//! | `SQLITE_IOERR`, `SQLITE_FULL`, `SQLITE_CANTOPEN`, `SQLITE_NOMEM`, `SQLITE_PROTOCOL` | `Unavailable` |
//! | pool timeout, pool closed, I/O error | `Unavailable` |
//! | unique or primary-key constraint violation | `Conflict` |
//! | everything else (other constraints, corrupt data, decode errors, bad SQL) | `Internal` |

use std::fmt::Display;

use analytics_core::Error;

/// SQLite primary result codes (the low byte of an extended code).
mod code {
    pub(super) const BUSY: i32 = 5;
    pub(super) const LOCKED: i32 = 6;
    pub(super) const NOMEM: i32 = 7;
    pub(super) const IOERR: i32 = 10;
    pub(super) const FULL: i32 = 13;
    pub(super) const CANTOPEN: i32 = 14;
    pub(super) const PROTOCOL: i32 = 15;
    pub(super) const CONSTRAINT: i32 = 19;
    /// Extended codes of `CONSTRAINT`.
    pub(super) const CONSTRAINT_PRIMARYKEY: i32 = 1555;
    pub(super) const CONSTRAINT_UNIQUE: i32 = 2067;
}

/// What a caller can do about an error; decides the core variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Retry later.
    Unavailable,
    /// The write contradicts stored state.
    Conflict,
    /// A bug or corrupt data.
    Internal,
}

/// Classifies a SQLite extended result code.
pub(crate) fn classify_code(extended: i32) -> Kind {
    match extended & 0xff {
        code::BUSY
        | code::LOCKED
        | code::NOMEM
        | code::IOERR
        | code::FULL
        | code::CANTOPEN
        | code::PROTOCOL => Kind::Unavailable,
        code::CONSTRAINT
            if matches!(
                extended,
                code::CONSTRAINT_PRIMARYKEY | code::CONSTRAINT_UNIQUE
            ) =>
        {
            Kind::Conflict
        }
        _ => Kind::Internal,
    }
}

/// Classifies a sqlx error.
pub(crate) fn classify(e: &sqlx::Error) -> Kind {
    match e {
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|c| c.parse::<i32>().ok())
            .map_or(Kind::Internal, classify_code),
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
            Kind::Unavailable
        }
        sqlx::Error::Migrate(m) => match &**m {
            sqlx::migrate::MigrateError::Execute(inner)
            | sqlx::migrate::MigrateError::ExecuteMigration(inner, _) => classify(inner),
            _ => Kind::Internal,
        },
        _ => Kind::Internal,
    }
}

/// Converts a sqlx error, prefixing what the store was doing.
pub(crate) fn from_sqlx(context: &str, e: sqlx::Error) -> Error {
    let message = format!("sqlite {context}: {e}");
    match classify(&e) {
        Kind::Unavailable => {
            tracing::warn!(error = %e, context, "sqlite store unavailable");
            Error::Unavailable(message)
        }
        // The driver's text (values, table and index names) is logged, never sent.
        Kind::Conflict => {
            tracing::debug!(error = %e, context, "sqlite conflict");
            Error::Conflict(format!(
                "sqlite {context}: a record with this key already exists"
            ))
        }
        Kind::Internal => {
            tracing::error!(error = %e, context, "sqlite store internal error");
            Error::Internal(message)
        }
    }
}

/// Converts an I/O error of the store's own files (lock files): always retryable.
pub(crate) fn from_io(context: &str, e: &std::io::Error) -> Error {
    Error::Unavailable(format!("sqlite {context}: {e}"))
}

/// A stored row that cannot be turned back into a domain value.
pub(crate) fn corrupt(what: &str, detail: impl Display) -> Error {
    Error::Internal(format!("corrupt {what} row in sqlite store: {detail}"))
}

/// `.db("context")?` on sqlx results.
pub(crate) trait DbResultExt<T> {
    /// Converts the error with [`from_sqlx`].
    fn db(self, context: &str) -> Result<T, Error>;
}

impl<T> DbResultExt<T> for Result<T, sqlx::Error> {
    fn db(self, context: &str) -> Result<T, Error> {
        self.map_err(|e| from_sqlx(context, e))
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::error::Error as StdError;
    use std::fmt;

    use sqlx::error::{DatabaseError, ErrorKind};
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
    use sqlx::{ConnectOptions, Connection, Executor};

    use super::*;

    /// A database error with a chosen extended code, as the SQLite driver reports them.
    #[derive(Debug)]
    struct Coded(i32);

    impl fmt::Display for Coded {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "(code: {}) test error", self.0)
        }
    }

    impl StdError for Coded {}

    impl DatabaseError for Coded {
        fn message(&self) -> &str {
            "test error"
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(self.0.to_string().into())
        }
        fn as_error(&self) -> &(dyn StdError + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn StdError + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn StdError + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> ErrorKind {
            ErrorKind::Other
        }
    }

    fn check(e: sqlx::Error, want: &str) {
        let got = from_sqlx("test", e);
        let name = match &got {
            Error::Unavailable(_) => "unavailable",
            Error::Conflict(_) => "conflict",
            Error::Internal(_) => "internal",
            Error::Invalid { .. } => "invalid",
            Error::NotFound { .. } => "not_found",
        };
        assert_eq!(name, want, "{got}");
        assert!(got.to_string().contains("sqlite test"), "{got}");
    }

    fn coded(c: i32) -> sqlx::Error {
        sqlx::Error::Database(Box::new(Coded(c)))
    }

    #[test]
    fn driver_errors_map_to_kinds() {
        check(coded(5), "unavailable"); // SQLITE_BUSY
        check(coded(517), "unavailable"); // SQLITE_BUSY_SNAPSHOT
        check(coded(6), "unavailable"); // SQLITE_LOCKED
        check(coded(262), "unavailable"); // SQLITE_LOCKED_SHAREDCACHE
        check(coded(10), "unavailable"); // SQLITE_IOERR
        check(coded(3850), "unavailable"); // SQLITE_IOERR_FSYNC... family
        check(coded(13), "unavailable"); // SQLITE_FULL
        check(coded(14), "unavailable"); // SQLITE_CANTOPEN
        check(coded(2067), "conflict"); // SQLITE_CONSTRAINT_UNIQUE
        check(coded(1555), "conflict"); // SQLITE_CONSTRAINT_PRIMARYKEY
        check(coded(1299), "internal"); // SQLITE_CONSTRAINT_NOTNULL
        check(coded(275), "internal"); // SQLITE_CONSTRAINT_CHECK
        check(coded(787), "internal"); // SQLITE_CONSTRAINT_FOREIGNKEY
        check(coded(1), "internal"); // SQLITE_ERROR (bad SQL)
        check(coded(11), "internal"); // SQLITE_CORRUPT
        check(sqlx::Error::PoolTimedOut, "unavailable");
        check(sqlx::Error::PoolClosed, "unavailable");
        check(
            sqlx::Error::Io(std::io::Error::other("disk gone")),
            "unavailable",
        );
        check(sqlx::Error::RowNotFound, "internal");
        check(sqlx::Error::Protocol("garbage".into()), "internal");
        check(
            sqlx::Error::Migrate(Box::new(sqlx::migrate::MigrateError::Execute(coded(5)))),
            "unavailable",
        );
        check(
            sqlx::Error::Migrate(Box::new(sqlx::migrate::MigrateError::VersionMismatch(1))),
            "internal",
        );
    }

    #[test]
    fn messages_are_lowercase_and_keep_the_cause() {
        let e = from_sqlx("write batch", coded(5));
        assert_eq!(
            e.to_string(),
            "unavailable: sqlite write batch: error returned from database: (code: 5) test error"
        );
        assert!(e.is_retryable());
        assert!(!from_sqlx("x", coded(2067)).is_retryable());
        let c = corrupt("event", "bad uuid");
        assert_eq!(
            c.to_string(),
            "internal error: corrupt event row in sqlite store: bad uuid"
        );
    }

    /// The real driver reports codes the classifier understands.
    #[tokio::test]
    async fn real_sqlite_errors_are_classified() {
        let mut conn = SqliteConnectOptions::new()
            .in_memory(true)
            .connect()
            .await
            .expect("connect");
        conn.execute("create table t (k integer primary key, u text unique, n text not null)")
            .await
            .expect("create");
        conn.execute("insert into t values (1, 'a', 'x')")
            .await
            .expect("insert");
        let dup_pk = conn
            .execute("insert into t values (1, 'b', 'x')")
            .await
            .expect_err("duplicate key");
        assert_eq!(classify(&dup_pk), Kind::Conflict, "{dup_pk}");
        let dup_unique = conn
            .execute("insert into t values (2, 'a', 'x')")
            .await
            .expect_err("duplicate unique");
        assert_eq!(classify(&dup_unique), Kind::Conflict, "{dup_unique}");
        let null = conn
            .execute("insert into t values (3, 'c', null)")
            .await
            .expect_err("not null");
        assert_eq!(classify(&null), Kind::Internal, "{null}");
        let syntax = conn.execute("selec 1").await.expect_err("syntax");
        assert_eq!(classify(&syntax), Kind::Internal, "{syntax}");
        conn.close().await.expect("close");
    }

    /// A lock held by another connection past the busy timeout is `Unavailable`.
    #[tokio::test]
    async fn a_held_lock_is_unavailable() {
        let path = std::env::temp_dir().join(format!(
            "analytics-sqlite-error-test-{}-{}.db",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        let opts = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(std::time::Duration::from_millis(10));
        let mut holder = opts.clone().connect().await.expect("connect");
        holder
            .execute("create table t (x integer)")
            .await
            .expect("create");
        holder.execute("begin immediate").await.expect("begin");
        holder
            .execute("insert into t values (1)")
            .await
            .expect("insert");
        let mut other = opts.connect().await.expect("connect");
        let busy = other
            .execute("begin immediate")
            .await
            .expect_err("the write lock is held");
        assert_eq!(classify(&busy), Kind::Unavailable, "{busy}");
        assert!(from_sqlx("x", busy).is_retryable());
        holder.execute("rollback").await.expect("rollback");
        holder.close().await.expect("close");
        other.close().await.expect("close");
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
}
