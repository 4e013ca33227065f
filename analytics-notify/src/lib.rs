//! Notification delivery for the analytics backend: implementations of the core
//! [`analytics_core::ports::Notifier`] port for email ([`SmtpEmailNotifier`]), Slack incoming
//! webhooks ([`SlackNotifier`]), SMS through Twilio ([`TwilioSmsNotifier`]) and in-app
//! notifications ([`InAppNotifier`]), the SSRF guard every HTTP target goes through
//! ([`TargetPolicy`]), the retry rules ([`RetryPolicy`]) and the outbox [`Dispatcher`].
//!
//! It does not decide when to alert or whom to tell (that is the alert engine and its routing
//! in `analytics-core`, which write the outbox) and stores nothing itself (the outbox and the
//! in-app notifications go through core ports). It reads no environment: the server builds
//! the option structs.

pub mod dispatcher;
pub mod email;
mod http;
pub mod in_app;
pub mod retry;
pub mod secret;
pub mod slack;
pub mod target;
pub mod twilio;

pub use dispatcher::{Dispatcher, DispatcherOptions, DispatcherStats};
pub use email::{SmtpEmailNotifier, SmtpSettings};
pub use in_app::InAppNotifier;
pub use retry::RetryPolicy;
pub use secret::Secret;
pub use slack::SlackNotifier;
pub use target::TargetPolicy;
pub use twilio::{TwilioSettings, TwilioSmsNotifier};
