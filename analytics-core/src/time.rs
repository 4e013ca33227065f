//! Time ranges, the PRD's range presets, UTC bucket alignment and comparison periods.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, Months, NaiveTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::FieldError;

/// A half-open interval `[start, end)` of UTC instants, never empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TimeRange {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

impl TimeRange {
    /// `[start, end)`; `start` must be before `end`.
    pub fn new(start: DateTime<Utc>, end: DateTime<Utc>) -> Result<Self, FieldError> {
        if start < end {
            Ok(Self { start, end })
        } else {
            Err(FieldError::new("range", "start must be before end"))
        }
    }

    /// The range of the given length that ends at `end`.
    pub fn ending_at(end: DateTime<Utc>, length: Duration) -> Result<Self, FieldError> {
        Self::new(end - length, end)
    }

    /// The preset range ending at `now`.
    pub fn last(preset: RangePreset, now: DateTime<Utc>) -> Self {
        Self {
            start: now - preset.duration(),
            end: now,
        }
    }

    /// Inclusive start.
    pub fn start(&self) -> DateTime<Utc> {
        self.start
    }

    /// Exclusive end.
    pub fn end(&self) -> DateTime<Utc> {
        self.end
    }

    /// `end - start`.
    pub fn duration(&self) -> Duration {
        self.end - self.start
    }

    /// Whether `t` lies in `[start, end)`.
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.start <= t && t < self.end
    }

    /// Whether the two ranges share an instant.
    pub fn overlaps(&self, other: &TimeRange) -> bool {
        self.start < other.end && other.start < self.end
    }

    /// The same range moved by `by` (negative moves it back).
    pub fn shift(&self, by: Duration) -> Self {
        Self {
            start: self.start + by,
            end: self.end + by,
        }
    }

    /// The range of equal length that ends where this one starts.
    pub fn previous_period(&self) -> Self {
        self.shift(-self.duration())
    }

    /// The same calendar dates one year earlier. A date that does not exist a year earlier
    /// (Feb 29) becomes the last day of that month (Feb 28); if that would make the range
    /// empty, it keeps this range's length instead.
    pub fn same_period_last_year(&self) -> Self {
        let back = |t: DateTime<Utc>| t.checked_sub_months(Months::new(12)).unwrap_or(t);
        let start = back(self.start);
        let end = back(self.end);
        if start < end {
            Self { start, end }
        } else {
            Self {
                start,
                end: start + self.duration(),
            }
        }
    }

    /// The comparison range for `comparison`.
    pub fn compared(&self, comparison: Comparison) -> Self {
        match comparison {
            Comparison::PreviousPeriod => self.previous_period(),
            Comparison::SamePeriodLastYear => self.same_period_last_year(),
        }
    }

    /// Where instant `t` of this range falls in its `comparison` range: `duration` earlier
    /// for the previous period; the same calendar time a year earlier for the previous year
    /// (Feb 29 falls on Feb 28), kept inside that range.
    pub fn compared_instant(&self, comparison: Comparison, t: DateTime<Utc>) -> DateTime<Utc> {
        match comparison {
            Comparison::PreviousPeriod => t - self.duration(),
            Comparison::SamePeriodLastYear => {
                let base = self.same_period_last_year();
                let back = t.checked_sub_months(Months::new(12)).unwrap_or(t);
                back.clamp(base.start, base.end - Duration::microseconds(1))
            }
        }
    }

    /// The buckets of `granularity` that overlap this range, oldest first.
    pub fn buckets(&self, granularity: Granularity) -> impl Iterator<Item = DateTime<Utc>> {
        let end = self.end;
        let mut next = Some(granularity.bucket_start(self.start));
        std::iter::from_fn(move || {
            let current = next?;
            if current >= end {
                return None;
            }
            next = Some(granularity.bucket_end(current));
            Some(current)
        })
    }
}

impl fmt::Display for TimeRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{}, {})",
            self.start.to_rfc3339(),
            self.end.to_rfc3339()
        )
    }
}

/// The PRD's `?range=1h|24h|7d|30d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RangePreset {
    /// `1h`
    #[serde(rename = "1h")]
    LastHour,
    /// `24h`
    #[serde(rename = "24h")]
    Last24Hours,
    /// `7d`
    #[serde(rename = "7d")]
    Last7Days,
    /// `30d`
    #[serde(rename = "30d")]
    Last30Days,
}

impl RangePreset {
    /// All presets, shortest first.
    pub const ALL: [RangePreset; 4] = [
        Self::LastHour,
        Self::Last24Hours,
        Self::Last7Days,
        Self::Last30Days,
    ];

    /// The length of the range.
    pub fn duration(self) -> Duration {
        match self {
            Self::LastHour => Duration::hours(1),
            Self::Last24Hours => Duration::hours(24),
            Self::Last7Days => Duration::days(7),
            Self::Last30Days => Duration::days(30),
        }
    }

    /// The wire form (`1h`, `24h`, `7d`, `30d`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LastHour => "1h",
            Self::Last24Hours => "24h",
            Self::Last7Days => "7d",
            Self::Last30Days => "30d",
        }
    }

    /// The natural bucket size for a timeseries over this range: minutes for `1h`, hours
    /// for `24h` and `7d`, days for `30d` (API.md, system health timeseries).
    pub fn granularity(self) -> Granularity {
        match self {
            Self::LastHour => Granularity::Minute,
            Self::Last24Hours | Self::Last7Days => Granularity::Hour,
            Self::Last30Days => Granularity::Day,
        }
    }
}

impl FromStr for RangePreset {
    type Err = FieldError;
    fn from_str(s: &str) -> Result<Self, FieldError> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| FieldError::new("range", "must be one of 1h, 24h, 7d, 30d"))
    }
}

impl fmt::Display for RangePreset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Bucket sizes. Buckets are aligned in UTC: minutes and hours on the minute and hour,
/// days at 00:00, weeks at Sunday 00:00 (the PRD's weekly job runs Sunday midnight UTC).
///
/// Hours, days and weeks are rolled up ([`Granularity::ROLLED`]); minutes are not: a
/// minute timeseries is computed from raw events, so it is only offered for short windows
/// (see [`Window::granularity`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    /// One minute (timeseries only; never a rollup row).
    Minute,
    /// One hour.
    Hour,
    /// One UTC day.
    Day,
    /// One week starting Sunday 00:00 UTC.
    Week,
}

impl Granularity {
    /// All granularities, finest first.
    pub const ALL: [Granularity; 4] = [Self::Minute, Self::Hour, Self::Day, Self::Week];

    /// The granularities rollup rows are kept at, finest first.
    pub const ROLLED: [Granularity; 3] = [Self::Hour, Self::Day, Self::Week];

    /// Whether rollup rows exist at this granularity.
    pub fn is_rolled(self) -> bool {
        self != Self::Minute
    }

    /// The bucket length.
    pub fn duration(self) -> Duration {
        match self {
            Self::Minute => Duration::minutes(1),
            Self::Hour => Duration::hours(1),
            Self::Day => Duration::days(1),
            Self::Week => Duration::weeks(1),
        }
    }

    /// The start of the bucket containing `t`.
    pub fn bucket_start(self, t: DateTime<Utc>) -> DateTime<Utc> {
        let day = t.date_naive();
        match self {
            Self::Minute => {
                let secs = t.timestamp().div_euclid(60) * 60;
                DateTime::from_timestamp(secs, 0).unwrap_or(t)
            }
            Self::Hour => {
                let secs = t.timestamp().div_euclid(3600) * 3600;
                DateTime::from_timestamp(secs, 0).unwrap_or(t)
            }
            Self::Day => day.and_time(NaiveTime::MIN).and_utc(),
            Self::Week => {
                let back = i64::from(day.weekday().num_days_from_sunday());
                (day - Duration::days(back))
                    .and_time(NaiveTime::MIN)
                    .and_utc()
            }
        }
    }

    /// The end of the bucket that starts at `start` (the next bucket's start).
    pub fn bucket_end(self, start: DateTime<Utc>) -> DateTime<Utc> {
        start + self.duration()
    }

    /// The bucket `[start, end)` containing `t`.
    pub fn bucket(self, t: DateTime<Utc>) -> TimeRange {
        let start = self.bucket_start(t);
        TimeRange {
            start,
            end: self.bucket_end(start),
        }
    }

    /// Whether `t` is exactly a bucket boundary.
    pub fn is_aligned(self, t: DateTime<Utc>) -> bool {
        self.bucket_start(t) == t
    }

    /// The next coarser granularity that is built from this one (hour -> day -> week).
    /// Minutes are not rolled up, so they have no parent.
    pub fn parent(self) -> Option<Granularity> {
        match self {
            Self::Minute => None,
            Self::Hour => Some(Self::Day),
            Self::Day => Some(Self::Week),
            Self::Week => None,
        }
    }

    /// The granularity this one is merged from.
    pub fn child(self) -> Option<Granularity> {
        match self {
            Self::Minute | Self::Hour => None,
            Self::Day => Some(Self::Hour),
            Self::Week => Some(Self::Day),
        }
    }

    /// The wire form (`minute`, `hour`, `day`, `week`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Minute => "minute",
            Self::Hour => "hour",
            Self::Day => "day",
            Self::Week => "week",
        }
    }
}

impl FromStr for Granularity {
    type Err = FieldError;
    fn from_str(s: &str) -> Result<Self, FieldError> {
        Self::ALL
            .into_iter()
            .find(|g| g.as_str() == s)
            .ok_or_else(|| FieldError::new("granularity", "must be one of minute, hour, day, week"))
    }
}

impl fmt::Display for Granularity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A comparison period for business metrics (PRD US-006).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Comparison {
    /// The range of equal length just before.
    PreviousPeriod,
    /// The same dates one year earlier.
    SamePeriodLastYear,
}

impl FromStr for Comparison {
    type Err = FieldError;
    fn from_str(s: &str) -> Result<Self, FieldError> {
        match s {
            "previous_period" => Ok(Self::PreviousPeriod),
            "same_period_last_year" => Ok(Self::SamePeriodLastYear),
            _ => Err(FieldError::new(
                "compare",
                "must be previous_period or same_period_last_year",
            )),
        }
    }
}

/// The time window of an API request (API.md, "Common rules"): a `range` preset ending now
/// (default `24h`), or an explicit `from`/`to` pair (RFC 3339, `to` exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    range: TimeRange,
    preset: Option<RangePreset>,
}

impl Window {
    /// The longest explicit window.
    pub const MAX_SPAN: Duration = Duration::days(400);

    /// Longest window a minute timeseries is offered for (minutes are read from raw events).
    pub const MAX_MINUTE_SPAN: Duration = Duration::hours(24);

    /// Parses the query parameters `range`, `from` and `to` (absent or empty = not given).
    ///
    /// Errors name the field: `range` for a bad preset or when both forms are given, `from`
    /// or `to` for a bad timestamp or when only the other one is given, `from` when it is
    /// not before `to` and `to` when the span exceeds [`Window::MAX_SPAN`].
    pub fn parse(
        range: Option<&str>,
        from: Option<&str>,
        to: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Self, FieldError> {
        fn given(v: Option<&str>) -> Option<&str> {
            v.filter(|s| !s.is_empty())
        }
        let (range, from, to) = (given(range), given(from), given(to));
        if range.is_some() && (from.is_some() || to.is_some()) {
            return Err(FieldError::new(
                "range",
                "give either range or from and to, not both",
            ));
        }
        match (from, to) {
            (None, None) => {
                let preset = match range {
                    Some(r) => r.parse()?,
                    None => RangePreset::Last24Hours,
                };
                Ok(Self::preset(preset, now))
            }
            (Some(_), None) => Err(FieldError::new("to", "is required when from is given")),
            (None, Some(_)) => Err(FieldError::new("from", "is required when to is given")),
            (Some(f), Some(t)) => {
                let start = parse_rfc3339("from", f)?;
                let end = parse_rfc3339("to", t)?;
                Self::between(start, end)
            }
        }
    }

    /// The preset window ending at `now`.
    pub fn preset(preset: RangePreset, now: DateTime<Utc>) -> Self {
        Self {
            range: TimeRange::last(preset, now),
            preset: Some(preset),
        }
    }

    /// The explicit window `[start, end)`: `start < end`, at most [`Window::MAX_SPAN`].
    pub fn between(start: DateTime<Utc>, end: DateTime<Utc>) -> Result<Self, FieldError> {
        let range =
            TimeRange::new(start, end).map_err(|_| FieldError::new("from", "must be before to"))?;
        if range.duration() > Self::MAX_SPAN {
            return Err(FieldError::new(
                "to",
                "the window must span at most 400 days",
            ));
        }
        Ok(Self {
            range,
            preset: None,
        })
    }

    /// The instants covered.
    pub fn range(&self) -> TimeRange {
        self.range
    }

    /// The preset, when the window was given as one.
    pub fn preset_used(&self) -> Option<RangePreset> {
        self.preset
    }

    /// The default bucket size: the preset's ([`RangePreset::granularity`]); for an explicit
    /// window, minutes up to 1 h, hours up to 7 days, days beyond.
    pub fn default_granularity(&self) -> Granularity {
        match self.preset {
            Some(p) => p.granularity(),
            None if self.range.duration() <= Duration::hours(1) => Granularity::Minute,
            None if self.range.duration() <= Duration::days(7) => Granularity::Hour,
            None => Granularity::Day,
        }
    }

    /// The bucket size asked for (`None` or empty: the default), which must be one of
    /// `allowed`; minutes only for windows of at most [`Window::MAX_MINUTE_SPAN`]. Errors
    /// name the field `granularity`.
    pub fn granularity(
        &self,
        requested: Option<&str>,
        allowed: &[Granularity],
    ) -> Result<Granularity, FieldError> {
        let g = match requested.filter(|s| !s.is_empty()) {
            None => self.default_granularity(),
            Some(s) => {
                let names: Vec<&str> = allowed.iter().map(|g| g.as_str()).collect();
                let bad = || {
                    FieldError::new(
                        "granularity",
                        format!("must be one of {}", names.join(", ")),
                    )
                };
                let g: Granularity = s.parse().map_err(|_| bad())?;
                if !allowed.contains(&g) {
                    return Err(bad());
                }
                g
            }
        };
        if g == Granularity::Minute && self.range.duration() > Self::MAX_MINUTE_SPAN {
            return Err(FieldError::new(
                "granularity",
                "minute buckets need a window of at most 24 h",
            ));
        }
        Ok(g)
    }

    /// The buckets of `granularity` overlapping the window, oldest first, each clipped to
    /// the window (the first and last may be partial).
    pub fn buckets(&self, granularity: Granularity) -> impl Iterator<Item = Bucket> + use<> {
        let range = self.range;
        let mut next = Some(granularity.bucket_start(range.start()));
        std::iter::from_fn(move || {
            let start = next?;
            let end = granularity.bucket_end(start);
            next = Some(end);
            let covered = TimeRange::new(start.max(range.start()), end.min(range.end())).ok()?;
            Some(Bucket { start, covered })
        })
    }
}

/// One bucket of a window's timeseries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    /// The aligned bucket start (the point's `ts`), possibly before the window's start.
    pub start: DateTime<Utc>,
    /// The part of the bucket inside the window.
    pub covered: TimeRange,
}

fn parse_rfc3339(field: &str, s: &str) -> Result<DateTime<Utc>, FieldError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| FieldError::new(field, "must be an RFC 3339 timestamp"))
}

/// Truncates `t` to whole microseconds, the precision every store keeps.
pub fn truncate_to_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn check_bucket(g: Granularity, input: &str, start: &str, end: &str) {
        let b = g.bucket(t(input));
        assert_eq!(
            (b.start(), b.end()),
            (t(start), t(end)),
            "{g} bucket of {input}"
        );
        assert!(g.is_aligned(b.start()));
        assert!(b.contains(t(input)));
    }

    #[test]
    fn hour_buckets() {
        check_bucket(
            Granularity::Hour,
            "2024-03-10T13:59:59.999Z",
            "2024-03-10T13:00:00Z",
            "2024-03-10T14:00:00Z",
        );
        check_bucket(
            Granularity::Hour,
            "2024-03-10T14:00:00Z",
            "2024-03-10T14:00:00Z",
            "2024-03-10T15:00:00Z",
        );
        check_bucket(
            Granularity::Hour,
            "2023-12-31T23:30:00Z",
            "2023-12-31T23:00:00Z",
            "2024-01-01T00:00:00Z",
        );
        // Offsets are converted to UTC first.
        check_bucket(
            Granularity::Hour,
            "2024-03-10T14:30:00+05:30",
            "2024-03-10T09:00:00Z",
            "2024-03-10T10:00:00Z",
        );
        // Before the epoch, floor division still floors.
        check_bucket(
            Granularity::Hour,
            "1969-12-31T23:59:59Z",
            "1969-12-31T23:00:00Z",
            "1970-01-01T00:00:00Z",
        );
    }

    #[test]
    fn day_buckets() {
        check_bucket(
            Granularity::Day,
            "2024-02-29T23:59:59Z",
            "2024-02-29T00:00:00Z",
            "2024-03-01T00:00:00Z",
        );
        check_bucket(
            Granularity::Day,
            "2024-03-01T00:00:00Z",
            "2024-03-01T00:00:00Z",
            "2024-03-02T00:00:00Z",
        );
        check_bucket(
            Granularity::Day,
            "2023-12-31T12:00:00Z",
            "2023-12-31T00:00:00Z",
            "2024-01-01T00:00:00Z",
        );
        check_bucket(
            Granularity::Day,
            "2024-01-01T01:00:00+02:00",
            "2023-12-31T00:00:00Z",
            "2024-01-01T00:00:00Z",
        );
    }

    #[test]
    fn week_buckets_start_sunday() {
        // 2024-03-10 is a Sunday.
        check_bucket(
            Granularity::Week,
            "2024-03-10T00:00:00Z",
            "2024-03-10T00:00:00Z",
            "2024-03-17T00:00:00Z",
        );
        check_bucket(
            Granularity::Week,
            "2024-03-09T23:59:59Z",
            "2024-03-03T00:00:00Z",
            "2024-03-10T00:00:00Z",
        );
        check_bucket(
            Granularity::Week,
            "2024-03-16T23:59:59Z",
            "2024-03-10T00:00:00Z",
            "2024-03-17T00:00:00Z",
        );
        // A week across a year end: 2023-12-31 is a Sunday.
        check_bucket(
            Granularity::Week,
            "2024-01-03T08:00:00Z",
            "2023-12-31T00:00:00Z",
            "2024-01-07T00:00:00Z",
        );
        // A week across Feb 29: 2024-02-25 is a Sunday.
        check_bucket(
            Granularity::Week,
            "2024-02-29T12:00:00Z",
            "2024-02-25T00:00:00Z",
            "2024-03-03T00:00:00Z",
        );
        // 2020-12-27 is a Sunday; the week spans the year end.
        check_bucket(
            Granularity::Week,
            "2021-01-02T23:00:00Z",
            "2020-12-27T00:00:00Z",
            "2021-01-03T00:00:00Z",
        );
    }

    #[test]
    fn buckets_of_a_range() {
        let r = TimeRange::new(t("2024-02-28T22:30:00Z"), t("2024-03-01T01:00:00Z")).unwrap();
        let hours: Vec<_> = r.buckets(Granularity::Hour).collect();
        assert_eq!(hours.len(), 27);
        assert_eq!(hours[0], t("2024-02-28T22:00:00Z"));
        assert_eq!(*hours.last().unwrap(), t("2024-03-01T00:00:00Z"));
        let days: Vec<_> = r.buckets(Granularity::Day).collect();
        assert_eq!(
            days,
            vec![
                t("2024-02-28T00:00:00Z"),
                t("2024-02-29T00:00:00Z"),
                t("2024-03-01T00:00:00Z")
            ]
        );
        let weeks: Vec<_> = r.buckets(Granularity::Week).collect();
        assert_eq!(weeks, vec![t("2024-02-25T00:00:00Z")]);
    }

    #[test]
    fn parents_and_children() {
        assert_eq!(Granularity::Hour.parent(), Some(Granularity::Day));
        assert_eq!(Granularity::Day.parent(), Some(Granularity::Week));
        assert_eq!(Granularity::Week.parent(), None);
        assert_eq!(Granularity::Week.child(), Some(Granularity::Day));
        assert_eq!("week".parse::<Granularity>().unwrap(), Granularity::Week);
        assert_eq!(
            "month".parse::<Granularity>().unwrap_err().field,
            "granularity"
        );
    }

    #[test]
    fn presets() {
        let now = t("2024-03-10T12:00:00Z");
        for (s, hours) in [("1h", 1), ("24h", 24), ("7d", 168), ("30d", 720)] {
            let p: RangePreset = s.parse().unwrap();
            let r = TimeRange::last(p, now);
            assert_eq!(r.end(), now);
            assert_eq!(r.duration(), Duration::hours(hours));
            assert_eq!(p.to_string(), s);
        }
        let err = "2d".parse::<RangePreset>().unwrap_err();
        assert_eq!(err.field, "range");
        assert_eq!(
            serde_json::to_string(&RangePreset::Last7Days).unwrap(),
            "\"7d\""
        );
    }

    #[test]
    fn empty_or_inverted_ranges_are_rejected() {
        let a = t("2024-03-10T12:00:00Z");
        assert_eq!(TimeRange::new(a, a).unwrap_err().field, "range");
        assert!(TimeRange::new(a, a - Duration::seconds(1)).is_err());
    }

    #[test]
    fn previous_period() {
        let r = TimeRange::new(t("2024-03-01T00:00:00Z"), t("2024-03-08T00:00:00Z")).unwrap();
        let p = r.compared(Comparison::PreviousPeriod);
        assert_eq!(
            (p.start(), p.end()),
            (t("2024-02-23T00:00:00Z"), t("2024-03-01T00:00:00Z"))
        );
        assert_eq!(p.duration(), r.duration());
    }

    #[test]
    fn same_period_last_year() {
        let r = TimeRange::new(t("2024-03-01T00:00:00Z"), t("2024-03-08T00:00:00Z")).unwrap();
        let y = r.compared(Comparison::SamePeriodLastYear);
        assert_eq!(
            (y.start(), y.end()),
            (t("2023-03-01T00:00:00Z"), t("2023-03-08T00:00:00Z"))
        );
        // Feb 29 maps to Feb 28.
        let leap = TimeRange::new(t("2024-02-29T00:00:00Z"), t("2024-03-01T00:00:00Z")).unwrap();
        let y = leap.same_period_last_year();
        assert_eq!(
            (y.start(), y.end()),
            (t("2023-02-28T00:00:00Z"), t("2023-03-01T00:00:00Z"))
        );
        // Instants map by calendar: Feb 28 and Feb 29 both fall on Feb 28, Mar 1 on Mar 1.
        let span = TimeRange::new(t("2024-02-28T00:00:00Z"), t("2024-03-02T00:00:00Z")).unwrap();
        let y = Comparison::SamePeriodLastYear;
        for (at, then) in [
            ("2024-02-28T06:00:00Z", "2023-02-28T06:00:00Z"),
            ("2024-02-29T06:00:00Z", "2023-02-28T06:00:00Z"),
            ("2024-03-01T06:00:00Z", "2023-03-01T06:00:00Z"),
        ] {
            assert_eq!(span.compared_instant(y, t(at)), t(then));
        }
        assert_eq!(
            span.compared_instant(Comparison::PreviousPeriod, t("2024-03-01T06:00:00Z")),
            t("2024-02-27T06:00:00Z")
        );
        // A range that would collapse keeps its length.
        let tiny = TimeRange::new(t("2024-02-29T10:00:00Z"), t("2024-02-29T11:00:00Z")).unwrap();
        let y = tiny.same_period_last_year();
        assert_eq!(
            (y.start(), y.end()),
            (t("2023-02-28T10:00:00Z"), t("2023-02-28T11:00:00Z"))
        );
        let collapsing =
            TimeRange::new(t("2024-02-28T12:00:00Z"), t("2024-02-29T12:00:00Z")).unwrap();
        let y = collapsing.same_period_last_year();
        assert_eq!(y.start(), t("2023-02-28T12:00:00Z"));
        assert_eq!(y.duration(), collapsing.duration());
        assert_eq!("yoy".parse::<Comparison>().unwrap_err().field, "compare");
    }

    #[test]
    fn minute_buckets() {
        check_bucket(
            Granularity::Minute,
            "2024-03-10T13:59:59.999Z",
            "2024-03-10T13:59:00Z",
            "2024-03-10T14:00:00Z",
        );
        assert!(!Granularity::Minute.is_rolled());
        assert_eq!(Granularity::Minute.parent(), None);
        assert_eq!(
            "minute".parse::<Granularity>().unwrap(),
            Granularity::Minute
        );
    }

    fn window(range: Option<&str>, from: Option<&str>, to: Option<&str>) -> Result<Window, String> {
        Window::parse(range, from, to, t("2024-03-10T10:17:00Z")).map_err(|e| e.field)
    }

    #[test]
    fn window_defaults_to_the_last_24_hours() {
        let w = window(None, None, None).unwrap();
        assert_eq!(w.range().start(), t("2024-03-09T10:17:00Z"));
        assert_eq!(w.range().end(), t("2024-03-10T10:17:00Z"));
        assert_eq!(w.preset_used(), Some(RangePreset::Last24Hours));
        // Empty parameters count as absent.
        assert_eq!(window(Some(""), Some(""), Some("")).unwrap(), w);
    }

    #[test]
    fn window_errors_name_the_field() {
        assert_eq!(window(Some("2d"), None, None).unwrap_err(), "range");
        assert_eq!(
            window(Some("1h"), Some("2024-03-01T00:00:00Z"), None).unwrap_err(),
            "range"
        );
        assert_eq!(
            window(Some("1h"), None, Some("2024-03-01T00:00:00Z")).unwrap_err(),
            "range"
        );
        assert_eq!(
            window(None, None, Some("2024-03-01T00:00:00Z")).unwrap_err(),
            "from"
        );
        assert_eq!(
            window(None, Some("2024-03-01T00:00:00Z"), None).unwrap_err(),
            "to"
        );
        assert_eq!(
            window(None, Some("yesterday"), Some("2024-03-01T00:00:00Z")).unwrap_err(),
            "from"
        );
        assert_eq!(
            window(None, Some("2024-03-01T00:00:00Z"), Some("2024-13-01")).unwrap_err(),
            "to"
        );
        // from must be before to.
        let same = Some("2024-03-01T00:00:00Z");
        assert_eq!(window(None, same, same).unwrap_err(), "from");
        // At most 400 days.
        assert_eq!(
            window(
                None,
                Some("2023-01-01T00:00:00Z"),
                Some("2024-03-01T00:00:00Z")
            )
            .unwrap_err(),
            "to"
        );
        let w = window(
            None,
            Some("2023-02-01T00:00:00Z"),
            Some("2024-03-07T00:00:00Z"),
        )
        .unwrap();
        assert_eq!(w.range().duration(), Duration::days(400));
        assert_eq!(w.preset_used(), None);
    }

    #[test]
    fn window_default_granularity_per_preset() {
        for (preset, g) in [
            ("1h", Granularity::Minute),
            ("24h", Granularity::Hour),
            ("7d", Granularity::Hour),
            ("30d", Granularity::Day),
        ] {
            let w = window(Some(preset), None, None).unwrap();
            assert_eq!(w.default_granularity(), g, "{preset}");
            assert_eq!(w.granularity(None, &Granularity::ALL).unwrap(), g);
        }
        let allowed = [Granularity::Minute, Granularity::Hour, Granularity::Day];
        let w = window(Some("7d"), None, None).unwrap();
        assert_eq!(
            w.granularity(Some("day"), &allowed).unwrap(),
            Granularity::Day
        );
        assert_eq!(
            w.granularity(Some("week"), &allowed).unwrap_err().field,
            "granularity"
        );
        assert_eq!(
            w.granularity(Some("fortnight"), &allowed)
                .unwrap_err()
                .field,
            "granularity"
        );
        // Minutes are read from raw events: only for windows up to 24 h.
        assert_eq!(
            w.granularity(Some("minute"), &allowed).unwrap_err().field,
            "granularity"
        );
        let w = window(Some("24h"), None, None).unwrap();
        assert_eq!(
            w.granularity(Some("minute"), &allowed).unwrap(),
            Granularity::Minute
        );
    }

    #[test]
    fn a_24h_window_at_10_17_has_25_hourly_points_clipped_at_the_edges() {
        let w = window(Some("24h"), None, None).unwrap();
        let b: Vec<Bucket> = w.buckets(Granularity::Hour).collect();
        assert_eq!(b.len(), 25);
        assert_eq!(b[0].start, t("2024-03-09T10:00:00Z"));
        assert_eq!(b[0].covered.start(), t("2024-03-09T10:17:00Z"));
        assert_eq!(b[0].covered.end(), t("2024-03-09T11:00:00Z"));
        assert_eq!(b[1].covered.duration(), Duration::hours(1));
        assert_eq!(b[24].start, t("2024-03-10T10:00:00Z"));
        assert_eq!(b[24].covered.end(), t("2024-03-10T10:17:00Z"));
        let total: Duration = b.iter().map(|b| b.covered.duration()).sum();
        assert_eq!(total, Duration::hours(24));
        // One hour at minutes: 60 whole minutes when aligned on the minute.
        assert_eq!(
            window(Some("1h"), None, None)
                .unwrap()
                .buckets(Granularity::Minute)
                .count(),
            60
        );
        // Weeks start on Sunday: 2024-03-10 is one.
        let w = window(
            None,
            Some("2024-03-06T00:00:00Z"),
            Some("2024-03-12T00:00:00Z"),
        )
        .unwrap();
        let weeks: Vec<_> = w.buckets(Granularity::Week).map(|b| b.start).collect();
        assert_eq!(
            weeks,
            vec![t("2024-03-03T00:00:00Z"), t("2024-03-10T00:00:00Z")]
        );
    }

    #[test]
    fn truncation_to_micros() {
        let t0 = Utc.timestamp_opt(1_700_000_000, 123_456_789).unwrap();
        assert_eq!(truncate_to_micros(t0).timestamp_subsec_nanos(), 123_456_000);
    }
}
