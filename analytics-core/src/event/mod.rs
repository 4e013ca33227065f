//! The event model: what the platform reports, and how raw input becomes a valid [`Event`].

mod payload;

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

pub use payload::{
    AlertEvent, ApiRequest, AssetStage, ErrorEvent, FunnelStep, Inventory, JobStatus, LineItem,
    MAX_ID_LEN, MAX_LINE_ITEMS, MAX_TEXT_LEN, MlJob, Order, Payload, Pipeline,
    canonical_collection,
};

use crate::error::{FieldError, ValidationErrors};
use crate::ids::{CorrelationId, EventId, ProjectId};
use crate::project::{MAX_RETENTION_DAYS, ProjectSettings};
use crate::time::truncate_to_micros;

/// What an event reports. Known kinds have a typed payload; any other well-formed name is a
/// custom kind whose payload is a free JSON object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    /// `api_request`
    ApiRequest,
    /// `ml_job`
    MlJob,
    /// `order`
    Order,
    /// `error`
    Error,
    /// `alert`
    Alert,
    /// `page_view`
    PageView,
    /// `product_view`
    ProductView,
    /// `cart_add`
    CartAdd,
    /// `checkout_start`
    CheckoutStart,
    /// `inventory`
    Inventory,
    /// Any other name matching `custom.<name>` or `[a-z][a-z0-9_.:-]*` up to 64 characters.
    Custom(String),
}

impl EventKind {
    /// The known kinds.
    pub const KNOWN: [EventKind; 10] = [
        Self::ApiRequest,
        Self::MlJob,
        Self::Order,
        Self::Error,
        Self::Alert,
        Self::PageView,
        Self::ProductView,
        Self::CartAdd,
        Self::CheckoutStart,
        Self::Inventory,
    ];

    /// The wire name.
    pub fn as_str(&self) -> &str {
        match self {
            Self::ApiRequest => "api_request",
            Self::MlJob => "ml_job",
            Self::Order => "order",
            Self::Error => "error",
            Self::Alert => "alert",
            Self::PageView => "page_view",
            Self::ProductView => "product_view",
            Self::CartAdd => "cart_add",
            Self::CheckoutStart => "checkout_start",
            Self::Inventory => "inventory",
            Self::Custom(name) => name,
        }
    }

    /// Whether this is one of the commerce funnel steps.
    pub fn is_funnel(&self) -> bool {
        matches!(
            self,
            Self::PageView | Self::ProductView | Self::CartAdd | Self::CheckoutStart
        )
    }
}

impl FromStr for EventKind {
    type Err = FieldError;
    fn from_str(s: &str) -> Result<Self, FieldError> {
        if let Some(k) = Self::KNOWN.iter().find(|k| k.as_str() == s) {
            return Ok(k.clone());
        }
        let well_formed = !s.is_empty()
            && s.len() <= 64
            && s.starts_with(|c: char| c.is_ascii_lowercase())
            && s.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | ':' | '-')
            });
        if well_formed {
            Ok(Self::Custom(s.to_owned()))
        } else {
            Err(FieldError::new(
                "kind",
                "must be a known kind (api_request, ml_job, order, error, alert, page_view, \
                 product_view, cart_add, checkout_start, inventory) or a custom name of lowercase letters, \
                 digits and _.:- up to 64 characters",
            ))
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for EventKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A validated event. Build one with [`Event::parse`]; stores rebuild them with
/// [`Event::from_stored`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Dedup key within the project.
    pub id: EventId,
    /// The project (tenant) the event belongs to.
    pub project: ProjectId,
    /// What happened.
    pub kind: EventKind,
    /// When it happened (microsecond precision, UTC).
    pub occurred_at: DateTime<Utc>,
    /// When the collector accepted it (microsecond precision, UTC).
    pub received_at: DateTime<Utc>,
    /// Request-tracing id; always present.
    pub correlation_id: CorrelationId,
    /// The acting user, if known.
    pub user_id: Option<String>,
    /// The user's session, if known.
    pub session_id: Option<String>,
    /// The reporting component (`web`, `checkout-service`, ...).
    pub source: Option<String>,
    /// The probability with which this event was kept by sampling, in `(0, 1]`; counts are
    /// re-weighted by its inverse.
    pub sample_rate: f64,
    /// Kind-specific fields.
    pub payload: Payload,
    /// Free JSON properties (at most [`EventLimits::max_properties_bytes`] serialized).
    pub properties: Map<String, Value>,
}

impl Event {
    /// The route template, for `api_request` and `error` events.
    pub fn route(&self) -> Option<&str> {
        match &self.payload {
            Payload::ApiRequest(r) => Some(&r.route),
            Payload::Error(e) => e.route.as_deref(),
            _ => None,
        }
    }

    /// The ML provider, for `ml_job` events.
    pub fn provider(&self) -> Option<&str> {
        match &self.payload {
            Payload::MlJob(j) => Some(&j.provider),
            _ => None,
        }
    }

    /// The collection, for funnel events (and orders whose lines share one collection).
    pub fn collection(&self) -> Option<&str> {
        match &self.payload {
            Payload::Funnel(s) => s.collection.as_deref(),
            Payload::Inventory(i) => i.collection.as_deref(),
            Payload::Order(o) => {
                let mut cols = o.items.iter().filter_map(|i| i.collection.as_deref());
                let first = cols.next()?;
                cols.all(|c| c == first).then_some(first)
            }
            _ => None,
        }
    }

    /// A status label for filtering: the HTTP status of requests and errors, the job status
    /// of ML jobs.
    pub fn status(&self) -> Option<String> {
        match &self.payload {
            Payload::ApiRequest(r) => Some(r.status.to_string()),
            Payload::Error(e) => e.status.map(|s| s.to_string()),
            Payload::MlJob(j) => Some(j.status.as_str().to_owned()),
            _ => None,
        }
    }

    /// Parses raw input into an event, reporting every problem with its field.
    pub fn parse(input: EventInput, ctx: &IngestContext<'_>) -> Result<Event, ValidationErrors> {
        parse_event(input, ctx)
    }

    /// Rebuilds an event from a store row. The row was validated when it was written, so
    /// time-relative checks (future timestamps) are not applied again; shape checks are.
    pub fn from_stored(row: StoredEvent) -> Result<Event, ValidationErrors> {
        let kind: EventKind = row.kind.parse().map_err(|e| ValidationErrors(vec![e]))?;
        let payload =
            payload::parse_payload(&kind, Some(&row.payload)).map_err(ValidationErrors)?;
        let properties = match row.properties {
            Value::Object(m) => m,
            Value::Null => Map::new(),
            _ => {
                return Err(ValidationErrors(vec![FieldError::new(
                    "properties",
                    "must be an object",
                )]));
            }
        };
        Ok(Event {
            id: EventId(row.id),
            project: ProjectId::parse(row.project).map_err(|e| ValidationErrors(vec![e]))?,
            kind,
            occurred_at: row.occurred_at,
            received_at: row.received_at,
            correlation_id: CorrelationId::parse(row.correlation_id)
                .map_err(|e| ValidationErrors(vec![e]))?,
            user_id: row.user_id,
            session_id: row.session_id,
            source: row.source,
            sample_rate: row.sample_rate,
            payload,
            properties,
        })
    }
}

/// The columns a store keeps for an event; see [`Event::from_stored`].
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub struct StoredEvent {
    pub id: Uuid,
    pub project: String,
    pub kind: String,
    pub occurred_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub correlation_id: String,
    pub user_id: Option<String>,
    pub session_id: Option<String>,
    pub source: Option<String>,
    pub sample_rate: f64,
    pub payload: Value,
    pub properties: Value,
}

/// An event as a client sends it: everything optional, checked by [`Event::parse`].
///
/// Scalar fields are kept as JSON values so that a wrong type is reported against its field
/// instead of failing the whole batch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EventInput {
    /// UUID; generated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Value>,
    /// Kind name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<Value>,
    /// Project slug; the request's project when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<Value>,
    /// RFC 3339 timestamp; the receive time when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<Value>,
    /// Tracing id; else the request's, else generated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<Value>,
    /// Acting user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Value>,
    /// Session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<Value>,
    /// Reporting component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Value>,
    /// Sampling probability in `(0, 1]`; 1 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_rate: Option<Value>,
    /// Kind-specific fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    /// Free properties.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<Value>,
}

/// Input limits; the defaults are the product's.
#[derive(Debug, Clone, PartialEq)]
pub struct EventLimits {
    /// Largest serialized `properties` object (64 KiB).
    pub max_properties_bytes: usize,
    /// Largest serialized payload of a custom kind (64 KiB).
    pub max_custom_payload_bytes: usize,
    /// How far in the future `occurred_at` may be (24 h), to tolerate clock skew. (How
    /// far in the past is per project: [`IngestContext::age_limits`].)
    pub max_future: Duration,
    /// Longest id-like string (`user_id`, `session_id`, `source`).
    pub max_id_len: usize,
}

impl Default for EventLimits {
    fn default() -> Self {
        Self {
            max_properties_bytes: 64 * 1024,
            max_custom_payload_bytes: 64 * 1024,
            max_future: Duration::hours(24),
            max_id_len: MAX_ID_LEN,
        }
    }
}

/// What the receiving side knows about the request that carried an event.
#[derive(Debug, Clone)]
pub struct IngestContext<'a> {
    /// The receive time (also the default `occurred_at`).
    pub now: DateTime<Utc>,
    /// The project events go to when they name none.
    pub default_project: &'a ProjectId,
    /// When set, events may not name another project (an API key is bound to one).
    pub fixed_project: bool,
    /// The request's `X-Correlation-Id` / `X-Request-Id`, if any.
    pub request_correlation_id: Option<&'a CorrelationId>,
    /// Limits to apply.
    pub limits: &'a EventLimits,
    /// How old an event of each project may be.
    pub age_limits: &'a AgeLimits,
}

/// How old an event of one project may be.
///
/// The rule: `occurred_at` must not be older than the project's raw retention
/// ([`ProjectSettings::retention`], at most [`MAX_RETENTION_DAYS`]) nor fall before the
/// project's seal (the rollup scheduler's `rollup.sealed.<project>` watermark: hours before
/// it have final rollups and are never recomputed). An older event is rejected with field
/// `occurred_at`: retention would delete it at its next run and no rollup would ever count
/// it. So every accepted event is counted, and the days a store holds are bounded by the
/// configured retention (plus `max_future`), never by input.
///
/// Backfill goes through the project's settings: raise `retention_days` (at most
/// [`MAX_RETENTION_DAYS`]) before sending older events. Hours already sealed stay closed:
/// history older than what the project kept cannot be added later.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AgeLimit {
    /// The project's raw retention in days (clamped to `1..=MAX_RETENTION_DAYS`).
    pub retention_days: u32,
    /// The project's seal watermark, if it has one.
    pub sealed_before: Option<DateTime<Utc>>,
}

impl Default for AgeLimit {
    /// The limit of a project without a record: the default retention, which the rollup
    /// scheduler gives a project it registers on first sight, and no seal.
    fn default() -> Self {
        Self::new(&ProjectSettings::default(), None)
    }
}

impl AgeLimit {
    /// The limit of a project with these settings and seal watermark.
    pub fn new(settings: &ProjectSettings, sealed_before: Option<DateTime<Utc>>) -> Self {
        Self {
            retention_days: settings.retention_days.clamp(1, MAX_RETENTION_DAYS),
            sealed_before,
        }
    }

    /// The oldest `occurred_at` accepted at `now`.
    pub fn oldest(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let by_retention = now - Duration::days(i64::from(self.retention_days));
        self.sealed_before
            .map_or(by_retention, |seal| seal.max(by_retention))
    }

    /// Checks `occurred_at` of an event received at `now` for `project` (named in the
    /// message when known).
    pub fn check(
        &self,
        project: Option<&ProjectId>,
        occurred_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), FieldError> {
        let oldest = self.oldest(now);
        if occurred_at >= oldest {
            return Ok(());
        }
        let at = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
        let days = self.retention_days;
        let project = project.map_or_else(|| "the project".to_owned(), |p| format!("project {p}"));
        let message = if self.sealed_before == Some(oldest) {
            format!(
                "is before {}, where the rollups of {project} are final (raw \
                 retention {days} days): it could never be counted, and history before that \
                 cannot be backfilled",
                at(oldest)
            )
        } else {
            format!(
                "is older than the raw retention of {project} ({days} days, so not \
                 before {}): retention would delete it and no rollup would count it; to \
                 backfill, raise the project's retention_days (at most {MAX_RETENTION_DAYS}) \
                 before sending older events",
                at(oldest)
            )
        };
        Err(FieldError::new("occurred_at", message))
    }
}

/// The [`AgeLimit`] of each project an ingest request may write to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgeLimits {
    /// Projects with a record.
    pub projects: HashMap<ProjectId, AgeLimit>,
    /// Every other project.
    pub unknown: AgeLimit,
}

impl AgeLimits {
    /// The limit for `project`.
    pub fn of(&self, project: &ProjectId) -> &AgeLimit {
        self.projects.get(project).unwrap_or(&self.unknown)
    }
}

fn opt_string(
    errors: &mut Vec<FieldError>,
    field: &str,
    v: Option<Value>,
    max: usize,
) -> Option<String> {
    match v {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => {
            errors.push(FieldError::new(field, "must not be empty"));
            None
        }
        Some(Value::String(s)) if s.chars().count() > max => {
            errors.push(FieldError::new(
                field,
                format!("must be at most {max} characters"),
            ));
            None
        }
        Some(Value::String(s)) if s.chars().any(char::is_control) => {
            errors.push(FieldError::new(
                field,
                "must not contain control characters",
            ));
            None
        }
        Some(Value::String(s)) => Some(s),
        Some(_) => {
            errors.push(FieldError::new(field, "must be a string"));
            None
        }
    }
}

fn parse_event(input: EventInput, ctx: &IngestContext<'_>) -> Result<Event, ValidationErrors> {
    let mut errors = Vec::new();
    let max_id = ctx.limits.max_id_len;

    let id = match input.id {
        None | Some(Value::Null) => Some(EventId::generate(ctx.now)),
        Some(Value::String(s)) => match Uuid::parse_str(&s) {
            Ok(u) => Some(EventId(u)),
            Err(_) => {
                errors.push(FieldError::new("id", "must be a UUID"));
                None
            }
        },
        Some(_) => {
            errors.push(FieldError::new("id", "must be a UUID string"));
            None
        }
    };

    let kind = match input.kind {
        None | Some(Value::Null) => {
            errors.push(FieldError::new("kind", "is required"));
            None
        }
        Some(Value::String(s)) => match s.parse::<EventKind>() {
            Ok(k) => Some(k),
            Err(e) => {
                errors.push(e);
                None
            }
        },
        Some(_) => {
            errors.push(FieldError::new("kind", "must be a string"));
            None
        }
    };

    let project = match opt_string(&mut errors, "project", input.project, 64) {
        None => Some(ctx.default_project.clone()),
        Some(p) => match ProjectId::parse(p) {
            Ok(p) if ctx.fixed_project && &p != ctx.default_project => {
                errors.push(FieldError::new(
                    "project",
                    "does not match the project of the API key",
                ));
                None
            }
            Ok(p) => Some(p),
            Err(e) => {
                errors.push(e);
                None
            }
        },
    };

    let occurred_at = match input.occurred_at {
        None | Some(Value::Null) => Some(ctx.now),
        Some(Value::String(s)) => match DateTime::parse_from_rfc3339(&s) {
            Ok(t) => {
                let t = t.with_timezone(&Utc);
                if t > ctx.now + ctx.limits.max_future {
                    errors.push(FieldError::new(
                        "occurred_at",
                        format!(
                            "is more than {} hours in the future",
                            ctx.limits.max_future.num_hours()
                        ),
                    ));
                    None
                } else {
                    // An invalid project is reported on its own; the age is then checked
                    // against the limit of unknown projects.
                    let limit = match &project {
                        Some(p) => ctx.age_limits.of(p),
                        None => &ctx.age_limits.unknown,
                    };
                    match limit.check(project.as_ref(), t, ctx.now) {
                        Ok(()) => Some(t),
                        Err(e) => {
                            errors.push(e);
                            None
                        }
                    }
                }
            }
            Err(_) => {
                errors.push(FieldError::new(
                    "occurred_at",
                    "must be an RFC 3339 timestamp",
                ));
                None
            }
        },
        Some(_) => {
            errors.push(FieldError::new(
                "occurred_at",
                "must be an RFC 3339 timestamp string",
            ));
            None
        }
    };

    let correlation_id = match opt_string(&mut errors, "correlation_id", input.correlation_id, 128)
    {
        Some(c) => match CorrelationId::parse(c) {
            Ok(c) => Some(c),
            Err(e) => {
                errors.push(e);
                None
            }
        },
        None => Some(
            ctx.request_correlation_id
                .cloned()
                .unwrap_or_else(|| CorrelationId::generate(ctx.now)),
        ),
    };

    let user_id = opt_string(&mut errors, "user_id", input.user_id, max_id);
    let session_id = opt_string(&mut errors, "session_id", input.session_id, max_id);
    let source = opt_string(&mut errors, "source", input.source, max_id);

    let sample_rate = match input.sample_rate {
        None | Some(Value::Null) => Some(1.0),
        Some(v) => match v.as_f64() {
            Some(r) if r.is_finite() && r > 0.0 && r <= 1.0 => Some(r),
            _ => {
                errors.push(FieldError::new(
                    "sample_rate",
                    "must be a number greater than 0 and at most 1",
                ));
                None
            }
        },
    };

    let properties = match input.properties {
        None | Some(Value::Null) => Some(Map::new()),
        Some(Value::Object(m)) => {
            let size = serialized_len(&m);
            if has_nul(&m) {
                errors.push(FieldError::new(
                    "properties",
                    "must not contain NUL characters (databases cannot store them)",
                ));
                None
            } else if size > ctx.limits.max_properties_bytes {
                errors.push(FieldError::new(
                    "properties",
                    format!(
                        "is {size} bytes serialized; at most {} are accepted",
                        ctx.limits.max_properties_bytes
                    ),
                ));
                None
            } else {
                Some(m)
            }
        }
        Some(_) => {
            errors.push(FieldError::new("properties", "must be an object"));
            None
        }
    };

    let payload = match &kind {
        Some(kind) => match payload::parse_payload(kind, input.payload.as_ref()) {
            Ok(Payload::Custom(m)) if has_nul(&m) => {
                errors.push(FieldError::new(
                    "payload",
                    "must not contain NUL characters (databases cannot store them)",
                ));
                None
            }
            Ok(Payload::Custom(m)) if serialized_len(&m) > ctx.limits.max_custom_payload_bytes => {
                errors.push(FieldError::new(
                    "payload",
                    format!(
                        "is larger than {} bytes serialized",
                        ctx.limits.max_custom_payload_bytes
                    ),
                ));
                None
            }
            Ok(p) => Some(p),
            Err(mut e) => {
                errors.append(&mut e);
                None
            }
        },
        None => None,
    };

    match (
        id,
        kind,
        project,
        occurred_at,
        correlation_id,
        sample_rate,
        properties,
        payload,
    ) {
        (
            Some(id),
            Some(kind),
            Some(project),
            Some(occurred_at),
            Some(correlation_id),
            Some(sample_rate),
            Some(properties),
            Some(payload),
        ) if errors.is_empty() => Ok(Event {
            id,
            project,
            kind,
            occurred_at: truncate_to_micros(occurred_at),
            received_at: truncate_to_micros(ctx.now),
            correlation_id,
            user_id,
            session_id,
            source,
            sample_rate,
            payload,
            properties,
        }),
        _ => Err(ValidationErrors(errors)),
    }
}

/// Whether a key or string anywhere in `m` holds a NUL character.
fn has_nul(m: &Map<String, Value>) -> bool {
    fn value(v: &Value) -> bool {
        match v {
            Value::String(s) => s.contains('\0'),
            Value::Array(a) => a.iter().any(value),
            Value::Object(o) => has_nul(o),
            _ => false,
        }
    }
    m.iter().any(|(k, v)| k.contains('\0') || value(v))
}

fn serialized_len(m: &Map<String, Value>) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Counter(0);
    // Writing into a counter cannot fail.
    let _ = serde_json::to_writer(&mut c, m);
    c.0
}

#[cfg(test)]
mod tests;
