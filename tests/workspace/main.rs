//! Workspace-wide tests: the architecture rules that no single crate can check, and the
//! services the test script starts.

mod architecture;
mod services;
