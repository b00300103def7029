#!/usr/bin/env bash
# Test dependencies of the Docker executor (crates/executors, feature `docker`) and of
# hybridgrid_testkit::docker: Debian's static busybox, from which the test images are built with
# `docker import` (no registry is reachable). The engine itself comes from ../shared/services.sh.
# Idempotent: installs only what is missing.
set -euo pipefail
if ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q "install ok installed"; then
  if ! command -v apt-get >/dev/null; then
    echo "ci-deps/docker: /bin/busybox (static) is missing and apt-get is not available" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq busybox-static >/dev/null 2>&1; then
    apt-get update -qq >/dev/null 2>&1 || true
    apt-get install -y -qq busybox-static >/dev/null || {
      echo "ci-deps/docker: cannot install busybox-static (needed to build the test images)" >&2
      exit 1
    }
  fi
fi
if ! command -v docker >/dev/null; then
  echo "ci-deps/docker: the docker CLI is missing: run 'bash ../shared/services.sh docker' first" >&2
  exit 1
fi
