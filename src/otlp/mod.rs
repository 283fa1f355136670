//! OpenTelemetry export over OTLP/HTTP: metrics (ack and e2e latency as base-2 exponential
//! histograms, acks by kind, redeliveries, consumer state, ackscope's own health) and a span
//! for each slow ack, a child of the message's own trace (its `traceparent`), so the slow ack
//! shows inside the game's distributed trace; and a span for each ended P99 spike, with its
//! causes and links to the slow-ack spans of its exemplar traces.
//!
//! The collector hands each sample to an [`OtlpTap`]: a bounded queue to the exporter's own
//! thread (full: the sample is counted and dropped, the taps never wait). That thread records
//! the metrics and keeps each second's slowest acks, up to `spans_per_second`, as spans. The
//! SDK's periodic reader and batch span processor export from their own threads through
//! [`http::UreqClient`], which counts requests and failures; the exporter retries with
//! backoff up to its timeout.

pub mod config;
mod http;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, UNIX_EPOCH};

use opentelemetry::metrics::{
    BoundCounter, BoundHistogram, Counter, Histogram, Meter, MeterProvider as _,
};
use opentelemetry::trace::{
    Link, Span as _, SpanContext, SpanId, SpanKind, TraceContextExt, TraceFlags,
    TraceId as OtelTraceId, TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{
    Aggregation, Instrument, InstrumentKind, PeriodicReader, SdkMeterProvider, Stream,
};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider,
};

pub use config::{OtlpConfig, RawOtlp};

use crate::archive::SpikeRow;
use crate::collect::config::HeadersConfig;
use crate::collect::consumer_state::ConsumerState;
use crate::model::{AckKind, Labels, ParentSpan, Sample, TraceId};
use crate::names::Names;

/// What the gauges read at each export, copied out of the collector.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// Each consumer whose state is known: stream, consumer, its consumer info.
    pub consumers: Vec<(String, String, ConsumerState)>,
    pub samples: u64,
    pub join_pending: u64,
}

/// A read of the collector's numbers, and when it was taken.
type ReadAt = (Instant, Arc<Observed>);

/// What the export did, for `/metrics`.
#[derive(Debug, Default)]
pub struct OtlpStats {
    /// Samples and ended spikes not handed to the exporter's thread: its queue was full.
    pub queue_dropped: AtomicU64,
    /// Slow-ack spans.
    pub spans: AtomicU64,
    /// Slow acks and spikes beyond `spans_per_second` in their second: no span.
    pub spans_dropped: AtomicU64,
    /// Spike spans.
    pub spike_spans: AtomicU64,
    /// Slow acks with no span: no `traceparent`, or the sender does not sample the trace.
    pub spans_without_parent: AtomicU64,
    /// HTTP requests to the receiver (retries included), and those that failed.
    pub requests: AtomicU64,
    pub failed_requests: AtomicU64,
}

/// Why OTLP export cannot start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("otlp: {0}")]
    Exporter(String),
    #[error("{var}={value}: ackscope exports OTLP over HTTP with protobuf (http/protobuf) only")]
    Protocol { var: &'static str, value: String },
    #[error("{var}={value}: OTLP export speaks plain http:// only (put a collector beside it)")]
    Https { var: &'static str, value: String },
}

/// One consumer's points: stream, consumer, configured labels (and each ack kind for the ack
/// counter), bound once so that recording looks no attributes up.
#[derive(Debug)]
struct ConsumerAttrs {
    /// `None` when metrics are not exported.
    bound: Option<Bound>,
    stream: String,
    consumer: String,
}

/// The instruments, bound to one consumer's attributes.
#[derive(Debug)]
struct Bound {
    ack: BoundHistogram<f64>,
    e2e: BoundHistogram<f64>,
    acks: [BoundCounter<u64>; 4],
    redeliveries: BoundCounter<u64>,
}

/// The instruments every sample is recorded into.
#[derive(Debug, Clone)]
struct Instruments {
    ack: Histogram<f64>,
    e2e: Histogram<f64>,
    acks: Counter<u64>,
    redeliveries: Counter<u64>,
}

impl Instruments {
    fn new(m: &Meter) -> Self {
        Self {
            ack: m
                .f64_histogram("ackscope.ack.latency")
                .with_unit("s")
                .with_description("Delivery seen to ack seen (or the server's ack_time)")
                .build(),
            e2e: m
                .f64_histogram("ackscope.e2e.latency")
                .with_unit("s")
                .with_description("Stored in the stream to ack seen")
                .build(),
            acks: m
                .u64_counter("ackscope.acks")
                .with_description("Acks by kind (ack, nak, term, progress)")
                .build(),
            redeliveries: m
                .u64_counter("ackscope.redeliveries")
                .with_description("Acked deliveries with a delivery count above 1")
                .build(),
        }
    }

    fn bind(&self, base: &[KeyValue]) -> Bound {
        Bound {
            ack: self.ack.bind(base),
            e2e: self.e2e.bind(base),
            acks: AckKind::ALL.map(|k| {
                let mut v = base.to_vec();
                v.push(KeyValue::new("kind", k.as_str()));
                self.acks.bind(&v)
            }),
            redeliveries: self.redeliveries.bind(base),
        }
    }
}

/// An ack slower than its threshold, with the sender's span to hang it under.
#[derive(Debug)]
struct SlowAck {
    attrs: Arc<ConsumerAttrs>,
    trace_id: TraceId,
    parent: ParentSpan,
    start_ns: i64,
    acked_ns: i64,
    latency_ns: u64,
    subject: String,
    kind: AckKind,
    deliveries: u32,
    stream_seq: u64,
    phase_ns: u64,
    period_ns: u64,
}

/// Slow acks order by latency: the heap keeps each second's slowest.
struct BySlowness(Box<SlowAck>);

impl PartialEq for BySlowness {
    fn eq(&self, other: &Self) -> bool {
        self.0.latency_ns == other.0.latency_ns
    }
}
impl Eq for BySlowness {}
impl PartialOrd for BySlowness {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for BySlowness {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.latency_ns.cmp(&other.0.latency_ns)
    }
}

/// One sample as the exporter's thread records it.
#[derive(Debug)]
struct Event {
    attrs: Arc<ConsumerAttrs>,
    kind: AckKind,
    ack_s: Option<f64>,
    e2e_s: Option<f64>,
    redelivered: bool,
    slow: Option<Box<SlowAck>>,
}

/// An ended spike, as its span tells it.
#[derive(Debug)]
struct SpikeSpan {
    start_ns: i64,
    end_ns: i64,
    report: crate::analyze::report::SpikeReport,
}

/// What the collector hands the exporter's thread.
#[derive(Debug)]
enum Item {
    Sample(Event),
    Spike(Box<SpikeSpan>),
}

/// The collector's side: hands samples to the exporter's thread without waiting.
#[derive(Debug)]
pub struct OtlpTap {
    tx: SyncSender<Item>,
    stats: Arc<OtlpStats>,
    /// Per consumer id: the labels its attributes were built with, and the attributes.
    attrs: Vec<Option<(Labels, Arc<ConsumerAttrs>)>>,
    slow_ack_ns: Option<u64>,
    traces: bool,
    /// `None` when metrics are not exported.
    instruments: Option<Instruments>,
    /// The latency a slow ack must pass to enter this second's spans (0: any): the recorder's
    /// slowest-first set is full and its fastest is this slow.
    floor_ns: Arc<AtomicU64>,
}

/// How the collector sees a sample's frame when handing it over.
#[derive(Debug, Clone, Copy)]
pub struct FrameOf {
    pub phase_ns: u64,
    pub period_ns: u64,
}

impl OtlpTap {
    pub fn stats(&self) -> Arc<OtlpStats> {
        self.stats.clone()
    }

    /// Whether spans are exported (and so spikes are wanted).
    pub fn traces(&self) -> bool {
        self.traces
    }

    /// Hands ended spikes over, a span each (nothing when spans are not exported).
    pub fn spikes(&mut self, rows: &[SpikeRow]) {
        if !self.traces {
            return;
        }
        for r in rows {
            let spike = SpikeSpan {
                start_ns: r.start_ns,
                end_ns: r.end_ns,
                report: r.spike.clone(),
            };
            if self.tx.try_send(Item::Spike(Box::new(spike))).is_err() {
                self.stats.queue_dropped.fetch_add(1, Relaxed);
            }
        }
    }

    /// Drops every consumer's attributes: the collector forgot consumers or label values, and
    /// their ids and symbols will name others.
    pub fn forget(&mut self) {
        self.attrs.clear();
    }

    /// Hands `sample` over: its consumer's latest `labels`, and its frame.
    pub fn push(
        &mut self,
        sample: &Sample,
        labels: Labels,
        frame: FrameOf,
        names: &Names,
        headers: &HeadersConfig,
    ) {
        let id = sample.consumer as usize;
        if self.attrs.len() <= id {
            self.attrs.resize(id + 1, None);
        }
        let attrs = match &self.attrs[id] {
            Some((built, a)) if *built == labels => a.clone(),
            _ => {
                let a = Arc::new(consumer_attrs(
                    sample,
                    labels,
                    names,
                    headers,
                    self.instruments.as_ref(),
                ));
                self.attrs[id] = Some((labels, a.clone()));
                a
            }
        };
        let threshold = self.slow_ack_ns.unwrap_or(frame.period_ns);
        let slow = match (sample.ack_latency_ns, self.traces) {
            (Some(latency_ns), true) if latency_ns > threshold => {
                match (sample.trace_id, sample.parent_span) {
                    // It would give way at once: the second's spans are slower.
                    (Some(_), Some(parent))
                        if parent.sampled && latency_ns <= self.floor_ns.load(Relaxed) =>
                    {
                        self.stats.spans_dropped.fetch_add(1, Relaxed);
                        None
                    }
                    (Some(trace_id), Some(parent)) if parent.sampled => {
                        Some(Box::new(SlowAck {
                            attrs: attrs.clone(),
                            trace_id,
                            parent,
                            // Its length is the measured latency (monotonic), ending at the
                            // ack's wall-clock time.
                            start_ns: sample.acked_ns - latency_ns as i64,
                            acked_ns: sample.acked_ns,
                            latency_ns,
                            subject: names.symbol_name(sample.subject).unwrap_or("").to_string(),
                            kind: sample.kind,
                            deliveries: sample.deliveries,
                            stream_seq: sample.stream_seq,
                            phase_ns: frame.phase_ns,
                            period_ns: frame.period_ns,
                        }))
                    }
                    _ => {
                        self.stats.spans_without_parent.fetch_add(1, Relaxed);
                        None
                    }
                }
            }
            _ => None,
        };
        let event = Event {
            attrs,
            kind: sample.kind,
            ack_s: sample.ack_latency_ns.map(|ns| ns as f64 / 1e9),
            e2e_s: sample.e2e_latency_ns.map(|ns| ns as f64 / 1e9),
            redelivered: sample.deliveries > 1,
            slow,
        };
        if self.tx.try_send(Item::Sample(event)).is_err() {
            self.stats.queue_dropped.fetch_add(1, Relaxed);
        }
    }
}

fn consumer_attrs(
    sample: &Sample,
    labels: Labels,
    names: &Names,
    headers: &HeadersConfig,
    instruments: Option<&Instruments>,
) -> ConsumerAttrs {
    let (stream, consumer, domain) = names.scope_names(Some(sample.consumer));
    let mut base = vec![
        KeyValue::new("messaging.system", "nats"),
        KeyValue::new("stream", stream.to_string()),
        KeyValue::new("consumer", consumer.to_string()),
    ];
    if let Some(d) = domain {
        base.push(KeyValue::new("domain", d.to_string()));
    }
    for (name, value) in headers.label_names().into_iter().zip(labels) {
        if let Some(v) = names.symbol_name(value) {
            base.push(KeyValue::new(name, v.to_string()));
        }
    }
    ConsumerAttrs {
        bound: instruments.map(|i| i.bind(&base)),
        stream: stream.to_string(),
        consumer: consumer.to_string(),
    }
}

/// The export running: its providers and the thread that records into them.
pub struct Otlp {
    meters: Option<SdkMeterProvider>,
    tracer: Option<SdkTracerProvider>,
    worker: Option<std::thread::JoinHandle<()>>,
    stats: Arc<OtlpStats>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Whether export is on: an endpoint in the config or the environment, and the SDK not
/// disabled (`OTEL_SDK_DISABLED=true`).
pub fn enabled(config: &OtlpConfig) -> bool {
    if env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return false;
    }
    config.endpoint.is_some()
        || [
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        ]
        .iter()
        .any(|v| env(v).is_some())
}

/// The `service.instance.id`: configured, else host name and process id.
fn instance_id(config: &OtlpConfig) -> String {
    config.instance_id.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "ackscope".to_string());
        format!("{host}-{}", std::process::id())
    })
}

impl Otlp {
    /// Starts export when [`enabled`]; the tap goes to the collector. `max_consumers`
    /// bounds the attribute sets each instrument holds.
    pub fn start(
        config: &OtlpConfig,
        max_consumers: usize,
    ) -> Result<Option<(Otlp, OtlpTap)>, Error> {
        if !enabled(config) {
            return Ok(None);
        }
        // Each consumer by ack kind, and room for label values that change.
        let cardinality = max_consumers.saturating_mul(8).clamp(2_000, 1 << 22);
        for var in [
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        ] {
            if let Some(value) = env(var).filter(|v| v.starts_with("https://")) {
                return Err(Error::Https { var, value });
            }
        }
        for var in [
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        ] {
            if let Some(value) = env(var).filter(|v| v != "http/protobuf") {
                return Err(Error::Protocol { var, value });
            }
        }
        let stats = Arc::new(OtlpStats::default());
        // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES (the SDK's detectors) win over these
        // defaults.
        let from_env = env("OTEL_RESOURCE_ATTRIBUTES").unwrap_or_default();
        let mut resource = Resource::builder()
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
        if env("OTEL_SERVICE_NAME").is_none() && !from_env.contains("service.name=") {
            resource = resource.with_service_name("ackscope");
        }
        if !from_env.contains("service.instance.id=") {
            resource =
                resource.with_attribute(KeyValue::new("service.instance.id", instance_id(config)));
        }
        let resource = resource.build();
        let timeout = Duration::from_nanos(config.timeout_ns);
        let client = http::UreqClient::new(timeout, stats.clone());
        let endpoint = |path: &str| {
            config
                .endpoint
                .as_ref()
                .map(|e| format!("{}/{path}", e.trim_end_matches('/')))
        };

        let signal = |var: &str| {
            config.endpoint.is_some()
                || env("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
                || env(var).is_some()
        };
        let meters = if config.metrics && signal("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") {
            let mut builder = opentelemetry_otlp::MetricExporter::builder()
                .with_http()
                .with_http_client(client.clone())
                .with_timeout(timeout);
            if let Some(url) = endpoint("v1/metrics") {
                builder = builder.with_endpoint(url);
            }
            let exporter = builder
                .build()
                .map_err(|e| Error::Exporter(e.to_string()))?;
            let reader = PeriodicReader::builder(exporter)
                .with_interval(Duration::from_nanos(config.export_interval_ns))
                .build();
            Some(
                SdkMeterProvider::builder()
                    .with_resource(resource.clone())
                    .with_reader(reader)
                    .with_view(move |i: &Instrument| view(i, cardinality))
                    .build(),
            )
        } else {
            None
        };
        let tracer = if config.traces && signal("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            let mut builder = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_http_client(client)
                .with_timeout(timeout);
            if let Some(url) = endpoint("v1/traces") {
                builder = builder.with_endpoint(url);
            }
            let exporter = builder
                .build()
                .map_err(|e| Error::Exporter(e.to_string()))?;
            // A second of spans at the limit fits the queue four times over.
            let queue = (config.spans_per_second as usize * 4).clamp(64, 65_536);
            let processor = BatchSpanProcessor::builder(exporter)
                .with_batch_config(
                    BatchConfigBuilder::default()
                        .with_max_queue_size(queue)
                        .with_scheduled_delay(Duration::from_secs(1))
                        .build(),
                )
                .build();
            Some(
                SdkTracerProvider::builder()
                    .with_resource(resource)
                    // The rate limit is the sampling; a sender that does not sample the trace
                    // gets no span (counted before the limit).
                    .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
                    .with_span_processor(processor)
                    .build(),
            )
        } else {
            None
        };

        let (tx, rx) = std::sync::mpsc::sync_channel(config.queue);
        let floor_ns = Arc::new(AtomicU64::new(0));
        let instruments = meters
            .as_ref()
            .map(|m| Instruments::new(&m.meter("ackscope")));
        let recorder = Recorder::new(
            tracer.as_ref().map(|t| t.tracer("ackscope")),
            config.spans_per_second as usize,
            stats.clone(),
            floor_ns.clone(),
        );
        let worker = std::thread::Builder::new()
            .name("ackscope-otlp".into())
            .spawn(move || recorder.run(rx))
            .map_err(|e| Error::Exporter(e.to_string()))?;
        let tap = OtlpTap {
            tx,
            stats: stats.clone(),
            attrs: Vec::new(),
            slow_ack_ns: config.slow_ack_ns,
            traces: tracer.is_some(),
            instruments,
            floor_ns,
        };
        tracing::info!(
            endpoint = config
                .endpoint
                .as_deref()
                .unwrap_or("from OTEL_EXPORTER_OTLP_*"),
            metrics = config.metrics,
            traces = config.traces,
            "exporting OTLP"
        );
        Ok(Some((
            Otlp {
                meters,
                tracer,
                worker: Some(worker),
                stats,
            },
            tap,
        )))
    }

    pub fn stats(&self) -> Arc<OtlpStats> {
        self.stats.clone()
    }

    /// Gauges read at each export: consumer state and ackscope's own health, from `read`
    /// (the collector's numbers, copied out under its lock), called at most once a second.
    pub fn observe(&self, read: impl Fn() -> Observed + Send + Sync + 'static) {
        let Some(meters) = &self.meters else {
            return;
        };
        let meter = meters.meter("ackscope");
        // One read serves every gauge of an export.
        let cache: Arc<Mutex<Option<ReadAt>>> = Arc::default();
        let read = Arc::new(read);
        let current = move || {
            let mut c = cache
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match &*c {
                Some((at, o)) if at.elapsed() < Duration::from_secs(1) => o.clone(),
                _ => {
                    let o = Arc::new(read());
                    *c = Some((Instant::now(), o.clone()));
                    o
                }
            }
        };
        let current = Arc::new(current);
        type Read = fn(&ConsumerState) -> i64;
        let state: [(&'static str, &'static str, Read); 4] = [
            ("ackscope.consumer.ack_pending", "num_ack_pending", |s| {
                s.num_ack_pending as i64
            }),
            (
                "ackscope.consumer.max_ack_pending",
                "max_ack_pending (-1: unlimited)",
                |s| s.max_ack_pending,
            ),
            (
                "ackscope.consumer.num_pending",
                "messages not yet delivered",
                |s| s.num_pending as i64,
            ),
            (
                "ackscope.consumer.num_redelivered",
                "num_redelivered",
                |s| s.num_redelivered as i64,
            ),
        ];
        for (name, description, value) in state {
            let current = current.clone();
            meter
                .i64_observable_gauge(name)
                .with_description(description)
                .with_callback(move |o| {
                    for (stream, consumer, s) in &current().consumers {
                        let attrs = [
                            KeyValue::new("messaging.system", "nats"),
                            KeyValue::new("stream", stream.clone()),
                            KeyValue::new("consumer", consumer.clone()),
                        ];
                        o.observe(value(s), &attrs);
                    }
                })
                .build();
        }
        let own = current.clone();
        meter
            .u64_observable_counter("ackscope.samples")
            .with_description("Joined delivery → ack samples")
            .with_callback(move |o| o.observe(own().samples, &[]))
            .build();
        let own = current.clone();
        meter
            .u64_observable_gauge("ackscope.join.pending")
            .with_description("Deliveries waiting for their ack")
            .with_callback(move |o| o.observe(own().join_pending, &[]))
            .build();
        let stats = self.stats.clone();
        meter
            .u64_observable_counter("ackscope.otlp.dropped")
            .with_description("Samples and slow-ack spans the OTLP export dropped")
            .with_callback(move |o| {
                o.observe(
                    stats.queue_dropped.load(Relaxed),
                    &[KeyValue::new("what", "samples")],
                );
                o.observe(
                    stats.spans_dropped.load(Relaxed),
                    &[KeyValue::new("what", "spans")],
                );
            })
            .build();
    }

    /// Lets the recorder finish what it holds, then exports what is left and stops. Blocks:
    /// call it off the async workers.
    pub fn shutdown(mut self, tap: Option<OtlpTap>) {
        drop(tap);
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
        // Shutting down exports what is left, once.
        if let Some(t) = self.tracer.take() {
            let _ = t.shutdown();
        }
        if let Some(m) = self.meters.take() {
            let _ = m.shutdown();
        }
    }
}

/// Every instrument may hold `cardinality` attribute sets (each consumer's, by ack kind);
/// histograms aggregate as base-2 exponential histograms: fine buckets from microseconds to
/// seconds with no boundaries to choose.
fn view(i: &Instrument, cardinality: usize) -> Option<Stream> {
    let stream = Stream::builder().with_cardinality_limit(cardinality);
    let stream = if i.kind() == InstrumentKind::Histogram {
        stream.with_aggregation(Aggregation::Base2ExponentialHistogram {
            max_size: 160,
            max_scale: 20,
            record_min_max: true,
        })
    } else {
        stream
    };
    stream.build().ok()
}

/// The slow-ack spans a spike span can link to: the latest [`SpanMemory::CAPACITY`], by trace.
#[derive(Debug, Default)]
struct SpanMemory {
    by_trace: HashMap<[u8; 16], [u8; 8]>,
    order: VecDeque<[u8; 16]>,
}

impl SpanMemory {
    /// At the default 100 spans a second, the last 11 minutes: longer than a spike takes to
    /// end and be explained.
    const CAPACITY: usize = 65_536;

    fn remember(&mut self, trace: [u8; 16], span: [u8; 8]) {
        if self.by_trace.insert(trace, span).is_none() {
            self.order.push_back(trace);
        }
        while self.order.len() > Self::CAPACITY {
            if let Some(old) = self.order.pop_front() {
                self.by_trace.remove(&old);
            }
        }
    }

    fn span_of(&self, trace: &TraceId) -> Option<SpanId> {
        self.by_trace.get(&trace.0).map(|s| SpanId::from_bytes(*s))
    }
}

/// The exporter's thread: records each sample, turns each second's ended spikes and slowest
/// acks into spans.
struct Recorder {
    tracer: Option<opentelemetry_sdk::trace::SdkTracer>,
    limit: usize,
    stats: Arc<OtlpStats>,
    slow: BinaryHeap<Reverse<BySlowness>>,
    /// Shared with the tap: the fastest of `slow` once it is full, else 0.
    floor_ns: Arc<AtomicU64>,
    /// Ended spikes waiting for this second's emit, at most `limit`.
    spikes: Vec<SpikeSpan>,
    emitted: SpanMemory,
}

/// `ns` since the epoch as a time (before it: the epoch).
fn at(ns: i64) -> std::time::SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns.max(0) as u64)
}

impl Recorder {
    fn new(
        tracer: Option<opentelemetry_sdk::trace::SdkTracer>,
        limit: usize,
        stats: Arc<OtlpStats>,
        floor_ns: Arc<AtomicU64>,
    ) -> Self {
        Self {
            tracer,
            limit,
            stats,
            slow: BinaryHeap::new(),
            floor_ns,
            spikes: Vec::new(),
            emitted: SpanMemory::default(),
        }
    }

    /// Drains the queue every [`POLL`]: senders never pay for waking this thread, and a
    /// second's spans go out once it is over.
    fn run(mut self, rx: Receiver<Item>) {
        const POLL: Duration = Duration::from_millis(5);
        let mut second = Instant::now() + Duration::from_secs(1);
        loop {
            let open = loop {
                match rx.try_recv() {
                    Ok(Item::Sample(event)) => self.record(event),
                    Ok(Item::Spike(spike)) => {
                        if self.spikes.len() < self.limit {
                            self.spikes.push(*spike);
                        } else {
                            self.stats.spans_dropped.fetch_add(1, Relaxed);
                        }
                    }
                    Err(TryRecvError::Empty) => break true,
                    Err(TryRecvError::Disconnected) => break false,
                }
            };
            let now = Instant::now();
            if !open || now >= second {
                self.emit();
                second = now + Duration::from_secs(1);
            }
            if !open {
                return;
            }
            std::thread::sleep(POLL.min(second.saturating_duration_since(now)));
        }
    }

    fn record(&mut self, e: Event) {
        if let Some(b) = &e.attrs.bound {
            if let Some(s) = e.ack_s {
                b.ack.record(s);
            }
            if let Some(s) = e.e2e_s {
                b.e2e.record(s);
            }
            // `AckKind::ALL` is in declaration order, as `bind` made `acks`.
            b.acks[e.kind as usize].add(1);
            if e.redelivered {
                b.redeliveries.add(1);
            }
        }
        if let Some(slow) = e.slow {
            self.slow.push(Reverse(BySlowness(slow)));
            if self.slow.len() > self.limit {
                // The fastest of the second's slow acks gives way.
                self.slow.pop();
                self.stats.spans_dropped.fetch_add(1, Relaxed);
            }
            if self.slow.len() >= self.limit {
                let fastest = self.slow.peek().map_or(0, |Reverse(s)| s.0.latency_ns);
                self.floor_ns.store(fastest, Relaxed);
            }
        }
    }

    /// This second's spans: ended spikes first, then the slowest acks, slowest first, up to
    /// the limit together.
    fn emit(&mut self) {
        self.floor_ns.store(0, Relaxed);
        let Some(tracer) = self.tracer.clone() else {
            self.slow.clear();
            self.spikes.clear();
            return;
        };
        let mut room = self.limit;
        for spike in std::mem::take(&mut self.spikes) {
            self.spike_span(&tracer, &spike);
            room -= 1;
        }
        let mut slow: Vec<Box<SlowAck>> = self.slow.drain().map(|Reverse(s)| s.0).collect();
        slow.sort_by_key(|s| Reverse(s.latency_ns));
        let over = slow.len().saturating_sub(room);
        slow.truncate(room);
        self.stats.spans_dropped.fetch_add(over as u64, Relaxed);
        for s in slow {
            self.slow_ack_span(&tracer, &s);
        }
    }

    /// A consumer-kind span from delivery to ack, a child of the message's own span.
    fn slow_ack_span(&mut self, tracer: &opentelemetry_sdk::trace::SdkTracer, s: &SlowAck) {
        let parent = SpanContext::new(
            OtelTraceId::from_bytes(s.trace_id.0),
            SpanId::from_bytes(s.parent.span_id),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        let cx = Context::new().with_remote_span_context(parent);
        let attributes = vec![
            KeyValue::new("messaging.system", "nats"),
            KeyValue::new("messaging.operation.type", "process"),
            KeyValue::new("messaging.operation.name", s.kind.as_str()),
            KeyValue::new("messaging.destination.name", s.subject.clone()),
            KeyValue::new("messaging.consumer.group.name", s.attrs.consumer.clone()),
            KeyValue::new("messaging.nats.stream", s.attrs.stream.clone()),
            KeyValue::new("messaging.nats.delivery_count", i64::from(s.deliveries)),
            KeyValue::new("messaging.nats.stream_sequence", s.stream_seq as i64),
            KeyValue::new("ackscope.ack.latency_us", s.latency_ns as f64 / 1e3),
            KeyValue::new("ackscope.frame.phase_us", s.phase_ns as f64 / 1e3),
            KeyValue::new("ackscope.frame.period_us", s.period_ns as f64 / 1e3),
        ];
        let mut span = tracer
            .span_builder(format!("ack {}", s.attrs.stream))
            .with_kind(SpanKind::Consumer)
            .with_start_time(at(s.start_ns))
            .with_attributes(attributes)
            .start_with_context(tracer, &cx);
        let id = span.span_context().span_id().to_bytes();
        span.end_with_timestamp(at(s.acked_ns));
        self.emitted.remember(s.trace_id.0, id);
        self.stats.spans.fetch_add(1, Relaxed);
    }

    /// An internal span over the spike's windows, the root of its own trace: its P99 against
    /// the baseline, its ranked causes (an event each, with the evidence in words), every
    /// exemplar trace id, and a link to each exemplar's slow-ack span this export made.
    fn spike_span(&mut self, tracer: &opentelemetry_sdk::trace::SdkTracer, spike: &SpikeSpan) {
        let r = &spike.report;
        let mut links: Vec<Link> = Vec::new();
        let mut exemplars: Vec<TraceId> = Vec::new();
        for c in &r.causes {
            for t in &c.exemplar_trace_ids {
                if exemplars.contains(t) {
                    continue;
                }
                exemplars.push(*t);
                if let Some(span_id) = self.emitted.span_of(t) {
                    let linked = SpanContext::new(
                        OtelTraceId::from_bytes(t.0),
                        span_id,
                        TraceFlags::SAMPLED,
                        true,
                        TraceState::default(),
                    );
                    let why = vec![KeyValue::new("ackscope.cause", c.cause.as_str())];
                    links.push(Link::new(linked, why, 0));
                }
            }
        }
        let strings = |v: Vec<String>| {
            opentelemetry::Value::Array(opentelemetry::Array::String(
                v.into_iter().map(Into::into).collect(),
            ))
        };
        let top = r.causes.first();
        let attributes = vec![
            KeyValue::new("messaging.system", "nats"),
            KeyValue::new("messaging.nats.stream", r.stream.clone()),
            KeyValue::new("messaging.consumer.group.name", r.consumer.clone()),
            KeyValue::new("ackscope.latency", r.latency.as_str()),
            KeyValue::new("ackscope.p99_us", r.p99_us),
            KeyValue::new("ackscope.baseline_p99_us", r.baseline_p99_us),
            KeyValue::new("ackscope.windows", r.windows as i64),
            KeyValue::new(
                "ackscope.cause",
                top.map_or("unknown", |c| c.cause.as_str()),
            ),
            KeyValue::new("ackscope.confidence", top.map_or(0.0, |c| c.confidence)),
            KeyValue::new(
                "ackscope.causes",
                strings(r.causes.iter().map(|c| c.cause.as_str().into()).collect()),
            ),
            KeyValue::new(
                "ackscope.exemplar_trace_ids",
                strings(exemplars.iter().map(ToString::to_string).collect()),
            ),
        ];
        let mut span = tracer
            .span_builder(format!("p99 spike {}/{}", r.stream, r.consumer))
            .with_kind(SpanKind::Internal)
            .with_start_time(at(spike.start_ns))
            .with_attributes(attributes)
            .with_links(links)
            .start_with_context(tracer, &Context::new());
        for c in &r.causes {
            let mut attrs = vec![
                KeyValue::new("ackscope.confidence", c.confidence),
                KeyValue::new("ackscope.summary", c.summary.clone()),
            ];
            if let Some(by) = c.caused_by {
                attrs.push(KeyValue::new("ackscope.caused_by", by.as_str()));
            }
            span.add_event_with_timestamp(c.cause.as_str(), at(spike.end_ns), attrs);
        }
        span.end_with_timestamp(at(spike.end_ns));
        self.stats.spike_spans.fetch_add(1, Relaxed);
    }
}

impl std::fmt::Debug for Otlp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Otlp")
            .field("metrics", &self.meters.is_some())
            .field("traces", &self.tracer.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn span_memory_keeps_the_latest_spans_by_trace() {
        let mut m = SpanMemory::default();
        let trace = |i: usize| {
            let mut t = [0u8; 16];
            t[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
            t
        };
        for i in 0..SpanMemory::CAPACITY + 10 {
            m.remember(trace(i), (i as u64 + 1).to_le_bytes());
        }
        assert_eq!(m.by_trace.len(), SpanMemory::CAPACITY);
        assert_eq!(m.order.len(), SpanMemory::CAPACITY);
        // The first ten went; the eleventh and the latest are there.
        assert_eq!(m.span_of(&TraceId(trace(9))), None);
        assert_eq!(
            m.span_of(&TraceId(trace(10))),
            Some(SpanId::from_bytes(11u64.to_le_bytes()))
        );
        let last = SpanMemory::CAPACITY + 9;
        // A trace seen again keeps its place and takes the newer span.
        m.remember(trace(last), [9; 8]);
        assert_eq!(m.order.len(), SpanMemory::CAPACITY);
        assert_eq!(
            m.span_of(&TraceId(trace(last))),
            Some(SpanId::from_bytes([9; 8]))
        );
    }
}
