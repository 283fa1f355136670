#!/usr/bin/env bash
# The whole test suite: installs both nats-server generations when missing, checks formatting
# and lints, then runs every unit, property and integration test.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/setup.sh
source scripts/setup.sh
echo "nats-server 2.9: $("$ACKSCOPE_NATS_SERVER_LEGACY" --version)"
echo "nats-server 2.15: $("$ACKSCOPE_NATS_SERVER_CURRENT" --version)"
cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
# One test at a time: several tests measure latency to the millisecond, and the simulator and
# browser tests load both cores of a small machine.
RUST_TEST_THREADS=1 cargo test --locked "$@"
