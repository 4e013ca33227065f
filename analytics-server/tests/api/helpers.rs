//! The in-process `TestApp`: one method per endpoint, plus token and API key helpers.

use std::sync::Arc;

use analytics_core::memory::MemoryStore;
use analytics_core::ports::ProjectStore;
use analytics_core::project::{ApiKeyRecord, ApiKeySecret, Project, ProjectSettings};
use analytics_core::testkit::services::{postgres_url, with_database};
use analytics_core::{CollectorOptions, ProjectId};
use analytics_server::{AppState, HttpLimits, JwtSettings, Role, Secret, build_app};
use chrono::Utc;
use poem::Response;
use poem::endpoint::BoxEndpoint;
use poem::http::{HeaderMap, Method, StatusCode};
use poem::test::TestClient;
use serde_json::{Value, json};

pub(crate) const SECRET: &str = "test-secret-0123456789-0123456789-0123456789";

/// A finished response: status, headers and JSON (or `Value::String` for non-JSON) body.
#[derive(Debug)]
pub(crate) struct Resp {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Value,
}

impl Resp {
    /// Reads a finished test response.
    pub(crate) async fn from_test(r: poem::test::TestResponse) -> Self {
        Self::from(r).await
    }

    pub(crate) async fn from(r: poem::test::TestResponse) -> Self {
        let status = r.0.status();
        let headers = r.0.headers().clone();
        let text = r.0.into_body().into_string().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Self {
            status,
            headers,
            body,
        }
    }

    /// Asserts the one error shape with `status` and, when given, the named field.
    pub(crate) fn assert_error(&self, status: StatusCode, field: Option<&str>) {
        assert_eq!(self.status, status, "{:#}", self.body);
        let err = &self.body["error"];
        assert!(err["code"].is_string(), "{:#}", self.body);
        assert!(err["message"].is_string(), "{:#}", self.body);
        assert!(self.body["request_id"].is_string(), "{:#}", self.body);
        if let Some(f) = field {
            assert_eq!(err["field"], f, "{:#}", self.body);
        }
    }
}

pub(crate) struct TestApp {
    pub(crate) client: TestClient<BoxEndpoint<'static, Response>>,
    pub(crate) state: AppState,
    pub(crate) store: MemoryStore,
    pub(crate) jwt: JwtSettings,
}

impl TestApp {
    pub(crate) fn new() -> Self {
        Self::with_limits(HttpLimits::default())
    }

    /// A test app whose verified API keys are trusted for `ttl` (zero: never cached).
    pub(crate) fn with_api_key_ttl(ttl: std::time::Duration) -> Self {
        let mut app = Self::new();
        app.state = app.state.clone().with_api_key_ttl(ttl);
        app.client = TestClient::new(build_app(app.state.clone()));
        app
    }

    pub(crate) fn with_limits(limits: HttpLimits) -> Self {
        let store = MemoryStore::new();
        let jwt = JwtSettings::new(Secret::new(SECRET));
        let state = AppState::new(
            Arc::new(store.clone()),
            jwt.clone(),
            CollectorOptions {
                linger: std::time::Duration::from_millis(5),
                ..Default::default()
            },
            limits,
        );
        Self {
            client: TestClient::new(build_app(state.clone())),
            state,
            store,
            jwt,
        }
    }

    pub(crate) fn token(&self, roles: &[Role]) -> String {
        self.jwt
            .issue("tester", roles, Utc::now().timestamp(), 3600)
            .unwrap()
    }

    pub(crate) fn admin(&self) -> String {
        format!("Bearer {}", self.token(&[Role::Admin]))
    }

    pub(crate) async fn api_key(&self, project: &str) -> (String, ApiKeyRecord) {
        let id = ProjectId::parse(project).unwrap();
        let _ = self
            .store
            .create_project(&Project {
                id: id.clone(),
                name: project.into(),
                settings: ProjectSettings::default(),
                created_at: Utc::now(),
            })
            .await;
        let secret = ApiKeySecret::generate().unwrap();
        let rec = ApiKeyRecord {
            id: uuid::Uuid::new_v4(),
            project: id,
            name: "test".into(),
            prefix: secret.prefix(),
            hash: secret.hash(),
            created_at: Utc::now(),
            revoked_at: None,
            last_used_at: None,
        };
        self.store.create_api_key(&rec).await.unwrap();
        (secret.expose().to_owned(), rec)
    }

    pub(crate) async fn post_events(&self, body: &Value, auth: Option<&str>) -> Resp {
        let mut r = self.client.post("/api/v1/analytics/events").body_json(body);
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        Resp::from(r.send().await).await
    }

    pub(crate) async fn post_raw(&self, body: impl Into<poem::Body>, auth: Option<&str>) -> Resp {
        self.post_typed(body, "application/json", auth).await
    }

    /// Posts `body` to ingest as `content_type`.
    pub(crate) async fn post_typed(
        &self,
        body: impl Into<poem::Body>,
        content_type: &str,
        auth: Option<&str>,
    ) -> Resp {
        let mut r = self
            .client
            .post("/api/v1/analytics/events")
            .content_type(content_type)
            .body(body);
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        Resp::from(r.send().await).await
    }

    pub(crate) async fn post_with_header(&self, body: &Value, name: &str, value: &str) -> Resp {
        let r = self
            .client
            .post("/api/v1/analytics/events")
            .header(name, value)
            .body_json(body);
        Resp::from(r.send().await).await
    }

    pub(crate) async fn get_events(&self, query: &str, auth: Option<&str>) -> Resp {
        let mut r = self.client.get(format!("/api/v1/analytics/events{query}"));
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        Resp::from(r.send().await).await
    }

    pub(crate) async fn get(&self, path: &str) -> Resp {
        Resp::from(self.client.get(path).send().await).await
    }

    /// Sends `method` to `path` with no body.
    pub(crate) async fn call(&self, method: Method, path: &str, auth: Option<&str>) -> Resp {
        let mut r = self.client.request(method, path);
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        Resp::from(r.send().await).await
    }
}

/// A valid `page_view` event with id `n`.
pub(crate) fn page_view(n: u128) -> Value {
    json!({
        "id": uuid::Uuid::from_u128(n + 1).to_string(),
        "kind": "page_view",
        "payload": {"path": format!("/p/{n}")},
    })
}

/// A valid `api_request` event.
pub(crate) fn api_request(n: u128, route: &str, status: u16) -> Value {
    json!({
        "id": uuid::Uuid::from_u128(n + 1).to_string(),
        "kind": "api_request",
        "payload": {"method": "GET", "route": route, "status": status, "latency_ms": 12.5},
    })
}

pub(crate) fn batch(events: Vec<Value>) -> Value {
    json!({ "events": events })
}

/// Creates an empty database `t_<uuid>` on the test cluster and returns its URL; `None`
/// when no cluster is configured (a local run without services: the caller skips; under CI
/// `postgres_url` panics instead).
pub(crate) async fn fresh_postgres_url() -> Option<String> {
    let admin = postgres_url()?;
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    analytics_store_pg::admin::create_database(&admin, &name)
        .await
        .expect("create the test database");
    Some(with_database(&admin, &name))
}

/// `Authorization: Bearer <JWT>` for `sub` with `roles`, signed with [`SECRET`], valid 10
/// minutes.
pub(crate) fn bearer(sub: &str, roles: &[Role]) -> String {
    let t = JwtSettings::new(Secret::new(SECRET))
        .issue(sub, roles, Utc::now().timestamp(), 600)
        .unwrap();
    format!("Bearer {t}")
}

/// An HTTP client for the black-box tests (installs the TLS provider reqwest needs).
pub(crate) fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// `GET url` (with `Authorization: auth` when given) as JSON.
pub(crate) async fn get_json(http: &reqwest::Client, url: &str, auth: Option<&str>) -> Value {
    let mut req = http.get(url);
    if let Some(auth) = auth {
        req = req.header("Authorization", auth);
    }
    req.send().await.unwrap().json().await.unwrap()
}

/// Creates the alert configuration `config` (an `api.errors` one whose threshold a 50 % error
/// rate passes) as `auth`, and ingests [`half_failing_requests`] on `route`, so the engine
/// opens an alert at its next run; returns the created configuration.
pub(crate) async fn fire_alert(
    http: &reqwest::Client,
    base: &str,
    auth: &str,
    config: &Value,
    route: &str,
) -> Value {
    let created = http
        .post(format!("{base}/api/v1/analytics/alerts/configs"))
        .header("authorization", auth)
        .json(config)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());
    let r = http
        .post(format!("{base}/api/v1/analytics/events"))
        .header("authorization", auth)
        .json(&half_failing_requests(route))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    created.json().await.unwrap_or(Value::Null)
}

/// The text of `{base}/metrics`.
pub(crate) async fn metrics_text(http: &reqwest::Client, base: &str) -> String {
    let r = http.get(format!("{base}/metrics")).send().await.unwrap();
    r.text().await.unwrap()
}

/// The real `Application` on port 0, serving in a task.
pub(crate) struct RunningServer {
    pub(crate) base: String,
    pub(crate) port: u16,
    pub(crate) store: Arc<dyn analytics_core::ports::Store>,
    pub(crate) handle: analytics_server::ShutdownHandle,
    pub(crate) task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl RunningServer {
    /// Builds the server on `db_url` (secret [`SECRET`], no drain delay), after `tune` had
    /// its say on the settings, and starts serving.
    pub(crate) async fn start(
        db_url: &str,
        tune: impl FnOnce(&mut analytics_server::Settings),
    ) -> Self {
        let mut settings = analytics_server::Settings::new(
            "127.0.0.1:0",
            db_url,
            JwtSettings::new(Secret::new(SECRET)),
        );
        settings.drain_delay = std::time::Duration::ZERO;
        tune(&mut settings);
        let app = analytics_server::Application::build(settings)
            .await
            .expect("server builds");
        let port = app.port();
        Self {
            base: format!("http://127.0.0.1:{port}"),
            port,
            store: app.state().store.clone(),
            handle: app.shutdown_handle(),
            task: tokio::spawn(app.run_until_stopped()),
        }
    }

    /// Stops it gracefully and waits for a clean stop.
    pub(crate) async fn stop(self) {
        self.handle.shutdown();
        self.task.await.unwrap().expect("clean stop");
    }
}

/// The real `analytics-server` binary on `db_url`, bound to a free loopback port, with
/// [`SECRET`] and the extra environment `env`; killed (SIGKILL) when dropped.
pub(crate) struct BinaryServer {
    pub(crate) child: std::process::Child,
    pub(crate) base: String,
}

impl BinaryServer {
    /// Starts it and waits until it reports its address.
    pub(crate) fn spawn(db_url: &str, env: &[(&str, &str)]) -> Self {
        use std::io::{BufRead as _, BufReader};
        use std::process::{Command, Stdio};

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
        let stderr = child.stderr.take().expect("stderr is piped");
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
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("server reports its address");
        Self {
            child,
            base: format!("http://{addr}"),
        }
    }
}

impl Drop for BinaryServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An ingest body of 20 `api_request` events on `route`, 5 s old, half of them 500s: an
/// `api.errors` average of 0.5, enough to open any alert with a lower threshold.
pub(crate) fn half_failing_requests(route: &str) -> Value {
    let at = (Utc::now() - chrono::Duration::seconds(5)).to_rfc3339();
    let events: Vec<Value> = (0..20)
        .map(|i| {
            json!({
                "id": uuid::Uuid::new_v4().to_string(),
                "kind": "api_request",
                "occurred_at": at,
                "payload": {"method": "GET", "route": route,
                            "status": if i % 2 == 0 { 500 } else { 200 }, "latency_ms": 12.0},
            })
        })
        .collect();
    json!({ "events": events })
}
