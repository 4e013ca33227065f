//! Notification delivery for the analytics backend: implementations of the core
//! [`analytics_core::ports::Notifier`] port for email (SMTP), Slack webhooks, SMS (Twilio
//! REST) and in-app notifications, plus severity routing, preferences and retries.
//!
//! It does not decide when to alert (that is the alert engine in `analytics-core`) and does
//! not store anything itself (in-app notifications go through the core `InAppStore` port).
//!
//! Status: the channel implementations are not written yet; the crate builds so that the
//! workspace layout and dependency direction are in place.
