//! Startup: store selection from the database URL, `Application::build` (binds the
//! listener, port 0 allowed), and `run_until_stopped` with the background workers and
//! graceful shutdown (readiness 503, in-flight requests finish, the collector flushes).

use std::sync::Arc;
use std::time::Duration;

use analytics_core::health::{HealthThresholds, StoreOperation};
use analytics_core::memory::MemoryStore;
use analytics_core::ports::Store;
use analytics_core::rollup::scheduler::{LOCK_NAME, RollupScheduler, SchedulerOptions};
use analytics_core::rollup::spec::RollupSpecs;
use analytics_core::{AnalyticsEventCollector, CollectorOptions};
use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::build_app;
use crate::auth::JwtSettings;
use crate::realtime::{DEFAULT_BUDGET, PrometheusScrapeSource};
use crate::state::{AppState, ConnectionLimits, HealthContext, HttpLimits, record_store_call};

/// Everything the server needs; built by the binary from flags and environment. Its
/// `Debug` hides the database URL's password.
#[derive(Clone)]
pub struct Settings {
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    pub bind: String,
    /// `sqlite://...`, `postgres://...` or `memory://`.
    pub database_url: String,
    /// JWT verification.
    pub jwt: JwtSettings,
    /// Collector tuning (its `writers` is replaced by `ingest_writers`).
    pub collector: CollectorOptions,
    /// Ingest batches written at once; `None` takes the store's `write_concurrency()` (4 for
    /// PostgreSQL with its default pool, 2 for a SQLite file, whose WAL sync runs beside the
    /// next write, 1 for memory).
    pub ingest_writers: Option<usize>,
    /// Request limits.
    pub limits: HttpLimits,
    /// Connection limits and timeouts of the listener.
    pub connections: ConnectionLimits,
    /// How often the rollup scheduler ticks.
    pub rollup_interval: Duration,
    /// How often the alert engine evaluates (at most 60 s: longer values are capped).
    pub alert_interval: Duration,
    /// How long readiness answers 503 before the listener closes on shutdown.
    pub drain_delay: Duration,
    /// Longest wait for in-flight requests on shutdown.
    pub shutdown_timeout: Duration,
    /// How long a verified API key is trusted without asking the store (a revoked key
    /// keeps working this long); zero asks every time.
    pub api_key_ttl: Duration,
    /// The Prometheus text endpoint of the live health view; `None`: this server's own
    /// `/metrics`.
    pub prometheus_url: Option<String>,
    /// Redis shared by the replicas for the dashboard summary cache (`REDIS_URL`); `None`:
    /// in-process caching.
    pub redis_url: Option<String>,
    /// How long a dashboard summary entry is served (60 s).
    pub summary_ttl: Duration,
    /// The key of pseudonymous user ids (`ANALYTICS_USER_ID_KEY`); `None`: random per
    /// process.
    pub user_id_key: Option<crate::auth::Secret>,
    /// When `health/overview` says `degraded`.
    pub health_thresholds: HealthThresholds,
    /// The ML price table and the business collections.
    pub analytics: crate::state::AnalyticsSettings,
    /// Notification channels and the dispatcher's tuning.
    pub notify: crate::notify::NotifySettings,
}

impl Settings {
    /// Defaults around a bind address, database URL and JWT settings.
    pub fn new(bind: impl Into<String>, database_url: impl Into<String>, jwt: JwtSettings) -> Self {
        Self {
            bind: bind.into(),
            database_url: database_url.into(),
            jwt,
            collector: CollectorOptions::default(),
            ingest_writers: None,
            limits: HttpLimits::default(),
            connections: ConnectionLimits::default(),
            rollup_interval: Duration::from_secs(60),
            alert_interval: Duration::from_secs(60),
            drain_delay: Duration::from_secs(1),
            shutdown_timeout: Duration::from_secs(30),
            api_key_ttl: crate::state::DEFAULT_API_KEY_TTL,
            prometheus_url: None,
            redis_url: None,
            summary_ttl: crate::summary_cache::DEFAULT_TTL,
            user_id_key: None,
            health_thresholds: HealthThresholds::default(),
            analytics: crate::state::AnalyticsSettings::default(),
            notify: crate::notify::NotifySettings::default(),
        }
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("bind", &self.bind)
            .field("database_url", &redact_url(&self.database_url))
            .field("jwt", &self.jwt)
            .field("collector", &self.collector)
            .field("ingest_writers", &self.ingest_writers)
            .field("limits", &self.limits)
            .field("connections", &self.connections)
            .field("rollup_interval", &self.rollup_interval)
            .field("alert_interval", &self.alert_interval)
            .field("drain_delay", &self.drain_delay)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("api_key_ttl", &self.api_key_ttl)
            .field(
                "prometheus_url",
                &self.prometheus_url.as_deref().map(redact_url),
            )
            .field("redis_url", &self.redis_url.as_deref().map(redact_url))
            .field("summary_ttl", &self.summary_ttl)
            .field("health_thresholds", &self.health_thresholds)
            .field("analytics", &self.analytics)
            .field("notify", &self.notify)
            .finish()
    }
}

/// `url` with the password of its user-info part (`scheme://user:password@host`) and any
/// `password=` query parameter replaced by `***`, for logs and `Debug`.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let rest_start = scheme_end + 3;
        let authority_end = out[rest_start..]
            .find(['/', '?', '#'])
            .map_or(out.len(), |i| rest_start + i);
        if let Some(at) = out[rest_start..authority_end].rfind('@') {
            let userinfo = &out[rest_start..rest_start + at];
            if let Some(colon) = userinfo.find(':') {
                out.replace_range(rest_start + colon + 1..rest_start + at, "***");
            }
        }
    }
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let query = query
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => kv.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("&");
        out = format!("{head}{query}");
    }
    out
}

/// Opens the store named by `url`: `sqlite:` (file created on first run), `postgres:` /
/// `postgresql:`, or `memory:` (tests and demos; data is lost on exit). Migrations are
/// applied on connect.
pub async fn connect_store(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        let store = analytics_store_sqlite::SqliteStore::connect(url, Default::default())
            .await
            .context("opening the sqlite database")?;
        Ok(Arc::new(store))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        // A short acquire timeout: while PostgreSQL is down, ingest answers 503 within
        // seconds instead of holding every request for the default 5 s per attempt.
        let options = analytics_store_pg::PgStoreOptions {
            acquire_timeout: Duration::from_secs(2),
            application_name: "analytics-server".to_owned(),
            ..Default::default()
        };
        let store = analytics_store_pg::PgStore::connect(url, options)
            .await
            .context("connecting to postgresql")?;
        Ok(Arc::new(store))
    } else if url.starts_with("memory:") {
        Ok(Arc::new(MemoryStore::new()))
    } else {
        anyhow::bail!("DATABASE_URL must start with sqlite:, postgres:// or memory:")
    }
}

/// Triggers a graceful shutdown of a running [`Application`] (like SIGTERM).
#[derive(Debug, Clone)]
pub struct ShutdownHandle(Arc<watch::Sender<bool>>);

impl ShutdownHandle {
    /// Starts the shutdown.
    pub fn shutdown(&self) {
        self.0.send_replace(true);
    }
}

/// A bound, not yet serving, server.
pub struct Application {
    listener: TcpListener,
    port: u16,
    state: AppState,
    settings: Settings,
    stop: Arc<watch::Sender<bool>>,
    dispatcher: Arc<analytics_notify::Dispatcher>,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("port", &self.port)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Application {
    /// Opens the store from `settings.database_url` and binds the listener.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let store = connect_store(&settings.database_url).await?;
        Self::build_with_store(settings, store).await
    }

    /// Binds the listener around an already opened store.
    pub async fn build_with_store(
        settings: Settings,
        store: Arc<dyn Store>,
    ) -> anyhow::Result<Self> {
        settings.jwt.check_secret()?;
        let listener = TcpListener::bind(settings.bind.as_str())
            .await
            .with_context(|| format!("binding {}", settings.bind))?;
        let addr = listener
            .local_addr()
            .context("listener has no socket address")?;
        let port = addr.port();
        let prometheus_url = settings
            .prometheus_url
            .clone()
            .unwrap_or_else(|| own_metrics_url(addr));
        let writers = settings
            .ingest_writers
            .unwrap_or_else(|| store.write_concurrency());
        let wake = Arc::new(tokio::sync::Notify::new());
        let dispatcher = Arc::new(settings.notify.dispatcher(store.clone(), wake));
        let state = AppState::new(
            store,
            settings.jwt.clone(),
            CollectorOptions {
                writers,
                ..settings.collector.clone()
            },
            settings.limits.clone(),
        )
        .with_api_key_ttl(settings.api_key_ttl)
        .with_summary_cache(settings.summary_ttl, settings.redis_url.as_deref())
        .context("REDIS_URL")?
        .with_rate_limiter(settings.redis_url.as_deref())
        .context("REDIS_URL")?
        .with_user_id_key(match &settings.user_id_key {
            Some(k) => crate::sessions::UserIdKey::new(k.expose().as_bytes()),
            None => crate::sessions::UserIdKey::random(),
        })
        .with_analytics(settings.analytics.clone())
        .with_health(HealthContext {
            thresholds: settings.health_thresholds,
            realtime: Some(PrometheusScrapeSource::new(prometheus_url, DEFAULT_BUDGET)),
            ..HealthContext::default()
        })
        .with_channels(crate::notify::ChannelReport {
            disabled: dispatcher.disabled().clone(),
            stats: Some(dispatcher.stats()),
        });
        let (stop, _) = watch::channel(false);
        Ok(Self {
            listener,
            port,
            state,
            settings,
            stop: Arc::new(stop),
            dispatcher,
        })
    }

    /// The port actually bound.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The shared state (store, collector, metrics).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// A handle that stops the server gracefully.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.stop.clone())
    }

    /// Serves until SIGTERM, SIGINT or the shutdown handle; then drains: readiness turns
    /// 503, the listener closes after `drain_delay`, in-flight requests finish, the rollup
    /// worker stops and the collector flushes.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Self {
            listener,
            state,
            settings,
            stop,
            dispatcher,
            ..
        } = self;
        let jobs = BackgroundJobs::start_with_dispatcher(
            &state,
            settings.rollup_interval,
            settings.alert_interval,
            dispatcher,
        );
        let mut stop_rx = stop.subscribe();
        let drain_state = state.clone();
        let drain_delay = settings.drain_delay;
        let signal = async move {
            tokio::select! {
                _ = os_signal() => {},
                _ = stop_rx.wait_for(|s| *s) => {},
            }
            tracing::info!("shutting down: readiness now answers 503");
            drain_state.start_draining();
            tokio::time::sleep(drain_delay).await;
        };
        let served = crate::serve::serve(
            listener,
            build_app(state.clone()),
            settings.connections.clone(),
            signal,
            settings.shutdown_timeout,
        )
        .await;
        tracing::info!("listener closed; stopping workers");
        jobs.stop().await;
        state.collector.shutdown().await;
        let stats = state.collector.stats();
        tracing::info!(
            committed = stats.committed,
            batches = stats.batches,
            failed = stats.failed,
            "collector flushed and stopped"
        );
        served.context("serving HTTP")
    }
}

/// The background work of a server: the rollup loop, the alert engine and the notification
/// dispatcher, each a Tokio task (the first two hold their singleton lock in the store, so
/// any number of processes on one database run each once). [`Application`] starts them
/// itself; an embedder serving [`crate::embed::AnalyticsRoutes`] from its own server starts
/// them with [`BackgroundJobs::start`] and stops them with [`BackgroundJobs::stop`] before
/// shutting the collector down.
#[derive(Debug)]
pub struct BackgroundJobs {
    stop: watch::Sender<bool>,
    tasks: Vec<(&'static str, tokio::task::JoinHandle<()>)>,
}

impl BackgroundJobs {
    /// Starts the three jobs over `state`'s store (rollups every `rollup_interval`, alerts
    /// every `alert_interval`, at most a minute), delivering through the channels `notify`
    /// configures (in-app always; email, Slack and SMS where set). Call inside the Tokio
    /// runtime.
    pub fn start(
        state: &AppState,
        rollup_interval: Duration,
        alert_interval: Duration,
        notify: &crate::notify::NotifySettings,
    ) -> Self {
        let wake = Arc::new(tokio::sync::Notify::new());
        let dispatcher = Arc::new(notify.dispatcher(state.store.clone(), wake));
        Self::start_with_dispatcher(state, rollup_interval, alert_interval, dispatcher)
    }

    fn start_with_dispatcher(
        state: &AppState,
        rollup_interval: Duration,
        alert_interval: Duration,
        dispatcher: Arc<analytics_notify::Dispatcher>,
    ) -> Self {
        let (stop, rx) = watch::channel(false);
        let rollup = tokio::spawn(rollup_loop(
            state.store.clone(),
            state.collector.clone(),
            rollup_interval,
            rx.clone(),
        ));
        let alerts = tokio::spawn(crate::alerting::alert_loop(
            state.store.clone(),
            state.health.specs.clone(),
            alert_interval,
            dispatcher.waker(),
            rx.clone(),
        ));
        let deliveries = tokio::spawn(dispatcher.run(rx));
        Self {
            stop,
            tasks: vec![
                ("rollup worker", rollup),
                ("alert engine", alerts),
                ("notification dispatcher", deliveries),
            ],
        }
    }

    /// Stops the jobs and waits for each (a step in progress finishes; its lock is let go).
    pub async fn stop(self) {
        self.stop.send_replace(true);
        for (name, task) in self.tasks {
            match task.await {
                Ok(()) => tracing::info!("{name} stopped"),
                Err(e) => tracing::error!(error = %e, "{name} failed"),
            }
        }
    }
}

/// This server's own `/metrics` as reachable from itself (an unspecified bind address is
/// reached on loopback).
fn own_metrics_url(addr: std::net::SocketAddr) -> String {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    format!(
        "http://{}/metrics",
        std::net::SocketAddr::new(ip, addr.port())
    )
}

#[cfg(unix)]
async fn os_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the server");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn os_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

/// Ticks the rollup scheduler every `every` while holding its lock (see
/// [`crate::workers::run_singleton`]), recording each tick's duration as a store call.
async fn rollup_loop(
    store: Arc<dyn Store>,
    collector: Arc<AnalyticsEventCollector>,
    every: Duration,
    stop: watch::Receiver<bool>,
) {
    let job = RollupJob {
        scheduler: RollupScheduler::new(RollupSpecs::defaults(), SchedulerOptions::default()),
        store: store.clone(),
        collector,
    };
    crate::workers::run_singleton(store, every, stop, job).await;
}

/// The rollup scheduler as a singleton job.
struct RollupJob {
    scheduler: RollupScheduler,
    store: Arc<dyn Store>,
    collector: Arc<AnalyticsEventCollector>,
}

#[async_trait::async_trait]
impl crate::workers::SingletonJob for RollupJob {
    fn lock_name(&self) -> &'static str {
        LOCK_NAME
    }

    async fn step(&mut self, now: chrono::DateTime<chrono::Utc>) -> analytics_core::Result<()> {
        let started = std::time::Instant::now();
        let report = self.scheduler.tick(&*self.store, now).await?;
        record_store_call(&self.collector, StoreOperation::RollupTick, started);
        tracing::info!(
            hours_rolled = report.hours_rolled,
            days_merged = report.days_merged,
            weeks_merged = report.weeks_merged,
            rows_written = report.rows_written,
            events_deleted = report.events_deleted,
            backlog = report.backlog,
            "rollup tick"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Secret;

    #[test]
    fn settings_debug_never_shows_the_database_password() {
        let settings = Settings::new(
            "127.0.0.1:0",
            "postgres://app:hunter2-pw@db.internal:5432/analytics?sslmode=require&password=qq9",
            JwtSettings::new(Secret::new("jwt-secret-value-jwt-secret-value-00")),
        );
        let shown = format!("{settings:?}");
        assert!(!shown.contains("hunter2-pw"), "{shown}");
        assert!(!shown.contains("qq9"), "{shown}");
        assert!(!shown.contains("jwt-secret-value"), "{shown}");
        assert!(
            shown.contains("postgres://app:***@db.internal:5432/analytics"),
            "{shown}"
        );
        assert_eq!(redact_url("sqlite://analytics.db"), "sqlite://analytics.db");
        assert_eq!(
            redact_url("postgres://u@h/db?password=x"),
            "postgres://u@h/db?password=***"
        );
    }
}
