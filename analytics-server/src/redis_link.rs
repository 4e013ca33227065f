//! One Redis connection shared by a component (the summary cache, the rate limiter): made on
//! demand, each call bounded by `REDIS_TIMEOUT`, dropped on failure and retried at most every
//! `RECONNECT_EVERY`. While it is down the component works in-process only, and `/metrics`
//! says so through the component's `redis_up` gauge and `redis_errors` counter.

use std::time::{Duration, Instant};

use prometheus::{IntCounter, IntGauge};
use redis::aio::ConnectionManager;
use tokio::sync::Mutex;

/// The bound on one Redis call (a healthy Redis answers in well under a millisecond).
pub const REDIS_TIMEOUT: Duration = Duration::from_millis(500);

/// The bound on connecting to Redis.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// How often a lost Redis connection is retried.
const RECONNECT_EVERY: Duration = Duration::from_secs(5);

/// A Redis connection made on demand and dropped on failure.
pub struct RedisLink {
    what: &'static str,
    client: redis::Client,
    conn: Mutex<Option<ConnectionManager>>,
    last_attempt: Mutex<Option<Instant>>,
    redis_up: IntGauge,
    redis_errors: IntCounter,
}

impl std::fmt::Debug for RedisLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLink")
            .field("what", &self.what)
            .finish_non_exhaustive()
    }
}

impl RedisLink {
    /// A link to `url` for `what` (named in logs); a URL that does not parse is an error, an
    /// unreachable server is not. `redis_up` starts at 0.
    pub fn new(
        what: &'static str,
        url: &str,
        redis_up: IntGauge,
        redis_errors: IntCounter,
    ) -> Result<Self, redis::RedisError> {
        redis_up.set(0);
        Ok(Self {
            what,
            client: redis::Client::open(url)?,
            conn: Mutex::new(None),
            last_attempt: Mutex::new(None),
            redis_up,
            redis_errors,
        })
    }

    /// One Redis call within `REDIS_TIMEOUT`; `Err(())` (counted, and the connection
    /// dropped) when it fails or is slow.
    pub async fn call<T: redis::FromRedisValue>(
        &self,
        conn: &mut ConnectionManager,
        cmd: &mut redis::Cmd,
    ) -> Result<T, ()> {
        let failed = match tokio::time::timeout(REDIS_TIMEOUT, cmd.query_async::<T>(conn)).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "timed out".to_owned(),
        };
        tracing::warn!(error = %failed, component = self.what, "redis call failed");
        self.redis_errors.inc();
        self.lost().await;
        Err(())
    }

    /// The connection, made when there is none and the last attempt is old enough. Callers
    /// wait for a connection attempt already under way instead of skipping Redis.
    pub async fn connection(&self) -> Option<ConnectionManager> {
        let mut conn = self.conn.lock().await;
        if let Some(c) = conn.as_ref() {
            return Some(c.clone());
        }
        {
            let mut last = self.last_attempt.lock().await;
            if last.is_some_and(|t| t.elapsed() < RECONNECT_EVERY) {
                return None;
            }
            *last = Some(Instant::now());
        }
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(0);
        let failed = match tokio::time::timeout(
            CONNECT_TIMEOUT * 2,
            self.client.get_connection_manager_with_config(config),
        )
        .await
        {
            Ok(Ok(c)) => {
                self.redis_up.set(1);
                *conn = Some(c.clone());
                return Some(c);
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "connect timed out".to_owned(),
        };
        tracing::warn!(error = %failed, component = self.what, "redis unreachable, working in-process");
        self.redis_errors.inc();
        self.redis_up.set(0);
        None
    }

    /// Drops the connection after a failure; the next call reconnects (rate-limited).
    async fn lost(&self) {
        *self.conn.lock().await = None;
        *self.last_attempt.lock().await = Some(Instant::now());
        self.redis_up.set(0);
    }
}
