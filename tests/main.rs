//! ackscope's integration tests: one binary, real nats-server children.

mod collect;
mod support;
