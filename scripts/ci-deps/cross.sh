#!/usr/bin/env bash
# Test dependencies of cross-compiling through the farm (bins/tests/farm_cross.rs): Debian's arm64
# and armv7 (armhf) cross compilers and C libraries (copied into locally imported images; nothing
# is pulled) and qemu-user-static, whose qemu-aarch64-static and qemu-arm-static run the programs
# the farm built. Idempotent.
set -euo pipefail
need=()
for pkg in gcc-aarch64-linux-gnu libc6-dev-arm64-cross gcc-arm-linux-gnueabihf libc6-dev-armhf-cross \
  qemu-user-static; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    need+=("$pkg")
  fi
done
[ ${#need[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null; then
  echo "ci-deps/cross: missing ${need[*]} and apt-get is not available" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -qq "${need[@]}" >/dev/null 2>&1; then
  apt-get update -qq >/dev/null 2>&1 || true
  apt-get install -y -qq "${need[@]}" >/dev/null || {
    echo "ci-deps/cross: cannot install ${need[*]}" >&2
    exit 1
  }
fi
