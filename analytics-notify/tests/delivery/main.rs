//! Delivery tests against real servers on loopback: wiremock for Slack and Twilio, a small
//! SMTP sink for email, the in-memory outbox for the dispatcher.

mod channels;
mod dispatch;
mod helpers;
mod smtp;
