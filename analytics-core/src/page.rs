//! Keyset pagination shared by every listing port: newest first, opaque cursors.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::FieldError;

/// Largest page any listing returns.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// A position in a listing ordered by `(timestamp, id)` descending: the next page holds the
/// items strictly after it in that order, i.e. with `(timestamp, id) < (at, id)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cursor {
    /// Timestamp of the last item returned (microsecond precision).
    pub at: DateTime<Utc>,
    /// Id of the last item returned.
    pub id: Uuid,
}

impl Cursor {
    /// Whether an item keyed `(at, id)` comes after this cursor (newest-first order).
    pub fn is_before(&self, at: DateTime<Utc>, id: Uuid) -> bool {
        (at, id) < (self.at, self.id)
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.at.timestamp_micros(), self.id.simple())
    }
}

impl FromStr for Cursor {
    type Err = FieldError;
    fn from_str(s: &str) -> Result<Self, FieldError> {
        let bad = || FieldError::new("cursor", "is not a cursor this service issued");
        let (micros, id) = s.split_once('.').ok_or_else(bad)?;
        let micros: i64 = micros.parse().map_err(|_| bad())?;
        let at = DateTime::from_timestamp_micros(micros).ok_or_else(bad)?;
        let id = Uuid::try_parse(id).map_err(|_| bad())?;
        Ok(Self { at, id })
    }
}

impl Serialize for Cursor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cursor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Which page to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    limit: u32,
    /// Continue after this cursor; `None` starts at the newest item.
    pub cursor: Option<Cursor>,
}

impl PageRequest {
    /// A page of `limit` items (1..=1000).
    pub fn new(limit: u32, cursor: Option<Cursor>) -> Result<Self, FieldError> {
        if (1..=MAX_PAGE_SIZE).contains(&limit) {
            Ok(Self { limit, cursor })
        } else {
            Err(FieldError::new(
                "limit",
                format!("must be from 1 to {MAX_PAGE_SIZE}"),
            ))
        }
    }

    /// The first page of `limit` items (clamped into 1..=1000).
    pub fn first(limit: u32) -> Self {
        Self {
            limit: limit.clamp(1, MAX_PAGE_SIZE),
            cursor: None,
        }
    }

    /// The page size.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// The page size as a `usize`.
    pub fn limit_usize(&self) -> usize {
        self.limit as usize
    }
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    /// The items, newest first.
    pub items: Vec<T>,
    /// Where the next page starts; `None` when this page is the last.
    pub next_cursor: Option<Cursor>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` items already in order: the extra item, when
    /// present, only proves that another page exists.
    pub fn from_overfetch(
        mut items: Vec<T>,
        req: &PageRequest,
        key: impl Fn(&T) -> Cursor,
    ) -> Self {
        let more = items.len() > req.limit_usize();
        items.truncate(req.limit_usize());
        let next_cursor = if more { items.last().map(key) } else { None };
        Self { items, next_cursor }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = Cursor {
            at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            id: Uuid::new_v4(),
        };
        assert_eq!(c.to_string().parse::<Cursor>().unwrap(), c);
        for bad in ["", "x", "1.2", "abc.5b0f4d4e5b394a4e9b0e1df0f4a4c001", "1"] {
            assert_eq!(bad.parse::<Cursor>().unwrap_err().field, "cursor");
        }
    }

    #[test]
    fn page_sizes_are_bounded() {
        assert!(PageRequest::new(0, None).is_err());
        assert!(PageRequest::new(1001, None).is_err());
        assert_eq!(PageRequest::new(1000, None).unwrap().limit(), 1000);
        assert_eq!(PageRequest::first(5000).limit(), 1000);
    }

    #[test]
    fn overfetch_decides_next_cursor() {
        let req = PageRequest::first(2);
        let key = |i: &u32| Cursor {
            at: DateTime::UNIX_EPOCH,
            id: Uuid::from_u128(u128::from(*i)),
        };
        let p = Page::from_overfetch(vec![3, 2, 1], &req, key);
        assert_eq!(p.items, [3, 2]);
        assert_eq!(p.next_cursor.unwrap().id, Uuid::from_u128(2));
        let last = Page::from_overfetch(vec![1], &req, key);
        assert_eq!(last.next_cursor, None);
    }
}
