//! `EventStore`: reading raw events back (filters + cursor pagination), retention, and the
//! dirty-hour markers that tell the rollup scheduler which buckets changed.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::event::{Event, EventKind};
use crate::ids::{EventId, ProjectId};
use crate::page::{Cursor, Page, PageRequest};
use crate::time::TimeRange;

/// Which events to list. Every set field must match; unset fields match everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventFilter {
    /// Only this project.
    pub project: Option<ProjectId>,
    /// Only these kinds (empty = all).
    pub kinds: Vec<EventKind>,
    /// Only events that occurred in this range.
    pub range: Option<TimeRange>,
    /// ML provider.
    pub provider: Option<String>,
    /// Route template.
    pub route: Option<String>,
    /// Collection.
    pub collection: Option<String>,
    /// Status label (see [`Event::status`]).
    pub status: Option<String>,
    /// Correlation id.
    pub correlation_id: Option<String>,
    /// User.
    pub user_id: Option<String>,
    /// Session.
    pub session_id: Option<String>,
}

impl EventFilter {
    /// Whether `e` passes the filter (the reference semantics every store implements).
    pub fn matches(&self, e: &Event) -> bool {
        self.project.as_ref().is_none_or(|p| &e.project == p)
            && (self.kinds.is_empty() || self.kinds.contains(&e.kind))
            && self.range.is_none_or(|r| r.contains(e.occurred_at))
            && self
                .provider
                .as_deref()
                .is_none_or(|v| e.provider() == Some(v))
            && self.route.as_deref().is_none_or(|v| e.route() == Some(v))
            && self
                .collection
                .as_deref()
                .is_none_or(|v| e.collection() == Some(v))
            && self
                .status
                .as_deref()
                .is_none_or(|v| e.status().as_deref() == Some(v))
            && self
                .correlation_id
                .as_deref()
                .is_none_or(|v| e.correlation_id.as_str() == v)
            && self
                .user_id
                .as_deref()
                .is_none_or(|v| e.user_id.as_deref() == Some(v))
            && self
                .session_id
                .as_deref()
                .is_none_or(|v| e.session_id.as_deref() == Some(v))
    }
}

/// The pagination key of an event: `(occurred_at, id)`.
pub fn event_cursor(e: &Event) -> Cursor {
    Cursor {
        at: e.occurred_at,
        id: e.id.0,
    }
}

/// An hour bucket whose raw events changed since it was last rolled up.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DirtyHour {
    /// The project.
    pub project: ProjectId,
    /// Start of the hour.
    pub hour: DateTime<Utc>,
    /// Changed on every insert into the hour, and never reused for that hour (not even
    /// after a clear); clearing only succeeds for the version read.
    pub version: u64,
}

/// Raw event reads and retention.
#[async_trait]
pub trait EventStore: Send + Sync + std::fmt::Debug {
    /// Lists events matching `filter`, newest first by `(occurred_at, id)`.
    /// Pages never skip or repeat an event, also when events are inserted between pages.
    async fn query_events(&self, filter: &EventFilter, page: &PageRequest) -> Result<Page<Event>>;

    /// One event by `(project, id)`.
    async fn get_event(&self, project: &ProjectId, id: EventId) -> Result<Option<Event>>;

    /// Deletes events that occurred before `before` (in `project`, or in all projects) and
    /// returns how many were deleted. Dirty markers of the deleted hours are left alone.
    async fn delete_events_before(
        &self,
        project: Option<&ProjectId>,
        before: DateTime<Utc>,
    ) -> Result<u64>;

    /// Up to `limit` dirty hours, oldest hour first.
    async fn dirty_hours(&self, limit: usize) -> Result<Vec<DirtyHour>>;

    /// Clears the given markers, each only if its version is still the one read (so an
    /// insert that raced with the rollup keeps its hour dirty). Returns how many cleared.
    /// Stores that answer [`EventStore::hour_versions`] remember the cleared version.
    async fn clear_dirty_hours(&self, hours: &[DirtyHour]) -> Result<u64>;

    /// The current version of each of `project`'s `hours` that has one: the dirty marker's
    /// version while the hour is dirty, else the version its marker had when it was last
    /// cleared. Every insert into an hour gives it a version it never had, so an unchanged
    /// version means the hour's raw events are the ones read under it (readers cache whole
    /// hours on it). Hours without a known version are left out; the default knows none,
    /// which only turns that caching off.
    async fn hour_versions(
        &self,
        project: &ProjectId,
        hours: &[DateTime<Utc>],
    ) -> Result<Vec<(DateTime<Utc>, u64)>> {
        let _ = (project, hours);
        Ok(Vec::new())
    }
}
