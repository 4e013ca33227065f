//! Data generators shared by the criterion benchmarks in `benches/`: seeded value
//! distributions and synthetic hours of events.

use analytics_core::event::{ApiRequest, Event, EventKind, Payload};
use analytics_core::{CorrelationId, EventId, ProjectId};
use chrono::{DateTime, Duration, Utc};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, LogNormal};
use uuid::Uuid;

/// Whether the benchmark binary was started by `cargo bench` (`--bench`); under
/// `cargo test --all-targets` it runs each benchmark once, so data sets shrink.
pub fn full_size() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// `n` latency-like lognormal values (median ~20).
pub fn lognormal(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let d = LogNormal::new(3.0, 1.0).unwrap_or_else(|e| panic!("{e}"));
    (0..n).map(|_| d.sample(&mut rng)).collect()
}

/// `n` API request events spread over the hour starting at `hour`, over 50 routes and a
/// 2% server-error rate.
pub fn api_hour(n: usize, hour: DateTime<Utc>, seed: u64) -> Vec<Event> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let latency = LogNormal::new(3.0, 1.0).unwrap_or_else(|e| panic!("{e}"));
    let project = ProjectId::default_project();
    let routes: Vec<String> = (0..50).map(|i| format!("/api/v1/r{i}/:id")).collect();
    let correlation = CorrelationId::parse("bench").unwrap_or_else(|e| panic!("{e}"));
    (0..n)
        .map(|i| {
            let at = hour + Duration::microseconds((i as i64 * 3_600_000_000) / n as i64);
            let status = if rng.random_range(0..100) < 2 {
                503
            } else {
                200
            };
            Event {
                id: EventId(Uuid::from_u128(i as u128 + 1)),
                project: project.clone(),
                kind: EventKind::ApiRequest,
                occurred_at: at,
                received_at: at,
                correlation_id: correlation.clone(),
                user_id: None,
                session_id: None,
                source: None,
                sample_rate: 1.0,
                payload: Payload::ApiRequest(ApiRequest {
                    method: "GET".to_owned(),
                    route: routes[rng.random_range(0..routes.len())].clone(),
                    status,
                    latency_ms: latency.sample(&mut rng),
                }),
                properties: serde_json::Map::new(),
            }
        })
        .collect()
}
