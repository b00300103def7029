#!/bin/sh
# Builds the example agents' container images locally, with no base image to pull: each image is
# the agent's binary plus the shared libraries it links (found with ldd), imported with
# `docker import`. Tags: hybridgrid/flow-secret-scanner:local, hybridgrid/flow-notifier:local.
#
#   cargo build -p hybridgrid-flow-examples && examples/flow/docker/build-images.sh [target/debug]
set -eu
BIN_DIR=${1:-target/debug}
for agent in flow-secret-scanner flow-notifier; do
  bin="$BIN_DIR/$agent"
  [ -x "$bin" ] || { echo "build-images: $bin is missing: run cargo build -p hybridgrid-flow-examples" >&2; exit 1; }
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  mkdir -p "$root/bin" "$root/workspace" "$root/tmp"
  cp "$bin" "$root/bin/agent"
  for lib in $(ldd "$bin" | awk '/=>/ && $3 ~ /^\// {print $3} /^[[:space:]]*\/.*ld-linux/ {print $1}'); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
  tar -C "$root" -c . | docker import --change 'ENTRYPOINT ["/bin/agent"]' - "hybridgrid/$agent:local" >/dev/null
  rm -rf "$root"
  trap - EXIT
  echo "built hybridgrid/$agent:local"
done
