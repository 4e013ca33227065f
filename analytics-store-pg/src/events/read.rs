//! Reading events back (filters + keyset pagination, lookup by id) and the dirty-hour
//! markers.

use analytics_core::error::Result;
use analytics_core::event::StoredEvent;
use analytics_core::ports::event_store::event_cursor;
use analytics_core::ports::{DirtyHour, EventFilter};
use analytics_core::{Event, EventId, Page, PageRequest, ProjectId};
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, Postgres, QueryBuilder};

use crate::PgStore;
use crate::error::{corrupt, pg_error};
use crate::sql::{col, push_page, to_i64, to_u64};

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

impl PgStore {
    pub(crate) async fn read_events(
        &self,
        filter: &EventFilter,
        page: &PageRequest,
    ) -> Result<Page<Event>> {
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!(
            "SELECT {READ_COLUMNS} FROM analytics_events WHERE TRUE"
        ));
        if let Some(p) = &filter.project {
            q.push(" AND project = ").push_bind(p.as_str().to_owned());
        }
        if !filter.kinds.is_empty() {
            let kinds: Vec<String> = filter.kinds.iter().map(|k| k.as_str().to_owned()).collect();
            q.push(" AND kind = ANY(").push_bind(kinds).push(")");
        }
        if let Some(r) = &filter.range {
            q.push(" AND occurred_at >= ").push_bind(r.start());
            q.push(" AND occurred_at < ").push_bind(r.end());
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
        push_page(&mut q, "occurred_at", page);
        let rows = q
            .build()
            .fetch_all(self.pool_ref())
            .await
            .map_err(pg_error)?;
        let items = rows
            .iter()
            .map(event_from_row)
            .collect::<Result<Vec<_>>>()?;
        Ok(Page::from_overfetch(items, page, event_cursor))
    }

    pub(crate) async fn read_event(
        &self,
        project: &ProjectId,
        id: EventId,
    ) -> Result<Option<Event>> {
        // The dedup key says which day (partition) holds the event; the primary key then
        // finds it.
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {READ_COLUMNS} FROM analytics_events \
             WHERE project = $1 AND id = $2 AND occurred_at = ( \
                 SELECT occurred_at FROM analytics_event_ids WHERE project = $1 AND id = $2)"
        )))
        .bind(project.as_str())
        .bind(id.0)
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
        let done = sqlx::query(
            "DELETE FROM rollup_dirty_hours d \
             USING UNNEST($1::timestamptz[], $2::text[], $3::int8[]) AS c(hour, project, version) \
             WHERE d.hour = c.hour AND d.project = c.project AND d.version = c.version",
        )
        .bind(at)
        .bind(projects)
        .bind(versions)
        .execute(self.pool_ref())
        .await
        .map_err(pg_error)?;
        Ok(done.rows_affected())
    }
}
