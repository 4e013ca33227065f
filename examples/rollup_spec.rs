//! A custom rollup spec: the embedding service's own event kind (`search`, with the engine
//! that answered and its latency) rolled up hourly with t-digest percentiles per engine,
//! next to the default metrics, then read back for the last three hours.
//!
//! Run with `cargo run -p analytics-examples --example rollup_spec`.

use std::sync::Arc;

use analytics_core::ids::MetricName;
use analytics_core::memory::MemoryStore;
use analytics_core::ports::EventSink;
use analytics_core::rollup::read::RollupReader;
use analytics_core::rollup::scheduler::{RollupScheduler, SchedulerOptions};
use analytics_core::rollup::spec::{RollupSpec, RollupSpecs, ValueSource};
use analytics_core::{
    AgeLimits, Clock, Event, EventInput, EventKind, EventLimits, IngestContext, ProjectId,
    SystemClock, TimeRange,
};
use serde_json::json;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let metric = MetricName::parse("search.latency_ms")?;
    let specs = RollupSpecs::defaults().with(RollupSpec {
        metric: metric.clone(),
        kind: EventKind::Custom("search".to_owned()),
        value: ValueSource::Field("latency_ms".to_owned()),
        filters: vec![],
        // One overall row and one per engine, per bucket.
        groupings: vec![vec![], vec!["engine".to_owned()]],
        description: "Search latency in milliseconds, per engine.".to_owned(),
    });
    specs.validate()?;

    let store = Arc::new(MemoryStore::new());
    let project = ProjectId::parse("shop")?;
    let now = SystemClock.now();
    let limits = EventLimits::default();
    let ctx = IngestContext {
        now,
        default_project: &project,
        fixed_project: true,
        request_correlation_id: None,
        limits: &limits,
        age_limits: &AgeLimits::default(),
    };
    // Three hours of searches: the `vector` engine slower than `keyword`.
    let mut events = Vec::new();
    for i in 0..600u32 {
        let engine = if i % 3 == 0 { "vector" } else { "keyword" };
        let base = if engine == "vector" { 120.0 } else { 15.0 };
        let at = now - chrono::Duration::seconds(i64::from(i) * 18);
        let input: EventInput = serde_json::from_value(json!({
            "kind": "search",
            "occurred_at": at.to_rfc3339(),
            "payload": {"engine": engine, "latency_ms": base + f64::from(i % 40), "results": i % 25},
        }))?;
        events.push(Event::parse(input, &ctx).map_err(|e| anyhow::anyhow!("{e}"))?);
    }
    store.write_batch(&events).await?;

    // Roll up every complete hour (what the server's scheduler loop does each minute).
    let scheduler = RollupScheduler::new(specs.clone(), SchedulerOptions::default());
    let report = scheduler.tick(&*store, now).await?;
    eprintln!(
        "rolled {} hours into {} rows",
        report.hours_rolled, report.rows_written
    );

    // Complete hours come from the rollups, the open hour from raw events.
    let reader = RollupReader::new(store, Arc::new(specs));
    let range = TimeRange::ending_at(now, chrono::Duration::hours(3))?;
    let mut per_engine = reader
        .breakdown(&project, &metric, &["engine"], range)
        .await?;
    per_engine.sort_by(|a, b| format!("{:?}", a.0).cmp(&format!("{:?}", b.0)));
    for (dims, stats) in per_engine {
        eprintln!(
            "{dims:?}: {} searches, p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms",
            stats.count,
            stats.p50.unwrap_or(f64::NAN),
            stats.p95.unwrap_or(f64::NAN),
            stats.max.unwrap_or(f64::NAN)
        );
    }
    Ok(())
}
