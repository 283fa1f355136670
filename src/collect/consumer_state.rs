//! The consumer state tap: consumer info polled from the JetStream API every few seconds, the
//! evidence flow-control analysis needs (ack pending against its limit, redeliveries, waiting
//! pulls) and the `ack_wait` that bounds the join.

use serde::Serialize;

use crate::units::duration_ns;

/// One poll of a consumer's info.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsumerState {
    pub num_ack_pending: u64,
    /// `-1` when unlimited.
    pub max_ack_pending: i64,
    pub num_redelivered: u64,
    pub num_waiting: u64,
    pub num_pending: u64,
    pub ack_wait_ns: u64,
    /// `-1` when unlimited.
    pub max_deliver: i64,
    /// The consumer's ack sampling frequency in percent (0 = off).
    pub sample_freq: u8,
    /// Whether it is a push consumer (has a deliver subject).
    pub push: bool,
    /// Whether its deliveries need no ack (`AckNone`: ordered consumers, KV and object store
    /// watchers, mirrors' sources): they are not joined.
    pub ack_none: bool,
    /// When it was polled, Unix nanoseconds.
    #[serde(skip)]
    pub polled_ns: i64,
}

impl ConsumerState {
    pub fn from_info(info: &async_nats::jetstream::consumer::Info, polled_ns: i64) -> Self {
        let c = &info.config;
        Self {
            num_ack_pending: info.num_ack_pending as u64,
            max_ack_pending: c.max_ack_pending,
            num_redelivered: info.num_redelivered as u64,
            num_waiting: info.num_waiting as u64,
            num_pending: info.num_pending,
            ack_wait_ns: duration_ns(c.ack_wait),
            max_deliver: c.max_deliver,
            sample_freq: c.sample_frequency,
            push: c.deliver_subject.is_some(),
            ack_none: c.ack_policy == async_nats::jetstream::consumer::AckPolicy::None,
            polled_ns,
        }
    }
}
