//! Collectors: the taps on a live NATS system and the join that turns a delivery and its ack
//! into one sample.
//!
//! Parsers ([`acks`], [`trace`], [`metrics`], [`advisories`], [`deliveries`]) are pure; the join
//! ([`join`]) and the core ([`core`]) are synchronous; only [`taps`] touches the network.

pub mod acks;
pub mod advisories;
pub mod consumer_state;
pub mod core;
pub mod deliveries;
pub mod join;
pub mod metrics;
pub mod taps;
pub mod trace;
