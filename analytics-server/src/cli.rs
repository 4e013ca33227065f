//! The command line: `serve` (default), `config show`, `migrate`, `token`, `api-key`,
//! `openapi`, `demo`, `retention`. Flags fall back to environment variables, then to the
//! configuration file (`crate::config`); this is the only place configuration is read.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use analytics_core::health::HealthThresholds;
use analytics_core::memory::MemoryStore;
use analytics_core::ports::Store;
use analytics_core::project::{ApiKeyRecord, ApiKeySecret, Project, ProjectSettings};
use analytics_core::{Clock, CollectorOptions, Error, ProjectId, SystemClock};
use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

use analytics_notify::{DispatcherOptions, Secret as NotifySecret};

use crate::api::openapi_spec;
use crate::auth::{JwtSettings, Role, SECRET_HINT, Secret, parse_ttl};
use crate::notify::NotifySettings;
use crate::startup::{Application, Settings, connect_store};
use crate::state::{AppState, ConnectionLimits, HttpLimits};

/// Analytics and alerting backend.
#[derive(Debug, Parser)]
#[command(name = "analytics-server", version, about)]
pub struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: Option<Command>,
    /// Every setting's effective value (secrets redacted), for `config show`.
    #[arg(skip)]
    effective: Vec<crate::config::Effective>,
}

impl Cli {
    /// The command line of this process with its configuration file (`--config` /
    /// `ANALYTICS_CONFIG`) layered under environment variables and flags; a usage error,
    /// `--help` and `--version` print and exit, as clap does.
    pub fn load() -> anyhow::Result<Self> {
        Self::load_from(std::env::args_os().collect(), true)
    }

    /// Like [`Cli::load`] over `args` (the program name first); with `exit_on_usage` false a
    /// usage error (also `--help`) is returned instead.
    pub fn load_from(args: Vec<std::ffi::OsString>, exit_on_usage: bool) -> anyhow::Result<Self> {
        use clap::{CommandFactory as _, FromArgMatches as _};
        let mut cmd = Self::command();
        let mut from_file = Default::default();
        if let Some(path) = crate::config::config_path(&args, |k| std::env::var_os(k)) {
            (cmd, from_file) = crate::config::apply_file(cmd, &path)?;
        }
        let matches = match cmd.try_get_matches_from_mut(args) {
            Ok(m) => m,
            Err(e) if exit_on_usage => e.exit(),
            Err(e) => return Err(e.into()),
        };
        let mut cli = Self::from_arg_matches(&matches)?;
        cli.effective = crate::config::effective(&cmd, &matches, &from_file);
        Ok(cli)
    }

    /// The log format setting (`ANALYTICS_LOG_FORMAT`).
    pub fn log_format(&self) -> crate::logging::LogFormat {
        self.common.log_format
    }
}

#[derive(Debug, Args)]
struct Common {
    /// A TOML file of settings (keys are the setting names of docs/CONFIGURATION.md),
    /// layered under environment variables and flags.
    #[arg(long, env = "ANALYTICS_CONFIG", global = true)]
    config: Option<std::path::PathBuf>,
    /// Log format: `auto` (human text on a terminal, JSON lines otherwise), `text` (never
    /// coloured unless stderr is a terminal) or `json`.
    #[arg(long, env = "ANALYTICS_LOG_FORMAT", global = true, value_enum,
          default_value_t = crate::logging::LogFormat::Auto)]
    log_format: crate::logging::LogFormat,
    /// Address to listen on.
    #[arg(
        long,
        env = "ANALYTICS_BIND",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    bind: String,
    /// Store: sqlite://FILE (created on first run), postgres://... or memory://.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://analytics.db",
        global = true,
        hide_env_values = true
    )]
    database_url: String,
    /// HS256 key for JWTs. Without one, a loopback server generates a dev key.
    #[arg(
        long,
        env = "ANALYTICS_JWT_SECRET",
        global = true,
        hide_env_values = true
    )]
    jwt_secret: Option<String>,
    /// Required JWT audience.
    #[arg(long, env = "ANALYTICS_JWT_AUDIENCE", global = true)]
    jwt_audience: Option<String>,
    /// Required JWT issuer.
    #[arg(long, env = "ANALYTICS_JWT_ISSUER", global = true)]
    jwt_issuer: Option<String>,
    /// Ingest batches written to the store at the same time (default: 4 on PostgreSQL, 2 on a
    /// SQLite file, 1 on SQLite in memory or with `synchronous=normal` or `extra`).
    #[arg(long, env = "ANALYTICS_INGEST_WRITERS", global = true)]
    ingest_writers: Option<usize>,
    /// Milliseconds a non-full ingest batch waits for more events (0: written as soon as a
    /// writer is free).
    #[arg(long, env = "ANALYTICS_INGEST_LINGER_MS", global = true,
          default_value_t = CollectorOptions::default().linger.as_millis() as u64)]
    ingest_linger_ms: u64,
    /// Seconds a verified API key is trusted without asking the database again (a revoked
    /// key keeps working this long in a running server); 0 asks every time.
    #[arg(long, env = "ANALYTICS_API_KEY_TTL_SECS", global = true,
          default_value_t = crate::state::DEFAULT_API_KEY_TTL.as_secs())]
    api_key_ttl_secs: u64,
    /// Most open HTTP connections; more clients wait in the accept backlog. Also capped by
    /// the process's open-files limit (raised to its hard limit at start).
    #[arg(long, env = "ANALYTICS_MAX_CONNECTIONS", global = true,
          default_value_t = ConnectionLimits::default().max_connections)]
    max_connections: usize,
    /// Seconds a client may take to send a request head (also the keep-alive wait).
    #[arg(long, env = "ANALYTICS_HEADER_READ_TIMEOUT_SECS", global = true,
          default_value_t = ConnectionLimits::default().header_read_timeout.as_secs())]
    header_read_timeout_secs: u64,
    /// Seconds a client may take to send a whole request body (408 after it).
    #[arg(long, env = "ANALYTICS_BODY_READ_TIMEOUT_SECS", global = true,
          default_value_t = HttpLimits::default().body_read_timeout.as_secs())]
    body_read_timeout_secs: u64,
    /// Seconds after which a connection with no request in flight and no traffic is closed.
    #[arg(long, env = "ANALYTICS_IDLE_TIMEOUT_SECS", global = true,
          default_value_t = ConnectionLimits::default().idle_timeout.as_secs())]
    idle_timeout_secs: u64,
    /// Prometheus text endpoint scraped for the live view of `health/overview` (default:
    /// this server's own `/metrics`).
    #[arg(long, env = "ANALYTICS_PROMETHEUS_URL", global = true)]
    prometheus_url: Option<String>,
    /// Redis for the dashboard summary cache and the ingest rate limits, shared by every
    /// replica (default: in-process).
    #[arg(long, env = "REDIS_URL", global = true)]
    redis_url: Option<String>,
    /// The secret that pseudonymous user ids (events without `user_id`) are keyed with;
    /// replicas must share it (default: random per process).
    #[arg(
        long,
        env = "ANALYTICS_USER_ID_KEY",
        global = true,
        hide_env_values = true
    )]
    user_id_key: Option<String>,
    /// `health/overview` says `degraded` above this error rate (a fraction).
    #[arg(long, env = "ANALYTICS_HEALTH_MAX_ERROR_RATE", global = true,
          default_value_t = HealthThresholds::default().max_error_rate)]
    health_max_error_rate: f64,
    /// `health/overview` says `degraded` above this p95 latency in milliseconds.
    #[arg(long, env = "ANALYTICS_HEALTH_MAX_P95_MS", global = true,
          default_value_t = HealthThresholds::default().max_p95_ms)]
    health_max_p95_ms: f64,
    /// Estimated USD per finished ML job for providers whose events report no cost:
    /// `provider=usd,provider=usd` (e.g. `huggingface=0.01,gemini=0.002`).
    #[arg(long, env = "ANALYTICS_ML_PRICES", global = true, default_value = "")]
    ml_prices: String,
    /// The business collections and their display names, `;`-separated, each `Name` or
    /// `slug=Name` (default `Black Rose;Love Hurts;Signature`).
    #[arg(long, env = "ANALYTICS_COLLECTIONS", global = true, default_value = "")]
    collections: String,
    /// Seconds between alert engine evaluations (1 to 60).
    #[arg(long, env = "ANALYTICS_ALERT_INTERVAL_SECS", global = true, default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=60))]
    alert_interval_secs: u64,
    #[command(flatten)]
    notify: NotifyArgs,
}

/// Notification channels and delivery (see "Notifications" in `docs/SERVER.md`).
#[derive(Debug, Args)]
struct NotifyArgs {
    /// Default Slack incoming webhook (https; a secret).
    #[arg(
        long,
        env = "SLACK_ANALYTICS_WEBHOOK",
        global = true,
        hide_env_values = true
    )]
    slack_webhook: Option<String>,
    /// Twilio account SID.
    #[arg(long, env = "TWILIO_ACCOUNT_SID", global = true)]
    twilio_account_sid: Option<String>,
    /// Twilio auth token (a secret).
    #[arg(long, env = "TWILIO_AUTH_TOKEN", global = true, hide_env_values = true)]
    twilio_auth_token: Option<String>,
    /// Sender number for SMS (E.164).
    #[arg(long, env = "TWILIO_FROM_NUMBER", global = true)]
    twilio_from_number: Option<String>,
    /// Twilio API base URL.
    #[arg(long, env = "TWILIO_API_BASE", global = true,
          default_value = crate::notify::TWILIO_DEFAULT_BASE)]
    twilio_api_base: String,
    /// SMTP server: smtp://host:port (STARTTLS when offered), smtp+starttls:// (STARTTLS
    /// required) or smtps:// (implicit TLS); user and password in the URL.
    #[arg(
        long,
        env = "ANALYTICS_SMTP_URL",
        global = true,
        hide_env_values = true
    )]
    smtp_url: Option<String>,
    /// Sender address of emails.
    #[arg(long, env = "ANALYTICS_SMTP_FROM", global = true)]
    smtp_from: Option<String>,
    /// Base URL of the admin UI, for the link in emails (`{url}/alerts/{id}`).
    #[arg(long, env = "ANALYTICS_PUBLIC_URL", global = true)]
    public_url: Option<String>,
    /// Allow http and loopback / private / link-local targets for webhooks and APIs (local
    /// development and tests only).
    #[arg(long, env = "ANALYTICS_ALLOW_PRIVATE_TARGETS", global = true, default_value_t = false,
          action = clap::ArgAction::Set)]
    allow_private_targets: bool,
    /// Seconds one provider call may take.
    #[arg(long, env = "ANALYTICS_NOTIFY_TIMEOUT_SECS", global = true,
          default_value_t = DispatcherOptions::default().call_timeout.as_secs())]
    notify_timeout_secs: u64,
    /// Seconds a claimed outbox entry stays hidden from other claimers (after a crash, an
    /// unrecorded delivery is retried once this passes).
    #[arg(long, env = "ANALYTICS_NOTIFY_LEASE_SECS", global = true,
          default_value_t = DispatcherOptions::default().lease.as_secs())]
    notify_lease_secs: u64,
    /// Milliseconds between outbox polls when nothing wakes the dispatcher.
    #[arg(long, env = "ANALYTICS_NOTIFY_POLL_MS", global = true,
          default_value_t = DispatcherOptions::default().poll_interval.as_millis() as u64)]
    notify_poll_ms: u64,
    /// Attempts per notification before it is given up.
    #[arg(long, env = "ANALYTICS_NOTIFY_MAX_ATTEMPTS", global = true,
          default_value_t = DispatcherOptions::default().retry.max_attempts)]
    notify_max_attempts: u32,
    /// Most SMS started per clock hour by this process (cost cap); more wait for the next
    /// hour. Unset: no cap.
    #[arg(long, env = "ANALYTICS_NOTIFY_SMS_HOURLY_CAP", global = true)]
    notify_sms_hourly_cap: Option<u32>,
}

impl NotifyArgs {
    fn settings(&self) -> NotifySettings {
        let defaults = DispatcherOptions::default();
        let timeout = Duration::from_secs(self.notify_timeout_secs.max(1));
        NotifySettings {
            slack_webhook: self.slack_webhook.clone().map(NotifySecret::new),
            twilio_account_sid: self.twilio_account_sid.clone(),
            twilio_auth_token: self.twilio_auth_token.clone().map(NotifySecret::new),
            twilio_from: self.twilio_from_number.clone(),
            twilio_api_base: Some(self.twilio_api_base.clone()),
            smtp_url: self.smtp_url.clone().map(NotifySecret::new),
            smtp_from: self.smtp_from.clone(),
            public_url: self.public_url.clone(),
            allow_private_targets: self.allow_private_targets,
            dispatcher: DispatcherOptions {
                call_timeout: timeout,
                // A lease shorter than a call would let another replica claim it mid-call.
                lease: Duration::from_secs(self.notify_lease_secs).max(timeout * 2),
                poll_interval: Duration::from_millis(self.notify_poll_ms.max(10)),
                retry: analytics_notify::RetryPolicy {
                    max_attempts: self.notify_max_attempts.max(1),
                    ..defaults.retry
                },
                hourly_caps: self
                    .notify_sms_hourly_cap
                    .map(|cap| (analytics_core::notification::Channel::Sms, cap))
                    .into_iter()
                    .collect(),
                ..defaults
            },
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve HTTP (the default).
    Serve,
    /// The configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Apply the database migrations and exit.
    Migrate,
    /// Print a signed JWT.
    Token {
        /// Role to grant (repeatable): admin, business_viewer, ingest.
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// Subject.
        #[arg(long)]
        sub: String,
        /// Lifetime (`90s`, `30m`, `1h`, `7d`; at most 10 years).
        #[arg(long, default_value = "1h")]
        ttl: String,
        /// Limit the token to this project (repeatable); without it the token may touch
        /// every project.
        #[arg(long = "project")]
        projects: Vec<String>,
    },
    /// Manage project API keys.
    ApiKey {
        #[command(subcommand)]
        command: ApiKeyCommand,
    },
    /// Set a project's raw retention in days (1 to 400; creates the project if needed).
    /// Ingest accepts events up to this age: raise it before backfilling history.
    Retention {
        /// Project slug.
        #[arg(long)]
        project: String,
        /// Days raw events are kept (and how old an ingested event may be).
        #[arg(long)]
        days: u32,
    },
    /// Print the OpenAPI document.
    Openapi,
    /// Fill a project with a realistic, reproducible month of API traffic (a diurnal cycle,
    /// ~20 routes, an error burst, a latency incident) and of the shop behind it (ML jobs
    /// on four providers, shopping sessions with drop-off, orders in three collections and
    /// two currencies, inventory), written through the store's batch path; re-running with
    /// the same seed adds nothing.
    Demo {
        /// Project slug.
        #[arg(long, default_value = "default")]
        project: String,
        /// Days of traffic ending now (rounded down to the hour).
        #[arg(long, default_value_t = 30)]
        days: u32,
        /// Average requests per hour.
        #[arg(long, default_value_t = 300)]
        per_hour: u32,
        /// Generator seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Send the data through this server's HTTP ingest API (`http://host:port`) instead
        /// of writing to `DATABASE_URL`; needs `--api-key`. The server's age rule applies:
        /// events older than the project's retention are rejected per event (raise it first
        /// with `analytics-server retention`, or use `--days 7`).
        #[arg(long, requires = "api_key")]
        url: Option<String>,
        /// The project's ingest API key (`ak_...`), with `--url`.
        #[arg(long, env = "ANALYTICS_API_KEY")]
        api_key: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration (flags > environment > file > defaults) as a TOML
    /// file, each value with its source; secrets are printed as `***`.
    Show,
}

#[derive(Debug, Subcommand)]
enum ApiKeyCommand {
    /// Create a key (and the project if needed); prints the secret once.
    Create {
        /// Project slug.
        #[arg(long)]
        project: String,
        /// A label.
        #[arg(long, default_value = "default")]
        name: String,
    },
    /// List a project's keys.
    List {
        /// Project slug.
        #[arg(long)]
        project: String,
    },
    /// Revoke a key by id.
    Revoke {
        /// Project slug.
        #[arg(long)]
        project: String,
        /// Key id.
        #[arg(long)]
        id: uuid::Uuid,
    },
}

fn is_loopback(bind: &str) -> bool {
    if let Ok(a) = bind.parse::<SocketAddr>() {
        return a.ip().is_loopback();
    }
    let host = bind.rsplit_once(':').map_or(bind, |(h, _)| h);
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl Common {
    fn jwt(&self, secret: Secret) -> JwtSettings {
        JwtSettings {
            audience: self.jwt_audience.clone(),
            issuer: self.jwt_issuer.clone(),
            ..JwtSettings::new(secret)
        }
    }

    fn required_jwt(&self) -> anyhow::Result<JwtSettings> {
        let secret = self.jwt_secret.clone().with_context(|| {
            format!("ANALYTICS_JWT_SECRET (or --jwt-secret) is required; {SECRET_HINT}")
        })?;
        let jwt = self.jwt(Secret::new(secret));
        jwt.check_secret()?;
        Ok(jwt)
    }
}

fn out(line: impl std::fmt::Display) -> anyhow::Result<()> {
    writeln!(std::io::stdout().lock(), "{line}").context("writing to stdout")
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let common = cli.common;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Config {
            command: ConfigCommand::Show,
        } => {
            write!(
                std::io::stdout().lock(),
                "{}",
                crate::config::render(&cli.effective)
            )
            .context("writing to stdout")?;
            Ok(())
        }
        Command::Serve => serve(common).await,
        Command::Migrate => {
            let store = connect_store(&common.database_url).await?;
            store.ping().await.context("store does not answer")?;
            out(format_args!("migrations applied ({})", store.backend()))
        }
        Command::Token {
            roles,
            sub,
            ttl,
            projects,
        } => {
            let jwt = common.required_jwt()?;
            let roles = roles
                .iter()
                .map(|r| r.parse::<Role>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(anyhow::Error::msg)?;
            let ttl = parse_ttl(&ttl).map_err(anyhow::Error::msg)?;
            let projects = projects
                .into_iter()
                .map(ProjectId::parse)
                .collect::<Result<Vec<_>, _>>()?;
            let scope = (!projects.is_empty()).then_some(projects.as_slice());
            let token =
                jwt.issue_scoped(&sub, &roles, scope, SystemClock.now().timestamp(), ttl)?;
            out(token)
        }
        Command::ApiKey { command } => {
            let store = connect_store(&common.database_url).await?;
            api_key(&*store, command).await
        }
        Command::Demo {
            project,
            days,
            per_hour,
            seed,
            url,
            api_key,
        } => {
            let project = ProjectId::parse(project).map_err(anyhow::Error::msg)?;
            let options = crate::demo::DemoOptions {
                project: project.clone(),
                end: analytics_core::Granularity::Hour.bucket_start(SystemClock.now()),
                days,
                per_hour,
                seed,
            };
            if let (Some(url), Some(key)) = (url, api_key) {
                let p = crate::demo::post(&url, &key, &options).await?;
                return out(format_args!(
                    "{} events sent to {url}: {} accepted, {} duplicates, {} rejected{}",
                    p.sent,
                    p.accepted,
                    p.duplicates,
                    p.rejected,
                    if p.rejected > 0 {
                        " (older than the project's retention: raise it with `analytics-server \
                         retention`, or send fewer --days)"
                    } else {
                        ""
                    }
                ));
            }
            let store = connect_store(&common.database_url).await?;
            let (generated, inserted) = crate::demo::fill(&*store, &options).await?;
            out(format_args!(
                "project {project}: {generated} events generated (api requests, ml jobs, \
                 sessions, orders, inventory), {inserted} new"
            ))
        }
        Command::Retention { project, days } => {
            let store = connect_store(&common.database_url).await?;
            let p = set_retention(&*store, ProjectId::parse(project)?, days).await?;
            out(format_args!(
                "project {} keeps raw events {} days (a running server applies it to \
                 ingest within {} s)",
                p.id,
                p.settings.retention_days,
                crate::age_limits::DEFAULT_AGE_LIMIT_TTL.as_secs()
            ))
        }
        Command::Openapi => {
            let state = AppState::new(
                Arc::new(MemoryStore::new()),
                JwtSettings::new(Secret::new("unused")),
                Default::default(),
                Default::default(),
            );
            let spec = openapi_spec(state.clone());
            state.collector.shutdown().await;
            out(spec)
        }
    }
}

async fn serve(common: Common) -> anyhow::Result<()> {
    let jwt = match &common.jwt_secret {
        Some(s) => {
            let jwt = common.jwt(Secret::new(s.clone()));
            jwt.check_secret()?;
            jwt
        }
        None if is_loopback(&common.bind) => {
            // 256 random bits from two v4 UUIDs (122 each), hex-encoded: 64 bytes.
            let secret = format!(
                "{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            );
            let jwt = common.jwt(Secret::new(secret));
            let token = jwt.issue(
                "dev-admin",
                &[Role::Admin],
                SystemClock.now().timestamp(),
                86_400,
            )?;
            eprintln!(
                "ANALYTICS_JWT_SECRET is not set: generated a development secret for this run \
                 (loopback only).\nAdmin token (valid 24 h):\n\n    {token}\n\n\
                 Use it as `Authorization: Bearer <token>`. Set ANALYTICS_JWT_SECRET and use \
                 `analytics-server token --role admin --sub you` for stable tokens."
            );
            jwt
        }
        _ => anyhow::bail!(
            "refusing to listen on non-loopback address {} without ANALYTICS_JWT_SECRET",
            common.bind
        ),
    };
    let mut settings = Settings::new(common.bind.clone(), common.database_url.clone(), jwt);
    settings.ingest_writers = common.ingest_writers;
    settings.collector.linger = Duration::from_millis(common.ingest_linger_ms);
    settings.api_key_ttl = Duration::from_secs(common.api_key_ttl_secs);
    settings.alert_interval = Duration::from_secs(common.alert_interval_secs);
    settings.limits.body_read_timeout = Duration::from_secs(common.body_read_timeout_secs.max(1));
    settings.connections.header_read_timeout =
        Duration::from_secs(common.header_read_timeout_secs.max(1));
    settings.connections.idle_timeout = Duration::from_secs(common.idle_timeout_secs.max(1));
    settings.connections.max_connections = connection_budget(common.max_connections);
    settings.prometheus_url = common.prometheus_url.clone();
    settings.redis_url = common.redis_url.clone().filter(|u| !u.trim().is_empty());
    settings.user_id_key = common
        .user_id_key
        .clone()
        .filter(|k| !k.trim().is_empty())
        .map(Secret::new);
    settings.notify = common.notify.settings();
    settings.health_thresholds = HealthThresholds {
        max_error_rate: common.health_max_error_rate,
        max_p95_ms: common.health_max_p95_ms,
    };
    settings.analytics = analytics_settings(&common)?;
    let app = Application::build(settings).await?;
    let backend = app.state().store.backend();
    let host = common.bind.rsplit_once(':').map_or("127.0.0.1", |(h, _)| h);
    tracing::info!(port = app.port(), backend, "listening");
    eprintln!(
        "analytics-server listening on http://{host}:{port} ({backend} store); console at \
         http://{host}:{port}/, API docs at http://{host}:{port}/docs",
        port = app.port()
    );
    app.run_until_stopped().await?;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// Raises the open-files limit to its hard limit and caps `wanted` connections so that the
/// database pool, the SQLite files and the listener still get descriptors.
/// The ML price table and the collections from `ANALYTICS_ML_PRICES` and
/// `ANALYTICS_COLLECTIONS` (empty: no prices; the default collections).
fn analytics_settings(common: &Common) -> anyhow::Result<crate::state::AnalyticsSettings> {
    let prices = analytics_core::ml::PriceTable::parse(&common.ml_prices, "ANALYTICS_ML_PRICES")
        .map_err(|e| anyhow::anyhow!("{}: {}", e.field, e.message))?;
    let collections = if common.collections.trim().is_empty() {
        analytics_core::business::Collections::default()
    } else {
        analytics_core::business::Collections::parse(&common.collections, "ANALYTICS_COLLECTIONS")
            .map_err(|e| anyhow::anyhow!("{}: {}", e.field, e.message))?
    };
    Ok(crate::state::AnalyticsSettings {
        prices,
        collections,
    })
}

fn connection_budget(wanted: usize) -> usize {
    const RESERVED: u64 = 128;
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            let cap = usize::try_from(limit.saturating_sub(RESERVED).max(16)).unwrap_or(usize::MAX);
            if wanted > cap {
                tracing::warn!(
                    wanted,
                    cap,
                    open_files_limit = limit,
                    "max connections lowered to fit the open-files limit"
                );
            }
            wanted.min(cap).max(1)
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read or raise the open-files limit");
            wanted.max(1)
        }
    }
}

/// Sets a project's raw retention (validated: 1 to `MAX_RETENTION_DAYS`), creating the
/// project with default settings first if it has no record.
pub async fn set_retention(
    store: &dyn Store,
    project: ProjectId,
    days: u32,
) -> anyhow::Result<Project> {
    let current = match store.get_project(&project).await {
        Ok(p) => p.settings,
        Err(Error::NotFound { .. }) => ProjectSettings::default(),
        Err(e) => return Err(e.into()),
    };
    let settings = ProjectSettings {
        retention_days: days,
        ..current
    };
    settings.validate()?;
    if let Err(Error::NotFound { .. }) = store.get_project(&project).await {
        let created = store
            .create_project(&Project {
                id: project.clone(),
                name: project.to_string(),
                settings: settings.clone(),
                created_at: SystemClock.now(),
            })
            .await;
        match created {
            Ok(()) | Err(Error::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(store.update_project_settings(&project, &settings).await?)
}

async fn api_key(store: &dyn Store, command: ApiKeyCommand) -> anyhow::Result<()> {
    let now = SystemClock.now();
    match command {
        ApiKeyCommand::Create { project, name } => {
            let project = ProjectId::parse(project)?;
            match store.get_project(&project).await {
                Ok(_) => {}
                Err(Error::NotFound { .. }) => {
                    store
                        .create_project(&Project {
                            id: project.clone(),
                            name: project.to_string(),
                            settings: ProjectSettings::default(),
                            created_at: now,
                        })
                        .await?;
                }
                Err(e) => return Err(e.into()),
            }
            let secret = ApiKeySecret::generate()?;
            let record = ApiKeyRecord {
                id: uuid::Uuid::new_v4(),
                project: project.clone(),
                name,
                prefix: secret.prefix(),
                hash: secret.hash(),
                created_at: now,
                revoked_at: None,
                last_used_at: None,
            };
            store.create_api_key(&record).await?;
            eprintln!(
                "created key {} for project {project}; the secret is shown once:",
                record.id
            );
            out(secret.expose())
        }
        ApiKeyCommand::List { project } => {
            let project = ProjectId::parse(project)?;
            for k in store.list_api_keys(&project).await? {
                let state = match k.revoked_at {
                    Some(t) => format!("revoked {}", t.to_rfc3339()),
                    None => "active".to_owned(),
                };
                out(format_args!(
                    "{}  {}…  {}  created {}  {state}",
                    k.id,
                    k.prefix,
                    k.name,
                    k.created_at.to_rfc3339()
                ))?;
            }
            Ok(())
        }
        ApiKeyCommand::Revoke { project, id } => {
            let project = ProjectId::parse(project)?;
            let keys = store.list_api_keys(&project).await?;
            anyhow::ensure!(
                keys.iter().any(|k| k.id == id),
                "project {project} has no key {id}"
            );
            let rec = store.revoke_api_key(id, now).await?;
            out(format_args!("revoked {} ({}…)", rec.id, rec.prefix))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn retention_is_set_within_its_bound() {
        let store = MemoryStore::new();
        let shop = ProjectId::parse("shop").unwrap();
        let p = set_retention(&store, shop.clone(), 90).await.unwrap();
        assert_eq!(p.settings.retention_days, 90);
        assert_eq!(p.settings.sample_rate, 1.0);
        let e = set_retention(&store, shop.clone(), 401).await.unwrap_err();
        assert!(e.to_string().contains("retention_days"), "{e}");
        let p = set_retention(&store, shop, 30).await.unwrap();
        assert_eq!(p.settings.retention_days, 30);
    }

    #[test]
    fn every_setting_is_in_the_configuration_reference() {
        use clap::CommandFactory as _;
        let doc = include_str!("../../docs/CONFIGURATION.md");
        let cmd = Cli::command();
        let mut seen = 0;
        for arg in cmd.get_arguments().filter(|a| a.is_global_set()) {
            let id = arg.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            seen += 1;
            let row = doc
                .lines()
                .find(|l| l.starts_with(&format!("| `{id}` |")))
                .unwrap_or_else(|| panic!("setting `{id}` has no row in docs/CONFIGURATION.md"));
            let long = arg.get_long().expect("every setting has a flag");
            assert!(
                row.contains(&format!("`--{long}`")),
                "{id}: flag --{long}: {row}"
            );
            let env = arg.get_env().expect("every setting has a variable");
            let env = env.to_string_lossy();
            assert!(
                row.contains(&format!("`{env}`")),
                "{id}: variable {env}: {row}"
            );
            for default in arg.get_default_values() {
                let default = default.to_string_lossy();
                assert!(
                    row.contains(&format!("`{default}`"))
                        || (default.is_empty() && row.contains("`\"\"`")),
                    "{id}: default {default:?} not in {row}"
                );
            }
            if arg.get_default_values().is_empty() {
                assert!(row.contains("(unset)"), "{id} has no default: {row}");
            }
        }
        assert!(seen >= 30, "only {seen} settings found");
    }

    #[test]
    fn loopback_binds_are_recognised() {
        assert!(is_loopback("127.0.0.1:8080"));
        assert!(is_loopback("[::1]:80"));
        assert!(is_loopback("localhost:8080"));
        assert!(!is_loopback("0.0.0.0:8080"));
        assert!(!is_loopback("10.1.2.3:8080"));
    }
}
