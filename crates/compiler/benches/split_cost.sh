#!/usr/bin/env bash
# What the client pays locally when it ships directives-only text instead of compiling:
# sums wall time of plain `gcc -c -O2 -g` vs `gcc -E -fdirectives-only` (client side) vs the
# worker's compile of that text, over Lua 5.4's sources (from the lua-src crate in cargo's registry).
# Usage: bash crates/compiler/benches/split_cost.sh
set -euo pipefail
src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/lua-src-548.*/lua-5.4.* | head -1)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cp "$src"/*.c "$src"/*.h "$tmp"/; cd "$tmp"; mkdir -p w
flags=(-O2 -g -std=gnu99 -DLUA_COMPAT_5_3 -DLUA_USE_LINUX -I.)
now() { date +%s.%N; }
t0=$(now); for f in *.c; do gcc -c "${flags[@]}" "$f" -o "${f%.c}.o"; done; t1=$(now)
for f in *.c; do gcc -E -fdirectives-only "${flags[@]}" "$f" > "w/$f.txt"; done; t2=$(now)
# The crate strips the predefined-macro block (the worker's compiler predefines them again).
for f in *.c; do sed -i '/^# 0 "<built-in>"$/,/^# 0 "<command-line>"$/{/^#define /d}' "w/$f.txt"; mv "w/$f.txt" "w/$f"; done
t2b=$(now)
for f in *.c; do (cd w && gcc -nostdinc -c "${flags[@]}" -x c "$f" -o "${f%.c}.o"); done; t3=$(now)
bytes=$(cat w/*.c | wc -c)
printf 'files=%d plain_compile=%.2fs client_preprocess=%.2fs worker_compile=%.2fs shipped=%d bytes\n' \
  "$(ls *.c | wc -l)" "$(echo "$t1-$t0" | bc)" "$(echo "$t2-$t1" | bc)" "$(echo "$t3-$t2b" | bc)" "$bytes"
