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
# Usage: scripts/bench-cache.sh [N=100 hits] [J=2 make jobs] [R=3 rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100}; J=${2:-2}; R=${3:-3}
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

declare -A cold warm coldcpu warmcpu
b=$tmp/build
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
# CPU seconds (self + waited-for children) of the sccache server, which runs sccache's compiles.
server_cpu() {
  [ "$1" = sccache ] || { echo 0; return; }
  # The newest process named sccache is the server started for this round.
  local pid; pid=$(pgrep -n -x sccache) || { echo 0; return; }
  awk -v tck="$(getconf CLK_TCK)" '{sub(/.*\) /, ""); t += $12 + $13 + $14 + $15} END {print t / tck}' "/proc/$pid/stat"
}
TIMEFORMAT='%R %U %S'
build() { # tool cc -> prints "wall cpu" (cpu = user+sys of make and the compilers it ran)
  local s0 s1; s0=$(server_cpu "$1")
  { time make -s -j"$J" -C "$b" CC="$2" 2>>"$tmp/$1.err"; } 2>"$tmp/time"
  s1=$(server_cpu "$1")
  read -r w u sy < "$tmp/time"
  echo "$w $(echo "$u + $sy + $s1 - $s0" | bc -l)"
}
# Rounds interleave the tools, so load from other users of the machine hits them alike; each
# figure is the median over the rounds. Wall time is what a user waits for; CPU time is robust
# to that load and shows each tool's own overhead.
for r in $(seq "$R"); do
  for t in "${tools[@]}"; do
    cc=$(cc_for "$t")
    case $t in
      ccache) ccache -C >/dev/null ;;
      sccache)
        "$SCCACHE" --stop-server >/dev/null 2>&1 || true
        for _ in $(seq 50); do pgrep -x -r R,S,D sccache >/dev/null || break; sleep 0.1; done
        export SCCACHE_DIR=$tmp/sccache-$r
        "$SCCACHE" --start-server >/dev/null 2>&1 ;;
      hgbuild) "$HG" --clear-cache >/dev/null ;;
    esac
    mk "$b"; read -r w c < <(build "$t" "$cc")
    cold[$t]="${cold[$t]:-} $w"; coldcpu[$t]="${coldcpu[$t]:-} $c"
    [ "$r" = 1 ] && cp -r "$b" "$tmp/ref-$t"
    mk "$b"; read -r w c < <(build "$t" "$cc")
    warm[$t]="${warm[$t]:-} $w"; warmcpu[$t]="${warmcpu[$t]:-} $c"
    for o in $objs; do
      cmp -s "$b/$o" "$tmp/ref-gcc/$o" || { echo "$t: $o differs from the plain gcc build" >&2; exit 1; }
    done
  done
done

printf '#include <stdio.h>\nint trivial(int x) { printf("%%d", x); return x + 1; }\n' > "$tmp/t.c"
cd "$tmp"
# Per-hit: median wall time over N runs (robust to other load) and mean CPU (user+sys) per run.
hits=$(python3 - "$N" "${tools[@]}" <<PY
import os, resource, statistics, subprocess, sys, time
n = int(sys.argv[1]); tools = sys.argv[2:]
cc = {"gcc": ["gcc"], "ccache": ["ccache", "gcc"], "sccache": ["$SCCACHE", "gcc"], "hgbuild": ["$HG", "gcc"]}
def server_cpu():
    # sccache does its work in a server process: count its CPU too.
    out = subprocess.run(["pgrep", "-x", "sccache"], capture_output=True, text=True).stdout.split()
    tick = os.sysconf("SC_CLK_TCK"); total = 0.0
    for pid in out:
        try:
            f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            total += (int(f[11]) + int(f[12])) / tick
        except OSError:
            pass
    return total
walls = {t: [] for t in tools}; cpu = {t: 0.0 for t in tools}
for t in tools:
    for _ in range(2):
        subprocess.run(cc[t] + ["-c", "t.c", "-o", "t.o"], stderr=subprocess.DEVNULL, check=True)
blocks = 5
for _ in range(blocks):
    for t in tools:
        cmd = cc[t] + ["-c", "t.c", "-o", "t.o"]
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN); s0 = server_cpu() if t == "sccache" else 0
        for _ in range(n // blocks):
            t0 = time.perf_counter(); subprocess.run(cmd, check=True); walls[t].append(time.perf_counter() - t0)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN); s1 = server_cpu() if t == "sccache" else 0
        cpu[t] += r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime + (s1 - s0)
for t in tools:
    print(t, 1000 * statistics.median(walls[t]), 1000 * cpu[t] / len(walls[t]))
PY
)

base=$(python3 -c '
import statistics, subprocess, time
w = []
for _ in range(50):
    t0 = time.perf_counter(); subprocess.run(["/bin/true"]); w.append(time.perf_counter() - t0)
print(1000 * statistics.median(w))')

echo "Lua 5.4 (32 TUs, -O2 -g -MD, make -j$J; median of $R interleaved rounds) and a trivial file ($N hits each, interleaved); $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-9s %9s %9s %9s %9s %10s %10s\n' tool "cold s" "cold CPU" "warm s" "warm CPU" "hit ms" "hit CPU ms"
for t in "${tools[@]}"; do
  read -r _ w c < <(echo "$hits" | grep "^$t ")
  printf '%-9s %9.2f %9.2f %9.2f %9.2f %10.2f %10.2f%s\n' "$t" \
    "$(echo "${cold[$t]}" | median)" "$(echo "${coldcpu[$t]}" | median)" \
    "$(echo "${warm[$t]}" | median)" "$(echo "${warmcpu[$t]}" | median)" "$w" "$c" \
    "$([ "$t" = gcc ] && echo '  (gcc: every run a full compile)')"
done
echo "(CPU: user+sys of the build or invocation and its children, plus the sccache server's; hit: median wall)"
printf 'spawning /bin/true: %.2f ms median wall (the floor under every per-hit figure)\n' "$base"
[ -n "$SCCACHE" ] || echo "sccache: not installed, left out"
echo "hgbuild stats: $(awk '{print $1" "$2}' "$HGBUILD_STATS_FILE" | sort | uniq -c | sed 's/^ *//' | tr '\n' ';')"
