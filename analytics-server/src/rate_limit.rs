//! Ingest rate limits per project: requests per second per API key (or token subject) and
//! requests per minute per client IP.
//!
//! In-process with `governor` (GCRA, one keyed limiter per quota). With `REDIS_URL` the
//! budget is shared by every replica: a sliding-window log per key in Redis (a sorted set of
//! request times, trimmed, counted and appended by one Lua script, so the check is atomic).
//! When a Redis call fails or is slow, that request is decided by the in-process limiter (so
//! limits never switch off and never refuse everything), and `/metrics` says so:
//! `analytics_rate_limit_redis_up 0`, `analytics_rate_limit_redis_errors_total`, and
//! `analytics_rate_limit_decisions_total{backend="local"}`. Keys are hashed before they go
//! to Redis: no API key id or IP address is stored there.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use governor::clock::{Clock as _, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::{Quota, RateLimiter};
use prometheus::{IntCounter, IntCounterVec, IntGauge};
use sha2::{Digest as _, Sha256};

use crate::redis_link::RedisLink;

/// The rate limiter's metrics.
#[derive(Debug, Clone)]
pub struct LimiterMetrics {
    /// `analytics_rate_limit_redis_up`.
    pub redis_up: IntGauge,
    /// `analytics_rate_limit_redis_errors_total`.
    pub redis_errors: IntCounter,
    /// `analytics_rate_limit_decisions_total{limit, backend, result}`.
    pub decisions: IntCounterVec,
}

/// Which limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitKind {
    /// Per API key (or token subject), per second.
    Key,
    /// Per client IP, per minute.
    Ip,
}

impl LimitKind {
    fn label(self) -> &'static str {
        match self {
            Self::Key => "key",
            Self::Ip => "ip",
        }
    }

    fn window(self) -> Duration {
        match self {
            Self::Key => Duration::from_secs(1),
            Self::Ip => Duration::from_secs(60),
        }
    }
}

/// The answer to one check: the figures of the `RateLimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the request may go on.
    pub allowed: bool,
    /// The limit of the window.
    pub limit: u32,
    /// Requests left in the window.
    pub remaining: u32,
    /// Whole seconds until a request is allowed again (0 when allowed).
    pub reset_secs: u64,
}

type Keyed = RateLimiter<
    String,
    governor::state::keyed::DefaultKeyedStateStore<String>,
    DefaultClock,
    StateInformationMiddleware,
>;

/// The limiter shared by the ingest handlers.
pub struct IngestLimiter {
    local: Mutex<HashMap<(LimitKind, u32), Arc<Keyed>>>,
    shared: Option<RedisLink>,
    metrics: LimiterMetrics,
    checks: AtomicU64,
    seq: AtomicU64,
}

impl std::fmt::Debug for IngestLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestLimiter")
            .field("redis", &self.shared.is_some())
            .finish_non_exhaustive()
    }
}

/// Trims the window, counts it, and appends this request when it fits. Returns
/// `{allowed, remaining, ms until the oldest request leaves the window}`.
const SLIDING_WINDOW: &str = r"
local key = KEYS[1]
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local n = redis.call('ZCARD', key)
if n < limit then
  redis.call('ZADD', key, now, ARGV[4])
  redis.call('PEXPIRE', key, window)
  return {1, limit - n - 1, 0}
end
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
local wait = window
if oldest[2] then wait = tonumber(oldest[2]) + window - now end
return {0, 0, wait}
";

impl IngestLimiter {
    /// A limiter shared through Redis at `redis_url` when given (a URL that does not parse is
    /// an error; an unreachable server is not).
    pub fn new(
        redis_url: Option<&str>,
        metrics: LimiterMetrics,
    ) -> Result<Self, redis::RedisError> {
        metrics.redis_up.set(0);
        let shared = redis_url
            .map(|url| {
                RedisLink::new(
                    "rate limiter",
                    url,
                    metrics.redis_up.clone(),
                    metrics.redis_errors.clone(),
                )
            })
            .transpose()?;
        Ok(Self {
            local: Mutex::default(),
            shared,
            metrics,
            checks: AtomicU64::new(0),
            seq: AtomicU64::new(0),
        })
    }

    /// Checks and counts one request of `key` against `limit` per window of `kind`.
    pub async fn check(&self, kind: LimitKind, key: &str, limit: u32) -> Verdict {
        let limit = limit.max(1);
        if let Some(shared) = &self.shared
            && let Some(v) = self.check_shared(shared, kind, key, limit).await
        {
            self.count(kind, "redis", v.allowed);
            return v;
        }
        let v = self.check_local(kind, key, limit);
        self.count(kind, "local", v.allowed);
        v
    }

    fn count(&self, kind: LimitKind, backend: &str, allowed: bool) {
        let result = if allowed { "allowed" } else { "limited" };
        self.metrics
            .decisions
            .with_label_values(&[kind.label(), backend, result])
            .inc();
    }

    fn check_local(&self, kind: LimitKind, key: &str, limit: u32) -> Verdict {
        let limiter = {
            let mut all = self.local.lock().unwrap_or_else(|e| e.into_inner());
            all.entry((kind, limit))
                .or_insert_with(|| {
                    let n = NonZeroU32::new(limit).unwrap_or(NonZeroU32::MIN);
                    let quota = match kind {
                        LimitKind::Key => Quota::per_second(n),
                        LimitKind::Ip => Quota::per_minute(n),
                    };
                    Arc::new(RateLimiter::dashmap(quota).with_middleware())
                })
                .clone()
        };
        // Forget idle keys now and then, so memory follows the active keys only.
        if self.checks.fetch_add(1, Ordering::Relaxed) % 10_000 == 9_999 {
            limiter.retain_recent();
        }
        match limiter.check_key(&key.to_owned()) {
            Ok(state) => Verdict {
                allowed: true,
                limit,
                remaining: state.remaining_burst_capacity(),
                reset_secs: 0,
            },
            Err(not_until) => Verdict {
                allowed: false,
                limit,
                remaining: 0,
                reset_secs: whole_secs(not_until.wait_time_from(DefaultClock::default().now())),
            },
        }
    }

    async fn check_shared(
        &self,
        shared: &RedisLink,
        kind: LimitKind,
        key: &str,
        limit: u32,
    ) -> Option<Verdict> {
        let mut conn = shared.connection().await?;
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        let window_ms = kind.window().as_millis() as u64;
        let hashed = hex::encode(&Sha256::digest(key.as_bytes())[..16]);
        let redis_key = format!("analytics:ratelimit:{}:{hashed}", kind.label());
        // A unique member per request, so two requests of the same millisecond both count.
        let member = format!(
            "{now_ms}-{}-{}",
            std::process::id(),
            self.seq.fetch_add(1, Ordering::Relaxed)
        );
        let answer: Vec<i64> = shared
            .call(
                &mut conn,
                redis::cmd("EVAL")
                    .arg(SLIDING_WINDOW)
                    .arg(1)
                    .arg(&redis_key)
                    .arg(now_ms)
                    .arg(window_ms)
                    .arg(limit)
                    .arg(member),
            )
            .await
            .ok()?;
        let [allowed, remaining, wait_ms] = answer.as_slice() else {
            return None;
        };
        Some(Verdict {
            allowed: *allowed == 1,
            limit,
            remaining: u32::try_from(*remaining).unwrap_or(0),
            reset_secs: whole_secs(Duration::from_millis(u64::try_from(*wait_ms).unwrap_or(0))),
        })
    }
}

/// A wait in whole seconds, rounded up (at least 1 when there is any wait).
fn whole_secs(d: Duration) -> u64 {
    if d.is_zero() {
        0
    } else {
        d.as_secs() + u64::from(d.subsec_nanos() > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> LimiterMetrics {
        crate::metrics::Metrics::new().rate_limit_metrics()
    }

    #[tokio::test]
    async fn the_local_budget_holds_per_key_and_says_when_to_retry() {
        let limiter = IngestLimiter::new(None, metrics()).unwrap();
        let mut allowed = 0;
        let mut last = None;
        for _ in 0..10 {
            let v = limiter.check(LimitKind::Ip, "shop|10.0.0.1", 5).await;
            allowed += u32::from(v.allowed);
            last = Some(v);
        }
        assert_eq!(allowed, 5);
        let last = last.unwrap();
        assert!(!last.allowed);
        assert_eq!(last.remaining, 0);
        // 5 per minute: the next one is 12 s away.
        assert!((1..=12).contains(&last.reset_secs), "{last:?}");
        // Another key has its own budget.
        assert!(
            limiter
                .check(LimitKind::Ip, "shop|10.0.0.2", 5)
                .await
                .allowed
        );
    }

    #[tokio::test]
    async fn redis_down_falls_back_to_the_local_budget_and_says_so() {
        let m = metrics();
        // Nothing listens on port 1: every check is decided in-process.
        let limiter = IngestLimiter::new(Some("redis://127.0.0.1:1"), m.clone()).unwrap();
        let mut allowed = 0;
        for _ in 0..4 {
            allowed += u32::from(
                limiter
                    .check(LimitKind::Ip, "shop|10.0.0.9", 2)
                    .await
                    .allowed,
            );
        }
        assert_eq!(
            allowed, 2,
            "neither everything refused nor everything let through"
        );
        assert_eq!(m.redis_up.get(), 0);
        assert!(m.redis_errors.get() >= 1);
        assert_eq!(
            m.decisions
                .with_label_values(&["ip", "local", "limited"])
                .get(),
            2
        );
    }

    #[test]
    fn waits_round_up_to_whole_seconds() {
        assert_eq!(whole_secs(Duration::ZERO), 0);
        assert_eq!(whole_secs(Duration::from_millis(1)), 1);
        assert_eq!(whole_secs(Duration::from_millis(1000)), 1);
        assert_eq!(whole_secs(Duration::from_millis(1001)), 2);
    }
}
