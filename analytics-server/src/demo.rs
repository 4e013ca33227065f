//! `analytics-server demo`: a realistic, reproducible month for one project, written through
//! the store's batch path so every route has something to show: `api_request` traffic (a
//! diurnal cycle, ~20 routes with their own weights and latencies, a weekend dip, one burst
//! of server errors and one latency incident), and the shop behind it ([`commerce`]): ML
//! jobs of the three pipelines on Replicate, Tripo, HuggingFace and Gemini (several status
//! events per job, costs, failures), shopping sessions walking the funnel with realistic
//! drop-off, orders across Black Rose, Love Hurts and Signature (a few in EUR), and
//! inventory snapshots.

use analytics_core::event::{
    ApiRequest, AssetStage, FunnelStep, Inventory, JobStatus, LineItem, MlJob, Order, Pipeline,
};
use analytics_core::ports::Store;
use analytics_core::{CorrelationId, Event, EventId, EventKind, Payload, ProjectId};
use chrono::{DateTime, Datelike, Duration, Timelike, Utc};
use serde_json::Map;

/// `(method, route, weight, typical latency in ms)`.
const ROUTES: [(&str, &str, u32, f64); 20] = [
    ("GET", "/api/v1/products", 30, 35.0),
    ("GET", "/api/v1/products/:id", 25, 28.0),
    ("GET", "/api/v1/collections", 10, 40.0),
    ("GET", "/api/v1/collections/:slug", 8, 45.0),
    ("GET", "/api/v1/search", 12, 120.0),
    ("GET", "/api/v1/cart", 9, 22.0),
    ("POST", "/api/v1/cart/items", 6, 48.0),
    ("DELETE", "/api/v1/cart/items/:id", 2, 30.0),
    ("POST", "/api/v1/checkout", 3, 260.0),
    ("POST", "/api/v1/payments", 2, 420.0),
    ("GET", "/api/v1/orders", 3, 55.0),
    ("GET", "/api/v1/orders/:id", 3, 38.0),
    ("POST", "/api/v1/auth/login", 3, 90.0),
    ("POST", "/api/v1/auth/refresh", 4, 15.0),
    ("GET", "/api/v1/me", 7, 18.0),
    ("PATCH", "/api/v1/me", 1, 60.0),
    ("POST", "/api/v1/assets/upload", 1, 900.0),
    ("GET", "/api/v1/assets/:id", 4, 65.0),
    ("POST", "/api/v1/ml/describe", 1, 1500.0),
    ("GET", "/healthz", 6, 2.0),
];

/// What to generate.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// The project.
    pub project: ProjectId,
    /// The traffic ends here (exclusive).
    pub end: DateTime<Utc>,
    /// Days of traffic before `end`.
    pub days: u32,
    /// Average requests per hour (the diurnal cycle swings around it).
    pub per_hour: u32,
    /// Seed of the generator (the same seed gives the same traffic, ids included).
    pub seed: u64,
}

/// A small deterministic generator (SplitMix64): demo data needs no cryptographic quality.
#[derive(Debug, Clone)]
struct SplitMix(u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A log-normal factor with median 1.
    fn spread(&mut self, sigma: f64) -> f64 {
        // Box-Muller.
        let (u1, u2) = (self.unit().max(1e-12), self.unit());
        let n = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        (sigma * n).exp()
    }
}

/// The traffic, oldest first: per hour, `per_hour` scaled by a diurnal curve (low at 04:00
/// UTC, high at 16:00) and a weekend dip; a 90-minute 5xx burst on `/api/v1/payments` and
/// `/api/v1/checkout` four days before the end, and a 3-hour latency incident on search
/// and products nine days before the end.
pub fn traffic(o: &DemoOptions) -> Vec<Event> {
    let mut rng = SplitMix(o.seed);
    let total_weight: u32 = ROUTES.iter().map(|r| r.2).sum();
    let start = o.end - Duration::days(i64::from(o.days));
    let burst_start = o.end - Duration::days(4) + Duration::hours(2);
    let burst_end = burst_start + Duration::minutes(90);
    let slow_start = o.end - Duration::days(9) + Duration::hours(5);
    let slow_end = slow_start + Duration::hours(3);
    let mut out = Vec::new();
    let mut hour = start;
    while hour < o.end {
        let h = f64::from(hour.hour());
        let diurnal = 1.0 + 0.7 * ((h - 10.0) / 24.0 * std::f64::consts::TAU).sin();
        let weekend = if hour.weekday().num_days_from_monday() >= 5 {
            0.6
        } else {
            1.0
        };
        let n = (f64::from(o.per_hour) * diurnal * weekend * rng.spread(0.1)).round() as i64;
        for _ in 0..n.max(0) {
            let at = hour + Duration::milliseconds((rng.unit() * 3_600_000.0) as i64);
            if at >= o.end {
                continue;
            }
            let mut pick = (rng.unit() * f64::from(total_weight)) as u32;
            let &(method, route, _, typical) = ROUTES
                .iter()
                .find(|r| {
                    if pick < r.2 {
                        true
                    } else {
                        pick -= r.2;
                        false
                    }
                })
                .unwrap_or(&ROUTES[0]);
            let mut latency = typical * rng.spread(0.45);
            if (slow_start..slow_end).contains(&at) && route.contains("/products")
                || (slow_start..slow_end).contains(&at) && route.contains("/search")
            {
                latency *= 8.0;
            }
            let burst = (burst_start..burst_end).contains(&at)
                && (route.ends_with("/payments") || route.ends_with("/checkout"));
            let roll = rng.unit();
            let status = if burst && roll < 0.6 {
                503
            } else if roll < 0.004 {
                500
            } else if roll < 0.03 {
                404
            } else if method == "POST" && roll < 0.05 {
                201
            } else {
                200
            };
            out.push(event(o, &mut rng, at, method, route, status, latency));
        }
        hour += Duration::hours(1);
    }
    out.sort_by_key(|e| e.occurred_at);
    out
}

fn event(
    o: &DemoOptions,
    rng: &mut SplitMix,
    at: DateTime<Utc>,
    method: &str,
    route: &str,
    status: u16,
    latency: f64,
) -> Event {
    base_event(
        o,
        rng,
        at,
        EventKind::ApiRequest,
        Payload::ApiRequest(ApiRequest {
            method: method.to_owned(),
            route: route.to_owned(),
            status,
            latency_ms: (latency * 1000.0).round() / 1000.0,
        }),
    )
}

/// An event of `kind` with a reproducible id (no session or user).
fn base_event(
    o: &DemoOptions,
    rng: &mut SplitMix,
    at: DateTime<Utc>,
    kind: EventKind,
    payload: Payload,
) -> Event {
    let at = analytics_core::time::truncate_to_micros(at);
    let id = uuid::Builder::from_random_bytes(
        [rng.next_u64().to_le_bytes(), rng.next_u64().to_le_bytes()]
            .concat()
            .try_into()
            .unwrap_or([0; 16]),
    )
    .into_uuid();
    Event {
        id: EventId(id),
        project: o.project.clone(),
        kind,
        occurred_at: at,
        received_at: at,
        correlation_id: CorrelationId::parse(id.simple().to_string())
            .unwrap_or_else(|_| CorrelationId::parse("demo").expect("valid id")),
        user_id: None,
        session_id: None,
        source: Some("demo".to_owned()),
        sample_rate: 1.0,
        payload,
        properties: Map::new(),
    }
}

/// `(provider, typical seconds, failure share, cost per job in USD or none)`.
const PROVIDERS: [(&str, f64, f64, Option<f64>); 4] = [
    ("replicate", 45.0, 0.06, Some(0.045)),
    ("tripo", 90.0, 0.12, Some(0.20)),
    ("huggingface", 8.0, 0.04, None),
    ("gemini", 3.0, 0.02, None),
];

/// `(slug or display name as shops send it, products, typical unit price)`.
const COLLECTIONS: [(&str, u32, f64); 3] = [
    ("Black Rose", 12, 89.0),
    ("love_hurts", 10, 65.0),
    ("signature", 8, 140.0),
];

/// The shop behind the API traffic, oldest first: per hour about `per_hour / 30` ML jobs
/// (queued, running and a terminal event each; a few never finish) and `per_hour / 10`
/// shopping sessions (60% view a product, 35% of those add to the cart, 60% of those start
/// a checkout, 70% of those order; one in fifteen orders is in EUR; some sessions are known
/// by user only), and a daily inventory snapshot per product.
pub fn commerce(o: &DemoOptions) -> Vec<Event> {
    let mut rng = SplitMix(o.seed ^ 0x5EED_C0DE);
    let start = o.end - Duration::days(i64::from(o.days));
    let mut out = Vec::new();
    let mut job = 0u64;
    let mut session = 0u64;
    let mut hour = start;
    while hour < o.end {
        let jobs = (f64::from(o.per_hour) / 30.0 * rng.spread(0.3)).round() as u64;
        for _ in 0..jobs {
            job += 1;
            let at = hour + Duration::milliseconds((rng.unit() * 3_600_000.0) as i64);
            let pipeline = Pipeline::ALL[(rng.unit() * 3.0) as usize % 3];
            let (provider, secs, fail, cost) = PROVIDERS[(rng.unit() * 4.0) as usize % 4];
            let stage = (pipeline == Pipeline::Assets)
                .then(|| AssetStage::ALL[(rng.unit() * 3.0) as usize % 3]);
            let roll = rng.unit();
            let terminal = if roll < 0.02 {
                None
            } else if roll < 0.02 + fail {
                Some(JobStatus::Failed)
            } else if roll < 0.04 + fail {
                Some(JobStatus::Cancelled)
            } else {
                Some(JobStatus::Succeeded)
            };
            let duration = secs * 1000.0 * rng.spread(0.5);
            let statuses = [Some(JobStatus::Queued), Some(JobStatus::Running), terminal];
            for (i, status) in statuses.into_iter().flatten().enumerate() {
                let t = at + Duration::milliseconds((duration * i as f64 / 2.0) as i64);
                if t >= o.end {
                    break;
                }
                let payload = Payload::MlJob(MlJob {
                    pipeline,
                    provider: provider.to_owned(),
                    status,
                    duration_ms: if status.is_terminal() {
                        duration.round()
                    } else {
                        0.0
                    },
                    cost_usd: cost.filter(|_| status.is_terminal()),
                    model: None,
                    job_id: Some(format!("job-{job}")),
                    stage,
                });
                out.push(base_event(o, &mut rng, t, EventKind::MlJob, payload));
            }
        }
        let sessions = (f64::from(o.per_hour) / 10.0 * rng.spread(0.2)).round() as u64;
        for _ in 0..sessions {
            session += 1;
            shop_session(o, &mut rng, hour, session, &mut out);
        }
        if hour.hour() == 6 {
            for (name, products, _) in COLLECTIONS {
                for p in 0..products {
                    let payload = Payload::Inventory(Inventory {
                        product_id: product_id(name, p),
                        collection: analytics_core::event::canonical_collection(name),
                        on_hand: (rng.unit() * 120.0) as u64,
                    });
                    out.push(base_event(o, &mut rng, hour, EventKind::Inventory, payload));
                }
            }
        }
        hour += Duration::hours(1);
    }
    out.retain(|e| e.occurred_at < o.end);
    out.sort_by_key(|e| e.occurred_at);
    out
}

fn product_id(collection: &str, n: u32) -> String {
    let slug = analytics_core::event::canonical_collection(collection).unwrap_or_default();
    format!("{slug}-{n:02}")
}

/// One shopping session starting in `hour`: a landing page view, then each funnel step
/// with its drop-off, ending in an order for some.
fn shop_session(
    o: &DemoOptions,
    rng: &mut SplitMix,
    hour: DateTime<Utc>,
    n: u64,
    out: &mut Vec<Event>,
) {
    let (name, products, price) = COLLECTIONS[(rng.unit() * 3.0) as usize % 3];
    let slug = analytics_core::event::canonical_collection(name);
    let product = product_id(name, (rng.unit() * f64::from(products)) as u32 % products);
    let mut at = hour + Duration::milliseconds((rng.unit() * 3_600_000.0) as i64);
    let user_only = rng.unit() < 0.1;
    let mut push = |rng: &mut SplitMix, at: DateTime<Utc>, kind: EventKind, payload: Payload| {
        let mut e = base_event(o, rng, at, kind, payload);
        if user_only {
            e.user_id = Some(format!("user-{}", n % 500));
        } else {
            e.session_id = Some(format!("sess-{n}"));
            e.user_id = n.is_multiple_of(3).then(|| format!("user-{}", n % 500));
        }
        out.push(e);
    };
    let step = |path: Option<&str>, quantity: Option<u32>, value: Option<f64>| {
        Payload::Funnel(FunnelStep {
            path: path.map(str::to_owned),
            product_id: Some(product.clone()),
            collection: slug.clone(),
            quantity,
            value,
        })
    };
    push(rng, at, EventKind::PageView, step(Some("/"), None, None));
    let unit_price = (price * rng.spread(0.2) * 100.0).round() / 100.0;
    let quantity = 1 + (rng.unit() * 2.0) as u32;
    let chain = [
        (0.6, EventKind::ProductView),
        (0.35, EventKind::CartAdd),
        (0.6, EventKind::CheckoutStart),
        (0.7, EventKind::Order),
    ];
    for (share, kind) in chain {
        if rng.unit() >= share {
            return;
        }
        at += Duration::seconds(20 + (rng.unit() * 600.0) as i64);
        let payload = match kind {
            EventKind::Order => {
                let currency = if n.is_multiple_of(15) { "EUR" } else { "USD" };
                let items = vec![LineItem {
                    product_id: product.clone(),
                    collection: slug.clone(),
                    quantity,
                    unit_price,
                }];
                Payload::Order(Order {
                    order_id: format!("order-{n}"),
                    amount: f64::from(quantity) * unit_price,
                    currency: currency.to_owned(),
                    items,
                })
            }
            EventKind::CartAdd => step(None, Some(quantity), Some(unit_price)),
            EventKind::CheckoutStart => step(None, None, Some(f64::from(quantity) * unit_price)),
            _ => step(None, None, None),
        };
        push(rng, at, kind, payload);
    }
}

/// Writes the demo traffic through `write_batch` in batches of 1000; returns how many
/// events were new (a re-run with the same seed and end writes none).
pub async fn fill(store: &dyn Store, o: &DemoOptions) -> analytics_core::Result<(u64, u64)> {
    let mut events = traffic(o);
    events.extend(commerce(o));
    let mut accepted = 0;
    for chunk in events.chunks(1000) {
        accepted += store.write_batch(chunk).await?.inserted() as u64;
    }
    Ok((events.len() as u64, accepted))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> DemoOptions {
        DemoOptions {
            project: ProjectId::parse("demo").unwrap(),
            end: DateTime::parse_from_rfc3339("2024-03-10T12:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
            days: 30,
            per_hour: 300,
            seed: 1,
        }
    }

    fn api(e: &Event) -> &ApiRequest {
        match &e.payload {
            Payload::ApiRequest(r) => r,
            _ => unreachable!("demo events are api requests"),
        }
    }

    #[test]
    fn demo_month_is_reproducible_and_has_its_incidents() {
        let o = options();
        let a = traffic(&o);
        assert_eq!(a, traffic(&o), "same seed, same traffic");
        let n = a.len() as f64;
        assert!((n / (30.0 * 24.0 * 300.0) - 0.9).abs() < 0.1, "{n} events");
        let routes: std::collections::HashSet<_> =
            a.iter().map(|e| (&api(e).method, &api(e).route)).collect();
        assert_eq!(routes.len(), 20);
        let start = o.end - Duration::days(30);
        assert!(
            a.iter()
                .all(|e| start <= e.occurred_at && e.occurred_at < o.end)
        );
        // The error burst: 5xx of payments and checkout concentrate in 90 minutes.
        let burst = o.end - Duration::days(4) + Duration::hours(2);
        let in_burst = |e: &&Event| (burst..burst + Duration::minutes(90)).contains(&e.occurred_at);
        let burst_errors = a
            .iter()
            .filter(in_burst)
            .filter(|e| api(e).status == 503)
            .count();
        assert!(burst_errors >= 4, "{burst_errors}");
        assert_eq!(
            a.iter().filter(|e| api(e).status == 503).count(),
            burst_errors
        );
        // The diurnal cycle: 16:00 is busier than 04:00.
        let at_hour = |h: u32| a.iter().filter(|e| e.occurred_at.hour() == h).count();
        assert!(at_hour(16) > 2 * at_hour(4));
    }

    #[test]
    fn demo_shop_has_jobs_orders_sessions_and_inventory() {
        let o = options();
        let a = commerce(&o);
        assert_eq!(a, commerce(&o), "same seed, same data");
        let kinds = |k: EventKind| a.iter().filter(|e| e.kind == k).count();
        for k in [
            EventKind::MlJob,
            EventKind::Order,
            EventKind::PageView,
            EventKind::ProductView,
            EventKind::CartAdd,
            EventKind::CheckoutStart,
            EventKind::Inventory,
        ] {
            assert!(kinds(k.clone()) > 0, "{k}");
        }
        // Drop-off: fewer events at every later step.
        assert!(kinds(EventKind::PageView) > kinds(EventKind::ProductView));
        assert!(kinds(EventKind::ProductView) > kinds(EventKind::CartAdd));
        assert!(kinds(EventKind::CheckoutStart) > kinds(EventKind::Order));
        let mut providers = std::collections::BTreeSet::new();
        let mut currencies = std::collections::BTreeSet::new();
        let mut collections = std::collections::BTreeSet::new();
        let mut failed = 0;
        for e in &a {
            match &e.payload {
                Payload::MlJob(j) => {
                    providers.insert(j.provider.clone());
                    failed += usize::from(j.status == JobStatus::Failed);
                    assert_eq!(j.stage.is_some(), j.pipeline == Pipeline::Assets);
                }
                Payload::Order(x) => {
                    currencies.insert(x.currency.clone());
                    collections.extend(x.items.iter().filter_map(|i| i.collection.clone()));
                }
                _ => {}
            }
        }
        assert_eq!(providers.len(), 4);
        assert!(failed > 0);
        assert_eq!(currencies.into_iter().collect::<Vec<_>>(), ["EUR", "USD"]);
        assert_eq!(
            collections.into_iter().collect::<Vec<_>>(),
            ["black-rose", "love-hurts", "signature"]
        );
    }
}

/// An event as a client posts it to `POST /api/v1/analytics/events` (its project comes from
/// the API key, its receive time from the server).
pub fn ingest_json(e: &Event) -> serde_json::Value {
    let mut v = serde_json::to_value(e).unwrap_or_default();
    if let Some(m) = v.as_object_mut() {
        m.remove("project");
        m.remove("received_at");
    }
    v
}

/// What an HTTP fill did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Posted {
    /// Events sent.
    pub sent: u64,
    /// Stored (2xx and not a duplicate or rejection).
    pub accepted: u64,
    /// Already stored.
    pub duplicates: u64,
    /// Refused per event (most often: older than the project's retention).
    pub rejected: u64,
}

/// Sends the demo data through the HTTP ingest API at `base` (`http://host:port`) with the
/// API key `api_key`, in batches of 500; stops at the first answer that is not 2xx.
pub async fn post(base: &str, api_key: &str, o: &DemoOptions) -> anyhow::Result<Posted> {
    let mut events = traffic(o);
    events.extend(commerce(o));
    events.sort_by_key(|e| e.occurred_at);
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .build()?;
    let url = format!("{}/api/v1/analytics/events", base.trim_end_matches('/'));
    let mut posted = Posted::default();
    for chunk in events.chunks(500) {
        let body = serde_json::json!({
            "events": chunk.iter().map(ingest_json).collect::<Vec<_>>(),
        });
        let r = http
            .post(&url)
            .header("x-api-key", api_key)
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&body)?)
            .send()
            .await?;
        let status = r.status();
        let text = r.text().await?;
        if !status.is_success() {
            anyhow::bail!("{url} answered {status}: {text}");
        }
        let answer: serde_json::Value = serde_json::from_str(&text)?;
        let count = |k: &str| answer[k].as_u64().unwrap_or(0);
        posted.sent += chunk.len() as u64;
        posted.accepted += count("accepted");
        posted.duplicates += count("duplicates");
        posted.rejected += count("rejected");
    }
    Ok(posted)
}
