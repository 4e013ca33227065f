//! The `analytics-server` binary: telemetry, command line, then the chosen command.

use clap::Parser as _;
use tracing_subscriber::EnvFilter;

// Ingest allocates and frees many small strings and maps per event; under load glibc's
// allocator took over a third of the server's CPU (docs/PERFORMANCE.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    analytics_server::cli::run(analytics_server::cli::Cli::parse()).await
}
