#!/usr/bin/env bash
# The demo: installs nats-server when missing, builds ackscope and runs `ackscope demo`
# (a local nats-server child, the game fleet simulator cycling through every fault, and the
# service). Open the printed URL; Ctrl-C stops everything and removes the temporary files.
set -euo pipefail
cd "$(dirname "$0")/.."
export ACKSCOPE_SETUP_TEST_TOOLS=0
# shellcheck source=scripts/setup.sh
source scripts/setup.sh
export NATS_SERVER_BIN="${NATS_SERVER_BIN:-$ACKSCOPE_NATS_SERVER_LEGACY}"
exec cargo run --release --locked -- demo "$@"
