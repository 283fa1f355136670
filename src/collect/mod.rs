//! What each tap's messages mean, and the join that turns a delivery and its ack into one
//! sample.
//!
//! One parser per tap ([`acks`], [`deliveries`] with [`trace`], [`metrics`], [`advisories`],
//! [`consumer_state`]), pure; the join ([`join`]) is synchronous. No I/O here: the NATS
//! subscriptions are [`crate::service::taps`], and the [`crate::collector`] puts parsers, join
//! and aggregation together.

pub mod acks;
pub mod advisories;
pub mod clock;
pub mod config;
pub mod consumer_state;
pub mod deliveries;
pub mod join;
pub mod metrics;
pub mod trace;
