//! Small helpers shared by the port implementations: advisory-lock keys, reading columns
//! with errors mapped, and the text forms of enums stored in columns.

use analytics_core::alert::Severity;
use analytics_core::error::Result;
use analytics_core::{Cursor, PageRequest};
use sqlx::postgres::PgRow;
use sqlx::{Decode, Postgres, QueryBuilder, Row, Type};

use crate::error::corrupt;

/// First key of every advisory lock this crate takes (the two-`int4` form), so its locks
/// cannot collide with an embedder's single-`bigint` ones.
pub(crate) const ADVISORY_NAMESPACE: i32 = 0x616e_6c74; // "anlt"
/// Second key of the lock serialising partition DDL (`hashtext` results of job-lock names
/// share this space; a collision would only make a job wait for partition DDL).
pub(crate) const PARTITION_DDL_KEY: i32 = 1;

/// Reads column `col` of `row`; a value that does not decode is a corrupt `what` row.
pub(crate) fn col<'r, T>(row: &'r PgRow, col: &str, what: &str) -> Result<T>
where
    T: Decode<'r, Postgres> + Type<Postgres>,
{
    row.try_get(col)
        .map_err(|e| corrupt(what, format_args!("column {col}: {e}")))
}

/// Parses a stored text with `FromStr`-like `parse`; failure means a corrupt `what` row.
pub(crate) fn parse<T, E: std::fmt::Display>(
    value: &str,
    what: &str,
    parse: impl FnOnce(&str) -> std::result::Result<T, E>,
) -> Result<T> {
    parse(value).map_err(|e| corrupt(what, format_args!("{value:?}: {e}")))
}

/// Severity as ranked in the outbox (claims take the highest first).
pub(crate) fn severity_rank(s: Severity) -> i16 {
    match s {
        Severity::Info => 0,
        Severity::Warning => 1,
        Severity::Critical => 2,
    }
}

/// A `u64` count into a `bigint` column (saturating: no count here comes near 2^63).
pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A `bigint` column back into a `u64` (negative values are corrupt rows).
pub(crate) fn to_u64(v: i64, what: &str) -> Result<u64> {
    u64::try_from(v).map_err(|_| corrupt(what, format_args!("negative count {v}")))
}

/// Ends a listing newest first on `(time_column, id)`: the keyset condition of `page`'s
/// cursor, the order, and a limit one row over the page (for `Page::from_overfetch`). The
/// plain bound on `time_column` lets the planner prune partitions; the row comparison is the
/// exact keyset condition.
pub(crate) fn push_page(q: &mut QueryBuilder<Postgres>, time_column: &str, page: &PageRequest) {
    push_keyset(
        q,
        time_column,
        page.cursor.as_ref(),
        i64::from(page.limit()) + 1,
    );
}

/// [`push_page`] with an explicit row limit.
pub(crate) fn push_keyset(
    q: &mut QueryBuilder<Postgres>,
    time_column: &str,
    cursor: Option<&Cursor>,
    limit: i64,
) {
    if let Some(c) = cursor {
        q.push(format_args!(" AND {time_column} <= "))
            .push_bind(c.at);
        q.push(format_args!(" AND ({time_column}, id) < ("))
            .push_bind(c.at)
            .push(", ")
            .push_bind(c.id)
            .push(")");
    }
    q.push(format_args!(" ORDER BY {time_column} DESC, id DESC LIMIT "))
        .push_bind(limit);
}
