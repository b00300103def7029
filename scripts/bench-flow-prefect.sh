#!/usr/bin/env bash
# The workflow engine beside Prefect 3, in one run on this machine:
#
#   bash scripts/bench-flow-prefect.sh            # PostgreSQL at HG_TEST_DATABASE_URL (default loopback)
#   HG_BENCH_SQLITE_ONLY=1 bash scripts/bench-flow-prefect.sh
#
# 1. `cargo run --release -p hybridgrid-flow-engine --example flow_bench`: trigger -> first native
#    agent start, node executions/s with the in-process no-op executor (1,000-node DAG, many small
#    runs) on a SQLite file and on PostgreSQL, every transition committed, engine time per step.
# 2. Prefect 3 (PyPI, installed into $HG_TEST_PREFIX/py-prefect when missing): its local ephemeral
#    server on SQLite, no-op @tasks submitted at once: flow call -> first task, tasks/s. It runs
#    in a network namespace of its own (`unshare -n`, loopback only) with telemetry off, so it
#    cannot phone home.
# Then both, side by side.
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=${HG_TEST_PREFIX:-/opt/hybridgrid-test}
VENV=$PREFIX/py-prefect
log() { echo "bench-flow-prefect: $*" >&2; }

if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import prefect, sys; sys.exit(0 if prefect.__version__.startswith("3.") else 1)' 2>/dev/null; then
  log "installing Prefect 3 into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "prefect>=3,<4" >"$VENV.pip.log" 2>&1 \
    || { tail -20 "$VENV.pip.log" >&2; exit 1; }
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "== hybridgrid flow engine =="
args=()
[ -n "${HG_BENCH_SQLITE_ONLY:-}" ] && args+=(--sqlite-only)
nice -n 10 cargo run -q --release -p hybridgrid-flow-engine --example flow_bench -- "${args[@]}" | tee "$out/hg.txt"

echo "== Prefect 3 (ephemeral server, SQLite) =="
PH=$out/prefect-home
mkdir -p "$PH"
run_prefect=(env -i PATH="$VENV/bin:/usr/bin:/bin" HOME="$PH" PREFECT_HOME="$PH"
  PREFECT_API_DATABASE_CONNECTION_URL="sqlite+aiosqlite:///$PH/prefect.db"
  PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1 PREFECT_LOGGING_LEVEL=WARNING
  PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=120
  "$VENV/bin/python" scripts/bench/prefect_bench.py)
# Prefect's server logs tracebacks on stderr when the ephemeral server shuts down; keep them in
# a file, shown only when the benchmark itself fails.
if unshare -n true 2>/dev/null; then
  prefect_cmd=(unshare -n sh -c 'ip link set lo up 2>/dev/null || true; exec "$@"' sh "${run_prefect[@]}")
else
  log "unshare -n is not permitted here: running with telemetry off but in this network namespace"
  prefect_cmd=("${run_prefect[@]}")
fi
if ! "${prefect_cmd[@]}" 2>"$out/prefect.err" | tee "$out/prefect.txt"; then
  tail -30 "$out/prefect.err" >&2
  exit 1
fi

# pick FILE LINE-PATTERN CAPTURE: the first group of CAPTURE on the first line matching LINE-PATTERN.
pick() { grep -m1 "$2" "$1" | sed -E "s#.*$3.*#\1#" || true; }
hg() { pick "$out/hg.txt" "^$1: $2" "$3"; }
rate=': ([0-9]+) node executions/s.*'
lat='p50 ([0-9.]+[a-zµ]+),.*'
pf_lat=$(pick "$out/prefect.txt" "first task" 'p50 ([0-9.]+ ms).*')
pf_tps=$(pick "$out/prefect.txt" "tasks submitted at once" ': ([0-9]+) tasks/s.*')
echo
echo "== side by side (this machine, same run; load average $(cut -d' ' -f1 /proc/loadavg)) =="
printf '%-48s %-16s %-16s %s\n' "" "hg flow SQLite" "hg flow PG" "Prefect 3 (SQLite)"
printf '%-48s %-16s %-16s %s\n' "trigger/flow call -> first task start (p50)" \
  "$(hg 'sqlite file' 'trigger' "$lat")" "$(hg postgres 'trigger' "$lat")" "$pf_lat"
printf '%-48s %-16s %-16s %s\n' "no-op steps/s, 1,000 at once (1,000-node DAG)" \
  "$(hg 'sqlite file' '1,000-node DAG' "$rate")" "$(hg postgres '1,000-node DAG' "$rate")" "$pf_tps"
printf '%-48s %-16s %-16s %s\n' "no-op steps/s, many small runs at once" \
  "$(hg 'sqlite file' '.*triggered at once' "$rate")" "$(hg postgres '.*triggered at once' "$rate")" "-"
printf '%-48s %-16s %-16s %s\n' "no-op steps/s, small runs one after another" \
  "$(hg 'sqlite file' '.*one after another' "$rate")" "$(hg postgres '.*one after another' "$rate")" "-"
