//! The metric catalog: every metric that can be read, charted or alerted on, with the
//! statistics that make sense for it and the dimensions it is grouped by, derived from the
//! rollup specs (so a metric exists exactly when it is rolled up).

use std::collections::BTreeSet;

use crate::alert::Stat;
use crate::error::FieldError;
use crate::event::EventKind;
use crate::ids::MetricName;
use crate::rollup::Dimensions;
use crate::rollup::spec::{RollupSpec, RollupSpecs, ValueSource, stored_dimension_name};

/// One metric of the catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricInfo {
    /// The name configs and queries use (`api.latency_ms`).
    pub metric: MetricName,
    /// The event kind it is computed from.
    pub kind: EventKind,
    /// The statistics that are meaningful: all of them for measured values; `count`, `sum`
    /// and `rate` for event counts; plus `avg` (the failure rate) for failure flags.
    pub stats: Vec<Stat>,
    /// Every dimension name it can be filtered by (stored names, sorted).
    pub dimensions: Vec<String>,
    /// The dimension sets that have their own series (each sorted; empty = overall). A
    /// query names exactly one of them.
    pub groupings: Vec<Vec<String>>,
    /// What it measures.
    pub description: String,
}

impl MetricInfo {
    fn from_spec(spec: &RollupSpec) -> Self {
        let stats = match spec.value {
            ValueSource::One => vec![Stat::Count, Stat::Sum, Stat::Rate],
            ValueSource::FailureFlag => vec![Stat::Count, Stat::Sum, Stat::Avg, Stat::Rate],
            _ => Stat::ALL.to_vec(),
        };
        let groupings: Vec<Vec<String>> = spec
            .groupings
            .iter()
            .map(|g| {
                let mut names: Vec<String> = g.iter().map(|d| stored_dimension_name(d)).collect();
                names.sort();
                names
            })
            .collect();
        let dimensions: BTreeSet<String> = groupings.iter().flatten().cloned().collect();
        Self {
            metric: spec.metric.clone(),
            kind: spec.kind.clone(),
            stats,
            dimensions: dimensions.into_iter().collect(),
            groupings,
            description: spec.description.clone(),
        }
    }

    /// Whether a series with exactly these dimension names exists.
    pub fn has_grouping<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> bool {
        let mut wanted: Vec<&str> = names.into_iter().collect();
        wanted.sort_unstable();
        self.groupings
            .iter()
            .any(|g| g.iter().map(String::as_str).eq(wanted.iter().copied()))
    }

    /// Checks that `stat` is offered and that `dimensions` name one of the groupings;
    /// errors name the field (`stat`, `dimensions.<name>`, `dimensions`).
    pub fn check(&self, stat: Stat, dimensions: &Dimensions) -> Result<(), FieldError> {
        if !self.stats.contains(&stat) {
            let offered: Vec<&str> = self.stats.iter().map(|s| s.as_str()).collect();
            return Err(FieldError::new(
                "stat",
                format!("{} offers {}", self.metric, offered.join(", ")),
            ));
        }
        if let Some(unknown) = dimensions
            .names()
            .find(|n| !self.dimensions.iter().any(|d| d == n))
        {
            return Err(FieldError::new(
                format!("dimensions.{unknown}"),
                format!("{} is not grouped by {unknown}", self.metric),
            ));
        }
        if !self.has_grouping(dimensions.names()) {
            let sets: Vec<String> = self
                .groupings
                .iter()
                .map(|g| format!("{{{}}}", g.join(", ")))
                .collect();
            return Err(FieldError::new(
                "dimensions",
                format!(
                    "{} has series grouped by {} only",
                    self.metric,
                    sets.join(", ")
                ),
            ));
        }
        Ok(())
    }
}

/// Every metric, in spec order.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricCatalog {
    metrics: Vec<MetricInfo>,
}

impl MetricCatalog {
    /// The catalog of `specs`.
    pub fn from_specs(specs: &RollupSpecs) -> Self {
        Self {
            // Session funnel state and snapshot times are read by their routes, not
            // charted or alerted on.
            metrics: specs
                .0
                .iter()
                .filter(|s| {
                    !matches!(
                        s.value,
                        ValueSource::SessionFunnel | ValueSource::OccurredAt
                    )
                })
                .map(MetricInfo::from_spec)
                .collect(),
        }
    }

    /// The metrics.
    pub fn iter(&self) -> impl Iterator<Item = &MetricInfo> {
        self.metrics.iter()
    }

    /// The metric named `name`.
    pub fn get(&self, name: &MetricName) -> Option<&MetricInfo> {
        self.metrics.iter().find(|m| &m.metric == name)
    }

    /// Resolves a metric name as a client wrote it (field `metric` when unknown or
    /// malformed).
    pub fn resolve(&self, name: &str) -> Result<&MetricInfo, FieldError> {
        let unknown = || FieldError::new("metric", format!("unknown metric {name:?}"));
        let name = MetricName::parse(name).map_err(|_| unknown())?;
        self.get(&name).ok_or_else(unknown)
    }

    /// Resolves and checks a metric, statistic and dimension filter in one go.
    pub fn check(
        &self,
        metric: &str,
        stat: Stat,
        dimensions: &Dimensions,
    ) -> Result<&MetricInfo, FieldError> {
        let info = self.resolve(metric)?;
        info.check(stat, dimensions)?;
        Ok(info)
    }
}

impl Default for MetricCatalog {
    fn default() -> Self {
        Self::from_specs(&RollupSpecs::defaults())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollup::spec::metrics as m;

    fn dims(pairs: &[(&str, &str)]) -> Dimensions {
        Dimensions::from_pairs(pairs.iter().copied()).unwrap()
    }

    #[test]
    fn every_default_metric_is_in_the_catalog_with_a_description() {
        let specs = RollupSpecs::defaults();
        let catalog = MetricCatalog::from_specs(&specs);
        let hidden = specs
            .0
            .iter()
            .filter(|s| {
                matches!(
                    s.value,
                    ValueSource::SessionFunnel | ValueSource::OccurredAt
                )
            })
            .count();
        assert_eq!(hidden, 2);
        assert_eq!(catalog.iter().count(), specs.0.len() - hidden);
        for info in catalog.iter() {
            assert!(
                !info.description.is_empty(),
                "{} has no description",
                info.metric
            );
            assert!(!info.stats.is_empty());
            assert!(info.has_grouping(std::iter::empty()) || !info.groupings.is_empty());
        }
    }

    #[test]
    fn api_metrics_are_grouped_by_method_and_route() {
        let catalog = MetricCatalog::default();
        let latency = catalog.resolve(m::API_LATENCY_MS).unwrap();
        assert_eq!(latency.kind, EventKind::ApiRequest);
        assert_eq!(latency.stats, Stat::ALL.to_vec());
        assert_eq!(latency.dimensions, ["method", "route", "status_class"]);
        assert!(latency.has_grouping(["route", "method"]));
        let errors = catalog.resolve(m::API_ERRORS).unwrap();
        assert_eq!(
            errors.stats,
            [Stat::Count, Stat::Sum, Stat::Avg, Stat::Rate].to_vec()
        );
        assert!(errors.has_grouping(["method", "route"]));
        // Line dimensions are catalogued under their stored names.
        let line = catalog.resolve(m::LINE_REVENUE).unwrap();
        assert_eq!(line.dimensions, ["collection", "currency", "product_id"]);
        assert!(!line.has_grouping(std::iter::empty()));
        let store = catalog.resolve(m::STORE_LATENCY_MS).unwrap();
        assert_eq!(store.dimensions, ["operation"]);
    }

    #[test]
    fn checks_name_the_bad_field() {
        let catalog = MetricCatalog::default();
        let field = |metric: &str, stat: Stat, d: &[(&str, &str)]| {
            catalog
                .check(metric, stat, &dims(d))
                .map(|_| ())
                .map_err(|e| e.field)
        };
        assert_eq!(
            field("api.latency_ms", Stat::P95, &[("route", "/x")]),
            Ok(())
        );
        assert_eq!(
            field(
                "api.latency_ms",
                Stat::P95,
                &[("route", "/x"), ("method", "GET")]
            ),
            Ok(())
        );
        assert_eq!(field("nope.metric", Stat::Count, &[]), Err("metric".into()));
        assert_eq!(field("Not A Name", Stat::Count, &[]), Err("metric".into()));
        assert_eq!(
            field("funnel.page_view", Stat::P95, &[]),
            Err("stat".into())
        );
        assert_eq!(
            field("api.errors", Stat::Sum, &[("provider", "x")]),
            Err("dimensions.provider".into())
        );
        // Known names in a combination that has no series of its own.
        assert_eq!(
            field("api.errors", Stat::Sum, &[("method", "GET")]),
            Err("dimensions".into())
        );
    }
}
