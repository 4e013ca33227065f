//! Runnable examples of embedding the analytics crates in a Rust service; see `embedded.rs`.
