//! Column encodings shared by every table: timestamps as INTEGER microseconds, UUIDs as
//! 16-byte BLOBs, enums as their wire names, and the helpers that read rows back.

use std::str::FromStr;

use analytics_core::{Error, FieldError, Result};
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::{Decode, Row, Sqlite, Type};

use crate::error::corrupt;

/// Largest number of `?` parameters one statement may bind (SQLite >= 3.32).
pub(crate) const MAX_BIND_PARAMS: usize = 32_766;

/// A timestamp as stored: microseconds since the Unix epoch, UTC. Exact (the core keeps
/// microsecond precision) and ordered like the `DateTime`.
pub(crate) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// The inverse of [`micros`].
pub(crate) fn from_micros(what: &str, v: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(v).ok_or_else(|| corrupt(what, format!("timestamp {v}")))
}

/// Like [`from_micros`] for a nullable column.
pub(crate) fn opt_from_micros(what: &str, v: Option<i64>) -> Result<Option<DateTime<Utc>>> {
    v.map(|v| from_micros(what, v)).transpose()
}

/// Reads column `col` of `row`, reporting a decode failure as a corrupt `what` row.
pub(crate) fn get<'r, T>(row: &'r SqliteRow, what: &str, col: &str) -> Result<T>
where
    T: Decode<'r, Sqlite> + Type<Sqlite>,
{
    row.try_get(col)
        .map_err(|e| corrupt(what, format!("column {col}: {e}")))
}

/// Reads a timestamp column.
pub(crate) fn get_time(row: &SqliteRow, what: &str, col: &str) -> Result<DateTime<Utc>> {
    from_micros(what, get::<i64>(row, what, col)?)
}

/// Reads a nullable timestamp column.
pub(crate) fn get_opt_time(
    row: &SqliteRow,
    what: &str,
    col: &str,
) -> Result<Option<DateTime<Utc>>> {
    opt_from_micros(what, get::<Option<i64>>(row, what, col)?)
}

/// Reads a text column and parses it with the domain type's checked parser.
pub(crate) fn get_parsed<T>(row: &SqliteRow, what: &str, col: &str) -> Result<T>
where
    T: FromStr<Err = FieldError>,
{
    let s: String = get(row, what, col)?;
    s.parse()
        .map_err(|e: FieldError| corrupt(what, format!("column {col}: {e}")))
}

/// Reads a JSON text column into a serde type.
pub(crate) fn get_json<T: serde::de::DeserializeOwned>(
    row: &SqliteRow,
    what: &str,
    col: &str,
) -> Result<T> {
    let s: String = get(row, what, col)?;
    serde_json::from_str(&s).map_err(|e| corrupt(what, format!("column {col}: {e}")))
}

/// Reads an unsigned counter stored as INTEGER.
pub(crate) fn get_u64(row: &SqliteRow, what: &str, col: &str) -> Result<u64> {
    let v: i64 = get(row, what, col)?;
    u64::try_from(v).map_err(|_| corrupt(what, format!("column {col}: negative {v}")))
}

/// Reads a `u32` stored as INTEGER.
pub(crate) fn get_u32(row: &SqliteRow, what: &str, col: &str) -> Result<u32> {
    let v: i64 = get(row, what, col)?;
    u32::try_from(v).map_err(|_| corrupt(what, format!("column {col}: out of range {v}")))
}

/// A `u64` as SQLite's signed INTEGER; values past `i64::MAX` are refused as input.
pub(crate) fn to_i64(field: &str, v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| Error::invalid(field, "is too large to store"))
}

/// Serializes a value to JSON text; our own types always serialize.
pub(crate) fn json<T: serde::Serialize + ?Sized>(what: &str, v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::Internal(format!("cannot encode {what}: {e}")))
}

/// `?, ?, ?` with `n` placeholders.
pub(crate) fn placeholders(n: usize) -> String {
    let mut s = String::with_capacity(n * 3);
    for i in 0..n {
        if i > 0 {
            s.push_str(", ");
        }
        s.push('?');
    }
    s
}

/// `(?, ?), (?, ?)`: `rows` tuples of `cols` placeholders, for multi-row `VALUES`.
pub(crate) fn value_rows(rows: usize, cols: usize) -> String {
    let tuple = format!("({})", placeholders(cols));
    let mut s = String::with_capacity(rows * (tuple.len() + 2));
    for i in 0..rows {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&tuple);
    }
    s
}

/// Splits `n` items into statement sizes: full chunks of `max`, then the remainder as powers
/// of two. Few distinct sizes means few distinct SQL texts, so sqlx's per-connection
/// prepared-statement cache keeps every one of them.
pub(crate) fn chunk_sizes(n: usize, max: usize) -> Vec<usize> {
    let max = max.max(1);
    let mut sizes = vec![max; n / max];
    let mut rest = n % max;
    while rest > 0 {
        let p = 1usize << (usize::BITS - 1 - rest.leading_zeros());
        sizes.push(p);
        rest -= p;
    }
    sizes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_and_order() {
        let t = DateTime::parse_from_rfc3339("2024-03-10T11:59:58.123456Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(from_micros("x", micros(t)).unwrap(), t);
        let before = DateTime::parse_from_rfc3339("1969-12-31T23:59:59.999999Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(from_micros("x", micros(before)).unwrap(), before);
        assert!(micros(before) < micros(t));
        assert!(from_micros("x", i64::MAX).is_err());
    }

    #[test]
    fn uuid_byte_order_is_uuid_order() {
        let mut ids: Vec<uuid::Uuid> = (0..200).map(|_| uuid::Uuid::new_v4()).collect();
        let mut by_bytes = ids.clone();
        by_bytes.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        ids.sort();
        assert_eq!(ids, by_bytes, "BLOB (memcmp) order must equal Uuid's Ord");
    }

    #[test]
    fn chunks_cover_everything_with_few_sizes() {
        assert_eq!(chunk_sizes(0, 512), Vec::<usize>::new());
        assert_eq!(chunk_sizes(1, 512), [1]);
        assert_eq!(chunk_sizes(1200, 512), [512, 512, 128, 32, 16]);
        assert_eq!(chunk_sizes(5, 0), [1, 1, 1, 1, 1]);
        for n in 0..3000 {
            let sizes = chunk_sizes(n, 500);
            assert_eq!(sizes.iter().sum::<usize>(), n);
            assert!(sizes.iter().all(|s| *s <= 500));
        }
    }

    #[test]
    fn placeholder_lists() {
        assert_eq!(placeholders(3), "?, ?, ?");
        assert_eq!(value_rows(2, 2), "(?, ?), (?, ?)");
    }
}
