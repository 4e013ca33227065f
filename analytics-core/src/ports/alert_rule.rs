//! `AlertRule`: pure evaluation of one rule against observed metric values.

use serde::Serialize;

/// What the engine observed for a rule's metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation<'a> {
    /// The value over the current window.
    pub current: Option<f64>,
    /// The value over the window before it (for rate of change).
    pub previous: Option<f64>,
    /// Values of the windows just before the current one, oldest first (the anomaly
    /// fallback: a z-score over recent windows).
    pub history: &'a [f64],
    /// Values of the same window at the same hour of the week in past weeks, oldest first
    /// (the anomaly seasonal baseline: median and MAD).
    pub seasonal: &'a [f64],
}

/// The verdict.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Evaluation {
    /// The rule is breached.
    Breach {
        /// The metric's current value.
        value: f64,
        /// What was compared with the threshold (the value, a percent change, a z-score).
        observed: f64,
        /// The threshold.
        threshold: f64,
    },
    /// Within bounds.
    Ok {
        /// The metric's current value.
        value: f64,
    },
    /// Not enough data to decide.
    NoData,
}

/// A rule: values in, verdict out. No I/O, no clock.
pub trait AlertRule: Send + Sync + std::fmt::Debug {
    /// Evaluates the rule.
    fn evaluate(&self, observation: &Observation<'_>) -> Evaluation;
}
