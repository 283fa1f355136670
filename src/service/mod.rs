//! Running the pipeline as a service: the taps feeding the collector, and (for `serve` and the
//! demo) the HTTP server beside them. `main` only parses, configures and calls these.

use std::future::Future;
use std::sync::{Arc, Mutex};

use crate::aggregate::window::WindowSummary;
use crate::archive::Archive;
use crate::collector::{Collector, lock};
use crate::config::Config;
use crate::http::{AppState, Readiness, router};
use crate::notify::Notifier;
use crate::telemetry::ClientEvents;
use taps::Taps;

pub mod alerts;
mod spikes;
pub mod taps;

/// Why the service stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Taps(#[from] taps::Error),
    #[error("HTTP server failed: {0}")]
    Http(String),
    #[error(transparent)]
    Archive(#[from] crate::archive::Error),
    #[error(transparent)]
    Otlp(#[from] crate::otlp::Error),
}

/// Starts OTLP export when an endpoint is configured (or in `OTEL_EXPORTER_OTLP_*`), and has
/// `collector` hand it every sample.
fn start_otlp(
    config: &Config,
    collector: &Arc<Mutex<Collector>>,
) -> Result<Option<crate::otlp::Otlp>, Error> {
    let Some((otlp, tap)) = crate::otlp::Otlp::start(&config.otlp, config.join.max_consumers)?
    else {
        return Ok(None);
    };
    lock(collector).attach_otlp(tap);
    let c = collector.clone();
    otlp.observe(move || lock(&c).otlp_observed());
    Ok(Some(otlp))
}

/// Hands ended spikes to the archive's `spikes` table and OTLP export, when either is on:
/// every few seconds from now, and once more at the stop ([`finish_spike_hand_over`]).
fn start_spike_hand_over(
    state: &AppState,
    config: &Config,
    archive: Option<&Archive>,
) -> Option<Arc<Mutex<spikes::HandedOver>>> {
    if !lock(&state.collector).wants_ended_spikes() {
        return None;
    }
    let keys = match archive {
        Some(archive) => spikes::HandedOver::load(&archive.dir, config),
        None => spikes::HandedOver::default(),
    };
    let keys = Arc::new(Mutex::new(keys));
    tokio::spawn(spikes::hand_over_ended(state.clone(), keys.clone()));
    Some(keys)
}

/// Hands over the spikes that ended up to the last closed window, before the archive and
/// OTLP export close.
async fn finish_spike_hand_over(state: &AppState, keys: Option<Arc<Mutex<spikes::HandedOver>>>) {
    if let Some(keys) = keys {
        let state = state.clone();
        let _ = tokio::task::spawn_blocking(move || spikes::pass(&state, &keys, true)).await;
    }
}

/// Lets the OTLP export record what it was handed and send the rest.
async fn close_otlp(otlp: Option<crate::otlp::Otlp>, collector: &Arc<Mutex<Collector>>) {
    let Some(otlp) = otlp else {
        return;
    };
    let tap = lock(collector).detach_otlp();
    let _ = tokio::task::spawn_blocking(move || otlp.shutdown(tap)).await;
}

/// Starts the archive when `config.archive.enabled` says so, and has `collector` hand it
/// every sample.
fn start_archive(
    config: &Config,
    collector: &Arc<Mutex<Collector>>,
) -> Result<Option<Archive>, Error> {
    if config.archive.enabled != Some(true) {
        return Ok(None);
    }
    let labels = config.headers.label_names();
    let (archive, tap) = Archive::start(&config.archive, labels)?;
    // What the windows and the ring held before a restart, loaded back before anything new.
    let aggregate = &config.aggregate;
    let span = aggregate
        .window_ns
        .saturating_mul(aggregate.retained_windows as u64);
    let now = crate::model::Seen::now().wall_ns;
    let since = now.saturating_sub(i64::try_from(span).unwrap_or(i64::MAX));
    // Rows stamped in the future (a clock set wrong when they were written) would hold the
    // windows there: they stay on disk.
    let (mut recent, unreadable) =
        crate::archive::latest_samples(&archive.dir, since, now, aggregate.ring_capacity);
    if recent.height() >= aggregate.ring_capacity {
        // The ring's capacity cut the span: its oldest window would be partial, a dip in the
        // history that spike baselines read.
        recent = crate::archive::from_next_window(recent, aggregate.window_ns);
    }
    let restored = lock(collector).restore(&recent);
    tracing::info!(
        samples = restored,
        unreadable_segments = unreadable.len(),
        "recent history loaded back from the archive"
    );
    lock(collector).attach_archive(tap);
    tracing::info!(dir = %archive.dir.display(), "keeping history in the archive");
    Ok(Some(archive))
}

/// Starts the alert pass beside the taps, sending to the receivers configured.
fn start_alerts(state: &AppState, config: &Config, events: &Arc<ClientEvents>) {
    let receivers = &config.alerts.receivers;
    let notifier = Notifier::start(receivers, Some(events.clone()), state.notify_stats.clone());
    if notifier.receivers() > 0 {
        tracing::info!(
            alertmanager = receivers.alertmanager.len(),
            webhooks = receivers.webhooks.len(),
            nats = receivers.nats_subject_prefix.as_deref().unwrap_or("off"),
            "sending alerts"
        );
    }
    tokio::spawn(alerts::run(state.clone(), notifier));
}

/// Hands the archive the last samples and waits until it has written them.
async fn close_archive(archive: Option<Archive>, collector: &Arc<Mutex<Collector>>) {
    let Some(archive) = archive else {
        return;
    };
    lock(collector).detach_archive();
    let _ = tokio::task::spawn_blocking(move || archive.close()).await;
}

/// Connects, subscribes every tap and starts the consumer state poller. With `wait`, NATS
/// need not be up yet: this returns once it is and the taps are subscribed.
pub async fn start_taps(
    config: &Config,
    collector: &Arc<Mutex<Collector>>,
    events: &Arc<ClientEvents>,
    wait: bool,
) -> Result<Taps, taps::Error> {
    let client = taps::connect(&config.nats, events.clone(), wait).await?;
    let subscriptions = Taps::subscribe(&client, config).await?;
    tokio::spawn(taps::probe_round_trip(client.clone(), events.clone()));
    tracing::info!(urls = %config.nats.display_urls(), "taps subscribed");
    if config.taps.consumer_state {
        tokio::spawn(taps::poll_consumer_state(
            client,
            collector.clone(),
            config.clone(),
        ));
    }
    Ok(subscriptions)
}

/// Taps NATS until `shutdown`, calling `on_closed` for every closed window.
pub async fn collect(
    config: Config,
    on_closed: impl FnMut(&Collector, WindowSummary),
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let events = Arc::new(ClientEvents::default());
    let mut c = Collector::new(config.clone());
    c.keep_closed();
    let collector = Arc::new(Mutex::new(c));
    let archive = start_archive(&config, &collector)?;
    let otlp = match start_otlp(&config, &collector) {
        Ok(o) => o,
        Err(e) => {
            close_archive(archive, &collector).await;
            return Err(e);
        }
    };
    // Alerts as `serve` sends them, with no API to read them.
    let readiness = Arc::new(Readiness::new(events.clone()));
    let state = AppState::new(collector.clone(), readiness.clone());
    start_alerts(&state, &config, &events);
    let spike_keys = start_spike_hand_over(&state, &config, archive.as_ref());
    let subscriptions = match start_taps(&config, &collector, &events, false).await {
        Ok(s) => {
            readiness.set_subscribed();
            s
        }
        Err(e) => {
            close_archive(archive, &collector).await;
            close_otlp(otlp, &collector).await;
            return Err(e.into());
        }
    };
    taps::run(
        subscriptions,
        collector.clone(),
        events,
        on_closed,
        shutdown,
    )
    .await;
    finish_spike_hand_over(&state, spike_keys).await;
    close_archive(archive, &collector).await;
    close_otlp(otlp, &collector).await;
    Ok(())
}

/// Serves the HTTP API on `config.listen` and taps NATS until `shutdown`. The listener is bound
/// first, so `/healthz` answers (and `/readyz` says why not ready) while NATS connects, for as
/// long as it takes.
pub async fn serve(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Listen {
            addr: config.listen,
            source,
        })?;
    let events = Arc::new(ClientEvents::default());
    let readiness = Arc::new(Readiness::new(events.clone()));
    let collector = Arc::new(Mutex::new(Collector::new(config.clone())));
    let archive = start_archive(&config, &collector)?;
    let otlp = match start_otlp(&config, &collector) {
        Ok(o) => o,
        Err(e) => {
            close_archive(archive, &collector).await;
            return Err(e);
        }
    };
    let mut state =
        AppState::new(collector.clone(), readiness.clone()).with_access(config.http.clone());
    if let Some(archive) = &archive {
        state = state.with_archive(archive.dir.clone());
    }
    let spike_keys = start_spike_hand_over(&state, &config, archive.as_ref());
    start_alerts(&state, &config, &events);
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        axum::serve(listener, router(state.clone()))
            .with_graceful_shutdown(async {
                let _ = http_stopped.await;
            })
            .into_future(),
    );
    tracing::info!(listen = %config.listen, "serving the API and dashboard");
    if !config.listen.ip().is_loopback() && config.http.read_token.is_none() {
        tracing::warn!(
            listen = %config.listen,
            "listening beyond loopback without http.read_token: anyone who reaches this port \
             reads stream names and trace ids (and /metrics, open by default, stream names)"
        );
    }
    // A service waits for NATS (not ready meanwhile) rather than exit: systemd or Kubernetes
    // would only start it again. A shutdown meanwhile stops it all the same.
    let mut shutdown = std::pin::pin!(shutdown);
    let started = tokio::select! {
        taps = start_taps(&config, &collector, &events, true) => Some(taps),
        () = &mut shutdown => None,
    };
    let started = match started.transpose() {
        Ok(s) => s,
        Err(e) => {
            close_archive(archive, &collector).await;
            close_otlp(otlp, &collector).await;
            return Err(e.into());
        }
    };
    if let Some(subscriptions) = started {
        readiness.set_subscribed();
        taps::run(
            subscriptions,
            collector.clone(),
            events,
            |_, _| {},
            shutdown,
        )
        .await;
    }
    // Everything collected is on disk (and exported) before the process ends, the spikes up
    // to the last closed window among it.
    finish_spike_hand_over(&state, spike_keys).await;
    close_archive(archive, &collector).await;
    close_otlp(otlp, &collector).await;
    let _ = stop_http.send(());
    match server.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Error::Http(e.to_string())),
        Err(e) => Err(Error::Http(e.to_string())),
    }
}
