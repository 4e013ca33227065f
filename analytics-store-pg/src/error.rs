//! Driver errors to port errors: the one place where a `sqlx::Error` becomes an
//! [`analytics_core::Error`], so no driver type crosses a port.
//!
//! The rule is by what the caller can do about it: retry later (`Unavailable`: the server
//! is down, restarting, out of connections, or the transaction lost a deadlock or
//! serialization race, so nothing was committed), fix the input (`Invalid`), or stop
//! (`Conflict` for unique violations, `Internal` for everything that means a bug).

use analytics_core::Error;

/// What a SQLSTATE means for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// Retry later: nothing was committed.
    Unavailable,
    /// A unique or exclusion constraint: the record already exists.
    Conflict,
    /// A foreign key points nowhere: the port decides whether that is `NotFound` or
    /// `Conflict` (see [`foreign_key_as`]).
    ForeignKey,
    /// The input holds a value PostgreSQL cannot store (a NUL character, a number or date
    /// out of range).
    Invalid,
    /// Anything else: a bug or a broken invariant.
    Internal,
}

/// Classifies a SQLSTATE (<https://www.postgresql.org/docs/current/errcodes-appendix.html>).
pub(crate) fn classify(sqlstate: &str) -> Class {
    match sqlstate {
        // integrity_constraint_violation: unique_violation, exclusion_violation
        "23505" | "23P01" => Class::Conflict,
        // foreign_key_violation
        "23503" => Class::ForeignKey,
        // transaction_rollback: serialization_failure, deadlock_detected;
        // lock_not_available (lock_timeout); query_canceled (statement_timeout, cancel);
        // read_only_sql_transaction (a standby after a failover);
        // cannot_connect_now, admin_shutdown, crash_shutdown;
        // insufficient_resources: too_many_connections, disk_full, out_of_memory, ...
        "40001" | "40P01" | "55P03" | "57014" | "25006" | "57P01" | "57P02" | "57P03" => {
            Class::Unavailable
        }
        // connection_exception (08000, 08003, 08006, 08001, 08004, ...) and
        // insufficient_resources (53000, 53100, 53200, 53300, 53400)
        s if s.starts_with("08") || s.starts_with("53") => Class::Unavailable,
        // untranslatable_character (\u0000 in jsonb), character_not_in_repertoire (NUL in
        // text), string_data_right_truncation, numeric_value_out_of_range,
        // datetime_field_overflow, invalid_datetime_format
        "22P05" | "22021" | "22001" | "22003" | "22008" | "22007" => Class::Invalid,
        _ => Class::Internal,
    }
}

/// Converts a driver error into a port error.
pub(crate) fn pg_error(e: sqlx::Error) -> Error {
    match e {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            let message = db.message().to_owned();
            match classify(&code) {
                Class::Unavailable => Error::Unavailable(format!("postgresql ({code}): {message}")),
                // Client-visible kinds carry our own words: the driver's text (values,
                // table and constraint names) is logged, never sent.
                Class::Conflict => {
                    tracing::debug!(code, error = %message, "postgresql conflict");
                    Error::Conflict(conflict_message(db.constraint()))
                }
                Class::ForeignKey => {
                    tracing::debug!(code, error = %message, "postgresql foreign key violation");
                    Error::Conflict("a record this one refers to does not exist".to_owned())
                }
                Class::Invalid => {
                    tracing::info!(code, error = %message, "postgresql refused a value");
                    Error::invalid("input", invalid_message(&code))
                }
                Class::Internal => Error::Internal(format!("postgresql ({code}): {message}")),
            }
        }
        sqlx::Error::Io(e) => Error::Unavailable(format!("postgresql connection: {e}")),
        sqlx::Error::Tls(e) => Error::Unavailable(format!("postgresql tls: {e}")),
        sqlx::Error::PoolTimedOut => {
            Error::Unavailable("timed out waiting for a postgresql connection".to_owned())
        }
        sqlx::Error::PoolClosed => {
            Error::Unavailable("the postgresql connection pool is closed".to_owned())
        }
        sqlx::Error::WorkerCrashed => {
            Error::Unavailable("the postgresql connection worker crashed".to_owned())
        }
        sqlx::Error::Migrate(m) => match *m {
            sqlx::migrate::MigrateError::Execute(inner) => pg_error(inner),
            other => Error::Internal(format!("migration failed: {other}")),
        },
        other => Error::Internal(format!("postgresql: {other}")),
    }
}

/// Like [`pg_error`], but a foreign-key violation becomes `NotFound { what }`: for ports
/// whose contract says a write needs an existing parent ("a key needs an existing project").
pub(crate) fn foreign_key_as(what: impl Into<String>) -> impl FnOnce(sqlx::Error) -> Error {
    let what = what.into();
    move |e| match &e {
        sqlx::Error::Database(db) if db.code().as_deref() == Some("23503") => {
            Error::not_found(what)
        }
        _ => pg_error(e),
    }
}

/// Whether `e` is PostgreSQL's "no partition of relation ... found for row" (a partition
/// that this process believed present was dropped meanwhile).
pub(crate) fn is_missing_partition(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            db.code().as_deref() == Some("23514") && db.message().contains("no partition")
        }
        _ => false,
    }
}

/// What a client is told about a value PostgreSQL refused (class 22).
fn invalid_message(sqlstate: &str) -> &'static str {
    match sqlstate {
        "22P05" | "22021" => "contains a character the database cannot store",
        "22001" => "a value is too long",
        "22003" => "a number is out of range",
        "22008" | "22007" => "a timestamp is out of range",
        _ => "a value is not valid",
    }
}

fn conflict_message(constraint: Option<&str>) -> String {
    match constraint {
        Some("alert_configs_project_name_key") => {
            "an alert config with this name already exists in the project".to_owned()
        }
        Some("alert_configs_pkey") => "an alert config with this id already exists".to_owned(),
        Some("projects_pkey") => "a project with this id already exists".to_owned(),
        Some("api_keys_hash_key" | "api_keys_pkey") => "api key already exists".to_owned(),
        _ => "a record with this key already exists".to_owned(),
    }
}

/// A stored row that does not decode into a domain value: a broken invariant.
pub(crate) fn corrupt(what: &str, detail: impl std::fmt::Display) -> Error {
    Error::Internal(format!("corrupt {what} row: {detail}"))
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::error::Error as StdError;
    use std::fmt;

    use sqlx::error::{DatabaseError, ErrorKind};

    use super::*;

    /// A database error with a chosen SQLSTATE (the driver's own type has no public
    /// constructor).
    #[derive(Debug)]
    struct FakeDbError {
        code: &'static str,
        constraint: Option<&'static str>,
    }

    impl fmt::Display for FakeDbError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "fake error {}", self.code)
        }
    }

    impl StdError for FakeDbError {}

    impl DatabaseError for FakeDbError {
        fn message(&self) -> &str {
            "fake message"
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(self.code))
        }
        fn constraint(&self) -> Option<&str> {
            self.constraint
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

    fn db(code: &'static str) -> sqlx::Error {
        sqlx::Error::Database(Box::new(FakeDbError {
            code,
            constraint: None,
        }))
    }

    /// The variant name of a port error, for table-driven checks.
    fn kind(e: &Error) -> &'static str {
        match e {
            Error::Invalid { .. } => "invalid",
            Error::NotFound { .. } => "not_found",
            Error::Conflict(_) => "conflict",
            Error::Unavailable(_) => "unavailable",
            Error::Internal(_) => "internal",
        }
    }

    fn check(e: sqlx::Error, want: &str) {
        let text = e.to_string();
        let got = pg_error(e);
        assert_eq!(kind(&got), want, "{text} -> {got:?}");
    }

    #[test]
    fn sqlstates_map_to_what_the_caller_can_do() {
        for (code, want) in [
            ("23505", "conflict"),
            ("23P01", "conflict"),
            ("23503", "conflict"),
            ("57P01", "unavailable"), // admin_shutdown: the server is stopping
            ("57P02", "unavailable"),
            ("57P03", "unavailable"), // cannot_connect_now: starting up
            ("08006", "unavailable"), // connection_failure
            ("08001", "unavailable"),
            ("08P01", "unavailable"),
            ("53300", "unavailable"), // too_many_connections
            ("53100", "unavailable"), // disk_full
            ("40001", "unavailable"), // serialization_failure
            ("40P01", "unavailable"), // deadlock_detected
            ("55P03", "unavailable"), // lock_not_available
            ("57014", "unavailable"), // query_canceled
            ("25006", "unavailable"), // read-only after a failover
            ("22P05", "invalid"),     // \u0000 in jsonb
            ("22021", "invalid"),     // NUL byte in text
            ("22003", "invalid"),
            ("42P01", "internal"), // undefined_table: a bug (or a missing migration)
            ("42601", "internal"), // syntax_error
            ("23502", "internal"), // not_null_violation: we sent a NULL we should not have
            ("XX000", "internal"),
        ] {
            check(db(code), want);
        }
    }

    #[test]
    fn driver_failures_are_unavailable_and_bugs_internal() {
        check(
            sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "refused",
            )),
            "unavailable",
        );
        check(
            sqlx::Error::Io(std::io::ErrorKind::UnexpectedEof.into()),
            "unavailable",
        );
        check(sqlx::Error::PoolTimedOut, "unavailable");
        check(sqlx::Error::PoolClosed, "unavailable");
        check(sqlx::Error::WorkerCrashed, "unavailable");
        check(sqlx::Error::RowNotFound, "internal");
        check(sqlx::Error::Protocol("garbage".into()), "internal");
        check(sqlx::Error::ColumnNotFound("x".into()), "internal");
        check(sqlx::Error::Decode("bad value".into()), "internal");
        check(
            sqlx::Error::Migrate(Box::new(sqlx::migrate::MigrateError::Execute(db("08006")))),
            "unavailable",
        );
        check(
            sqlx::Error::Migrate(Box::new(sqlx::migrate::MigrateError::VersionMissing(3))),
            "internal",
        );
    }

    #[test]
    fn foreign_keys_become_not_found_where_the_port_says_so() {
        let e = foreign_key_as("project shop")(db("23503"));
        assert_eq!(e, Error::not_found("project shop"));
        // Other errors keep the general mapping.
        assert_eq!(kind(&foreign_key_as("x")(db("23505"))), "conflict");
        assert_eq!(kind(&foreign_key_as("x")(db("08006"))), "unavailable");
    }

    #[test]
    fn known_constraints_get_readable_conflicts() {
        let e = pg_error(sqlx::Error::Database(Box::new(FakeDbError {
            code: "23505",
            constraint: Some("alert_configs_project_name_key"),
        })));
        assert_eq!(
            e,
            Error::Conflict(
                "an alert config with this name already exists in the project".to_owned()
            )
        );
        assert!(e.to_string().starts_with("conflict: "));
    }

    #[test]
    fn driver_text_never_reaches_invalid_or_conflict_errors() {
        for code in [
            "22P05", "22021", "22001", "22003", "22008", "22007", "23505", "23503",
        ] {
            let e = pg_error(db(code));
            let text = e.to_string();
            assert!(!text.contains("fake"), "{code}: {text}");
            assert!(
                matches!(e, Error::Invalid { .. } | Error::Conflict(_)),
                "{code}"
            );
        }
    }

    #[test]
    fn missing_partitions_are_recognised() {
        assert!(!is_missing_partition(&db("23514")), "needs the message too");
        assert!(!is_missing_partition(&sqlx::Error::PoolTimedOut));
    }
}
