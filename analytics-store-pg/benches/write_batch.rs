//! Benchmarks of the PostgreSQL store: `write_batch` against raw binary `COPY` of the
//! identical rows into an identical table, in the same run; then, over
//! a large data set, a 24-hour timeseries from raw events, a 30-day timeseries from
//! rollups, and retention.
//!
//! Needs `TEST_DATABASE_URL` (a superuser URL; databases `bench_*` are created on it), e.g.
//! `scripts/with-services cargo bench -p analytics-store-pg --features bench-baseline --bench write_batch`.
//! `BENCH_EVENTS` sets the size of the large data set (default 1,000,000; the figures in
//! `docs/stores/postgres.md` use 10,000,000). Without `--bench` (as `cargo test` runs it)
//! it only smoke-tests every path on a few rows.

// A benchmark reports its figures on stdout.
#![allow(clippy::print_stdout)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use analytics_core::event::{ApiRequest, FunnelStep, JobStatus, MlJob, Pipeline};
use analytics_core::ports::{EventSink, EventStore, RollupStore};
use analytics_core::rollup::digest::Digest;
use analytics_core::rollup::{Dimensions, Rollup, RollupKey, RollupQuery, RollupStats};
use analytics_core::testkit::fixtures::Lcg;
use analytics_core::testkit::services::with_database;
use analytics_core::{
    CorrelationId, Event, EventId, EventKind, Granularity, MetricName, Payload, ProjectId,
    TimeRange,
};
use analytics_store_pg::baseline::RawCopy;
use analytics_store_pg::{PgStore, PgStoreOptions};
use chrono::{DateTime, Duration as ChronoDuration, TimeZone, Utc};
use criterion::{Criterion, Throughput};
use serde_json::{Map, Value, json};
use tokio::runtime::Runtime;

/// The fixed "now" of the data sets.
fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 3, 10, 12, 0, 0)
        .single()
        .unwrap_or_default()
}

const ROUTES: [&str; 8] = [
    "/api/v1/products/:id",
    "/api/v1/products",
    "/api/v1/orders",
    "/api/v1/orders/:id",
    "/api/v1/cart",
    "/api/v1/checkout",
    "/api/v1/collections/:slug",
    "/api/v1/search",
];
const PROVIDERS: [&str; 4] = ["replicate", "tripo", "huggingface", "gemini"];
const COLLECTIONS: [&str; 3] = ["black-rose", "love-hurts", "signature"];

/// `n` events of a realistic mix (70% requests, 10% ML jobs, 15% funnel steps, 5% custom),
/// spread evenly over `[start, start + span)`, 90% in project `shop`, 10% in `other`.
fn events(n: usize, start: DateTime<Utc>, span: ChronoDuration, rng: &mut Lcg) -> Vec<Event> {
    let shop = ProjectId::parse("shop").unwrap_or_else(|e| panic!("{e}"));
    let other = ProjectId::parse("other").unwrap_or_else(|e| panic!("{e}"));
    let step = span.num_microseconds().unwrap_or(1) / n.max(1) as i64;
    (0..n)
        .map(|i| {
            let at = start + ChronoDuration::microseconds(step * i as i64);
            let r = rng.below(100);
            let (kind, payload) = match r {
                0..70 => (
                    EventKind::ApiRequest,
                    Payload::ApiRequest(ApiRequest {
                        method: "GET".into(),
                        route: ROUTES[rng.below(8) as usize].into(),
                        status: if rng.below(50) == 0 { 503 } else { 200 },
                        latency_ms: (rng.below(50_000) as f64) / 100.0,
                    }),
                ),
                70..80 => (
                    EventKind::MlJob,
                    Payload::MlJob(MlJob {
                        pipeline: Pipeline::ThreeD,
                        provider: PROVIDERS[rng.below(4) as usize].into(),
                        status: JobStatus::Succeeded,
                        duration_ms: rng.below(90_000) as f64,
                        cost_usd: Some(0.05),
                        model: None,
                        job_id: None,
                        stage: None,
                    }),
                ),
                80..95 => (
                    EventKind::ProductView,
                    Payload::Funnel(FunnelStep {
                        path: None,
                        product_id: Some(format!("p-{}", rng.below(500))),
                        collection: Some(COLLECTIONS[rng.below(3) as usize].into()),
                        quantity: None,
                        value: None,
                    }),
                ),
                _ => {
                    let mut m = Map::new();
                    m.insert("list".into(), json!("weekly"));
                    (
                        EventKind::Custom("newsletter.signup".into()),
                        Payload::Custom(m),
                    )
                }
            };
            let mut properties = Map::new();
            properties.insert(
                "ab".into(),
                Value::from(format!("variant-{}", rng.below(3))),
            );
            properties.insert("ua".into(), json!("Mozilla/5.0 (X11; Linux x86_64)"));
            Event {
                // Random ids, like clients that send UUIDv4s (the figures in
                // docs/PERFORMANCE.md were measured with them).
                id: EventId(uuid::Uuid::new_v4()),
                project: if rng.below(10) == 0 {
                    other.clone()
                } else {
                    shop.clone()
                },
                kind,
                occurred_at: at,
                received_at: at,
                correlation_id: CorrelationId::parse(uuid::Uuid::new_v4().to_string())
                    .expect("uuid text is a correlation id"),
                user_id: Some(format!("user-{}", rng.below(10_000))),
                session_id: Some(format!("sess-{}", rng.below(50_000))),
                source: Some("web".into()),
                sample_rate: 1.0,
                payload,
                properties,
            }
        })
        .collect()
}

async fn create_database(admin: &str, prefix: &str) -> String {
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    analytics_store_pg::admin::create_database(admin, &name)
        .await
        .unwrap_or_else(|e| panic!("create database {name}: {e}"));
    with_database(admin, &name)
}

async fn store(url: &str) -> PgStore {
    let options = PgStoreOptions {
        write_chunk_rows: 10_000,
        ..PgStoreOptions::default()
    };
    PgStore::connect(url, options)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"))
}

/// The two writers, each on its own database so their tables grow alike.
struct Writers {
    raw: RawCopy,
    store: PgStore,
}

impl Writers {
    async fn new(admin: &str, days: &[DateTime<Utc>]) -> Self {
        let raw_store = store(&create_database(admin, "bench_raw").await).await;
        let days: Vec<_> = days.iter().map(|d| d.date_naive()).collect();
        let raw = RawCopy::create(raw_store.pool().clone(), &days)
            .await
            .unwrap_or_else(|e| panic!("baseline table: {e}"));
        Self {
            raw,
            store: store(&create_database(admin, "bench_store").await).await,
        }
    }

    async fn write(&self, which: usize, batch: &[Event]) -> Duration {
        let started = Instant::now();
        if which == 0 {
            self.raw
                .write(batch)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        } else {
            let r = self
                .store
                .write_batch(batch)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(r.inserted(), batch.len());
        }
        started.elapsed()
    }
}

const WRITERS: [&str; 2] = ["raw_copy", "write_batch"];

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Interleaved rounds: each round writes one fresh batch through each writer (the same
/// rows for both), so the tables grow alike and noise hits both.
fn compare_writers(rt: &Runtime, w: &Writers, batch: usize, rounds: usize, rng: &mut Lcg) {
    let mut rates: [Vec<f64>; 2] = Default::default();
    for round in 0..rounds {
        let start = now() - ChronoDuration::hours(2) + ChronoDuration::seconds(round as i64);
        let rows = events(batch, start, ChronoDuration::hours(1), rng);
        for (which, rate) in rates.iter_mut().enumerate() {
            let took = rt.block_on(w.write(which, &rows));
            rate.push(batch as f64 / took.as_secs_f64());
        }
    }
    let m: Vec<f64> = rates.into_iter().map(median).collect();
    println!(
        "summary batch={batch} rounds={rounds}: raw COPY {:.0} rows/s; write_batch {:.0} rows/s \
         ({:.2}x)",
        m[0],
        m[1],
        m[1] / m[0],
    );
}

fn bench_writes(c: &mut Criterion, rt: &Runtime, w: &Writers, rng: &mut Lcg) {
    for batch in [1_000usize, 10_000] {
        let mut group = c.benchmark_group(format!("write_{batch}"));
        group.throughput(Throughput::Elements(batch as u64));
        group.sample_size(10);
        group.warm_up_time(Duration::from_secs(2));
        group.measurement_time(Duration::from_secs(15));
        for (which, name) in WRITERS.iter().enumerate() {
            group.bench_function(*name, |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for i in 0..iters {
                        let start = now() - ChronoDuration::hours(3)
                            + ChronoDuration::milliseconds(i as i64);
                        let rows = events(batch, start, ChronoDuration::minutes(30), rng);
                        total += rt.block_on(w.write(which, &rows));
                    }
                    total
                });
            });
        }
        group.finish();
    }
    for (batch, rounds) in [(100, 40), (1_000, 30), (10_000, 15)] {
        compare_writers(rt, w, batch, rounds, rng);
    }
}

/// Loads `n` events over the 7 days before `now()` through `write_batch`.
fn load(rt: &Runtime, store: &PgStore, n: usize, rng: &mut Lcg) {
    let started = Instant::now();
    let batch = 10_000;
    let span = ChronoDuration::days(7);
    let per_batch = span / (n.div_ceil(batch) as i32).max(1);
    let mut written = 0;
    let mut at = now() - span;
    while written < n {
        let k = batch.min(n - written);
        let rows = events(k, at, per_batch, rng);
        rt.block_on(store.write_batch(&rows))
            .unwrap_or_else(|e| panic!("{e}"));
        written += k;
        at += per_batch;
    }
    rt.block_on(async {
        sqlx::query("ANALYZE")
            .execute(store.pool())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    });
    let took = started.elapsed();
    println!(
        "loaded {n} events in {:.1} s ({:.0} rows/s through write_batch)",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64()
    );
}

/// Hourly rollup rows for 30 days (and daily ones), 3 metrics x (overall + 8 routes), with
/// real digests of 200 values.
fn synthesize_rollups(rt: &Runtime, store: &PgStore, rng: &mut Lcg) -> usize {
    let shop = ProjectId::parse("shop").unwrap_or_else(|e| panic!("{e}"));
    let metrics = ["api.latency_ms", "api.requests", "ml.duration_ms"]
        .map(|m| MetricName::parse(m).unwrap_or_else(|e| panic!("{e}")));
    let mut dims = vec![Dimensions::none()];
    for r in ROUTES {
        dims.push(Dimensions::from_pairs([("route", r)]).unwrap_or_else(|e| panic!("{e}")));
    }
    let start = Granularity::Day.bucket_start(now()) - ChronoDuration::days(30);
    let mut rows = Vec::new();
    let mut total = 0;
    for (g, n) in [(Granularity::Hour, 30 * 24), (Granularity::Day, 30)] {
        for b in 0..n {
            let bucket = start + g.duration() * b;
            for m in &metrics {
                for d in &dims {
                    let values: Vec<f64> = (0..200).map(|_| rng.below(10_000) as f64).collect();
                    let digest = Digest::from_values(&values);
                    rows.push(Rollup {
                        key: RollupKey {
                            project: shop.clone(),
                            granularity: g,
                            bucket_start: bucket,
                            metric: m.clone(),
                            dimensions: d.clone(),
                        },
                        stats: RollupStats {
                            samples: 200,
                            count: 200.0,
                            sum: digest.sum(),
                            min: digest.min(),
                            max: digest.max(),
                            avg: digest.mean(),
                            p50: digest.quantile(0.5),
                            p95: digest.quantile(0.95),
                            p99: digest.quantile(0.99),
                        },
                        digest: digest.to_bytes(),
                        computed_at: bucket + g.duration(),
                    });
                    if rows.len() == 2_000 {
                        total += rows.len();
                        rt.block_on(store.upsert_rollups(&rows))
                            .unwrap_or_else(|e| panic!("{e}"));
                        rows.clear();
                    }
                }
            }
        }
    }
    total += rows.len();
    rt.block_on(store.upsert_rollups(&rows))
        .unwrap_or_else(|e| panic!("{e}"));
    rt.block_on(async {
        sqlx::query("ANALYZE analytics_rollups")
            .execute(store.pool())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    });
    total
}

/// The 24-hour timeseries from raw events: hourly request count and mean latency.
async fn raw_timeseries(store: &PgStore) -> Vec<(DateTime<Utc>, i64, Option<f64>)> {
    sqlx::query_as(
        "SELECT date_trunc('hour', occurred_at, 'UTC') AS hour, count(*), \
             avg((payload->>'latency_ms')::float8) \
         FROM analytics_events \
         WHERE project = $1 AND kind = 'api_request' AND occurred_at >= $2 AND occurred_at < $3 \
         GROUP BY 1 ORDER BY 1",
    )
    .bind("shop")
    .bind(now() - ChronoDuration::hours(24))
    .bind(now())
    .fetch_all(store.pool())
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Hourly counts only: answered from the (project, kind, occurred_at) index alone.
async fn raw_counts(store: &PgStore) -> Vec<(DateTime<Utc>, i64)> {
    sqlx::query_as(
        "SELECT date_trunc('hour', occurred_at, 'UTC') AS hour, count(*) \
         FROM analytics_events \
         WHERE project = $1 AND kind = 'api_request' AND occurred_at >= $2 AND occurred_at < $3 \
         GROUP BY 1 ORDER BY 1",
    )
    .bind("shop")
    .bind(now() - ChronoDuration::hours(24))
    .bind(now())
    .fetch_all(store.pool())
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

fn rollup_query(granularity: Granularity, dims: Option<Vec<String>>) -> RollupQuery {
    let end = Granularity::Day.bucket_start(now());
    RollupQuery {
        project: ProjectId::parse("shop").unwrap_or_else(|e| panic!("{e}")),
        granularity,
        range: TimeRange::new(end - ChronoDuration::days(30), end)
            .unwrap_or_else(|e| panic!("{e}")),
        metrics: vec![MetricName::parse("api.latency_ms").unwrap_or_else(|e| panic!("{e}"))],
        dimensions: Dimensions::none(),
        dimension_names: dims,
    }
}

fn timed<T>(label: &str, runs: usize, f: impl Fn() -> T) -> T {
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..runs {
        let started = Instant::now();
        last = Some(f());
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let med = median(times.clone());
    let max = times.iter().copied().fold(0.0, f64::max);
    println!("{label}: median {med:.2} ms, max {max:.2} ms over {runs} runs");
    last.unwrap_or_else(|| panic!("no runs"))
}

fn bench_large(c: &mut Criterion, rt: &Runtime, admin: &str, n: usize, rng: &mut Lcg) {
    let url = rt.block_on(create_database(admin, "bench_large"));
    let store = rt.block_on(store(&url));
    load(rt, &store, n, rng);
    let rollups = synthesize_rollups(rt, &store, rng);
    println!("synthesized {rollups} rollup rows (30 days hourly + daily)");

    let mut group = c.benchmark_group(format!("queries_{n}_events"));
    group.sample_size(20);
    group.bench_function("raw_24h_hourly_count_and_avg_latency", |b| {
        b.iter(|| black_box(rt.block_on(raw_timeseries(&store))))
    });
    group.bench_function("raw_24h_hourly_count", |b| {
        b.iter(|| black_box(rt.block_on(raw_counts(&store))))
    });
    let daily = rollup_query(Granularity::Day, Some(vec![]));
    group.bench_function("rollups_30d_daily_overall", |b| {
        b.iter(|| black_box(rt.block_on(store.query_rollups(&daily))))
    });
    let hourly = rollup_query(Granularity::Hour, None);
    group.bench_function("rollups_30d_hourly_all_routes", |b| {
        b.iter(|| black_box(rt.block_on(store.query_rollups(&hourly))))
    });
    group.finish();
    let rows = timed("raw 24h hourly count+avg", 10, || {
        rt.block_on(raw_timeseries(&store))
    });
    println!("  ({} hourly points)", rows.len());
    let got = timed("rollups 30d hourly, 9 series", 10, || {
        rt.block_on(store.query_rollups(&hourly))
    });
    println!("  ({} rows)", got.as_ref().map_or(0, Vec::len));

    // Retention at this size: all projects (whole days dropped + a partly covered day),
    // then one project.
    let cut = now() - ChronoDuration::days(4) - ChronoDuration::hours(6);
    let started = Instant::now();
    let deleted = rt
        .block_on(store.delete_events_before(None, cut))
        .unwrap_or_else(|e| panic!("{e}"));
    println!(
        "retention, all projects, before now-4d6h: {deleted} events in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let other = ProjectId::parse("other").unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    let deleted = rt
        .block_on(store.delete_events_before(Some(&other), now() - ChronoDuration::days(2)))
        .unwrap_or_else(|e| panic!("{e}"));
    println!(
        "retention, project other, before now-2d: {deleted} events in {:.2} s",
        started.elapsed().as_secs_f64()
    );
}

/// `cargo test` mode: every path once, on a few rows.
fn smoke(rt: &Runtime, admin: &str) {
    let mut rng = Lcg(7);
    let days = [
        now() - ChronoDuration::hours(3),
        now() - ChronoDuration::hours(2),
    ];
    let w = rt.block_on(Writers::new(admin, &days));
    let rows = events(
        100,
        now() - ChronoDuration::hours(2),
        ChronoDuration::minutes(10),
        &mut rng,
    );
    for which in 0..WRITERS.len() {
        rt.block_on(w.write(which, &rows));
    }
    let s = &w.store;
    rt.block_on(async {
        let _ = raw_timeseries(s).await;
        let _ = raw_counts(s).await;
    });
    let filter = analytics_core::ports::EventFilter::default();
    let page = rt
        .block_on(s.query_events(&filter, &analytics_core::PageRequest::first(10)))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(page.items.len(), 10);
    println!("write_batch bench: smoke run ok (pass --bench to measure)");
}

fn main() {
    let measure = std::env::args().any(|a| a == "--bench");
    let Some(admin) = std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
    else {
        eprintln!("TEST_DATABASE_URL is not set: skipping the PostgreSQL benchmarks");
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    if !measure {
        smoke(&rt, &admin);
        return;
    }
    let n: usize = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let mut c = Criterion::default().configure_from_args();
    let mut rng = Lcg(42);
    let days = [
        now() - ChronoDuration::hours(3),
        now() - ChronoDuration::hours(2),
    ];
    let writers = rt.block_on(Writers::new(&admin, &days));
    bench_writes(&mut c, &rt, &writers, &mut rng);
    if std::env::var_os("BENCH_SKIP_LARGE").is_none() {
        bench_large(&mut c, &rt, &admin, n, &mut rng);
    }
    c.final_summary();
}
