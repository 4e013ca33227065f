//! Business figures (API.md, "Business"): revenue, orders, average order value and units
//! per currency (never summed across currencies), per bucket, per product and per
//! collection; product views, cart adds and conversion; the latest inventory; the ordered
//! session funnel ([`crate::funnel`]); and comparison periods. Read through the
//! [`RollupReader`], so every figure covers the whole window and survives raw-event
//! retention.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::Duration;

use crate::error::{FieldError, Result};
use crate::event::canonical_collection;
use crate::funnel::{ALL_COLLECTIONS, FunnelStepKind, NO_COLLECTION, STEPS, count_sessions};
use crate::health::{is_sampled as sampled, metric, to_count};
use crate::ids::ProjectId;
use crate::ml::cents;
use crate::rollup::read::{RollupReader, SeriesQuery};
use crate::rollup::spec::metrics;
use crate::rollup::{Dimensions, RollupStats};
use crate::time::{Comparison, Granularity, TimeRange, Window};

/// The collections every collection list names, with their default display names.
pub const DEFAULT_COLLECTIONS: [(&str, &str); 3] = [
    ("black-rose", "Black Rose"),
    ("love-hurts", "Love Hurts"),
    ("signature", "Signature"),
];

/// How far back the latest inventory snapshot is looked for, from the window's end.
pub const INVENTORY_LOOKBACK: Duration = Duration::days(400);

/// The configured collections: slug -> display name, in configuration order.
#[derive(Debug, Clone, PartialEq)]
pub struct Collections(Vec<(String, String)>);

impl Default for Collections {
    fn default() -> Self {
        Self(
            DEFAULT_COLLECTIONS
                .iter()
                .map(|(s, n)| ((*s).to_owned(), (*n).to_owned()))
                .collect(),
        )
    }
}

impl Collections {
    /// Parses `Display Name;Display Name` or `slug=Display Name;...` (the
    /// `ANALYTICS_COLLECTIONS` form): each entry's slug is canonicalised
    /// ([`canonical_collection`]). Errors name `field`.
    pub fn parse(s: &str, field: &str) -> std::result::Result<Self, FieldError> {
        let mut out: Vec<(String, String)> = Vec::new();
        for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (slug, name) = match part.split_once('=') {
                Some((slug, name)) => (slug.trim(), name.trim()),
                None => (part, part),
            };
            let slug = canonical_collection(slug)
                .ok_or_else(|| FieldError::new(field, format!("{part:?} names no collection")))?;
            if name.is_empty() || out.iter().any(|(s, _)| s == &slug) {
                return Err(FieldError::new(
                    field,
                    format!("{part:?} is empty or names a collection twice"),
                ));
            }
            out.push((slug, name.to_owned()));
        }
        Ok(Self(out))
    }

    /// The slugs, in order.
    pub fn slugs(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(s, _)| s.as_str())
    }

    /// The display name of `slug` (configured, else the slug itself).
    pub fn name<'a>(&'a self, slug: &'a str) -> &'a str {
        self.0
            .iter()
            .find(|(s, _)| s == slug)
            .map_or(slug, |(_, n)| n.as_str())
    }
}

/// ISO 4217 codes accepted as a `currency` parameter.
const ISO_4217: &str = "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND \
BOB BRL BSD BTN BWP BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB \
EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY \
KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR \
MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF \
SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH \
UGX USD UYU UZS VES VND VUV WST XAF XCD XOF XPF YER ZAR ZMW ZWL";

/// Parses a `currency` parameter: an ISO 4217 code, any case (field `currency`).
pub fn parse_currency(s: &str) -> std::result::Result<String, FieldError> {
    let upper = s.trim().to_ascii_uppercase();
    if upper.len() == 3 && ISO_4217.split_ascii_whitespace().any(|c| c == upper) {
        Ok(upper)
    } else {
        Err(FieldError::new(
            "currency",
            "must be an ISO 4217 currency code such as USD",
        ))
    }
}

/// Parses a `compare` parameter: `previous_period` or `previous_year` (field `compare`).
pub fn parse_compare(s: &str) -> std::result::Result<Comparison, FieldError> {
    match s {
        "previous_period" => Ok(Comparison::PreviousPeriod),
        "previous_year" => Ok(Comparison::SamePeriodLastYear),
        _ => Err(FieldError::new(
            "compare",
            "must be previous_period or previous_year",
        )),
    }
}

/// A change against the comparison period.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Delta {
    /// `current - base`.
    pub abs: f64,
    /// `abs / base`; `None` when the base is 0 (or missing).
    pub pct: Option<f64>,
}

impl Delta {
    /// The change from `base` to `current` (`None` figures count as 0).
    pub fn between(current: Option<f64>, base: Option<f64>) -> Self {
        let (c, b) = (current.unwrap_or(0.0), base.unwrap_or(0.0));
        Self {
            abs: c - b,
            pct: (b != 0.0).then(|| (c - b) / b),
        }
    }
}

/// Orders and revenue of one currency.
#[derive(Debug, Clone, PartialEq)]
pub struct CurrencyFigures {
    /// ISO 4217 code.
    pub currency: String,
    /// Orders (re-weighted, rounded).
    pub orders: u64,
    /// Revenue, rounded to cents.
    pub revenue: f64,
}

/// `business/overview`.
#[derive(Debug, Clone, PartialEq)]
pub struct Overview {
    /// The currency of every figure.
    pub currency: String,
    /// Revenue, rounded to cents.
    pub revenue: f64,
    /// Orders.
    pub orders: u64,
    /// `revenue / orders`, rounded to cents; `None` without orders.
    pub aov: Option<f64>,
    /// Units sold.
    pub units: u64,
    /// Orders in the other currencies.
    pub other_currencies: Vec<CurrencyFigures>,
    /// Whether sampled events contributed.
    pub sampled: bool,
}

impl Overview {
    /// The figures compared: `revenue`, `orders`, `aov`, `units`.
    pub fn delta(&self, base: &Overview) -> Vec<(&'static str, Delta)> {
        vec![
            (
                "revenue",
                Delta::between(Some(self.revenue), Some(base.revenue)),
            ),
            (
                "orders",
                Delta::between(Some(self.orders as f64), Some(base.orders as f64)),
            ),
            ("aov", Delta::between(self.aov, base.aov)),
            (
                "units",
                Delta::between(Some(self.units as f64), Some(base.units as f64)),
            ),
        ]
    }
}

/// Revenue, units and orders of one collection in a bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CollectionSales {
    /// Revenue of the collection's lines, rounded to cents.
    pub revenue: f64,
    /// Units of its lines.
    pub units: u64,
    /// Distinct orders with a line of it.
    pub orders: u64,
}

/// One bucket of `business/sales`.
#[derive(Debug, Clone, PartialEq)]
pub struct SalesPoint {
    /// Aligned bucket start.
    pub ts: chrono::DateTime<chrono::Utc>,
    /// Revenue, rounded to cents.
    pub revenue: f64,
    /// Orders.
    pub orders: u64,
    /// Units.
    pub units: u64,
    /// Per collection slug (configured ones always, others when seen in the window).
    pub by_collection: BTreeMap<String, CollectionSales>,
}

/// One product of `business/products`.
#[derive(Debug, Clone, PartialEq)]
pub struct ProductFigures {
    /// Product id.
    pub product_id: String,
    /// Its collection, when any event named one.
    pub collection: Option<String>,
    /// `product_view` events.
    pub views: u64,
    /// `cart_add` events.
    pub cart_adds: u64,
    /// Units sold (in the currency).
    pub units: u64,
    /// Distinct orders containing it (in the currency).
    pub orders: u64,
    /// Revenue of its lines, rounded to cents.
    pub revenue: f64,
    /// `orders / views`; `None` without views.
    pub conversion_rate: Option<f64>,
    /// The latest `on_hand` at or before the window's end.
    pub inventory: Option<u64>,
}

/// The `sort` of `business/products`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProductSort {
    /// Most revenue first.
    Revenue,
    /// Most units first.
    Units,
    /// Most views first.
    Views,
}

/// One collection of `business/collections`.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectionFigures {
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
    /// `revenue / orders`, rounded to cents.
    pub aov: Option<f64>,
    /// `product_view` events of the collection.
    pub views: u64,
    /// `orders / views`.
    pub conversion_rate: Option<f64>,
}

/// One step of `business/funnel`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FunnelStepFigures {
    /// The step.
    pub step: FunnelStepKind,
    /// Sessions reaching it in order.
    pub sessions: u64,
    /// `sessions / previous step's sessions` (1 for the first; `None` on a zero base).
    pub conversion_from_previous: Option<f64>,
    /// `sessions / first step's sessions`.
    pub conversion_from_start: Option<f64>,
    /// Previous step's sessions minus this one's (0 for the first).
    pub drop_off: u64,
}

/// The comparison's points beside the window's, bucket by bucket by time: for each point
/// of `now` (a bucket of `range`, clipped to its start), the point of `base` (the series of
/// `range.compared(comparison)`) whose bucket holds the same instant of the comparison
/// range ([`TimeRange::compared_instant`]: Feb 29 falls on Feb 28 a year earlier). A
/// bucket `base` lacks is a zero point.
pub fn align_points(
    now: &[SalesPoint],
    base: &[SalesPoint],
    range: TimeRange,
    comparison: Comparison,
    g: Granularity,
) -> Vec<SalesPoint> {
    let by_ts: HashMap<_, &SalesPoint> = base.iter().map(|p| (p.ts, p)).collect();
    now.iter()
        .map(|p| {
            let at = g.bucket_start(range.compared_instant(comparison, p.ts.max(range.start())));
            by_ts.get(&at).map_or_else(
                || SalesPoint {
                    ts: at,
                    revenue: 0.0,
                    orders: 0,
                    units: 0,
                    by_collection: p
                        .by_collection
                        .keys()
                        .map(|k| (k.clone(), CollectionSales::default()))
                        .collect(),
                },
                |b| (*b).clone(),
            )
        })
        .collect()
}

/// The funnel from per-step session counts.
pub fn funnel_steps(counts: [u64; STEPS]) -> Vec<FunnelStepFigures> {
    let ratio = |a: u64, b: u64| (b > 0).then(|| a as f64 / b as f64);
    FunnelStepKind::ALL
        .iter()
        .enumerate()
        .map(|(i, step)| {
            let prev = if i == 0 { counts[0] } else { counts[i - 1] };
            FunnelStepFigures {
                step: *step,
                sessions: counts[i],
                conversion_from_previous: ratio(counts[i], prev),
                conversion_from_start: ratio(counts[i], counts[0]),
                drop_off: prev.saturating_sub(counts[i]),
            }
        })
        .collect()
}

fn dims(pairs: &[(&str, &str)]) -> Result<Dimensions> {
    Ok(Dimensions::from_pairs(pairs.iter().copied())?)
}

/// The business computations over a [`RollupReader`] with the default specs.
#[derive(Debug, Clone)]
pub struct BusinessAnalytics {
    reader: RollupReader,
    collections: Collections,
}

impl BusinessAnalytics {
    /// Business figures read through `reader`, naming `collections`.
    pub fn new(reader: RollupReader, collections: Collections) -> Self {
        Self {
            reader,
            collections,
        }
    }

    /// The configured collections.
    pub fn collections(&self) -> &Collections {
        &self.collections
    }

    /// Per value of `name` among rows of `metric` grouped by (`currency`, `name`) in
    /// `currency` (or grouped by `name` alone when `currency` is `None`).
    async fn by(
        &self,
        project: &ProjectId,
        metric_name: &str,
        name: &str,
        currency: Option<&str>,
        range: TimeRange,
    ) -> Result<HashMap<String, RollupStats>> {
        let mut names = vec![name];
        if currency.is_some() {
            names.push("currency");
        }
        Ok(self
            .reader
            .breakdown(project, &metric(metric_name), &names, range)
            .await?
            .into_iter()
            .filter(|(d, _)| currency.is_none_or(|c| d.get("currency") == Some(c)))
            .filter_map(|(d, s)| Some((d.get(name)?.to_owned(), s)))
            .collect())
    }

    /// `business/overview` in `currency`.
    pub async fn overview(
        &self,
        project: &ProjectId,
        range: TimeRange,
        currency: &str,
    ) -> Result<Overview> {
        let revenue = self
            .reader
            .breakdown(
                project,
                &metric(metrics::ORDER_REVENUE),
                &["currency"],
                range,
            )
            .await?;
        let units = self
            .reader
            .stats(
                &SeriesQuery {
                    project: project.clone(),
                    metric: metric(metrics::ORDER_UNITS),
                    dimensions: dims(&[("currency", currency)])?,
                },
                range,
            )
            .await?;
        let mut out = Overview {
            currency: currency.to_owned(),
            revenue: 0.0,
            orders: 0,
            aov: None,
            units: units.as_ref().map_or(0, |s| to_count(s.sum)),
            other_currencies: Vec::new(),
            sampled: units.as_ref().is_some_and(sampled),
        };
        let mut orders_f = 0.0;
        let mut revenue_f = 0.0;
        for (d, s) in &revenue {
            let Some(c) = d.get("currency") else { continue };
            if c == currency {
                orders_f = s.count;
                revenue_f = s.sum;
                out.sampled |= sampled(s);
            } else {
                out.other_currencies.push(CurrencyFigures {
                    currency: c.to_owned(),
                    orders: to_count(s.count),
                    revenue: cents(s.sum),
                });
            }
        }
        out.other_currencies
            .sort_by(|a, b| a.currency.cmp(&b.currency));
        out.orders = to_count(orders_f);
        out.revenue = cents(revenue_f);
        out.aov = (orders_f > 0.0).then(|| cents(revenue_f / orders_f));
        Ok(out)
    }

    /// The collection slugs of a list: the configured ones, then any other seen.
    fn collection_list(&self, seen: impl IntoIterator<Item = String>) -> Vec<String> {
        let mut out: Vec<String> = self.collections.slugs().map(str::to_owned).collect();
        let others: BTreeSet<String> = seen.into_iter().filter(|s| !out.contains(s)).collect();
        out.extend(others);
        out
    }

    async fn series(
        &self,
        project: &ProjectId,
        name: &str,
        pairs: &[(&str, &str)],
        window: &Window,
        g: Granularity,
    ) -> Result<HashMap<chrono::DateTime<chrono::Utc>, RollupStats>> {
        Ok(self
            .reader
            .timeseries(
                &SeriesQuery {
                    project: project.clone(),
                    metric: metric(name),
                    dimensions: dims(pairs)?,
                },
                window.range(),
                g,
            )
            .await?
            .into_iter()
            .collect())
    }

    /// `business/sales`: one point per bucket of the window, empty ones included.
    pub async fn sales(
        &self,
        project: &ProjectId,
        window: &Window,
        g: Granularity,
        currency: &str,
    ) -> Result<Vec<SalesPoint>> {
        let c = [("currency", currency)];
        let revenue = self
            .series(project, metrics::ORDER_REVENUE, &c, window, g)
            .await?;
        let units = self
            .series(project, metrics::ORDER_UNITS, &c, window, g)
            .await?;
        let seen = self
            .by(
                project,
                metrics::LINE_REVENUE,
                "collection",
                Some(currency),
                window.range(),
            )
            .await?;
        let mut per_collection = Vec::new();
        for slug in self.collection_list(seen.into_keys()) {
            let pairs = [("currency", currency), ("collection", slug.as_str())];
            let r = self
                .series(project, metrics::LINE_REVENUE, &pairs, window, g)
                .await?;
            let u = self
                .series(project, metrics::LINE_UNITS, &pairs, window, g)
                .await?;
            let o = self
                .series(project, metrics::LINE_ORDERS, &pairs, window, g)
                .await?;
            per_collection.push((slug, r, u, o));
        }
        Ok(window
            .buckets(g)
            .map(|b| {
                let r = revenue.get(&b.start);
                SalesPoint {
                    ts: b.start,
                    revenue: cents(r.map_or(0.0, |s| s.sum)),
                    orders: r.map_or(0, |s| to_count(s.count)),
                    units: units.get(&b.start).map_or(0, |s| to_count(s.sum)),
                    by_collection: per_collection
                        .iter()
                        .map(|(slug, r, u, o)| {
                            (
                                slug.clone(),
                                CollectionSales {
                                    revenue: cents(r.get(&b.start).map_or(0.0, |s| s.sum)),
                                    units: u.get(&b.start).map_or(0, |s| to_count(s.sum)),
                                    orders: o.get(&b.start).map_or(0, |s| to_count(s.count)),
                                },
                            )
                        })
                        .collect(),
                }
            })
            .collect())
    }

    /// The latest `on_hand` per product at or before `end`.
    async fn inventory(
        &self,
        project: &ProjectId,
        end: chrono::DateTime<chrono::Utc>,
    ) -> Result<HashMap<String, u64>> {
        let range = TimeRange::ending_at(end, INVENTORY_LOOKBACK)?;
        let mut latest: HashMap<String, (f64, u64)> = HashMap::new();
        for (d, s) in self
            .reader
            .breakdown(
                project,
                &metric(metrics::INVENTORY),
                &["product_id", "on_hand"],
                range,
            )
            .await?
        {
            let (Some(p), Some(on_hand), Some(at)) = (
                d.get("product_id"),
                d.get("on_hand").and_then(|v| v.parse::<u64>().ok()),
                s.max,
            ) else {
                continue;
            };
            let slot = latest.entry(p.to_owned()).or_insert((f64::MIN, 0));
            if at > slot.0 {
                *slot = (at, on_hand);
            }
        }
        Ok(latest.into_iter().map(|(p, (_, v))| (p, v)).collect())
    }

    /// `business/products`: every product seen in the window (viewed, added to a cart or
    /// sold in `currency`), sorted by `sort` (ties by product id), at most `limit`.
    pub async fn products(
        &self,
        project: &ProjectId,
        range: TimeRange,
        currency: &str,
        sort: ProductSort,
        limit: usize,
    ) -> Result<Vec<ProductFigures>> {
        let p = "product_id";
        let views = self
            .by(project, metrics::FUNNEL_PRODUCT_VIEW, p, None, range)
            .await?;
        let carts = self
            .by(project, metrics::FUNNEL_CART_ADD, p, None, range)
            .await?;
        let units = self
            .by(project, metrics::LINE_UNITS, p, Some(currency), range)
            .await?;
        let revenue = self
            .by(project, metrics::LINE_REVENUE, p, Some(currency), range)
            .await?;
        let orders = self
            .by(project, metrics::PRODUCT_ORDERS, p, Some(currency), range)
            .await?;
        let mut collection_of: HashMap<String, String> = HashMap::new();
        for m in [metrics::LINE_UNITS, metrics::FUNNEL_PRODUCT_VIEW] {
            for (d, _) in self
                .reader
                .breakdown(project, &metric(m), &["collection", p], range)
                .await?
            {
                if let (Some(prod), Some(c)) = (d.get(p), d.get("collection")) {
                    collection_of
                        .entry(prod.to_owned())
                        .or_insert_with(|| c.to_owned());
                }
            }
        }
        let inventory = self.inventory(project, range.end()).await?;
        let ids: BTreeSet<&String> = views
            .keys()
            .chain(carts.keys())
            .chain(units.keys())
            .chain(revenue.keys())
            .collect();
        let mut out: Vec<ProductFigures> = ids
            .into_iter()
            .map(|id| {
                let views_n = views.get(id).map_or(0, |s| to_count(s.count));
                let orders_f = orders.get(id).map_or(0.0, |s| s.count);
                let views_f = views.get(id).map_or(0.0, |s| s.count);
                ProductFigures {
                    product_id: id.clone(),
                    collection: collection_of.get(id).cloned(),
                    views: views_n,
                    cart_adds: carts.get(id).map_or(0, |s| to_count(s.count)),
                    units: units.get(id).map_or(0, |s| to_count(s.sum)),
                    orders: to_count(orders_f),
                    revenue: cents(revenue.get(id).map_or(0.0, |s| s.sum)),
                    conversion_rate: (views_f > 0.0).then(|| orders_f / views_f),
                    inventory: inventory.get(id).copied(),
                }
            })
            .collect();
        out.sort_by(|a, b| {
            let key = |x: &ProductFigures| match sort {
                ProductSort::Revenue => x.revenue,
                ProductSort::Units => x.units as f64,
                ProductSort::Views => x.views as f64,
            };
            key(b)
                .total_cmp(&key(a))
                .then_with(|| a.product_id.cmp(&b.product_id))
        });
        out.truncate(limit);
        Ok(out)
    }

    /// `business/collections`: the configured collections (zeros included), then any other
    /// seen.
    pub async fn collections_figures(
        &self,
        project: &ProjectId,
        range: TimeRange,
        currency: &str,
    ) -> Result<Vec<CollectionFigures>> {
        let c = "collection";
        let revenue = self
            .by(project, metrics::LINE_REVENUE, c, Some(currency), range)
            .await?;
        let units = self
            .by(project, metrics::LINE_UNITS, c, Some(currency), range)
            .await?;
        let orders = self
            .by(project, metrics::LINE_ORDERS, c, Some(currency), range)
            .await?;
        let views = self
            .by(project, metrics::FUNNEL_PRODUCT_VIEW, c, None, range)
            .await?;
        let seen: Vec<String> = revenue.keys().chain(views.keys()).cloned().collect();
        Ok(self
            .collection_list(seen)
            .into_iter()
            .map(|slug| {
                let revenue_f = revenue.get(&slug).map_or(0.0, |s| s.sum);
                let orders_f = orders.get(&slug).map_or(0.0, |s| s.count);
                let views_f = views.get(&slug).map_or(0.0, |s| s.count);
                CollectionFigures {
                    name: self.collections.name(&slug).to_owned(),
                    revenue: cents(revenue_f),
                    orders: to_count(orders_f),
                    units: units.get(&slug).map_or(0, |s| to_count(s.sum)),
                    aov: (orders_f > 0.0).then(|| cents(revenue_f / orders_f)),
                    views: to_count(views_f),
                    conversion_rate: (views_f > 0.0).then(|| orders_f / views_f),
                    collection: slug,
                }
            })
            .collect())
    }

    /// `business/funnel`: sessions reaching each step in order within `range`, for
    /// `collection` (a slug) when given.
    pub async fn funnel(
        &self,
        project: &ProjectId,
        range: TimeRange,
        collection: Option<&str>,
    ) -> Result<Vec<FunnelStepFigures>> {
        // Only the rows the count looks at: the all-collections ones, or the collection's
        // and those of the events naming none.
        let values = match collection {
            None => vec![ALL_COLLECTIONS],
            Some(c) => vec![c, NO_COLLECTION],
        };
        let mut rows = Vec::new();
        for value in values {
            rows.extend(
                self.reader
                    .rows_in_order(
                        project,
                        &metric(metrics::FUNNEL_SESSIONS),
                        &["collection"],
                        &Dimensions::from_pairs([("collection", value)])?,
                        range,
                    )
                    .await?,
            );
        }
        Ok(funnel_steps(count_sessions(rows.iter(), collection)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_name_their_field() {
        assert_eq!(parse_currency("usd").unwrap(), "USD");
        assert_eq!(parse_currency("XYZ").unwrap_err().field, "currency");
        assert_eq!(parse_currency("US").unwrap_err().field, "currency");
        assert_eq!(
            parse_compare("previous_year").unwrap(),
            Comparison::SamePeriodLastYear
        );
        assert_eq!(parse_compare("foo").unwrap_err().field, "compare");
    }

    #[test]
    fn collection_names_canonicalise_to_slugs() {
        for (input, slug) in [
            ("Black Rose", Some("black-rose")),
            (" black__rose ", Some("black-rose")),
            ("BLACK - ROSE", Some("black-rose")),
            ("-signature-", Some("signature")),
            ("Été", Some("été")),
            (" _-\t", None),
        ] {
            assert_eq!(canonical_collection(input).as_deref(), slug, "{input:?}");
        }
    }

    #[test]
    fn collections_are_slugs_with_names() {
        let c = Collections::parse("Black Rose; love_hurts=Love Hurts", "x").unwrap();
        assert_eq!(c.slugs().collect::<Vec<_>>(), ["black-rose", "love-hurts"]);
        assert_eq!(c.name("black-rose"), "Black Rose");
        assert_eq!(c.name("other"), "other");
        assert!(Collections::parse("a;A", "x").is_err());
        assert_eq!(Collections::default().name("signature"), "Signature");
    }

    #[test]
    fn comparison_points_align_by_time_across_feb_29() {
        let t = |s: &str| s.parse::<chrono::DateTime<chrono::Utc>>().unwrap();
        let points = |ps: &[(&str, u64)]| -> Vec<SalesPoint> {
            ps.iter()
                .map(|(ts, orders)| SalesPoint {
                    ts: t(ts),
                    revenue: *orders as f64,
                    orders: *orders,
                    units: *orders,
                    by_collection: BTreeMap::new(),
                })
                .collect()
        };
        // (window, now, base, comparison, granularity, expected (ts, orders)).
        let cases = [
            (
                ("2024-02-28T00:00:00Z", "2024-03-02T00:00:00Z"),
                points(&[
                    ("2024-02-28T00:00:00Z", 1),
                    ("2024-02-29T00:00:00Z", 2),
                    ("2024-03-01T00:00:00Z", 3),
                ]),
                points(&[("2023-02-28T00:00:00Z", 10), ("2023-03-01T00:00:00Z", 30)]),
                Comparison::SamePeriodLastYear,
                Granularity::Day,
                // Feb 28 and Feb 29 both beside Feb 28 a year earlier.
                points(&[
                    ("2023-02-28T00:00:00Z", 10),
                    ("2023-02-28T00:00:00Z", 10),
                    ("2023-03-01T00:00:00Z", 30),
                ]),
            ),
            (
                ("2024-03-05T10:30:00Z", "2024-03-05T12:30:00Z"),
                points(&[
                    ("2024-03-05T10:00:00Z", 1),
                    ("2024-03-05T11:00:00Z", 2),
                    ("2024-03-05T12:00:00Z", 3),
                ]),
                points(&[("2024-03-05T09:00:00Z", 7), ("2024-03-05T08:00:00Z", 6)]),
                Comparison::PreviousPeriod,
                Granularity::Hour,
                // The previous period's bucket at the same offset, whatever the base's
                // order; a bucket it lacks is a zero point.
                points(&[
                    ("2024-03-05T08:00:00Z", 6),
                    ("2024-03-05T09:00:00Z", 7),
                    ("2024-03-05T10:00:00Z", 0),
                ]),
            ),
        ];
        for ((from, to), now, base, comparison, g, expected) in cases {
            let range = TimeRange::new(t(from), t(to)).unwrap();
            let got = align_points(&now, &base, range, comparison, g);
            assert_eq!(got, expected, "{comparison:?}");
        }
    }

    #[test]
    fn deltas_and_funnel_ratios() {
        assert_eq!(
            Delta::between(Some(15.0), Some(10.0)),
            Delta {
                abs: 5.0,
                pct: Some(0.5)
            }
        );
        assert_eq!(Delta::between(Some(3.0), Some(0.0)).pct, None);
        assert_eq!(Delta::between(None, None).abs, 0.0);
        let steps = funnel_steps([10, 5, 5, 2, 0]);
        assert_eq!(steps[0].conversion_from_previous, Some(1.0));
        assert_eq!(steps[1].drop_off, 5);
        assert_eq!(steps[3].conversion_from_start, Some(0.2));
        assert_eq!(steps[4].conversion_from_previous, Some(0.0));
        let empty = funnel_steps([0; STEPS]);
        assert!(empty.iter().all(|s| s.conversion_from_start.is_none()));
    }
}
