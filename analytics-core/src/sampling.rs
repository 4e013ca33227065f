//! Ingest sampling: which events of a project are kept, and at what rate (stored on each kept
//! event so that counts and sums are re-weighted by its inverse).
//!
//! The rate of an event is chosen by level, most specific first: a `kinds` entry of its
//! source, a `kinds` entry of the project, then (errors and orders only) 1, then the source's
//! rate, then the project's. The project's strategy decides how the rate is applied:
//! `random` draws per event, `deterministic` hashes the session (else user, else event id)
//! so a session is kept or dropped whole, `time_window` keeps everything inside its UTC
//! windows and draws outside them. Pure: the caller passes the random draw.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveTime, Timelike, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::FieldError;
use crate::event::{Event, EventKind};

/// How a project samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SamplingStrategy {
    /// Everything is kept.
    #[default]
    None,
    /// An independent draw per event.
    Random,
    /// A hash of the session (else user, else event) id: whole sessions kept or dropped.
    Deterministic,
    /// Everything inside the windows, random sampling outside.
    TimeWindow,
}

/// A daily UTC window `[start, end)` (`HH:MM`); `end` before `start` wraps past midnight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SamplingWindow {
    /// Start, `HH:MM` UTC.
    pub start: String,
    /// End (exclusive), `HH:MM` UTC.
    pub end: String,
}

fn parse_hhmm(s: &str) -> Option<NaiveTime> {
    NaiveTime::parse_from_str(s, "%H:%M").ok()
}

impl SamplingWindow {
    /// Whether `at` falls inside the window (an unparsable window never matches).
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        let (Some(start), Some(end)) = (parse_hhmm(&self.start), parse_hhmm(&self.end)) else {
            return false;
        };
        let t = NaiveTime::from_hms_opt(at.hour(), at.minute(), at.second()).unwrap_or_default();
        if start <= end {
            start <= t && t < end
        } else {
            t >= start || t < end
        }
    }
}

/// A project's sampling settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplingSettings {
    /// How the rate is applied.
    pub strategy: SamplingStrategy,
    /// The project's rate, in `(0, 1]`.
    pub rate: f64,
    /// `time_window` only: the windows kept whole.
    pub windows: Vec<SamplingWindow>,
    /// Per event kind rates, in `(0, 1]`; they win over every other level.
    pub kinds: BTreeMap<String, f64>,
}

impl Default for SamplingSettings {
    fn default() -> Self {
        Self {
            strategy: SamplingStrategy::None,
            rate: 1.0,
            windows: Vec::new(),
            kinds: BTreeMap::new(),
        }
    }
}

/// A source's sampling override.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SourceSampling {
    /// The source's rate; `None`: the project's.
    pub rate: Option<f64>,
    /// Per event kind rates of this source; they win over the project's.
    pub kinds: BTreeMap<String, f64>,
}

/// An event source of a project (matched on the event's `source`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SourceSettings {
    /// A description.
    pub description: Option<String>,
    /// Sampling overrides; `None`: the project's.
    pub sampling: Option<SourceSampling>,
}

fn valid_rate(r: f64) -> bool {
    r.is_finite() && r > 0.0 && r <= 1.0
}

fn check_kinds(prefix: &str, kinds: &BTreeMap<String, f64>, errors: &mut Vec<FieldError>) {
    for (kind, rate) in kinds {
        let field = format!("{prefix}kinds.{kind}");
        if kind.parse::<EventKind>().is_err() {
            errors.push(FieldError::new(field, "is not an event kind"));
        } else if !valid_rate(*rate) {
            errors.push(FieldError::new(
                field,
                "must be greater than 0 and at most 1",
            ));
        }
    }
}

impl SamplingSettings {
    /// Checks ranges, naming fields under `prefix` (e.g. `sampling.`).
    pub fn check(&self, prefix: &str, errors: &mut Vec<FieldError>) {
        if !valid_rate(self.rate) {
            errors.push(FieldError::new(
                format!("{prefix}rate"),
                "must be greater than 0 and at most 1",
            ));
        }
        for (i, w) in self.windows.iter().enumerate() {
            if parse_hhmm(&w.start).is_none() {
                errors.push(FieldError::new(
                    format!("{prefix}windows[{i}].start"),
                    "must be HH:MM",
                ));
            }
            if parse_hhmm(&w.end).is_none() {
                errors.push(FieldError::new(
                    format!("{prefix}windows[{i}].end"),
                    "must be HH:MM",
                ));
            }
        }
        check_kinds(prefix, &self.kinds, errors);
    }
}

impl SourceSampling {
    /// Checks ranges, naming fields under `prefix` (e.g. `sampling.`).
    pub fn check(&self, prefix: &str, errors: &mut Vec<FieldError>) {
        if self.rate.is_some_and(|r| !valid_rate(r)) {
            errors.push(FieldError::new(
                format!("{prefix}rate"),
                "must be greater than 0 and at most 1",
            ));
        }
        check_kinds(prefix, &self.kinds, errors);
    }
}

/// What sampling decided for one event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    /// Whether the event is stored.
    pub keep: bool,
    /// The rate it was kept with (1 when not sampled).
    pub rate: f64,
}

/// The rate that applies to an event of `kind` from `source`, by level (see the module docs).
pub fn rate_for(
    project: &SamplingSettings,
    source: Option<&SourceSettings>,
    kind: &EventKind,
) -> f64 {
    let source = source.and_then(|s| s.sampling.as_ref());
    let name = kind.as_str();
    if let Some(r) = source.and_then(|s| s.kinds.get(name)) {
        return *r;
    }
    if let Some(r) = project.kinds.get(name) {
        return *r;
    }
    if matches!(kind, EventKind::Error | EventKind::Order) {
        return 1.0;
    }
    source.and_then(|s| s.rate).unwrap_or(project.rate)
}

/// A uniform value in `[0, 1)` from the hash of `key`: the same key always gives the same
/// value, so a session kept once is kept every time.
pub fn hash_unit(key: &str) -> f64 {
    let digest = Sha256::digest(key.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&digest[..8]);
    unit(u64::from_le_bytes(b))
}

/// A `u64` as a uniform value in `[0, 1)` (its 53 high bits).
pub fn unit(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// Decides one event: `draw` is a uniform random `u64` (used by `random` and outside the
/// windows of `time_window`). Without sampling, or at rate 1, the event is kept at rate 1.
pub fn decide(
    project: &SamplingSettings,
    sources: &BTreeMap<String, SourceSettings>,
    event: &Event,
    draw: u64,
) -> Decision {
    let keep_all = Decision {
        keep: true,
        rate: 1.0,
    };
    let rate = match project.strategy {
        SamplingStrategy::None => return keep_all,
        _ => rate_for(
            project,
            event.source.as_deref().and_then(|s| sources.get(s)),
            &event.kind,
        ),
    };
    if rate >= 1.0 {
        return keep_all;
    }
    let u = match project.strategy {
        SamplingStrategy::None => return keep_all,
        SamplingStrategy::Random => unit(draw),
        SamplingStrategy::TimeWindow => {
            if project
                .windows
                .iter()
                .any(|w| w.contains(event.occurred_at))
            {
                return keep_all;
            }
            unit(draw)
        }
        SamplingStrategy::Deterministic => {
            let key = event
                .session_id
                .as_deref()
                .map(|s| format!("s:{s}"))
                .or_else(|| event.user_id.as_deref().map(|u| format!("u:{u}")))
                .unwrap_or_else(|| format!("e:{}", event.id));
            hash_unit(&format!("{}\u{0}{key}", event.project))
        }
    };
    Decision {
        keep: u < rate,
        rate,
    }
}

#[cfg(test)]
mod tests;
