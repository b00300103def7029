#!/usr/bin/env bash
# What the agent-runner tests need: the MCP servers (server-memory) and node 22 that
# scripts/ci-deps/llm.sh installs, and Redis on 127.0.0.1:6379 (shared/services.sh redis).
# Idempotent; exits non-zero naming what failed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bash "$here/llm.sh" || { echo "ci-deps/agents: scripts/ci-deps/llm.sh failed" >&2; exit 1; }
command -v redis-server >/dev/null 2>&1 || { echo "ci-deps/agents: redis-server missing (run shared/services.sh redis)" >&2; exit 1; }
