//! The dashboard summary's cache: entries live `ttl` (60 s) from the moment they were
//! computed. In-process (moka) always; shared through Redis when `REDIS_URL` is set, so every
//! replica serves the same entry and computes a key at most once per TTL between them.
//!
//! Single flight: inside a process moka runs one computation per key and hands its result to
//! every waiter; across processes a Redis lock (`SET lock NX PX`) lets one replica compute
//! while the others poll the entry. Redis unreachable or slow ([`RedisLink`]): the cache
//! works in-process only, and `/metrics` says so (`analytics_dashboard_cache_redis_up 0`,
//! `analytics_dashboard_cache_redis_errors_total`).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use moka::Expiry;
use prometheus::{IntCounter, IntGauge};

use crate::redis_link::RedisLink;

/// How long a summary entry is served.
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);

/// How long another replica's computation is waited for before computing here anyway.
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// A cached answer: its JSON and when it was computed.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Cached {
    /// The answer, serialized.
    pub json: String,
    /// When it was computed.
    pub generated_at: DateTime<Utc>,
}

/// Per-entry expiry: what is left of the TTL since the entry was computed (an entry read
/// from Redis halfway through its life lives only the other half here).
struct FromComputation(Duration);

impl Expiry<String, Arc<Cached>> for FromComputation {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &Arc<Cached>,
        _created_at: Instant,
    ) -> Option<Duration> {
        let age = (Utc::now() - value.generated_at)
            .to_std()
            .unwrap_or(Duration::ZERO);
        Some(self.0.saturating_sub(age))
    }
}

/// The summary cache.
pub struct SummaryCache {
    local: moka::future::Cache<String, Arc<Cached>>,
    shared: Option<RedisLink>,
    ttl: Duration,
    computations: IntCounter,
}

/// The cache's metrics: Redis up (gauge), Redis call errors and computations (counters).
#[derive(Debug, Clone)]
pub struct CacheMetrics {
    /// `analytics_dashboard_cache_redis_up`.
    pub redis_up: IntGauge,
    /// `analytics_dashboard_cache_redis_errors_total`.
    pub redis_errors: IntCounter,
    /// `analytics_dashboard_cache_computations_total`.
    pub computations: IntCounter,
}

impl std::fmt::Debug for SummaryCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SummaryCache")
            .field("ttl", &self.ttl)
            .field("redis", &self.shared.is_some())
            .finish_non_exhaustive()
    }
}

impl SummaryCache {
    /// A cache keeping entries `ttl`; shared through Redis at `redis_url` when given (a URL
    /// that does not parse is an error; an unreachable server is not).
    pub fn new(
        ttl: Duration,
        redis_url: Option<&str>,
        metrics: CacheMetrics,
    ) -> Result<Self, redis::RedisError> {
        let CacheMetrics {
            redis_up,
            redis_errors,
            computations,
        } = metrics;
        redis_up.set(0);
        let shared = redis_url
            .map(|url| RedisLink::new("summary cache", url, redis_up, redis_errors))
            .transpose()?;
        Ok(Self {
            local: moka::future::Cache::builder()
                .max_capacity(10_000)
                .expire_after(FromComputation(ttl))
                .build(),
            shared,
            ttl,
            computations,
        })
    }

    /// Whether entries are shared through Redis.
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// The entry of `key`, computing it with `compute` when no live entry exists anywhere;
    /// `true` with it when this call computed it. A failed computation is not cached.
    pub async fn get_or_compute<F, Fut, E>(
        &self,
        key: &str,
        compute: F,
    ) -> Result<(Arc<Cached>, bool), E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<String, E>>,
        E: Clone + Send + Sync + 'static,
    {
        let computed_here = Arc::new(AtomicBool::new(false));
        let flag = computed_here.clone();
        let entry = self
            .local
            .try_get_with(key.to_owned(), async move {
                let compute = || async {
                    let json = compute().await?;
                    flag.store(true, Ordering::Relaxed);
                    self.computations.inc();
                    Ok::<_, E>(Arc::new(Cached {
                        json,
                        generated_at: Utc::now(),
                    }))
                };
                match &self.shared {
                    Some(shared) => self.through_redis(shared, key, compute).await,
                    None => compute().await,
                }
            })
            .await
            .map_err(|e: Arc<E>| (*e).clone())?;
        Ok((entry, computed_here.load(Ordering::Relaxed)))
    }

    async fn through_redis<C, Fut, E>(
        &self,
        shared: &RedisLink,
        key: &str,
        compute: C,
    ) -> Result<Arc<Cached>, E>
    where
        C: FnOnce() -> Fut,
        Fut: Future<Output = Result<Arc<Cached>, E>>,
    {
        // Every path below computes at most once, then returns.
        let mut compute = Some(compute);
        let mut compute = move || compute.take().expect("computed at most once")();
        let lock = format!("{key}:lock");
        let started = Instant::now();
        loop {
            let Some(mut conn) = shared.connection().await else {
                return compute().await;
            };
            match shared.call(&mut conn, redis::cmd("GET").arg(key)).await {
                Ok(Some::<String>(raw)) => {
                    if let Ok(hit) = serde_json::from_str::<Cached>(&raw) {
                        return Ok(Arc::new(hit));
                    }
                }
                Ok(None) => {}
                Err(()) => {
                    return compute().await;
                }
            }
            let ttl_ms = self.ttl.as_millis().max(1) as u64;
            let took: Result<Option<String>, ()> = shared
                .call(
                    &mut conn,
                    redis::cmd("SET")
                        .arg(&lock)
                        .arg("1")
                        .arg("NX")
                        .arg("PX")
                        .arg(LOCK_WAIT.as_millis() as u64),
                )
                .await;
            match took {
                Ok(Some(_)) => {
                    let entry = compute().await;
                    if let Ok(entry) = &entry {
                        let raw = serde_json::to_string(entry.as_ref()).unwrap_or_default();
                        // A failed write is counted and drops the connection.
                        let _: Result<Option<String>, ()> = shared
                            .call(
                                &mut conn,
                                redis::cmd("SET").arg(key).arg(raw).arg("PX").arg(ttl_ms),
                            )
                            .await;
                    }
                    let _: Result<Option<i64>, ()> =
                        shared.call(&mut conn, redis::cmd("DEL").arg(&lock)).await;
                    return entry;
                }
                Ok(None) if started.elapsed() < LOCK_WAIT => {
                    // Another replica is computing it: wait for its entry.
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
                Ok(None) => return compute().await,
                Err(()) => {
                    return compute().await;
                }
            }
        }
    }
}
