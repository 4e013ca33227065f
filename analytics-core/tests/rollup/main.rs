//! The rollup engine end to end on the in-memory store, driven by a fake clock: the
//! scheduler's catch-up, late data, retention and idempotence, and the reader.

mod health;
mod read;
mod scheduler;

use std::sync::Arc;

use analytics_core::event::Event;
use analytics_core::memory::MemoryStore;
use analytics_core::ports::Store;
use analytics_core::rollup::spec::RollupSpecs;
use analytics_core::rollup::{Dimensions, Rollup, RollupQuery};
use analytics_core::testkit::fixtures::{self, project};
use analytics_core::{Granularity, MetricName, TimeRange};
use chrono::{DateTime, Duration, Utc};

/// A store and the default specs.
pub fn setup() -> (Arc<MemoryStore>, Arc<RollupSpecs>) {
    (
        Arc::new(MemoryStore::new()),
        Arc::new(RollupSpecs::defaults()),
    )
}

/// `per_hour` api requests in every hour of `[start, start + hours)`, latencies varying.
pub fn traffic(start: DateTime<Utc>, hours: i64, per_hour: i64) -> Vec<Event> {
    let mut out = Vec::new();
    for h in 0..hours {
        for i in 0..per_hour {
            let at = start + Duration::hours(h) + Duration::seconds(i * 3600 / per_hour);
            let status = if i % 10 == 0 { 503 } else { 200 };
            let route = if i % 2 == 0 { "/a" } else { "/b" };
            out.push(fixtures::api_request(
                at,
                route,
                status,
                ((h * 7 + i * 13) % 500) as f64 + 1.0,
            ));
        }
    }
    out
}

/// Writes events in batches.
pub async fn ingest(store: &dyn Store, events: &[Event]) {
    for chunk in events.chunks(500) {
        store.write_batch(chunk).await.expect("write");
    }
}

/// All rows of one granularity for the overall `api.latency_ms` series (or all metrics).
pub async fn rows(store: &dyn Store, g: Granularity, metric: Option<&str>) -> Vec<Rollup> {
    store
        .query_rollups(&RollupQuery {
            project: project("shop"),
            granularity: g,
            range: TimeRange::new(
                fixtures::t("2000-01-01T00:00:00Z"),
                fixtures::t("2100-01-01T00:00:00Z"),
            )
            .expect("range"),
            metrics: metric
                .map(|m| vec![MetricName::parse(m).expect("metric")])
                .unwrap_or_default(),
            dimensions: Dimensions::none(),
            dimension_names: metric.map(|_| vec![]),
        })
        .await
        .expect("query")
}
