//! Durability of acknowledged events with the real binary over SQLite: `kill -9` at random
//! moments under load, and SIGTERM under load (exit 0, nothing acknowledged is lost).

use std::collections::HashSet;
use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use analytics_server::{JwtSettings, Role, Secret};
use chrono::Utc;
use serde_json::{Value, json};

use crate::helpers::SECRET;

struct Server {
    child: Child,
    base: String,
}

fn start(db_url: &str) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_analytics-server"))
        .env("DATABASE_URL", db_url)
        .env("ANALYTICS_BIND", "127.0.0.1:0")
        .env("ANALYTICS_JWT_SECRET", SECRET)
        .env("RUST_LOG", "warn")
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

/// Sends batches with unique ids until a request fails; records acknowledged ids.
async fn load(
    http: reqwest::Client,
    base: String,
    client_no: u128,
    round: u128,
    acked: Arc<Mutex<HashSet<String>>>,
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
        let sent = http
            .post(format!("{base}/api/v1/analytics/events"))
            .header("authorization", &auth)
            .json(&json!({ "events": events }))
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => acked.lock().unwrap().extend(ids),
            _ => return,
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
async fn acknowledged_events_survive_kill_9_and_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("durable.db").display());
    let http = client();
    let acked = Arc::new(Mutex::new(HashSet::new()));

    for round in 0..5u128 {
        let mut server = start(&url);
        let clients: Vec<_> = (0..4)
            .map(|c| {
                tokio::spawn(load(
                    http.clone(),
                    server.base.clone(),
                    c,
                    round,
                    acked.clone(),
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(pseudo_random_ms(round as u64))).await;
        server.child.kill().unwrap(); // SIGKILL
        server.child.wait().unwrap();
        for c in clients {
            c.await.unwrap();
        }
    }

    // SIGTERM under load: exit 0, every acknowledged event stored.
    let mut server = start(&url);
    let clients: Vec<_> = (0..4)
        .map(|c| {
            tokio::spawn(load(
                http.clone(),
                server.base.clone(),
                c,
                99,
                acked.clone(),
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

    let mut server = start(&url);
    let stored = stored_ids(&http, &server.base).await;
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let acked = acked.lock().unwrap();
    assert!(
        acked.len() >= 10,
        "only {} events acknowledged",
        acked.len()
    );
    let lost: Vec<_> = acked.difference(&stored).collect();
    assert!(lost.is_empty(), "{} acknowledged events lost", lost.len());
}
