//! `InAppStore`: notifications shown to users in the admin UI.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::Result;
use crate::ids::UserId;
use crate::notification::InAppNotification;
use crate::page::{Cursor, Page, PageRequest};

/// In-app notification persistence.
///
/// Contract: `create_in_app` is idempotent on the id; listings are newest first by
/// `(created_at, id)`; a user can only mark their own notifications read, and marking is
/// idempotent (the first read time is kept).
#[async_trait]
pub trait InAppStore: Send + Sync + std::fmt::Debug {
    /// Stores a notification; returns whether it was new.
    async fn create_in_app(&self, notification: &InAppNotification) -> Result<bool>;

    /// A user's notifications.
    async fn list_in_app(
        &self,
        user: &UserId,
        unread_only: bool,
        page: &PageRequest,
    ) -> Result<Page<InAppNotification>>;

    /// One of a user's notifications (`None` when it does not exist or is another user's).
    async fn get_in_app(&self, user: &UserId, id: Uuid) -> Result<Option<InAppNotification>>;

    /// Marks some of a user's notifications read; returns how many changed.
    async fn mark_in_app_read(&self, user: &UserId, ids: &[Uuid], at: DateTime<Utc>)
    -> Result<u64>;

    /// How many unread notifications a user has.
    async fn unread_in_app(&self, user: &UserId) -> Result<u64>;
}

/// The pagination key of an in-app notification: `(created_at, id)`, newest first.
pub fn in_app_cursor(n: &InAppNotification) -> Cursor {
    Cursor {
        at: n.created_at,
        id: n.id,
    }
}
