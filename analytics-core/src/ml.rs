//! ML pipeline figures (API.md, "ML pipelines"): finished jobs by status, success rate,
//! duration percentiles and cost, per pipeline, provider and assets stage. A job is counted
//! once, by its terminal event (the `ml.jobs`, `ml.duration_ms` and `ml.cost_usd` rollups
//! only take terminal events), so its earlier `queued` / `running` events never add to a
//! figure. Cost is the sum of `cost_usd` where the terminal events carry it; jobs without
//! one are estimated from a per-provider [`PriceTable`]. Read through the
//! [`RollupReader`], so figures cover the whole window and survive raw-event retention.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{FieldError, Result};
use crate::event::{AssetStage, JobStatus, Pipeline};
use crate::health::Percentiles;
use crate::health::{is_sampled as sampled, metric, to_count};
use crate::ids::ProjectId;
use crate::rollup::read::{RollupReader, SeriesQuery};
use crate::rollup::spec::metrics;
use crate::rollup::{Dimensions, RollupStats};
use crate::time::TimeRange;

/// The providers every provider list names, seen or not.
pub const KNOWN_PROVIDERS: [&str; 4] = ["replicate", "tripo", "huggingface", "gemini"];

/// Estimated cost in USD of one finished job, per provider (lower-case name).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PriceTable(BTreeMap<String, f64>);

impl PriceTable {
    /// A table from `(provider, usd per job)` pairs.
    pub fn new<S: Into<String>>(prices: impl IntoIterator<Item = (S, f64)>) -> Self {
        Self(
            prices
                .into_iter()
                .map(|(p, v)| (p.into().to_ascii_lowercase(), v))
                .collect(),
        )
    }

    /// Parses `provider=usd,provider=usd` (the `ANALYTICS_ML_PRICES` form); an empty string
    /// is an empty table. Errors name `field`.
    pub fn parse(s: &str, field: &str) -> std::result::Result<Self, FieldError> {
        let mut out = BTreeMap::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let bad = || {
                FieldError::new(
                    field,
                    format!("{part:?} must be provider=usd with a finite price >= 0"),
                )
            };
            let (name, price) = part.split_once('=').ok_or_else(bad)?;
            let price: f64 = price.trim().parse().map_err(|_| bad())?;
            let name = name.trim().to_ascii_lowercase();
            if name.is_empty() || !price.is_finite() || price < 0.0 {
                return Err(bad());
            }
            out.insert(name, price);
        }
        Ok(Self(out))
    }

    /// The price of one job of `provider`.
    pub fn price(&self, provider: &str) -> Option<f64> {
        self.0.get(provider).copied()
    }
}

/// Where a cost figure comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CostSource {
    /// Every counted cost was reported by the events.
    Events,
    /// Every counted cost is a price-table estimate.
    PriceTable,
    /// Some of each.
    Mixed,
    /// Nothing to count.
    None,
}

impl CostSource {
    /// The wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Events => "events",
            Self::PriceTable => "price_table",
            Self::Mixed => "mixed",
            Self::None => "none",
        }
    }
}

/// Which jobs a figure covers (`None`: all).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MlFilter {
    /// Only this pipeline.
    pub pipeline: Option<Pipeline>,
    /// Only this provider (lower case).
    pub provider: Option<String>,
    /// Only this assets stage (implies the assets pipeline).
    pub stage: Option<AssetStage>,
}

/// The `ml_stats` block.
#[derive(Debug, Clone, PartialEq)]
pub struct MlStats {
    /// Finished jobs (re-weighted by sample rate, rounded).
    pub jobs: u64,
    /// Of which succeeded.
    pub succeeded: u64,
    /// Failed.
    pub failed: u64,
    /// Cancelled.
    pub cancelled: u64,
    /// `succeeded / (succeeded + failed)`; `None` without either.
    pub success_rate: Option<f64>,
    /// Duration of the finished jobs.
    pub duration_ms: Percentiles,
    /// Cost in USD, rounded to cents.
    pub cost_usd: f64,
    /// Where the cost comes from.
    pub cost_source: CostSource,
    /// Whether sampled events contributed.
    pub sampled: bool,
}

impl MlStats {
    /// `cost_usd / succeeded`, rounded to cents; `None` without successes.
    pub fn cost_per_success(&self) -> Option<f64> {
        (self.succeeded > 0).then(|| cents(self.cost_usd / self.succeeded as f64))
    }
}

/// Rounds money to cents.
pub fn cents(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Per provider: re-weighted jobs by status, and cost statistics.
#[derive(Debug, Default)]
struct ProviderTally {
    by_status: BTreeMap<&'static str, f64>,
    cost_count: f64,
    cost_sum: f64,
    sampled: bool,
}

/// The ML computations over a [`RollupReader`] with the default specs.
#[derive(Debug, Clone)]
pub struct MlAnalytics {
    reader: RollupReader,
    prices: PriceTable,
}

impl MlAnalytics {
    /// ML figures read through `reader`, estimating missing costs from `prices`.
    pub fn new(reader: RollupReader, prices: PriceTable) -> Self {
        Self { reader, prices }
    }

    /// The dimension names and values a filter selects, plus `extra` names.
    fn selection(filter: &MlFilter) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        match (filter.stage, filter.pipeline) {
            // A stage implies the assets pipeline, and stage rows are not split by it.
            (Some(stage), _) => out.push(("stage", stage.as_str().to_owned())),
            (None, Some(p)) => out.push(("pipeline", p.as_str().to_owned())),
            (None, None) => {}
        }
        if let Some(p) = &filter.provider {
            out.push(("provider", p.clone()));
        }
        out
    }

    async fn tallies(
        &self,
        project: &ProjectId,
        range: TimeRange,
        filter: &MlFilter,
    ) -> Result<BTreeMap<String, ProviderTally>> {
        let selection = Self::selection(filter);
        let matches = |d: &Dimensions| selection.iter().all(|(k, v)| d.get(k) == Some(v));
        let mut names: Vec<&str> = selection
            .iter()
            .map(|(k, _)| *k)
            .filter(|k| *k != "provider")
            .collect();
        names.push("provider");
        let mut jobs_names = names.clone();
        jobs_names.push("status");
        let mut out: BTreeMap<String, ProviderTally> = BTreeMap::new();
        for (d, s) in self
            .reader
            .breakdown(project, &metric(metrics::ML_JOBS), &jobs_names, range)
            .await?
        {
            if !matches(&d) {
                continue;
            }
            let (Some(provider), Some(status)) = (d.get("provider"), d.get("status")) else {
                continue;
            };
            let Some(status) = JobStatus::TERMINAL
                .iter()
                .find(|t| t.as_str() == status)
                .map(|t| t.as_str())
            else {
                continue;
            };
            let t = out.entry(provider.to_owned()).or_default();
            *t.by_status.entry(status).or_default() += s.count;
            t.sampled |= sampled(&s);
        }
        for (d, s) in self
            .reader
            .breakdown(project, &metric(metrics::ML_COST_USD), &names, range)
            .await?
        {
            if !matches(&d) {
                continue;
            }
            let Some(provider) = d.get("provider") else {
                continue;
            };
            let t = out.entry(provider.to_owned()).or_default();
            t.cost_count += s.count;
            t.cost_sum += s.sum;
            t.sampled |= sampled(&s);
        }
        Ok(out)
    }

    /// The `ml_stats` of the jobs `filter` selects over `range`.
    pub async fn stats(
        &self,
        project: &ProjectId,
        range: TimeRange,
        filter: &MlFilter,
    ) -> Result<MlStats> {
        let tallies = self.tallies(project, range, filter).await?;
        let dims = Dimensions::from_pairs(Self::selection(filter)).map_err(crate::Error::from)?;
        let duration = self
            .reader
            .stats(
                &SeriesQuery {
                    project: project.clone(),
                    metric: metric(metrics::ML_DURATION_MS),
                    dimensions: dims,
                },
                range,
            )
            .await?;
        Ok(self.combine(&tallies, duration.as_ref()))
    }

    fn combine(
        &self,
        tallies: &BTreeMap<String, ProviderTally>,
        duration: Option<&RollupStats>,
    ) -> MlStats {
        let status = |name: &str| -> f64 {
            tallies
                .values()
                .map(|t| t.by_status.get(name).copied().unwrap_or(0.0))
                .sum()
        };
        let (succeeded, failed, cancelled) =
            (status("succeeded"), status("failed"), status("cancelled"));
        let mut event_cost = 0.0;
        let mut estimate = 0.0;
        let (mut from_events, mut from_table) = (false, false);
        for (provider, t) in tallies {
            let jobs: f64 = t.by_status.values().sum();
            if t.cost_count > 0.0 {
                event_cost += t.cost_sum;
                from_events = true;
            }
            let without = (jobs - t.cost_count).max(0.0);
            if without >= 0.5
                && let Some(price) = self.prices.price(provider)
            {
                estimate += without * price;
                from_table = true;
            }
        }
        let cost_source = match (from_events, from_table) {
            (true, true) => CostSource::Mixed,
            (true, false) => CostSource::Events,
            (false, true) => CostSource::PriceTable,
            (false, false) => CostSource::None,
        };
        MlStats {
            jobs: to_count(succeeded + failed + cancelled),
            succeeded: to_count(succeeded),
            failed: to_count(failed),
            cancelled: to_count(cancelled),
            success_rate: (succeeded + failed > 0.0)
                .then(|| (succeeded / (succeeded + failed)).clamp(0.0, 1.0)),
            duration_ms: Percentiles::of(duration),
            cost_usd: cents(event_cost + estimate),
            cost_source,
            sampled: tallies.values().any(|t| t.sampled) || duration.is_some_and(sampled),
        }
    }

    /// Per pipeline (all three, in order), within `provider` when given.
    pub async fn by_pipeline(
        &self,
        project: &ProjectId,
        range: TimeRange,
        provider: Option<&str>,
    ) -> Result<Vec<(Pipeline, MlStats)>> {
        let mut out = Vec::new();
        for p in Pipeline::ALL {
            let filter = MlFilter {
                pipeline: Some(p),
                provider: provider.map(str::to_owned),
                stage: None,
            };
            out.push((p, self.stats(project, range, &filter).await?));
        }
        Ok(out)
    }

    /// Per assets stage (all three, in order), within `provider` when given.
    pub async fn by_stage(
        &self,
        project: &ProjectId,
        range: TimeRange,
        provider: Option<&str>,
    ) -> Result<Vec<(AssetStage, MlStats)>> {
        let mut out = Vec::new();
        for s in AssetStage::ALL {
            let filter = MlFilter {
                pipeline: Some(Pipeline::Assets),
                provider: provider.map(str::to_owned),
                stage: Some(s),
            };
            out.push((s, self.stats(project, range, &filter).await?));
        }
        Ok(out)
    }

    /// Per provider: the [`KNOWN_PROVIDERS`] and every other one seen in `range` (sorted by
    /// name), within `filter` (its provider, when set, is the only one listed).
    pub async fn by_provider(
        &self,
        project: &ProjectId,
        range: TimeRange,
        filter: &MlFilter,
    ) -> Result<Vec<(String, MlStats)>> {
        let providers: BTreeSet<String> = match &filter.provider {
            Some(p) => [p.clone()].into(),
            None => {
                let seen = self.tallies(project, range, filter).await?;
                KNOWN_PROVIDERS
                    .iter()
                    .map(|p| (*p).to_owned())
                    .chain(seen.into_keys())
                    .collect()
            }
        };
        let mut out = Vec::new();
        for p in providers {
            let f = MlFilter {
                provider: Some(p.clone()),
                ..filter.clone()
            };
            out.push((p, self.stats(project, range, &f).await?));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn price_table_parses_and_names_the_field() {
        let t = PriceTable::parse("Replicate=0.05, tripo=0.2,", "prices").unwrap();
        assert_eq!(t.price("replicate"), Some(0.05));
        assert_eq!(t.price("tripo"), Some(0.2));
        assert_eq!(t.price("gemini"), None);
        assert_eq!(
            PriceTable::parse("", "prices").unwrap(),
            PriceTable::default()
        );
        for bad in ["replicate", "x=-1", "x=abc", "=1", "x=inf"] {
            assert_eq!(
                PriceTable::parse(bad, "prices").unwrap_err().field,
                "prices"
            );
        }
    }

    #[test]
    fn money_rounds_to_cents() {
        assert_eq!(cents(0.125_000_1), 0.13);
        assert_eq!(cents(10.0 / 3.0), 3.33);
    }
}
