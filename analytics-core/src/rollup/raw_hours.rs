//! Whole hours of raw events kept in memory for the reader's raw pieces (the unaligned
//! edges of a window and the open hour), keyed by the hour's version
//! ([`EventStore::hour_versions`](crate::ports::EventStore::hour_versions)): every insert
//! into an hour gives it a version it never had, so an entry whose version is still the
//! hour's current one holds exactly the hour's events. A later read of any part of the hour
//! (the next request's edge, the other metric of the same answer, the alert engine's next
//! tick) filters the entry instead of reading and decoding the events again.
//!
//! Least recently used hours leave first once the entries hold more than the capacity in
//! events. An hour with more events than the capacity is never kept.
//!
//! A user with a steady working set (the alert engine reads the same hours tick after tick)
//! can size the cache to it: [`RawHours::begin_round`] starts counting the events of the
//! hours looked up, [`RawHours::round_demand`] says how many that was, and
//! [`RawHours::set_capacity`] changes the capacity. Least-recently-used eviction of a cyclic
//! working set even slightly larger than the capacity misses on every lookup, so a cache a
//! little too small is no better than none.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};

use crate::event::{Event, EventKind};
use crate::ids::ProjectId;

/// Events a reader keeps by default (about 14 hours of 10M events a month; a few hundred
/// bytes each).
pub const DEFAULT_CAPACITY_EVENTS: usize = 200_000;

/// Which hour, of which project, for which event kinds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HourKey {
    /// The project.
    pub project: ProjectId,
    /// Start of the hour.
    pub hour: DateTime<Utc>,
    /// The event kinds read (sorted, deduplicated).
    pub kinds: Vec<EventKind>,
}

#[derive(Debug)]
struct Entry {
    version: u64,
    events: Arc<Vec<Event>>,
    used: u64,
    /// The round in which it was last counted in the demand.
    round: u64,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<HourKey, Entry>,
    capacity: usize,
    held: usize,
    clock: u64,
    hits: u64,
    misses: u64,
    round: u64,
    round_events: usize,
}

impl State {
    /// Evicts least recently used hours until `room` more events fit.
    fn make_room(&mut self, room: usize) {
        while self.held + room > self.capacity {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(e) = self.entries.remove(&oldest) {
                self.held -= e.events.len();
            }
        }
    }
}

/// The cache (shared by clones of a reader).
#[derive(Debug)]
pub struct RawHours {
    state: Mutex<State>,
}

impl Default for RawHours {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY_EVENTS)
    }
}

impl RawHours {
    /// A cache holding at most `capacity` events (0 keeps nothing).
    pub fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(State {
                capacity,
                ..State::default()
            }),
        }
    }

    /// The capacity in events.
    pub fn capacity(&self) -> usize {
        self.lock().capacity
    }

    /// Changes the capacity, evicting least recently used hours beyond a smaller one.
    pub fn set_capacity(&self, capacity: usize) {
        let mut s = self.lock();
        s.capacity = capacity;
        s.make_room(0);
    }

    /// Starts a new round of [`RawHours::round_demand`].
    pub fn begin_round(&self) {
        let mut s = self.lock();
        s.round += 1;
        s.round_events = 0;
    }

    /// The events of the hours looked up since [`RawHours::begin_round`]: each hour found
    /// counts once, each hour read and offered by [`RawHours::put`] counts whether or not it
    /// was kept (an hour evicted and read again within the round counts again).
    pub fn round_demand(&self) -> usize {
        self.lock().round_events
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The hour's events, sorted by time, if they were kept under `version`.
    pub fn get(&self, key: &HourKey, version: u64) -> Option<Arc<Vec<Event>>> {
        let mut s = self.lock();
        s.clock += 1;
        let now = s.clock;
        let round = s.round;
        let mut counted = 0;
        let found = s.entries.get_mut(key).and_then(|e| {
            (e.version == version).then(|| {
                e.used = now;
                if e.round != round {
                    e.round = round;
                    counted = e.events.len();
                }
                e.events.clone()
            })
        });
        s.round_events += counted;
        if found.is_some() {
            s.hits += 1;
        } else {
            s.misses += 1;
        }
        found
    }

    /// Keeps the hour's events (sorted by time) read under `version`, replacing what was
    /// kept for the hour, and evicts the least recently used hours beyond the capacity.
    pub fn put(&self, key: HourKey, version: u64, events: Arc<Vec<Event>>) {
        let len = events.len();
        let mut s = self.lock();
        s.round_events += len;
        if let Some(old) = s.entries.remove(&key) {
            s.held -= old.events.len();
        }
        if len > s.capacity {
            return;
        }
        s.make_room(len);
        s.clock += 1;
        let used = s.clock;
        let round = s.round;
        s.held += len;
        s.entries.insert(
            key,
            Entry {
                version,
                events,
                used,
                round,
            },
        );
    }

    /// Lookups answered from memory and lookups that were not, since the start.
    pub fn hits_and_misses(&self) -> (u64, u64) {
        let s = self.lock();
        (s.hits, s.misses)
    }

    /// Events held now.
    pub fn held(&self) -> usize {
        self.lock().held
    }
}

/// The events of `events` (sorted by time) in `[from, to)`.
pub fn between(events: &[Event], from: DateTime<Utc>, to: DateTime<Utc>) -> &[Event] {
    let lo = events.partition_point(|e| e.occurred_at < from);
    let hi = events.partition_point(|e| e.occurred_at < to);
    &events[lo..hi.max(lo)]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::event::{AgeLimits, EventInput, EventLimits, IngestContext};

    fn key(hour: i64) -> HourKey {
        HourKey {
            project: ProjectId::parse("p").unwrap(),
            hour: DateTime::from_timestamp(hour * 3600, 0).unwrap(),
            kinds: vec![EventKind::ApiRequest],
        }
    }

    /// `n` requests, one a second from the epoch.
    fn hour_of(n: usize) -> Arc<Vec<Event>> {
        let project = ProjectId::parse("p").unwrap();
        let limits = EventLimits::default();
        let at = DateTime::from_timestamp(0, 0).unwrap();
        let ctx = IngestContext {
            now: at,
            default_project: &project,
            fixed_project: false,
            request_correlation_id: None,
            limits: &limits,
            age_limits: &AgeLimits::default(),
        };
        let input: EventInput = serde_json::from_value(json!({
            "kind": "api_request",
            "occurred_at": "1970-01-01T00:00:00Z",
            "payload": {"method": "GET", "route": "/", "status": 200, "latency_ms": 1.0}
        }))
        .unwrap();
        let one = Event::parse(input, &ctx).unwrap();
        Arc::new(
            (0..n)
                .map(|i| {
                    let mut e = one.clone();
                    e.occurred_at = at + chrono::Duration::seconds(i as i64);
                    e
                })
                .collect(),
        )
    }

    #[test]
    fn a_changed_version_misses() {
        let c = RawHours::new(10);
        c.put(key(1), 7, hour_of(3));
        assert_eq!(c.get(&key(1), 7).map(|e| e.len()), Some(3));
        assert!(c.get(&key(1), 8).is_none());
        assert!(c.get(&key(2), 7).is_none());
        assert_eq!(c.hits_and_misses(), (1, 2));
    }

    #[test]
    fn least_recently_used_hours_leave_first() {
        let c = RawHours::new(10);
        c.put(key(1), 1, hour_of(4));
        c.put(key(2), 1, hour_of(4));
        assert!(c.get(&key(1), 1).is_some());
        c.put(key(3), 1, hour_of(4));
        assert!(
            c.get(&key(2), 1).is_none(),
            "the least recently used hour left"
        );
        assert!(c.get(&key(1), 1).is_some());
        assert_eq!(c.held(), 8);
        c.put(key(4), 1, hour_of(11));
        assert!(
            c.get(&key(4), 1).is_none(),
            "larger than the capacity: not kept"
        );
        c.put(key(1), 2, hour_of(2));
        assert_eq!(c.held(), 6, "a new version replaces the old one");
    }

    #[test]
    fn a_round_counts_the_events_of_the_hours_looked_up() {
        let c = RawHours::new(10);
        c.begin_round();
        c.put(key(1), 1, hour_of(4));
        c.put(key(2), 1, hour_of(4));
        c.put(key(3), 1, hour_of(4));
        assert_eq!(c.round_demand(), 12, "offered hours count, kept or not");
        assert!(c.get(&key(1), 1).is_none(), "evicted: 12 events exceed 10");
        c.begin_round();
        assert!(c.get(&key(2), 1).is_some());
        assert!(c.get(&key(2), 1).is_some());
        assert!(c.get(&key(3), 1).is_some());
        assert_eq!(c.round_demand(), 8, "an hour found twice counts once");
        c.set_capacity(5);
        assert_eq!(c.held(), 4, "a smaller capacity evicts");
        assert!(
            c.get(&key(3), 1).is_some(),
            "the most recently used hour stays"
        );
        assert_eq!(c.capacity(), 5);
    }

    #[test]
    fn between_is_half_open() {
        let events = hour_of(10);
        let t = |s| DateTime::from_timestamp(s, 0).unwrap();
        assert_eq!(between(&events, t(2), t(5)).len(), 3);
        assert_eq!(between(&events, t(5), t(2)).len(), 0);
        assert_eq!(between(&events, t(0), t(100)).len(), 10);
    }
}
