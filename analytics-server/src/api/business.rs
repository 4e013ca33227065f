//! Business analytics (roles `admin`, `business_viewer`): `GET /api/v1/analytics/business/
//! {overview,sales,products,collections,funnel}`, each with `currency` and
//! `compare=previous_period|previous_year`. Thin: parses the parameters, calls
//! `analytics_core::business` over the rollup reader for the window (and the comparison
//! window), and times its store reads.

use std::collections::HashMap;

use analytics_core::business::{
    BusinessAnalytics, CollectionFigures, CollectionSales, Delta, FunnelStepFigures, Overview,
    ProductFigures, ProductSort, SalesPoint, align_points, parse_currency,
};
use analytics_core::event::canonical_collection;
use analytics_core::rollup::read::RollupReader;
use analytics_core::{Comparison, Granularity, ProjectId, TimeRange, Window};
use chrono::{DateTime, Utc};
use poem::Request;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{Enum, Object, OpenApi};

use super::events::BearerAuth;
use super::health::{RangeBody, RangePreset, SourceBody, parse_window};
use super::request::{readable_project, require_business};
use super::responses::NotFound;
use super::{ApiResult, ApiTags};
use crate::error::ApiError;
use crate::state::AppState;

/// The business endpoints.
#[derive(Debug)]
pub struct BusinessApi {
    pub(crate) state: AppState,
}

/// A `compare` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum CompareParam {
    /// The window of equal length just before.
    PreviousPeriod,
    /// The same dates one year earlier (Feb 29 -> Feb 28).
    PreviousYear,
}

impl From<CompareParam> for Comparison {
    fn from(c: CompareParam) -> Self {
        match c {
            CompareParam::PreviousPeriod => Comparison::PreviousPeriod,
            CompareParam::PreviousYear => Comparison::SamePeriodLastYear,
        }
    }
}

/// The `granularity` of `business/sales`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum SalesGranularity {
    /// Hour buckets.
    Hour,
    /// Day buckets.
    Day,
    /// Week buckets (Sunday 00:00 UTC).
    Week,
}

/// The `sort` of `business/products`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum ProductSortParam {
    /// Most revenue first.
    Revenue,
    /// Most units first.
    Units,
    /// Most views first.
    Views,
}

/// A change against the comparison window.
#[derive(Debug, Clone, Copy, Object)]
pub struct DeltaBody {
    /// `current - previous`.
    pub abs: f64,
    /// `abs / previous` as a fraction; `null` when the previous figure is 0.
    #[oai(nullable)]
    pub pct: Option<f64>,
}

impl From<Delta> for DeltaBody {
    fn from(d: Delta) -> Self {
        Self {
            abs: d.abs,
            pct: d.pct,
        }
    }
}

/// Orders in a currency other than the one asked for.
#[derive(Debug, Clone, Object)]
pub struct OtherCurrency {
    /// ISO 4217 code.
    pub currency: String,
    /// Orders.
    pub orders: u64,
    /// Revenue in that currency, rounded to cents.
    pub revenue: f64,
}

/// Revenue, orders, AOV and units of one window.
#[derive(Debug, Clone, Object)]
pub struct OverviewFigures {
    /// The currency of every figure.
    pub currency: String,
    /// Revenue, rounded to cents.
    pub revenue: f64,
    /// Orders.
    pub orders: u64,
    /// `revenue / orders`, rounded to cents; `null` without orders.
    #[oai(nullable)]
    pub aov: Option<f64>,
    /// Units sold.
    pub units: u64,
    /// Orders in other currencies (never added to the figures above).
    pub other_currencies: Vec<OtherCurrency>,
    /// Whether sampled events contributed.
    pub sampled: bool,
}

impl From<Overview> for OverviewFigures {
    fn from(o: Overview) -> Self {
        Self {
            currency: o.currency,
            revenue: o.revenue,
            orders: o.orders,
            aov: o.aov,
            units: o.units,
            other_currencies: o
                .other_currencies
                .into_iter()
                .map(|c| OtherCurrency {
                    currency: c.currency,
                    orders: c.orders,
                    revenue: c.revenue,
                })
                .collect(),
            sampled: o.sampled,
        }
    }
}

/// Changes of the overview figures.
#[derive(Debug, Clone, Object)]
pub struct OverviewDelta {
    /// Revenue.
    pub revenue: DeltaBody,
    /// Orders.
    pub orders: DeltaBody,
    /// Average order value.
    pub aov: DeltaBody,
    /// Units.
    pub units: DeltaBody,
}

fn overview_delta(current: &Overview, base: &Overview) -> OverviewDelta {
    let d: HashMap<&str, Delta> = current.delta(base).into_iter().collect();
    let get = |k: &str| DeltaBody::from(d[k]);
    OverviewDelta {
        revenue: get("revenue"),
        orders: get("orders"),
        aov: get("aov"),
        units: get("units"),
    }
}

/// The comparison window's overview.
#[derive(Debug, Clone, Object)]
pub struct OverviewCompare {
    /// The comparison window.
    pub range: RangeBody,
    /// Its figures.
    #[oai(flatten)]
    pub figures: OverviewFigures,
    /// Current minus comparison.
    pub delta: OverviewDelta,
}

/// `business/overview`.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct BusinessOverview {
    /// The window.
    pub range: RangeBody,
    /// The project.
    pub project: String,
    /// Where the figures come from.
    pub source: SourceBody,
    /// The figures.
    #[oai(flatten)]
    pub figures: OverviewFigures,
    /// The comparison, when `compare` was given.
    #[oai(nullable)]
    pub compare: Option<OverviewCompare>,
}

impl poem_openapi::types::Example for BusinessOverview {
    fn example() -> Self {
        overview_example()
    }
}

fn overview_example() -> BusinessOverview {
    let at = |s: &str| {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    };
    BusinessOverview {
        range: RangeBody {
            from: at("2026-03-01T00:00:00Z"),
            to: at("2026-03-08T00:00:00Z"),
        },
        project: "default".into(),
        source: SourceBody::Rollups,
        figures: OverviewFigures {
            currency: "USD".into(),
            revenue: 18_240.5,
            orders: 152,
            aov: Some(120.0),
            units: 301,
            other_currencies: vec![OtherCurrency {
                currency: "EUR".into(),
                orders: 9,
                revenue: 1012.0,
            }],
            sampled: false,
        },
        compare: None,
    }
}

/// Revenue, units and orders of one collection in a bucket.
#[derive(Debug, Clone, Copy, Object)]
pub struct CollectionSalesBody {
    /// Revenue of its lines, rounded to cents.
    pub revenue: f64,
    /// Units of its lines.
    pub units: u64,
    /// Distinct orders with a line of it.
    pub orders: u64,
}

impl From<CollectionSales> for CollectionSalesBody {
    fn from(c: CollectionSales) -> Self {
        Self {
            revenue: c.revenue,
            units: c.units,
            orders: c.orders,
        }
    }
}

/// One bucket of `business/sales`.
#[derive(Debug, Clone, Object)]
pub struct SalesPointBody {
    /// Bucket start.
    pub ts: DateTime<Utc>,
    /// Revenue, rounded to cents.
    pub revenue: f64,
    /// Orders.
    pub orders: u64,
    /// Units.
    pub units: u64,
    /// Per collection slug.
    pub by_collection: HashMap<String, CollectionSalesBody>,
}

impl From<SalesPoint> for SalesPointBody {
    fn from(p: SalesPoint) -> Self {
        Self {
            ts: p.ts,
            revenue: p.revenue,
            orders: p.orders,
            units: p.units,
            by_collection: p
                .by_collection
                .into_iter()
                .map(|(k, v)| (k, v.into()))
                .collect(),
        }
    }
}

/// Window totals of `business/sales`.
#[derive(Debug, Clone, Copy, Object)]
pub struct SalesDelta {
    /// Revenue.
    pub revenue: DeltaBody,
    /// Orders.
    pub orders: DeltaBody,
    /// Units.
    pub units: DeltaBody,
}

/// The comparison window's sales, point `i` beside the window's point `i`.
#[derive(Debug, Clone, Object)]
pub struct SalesCompare {
    /// The comparison window.
    pub range: RangeBody,
    /// One point per point of the window (same index): the comparison window's bucket
    /// holding the same instant (the previous period's bucket at the same offset; for the
    /// previous year the same calendar time a year earlier, Feb 29 on Feb 28, so a bucket
    /// can appear twice); a bucket without data is zeros.
    pub points: Vec<SalesPointBody>,
    /// Current minus comparison totals.
    pub delta: SalesDelta,
}

/// `business/sales`.
#[derive(Debug, Clone, Object)]
pub struct BusinessSales {
    /// The window.
    pub range: RangeBody,
    /// The project.
    pub project: String,
    /// The currency of every figure.
    pub currency: String,
    /// `hour`, `day` or `week`.
    pub granularity: String,
    /// Where the figures come from.
    pub source: SourceBody,
    /// One point per bucket, oldest first, empty buckets included.
    pub points: Vec<SalesPointBody>,
    /// The comparison, when `compare` was given.
    #[oai(nullable)]
    pub compare: Option<SalesCompare>,
}

/// Changes of a product's figures.
#[derive(Debug, Clone, Copy, Object)]
pub struct ProductDelta {
    /// Revenue.
    pub revenue: DeltaBody,
    /// Units.
    pub units: DeltaBody,
    /// Orders.
    pub orders: DeltaBody,
    /// Views.
    pub views: DeltaBody,
}

/// One product.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct ProductBody {
    /// Product id.
    pub product_id: String,
    /// Its collection slug.
    #[oai(nullable)]
    pub collection: Option<String>,
    /// `product_view` events.
    pub views: u64,
    /// `cart_add` events.
    pub cart_adds: u64,
    /// Units sold.
    pub units: u64,
    /// Distinct orders containing it.
    pub orders: u64,
    /// Revenue of its lines, rounded to cents.
    pub revenue: f64,
    /// `orders / views`; `null` without views.
    #[oai(nullable)]
    pub conversion_rate: Option<f64>,
    /// Latest `on_hand` snapshot; `null` without one.
    #[oai(nullable)]
    pub inventory: Option<u64>,
}

impl From<&ProductFigures> for ProductBody {
    fn from(p: &ProductFigures) -> Self {
        Self {
            product_id: p.product_id.clone(),
            collection: p.collection.clone(),
            views: p.views,
            cart_adds: p.cart_adds,
            units: p.units,
            orders: p.orders,
            revenue: p.revenue,
            conversion_rate: p.conversion_rate,
            inventory: p.inventory,
        }
    }
}

/// A listed product's figures in the comparison window.
#[derive(Debug, Clone, Object)]
pub struct ProductCompare {
    /// Its figures then (zeros when it was not seen).
    #[oai(flatten)]
    pub figures: ProductBody,
    /// Current minus comparison.
    pub delta: ProductDelta,
}

/// The comparison window of `business/products`.
#[derive(Debug, Clone, Object)]
pub struct ProductsCompare {
    /// The comparison window.
    pub range: RangeBody,
    /// The listed products, in the same order.
    pub products: Vec<ProductCompare>,
}

/// `business/products`.
#[derive(Debug, Clone, Object)]
pub struct BusinessProducts {
    /// The window.
    pub range: RangeBody,
    /// The project.
    pub project: String,
    /// The currency of units, orders and revenue.
    pub currency: String,
    /// Where the figures come from.
    pub source: SourceBody,
    /// Products, sorted by `sort`.
    pub products: Vec<ProductBody>,
    /// The comparison, when `compare` was given.
    #[oai(nullable)]
    pub compare: Option<ProductsCompare>,
}

/// One collection.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct CollectionBody {
    /// Slug.
    pub collection: String,
    /// Display name.
    pub name: String,
    /// Revenue of its lines, rounded to cents.
    pub revenue: f64,
    /// Distinct orders with a line of it.
    pub orders: u64,
    /// Units of its lines.
    pub units: u64,
    /// `revenue / orders`; `null` without orders.
    #[oai(nullable)]
    pub aov: Option<f64>,
    /// `product_view` events of the collection.
    pub views: u64,
    /// `orders / views`; `null` without views.
    #[oai(nullable)]
    pub conversion_rate: Option<f64>,
}

impl From<&CollectionFigures> for CollectionBody {
    fn from(c: &CollectionFigures) -> Self {
        Self {
            collection: c.collection.clone(),
            name: c.name.clone(),
            revenue: c.revenue,
            orders: c.orders,
            units: c.units,
            aov: c.aov,
            views: c.views,
            conversion_rate: c.conversion_rate,
        }
    }
}

/// A collection's figures in the comparison window.
#[derive(Debug, Clone, Object)]
pub struct CollectionCompare {
    /// Its figures then.
    #[oai(flatten)]
    pub figures: CollectionBody,
    /// Current minus comparison (revenue, units, orders, views).
    pub delta: ProductDelta,
}

/// The comparison window of `business/collections`.
#[derive(Debug, Clone, Object)]
pub struct CollectionsCompare {
    /// The comparison window.
    pub range: RangeBody,
    /// The same collections, in the same order.
    pub collections: Vec<CollectionCompare>,
}

/// `business/collections`.
#[derive(Debug, Clone, Object)]
pub struct BusinessCollections {
    /// The window.
    pub range: RangeBody,
    /// The project.
    pub project: String,
    /// The currency of revenue, orders and units.
    pub currency: String,
    /// Where the figures come from.
    pub source: SourceBody,
    /// Every configured collection (zeros included), then any other seen.
    pub collections: Vec<CollectionBody>,
    /// The comparison, when `compare` was given.
    #[oai(nullable)]
    pub compare: Option<CollectionsCompare>,
}

/// One funnel step.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct FunnelStepBody {
    /// `page_view`, `product_view`, `cart_add`, `checkout_start` or `order`.
    pub step: String,
    /// Sessions that reached every earlier step before this one, in order, in the window.
    pub sessions: u64,
    /// `sessions / previous step's sessions` (1 for the first; `null` on a zero base).
    #[oai(nullable)]
    pub conversion_from_previous: Option<f64>,
    /// `sessions / first step's sessions`; `null` on a zero base.
    #[oai(nullable)]
    pub conversion_from_start: Option<f64>,
    /// Previous step's sessions minus this one's (0 for the first).
    pub drop_off: u64,
}

impl From<&FunnelStepFigures> for FunnelStepBody {
    fn from(s: &FunnelStepFigures) -> Self {
        Self {
            step: s.step.as_str().to_owned(),
            sessions: s.sessions,
            conversion_from_previous: s.conversion_from_previous,
            conversion_from_start: s.conversion_from_start,
            drop_off: s.drop_off,
        }
    }
}

/// A step in the comparison window.
#[derive(Debug, Clone, Object)]
pub struct FunnelStepCompare {
    /// The step then.
    #[oai(flatten)]
    pub figures: FunnelStepBody,
    /// Current minus comparison sessions.
    pub delta: DeltaBody,
}

/// The comparison window of `business/funnel`.
#[derive(Debug, Clone, Object)]
pub struct FunnelCompare {
    /// The comparison window.
    pub range: RangeBody,
    /// The same steps.
    pub steps: Vec<FunnelStepCompare>,
}

/// `business/funnel`.
#[derive(Debug, Clone, Object)]
pub struct BusinessFunnel {
    /// The window.
    pub range: RangeBody,
    /// The project.
    pub project: String,
    /// Always `sessions`: steps count distinct sessions (`session_id`, else `user_id`).
    pub basis: String,
    /// The collection filter, when given (its slug).
    #[oai(nullable)]
    pub collection: Option<String>,
    /// Where the figures come from.
    pub source: SourceBody,
    /// page_view -> product_view -> cart_add -> checkout_start -> order.
    pub steps: Vec<FunnelStepBody>,
    /// The comparison, when `compare` was given.
    #[oai(nullable)]
    pub compare: Option<FunnelCompare>,
}

/// The parsed common parameters.
/// What every business route reads from its request.
pub(crate) struct Common {
    /// The project.
    pub(crate) project: ProjectId,
    /// The window.
    pub(crate) window: Window,
    /// The currency of the figures.
    pub(crate) currency: String,
    /// The comparison window, if any.
    pub(crate) compare: Option<TimeRange>,
    /// Which comparison `compare` is.
    pub(crate) comparison: Option<Comparison>,
}

fn delta_u(a: u64, b: u64) -> DeltaBody {
    Delta::between(Some(a as f64), Some(b as f64)).into()
}

fn delta_f(a: f64, b: f64) -> DeltaBody {
    Delta::between(Some(a), Some(b)).into()
}

impl BusinessApi {
    fn reader(&self) -> RollupReader {
        self.state.health.reader(self.state.store.clone())
    }

    fn biz(&self) -> BusinessAnalytics {
        BusinessAnalytics::new(self.reader(), self.state.analytics.collections.clone())
    }

    /// The project's currency (its settings' `currency`), else `USD`.
    pub(crate) async fn default_currency(&self, project: &ProjectId) -> Result<String, ApiError> {
        let limits = self
            .state
            .age_limits
            .limits(&*self.state.store, project)
            .await?;
        Ok(limits
            .settings
            .currency
            .as_deref()
            .and_then(|c| parse_currency(c).ok())
            .unwrap_or_else(|| "USD".to_owned()))
    }

    #[allow(clippy::too_many_arguments)]
    async fn common(
        &self,
        req: &Request,
        range: Option<RangePreset>,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        project: Option<String>,
        currency: Option<String>,
        compare: Option<CompareParam>,
    ) -> Result<Common, ApiError> {
        require_business(req)?;
        let window = parse_window(range, from, to)?;
        let project = readable_project(req, project)?;
        let currency = match currency.filter(|c| !c.is_empty()) {
            Some(c) => parse_currency(&c)?,
            None => self.default_currency(&project).await?,
        };
        Ok(Common {
            project,
            compare: compare.map(|c| window.range().compared(c.into())),
            comparison: compare.map(Into::into),
            window,
            currency,
        })
    }

    /// The business overview (the `business/overview` answer; the dashboard's `business`
    /// section).
    pub(crate) async fn overview_of(&self, c: &Common) -> Result<BusinessOverview, ApiError> {
        let biz = self.biz();
        let read = async {
            let now = biz
                .overview(&c.project, c.window.range(), &c.currency)
                .await?;
            let then = match c.compare {
                Some(r) => Some((r, biz.overview(&c.project, r, &c.currency).await?)),
                None => None,
            };
            Ok::<_, analytics_core::Error>((now, then, self.source(c).await?))
        };
        let (now, then, source) = self.state.timed_read(read).await?;
        let compare = then.map(|(r, base)| OverviewCompare {
            range: r.into(),
            delta: overview_delta(&now, &base),
            figures: base.into(),
        });
        Ok(BusinessOverview {
            range: c.window.range().into(),
            project: c.project.to_string(),
            source,
            figures: now.into(),
            compare,
        })
    }

    async fn source(&self, c: &Common) -> analytics_core::Result<SourceBody> {
        Ok(self
            .reader()
            .source(&c.project, c.window.range())
            .await?
            .into())
    }
}

#[OpenApi]
impl BusinessApi {
    /// Revenue, orders, average order value and units in one currency (roles `admin`,
    /// `business_viewer`); other currencies listed apart; `compare` adds the comparison
    /// window and deltas.
    #[allow(clippy::too_many_arguments)]
    #[oai(
        path = "/api/v1/analytics/business/overview",
        method = "get",
        tag = "ApiTags::Business"
    )]
    async fn overview(
        &self,
        req: &Request,
        _auth: BearerAuth,
        /// `1h`, `24h` (default), `7d` or `30d` ending now; not with `from`/`to`.
        range: Query<Option<RangePreset>>,
        /// Window start (RFC 3339), with `to`; before `to`, at most 400 days before it.
        from: Query<Option<DateTime<Utc>>>,
        /// Window end (RFC 3339, exclusive), with `from`.
        to: Query<Option<DateTime<Utc>>>,
        /// Project slug (default `default`).
        #[oai(validator(pattern = r"^[a-z0-9][a-z0-9_-]{0,63}$"))]
        project: Query<Option<String>>,
        /// ISO 4217 currency of the figures, any case (default: the project's `currency`,
        /// else `USD`); an unknown code is 400.
        #[oai(validator(pattern = r"^[A-Za-z]{3}$"))]
        currency: Query<Option<String>>,
        /// Add the `previous_period` or `previous_year` (Feb 29 -> Feb 28) window.
        compare: Query<Option<CompareParam>>,
    ) -> ApiResult<Json<BusinessOverview>, NotFound> {
        let c = self
            .common(req, range.0, from.0, to.0, project.0, currency.0, compare.0)
            .await?;
        Ok(Json(self.overview_of(&c).await?))
    }

    /// Revenue, orders and units per bucket, with each collection's share (roles `admin`,
    /// `business_viewer`); `granularity` hour, day or week (default by window); every
    /// bucket included; `compare` adds the comparison window's points, aligned bucket by bucket by time.
    #[allow(clippy::too_many_arguments)]
    #[oai(
        path = "/api/v1/analytics/business/sales",
        method = "get",
        tag = "ApiTags::Business"
    )]
    async fn sales(
        &self,
        req: &Request,
        _auth: BearerAuth,
        /// `1h`, `24h` (default), `7d` or `30d` ending now; not with `from`/`to`.
        range: Query<Option<RangePreset>>,
        /// Window start (RFC 3339), with `to`; before `to`, at most 400 days before it.
        from: Query<Option<DateTime<Utc>>>,
        /// Window end (RFC 3339, exclusive), with `from`.
        to: Query<Option<DateTime<Utc>>>,
        /// Project slug (default `default`).
        #[oai(validator(pattern = r"^[a-z0-9][a-z0-9_-]{0,63}$"))]
        project: Query<Option<String>>,
        /// ISO 4217 currency of the figures, any case (default: the project's `currency`,
        /// else `USD`); an unknown code is 400.
        #[oai(validator(pattern = r"^[A-Za-z]{3}$"))]
        currency: Query<Option<String>>,
        /// Add the `previous_period` or `previous_year` window.
        compare: Query<Option<CompareParam>>,
        /// `hour`, `day` or `week`; default hour up to 7 days, else day.
        granularity: Query<Option<SalesGranularity>>,
    ) -> ApiResult<Json<BusinessSales>, NotFound> {
        let c = self
            .common(req, range.0, from.0, to.0, project.0, currency.0, compare.0)
            .await?;
        let g = match granularity.0 {
            Some(SalesGranularity::Hour) => Granularity::Hour,
            Some(SalesGranularity::Day) => Granularity::Day,
            Some(SalesGranularity::Week) => Granularity::Week,
            None if c.window.range().duration() <= chrono::Duration::days(7) => Granularity::Hour,
            None => Granularity::Day,
        };
        let buckets = c.window.buckets(g).count();
        if buckets > 10_000 {
            return Err(ApiError::invalid(
                "granularity",
                "too many buckets for the window; choose a coarser granularity",
            )
            .into());
        }
        let biz = self.biz();
        let read = async {
            let now = biz.sales(&c.project, &c.window, g, &c.currency).await?;
            let then = match c.compare {
                Some(r) => {
                    let w = Window::between(r.start(), r.end())?;
                    Some((r, biz.sales(&c.project, &w, g, &c.currency).await?))
                }
                None => None,
            };
            Ok::<_, analytics_core::Error>((now, then, self.source(&c).await?))
        };
        let (now, then, source) = self.state.timed_read(read).await?;
        let totals = |ps: &[SalesPoint]| {
            ps.iter().fold((0.0, 0u64, 0u64), |(r, o, u), p| {
                (r + p.revenue, o + p.orders, u + p.units)
            })
        };
        let compare = then.zip(c.comparison).map(|((r, base), comparison)| {
            let (nr, no, nu) = totals(&now);
            let (br, bo, bu) = totals(&base);
            // Each point of the window beside the comparison's bucket at the same instant.
            let points = align_points(&now, &base, c.window.range(), comparison, g);
            SalesCompare {
                range: r.into(),
                points: points.into_iter().map(Into::into).collect(),
                delta: SalesDelta {
                    revenue: delta_f(analytics_core::ml::cents(nr), analytics_core::ml::cents(br)),
                    orders: delta_u(no, bo),
                    units: delta_u(nu, bu),
                },
            }
        });
        Ok(Json(BusinessSales {
            range: c.window.range().into(),
            project: c.project.to_string(),
            currency: c.currency.clone(),
            granularity: g.as_str().to_owned(),
            source,
            points: now.into_iter().map(Into::into).collect(),
            compare,
        }))
    }

    /// Per product (roles `admin`, `business_viewer`): views, cart adds, units, orders,
    /// revenue, conversion and the latest inventory; `sort` revenue (default), units or
    /// views; `limit` 1..=500 (default 50).
    #[allow(clippy::too_many_arguments)]
    #[oai(
        path = "/api/v1/analytics/business/products",
        method = "get",
        tag = "ApiTags::Business"
    )]
    async fn products(
        &self,
        req: &Request,
        _auth: BearerAuth,
        /// `1h`, `24h` (default), `7d` or `30d` ending now; not with `from`/`to`.
        range: Query<Option<RangePreset>>,
        /// Window start (RFC 3339), with `to`; before `to`, at most 400 days before it.
        from: Query<Option<DateTime<Utc>>>,
        /// Window end (RFC 3339, exclusive), with `from`.
        to: Query<Option<DateTime<Utc>>>,
        /// Project slug (default `default`).
        #[oai(validator(pattern = r"^[a-z0-9][a-z0-9_-]{0,63}$"))]
        project: Query<Option<String>>,
        /// ISO 4217 currency of the figures, any case (default: the project's `currency`,
        /// else `USD`); an unknown code is 400.
        #[oai(validator(pattern = r"^[A-Za-z]{3}$"))]
        currency: Query<Option<String>>,
        /// Add the `previous_period` or `previous_year` window.
        compare: Query<Option<CompareParam>>,
        /// `revenue` (default), `units` or `views`.
        sort: Query<Option<ProductSortParam>>,
        /// Most products returned (1..=500).
        #[oai(
            default = "default_product_limit",
            validator(minimum(value = "1"), maximum(value = "500"))
        )]
        limit: Query<u32>,
    ) -> ApiResult<Json<BusinessProducts>, NotFound> {
        let c = self
            .common(req, range.0, from.0, to.0, project.0, currency.0, compare.0)
            .await?;
        let sort = match sort.0 {
            None | Some(ProductSortParam::Revenue) => ProductSort::Revenue,
            Some(ProductSortParam::Units) => ProductSort::Units,
            Some(ProductSortParam::Views) => ProductSort::Views,
        };
        let biz = self.biz();
        let read = async {
            let now = biz
                .products(
                    &c.project,
                    c.window.range(),
                    &c.currency,
                    sort,
                    limit.0 as usize,
                )
                .await?;
            let then = match c.compare {
                Some(r) => Some((
                    r,
                    biz.products(&c.project, r, &c.currency, sort, usize::MAX)
                        .await?,
                )),
                None => None,
            };
            Ok::<_, analytics_core::Error>((now, then, self.source(&c).await?))
        };
        let (now, then, source) = self.state.timed_read(read).await?;
        let compare = then.map(|(r, base)| {
            let base: HashMap<&str, &ProductFigures> =
                base.iter().map(|p| (p.product_id.as_str(), p)).collect();
            ProductsCompare {
                range: r.into(),
                products: now
                    .iter()
                    .map(|p| {
                        let zero = ProductFigures {
                            product_id: p.product_id.clone(),
                            collection: p.collection.clone(),
                            views: 0,
                            cart_adds: 0,
                            units: 0,
                            orders: 0,
                            revenue: 0.0,
                            conversion_rate: None,
                            inventory: None,
                        };
                        let b = base.get(p.product_id.as_str()).copied().unwrap_or(&zero);
                        ProductCompare {
                            delta: ProductDelta {
                                revenue: delta_f(p.revenue, b.revenue),
                                units: delta_u(p.units, b.units),
                                orders: delta_u(p.orders, b.orders),
                                views: delta_u(p.views, b.views),
                            },
                            figures: b.into(),
                        }
                    })
                    .collect(),
            }
        });
        Ok(Json(BusinessProducts {
            range: c.window.range().into(),
            project: c.project.to_string(),
            currency: c.currency.clone(),
            source,
            products: now.iter().map(Into::into).collect(),
            compare,
        }))
    }

    /// Per collection (roles `admin`, `business_viewer`): revenue, distinct orders, units,
    /// AOV, views and conversion; every configured collection (zeros included), then any
    /// other seen.
    #[allow(clippy::too_many_arguments)]
    #[oai(
        path = "/api/v1/analytics/business/collections",
        method = "get",
        tag = "ApiTags::Business"
    )]
    async fn collections(
        &self,
        req: &Request,
        _auth: BearerAuth,
        /// `1h`, `24h` (default), `7d` or `30d` ending now; not with `from`/`to`.
        range: Query<Option<RangePreset>>,
        /// Window start (RFC 3339), with `to`; before `to`, at most 400 days before it.
        from: Query<Option<DateTime<Utc>>>,
        /// Window end (RFC 3339, exclusive), with `from`.
        to: Query<Option<DateTime<Utc>>>,
        /// Project slug (default `default`).
        #[oai(validator(pattern = r"^[a-z0-9][a-z0-9_-]{0,63}$"))]
        project: Query<Option<String>>,
        /// ISO 4217 currency of the figures, any case (default: the project's `currency`,
        /// else `USD`); an unknown code is 400.
        #[oai(validator(pattern = r"^[A-Za-z]{3}$"))]
        currency: Query<Option<String>>,
        /// Add the `previous_period` or `previous_year` window.
        compare: Query<Option<CompareParam>>,
    ) -> ApiResult<Json<BusinessCollections>, NotFound> {
        let c = self
            .common(req, range.0, from.0, to.0, project.0, currency.0, compare.0)
            .await?;
        let biz = self.biz();
        let read = async {
            let now = biz
                .collections_figures(&c.project, c.window.range(), &c.currency)
                .await?;
            let then = match c.compare {
                Some(r) => Some((
                    r,
                    biz.collections_figures(&c.project, r, &c.currency).await?,
                )),
                None => None,
            };
            Ok::<_, analytics_core::Error>((now, then, self.source(&c).await?))
        };
        let (now, then, source) = self.state.timed_read(read).await?;
        let compare = then.map(|(r, base)| CollectionsCompare {
            range: r.into(),
            collections: now
                .iter()
                .map(|x| {
                    let b = base.iter().find(|b| b.collection == x.collection);
                    let figures = b.map_or_else(
                        || CollectionBody {
                            revenue: 0.0,
                            orders: 0,
                            units: 0,
                            aov: None,
                            views: 0,
                            conversion_rate: None,
                            ..CollectionBody::from(x)
                        },
                        CollectionBody::from,
                    );
                    CollectionCompare {
                        delta: ProductDelta {
                            revenue: delta_f(x.revenue, figures.revenue),
                            units: delta_u(x.units, figures.units),
                            orders: delta_u(x.orders, figures.orders),
                            views: delta_u(x.views, figures.views),
                        },
                        figures,
                    }
                })
                .collect(),
        });
        Ok(Json(BusinessCollections {
            range: c.window.range().into(),
            project: c.project.to_string(),
            currency: c.currency.clone(),
            source,
            collections: now.iter().map(Into::into).collect(),
            compare,
        }))
    }

    /// The ordered session funnel (roles `admin`, `business_viewer`): distinct sessions
    /// (`session_id`, else `user_id`) reaching page_view -> product_view -> cart_add ->
    /// checkout_start -> order in order within the window; `collection` filter.
    #[allow(clippy::too_many_arguments)]
    #[oai(
        path = "/api/v1/analytics/business/funnel",
        method = "get",
        tag = "ApiTags::Business"
    )]
    async fn funnel(
        &self,
        req: &Request,
        _auth: BearerAuth,
        /// `1h`, `24h` (default), `7d` or `30d` ending now; not with `from`/`to`.
        range: Query<Option<RangePreset>>,
        /// Window start (RFC 3339), with `to`; before `to`, at most 400 days before it.
        from: Query<Option<DateTime<Utc>>>,
        /// Window end (RFC 3339, exclusive), with `from`.
        to: Query<Option<DateTime<Utc>>>,
        /// Project slug (default `default`).
        #[oai(validator(pattern = r"^[a-z0-9][a-z0-9_-]{0,63}$"))]
        project: Query<Option<String>>,
        /// Accepted for symmetry with the other business routes (the funnel has no money);
        /// an unknown code is 400.
        #[oai(validator(pattern = r"^[A-Za-z]{3}$"))]
        currency: Query<Option<String>>,
        /// Add the `previous_period` or `previous_year` window.
        compare: Query<Option<CompareParam>>,
        /// Only events of this collection (name or slug; events naming none stay).
        #[oai(validator(max_length = 256, pattern = r"[^\t\n\x0C\r _-]"))]
        collection: Query<Option<String>>,
    ) -> ApiResult<Json<BusinessFunnel>, NotFound> {
        let c = self
            .common(req, range.0, from.0, to.0, project.0, currency.0, compare.0)
            .await?;
        let collection = match collection.0.filter(|s| !s.is_empty()) {
            Some(s) => Some(
                canonical_collection(&s)
                    .ok_or_else(|| ApiError::invalid("collection", "must name a collection"))?,
            ),
            None => None,
        };
        let biz = self.biz();
        let read = async {
            let now = biz
                .funnel(&c.project, c.window.range(), collection.as_deref())
                .await?;
            let then = match c.compare {
                Some(r) => Some((r, biz.funnel(&c.project, r, collection.as_deref()).await?)),
                None => None,
            };
            Ok::<_, analytics_core::Error>((now, then, self.source(&c).await?))
        };
        let (now, then, source) = self.state.timed_read(read).await?;
        let compare = then.map(|(r, base)| FunnelCompare {
            range: r.into(),
            steps: base
                .iter()
                .zip(&now)
                .map(|(b, n)| FunnelStepCompare {
                    figures: b.into(),
                    delta: delta_u(n.sessions, b.sessions),
                })
                .collect(),
        });
        Ok(Json(BusinessFunnel {
            range: c.window.range().into(),
            project: c.project.to_string(),
            basis: "sessions".into(),
            collection,
            source,
            steps: now.iter().map(Into::into).collect(),
            compare,
        }))
    }
}

impl poem_openapi::types::Example for ProductBody {
    fn example() -> Self {
        Self {
            product_id: "black-rose-hoodie".into(),
            collection: Some("black-rose".into()),
            views: 1840,
            cart_adds: 212,
            units: 97,
            orders: 88,
            revenue: 8633.0,
            conversion_rate: Some(88.0 / 1840.0),
            inventory: Some(41),
        }
    }
}

impl poem_openapi::types::Example for CollectionBody {
    fn example() -> Self {
        Self {
            collection: "love-hurts".into(),
            name: "Love Hurts".into(),
            revenue: 5120.5,
            orders: 64,
            units: 81,
            aov: Some(80.01),
            views: 2210,
            conversion_rate: Some(64.0 / 2210.0),
        }
    }
}

impl poem_openapi::types::Example for FunnelStepBody {
    fn example() -> Self {
        Self {
            step: "cart_add".into(),
            sessions: 240,
            conversion_from_previous: Some(240.0 / 800.0),
            conversion_from_start: Some(240.0 / 2000.0),
            drop_off: 560,
        }
    }
}

fn default_product_limit() -> u32 {
    50
}
