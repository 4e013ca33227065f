//! Operations endpoints: liveness, readiness, Prometheus metrics.

use std::time::Duration;

use analytics_core::ports::EventFilter;
use analytics_core::{Clock, PageRequest, SystemClock, TimeRange};
use poem_openapi::payload::{Json, PlainText};
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::ApiTags;
use crate::state::AppState;

/// The operations endpoints.
#[derive(Debug)]
pub struct OpsApi {
    pub(crate) state: AppState,
}

/// Readiness details.
#[derive(Debug, Object)]
pub struct Readiness {
    /// `ready`, `draining` or `store_unavailable`.
    status: String,
    /// The store technology.
    backend: String,
    /// Each notification channel: enabled, or disabled with the reason (its deliveries
    /// fail with that reason). A disabled channel does not make the server unready.
    channels: Vec<ChannelState>,
}

/// One notification channel's state.
#[derive(Debug, Object)]
pub struct ChannelState {
    /// `in_app`, `slack`, `email` or `sms`.
    channel: String,
    /// Whether it delivers.
    enabled: bool,
    /// Why it is disabled.
    #[oai(nullable)]
    reason: Option<String>,
}

impl OpsApi {
    fn readiness(&self, status: &str) -> Readiness {
        let report = &self.state.channels;
        let channels = if report.stats.is_none() {
            Vec::new()
        } else {
            analytics_core::notification::Channel::ALL
                .into_iter()
                .map(|c| ChannelState {
                    channel: c.as_str().to_owned(),
                    enabled: !report.disabled.contains_key(&c),
                    reason: report.disabled.get(&c).cloned(),
                })
                .collect()
        };
        Readiness {
            status: status.to_owned(),
            backend: self.state.store.backend().to_owned(),
            channels,
        }
    }
}

/// Readiness answer.
#[derive(Debug, ApiResponse)]
pub enum ReadyResponse {
    /// Serving.
    #[oai(status = 200)]
    Ready(Json<Readiness>),
    /// Not serving (store down or shutting down).
    #[oai(status = 503)]
    NotReady(Json<Readiness>),
}

impl OpsApi {
    /// Whether the store answers a ping and serves a read of the event table (the newest
    /// event of the last hour): a store that pings but cannot read, such as PostgreSQL out
    /// of lock slots, is not ready.
    async fn store_up(&self) -> bool {
        let store = &self.state.store;
        let check = async {
            store.ping().await?;
            let now = SystemClock.now();
            let filter = EventFilter {
                range: TimeRange::new(now - chrono::Duration::hours(1), now).ok(),
                ..EventFilter::default()
            };
            let page = PageRequest::new(1, None)?;
            store.query_events(&filter, &page).await.map(|_| ())
        };
        let result = tokio::time::timeout(Duration::from_secs(2), check).await;
        if let Ok(Err(e)) = &result {
            tracing::warn!(error = %e, "readiness check failed");
        }
        let ok = matches!(result, Ok(Ok(())));
        self.state
            .metrics
            .set_store_up(self.state.store.backend(), ok);
        ok
    }
}

#[OpenApi]
impl OpsApi {
    /// Liveness: 200 while the process runs.
    #[oai(path = "/livez", method = "get", tag = "ApiTags::Operations")]
    async fn livez(&self) -> PlainText<&'static str> {
        PlainText("ok")
    }

    /// Readiness: 200 when the store answers a ping and a read, and the server is not
    /// shutting down.
    #[oai(path = "/readyz", method = "get", tag = "ApiTags::Operations")]
    async fn readyz(&self) -> ReadyResponse {
        if self.state.is_draining() {
            return ReadyResponse::NotReady(Json(self.readiness("draining")));
        }
        if self.store_up().await {
            ReadyResponse::Ready(Json(self.readiness("ready")))
        } else {
            ReadyResponse::NotReady(Json(self.readiness("store_unavailable")))
        }
    }

    /// Prometheus metrics in the text exposition format.
    #[oai(path = "/metrics", method = "get", tag = "ApiTags::Operations")]
    async fn metrics(&self) -> PlainText<String> {
        self.store_up().await;
        self.state.metrics.set_ingest(&self.state.collector.stats());
        self.state.metrics.set_pools(&self.state.store.pool_stats());
        self.state.metrics.set_channels(&self.state.channels);
        self.state
            .metrics
            .set_raw_hours(&self.state.health.raw_hours);
        PlainText(self.state.metrics.render())
    }
}
