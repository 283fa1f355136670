//! ackscope's integration tests: one binary, real nats-server children.

#[macro_use]
mod support;

mod account;
mod alerts;
mod architecture;
mod archive;
mod cli;
mod collect;
mod frames;
mod http;
mod load;
mod nats_auth;
mod nats_server;
mod openapi;
mod otlp;
mod outage;
mod queries;
mod sim;
mod stack;
