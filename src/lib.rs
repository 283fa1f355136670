//! ackscope: delivery → ack latency analytics for NATS JetStream game backends.
//!
//! The crate is a pipeline, one module per stage, each using only the stages before it
//! (`docs/architecture.md`): [`collect`] parses what the taps see (acks, deliveries, server ack
//! metrics, advisories, consumer state) and joins each delivery with its ack into a
//! [`model::Sample`]; [`aggregate`] folds samples into windows, HDR histograms and a
//! frame-phase × latency grid against the game's [`tick`]; [`analyze`] finds spikes and their
//! causes in copies of what was collected; [`config`] reads the file and has each stage check
//! its own section; the [`collector`] owns the join and the aggregator and is what the taps
//! feed; [`api`] is the answers as types; [`render`] draws; [`http`] serves; [`service`] runs
//! the NATS taps and the HTTP server. [`names`] holds the bounded name tables, [`telemetry`]
//! ackscope's own counters; [`sim`] is the game fleet simulator.

pub mod aggregate;
pub mod alertmanager;
pub mod analyze;
pub mod api;
pub mod archive;
pub mod background;
pub mod clocks;
pub mod collect;
pub mod collector;
pub mod config;
pub mod export;
pub mod http;
pub mod model;
pub mod names;
pub mod nats_server;
pub mod notify;
pub mod otlp;
pub mod render;
pub mod service;
pub mod sim;
pub mod telemetry;
pub mod tick;
pub mod units;
