#!/usr/bin/env bash
# Build tools and compilers the compile-farm tests drive through hgbuild (bins/tests/farm_tools.rs):
# Debian's cmake, ninja-build and clang. Idempotent: installs only what is missing.
set -euo pipefail
missing=()
for pkg in cmake ninja-build clang; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null; then
  echo "ci-deps/farm-tools: ${missing[*]} missing and apt-get is not available" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1; then
  apt-get update -qq >/dev/null 2>&1 || true
  apt-get install -y -qq "${missing[@]}" >/dev/null || {
    echo "ci-deps/farm-tools: cannot install ${missing[*]} (needed by bins/tests/farm_tools.rs)" >&2
    exit 1
  }
fi
