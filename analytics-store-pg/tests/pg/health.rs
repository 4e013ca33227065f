//! The health figures against the raw truth on PostgreSQL (the shared cases of
//! `analytics_core::testkit::health`): every preset window, before and after the rollup tick,
//! and after retention deleted the raw events of the older days.

use std::sync::Arc;

use analytics_core::testkit::health;

use crate::support::fresh_pg;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_figures_equal_the_raw_truth_before_and_after_the_rollup_tick() {
    let Some(store) = fresh_pg().await else {
        return;
    };
    health::health_figures_equal_the_raw_truth_before_and_after_the_rollup_tick(Arc::new(store))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_figures_keep_their_totals_after_retention_deletes_raw_events() {
    let Some(store) = fresh_pg().await else {
        return;
    };
    health::health_figures_keep_their_totals_after_retention_deletes_raw_events(Arc::new(store))
        .await;
}
