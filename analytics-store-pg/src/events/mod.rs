//! Raw events: `EventSink` (idempotent batch writes) and `EventStore` (filtered, paged
//! reads; retention; dirty-hour markers) on the day-partitioned `analytics_events` table.

mod partitions;
mod read;
mod rows;
mod write;

use analytics_core::error::Result;
use analytics_core::ports::{DirtyHour, EventFilter, EventSink, EventStore, WriteReport};
use analytics_core::{Event, EventId, Page, PageRequest, ProjectId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::PgStore;

#[async_trait]
impl EventSink for PgStore {
    async fn write_batch(&self, events: &[Event]) -> Result<WriteReport> {
        self.write_events(events).await
    }
}

#[async_trait]
impl EventStore for PgStore {
    async fn query_events(&self, filter: &EventFilter, page: &PageRequest) -> Result<Page<Event>> {
        self.read_events(filter, page).await
    }

    async fn get_event(&self, project: &ProjectId, id: EventId) -> Result<Option<Event>> {
        self.read_event(project, id).await
    }

    async fn delete_events_before(
        &self,
        project: Option<&ProjectId>,
        before: DateTime<Utc>,
    ) -> Result<u64> {
        self.delete_events(project, before).await
    }

    async fn dirty_hours(&self, limit: usize) -> Result<Vec<DirtyHour>> {
        self.read_dirty_hours(limit).await
    }

    async fn clear_dirty_hours(&self, hours: &[DirtyHour]) -> Result<u64> {
        self.clear_dirty(hours).await
    }

    async fn hour_versions(
        &self,
        project: &ProjectId,
        hours: &[DateTime<Utc>],
    ) -> Result<Vec<(DateTime<Utc>, u64)>> {
        self.read_hour_versions(project, hours).await
    }
}
