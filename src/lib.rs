//! ackscope: delivery → ack latency analytics for NATS JetStream game backends.
//!
//! The crate is a pipeline, one module per stage: [`collect`] taps acks, deliveries, server ack
//! metrics, advisories and consumer state and joins each delivery with its ack into a
//! [`model::Sample`]; [`aggregate`] folds samples into windows, HDR histograms and a
//! frame-phase × latency grid against the game's [`tick`]. [`config`] is the validated
//! configuration, [`names`] the bounded name tables, [`telemetry`] ackscope's own counters.

pub mod aggregate;
pub mod analyze;
pub mod background;
pub mod collect;
pub mod config;
pub mod http;
pub mod model;
pub mod names;
pub mod nats_server;
pub mod render;
pub mod service;
pub mod sim;
pub mod telemetry;
pub mod tick;
