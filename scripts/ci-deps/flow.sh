#!/usr/bin/env bash
# Installs what the workflow orchestrator's tests need (idempotent, quiet):
#   chromium (headless UI test), prometheus (scrape + rule over /metrics),
#   prometheus-alertmanager (real AlertManager v4 webhook, amtool), nats-server (private servers
#   the NATS restart and fleet tests kill), psql (dropping the PostgreSQL schemas tests make).
set -euo pipefail

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ -x /bin/busybox ] || need+=(busybox-static)
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || need+=(nats-server)
command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
{ command -v prometheus-alertmanager >/dev/null 2>&1 || [ -x /usr/bin/prometheus-alertmanager ]; } \
  && command -v amtool >/dev/null 2>&1 || need+=(prometheus-alertmanager)

if [ "${#need[@]}" -eq 0 ]; then
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -qq --no-install-recommends "${need[@]}" >/tmp/flow-ci-deps.log 2>&1; then
  apt-get update -qq >>/tmp/flow-ci-deps.log 2>&1 || true
  if ! apt-get install -y -qq --no-install-recommends "${need[@]}" >>/tmp/flow-ci-deps.log 2>&1; then
    echo "flow ci-deps: failed to install ${need[*]} (see /tmp/flow-ci-deps.log)" >&2
    tail -20 /tmp/flow-ci-deps.log >&2
    exit 1
  fi
fi
# Debian's packages start services on install where systemd runs; the tests start their own.
for svc in prometheus prometheus-alertmanager; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
    systemctl stop "$svc" >/dev/null 2>&1 || true
  fi
done
for bin in chromium prometheus amtool psql; do
  command -v "$bin" >/dev/null 2>&1 || { echo "flow ci-deps: $bin still missing after install" >&2; exit 1; }
done
