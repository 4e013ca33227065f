//! Pure aggregation: the events of one bucket become rollup rows, and finer rows merge into
//! coarser ones (hour -> day -> week) by merging their digests, never by averaging
//! percentiles.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::event::Event;
use crate::funnel::SessionAccumulator;
use crate::ids::{MetricName, ProjectId};
use crate::rollup::digest::{Digest, DigestBuilder};
use crate::rollup::spec::{
    RollupSpecs, ValueSource, dimension_value, metrics, stored_dimension_name,
};
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
    // Indexed by spec, then grouping; keyed by the grouping's values joined by \u{1f}, so a
    // lookup borrows a reused buffer and only a new group allocates.
    groups: Vec<Vec<HashMap<String, Acc>>>,
    scratch: Vec<(f64, Option<usize>)>,
    key: String,
    // Per spec: the session funnel state of `SessionFunnel` specs.
    sessions: Vec<Option<SessionAccumulator>>,
}

impl<'a> Aggregator<'a> {
    /// An empty aggregator for `specs`.
    pub fn new(specs: &'a RollupSpecs) -> Self {
        Self {
            specs,
            groups: specs
                .0
                .iter()
                .map(|s| s.groupings.iter().map(|_| HashMap::new()).collect())
                .collect(),
            scratch: Vec::new(),
            key: String::new(),
            sessions: specs
                .0
                .iter()
                .map(|s| {
                    matches!(s.value, ValueSource::SessionFunnel).then(SessionAccumulator::default)
                })
                .collect(),
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
            if let Some(sessions) = &mut self.sessions[si] {
                sessions.add(e);
                continue;
            }
            let mut obs = std::mem::take(&mut self.scratch);
            spec.observations(e, &mut obs);
            for &(value, line) in &obs {
                if !value.is_finite() {
                    continue;
                }
                'grouping: for (gi, grouping) in spec.groupings.iter().enumerate() {
                    let key = &mut self.key;
                    key.clear();
                    for (i, dim) in grouping.iter().enumerate() {
                        let Some(v) = dimension_value(e, line, dim) else {
                            continue 'grouping;
                        };
                        if i > 0 {
                            key.push('\u{1f}');
                        }
                        key.push_str(&v);
                    }
                    let groups = &mut self.groups[si][gi];
                    let acc = match groups.get_mut(key.as_str()) {
                        Some(acc) => acc,
                        None => groups.entry(key.clone()).or_default(),
                    };
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
        let funnel_rows: Vec<Rollup> = self
            .sessions
            .into_iter()
            .enumerate()
            .filter_map(|(si, acc)| Some((si, acc?)))
            .flat_map(|(si, acc)| {
                acc.finish(
                    &self.specs.0[si].metric,
                    project,
                    granularity,
                    bucket_start,
                    computed_at,
                )
            })
            .collect();
        let mut rows: Vec<Rollup> = self
            .groups
            .into_iter()
            .enumerate()
            .flat_map(|(si, per_grouping)| {
                per_grouping
                    .into_iter()
                    .enumerate()
                    .flat_map(move |(gi, groups)| {
                        groups.into_iter().map(move |(k, acc)| (si, gi, k, acc))
                    })
            })
            .filter_map(|(si, gi, key, acc)| {
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
        rows.extend(funnel_rows);
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

/// A row from its key, digest and (re-weighted) count and sum.
pub(crate) fn row(
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
    // Session funnel rows compose in time order instead of merging by dimensions.
    let mut funnel: HashMap<&MetricName, Vec<&Rollup>> = HashMap::new();
    for c in children {
        if c.key.metric.as_str() == metrics::FUNNEL_SESSIONS {
            funnel.entry(&c.key.metric).or_default().push(c);
            continue;
        }
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
    for children in funnel.values() {
        rows.extend(crate::funnel::merge_rows(
            children,
            project,
            granularity,
            bucket_start,
            computed_at,
        ));
    }
    rows.sort_by(|a, b| {
        (&a.key.metric, &a.key.dimensions).cmp(&(&b.key.metric, &b.key.dimensions))
    });
    rows
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::{Value, json};

    use super::*;
    use crate::event::{AgeLimits, EventInput, EventLimits, IngestContext};
    use crate::rollup::spec::metrics;

    fn hour() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 3, 10, 12, 0, 0).unwrap()
    }

    fn ev(v: Value) -> Event {
        let project = ProjectId::parse("shop").unwrap();
        let limits = EventLimits::default();
        let ctx = IngestContext {
            now: hour() + chrono::Duration::minutes(30),
            default_project: &project,
            fixed_project: false,
            request_correlation_id: None,
            limits: &limits,
            age_limits: &AgeLimits::default(),
        };
        let mut v = v;
        v["occurred_at"] = json!("2024-03-10T12:10:00Z");
        Event::parse(serde_json::from_value::<EventInput>(v).unwrap(), &ctx).unwrap()
    }

    fn find<'r>(rows: &'r [Rollup], metric: &str, dims: &[(&str, &str)]) -> &'r Rollup {
        let d = Dimensions::from_pairs(dims.iter().copied()).unwrap();
        rows.iter()
            .find(|r| r.key.metric.as_str() == metric && r.key.dimensions == d)
            .unwrap_or_else(|| panic!("no row {metric} {d}"))
    }

    fn rows(events: &[Event]) -> Vec<Rollup> {
        let project = ProjectId::parse("shop").unwrap();
        aggregate(
            &RollupSpecs::defaults(),
            events,
            &project,
            Granularity::Hour,
            hour(),
            hour(),
        )
    }

    #[test]
    fn api_requests_roll_up_overall_by_route_and_status_class() {
        let api = |route: &str, status: u16, ms: f64, rate: f64| {
            ev(json!({"kind": "api_request", "sample_rate": rate,
                      "payload": {"method": "GET", "route": route, "status": status, "latency_ms": ms}}))
        };
        let events = vec![
            api("/a", 200, 10.0, 1.0),
            api("/a", 503, 30.0, 1.0),
            api("/b", 200, 20.0, 0.5),
        ];
        let rows = rows(&events);
        let all = find(&rows, metrics::API_LATENCY_MS, &[]);
        assert_eq!(all.stats.samples, 3);
        // The sampled event counts twice.
        assert_eq!(all.stats.count, 4.0);
        assert_eq!(all.stats.sum, 10.0 + 30.0 + 40.0);
        assert_eq!(all.stats.avg, Some(20.0));
        assert_eq!((all.stats.min, all.stats.max), (Some(10.0), Some(30.0)));
        assert_eq!(all.stats.p50, Some(20.0));
        assert_eq!(
            find(&rows, metrics::API_LATENCY_MS, &[("route", "/a")])
                .stats
                .samples,
            2
        );
        assert_eq!(
            find(&rows, metrics::API_LATENCY_MS, &[("status_class", "5xx")])
                .stats
                .samples,
            1
        );
        let errors = find(&rows, metrics::API_ERRORS, &[]);
        assert_eq!((errors.stats.sum, errors.stats.count), (1.0, 4.0));
        assert_eq!(errors.stats.avg, Some(0.25));
        assert_eq!(
            find(&rows, metrics::API_ERRORS, &[("route", "/a")])
                .stats
                .avg,
            Some(0.5)
        );
        // Every row carries a digest that decodes to its statistics.
        for r in &rows {
            let d = Digest::from_bytes(&r.digest).unwrap();
            assert_eq!(d.count(), r.stats.samples);
            assert_eq!(r.key.granularity, Granularity::Hour);
        }
    }

    #[test]
    fn orders_roll_up_per_order_and_per_line() {
        let order = ev(
            json!({"kind": "order", "payload": {"order_id": "o", "amount": 250.0, "currency": "USD", "items": [
            {"product_id": "p1", "collection": "black-rose", "quantity": 2, "unit_price": 100.0},
            {"product_id": "p2", "collection": "signature", "quantity": 1, "unit_price": 50.0},
            {"product_id": "p3", "quantity": 1, "unit_price": 0.0}]}}),
        );
        let rows = rows(&[order]);
        let revenue = find(&rows, metrics::ORDER_REVENUE, &[]);
        assert_eq!((revenue.stats.count, revenue.stats.sum), (1.0, 250.0));
        assert_eq!(
            find(&rows, metrics::ORDER_REVENUE, &[("currency", "USD")])
                .stats
                .sum,
            250.0
        );
        assert_eq!(find(&rows, metrics::ORDER_UNITS, &[]).stats.sum, 4.0);
        assert_eq!(
            find(
                &rows,
                metrics::LINE_REVENUE,
                &[("collection", "black-rose")]
            )
            .stats
            .sum,
            200.0
        );
        assert_eq!(
            find(&rows, metrics::LINE_UNITS, &[("collection", "signature")])
                .stats
                .sum,
            1.0
        );
        assert_eq!(
            find(&rows, metrics::LINE_REVENUE, &[("product_id", "p3")])
                .stats
                .count,
            1.0
        );
        // A line without a collection is left out of the by-collection grouping only.
        let by_collection: f64 = rows
            .iter()
            .filter(|r| {
                r.key.metric.as_str() == metrics::LINE_UNITS
                    && r.key.dimensions.names().eq(["collection"])
            })
            .map(|r| r.stats.sum)
            .sum();
        assert_eq!(by_collection, 3.0);
    }

    #[test]
    fn ml_jobs_count_failures_of_finished_jobs_only() {
        let job = |status: &str, ms: f64| {
            ev(
                json!({"kind": "ml_job", "payload": {"pipeline": "3d", "provider": "tripo", "status": status, "duration_ms": ms, "cost_usd": 0.5}}),
            )
        };
        let rows = rows(&[
            job("succeeded", 100.0),
            job("failed", 300.0),
            job("running", 0.0),
        ]);
        let failed = find(
            &rows,
            metrics::ML_FAILED,
            &[("pipeline", "3d"), ("provider", "tripo")],
        );
        assert_eq!((failed.stats.count, failed.stats.avg), (2.0, Some(0.5)));
        assert_eq!(
            find(&rows, metrics::ML_DURATION_MS, &[("provider", "tripo")])
                .stats
                .max,
            Some(300.0)
        );
        // Cost counts finished jobs that report one: a running job's event adds nothing.
        assert_eq!(find(&rows, metrics::ML_COST_USD, &[]).stats.sum, 1.0);
        let jobs = find(
            &rows,
            metrics::ML_JOBS,
            &[("provider", "tripo"), ("status", "failed")],
        );
        assert_eq!(jobs.stats.count, 1.0);
    }

    #[test]
    fn day_rows_merge_hour_digests_exactly_in_count_sum_min_max() {
        let project = ProjectId::parse("shop").unwrap();
        let specs = RollupSpecs::defaults();
        let mut hours = Vec::new();
        for h in 0..24 {
            let events: Vec<Event> = (0..5)
                .map(|i| {
                    ev(json!({"kind": "api_request", "payload": {"method": "GET", "route": "/a", "status": 200, "latency_ms": (h * 5 + i) as f64}}))
                })
                .collect();
            let start = hour() + chrono::Duration::hours(h);
            hours.extend(aggregate(
                &specs,
                &events,
                &project,
                Granularity::Hour,
                start,
                start,
            ));
        }
        let day = merge_rows(&hours, &project, Granularity::Day, hour(), hour());
        let all = find(&day, metrics::API_LATENCY_MS, &[]);
        assert_eq!(all.key.granularity, Granularity::Day);
        assert_eq!((all.stats.samples, all.stats.count), (120, 120.0));
        assert_eq!((all.stats.min, all.stats.max), (Some(0.0), Some(119.0)));
        assert_eq!(all.stats.sum, (0..120).sum::<i32>() as f64);
        let p95 = all.stats.p95.unwrap();
        assert!((p95 - 113.0).abs() <= 1.5, "p95 {p95}");
        // Re-merging the same children is byte-identical.
        assert_eq!(
            merge_rows(&hours, &project, Granularity::Day, hour(), hour()),
            day
        );
    }
}
