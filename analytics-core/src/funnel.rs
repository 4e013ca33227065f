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
//! The rollup scheduler writes one `funnel.sessions` row per session and hour holding that
//! hour's function (the `progress` dimension, six digits), once for all events (`*`), once
//! for the events naming no collection (`""`) and once per collection named (that
//! collection's events plus the unnamed ones). Day and week rows compose their children in
//! time order ([`merge_rows`]), so a 30-day funnel reads about one row per session and day
//! and never needs the raw events of its older days. A window is answered by composing its
//! pieces (rollup rows of complete buckets, raw events of the edges) in time order and
//! applying the result to 0.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};

use crate::event::{Event, EventKind, Payload};
use crate::ids::{MetricName, ProjectId};
use crate::rollup::digest::DigestBuilder;
use crate::rollup::{Dimensions, Rollup, RollupKey};
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
        for (i, c) in b.iter().enumerate() {
            let d = c.checked_sub(b'0').filter(|d| usize::from(*d) <= STEPS)?;
            if usize::from(d) < i {
                return None;
            }
            out[i] = d;
        }
        Some(Progress(out))
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

    /// The rows of the bucket.
    pub fn finish(
        self,
        metric: &MetricName,
        project: &ProjectId,
        granularity: Granularity,
        bucket_start: DateTime<Utc>,
        computed_at: DateTime<Utc>,
    ) -> Vec<Rollup> {
        let mut rows = Vec::new();
        for (session, mut s) in self.sessions {
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
                if let Some(row) = progress_row(
                    metric,
                    project,
                    granularity,
                    bucket_start,
                    computed_at,
                    &session,
                    &collection,
                    progress,
                    s.events,
                ) {
                    rows.push(row);
                }
            }
        }
        rows
    }
}

#[allow(clippy::too_many_arguments)]
fn progress_row(
    metric: &MetricName,
    project: &ProjectId,
    granularity: Granularity,
    bucket_start: DateTime<Utc>,
    computed_at: DateTime<Utc>,
    session: &str,
    collection: &str,
    progress: Progress,
    events: u64,
) -> Option<Rollup> {
    let dimensions = Dimensions::from_pairs([
        ("collection", collection),
        ("progress", progress.encode().as_str()),
        ("session", session),
    ])
    .ok()?;
    let mut digest = DigestBuilder::default();
    digest.push(f64::from(progress.reached()));
    let digest = digest.finish();
    let count = events as f64;
    let key = RollupKey {
        project: project.clone(),
        granularity,
        bucket_start,
        metric: metric.clone(),
        dimensions,
    };
    Some(crate::rollup::aggregate::row(
        key,
        &digest,
        events,
        count,
        count,
        computed_at,
    ))
}

/// One bucket of a session: per collection value, the progress, when its row was computed,
/// and the events behind it.
type BucketRows<'r> = HashMap<&'r str, (Progress, DateTime<Utc>, u64)>;

/// Per session: per bucket start (in order), its rows (the most recently computed row wins
/// when a re-rolled bucket left a stale one behind).
type Timeline<'r> = BTreeMap<&'r str, BTreeMap<DateTime<Utc>, BucketRows<'r>>>;

fn timeline<'r>(rows: impl IntoIterator<Item = &'r Rollup>) -> Timeline<'r> {
    let mut t: Timeline<'r> = BTreeMap::new();
    for r in rows {
        let d = &r.key.dimensions;
        let (Some(session), Some(collection), Some(progress)) = (
            d.get("session"),
            d.get("collection"),
            d.get("progress").and_then(Progress::decode),
        ) else {
            continue;
        };
        let slot = t
            .entry(session)
            .or_default()
            .entry(r.key.bucket_start)
            .or_default();
        match slot.get(collection) {
            Some((_, at, _)) if *at > r.computed_at => {}
            _ => {
                slot.insert(collection, (progress, r.computed_at, r.stats.samples));
            }
        }
    }
    t
}

/// The progress of one session over its buckets for `collection` (`None`: all events).
fn compose(
    buckets: &BTreeMap<DateTime<Utc>, BucketRows<'_>>,
    collection: Option<&str>,
) -> Progress {
    buckets.values().fold(Progress::IDENTITY, |acc, b| {
        let get = |c: &str| b.get(c).map(|(p, _, _)| *p);
        let f = match collection {
            None => get(ALL_COLLECTIONS),
            Some(c) => get(c).or_else(|| get(NO_COLLECTION)),
        }
        .unwrap_or(Progress::IDENTITY);
        acc.then(f)
    })
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
    let mut rows = Vec::new();
    for (session, buckets) in timeline(children.iter().copied()) {
        let events: u64 = buckets
            .values()
            .filter_map(|b| b.get(ALL_COLLECTIONS).map(|(_, _, n)| *n))
            .sum();
        let mut values: BTreeSet<&str> = buckets.values().flat_map(|b| b.keys().copied()).collect();
        values.remove(ALL_COLLECTIONS);
        let mut out = vec![(ALL_COLLECTIONS, compose(&buckets, None))];
        for c in values {
            let p = if c == NO_COLLECTION {
                buckets.values().fold(Progress::IDENTITY, |acc, b| {
                    acc.then(b.get(NO_COLLECTION).map_or(Progress::IDENTITY, |x| x.0))
                })
            } else {
                compose(&buckets, Some(c))
            };
            out.push((c, p));
        }
        for (collection, progress) in out {
            rows.extend(progress_row(
                &metric,
                project,
                granularity,
                bucket_start,
                computed_at,
                session,
                collection,
                progress,
                events,
            ));
        }
    }
    rows
}

/// Sessions reaching each step (index 0 = `page_view`) over rows in time order (rollup
/// rows of complete buckets and rows computed from raw events), for `collection` (`None`:
/// all collections).
pub fn count_sessions<'r>(
    rows: impl IntoIterator<Item = &'r Rollup>,
    collection: Option<&str>,
) -> [u64; STEPS] {
    let mut counts = [0u64; STEPS];
    for buckets in timeline(rows).values() {
        let reached = usize::from(compose(buckets, collection).reached());
        for c in counts.iter_mut().take(reached) {
            *c += 1;
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
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

    #[test]
    fn encoding_round_trips() {
        let p = Progress::of_steps([S::ProductView, S::CartAdd]);
        assert_eq!(p.encode(), "033345");
        assert_eq!(Progress::decode(&p.encode()), Some(p));
        assert_eq!(Progress::decode("0123"), None);
        assert_eq!(Progress::decode("102345"), None);
    }
}
