//! Builders for test data: events of every kind, alert configs, alerts, notifications.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::alert::{AlertConfigSpec, Condition, NewAlert, NoDataPolicy, Severity, Stat};
use crate::event::{AgeLimits, Event, EventInput, EventLimits, IngestContext};
use crate::ids::{MetricName, ProjectId, Threshold, UserId};
use crate::notification::{Channel, InAppNotification, Notification, Recipient};
use crate::project::{ApiKeyRecord, ApiKeySecret, Project, ProjectSettings};
use crate::rollup::{Dimensions, Rollup, RollupKey, RollupStats};
use crate::time::Granularity;

/// Parses an RFC 3339 timestamp (panics on bad input: fixtures only).
pub fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("bad fixture time {s:?}: {e}"))
        .with_timezone(&Utc)
}

/// A fixed "now" that fixtures are relative to: Sunday 2024-03-10 12:00 UTC.
pub fn now() -> DateTime<Utc> {
    t("2024-03-10T12:00:00Z")
}

/// A project id (panics on a bad slug).
pub fn project(slug: &str) -> ProjectId {
    ProjectId::parse(slug).unwrap_or_else(|e| panic!("bad fixture project: {e}"))
}

/// Parses a JSON event (the wire shape) received at `received_at`, in project `shop`
/// unless it names one.
pub fn event_at(v: Value, received_at: DateTime<Utc>) -> Event {
    let input: EventInput =
        serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("bad fixture {v}: {e}"));
    let default_project = project("shop");
    let limits = EventLimits::default();
    let ctx = IngestContext {
        now: received_at,
        default_project: &default_project,
        fixed_project: false,
        request_correlation_id: None,
        limits: &limits,
        age_limits: &AgeLimits::default(),
    };
    Event::parse(input, &ctx).unwrap_or_else(|e| panic!("bad fixture {v}: {e}"))
}

/// An `api_request` event.
pub fn api_request(at: DateTime<Utc>, route: &str, status: u16, latency_ms: f64) -> Event {
    event_at(
        json!({"kind": "api_request", "occurred_at": at.to_rfc3339(),
               "payload": {"method": "GET", "route": route, "status": status, "latency_ms": latency_ms}}),
        at,
    )
}

/// An `ml_job` event.
pub fn ml_job(
    at: DateTime<Utc>,
    pipeline: &str,
    provider: &str,
    ok: bool,
    duration_ms: f64,
) -> Event {
    event_at(
        json!({"kind": "ml_job", "occurred_at": at.to_rfc3339(),
               "payload": {"pipeline": pipeline, "provider": provider,
                           "status": if ok { "succeeded" } else { "failed" },
                           "duration_ms": duration_ms, "cost_usd": 0.05}}),
        at,
    )
}

/// An `order` event with one line.
pub fn order(at: DateTime<Utc>, collection: &str, amount: f64) -> Event {
    event_at(
        json!({"kind": "order", "occurred_at": at.to_rfc3339(),
               "payload": {"order_id": Uuid::new_v4().to_string(), "amount": amount, "currency": "USD",
                           "items": [{"product_id": "p-1", "collection": collection, "quantity": 1, "unit_price": amount}]}}),
        at,
    )
}

/// One event of every known kind plus a custom one, all with rich optional fields.
pub fn one_of_each_kind(at: DateTime<Utc>) -> Vec<Event> {
    let base = |kind: &str, payload: Value| {
        json!({"kind": kind, "occurred_at": at.to_rfc3339(), "payload": payload,
               "correlation_id": format!("corr-{kind}"), "user_id": "user-1", "session_id": "sess-1",
               "source": "web", "sample_rate": 0.5,
               "properties": {"nested": {"a": [1, 2.5, "x", null, true]}, "unicode": "žluťoučký 🐎", "big": 12345678901234i64}})
    };
    [
        base("api_request", json!({"method": "POST", "route": "/api/v1/orders", "status": 503, "latency_ms": 0.123456789})),
        base("ml_job", json!({"pipeline": "3d", "provider": "tripo", "status": "failed", "duration_ms": 61000, "cost_usd": 0.3, "model": "v2"})),
        base("order", json!({"order_id": "o-9", "amount": 250.5, "currency": "EUR", "items": [
            {"product_id": "p-1", "collection": "black-rose", "quantity": 2, "unit_price": 100.0},
            {"product_id": "p-2", "quantity": 1, "unit_price": 50.5}]})),
        base("error", json!({"error_type": "db.timeout", "message": "line one\nline two", "route": "/x", "status": 500})),
        base("alert", json!({"metric": "api.error_rate", "severity": "warning", "value": 0.07})),
        base("page_view", json!({"path": "/collections/love-hurts", "collection": "love-hurts"})),
        base("product_view", json!({"product_id": "p-3", "collection": "signature"})),
        base("cart_add", json!({"product_id": "p-3", "collection": "signature", "quantity": 2, "value": 80})),
        base("checkout_start", json!({"value": 160})),
        base("newsletter.signup", json!({"list": "weekly", "tags": ["a", "b"]})),
    ]
    .into_iter()
    .map(|v| event_at(v, at))
    .collect()
}

/// An alert configuration spec watching `metric` in `project`.
pub fn alert_spec(project_slug: &str, name: &str, severity: Severity) -> AlertConfigSpec {
    AlertConfigSpec {
        project: project(project_slug),
        name: name.to_owned(),
        metric: MetricName::parse("api.latency_ms").unwrap_or_else(|e| panic!("{e}")),
        stat: Stat::P95,
        dimensions: Dimensions::from_pairs([("route", "/api/v1/orders")]).unwrap_or_default(),
        condition: Condition::ThresholdAbove,
        threshold: Threshold::new(500.0).unwrap_or_else(|e| panic!("{e}")),
        window_secs: 300,
        severity,
        cooldown_secs: 900,
        channels: vec![Channel::Slack, Channel::Email],
        recipients: vec![
            Recipient::SlackDefault,
            Recipient::Email("ops@example.com".parse().unwrap_or_else(|e| panic!("{e}"))),
        ],
        enabled: true,
        for_secs: 0,
        recovery_threshold: None,
        auto_resolve: true,
        no_data: NoDataPolicy::Keep,
    }
}

/// A fired alert for `config_id`.
pub fn new_alert(config_id: Uuid, at: DateTime<Utc>, severity: Severity) -> NewAlert {
    NewAlert {
        id: Uuid::new_v4(),
        config_id,
        project: project("shop"),
        metric: MetricName::parse("api.latency_ms").unwrap_or_else(|e| panic!("{e}")),
        severity,
        triggered_at: at,
        value: 812.5,
        threshold: 500.0,
        message: "p95 latency above 500 ms".to_owned(),
    }
}

/// A notification on `channel`.
pub fn notification(channel: Channel, severity: Severity) -> Notification {
    let recipient = match channel {
        Channel::InApp => Recipient::User(UserId::parse("alice").unwrap_or_else(|e| panic!("{e}"))),
        Channel::Slack => Recipient::SlackDefault,
        Channel::Email => {
            Recipient::Email("ops@example.com".parse().unwrap_or_else(|e| panic!("{e}")))
        }
        Channel::Sms => Recipient::Phone("+15551234567".parse().unwrap_or_else(|e| panic!("{e}"))),
    };
    Notification {
        id: Uuid::new_v4(),
        alert_id: Some(Uuid::new_v4()),
        severity,
        title: format!("{severity} alert"),
        body: "p95 latency above 500 ms".to_owned(),
        link: Some("https://admin.example.com/alerts/1".to_owned()),
        channel,
        recipient,
    }
}

/// An in-app notification for `user` created at `at`.
pub fn in_app(user: &str, at: DateTime<Utc>) -> InAppNotification {
    InAppNotification {
        id: Uuid::new_v4(),
        user: UserId::parse(user).unwrap_or_else(|e| panic!("{e}")),
        alert_id: None,
        severity: Severity::Warning,
        title: "title".to_owned(),
        body: "body".to_owned(),
        created_at: at,
        read_at: None,
    }
}

/// A project with default settings.
pub fn new_project(slug: &str) -> Project {
    Project {
        id: project(slug),
        name: format!("Project {slug}"),
        settings: ProjectSettings::default(),
        created_at: now(),
    }
}

/// A fresh API key record for `project_slug` and its secret.
pub fn api_key(project_slug: &str, created_at: DateTime<Utc>) -> (ApiKeySecret, ApiKeyRecord) {
    let secret = ApiKeySecret::generate().unwrap_or_else(|e| panic!("{e}"));
    let record = ApiKeyRecord {
        id: Uuid::new_v4(),
        project: project(project_slug),
        name: "ingest".to_owned(),
        prefix: secret.prefix(),
        hash: secret.hash(),
        created_at,
        revoked_at: None,
        last_used_at: None,
    };
    (secret, record)
}

/// A rollup row with the given key parts; `value` drives every statistic.
pub fn rollup(
    granularity: Granularity,
    bucket_start: DateTime<Utc>,
    metric: &str,
    dims: &[(&str, &str)],
    value: f64,
) -> Rollup {
    Rollup {
        key: RollupKey {
            project: project("shop"),
            granularity,
            bucket_start,
            metric: MetricName::parse(metric).unwrap_or_else(|e| panic!("{e}")),
            dimensions: Dimensions::from_pairs(dims.iter().copied())
                .unwrap_or_else(|e| panic!("{e}")),
        },
        stats: RollupStats {
            samples: 10,
            count: 20.0,
            sum: value * 20.0,
            min: Some(value / 2.0),
            max: Some(value * 2.0),
            avg: Some(value),
            p50: Some(value),
            p95: Some(value * 1.5),
            p99: Some(value * 1.9),
        },
        digest: vec![1, 2, 3, value as u8],
        computed_at: bucket_start + Duration::hours(1),
    }
}

/// A small deterministic generator for benchmarks and data sets (an LCG; not for anything
/// that needs good randomness).
#[derive(Debug, Clone)]
pub struct Lcg(pub u64);

impl Lcg {
    /// The next 31 pseudo-random bits.
    pub fn bits(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    /// A value in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.bits() % n.max(1)
    }
}
