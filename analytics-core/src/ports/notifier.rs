//! `Notifier`: deliver one notification on one channel.

use async_trait::async_trait;

use crate::notification::{Channel, Delivered, Notification, NotifyError};

/// One delivery channel (email, Slack, SMS, in-app).
///
/// `send` makes one attempt; retries and backoff belong to the caller, which decides from
/// [`NotifyError::is_retryable`].
#[async_trait]
pub trait Notifier: Send + Sync + std::fmt::Debug {
    /// The channel this notifier serves.
    fn channel(&self) -> Channel;

    /// Attempts one delivery.
    async fn send(&self, notification: &Notification) -> Result<Delivered, NotifyError>;
}
