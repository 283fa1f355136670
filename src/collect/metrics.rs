//! The server ack metric tap: `$JS.EVENT.METRIC.CONSUMER.ACK.<stream>.<consumer>` events that
//! the server publishes for consumers with `sample_freq` set, carrying its own measured
//! `ack_time` (last delivery → ack).

use serde::Deserialize;

use super::join::AckMetric;

/// Subjects of server ack metrics.
pub const METRIC_SUBJECT: &str = "$JS.EVENT.METRIC.CONSUMER.ACK.>";
const METRIC_TYPE: &str = "io.nats.jetstream.metric.v1.consumer_ack";

/// Why an ack metric event was rejected.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("ack metric is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("unexpected event type {0:?}")]
    Type(String),
    #[error("negative ack_time")]
    AckTime,
}

#[derive(Debug, Deserialize)]
struct Raw {
    #[serde(rename = "type")]
    kind: String,
    stream: String,
    consumer: String,
    #[serde(default)]
    consumer_seq: u64,
    stream_seq: u64,
    ack_time: i64,
    deliveries: u64,
    #[serde(default)]
    timestamp: Option<String>,
    /// The server's JetStream domain, when it has one.
    #[serde(default)]
    domain: Option<String>,
}

/// A parsed ack metric with its stream and consumer names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedMetric {
    pub stream: String,
    pub consumer: String,
    pub domain: Option<String>,
    pub metric: AckMetric,
}

/// Parses an ack metric event; `now_wall_ns` stands in for a missing or unreadable timestamp.
pub fn parse_ack_metric(payload: &[u8], now_wall_ns: i64) -> Result<ParsedMetric, Error> {
    let raw: Raw = serde_json::from_slice(payload)?;
    if raw.kind != METRIC_TYPE {
        return Err(Error::Type(raw.kind));
    }
    let ack_time_ns = u64::try_from(raw.ack_time).map_err(|_| Error::AckTime)?;
    let timestamp_ns = raw
        .timestamp
        .as_deref()
        .and_then(|t| humantime::parse_rfc3339(t).ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_nanos()).ok())
        .unwrap_or(now_wall_ns);
    Ok(ParsedMetric {
        stream: raw.stream,
        consumer: raw.consumer,
        domain: raw.domain.filter(|d| !d.is_empty()),
        metric: AckMetric {
            stream_seq: raw.stream_seq,
            consumer_seq: raw.consumer_seq,
            deliveries: raw.deliveries,
            ack_time_ns,
            timestamp_ns,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_a_server_event() {
        let event = br#"{"type":"io.nats.jetstream.metric.v1.consumer_ack","id":"x","timestamp":"2026-11-26T10:00:00.5Z","stream":"GAME","consumer":"srv-1","consumer_seq":4,"stream_seq":9,"ack_time":2500000,"deliveries":1}"#;
        let m = parse_ack_metric(event, 0).unwrap();
        assert_eq!((m.stream.as_str(), m.consumer.as_str()), ("GAME", "srv-1"));
        assert_eq!(m.metric.ack_time_ns, 2_500_000);
        assert_eq!((m.metric.stream_seq, m.metric.consumer_seq), (9, 4));
        assert_eq!(m.metric.timestamp_ns % 1_000_000_000, 500_000_000);
        assert_eq!(m.domain, None);
        let in_domain = br#"{"type":"io.nats.jetstream.metric.v1.consumer_ack","stream":"GAME","consumer":"srv-1","stream_seq":9,"ack_time":1,"deliveries":1,"domain":"leaf"}"#;
        assert_eq!(
            parse_ack_metric(in_domain, 0).unwrap().domain.as_deref(),
            Some("leaf")
        );
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_ack_metric(b"nope", 0).is_err());
        assert!(parse_ack_metric(br#"{"type":"other"}"#, 0).is_err());
        let neg = br#"{"type":"io.nats.jetstream.metric.v1.consumer_ack","stream":"S","consumer":"C","stream_seq":1,"ack_time":-1,"deliveries":1}"#;
        assert!(matches!(parse_ack_metric(neg, 0), Err(Error::AckTime)));
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_ack_metric(&bytes, 0);
        }
    }
}
