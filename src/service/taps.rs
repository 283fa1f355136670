//! The taps: NATS subscriptions feeding the [`Collector`] core, and the consumer info poller.
//!
//! One task reads every tap with a biased `select!` so that a delivery is always handled before
//! its ack (the client queues both in socket order, and deliveries are polled first). ackscope's
//! own requests use a distinct inbox prefix so they never show up on the `_INBOX.>` tap; every
//! subscription is a wildcard, so ackscope never adds interest on a push consumer's deliver
//! subject.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::{Client, ConnectOptions, Event, Message};
use futures::FutureExt;
use futures::stream::{self, BoxStream, SelectAll, StreamExt};

use crate::aggregate::window::WindowSummary;
use crate::collect::advisories::ADVISORY_SUBJECT;
use crate::collect::consumer_state::ConsumerState;
use crate::collect::metrics::METRIC_SUBJECT;
use crate::collector::{Collector, lock};
use crate::config::{Config, NatsConfig};
use crate::model::Seen;
use crate::telemetry::{ClientEvents, LogKind};

/// Subject of every ack.
pub const ACK_SUBJECT: &str = "$JS.ACK.>";

/// A tap error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot connect to NATS at {urls}: {source}")]
    Connect {
        urls: String,
        source: async_nats::ConnectError,
    },
    #[error("cannot read credentials file {path}: {source}")]
    Credentials {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot read nkey file {path}: {reason}")]
    Nkey { path: String, reason: String },
    #[error("cannot subscribe to {subject}: {source}")]
    Subscribe {
        subject: String,
        source: async_nats::SubscribeError,
    },
    #[error("NATS did not confirm the subscriptions: {0}")]
    Flush(#[from] async_nats::client::FlushError),
}

/// How often a repeated warning (a tap falling behind, NATS unreachable) is logged at most.
const LOG_EVERY_NS: i64 = 10_000_000_000;

/// Connects ackscope's taps with the configured options, on ackscope's own inbox prefix;
/// `events` follows the connection. With `wait`, NATS need not be up yet: the client keeps
/// trying (with its backoff, up to 4 s between attempts) and the subscriptions go out once it
/// connects; without it, a server not reachable within 10 s is an error.
pub async fn connect(
    config: &NatsConfig,
    events: Arc<ClientEvents>,
    wait: bool,
) -> Result<Client, Error> {
    let callback_events = events.clone();
    let mut options = ConnectOptions::new()
        .name("ackscope")
        .custom_inbox_prefix(&config.inbox_prefix)
        .subscription_capacity(config.subscription_capacity)
        .event_callback(move |event| {
            let events = callback_events.clone();
            async move { on_client_event(&events, event) }
        });
    if wait {
        options = options.retry_on_initial_connect();
    }
    let client = connect_with(config, options).await?;
    events.set_client(client.clone());
    Ok(client)
}

/// Counts and logs what the client reports; repeated warnings at most every 10 s.
fn on_client_event(events: &ClientEvents, event: Event) {
    let now = Seen::now().wall_ns;
    match event {
        Event::SlowConsumer(sid) => {
            let total = events.slow_consumers.fetch_add(1, Ordering::Relaxed) + 1;
            if events.should_log(LogKind::SlowConsumer, now, LOG_EVERY_NS) {
                tracing::error!(
                    sid,
                    total,
                    "tap fell behind: the NATS client dropped messages"
                );
            }
        }
        Event::ClientError(error) => {
            let total = events.connect_failures.fetch_add(1, Ordering::Relaxed) + 1;
            if events.should_log(LogKind::ConnectFailure, now, LOG_EVERY_NS) {
                tracing::warn!(%error, attempts = total, "cannot reach NATS, retrying");
            }
        }
        Event::Disconnected => tracing::warn!("disconnected from NATS"),
        Event::Connected => tracing::info!("connected to NATS"),
        other => tracing::info!(event = %other, "NATS client event"),
    }
}

/// Connects with `options` plus the configured credentials and TLS settings. A start-up
/// failure is reported, not retried; a black-holed address fails after 10 s.
pub async fn connect_with(
    config: &NatsConfig,
    mut options: ConnectOptions,
) -> Result<Client, Error> {
    if let Some((user, password)) = &config.user {
        options = options.user_and_password(user.clone(), password.expose().to_string());
    }
    if let Some(token) = &config.token {
        options = options.token(token.expose().to_string());
    }
    if let Some(path) = &config.credentials_file {
        options = options
            .credentials_file(path)
            .await
            .map_err(|source| Error::Credentials {
                path: path.display().to_string(),
                source,
            })?;
    }
    if let Some(path) = &config.nkey_file {
        options = options.nkey(read_nkey_seed(path)?);
    }
    if config.tls_required {
        options = options.require_tls(true);
    }
    if let Some(ca) = &config.tls_ca_file {
        options = options.add_root_certificates(ca.clone());
    }
    if let Some((cert, key)) = &config.tls_client {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    let servers = config.urls.join(",");
    let connect = async_nats::connect_with_options(servers.as_str(), options);
    // Errors name the servers without the secrets a URL may carry.
    let urls = config.display_urls();
    match tokio::time::timeout(Duration::from_secs(10), connect).await {
        Ok(result) => result.map_err(|source| Error::Connect { urls, source }),
        Err(_) => Err(Error::Connect {
            urls,
            source: async_nats::ConnectError::from(async_nats::ConnectErrorKind::TimedOut),
        }),
    }
}

/// The user seed in an nkey file: the first line that is one (`SU` and 56 more base32
/// characters), so that a file with comments or the public key beside it still reads.
fn read_nkey_seed(path: &std::path::Path) -> Result<String, Error> {
    let error = |reason: String| Error::Nkey {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
    text.lines()
        .map(str::trim)
        .find(|l| {
            l.len() == 58 && l.starts_with("SU") && l.bytes().all(|b| b.is_ascii_alphanumeric())
        })
        .map(str::to_string)
        // The error never repeats the file's text: it may hold a seed that is almost one.
        .ok_or_else(|| error("no user seed (a line starting SU, 58 characters)".into()))
}

/// The subscriptions of every enabled tap.
pub struct Taps {
    deliveries: SelectAll<BoxStream<'static, Message>>,
    acks: BoxStream<'static, Message>,
    metrics: BoxStream<'static, Message>,
    advisories: BoxStream<'static, Message>,
    announcements: BoxStream<'static, Message>,
}

async fn subscribe(client: &Client, subject: &str) -> Result<BoxStream<'static, Message>, Error> {
    client
        .subscribe(subject.to_string())
        .await
        .map(StreamExt::boxed)
        .map_err(|source| Error::Subscribe {
            subject: subject.to_string(),
            source,
        })
}

async fn subscribe_if(
    client: &Client,
    enabled: bool,
    subject: &str,
) -> Result<BoxStream<'static, Message>, Error> {
    if enabled {
        subscribe(client, subject).await
    } else {
        Ok(stream::pending().boxed())
    }
}

impl Taps {
    /// Subscribes every enabled tap and waits until the server has them.
    pub async fn subscribe(client: &Client, config: &Config) -> Result<Self, Error> {
        let announcements = format!("{}.>", config.clocks.subject_prefix);
        let announcements = subscribe_if(client, config.clocks.announced, &announcements).await?;
        let config = &config.taps;
        let mut deliveries = SelectAll::new();
        if config.deliveries {
            for pattern in &config.delivery_patterns {
                deliveries.push(subscribe(client, pattern).await?);
            }
        }
        // SelectAll ends when empty; keep it pending instead.
        deliveries.push(stream::pending().boxed());
        let taps = Self {
            deliveries,
            acks: subscribe_if(client, config.acks, ACK_SUBJECT).await?,
            metrics: subscribe_if(client, config.ack_metrics, METRIC_SUBJECT).await?,
            advisories: subscribe_if(client, config.advisories, ADVISORY_SUBJECT).await?,
            announcements,
        };
        client.flush().await?;
        Ok(taps)
    }
}

/// Most messages handled under one lock before the loop looks at its timer again.
const DRAIN_BATCH: usize = 256;

fn delivery(c: &mut Collector, m: &Message, seen: Seen) {
    let pairs = m.headers.iter().flat_map(|h| {
        h.iter().flat_map(|(name, values)| {
            values
                .iter()
                .map(move |v| (AsRef::<str>::as_ref(name), v.as_str()))
        })
    });
    c.on_delivery(m.subject.as_str(), m.reply.as_deref(), pairs, seen);
}

/// Which tap a message came from.
#[derive(Debug, Clone, Copy)]
enum Tap {
    Delivery,
    Ack,
    Metric,
    Advisory,
    Announcement,
}

fn apply(c: &mut Collector, tap: Tap, m: &Message, seen: Seen) {
    match tap {
        Tap::Delivery => delivery(c, m, seen),
        Tap::Ack => c.on_ack(m.subject.as_str(), m.reply.as_deref(), &m.payload, seen),
        Tap::Metric => c.on_metric(&m.payload, seen),
        Tap::Advisory => c.on_advisory(m.subject.as_str(), &m.payload, seen),
        Tap::Announcement => c.on_clock_announcement(m.subject.as_str(), &m.payload, seen),
    }
}

/// Messages read while the collector was busy (a report, heatmap or spike analysis holds it),
/// each with the instant it was read: latencies stay true to when messages arrived, however
/// long the collector is held. Bounded; what does not fit is counted and dropped.
#[derive(Default)]
struct Backlog {
    waiting: VecDeque<(Tap, Message, Seen)>,
    /// What the waiting messages hold, about: subject, reply, headers and payload.
    bytes: usize,
    dropped: u64,
}

/// About the bytes a message holds (the header map is counted by its wire length).
fn message_bytes(m: &Message) -> usize {
    m.subject.len()
        + m.reply.as_ref().map_or(0, |r| r.len())
        + m.payload.len()
        + m.headers.as_ref().map_or(0, |h| {
            h.iter()
                .map(|(name, values)| {
                    AsRef::<str>::as_ref(name).len()
                        + values.iter().map(|v| v.as_str().len() + 4).sum::<usize>()
                })
                .sum()
        })
}

impl Backlog {
    fn push(&mut self, tap: Tap, m: Message) {
        let size = message_bytes(&m);
        if self.waiting.len() >= BACKLOG_CAPACITY || self.bytes + size > BACKLOG_BYTES {
            self.dropped += 1;
        } else {
            self.bytes += size;
            self.waiting.push_back((tap, m, Seen::now()));
        }
    }

    /// Hands everything waiting to the collector, in the order it was read.
    fn flush(&mut self, c: &mut Collector) {
        for (tap, m, seen) in self.waiting.drain(..) {
            apply(c, tap, &m, seen);
        }
        self.bytes = 0;
        c.count_backlog_overflow(std::mem::take(&mut self.dropped));
    }
}

/// Most messages held while the collector is busy, and most bytes: payloads and headers vary
/// (a request/reply answer on `_INBOX.>` can be a megabyte), so both bound the backlog.
const BACKLOG_CAPACITY: usize = 131_072;
const BACKLOG_BYTES: usize = 256 << 20;

impl Taps {
    /// Handles deliveries and acks that are already waiting, deliveries first, without going
    /// back through the select loop: one lock for a burst instead of one per message.
    fn drain_ready(&mut self, c: &mut Collector) {
        for _ in 0..DRAIN_BATCH {
            if let Some(Some(m)) = self.deliveries.next().now_or_never() {
                apply(c, Tap::Delivery, &m, Seen::now());
            } else if let Some(Some(m)) = self.acks.next().now_or_never() {
                apply(c, Tap::Ack, &m, Seen::now());
            } else {
                return;
            }
        }
    }
}

/// Reads every tap into `collector` until `shutdown` resolves, calling `on_closed` for each
/// closed window. Never waits for the collector: while something else holds it, messages are
/// read on and kept in a backlog with the instant they were read.
pub async fn run(
    mut taps: Taps,
    collector: Arc<Mutex<Collector>>,
    events: Arc<ClientEvents>,
    mut on_closed: impl FnMut(&Collector, WindowSummary),
    shutdown: impl Future<Output = ()>,
) {
    let mut shutdown: Pin<Box<_>> = Box::pin(shutdown);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut backlog = Backlog::default();
    let mut watch = ConnectionWatch::new(&events);
    loop {
        let read = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            due = tick.tick() => {
                // How late the loop came to its tick: the runtime did not run it, or it was busy.
                let late = tokio::time::Instant::now().saturating_duration_since(due);
                events.own.tap_lag(Seen::now().wall_ns, late.as_nanos() as u64);
                None
            }
            Some(m) = taps.deliveries.next() => Some((Tap::Delivery, m)),
            Some(m) = taps.acks.next() => Some((Tap::Ack, m)),
            Some(m) = taps.metrics.next() => Some((Tap::Metric, m)),
            Some(m) = taps.advisories.next() => Some((Tap::Advisory, m)),
            Some(m) = taps.announcements.next() => Some((Tap::Announcement, m)),
            else => break,
        };
        let ticked = read.is_none();
        if let Some((tap, m)) = read {
            backlog.push(tap, m);
        }
        let Some(mut c) = try_lock(&collector) else {
            continue;
        };
        // While an outage is open, each message read looks again (a message may still come
        // from the client's buffers): the outage ends as the connection is back, not up to a
        // tick later.
        if !ticked && c.nats_down() {
            watch.look(&mut c, &events, Seen::now());
        }
        backlog.flush(&mut c);
        if ticked {
            let now = Seen::now();
            c.set_slow_consumer_events(events.slow_consumers.load(Ordering::Relaxed));
            watch.look(&mut c, &events, now);
            c.tick(now);
            for w in c.take_closed() {
                on_closed(&c, w);
            }
        } else {
            taps.drain_ready(&mut c);
        }
    }
    let mut c = lock(&collector);
    backlog.flush(&mut c);
    // What the client has read off the socket already is taken too.
    taps.drain_ready(&mut c);
}

/// The NATS connection as the tap loop last looked at it, so that outages reach the collector.
struct ConnectionWatch {
    /// Connections the client had made at the last look: a reconnection between two looks is
    /// an outage too short for a look to see down.
    connects: u64,
    looked: Seen,
}

impl ConnectionWatch {
    fn new(events: &ClientEvents) -> Self {
        Self {
            connects: events.connects(),
            looked: Seen::now(),
        }
    }

    /// Tells the collector whether NATS is connected at `now`.
    fn look(&mut self, c: &mut Collector, events: &ClientEvents, now: Seen) {
        let (connected, made) = (events.connected(), events.connects());
        if made > self.connects && !c.nats_down() {
            // Down and back since the last look: the outage lies between the two looks.
            c.on_nats_state(false, self.looked);
        }
        self.connects = made;
        self.looked = now;
        c.on_nats_state(connected, now);
    }
}

/// The collector if no one else holds it now.
fn try_lock(collector: &Mutex<Collector>) -> Option<std::sync::MutexGuard<'_, Collector>> {
    match collector.try_lock() {
        Ok(c) => Some(c),
        Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => None,
    }
}

/// Runs `f` on the collector from the blocking pool, so that waiting for the lock never
/// blocks a worker thread the taps run on.
async fn off_worker<T: Send + Default + 'static>(
    collector: &Arc<Mutex<Collector>>,
    f: impl FnOnce(&mut Collector) -> T + Send + 'static,
) -> T {
    let collector = collector.clone();
    match tokio::task::spawn_blocking(move || f(&mut lock(&collector))).await {
        Ok(value) => value,
        Err(error) => {
            tracing::error!(%error, "consumer state poll failed");
            T::default()
        }
    }
}

/// How often the round trip to the NATS server is measured, and how long a probe may take
/// before it counts as lost (a stalled server answers late, and that is measured).
const PROBE_EVERY: Duration = Duration::from_secs(1);
const PROBE_GIVE_UP: Duration = Duration::from_secs(30);

/// Measures the round trip to the NATS server every second: a numbered message published to a
/// subject only this process subscribes to, and back (a late answer to an earlier probe is
/// skipped, not taken for this one's). What an incident's latency is checked against before
/// the game servers are blamed. A probe that does not come back (no permission to publish
/// there, a server that is gone) is not measured; after ten in a row the probe waits a minute
/// between tries, and goes back to every second once one comes back.
pub async fn probe_round_trip(client: Client, events: Arc<ClientEvents>) {
    let subject = format!("ackscope.rtt.{:016x}", rand::random::<u64>());
    let Ok(mut replies) = client.subscribe(subject.clone()).await else {
        tracing::warn!(
            "cannot subscribe the round-trip probe; incidents are not checked against the server's round trip"
        );
        return;
    };
    let mut lost = 0u32;
    for seq in 0u64.. {
        tokio::time::sleep(if lost >= 10 {
            PROBE_EVERY * 60
        } else {
            PROBE_EVERY
        })
        .await;
        let sent = tokio::time::Instant::now();
        let payload = bytes::Bytes::from(seq.to_string());
        let published = tokio::time::timeout(
            PROBE_GIVE_UP,
            client.publish(subject.clone(), payload.clone()),
        )
        .await;
        if !matches!(published, Ok(Ok(()))) {
            lost = lost.saturating_add(1);
            continue;
        }
        let answer = tokio::time::timeout(PROBE_GIVE_UP, async {
            loop {
                match replies.next().await {
                    Some(m) if m.payload == payload => return true,
                    Some(_) => continue, // an earlier probe's, late
                    None => return false,
                }
            }
        })
        .await;
        match answer {
            Ok(true) => {
                if lost >= 10 {
                    tracing::info!(subject, "the round-trip probe is answered again");
                }
                lost = 0;
                events
                    .own
                    .rtt(Seen::now().wall_ns, sent.elapsed().as_nanos() as u64);
            }
            Ok(false) => return,
            Err(_) => {
                lost = lost.saturating_add(1);
                if lost == 10 {
                    tracing::warn!(
                        subject,
                        "the round-trip probe got no answer ten times in a row; trying once a minute"
                    );
                }
            }
        }
    }
}

/// Polls consumer info for every consumer seen (and the configured ones) every `interval`;
/// a consumer of a named JetStream domain is asked in its domain (`$JS.<domain>.API`).
pub async fn poll_consumer_state(client: Client, collector: Arc<Mutex<Collector>>, config: Config) {
    let mut contexts: HashMap<Option<String>, async_nats::jetstream::Context> = HashMap::new();
    let mut tick = tokio::time::interval(config.taps.consumer_state_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let mut targets: Vec<(String, String, Option<String>)> = config
            .taps
            .consumers
            .iter()
            .map(|(s, c)| (s.clone(), c.clone(), None))
            .collect();
        // The collector may be held by a query: wait for it on the blocking pool.
        let seen = off_worker(&collector, |c| {
            c.consumers_to_poll()
                .map(|(s, c, d)| (s.to_string(), c.to_string(), d.map(str::to_string)))
                .collect::<Vec<_>>()
        })
        .await;
        targets.extend(seen);
        targets.sort();
        targets.dedup();
        // Domains come and go with the consumers that name them.
        contexts.retain(|d, _| targets.iter().any(|t| &t.2 == d));
        for (stream, consumer, domain) in targets {
            let js = contexts
                .entry(domain.clone())
                .or_insert_with(|| match &domain {
                    Some(d) => async_nats::jetstream::with_domain(client.clone(), d),
                    None => async_nats::jetstream::new(client.clone()),
                });
            // (error text, whether the server says the consumer does not exist)
            let info = match js.get_stream_no_info(&stream).await {
                Ok(s) => s.consumer_info(&consumer).await.map_err(|e| {
                    use async_nats::jetstream::context::ConsumerInfoErrorKind as Kind;
                    let gone = matches!(
                        e.kind(),
                        Kind::NotFound | Kind::StreamNotFound | Kind::InvalidName
                    );
                    (e.to_string(), gone)
                }),
                Err(e) => Err((e.to_string(), false)),
            };
            off_worker(&collector, move |c| match info {
                Ok(info) => {
                    let state = ConsumerState::from_info(&info, Seen::now().wall_ns);
                    c.on_consumer_state(&stream, &consumer, domain.as_deref(), state);
                }
                Err((error, gone)) => {
                    c.count_consumer_state_error(&stream, &consumer, domain.as_deref(), gone);
                    tracing::debug!(%stream, %consumer, ?domain, %error, gone, "consumer info poll failed");
                }
            })
            .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn message(payload_bytes: usize) -> Message {
        Message {
            subject: "_INBOX.reply".into(),
            reply: None,
            payload: vec![0u8; payload_bytes].into(),
            headers: None,
            status: None,
            description: None,
            length: payload_bytes,
        }
    }

    #[test]
    fn the_backlog_is_bounded_in_bytes_as_well_as_messages() {
        let mut backlog = Backlog::default();
        // 1 MiB answers on `_INBOX.>`: the bytes bound the backlog long before the count does.
        for _ in 0..300 {
            backlog.push(Tap::Delivery, message(1 << 20));
        }
        assert_eq!(backlog.waiting.len(), (BACKLOG_BYTES >> 20) - 1);
        assert!(backlog.bytes <= BACKLOG_BYTES);
        let mut c = Collector::new(Config::default());
        backlog.flush(&mut c);
        let counters = c.counters();
        assert_eq!(
            counters.tap_backlog_overflow,
            300 - ((BACKLOG_BYTES >> 20) - 1) as u64
        );
        assert_eq!(
            counters.non_delivery_messages,
            ((BACKLOG_BYTES >> 20) - 1) as u64
        );
        // Emptied, it takes messages again.
        backlog.push(Tap::Delivery, message(10));
        assert_eq!((backlog.waiting.len(), backlog.bytes), (1, 10 + 12));
    }
}
