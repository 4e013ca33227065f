//! Criterion benchmarks of the rollup math: digest build, merge, quantile read, summary
//! statistics and one hour of events through the whole aggregation, each next to the
//! baseline it is judged against (taken in the same run).

use std::hint::black_box;

use analytics_benches::{api_hour, full_size, lognormal};
use analytics_core::rollup::aggregate::aggregate;
use analytics_core::rollup::digest::{Digest, DigestBuilder};
use analytics_core::rollup::spec::RollupSpecs;
use analytics_core::{Granularity, ProjectId};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use tdigest::TDigest;

/// Values per benchmark input: 1M under `cargo bench`, 10k when run once as a test.
fn n() -> usize {
    if full_size() { 1_000_000 } else { 10_000 }
}

fn hourly(hours: usize) -> (Vec<Digest>, Vec<TDigest>) {
    let hours: Vec<Vec<f64>> = (0..hours)
        .map(|h| lognormal(if full_size() { 6_000 } else { 600 }, 100 + h as u64))
        .collect();
    let ours = hours.iter().map(|v| Digest::from_values(v)).collect();
    let crate_digests = hours
        .iter()
        .map(|v| TDigest::new_with_size(100).merge_unsorted(v.clone()))
        .collect();
    (ours, crate_digests)
}

fn build(c: &mut Criterion) {
    let values = lognormal(n(), 1);
    let mut g = c.benchmark_group("build_1M");
    g.sample_size(20);
    g.bench_function("baseline_sort_unstable_by_total_cmp_of_copy", |b| {
        b.iter(|| {
            let mut copy = values.to_vec();
            copy.sort_unstable_by(f64::total_cmp);
            black_box(copy)
        })
    });
    g.bench_function("baseline_sort_only_copy_untimed", |b| {
        b.iter_batched(
            || values.to_vec(),
            |mut copy| {
                copy.sort_unstable_by(f64::total_cmp);
                copy
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("digest_from_values", |b| {
        b.iter(|| black_box(Digest::from_values(black_box(&values))))
    });
    g.bench_function("builder_push_one_by_one", |b| {
        b.iter(|| {
            let mut builder = DigestBuilder::new();
            for &v in &values {
                builder.push(v);
            }
            black_box(builder.finish())
        })
    });
    g.bench_function("reference_tdigest_merge_unsorted_all_at_once", |b| {
        b.iter(|| black_box(TDigest::new_with_size(100).merge_unsorted(values.to_vec())))
    });
    g.finish();
}

fn merge(c: &mut Criterion) {
    let (ours, theirs) = hourly(168);
    let mut g = c.benchmark_group("merge_hourly");
    for n in [24usize, 168] {
        g.bench_function(format!("digest_merge_{n}"), |b| {
            b.iter(|| black_box(Digest::merge(black_box(&ours[..n]))))
        });
        g.bench_function(format!("reference_tdigest_merge_digests_{n}"), |b| {
            b.iter_batched(
                || theirs[..n].to_vec(),
                TDigest::merge_digests,
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

fn quantile(c: &mut Criterion) {
    let (ours, _) = hourly(168);
    let week = Digest::merge(&ours);
    let mut g = c.benchmark_group("quantile_read");
    g.bench_function("p50_p95_p99", |b| {
        b.iter(|| {
            let d = black_box(&week);
            black_box((d.quantile(0.5), d.quantile(0.95), d.quantile(0.99)))
        })
    });
    g.bench_function("encode", |b| {
        b.iter(|| black_box(black_box(&week).to_bytes()))
    });
    let bytes = week.to_bytes();
    g.bench_function("decode", |b| {
        b.iter(|| black_box(Digest::from_bytes(black_box(&bytes))))
    });
    g.finish();
}

fn stats(c: &mut Criterion) {
    let values = lognormal(n(), 2);
    let digest = Digest::from_values(&values);
    let mut g = c.benchmark_group("count_sum_min_max");
    g.bench_function("baseline_one_pass_8_accumulators", |b| {
        b.iter(|| {
            let v = black_box(&values);
            let mut sum = [0.0f64; 8];
            let mut min = [f64::INFINITY; 8];
            let mut max = [f64::NEG_INFINITY; 8];
            let chunks = v.chunks_exact(8);
            let rest = chunks.remainder();
            for ch in chunks {
                for i in 0..8 {
                    sum[i] += ch[i];
                    min[i] = min[i].min(ch[i]);
                    max[i] = max[i].max(ch[i]);
                }
            }
            let mut s: f64 = sum.iter().sum();
            let mut lo = min.iter().copied().fold(f64::INFINITY, f64::min);
            let mut hi = max.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            for &x in rest {
                s += x;
                lo = lo.min(x);
                hi = hi.max(x);
            }
            black_box((v.len() as u64, s, lo, hi))
        })
    });
    g.bench_function("digest_accessors", |b| {
        b.iter(|| {
            let d = black_box(&digest);
            black_box((d.count(), d.sum(), d.min(), d.max()))
        })
    });
    g.finish();
}

fn hour_of_events(c: &mut Criterion) {
    let hour = chrono::DateTime::from_timestamp(1_710_064_800, 0).unwrap_or_default();
    let events = api_hour(n(), hour, 7);
    let specs = RollupSpecs::defaults();
    let project = ProjectId::default_project();
    let latencies: Vec<f64> = events
        .iter()
        .filter_map(|e| match &e.payload {
            analytics_core::Payload::ApiRequest(r) => Some(r.latency_ms),
            _ => None,
        })
        .collect();
    let mut g = c.benchmark_group("aggregate_hour");
    g.sample_size(10);
    g.bench_function("baseline_sort_unstable_by_total_cmp_of_latencies", |b| {
        b.iter(|| {
            let mut copy = latencies.to_vec();
            copy.sort_unstable_by(f64::total_cmp);
            black_box(copy)
        })
    });
    g.bench_function("aggregate_default_specs", |b| {
        b.iter(|| {
            black_box(aggregate(
                &specs,
                black_box(&events),
                &project,
                Granularity::Hour,
                hour,
                hour,
            ))
        })
    });
    g.finish();
}

criterion_group!(benches, build, merge, quantile, stats, hour_of_events);
criterion_main!(benches);
