//! The `analytics-server` binary: command line (with the configuration file), logging, then
//! the chosen command.

// Ingest allocates and frees many small strings and maps per event; under load glibc's
// allocator took over a third of the server's CPU (docs/PERFORMANCE.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = analytics_server::cli::Cli::load()?;
    analytics_server::logging::init(cli.log_format());
    analytics_server::cli::run(cli).await
}
