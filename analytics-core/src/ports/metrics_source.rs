//! `MetricsSource`: the current value of a named metric over a window.

use async_trait::async_trait;

use crate::alert::Stat;
use crate::error::Result;
use crate::ids::{MetricName, ProjectId};
use crate::rollup::Dimensions;
use crate::time::TimeRange;

/// One metric value to read.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricQuery {
    /// The project.
    pub project: ProjectId,
    /// The metric.
    pub metric: MetricName,
    /// Which statistic.
    pub stat: Stat,
    /// Only observations with these dimension values.
    pub dimensions: Dimensions,
    /// The window.
    pub window: TimeRange,
}

/// Something that can answer metric queries: the store (rollups plus the raw tail), or a
/// Prometheus scrape.
#[async_trait]
pub trait MetricsSource: Send + Sync + std::fmt::Debug {
    /// The value, or `None` when there is no data in the window.
    async fn metric_value(&self, query: &MetricQuery) -> Result<Option<f64>>;
}
