//! Reading events back (filters + keyset pagination, lookup by id) and the dirty-hour
//! markers.

use analytics_core::error::Result;
use analytics_core::event::StoredEvent;
use analytics_core::ports::event_store::event_cursor;
use analytics_core::ports::{DirtyHour, EventFilter};
use analytics_core::{Event, EventId, Page, PageRequest, ProjectId};
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, Postgres, QueryBuilder};

use super::partitions::{day_end, day_start};
use crate::PgStore;
use crate::error::{corrupt, pg_error};
use crate::sql::{col, push_keyset, to_i64, to_u64};

const READ_COLUMNS: &str = "project, id, kind, occurred_at, received_at, correlation_id, \
    user_id, session_id, source, sample_rate, payload, properties";

fn event_from_row(row: &PgRow) -> Result<Event> {
    const WHAT: &str = "event";
    let stored = StoredEvent {
        id: col(row, "id", WHAT)?,
        project: col(row, "project", WHAT)?,
        kind: col(row, "kind", WHAT)?,
        occurred_at: col(row, "occurred_at", WHAT)?,
        received_at: col(row, "received_at", WHAT)?,
        correlation_id: col(row, "correlation_id", WHAT)?,
        user_id: col(row, "user_id", WHAT)?,
        session_id: col(row, "session_id", WHAT)?,
        source: col(row, "source", WHAT)?,
        sample_rate: col(row, "sample_rate", WHAT)?,
        payload: col(row, "payload", WHAT)?,
        properties: col(row, "properties", WHAT)?,
    };
    Event::from_stored(stored).map_err(|e| corrupt(WHAT, e))
}

/// Most day partitions one listing statement reads. The planner locks every partition a
/// statement may touch, with all its indexes, until the statement ends: a listing over
/// every partition of a long retention (~7 locks a day) would fill the server's shared
/// lock table (`max_locks_per_transaction` x connections) and fail with `53200 out of
/// shared memory`.
const MAX_WINDOW_DAYS: usize = 8;

impl PgStore {
    /// Lists newest first, a window of day partitions at a time: the newest day first,
    /// then 2, 4 and at most [`MAX_WINDOW_DAYS`] days per statement, each statement bounded
    /// to its days' time range (planned for its parameters, so pruning leaves only those
    /// partitions), until the page is full or no older partition is left.
    pub(crate) async fn read_events(
        &self,
        filter: &EventFilter,
        page: &PageRequest,
    ) -> Result<Page<Event>> {
        let lo = filter.range.map(|r| r.start());
        let hi = filter.range.map(|r| r.end());
        let cursor_at = page.cursor.as_ref().map(|c| c.at);
        // Days that can hold rows of this page, newest first.
        let days: Vec<NaiveDate> = self
            .attached_partitions()
            .await?
            .into_iter()
            .rev()
            .map(|(_, day)| day)
            .filter(|d| {
                lo.is_none_or(|lo| day_end(*d) > lo)
                    && hi.is_none_or(|hi| day_start(*d) < hi)
                    && cursor_at.is_none_or(|at| day_start(*d) <= at)
            })
            .collect();
        let want = page.limit_usize() + 1;
        let mut items = Vec::new();
        let (mut next, mut width) = (0, 1);
        while next < days.len() && items.len() < want {
            let window = &days[next..(next + width).min(days.len())];
            let newest = window[0];
            let oldest = window[window.len() - 1];
            let start = lo.map_or(day_start(oldest), |lo| lo.max(day_start(oldest)));
            let end = hi.map_or(day_end(newest), |hi| hi.min(day_end(newest)));
            let limit = i64::try_from(want - items.len()).unwrap_or(i64::MAX);
            items.extend(self.read_window(filter, page, start, end, limit).await?);
            next += window.len();
            width = (width * 2).min(MAX_WINDOW_DAYS);
        }
        Ok(Page::from_overfetch(items, page, event_cursor))
    }

    /// One statement of a listing: the rows of `[start, end)` matching `filter`, after the
    /// page's cursor, newest first, at most `limit`.
    async fn read_window(
        &self,
        filter: &EventFilter,
        page: &PageRequest,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Event>> {
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!(
            "SELECT {READ_COLUMNS} FROM analytics_events WHERE occurred_at >= "
        ));
        q.push_bind(start);
        q.push(" AND occurred_at < ").push_bind(end);
        if let Some(p) = &filter.project {
            q.push(" AND project = ").push_bind(p.as_str().to_owned());
        }
        if !filter.kinds.is_empty() {
            let kinds: Vec<String> = filter.kinds.iter().map(|k| k.as_str().to_owned()).collect();
            q.push(" AND kind = ANY(").push_bind(kinds).push(")");
        }
        for (column, value) in [
            ("provider", &filter.provider),
            ("route", &filter.route),
            ("collection", &filter.collection),
            ("status", &filter.status),
            ("correlation_id", &filter.correlation_id),
            ("user_id", &filter.user_id),
            ("session_id", &filter.session_id),
        ] {
            if let Some(v) = value {
                q.push(format_args!(" AND {column} = "))
                    .push_bind(v.clone());
            }
        }
        push_keyset(&mut q, "occurred_at", page.cursor.as_ref(), limit);
        // Not a cached prepared statement: after a few runs PostgreSQL may switch one to a
        // generic plan, which prunes only at run time and locks every partition first.
        let rows = q
            .build()
            .persistent(false)
            .fetch_all(self.pool_ref())
            .await
            .map_err(pg_error)?;
        rows.iter().map(event_from_row).collect()
    }

    pub(crate) async fn read_event(
        &self,
        project: &ProjectId,
        id: EventId,
    ) -> Result<Option<Event>> {
        // The dedup key says which day (partition) holds the event; a statement planned for
        // that time reads (and locks) only that partition.
        let at: Option<DateTime<Utc>> = sqlx::query_scalar(
            "SELECT occurred_at FROM analytics_event_ids WHERE project = $1 AND id = $2",
        )
        .bind(project.as_str())
        .bind(id.0)
        .fetch_optional(self.pool_ref())
        .await
        .map_err(pg_error)?;
        let Some(at) = at else {
            return Ok(None);
        };
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {READ_COLUMNS} FROM analytics_events \
             WHERE project = $1 AND id = $2 AND occurred_at = $3"
        )))
        .bind(project.as_str())
        .bind(id.0)
        .bind(at)
        .persistent(false)
        .fetch_optional(self.pool_ref())
        .await
        .map_err(pg_error)?;
        row.as_ref().map(event_from_row).transpose()
    }

    pub(crate) async fn read_dirty_hours(&self, limit: usize) -> Result<Vec<DirtyHour>> {
        let rows = sqlx::query(
            "SELECT hour, project, version FROM rollup_dirty_hours \
             ORDER BY hour, project LIMIT $1",
        )
        .bind(to_i64(limit as u64))
        .fetch_all(self.pool_ref())
        .await
        .map_err(pg_error)?;
        rows.iter()
            .map(|row| {
                const WHAT: &str = "dirty hour";
                let project: String = col(row, "project", WHAT)?;
                Ok(DirtyHour {
                    project: ProjectId::parse(project).map_err(|e| corrupt(WHAT, e))?,
                    hour: col(row, "hour", WHAT)?,
                    version: to_u64(col(row, "version", WHAT)?, WHAT)?,
                })
            })
            .collect()
    }

    pub(crate) async fn clear_dirty(&self, hours: &[DirtyHour]) -> Result<u64> {
        if hours.is_empty() {
            return Ok(0);
        }
        let at: Vec<DateTime<Utc>> = hours.iter().map(|h| h.hour).collect();
        let projects: Vec<&str> = hours.iter().map(|h| h.project.as_str()).collect();
        let versions: Vec<i64> = hours.iter().map(|h| to_i64(h.version)).collect();
        // One statement: the markers cleared and the versions they leave behind.
        let done = sqlx::query(
            "WITH gone AS ( \
                 DELETE FROM rollup_dirty_hours d \
                 USING UNNEST($1::timestamptz[], $2::text[], $3::int8[]) AS c(hour, project, version) \
                 WHERE d.hour = c.hour AND d.project = c.project AND d.version = c.version \
                 RETURNING d.hour, d.project, d.version) \
             INSERT INTO rollup_hour_versions (project, hour, version) \
             SELECT project, hour, version FROM gone \
             ON CONFLICT (project, hour) DO UPDATE \
             SET version = GREATEST(rollup_hour_versions.version, EXCLUDED.version)",
        )
        .bind(at)
        .bind(projects)
        .bind(versions)
        .execute(self.pool_ref())
        .await
        .map_err(pg_error)?;
        Ok(done.rows_affected())
    }

    pub(crate) async fn read_hour_versions(
        &self,
        project: &ProjectId,
        hours: &[DateTime<Utc>],
    ) -> Result<Vec<(DateTime<Utc>, u64)>> {
        if hours.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT h.hour, COALESCE(d.version, v.version) AS version \
             FROM UNNEST($2::timestamptz[]) AS h(hour) \
             LEFT JOIN rollup_dirty_hours d ON d.hour = h.hour AND d.project = $1 \
             LEFT JOIN rollup_hour_versions v ON v.project = $1 AND v.hour = h.hour \
             WHERE d.version IS NOT NULL OR v.version IS NOT NULL",
        )
        .bind(project.as_str())
        .bind(hours)
        .fetch_all(self.pool_ref())
        .await
        .map_err(pg_error)?;
        rows.iter()
            .map(|row| {
                const WHAT: &str = "hour version";
                Ok((
                    col(row, "hour", WHAT)?,
                    to_u64(col(row, "version", WHAT)?, WHAT)?,
                ))
            })
            .collect()
    }
}
