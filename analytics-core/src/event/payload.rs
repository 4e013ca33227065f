//! Typed event payloads, one per known kind, parsed from JSON with one error per bad field.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::FieldError;

/// Longest identifier-like string (product id, provider, route template, ...).
pub const MAX_ID_LEN: usize = 256;
/// Longest free text (error messages).
pub const MAX_TEXT_LEN: usize = 4096;
/// Most line items in one order.
pub const MAX_LINE_ITEMS: usize = 500;

/// An HTTP request served by the platform.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiRequest {
    /// Upper-case HTTP method.
    pub method: String,
    /// The route template (`/api/v1/products/:id`), never the raw path.
    pub route: String,
    /// HTTP status code, 100..=599.
    pub status: u16,
    /// Time to the response, in milliseconds.
    pub latency_ms: f64,
}

/// The ML pipelines the platform runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Pipeline {
    /// 3D model generation.
    #[serde(rename = "3d")]
    ThreeD,
    /// Image description.
    #[serde(rename = "descriptions")]
    Descriptions,
    /// Asset processing (ingestion, versioning, approval).
    #[serde(rename = "assets")]
    Assets,
}

impl Pipeline {
    /// All pipelines.
    pub const ALL: [Pipeline; 3] = [Self::ThreeD, Self::Descriptions, Self::Assets];

    /// The wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ThreeD => "3d",
            Self::Descriptions => "descriptions",
            Self::Assets => "assets",
        }
    }
}

/// Where an ML job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Waiting to run.
    Queued,
    /// Running.
    Running,
    /// Finished successfully.
    Succeeded,
    /// Finished with an error.
    Failed,
    /// Stopped before finishing.
    Cancelled,
}

impl JobStatus {
    /// Whether the job has ended (`succeeded`, `failed` or `cancelled`).
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }

    /// The terminal statuses.
    pub const TERMINAL: [JobStatus; 3] = [Self::Succeeded, Self::Failed, Self::Cancelled];

    const ALL: [JobStatus; 5] = [
        Self::Queued,
        Self::Running,
        Self::Succeeded,
        Self::Failed,
        Self::Cancelled,
    ];

    /// The wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

/// The steps of the assets pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssetStage {
    /// Files taken in.
    Ingestion,
    /// A new version recorded.
    Versioning,
    /// Reviewed for publication.
    Approval,
}

impl AssetStage {
    /// All stages, in pipeline order.
    pub const ALL: [AssetStage; 3] = [Self::Ingestion, Self::Versioning, Self::Approval];

    /// The wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ingestion => "ingestion",
            Self::Versioning => "versioning",
            Self::Approval => "approval",
        }
    }
}

/// One status event of an ML job (a 3D generation, an image description, an asset step).
/// A job reports several (`queued`, `running`, then a terminal one); it is counted once,
/// by its terminal event ([`JobStatus::is_terminal`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MlJob {
    /// Which pipeline ran it.
    pub pipeline: Pipeline,
    /// The provider, lower-cased (`replicate`, `tripo`, `huggingface`, `gemini`, ...).
    pub provider: String,
    /// Outcome.
    pub status: JobStatus,
    /// Wall time of the job, in milliseconds.
    pub duration_ms: f64,
    /// Provider cost in US dollars, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// The provider's model name, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The job this status event belongs to, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// The step of an assets-pipeline job (only on `assets` jobs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<AssetStage>,
}

/// A stock snapshot of one product: the latest `on_hand` per product wins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inventory {
    /// Product id.
    pub product_id: String,
    /// The product's collection (a slug, see [`canonical_collection`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collection: Option<String>,
    /// Units in stock.
    pub on_hand: u64,
}

/// The slug of a collection name: trimmed, lower case, runs of ASCII whitespace,
/// underscores and hyphens become one `-` (`"Black Rose"`, `"black_rose"` and `"black-rose"` are one
/// collection). `None` when nothing is left.
pub fn canonical_collection(name: &str) -> Option<String> {
    let mut out = String::with_capacity(name.len());
    let mut pending_dash = false;
    for c in name.trim_matches(|c: char| c.is_ascii_whitespace()).chars() {
        if c == '_' || c == '-' || c.is_ascii_whitespace() {
            pending_dash = !out.is_empty();
            continue;
        }
        if pending_dash {
            out.push('-');
            pending_dash = false;
        }
        out.extend(c.to_lowercase());
    }
    (!out.is_empty()).then_some(out)
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineItem {
    /// Product id.
    pub product_id: String,
    /// The collection the product belongs to (`black-rose`, `love-hurts`, `signature`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collection: Option<String>,
    /// Units, at least 1.
    pub quantity: u32,
    /// Price of one unit, in the order's currency.
    pub unit_price: f64,
}

/// A completed order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// The shop's order id.
    pub order_id: String,
    /// Order total, in `currency`.
    pub amount: f64,
    /// ISO 4217 code, upper case.
    pub currency: String,
    /// The lines.
    pub items: Vec<LineItem>,
}

/// An application error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorEvent {
    /// Error class or code (`TimeoutError`, `db.pool_exhausted`).
    pub error_type: String,
    /// Human-readable message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Route template, when the error happened serving a request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// HTTP status, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
}

/// An alert that fired somewhere and is recorded as an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    /// The metric that breached.
    pub metric: String,
    /// `info`, `warning` or `critical`.
    pub severity: crate::alert::Severity,
    /// The observed value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A funnel step (`page_view`, `product_view`, `cart_add`, `checkout_start`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FunnelStep {
    /// Page path (page views).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Product involved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_id: Option<String>,
    /// Collection involved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collection: Option<String>,
    /// Units (cart adds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<u32>,
    /// Money value of the step (cart value at checkout start, unit price at cart add).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
}

/// The typed payload of an event; the variant always matches the event's kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Payload {
    /// `api_request`
    ApiRequest(ApiRequest),
    /// `ml_job`
    MlJob(MlJob),
    /// `order`
    Order(Order),
    /// `error`
    Error(ErrorEvent),
    /// `alert`
    Alert(AlertEvent),
    /// `page_view`, `product_view`, `cart_add`, `checkout_start`
    Funnel(FunnelStep),
    /// `inventory`
    Inventory(Inventory),
    /// A custom kind: any JSON object.
    Custom(Map<String, Value>),
}

impl Payload {
    /// The payload as a JSON object, the form stores keep.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// Reads the fields of one JSON object, collecting one error per bad field and
/// remembering which keys were read so unknown ones can be reported.
pub(crate) struct Fields<'a> {
    prefix: String,
    obj: &'a Map<String, Value>,
    seen: BTreeSet<&'static str>,
    pub(crate) errors: Vec<FieldError>,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(prefix: impl Into<String>, obj: &'a Map<String, Value>) -> Self {
        Self {
            prefix: prefix.into(),
            obj,
            seen: BTreeSet::new(),
            errors: Vec::new(),
        }
    }

    fn path(&self, name: &str) -> String {
        format!("{}.{name}", self.prefix)
    }

    fn fail(&mut self, name: &str, message: impl Into<String>) {
        let field = self.path(name);
        self.errors.push(FieldError::new(field, message));
    }

    fn get(&mut self, name: &'static str) -> Option<&'a Value> {
        self.seen.insert(name);
        match self.obj.get(name) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v),
        }
    }

    fn required<T>(&mut self, name: &'static str, v: Option<T>) -> Option<T> {
        if v.is_none() && !self.obj.contains_key(name) {
            self.fail(name, "is required");
        } else if v.is_none() && self.obj.get(name) == Some(&Value::Null) {
            self.fail(name, "must not be null");
        }
        v
    }

    pub(crate) fn opt_str(&mut self, name: &'static str, max: usize) -> Option<String> {
        let v = self.get(name)?;
        match v.as_str() {
            None => {
                self.fail(name, "must be a string");
                None
            }
            Some("") => {
                self.fail(name, "must not be empty");
                None
            }
            Some(s) if s.chars().count() > max => {
                self.fail(name, format!("must be at most {max} characters"));
                None
            }
            Some(s) if s.contains('\0') => {
                self.fail(name, "must not contain NUL characters");
                None
            }
            Some(s) if s.chars().any(char::is_control) && max <= MAX_ID_LEN => {
                self.fail(name, "must not contain control characters");
                None
            }
            Some(s) => Some(s.to_owned()),
        }
    }

    /// An optional collection name, canonicalised to its slug ([`canonical_collection`]).
    pub(crate) fn opt_collection(&mut self) -> Option<String> {
        let raw = self.opt_str("collection", MAX_ID_LEN)?;
        let slug = canonical_collection(&raw);
        if slug.is_none() {
            self.fail("collection", "must name a collection");
        }
        slug
    }

    pub(crate) fn req_str(&mut self, name: &'static str, max: usize) -> Option<String> {
        let v = self.opt_str(name, max);
        if v.is_none() && !self.has_error(name) {
            self.required::<()>(name, None);
        }
        v
    }

    fn has_error(&self, name: &str) -> bool {
        let path = self.path(name);
        self.errors.iter().any(|e| e.field == path)
    }

    pub(crate) fn opt_number(&mut self, name: &'static str, min: f64) -> Option<f64> {
        let v = self.get(name)?;
        match v.as_f64() {
            None => {
                self.fail(name, "must be a number");
                None
            }
            Some(x) if !x.is_finite() => {
                self.fail(name, "must be a finite number");
                None
            }
            Some(x) if x < min => {
                self.fail(name, format!("must be at least {min}"));
                None
            }
            Some(x) => Some(x),
        }
    }

    pub(crate) fn req_number(&mut self, name: &'static str, min: f64) -> Option<f64> {
        let v = self.opt_number(name, min);
        if v.is_none() && !self.has_error(name) {
            self.required::<()>(name, None);
        }
        v
    }

    pub(crate) fn opt_int(&mut self, name: &'static str, min: u64, max: u64) -> Option<u64> {
        let v = self.get(name)?;
        match v.as_u64() {
            Some(x) if (min..=max).contains(&x) => Some(x),
            _ => {
                self.fail(name, format!("must be an integer from {min} to {max}"));
                None
            }
        }
    }

    pub(crate) fn req_int(&mut self, name: &'static str, min: u64, max: u64) -> Option<u64> {
        let v = self.opt_int(name, min, max);
        if v.is_none() && !self.has_error(name) {
            self.required::<()>(name, None);
        }
        v
    }

    pub(crate) fn req_enum<T: Copy>(
        &mut self,
        name: &'static str,
        options: &[T],
        as_str: fn(T) -> &'static str,
    ) -> Option<T> {
        let s = self.req_str(name, 64)?;
        let found = options.iter().copied().find(|o| as_str(*o) == s);
        if found.is_none() {
            let names: Vec<_> = options.iter().map(|o| as_str(*o)).collect();
            self.fail(name, format!("must be one of {}", names.join(", ")));
        }
        found
    }

    pub(crate) fn req_array(&mut self, name: &'static str) -> Option<&'a Vec<Value>> {
        match self.get(name) {
            Some(Value::Array(a)) => Some(a),
            Some(_) => {
                self.fail(name, "must be an array");
                None
            }
            None => {
                self.required::<()>(name, None);
                None
            }
        }
    }

    pub(crate) fn push_errors(&mut self, errors: Vec<FieldError>) {
        self.errors.extend(errors);
    }

    /// Reports keys that were never read.
    pub(crate) fn finish(mut self) -> Vec<FieldError> {
        let unknown: Vec<String> = self
            .obj
            .keys()
            .filter(|k| !self.seen.contains(k.as_str()))
            .cloned()
            .collect();
        for k in unknown {
            self.fail(&k, "unknown field");
        }
        self.errors
    }
}

fn route_ok(fields: &mut Fields<'_>, name: &'static str, route: Option<String>) -> Option<String> {
    match route {
        Some(r) if !r.starts_with('/') => {
            fields.fail(name, "must be a route template starting with '/'");
            None
        }
        other => other,
    }
}

fn parse_api_request(f: &mut Fields<'_>) -> Option<Payload> {
    let method = f.req_str("method", 16);
    let method = match method {
        Some(m) if m.bytes().all(|b| b.is_ascii_alphabetic()) => Some(m.to_ascii_uppercase()),
        Some(_) => {
            f.fail("method", "must be an HTTP method name");
            None
        }
        None => None,
    };
    let route = f.req_str("route", 512);
    let route = route_ok(f, "route", route);
    let status = f.req_int("status", 100, 599);
    let latency_ms = f.req_number("latency_ms", 0.0);
    Some(Payload::ApiRequest(ApiRequest {
        method: method?,
        route: route?,
        status: u16::try_from(status?).ok()?,
        latency_ms: latency_ms?,
    }))
}

fn parse_ml_job(f: &mut Fields<'_>) -> Option<Payload> {
    let pipeline = f.req_enum("pipeline", &Pipeline::ALL, Pipeline::as_str);
    let provider = f.req_str("provider", 64).map(|p| p.to_ascii_lowercase());
    let status = f.req_enum("status", &JobStatus::ALL, JobStatus::as_str);
    let duration_ms = f.req_number("duration_ms", 0.0);
    let cost_usd = f.opt_number("cost_usd", 0.0);
    let model = f.opt_str("model", MAX_ID_LEN);
    let job_id = f.opt_str("job_id", MAX_ID_LEN);
    let stage = match f.get("stage") {
        None => None,
        Some(_) => f.req_enum("stage", &AssetStage::ALL, AssetStage::as_str),
    };
    if stage.is_some() && pipeline.is_some_and(|p| p != Pipeline::Assets) {
        f.fail("stage", "is only for the assets pipeline");
        return None;
    }
    Some(Payload::MlJob(MlJob {
        pipeline: pipeline?,
        provider: provider?,
        status: status?,
        duration_ms: duration_ms?,
        cost_usd,
        model,
        job_id,
        stage,
    }))
}

fn parse_inventory(f: &mut Fields<'_>) -> Option<Payload> {
    let product_id = f.req_str("product_id", MAX_ID_LEN);
    let collection = f.opt_collection();
    let on_hand = f.req_int("on_hand", 0, 1_000_000_000_000);
    Some(Payload::Inventory(Inventory {
        product_id: product_id?,
        collection,
        on_hand: on_hand?,
    }))
}

fn parse_line_item(prefix: String, value: &Value) -> Result<LineItem, Vec<FieldError>> {
    let Some(obj) = value.as_object() else {
        return Err(vec![FieldError::new(prefix, "must be an object")]);
    };
    let mut f = Fields::new(prefix, obj);
    let product_id = f.req_str("product_id", MAX_ID_LEN);
    let collection = f.opt_collection();
    let quantity = f.req_int("quantity", 1, 1_000_000);
    let unit_price = f.req_number("unit_price", 0.0);
    let errors = f.finish();
    match (product_id, quantity, unit_price) {
        (Some(product_id), Some(quantity), Some(unit_price)) if errors.is_empty() => Ok(LineItem {
            product_id,
            collection,
            quantity: u32::try_from(quantity).unwrap_or(u32::MAX),
            unit_price,
        }),
        _ => Err(errors),
    }
}

fn parse_order(f: &mut Fields<'_>) -> Option<Payload> {
    let order_id = f.req_str("order_id", MAX_ID_LEN);
    let amount = f.req_number("amount", 0.0);
    let currency = match f.req_str("currency", 3) {
        Some(c) if c.len() == 3 && c.bytes().all(|b| b.is_ascii_alphabetic()) => {
            Some(c.to_ascii_uppercase())
        }
        Some(_) => {
            f.fail("currency", "must be a three-letter ISO 4217 code");
            None
        }
        None => None,
    };
    let mut items = Vec::new();
    let mut items_ok = true;
    if let Some(array) = f.req_array("items") {
        if array.len() > MAX_LINE_ITEMS {
            f.fail(
                "items",
                format!("must have at most {MAX_LINE_ITEMS} entries"),
            );
            items_ok = false;
        } else {
            for (i, v) in array.iter().enumerate() {
                match parse_line_item(format!("{}.items[{i}]", f.prefix), v) {
                    Ok(item) => items.push(item),
                    Err(errors) => {
                        f.push_errors(errors);
                        items_ok = false;
                    }
                }
            }
        }
    } else {
        items_ok = false;
    }
    if !items_ok {
        return None;
    }
    Some(Payload::Order(Order {
        order_id: order_id?,
        amount: amount?,
        currency: currency?,
        items,
    }))
}

fn parse_error(f: &mut Fields<'_>) -> Option<Payload> {
    let error_type = f.req_str("error_type", MAX_ID_LEN);
    let message = f.opt_str("message", MAX_TEXT_LEN);
    let route = f.opt_str("route", 512);
    let route = route_ok(f, "route", route);
    let status = f.opt_int("status", 100, 599);
    Some(Payload::Error(ErrorEvent {
        error_type: error_type?,
        message,
        route,
        status: status.and_then(|s| u16::try_from(s).ok()),
    }))
}

fn parse_alert(f: &mut Fields<'_>) -> Option<Payload> {
    let metric = f.req_str("metric", 128);
    let severity = f.req_enum(
        "severity",
        &crate::alert::Severity::ALL,
        crate::alert::Severity::as_str,
    );
    let value = f.opt_number("value", f64::MIN);
    let message = f.opt_str("message", MAX_TEXT_LEN);
    Some(Payload::Alert(AlertEvent {
        metric: metric?,
        severity: severity?,
        value,
        message,
    }))
}

fn parse_funnel(kind: &super::EventKind, f: &mut Fields<'_>) -> Option<Payload> {
    use super::EventKind as K;
    let path = f.opt_str("path", 2048);
    let product_id = f.opt_str("product_id", MAX_ID_LEN);
    let collection = f.opt_collection();
    let quantity = f.opt_int("quantity", 1, 1_000_000);
    let value = f.opt_number("value", 0.0);
    match kind {
        K::PageView if path.is_none() && !f.has_error("path") => {
            f.required::<()>("path", None);
        }
        K::ProductView | K::CartAdd if product_id.is_none() && !f.has_error("product_id") => {
            f.required::<()>("product_id", None);
        }
        _ => {}
    }
    Some(Payload::Funnel(FunnelStep {
        path,
        product_id,
        collection,
        quantity: quantity.map(|q| u32::try_from(q).unwrap_or(u32::MAX)),
        value,
    }))
}

/// Parses the payload of an event of `kind`; errors are named `payload.<field>`.
pub(crate) fn parse_payload(
    kind: &super::EventKind,
    value: Option<&Value>,
) -> Result<Payload, Vec<FieldError>> {
    use super::EventKind as K;
    let empty = Map::new();
    let obj = match value {
        Some(Value::Object(obj)) => obj,
        None | Some(Value::Null) => match kind {
            // Custom kinds may come without a payload.
            K::Custom(_) => &empty,
            _ => return Err(vec![FieldError::new("payload", "is required")]),
        },
        Some(_) => return Err(vec![FieldError::new("payload", "must be an object")]),
    };
    if let K::Custom(_) = kind {
        return Ok(Payload::Custom(obj.clone()));
    }
    let mut f = Fields::new("payload", obj);
    let parsed = match kind {
        K::ApiRequest => parse_api_request(&mut f),
        K::MlJob => parse_ml_job(&mut f),
        K::Order => parse_order(&mut f),
        K::Error => parse_error(&mut f),
        K::Alert => parse_alert(&mut f),
        K::PageView | K::ProductView | K::CartAdd | K::CheckoutStart => parse_funnel(kind, &mut f),
        K::Inventory => parse_inventory(&mut f),
        K::Custom(_) => None,
    };
    let errors = f.finish();
    match parsed {
        Some(p) if errors.is_empty() => Ok(p),
        _ if errors.is_empty() => Err(vec![FieldError::new("payload", "is invalid")]),
        _ => Err(errors),
    }
}
