//! `PrometheusScrapeSource`: the live view of `health/overview` (FR-3). Scrapes a Prometheus
//! text exposition endpoint within a hard time budget and derives the request rate and
//! error rate from `http_requests_total` counter deltas between scrapes, and p50/p95/p99
//! from `http_request_duration_seconds` histogram buckets. An endpoint that is down, slow or
//! not Prometheus text gives `available = false` with a reason, never an error.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use analytics_core::alert::Stat;
use analytics_core::ports::{MetricQuery, MetricsSource};
use analytics_core::rollup::spec::metrics;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use prometheus_parse::{Sample, Scrape, Value};

/// The counter of served requests (labels `status`, and `route` where known).
pub const REQUESTS_METRIC: &str = "http_requests_total";
/// The request latency histogram, in seconds.
pub const DURATION_METRIC: &str = "http_request_duration_seconds";
/// The default time budget of one scrape (connect, response, body, parse).
pub const DEFAULT_BUDGET: Duration = Duration::from_millis(500);
/// Largest exposition body read.
const MAX_BODY: usize = 8 * 1024 * 1024;
/// A baseline scrape is replaced by a newer one once it is this old, so rates cover at
/// least the time since the previous call and at most about this long.
const BASELINE_MAX_AGE: chrono::Duration = chrono::Duration::seconds(10);

/// The live figures, or why there are none.
#[derive(Debug, Clone, PartialEq)]
pub struct Realtime {
    /// Whether the endpoint answered with usable figures.
    pub available: bool,
    /// The endpoint URL.
    pub source: String,
    /// When it was scraped (when available).
    pub scraped_at: Option<DateTime<Utc>>,
    /// Requests per second since the previous scrape (`None` on the first scrape).
    pub requests_per_second: Option<f64>,
    /// 5xx share of the requests since the previous scrape (since the endpoint's start on
    /// the first scrape); `None` without requests.
    pub error_rate: Option<f64>,
    /// Latency percentiles in milliseconds over the same requests.
    pub p50_ms: Option<f64>,
    /// 95th percentile.
    pub p95_ms: Option<f64>,
    /// 99th percentile.
    pub p99_ms: Option<f64>,
    /// Why the figures are unavailable.
    pub reason: Option<String>,
}

impl Realtime {
    /// An unavailable answer.
    pub fn unavailable(source: &str, reason: impl Into<String>) -> Self {
        Self {
            available: false,
            source: source.to_owned(),
            scraped_at: None,
            requests_per_second: None,
            error_rate: None,
            p50_ms: None,
            p95_ms: None,
            p99_ms: None,
            reason: Some(reason.into()),
        }
    }
}

/// The cumulative figures of one scrape.
#[derive(Debug, Clone, PartialEq)]
struct Totals {
    at: DateTime<Utc>,
    requests: f64,
    errors: f64,
    /// Cumulative histogram counts by upper bound (`+Inf` included).
    buckets: BTreeMap<OrderedLe, f64>,
}

/// A histogram bound that sorts (never NaN: NaN bounds are dropped).
#[derive(Debug, Clone, Copy, PartialEq)]
struct OrderedLe(f64);

impl Eq for OrderedLe {}

impl PartialOrd for OrderedLe {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for OrderedLe {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// Scrapes one Prometheus endpoint; keeps the previous scrape as the baseline of the rates.
#[derive(Debug)]
pub struct PrometheusScrapeSource {
    url: String,
    budget: Duration,
    client: reqwest::Client,
    baseline: Mutex<Option<Totals>>,
    /// Routes left out of the figures (the scrape endpoint itself).
    excluded_routes: Vec<String>,
}

impl PrometheusScrapeSource {
    /// A source for `url` answering within `budget`. Requests to the route `/metrics` are
    /// left out of the figures (they are the scrapes themselves).
    pub fn new(url: impl Into<String>, budget: Duration) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        // The budget is enforced around the whole scrape; the client's own timeouts are
        // only a backstop.
        let client = reqwest::Client::builder()
            .timeout(budget * 2)
            .connect_timeout(budget * 2)
            .build()
            .unwrap_or_default();
        Self {
            url: url.into(),
            budget,
            client,
            baseline: Mutex::new(None),
            excluded_routes: vec!["/metrics".to_owned()],
        }
    }

    /// The endpoint URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Scrapes now (within the budget) and derives the live figures.
    pub async fn realtime(&self) -> Realtime {
        let fetched = tokio::time::timeout(self.budget, self.fetch()).await;
        let now = Utc::now();
        let body = match fetched {
            Err(_) => {
                return Realtime::unavailable(
                    &self.url,
                    format!("no answer within {} ms", self.budget.as_millis()),
                );
            }
            Ok(Err(reason)) => return Realtime::unavailable(&self.url, reason),
            Ok(Ok(body)) => body,
        };
        let totals = match parse_totals(&body, now, &self.excluded_routes) {
            Ok(t) => t,
            Err(reason) => return Realtime::unavailable(&self.url, reason),
        };
        let baseline = {
            let mut guard = self.baseline.lock().unwrap_or_else(|e| e.into_inner());
            let previous = guard.clone();
            let stale = previous.as_ref().is_none_or(|p| {
                totals.at - p.at >= BASELINE_MAX_AGE || totals.requests < p.requests
            });
            if stale {
                *guard = Some(totals.clone());
            }
            previous
        };
        derive(&self.url, &totals, baseline.as_ref())
    }

    async fn fetch(&self) -> Result<String, String> {
        let mut resp = self
            .client
            .get(&self.url)
            .header("accept", "text/plain")
            .send()
            .await
            .map_err(|e| self.failure("unreachable", &e))?;
        if !resp.status().is_success() {
            return Err(format!("answered HTTP {}", resp.status().as_u16()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| self.failure("reading the answer failed", &e))?
        {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(format!("answer larger than {MAX_BODY} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        String::from_utf8(body).map_err(|_| "not prometheus text: the answer is not UTF-8".into())
    }
}

impl PrometheusScrapeSource {
    fn failure(&self, what: &str, e: &reqwest::Error) -> String {
        if e.is_timeout() {
            format!("no answer within {} ms", self.budget.as_millis())
        } else {
            format!("{what}: {}", error_chain(e))
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Sums the request counter and latency histogram over every label set (but excluded
/// routes). Fails when the text has no Prometheus samples or no request counter.
fn parse_totals(
    body: &str,
    at: DateTime<Utc>,
    excluded_routes: &[String],
) -> Result<Totals, String> {
    let scrape = Scrape::parse_at(body.lines().map(|l| Ok(l.to_owned())), at)
        .map_err(|e| format!("not prometheus text: {e}"))?;
    if scrape.samples.is_empty() {
        return Err("not prometheus text: no samples found".into());
    }
    let counted = |s: &Sample| {
        s.labels
            .get("route")
            .is_none_or(|r| !excluded_routes.iter().any(|x| x == r))
    };
    let mut totals = Totals {
        at,
        requests: 0.0,
        errors: 0.0,
        buckets: BTreeMap::new(),
    };
    let mut seen_counter = false;
    for s in scrape.samples.iter().filter(|s| counted(s)) {
        match (&s.value, s.metric.as_str()) {
            (Value::Counter(v) | Value::Untyped(v), REQUESTS_METRIC) if v.is_finite() => {
                seen_counter = true;
                totals.requests += v;
                let server_error = s
                    .labels
                    .get("status")
                    .or_else(|| s.labels.get("code"))
                    .and_then(|c| c.parse::<u16>().ok())
                    .is_some_and(|c| c >= 500);
                if server_error {
                    totals.errors += v;
                }
            }
            (Value::Histogram(counts), DURATION_METRIC) => {
                for c in counts
                    .iter()
                    .filter(|c| !c.less_than.is_nan() && c.count.is_finite())
                {
                    *totals.buckets.entry(OrderedLe(c.less_than)).or_default() += c.count;
                }
            }
            _ => {}
        }
    }
    if !seen_counter {
        return Err(format!("no {REQUESTS_METRIC} counter in the exposition"));
    }
    Ok(totals)
}

/// The figures of `now` relative to `baseline` (cumulative when there is none or the
/// counters were reset).
fn derive(url: &str, now: &Totals, baseline: Option<&Totals>) -> Realtime {
    let base = baseline.filter(|b| b.at < now.at && b.requests <= now.requests);
    let (requests, errors) = match base {
        Some(b) => (now.requests - b.requests, (now.errors - b.errors).max(0.0)),
        None => (now.requests, now.errors),
    };
    let requests_per_second = base.map(|b| {
        let secs = (now.at - b.at).num_milliseconds() as f64 / 1000.0;
        requests / secs
    });
    let buckets: Vec<(f64, f64)> = now
        .buckets
        .iter()
        .map(|(le, c)| {
            let before = base.and_then(|b| b.buckets.get(le)).copied().unwrap_or(0.0);
            (le.0, (c - before).max(0.0))
        })
        .collect();
    let q = |q: f64| histogram_quantile(q, &buckets).map(|s| s * 1000.0);
    Realtime {
        available: true,
        source: url.to_owned(),
        scraped_at: Some(now.at),
        requests_per_second,
        error_rate: (requests > 0.0).then(|| (errors / requests).clamp(0.0, 1.0)),
        p50_ms: q(0.5),
        p95_ms: q(0.95),
        p99_ms: q(0.99),
        reason: None,
    }
}

/// Prometheus' `histogram_quantile` over cumulative `(upper bound, count)` buckets sorted
/// by bound: linear interpolation inside the bucket holding the rank; a rank in the `+Inf`
/// bucket gives the largest finite bound. `None` without observations.
pub fn histogram_quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 || !(0.0..=1.0).contains(&q) {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(lower.0);
            }
            if count == lower.1 {
                return Some(le);
            }
            return Some(lower.0 + (le - lower.0) * (rank - lower.1) / (count - lower.1));
        }
        lower = (le, count);
    }
    Some(lower.0)
}

#[async_trait]
impl MetricsSource for PrometheusScrapeSource {
    /// Live values of `api.latency_ms` (`p50`, `p95`, `p99`, `rate` = requests per second)
    /// and `api.errors` (`avg` = error rate); the window is ignored (it is "now"). Other
    /// metrics, stats or dimension filters have no live value (`None`).
    async fn metric_value(&self, query: &MetricQuery) -> analytics_core::Result<Option<f64>> {
        if !query.dimensions.is_empty() {
            return Ok(None);
        }
        let live = self.realtime().await;
        if !live.available {
            return Err(analytics_core::Error::Unavailable(
                live.reason.unwrap_or_default(),
            ));
        }
        Ok(match (query.metric.as_str(), query.stat) {
            (metrics::API_LATENCY_MS, Stat::P50) => live.p50_ms,
            (metrics::API_LATENCY_MS, Stat::P95) => live.p95_ms,
            (metrics::API_LATENCY_MS, Stat::P99) => live.p99_ms,
            (metrics::API_LATENCY_MS | metrics::API_ERRORS, Stat::Rate) => live.requests_per_second,
            (metrics::API_ERRORS, Stat::Avg) => live.error_rate,
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantile_interpolates_like_prometheus() {
        let b = [
            (0.1, 50.0),
            (0.5, 90.0),
            (1.0, 100.0),
            (f64::INFINITY, 100.0),
        ];
        assert_eq!(histogram_quantile(0.5, &b), Some(0.1));
        let p = histogram_quantile(0.7, &b).unwrap();
        assert!((p - 0.3).abs() < 1e-12, "{p}");
        assert_eq!(histogram_quantile(0.99, &b), Some(0.95));
        // Beyond the last finite bound: the largest finite bound.
        let tail = [(0.1, 1.0), (f64::INFINITY, 10.0)];
        assert_eq!(histogram_quantile(0.99, &tail), Some(0.1));
        assert_eq!(
            histogram_quantile(0.5, &[(0.1, 0.0), (f64::INFINITY, 0.0)]),
            None
        );
        assert_eq!(histogram_quantile(0.5, &[]), None);
    }

    #[test]
    fn rates_come_from_counter_deltas() {
        let at = |s: i64| DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap();
        let text = |ok: u32, err: u32, scrapes: u32| {
            format!(
                "# TYPE http_requests_total counter\n\
                 http_requests_total{{method=\"GET\",route=\"/a\",status=\"200\"}} {ok}\n\
                 http_requests_total{{method=\"GET\",route=\"/a\",status=\"503\"}} {err}\n\
                 http_requests_total{{method=\"GET\",route=\"/metrics\",status=\"500\"}} {scrapes}\n"
            )
        };
        let first = parse_totals(&text(90, 10, 5), at(0), &["/metrics".into()]).unwrap();
        let r = derive("u", &first, None);
        assert_eq!(r.requests_per_second, None);
        assert_eq!(r.error_rate, Some(0.1));
        let second = parse_totals(&text(170, 30, 9), at(10), &["/metrics".into()]).unwrap();
        let r = derive("u", &second, Some(&first));
        assert_eq!(r.requests_per_second, Some(10.0));
        assert_eq!(r.error_rate, Some(0.2));
        assert!(
            parse_totals("hello", at(0), &[])
                .unwrap_err()
                .contains("no samples")
        );
        assert!(
            parse_totals("up 1\n", at(0), &[])
                .unwrap_err()
                .contains(REQUESTS_METRIC)
        );
    }
}
