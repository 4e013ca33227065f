//! Read paths over a large PostgreSQL database: the health routes through the real server
//! (HTTP on loopback, JWT, the rollup reader, JSON) against the store's own rollup read of the
//! same window, and one alert-engine tick over 1,000 configurations against the bare metric
//! reads it needs, in the same run.
//!
//! Needs `TEST_DATABASE_URL` (a superuser URL; a database `bench_reads_*` is created on it):
//! `scripts/with-services cargo bench -p analytics-server --bench read_paths`.
//! Knobs: `BENCH_EVENTS` (default 10,000,000 `api_request` events over 30 days, the demo
//! generator's diurnal traffic over 20 routes), `BENCH_CONFIGS` (default 1,000),
//! `BENCH_SAMPLES` (timed requests per route, default 15), `BENCH_DAYS` (load only the
//! last N days of the month at the same hourly density, for profiling the raw edges),
//! `BENCH_ROUTES=0` (skip the routes; load, roll up and time the alert engine only). The
//! alert engine is timed three times in the same run: with the fixed 200k-event
//! least-recently-used raw-hour cache it had before, with the cache sized to each tick's
//! demand (the default), and with a fixed cache at 3/4 of the measured working set (the
//! cliff a fixed size falls off when the working set outgrows it). The load keeps every raw event
//! (35-day retention) so raw reads see the whole table. Without `--bench` (as `cargo test`
//! runs it) it loads 20,000 events and 20 configurations and checks every path answers.

// A benchmark reports its figures on stdout.
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use analytics_core::alert::{AlertConfigSpec, Condition, NoDataPolicy, Severity, Stat};
use analytics_core::ports::{EventSink, JobStore, MetricQuery, MetricsSource, RollupStore, Store};
use analytics_core::rollup::read::RollupReader;
use analytics_core::rollup::scheduler::{RollupScheduler, SchedulerOptions};
use analytics_core::rollup::spec::{RollupSpecs, metrics};
use analytics_core::rollup::{Dimensions, RollupQuery};
use analytics_core::testkit::services::with_database;
use analytics_core::{Granularity, MetricName, ProjectId, Threshold, TimeRange};
use analytics_server::alerting::AlertRunner;
use analytics_server::demo::{DemoOptions, commerce, traffic};
use analytics_server::{Application, JwtSettings, Role, Secret, Settings};
use analytics_store_pg::{PgStore, PgStoreOptions};
use chrono::{DateTime, Duration as Span, DurationRound, Utc};
use futures_util::future::join_all;

const SECRET: &str = "read-paths-benchmark-secret-0123456789abcdef";
const PROJECT: &str = "shop";
const ROUTES: [&str; 6] = [
    "/api/v1/products",
    "/api/v1/products/:id",
    "/api/v1/search",
    "/api/v1/cart",
    "/api/v1/checkout",
    "/api/v1/orders",
];

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(mut v: Vec<f64>, q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Writes about `events` events of the demo month ending at `end` (API traffic, and ML jobs,
/// shopping sessions, orders and inventory at the demo's proportions, ~0.38 of the traffic)
/// through the store's batch path, a day at a time, four writers at once; how many.
async fn load(store: &PgStore, events: usize, days: u32, end: DateTime<Utc>) -> (usize, Duration) {
    let started = Instant::now();
    let per_hour = ((events as f64 / (30.0 * 24.0 * 1.38)) as u32).max(1);
    let mut written = 0;
    for day in 0..days.min(30) {
        let o = DemoOptions {
            project: ProjectId::parse(PROJECT).expect("slug"),
            end: end - Span::days(i64::from(day)),
            days: 1,
            per_hour,
            seed: 7 + u64::from(day),
        };
        let mut batch = traffic(&o);
        batch.extend(commerce(&o));
        written += batch.len();
        let chunks: Vec<_> = batch.chunks(batch.len().div_ceil(4).max(1)).collect();
        let writes = chunks.into_iter().map(|part| async move {
            for c in part.chunks(2000) {
                store.write_batch(c).await.expect("write batch");
            }
        });
        join_all(writes).await;
    }
    (written, started.elapsed())
}

/// Rolls everything up (35-day retention: nothing is deleted).
async fn roll(store: &PgStore, now: DateTime<Utc>) -> Duration {
    let started = Instant::now();
    let s = RollupScheduler::new(
        RollupSpecs::defaults(),
        SchedulerOptions {
            default_retention_days: 35,
            ..SchedulerOptions::default()
        },
    );
    loop {
        let report = s.tick(store, now).await.expect("rollup tick");
        if !report.backlog {
            break;
        }
    }
    started.elapsed()
}

/// `n` varied configurations: 70% thresholds, 15% rate of change, 15% anomaly, over three
/// metrics, overall or per route, windows of 5 min, 15 min and 1 h.
fn configs(n: usize) -> Vec<AlertConfigSpec> {
    (0..n)
        .map(|i| {
            let (metric, stat) = match i % 3 {
                0 => (metrics::API_LATENCY_MS, Stat::P95),
                1 => (metrics::API_ERRORS, Stat::Avg),
                _ => (metrics::API_LATENCY_MS, Stat::Count),
            };
            let condition = match i % 20 {
                0..14 => Condition::ThresholdAbove,
                14..17 => Condition::RateOfChange,
                _ => Condition::Anomaly,
            };
            let dimensions = if i % 2 == 0 {
                Dimensions::none()
            } else {
                Dimensions::from_pairs([("route", ROUTES[i % ROUTES.len()])]).expect("dims")
            };
            AlertConfigSpec {
                project: ProjectId::parse(PROJECT).expect("slug"),
                name: format!("config {i}"),
                metric: MetricName::parse(metric).expect("metric"),
                stat,
                dimensions,
                condition,
                threshold: Threshold::new(1e9).expect("threshold"),
                window_secs: [300, 900, 3600][i % 3],
                severity: Severity::Warning,
                cooldown_secs: 0,
                channels: vec![],
                recipients: vec![],
                enabled: true,
                for_secs: 0,
                recovery_threshold: None,
                auto_resolve: true,
                no_data: NoDataPolicy::Keep,
            }
        })
        .collect()
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

/// `samples` timings of GET `url`, after `warmup` untimed requests.
async fn time_get(
    http: &reqwest::Client,
    url: &str,
    auth: &str,
    samples: usize,
    warmup: usize,
) -> Vec<f64> {
    let mut out = Vec::with_capacity(samples);
    for i in 0..samples + warmup {
        let started = Instant::now();
        let r = http
            .get(url)
            .header("authorization", auth)
            .send()
            .await
            .expect("request");
        let status = r.status();
        let body = r.bytes().await.expect("body");
        assert!(status.is_success(), "{url}: {status} {body:?}");
        if i >= warmup {
            out.push(ms(started.elapsed()));
        }
    }
    out
}

fn main() {
    let measure = std::env::args().any(|a| a == "--bench");
    let Ok(admin) = std::env::var("TEST_DATABASE_URL") else {
        eprintln!("TEST_DATABASE_URL is not set: skipping the read-path benchmark");
        return;
    };
    let events = if measure {
        env_usize("BENCH_EVENTS", 10_000_000)
    } else {
        20_000
    };
    let n_configs = if measure {
        env_usize("BENCH_CONFIGS", 1_000)
    } else {
        20
    };
    let samples = if measure {
        env_usize("BENCH_SAMPLES", 15)
    } else {
        2
    };
    let routes = !measure || env_usize("BENCH_ROUTES", 1) != 0;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let name = format!("bench_reads_{}", uuid::Uuid::new_v4().simple());
        analytics_store_pg::admin::create_database(&admin, &name)
            .await
            .expect("create database");
        let url = with_database(&admin, &name);
        let store = PgStore::connect(&url, PgStoreOptions::default())
            .await
            .expect("connect");
        let now = Utc::now();
        let end = now.duration_trunc(Span::hours(1)).expect("hour");
        let days = if measure {
            env_usize("BENCH_DAYS", 30) as u32
        } else {
            30
        };
        let (events, loaded) = load(&store, events, days, end).await;
        let rolled = roll(&store, now).await;
        println!(
            "read_paths: {events} events over {days} days loaded in {:.1} s, rolled up in {:.1} s",
            loaded.as_secs_f64(),
            rolled.as_secs_f64()
        );

        // The bench drives the alert engine itself: it holds the engine's singleton lock so
        // the server's own loop stays idle.
        let _engine_lock = store
            .try_lock(analytics_server::alerting::LOCK_NAME)
            .await
            .expect("lock")
            .expect("the engine lock is free");
        // The server, on the same database.
        let mut settings =
            Settings::new("127.0.0.1:0", &url, JwtSettings::new(Secret::new(SECRET)));
        settings.drain_delay = Duration::ZERO;
        let app = Application::build(settings).await.expect("server builds");
        let base = format!("http://127.0.0.1:{}", app.port());
        let handle = app.shutdown_handle();
        let server = tokio::spawn(app.run_until_stopped());
        let token = JwtSettings::new(Secret::new(SECRET))
            .issue("bench", &[Role::Admin], Utc::now().timestamp(), 3600)
            .expect("token");
        let auth = format!("Bearer {token}");
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client");

        let project = ProjectId::parse(PROJECT).expect("slug");
        let ranges: &[(&str, i64)] = if routes {
            &[("24h", 1), ("30d", 30)]
        } else {
            &[]
        };
        for &(range, days) in ranges {
            let window = TimeRange::new(now - Span::days(days), now).expect("window");
            // The baseline: the store's own read of the window's rollup rows (overall
            // series of the request metrics, coarsest granularity that fits).
            let granularity = if days == 1 {
                Granularity::Hour
            } else {
                Granularity::Day
            };
            let mut base_ms = Vec::new();
            for i in 0..samples + 2 {
                let started = Instant::now();
                store
                    .query_rollups(&RollupQuery {
                        project: project.clone(),
                        granularity,
                        range: window,
                        metrics: vec![
                            MetricName::parse(metrics::API_LATENCY_MS).expect("metric"),
                            MetricName::parse(metrics::API_ERRORS).expect("metric"),
                        ],
                        dimensions: Dimensions::none(),
                        dimension_names: Some(vec![]),
                    })
                    .await
                    .expect("rollup read");
                if i >= 2 {
                    base_ms.push(ms(started.elapsed()));
                }
            }
            let base_p50 = percentile(base_ms.clone(), 0.5);
            println!(
                "range={range}: store rollup read p50 {base_p50:.2} ms p95 {:.2} ms",
                percentile(base_ms, 0.95)
            );
            for route in [
                "health/overview",
                "health/api",
                "health/database",
                "health/timeseries",
                "ml/overview",
                "ml/providers",
                "business/overview",
                "business/sales",
                "business/products",
                "business/collections",
                "business/funnel",
            ] {
                let u = format!("{base}/api/v1/analytics/{route}?project={PROJECT}&range={range}");
                let t = time_get(&http, &u, &auth, samples, 2).await;
                let (p50, p95) = (percentile(t.clone(), 0.5), percentile(t, 0.95));
                println!(
                    "  {route:<21} p50 {p50:>8.2} ms  p95 {p95:>8.2} ms  ({:.1}x the store read)",
                    p50 / base_p50
                );
            }
            // The dashboard: cached (the same key again) and uncached (a new window each
            // time, so every request computes its four sections).
            let cached_url = format!(
                "{base}/api/v1/analytics/dashboard/summary?project={PROJECT}&range={range}"
            );
            let t = time_get(&http, &cached_url, &auth, samples, 2).await;
            println!(
                "  dashboard/summary     cached p50 {:>8.2} ms  p99 {:>8.2} ms",
                percentile(t.clone(), 0.5),
                percentile(t, 0.99)
            );
            let mut uncached = Vec::new();
            for i in 0..samples {
                let to = (now + Span::microseconds(i as i64 + 1)).to_rfc3339();
                let from = (now - Span::days(days) + Span::microseconds(i as i64 + 1)).to_rfc3339();
                let u = format!(
                    "{base}/api/v1/analytics/dashboard/summary?project={PROJECT}&from={}&to={}",
                    urlencode(&from),
                    urlencode(&to)
                );
                uncached.extend(time_get(&http, &u, &auth, 1, 0).await);
            }
            println!(
                "  dashboard/summary   uncached p50 {:>8.2} ms  p99 {:>8.2} ms",
                percentile(uncached.clone(), 0.5),
                percentile(uncached, 0.99)
            );
        }

        // The alert engine: one tick over `n_configs` configurations.
        let arc: Arc<dyn Store> = Arc::new(store.clone());
        for (i, spec) in configs(n_configs).iter().enumerate() {
            arc.create_config(uuid::Uuid::from_u128(i as u128 + 1), spec, "bench", now)
                .await
                .expect("create config");
        }
        let specs = Arc::new(RollupSpecs::defaults());
        let every = Duration::from_secs(60);
        let now = Utc::now();
        // Each runner continues from the watermark the previous one left, a minute a tick.
        let mut minute = 0i64;
        let mut tick = |runner: AlertRunner| {
            let first = minute;
            minute += samples as i64 + 1;
            async move {
                let mut runner = runner;
                runner
                    .run(now + Span::minutes(first))
                    .await
                    .expect("first tick");
                let mut tick_ms = Vec::new();
                for k in 1..=samples as i64 {
                    let at = now + Span::minutes(first + k);
                    let started = Instant::now();
                    let report = runner.run(at).await.expect("tick");
                    tick_ms.push(ms(started.elapsed()));
                    assert_eq!(report.steps, 1);
                }
                let raw = runner.raw_hours();
                let (hits, misses) = raw.hits_and_misses();
                let cache = format!(
                    "raw-hour cache: capacity {} events, holding {}, last tick's demand {}, \
                     {hits} hits / {misses} misses",
                    raw.capacity(),
                    raw.held(),
                    raw.round_demand()
                );
                (tick_ms, cache, raw.round_demand())
            }
        };
        let (fixed_ms, fixed_cache, _) = tick(
            AlertRunner::new(arc.clone(), specs.clone(), every)
                .with_raw_hours_limit(analytics_core::rollup::raw_hours::DEFAULT_CAPACITY_EVENTS),
        )
        .await;
        let (tick_ms, cache, demand) =
            tick(AlertRunner::new(arc.clone(), specs.clone(), every)).await;
        // A fixed cache a quarter smaller than the working set the sized runner measured.
        let (small_ms, small_cache, _) = tick(
            AlertRunner::new(arc.clone(), specs.clone(), every)
                .with_raw_hours_limit(demand * 3 / 4),
        )
        .await;
        // The bare reads the tick needs: every configuration's current value, one metric
        // read each (the previous and seasonal windows of the few rate-of-change and anomaly
        // configurations are not counted, which favours the baseline).
        let reader = RollupReader::new(arc.clone(), specs);
        let configs = arc.list_configs(None, true).await.expect("configs");
        let mut reads_ms = Vec::new();
        for _ in 0..samples.min(1) {
            let at = Utc::now();
            let started = Instant::now();
            for c in &configs {
                let w = Span::seconds(i64::from(c.spec.window_secs));
                reader
                    .metric_value(&MetricQuery {
                        project: c.spec.project.clone(),
                        metric: c.spec.metric.clone(),
                        stat: c.spec.stat,
                        dimensions: c.spec.dimensions.clone(),
                        window: TimeRange::new(at - w, at).expect("window"),
                    })
                    .await
                    .expect("metric read");
            }
            reads_ms.push(ms(started.elapsed()));
        }
        let (tick50, tick95) = (percentile(tick_ms.clone(), 0.5), percentile(tick_ms, 0.95));
        let (fixed50, fixed95) = (
            percentile(fixed_ms.clone(), 0.5),
            percentile(fixed_ms, 0.95),
        );
        let (small50, small95) = (
            percentile(small_ms.clone(), 0.5),
            percentile(small_ms, 0.95),
        );
        let reads50 = percentile(reads_ms, 0.5);
        println!(
            "alert tick over {n_configs} configs: p50 {tick50:.1} ms p95 {tick95:.1} ms; one \
             metric read per config: {reads50:.1} ms ({:.2}x); {cache}",
            tick50 / reads50
        );
        println!(
            "  before (fixed 200k-event LRU): p50 {fixed50:.1} ms p95 {fixed95:.1} ms ({:.2}x \
             the metric reads, {:.2}x the sized cache); {fixed_cache}",
            fixed50 / reads50,
            fixed50 / tick50
        );
        println!(
            "  fixed LRU at 3/4 of the working set: p50 {small50:.1} ms p95 {small95:.1} ms \
             ({:.2}x the sized cache); {small_cache}",
            small50 / tick50
        );
        handle.shutdown();
        let _ = server.await;
        if !measure {
            println!("read_paths: smoke run ok (pass --bench to measure)");
        }
    });
}
