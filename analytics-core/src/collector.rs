//! `AnalyticsEventCollector`: a bounded queue in front of an [`EventSink`] that
//! group-commits concurrent submissions into shared `write_batch` calls.
//!
//! Many callers of [`AnalyticsEventCollector::submit`] share one batch; each caller's future
//! resolves only after its own events are committed (or fails with the reason), so an HTTP
//! layer can answer 2xx only for durable events. [`AnalyticsEventCollector::record`] is the
//! fire-and-forget variant for embedders. A full queue is backpressure
//! ([`CollectorError::Backpressure`]), never a silent drop. The flusher writes as soon as it
//! is free (or after [`CollectorOptions::linger`]), when a batch is full, and on
//! [`AnalyticsEventCollector::shutdown`].
//!
//! One caller's event can never fail another caller's submission: a batch that fails with
//! an error other than [`Error::Unavailable`] (a row the sink refuses) is split in two
//! (between submissions while it holds several) and each half written again, until the
//! events that can be stored are committed and each refused event is alone; only those get
//! a per-event error in their [`SubmitReport`]. `Unavailable` concerns the whole store: it
//! is retried, then fails the submissions whose events it left unwritten.
//!
//! The collector never reads the wall clock: it only uses tokio's timers.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::error::Error;
use crate::event::Event;
use crate::ports::{EventSink, WriteOutcome};

/// Collector settings.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectorOptions {
    /// Most events waiting in the queue (submitted but not yet committed).
    pub capacity: usize,
    /// Most events per `write_batch` call.
    pub max_batch: usize,
    /// How long a batch that is not full waits for more events before it is written.
    /// Zero (the default) writes as soon as the flusher is free: a batch then grows from
    /// whatever arrives while the previous write is in flight (group commit), so an idle
    /// collector adds no latency and a busy one writes large batches.
    pub linger: Duration,
    /// Batches written at the same time (at least 1). While every writer is busy, new
    /// submissions wait in the queue and the next batch takes them all; more than one
    /// writer lets a database use several cores (PostgreSQL), and costs nothing where
    /// writes serialize anyway (SQLite's single writer connection).
    pub writers: usize,
    /// Attempts per batch when the sink answers `Unavailable` (at least 1). Once a batch
    /// has used them all, the sink counts as down: later batches get a single attempt, so
    /// callers hear of the outage at once instead of each waiting out the retries, until a
    /// write succeeds again.
    pub max_attempts: u32,
    /// Delay before the first retry; doubled per retry up to `max_backoff`.
    pub initial_backoff: Duration,
    /// Upper bound of the retry delay.
    pub max_backoff: Duration,
}

impl Default for CollectorOptions {
    fn default() -> Self {
        Self {
            capacity: 100_000,
            max_batch: 5_000,
            linger: Duration::ZERO,
            writers: 2,
            max_attempts: 4,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
        }
    }
}

/// Why a submission was not committed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CollectorError {
    /// The queue is full; nothing was queued. Retry later.
    #[error("collector queue is full")]
    Backpressure,
    /// The collector is shutting down or stopped; nothing was queued.
    #[error("collector is shut down")]
    Closed,
    /// The store was unavailable (after the retries) for some events of the submission;
    /// none of those was committed (others may have been: a re-send reports them as
    /// duplicates). Errors that concern single events are reported per event in the
    /// [`SubmitReport`] instead.
    #[error("write failed: {0}")]
    Write(Error),
    /// More events than the queue can ever hold in one submission.
    #[error("submission of {0} events exceeds the collector capacity")]
    TooLarge(usize),
}

impl CollectorError {
    /// Whether retrying later may succeed (backpressure, shutdown, unavailable store).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Backpressure | Self::Closed => true,
            Self::Write(e) => e.is_retryable(),
            Self::TooLarge(_) => false,
        }
    }
}

/// What happened to each event of one submission, in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubmitReport {
    /// The sink's outcome for each stored event, or why the sink refused that event alone
    /// (never [`Error::Unavailable`]: that fails the submission). A refused event was not
    /// stored; the other events are not affected by it.
    pub outcomes: Vec<Result<WriteOutcome, Error>>,
}

impl SubmitReport {
    /// Events stored now.
    pub fn inserted(&self) -> usize {
        self.count(|o| o == Ok(&WriteOutcome::Inserted))
    }

    /// Events that were already stored.
    pub fn duplicates(&self) -> usize {
        self.count(|o| o == Ok(&WriteOutcome::Duplicate))
    }

    /// Events the sink refused.
    pub fn failed(&self) -> usize {
        self.count(|o| o.is_err())
    }

    fn count(&self, f: impl Fn(Result<&WriteOutcome, &Error>) -> bool) -> usize {
        self.outcomes.iter().filter(|o| f(o.as_ref())).count()
    }
}

/// A snapshot of the collector's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CollectorStats {
    /// Events waiting in the queue now.
    pub queued: u64,
    /// Events committed (inserted) so far.
    pub committed: u64,
    /// Events found already stored.
    pub duplicates: u64,
    /// Successful `write_batch` calls.
    pub batches: u64,
    /// Size of the last successful batch.
    pub last_batch_size: u64,
    /// Average size of successful batches.
    pub avg_batch_size: f64,
    /// Events not stored because the sink failed (unavailable after retries, or refused
    /// the event itself).
    pub failed: u64,
    /// Failed batches split in two to isolate the events the sink refuses.
    pub splits: u64,
    /// Failed `write_batch` attempts (including retried ones).
    pub write_errors: u64,
    /// Events refused because the queue was full.
    pub rejected_backpressure: u64,
    /// Whether the last batch failed after all its retries (the sink looks down; batches
    /// are attempted once until one succeeds).
    pub sink_down: bool,
}

#[derive(Debug, Default)]
struct Counters {
    committed: AtomicU64,
    duplicates: AtomicU64,
    batches: AtomicU64,
    batched_events: AtomicU64,
    last_batch_size: AtomicU64,
    failed: AtomicU64,
    splits: AtomicU64,
    write_errors: AtomicU64,
    rejected_backpressure: AtomicU64,
    sink_down: AtomicBool,
}

type Reply = oneshot::Sender<Result<SubmitReport, CollectorError>>;

/// One submission in the queue.
struct Item {
    events: Vec<Event>,
    reply: Option<Reply>,
    // Holds the submission's queue slots until it is committed or failed.
    _permit: tokio::sync::OwnedSemaphorePermit,
}

enum Msg {
    Item(Item),
    Flush(oneshot::Sender<()>),
}

/// Group-committing event collector; see the module documentation. Cheap to share behind
/// an `Arc`.
pub struct AnalyticsEventCollector {
    tx: Mutex<Option<mpsc::UnboundedSender<Msg>>>,
    slots: Arc<Semaphore>,
    capacity: usize,
    counters: Arc<Counters>,
    flusher: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for AnalyticsEventCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnalyticsEventCollector")
            .field("capacity", &self.capacity)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl AnalyticsEventCollector {
    /// Starts the collector and its flusher task on the current tokio runtime.
    pub fn start(sink: Arc<dyn EventSink>, options: CollectorOptions) -> Self {
        let options = CollectorOptions {
            capacity: options.capacity.max(1),
            max_batch: options.max_batch.max(1),
            writers: options.writers.max(1),
            max_attempts: options.max_attempts.max(1),
            ..options
        };
        // The channel is unbounded, but every item holds semaphore permits for its events:
        // memory is bounded by `capacity` events.
        let (tx, rx) = mpsc::unbounded_channel();
        let counters = Arc::new(Counters::default());
        let capacity = options.capacity;
        let flusher = tokio::spawn(flusher(sink, options, rx, counters.clone()));
        Self {
            tx: Mutex::new(Some(tx)),
            slots: Arc::new(Semaphore::new(capacity)),
            capacity,
            counters,
            flusher: Mutex::new(Some(flusher)),
        }
    }

    fn enqueue(&self, events: Vec<Event>, reply: Option<Reply>) -> Result<(), CollectorError> {
        let n = events.len();
        if n > self.capacity {
            return Err(CollectorError::TooLarge(n));
        }
        let tx = lock(&self.tx).clone().ok_or(CollectorError::Closed)?;
        let permits = u32::try_from(n).map_err(|_| CollectorError::TooLarge(n))?;
        let permit = match self.slots.clone().try_acquire_many_owned(permits) {
            Ok(p) => p,
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                self.counters
                    .rejected_backpressure
                    .fetch_add(n as u64, Ordering::Relaxed);
                return Err(CollectorError::Backpressure);
            }
            Err(tokio::sync::TryAcquireError::Closed) => return Err(CollectorError::Closed),
        };
        tx.send(Msg::Item(Item {
            events,
            reply,
            _permit: permit,
        }))
        .map_err(|_| CollectorError::Closed)
    }

    /// Queues `events` and waits until they are committed. The report has one outcome per
    /// event, in order: stored (inserted or duplicate), or refused by the sink for that
    /// event alone. Fails at once with [`CollectorError::Backpressure`] when the queue
    /// cannot take them all, and with [`CollectorError::Write`] when the store stayed
    /// unavailable.
    pub async fn submit(&self, events: Vec<Event>) -> Result<SubmitReport, CollectorError> {
        if events.is_empty() {
            return Ok(SubmitReport::default());
        }
        let (reply, rx) = oneshot::channel();
        self.enqueue(events, Some(reply))?;
        rx.await.unwrap_or(Err(CollectorError::Closed))
    }

    /// Queues one event without waiting for its commit (it is flushed on size, interval and
    /// shutdown). Fails with [`CollectorError::Backpressure`] when the queue is full.
    pub fn record(&self, event: Event) -> Result<(), CollectorError> {
        self.enqueue(vec![event], None)
    }

    /// Writes everything queued so far and waits for it.
    pub async fn flush(&self) -> Result<(), CollectorError> {
        let tx = lock(&self.tx).clone().ok_or(CollectorError::Closed)?;
        let (done, rx) = oneshot::channel();
        tx.send(Msg::Flush(done))
            .map_err(|_| CollectorError::Closed)?;
        rx.await.map_err(|_| CollectorError::Closed)
    }

    /// Refuses new events, writes everything queued, and stops the flusher. Idempotent.
    pub async fn shutdown(&self) {
        drop(lock(&self.tx).take());
        let handle = lock(&self.flusher).take();
        if let Some(h) = handle {
            // A panicking sink ends only its writer task; its callers then see `Closed`.
            let _ = h.await;
        }
    }

    /// Whether `shutdown` was called.
    pub fn is_closed(&self) -> bool {
        lock(&self.tx).is_none()
    }

    /// The counters now.
    pub fn stats(&self) -> CollectorStats {
        let c = &self.counters;
        let batches = c.batches.load(Ordering::Relaxed);
        let batched = c.batched_events.load(Ordering::Relaxed);
        CollectorStats {
            queued: (self.capacity - self.slots.available_permits()) as u64,
            committed: c.committed.load(Ordering::Relaxed),
            duplicates: c.duplicates.load(Ordering::Relaxed),
            batches,
            last_batch_size: c.last_batch_size.load(Ordering::Relaxed),
            avg_batch_size: if batches == 0 {
                0.0
            } else {
                batched as f64 / batches as f64
            },
            failed: c.failed.load(Ordering::Relaxed),
            splits: c.splits.load(Ordering::Relaxed),
            write_errors: c.write_errors.load(Ordering::Relaxed),
            rejected_backpressure: c.rejected_backpressure.load(Ordering::Relaxed),
            sink_down: c.sink_down.load(Ordering::Relaxed),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Everything a writer task needs.
struct Writer {
    sink: Arc<dyn EventSink>,
    options: CollectorOptions,
    counters: Arc<Counters>,
    slots: Arc<Semaphore>,
}

impl Writer {
    /// Hands every pending item to writer tasks, in batches of at most `max_batch` events
    /// (a submission is never split, so its events commit together). Waits only for a free
    /// writer, not for the writes.
    async fn dispatch(self: &Arc<Self>, pending: &mut Vec<Item>) {
        let mut items = std::mem::take(pending).into_iter().peekable();
        while items.peek().is_some() {
            let mut group = Vec::new();
            let mut size = 0;
            while let Some(next) = items.peek() {
                if !group.is_empty() && size + next.events.len() > self.options.max_batch {
                    break;
                }
                size += next.events.len();
                group.extend(items.next());
            }
            let Ok(slot) = self.slots.clone().acquire_owned().await else {
                return;
            };
            let writer = self.clone();
            // A panicking sink ends only this task; its callers see `Closed`.
            tokio::spawn(async move {
                write_group(&*writer.sink, &writer.options, &writer.counters, group).await;
                drop(slot);
            });
        }
    }

    /// Hands everything pending to writers and waits until every write has finished.
    async fn drain(self: &Arc<Self>, pending: &mut Vec<Item>) {
        self.dispatch(pending).await;
        self.idle().await;
    }

    /// Waits until no write is in flight.
    async fn idle(&self) {
        let all = u32::try_from(self.options.writers).unwrap_or(u32::MAX);
        let _all = self.slots.acquire_many(all).await;
    }

    /// Waits until at least one writer is free.
    async fn free(&self) {
        let _one = self.slots.acquire().await;
    }
}

async fn flusher(
    sink: Arc<dyn EventSink>,
    options: CollectorOptions,
    mut rx: mpsc::UnboundedReceiver<Msg>,
    counters: Arc<Counters>,
) {
    let writer = Arc::new(Writer {
        sink,
        slots: Arc::new(Semaphore::new(options.writers)),
        options,
        counters,
    });
    let (max_batch, linger) = (writer.options.max_batch, writer.options.linger);
    let mut pending: Vec<Item> = Vec::new();
    let mut pending_events = 0usize;
    // Runs out when the oldest pending event must be written (with a linger).
    let mut linger_timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    loop {
        // Gather only once a writer is free: meanwhile submissions pile up in the channel
        // and the next batch takes them all (group commit).
        writer.free().await;
        let msg = match linger_timer.as_mut() {
            Some(timer) => tokio::select! {
                msg = rx.recv() => Some(msg),
                () = timer.as_mut() => None,
            },
            None => Some(rx.recv().await),
        };
        match msg {
            // The linger is over.
            None => {}
            Some(None) => {
                writer.drain(&mut pending).await;
                return;
            }
            Some(Some(Msg::Flush(done))) => {
                writer.drain(&mut pending).await;
                let _ = done.send(());
            }
            Some(Some(Msg::Item(item))) => {
                pending_events += item.events.len();
                pending.push(item);
                // Take whatever else is already waiting, so a burst becomes one batch.
                while pending_events < max_batch {
                    match rx.try_recv() {
                        Ok(Msg::Item(item)) => {
                            pending_events += item.events.len();
                            pending.push(item);
                        }
                        Ok(Msg::Flush(done)) => {
                            writer.drain(&mut pending).await;
                            pending_events = 0;
                            let _ = done.send(());
                        }
                        Err(_) => break,
                    }
                }
                if pending.is_empty() {
                    continue;
                }
                if pending_events < max_batch && !linger.is_zero() {
                    let timer =
                        linger_timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(linger)));
                    if !timer.is_elapsed() {
                        continue;
                    }
                }
            }
        }
        writer.dispatch(&mut pending).await;
        pending_events = 0;
        linger_timer = None;
    }
}

async fn write_group(
    sink: &dyn EventSink,
    options: &CollectorOptions,
    counters: &Counters,
    mut group: Vec<Item>,
) {
    // The events move into the batch (no copy); each item keeps its count for the replies.
    let mut batch: Vec<Event> = Vec::with_capacity(group.iter().map(|i| i.events.len()).sum());
    let mut counts = Vec::with_capacity(group.len());
    for item in &mut group {
        counts.push(item.events.len());
        batch.append(&mut item.events);
    }
    let mut outcomes = write_split(sink, options, counters, &batch, &counts)
        .await
        .into_iter();
    for (item, n) in group.into_iter().zip(counts) {
        let own: Vec<_> = outcomes.by_ref().take(n).collect();
        // The store was down for some of this submission's events: it fails as a whole
        // (the caller retries; what was stored comes back as duplicates).
        let reply = match own
            .iter()
            .find_map(|o| o.as_ref().err().filter(|e| e.is_retryable()))
        {
            Some(e) => Err(CollectorError::Write(e.clone())),
            None => Ok(SubmitReport { outcomes: own }),
        };
        if let Some(tx) = item.reply {
            let _ = tx.send(reply);
        }
    }
}

/// Writes `batch`; when the sink refuses it with an error that is not `Unavailable`, writes
/// its two halves instead, and so on, so that every event that can be stored is, and a
/// refused event ends up alone with its own error. A batch holding several submissions
/// (of `counts` events each) is split between submissions first, so one submission's bad
/// event costs the others at most a few extra writes. Returns one result per event.
async fn write_split(
    sink: &dyn EventSink,
    options: &CollectorOptions,
    counters: &Counters,
    batch: &[Event],
    counts: &[usize],
) -> Vec<Result<WriteOutcome, Error>> {
    // Where each submission starts.
    let starts: Vec<usize> = counts
        .iter()
        .scan(0, |at, n| {
            let start = *at;
            *at += n;
            Some(start)
        })
        .collect();
    let mut results: Vec<Option<Result<WriteOutcome, Error>>> = vec![None; batch.len()];
    // Depth first, first half first: events are written in their order.
    let mut todo = Vec::new();
    todo.push(0..batch.len());
    while let Some(range) = todo.pop() {
        let part = &batch[range.clone()];
        match write_with_retry(sink, options, counters, part).await {
            Ok(report) => {
                counters.batches.fetch_add(1, Ordering::Relaxed);
                counters
                    .batched_events
                    .fetch_add(part.len() as u64, Ordering::Relaxed);
                counters
                    .last_batch_size
                    .store(part.len() as u64, Ordering::Relaxed);
                counters
                    .committed
                    .fetch_add(report.inserted() as u64, Ordering::Relaxed);
                counters
                    .duplicates
                    .fetch_add(report.duplicates() as u64, Ordering::Relaxed);
                for (slot, outcome) in results[range].iter_mut().zip(report.outcomes) {
                    *slot = Some(Ok(outcome));
                }
            }
            Err(e) if e.is_retryable() || part.len() == 1 => {
                counters
                    .failed
                    .fetch_add(part.len() as u64, Ordering::Relaxed);
                for slot in &mut results[range] {
                    *slot = Some(Err(e.clone()));
                }
            }
            Err(_) => {
                counters.splits.fetch_add(1, Ordering::Relaxed);
                let mid = split_point(&range, &starts);
                todo.push(mid..range.end);
                todo.push(range.start..mid);
            }
        }
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(Error::Internal("event left unwritten".into()))))
        .collect()
}

/// Where to split `range` (at least two events long): at the submission boundary nearest
/// its middle when it spans several submissions, else in the middle.
fn split_point(range: &std::ops::Range<usize>, starts: &[usize]) -> usize {
    let mid = range.start + range.len() / 2;
    starts
        .iter()
        .copied()
        .filter(|&s| s > range.start && s < range.end)
        .min_by_key(|&s| s.abs_diff(mid))
        .unwrap_or(mid)
}

async fn write_with_retry(
    sink: &dyn EventSink,
    options: &CollectorOptions,
    counters: &Counters,
    batch: &[Event],
) -> Result<crate::ports::WriteReport, Error> {
    let mut delay = options.initial_backoff;
    let mut attempt = 1;
    // With several writers this is a hint, not a lock: a batch may still get its full
    // attempts just after another one found the sink down, which costs only time.
    let max_attempts = if counters.sink_down.load(Ordering::Relaxed) {
        1
    } else {
        options.max_attempts
    };
    loop {
        match sink.write_batch(batch).await {
            Ok(report) if report.outcomes.len() == batch.len() => {
                counters.sink_down.store(false, Ordering::Relaxed);
                return Ok(report);
            }
            Ok(report) => {
                counters.write_errors.fetch_add(1, Ordering::Relaxed);
                return Err(Error::Internal(format!(
                    "sink reported {} outcomes for {} events",
                    report.outcomes.len(),
                    batch.len()
                )));
            }
            Err(e) => {
                counters.write_errors.fetch_add(1, Ordering::Relaxed);
                if !e.is_retryable() {
                    return Err(e);
                }
                if attempt >= max_attempts {
                    counters.sink_down.store(true, Ordering::Relaxed);
                    return Err(e);
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(options.max_backoff);
                attempt += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{AgeLimits, EventInput, EventLimits, IngestContext};
    use crate::ids::EventId;
    use crate::ids::ProjectId;
    use crate::memory::MemoryStore;
    use crate::ports::{EventStore, WriteReport};
    use async_trait::async_trait;
    use chrono::DateTime;
    use std::sync::atomic::AtomicUsize;

    fn event(i: u128) -> Event {
        let project = ProjectId::default_project();
        let limits = EventLimits::default();
        let ctx = IngestContext {
            now: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            default_project: &project,
            fixed_project: false,
            request_correlation_id: None,
            limits: &limits,
            age_limits: &AgeLimits::default(),
        };
        let input = EventInput {
            id: Some(serde_json::json!(uuid::Uuid::from_u128(i + 1).to_string())),
            kind: Some(serde_json::json!("page_view")),
            payload: Some(serde_json::json!({"path": "/"})),
            ..Default::default()
        };
        Event::parse(input, &ctx).unwrap()
    }

    /// A sink that counts calls and concurrent calls, can be slowed down, and fails its
    /// first `fail` calls.
    #[derive(Debug, Default)]
    struct MockSink {
        inner: MemoryStore,
        calls: AtomicUsize,
        in_flight: AtomicUsize,
        max_in_flight: AtomicUsize,
        fail: AtomicUsize,
        delay_ms: u64,
        /// Any batch holding an event with one of these ids is refused as a whole (like
        /// PostgreSQL rolling back a batch with one row it cannot store).
        poison: Vec<EventId>,
        /// Refuse with `Internal` instead of `Invalid`.
        poison_internal: bool,
        /// While set, any batch with more than one event is `Unavailable`.
        down_for_many: AtomicBool,
    }

    #[async_trait]
    impl EventSink for MockSink {
        async fn write_batch(&self, events: &[Event]) -> crate::Result<WriteReport> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_in_flight.fetch_max(now, Ordering::SeqCst);
            if self.delay_ms > 0 {
                tokio::time::sleep(Duration::from_millis(self.delay_ms)).await;
            }
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            if self
                .fail
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |f| f.checked_sub(1))
                .is_ok()
            {
                return Err(Error::Unavailable("down".into()));
            }
            if let Some(at) = events.iter().position(|e| self.poison.contains(&e.id)) {
                return Err(if self.poison_internal {
                    Error::Internal("no partition of relation found for row".into())
                } else {
                    Error::invalid(format!("events[{at}].occurred_at"), "cannot be stored")
                });
            }
            if events.len() > 1 && self.down_for_many.load(Ordering::SeqCst) {
                return Err(Error::Unavailable("down".into()));
            }
            self.inner.write_batch(events).await
        }
    }

    fn fast() -> CollectorOptions {
        CollectorOptions {
            linger: Duration::from_millis(20),
            initial_backoff: Duration::from_millis(1),
            ..Default::default()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_submitters_share_batches_and_get_their_own_outcomes() {
        let sink = Arc::new(MockSink::default());
        let c = Arc::new(AnalyticsEventCollector::start(sink.clone(), fast()));
        let mut tasks = Vec::new();
        for s in 0..50u128 {
            let c = c.clone();
            tasks.push(tokio::spawn(async move {
                let events: Vec<Event> = (0..4).map(|i| event(s * 10 + i)).collect();
                c.submit(events).await
            }));
        }
        for t in tasks {
            let r = t.await.unwrap().unwrap();
            assert_eq!(r.outcomes, vec![Ok(WriteOutcome::Inserted); 4]);
        }
        let calls = sink.calls.load(Ordering::SeqCst);
        assert!(calls < 50, "{calls} batches for 50 submitters");
        let st = c.stats();
        assert_eq!(st.committed, 200);
        assert_eq!(st.batches as usize, calls);
        assert_eq!(st.queued, 0);
        c.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn writers_bound_concurrent_batches() {
        for writers in [1, 3] {
            let sink = Arc::new(MockSink {
                delay_ms: 40,
                ..Default::default()
            });
            let c = Arc::new(AnalyticsEventCollector::start(
                sink.clone(),
                CollectorOptions {
                    writers,
                    max_batch: 1,
                    ..fast()
                },
            ));
            let tasks: Vec<_> = (0..12u128)
                .map(|i| {
                    let c = c.clone();
                    tokio::spawn(async move { c.submit(vec![event(i)]).await })
                })
                .collect();
            for t in tasks {
                assert_eq!(t.await.unwrap().unwrap().inserted(), 1);
            }
            assert_eq!(sink.max_in_flight.load(Ordering::SeqCst), writers);
            c.flush().await.unwrap();
            assert_eq!(c.stats().committed, 12);
            c.shutdown().await;
        }
    }

    #[tokio::test]
    async fn without_linger_a_lone_submission_is_written_at_once_and_with_one_it_waits() {
        let sink = Arc::new(MockSink::default());
        let c = AnalyticsEventCollector::start(
            sink.clone(),
            CollectorOptions {
                linger: Duration::ZERO,
                ..fast()
            },
        );
        let quick = tokio::time::timeout(Duration::from_secs(5), c.submit(vec![event(1)])).await;
        assert_eq!(quick.unwrap().unwrap().inserted(), 1);
        c.shutdown().await;

        let c = Arc::new(AnalyticsEventCollector::start(
            sink.clone(),
            CollectorOptions {
                linger: Duration::from_secs(3600),
                max_batch: 2,
                ..fast()
            },
        ));
        let c2 = c.clone();
        let first = tokio::spawn(async move { c2.submit(vec![event(2)]).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            !first.is_finished(),
            "a non-full batch waits out the linger"
        );
        // The second event fills the batch: both are written without waiting.
        assert_eq!(c.submit(vec![event(3)]).await.unwrap().inserted(), 1);
        assert_eq!(first.await.unwrap().unwrap().inserted(), 1);
        c.shutdown().await;
    }

    #[tokio::test]
    async fn duplicates_are_reported_per_caller() {
        let sink = Arc::new(MockSink::default());
        let c = AnalyticsEventCollector::start(sink, fast());
        let first = c.submit(vec![event(1), event(2)]).await.unwrap();
        assert_eq!(first.inserted(), 2);
        let again = c.submit(vec![event(2), event(3)]).await.unwrap();
        assert_eq!(
            again.outcomes,
            [Ok(WriteOutcome::Duplicate), Ok(WriteOutcome::Inserted)]
        );
        assert_eq!(c.stats().duplicates, 1);
        c.shutdown().await;
    }

    #[tokio::test]
    async fn full_queue_is_backpressure() {
        let sink = Arc::new(MockSink {
            delay_ms: 300,
            ..Default::default()
        });
        let c = Arc::new(AnalyticsEventCollector::start(
            sink,
            CollectorOptions {
                capacity: 10,
                ..fast()
            },
        ));
        let c2 = c.clone();
        let slow = tokio::spawn(async move { c2.submit((0..8).map(event).collect()).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let err = c.submit((8..11).map(event).collect()).await.unwrap_err();
        assert_eq!(err, CollectorError::Backpressure);
        assert_eq!(c.record(event(20)), Ok(()));
        assert_eq!(c.record(event(21)), Ok(()));
        assert_eq!(c.record(event(22)), Err(CollectorError::Backpressure));
        assert_eq!(c.stats().rejected_backpressure, 4);
        assert_eq!(slow.await.unwrap().unwrap().inserted(), 8);
        assert!(matches!(
            c.submit(vec![event(0); 11]).await,
            Err(CollectorError::TooLarge(11))
        ));
        c.shutdown().await;
    }

    #[tokio::test]
    async fn unavailable_is_retried_then_surfaced() {
        let sink = Arc::new(MockSink::default());
        sink.fail.store(2, Ordering::SeqCst);
        let c = AnalyticsEventCollector::start(sink.clone(), fast());
        assert_eq!(c.submit(vec![event(1)]).await.unwrap().inserted(), 1);
        assert_eq!(sink.calls.load(Ordering::SeqCst), 3);

        sink.fail.store(100, Ordering::SeqCst);
        let err = c.submit(vec![event(2)]).await.unwrap_err();
        assert!(matches!(err, CollectorError::Write(Error::Unavailable(_))));
        assert!(err.is_retryable());
        assert_eq!(sink.calls.load(Ordering::SeqCst), 3 + 4);
        let st = c.stats();
        assert_eq!(st.failed, 1);
        assert_eq!(st.write_errors, 6);
        assert!(st.sink_down);

        // While the sink is down, a batch gets one attempt: the caller hears at once.
        let err = c.submit(vec![event(3)]).await.unwrap_err();
        assert!(matches!(err, CollectorError::Write(Error::Unavailable(_))));
        assert_eq!(sink.calls.load(Ordering::SeqCst), 3 + 4 + 1);

        // One success ends the outage; retries apply again afterwards.
        sink.fail.store(0, Ordering::SeqCst);
        assert_eq!(c.submit(vec![event(3)]).await.unwrap().inserted(), 1);
        assert!(!c.stats().sink_down);
        sink.fail.store(1, Ordering::SeqCst);
        assert_eq!(c.submit(vec![event(4)]).await.unwrap().inserted(), 1);
        assert_eq!(sink.calls.load(Ordering::SeqCst), 3 + 4 + 1 + 1 + 2);
        c.shutdown().await;
    }

    fn id(i: u128) -> EventId {
        event(i).id
    }

    /// 24 concurrent submissions of 10 events share batches; one of them carries an event
    /// the sink refuses. Every other submission is stored in full, and the poisoned one
    /// gets its nine good events stored and one per-event error.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn one_bad_event_never_fails_another_submission() {
        for internal in [false, true] {
            let sink = Arc::new(MockSink {
                poison: vec![id(77)],
                poison_internal: internal,
                delay_ms: 5,
                ..Default::default()
            });
            let c = Arc::new(AnalyticsEventCollector::start(
                sink.clone(),
                CollectorOptions {
                    writers: 1,
                    ..fast()
                },
            ));
            let tasks: Vec<_> = (0..24u128)
                .map(|s| {
                    let c = c.clone();
                    tokio::spawn(async move {
                        c.submit((0..10).map(|i| event(s * 10 + i)).collect()).await
                    })
                })
                .collect();
            for (s, t) in tasks.into_iter().enumerate() {
                let r = t.await.unwrap().expect("no submission fails as a whole");
                if s == 7 {
                    assert_eq!((r.inserted(), r.failed()), (9, 1));
                    let bad = r.outcomes[7].clone().unwrap_err();
                    assert!(!bad.is_retryable());
                    if !internal {
                        assert_eq!(
                            bad,
                            Error::invalid("events[0].occurred_at", "cannot be stored"),
                            "the event's own error, found with the event alone"
                        );
                    }
                } else {
                    assert_eq!(r.outcomes, vec![Ok(WriteOutcome::Inserted); 10], "{s}");
                }
            }
            let st = c.stats();
            assert_eq!((st.committed, st.failed), (239, 1));
            // Isolating one event of a lone 10-event submission takes at most 4 splits;
            // more means the poisoned submission shared its batch with others.
            assert!(st.splits > 4, "{st:?}");
            assert!(
                sink.calls.load(Ordering::SeqCst) < 60,
                "a split costs a few writes, not one per event"
            );
            let stored = sink
                .inner
                .query_events(&Default::default(), &crate::PageRequest::first(1000))
                .await
                .unwrap();
            assert_eq!(stored.items.len(), 239);
            assert!(stored.items.iter().all(|e| e.id != id(77)));
            c.shutdown().await;
        }
    }

    #[tokio::test]
    async fn a_batch_of_only_bad_events_reports_each_and_stores_the_rest() {
        let sink = Arc::new(MockSink {
            poison: vec![id(0), id(3), id(4), id(9)],
            ..Default::default()
        });
        let c = AnalyticsEventCollector::start(sink.clone(), fast());
        let r = c.submit((0..10).map(event).collect()).await.unwrap();
        let failed: Vec<usize> = (0..10).filter(|&i| r.outcomes[i].is_err()).collect();
        assert_eq!(failed, [0, 3, 4, 9]);
        assert_eq!(r.inserted(), 6);
        // Re-sending: the good ones are duplicates, the bad ones still fail alone.
        let again = c.submit((0..10).map(event).collect()).await.unwrap();
        assert_eq!((again.duplicates(), again.failed()), (6, 4));
        let all_bad = c.submit(vec![event(0), event(3)]).await.unwrap();
        assert_eq!(all_bad.failed(), 2);
        c.shutdown().await;
    }

    /// `Unavailable` is about the store, not an event: it is never split, and when it hits
    /// part of a split batch, exactly the submissions with unwritten events fail (as a
    /// whole, so their callers retry); it is never reported per event.
    #[tokio::test]
    async fn unavailable_halves_fail_their_submissions_and_are_never_reported_per_event() {
        let sink = Arc::new(MockSink {
            poison: vec![id(5)],
            ..Default::default()
        });
        sink.down_for_many.store(true, Ordering::SeqCst);
        let c = Arc::new(AnalyticsEventCollector::start(
            sink.clone(),
            CollectorOptions {
                linger: Duration::from_secs(3600),
                max_attempts: 2,
                ..fast()
            },
        ));
        // Unavailable as a whole: retried, never split.
        let c1 = c.clone();
        let whole = tokio::spawn(async move { c1.submit(vec![event(1), event(2)]).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        c.flush().await.unwrap();
        let err = whole.await.unwrap().unwrap_err();
        assert!(matches!(err, CollectorError::Write(Error::Unavailable(_))));
        assert_eq!(
            (c.stats().splits, sink.calls.load(Ordering::SeqCst)),
            (0, 2)
        );

        // [10, 11] + [4, 5 (poisoned)]: refused, split between the submissions; the first
        // half is unavailable, the second is split again and its good event stored.
        let c2 = c.clone();
        let a = tokio::spawn(async move { c2.submit(vec![event(10), event(11)]).await });
        let c3 = c.clone();
        let b = tokio::spawn(async move { c3.submit(vec![event(4), event(5)]).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        c.flush().await.unwrap();
        let a = a.await.unwrap().unwrap_err();
        assert!(
            matches!(a, CollectorError::Write(Error::Unavailable(_))),
            "{a:?}"
        );
        let b = b.await.unwrap().unwrap();
        assert_eq!(b.outcomes[0], Ok(WriteOutcome::Inserted));
        assert!(b.outcomes[1].as_ref().is_err_and(|e| !e.is_retryable()));
        assert_eq!(c.stats().splits, 2);
        c.shutdown().await;
    }

    #[test]
    fn splits_fall_on_submission_boundaries_first() {
        // Submissions of 3, 1 and 4 events.
        let starts = [0, 3, 4];
        assert_eq!(split_point(&(0..8), &starts), 4);
        assert_eq!(split_point(&(0..4), &starts), 3);
        assert_eq!(split_point(&(4..8), &starts), 6);
        assert_eq!(split_point(&(0..3), &starts), 1);
        assert_eq!(split_point(&(0..2), &starts), 1);
    }

    #[tokio::test]
    async fn shutdown_flushes_recorded_events_and_refuses_new_ones() {
        let sink = Arc::new(MockSink::default());
        let c = AnalyticsEventCollector::start(
            sink.clone(),
            CollectorOptions {
                linger: Duration::from_secs(3600),
                ..fast()
            },
        );
        for i in 0..5 {
            c.record(event(i)).unwrap();
        }
        c.shutdown().await;
        let page = sink
            .inner
            .query_events(&Default::default(), &crate::PageRequest::first(100))
            .await
            .unwrap();
        assert_eq!(page.items.len(), 5);
        assert_eq!(c.record(event(9)), Err(CollectorError::Closed));
        assert!(c.is_closed());
    }

    #[tokio::test]
    async fn size_limit_splits_batches_without_splitting_submissions() {
        let sink = Arc::new(MockSink::default());
        let c = AnalyticsEventCollector::start(
            sink.clone(),
            CollectorOptions {
                max_batch: 3,
                linger: Duration::from_secs(3600),
                ..fast()
            },
        );
        for i in 0..7 {
            c.record(event(i)).unwrap();
        }
        c.flush().await.unwrap();
        assert_eq!(c.stats().committed, 7);
        assert!(c.stats().last_batch_size <= 3);
        c.shutdown().await;
    }
}
