//! The shop example over real HTTP (a poem server on port 0 around `Shop::app`, SQLite in a
//! temporary directory): its requests show up in `health/api` with their route templates
//! and in the event list under their correlation ids; both auth modes; the host's request
//! never fails because of analytics.

use std::net::SocketAddr;
use std::time::Duration;

use analytics_examples::shop_service::{Shop, ShopConfig};
use analytics_server::embed::{AnalyticsRoutes, AuthMode, RecordRequests};
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::{Endpoint, EndpointExt, Route, Server, get, handler};
use serde_json::Value;

const SECRET: &str = "shop-test-secret-of-at-least-32-bytes!";
const STAFF: &str = "staff-token-1";

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

fn config(dir: &tempfile::TempDir, auth: AuthMode) -> ShopConfig {
    ShopConfig {
        database_url: format!("sqlite://{}", dir.path().join("shop.db").display()),
        jwt_secret: SECRET.to_owned(),
        auth,
        staff_token: STAFF.to_owned(),
    }
}

/// Serves `app` on a free loopback port until the returned sender is dropped.
async fn serve(app: impl Endpoint + 'static) -> (String, tokio::sync::oneshot::Sender<()>) {
    let acceptor = TcpListener::bind("127.0.0.1:0")
        .into_acceptor()
        .await
        .unwrap();
    let addr: SocketAddr = *acceptor.local_addr()[0].as_socket_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        Server::new_with_acceptor(acceptor)
            .run_with_graceful_shutdown(
                app,
                async {
                    let _ = stopped.await;
                },
                Some(Duration::from_secs(5)),
            )
            .await
            .unwrap();
    });
    (format!("http://{addr}"), stop)
}

/// The JSON answer of an authenticated GET.
async fn get_json(url: &str, token: &str) -> Value {
    let resp = client().get(url).bearer_auth(token).send().await.unwrap();
    resp.json().await.unwrap()
}

/// The events of project `shop` of `kind` under `correlation`.
async fn events(base: &str, token: &str, kind: &str, correlation: &str) -> Vec<Value> {
    let url = format!(
        "{base}/api/v1/analytics/events?project=shop&kind={kind}&correlation_id={correlation}"
    );
    let page = get_json(&url, token).await;
    page["events"].as_array().cloned().unwrap_or_default()
}

/// `health/api` of project `shop` once it lists `route` with at least `requests`.
async fn wait_for_route(analytics: &str, auth: &str, route: &str, requests: u64) -> Value {
    let url = format!("{analytics}/health/api?project=shop&range=1h&limit=500");
    let mut last = Value::Null;
    for _ in 0..100 {
        let body = get_json(&url, auth).await;
        let found = body["routes"].as_array().is_some_and(|routes| {
            routes
                .iter()
                .any(|r| r["route"] == route && r["requests"].as_u64() >= Some(requests))
        });
        if found {
            return body;
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("health/api never listed {route} with {requests} requests: {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shop_requests_show_up_in_health_api_with_route_templates_and_correlation_ids() {
    let dir = tempfile::tempdir().unwrap();
    let shop = Shop::start(config(&dir, AuthMode::Own)).await.unwrap();
    let token = shop.admin_token().unwrap();
    let (base, _stop) = serve(shop.app()).await;
    let http = client();

    let r = http
        .get(format!("{base}/api/v1/products/hoodie-1"))
        .header("X-Correlation-Id", "corr-hoodie-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-correlation-id"], "corr-hoodie-1");
    let r = http
        .get(format!("{base}/api/v1/products/tee-7"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let generated = r.headers()["x-correlation-id"].to_str().unwrap().to_owned();
    assert!(!generated.is_empty());
    let r = http
        .get(format!("{base}/api/v1/products/no-such-product"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = http
        .get(format!("{base}/secret/raw-path-42"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = http
        .post(format!("{base}/api/v1/orders"))
        .header("X-Correlation-Id", "corr-order-1")
        .json(&serde_json::json!({"product_id": "hoodie-1", "quantity": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // Our own JWT authenticates; the shop's staff token does not in this mode.
    let r = http
        .get(format!(
            "{base}/api/v1/analytics/health/overview?project=shop"
        ))
        .bearer_auth(STAFF)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let analytics = format!("{base}/api/v1/analytics");
    let body = wait_for_route(&analytics, &token, "/api/v1/products/:id", 3).await;
    let routes = body["routes"].as_array().unwrap();
    let names: Vec<&str> = routes.iter().filter_map(|r| r["route"].as_str()).collect();
    for expected in [
        "/api/v1/orders",
        "/{unmatched}",
        "/api/v1/analytics/health/overview",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    for raw in ["hoodie-1", "tee-7", "no-such-product", "raw-path-42"] {
        assert!(
            names.iter().all(|n| !n.contains(raw)),
            "raw path {raw} recorded: {names:?}"
        );
    }
    let products = routes
        .iter()
        .find(|r| r["route"] == "/api/v1/products/:id")
        .unwrap();
    assert_eq!(products["method"], "GET");

    // The correlation ids: taken from the header, or the generated one the client saw.
    for (correlation, route, status) in [
        ("corr-hoodie-1", "/api/v1/products/:id", 200),
        (generated.as_str(), "/api/v1/products/:id", 200),
        ("corr-order-1", "/api/v1/orders", 201),
    ] {
        let items = events(&base, &token, "api_request", correlation).await;
        assert_eq!(items.len(), 1, "{correlation}: {items:?}");
        assert_eq!(items[0]["payload"]["route"], route);
        assert_eq!(items[0]["payload"]["status"], status);
        assert!(items[0]["payload"]["latency_ms"].as_f64().unwrap() >= 0.0);
    }
    // The order handler recorded its business event under the same correlation id.
    let orders = events(&base, &token, "order", "corr-order-1").await;
    assert_eq!(orders.len(), 1, "{orders:?}");
    assert_eq!(shop.recorder().dropped(), 0);
    // The background jobs run in the embedding service: the rollup loop's first tick (at
    // start) moved the hourly watermark and holds the rollup lock.
    let store = shop.state().store.clone();
    let mut rolled = None;
    for _ in 0..100 {
        rolled = store
            .watermark(analytics_core::rollup::scheduler::HOUR_WATERMARK)
            .await
            .unwrap();
        if rolled.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(rolled.is_some(), "the embedded rollup loop never ticked");
    assert!(
        store
            .try_lock(analytics_core::rollup::scheduler::LOCK_NAME)
            .await
            .unwrap()
            .is_none(),
        "the embedded rollup loop holds its lock"
    );
    shop.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_host_auth_the_shops_staff_token_reads_analytics_and_our_jwt_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let shop = Shop::start(config(&dir, AuthMode::Host)).await.unwrap();
    let jwt = shop.admin_token().unwrap();
    let (base, _stop) = serve(shop.app()).await;
    let http = client();
    let url = format!("{base}/api/v1/analytics/health/overview?project=shop");
    let staff = http.get(&url).bearer_auth(STAFF).send().await.unwrap();
    assert_eq!(staff.status(), 200, "{:?}", staff.text().await);
    let ours = http.get(&url).bearer_auth(&jwt).send().await.unwrap();
    assert_eq!(ours.status(), 401);
    let body: Value = ours.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized", "{body}");
    let none = http.get(&url).send().await.unwrap();
    assert_eq!(none.status(), 401);
    shop.shutdown().await;
}

#[handler]
fn hello() -> &'static str {
    "hello"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_mount_at_any_prefix_and_a_stopped_collector_never_fails_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let shop = Shop::start(config(&dir, AuthMode::Own)).await.unwrap();
    let token = shop.admin_token().unwrap();
    let state = shop.state().clone();
    let recorder = RecordRequests::new(
        state.collector.clone(),
        analytics_core::ProjectId::parse("shop").unwrap(),
    );
    let app = Route::new()
        .at("/hello", get(hello))
        .nest("/internal/analytics", AnalyticsRoutes::new(state.clone()))
        .with(recorder.clone());
    let (base, _stop) = serve(app).await;
    let http = client();
    let r = http
        .get(format!(
            "{base}/internal/analytics/alerts/configs/00000000-0000-0000-0000-000000000000"
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = http
        .get(format!("{base}/internal/analytics/health/api?project=shop"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The binary's operations routes are not served through the mount.
    let r = http
        .get(format!("{base}/internal/analytics/livez"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // Recorded under the host's prefix, with the operation's template.
    wait_for_route(
        &format!("{base}/internal/analytics"),
        &token,
        "/internal/analytics/alerts/configs/{id}",
        1,
    )
    .await;

    shop.shutdown().await;
    let r = http.get(format!("{base}/hello")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "hello");
    assert!(recorder.dropped() >= 1);
}

/// The cost of recording: the shop's product route called in-process (no network) with and
/// without [`RecordRequests`], alternating rounds; prints the ratio (figures in
/// docs/PERFORMANCE.md). Ignored: a measurement, run with `--ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement"]
#[allow(
    clippy::print_stdout,
    reason = "a measurement reports its figures on stdout"
)]
async fn measure_the_cost_of_recording_requests() {
    use poem::Request;
    let shop = Shop::start(ShopConfig {
        database_url: "memory://".to_owned(),
        jwt_secret: SECRET.to_owned(),
        auth: AuthMode::Own,
        staff_token: STAFF.to_owned(),
    })
    .await
    .unwrap();
    let recorder = RecordRequests::new(
        shop.state().collector.clone(),
        analytics_core::ProjectId::parse("shop").unwrap(),
    );
    let bare = Route::new().at("/api/v1/products/:id", get(hello));
    let with = Route::new()
        .at("/api/v1/products/:id", get(hello))
        .with(recorder.clone());
    const N: u32 = 20_000;
    async fn round(ep: &impl Endpoint) -> Duration {
        let started = std::time::Instant::now();
        for _ in 0..N {
            let req = Request::builder()
                .uri(poem::http::Uri::from_static("/api/v1/products/hoodie-1"))
                .finish();
            let _ = ep.call(req).await;
        }
        started.elapsed()
    }
    let (mut bare_total, mut with_total) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..5 {
        bare_total += round(&bare).await;
        with_total += round(&with).await;
        shop.state().collector.flush().await.unwrap();
    }
    let per = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(N * 5);
    println!(
        "bare {:.2} us/request, recorded {:.2} us/request, ratio {:.2}x, {} dropped, {} committed",
        per(bare_total),
        per(with_total),
        with_total.as_secs_f64() / bare_total.as_secs_f64(),
        recorder.dropped(),
        shop.state().collector.stats().committed
    );
    shop.shutdown().await;
}
