//! Benchmarks of `SqliteStore` with its default options: `write_batch` against the baseline
//! (`analytics_store_sqlite::baseline`: the same rows through prepared multi-row `INSERT`s
//! into a table with only its primary key) in the same run, at 100k stored events and again
//! once the file holds the whole data set (10M events), plus a window of random client ids;
//! then a 24-hour raw-event query and 30-day rollup queries over that file, and batched
//! retention with the write latency seen while it runs.
//!
//! `cargo bench -p analytics-store-sqlite --features bench-baseline --bench write_batch`
//! runs it for real. Knobs: `ANALYTICS_BENCH_EVENTS` (default 10,000,000),
//! `ANALYTICS_BENCH_WINDOW` (events per timed window, default 100,000, split into
//! `ANALYTICS_BENCH_ROUNDS` interleaved rounds, default 10),
//! `ANALYTICS_BENCH_RETENTION=0` (skip retention), `ANALYTICS_BENCH_SYNCHRONOUS=normal`. Without `--bench` (as `cargo test
//! --all-targets` runs it) every part does a tiny amount of work once.

// A benchmark reports its figures on stdout.
#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use analytics_core::event::{ApiRequest, FunnelStep, JobStatus, MlJob, Pipeline};
use analytics_core::ports::{EventFilter, EventSink, EventStore, RollupStore};
use analytics_core::rollup::{Dimensions, Rollup, RollupKey, RollupQuery, RollupStats};
use analytics_core::{
    CorrelationId, Event, EventId, EventKind, Granularity, MetricName, PageRequest, Payload,
    ProjectId, TimeRange,
};
use analytics_store_sqlite::baseline::RawInsert;
use analytics_store_sqlite::{SqliteStore, SqliteStoreOptions, Synchronous};
use chrono::{DateTime, Duration as Span, Utc};
use criterion::Criterion;
use serde_json::{Map, Value};
use uuid::Uuid;

/// How much work each part does.
struct Sizes {
    /// Events in the data set (written through `write_batch`, then queried).
    events: usize,
    /// Stored events at the early write measurement.
    early: u64,
    /// Events per timed write window (store and baseline each).
    window: usize,
    /// Interleaved rounds a window is split into.
    rounds: usize,
    /// Events per `write_batch` call (the collector's batches under load).
    batch: usize,
    /// Days the data set spans.
    days: i64,
    /// Days of hourly and daily rollups.
    rollup_days: i64,
    /// Whether to time retention (deleting 30% of the data set) at the end.
    retention: bool,
}

impl Sizes {
    fn new(bench: bool) -> Self {
        fn env<T: std::str::FromStr>(name: &str) -> Option<T> {
            std::env::var(name).ok().and_then(|v| v.parse().ok())
        }
        if bench {
            Self {
                events: env("ANALYTICS_BENCH_EVENTS").unwrap_or(10_000_000),
                early: 100_000,
                window: env("ANALYTICS_BENCH_WINDOW").unwrap_or(100_000),
                rounds: env("ANALYTICS_BENCH_ROUNDS").unwrap_or(10),
                batch: 1_000,
                days: 10,
                rollup_days: 30,
                retention: env::<u8>("ANALYTICS_BENCH_RETENTION").unwrap_or(1) == 1,
            }
        } else {
            Self {
                events: 3_000,
                early: 1_000,
                window: 500,
                rounds: 2,
                batch: 100,
                days: 10,
                rollup_days: 2,
                retention: true,
            }
        }
    }

    /// Milliseconds between two events of the data set.
    fn step_ms(&self) -> i64 {
        (self.days * 86_400_000 / self.events.max(1) as i64).max(1)
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
        id: EventId::generate(at),
        project: ProjectId::parse("shop").unwrap_or_else(|_| ProjectId::default_project()),
        kind,
        occurred_at: at,
        received_at: at,
        correlation_id: CorrelationId::generate(at),
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

/// Writes `events` in `batch`-sized `write_batch` calls; returns the elapsed time.
async fn write_store(store: &SqliteStore, events: &[Event], batch: usize) -> Duration {
    let t = Instant::now();
    for chunk in events.chunks(batch) {
        let report = store.write_batch(chunk).await.expect("write");
        assert_eq!(report.inserted(), chunk.len(), "every event is new");
    }
    t.elapsed()
}

/// The same rows through the baseline: one transaction of prepared multi-row `INSERT`s per
/// batch into a table with only its primary key.
async fn write_baseline(raw: &RawInsert, events: &[Event], batch: usize) -> Duration {
    let t = Instant::now();
    for chunk in events.chunks(batch) {
        raw.write(chunk).await.expect("baseline write");
    }
    t.elapsed()
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

/// The median of `xs` (the mean of the middle two for an even count).
fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => 0.0,
        n if n % 2 == 1 => xs[n / 2],
        n => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    }
}

/// The events of the data set, `i` in `range`, `step_ms` apart from `epoch()`, with ids the
/// server would generate (UUIDv7 of their time).
fn data_events(range: std::ops::Range<u64>, step_ms: i64) -> Vec<Event> {
    let base = epoch();
    range
        .map(|i| event(i, base + Span::milliseconds(i as i64 * step_ms)))
        .collect()
}

/// `write_batch` into a growing file against the baseline, in the same run: a window of
/// `window` events at 100k stored and again at `sizes.events` stored (each in interleaved rounds with the
/// same rows through the baseline), then a window of random (UUIDv4) client ids at the
/// full size. Leaves the store filled for the query benchmarks.
fn bench_writes(rt: &tokio::runtime::Runtime, store: &SqliteStore, sizes: &Sizes) {
    let path = temp_path("baseline");
    let raw = rt
        .block_on(RawInsert::create(&path, store.options().clone()))
        .expect("baseline");
    let total = sizes.events as u64;
    let window = sizes.window as u64;
    let early = sizes.early.min(total.saturating_sub(window));
    let step = sizes.step_ms();
    let batch = sizes.batch;
    let fill = |from: u64, to: u64| {
        let t = Instant::now();
        let mut at = from;
        while at < to {
            let n = 100_000.min(to - at);
            rt.block_on(write_store(store, &data_events(at..at + n, step), batch));
            at += n;
        }
        t.elapsed()
    };
    // `rounds` interleaved rounds of `window / rounds` events each, alternating which side
    // goes first: the machine's load changes over seconds, so the ratio of each round's two
    // rates (same rows, same moment) is what is compared, and its median is reported.
    let rounds = sizes.rounds.max(1);
    let per_round = (window / rounds as u64).max(1);
    let measure = |label: &str, at: u64| {
        let (mut w, mut b, mut r) = (Vec::new(), Vec::new(), Vec::new());
        for k in 0..rounds as u64 {
            let events = data_events(at + k * per_round..at + (k + 1) * per_round, step);
            let (store_took, raw_took) = if k % 2 == 0 {
                let s = rt.block_on(write_store(store, &events, batch));
                (s, rt.block_on(write_baseline(&raw, &events, batch)))
            } else {
                let r = rt.block_on(write_baseline(&raw, &events, batch));
                (rt.block_on(write_store(store, &events, batch)), r)
            };
            w.push(rate(events.len(), store_took));
            b.push(rate(events.len(), raw_took));
            r.push(rate(events.len(), store_took) / rate(events.len(), raw_took));
        }
        let (w, b, ratio) = (median(&mut w), median(&mut b), median(&mut r));
        println!(
            "summary write {label}: {at} events stored, {} more in {rounds} interleaved rounds \
             of {per_round} in batches of {batch}: write_batch {w:.0} rows/s, baseline \
             (multi-row INSERT, primary key only) {b:.0} rows/s (medians; median ratio \
             {ratio:.2}x, rounds {})",
            per_round * rounds as u64,
            r.iter()
                .map(|x| format!("{x:.2}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        w
    };
    fill(0, early);
    let at_early = measure("early", early);
    let took = fill(early + window, total);
    let n = total.saturating_sub(early + window);
    println!(
        "filled to {total} events ({n} written at {:.0} rows/s on average, batches of {batch})",
        rate(n as usize, took)
    );
    let at_full = measure("full", total);
    println!(
        "summary flat: write_batch at {total} stored / at {early} stored: {:.2}x",
        at_full / at_early
    );
    // Random client ids: the dedup key (project, id) takes them at a random leaf page.
    let mut random = data_events(total + window..total + 2 * window, step);
    for e in &mut random {
        e.id = EventId(Uuid::new_v4());
    }
    let took = rt.block_on(write_store(store, &random, batch));
    println!(
        "summary random client ids at {} stored: write_batch {:.0} rows/s ({:.2}x of the \
         time-ordered window at the same size)",
        total + window,
        rate(random.len(), took),
        rate(random.len(), took) / at_full
    );
    let count = rt.block_on(raw.count()).expect("count");
    assert_eq!(
        count,
        2 * per_round * rounds as u64,
        "the baseline stored every row"
    );
    rt.block_on(raw.close());
    remove_db(&path);
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

fn bench_queries(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    store: &SqliteStore,
    sizes: &Sizes,
    bench: bool,
) {
    let base = epoch();
    let hourly = rollups(Granularity::Hour, base, sizes.rollup_days * 24);
    let daily = rollups(Granularity::Day, base, sizes.rollup_days);
    rt.block_on(async {
        for chunk in hourly.chunks(5_000).chain(daily.chunks(5_000)) {
            store.upsert_rollups(chunk).await.expect("rollups");
        }
    });
    let stored = rt.block_on(store.event_count()).expect("count");
    println!(
        "queries over {stored} events spanning {} days; {} hourly + {} daily rollups",
        sizes.days,
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
    // The first page of 1,000 events of a listing.
    let first_page = |filter: &EventFilter| {
        rt.block_on(store.query_events(filter, &PageRequest::first(1000)))
            .expect("query")
    };
    group.bench_function("24h_raw/first_page_1000_api_requests", |b| {
        b.iter(|| first_page(&api_24h));
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
        b.iter(|| first_page(&gemini_24h));
    });

    // A project's listing over every kind: no single index lists it in order, so the store
    // merges one scan per kind (there is no (project, time) index to keep inserts cheap).
    let all_24h = EventFilter {
        project: Some(project.clone()),
        range: Some(day),
        ..Default::default()
    };
    group.bench_function("24h_raw/first_page_1000_all_kinds", |b| {
        b.iter(|| first_page(&all_24h));
    });
    // What the rollup does for each dirty hour: every event of the hour, paged.
    let last_hour = TimeRange::new(end - Span::hours(1), end).expect("range");
    let hour_all = EventFilter {
        project: Some(project.clone()),
        range: Some(last_hour),
        ..Default::default()
    };
    eprintln!("events in the last hour: {}", walk(&hour_all));
    group.bench_function("1h_raw/all_events_of_an_hour_paged", |b| {
        b.iter(|| walk(&hour_all));
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

    if sizes.retention {
        retention(rt, store, sizes);
    }
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
    let path = temp_path("store");
    let mut options = SqliteStoreOptions::default();
    if std::env::var("ANALYTICS_BENCH_SYNCHRONOUS").is_ok_and(|v| v == "normal") {
        options.synchronous = Synchronous::Normal;
    }
    let store = rt
        .block_on(SqliteStore::connect(&path, options))
        .expect("open store");
    println!("store options: {:?}", store.options());
    bench_writes(&rt, &store, &sizes);
    bench_queries(&mut c, &rt, &store, &sizes, bench);
    c.final_summary();
    rt.block_on(store.close());
    remove_db(&path);
}
