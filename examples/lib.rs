//! Runnable examples of embedding the analytics crates in a Rust service; see `embedded.rs`,
//! `shop.rs` (with [`shop_service`]), `webhook_notifier.rs` and `rollup_spec.rs`.

pub mod shop_service;
