//! A small builder for the dynamic `WHERE` clauses of listing queries: fixed SQL fragments
//! plus `?` placeholders, never user text in the SQL itself.

use sqlx::sqlite::SqliteArguments;
use sqlx::{Arguments, Sqlite};
use uuid::Uuid;

use analytics_core::{Cursor, Error, PageRequest, Result};

/// One bound value.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Text(String),
    Int(i64),
    Id(Uuid),
}

/// A `WHERE` clause under construction.
#[derive(Debug, Default)]
pub(crate) struct Where {
    terms: Vec<String>,
    args: Vec<Arg>,
}

impl Where {
    /// Adds `sql` (with one `?` per value in `args`).
    pub(crate) fn and(&mut self, sql: impl Into<String>, args: impl IntoIterator<Item = Arg>) {
        self.terms.push(sql.into());
        self.args.extend(args);
    }

    /// Adds `column IN (?, ...)` when `values` is not empty.
    pub(crate) fn any_of(&mut self, column: &str, values: impl IntoIterator<Item = Arg>) {
        let values: Vec<Arg> = values.into_iter().collect();
        match values.len() {
            0 => return,
            // `=` rather than a one-element `IN`: an equality lets the planner use the
            // rest of an index for ORDER BY.
            1 => return self.and(format!("{column} = ?"), values),
            _ => {}
        }
        let sql = format!("{column} IN ({})", crate::codec::placeholders(values.len()));
        self.and(sql, values);
    }

    /// The keyset condition of a listing newest first on `(time_column, id)`: rows before
    /// `cursor`. Row values compare lexicographically and BLOB comparison is memcmp, which is
    /// `Uuid`'s order: exactly `Cursor::is_before`.
    pub(crate) fn before(&mut self, time_column: &str, cursor: Option<Cursor>) {
        if let Some(c) = cursor {
            self.and(
                format!("({time_column}, id) < (?, ?)"),
                [Arg::Int(crate::codec::micros(c.at)), Arg::Id(c.id)],
            );
        }
    }

    /// ` WHERE a AND b`, or nothing.
    pub(crate) fn sql(&self) -> String {
        if self.terms.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.terms.join(" AND "))
        }
    }

    /// The bound values, in order.
    pub(crate) fn into_args(self) -> Vec<Arg> {
        self.args
    }

    /// The arguments, followed by the `LIMIT` of `page`: one row over the page, for
    /// `Page::from_overfetch`.
    pub(crate) fn page_arguments(self, page: &PageRequest) -> Result<SqliteArguments> {
        self.arguments([Arg::Int(i64::from(page.limit()) + 1)])
    }

    /// The arguments, followed by `extra` (e.g. the `LIMIT`).
    pub(crate) fn arguments(self, extra: impl IntoIterator<Item = Arg>) -> Result<SqliteArguments> {
        let mut out = SqliteArguments::default();
        for a in self.args.into_iter().chain(extra) {
            let r = match a {
                Arg::Text(s) => out.add(s),
                Arg::Int(i) => out.add(i),
                Arg::Id(u) => out.add(u),
            };
            r.map_err(|e| Error::Internal(format!("cannot bind a query argument: {e}")))?;
        }
        Ok(out)
    }
}

/// Binds every value of `args` to a query, in order.
pub(crate) fn query_with(
    sql: String,
    args: SqliteArguments,
) -> sqlx::query::Query<'static, Sqlite, SqliteArguments> {
    sqlx::query_with(sqlx::AssertSqlSafe(sql), args)
}
