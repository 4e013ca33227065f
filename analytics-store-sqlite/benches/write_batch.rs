//! Benchmarks of `SqliteStore`: `write_batch` against a prepared-statement loop (one plain
//! `INSERT` per row, same table, same transactions) in the same run, at both `synchronous`
//! levels; a 24-hour raw-event query and a 30-day rollup query over a large data set; and
//! batched retention, with the write latency seen while it runs.
//!
//! `cargo bench -p analytics-store-sqlite --bench write_batch` runs it for real (1M events;
//! `ANALYTICS_BENCH_EVENTS` sets another size). Without `--bench` (as `cargo test
//! --all-targets` runs it) every part does a tiny amount of work once.

use std::time::{Duration, Instant};

use analytics_core::event::{ApiRequest, FunnelStep, JobStatus, MlJob, Pipeline};
use analytics_core::ports::{EventFilter, EventSink, EventStore, RollupStore};
use analytics_core::rollup::{Dimensions, Rollup, RollupKey, RollupQuery, RollupStats};
use analytics_core::{
    CorrelationId, Event, EventId, EventKind, Granularity, MetricName, PageRequest, Payload,
    ProjectId, TimeRange,
};
use analytics_store_sqlite::{SqliteStore, SqliteStoreOptions, Synchronous};
use chrono::{DateTime, Duration as Span, Utc};
use criterion::{Criterion, SamplingMode, Throughput};
use serde_json::{Map, Value};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use uuid::Uuid;

/// How much work each part does.
struct Sizes {
    /// Rows per timed write iteration, written in collector-sized batches.
    rows_per_iter: usize,
    batch: usize,
    /// Events in the query/retention data set.
    events: usize,
    /// Days the data set spans.
    days: i64,
    /// Days of hourly and daily rollups.
    rollup_days: i64,
}

impl Sizes {
    fn new(bench: bool) -> Self {
        if bench {
            let events = std::env::var("ANALYTICS_BENCH_EVENTS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(1_000_000);
            Self {
                rows_per_iter: 10_000,
                batch: 1_000,
                events,
                days: 10,
                rollup_days: 30,
            }
        } else {
            Self {
                rows_per_iter: 200,
                batch: 100,
                events: 2_000,
                days: 10,
                rollup_days: 2,
            }
        }
    }
}

fn epoch() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2024-03-01T00:00:00Z")
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

/// A realistic mix: 70% API requests, 20% page views, 10% ML jobs, small properties.
fn event(i: u64, at: DateTime<Utc>) -> Event {
    let (kind, payload) = match i % 10 {
        0..=6 => (
            EventKind::ApiRequest,
            Payload::ApiRequest(ApiRequest {
                method: "GET".into(),
                route: ["/api/v1/products/:id", "/api/v1/orders", "/api/v1/cart"][(i % 3) as usize]
                    .into(),
                status: if i.is_multiple_of(50) { 503 } else { 200 },
                latency_ms: (i % 997) as f64 * 0.731,
            }),
        ),
        7 | 8 => (
            EventKind::PageView,
            Payload::Funnel(FunnelStep {
                path: Some("/collections/signature".into()),
                collection: Some("signature".into()),
                ..FunnelStep::default()
            }),
        ),
        _ => (
            EventKind::MlJob,
            Payload::MlJob(MlJob {
                pipeline: Pipeline::Descriptions,
                provider: ["gemini", "replicate", "tripo"][(i % 3) as usize].into(),
                status: JobStatus::Succeeded,
                duration_ms: 900.0 + (i % 300) as f64,
                cost_usd: Some(0.002),
                model: None,
                job_id: None,
                stage: None,
            }),
        ),
    };
    let mut properties = Map::new();
    properties.insert("region".into(), Value::from("eu-west"));
    properties.insert("build".into(), Value::from(i % 17));
    Event {
        id: EventId(Uuid::new_v4()),
        project: ProjectId::parse("shop").unwrap_or_else(|_| ProjectId::default_project()),
        kind,
        occurred_at: at,
        received_at: at,
        correlation_id: CorrelationId::generate(),
        user_id: Some(format!("user-{}", i % 5000)),
        session_id: Some(format!("sess-{}", i % 20000)),
        source: Some("web".into()),
        sample_rate: 1.0,
        payload,
        properties,
    }
}

fn fresh_events(n: usize, start: u64) -> Vec<Event> {
    let base = epoch();
    (0..n as u64)
        .map(|i| event(start + i, base + Span::milliseconds((start + i) as i64)))
        .collect()
}

fn temp_path(label: &str) -> String {
    let dir = std::env::temp_dir().join("analytics-store-sqlite-bench");
    let _ = std::fs::create_dir_all(&dir);
    dir.join(format!("{label}-{}.db", Uuid::new_v4().simple()))
        .display()
        .to_string()
}

fn remove_db(path: &str) {
    for suffix in ["", "-wal", "-shm", ".migrate.lock"] {
        let _ = std::fs::remove_file(format!("{path}{suffix}"));
    }
}

async fn open_store(path: &str, synchronous: Synchronous) -> SqliteStore {
    SqliteStore::connect(
        path,
        SqliteStoreOptions {
            synchronous,
            ..SqliteStoreOptions::default()
        },
    )
    .await
    .expect("open store")
}

/// The baseline: the store's own schema (created by opening a store once), one connection
/// with the store's pragmas, and a plain prepared `INSERT` per row.
async fn open_baseline(path: &str, synchronous: Synchronous) -> SqlitePool {
    open_store(path, synchronous).await.close().await;
    let sync = match synchronous {
        Synchronous::Normal => sqlx::sqlite::SqliteSynchronous::Normal,
        Synchronous::Full => sqlx::sqlite::SqliteSynchronous::Full,
        Synchronous::Extra => sqlx::sqlite::SqliteSynchronous::Extra,
    };
    let defaults = SqliteStoreOptions::default();
    SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            SqliteConnectOptions::new()
                .filename(path)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(sync)
                .busy_timeout(defaults.busy_timeout)
                .pragma("cache_size", format!("-{}", defaults.cache_size_kib)),
        )
        .await
        .expect("open baseline")
}

const INSERT_ONE: &str = "INSERT INTO analytics_events (project, id, kind, occurred_at, \
     received_at, correlation_id, user_id, session_id, source, sample_rate, provider, route, \
     collection, status, payload, properties) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

/// One transaction of single-row inserts, encoding each row the way the store does.
async fn baseline_batch(pool: &SqlitePool, events: &[Event]) {
    let mut tx = pool.begin().await.expect("begin");
    for e in events {
        sqlx::query(INSERT_ONE)
            .bind(e.project.as_str())
            .bind(e.id.0)
            .bind(e.kind.as_str())
            .bind(e.occurred_at.timestamp_micros())
            .bind(e.received_at.timestamp_micros())
            .bind(e.correlation_id.as_str())
            .bind(e.user_id.as_deref())
            .bind(e.session_id.as_deref())
            .bind(e.source.as_deref())
            .bind(e.sample_rate)
            .bind(e.provider())
            .bind(e.route())
            .bind(e.collection())
            .bind(e.status())
            .bind(serde_json::to_string(&e.payload).expect("payload"))
            .bind(serde_json::to_string(&e.properties).expect("properties"))
            .execute(&mut *tx)
            .await
            .expect("insert");
    }
    tx.commit().await.expect("commit");
}

fn bench_writes(c: &mut Criterion, rt: &tokio::runtime::Runtime, sizes: &Sizes, bench: bool) {
    let mut group = c.benchmark_group("write_rows");
    group.throughput(Throughput::Elements(sizes.rows_per_iter as u64));
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.measurement_time(Duration::from_secs(if bench { 15 } else { 1 }));
    group.warm_up_time(Duration::from_secs(if bench { 2 } else { 1 }));
    for (label, sync) in [("full", Synchronous::Full), ("normal", Synchronous::Normal)] {
        let path = temp_path(&format!("write-{label}"));
        let store = rt.block_on(open_store(&path, sync));
        let mut next = 0u64;
        group.bench_function(format!("write_batch/synchronous={label}"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let events = fresh_events(sizes.rows_per_iter, next);
                    next += sizes.rows_per_iter as u64;
                    let t = Instant::now();
                    rt.block_on(async {
                        for chunk in events.chunks(sizes.batch) {
                            store.write_batch(chunk).await.expect("write");
                        }
                    });
                    total += t.elapsed();
                }
                total
            });
        });
        rt.block_on(store.close());
        remove_db(&path);

        let path = temp_path(&format!("loop-{label}"));
        let pool = rt.block_on(open_baseline(&path, sync));
        let mut next = 0u64;
        group.bench_function(format!("prepared_insert_loop/synchronous={label}"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let events = fresh_events(sizes.rows_per_iter, next);
                    next += sizes.rows_per_iter as u64;
                    let t = Instant::now();
                    rt.block_on(async {
                        for chunk in events.chunks(sizes.batch) {
                            baseline_batch(&pool, chunk).await;
                        }
                    });
                    total += t.elapsed();
                }
                total
            });
        });
        rt.block_on(pool.close());
        remove_db(&path);
    }
    group.finish();
}

const METRICS: [&str; 10] = [
    "api.latency_ms",
    "api.requests",
    "api.errors",
    "ml.duration_ms",
    "ml.cost_usd",
    "ml.jobs",
    "orders.revenue",
    "orders.count",
    "funnel.page_views",
    "funnel.cart_adds",
];
const ROUTES: [&str; 5] = ["/a", "/b", "/c", "/d", "/e"];

/// Hourly rollups for every hour of `days` days (10 metrics x (overall + 5 routes)), each
/// with a 1.6 KB digest like a 100-centroid t-digest.
fn rollups(granularity: Granularity, start: DateTime<Utc>, buckets: i64) -> Vec<Rollup> {
    let project = ProjectId::parse("shop").unwrap_or_else(|_| ProjectId::default_project());
    let mut out = Vec::new();
    for b in 0..buckets {
        let bucket_start = start + granularity.duration() * b as i32;
        for metric in METRICS {
            let metric = MetricName::parse(metric).expect("metric");
            let dims = std::iter::once(Dimensions::none()).chain(
                ROUTES
                    .iter()
                    .map(|r| Dimensions::from_pairs([("route", *r)]).expect("dims")),
            );
            for dimensions in dims {
                out.push(Rollup {
                    key: RollupKey {
                        project: project.clone(),
                        granularity,
                        bucket_start,
                        metric: metric.clone(),
                        dimensions,
                    },
                    stats: RollupStats {
                        samples: 1000,
                        count: 1000.0,
                        sum: 12345.0,
                        min: Some(1.0),
                        max: Some(900.0),
                        avg: Some(12.3),
                        p50: Some(10.0),
                        p95: Some(80.0),
                        p99: Some(300.0),
                    },
                    digest: vec![7u8; 1600],
                    computed_at: bucket_start + granularity.duration(),
                });
            }
        }
    }
    out
}

fn bench_queries(c: &mut Criterion, rt: &tokio::runtime::Runtime, sizes: &Sizes, bench: bool) {
    let path = temp_path("queries");
    // Seeding speed is not what is measured here.
    let store = rt.block_on(open_store(&path, Synchronous::Normal));
    let span_ms = sizes.days * 86_400_000;
    let step = (span_ms / sizes.events as i64).max(1);
    let base = epoch();
    let t = Instant::now();
    rt.block_on(async {
        let mut i = 0u64;
        while (i as usize) < sizes.events {
            let n = 5_000.min(sizes.events - i as usize);
            let batch: Vec<Event> = (0..n as u64)
                .map(|k| event(i + k, base + Span::milliseconds((i + k) as i64 * step)))
                .collect();
            store.write_batch(&batch).await.expect("seed");
            i += n as u64;
        }
    });
    let seeded = t.elapsed();
    let hourly = rollups(Granularity::Hour, base, sizes.rollup_days * 24);
    let daily = rollups(Granularity::Day, base, sizes.rollup_days);
    rt.block_on(async {
        for chunk in hourly.chunks(5_000).chain(daily.chunks(5_000)) {
            store.upsert_rollups(chunk).await.expect("rollups");
        }
    });
    eprintln!(
        "seeded {} events over {} days in {:.1} s ({:.0} rows/s, synchronous=NORMAL, 5000 per batch); \
         {} hourly + {} daily rollups",
        sizes.events,
        sizes.days,
        seeded.as_secs_f64(),
        sizes.events as f64 / seeded.as_secs_f64(),
        hourly.len(),
        daily.len()
    );

    let project = ProjectId::parse("shop").expect("project");
    let end = base + Span::days(sizes.days);
    let day = TimeRange::new(end - Span::hours(24), end).expect("range");
    let mut group = c.benchmark_group("queries");
    group.sample_size(if bench { 20 } else { 10 });
    group.measurement_time(Duration::from_secs(if bench { 5 } else { 1 }));
    group.warm_up_time(Duration::from_secs(1));

    let api_24h = EventFilter {
        project: Some(project.clone()),
        kinds: vec![EventKind::ApiRequest],
        range: Some(day),
        ..Default::default()
    };
    group.bench_function("24h_raw/first_page_1000_api_requests", |b| {
        b.iter(|| {
            rt.block_on(store.query_events(&api_24h, &PageRequest::first(1000)))
                .expect("query")
        });
    });
    let ml_24h = EventFilter {
        project: Some(project.clone()),
        kinds: vec![EventKind::MlJob],
        range: Some(day),
        ..Default::default()
    };
    let walk = |filter: &EventFilter| {
        rt.block_on(async {
            let mut n = 0;
            let mut cursor = None;
            loop {
                let page = store
                    .query_events(filter, &PageRequest::new(1000, cursor).expect("page"))
                    .await
                    .expect("query");
                n += page.items.len();
                match page.next_cursor {
                    Some(c) => cursor = Some(c),
                    None => return n,
                }
            }
        })
    };
    eprintln!("24h ml_job events: {}", walk(&ml_24h));
    group.bench_function("24h_raw/all_ml_jobs_paged", |b| b.iter(|| walk(&ml_24h)));
    let gemini_24h = EventFilter {
        project: Some(project.clone()),
        provider: Some("gemini".into()),
        range: Some(day),
        ..Default::default()
    };
    group.bench_function("24h_raw/first_page_provider", |b| {
        b.iter(|| {
            rt.block_on(store.query_events(&gemini_24h, &PageRequest::first(1000)))
                .expect("query")
        });
    });

    let month = TimeRange::new(base, base + Span::days(30)).expect("range");
    let series = |granularity| RollupQuery {
        project: project.clone(),
        granularity,
        range: month,
        metrics: vec![MetricName::parse("api.latency_ms").expect("metric")],
        dimensions: Dimensions::none(),
        dimension_names: Some(vec![]),
    };
    let hourly_q = series(Granularity::Hour);
    let daily_q = series(Granularity::Day);
    let by_route = RollupQuery {
        dimension_names: Some(vec!["route".into()]),
        ..series(Granularity::Hour)
    };
    for (name, q) in [
        ("30d_rollups/hourly_overall_720_rows", &hourly_q),
        ("30d_rollups/daily_overall_30_rows", &daily_q),
        ("30d_rollups/hourly_by_route_3600_rows", &by_route),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| rt.block_on(store.query_rollups(q)).expect("rollups"));
        });
    }
    group.finish();

    retention(rt, &store, sizes);
    rt.block_on(store.close());
    remove_db(&path);
}

/// Deletes the oldest 30% of the data set with default options, while a writer keeps adding
/// 100-event batches: reports the time taken and the worst write latency meanwhile.
fn retention(rt: &tokio::runtime::Runtime, store: &SqliteStore, sizes: &Sizes) {
    let cutoff = epoch() + Span::milliseconds(sizes.days * 86_400_000 * 3 / 10);
    let before = rt.block_on(store.event_count()).expect("count");
    let writer = store.clone();
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let probe = rt.spawn(async move {
        let mut latencies = Vec::new();
        let mut i = 10_000_000_000u64;
        loop {
            let batch = fresh_events(100, i);
            i += 100;
            let t = Instant::now();
            writer
                .write_batch(&batch)
                .await
                .expect("write during retention");
            latencies.push(t.elapsed());
            tokio::select! {
                _ = &mut stop_rx => return latencies,
                () = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
        }
    });
    let t = Instant::now();
    let deleted = rt
        .block_on(store.delete_events_before(None, cutoff))
        .expect("retention");
    let took = t.elapsed();
    let _ = stop_tx.send(());
    let mut latencies = rt.block_on(probe).expect("probe");
    latencies.sort();
    let at = |q: f64| {
        let i = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        latencies.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    eprintln!(
        "retention: deleted {deleted} of {before} events in {:.2} s ({:.0} rows/s, batches of at most {}); \
         {} concurrent 100-event writes, latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        took.as_secs_f64(),
        deleted as f64 / took.as_secs_f64(),
        store.options().retention_batch_rows,
        latencies.len(),
        at(0.5),
        at(0.99),
        at(1.0),
    );
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let sizes = Sizes::new(bench);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut c = Criterion::default().configure_from_args();
    bench_writes(&mut c, &rt, &sizes, bench);
    bench_queries(&mut c, &rt, &sizes, bench);
    c.final_summary();
}
