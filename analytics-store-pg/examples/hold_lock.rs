//! Takes the singleton-job lock NAME on the PostgreSQL database URL and holds it until the
//! process is killed: prints `locked`, or `busy` and exits when another process holds it.
//! Run two at once to watch one of them win; kill the winner (even with `kill -9`) and the
//! lock is free again. (The integration test `lock` does the same with its own binary.)
//!
//! Usage: `hold_lock <database-url> <lock-name>`

use std::io::Write;

use analytics_core::ports::JobStore;
use analytics_store_pg::{PgStore, PgStoreOptions};
use anyhow::Context;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .context("usage: hold_lock <database-url> <lock-name>")?;
    let name = args
        .next()
        .context("usage: hold_lock <database-url> <lock-name>")?;
    let options = PgStoreOptions {
        max_connections: 1,
        ..PgStoreOptions::default()
    };
    let store = PgStore::connect(&url, options).await?;
    let mut out = std::io::stdout().lock();
    match store.try_lock(&name).await? {
        Some(_lease) => {
            writeln!(out, "locked")?;
            out.flush()?;
            drop(out);
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
            }
        }
        None => {
            writeln!(out, "busy")?;
            out.flush()?;
            Ok(())
        }
    }
}
