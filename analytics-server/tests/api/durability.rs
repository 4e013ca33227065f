//! Durability of acknowledged events with the real binary, over SQLite and over PostgreSQL:
//! `kill -9` at random moments under load, and SIGTERM under load (exit 0, nothing
//! acknowledged is lost).

use std::collections::HashSet;
use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use analytics_server::{JwtSettings, Role, Secret};
use chrono::Utc;
use serde_json::{Value, json};

use crate::helpers::{SECRET, fresh_postgres_url};

/// The real binary, running.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) base: String,
}

fn start(db_url: &str) -> Server {
    start_with_env(db_url, &[])
}

/// Starts the binary on `db_url` on a free loopback port, with extra environment variables,
/// and waits until it reports its address.
pub(crate) fn start_with_env(db_url: &str, env: &[(&str, &str)]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_analytics-server"))
        .env("DATABASE_URL", db_url)
        .env("ANALYTICS_BIND", "127.0.0.1:0")
        .env("ANALYTICS_JWT_SECRET", SECRET)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary starts");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening on http://").nth(1) {
                let addr = rest.split_whitespace().next().unwrap_or("").to_owned();
                if let Some(tx) = tx.take() {
                    let _ = tx.send(addr);
                }
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("server reports its address");
    Server {
        child,
        base: format!("http://{addr}"),
    }
}

fn token() -> String {
    let t = JwtSettings::new(Secret::new(SECRET))
        .issue("durability", &[Role::Admin], Utc::now().timestamp(), 3600)
        .unwrap();
    format!("Bearer {t}")
}

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// What the load clients saw, shared between them.
#[derive(Debug, Default)]
struct Seen {
    /// Ids of events the server acknowledged (2xx).
    acked: HashSet<String>,
    /// Requests sent before the kill that ended in a transport error (no answer): they
    /// were in flight when the server died.
    cut_by_kill: usize,
    /// Answers that were neither 2xx nor 503, as `status: body`.
    unexpected: Vec<String>,
}

/// Sends batches with unique ids until a request fails; records acknowledged ids, and
/// counts a request that fails without an answer as cut by the kill when it was sent before
/// `killed_at` was set.
async fn load(
    http: reqwest::Client,
    base: String,
    client_no: u128,
    round: u128,
    seen: Arc<Mutex<Seen>>,
    killed_at: Arc<Mutex<Option<Instant>>>,
) {
    let auth = token();
    for b in 0u128.. {
        let ids: Vec<String> = (0..10u128)
            .map(|i| {
                uuid::Uuid::from_u128((round << 64) | (client_no << 32) | (b << 8) | i).to_string()
            })
            .collect();
        let events: Vec<Value> = ids
            .iter()
            .map(|id| json!({"id": id, "kind": "page_view", "payload": {"path": "/d"}}))
            .collect();
        let sent_at = Instant::now();
        let sent = http
            .post(format!("{base}/api/v1/analytics/events"))
            .header("authorization", &auth)
            .json(&json!({ "events": events }))
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {
                seen.lock().unwrap().acked.extend(ids);
            }
            Ok(r) => {
                let status = r.status();
                if status != reqwest::StatusCode::SERVICE_UNAVAILABLE {
                    let body = r.text().await.unwrap_or_default();
                    seen.lock()
                        .unwrap()
                        .unexpected
                        .push(format!("{status}: {body}"));
                }
                return;
            }
            Err(_) => {
                let killed = *killed_at.lock().unwrap();
                if killed.is_some_and(|k| sent_at < k) {
                    seen.lock().unwrap().cut_by_kill += 1;
                }
                return;
            }
        }
    }
}

async fn stored_ids(http: &reqwest::Client, base: &str) -> HashSet<String> {
    let mut ids = HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{base}/api/v1/analytics/events?limit=1000");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let body: Value = http
            .get(url)
            .header("authorization", token())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for e in body["events"].as_array().unwrap() {
            ids.insert(e["id"].as_str().unwrap().to_owned());
        }
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return ids,
        }
    }
}

fn pseudo_random_ms(seed: u64) -> u64 {
    let nanos = u64::from(Utc::now().timestamp_subsec_nanos());
    150 + (nanos ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)) % 400
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_events_survive_kill_9_and_sigterm_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("durable.db").display());
    acknowledged_events_survive_kill_9_and_sigterm(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_events_survive_kill_9_and_sigterm_on_postgres() {
    let Some(url) = fresh_postgres_url().await else {
        return;
    };
    acknowledged_events_survive_kill_9_and_sigterm(&url).await;
}

/// Five rounds of: start the binary on `url`, 4 clients ingesting, SIGKILL at a random
/// moment; then SIGTERM under load (exit 0); then every acknowledged id must be stored.
async fn acknowledged_events_survive_kill_9_and_sigterm(url: &str) {
    let http = client();
    let seen = Arc::new(Mutex::new(Seen::default()));

    for round in 0..5u128 {
        let mut server = start(url);
        let killed_at = Arc::new(Mutex::new(None));
        let clients: Vec<_> = (0..4)
            .map(|c| {
                tokio::spawn(load(
                    http.clone(),
                    server.base.clone(),
                    c,
                    round,
                    seen.clone(),
                    killed_at.clone(),
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(pseudo_random_ms(round as u64))).await;
        *killed_at.lock().unwrap() = Some(Instant::now());
        server.child.kill().unwrap(); // SIGKILL
        server.child.wait().unwrap();
        for c in clients {
            c.await.unwrap();
        }
    }

    // SIGTERM under load: exit 0, every acknowledged event stored.
    let mut server = start(url);
    let never = Arc::new(Mutex::new(None));
    let clients: Vec<_> = (0..4)
        .map(|c| {
            tokio::spawn(load(
                http.clone(),
                server.base.clone(),
                c,
                99,
                seen.clone(),
                never.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let term = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = tokio::task::spawn_blocking(move || server.child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "SIGTERM exit status {status:?}");
    for c in clients {
        c.await.unwrap();
    }

    let mut server = start(url);
    let stored = stored_ids(&http, &server.base).await;
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let seen = seen.lock().unwrap();
    let backend = url.split(':').next().unwrap_or_default();
    eprintln!(
        "{backend}: {} events acknowledged, {} stored, {} requests cut by the kills",
        seen.acked.len(),
        stored.len(),
        seen.cut_by_kill
    );
    assert!(
        seen.acked.len() >= 10,
        "only {} events acknowledged",
        seen.acked.len()
    );
    assert!(
        seen.cut_by_kill > 0,
        "no kill landed while a request was in flight: the test proved nothing about kill -9"
    );
    assert!(
        seen.unexpected.is_empty(),
        "answers other than 2xx or 503: {:?}",
        seen.unexpected
    );
    let lost: Vec<_> = seen.acked.difference(&stored).collect();
    assert!(lost.is_empty(), "{} acknowledged events lost", lost.len());
}
