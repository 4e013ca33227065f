//! The ordered session funnel (`page_view -> product_view -> cart_add -> checkout_start ->
//! order`) as state that survives raw-event retention.
//!
//! Digests cannot count distinct sessions, so the funnel keeps per-session progress. A
//! session's progress through a stretch of time is a *transition function*
//! `f: {0..=5} -> {0..=5}`: entering the stretch having reached `s` steps in order, it
//! leaves having reached `f(s)`. Steps are taken greedily in time order (an event of step
//! `k` advances a session at `k` to `k + 1`; repeats and out-of-order steps change
//! nothing), so the function of two consecutive stretches is the composition of theirs.
//!
//! The rollup scheduler writes packed `funnel.sessions` rows ([`PackedSessions`]: per
//! session, an 8-byte hash of its key and its function over the hour), one for all events
//! (`*`), one for the events naming no collection (`""`) and one per collection named (that
//! collection's events plus the unnamed ones). Day and week rows compose their children in
//! time order ([`merge_rows`]), so a 30-day funnel reads about a dozen rows per collection
//! value and never needs the raw events of its older days. A window is answered by composing its
//! pieces (rollup rows of complete buckets, raw events of the edges) in time order and
//! applying the result to 0.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use sha2::{Digest as _, Sha256};

use crate::event::{Event, EventKind, Payload};
use crate::ids::{MetricName, ProjectId};
use crate::rollup::{Dimensions, Rollup, RollupKey, RollupStats};
use crate::time::Granularity;

/// The funnel steps, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FunnelStepKind {
    /// `page_view`
    PageView,
    /// `product_view`
    ProductView,
    /// `cart_add`
    CartAdd,
    /// `checkout_start`
    CheckoutStart,
    /// `order`
    Order,
}

impl FunnelStepKind {
    /// The steps in funnel order.
    pub const ALL: [FunnelStepKind; 5] = [
        Self::PageView,
        Self::ProductView,
        Self::CartAdd,
        Self::CheckoutStart,
        Self::Order,
    ];

    /// The step an event kind is, if any.
    pub fn of(kind: &EventKind) -> Option<Self> {
        match kind {
            EventKind::PageView => Some(Self::PageView),
            EventKind::ProductView => Some(Self::ProductView),
            EventKind::CartAdd => Some(Self::CartAdd),
            EventKind::CheckoutStart => Some(Self::CheckoutStart),
            EventKind::Order => Some(Self::Order),
            _ => None,
        }
    }

    /// The event kind of the step.
    pub fn kind(self) -> EventKind {
        match self {
            Self::PageView => EventKind::PageView,
            Self::ProductView => EventKind::ProductView,
            Self::CartAdd => EventKind::CartAdd,
            Self::CheckoutStart => EventKind::CheckoutStart,
            Self::Order => EventKind::Order,
        }
    }

    /// Position in the funnel, from 0.
    pub fn index(self) -> u8 {
        self as u8
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PageView => "page_view",
            Self::ProductView => "product_view",
            Self::CartAdd => "cart_add",
            Self::CheckoutStart => "checkout_start",
            Self::Order => "order",
        }
    }
}

/// Number of steps.
pub const STEPS: usize = 5;

/// The `collection` dimension value of the row over all events.
pub const ALL_COLLECTIONS: &str = "*";
/// The `collection` dimension value of the row over events naming no collection.
pub const NO_COLLECTION: &str = "";

/// A transition function over the steps reached (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Progress([u8; STEPS + 1]);

impl Progress {
    /// Nothing happened: every state stays.
    pub const IDENTITY: Progress = Progress([0, 1, 2, 3, 4, 5]);

    /// The function of a sequence of steps, in time order.
    pub fn of_steps(steps: impl IntoIterator<Item = FunnelStepKind> + Clone) -> Self {
        let mut out = [0u8; STEPS + 1];
        for (s, slot) in out.iter_mut().enumerate() {
            let mut state = s as u8;
            for step in steps.clone() {
                if step.index() == state {
                    state += 1;
                }
            }
            *slot = state;
        }
        Progress(out)
    }

    /// This stretch followed by `later`.
    pub fn then(self, later: Progress) -> Self {
        let mut out = [0u8; STEPS + 1];
        for (s, slot) in out.iter_mut().enumerate() {
            *slot = later.0[usize::from(self.0[s])];
        }
        Progress(out)
    }

    /// Steps reached starting from nothing.
    pub fn reached(self) -> u8 {
        self.0[0]
    }

    /// The six-digit dimension form.
    pub fn encode(self) -> String {
        self.0.iter().map(|d| char::from(b'0' + d)).collect()
    }

    /// Parses [`Progress::encode`] output (`None` when malformed).
    pub fn decode(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() != STEPS + 1 {
            return None;
        }
        let mut out = [0u8; STEPS + 1];
        for (slot, c) in out.iter_mut().zip(b) {
            *slot = c.checked_sub(b'0')?;
        }
        Self::from_values(out)
    }

    /// The function with these values (`None` unless each `f(s)` is in `s..=5`).
    pub fn from_values(f: [u8; STEPS + 1]) -> Option<Self> {
        f.iter()
            .enumerate()
            .all(|(i, d)| usize::from(*d) >= i && usize::from(*d) <= STEPS)
            .then_some(Progress(f))
    }
}

/// The session an event belongs to: `session_id`, else `user_id`; `None` for neither.
pub fn session_key(e: &Event) -> Option<&str> {
    e.session_id.as_deref().or(e.user_id.as_deref())
}

/// The collections an event names: a funnel step's collection, an order's line
/// collections (empty: it names none, and counts for every collection filter).
pub fn event_collections(e: &Event) -> BTreeSet<&str> {
    match &e.payload {
        Payload::Funnel(s) => s.collection.as_deref().into_iter().collect(),
        Payload::Order(o) => o
            .items
            .iter()
            .filter_map(|i| i.collection.as_deref())
            .collect(),
        _ => BTreeSet::new(),
    }
}

/// One session's steps in a bucket.
#[derive(Debug, Default)]
struct SessionSteps {
    // (time, step, collections named)
    steps: Vec<(DateTime<Utc>, FunnelStepKind, Vec<String>)>,
    events: u64,
}

/// The 64-bit key a session is packed under: the first 8 bytes of SHA-256 of its session
/// key (stable across builds and platforms).
pub fn session_hash(key: &str) -> u64 {
    let d = Sha256::digest(key.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_be_bytes(b)
}

/// The packed funnel state of one bucket and collection value: per session (by
/// [`session_hash`], sorted, each once) its progress function over the bucket. Sessions
/// whose function is the identity are left out (they change no count and compose to
/// nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackedSessions(Vec<(u64, Progress)>);

/// Leading bytes of a packed value (a digest never starts with them).
const PACKED_TAG: &[u8; 4] = b"FNS1";
/// Bytes per session: the hash, then the six values of the function as nibbles.
const ENTRY_BYTES: usize = 8 + 3;

impl PackedSessions {
    /// From entries in any order (identity functions dropped; a repeated hash keeps its
    /// last entry).
    pub fn from_entries(entries: impl IntoIterator<Item = (u64, Progress)>) -> Self {
        let mut v: Vec<(u64, Progress)> = entries
            .into_iter()
            .filter(|(_, p)| *p != Progress::IDENTITY)
            .collect();
        v.sort_by_key(|(h, _)| *h);
        v.dedup_by(|later, earlier| {
            if later.0 == earlier.0 {
                earlier.1 = later.1;
                true
            } else {
                false
            }
        });
        Self(v)
    }

    /// The entries, sorted by hash.
    pub fn entries(&self) -> &[(u64, Progress)] {
        &self.0
    }

    /// The function of session `hash` (the identity when absent).
    fn get(&self, hash: u64) -> Option<Progress> {
        self.0
            .binary_search_by_key(&hash, |(h, _)| *h)
            .ok()
            .map(|i| self.0[i].1)
    }

    /// The stored form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(PACKED_TAG.len() + self.0.len() * ENTRY_BYTES);
        out.extend_from_slice(PACKED_TAG);
        for (h, p) in &self.0 {
            out.extend_from_slice(&h.to_be_bytes());
            let f = p.0;
            out.extend_from_slice(&[f[0] << 4 | f[1], f[2] << 4 | f[3], f[4] << 4 | f[5]]);
        }
        out
    }

    /// Parses [`PackedSessions::to_bytes`] output (`None` when it is not one).
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        let body = b.strip_prefix(PACKED_TAG.as_slice())?;
        if body.len() % ENTRY_BYTES != 0 {
            return None;
        }
        let mut out = Vec::with_capacity(body.len() / ENTRY_BYTES);
        let mut last: Option<u64> = None;
        for e in body.chunks_exact(ENTRY_BYTES) {
            let mut hb = [0u8; 8];
            hb.copy_from_slice(&e[..8]);
            let h = u64::from_be_bytes(hb);
            if last.is_some_and(|l| l >= h) {
                return None;
            }
            last = Some(h);
            let f = [
                e[8] >> 4,
                e[8] & 0xf,
                e[9] >> 4,
                e[9] & 0xf,
                e[10] >> 4,
                e[10] & 0xf,
            ];
            out.push((h, Progress::from_values(f)?));
        }
        Some(Self(out))
    }
}

/// Collects the funnel events of one bucket and produces its `funnel.sessions` rows.
#[derive(Debug, Default)]
pub struct SessionAccumulator {
    sessions: HashMap<String, SessionSteps>,
}

impl SessionAccumulator {
    /// Adds one event (ignored when it is no funnel step or has no session key).
    pub fn add(&mut self, e: &Event) {
        let (Some(step), Some(key)) = (FunnelStepKind::of(&e.kind), session_key(e)) else {
            return;
        };
        let cols = event_collections(e)
            .into_iter()
            .map(str::to_owned)
            .collect();
        let s = self.sessions.entry(key.to_owned()).or_default();
        s.steps.push((e.occurred_at, step, cols));
        s.events += 1;
    }

    /// The rows of the bucket: one per collection value.
    pub fn finish(
        self,
        metric: &MetricName,
        project: &ProjectId,
        granularity: Granularity,
        bucket_start: DateTime<Utc>,
        computed_at: DateTime<Utc>,
    ) -> Vec<Rollup> {
        // Per collection value: (hash, function) per session, and the events behind them.
        let mut values: BTreeMap<String, (Vec<(u64, Progress)>, u64)> = BTreeMap::new();
        for (session, mut s) in self.sessions {
            let hash = session_hash(&session);
            // Time order; at the same instant, funnel order.
            s.steps.sort_by_key(|(t, step, _)| (*t, *step));
            let only = |keep: &dyn Fn(&[String]) -> bool| {
                Progress::of_steps(
                    s.steps
                        .iter()
                        .filter(|(_, _, c)| keep(c))
                        .map(|(_, step, _)| *step),
                )
            };
            let mut out: Vec<(String, Progress)> =
                vec![(ALL_COLLECTIONS.to_owned(), only(&|_| true))];
            if s.steps.iter().any(|(_, _, c)| c.is_empty()) {
                out.push((NO_COLLECTION.to_owned(), only(&|c| c.is_empty())));
            }
            let named: BTreeSet<&String> = s.steps.iter().flat_map(|(_, _, c)| c).collect();
            for c in named {
                out.push((c.clone(), only(&|cs| cs.is_empty() || cs.contains(c))));
            }
            for (collection, progress) in out {
                let slot = values.entry(collection).or_default();
                slot.0.push((hash, progress));
                slot.1 += s.events;
            }
        }
        values
            .into_iter()
            .filter_map(|(collection, (entries, events))| {
                packed_row(
                    metric,
                    project,
                    granularity,
                    bucket_start,
                    computed_at,
                    &collection,
                    &PackedSessions::from_entries(entries),
                    events,
                )
            })
            .collect()
    }
}

/// The row of one bucket and collection value (`None` when no session moved).
#[allow(clippy::too_many_arguments)]
fn packed_row(
    metric: &MetricName,
    project: &ProjectId,
    granularity: Granularity,
    bucket_start: DateTime<Utc>,
    computed_at: DateTime<Utc>,
    collection: &str,
    packed: &PackedSessions,
    events: u64,
) -> Option<Rollup> {
    if packed.0.is_empty() {
        return None;
    }
    let dimensions = Dimensions::from_pairs([("collection", collection)]).ok()?;
    let sessions = packed.0.len() as f64;
    let reached: f64 = packed.0.iter().map(|(_, p)| f64::from(p.reached())).sum();
    Some(Rollup {
        key: RollupKey {
            project: project.clone(),
            granularity,
            bucket_start,
            metric: metric.clone(),
            dimensions,
        },
        // samples: the funnel events behind the row; count: sessions; sum: steps reached
        // from nothing, over its sessions.
        stats: RollupStats {
            samples: events,
            count: sessions,
            sum: reached,
            min: None,
            max: None,
            avg: Some(reached / sessions),
            p50: None,
            p95: None,
            p99: None,
        },
        digest: packed.to_bytes(),
        computed_at,
    })
}

/// One bucket's packed rows by collection value.
#[derive(Debug, Default)]
struct Bucket<'r> {
    values: HashMap<&'r str, PackedSessions>,
    computed_at: Option<DateTime<Utc>>,
    events: u64,
}

/// The packed rows in buckets, in time order. Within a bucket only the most recently
/// computed rows count (a re-roll replaces every row of its bucket, so an older row left
/// beside newer ones is stale). Rows that are not packed funnel rows are skipped.
fn buckets<'r>(rows: impl IntoIterator<Item = &'r Rollup>) -> Vec<Bucket<'r>> {
    let mut by_start: BTreeMap<DateTime<Utc>, Bucket<'r>> = BTreeMap::new();
    for r in rows {
        let d = &r.key.dimensions;
        let (Some(collection), 1) = (d.get("collection"), d.names().count()) else {
            continue;
        };
        let Some(packed) = PackedSessions::from_bytes(&r.digest) else {
            continue;
        };
        let b = by_start.entry(r.key.bucket_start).or_default();
        match b.computed_at {
            Some(at) if at > r.computed_at => continue,
            Some(at) if at < r.computed_at => {
                b.values.clear();
                b.events = 0;
            }
            _ => {}
        }
        b.computed_at = Some(r.computed_at);
        if collection == ALL_COLLECTIONS {
            b.events += r.stats.samples;
        }
        b.values.insert(collection, packed);
    }
    by_start.into_values().collect()
}

/// Each session's function over the buckets in order, for collection value `value`:
/// a bucket lacking a session's `value` entry uses its `fallback` entry (the events naming
/// no collection), else the identity. `all_of_fallback`: also sessions having only
/// `fallback` entries (a count over a collection filter), not just those with a `value`
/// entry somewhere (a merged row of `value`).
fn compose(
    buckets: &[Bucket<'_>],
    value: &str,
    fallback: Option<&str>,
    all_of_fallback: bool,
) -> HashMap<u64, Progress> {
    let mut acc: HashMap<u64, Progress> = HashMap::new();
    if !all_of_fallback && fallback.is_some() {
        for b in buckets {
            for (h, _) in b.values.get(value).map_or(&[][..], |p| p.entries()) {
                acc.insert(*h, Progress::IDENTITY);
            }
        }
    }
    for b in buckets {
        let primary = b.values.get(value);
        for (h, f) in primary.map_or(&[][..], |p| p.entries()) {
            let slot = acc.entry(*h).or_insert(Progress::IDENTITY);
            *slot = slot.then(*f);
        }
        let Some(fb) = fallback.and_then(|c| b.values.get(c)) else {
            continue;
        };
        for (h, f) in fb.entries() {
            if primary.is_some_and(|p| p.get(*h).is_some()) {
                continue;
            }
            if all_of_fallback {
                let slot = acc.entry(*h).or_insert(Progress::IDENTITY);
                *slot = slot.then(*f);
            } else if let Some(slot) = acc.get_mut(h) {
                *slot = slot.then(*f);
            }
        }
    }
    acc
}

/// Merges child `funnel.sessions` rows (finer buckets) into the rows of one coarser
/// bucket by composing each session's functions in time order.
pub fn merge_rows(
    children: &[&Rollup],
    project: &ProjectId,
    granularity: Granularity,
    bucket_start: DateTime<Utc>,
    computed_at: DateTime<Utc>,
) -> Vec<Rollup> {
    let Some(metric) = children.first().map(|r| r.key.metric.clone()) else {
        return Vec::new();
    };
    let buckets = buckets(children.iter().copied());
    let events: u64 = buckets.iter().map(|b| b.events).sum();
    let values: BTreeSet<&str> = buckets
        .iter()
        .flat_map(|b| b.values.keys().copied())
        .collect();
    values
        .into_iter()
        .filter_map(|c| {
            let fallback = (c != ALL_COLLECTIONS && c != NO_COLLECTION).then_some(NO_COLLECTION);
            let packed = PackedSessions::from_entries(compose(&buckets, c, fallback, false));
            packed_row(
                &metric,
                project,
                granularity,
                bucket_start,
                computed_at,
                c,
                &packed,
                events,
            )
        })
        .collect()
}

/// Sessions reaching each step (index 0 = `page_view`) over rows in time order (rollup
/// rows of complete buckets and rows computed from raw events), for `collection` (`None`:
/// all collections).
pub fn count_sessions<'r>(
    rows: impl IntoIterator<Item = &'r Rollup>,
    collection: Option<&str>,
) -> [u64; STEPS] {
    let buckets = buckets(rows);
    let composed = match collection {
        None => compose(&buckets, ALL_COLLECTIONS, None, false),
        Some(c) => compose(&buckets, c, Some(NO_COLLECTION), true),
    };
    let mut counts = [0u64; STEPS];
    for p in composed.values() {
        for c in counts.iter_mut().take(usize::from(p.reached())) {
            *c += 1;
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollup::digest::DigestBuilder;
    use FunnelStepKind as S;

    #[test]
    fn greedy_in_order() {
        // The cart add before the product view does not count; the later view does.
        let p = Progress::of_steps([S::ProductView, S::PageView, S::CartAdd, S::ProductView]);
        assert_eq!(p.reached(), 2);
        let p = Progress::of_steps([S::PageView, S::CartAdd, S::Order]);
        assert_eq!(p.reached(), 1);
        assert_eq!(Progress::of_steps([]), Progress::IDENTITY);
    }

    #[test]
    fn composition_equals_concatenation() {
        let a = [S::PageView, S::CartAdd, S::ProductView];
        let b = [S::CartAdd, S::PageView, S::CheckoutStart, S::Order];
        let whole = Progress::of_steps(a.iter().chain(b.iter()).copied());
        let parts = Progress::of_steps(a).then(Progress::of_steps(b));
        assert_eq!(whole, parts);
        assert_eq!(whole.reached(), 5);
    }

    fn step_event(at: i64, kind: &str, session: Option<&str>, collection: Option<&str>) -> Event {
        use crate::event::{AgeLimits, EventInput, EventLimits, IngestContext};
        let t0 = DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::days(20_000);
        let mut v = serde_json::json!({
            "kind": kind,
            "occurred_at": (t0 + chrono::Duration::minutes(at)).to_rfc3339(),
            "payload": {"path": "/", "product_id": "p"},
        });
        if let Some(s) = session {
            v["session_id"] = s.into();
        }
        if kind == "order" {
            v["payload"] = serde_json::json!({"order_id": format!("o{at}"), "amount": 1.0,
                "currency": "USD", "items": [{"product_id": "p", "quantity": 1,
                "unit_price": 1.0, "collection": collection}]});
        } else if let Some(c) = collection {
            v["payload"]["collection"] = c.into();
        }
        let project = ProjectId::parse("shop").unwrap();
        let limits = EventLimits::default();
        let ctx = IngestContext {
            now: t0 + chrono::Duration::days(1),
            default_project: &project,
            fixed_project: false,
            request_correlation_id: None,
            limits: &limits,
            age_limits: &AgeLimits::default(),
        };
        Event::parse(serde_json::from_value::<EventInput>(v).unwrap(), &ctx).expect("event")
    }

    fn rows_of(events: &[Event], g: Granularity, start: i64) -> Vec<Rollup> {
        let mut acc = SessionAccumulator::default();
        for e in events {
            acc.add(e);
        }
        let at = DateTime::<Utc>::UNIX_EPOCH
            + chrono::Duration::days(20_000)
            + chrono::Duration::minutes(start);
        acc.finish(
            &MetricName::parse("funnel.sessions").unwrap(),
            &ProjectId::parse("shop").unwrap(),
            g,
            at,
            at,
        )
    }

    #[test]
    fn packed_sessions_round_trip_and_reject_garbage() {
        let p = PackedSessions::from_entries([
            (9, Progress::of_steps([S::PageView])),
            (3, Progress::IDENTITY),
            (1, Progress::of_steps([S::ProductView, S::CartAdd])),
            (9, Progress::of_steps([S::PageView, S::ProductView])),
        ]);
        // Sorted, identities dropped, the last entry of a repeated hash kept.
        assert_eq!(
            p.entries(),
            &[
                (1, Progress::of_steps([S::ProductView, S::CartAdd])),
                (9, Progress::of_steps([S::PageView, S::ProductView])),
            ]
        );
        let bytes = p.to_bytes();
        assert_eq!(bytes.len(), 4 + 2 * 11);
        assert_eq!(PackedSessions::from_bytes(&bytes), Some(p.clone()));
        assert_eq!(PackedSessions::from_bytes(&bytes[..bytes.len() - 1]), None);
        let mut bad = bytes.clone();
        bad[4 + 8] = 0x10; // f(0) = 1, f(1) = 0
        assert_eq!(PackedSessions::from_bytes(&bad), None);
        // A t-digest is not a packed row.
        let mut d = DigestBuilder::default();
        d.push(1.0);
        assert_eq!(PackedSessions::from_bytes(&d.finish().to_bytes()), None);
        assert_ne!(session_hash("a"), session_hash("b"));
        assert_eq!(session_hash("a"), session_hash("a"));
    }

    #[test]
    fn merged_and_pieced_rows_count_like_the_whole_sequence() {
        // Two "hours": a session spanning both, one with a collection filter that falls
        // back to unnamed events, a repeated and an out-of-order step, an event without a
        // session.
        let first = [
            step_event(0, "page_view", Some("a"), None),
            step_event(1, "cart_add", Some("a"), Some("black-rose")),
            step_event(2, "product_view", Some("a"), Some("black-rose")),
            step_event(3, "page_view", Some("b"), None),
            step_event(4, "page_view", None, None),
            step_event(5, "product_view", Some("c"), Some("love-hurts")),
        ];
        let second = [
            step_event(61, "cart_add", Some("a"), Some("black-rose")),
            step_event(62, "checkout_start", Some("a"), None),
            step_event(63, "order", Some("a"), Some("black-rose")),
            step_event(64, "product_view", Some("b"), Some("love-hurts")),
            step_event(65, "page_view", Some("c"), None),
            step_event(66, "product_view", Some("c"), Some("love-hurts")),
        ];
        let mut hours = rows_of(&first, Granularity::Hour, 0);
        hours.extend(rows_of(&second, Granularity::Hour, 60));
        let whole = rows_of(
            &first.iter().chain(&second).cloned().collect::<Vec<_>>(),
            Granularity::Hour,
            0,
        );
        let refs: Vec<&Rollup> = hours.iter().collect();
        let day = merge_rows(
            &refs,
            &ProjectId::parse("shop").unwrap(),
            Granularity::Day,
            DateTime::<Utc>::UNIX_EPOCH,
            DateTime::<Utc>::UNIX_EPOCH,
        );
        for c in [None, Some("black-rose"), Some("love-hurts"), Some("other")] {
            let expect = count_sessions(whole.iter(), c);
            assert_eq!(count_sessions(hours.iter(), c), expect, "{c:?}");
            assert_eq!(count_sessions(day.iter(), c), expect, "{c:?}");
        }
        assert_eq!(count_sessions(day.iter(), None), [3, 3, 1, 1, 1]);
        assert_eq!(
            count_sessions(day.iter(), Some("love-hurts")),
            [3, 2, 0, 0, 0]
        );
        // Older rows of the first bucket (another computation, read after the newer
        // ones) are stale and ignored.
        let mut stale = rows_of(&second, Granularity::Hour, 0);
        for r in &mut stale {
            r.computed_at -= chrono::Duration::hours(1);
        }
        let with_stale: Vec<&Rollup> = hours.iter().chain(stale.iter()).collect();
        for c in [None, Some("black-rose"), Some("love-hurts")] {
            assert_eq!(
                count_sessions(with_stale.iter().copied(), c),
                count_sessions(hours.iter(), c),
                "{c:?}"
            );
        }
        let mut newer = stale.clone();
        for r in &mut newer {
            r.computed_at += chrono::Duration::hours(2);
        }
        let with_newer: Vec<&Rollup> = hours.iter().chain(newer.iter()).collect();
        assert_ne!(
            count_sessions(with_newer.iter().copied(), None),
            count_sessions(hours.iter(), None)
        );
    }

    #[test]
    fn encoding_round_trips() {
        let p = Progress::of_steps([S::ProductView, S::CartAdd]);
        assert_eq!(p.encode(), "033345");
        assert_eq!(Progress::decode(&p.encode()), Some(p));
        assert_eq!(Progress::decode("0123"), None);
        assert_eq!(Progress::decode("102345"), None);
    }
}
