//! `write_batch`: idempotent, atomic batch inserts of raw events.
//!
//! 1. Duplicates inside the batch are settled in Rust (the first occurrence wins), and every
//!    row is encoded and checked (NUL characters) before the database is touched: a bad
//!    event fails the whole batch with `Invalid` naming its position and field.
//! 2. The day partitions the batch needs are created if missing (a separate short
//!    transaction, see `partitions.rs`).
//! 3. One statement per chunk of rows, all chunks in one transaction: the rows arrive as
//!    one array per column (`UNNEST`, so the 65535 bind-parameter limit never applies: 18
//!    parameters whatever the batch size); the statement inserts the dedup keys
//!    (`ON CONFLICT DO NOTHING RETURNING`), inserts the events whose key was new, bumps the
//!    dirty-hour markers of those events, and returns the batch positions it inserted.
//!
//! Keys and markers are inserted sorted by key, so concurrent batches that share keys wait
//! for each other instead of deadlocking. Binary `COPY` into a temporary staging table was
//! measured against this and lost (see `docs/stores/postgres.md`).

use std::collections::{BTreeSet, HashSet};

use analytics_core::Event;
use analytics_core::error::{Error, Result};
use analytics_core::ports::{WriteOutcome, WriteReport};
use sqlx::PgConnection;

use super::partitions::day_of;
use super::rows::EventColumns;
use crate::PgStore;
use crate::error::{is_missing_partition, pg_error};

/// Dedup, insert and mark one chunk; returns the `ord` (batch position) of each inserted row.
const INSERT_SQL: &str = "\
WITH input AS MATERIALIZED ( \
    SELECT * FROM UNNEST($1::int4[], $2::text[], $3::uuid[], $4::text[], $5::timestamptz[], \
        $6::timestamptz[], $7::text[], $8::text[], $9::text[], $10::text[], $11::float8[], \
        $12::text[], $13::text[], $14::text[], $15::text[], $16::text[], $17::text[], \
        $18::timestamptz[]) \
    AS t(ord, project, id, kind, occurred_at, received_at, correlation_id, user_id, \
        session_id, source, sample_rate, provider, route, collection, status, payload, \
        properties, hour) \
), \
new_ids AS ( \
    INSERT INTO analytics_event_ids (project, id, occurred_at) \
    SELECT project, id, occurred_at FROM input ORDER BY project, id \
    ON CONFLICT DO NOTHING \
    RETURNING project, id \
), \
fresh AS MATERIALIZED ( \
    SELECT s.ord, s.project, s.hour FROM input s \
    JOIN new_ids n ON n.project = s.project AND n.id = s.id \
), \
ins AS ( \
    INSERT INTO analytics_events (project, id, kind, occurred_at, received_at, \
        correlation_id, user_id, session_id, source, sample_rate, provider, route, \
        collection, status, payload, properties) \
    SELECT s.project, s.id, s.kind, s.occurred_at, s.received_at, s.correlation_id, \
        s.user_id, s.session_id, s.source, s.sample_rate, s.provider, s.route, \
        s.collection, s.status, s.payload::jsonb, s.properties::jsonb \
    FROM input s JOIN new_ids n ON n.project = s.project AND n.id = s.id \
), \
dirty AS ( \
    INSERT INTO rollup_dirty_hours (hour, project, version) \
    SELECT h.hour, h.project, nextval('rollup_dirty_version_seq') \
    FROM (SELECT DISTINCT hour, project FROM fresh) h \
    ORDER BY h.hour, h.project \
    ON CONFLICT (hour, project) DO UPDATE SET version = EXCLUDED.version \
) \
SELECT ord FROM fresh";

impl PgStore {
    pub(crate) async fn write_events(&self, events: &[Event]) -> Result<WriteReport> {
        let mut outcomes = vec![WriteOutcome::Duplicate; events.len()];
        if events.is_empty() {
            return Ok(WriteReport { outcomes });
        }
        // First occurrence of each (project, id) in the batch.
        let mut seen = HashSet::with_capacity(events.len());
        let unique: Vec<usize> = (0..events.len())
            .filter(|&i| seen.insert((events[i].project.as_str(), events[i].id.0)))
            .collect();
        let chunk = self.inner.options.write_chunk_rows.max(1);
        let mut chunks = Vec::with_capacity(unique.len().div_ceil(chunk));
        for part in unique.chunks(chunk) {
            let mut cols = EventColumns::with_capacity(part.len());
            for &i in part {
                cols.push(i, &events[i])?;
            }
            chunks.push(cols);
        }
        let days: BTreeSet<_> = unique
            .iter()
            .map(|&i| day_of(events[i].occurred_at))
            .collect();

        self.ensure_partitions(&days).await?;
        let inserted = match self.insert_chunks(&chunks).await {
            Err(e) if is_missing_partition(&e) => {
                // Another process dropped a partition this one had cached: look again.
                self.forget_partitions();
                self.ensure_partitions(&days).await?;
                self.insert_chunks(&chunks).await.map_err(pg_error)?
            }
            other => other.map_err(pg_error)?,
        };
        for ord in inserted {
            let slot = usize::try_from(ord)
                .ok()
                .and_then(|i| outcomes.get_mut(i))
                .ok_or_else(|| Error::Internal(format!("write returned unknown row {ord}")))?;
            *slot = WriteOutcome::Inserted;
        }
        Ok(WriteReport { outcomes })
    }

    /// Runs the chunks in one transaction; returns the batch positions inserted.
    async fn insert_chunks(&self, chunks: &[EventColumns<'_>]) -> Result<Vec<i32>, sqlx::Error> {
        if let [only] = chunks {
            // One statement is a transaction of its own: no BEGIN/COMMIT round trips.
            let mut conn = self.pool_ref().acquire().await?;
            return insert_chunk(&mut conn, only).await;
        }
        let mut tx = self.pool_ref().begin().await?;
        let mut inserted = Vec::new();
        for cols in chunks {
            inserted.extend(insert_chunk(&mut tx, cols).await?);
        }
        tx.commit().await?;
        Ok(inserted)
    }
}

async fn insert_chunk(
    conn: &mut PgConnection,
    cols: &EventColumns<'_>,
) -> Result<Vec<i32>, sqlx::Error> {
    sqlx::query_scalar(INSERT_SQL)
        .bind(&cols.ord)
        .bind(&cols.project)
        .bind(&cols.id)
        .bind(&cols.kind)
        .bind(&cols.occurred_at)
        .bind(&cols.received_at)
        .bind(&cols.correlation_id)
        .bind(&cols.user_id)
        .bind(&cols.session_id)
        .bind(&cols.source)
        .bind(&cols.sample_rate)
        .bind(&cols.provider)
        .bind(&cols.route)
        .bind(&cols.collection)
        .bind(&cols.status)
        .bind(&cols.payload)
        .bind(&cols.properties)
        .bind(&cols.hour)
        .fetch_all(&mut *conn)
        .await
}
