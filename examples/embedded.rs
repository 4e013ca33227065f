//! Embedding the analytics core in a service: validate raw events, store them through the
//! `EventSink` port (here the in-memory store), and read them back with a filter.
//!
//! Run with `cargo run -p analytics-examples --example embedded`.

use analytics_core::memory::MemoryStore;
use analytics_core::ports::{EventFilter, EventSink, EventStore};
use analytics_core::{
    AgeLimits, Clock, Event, EventInput, EventKind, EventLimits, IngestContext, PageRequest,
    ProjectId, SystemClock,
};
use serde_json::json;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let store = MemoryStore::new();
    let clock = SystemClock;
    let project = ProjectId::parse("shop")?;
    let limits = EventLimits::default();
    let ctx = IngestContext {
        now: clock.now(),
        default_project: &project,
        fixed_project: false,
        request_correlation_id: None,
        limits: &limits,
        age_limits: &AgeLimits::default(),
    };

    let raw = vec![
        json!({"kind": "api_request", "payload": {"method": "GET", "route": "/api/v1/products/:id", "status": 200, "latency_ms": 41.5}}),
        json!({"kind": "order", "payload": {"order_id": "o-1001", "amount": 180.0, "currency": "USD",
               "items": [{"product_id": "hoodie-1", "collection": "black-rose", "quantity": 2, "unit_price": 90.0}]}}),
        json!({"kind": "api_request", "payload": {"method": "GET", "route": "/x", "status": 200, "latency_ms": -3}}),
    ];
    let mut events = Vec::new();
    for value in raw {
        let input: EventInput = serde_json::from_value(value)?;
        match Event::parse(input, &ctx) {
            Ok(event) => events.push(event),
            Err(errors) => eprintln!("rejected: {errors}"),
        }
    }

    let report = store.write_batch(&events).await?;
    eprintln!(
        "stored {} events, {} duplicates",
        report.inserted(),
        report.duplicates()
    );
    let again = store.write_batch(&events).await?;
    eprintln!("re-sent: {} duplicates", again.duplicates());

    let filter = EventFilter {
        kinds: vec![EventKind::ApiRequest],
        ..Default::default()
    };
    let page = store.query_events(&filter, &PageRequest::first(10)).await?;
    for e in &page.items {
        eprintln!(
            "{} {} {:?} {}",
            e.occurred_at,
            e.kind,
            e.route(),
            e.correlation_id
        );
    }
    Ok(())
}
