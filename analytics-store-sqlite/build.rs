//! Build script: re-run `sqlx::migrate!` (rebuild the crate) when a migration file changes.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
