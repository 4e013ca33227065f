//! The raw-`COPY` baseline the benchmarks measure writes against (feature
//! `bench-baseline`): a table identical to `analytics_events` (columns, primary key,
//! indexes, day partitions) filled with binary `COPY` and nothing else (no dedup table, no
//! dirty-hour markers, no partition bookkeeping). It is what PostgreSQL can take at best,
//! not a way to store events.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{AssertSqlSafe, PgPool};

use analytics_core::Event;
use analytics_core::error::{Error, Result};

use crate::error::pg_error;

/// Microseconds from the Unix epoch to PostgreSQL's epoch (2000-01-01 UTC).
const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

/// The columns of `analytics_events`, in the order [`CopyEncoder`] writes them.
pub const EVENT_COLUMNS: &str = "project, id, kind, occurred_at, received_at, correlation_id, \
    user_id, session_id, source, sample_rate, provider, route, collection, status, payload, \
    properties";

/// Binary `COPY` rows of `analytics_events` (no escaping: a header, then per row a field
/// count and length-prefixed fields; jsonb is a version byte and the JSON text, serialized
/// straight into the buffer).
#[derive(Debug)]
pub struct CopyEncoder {
    buf: Vec<u8>,
}

impl Default for CopyEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl CopyEncoder {
    /// An encoder holding the binary `COPY` header.
    pub fn new() -> Self {
        let mut buf = Vec::with_capacity(1 << 16);
        buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        buf.extend_from_slice(&0i32.to_be_bytes());
        buf.extend_from_slice(&0i32.to_be_bytes());
        Self { buf }
    }

    /// Appends one row.
    pub fn push(&mut self, e: &Event) -> Result<()> {
        self.buf.extend_from_slice(&16i16.to_be_bytes());
        self.text(Some(e.project.as_str()));
        self.field(e.id.0.as_bytes());
        self.text(Some(e.kind.as_str()));
        self.timestamp(e.occurred_at);
        self.timestamp(e.received_at);
        self.text(Some(e.correlation_id.as_str()));
        self.text(e.user_id.as_deref());
        self.text(e.session_id.as_deref());
        self.text(e.source.as_deref());
        self.field(&e.sample_rate.to_bits().to_be_bytes());
        self.text(e.provider());
        self.text(e.route());
        self.text(e.collection());
        self.text(e.status().as_deref());
        self.jsonb(&e.payload)?;
        self.jsonb(&e.properties)
    }

    /// The complete `COPY` data.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
        self.buf
    }

    fn field(&mut self, bytes: &[u8]) {
        let len = i32::try_from(bytes.len()).unwrap_or(i32::MAX);
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(bytes);
    }

    fn text(&mut self, v: Option<&str>) {
        match v {
            Some(s) => self.field(s.as_bytes()),
            None => self.buf.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }

    fn timestamp(&mut self, t: DateTime<Utc>) {
        self.field(&(t.timestamp_micros() - PG_EPOCH_OFFSET_MICROS).to_be_bytes());
    }

    fn jsonb(&mut self, v: &impl serde::Serialize) -> Result<()> {
        let at = self.buf.len();
        self.buf.extend_from_slice(&0i32.to_be_bytes());
        self.buf.push(1);
        serde_json::to_writer(&mut self.buf, v)
            .map_err(|e| Error::Internal(format!("jsonb encoding: {e}")))?;
        let len = i32::try_from(self.buf.len() - at - 4).unwrap_or(i32::MAX);
        self.buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
        Ok(())
    }
}

/// The baseline table `bench_copy` on a migrated database, written with binary `COPY`.
#[derive(Debug, Clone)]
pub struct RawCopy {
    pool: PgPool,
}

impl RawCopy {
    /// Creates `bench_copy` (like `analytics_events`, with the same indexes) and its
    /// partitions for `days` on the database of `pool`, which must hold the store's schema.
    pub async fn create(pool: PgPool, days: &[NaiveDate]) -> Result<Self> {
        let mut ddl = vec![
            "CREATE TABLE bench_copy (LIKE analytics_events INCLUDING ALL) \
             PARTITION BY RANGE (occurred_at)"
                .to_owned(),
        ];
        for idx in [
            "(project, kind, occurred_at)",
            "(project, provider, occurred_at) WHERE provider IS NOT NULL",
            "(project, route, occurred_at) WHERE route IS NOT NULL",
            "(project, collection, occurred_at) WHERE collection IS NOT NULL",
            "(correlation_id)",
        ] {
            ddl.push(format!("CREATE INDEX ON bench_copy {idx}"));
        }
        let mut unique = days.to_vec();
        unique.sort_unstable();
        unique.dedup();
        for day in unique {
            let next = day.succ_opt().unwrap_or(day);
            ddl.push(format!(
                "CREATE TABLE bench_copy_{} PARTITION OF bench_copy \
                 FOR VALUES FROM ('{day} 00:00:00+00') TO ('{next} 00:00:00+00')",
                day.format("%Y%m%d")
            ));
        }
        for sql in ddl {
            sqlx::query(AssertSqlSafe(sql))
                .execute(&pool)
                .await
                .map_err(pg_error)?;
        }
        Ok(Self { pool })
    }

    /// Copies `events` into `bench_copy` in one `COPY` on one pooled connection.
    pub async fn write(&self, events: &[Event]) -> Result<()> {
        let mut enc = CopyEncoder::new();
        for e in events {
            enc.push(e)?;
        }
        self.write_encoded(enc.finish()).await
    }

    /// Copies rows already encoded by a [`CopyEncoder`].
    pub async fn write_encoded(&self, bytes: Vec<u8>) -> Result<()> {
        let mut conn = self.pool.acquire().await.map_err(pg_error)?;
        let mut copy = conn
            .copy_in_raw(&format!(
                "COPY bench_copy ({EVENT_COLUMNS}) FROM STDIN (FORMAT binary)"
            ))
            .await
            .map_err(pg_error)?;
        copy.send(bytes).await.map_err(pg_error)?;
        copy.finish().await.map_err(pg_error)?;
        Ok(())
    }
}
