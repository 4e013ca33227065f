//! Rollups: pre-computed statistics per (project, granularity, bucket, metric, dimensions),
//! with the digest, specs, pure aggregation, scheduler and reader that produce and read them.

pub mod aggregate;
pub mod catalog;
pub mod digest;
pub mod raw_hours;
pub mod read;
pub mod scheduler;
pub mod spec;

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::FieldError;
use crate::ids::{MetricName, ProjectId};
use crate::time::{Granularity, TimeRange};

/// The dimension values a rollup row is grouped by (`route=/x`, `status_class=5xx`), in a
/// canonical order so equal sets compare, hash and serialize equally.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Dimensions(BTreeMap<String, String>);

/// Most dimensions on one row.
pub const MAX_DIMENSIONS: usize = 8;

impl Dimensions {
    /// No dimensions: the overall row.
    pub fn none() -> Self {
        Self::default()
    }

    /// Builds a set from pairs, checking names (`[a-z][a-z0-9_]*`, at most 64 characters) and
    /// values (at most 256 characters).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, FieldError> {
        let mut map = BTreeMap::new();
        for (k, v) in pairs {
            let (k, v) = (k.into(), v.into());
            let name_ok = !k.is_empty()
                && k.len() <= 64
                && k.starts_with(|c: char| c.is_ascii_lowercase())
                && k.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !name_ok {
                return Err(FieldError::new(
                    "dimensions",
                    format!("dimension name {k:?} must be lowercase letters, digits and '_'"),
                ));
            }
            if v.chars().count() > 256 {
                return Err(FieldError::new(
                    "dimensions",
                    format!("value of {k} must be at most 256 characters"),
                ));
            }
            map.insert(k, v);
        }
        if map.len() > MAX_DIMENSIONS {
            return Err(FieldError::new(
                "dimensions",
                format!("at most {MAX_DIMENSIONS} dimensions"),
            ));
        }
        Ok(Self(map))
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The pairs, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Whether this set has every pair of `filter` (an empty filter matches everything).
    pub fn matches(&self, filter: &Dimensions) -> bool {
        filter.0.iter().all(|(k, v)| self.0.get(k) == Some(v))
    }

    /// The names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// The canonical text form stores key rows by: a JSON object with sorted keys.
    pub fn canonical(&self) -> String {
        serde_json::to_string(&self.0).unwrap_or_else(|_| "{}".to_owned())
    }

    /// Parses [`Dimensions::canonical`] output.
    pub fn from_canonical(s: &str) -> Result<Self, FieldError> {
        let map: BTreeMap<String, String> = serde_json::from_str(s)
            .map_err(|_| FieldError::new("dimensions", "must be a JSON object of strings"))?;
        Self::from_pairs(map)
    }
}

impl fmt::Display for Dimensions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical())
    }
}

/// What identifies a rollup row; upserts are idempotent on it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RollupKey {
    /// The project.
    pub project: ProjectId,
    /// Bucket size.
    pub granularity: Granularity,
    /// Bucket start (aligned to `granularity`).
    pub bucket_start: DateTime<Utc>,
    /// The metric.
    pub metric: MetricName,
    /// The group.
    pub dimensions: Dimensions,
}

/// The statistics of one rollup row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollupStats {
    /// Raw observations that went in.
    pub samples: u64,
    /// Estimated observations: the samples re-weighted by `1 / sample_rate`.
    pub count: f64,
    /// Re-weighted sum of values.
    pub sum: f64,
    /// Smallest value.
    pub min: Option<f64>,
    /// Largest value.
    pub max: Option<f64>,
    /// `sum / count`.
    pub avg: Option<f64>,
    /// Median estimate.
    pub p50: Option<f64>,
    /// 95th percentile estimate.
    pub p95: Option<f64>,
    /// 99th percentile estimate.
    pub p99: Option<f64>,
}

/// Puts rows in the order `RollupStore::query_rollups` answers with:
/// `(bucket_start, metric, dimensions)`.
pub fn sort_query_rows(rows: &mut [Rollup]) {
    rows.sort_by(|a, b| {
        (a.key.bucket_start, &a.key.metric, &a.key.dimensions).cmp(&(
            b.key.bucket_start,
            &b.key.metric,
            &b.key.dimensions,
        ))
    });
}

/// A rollup row: its key, statistics and the serialized digest the percentiles came from
/// (so coarser buckets and arbitrary ranges are answered by merging digests).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollup {
    /// Identity.
    pub key: RollupKey,
    /// Statistics.
    pub stats: RollupStats,
    /// The digest, in the rollup module's versioned binary encoding.
    pub digest: Vec<u8>,
    /// When it was computed.
    pub computed_at: DateTime<Utc>,
}

/// Which rollup rows to read.
#[derive(Debug, Clone, PartialEq)]
pub struct RollupQuery {
    /// The project.
    pub project: ProjectId,
    /// Bucket size.
    pub granularity: Granularity,
    /// Rows whose bucket starts in this range.
    pub range: TimeRange,
    /// Only these metrics (empty = all).
    pub metrics: Vec<MetricName>,
    /// Only rows whose dimensions include these pairs.
    pub dimensions: Dimensions,
    /// When set, only rows with exactly this set of dimension names, in any order (so a
    /// query for the overall row does not also sum the per-route rows).
    pub dimension_names: Option<Vec<String>>,
}

impl RollupQuery {
    /// Whether `key` is selected.
    pub fn matches(&self, key: &RollupKey) -> bool {
        key.project == self.project
            && key.granularity == self.granularity
            && self.range.contains(key.bucket_start)
            && (self.metrics.is_empty() || self.metrics.contains(&key.metric))
            && key.dimensions.matches(&self.dimensions)
            && self.dimension_names.as_ref().is_none_or(|names| {
                let mut names: Vec<&str> = names.iter().map(String::as_str).collect();
                names.sort_unstable();
                key.dimensions.names().eq(names)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dimensions_are_canonical_and_checked() {
        let a = Dimensions::from_pairs([("status_class", "5xx"), ("route", "/x")]).unwrap();
        let b = Dimensions::from_pairs([("route", "/x"), ("status_class", "5xx")]).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.canonical(), r#"{"route":"/x","status_class":"5xx"}"#);
        assert_eq!(Dimensions::from_canonical(&a.canonical()).unwrap(), a);
        assert!(a.matches(&Dimensions::from_pairs([("route", "/x")]).unwrap()));
        assert!(!a.matches(&Dimensions::from_pairs([("route", "/y")]).unwrap()));
        assert!(a.matches(&Dimensions::none()));
        assert!(Dimensions::from_pairs([("Route", "/x")]).is_err());
        assert!(Dimensions::from_pairs([("r", "x".repeat(257))]).is_err());
        assert!(Dimensions::from_pairs((0..9).map(|i| (format!("d{i}"), "v"))).is_err());
    }
}
