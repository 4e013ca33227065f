//! The `Clock` port: the only way core code learns the current time.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};

/// A source of the current time.
///
/// Core logic never reads the system clock itself: it takes `now` as an argument or a
/// `&dyn Clock`, so every time-dependent behaviour can be tested with a [`ManualClock`].
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current instant.
    fn now(&self) -> DateTime<Utc>;
}

/// The real clock. Constructed only by wiring code (the server binary, an embedder's main).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when told to; clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<DateTime<Utc>>>,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            now: Arc::new(Mutex::new(start)),
        }
    }

    /// Moves the clock to `t` (backwards too, to test clock skew).
    pub fn set(&self, t: DateTime<Utc>) {
        *self.lock() = t;
    }

    /// Moves the clock forward by `d` and returns the new time.
    pub fn advance(&self, d: Duration) -> DateTime<Utc> {
        let mut now = self.lock();
        *now += d;
        *now
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DateTime<Utc>> {
        // A poisoned clock still holds a valid time.
        self.now.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn manual_clock_moves_only_when_told_and_clones_share_time() {
        let t0 = Utc.with_ymd_and_hms(2024, 2, 29, 23, 0, 0).unwrap();
        let clock = ManualClock::new(t0);
        let other = clock.clone();
        assert_eq!(clock.now(), t0);
        let t1 = clock.advance(Duration::hours(2));
        assert_eq!(t1, Utc.with_ymd_and_hms(2024, 3, 1, 1, 0, 0).unwrap());
        assert_eq!(other.now(), t1);
        other.set(t0);
        assert_eq!(clock.now(), t0);
    }
}
