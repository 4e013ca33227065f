//! Server-level administration outside the store ports: creating a database (for
//! provisioning a tenant or a test, and for the benchmarks).

use std::str::FromStr;

use analytics_core::error::{Error, Result};
use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, ConnectOptions as _, Connection as _};

use crate::error::pg_error;

/// Creates the empty database `name` on the server `admin_url` points at (a role allowed
/// to `CREATE DATABASE`). `name` must be 1 to 63 lowercase letters, digits or `_`, starting
/// with a letter or `_`: it is put into the statement as an identifier.
pub async fn create_database(admin_url: &str, name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit();
    if !valid {
        return Err(Error::invalid(
            "name",
            "must be 1-63 lowercase letters, digits or _, not starting with a digit",
        ));
    }
    let options = PgConnectOptions::from_str(admin_url)
        .map_err(|e| Error::invalid("database_url", format!("is not a postgres url: {e}")))?;
    let mut conn = options.connect().await.map_err(pg_error)?;
    let created = sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut conn)
        .await
        .map_err(pg_error);
    let _ = conn.close().await;
    created.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn names_that_are_not_plain_identifiers_are_refused_before_connecting() {
        // The URL points nowhere: a refused name must fail without trying to connect.
        let url = "postgres://nobody@127.0.0.1:1/none";
        for name in [
            "",
            "1abc",
            "Upper",
            "a-b",
            "x\"; DROP DATABASE y; --",
            &"a".repeat(64),
        ] {
            match create_database(url, name).await {
                Err(Error::Invalid { field, .. }) => assert_eq!(field, "name", "{name:?}"),
                other => panic!("{name:?}: expected Invalid naming name, got {other:?}"),
            }
        }
    }
}
