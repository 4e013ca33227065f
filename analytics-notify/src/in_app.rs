//! `InAppNotifier`: delivers a notification to a user by storing it through the core
//! `InAppStore`; the notifications routes read it back.

use std::sync::Arc;

use analytics_core::Clock;
use analytics_core::notification::{
    Channel, Delivered, InAppNotification, Notification, NotifyError, Recipient,
};
use analytics_core::ports::{InAppStore, Notifier};
use async_trait::async_trait;

/// In-app notifications through a store.
#[derive(Debug, Clone)]
pub struct InAppNotifier {
    store: Arc<dyn InAppStore>,
    clock: Arc<dyn Clock>,
}

impl InAppNotifier {
    /// A notifier writing to `store`, stamping `created_at` from `clock`.
    pub fn new(store: Arc<dyn InAppStore>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }
}

#[async_trait]
impl Notifier for InAppNotifier {
    fn channel(&self) -> Channel {
        Channel::InApp
    }

    async fn send(&self, n: &Notification) -> Result<Delivered, NotifyError> {
        let Recipient::User(user) = &n.recipient else {
            return Err(NotifyError::Permanent(format!(
                "in-app cannot reach recipient {}",
                n.recipient.label()
            )));
        };
        let item = InAppNotification {
            id: n.id,
            user: user.clone(),
            alert_id: n.alert_id,
            severity: n.severity,
            title: n.title.clone(),
            body: n.body.clone(),
            created_at: self.clock.now(),
            read_at: None,
        };
        // Idempotent on the id: a repeated delivery stores nothing new.
        self.store
            .create_in_app(&item)
            .await
            .map_err(|e| NotifyError::Transient(format!("in-app store: {e}")))?;
        Ok(Delivered {
            provider_id: Some(n.id.to_string()),
        })
    }
}
