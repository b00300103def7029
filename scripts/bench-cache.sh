#!/usr/bin/env bash
# Compile-cache benchmark (issue 7), side by side in one run on Lua 5.4 (lua-src, 32 TUs,
# -O2 -g -std=gnu99 -DLUA_USE_LINUX -MD, make -j$J):
#   cold:  empty cache, clean build dir;
#   warm:  same cache, build dir removed and rebuilt at the same path;
#   hit:   per-invocation time of a cache hit on a trivial file (`#include <stdio.h>` + one
#          function), N runs after one warm-up, vs plain `gcc -c` of the same file.
# Tools: plain gcc, ccache (Debian package), sccache (if installed: `cargo install sccache
# --locked --no-default-features`, local disk cache) and hgbuild (no coordinator: misses compile
# locally, so this measures the cache alone, not the farm).
# Usage: scripts/bench-cache.sh [N=50] [J=2]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-50}; J=${2:-2}
cargo build --release -q -p hybridgrid-bins --bin hgbuild
HG=$PWD/target/release/hgbuild
SCCACHE=$(command -v sccache || ls ~/.cargo/bin/sccache 2>/dev/null || true)
tmp=$(mktemp -d /tmp/hg-bench-cache.XXXXXX)
cleanup() { [ -n "$SCCACHE" ] && SCCACHE_DIR=$tmp/sccache "$SCCACHE" --stop-server >/dev/null 2>&1 || true; rm -rf "$tmp"; }
trap cleanup EXIT
lua=$(cargo metadata --format-version 1 | python3 -c 'import json,sys,os; m=json.load(sys.stdin); p=[p for p in m["packages"] if p["name"]=="lua-src"][0]; d=os.path.dirname(p["manifest_path"]); print([os.path.join(d,x) for x in os.listdir(d) if x.startswith("lua-5.4")][0])')
objs=$(cd "$lua" && ls *.c | sed 's/\.c$/.o/' | tr '\n' ' ')
mk() { # dir
  rm -rf "$1"; mkdir -p "$1"
  printf 'SRC := %s\nCFLAGS := -O2 -g -std=gnu99 -DLUA_USE_LINUX -MD\nall: %s\n%%.o: $(SRC)/%%.c\n\t$(CC) $(CFLAGS) -c $< -o $@\n' "$lua" "$objs" > "$1/Makefile"
}
now() { date +%s.%N; }
secs() { echo "$2 - $1" | bc -l; }

# Isolated state for every tool.
export HOME=$tmp/home HGBUILD_STATS_FILE=$tmp/hg-stats.log HG_COORDINATOR=127.0.0.1:1
export CCACHE_DIR=$tmp/ccache SCCACHE_DIR=$tmp/sccache SCCACHE_CACHE_SIZE=10G
unset HG_CONFIG MAKEFLAGS
mkdir -p "$HOME"
tools=(gcc ccache)
[ -n "$SCCACHE" ] && tools+=(sccache)
tools+=(hgbuild)
cc_for() {
  case $1 in
    gcc) echo gcc ;;
    ccache) echo "ccache gcc" ;;
    sccache) echo "$SCCACHE gcc" ;;
    hgbuild) echo "$HG gcc" ;;
  esac
}
[ -n "$SCCACHE" ] && "$SCCACHE" --start-server >/dev/null 2>&1

declare -A cold warm hit
b=$tmp/build
for t in "${tools[@]}"; do
  cc=$(cc_for "$t")
  mk "$b"; t0=$(now); make -s -j"$J" -C "$b" CC="$cc" 2>"$tmp/$t-cold.err"; t1=$(now)
  cold[$t]=$(secs "$t0" "$t1")
  cp -r "$b" "$tmp/ref-$t"
  mk "$b"; t0=$(now); make -s -j"$J" -C "$b" CC="$cc" 2>"$tmp/$t-warm.err"; t1=$(now)
  warm[$t]=$(secs "$t0" "$t1")
  for o in $objs; do
    cmp -s "$b/$o" "$tmp/ref-gcc/$o" || { echo "$t: $o differs from the plain gcc build" >&2; exit 1; }
  done
done

printf '#include <stdio.h>\nint trivial(int x) { printf("%%d", x); return x + 1; }\n' > "$tmp/t.c"
cd "$tmp"
# Per-hit: median wall time over N runs (robust to other load) and mean CPU (user+sys) per run.
hits=$(python3 - "$N" "${tools[@]}" <<PY
import os, resource, statistics, subprocess, sys, time
n = int(sys.argv[1])
cc = {"gcc": ["gcc"], "ccache": ["ccache", "gcc"], "sccache": ["$SCCACHE", "gcc"], "hgbuild": ["$HG", "gcc"]}
for tool in sys.argv[2:]:
    cmd = cc[tool] + ["-c", "t.c", "-o", "t.o"]
    for _ in range(2):
        subprocess.run(cmd, stderr=subprocess.DEVNULL, check=True)
    walls = []
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True)
        walls.append(time.perf_counter() - t0)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime) / n
    print(tool, 1000 * statistics.median(walls), 1000 * cpu)
PY
)
base=$(python3 -c '
import statistics, subprocess, time
w = []
for _ in range(50):
    t0 = time.perf_counter(); subprocess.run(["/bin/true"]); w.append(time.perf_counter() - t0)
print(1000 * statistics.median(w))')

echo "Lua 5.4 (32 TUs, -O2 -g -MD, make -j$J) and a trivial file ($N runs); $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-9s %9s %9s %16s %15s\n' tool "cold (s)" "warm (s)" "hit wall (ms)" "hit CPU (ms)"
for t in "${tools[@]}"; do
  read -r _ w c < <(echo "$hits" | grep "^$t ")
  printf '%-9s %9.2f %9.2f %16.2f %15.2f%s\n' "$t" "${cold[$t]}" "${warm[$t]}" "$w" "$c" "$([ "$t" = gcc ] && echo '   (gcc: a full compile)')"
done
printf 'spawning /bin/true: %.2f ms median wall (the floor under every per-hit figure)\n' "$base"
[ -n "$SCCACHE" ] || echo "sccache: not installed, left out"
echo "hgbuild stats: $(awk '{print $1" "$2}' "$HGBUILD_STATS_FILE" | sort | uniq -c | sed 's/^ *//' | tr '\n' ';')"
