//! The HTTP API and dashboard: `router(state)` builds every route; serving it is the caller's
//! job. Handlers copy what they need out of the collector under its lock and do the rest
//! outside it; heavy work (re-binning the sample ring, drawing) runs on the blocking pool.

mod access;
mod alerts;
mod api;
mod error;
mod export;
mod heatmap;
pub mod history;
mod metrics;
mod openapi;
mod pages;
mod params;
pub mod spikes;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::get;

pub use error::ApiError;
pub use params::parse_instant;

use crate::collector::{Collector, lock};
use crate::config::AccessConfig;
use crate::telemetry::ClientEvents;

/// Whether the service is ready: NATS connected and every tap subscribed.
#[derive(Debug, Default)]
pub struct Readiness {
    subscribed: AtomicBool,
    events: Arc<ClientEvents>,
}

impl Readiness {
    pub fn new(events: Arc<ClientEvents>) -> Self {
        Self {
            subscribed: AtomicBool::new(false),
            events,
        }
    }

    /// Marks every tap as subscribed.
    pub fn set_subscribed(&self) {
        self.subscribed.store(true, Ordering::Relaxed);
    }

    /// Whether the NATS client is connected now (its own state, not a remembered event).
    pub fn nats_connected(&self) -> bool {
        self.events.connected()
    }

    /// How late the tap loop ran and the server's round trip, per second.
    pub fn own_delays(&self) -> &crate::telemetry::OwnDelays {
        &self.events.own
    }

    /// `None` when ready, else why not.
    pub fn not_ready_reason(&self) -> Option<&'static str> {
        if !self.subscribed.load(Ordering::Relaxed) {
            Some("connecting to NATS and subscribing the taps")
        } else if !self.events.connected() {
            Some("disconnected from NATS, reconnecting")
        } else {
            None
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub collector: Arc<Mutex<Collector>>,
    pub readiness: Arc<Readiness>,
    /// Spikes already explained.
    pub spike_cache: Arc<spikes::SpikeCache>,
    /// Who may call: allowed hosts and tokens (open to all by default).
    pub access: Arc<AccessConfig>,
    /// Slots for queries that walk the sample ring or draw (`http.max_concurrent_queries`).
    pub queries: Arc<tokio::sync::Semaphore>,
    /// Queries turned away because no slot came free in time.
    pub queries_refused: Arc<std::sync::atomic::AtomicU64>,
    /// `/metrics` takes its snapshots one at a time.
    pub metrics_slot: Arc<tokio::sync::Semaphore>,
    /// The archive's data directory, when history is kept: exports read samples there.
    pub archive_dir: Option<Arc<std::path::PathBuf>>,
    /// One postmortem export at a time: another meanwhile is a 429.
    pub exports: Arc<tokio::sync::Semaphore>,
    /// The collector loaded from the archive for the last range older than memory.
    pub history: Arc<history::HistoryCache>,
    /// What the alert receivers did.
    pub notify_stats: Arc<crate::notify::NotifyStats>,
    /// Alerts and the frame-budget ledger, as the alert pass keeps them.
    pub alerts: Arc<Mutex<crate::analyze::alerts::AlertsState>>,
    /// Set when the collector holds only the latest samples of what the archive in this
    /// directory has (an offline collector that was cut): heatmaps are drawn from the archive.
    pub heatmaps_from: Option<Arc<std::path::PathBuf>>,
}

impl AppState {
    pub fn new(collector: Arc<Mutex<Collector>>, readiness: Arc<Readiness>) -> Self {
        let alerts = crate::analyze::alerts::AlertsState::new(&lock(&collector).config().alerts);
        Self {
            alerts: Arc::new(Mutex::new(alerts)),
            notify_stats: Arc::default(),
            collector,
            readiness,
            spike_cache: Arc::default(),
            access: Arc::default(),
            queries: Arc::new(tokio::sync::Semaphore::new(
                AccessConfig::default().max_concurrent_queries,
            )),
            queries_refused: Arc::default(),
            metrics_slot: Arc::new(tokio::sync::Semaphore::new(1)),
            archive_dir: None,
            exports: Arc::new(tokio::sync::Semaphore::new(1)),
            history: Arc::default(),
            heatmaps_from: None,
        }
    }

    /// The same state, exports reading samples from the archive in `dir`.
    pub fn with_archive(self, dir: std::path::PathBuf) -> Self {
        Self {
            archive_dir: Some(Arc::new(dir)),
            ..self
        }
    }

    /// The same state, answering only as `access` allows, `access.max_concurrent_queries`
    /// queries at a time.
    pub fn with_access(self, access: AccessConfig) -> Self {
        Self {
            queries: Arc::new(tokio::sync::Semaphore::new(access.max_concurrent_queries)),
            access: Arc::new(access),
            ..self
        }
    }
}

/// Every route of the contract.
pub fn router(state: AppState) -> Router {
    routes()
        .route("/api/v1/export", get(export::export))
        .layer(axum::middleware::from_fn_with_state(
            state.access.clone(),
            access::guard,
        ))
        .with_state(state)
}

/// The routes a postmortem bundle is made of, answering anyone: for building a bundle
/// in-process, never to be served.
pub fn bundle_routes(state: AppState) -> Router {
    routes().with_state(state)
}

fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(pages::dashboard))
        .route("/healthz", get(pages::healthz))
        .route("/readyz", get(pages::readyz))
        .route("/metrics", get(metrics::metrics))
        .route("/api/v1/consumers", get(api::consumers))
        .route("/api/v1/report", get(api::report))
        .route("/api/v1/spikes", get(api::spikes))
        .route("/api/v1/incidents", get(alerts::incidents))
        .route("/api/v1/alerts", get(alerts::alerts))
        .route("/api/v1/heatmap/phase.svg", get(heatmap::phase))
        .route("/api/v1/heatmap/time.svg", get(heatmap::time))
        .route("/api/v1/openapi.json", get(openapi::openapi))
}
