//! Load driver: events/s through the real `analytics-server` binary over loopback HTTP
//! (API-key auth, JSON parsing and validation, the group-commit collector, the PostgreSQL
//! store with its dedup table and dirty-hour markers), against raw binary `COPY` of the
//! same rows into a table like `analytics_events` (`analytics_store_pg::baseline`), in the
//! same run; then the server's memory under sustained load.
//!
//! Needs `TEST_DATABASE_URL` (a superuser URL; databases `bench_*` are created on it):
//! `scripts/with-services cargo bench -p analytics-server --bench ingest_load`. With
//! `TEST_PG_SOCKET_DIR` set (`scripts/with-services` sets it) both the server and the
//! baseline reach PostgreSQL over its Unix socket (`BENCH_PG_TRANSPORT=tcp` forces TCP).
//!
//! `BENCH_STORE=sqlite cargo bench -p analytics-server --bench ingest_load` runs the same
//! comparison on SQLite (no services needed): the server on a fresh file with the default
//! store options, against prepared multi-row `INSERT`s of the same rows into a table with
//! only its primary key, in another file with the same pragmas
//! (`analytics_store_sqlite::baseline`), written from this process, so its SQLite CPU is
//! counted as "client" and the server's as "server".
//!
//! Knobs:
//! - `BENCH_SERVER_BIN`: another build of the server.
//! - `BENCH_COMPARE_BIN`, `BENCH_COMPARE_ENV` (SQLite mode): a second server, another build
//!   or the same one with `KEY=value` settings added, run in the same interleaved rounds
//!   and reported as a ratio.
//! - `BENCH_SQLITE_SYNCHRONOUS=normal` (SQLite mode).
//! - `BENCH_CONFIGS` (e.g. `1000x4,100x16`), `BENCH_ROUND_EVENTS` (events per round and
//!   configuration, default 40,000), `BENCH_ROUNDS` (default 3).
//! - `BENCH_SUSTAIN_SECS` (default 60; 0 skips it), `BENCH_CONTROLS=0` (skips the
//!   ingest-controls rounds).
//! - `BENCH_TIME_ORDER=shuffled`: events stamped at random moments of the last 5 s instead
//!   of 30 minutes newest first (see `TimeOrder`).
//!
//! Each configuration
//! (batch size x concurrent clients) runs interleaved rounds, alternating which writer goes
//! first, and compares the medians. Request bodies and `COPY` data are encoded before the
//! clock starts, so neither side pays for producing its input. Without `--bench` (as
//! `cargo test` runs it) it only smoke-tests both paths on a few rows.

// A benchmark reports its figures on stdout.
#![allow(clippy::print_stdout)]

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use analytics_core::event::{AgeLimits, EventInput, EventLimits, IngestContext};
use analytics_core::testkit::fixtures::Lcg;
use analytics_core::testkit::services::with_database;
use analytics_core::{Event, ProjectId};
use analytics_store_pg::baseline::{CopyEncoder, RawCopy};
use analytics_store_sqlite::baseline::RawInsert;
use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use serde_json::{Value, json};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, SqliteConnection};

const BUILT_SERVER: &str = env!("CARGO_BIN_EXE_analytics-server");

/// The server binary: this build's, or `BENCH_SERVER_BIN` (another build of it, to compare
/// two builds against the same baseline).
fn server_bin() -> String {
    std::env::var("BENCH_SERVER_BIN").unwrap_or_else(|_| BUILT_SERVER.to_owned())
}
const PROJECT: &str = "shop";
const JWT_SECRET: &str = "bench-secret-bench-secret-bench-secret";

const ROUTES: [&str; 6] = [
    "/api/v1/products/:id",
    "/api/v1/products",
    "/api/v1/orders",
    "/api/v1/cart",
    "/api/v1/checkout",
    "/api/v1/search",
];
const STATUSES: [u16; 6] = [200, 200, 200, 201, 404, 500];
const PIPELINES: [&str; 3] = ["3d", "descriptions", "assets"];
const PROVIDERS: [&str; 4] = ["replicate", "tripo", "huggingface", "gemini"];
const COLLECTIONS: [&str; 3] = ["black-rose", "love-hurts", "signature"];

/// One event of a realistic mix (70% requests, 10% ML jobs, 15% funnel steps, 5% custom),
/// as a client would send it.
fn event_json(id: uuid::Uuid, at: DateTime<Utc>, rng: &mut Lcg) -> Value {
    let user = format!("u{}", rng.below(5_000));
    let session = format!("s{}", rng.below(20_000));
    let (kind, payload) = match rng.below(100) {
        0..70 => (
            "api_request",
            json!({
                "method": if rng.below(4) == 0 { "POST" } else { "GET" },
                "route": ROUTES[rng.below(ROUTES.len() as u64) as usize],
                "status": STATUSES[rng.below(6) as usize],
                "latency_ms": 5.0 + rng.below(400) as f64 / 3.0,
            }),
        ),
        70..80 => (
            "ml_job",
            json!({
                "pipeline": PIPELINES[rng.below(3) as usize],
                "provider": PROVIDERS[rng.below(4) as usize],
                "status": if rng.below(10) == 0 { "failed" } else { "succeeded" },
                "duration_ms": 500.0 + rng.below(60_000) as f64,
                "cost_usd": rng.below(300) as f64 / 1000.0,
            }),
        ),
        80..95 => (
            ["page_view", "product_view", "cart_add", "checkout_start"][rng.below(4) as usize],
            json!({
                "path": "/collections/black-rose",
                "product_id": format!("p{}", rng.below(300)),
                "collection": COLLECTIONS[rng.below(3) as usize],
            }),
        ),
        _ => (
            "custom.newsletter_signup",
            json!({"source": "footer", "variant": rng.below(3)}),
        ),
    };
    json!({
        "id": id.to_string(),
        "kind": kind,
        "occurred_at": at.to_rfc3339(),
        "user_id": user,
        "session_id": session,
        "source": "web",
        "payload": payload,
        "properties": {"app_version": "4.2.0", "region": "eu-west-1"},
    })
}

/// The same events as the server stores them (for the `COPY` baseline).
fn parse_events(values: &[Value], now: DateTime<Utc>) -> Vec<Event> {
    let project = ProjectId::parse(PROJECT).unwrap_or_else(|e| panic!("{e}"));
    let limits = EventLimits::default();
    let ctx = IngestContext {
        now,
        default_project: &project,
        fixed_project: true,
        request_correlation_id: None,
        limits: &limits,
        age_limits: &AgeLimits::default(),
    };
    values
        .iter()
        .map(|v| {
            let input: EventInput =
                serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{e}"));
            Event::parse(input, &ctx).unwrap_or_else(|e| panic!("invalid bench event: {e:?}"))
        })
        .collect()
}

/// One round's input, encoded both ways before any clock starts.
struct Workload {
    events: usize,
    bodies: Vec<Vec<u8>>,
    /// PostgreSQL: the batches as binary `COPY` data.
    copies: Vec<Vec<u8>>,
    /// SQLite: the batches as parsed events (the baseline encodes them as the store does).
    batches: Vec<Vec<Event>>,
}

fn workload(
    n: usize,
    batch: usize,
    seq: &AtomicUsize,
    rng: &mut Lcg,
    backend: Backend,
) -> Workload {
    let order = TimeOrder::from_env();
    let now = Utc::now();
    let values: Vec<Value> = (0..n)
        .map(|i| {
            let id = uuid::Uuid::from_u128(
                (0xBE_u128 << 120) | seq.fetch_add(1, Ordering::Relaxed) as u128,
            );
            let back_ms = match order {
                TimeOrder::Backfill => 1 + (i as i64 * 37) % 1_800_000,
                TimeOrder::Shuffled => 1 + rng.below(5_000) as i64,
            };
            let at = now - chrono::Duration::milliseconds(back_ms);
            event_json(id, at, rng)
        })
        .collect();
    let events = parse_events(&values, now);
    let bodies = values
        .chunks(batch)
        .map(|c| serde_json::to_vec(&json!({ "events": c })).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    if backend == Backend::Sqlite {
        return Workload {
            events: n,
            bodies,
            copies: Vec::new(),
            batches: events.chunks(batch).map(<[Event]>::to_vec).collect(),
        };
    }
    let copies = events
        .chunks(batch)
        .map(|c| {
            let mut enc = CopyEncoder::new();
            for e in c {
                enc.push(e).unwrap_or_else(|e| panic!("{e}"));
            }
            enc.finish()
        })
        .collect();
    Workload {
        events: n,
        bodies,
        copies,
        batches: Vec::new(),
    }
}

/// When the generated events happened, which decides where each index takes their keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimeOrder {
    /// Spread over the 30 minutes before, newest first, 37 ms apart (the default, and the
    /// workload of every figure before `BENCH_TIME_ORDER` existed): one batch's events are
    /// neighbours in every time-keyed index.
    Backfill,
    /// Each at a random moment of the 5 s before its round's workload was made
    /// (`BENCH_TIME_ORDER=shuffled`): every event of a batch lands on another page of each
    /// time-keyed index, the worst case for a b-tree.
    Shuffled,
}

impl TimeOrder {
    fn from_env() -> Self {
        match std::env::var("BENCH_TIME_ORDER").as_deref() {
            Ok("backfill") | Err(_) => Self::Backfill,
            Ok("shuffled") => Self::Shuffled,
            Ok(other) => panic!("BENCH_TIME_ORDER must be backfill or shuffled, not {other:?}"),
        }
    }
}

/// Which store the server runs on, and so which baseline it is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    /// PostgreSQL; baseline: binary `COPY` (`analytics_store_pg::baseline`).
    Postgres,
    /// A SQLite file; baseline: prepared multi-row `INSERT`s into a primary-key-only table
    /// in another file with the store's pragmas (`analytics_store_sqlite::baseline`),
    /// written from this process.
    Sqlite,
}

/// The baseline writer of a backend.
enum Raw {
    Copy(RawCopy),
    Insert(RawInsert),
}

/// The real server binary, its address, and a thread draining its log.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(db_url: &str) -> Self {
        Self::start_with(&server_bin(), &[], db_url)
    }

    /// `bin` with `env` added to the usual environment.
    fn start_with(bin: &str, env: &[(String, String)], db_url: &str) -> Self {
        let mut child = Command::new(bin)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("DATABASE_URL", db_url)
            .env("ANALYTICS_BIND", "127.0.0.1:0")
            .env("ANALYTICS_JWT_SECRET", JWT_SECRET)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {bin}: {e}"));
        let stderr = child.stderr.take().unwrap_or_else(|| panic!("no stderr"));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                match line.split("listening on http://").nth(1) {
                    Some(rest) => {
                        let addr = rest.split_whitespace().next().unwrap_or("").to_owned();
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(addr);
                        }
                    }
                    None if line.contains("ERROR") || line.contains("WARN") => {
                        eprintln!("server: {line}");
                    }
                    None => {}
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|e| panic!("the server did not report its address: {e}"));
        Self {
            child,
            base: format!("http://{addr}"),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// Creates an ingest key with the binary's own CLI, as an operator would.
fn create_api_key(db_url: &str) -> String {
    create_api_key_with(&server_bin(), db_url)
}

/// [`create_api_key`] with the CLI of the build `bin`.
fn create_api_key_with(bin: &str, db_url: &str) -> String {
    let out = Command::new(bin)
        .args(["api-key", "create", "--project", PROJECT, "--name", "bench"])
        .env("DATABASE_URL", db_url)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap_or_else(|e| panic!("api-key create: {e}"));
    assert!(
        out.status.success(),
        "api-key create failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Resident and peak resident memory of a process, in KiB.
fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Samples a process's RSS every `every` until dropped.
struct RssSampler {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<(Duration, u64)>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    fn start(pid: u32, every: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let (s, v) = (stop.clone(), samples.clone());
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            while !s.load(Ordering::Relaxed) {
                if let Some((rss, _)) = memory_kib(pid) {
                    v.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((started.elapsed(), rss));
                }
                std::thread::sleep(every);
            }
        });
        Self {
            stop,
            samples,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> Vec<(Duration, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        std::mem::take(&mut *self.samples.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// CPU seconds (user + system) a process has used, from `/proc/PID/stat` (clock ticks of
/// 1/100 s, Linux's `USER_HZ`).
fn cpu_secs(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the parenthesised command: state is field 3, utime 14, stime 15.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU seconds used so far by the server, by every `postgres` process, and by this
/// process (the clients).
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    server: f64,
    postgres: f64,
    client: f64,
}

impl Cpu {
    fn now(server_pid: u32) -> Self {
        let mut postgres = 0.0;
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for entry in dir.flatten() {
                let name = entry.file_name();
                let Some(pid) = name
                    .to_str()
                    .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
                else {
                    continue;
                };
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                if comm.trim() == "postgres" {
                    postgres += cpu_secs(pid);
                }
            }
        }
        Self {
            server: cpu_secs(&server_pid.to_string()),
            postgres,
            client: cpu_secs("self"),
        }
    }

    fn since(self, earlier: Self) -> Self {
        Self {
            server: self.server - earlier.server,
            postgres: self.postgres - earlier.postgres,
            client: self.client - earlier.client,
        }
    }

    fn add(self, other: Self) -> Self {
        Self {
            server: self.server + other.server,
            postgres: self.postgres + other.postgres,
            client: self.client + other.client,
        }
    }

    /// Microseconds of CPU per event, as `server/postgres/client`.
    fn per_event(self, events: usize) -> String {
        let us = |s: f64| s * 1e6 / events.max(1) as f64;
        format!(
            "server {:.0} + postgres {:.0} + client {:.0} us/event",
            us(self.server),
            us(self.postgres),
            us(self.client)
        )
    }
}

fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(64)
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Posts every body from `clients` concurrent tasks; returns the elapsed time. Every
/// request must be answered 202 with all its events accepted.
async fn run_http(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    work: &Workload,
    clients: usize,
) -> Duration {
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    let url = format!("{base}/api/v1/analytics/events");
    let tasks = (0..clients).map(|_| async {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(body) = work.bodies.get(i) else {
                return;
            };
            let resp = http
                .post(&url)
                .header("x-api-key", key)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .unwrap_or_else(|e| panic!("POST: {e}"));
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            assert_eq!(status.as_u16(), 202, "ingest answered {status}: {text}");
            let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(v["rejected"], 0, "rejected events: {text:.500}");
            assert_eq!(v["duplicates"], 0, "duplicates: {text:.500}");
        }
    });
    join_all(tasks).await;
    started.elapsed()
}

/// Writes every batch through the baseline from `clients` concurrent tasks (`COPY`s from
/// as many connections, or SQLite transactions queued on its one writer); returns the
/// elapsed time.
async fn run_copy(raw: &Raw, work: &Workload, clients: usize) -> Duration {
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    let tasks = (0..clients).map(|_| async {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            match raw {
                Raw::Copy(raw) => {
                    let Some(data) = work.copies.get(i) else {
                        return;
                    };
                    raw.write_encoded(data.clone())
                        .await
                        .unwrap_or_else(|e| panic!("COPY: {e}"));
                }
                Raw::Insert(raw) => {
                    let Some(batch) = work.batches.get(i) else {
                        return;
                    };
                    raw.write(batch)
                        .await
                        .unwrap_or_else(|e| panic!("INSERT: {e}"));
                }
            }
        }
    });
    join_all(tasks).await;
    started.elapsed()
}

async fn create_database(admin: &str, prefix: &str) -> String {
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    analytics_store_pg::admin::create_database(admin, &name)
        .await
        .unwrap_or_else(|e| panic!("create database {name}: {e}"));
    with_database(admin, &name)
}

/// The admin URL, moved onto the Unix socket when the cluster has one (and TCP is not
/// forced): `postgres://user@localhost/db?host=DIR&port=P`.
fn admin_url() -> Option<(String, &'static str)> {
    let tcp = std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())?;
    let want_tcp = std::env::var("BENCH_PG_TRANSPORT").is_ok_and(|t| t == "tcp");
    let socket = std::env::var("TEST_PG_SOCKET_DIR")
        .ok()
        .filter(|d| !d.is_empty());
    match socket {
        Some(dir) if !want_tcp => {
            // postgres://user@host:port/db -> postgres://user@localhost/db?host=dir&port=port
            let rest = tcp.split_once("://").map_or(tcp.as_str(), |(_, r)| r);
            let (authority, path) = rest.split_once('/').unwrap_or((rest, "postgres"));
            let (user, hostport) = authority.split_once('@').unwrap_or(("postgres", authority));
            let port = hostport.rsplit_once(':').map_or("5432", |(_, p)| p);
            let db = path.split('?').next().unwrap_or("postgres");
            Some((
                format!("postgres://{user}@localhost/{db}?host={dir}&port={port}"),
                "unix socket",
            ))
        }
        _ => Some((tcp, "tcp loopback")),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Rows in the server's events table.
async fn stored(url: &str) -> i64 {
    // The application's events: the server also records its own store-call timings, in
    // the internal project.
    const COUNT: &str =
        "SELECT count(*) FROM analytics_events WHERE project <> 'analytics-internal'";
    if url.starts_with("sqlite:") {
        let mut conn = SqliteConnection::connect(url)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        return sqlx::query_scalar(COUNT)
            .fetch_one(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let mut conn = PgConnection::connect(url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sqlx::query_scalar(COUNT)
        .fetch_one(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A second server on its own fresh SQLite file (`BENCH_COMPARE_BIN`, `BENCH_COMPARE_ENV`),
/// run in the same interleaved rounds as the first, so two builds or two settings are
/// compared under the same drift of the host's speed.
struct Other {
    server: Server,
    server_url: String,
    key: String,
    label: String,
}

struct Setup {
    backend: Backend,
    server: Server,
    other: Option<Other>,
    server_url: String,
    key: String,
    raw: Raw,
    http: reqwest::Client,
    /// SQLite: the directory holding both database files, removed on drop.
    _dir: Option<tempfile::TempDir>,
}

/// The server on a fresh SQLite file (default store options) and the baseline on another
/// file with the same options. `BENCH_SQLITE_SYNCHRONOUS=normal` runs both with
/// `synchronous=NORMAL` (the server through its `DATABASE_URL`).
async fn setup_sqlite() -> Setup {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("server.db");
    let normal = std::env::var("BENCH_SQLITE_SYNCHRONOUS").is_ok_and(|v| v == "normal");
    let sqlite_url = |path: &std::path::Path| {
        format!(
            "sqlite://{}?mode=rwc{}",
            path.display(),
            if normal { "&synchronous=normal" } else { "" }
        )
    };
    let server_url = sqlite_url(&path);
    let raw_path = dir.path().join("baseline.db");
    let raw_options = analytics_store_sqlite::SqliteStoreOptions {
        synchronous: if normal {
            analytics_store_sqlite::Synchronous::Normal
        } else {
            analytics_store_sqlite::Synchronous::Full
        },
        ..Default::default()
    };
    let raw = RawInsert::create(&raw_path.display().to_string(), raw_options)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let key = create_api_key(&server_url);
    let server = Server::start(&server_url);
    let compare_bin = std::env::var("BENCH_COMPARE_BIN").ok();
    let compare_env: Vec<(String, String)> = std::env::var("BENCH_COMPARE_ENV")
        .unwrap_or_default()
        .split_whitespace()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => (k.to_owned(), v.to_owned()),
            _ => panic!("BENCH_COMPARE_ENV: {kv:?} is not KEY=value"),
        })
        .collect();
    let other = (compare_bin.is_some() || !compare_env.is_empty()).then(|| {
        let bin = compare_bin.unwrap_or_else(server_bin);
        let url = sqlite_url(&dir.path().join("other.db"));
        let key = create_api_key_with(&bin, &url);
        let env_text: Vec<String> = compare_env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        Other {
            server: Server::start_with(&bin, &compare_env, &url),
            server_url: url,
            key,
            label: format!("{bin} {}", env_text.join(" ")).trim().to_owned(),
        }
    });
    Setup {
        backend: Backend::Sqlite,
        server,
        other,
        server_url,
        key,
        raw: Raw::Insert(raw),
        http: http_client(),
        _dir: Some(dir),
    }
}

async fn setup(admin: &str, max_clients: usize) -> Setup {
    let server_url = create_database(admin, "bench_http").await;
    let raw_url = create_database(admin, "bench_raw").await;
    // The baseline table needs the store's schema (`LIKE analytics_events`).
    let schema = analytics_store_pg::PgStore::connect(&raw_url, Default::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    schema.close().await;
    let pool = PgPoolOptions::new()
        .max_connections(u32::try_from(max_clients).unwrap_or(16))
        .connect(&raw_url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let today = Utc::now().date_naive();
    let days: Vec<_> = [today.pred_opt(), Some(today), today.succ_opt()]
        .into_iter()
        .flatten()
        .collect();
    let raw = RawCopy::create(pool, &days)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let key = create_api_key(&server_url);
    let server = Server::start(&server_url);
    Setup {
        backend: Backend::Postgres,
        server,
        other: None,
        server_url,
        key,
        raw: Raw::Copy(raw),
        http: http_client(),
        _dir: None,
    }
}

/// Interleaved rounds of one configuration; returns (http events/s, copy events/s).
async fn compare(
    s: &Setup,
    batch: usize,
    clients: usize,
    rounds: usize,
    per_round: usize,
    seq: &AtomicUsize,
    rng: &mut Lcg,
) -> (f64, f64) {
    let (mut http_rates, mut copy_rates) = (Vec::new(), Vec::new());
    let (mut http_cpu, mut copy_cpu) = (Cpu::default(), Cpu::default());
    let (mut other_rates, mut other_cpu) = (Vec::new(), Cpu::default());
    let pid = s.server.pid();
    // 0: the server, 1: the baseline, 2: the other server; each round rotates who goes first.
    let writers: Vec<usize> = if s.other.is_some() {
        vec![0, 1, 2]
    } else {
        vec![0, 1]
    };
    for round in 0..rounds {
        let work = workload(per_round, batch, seq, rng, s.backend);
        let mut order = writers.clone();
        order.rotate_left(round % writers.len());
        for which in order {
            let pid = match (&s.other, which) {
                (Some(o), 2) => o.server.pid(),
                _ => pid,
            };
            let before = Cpu::now(pid);
            let took = match (&s.other, which) {
                (_, 0) => run_http(&s.http, &s.server.base, &s.key, &work, clients).await,
                (Some(o), 2) => run_http(&s.http, &o.server.base, &o.key, &work, clients).await,
                _ => run_copy(&s.raw, &work, clients).await,
            };
            let used = Cpu::now(pid).since(before);
            let rate = work.events as f64 / took.as_secs_f64();
            match which {
                0 => {
                    http_rates.push(rate);
                    http_cpu = http_cpu.add(used);
                }
                2 => {
                    other_rates.push(rate);
                    other_cpu = other_cpu.add(used);
                }
                _ => {
                    copy_rates.push(rate);
                    copy_cpu = copy_cpu.add(used);
                }
            }
        }
    }
    let events = rounds * per_round;
    println!(
        "  cpu batch={batch} clients={clients}: HTTP {}; baseline {}",
        http_cpu.per_event(events),
        copy_cpu.per_event(events)
    );
    if let Some(o) = &s.other {
        let ratios: Vec<String> = other_rates
            .iter()
            .zip(&http_rates)
            .map(|(o, h)| format!("{:.2}", o / h))
            .collect();
        println!(
            "summary compare batch={batch} clients={clients}: {} {:.0} events/s, {:.2}x the \
             first server (per round: {}); cpu {}",
            o.label,
            median(other_rates.clone()),
            median(other_rates) / median(http_rates.clone()),
            ratios.join(" "),
            other_cpu.per_event(events)
        );
    }
    (median(http_rates), median(copy_rates))
}

/// Ingest controls under load: the same workload with the project's settings switched
/// between no controls (the baseline), random sampling at 0.1, and rate limits high enough
/// never to refuse (their cost alone), in interleaved rounds; then the in-process limiter's
/// own cost per check against the baseline's time per request.
async fn controls(s: &Setup, rounds: usize, per_round: usize, seq: &AtomicUsize, rng: &mut Lcg) {
    let jwt = analytics_server::JwtSettings::new(analytics_server::Secret::new(JWT_SECRET));
    let token = jwt
        .issue(
            "bench",
            &[analytics_server::Role::Admin],
            Utc::now().timestamp(),
            3600,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let variants = [
        (
            "no sampling, no limits",
            json!({"sampling": {"strategy": "none"}, "rate_limit": {"per_key_per_second": null, "per_ip_per_minute": null}}),
        ),
        (
            "random sampling at 0.1",
            json!({"sampling": {"strategy": "random", "rate": 0.1}, "rate_limit": {"per_key_per_second": null, "per_ip_per_minute": null}}),
        ),
        (
            "rate limits (never reached)",
            json!({"sampling": {"strategy": "none"}, "rate_limit": {"per_key_per_second": 1_000_000_000u32, "per_ip_per_minute": 1_000_000_000u32}}),
        ),
    ];
    let (batch, clients) = (100, 4);
    let mut took = vec![Vec::new(); variants.len()];
    for round in 0..rounds {
        for k in 0..variants.len() {
            let v = (k + round) % variants.len();
            let r = s
                .http
                .patch(format!(
                    "{}/api/v1/analytics/projects/{PROJECT}",
                    s.server.base
                ))
                .bearer_auth(&token)
                .json(&json!({ "settings": variants[v].1 }))
                .send()
                .await
                .unwrap_or_else(|e| panic!("PATCH: {e}"));
            assert_eq!(
                r.status().as_u16(),
                200,
                "{}",
                r.text().await.unwrap_or_default()
            );
            let work = workload(per_round, batch, seq, rng, s.backend);
            took[v].push(run_http(&s.http, &s.server.base, &s.key, &work, clients).await);
        }
    }
    let requests = per_round.div_ceil(batch);
    let rate = |t: &[Duration]| {
        median(
            t.iter()
                .map(|d| per_round as f64 / d.as_secs_f64())
                .collect(),
        )
    };
    let per_request = |t: &[Duration]| {
        median(
            t.iter()
                .map(|d| d.as_secs_f64() * clients as f64 / requests as f64)
                .collect(),
        )
    };
    let base = rate(&took[0]);
    for (i, (name, _)) in variants.iter().enumerate() {
        println!(
            "summary controls batch={batch} clients={clients} rounds={rounds}x{per_round}: \
             {name}: {:.0} events/s offered ({:.2}x the baseline), {:.0} us per request",
            rate(&took[i]),
            rate(&took[i]) / base,
            per_request(&took[i]) * 1e6
        );
    }
    // The limiter alone, in-process: two checks per request (key and IP), as ingest makes.
    let limiter = analytics_server::rate_limit::IngestLimiter::new(
        None,
        analytics_server::metrics::Metrics::new().rate_limit_metrics(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let n = 200_000u32;
    let started = Instant::now();
    for i in 0..n {
        let key = format!("{PROJECT}|key:{}", i % 64);
        let _ = limiter
            .check(
                analytics_server::rate_limit::LimitKind::Key,
                &key,
                1_000_000_000,
            )
            .await;
    }
    let per_check = started.elapsed().as_secs_f64() / f64::from(n);
    println!(
        "summary controls: in-process limiter {:.2} us per check, 2 checks per request = \
         {:.3}% of a baseline request ({:.0} us)",
        per_check * 1e6,
        200.0 * per_check / per_request(&took[0]),
        per_request(&took[0]) * 1e6
    );
}

/// Sustained load: `clients` tasks post batches of `batch` fresh events for `secs`;
/// RSS is sampled every 250 ms.
async fn sustain(s: &Setup, batch: usize, clients: usize, secs: u64, seq: &AtomicUsize) {
    let sampler = RssSampler::start(s.server.pid(), Duration::from_millis(250));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let sent = AtomicUsize::new(0);
    let url = format!("{}/api/v1/analytics/events", s.server.base);
    let started = Instant::now();
    let tasks = (0..clients).map(|c| {
        let (url, sent) = (&url, &sent);
        async move {
            let mut rng = Lcg(1000 + c as u64);
            while Instant::now() < deadline {
                let now = Utc::now();
                let values: Vec<Value> = (0..batch)
                    .map(|_| {
                        let id = uuid::Uuid::from_u128(
                            (0x5E_u128 << 120) | seq.fetch_add(1, Ordering::Relaxed) as u128,
                        );
                        event_json(id, now, &mut rng)
                    })
                    .collect();
                let body = serde_json::to_vec(&json!({ "events": values }))
                    .unwrap_or_else(|e| panic!("{e}"));
                let resp = s
                    .http
                    .post(url)
                    .header("x-api-key", &s.key)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("POST: {e}"));
                assert_eq!(resp.status().as_u16(), 202);
                let _ = resp.bytes().await;
                sent.fetch_add(batch, Ordering::Relaxed);
            }
        }
    });
    join_all(tasks).await;
    let elapsed = started.elapsed();
    let samples = sampler.finish();
    let total = sent.load(Ordering::Relaxed);
    let window = |from: f64, to: f64| -> f64 {
        let v: Vec<f64> = samples
            .iter()
            .filter(|(t, _)| {
                let f = t.as_secs_f64() / elapsed.as_secs_f64();
                f >= from && f < to
            })
            .map(|(_, kib)| mib(*kib))
            .collect();
        median(v)
    };
    let (early, late) = (window(0.1, 0.2), window(0.9, 1.01));
    let peak = samples.iter().map(|(_, k)| *k).max().unwrap_or(0);
    println!(
        "summary sustained batch={batch} clients={clients} for {:.0} s: {total} events, {:.0} \
         events/s; server RSS median {early:.1} MiB at 10-20% of the run, {late:.1} MiB at \
         90-100% ({:.2}x), peak {:.1} MiB",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        late / early,
        mib(peak),
    );
    for (t, kib) in samples.iter().step_by(samples.len().max(10) / 10) {
        println!("  rss t={:>5.1}s {:.1} MiB", t.as_secs_f64(), mib(*kib));
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let measure = std::env::args().any(|a| a == "--bench");
    let backend = if std::env::var("BENCH_STORE").is_ok_and(|v| v == "sqlite") {
        Backend::Sqlite
    } else {
        Backend::Postgres
    };
    let pg = admin_url();
    if backend == Backend::Postgres && pg.is_none() {
        eprintln!(
            "TEST_DATABASE_URL is not set: skipping the PostgreSQL ingest load benchmark \
             (BENCH_STORE=sqlite runs it on SQLite)"
        );
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let seq = AtomicUsize::new(0);
    let mut rng = Lcg(42);
    rt.block_on(async {
        let configs: Vec<(usize, usize)> = match std::env::var("BENCH_CONFIGS") {
            // `BENCH_CONFIGS=1000x4,100x16`
            Ok(list) if measure => list
                .split(',')
                .filter_map(|c| {
                    let (b, n) = c.trim().split_once('x')?;
                    Some((b.parse().ok()?, n.parse().ok()?))
                })
                .collect(),
            _ if measure => vec![(100, 4), (100, 16), (1000, 4), (1000, 16)],
            _ => vec![(10, 2)],
        };
        let max_clients = configs.iter().map(|c| c.1).max().unwrap_or(1);
        let (s, what) = match (&pg, backend) {
            (Some((admin, transport)), Backend::Postgres) => (
                setup(admin, max_clients).await,
                format!("PostgreSQL over {transport}"),
            ),
            _ => (setup_sqlite().await, "SQLite (a fresh file)".to_owned()),
        };
        let baseline = match backend {
            Backend::Postgres => "raw COPY",
            Backend::Sqlite => "raw INSERT",
        };
        let (rss0, _) = memory_kib(s.server.pid()).unwrap_or_default();
        println!(
            "ingest_load: {what}; server {}; RSS at start {:.1} MiB",
            server_bin(),
            mib(rss0)
        );
        let (rounds, per_round) = if measure {
            (
                env_usize("BENCH_ROUNDS", 3),
                env_usize("BENCH_ROUND_EVENTS", 40_000),
            )
        } else {
            (2, 100)
        };
        let mut expected = 0i64;
        for &(batch, clients) in &configs {
            let (http, copy) = compare(&s, batch, clients, rounds, per_round, &seq, &mut rng).await;
            expected += (rounds * per_round) as i64;
            println!(
                "summary batch={batch} clients={clients} rounds={rounds}x{per_round}: HTTP \
                 ingest {http:.0} events/s; {baseline} {copy:.0} events/s ({:.2}x)",
                http / copy
            );
        }
        assert_eq!(
            stored(&s.server_url).await,
            expected,
            "every acknowledged event is stored once"
        );
        if let Some(o) = &s.other {
            assert_eq!(
                stored(&o.server_url).await,
                expected,
                "every event acknowledged by the other server is stored once"
            );
        }
        let (rss, hwm) = memory_kib(s.server.pid()).unwrap_or_default();
        println!(
            "server RSS after the comparisons {:.1} MiB (peak {:.1} MiB)",
            mib(rss),
            mib(hwm)
        );
        let skip_controls = measure && std::env::var("BENCH_CONTROLS").is_ok_and(|v| v == "0");
        if !skip_controls {
            controls(&s, rounds, per_round, &seq, &mut rng).await;
        }
        if measure {
            let secs = env_usize("BENCH_SUSTAIN_SECS", 60) as u64;
            if secs > 0 {
                sustain(&s, 100, 8, secs, &seq).await;
            }
        } else {
            println!("ingest_load: smoke run ok (pass --bench to measure)");
        }
        if let Some(o) = s.other {
            o.server.stop();
        }
        s.server.stop();
    });
}
