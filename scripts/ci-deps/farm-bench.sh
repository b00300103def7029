#!/usr/bin/env bash
# Installs the compile-farm peers the farm benchmarks run side by side (idempotent, quiet):
#   distcc (scripts/bench-farm-vs-distcc.sh), ccache (scripts/bench-cache.sh).
set -euo pipefail

need=()
command -v distcc >/dev/null 2>&1 && command -v distccd >/dev/null 2>&1 || need+=(distcc)
command -v ccache >/dev/null 2>&1 || need+=(ccache)
[ "${#need[@]}" -eq 0 ] && exit 0

export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -qq --no-install-recommends "${need[@]}" >/tmp/farm-bench-ci-deps.log 2>&1; then
  apt-get update -qq >>/tmp/farm-bench-ci-deps.log 2>&1 || true
  if ! apt-get install -y -qq --no-install-recommends "${need[@]}" >>/tmp/farm-bench-ci-deps.log 2>&1; then
    echo "farm-bench ci-deps: failed to install ${need[*]} (see /tmp/farm-bench-ci-deps.log)" >&2
    tail -20 /tmp/farm-bench-ci-deps.log >&2
    exit 1
  fi
fi
# Debian's distcc package may start its daemon where systemd runs; the benchmark starts its own.
command -v systemctl >/dev/null 2>&1 && systemctl disable --now distcc >/dev/null 2>&1 || true
exit 0
