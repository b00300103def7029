#!/usr/bin/env bash
# Compile farm side by side with distcc, issue 18, in ONE run on
# this machine: Lua 5.4 (lua-src, 32 TUs, -O2 -g -std=gnu99 -DLUA_USE_LINUX -MD), every tool given
# the same two cores:
#   plain    `make -j2` pinned to core 0 (`taskset -c 0`): one core, the baseline;
#   distcc   `make -j5 CC="distcc gcc"` on core 0, DISTCC_HOSTS="localhost/1 127.0.0.2:<port>/4",
#            `distccd` pinned to core 1 listening on 127.0.0.2;
#   hgbuild  `hgbuild make` (it picks -j: 2 per local core and farm CPU, plus a lookahead of 12) on
#            core 0, `hg-coord` and one
#            `hg-worker` (4 slots, sandboxed) on core 1.
# Each build starts from a clean build directory; the figure is the median wall time of ROUNDS
# interleaved rounds, and every object must be byte-identical to the plain build's (cmp).
# icecream is not in the table: its client always talks to the one iceccd of this host (a fixed
# socket), and a job the scheduler places on the client's own host is compiled by the client, so on
# one machine icecream cannot use the second core as a remote one.
# Usage: scripts/bench-farm-vs-distcc.sh [ROUNDS=3]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
[ "$(nproc --all)" -ge 2 ] || { echo "needs 2 cores" >&2; exit 1; }
command -v distcc >/dev/null && command -v distccd >/dev/null || { echo "needs distcc (apt-get install distcc)" >&2; exit 1; }
cargo build --release -q -p hybridgrid-bins
B=$PWD/target/release
tmp=$(mktemp -d /tmp/hg-bench-vs.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
lua=$(cargo metadata --format-version 1 | python3 -c 'import json,sys,os; m=json.load(sys.stdin); p=[p for p in m["packages"] if p["name"]=="lua-src"][0]; d=os.path.dirname(p["manifest_path"]); print([os.path.join(d,x) for x in os.listdir(d) if x.startswith("lua-5.4")][0])')
objs=$(cd "$lua" && ls *.c | sed 's/\.c$/.o/' | tr '\n' ' ')
ntu=$(echo "$objs" | wc -w)
mk() { # dir
  rm -rf "$1"; mkdir -p "$1"
  printf 'SRC := %s\nCFLAGS := -O2 -g -std=gnu99 -DLUA_USE_LINUX -MD\nall: %s\n%%.o: $(SRC)/%%.c\n\t$(CC) $(CFLAGS) -c $< -o $@\n' "$lua" "$objs" > "$1/Makefile"
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.2",0)); print(s.getsockname()[1])'; }
unset MAKEFLAGS HG_CONFIG

# distcc: one daemon on core 1 (127.0.0.2), 4 jobs.
dport=$(free_port)
taskset -c 1 distccd --no-detach --daemon --listen 127.0.0.2 --port "$dport" --allow 127.0.0.0/8 \
  --jobs 4 --log-stderr 2>"$tmp/distccd.log" &
pids+=($!)

# hgbuild: coordinator and one worker on core 1.
export HG_LOG_LEVEL=warn
taskset -c 1 "$B/hg-coord" serve --grpc-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 2>"$tmp/coord.log" &
pids+=($!)
for _ in $(seq 100); do grep -q "dashboard on" "$tmp/coord.log" 2>/dev/null && break; sleep 0.1; done
coord=$(sed -n 's/.*gRPC on \([0-9.:]*\),.*/\1/p' "$tmp/coord.log" | head -1)
[ -n "$coord" ] || { echo "hg-coord did not start:" >&2; cat "$tmp/coord.log" >&2; exit 1; }
mkdir -p "$tmp/work"
HG_WORKER_WORK_DIR=$tmp/work taskset -c 1 "$B/hg-worker" serve --id bench-w1 --coordinator "$coord" \
  --grpc-addr 127.0.0.2:0 --http-addr 127.0.0.2:0 2>"$tmp/worker.log" &
pids+=($!)

sleep 2

export HOME=$tmp/home DISTCC_DIR=$tmp/distcc
mkdir -p "$HOME" "$DISTCC_DIR"
export HG_COORDINATOR=$coord HGBUILD_STATS_FILE=$tmp/hg-stats.log
# The farm itself is measured: no compile cache (scripts/bench-cache.sh measures the cache).
export HG_CACHE_ENABLED=false
tools=(plain distcc)
tools+=(hgbuild)
b=$tmp/build
TIMEFORMAT='%R'
run() { # tool -> wall seconds on stdout
  case $1 in
    plain) taskset -c 0 make -s -j2 -C "$b" ;;
    distcc) DISTCC_HOSTS="localhost/1 127.0.0.2:$dport/4" taskset -c 0 make -s -j5 -C "$b" CC="distcc gcc" ;;
    hgbuild) taskset -c 0 "$B/hgbuild" make -s -C "$b" 2>"$tmp/summary" ;;
  esac
}
# Busy jiffies (all but idle and iowait) of cores 0 and 1, to show which core a tool left idle.
busy() { awk '/^cpu[01] /{printf "%d ", $2+$3+$4+$7+$8} END {print ""}' /proc/stat; }
declare -A walls differ cores
for r in $(seq "$ROUNDS"); do
  for t in "${tools[@]}"; do
    mk "$b"
    read -r a0 a1 < <(busy)
    { time run "$t" >/dev/null 2>"$tmp/$t.err"; } 2>"$tmp/time" || { echo "$t build failed:" >&2; cat "$tmp/$t.err" >&2; exit 1; }
    read -r z0 z1 < <(busy)
    walls[$t]="${walls[$t]:-} $(cat "$tmp/time")"
    cores[$t]=$(awk -v w="$(cat "$tmp/time")" -v a="$((z0 - a0))" -v b="$((z1 - a1))" -v hz="$(getconf CLK_TCK)" \
      'BEGIN {printf "%.0f%%/%.0f%%", 100 * a / hz / w, 100 * b / hz / w}')
    if [ "$t" = plain ]; then
      [ "$r" = 1 ] && cp -r "$b" "$tmp/ref"
    else
      n=0
      for o in $objs; do cmp -s "$b/$o" "$tmp/ref/$o" || n=$((n + 1)); done
      differ[$t]=$n
      # hgbuild must give the plain build's objects; a peer's differences are reported.
      [ "$t" != hgbuild ] || [ "$n" = 0 ] || { echo "hgbuild: $n objects differ from the plain build" >&2; exit 1; }
    fi
    if [ "$t" = hgbuild ]; then summary=$(tail -1 "$tmp/summary" | sed "s/^hgbuild: //"); fi
  done
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
pm=$(echo "${walls[plain]}" | median)
echo "Lua 5.4, $ntu TUs, -O2 -g; build on core 0, farm/daemon on core 1; median of $ROUNDS interleaved rounds; load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-9s %9s %9s %14s %11s   %s\n' tool "wall s" "vs plain" "objs != plain" "core0/core1" "rounds"
for t in "${tools[@]}"; do
  m=$(echo "${walls[$t]}" | median)
  printf '%-9s %9.2f %9.3f %14s %11s  %s\n' "$t" "$m" "$(echo "$m / $pm" | bc -l)" "${differ[$t]:-ref}/$ntu" "${cores[$t]}" "${walls[$t]}"
done
echo "(objs != plain: objects of the last round that are not byte-identical to the plain build's; cmp)"
echo "(core0/core1: how busy each core was during the last round, every process of the machine counted)"
echo "hgbuild (last round): $summary"
