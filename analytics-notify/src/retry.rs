//! `RetryPolicy`: whether and when a failed delivery is tried again. Pure: the caller passes
//! the time and the jitter draw.
//!
//! A permanent failure (a 4xx other than 429, a bad recipient, a channel without settings)
//! is never retried. A transient one (timeout, 5xx, refused connection) waits an
//! exponential backoff `base * 2^(attempt - 1)`, capped at `max_delay`, of which the upper
//! half is jittered. A rate limit waits at least the provider's `Retry-After`. After
//! `max_attempts` attempts the entry is given up (`failed`, shown as dead).

use std::time::Duration;

use analytics_core::notification::NotifyError;
use chrono::{DateTime, Utc};

/// The longest `Retry-After` honoured (a larger one is cut to this).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Backoff and give-up rules.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// The first retry's delay (before jitter).
    pub base: Duration,
    /// The longest backoff delay.
    pub max_delay: Duration,
    /// Attempts in all, the first included.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            max_delay: Duration::from_secs(300),
            max_attempts: 8,
        }
    }
}

impl RetryPolicy {
    /// The backoff before retry number `attempt` (1 for the first retry), before jitter.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(31));
        self.base.saturating_mul(factor).min(self.max_delay)
    }

    /// When to try again after the `attempts`-th attempt failed with `error`, or `None` to
    /// give up. `jitter` in `[0, 1)` spreads the upper half of the backoff.
    pub fn retry_at(
        &self,
        attempts: u32,
        error: &NotifyError,
        now: DateTime<Utc>,
        jitter: f64,
    ) -> Option<DateTime<Utc>> {
        if !error.is_retryable() || attempts >= self.max_attempts {
            return None;
        }
        let backoff = self.backoff(attempts);
        let half = backoff / 2;
        let mut delay = half + half.mul_f64(jitter.clamp(0.0, 1.0));
        if let NotifyError::RateLimited {
            retry_after: Some(after),
        } = error
        {
            delay = delay.max((*after).min(MAX_RETRY_AFTER));
        }
        Some(now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_secs(1),
            max_delay: Duration::from_secs(10),
            max_attempts: 5,
        }
    }

    fn delay(p: &RetryPolicy, attempts: u32, e: &NotifyError, jitter: f64) -> Option<f64> {
        let now = DateTime::UNIX_EPOCH;
        p.retry_at(attempts, e, now, jitter)
            .map(|t| (t - now).as_seconds_f64())
    }

    #[test]
    fn transient_failures_back_off_exponentially_with_jitter_up_to_the_cap() {
        let p = policy();
        let e = NotifyError::Transient("503".into());
        assert_eq!(delay(&p, 1, &e, 0.0), Some(0.5));
        assert_eq!(delay(&p, 1, &e, 0.999_999).map(|d| d.round()), Some(1.0));
        assert_eq!(delay(&p, 2, &e, 0.0), Some(1.0));
        assert_eq!(delay(&p, 3, &e, 0.0), Some(2.0));
        assert_eq!(delay(&p, 4, &e, 1.0), Some(8.0));
        assert_eq!(p.backoff(30), Duration::from_secs(10));
        assert_eq!(delay(&p, 5, &e, 0.0), None, "gives up after max_attempts");
    }

    #[test]
    fn permanent_failures_are_not_retried_and_rate_limits_wait_retry_after() {
        let p = policy();
        assert_eq!(
            delay(&p, 1, &NotifyError::Permanent("400".into()), 0.5),
            None
        );
        let rl = NotifyError::RateLimited {
            retry_after: Some(Duration::from_secs(7)),
        };
        assert_eq!(delay(&p, 1, &rl, 0.0), Some(7.0));
        let rl = NotifyError::RateLimited { retry_after: None };
        assert_eq!(delay(&p, 1, &rl, 0.0), Some(0.5));
    }
}
