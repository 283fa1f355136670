//! The event and sample types the pipeline passes along: no I/O, no runtime.
//!
//! A [`Sample`] is one completed delivery: a delivery joined with its ack (or an ack whose
//! delivery was not seen, or a server ack metric). Names (streams, consumers, subjects, label
//! values) travel as small interned ids ([`ConsumerId`], [`Sym`]); [`crate::names`] maps them back.

use std::fmt;

/// The most dimension headers a sample can carry; each is a fixed slot, so samples never allocate.
pub const MAX_LABELS: usize = 4;

/// Index of a (stream, consumer) pair in [`crate::names::Names`].
pub type ConsumerId = u32;

/// The consumer of a kept sample whose consumer was forgotten (idle long enough that its id
/// went to another): counted in every consumer's total, attributed to none.
pub const FORGOTTEN_CONSUMER: ConsumerId = ConsumerId::MAX;

/// Index of an interned string (message subject or label value). [`Sym::NONE`] means absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sym(pub u32);

impl Default for Sym {
    fn default() -> Self {
        Sym::NONE
    }
}

impl Sym {
    pub const NONE: Sym = Sym(u32::MAX);

    pub fn is_none(self) -> bool {
        self == Sym::NONE
    }
}

/// Label values of a sample, one slot per configured dimension header.
pub type Labels = [Sym; MAX_LABELS];

/// Labels with every slot empty.
pub const NO_LABELS: Labels = [Sym::NONE; MAX_LABELS];

/// The sender's span a `traceparent` names: a span for the message's ack is its child.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ParentSpan {
    pub span_id: [u8; 8],
    /// The trace-flags' sampled bit: the sender records this trace.
    pub sampled: bool,
}

/// A W3C trace id: 16 bytes, never all zero.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId(pub [u8; 16]);

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl schemars::JsonSchema for TraceId {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "TraceId".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A W3C trace id: 32 lower-case hex digits, not all zero.",
            "pattern": "^[0-9a-f]{32}$"
        })
    }
}

impl serde::Serialize for TraceId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl std::str::FromStr for TraceId {
    type Err = String;

    /// 32 hex digits, as a trace id is written (and serialized).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not 32 hex digits");
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let mut id = [0u8; 16];
        for (i, b) in id.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(TraceId(id))
    }
}

impl<'de> serde::Deserialize<'de> for TraceId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

/// What an ack message said.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AckKind {
    /// `+ACK`, `+OK`, an empty payload, or `+NXT` (an ack with a next request).
    Ack,
    /// `-NAK`, optionally with a redelivery delay.
    Nak,
    /// `+WPI`: work in progress, the ack deadline is extended.
    Progress,
    /// `+TERM`: never redeliver.
    Term,
}

impl AckKind {
    pub const ALL: [AckKind; 4] = [AckKind::Ack, AckKind::Nak, AckKind::Progress, AckKind::Term];

    pub fn as_str(self) -> &'static str {
        match self {
            AckKind::Ack => "ack",
            AckKind::Nak => "nak",
            AckKind::Progress => "progress",
            AckKind::Term => "term",
        }
    }
}

/// A parsed ack payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckPayload {
    pub kind: AckKind,
    /// `-NAK` with a delay, in nanoseconds.
    pub nak_delay_ns: Option<u64>,
    /// `+NXT`: the ack also asks for the next message.
    pub next: bool,
}

/// The fields of a JetStream ack reply subject (both the 9-token and the 11/12-token form).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckSubject<'a> {
    pub domain: Option<&'a str>,
    pub account_hash: Option<&'a str>,
    pub stream: &'a str,
    pub consumer: &'a str,
    /// `stream.consumer` as one slice of the subject, used to look the pair up without allocating.
    pub stream_consumer: &'a str,
    pub delivered: u64,
    pub stream_seq: u64,
    pub consumer_seq: u64,
    /// When the message was stored, Unix nanoseconds (server wall clock).
    pub stored_ns: i64,
    pub pending: u64,
    pub token: Option<&'a str>,
}

/// An instant as ackscope saw it: monotonic nanoseconds for latencies, wall-clock Unix
/// nanoseconds for phases and timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub mono_ns: u64,
    pub wall_ns: i64,
}

impl Seen {
    /// The instant now, on both clocks.
    pub fn now() -> Seen {
        static ANCHOR: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        let anchor = *ANCHOR.get_or_init(std::time::Instant::now);
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        Seen {
            mono_ns: anchor.elapsed().as_nanos() as u64,
            wall_ns: wall,
        }
    }
}

/// Where a sample's ack latency was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleSource {
    /// ackscope saw the delivery and the ack.
    Observed,
    /// ackscope saw only the ack: there is an `e2e` latency but no `ack` latency.
    AckOnly,
    /// The server's sampled ack metric (`ack_time`).
    ServerMetric,
    /// The ack reached ackscope before its delivery (the server fans a delivery out to each
    /// subscriber in turn, and a fast consumer's ack can overtake it): the delivery's trace id
    /// and labels are known, its ack latency is not.
    Reordered,
}

/// One completed delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub consumer: ConsumerId,
    pub stream_seq: u64,
    pub consumer_seq: u64,
    /// Delivery count of the delivery that completed (1 = first delivery).
    pub deliveries: u32,
    /// Messages pending on the consumer when this one was delivered.
    pub pending: u64,
    /// When the message was stored in the stream (server wall clock), if known.
    pub stored_ns: Option<i64>,
    /// When ackscope saw the delivery (wall clock), if it did.
    pub delivered_ns: Option<i64>,
    /// When the ack happened (wall clock).
    pub acked_ns: i64,
    pub kind: AckKind,
    /// Delivery seen → ack seen, or the server's `ack_time`.
    pub ack_latency_ns: Option<u64>,
    /// Stored → ack seen.
    pub e2e_latency_ns: Option<u64>,
    pub trace_id: Option<TraceId>,
    /// The sender's span, when the trace id came from a `traceparent`.
    pub parent_span: Option<ParentSpan>,
    pub subject: Sym,
    pub labels: Labels,
    pub source: SampleSource,
    /// The ack asked for a confirmation (AckSync / double ack).
    pub ack_sync: bool,
}

/// An RFC 3339 UTC timestamp of Unix nanoseconds (instants before 1970 print as 1970).
pub fn rfc3339(unix_ns: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(unix_ns.max(0) as u64);
    humantime::format_rfc3339_nanos(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_id_prints_as_32_hex() {
        let mut bytes = [0u8; 16];
        bytes[0] = 0x4b;
        bytes[15] = 0x36;
        assert_eq!(
            TraceId(bytes).to_string(),
            "4b000000000000000000000000000036"
        );
    }
}
