//! `PreferenceStore`: notification preferences per user and per team.

use async_trait::async_trait;

use crate::error::Result;
use crate::notification::{NotificationPreferences, PreferenceSubject};

/// Preference persistence: one record per subject, replaced whole.
#[async_trait]
pub trait PreferenceStore: Send + Sync + std::fmt::Debug {
    /// The subject's preferences, if set.
    async fn preferences(
        &self,
        subject: &PreferenceSubject,
    ) -> Result<Option<NotificationPreferences>>;

    /// Sets (replaces) the subject's preferences.
    async fn put_preferences(&self, preferences: &NotificationPreferences) -> Result<()>;
}
