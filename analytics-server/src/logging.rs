//! Log output of the binary: human-readable text on a terminal, JSON lines otherwise (or on
//! request), and never ANSI colour codes when stderr is not a terminal.

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

/// `ANALYTICS_LOG_FORMAT` / `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Text when stderr is a terminal, JSON otherwise.
    Auto,
    /// Human-readable text (coloured only on a terminal).
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// Whether logs are JSON when stderr is (`terminal`) or is not a terminal.
    pub fn is_json(self, terminal: bool) -> bool {
        match self {
            Self::Auto => !terminal,
            Self::Text => false,
            Self::Json => true,
        }
    }
}

/// Installs the global subscriber writing to stderr (level from `RUST_LOG`, default
/// `info`).
pub fn init(format: LogFormat) {
    let terminal = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(terminal);
    if format.is_json(terminal) {
        builder.json().init();
    } else {
        builder.init();
    }
}
