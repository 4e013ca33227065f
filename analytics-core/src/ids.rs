//! Checked newtypes for identifiers and small domain values: parse once at the boundary.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::{Builder, Uuid};

use crate::error::FieldError;

/// Defines a string newtype whose constructor checks the value.
macro_rules! checked_string {
    ($(#[$doc:meta])* $name:ident, $what:literal, $check:path) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Parses and checks `value`.
            pub fn parse(value: impl Into<String>) -> Result<Self, FieldError> {
                let value = value.into();
                match $check(&value) {
                    Ok(()) => Ok(Self(value)),
                    Err(reason) => Err(FieldError::new($what, reason)),
                }
            }

            /// The checked value.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = FieldError;
            fn try_from(value: String) -> Result<Self, FieldError> {
                Self::parse(value)
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl FromStr for $name {
            type Err = FieldError;
            fn from_str(s: &str) -> Result<Self, FieldError> {
                Self::parse(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

fn check_slug(value: &str, max: usize) -> Result<(), String> {
    if value.is_empty() {
        return Err("must not be empty".into());
    }
    if value.len() > max {
        return Err(format!("must be at most {max} characters"));
    }
    let mut chars = value.chars();
    let first = chars.next().unwrap_or('-');
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return Err("must start with a lowercase letter or digit".into());
    }
    if !value
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        return Err("may contain only lowercase letters, digits, '-' and '_'".into());
    }
    Ok(())
}

fn check_project(value: &str) -> Result<(), String> {
    check_slug(value, 64)
}

/// Printable ASCII without spaces, as trace ids and request ids are.
fn check_token(value: &str, max: usize) -> Result<(), String> {
    if value.is_empty() {
        return Err("must not be empty".into());
    }
    if value.len() > max {
        return Err(format!("must be at most {max} characters"));
    }
    if !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be printable ASCII without spaces".into());
    }
    Ok(())
}

fn check_correlation(value: &str) -> Result<(), String> {
    check_token(value, 128)
}

fn check_metric(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("must not be empty".into());
    }
    if value.len() > 128 {
        return Err("must be at most 128 characters".into());
    }
    if !value.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err("must start with a lowercase letter".into());
    }
    if !value
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.')
    {
        return Err("may contain only lowercase letters, digits, '_' and '.'".into());
    }
    if value.ends_with('.') || value.contains("..") {
        return Err("must not have empty segments".into());
    }
    Ok(())
}

fn check_phone(value: &str) -> Result<(), String> {
    let digits = value
        .strip_prefix('+')
        .ok_or("must be in E.164 form, starting with '+'")?;
    if !(8..=15).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("must be '+' followed by 8 to 15 digits".into());
    }
    if digits.starts_with('0') {
        return Err("country code must not start with 0".into());
    }
    Ok(())
}

fn check_email(value: &str) -> Result<(), String> {
    if value.len() > 254 {
        return Err("must be at most 254 characters".into());
    }
    let (local, domain) = value.split_once('@').ok_or("must contain '@'")?;
    if local.is_empty() || domain.is_empty() || domain.contains('@') {
        return Err("must be local@domain".into());
    }
    if !domain.contains('.') || domain.starts_with('.') || domain.ends_with('.') {
        return Err("domain must contain a dot between labels".into());
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain whitespace".into());
    }
    Ok(())
}

fn check_webhook(value: &str) -> Result<(), String> {
    if value.len() > 2048 {
        return Err("must be at most 2048 characters".into());
    }
    let rest = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"))
        .ok_or("must be an http or https URL")?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || host.starts_with(':') {
        return Err("must have a host".into());
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain whitespace".into());
    }
    Ok(())
}

fn check_user(value: &str) -> Result<(), String> {
    if value.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if value.len() > 256 {
        return Err("must be at most 256 characters".into());
    }
    if value.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(())
}

checked_string!(
    /// A project (tenant) identifier: a lowercase slug of at most 64 characters.
    ProjectId,
    "project",
    check_project
);
checked_string!(
    /// A request-tracing id: printable ASCII, at most 128 characters.
    CorrelationId,
    "correlation_id",
    check_correlation
);
checked_string!(
    /// A metric name such as `api.latency_ms`: lowercase dotted segments.
    MetricName,
    "metric",
    check_metric
);
checked_string!(
    /// A phone number in E.164 form (`+15551234567`).
    PhoneNumber,
    "phone",
    check_phone
);
checked_string!(
    /// An email address (a syntactic check; deliverability is the mail server's business).
    EmailAddress,
    "email",
    check_email
);
checked_string!(
    /// An http(s) URL that notifications are posted to (a Slack incoming webhook, say).
    WebhookUrl,
    "webhook_url",
    check_webhook
);
checked_string!(
    /// A user or team identifier as the identity provider names it (a JWT `sub`).
    UserId,
    "user_id",
    check_user
);

impl ProjectId {
    /// The project events go to when none is named.
    pub fn default_project() -> Self {
        Self("default".to_owned())
    }

    /// The reserved project holding the server's own telemetry (store-call timings), so it
    /// is never mixed into an application's figures.
    pub fn internal() -> Self {
        Self(Self::INTERNAL.to_owned())
    }

    /// The slug of [`ProjectId::internal`].
    pub const INTERNAL: &'static str = "analytics-internal";

    /// Whether this is [`ProjectId::internal`].
    pub fn is_internal(&self) -> bool {
        self.0 == Self::INTERNAL
    }
}

/// A fresh UUIDv7 for `at`: 48 bits of Unix milliseconds, then random bits. Ids generated
/// over time sort in time order (as bytes and as hyphenated text), so the indexes keyed on
/// them grow at their right edge instead of touching a random page per insert.
fn time_ordered_uuid(at: DateTime<Utc>) -> Uuid {
    let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0);
    // 80 random bits from the thread's CSPRNG (seeded and periodically reseeded by the
    // operating system), not a system call per id: ingest generates one or two per event.
    let bytes: [u8; 10] = rand::random();
    Builder::from_unix_timestamp_millis(millis, &bytes).into_uuid()
}

impl CorrelationId {
    /// A fresh time-ordered correlation id (a hyphenated UUIDv7 of `at`).
    pub fn generate(at: DateTime<Utc>) -> Self {
        Self(time_ordered_uuid(at).to_string())
    }
}

/// An event's id: the deduplication key within its project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(pub Uuid);

impl EventId {
    /// A fresh time-ordered id (a UUIDv7 of `at`), for events that did not bring one; those
    /// cannot be deduplicated on a client retry, so clients should send ids (time-ordered
    /// ones, like these, keep the stores' dedup index cheap).
    pub fn generate(at: DateTime<Utc>) -> Self {
        Self(time_ordered_uuid(at))
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A quantile in `[0, 1]`.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Quantile(f64);

impl Quantile {
    /// The median.
    pub const P50: Quantile = Quantile(0.5);
    /// The 95th percentile.
    pub const P95: Quantile = Quantile(0.95);
    /// The 99th percentile.
    pub const P99: Quantile = Quantile(0.99);

    /// Checks that `q` is a finite number in `[0, 1]`.
    pub fn new(q: f64) -> Result<Self, FieldError> {
        if q.is_finite() && (0.0..=1.0).contains(&q) {
            Ok(Self(q))
        } else {
            Err(FieldError::new(
                "quantile",
                "must be a number between 0 and 1",
            ))
        }
    }

    /// The value.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl TryFrom<f64> for Quantile {
    type Error = FieldError;
    fn try_from(q: f64) -> Result<Self, FieldError> {
        Self::new(q)
    }
}

impl From<Quantile> for f64 {
    fn from(q: Quantile) -> f64 {
        q.0
    }
}

/// An alert threshold: any finite number.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Threshold(f64);

impl Threshold {
    /// Checks that `v` is finite.
    pub fn new(v: f64) -> Result<Self, FieldError> {
        if v.is_finite() {
            Ok(Self(v))
        } else {
            Err(FieldError::new("threshold", "must be a finite number"))
        }
    }

    /// The value.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl TryFrom<f64> for Threshold {
    type Error = FieldError;
    fn try_from(v: f64) -> Result<Self, FieldError> {
        Self::new(v)
    }
}

impl From<Threshold> for f64 {
    fn from(t: Threshold) -> f64 {
        t.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_time_ordered_v7() {
        let t0 = DateTime::parse_from_rfc3339("2026-11-30T12:00:00.123Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap();
        let a = EventId::generate(t0);
        let b = EventId::generate(t0 + chrono::Duration::milliseconds(1));
        let c = EventId::generate(t0 + chrono::Duration::seconds(3600));
        assert_eq!(a.0.get_version_num(), 7);
        assert!(a < b && b < c, "{a} {b} {c}");
        // The Unix milliseconds are the first 48 bits.
        let (secs, nanos) = a.0.get_timestamp().unwrap().to_unix();
        assert_eq!((secs, nanos / 1_000_000), (1_796_040_000, 123));
        // Two ids of one millisecond differ (random bits).
        assert_ne!(EventId::generate(t0), a);
        // Hyphenated lowercase hex sorts like the bytes.
        let (x, y) = (
            CorrelationId::generate(t0),
            CorrelationId::generate(t0 + chrono::Duration::milliseconds(1)),
        );
        assert!(x < y, "{x:?} {y:?}");
        assert!(Uuid::parse_str(x.as_str()).is_ok());
    }

    fn check<T: FromStr<Err = FieldError>>(input: &str, ok: bool) {
        let got = input.parse::<T>();
        assert_eq!(got.is_ok(), ok, "{input:?} -> {:?}", got.err());
    }

    #[test]
    fn project_ids() {
        check::<ProjectId>("default", true);
        check::<ProjectId>("shop-eu_1", true);
        check::<ProjectId>("", false);
        check::<ProjectId>("Shop", false);
        check::<ProjectId>("-shop", false);
        check::<ProjectId>("shop eu", false);
        check::<ProjectId>(&"a".repeat(65), false);
        assert_eq!(ProjectId::parse("").unwrap_err().field, "project");
    }

    #[test]
    fn metric_names() {
        check::<MetricName>("api.latency_ms", true);
        check::<MetricName>("ml.cost_usd", true);
        check::<MetricName>("api..latency", false);
        check::<MetricName>("api.", false);
        check::<MetricName>("1api", false);
        check::<MetricName>("api-latency", false);
    }

    #[test]
    fn contact_values() {
        check::<PhoneNumber>("+15551234567", true);
        check::<PhoneNumber>("15551234567", false);
        check::<PhoneNumber>("+1555", false);
        check::<PhoneNumber>("+0555123456", false);
        check::<EmailAddress>("ops@example.com", true);
        check::<EmailAddress>("ops@localhost", false);
        check::<EmailAddress>("ops example@x.com", false);
        check::<EmailAddress>("@x.com", false);
        check::<WebhookUrl>("https://hooks.slack.com/services/T/B/X", true);
        check::<WebhookUrl>("http://127.0.0.1:9999/hook", true);
        check::<WebhookUrl>("ftp://x", false);
        check::<WebhookUrl>("https://", false);
        check::<CorrelationId>("req-123/abc", true);
        check::<CorrelationId>("has space", false);
        check::<UserId>("alice@example.com", true);
        check::<UserId>("  ", false);
    }

    #[test]
    fn numbers() {
        assert!(Quantile::new(0.99).is_ok());
        assert!(Quantile::new(1.01).is_err());
        assert!(Quantile::new(f64::NAN).is_err());
        assert!(Threshold::new(-5.0).is_ok());
        assert!(Threshold::new(f64::INFINITY).is_err());
        let t: Result<Threshold, _> = serde_json::from_str("1e400");
        assert!(t.is_err());
    }

    #[test]
    fn serde_round_trip_checks_on_the_way_in() {
        let p: ProjectId = serde_json::from_str("\"shop\"").unwrap();
        assert_eq!(serde_json::to_string(&p).unwrap(), "\"shop\"");
        assert!(serde_json::from_str::<ProjectId>("\"Shop\"").is_err());
    }
}
