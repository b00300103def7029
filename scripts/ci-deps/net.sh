#!/usr/bin/env bash
# What the farm's network tests (bins/tests/farm_mdns.rs, farm_health.rs) run against:
#   Debian: avahi-daemon + avahi-utils (a real mDNS responder and browser, run inside a network
#           namespace the test creates), dbus (avahi needs a system bus), iproute2 (ip netns).
#   PyPI:   grpcio-health-checking ($PREFIX/py-grpc/bin/python), a third-party client of
#           grpc.health.v1.
# Idempotent: installs only what is missing; exits non-zero naming what failed.
set -euo pipefail

PREFIX=${HG_TEST_PREFIX:-/opt/hybridgrid-test}
log() { echo "ci-deps/net: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

missing=()
command -v avahi-daemon >/dev/null 2>&1 || missing+=(avahi-daemon)
command -v avahi-browse >/dev/null 2>&1 || missing+=(avahi-utils)
command -v dbus-daemon >/dev/null 2>&1 || missing+=(dbus)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v python3 >/dev/null 2>&1 || missing+=(python3 python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || die "missing ${missing[*]}: run as root, or: sudo apt-get install -y ${missing[*]}"
  log "apt-get install ${missing[*]}"
  # The package's own service is not wanted: the tests start avahi-daemon inside a namespace.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d.hg && chmod +x /usr/sbin/policy-rc.d.hg
  [ -e /usr/sbin/policy-rc.d ] || cp /usr/sbin/policy-rc.d.hg /usr/sbin/policy-rc.d
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
    || { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; } \
    || die "apt-get install ${missing[*]} failed"
  if cmp -s /usr/sbin/policy-rc.d /usr/sbin/policy-rc.d.hg; then rm -f /usr/sbin/policy-rc.d; fi
  rm -f /usr/sbin/policy-rc.d.hg
fi

dir=$PREFIX/py-grpc
if [ ! -x "$dir/bin/python" ]; then
  python3 -m venv "$dir" || die "python3 -m venv $dir failed (apt-get install python3-venv)"
fi
if ! "$dir/bin/python" -c 'import grpc_health.v1.health_pb2_grpc' 2>/dev/null; then
  log "pip install grpcio-health-checking"
  "$dir/bin/pip" install --quiet --disable-pip-version-check grpcio-health-checking >/dev/null 2>"$dir/pip.log" \
    || { tail -5 "$dir/pip.log" >&2; die "pip install grpcio-health-checking failed"; }
fi
log "ok"
