//! Events to PostgreSQL rows: the column values derived from an [`Event`] (one array per
//! column, for `UNNEST`), and the check for values PostgreSQL cannot store: NUL characters,
//! which neither `text` nor `jsonb` accepts.

use analytics_core::Event;
use analytics_core::error::{Error, Result};
use analytics_core::time::Granularity;
use chrono::{DateTime, Utc};

/// The row values of a chunk of events for the `UNNEST` write path, one `Vec` per column.
/// Text columns borrow from the events; only the derived values (status, the JSON text of
/// payload and properties, the hour) are built.
#[derive(Debug, Default)]
pub(crate) struct EventColumns<'e> {
    pub(crate) ord: Vec<i32>,
    pub(crate) project: Vec<&'e str>,
    pub(crate) id: Vec<uuid::Uuid>,
    pub(crate) kind: Vec<&'e str>,
    pub(crate) occurred_at: Vec<DateTime<Utc>>,
    pub(crate) received_at: Vec<DateTime<Utc>>,
    pub(crate) correlation_id: Vec<&'e str>,
    pub(crate) user_id: Vec<Option<&'e str>>,
    pub(crate) session_id: Vec<Option<&'e str>>,
    pub(crate) source: Vec<Option<&'e str>>,
    pub(crate) sample_rate: Vec<f64>,
    pub(crate) provider: Vec<Option<&'e str>>,
    pub(crate) route: Vec<Option<&'e str>>,
    pub(crate) collection: Vec<Option<&'e str>>,
    pub(crate) status: Vec<Option<String>>,
    pub(crate) payload: Vec<String>,
    pub(crate) properties: Vec<String>,
    pub(crate) hour: Vec<DateTime<Utc>>,
}

impl<'e> EventColumns<'e> {
    pub(crate) fn with_capacity(n: usize) -> Self {
        Self {
            ord: Vec::with_capacity(n),
            project: Vec::with_capacity(n),
            id: Vec::with_capacity(n),
            kind: Vec::with_capacity(n),
            occurred_at: Vec::with_capacity(n),
            received_at: Vec::with_capacity(n),
            correlation_id: Vec::with_capacity(n),
            user_id: Vec::with_capacity(n),
            session_id: Vec::with_capacity(n),
            source: Vec::with_capacity(n),
            sample_rate: Vec::with_capacity(n),
            provider: Vec::with_capacity(n),
            route: Vec::with_capacity(n),
            collection: Vec::with_capacity(n),
            status: Vec::with_capacity(n),
            payload: Vec::with_capacity(n),
            properties: Vec::with_capacity(n),
            hour: Vec::with_capacity(n),
        }
    }

    /// Appends one event; `index` is its position in the caller's batch (kept as `ord`, and
    /// named in errors). On error nothing is appended.
    pub(crate) fn push(&mut self, index: usize, e: &'e Event) -> Result<()> {
        check_text(index, e)?;
        let payload = json_text(index, "payload", &e.payload)?;
        let properties = json_text(index, "properties", &e.properties)?;
        let ord = i32::try_from(index)
            .map_err(|_| Error::invalid("events", "a batch holds at most 2^31 events"))?;
        self.ord.push(ord);
        self.project.push(e.project.as_str());
        self.id.push(e.id.0);
        self.kind.push(e.kind.as_str());
        self.occurred_at.push(e.occurred_at);
        self.received_at.push(e.received_at);
        self.correlation_id.push(e.correlation_id.as_str());
        self.user_id.push(e.user_id.as_deref());
        self.session_id.push(e.session_id.as_deref());
        self.source.push(e.source.as_deref());
        self.sample_rate.push(e.sample_rate);
        self.provider.push(e.provider());
        self.route.push(e.route());
        self.collection.push(e.collection());
        self.status.push(e.status());
        self.payload.push(payload);
        self.properties.push(properties);
        self.hour
            .push(Granularity::Hour.bucket_start(e.occurred_at));
        Ok(())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.id.len()
    }
}

fn json_text(index: usize, field: &str, v: &impl serde::Serialize) -> Result<String> {
    let s = serde_json::to_string(v).map_err(|e| {
        Error::invalid(
            format!("events[{index}].{field}"),
            format!("is not JSON: {e}"),
        )
    })?;
    if json_has_nul(s.as_bytes()) {
        return Err(nul_error(index, field));
    }
    Ok(s)
}

fn nul_error(index: usize, field: &str) -> Error {
    Error::invalid(
        format!("events[{index}].{field}"),
        "contains a NUL character (\\u0000), which PostgreSQL cannot store",
    )
}

/// Rejects NUL in the text columns (PostgreSQL text cannot hold it). Core's parser already
/// refuses control characters in most of these; the payload-derived ones (route,
/// collection, provider) and hand-built events are checked here.
fn check_text(index: usize, e: &Event) -> Result<()> {
    let fields: [(&str, Option<&str>); 9] = [
        ("project", Some(e.project.as_str())),
        ("kind", Some(e.kind.as_str())),
        ("correlation_id", Some(e.correlation_id.as_str())),
        ("user_id", e.user_id.as_deref()),
        ("session_id", e.session_id.as_deref()),
        ("source", e.source.as_deref()),
        ("payload.provider", e.provider()),
        ("payload.route", e.route()),
        ("payload.collection", e.collection()),
    ];
    for (field, value) in fields {
        if value.is_some_and(|v| v.contains('\0')) {
            return Err(nul_error(index, field));
        }
    }
    Ok(())
}

/// Whether serialized JSON holds a `\u0000` escape (serde_json writes NUL that way; jsonb
/// rejects it). Escapes are walked in order, so an escaped backslash followed by the text
/// `u0000` is not mistaken for one.
pub(crate) fn json_has_nul(json: &[u8]) -> bool {
    let mut i = 0;
    while let Some(off) = json[i..].iter().position(|&b| b == b'\\') {
        let at = i + off;
        match json.get(at + 1) {
            Some(b'u') => {
                if json.get(at + 2..at + 6) == Some(b"0000") {
                    return true;
                }
                i = at + 6;
            }
            Some(_) => i = at + 2,
            None => return false,
        }
        if i >= json.len() {
            return false;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use analytics_core::testkit::fixtures;
    use serde_json::json;

    use super::*;

    #[test]
    fn nul_escapes_are_found_and_escaped_backslashes_are_not() {
        for (value, has) in [
            (json!({"a": "x\u{0}y"}), true),
            (json!({"k\u{0}": 1}), true),
            (json!({"a": "\\u0000"}), false), // a backslash, then the text u0000
            (json!({"a": "\\\u{0}"}), true),
            (json!({"a": "\u{1}\n\t\"é🐎"}), false),
            (json!([1, 2.5, null, "plain"]), false),
        ] {
            let s = serde_json::to_string(&value).unwrap();
            assert_eq!(json_has_nul(s.as_bytes()), has, "{s}");
        }
    }

    #[test]
    fn events_with_nul_are_rejected_naming_the_field_and_leave_no_row() {
        let mut e = fixtures::api_request(fixtures::now(), "/a", 200, 1.0);
        e.properties.insert("note".into(), json!("bad\u{0}value"));
        let mut cols = EventColumns::with_capacity(1);
        assert_eq!(cols.push(3, &e).unwrap_err(), nul_error(3, "properties"));
        assert_eq!(cols.len(), 0, "a rejected event leaves nothing behind");

        let mut user = fixtures::api_request(fixtures::now(), "/a", 200, 1.0);
        user.user_id = Some("u\u{0}".into());
        assert_eq!(cols.push(0, &user).unwrap_err(), nul_error(0, "user_id"));
        // `Event::parse` refuses NUL; an embedder can still build such an event by hand.
        let mut routed = fixtures::api_request(fixtures::now(), "/a", 200, 1.0);
        if let analytics_core::Payload::ApiRequest(r) = &mut routed.payload {
            r.route = "/a\u{0}".into();
        }
        assert_eq!(
            cols.push(1, &routed).unwrap_err(),
            nul_error(1, "payload.route")
        );
        assert_eq!(cols.len(), 0);
    }

    #[test]
    fn columns_hold_the_derived_filter_values() {
        let at = fixtures::t("2024-03-10T11:59:58.5Z");
        let (job, order) = (
            fixtures::ml_job(at, "3d", "tripo", false, 5.0),
            fixtures::order(at, "love-hurts", 10.0),
        );
        let mut cols = EventColumns::with_capacity(2);
        cols.push(7, &job).unwrap();
        cols.push(9, &order).unwrap();
        assert_eq!(cols.ord, [7, 9]);
        assert_eq!(cols.provider, [Some("tripo"), None]);
        assert_eq!(cols.status, [Some("failed".to_owned()), None]);
        assert_eq!(cols.collection, [None, Some("love-hurts")]);
        assert_eq!(cols.hour, [fixtures::t("2024-03-10T11:00:00Z"); 2]);
        assert!(cols.payload[0].contains("\"provider\":\"tripo\""));
    }
}
