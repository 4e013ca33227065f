//! Rollup specifications as data: which metric comes from which event kind, the value taken,
//! the filter, and the dimension groupings. [`RollupSpecs::defaults`] covers what the PRD
//! endpoints read; embedders add their own.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::event::{Event, EventKind, Payload};
use crate::ids::MetricName;

/// Where an observation's value comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "field", rename_all = "snake_case")]
pub enum ValueSource {
    /// A constant 1 per event: the row's `count` and `sum` count events.
    One,
    /// A numeric field of the event (see [`field_value`] for the names).
    Field(String),
    /// 1 when the event is a failure (HTTP status >= 500, a failed ML job), else 0: `sum`
    /// counts failures, `avg` is the failure rate.
    FailureFlag,
    /// One observation per order line: its quantity.
    LineQuantity,
    /// One observation per order line: quantity x unit price.
    LineRevenue,
    /// The sum of an order's line quantities.
    OrderUnits,
    /// One observation of 1 per distinct value of a line field (`product_id`,
    /// `collection`) among an order's lines, read at the first line carrying it: `count`
    /// is the distinct orders containing a line of the value, not the lines.
    DistinctLines(String),
    /// The event's time in seconds since the Unix epoch (microsecond precision): `max` is
    /// the latest event of the group (the latest inventory snapshot).
    OccurredAt,
    /// Per-session funnel progress (see [`crate::funnel`]): not per-event observations;
    /// the aggregator keeps each session's ordered steps and writes one packed row per
    /// bucket and collection value holding every session's function, and coarser rows
    /// compose the finer ones in time order.
    SessionFunnel,
}

impl ValueSource {
    /// Whether each order line is its own observation.
    pub fn per_line(&self) -> bool {
        matches!(
            self,
            Self::LineQuantity | Self::LineRevenue | Self::DistinctLines(_)
        )
    }
}

/// A condition on an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Filter {
    /// The text field (see [`field_text`]) is one of the values.
    In {
        /// Field name.
        field: String,
        /// Accepted values.
        values: Vec<String>,
    },
    /// The field is present.
    Present {
        /// Field name.
        field: String,
    },
}

impl Filter {
    /// Whether `e` passes.
    pub fn matches(&self, e: &Event) -> bool {
        match self {
            Self::In { field, values } => field_text(e, field)
                .is_some_and(|v| values.iter().any(|x| x.as_str() == v.as_ref())),
            Self::Present { field } => {
                field_text(e, field).is_some() || field_value(e, field).is_some()
            }
        }
    }
}

/// How one rollup metric is computed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollupSpec {
    /// The metric name rows are stored under.
    pub metric: MetricName,
    /// The event kind it reads.
    pub kind: EventKind,
    /// The value of each observation.
    pub value: ValueSource,
    /// Every filter must pass.
    pub filters: Vec<Filter>,
    /// Dimension groupings: each grouping yields one row per distinct combination of its
    /// dimensions' values (an empty grouping is the overall row). An event lacking one of a
    /// grouping's dimensions is left out of that grouping only.
    pub groupings: Vec<Vec<String>>,
    /// What the metric measures, for the metric catalog (one sentence).
    #[serde(default)]
    pub description: String,
}

impl RollupSpec {
    /// Whether `e` feeds this spec.
    pub fn accepts(&self, e: &Event) -> bool {
        let kind = match self.value {
            ValueSource::SessionFunnel => crate::funnel::FunnelStepKind::of(&e.kind).is_some(),
            _ => e.kind == self.kind,
        };
        kind && self.filters.iter().all(|f| f.matches(e))
    }

    /// The event kinds it reads (the funnel's five for [`ValueSource::SessionFunnel`]).
    pub fn kinds(&self) -> Vec<EventKind> {
        match self.value {
            ValueSource::SessionFunnel => crate::funnel::FunnelStepKind::ALL
                .iter()
                .map(|s| s.kind())
                .collect(),
            _ => vec![self.kind.clone()],
        }
    }

    /// The observations `e` contributes, as `(value, line index)`; the line index is set for
    /// per-line values so line dimensions can be read.
    pub fn observations(&self, e: &Event, out: &mut Vec<(f64, Option<usize>)>) {
        out.clear();
        match &self.value {
            ValueSource::One => out.push((1.0, None)),
            ValueSource::Field(f) => {
                if let Some(v) = field_value(e, f) {
                    out.push((v, None));
                }
            }
            ValueSource::FailureFlag => {
                let failed = match &e.payload {
                    Payload::ApiRequest(r) => Some(r.status >= 500),
                    Payload::MlJob(j) => Some(j.status == crate::event::JobStatus::Failed),
                    Payload::Error(_) => Some(true),
                    _ => None,
                };
                if let Some(f) = failed {
                    out.push((if f { 1.0 } else { 0.0 }, None));
                }
            }
            ValueSource::OccurredAt => {
                out.push((e.occurred_at.timestamp_micros() as f64 / 1e6, None));
            }
            ValueSource::SessionFunnel => {}
            ValueSource::DistinctLines(field) => {
                if let Payload::Order(o) = &e.payload {
                    let mut seen: Vec<&str> = Vec::new();
                    for (i, line) in o.items.iter().enumerate() {
                        let v = match field.as_str() {
                            "product_id" => Some(line.product_id.as_str()),
                            "collection" => line.collection.as_deref(),
                            _ => None,
                        };
                        if let Some(v) = v
                            && !seen.contains(&v)
                        {
                            seen.push(v);
                            out.push((1.0, Some(i)));
                        }
                    }
                }
            }
            ValueSource::OrderUnits => {
                if let Payload::Order(o) = &e.payload {
                    out.push((o.items.iter().map(|i| f64::from(i.quantity)).sum(), None));
                }
            }
            ValueSource::LineQuantity | ValueSource::LineRevenue => {
                if let Payload::Order(o) = &e.payload {
                    for (i, line) in o.items.iter().enumerate() {
                        let v = match self.value {
                            ValueSource::LineQuantity => f64::from(line.quantity),
                            _ => f64::from(line.quantity) * line.unit_price,
                        };
                        out.push((v, Some(i)));
                    }
                }
            }
        }
    }
}

/// A numeric field of an event by name: payload fields (`latency_ms`, `status`,
/// `duration_ms`, `cost_usd`, `amount`, `quantity`, `value`), `sample_rate`, numeric
/// `properties.<name>` and numeric top-level fields of a custom payload.
pub fn field_value(e: &Event, name: &str) -> Option<f64> {
    if let Some(prop) = name.strip_prefix("properties.") {
        return e.properties.get(prop).and_then(serde_json::Value::as_f64);
    }
    if name == "sample_rate" {
        return Some(e.sample_rate);
    }
    match (&e.payload, name) {
        (Payload::ApiRequest(r), "latency_ms") => Some(r.latency_ms),
        (Payload::ApiRequest(r), "status") => Some(f64::from(r.status)),
        (Payload::MlJob(j), "duration_ms") => Some(j.duration_ms),
        (Payload::MlJob(j), "cost_usd") => j.cost_usd,
        (Payload::Order(o), "amount") => Some(o.amount),
        (Payload::Error(x), "status") => x.status.map(f64::from),
        (Payload::Alert(a), "value") => a.value,
        (Payload::Funnel(s), "quantity") => s.quantity.map(f64::from),
        (Payload::Funnel(s), "value") => s.value,
        (Payload::Inventory(i), "on_hand") => Some(i.on_hand as f64),
        (Payload::Custom(m), _) => m.get(name).and_then(serde_json::Value::as_f64),
        _ => None,
    }
}

/// A text field of an event by name, for filters and dimensions: `kind`, `source`,
/// `project`, `route`, `method`, `status` (the status label of [`Event::status`]),
/// `status_class` (`2xx`..`5xx`), `provider`, `pipeline`, `model`, `currency`,
/// `error_type`, `severity`, `path`, `product_id`, `collection` (the event's, see
/// [`Event::collection`]), `properties.<name>` (strings), and top-level strings of a custom
/// payload.
pub fn field_text<'e>(e: &'e Event, name: &str) -> Option<Cow<'e, str>> {
    if let Some(prop) = name.strip_prefix("properties.") {
        return e
            .properties
            .get(prop)
            .and_then(|v| v.as_str())
            .map(Cow::Borrowed);
    }
    let borrowed = |s: &'e str| Some(Cow::Borrowed(s));
    match name {
        "kind" => return borrowed(e.kind.as_str()),
        "source" => return e.source.as_deref().map(Cow::Borrowed),
        "project" => return borrowed(e.project.as_str()),
        "route" => return e.route().map(Cow::Borrowed),
        "provider" => return e.provider().map(Cow::Borrowed),
        "collection" => return e.collection().map(Cow::Borrowed),
        "status" => {
            return match &e.payload {
                Payload::MlJob(j) => borrowed(j.status.as_str()),
                _ => e.status().map(Cow::Owned),
            };
        }
        "status_class" => {
            let status = match &e.payload {
                Payload::ApiRequest(r) => Some(r.status),
                Payload::Error(x) => x.status,
                _ => None,
            }?;
            const CLASSES: [&str; 6] = ["0xx", "1xx", "2xx", "3xx", "4xx", "5xx"];
            return borrowed(
                CLASSES
                    .get(usize::from(status / 100))
                    .copied()
                    .unwrap_or("5xx"),
            );
        }
        _ => {}
    }
    match (&e.payload, name) {
        (Payload::ApiRequest(r), "method") => borrowed(&r.method),
        (Payload::MlJob(j), "pipeline") => borrowed(j.pipeline.as_str()),
        (Payload::MlJob(j), "model") => j.model.as_deref().map(Cow::Borrowed),
        (Payload::Order(o), "currency") => borrowed(&o.currency),
        (Payload::Error(x), "error_type") => borrowed(&x.error_type),
        (Payload::Alert(a), "severity") => borrowed(a.severity.as_str()),
        (Payload::Alert(a), "metric") => borrowed(&a.metric),
        (Payload::Funnel(s), "path") => s.path.as_deref().map(Cow::Borrowed),
        (Payload::Funnel(s), "product_id") => s.product_id.as_deref().map(Cow::Borrowed),
        (Payload::MlJob(j), "stage") => j.stage.map(|s| Cow::Borrowed(s.as_str())),
        (Payload::MlJob(j), "job_id") => j.job_id.as_deref().map(Cow::Borrowed),
        (Payload::Inventory(i), "product_id") => borrowed(&i.product_id),
        (Payload::Inventory(i), "on_hand") => Some(Cow::Owned(i.on_hand.to_string())),
        (Payload::Custom(m), _) => m.get(name).and_then(|v| v.as_str()).map(Cow::Borrowed),
        _ => None,
    }
}

/// A dimension value for an observation: line dimensions (`line.product_id`,
/// `line.collection`) read the observation's order line; everything else is [`field_text`].
pub fn dimension_value<'e>(e: &'e Event, line: Option<usize>, name: &str) -> Option<Cow<'e, str>> {
    if let Some(line_field) = name.strip_prefix("line.") {
        let Payload::Order(o) = &e.payload else {
            return None;
        };
        let item = o.items.get(line?)?;
        return match line_field {
            "product_id" => Some(Cow::Borrowed(&item.product_id)),
            "collection" => item.collection.as_deref().map(Cow::Borrowed),
            _ => None,
        };
    }
    field_text(e, name)
}

/// The name a grouping dimension is stored under in rollup rows: `line.` is dropped
/// (`line.collection` rows are grouped by `collection`) and other dots become `_`
/// (`properties.plan` -> `properties_plan`).
pub fn stored_dimension_name(dim: &str) -> String {
    dim.strip_prefix("line.").unwrap_or(dim).replace('.', "_")
}

/// A set of specs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollupSpecs(pub Vec<RollupSpec>);

fn spec(
    metric: &str,
    kind: EventKind,
    value: ValueSource,
    groupings: &[&[&str]],
    description: &str,
) -> RollupSpec {
    RollupSpec {
        description: description.to_owned(),
        // The default names are valid by construction (checked by a test).
        metric: MetricName::parse(metric).unwrap_or_else(|e| panic!("default metric: {e}")),
        kind,
        value,
        filters: Vec::new(),
        groupings: groupings
            .iter()
            .map(|g| g.iter().map(|s| (*s).to_owned()).collect())
            .collect(),
    }
}

/// Metric names of the default specs.
pub mod metrics {
    /// API latency in ms; `count` is the number of requests.
    pub const API_LATENCY_MS: &str = "api.latency_ms";
    /// 1 per 5xx response, else 0: `sum` = server errors, `avg` = error rate.
    pub const API_ERRORS: &str = "api.errors";
    /// Application error events.
    pub const ERRORS: &str = "errors.count";
    /// Duration of finished ML jobs.
    pub const ML_DURATION_MS: &str = "ml.duration_ms";
    /// 1 per failed finished ML job, else 0: `avg` = failure rate.
    pub const ML_FAILED: &str = "ml.failed";
    /// Provider cost of finished ML jobs that report one.
    pub const ML_COST_USD: &str = "ml.cost_usd";
    /// Finished ML jobs (one terminal event each), by status.
    pub const ML_JOBS: &str = "ml.jobs";
    /// Distinct orders containing a line of a collection.
    pub const LINE_ORDERS: &str = "sales.orders";
    /// Distinct orders containing a line of a product.
    pub const PRODUCT_ORDERS: &str = "sales.product_orders";
    /// Inventory snapshots: `max` is the time of the latest snapshot of a (product,
    /// on_hand) pair.
    pub const INVENTORY: &str = "inventory.snapshot";
    /// Packed per-session funnel progress (one row per bucket and collection value).
    pub const FUNNEL_SESSIONS: &str = "funnel.sessions";
    /// Order totals: `sum` = revenue, `count` = orders, `avg` = average order value.
    pub const ORDER_REVENUE: &str = "orders.revenue";
    /// Units per order.
    pub const ORDER_UNITS: &str = "orders.units";
    /// Revenue per order line (by collection and product).
    pub const LINE_REVENUE: &str = "sales.revenue";
    /// Units per order line (by collection and product).
    pub const LINE_UNITS: &str = "sales.units";
    /// Funnel: page views.
    pub const FUNNEL_PAGE_VIEW: &str = "funnel.page_view";
    /// Funnel: product views.
    pub const FUNNEL_PRODUCT_VIEW: &str = "funnel.product_view";
    /// Funnel: cart additions.
    pub const FUNNEL_CART_ADD: &str = "funnel.cart_add";
    /// Funnel: checkout starts.
    pub const FUNNEL_CHECKOUT_START: &str = "funnel.checkout_start";
    /// The server's own store-call timings (project `analytics-internal`, kind
    /// `store_call`): ingest writes, reads and pings, by `operation`.
    pub const STORE_LATENCY_MS: &str = "store.latency_ms";
    /// Duration of the server's rollup scheduler ticks (kind `store_call`, operation
    /// `rollup_tick`), apart from the queries so a long catch-up does not read as slow
    /// queries.
    pub const ROLLUP_TICK_MS: &str = "store.rollup_tick_ms";
}

/// The event kind of the server's own store-call timings (a custom kind: payload
/// `{"operation", "latency_ms"}`), kept under [`crate::ids::ProjectId::internal`].
pub const STORE_CALL_KIND: &str = "store_call";

impl RollupSpecs {
    /// What the PRD endpoints need: API latency and request/error counts by route, method and
    /// route, and status class and overall; ML duration, cost, success and failure by pipeline and provider;
    /// order revenue, orders and units, by collection and product per line; funnel stage
    /// counts by collection (and product for product views and cart adds); the server's own
    /// store-call latency by operation.
    pub fn defaults() -> Self {
        use EventKind as K;
        use ValueSource as V;
        use metrics as m;
        let finished = Filter::In {
            field: "status".into(),
            values: vec!["succeeded".into(), "failed".into()],
        };
        let terminal = Filter::In {
            field: "status".into(),
            values: crate::event::JobStatus::TERMINAL
                .iter()
                .map(|s| s.as_str().to_owned())
                .collect(),
        };
        // Every ML route filters by provider and pipeline, the assets route by stage; the
        // price-table estimate needs the provider of each figure.
        let ml_groupings: &[&[&str]] = &[
            &[],
            &["pipeline"],
            &["provider"],
            &["pipeline", "provider"],
            &["stage"],
            &["provider", "stage"],
        ];
        let mut ml_duration = spec(
            m::ML_DURATION_MS,
            K::MlJob,
            V::Field("duration_ms".into()),
            ml_groupings,
            "Duration in milliseconds of finished (succeeded, failed or cancelled) ML jobs",
        );
        ml_duration.filters.push(terminal.clone());
        let mut ml_failed = spec(
            m::ML_FAILED,
            K::MlJob,
            V::FailureFlag,
            &[&[], &["pipeline"], &["provider"], &["pipeline", "provider"]],
            "1 per failed finished ML job, else 0: sum is the failures, avg the failure rate",
        );
        ml_failed.filters.push(finished);
        let mut ml_cost = spec(
            m::ML_COST_USD,
            K::MlJob,
            V::Field("cost_usd".into()),
            ml_groupings,
            "Provider cost in USD of finished ML jobs that report one",
        );
        ml_cost.filters.push(terminal.clone());
        let mut ml_jobs = spec(
            m::ML_JOBS,
            K::MlJob,
            V::One,
            &[
                &["status"],
                &["pipeline", "status"],
                &["provider", "status"],
                &["pipeline", "provider", "status"],
                &["stage", "status"],
                &["provider", "stage", "status"],
            ],
            "Finished ML jobs, one per terminal status event, by status",
        );
        ml_jobs.filters.push(terminal);
        let line_groupings: &[&[&str]] = &[
            &["line.collection"],
            &["line.product_id"],
            &["currency", "line.collection"],
            &["currency", "line.product_id"],
            &["line.collection", "line.product_id"],
        ];
        let operations = |ops: &[&str]| Filter::In {
            field: "operation".into(),
            values: ops.iter().map(|o| (*o).to_owned()).collect(),
        };
        let mut store_latency = spec(
            m::STORE_LATENCY_MS,
            K::Custom(STORE_CALL_KIND.to_owned()),
            V::Field("latency_ms".into()),
            &[&[], &["operation"]],
            "The server's own store-call latency in milliseconds (ingest writes, reads, \
             pings), by operation",
        );
        store_latency
            .filters
            .push(operations(&["ingest_write", "read", "ping"]));
        let mut rollup_ticks = spec(
            m::ROLLUP_TICK_MS,
            K::Custom(STORE_CALL_KIND.to_owned()),
            V::Field("latency_ms".into()),
            &[&[]],
            "Duration in milliseconds of the server's rollup scheduler ticks",
        );
        rollup_ticks.filters.push(operations(&["rollup_tick"]));
        Self(vec![
            spec(
                m::API_LATENCY_MS,
                K::ApiRequest,
                V::Field("latency_ms".into()),
                &[
                    &[],
                    &["route"],
                    &["method", "route"],
                    &["status_class"],
                    &["route", "status_class"],
                ],
                "Latency of served API requests in milliseconds; count is the number of requests",
            ),
            spec(
                m::API_ERRORS,
                K::ApiRequest,
                V::FailureFlag,
                &[&[], &["route"], &["method", "route"]],
                "1 per API request answered with a status >= 500, else 0: sum is the server \
                 errors, avg the error rate, count the requests",
            ),
            spec(
                m::ERRORS,
                K::Error,
                V::One,
                &[&[], &["error_type"], &["route"]],
                "Application error events",
            ),
            ml_duration,
            ml_failed,
            ml_cost,
            ml_jobs,
            spec(
                m::ORDER_REVENUE,
                K::Order,
                V::Field("amount".into()),
                &[&[], &["currency"]],
                "Order totals: sum is the revenue, count the orders, avg the average order value",
            ),
            spec(
                m::ORDER_UNITS,
                K::Order,
                V::OrderUnits,
                &[&[], &["currency"]],
                "Units per order",
            ),
            spec(
                m::LINE_REVENUE,
                K::Order,
                V::LineRevenue,
                line_groupings,
                "Revenue per order line (quantity x unit price), by collection and product",
            ),
            spec(
                m::LINE_UNITS,
                K::Order,
                V::LineQuantity,
                line_groupings,
                "Units per order line, by collection and product",
            ),
            spec(
                m::LINE_ORDERS,
                K::Order,
                V::DistinctLines("collection".into()),
                &[&["currency", "line.collection"]],
                "Distinct orders containing a line of the collection",
            ),
            spec(
                m::PRODUCT_ORDERS,
                K::Order,
                V::DistinctLines("product_id".into()),
                &[&["currency", "line.product_id"]],
                "Distinct orders containing a line of the product",
            ),
            spec(
                m::INVENTORY,
                K::Inventory,
                V::OccurredAt,
                &[&["product_id", "on_hand"]],
                "Inventory snapshots: max is the time of the latest snapshot of a product \
                 with that on_hand",
            ),
            spec(
                m::FUNNEL_SESSIONS,
                K::PageView,
                V::SessionFunnel,
                &[&["collection"]],
                "Per-session funnel progress, packed (one row per bucket and collection value)",
            ),
            spec(
                m::FUNNEL_PAGE_VIEW,
                K::PageView,
                V::One,
                &[&[], &["collection"]],
                "Funnel: page views",
            ),
            spec(
                m::FUNNEL_PRODUCT_VIEW,
                K::ProductView,
                V::One,
                &[
                    &[],
                    &["collection"],
                    &["product_id"],
                    &["collection", "product_id"],
                ],
                "Funnel: product views",
            ),
            spec(
                m::FUNNEL_CART_ADD,
                K::CartAdd,
                V::One,
                &[&[], &["collection"], &["product_id"]],
                "Funnel: cart additions",
            ),
            spec(
                m::FUNNEL_CHECKOUT_START,
                K::CheckoutStart,
                V::One,
                &[&[], &["collection"]],
                "Funnel: checkout starts",
            ),
            store_latency,
            rollup_ticks,
        ])
    }

    /// Adds a spec (an embedder's own metric).
    pub fn with(mut self, spec: RollupSpec) -> Self {
        self.0.push(spec);
        self
    }

    /// The spec of `metric`.
    pub fn get(&self, metric: &MetricName) -> Option<&RollupSpec> {
        self.0.iter().find(|s| &s.metric == metric)
    }

    /// Checks that metric names are unique and groupings are well formed.
    pub fn validate(&self) -> Result<(), crate::FieldError> {
        let mut seen = std::collections::HashSet::new();
        for s in &self.0 {
            if !seen.insert(&s.metric) {
                return Err(crate::FieldError::new(
                    "specs",
                    format!("metric {} is defined twice", s.metric),
                ));
            }
            for g in &s.groupings {
                if g.len() > super::MAX_DIMENSIONS {
                    return Err(crate::FieldError::new(
                        "specs",
                        format!("{}: too many dimensions in a grouping", s.metric),
                    ));
                }
                crate::rollup::Dimensions::from_pairs(
                    g.iter().map(|d| (stored_dimension_name(d), String::new())),
                )?;
            }
        }
        Ok(())
    }
}

impl Default for RollupSpecs {
    fn default() -> Self {
        Self::defaults()
    }
}
