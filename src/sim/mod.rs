//! The game fleet simulator: real NATS clients that behave like game servers (a fixed-rate
//! frame loop: game logic, then message processing and real JetStream acks) and misbehave on a
//! timeline of faults, writing down exactly what they injected (the ground truth).
//!
//! [`scenario`] is the file format; [`faults`] decides, purely, what a fault does to one
//! server at one instant; this module runs the fleet on tokio.

pub mod faults;
pub mod scenario;
pub mod truth;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use async_nats::{Client, HeaderMap};
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, LogNormal};
use tokio::time::{Instant, sleep_until};

use crate::collect::acks::parse_ack_subject;
use crate::collector::lock;
use crate::model::Seen;
use crate::tick::{Frame, Period};

use faults::Effects;
use scenario::Scenario;
use truth::{ClientLatency, FleetStats, PauseRecord, Truth};

/// A simulator error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot set up JetStream: {0}")]
    Setup(String),
}

/// Most GC pauses (and, apart, simulator stalls) recorded per run in the truth file.
const MAX_PAUSE_RECORDS: usize = 100_000;

/// The fleet's shared clock: frame `k` starts at `t0 + k * tick`, on wall-clock multiples of
/// the tick so that frame phase 0 is `unix_ns mod tick == 0`, as ackscope computes it.
#[derive(Debug, Clone, Copy)]
pub struct Timeline {
    pub t0: Instant,
    pub t0_wall_ns: i64,
    pub tick_ns: u64,
    pub duration_ns: u64,
    pub repeat: bool,
}

impl Timeline {
    /// Starts at the first frame boundary of `period` (from the Unix epoch) at least `lead`
    /// from now.
    pub fn start(period: Period, duration_ns: u64, repeat: bool, lead: Duration) -> Self {
        let tick_ns = period.ns();
        let now = Instant::now();
        let wall = Seen::now().wall_ns;
        let target = wall + lead.as_nanos() as i64;
        let frames = Frame {
            period,
            epoch_ns: 0,
        };
        let t0_wall_ns = frames.start_of(frames.frame_and_scaled(target).0 + 1);
        Self {
            t0: now + Duration::from_nanos((t0_wall_ns - wall) as u64),
            t0_wall_ns,
            tick_ns,
            duration_ns,
            repeat,
        }
    }

    pub fn at(&self, offset_ns: u64) -> Instant {
        self.t0 + Duration::from_nanos(offset_ns)
    }

    pub fn wall_of(&self, at: Instant) -> i64 {
        self.t0_wall_ns + at.saturating_duration_since(self.t0).as_nanos() as i64
    }

    /// Nanoseconds since `t0`.
    pub fn elapsed(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.t0).as_nanos() as u64
    }

    /// Position within the scenario (wrapping when it repeats).
    pub fn offset(&self, elapsed_ns: u64) -> u64 {
        if self.repeat {
            elapsed_ns % self.duration_ns
        } else {
            elapsed_ns
        }
    }

    pub fn ended(&self, elapsed_ns: u64) -> bool {
        !self.repeat && elapsed_ns >= self.duration_ns
    }
}

type Stats = FleetStats;

/// Creates the stream and one durable consumer per server (replacing any of the same name).
async fn set_up(
    js: &jetstream::Context,
    s: &Scenario,
) -> Result<Vec<BoxStream<'static, jetstream::Message>>, Error> {
    let setup = |e: &dyn std::fmt::Display| Error::Setup(e.to_string());
    let stream = js
        .get_or_create_stream(stream::Config {
            name: s.stream.clone(),
            subjects: vec![s.subject.replace("{server}", "*")],
            storage: stream::StorageType::Memory,
            max_age: Duration::from_secs(600),
            ..Default::default()
        })
        .await
        .map_err(|e| setup(&e))?;
    let mut deliveries = Vec::new();
    for i in 0..s.servers {
        let name = Scenario::server_name(i);
        let _ = stream.delete_consumer(&name).await;
        stream
            .create_consumer(consumer::Config {
                durable_name: Some(name.clone()),
                deliver_subject: s.push.then(|| format!("deliver.{name}")),
                filter_subject: s.subject_of(i),
                ack_policy: consumer::AckPolicy::Explicit,
                // Only this run's messages, not what an earlier run left in the stream.
                deliver_policy: consumer::DeliverPolicy::New,
                ack_wait: Duration::from_nanos(s.ack_wait_ns),
                max_ack_pending: s.max_ack_pending,
                max_deliver: s.max_deliver,
                sample_frequency: s.sample_freq,
                ..Default::default()
            })
            .await
            .map_err(|e| setup(&e))?;
        let messages: BoxStream<'static, jetstream::Message> = if s.push {
            let consumer: consumer::PushConsumer =
                stream.get_consumer(&name).await.map_err(|e| setup(&e))?;
            consumer
                .messages()
                .await
                .map_err(|e| setup(&e))?
                .filter_map(|m| async { m.ok() })
                .boxed()
        } else {
            let consumer: consumer::PullConsumer =
                stream.get_consumer(&name).await.map_err(|e| setup(&e))?;
            consumer
                .stream()
                .max_messages_per_batch(100)
                .heartbeat(Duration::from_secs(5))
                .expires(Duration::from_secs(30))
                .messages()
                .await
                .map_err(|e| setup(&e))?
                .filter_map(|m| async { m.ok() })
                .boxed()
        };
        deliveries.push(messages);
    }
    Ok(deliveries)
}

/// A fresh W3C `traceparent`.
fn traceparent(rng: &mut StdRng) -> String {
    let trace: u128 = rng.random::<u128>() | 1;
    let span: u64 = rng.random::<u64>() | 1;
    format!("00-{trace:032x}-{span:016x}-01")
}

/// Publishes every server's messages: a quarter of a frame's worth every quarter frame on an
/// aligned fleet; on a fleet of servers with their own frames, at random sixteenths of the
/// frame, so that messages reach each server at every phase of its frame, as players' inputs
/// do.
async fn publisher(
    client: Client,
    s: Arc<Scenario>,
    timeline: Timeline,
    stats: Arc<Mutex<Stats>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let steps: u64 = if s.own_frames { 16 } else { 4 };
    let mut rng = StdRng::seed_from_u64(s.seed ^ 0x5EED);
    let payload = Bytes::from(vec![b'x'; s.message_size]);
    let subjects: Vec<String> = (0..s.servers).map(|i| s.subject_of(i)).collect();
    let names: Vec<String> = (0..s.servers).map(Scenario::server_name).collect();
    let mut carry = vec![0.0f64; s.servers as usize];
    let step_ns = s.tick_ns / steps;
    for k in 0u64.. {
        let elapsed = k * step_ns;
        if timeline.ended(elapsed) {
            break;
        }
        tokio::select! {
            _ = sleep_until(timeline.at(elapsed)) => {}
            _ = stop.changed() => break,
        }
        let offset = timeline.offset(elapsed);
        let mut sent = 0;
        for i in 0..s.servers {
            let rate =
                s.events_per_frame as f64 * Effects::at(&s, i, offset).load_factor / steps as f64;
            // Inputs of many players arrive at random instants: the same rate, at no fixed
            // phase (aligned fleets keep their fixed quarter-frame steps).
            carry[i as usize] += if s.own_frames {
                rate * rng.random_range(0.0..2.0)
            } else {
                rate
            };
            while carry[i as usize] >= 1.0 {
                carry[i as usize] -= 1.0;
                let mut headers = HeaderMap::new();
                headers.insert("traceparent", traceparent(&mut rng).as_str());
                headers.insert("X-Server-Id", names[i as usize].as_str());
                if client
                    .publish_with_headers(subjects[i as usize].clone(), headers, payload.clone())
                    .await
                    .is_ok()
                {
                    sent += 1;
                }
            }
        }
        lock(&stats).published += sent;
    }
}

/// Keeps a closed second of a server's own latency in the truth (the first
/// [`truth::MAX_CLIENT_WINDOWS`]).
fn keep(stats: &Mutex<Stats>, w: truth::ClientWindow) {
    let mut st = lock(stats);
    if st.client_windows.len() < truth::MAX_CLIENT_WINDOWS {
        st.client_windows.push(w);
    }
}

/// Acks `m`; records its e2e latency as the server saw it (stored → ack sent).
async fn ack(m: &jetstream::Message, own: &mut ClientLatency, stats: &Mutex<Stats>) -> bool {
    if m.ack().await.is_err() {
        return false;
    }
    let stored = m
        .reply
        .as_ref()
        .and_then(|r| parse_ack_subject(r.as_str()).ok())
        .map(|a| a.stored_ns);
    if let Some(w) = stored.and_then(|stored| own.record(stored, Seen::now().wall_ns)) {
        keep(stats, w);
    }
    true
}

/// Announces server `index`'s frame clock, as a game server would at start and after a
/// restart: its period and the Unix time of a frame start.
async fn announce(client: &Client, s: &Scenario, index: u32, epoch_ns: i64, period_ns: f64) {
    let subject = format!(
        "ackscope.frame.{}.{}",
        s.stream,
        Scenario::server_name(index)
    );
    // A whole frequency is announced as one (exact); any other period in nanoseconds.
    let hz = 1e9 / period_ns;
    let body = if (hz - hz.round()).abs() < 1e-9 {
        serde_json::json!({"hz": hz.round() as u64, "epoch_ns": epoch_ns})
    } else {
        serde_json::json!({"period_ns": period_ns, "epoch_ns": epoch_ns})
    };
    if client
        .publish(subject, body.to_string().into())
        .await
        .is_err()
    {
        tracing::warn!(server = index + 1, "frame clock announcement not sent");
    }
}

/// One game server's frame loop.
async fn server(
    index: u32,
    s: Arc<Scenario>,
    timeline: Timeline,
    mut deliveries: BoxStream<'static, jetstream::Message>,
    stats: Arc<Mutex<Stats>>,
    announcer: Option<Client>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut rng = StdRng::seed_from_u64(
        s.seed
            .wrapping_add(u64::from(index + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
    );
    let sigma = ((s.cost_p99_ns as f64 / s.cost_median_ns as f64).ln() / 2.326).max(1e-6);
    let cost = LogNormal::new((s.cost_median_ns as f64).ln(), sigma).expect("valid log-normal");
    let clock = s.clocks[index as usize];
    let tick = clock.period_ns.round() as u64;
    let mut frame: u64 = 0;
    let mut restart_announced = false;
    if let Some(client) = &announcer {
        announce(
            client,
            &s,
            index,
            timeline.t0_wall_ns + clock.start_of(0) as i64,
            clock.period_ns,
        )
        .await;
    }
    let mut after_pause = false;
    let mut own = ClientLatency::new(Scenario::server_name(index));
    loop {
        let start_ns = clock.start_of(frame);
        // A restart is announced once its first frame is reached (or passed over).
        if let (Some(client), Some(k)) = (&announcer, clock.restart_frame())
            && !restart_announced
            && frame >= k
        {
            restart_announced = true;
            let epoch = timeline.t0_wall_ns + clock.start_of(k) as i64;
            announce(client, &s, index, epoch, clock.period_ns).await;
        }
        if timeline.ended(start_ns) {
            if let Some(w) = own.take() {
                keep(&stats, w);
            }
            break;
        }
        let frame_start = timeline.at(start_ns);
        tokio::select! {
            _ = sleep_until(frame_start) => {}
            _ = stop.changed() => break,
        }
        let offset = timeline.offset(start_ns);
        let effects = Effects::at(&s, index, offset);
        {
            let mut st = lock(&stats);
            st.frames += 1;
            if !after_pause {
                let now = Instant::now();
                let late = now.saturating_duration_since(frame_start).as_nanos() as u64;
                st.lateness.record(late);
                if late >= truth::STALL_NS && st.stalls.len() < MAX_PAUSE_RECORDS {
                    st.stalls.push(PauseRecord {
                        server: Scenario::server_name(index),
                        start_ns: timeline.wall_of(frame_start),
                        end_ns: timeline.wall_of(now),
                    });
                }
            }
        }
        after_pause = false;
        if let Some(pause) = faults::pause_in_frame(&s, index, offset, &mut rng) {
            // The whole loop stops: no processing, no acks.
            sleep_until(frame_start + Duration::from_nanos(pause.phase_ns)).await;
            // When it really began: the frame may have started late.
            let begin = Instant::now();
            tokio::time::sleep(Duration::from_nanos(pause.length_ns)).await;
            let mut st = lock(&stats);
            if st.pauses.len() < MAX_PAUSE_RECORDS {
                st.pauses.push(PauseRecord {
                    server: Scenario::server_name(index),
                    start_ns: timeline.wall_of(begin),
                    end_ns: timeline.wall_of(Instant::now()),
                });
            }
            drop(st);
            frame = clock.frame_at(timeline.elapsed(Instant::now())) + 1;
            after_pause = true;
            continue;
        }
        // The logic phase: no message is handled. Then messages are handled as they arrive,
        // one at a time, until the frame ends; each is acked when handled (unless a fault holds
        // or loses the ack).
        // The next frame's start: a restart at an earlier offset shortens this one.
        let frame_end = timeline.at(clock.start_of(frame + 1));
        let mut busy = frame_start + Duration::from_nanos(s.logic_ns);
        sleep_until(busy).await;
        let mut held: Vec<(Instant, jetstream::Message)> = Vec::new();
        let (mut sent, mut dropped) = (0u64, 0u64);
        loop {
            // Acks whose time has come.
            let now = Instant::now();
            let due = held.partition_point(|a| a.0 <= now);
            for (_, m) in held.drain(..due) {
                sent += u64::from(ack(&m, &mut own, &stats).await);
            }
            if busy >= frame_end {
                break;
            }
            let wake = held.first().map_or(frame_end, |a| a.0.min(frame_end));
            let next = tokio::select! {
                biased;
                m = deliveries.next() => m,
                _ = sleep_until(wake) => None,
                _ = stop.changed() => return,
            };
            let Some(m) = next else {
                if Instant::now() >= frame_end {
                    break;
                }
                continue;
            };
            let c = cost.sample(&mut rng) as u64 + effects.extra_cost_ns;
            busy = busy.max(Instant::now()) + Duration::from_nanos(c);
            // The thread is busy that long; shorter costs than the timer's 1 ms are accounted
            // for on the virtual clock `busy` alone.
            if busy.saturating_duration_since(Instant::now()) >= Duration::from_millis(1) {
                sleep_until(busy).await;
            }
            let processed = busy.saturating_duration_since(frame_start).as_nanos() as u64;
            let held_to = effects.ack_offset(processed, tick);
            let ack_at = frame_start + Duration::from_nanos(held_to);
            if effects.ack_loss > 0.0 && rng.random_bool(effects.ack_loss) {
                dropped += 1; // never acked: the server redelivers after ack_wait
            } else if ack_at <= Instant::now()
                || (held_to == processed
                    && frame_start + Duration::from_nanos(effects.ack_offset(0, tick))
                        <= Instant::now())
            {
                // Due, or held by no fault at this instant: acked once processed. A cost below
                // the timer's 1 ms lives on `busy` alone; waiting for it on a timer would add
                // the timer's lateness (1–2 ms) to every healthy ack. (`busy` may run ahead of
                // the clock, so a fault's hold is checked against the clock, not `busy`.)
                sent += u64::from(ack(&m, &mut own, &stats).await);
            } else {
                let at = held.partition_point(|a| a.0 <= ack_at);
                held.insert(at, (ack_at, m));
            }
        }
        for (at, m) in held {
            sleep_until(at).await;
            sent += u64::from(ack(&m, &mut own, &stats).await);
        }
        {
            let mut st = lock(&stats);
            st.acks_sent += sent;
            st.acks_dropped += dropped;
        }
        // An overrun frame makes the next one start late; skip frames already missed.
        frame = (frame + 1).max(clock.frame_at(timeline.elapsed(Instant::now())));
    }
}

/// Runs `s` against the NATS server of `client` until the timeline ends (or `stop` fires, for
/// a repeating one), then returns the ground truth.
pub async fn run(
    client: Client,
    s: Scenario,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<Truth, Error> {
    let js = jetstream::new(client.clone());
    let deliveries = set_up(&js, &s).await?;
    let s = Arc::new(s);
    let timeline = Timeline::start(
        s.period,
        s.duration_ns,
        s.repeat,
        Duration::from_millis(300),
    );
    let stats = Arc::new(Mutex::new(Stats::default()));
    let mut tasks = vec![tokio::spawn(publisher(
        client.clone(),
        s.clone(),
        timeline,
        stats.clone(),
        stop.clone(),
    ))];
    for (i, d) in deliveries.into_iter().enumerate() {
        tasks.push(tokio::spawn(server(
            i as u32,
            s.clone(),
            timeline,
            d,
            stats.clone(),
            s.announce.then(|| client.clone()),
            stop.clone(),
        )));
    }
    tracing::info!(scenario = %s.name, servers = s.servers, "simulation started");
    for t in tasks {
        let _ = t.await;
    }
    let ended = timeline.wall_of(Instant::now());
    Ok(Truth::new(&s, &timeline, ended, &lock(&stats)))
}
