//! A small shop service embedding the analytics backend: its routes are recorded as
//! `api_request` events with their route templates and correlation ids, and the analytics
//! API is nested at `/api/v1/analytics`, all on one SQLite file.
//!
//! Run with `cargo run -p analytics-examples --example shop`, then e.g.
//!
//! ```text
//! curl -H 'X-Correlation-Id: demo-1' http://127.0.0.1:3000/api/v1/products/hoodie-1
//! curl -H "Authorization: Bearer $TOKEN" \
//!   'http://127.0.0.1:3000/api/v1/analytics/health/api?project=shop&range=1h'
//! ```
//!
//! Settings (environment): `SHOP_BIND` (127.0.0.1:3000), `SHOP_DATABASE_URL`
//! (sqlite://shop-analytics.db), `SHOP_JWT_SECRET` (random per run), `SHOP_AUTH`
//! (`analytics`: our JWTs, the default; `host`: the shop's `SHOP_STAFF_TOKEN`).

use analytics_examples::shop_service::{Shop, ShopConfig};
use analytics_server::embed::AuthMode;
use poem::Server;
use poem::listener::{Acceptor, Listener, TcpListener};

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = ShopConfig {
        database_url: env_or("SHOP_DATABASE_URL", "sqlite://shop-analytics.db"),
        jwt_secret: std::env::var("SHOP_JWT_SECRET").unwrap_or_else(|_| random_secret()),
        auth: match env_or("SHOP_AUTH", "analytics").as_str() {
            "host" => AuthMode::Host,
            _ => AuthMode::Own,
        },
        staff_token: std::env::var("SHOP_STAFF_TOKEN").unwrap_or_else(|_| random_secret()),
    };
    let shop = Shop::start(config.clone()).await?;
    let acceptor = TcpListener::bind(env_or("SHOP_BIND", "127.0.0.1:3000"))
        .into_acceptor()
        .await?;
    let addr = acceptor
        .local_addr()
        .into_iter()
        .next()
        .and_then(|a| a.as_socket_addr().copied())
        .ok_or_else(|| anyhow::anyhow!("the listener has no socket address"))?;
    let token = match config.auth {
        AuthMode::Host => config.staff_token.clone(),
        AuthMode::Own => shop.admin_token()?,
    };
    eprintln!(
        "shop listening on http://{addr}\n\
         try:  curl -H 'X-Correlation-Id: demo-1' http://{addr}/api/v1/products/hoodie-1\n\
         then: curl -H 'Authorization: Bearer {token}' \
         'http://{addr}/api/v1/analytics/health/api?project=shop&range=1h'\n\
         (Ctrl-C stops it)"
    );
    Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(
            shop.app(),
            async {
                let _ = tokio::signal::ctrl_c().await;
            },
            None,
        )
        .await?;
    shop.shutdown().await;
    Ok(())
}

/// 256 random bits from two v4 UUIDs, hex-encoded (a development secret for this run).
fn random_secret() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}
