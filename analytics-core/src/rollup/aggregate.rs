//! Pure aggregation: the events of one bucket become rollup rows, and finer rows merge into
//! coarser ones (hour -> day -> week) by merging their digests, never by averaging
//! percentiles.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::event::Event;
use crate::ids::{MetricName, ProjectId};
use crate::rollup::digest::{Digest, DigestBuilder};
use crate::rollup::spec::{RollupSpecs, dimension_value, stored_dimension_name};
use crate::rollup::{Dimensions, Rollup, RollupKey, RollupStats};
use crate::time::Granularity;

/// Accumulates one group's observations.
#[derive(Debug, Default)]
struct Acc {
    digest: DigestBuilder,
    samples: u64,
    count: f64,
    sum: f64,
}

/// Groups observations by (spec, grouping, dimension values).
#[derive(Debug)]
pub struct Aggregator<'a> {
    specs: &'a RollupSpecs,
    // Key: spec index, grouping index, the grouping's values joined by \u{1f}.
    groups: HashMap<(usize, usize, String), Acc>,
    scratch: Vec<(f64, Option<usize>)>,
}

impl<'a> Aggregator<'a> {
    /// An empty aggregator for `specs`.
    pub fn new(specs: &'a RollupSpecs) -> Self {
        Self {
            specs,
            groups: HashMap::new(),
            scratch: Vec::new(),
        }
    }

    /// Adds one event's observations to every spec and grouping it feeds. Counts and sums
    /// are re-weighted by `1 / sample_rate`; the digest holds the sampled values.
    pub fn add(&mut self, e: &Event) {
        let weight = if e.sample_rate > 0.0 {
            1.0 / e.sample_rate
        } else {
            1.0
        };
        for (si, spec) in self.specs.0.iter().enumerate() {
            if !spec.accepts(e) {
                continue;
            }
            let mut obs = std::mem::take(&mut self.scratch);
            spec.observations(e, &mut obs);
            for &(value, line) in &obs {
                if !value.is_finite() {
                    continue;
                }
                'grouping: for (gi, grouping) in spec.groupings.iter().enumerate() {
                    let mut key = String::new();
                    for (i, dim) in grouping.iter().enumerate() {
                        let Some(v) = dimension_value(e, line, dim) else {
                            continue 'grouping;
                        };
                        if i > 0 {
                            key.push('\u{1f}');
                        }
                        key.push_str(&v);
                    }
                    let acc = self.groups.entry((si, gi, key)).or_default();
                    acc.digest.push(value);
                    acc.samples += 1;
                    acc.count += weight;
                    acc.sum += value * weight;
                }
            }
            self.scratch = obs;
        }
    }

    /// The rows for `project`'s bucket, sorted by (metric, dimensions).
    pub fn finish(
        self,
        project: &ProjectId,
        granularity: Granularity,
        bucket_start: DateTime<Utc>,
        computed_at: DateTime<Utc>,
    ) -> Vec<Rollup> {
        let mut rows: Vec<Rollup> = self
            .groups
            .into_iter()
            .filter_map(|((si, gi, key), acc)| {
                let spec = &self.specs.0[si];
                let grouping = &spec.groupings[gi];
                let values: Vec<&str> = if grouping.is_empty() {
                    Vec::new()
                } else {
                    key.split('\u{1f}').collect()
                };
                let dimensions = Dimensions::from_pairs(
                    grouping
                        .iter()
                        .zip(values)
                        .map(|(d, v)| (stored_dimension_name(d), v.to_owned())),
                )
                .ok()?;
                let digest = acc.digest.finish();
                Some(row(
                    RollupKey {
                        project: project.clone(),
                        granularity,
                        bucket_start,
                        metric: spec.metric.clone(),
                        dimensions,
                    },
                    &digest,
                    acc.samples,
                    acc.count,
                    acc.sum,
                    computed_at,
                ))
            })
            .collect();
        rows.sort_by(|a, b| {
            (&a.key.metric, &a.key.dimensions).cmp(&(&b.key.metric, &b.key.dimensions))
        });
        rows
    }
}

/// Statistics of a digest with the (re-weighted) count and sum given.
pub fn stats_of(digest: &Digest, samples: u64, count: f64, sum: f64) -> RollupStats {
    RollupStats {
        samples,
        count,
        sum,
        min: digest.min(),
        max: digest.max(),
        avg: (count > 0.0).then(|| sum / count),
        p50: digest.quantile(0.5),
        p95: digest.quantile(0.95),
        p99: digest.quantile(0.99),
    }
}

fn row(
    key: RollupKey,
    digest: &Digest,
    samples: u64,
    count: f64,
    sum: f64,
    computed_at: DateTime<Utc>,
) -> Rollup {
    Rollup {
        key,
        stats: stats_of(digest, samples, count, sum),
        digest: digest.to_bytes(),
        computed_at,
    }
}

/// Rolls up the events of one bucket (the caller passes only that bucket's events of one
/// project).
pub fn aggregate<'e>(
    specs: &RollupSpecs,
    events: impl IntoIterator<Item = &'e Event>,
    project: &ProjectId,
    granularity: Granularity,
    bucket_start: DateTime<Utc>,
    computed_at: DateTime<Utc>,
) -> Vec<Rollup> {
    let mut agg = Aggregator::new(specs);
    for e in events {
        agg.add(e);
    }
    agg.finish(project, granularity, bucket_start, computed_at)
}

/// The merged statistics of several rows of one series (same metric and dimensions):
/// digests merged, samples, counts and sums added. Rows whose digest does not decode are
/// skipped and counted in the second value.
pub fn merge_stats<'r>(
    rows: impl IntoIterator<Item = &'r Rollup>,
) -> (Option<(Digest, RollupStats)>, usize) {
    let mut digests = Vec::new();
    let (mut samples, mut count, mut sum, mut bad) = (0u64, 0.0, 0.0, 0usize);
    for r in rows {
        match Digest::from_bytes(&r.digest) {
            Ok(d) => {
                digests.push(d);
                samples += r.stats.samples;
                count += r.stats.count;
                sum += r.stats.sum;
            }
            Err(_) => bad += 1,
        }
    }
    if digests.is_empty() {
        return (None, bad);
    }
    let merged = Digest::merge(&digests);
    let stats = stats_of(&merged, samples, count, sum);
    (Some((merged, stats)), bad)
}

/// Merges finer rows into rows of `granularity` starting at `bucket_start`, one per
/// (metric, dimensions) series present in `children`. The children must all lie inside the
/// bucket and belong to `project`.
pub fn merge_rows(
    children: &[Rollup],
    project: &ProjectId,
    granularity: Granularity,
    bucket_start: DateTime<Utc>,
    computed_at: DateTime<Utc>,
) -> Vec<Rollup> {
    let mut series: HashMap<(&MetricName, &Dimensions), Vec<&Rollup>> = HashMap::new();
    for c in children {
        series
            .entry((&c.key.metric, &c.key.dimensions))
            .or_default()
            .push(c);
    }
    let mut rows: Vec<Rollup> = series
        .into_iter()
        .filter_map(|((metric, dimensions), mut rows)| {
            // A deterministic merge order makes re-merging the same children byte-identical.
            rows.sort_by_key(|r| r.key.bucket_start);
            let (merged, _) = merge_stats(rows.iter().copied());
            let (digest, stats) = merged?;
            Some(Rollup {
                key: RollupKey {
                    project: project.clone(),
                    granularity,
                    bucket_start,
                    metric: metric.clone(),
                    dimensions: dimensions.clone(),
                },
                stats,
                digest: digest.to_bytes(),
                computed_at,
            })
        })
        .collect();
    rows.sort_by(|a, b| {
        (&a.key.metric, &a.key.dimensions).cmp(&(&b.key.metric, &b.key.dimensions))
    });
    rows
}
