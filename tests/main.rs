//! ackscope's integration tests: one binary, real nats-server children.

mod architecture;
mod cli;
mod collect;
mod http;
mod nats_server;
mod sim;
mod support;
