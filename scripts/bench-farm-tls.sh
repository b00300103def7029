#!/usr/bin/env bash
# Compile farm over mutual TLS vs plain text (issue 16), side by side in one run.
# Two farms run at once on loopback, each hg-coord + 2 hg-worker (4 slots each):
#   plain: no TLS (loopback needs none);
#   mtls:  a farm CA made by `hg-coord cert init`, coordinator/worker/client certificates issued by
#          `hg-coord cert issue`, every gRPC hop (client→coordinator, client→worker,
#          worker→coordinator) over mTLS, the client authenticated by its certificate.
# The build: Lua 5.4 (lua-src, 32 TUs, -O2 -g), `hgbuild make -j8`, the compile cache off, rounds
# alternating plain/mtls so that both see the same machine; objects compared with cmp.
# Usage: scripts/bench-farm-tls.sh [ROUNDS=5]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
cargo build --release -q -p hybridgrid-bins
B=$PWD/target/release
tmp=$(mktemp -d /tmp/hg-bench-tls.XXXXXX)
cleanup() { kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
lua=$(cargo metadata --format-version 1 | python3 -c 'import json,sys,os; m=json.load(sys.stdin); p=[p for p in m["packages"] if p["name"]=="lua-src"][0]; d=os.path.dirname(p["manifest_path"]); print([os.path.join(d,x) for x in os.listdir(d) if x.startswith("lua-5.4")][0])')
export HG_LOG_LEVEL=warn HG_CACHE_ENABLED=false HOME=$tmp
unset HG_TLS_CA HG_TLS_CERT HG_TLS_KEY HG_CLIENT_TOKEN HG_CONFIG MAKEFLAGS

ca=$tmp/ca
$B/hg-coord cert init --dir "$ca" >/dev/null
$B/hg-coord cert issue --dir "$ca" --role coordinator --name coord --host 127.0.0.1 >/dev/null
for i in 1 2; do
  $B/hg-coord cert issue --dir "$ca" --role worker --name tls-w$i --host 127.0.0.$((i + 3)) >/dev/null
done
$B/hg-coord cert issue --dir "$ca" --role client --name bench >/dev/null

wait_for() { # file marker
  for _ in $(seq 150); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "timed out waiting for '$2' in $1:" >&2; cat "$1" >&2; exit 1
}
coord_addr() { sed -n 's/.*gRPC on \([0-9.:]*\),.*/\1/p' "$1" | head -1; }

# farm 1: plain text, workers on 127.0.0.2-3
$B/hg-coord serve --grpc-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 2>"$tmp/plain-coord.log" &
wait_for "$tmp/plain-coord.log" "dashboard on"
plain_coord=$(coord_addr "$tmp/plain-coord.log")
for i in 1 2; do
  HG_WORKER_WORK_DIR=$tmp/pw$i $B/hg-worker serve --id plain-w$i --coordinator "$plain_coord" \
    --grpc-addr 127.0.0.$((i + 1)):0 --http-addr 127.0.0.$((i + 1)):0 2>"$tmp/plain-w$i.log" &
done

# farm 2: mTLS, workers on 127.0.0.4-5
HG_TLS_CA=$ca/ca.crt HG_TLS_CERT=$ca/coord.crt HG_TLS_KEY=$ca/coord.key \
  $B/hg-coord serve --grpc-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 2>"$tmp/tls-coord.log" &
wait_for "$tmp/tls-coord.log" "dashboard on"
tls_coord=$(coord_addr "$tmp/tls-coord.log")
for i in 1 2; do
  HG_TLS_CA=$ca/ca.crt HG_TLS_CERT=$ca/tls-w$i.crt HG_TLS_KEY=$ca/tls-w$i.key \
    HG_WORKER_WORK_DIR=$tmp/tw$i $B/hg-worker serve --id tls-w$i --coordinator "$tls_coord" \
    --grpc-addr 127.0.0.$((i + 3)):0 --http-addr 127.0.0.$((i + 3)):0 2>"$tmp/tls-w$i.log" &
done
for f in plain-w1 plain-w2 tls-w1 tls-w2; do wait_for "$tmp/$f.log" "serving gRPC on"; done
sleep 1

mk() { # dir
  rm -rf "$1"; mkdir -p "$1"
  objs=$(cd "$lua" && ls *.c | sed 's/\.c$/.o/' | tr '\n' ' ')
  printf 'SRC := %s\nCFLAGS := -O2 -g -std=gnu99 -DLUA_USE_LINUX -MD\nall: %s\n%%.o: $(SRC)/%%.c\n\t$(CC) $(CFLAGS) -c $< -o $@\n' "$lua" "$objs" > "$1/Makefile"
}
now() { date +%s.%N; }
build() { # name coord [env...] -> prints seconds; the build dir is the same path for both farms
  local name=$1 coord=$2; shift 2
  mk "$tmp/b"
  local t0 t1
  t0=$(now)
  env HG_COORDINATOR="$coord" HGBUILD_STATS_FILE="$tmp/$name.stats" "$@" \
    $B/hgbuild make -s -j8 -C "$tmp/b" 2>"$tmp/$name.summary"
  t1=$(now)
  grep -q ' 0 local fallbacks' "$tmp/$name.summary" || { echo "$name: fallbacks:" >&2; cat "$tmp/$name.summary" >&2; exit 1; }
  rm -rf "$tmp/$name.out"; cp -r "$tmp/b" "$tmp/$name.out"
  echo "$t1 - $t0" | bc -l
}

echo "== Lua 5.4 (32 TUs, -O2 -g) through the farm, hgbuild make -j8, cache off; $ROUNDS rounds alternating (load: $(cut -d' ' -f1-3 /proc/loadavg))"
plain_all=(); tls_all=()
for r in $(seq "$ROUNDS"); do
  p=$(build plain "$plain_coord")
  t=$(build mtls "$tls_coord" HG_TLS_CA="$ca/ca.crt" HG_TLS_CERT="$ca/bench.crt" HG_TLS_KEY="$ca/bench.key")
  for o in "$tmp"/plain.out/*.o; do cmp -s "$o" "$tmp/mtls.out/$(basename "$o")" || { echo "objects differ: $(basename "$o")" >&2; exit 1; }; done
  printf "round %d: plain %.3fs  mtls %.3fs  (%s)\n" "$r" "$p" "$t" "$(tail -1 "$tmp/mtls.summary" | sed 's/hgbuild: //')"
  plain_all+=("$p"); tls_all+=("$t")
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
mp=$(median "${plain_all[@]}"); mt=$(median "${tls_all[@]}")
printf "median: plain %.3fs  mtls %.3fs  mtls/plain %.3f  (slowdown %+.1f%%)\n" "$mp" "$mt" \
  "$(echo "$mt / $mp" | bc -l)" "$(echo "($mt / $mp - 1) * 100" | bc -l)"
grep -h "handshake\|certificate" "$tmp"/tls-*.log | head -5 || true
