//! Runnable examples of embedding the analytics crates in a Rust service: `embedded.rs`
//! (the core and a store), `shop.rs` (a poem service with the analytics routes and request
//! recording, see [`shop_service`]), `webhook_notifier.rs` (a custom notification channel,
//! see [`webhook`]) and `rollup_spec.rs` (a custom rollup metric).

pub mod shop_service;
pub mod webhook;
