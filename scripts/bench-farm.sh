#!/usr/bin/env bash
# Compile-farm benchmark (issue 3), all on this machine, in one run:
#  1. wall time of a Lua 5.4 build (-O2 -g, 32 TUs) through the farm (hg-coord + 2 hg-worker on
#     127.0.0.1-3, `hgbuild make -j8`) vs plain `make -j2`, alternating, ROUNDS times each;
#  2. per-invocation wrapper overhead on a trivial file: `hgbuild cc -c` vs `gcc -c`, N times each.
# Usage: scripts/bench-farm.sh [ROUNDS=3] [N=40]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}; N=${2:-40}
cargo build --release -q -p hybridgrid-bins
B=$PWD/target/release
tmp=$(mktemp -d /tmp/hg-bench-farm.XXXXXX)
cleanup() { kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
lua=$(cargo metadata --format-version 1 | python3 -c 'import json,sys,os; m=json.load(sys.stdin); p=[p for p in m["packages"] if p["name"]=="lua-src"][0]; d=os.path.dirname(p["manifest_path"]); print([os.path.join(d,x) for x in os.listdir(d) if x.startswith("lua-5.4")][0])')
export HG_LOG_LEVEL=warn
$B/hg-coord serve --grpc-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 2>"$tmp/coord.log" &
for _ in $(seq 100); do grep -q "dashboard on" "$tmp/coord.log" 2>/dev/null && break; sleep 0.1; done
coord=$(sed -n 's/.*gRPC on \([0-9.:]*\),.*/\1/p' "$tmp/coord.log" | head -1)
for i in 1 2; do
  HG_WORKER_WORK_DIR=$tmp/w$i $B/hg-worker serve --id bench-w$i --coordinator "$coord" --grpc-addr 127.0.0.$((i+1)):0 --http-addr 127.0.0.$((i+1)):0 2>"$tmp/w$i.log" &
done
sleep 2
mk() { # dir
  mkdir -p "$1"
  objs=$(cd "$lua" && ls *.c | sed 's/\.c$/.o/' | tr '\n' ' ')
  printf 'SRC := %s\nCFLAGS := -O2 -g -std=gnu99 -DLUA_USE_LINUX -MD\nall: %s\n%%.o: $(SRC)/%%.c\n\t$(CC) $(CFLAGS) -c $< -o $@\n' "$lua" "$objs" > "$1/Makefile"
}
now() { date +%s.%N; }
# The compile cache is off here: this measures the farm itself (scripts/bench-cache.sh measures the cache).
export HG_COORDINATOR=$coord HGBUILD_STATS_FILE=$tmp/stats.log HOME=$tmp HG_CACHE_ENABLED=false
echo "== Lua 5.4 build, $ROUNDS rounds each (farm: 2 local workers x 4 slots; plain: make -j2)"
farm_total=0; plain_total=0
for r in $(seq "$ROUNDS"); do
  rm -rf "$tmp/b"; mk "$tmp/b"; t0=$(now); make -s -j2 -C "$tmp/b"; t1=$(now)
  p=$(echo "$t1 - $t0" | bc -l)
  rm -rf "$tmp/b"; mk "$tmp/b"; t0=$(now); $B/hgbuild make -s -j8 -C "$tmp/b" 2>"$tmp/summary"; t1=$(now)
  f=$(echo "$t1 - $t0" | bc -l)
  printf "round %d: plain %.2fs  farm %.2fs  (%s)\n" "$r" "$p" "$f" "$(tail -1 "$tmp/summary" | sed 's/hgbuild: //')"
  farm_total=$(echo "$farm_total + $f" | bc -l); plain_total=$(echo "$plain_total + $p" | bc -l)
done
printf "mean: plain %.2fs  farm %.2fs  ratio farm/plain %.3f\n" "$(echo "$plain_total/$ROUNDS" | bc -l)" "$(echo "$farm_total/$ROUNDS" | bc -l)" "$(echo "$farm_total/$plain_total" | bc -l)"

echo "== per-invocation overhead on a trivial file, $N runs each"
printf 'int trivial(int x) { return x + 1; }\n' > "$tmp/t.c"
cd "$tmp"
t0=$(now); for _ in $(seq "$N"); do gcc -c t.c -o t.o; done; t1=$(now)
g=$(echo "($t1 - $t0) * 1000 / $N" | bc -l)
t0=$(now); for _ in $(seq "$N"); do $B/hgbuild gcc -c t.c -o t.o; done; t1=$(now)
h=$(echo "($t1 - $t0) * 1000 / $N" | bc -l)
t0=$(now); for _ in $(seq "$N"); do gcc -E -fdirectives-only t.c -o t.i; done; t1=$(now)
e=$(echo "($t1 - $t0) * 1000 / $N" | bc -l)
printf "gcc -c: %.2f ms   hgbuild gcc -c (remote): %.2f ms   overhead %.2f ms  (load %s)\n" "$g" "$h" "$(echo "$h - $g" | bc -l)" "$(cut -d' ' -f1 /proc/loadavg)"
# The remote path runs the local preprocessor as its own process before shipping: its cost is a
# floor under the overhead that no change to the farm's transport can remove.
printf "of which the local preprocessing process (gcc -E -fdirectives-only): %.2f ms; the rest %.2f ms\n" "$e" "$(echo "$h - $g - $e" | bc -l)"
