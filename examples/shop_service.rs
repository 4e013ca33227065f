//! A small shop service (poem) that embeds the analytics backend: its own routes
//! (`/api/v1/products`, `/api/v1/products/:id`, `/api/v1/orders`), the analytics routes
//! nested at `/api/v1/analytics`, and the request-recording middleware around everything,
//! all on one SQLite file. `shop.rs` runs it; `tests/shop.rs` checks it over real HTTP.

use std::sync::Arc;

use analytics_core::{
    AgeLimits, Clock, CollectorOptions, CorrelationId, Event, EventInput, EventLimits,
    IngestContext, ProjectId, SystemClock,
};
use analytics_server::embed::{AnalyticsRoutes, AuthMode, CORRELATION_HEADER, RecordRequests};
use analytics_server::notify::NotifySettings;
use analytics_server::{AppState, BackgroundJobs, HttpLimits, Identity, JwtSettings, Role, Secret};
use poem::http::StatusCode;
use poem::web::{Json, Path};
use poem::{Endpoint, EndpointExt, Request, Route, get, handler, post};
use serde_json::{Value, json};

/// The project the shop's requests and orders are recorded in.
pub const PROJECT: &str = "shop";

/// How the shop is set up.
#[derive(Debug, Clone)]
pub struct ShopConfig {
    /// The analytics store: `sqlite://FILE` (created on first run), `postgres://...` or
    /// `memory://`.
    pub database_url: String,
    /// HS256 key of the analytics JWTs (at least 32 bytes).
    pub jwt_secret: String,
    /// Who authenticates the analytics routes: ours (JWTs) or the shop's staff tokens.
    pub auth: AuthMode,
    /// The shop's own staff token (used when `auth` is [`AuthMode::Host`]).
    pub staff_token: String,
}

/// A running shop: the analytics state (store and collector) its routes share.
#[derive(Debug, Clone)]
pub struct Shop {
    state: AppState,
    config: Arc<ShopConfig>,
    recorder: RecordRequests,
    /// Rollups, alert engine and notification delivery (taken by [`Shop::shutdown`]).
    jobs: Arc<std::sync::Mutex<Option<BackgroundJobs>>>,
}

struct Product {
    id: &'static str,
    name: &'static str,
    collection: &'static str,
    price: f64,
}

const PRODUCTS: &[Product] = &[
    Product {
        id: "hoodie-1",
        name: "Black Rose hoodie",
        collection: "black-rose",
        price: 90.0,
    },
    Product {
        id: "tee-7",
        name: "Love Hurts tee",
        collection: "love-hurts",
        price: 35.0,
    },
    Product {
        id: "cap-2",
        name: "Signature cap",
        collection: "signature",
        price: 25.0,
    },
];

impl Shop {
    /// Opens the analytics store (migrating it) and starts the collector.
    pub async fn start(config: ShopConfig) -> anyhow::Result<Self> {
        let store = analytics_server::connect_store(&config.database_url).await?;
        let jwt = JwtSettings::new(Secret::new(config.jwt_secret.clone()));
        jwt.check_secret()?;
        let state = AppState::new(
            store,
            jwt,
            CollectorOptions::default(),
            HttpLimits::default(),
        );
        let recorder =
            RecordRequests::new(state.collector.clone(), ProjectId::parse(PROJECT)?).source("shop");
        // The background work the binary would do: hourly rollups, alert evaluation and
        // in-app notifications (no email, Slack or SMS settings here), every minute.
        let jobs = BackgroundJobs::start(
            &state,
            std::time::Duration::from_secs(60),
            std::time::Duration::from_secs(60),
            &NotifySettings::default(),
        );
        Ok(Self {
            state,
            config: Arc::new(config),
            recorder,
            jobs: Arc::new(std::sync::Mutex::new(Some(jobs))),
        })
    }

    /// The analytics state (store, collector) the shop shares with the analytics routes.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The request recorder (its `dropped()` counter).
    pub fn recorder(&self) -> &RecordRequests {
        &self.recorder
    }

    /// An admin JWT for the analytics routes (valid one hour).
    pub fn admin_token(&self) -> anyhow::Result<String> {
        Ok(self.state.jwt.issue(
            "shop-admin",
            &[Role::Admin],
            SystemClock.now().timestamp(),
            3600,
        )?)
    }

    /// The whole app: shop routes, the analytics routes at `/api/v1/analytics`, and every
    /// request recorded as an `api_request` event of project `shop`.
    pub fn app(&self) -> impl Endpoint + 'static {
        let analytics = AnalyticsRoutes::new(self.state.clone()).auth(self.config.auth);
        let staff_token = self.config.staff_token.clone();
        // With the shop's auth, its staff middleware decides who reads analytics.
        let analytics = analytics.around(move |ep, mut req: Request| {
            let staff_token = staff_token.clone();
            async move {
                let bearer = req
                    .headers()
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "));
                if bearer == Some(staff_token.as_str()) {
                    req.extensions_mut().insert(Identity::User {
                        sub: "staff".to_owned(),
                        roles: vec![Role::Admin],
                        projects: None,
                    });
                }
                ep.call(req).await
            }
        });
        let shop = self.clone();
        Route::new()
            .at("/api/v1/products", get(list_products))
            .at("/api/v1/products/:id", get(product))
            .at("/api/v1/orders", post(place_order).data(shop))
            .nest("/api/v1/analytics", analytics)
            .with(self.recorder.clone())
    }

    /// Writes every recorded event and stops the collector.
    pub async fn shutdown(&self) {
        let jobs = self
            .jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(jobs) = jobs {
            jobs.stop().await;
        }
        self.state.collector.shutdown().await;
    }
}

#[handler]
fn list_products() -> Json<Value> {
    Json(json!(
        PRODUCTS
            .iter()
            .map(|p| json!({"id": p.id, "name": p.name, "price": p.price}))
            .collect::<Vec<_>>()
    ))
}

#[handler]
fn product(Path(id): Path<String>) -> poem::Result<Json<Value>> {
    let p = PRODUCTS
        .iter()
        .find(|p| p.id == id)
        .ok_or_else(|| poem::Error::from_status(StatusCode::NOT_FOUND))?;
    Ok(Json(
        json!({"id": p.id, "name": p.name, "collection": p.collection, "price": p.price}),
    ))
}

/// Places an order and records it as an `order` event (fire and forget) under the
/// request's correlation id, which the middleware has set.
#[handler]
fn place_order(
    req: &Request,
    body: Json<Value>,
    shop: poem::web::Data<&Shop>,
) -> poem::Result<(StatusCode, Json<Value>)> {
    let product_id = body.get("product_id").and_then(Value::as_str).unwrap_or("");
    let quantity = body.get("quantity").and_then(Value::as_u64).unwrap_or(1);
    let p = PRODUCTS
        .iter()
        .find(|p| p.id == product_id)
        .ok_or_else(|| poem::Error::from_string("unknown product", StatusCode::BAD_REQUEST))?;
    let order_id = format!("o-{}", uuid::Uuid::new_v4().simple());
    let input: EventInput = serde_json::from_value(json!({
        "kind": "order",
        "source": "shop",
        "payload": {"order_id": order_id, "amount": p.price * quantity as f64, "currency": "USD",
                    "items": [{"product_id": p.id, "collection": p.collection,
                               "quantity": quantity, "unit_price": p.price}]}
    }))
    .map_err(poem::error::InternalServerError)?;
    let project = ProjectId::parse(PROJECT).map_err(poem::error::InternalServerError)?;
    let correlation = req
        .headers()
        .get(CORRELATION_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| CorrelationId::parse(v).ok());
    let ctx = IngestContext {
        now: SystemClock.now(),
        default_project: &project,
        fixed_project: true,
        request_correlation_id: correlation.as_ref(),
        limits: &EventLimits::default(),
        age_limits: &AgeLimits::default(),
    };
    match Event::parse(input, &ctx) {
        Ok(event) => {
            // Analytics never fails an order: a full queue drops the event.
            let _ = shop.state.collector.record(event);
        }
        Err(errors) => eprintln!("order event rejected: {errors}"),
    }
    Ok((
        StatusCode::CREATED,
        Json(json!({"order_id": order_id, "amount": p.price * quantity as f64})),
    ))
}
