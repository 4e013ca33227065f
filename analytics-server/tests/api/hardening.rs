//! Hostile clients against the real server: slow and idle sockets, random methods and
//! paths, oversized heads, unauthenticated bodies, wrong credentials, a store that pings but
//! cannot read, and weak JWT secrets. None of them may take the server down or fail other
//! callers' requests.

use std::time::{Duration, Instant};

use analytics_server::{Role, Settings};
use chrono::Utc;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::helpers::{RunningServer, SECRET, TestApp, batch, bearer, page_view};

/// The real server on a SQLite file of its own.
struct Spawned {
    server: RunningServer,
    port: u16,
    _dir: tempfile::TempDir,
    db: std::path::PathBuf,
}

impl Spawned {
    /// Stops it, waiting at most 10 s (hostile sockets may still be open).
    async fn stop(self) {
        self.server.handle.shutdown();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.server.task).await;
    }
}

async fn spawn_with(tune: impl FnOnce(&mut Settings)) -> Spawned {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.db");
    let url = format!("sqlite://{}", db.display());
    let server = RunningServer::start(&url, |s| {
        s.shutdown_timeout = Duration::from_secs(2);
        tune(s);
    })
    .await;
    Spawned {
        port: server.port,
        server,
        _dir: dir,
        db,
    }
}

fn admin() -> String {
    bearer("hardening", &[Role::Admin])
}

/// Sends `raw` on a new connection and reads the answer until the server closes or
/// `within` passes; returns the status code (0 when none arrived) and the text.
async fn raw_request(port: u16, raw: &[u8], within: Duration) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(raw).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(within, async {
        let mut chunk = [0u8; 8192];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    if response_complete(&buf) {
                        break;
                    }
                }
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// Whether `buf` holds a whole response with a `content-length` body.
fn response_complete(buf: &[u8]) -> bool {
    let text = String::from_utf8_lossy(buf);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())
                .flatten()
        })
        .unwrap_or(0);
    body.len() >= len
}

fn body_of(text: &str) -> Value {
    text.split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null)
}

async fn get(port: u16, path: &str) -> (u16, String) {
    let raw = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    raw_request(port, raw.as_bytes(), Duration::from_secs(5)).await
}

async fn ingest(port: u16, auth: &str, n: u128) -> (u16, String) {
    let body = batch(vec![page_view(n)]).to_string();
    let raw = format!(
        "POST /api/v1/analytics/events HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Authorization: {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    raw_request(port, raw.as_bytes(), Duration::from_secs(5)).await
}

/// A small xorshift generator: random but reproducible input.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn token(&mut self, len: usize) -> String {
        const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        (0..len)
            .map(|_| CHARS[(self.next() % CHARS.len() as u64) as usize] as char)
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_methods_and_paths_never_grow_the_metrics() {
    let server = spawn_with(|_| {}).await;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // Warm up every label combination a normal client produces.
    for _ in 0..3 {
        get(server.port, "/livez").await;
        get(server.port, "/nope").await;
    }
    let (_, before) = get(server.port, "/metrics").await;
    let mut sent = Vec::new();
    for i in 0..400 {
        let method = rng.token(20 + (i % 200));
        let path = format!("/{}/{}", rng.token(30), rng.token(i % 300));
        let raw = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let (status, _) = raw_request(server.port, raw.as_bytes(), Duration::from_secs(5)).await;
        assert!(status >= 400, "{method} {path} -> {status}");
        if i < 20 {
            sent.push(method);
        }
    }
    let (_, after) = get(server.port, "/metrics").await;
    for m in &sent {
        assert!(!after.contains(m.as_str()), "method {m} became a label");
    }
    let series = |t: &str| t.lines().filter(|l| l.starts_with("http_request")).count();
    // Only the `other` method (and /metrics itself) may add series: a bounded number.
    assert!(
        series(&after) <= series(&before) + 40,
        "series grew from {} to {}",
        series(&before),
        series(&after)
    );
    assert!(
        after.len() < before.len() + 16 * 1024,
        "metrics grew to {} bytes",
        after.len()
    );
    assert!(after.contains("method=\"other\""), "{after}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_half_sent_connections_never_starve_other_clients() {
    let server = spawn_with(|s| {
        s.connections.header_read_timeout = Duration::from_secs(3);
        s.limits.body_read_timeout = Duration::from_secs(3);
    })
    .await;
    let auth = admin();
    let mut held = Vec::new();
    // 300 idle sockets that never send a byte.
    for _ in 0..300 {
        held.push(
            TcpStream::connect(("127.0.0.1", server.port))
                .await
                .unwrap(),
        );
    }
    // 20 half-sent request heads.
    for _ in 0..20 {
        let mut s = TcpStream::connect(("127.0.0.1", server.port))
            .await
            .unwrap();
        s.write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .unwrap();
        held.push(s);
    }
    // 20 authenticated ingests whose body never arrives.
    for _ in 0..20 {
        let mut s = TcpStream::connect(("127.0.0.1", server.port))
            .await
            .unwrap();
        let head = format!(
            "POST /api/v1/analytics/events HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n\
             Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n{{\"events\": ["
        );
        s.write_all(head.as_bytes()).await.unwrap();
        held.push(s);
    }
    let started = Instant::now();
    let (status, text) = get(server.port, "/livez").await;
    assert_eq!(status, 200, "{text}");
    let (status, text) = ingest(server.port, &auth, 1).await;
    assert_eq!(status, 202, "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "livez + ingest took {:?} with 340 hostile sockets open",
        started.elapsed()
    );

    // The server closes the half-sent heads after the header read timeout, and answers
    // the stalled bodies with 408 after the body read timeout.
    let mut closed_heads = 0;
    let mut timed_out_bodies = 0;
    for (i, mut s) in held.into_iter().enumerate().skip(300) {
        let mut buf = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(8), s.read_to_end(&mut buf)).await;
        assert!(r.is_ok(), "socket {i} still open after 8 s");
        let text = String::from_utf8_lossy(&buf);
        if i < 320 {
            closed_heads += 1;
        } else if text.starts_with("HTTP/1.1 408") {
            assert_eq!(body_of(&text)["error"]["code"], "body_timeout", "{text}");
            timed_out_bodies += 1;
        }
    }
    assert_eq!(closed_heads, 20);
    assert_eq!(timed_out_bodies, 20);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_limit_queues_new_clients_until_a_slot_frees() {
    let server = spawn_with(|s| {
        s.connections.max_connections = 8;
        s.connections.header_read_timeout = Duration::from_secs(1);
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(
            TcpStream::connect(("127.0.0.1", server.port))
                .await
                .unwrap(),
        );
    }
    // The ninth client waits in the backlog and is served once the header read timeout
    // has closed the idle ones.
    let started = Instant::now();
    let (status, _) = get(server.port, "/livez").await;
    assert_eq!(status, 200);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(500) && waited < Duration::from_secs(4),
        "waited {waited:?}"
    );
    drop(held);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_bodies_are_never_read() {
    let server = spawn_with(|_| {}).await;
    let mut streams = Vec::new();
    let started = Instant::now();
    for _ in 0..50 {
        let mut s = TcpStream::connect(("127.0.0.1", server.port))
            .await
            .unwrap();
        s.write_all(
            b"POST /api/v1/analytics/events HTTP/1.1\r\nHost: x\r\n\
              Content-Type: application/json\r\nContent-Length: 1048575\r\n\r\n{\"events\":",
        )
        .await
        .unwrap();
        streams.push(s);
    }
    for mut s in streams {
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
            .await
            .expect("answered without waiting for the body")
            .unwrap();
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(text.starts_with("HTTP/1.1 401"), "{text}");
    }
    assert!(started.elapsed() < Duration::from_secs(3));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_heads_get_the_error_shape_and_a_request_id() {
    let server = spawn_with(|_| {}).await;
    let long = "a".repeat(10 * 1024);
    let (status, text) = get(server.port, &format!("/livez?{long}")).await;
    assert_eq!(status, 414, "{text}");
    let body = body_of(&text);
    assert_eq!(body["error"]["code"], "uri_too_long", "{text}");
    assert!(body["request_id"].is_string(), "{text}");

    let raw = format!(
        "GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: {}\r\n\r\n",
        "b".repeat(20 * 1024)
    );
    let (status, text) = raw_request(server.port, raw.as_bytes(), Duration::from_secs(5)).await;
    assert_eq!(status, 431, "{text}");
    assert_eq!(
        body_of(&text)["error"]["code"],
        "headers_too_large",
        "{text}"
    );
    assert!(text.to_ascii_lowercase().contains("x-request-id"), "{text}");

    let mut raw = String::from("GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for i in 0..150 {
        raw.push_str(&format!("X-H{i}: v\r\n"));
    }
    raw.push_str("\r\n");
    let (status, text) = raw_request(server.port, raw.as_bytes(), Duration::from_secs(5)).await;
    assert_eq!(status, 431, "{text}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_not_ready_when_the_store_pings_but_cannot_read() {
    let server = spawn_with(|_| {}).await;
    let (status, text) = get(server.port, "/readyz").await;
    assert_eq!(status, 200, "{text}");
    // Break reads behind the server's back: the database still answers `SELECT 1`.
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", server.db.display()))
        .await
        .unwrap();
    sqlx::query("ALTER TABLE analytics_events RENAME TO analytics_events_gone")
        .execute(&pool)
        .await
        .unwrap();
    let (status, text) = get(server.port, "/readyz").await;
    assert_eq!(status, 503, "{text}");
    assert_eq!(body_of(&text)["status"], "store_unavailable", "{text}");
    sqlx::query("ALTER TABLE analytics_events_gone RENAME TO analytics_events")
        .execute(&pool)
        .await
        .unwrap();
    let (status, _) = get(server.port, "/readyz").await;
    assert_eq!(status, 200);
    pool.close().await;
    server.stop().await;
}

#[tokio::test]
async fn api_keys_on_jwt_routes_are_forbidden_whichever_header_carries_them() {
    let app = TestApp::new();
    let (key, _) = app.api_key("shop").await;
    let bearer = app.get_events("", Some(&format!("Bearer {key}"))).await;
    bearer.assert_error(poem::http::StatusCode::FORBIDDEN, None);
    let header = crate::helpers::Resp::from_test(
        app.client
            .get("/api/v1/analytics/events")
            .header("x-api-key", &key)
            .send()
            .await,
    )
    .await;
    header.assert_error(poem::http::StatusCode::FORBIDDEN, None);
}

#[tokio::test]
async fn to_without_from_lists_everything_before_it() {
    let app = TestApp::new();
    let admin = app.admin();
    let now = Utc::now();
    let old = (now - chrono::Duration::hours(3)).to_rfc3339();
    let events = vec![
        json!({"id": uuid::Uuid::from_u128(1).to_string(), "kind": "page_view",
               "occurred_at": old, "payload": {"path": "/a"}}),
        page_view(2),
    ];
    let r = app.post_events(&batch(events), Some(&admin)).await;
    assert_eq!(r.status, 202, "{:#}", r.body);
    let cut = (now - chrono::Duration::hours(1)).to_rfc3339();
    let q = format!("?to={}", urlencode(&cut));
    let r = app.get_events(&q, Some(&admin)).await;
    assert_eq!(r.status, 200, "{:#}", r.body);
    assert_eq!(
        r.body["events"].as_array().unwrap().len(),
        1,
        "{:#}",
        r.body
    );
    let q = format!("?from={}", urlencode(&cut));
    let r = app.get_events(&q, Some(&admin)).await;
    assert_eq!(
        r.body["events"].as_array().unwrap().len(),
        1,
        "{:#}",
        r.body
    );
    // `to` before `from` names `from`; a malformed `to` names `to`.
    let q = format!("?from={}&to={}", urlencode(&cut), urlencode(&old));
    let r = app.get_events(&q, Some(&admin)).await;
    r.assert_error(poem::http::StatusCode::BAD_REQUEST, Some("from"));
    let r = app.get_events("?to=yesterday", Some(&admin)).await;
    r.assert_error(poem::http::StatusCode::BAD_REQUEST, Some("to"));
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

#[tokio::test]
async fn an_ingest_token_with_a_projects_claim_writes_only_to_those_projects() {
    let app = TestApp::new();
    let shop = analytics_core::ProjectId::parse("shop").unwrap();
    let token = app
        .jwt
        .issue_scoped(
            "svc",
            &[Role::Ingest],
            Some(std::slice::from_ref(&shop)),
            Utc::now().timestamp(),
            600,
        )
        .unwrap();
    let mut foreign = page_view(2);
    foreign["project"] = json!("other");
    let r = app
        .post_events(
            &batch(vec![page_view(1), foreign]),
            Some(&format!("Bearer {token}")),
        )
        .await;
    assert_eq!(r.status, 202, "{:#}", r.body);
    assert_eq!(r.body["accepted"], 1, "{:#}", r.body);
    assert_eq!(r.body["rejected"], 1, "{:#}", r.body);
    assert_eq!(
        r.body["results"][1]["error"]["field"], "project",
        "{:#}",
        r.body
    );
    // The accepted event went to the token's project, not `default`.
    let listed = app.get_events("?project=shop", Some(&app.admin())).await;
    assert_eq!(
        listed.body["events"].as_array().unwrap().len(),
        1,
        "{:#}",
        listed.body
    );
}

#[test]
fn the_binary_refuses_weak_jwt_secrets() {
    let bin = env!("CARGO_BIN_EXE_analytics-server");
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("w.db").display());
    for secret in ["x", "short-secret", ""] {
        let out = std::process::Command::new(bin)
            .args(["token", "--role", "admin", "--sub", "a"])
            .env("ANALYTICS_JWT_SECRET", secret)
            .output()
            .unwrap();
        assert!(!out.status.success(), "minted with {secret:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("at least 32"), "{err}");

        let out = std::process::Command::new(bin)
            .arg("serve")
            .env("ANALYTICS_JWT_SECRET", secret)
            .env("ANALYTICS_BIND", "127.0.0.1:0")
            .env("DATABASE_URL", &db)
            .output()
            .unwrap();
        assert!(!out.status.success(), "served with {secret:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("at least 32"), "{err}");
    }
    let out = std::process::Command::new(bin)
        .args([
            "token",
            "--role",
            "admin",
            "--sub",
            "a",
            "--ttl",
            "9999999999d",
        ])
        .env("ANALYTICS_JWT_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("10 years"));
}

#[tokio::test]
async fn clients_cannot_write_into_the_servers_own_telemetry_project() {
    let app = TestApp::new();
    let mut internal = page_view(1);
    internal["project"] = json!(analytics_core::ProjectId::INTERNAL);
    let r = app
        .post_events(&batch(vec![internal, page_view(2)]), Some(&app.admin()))
        .await;
    assert_eq!(r.status, 202, "{:#}", r.body);
    assert_eq!(r.body["accepted"], 1, "{:#}", r.body);
    assert_eq!(r.body["results"][0]["status"], "rejected", "{:#}", r.body);
    assert_eq!(
        r.body["results"][0]["error"]["field"], "project",
        "{:#}",
        r.body
    );
}
