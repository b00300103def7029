#!/usr/bin/env bash
# RedisQueue throughput beside the server's own ceiling, in one run against the same server.
#
#   bash scripts/bench-redis-queue.sh            # needs Redis at 127.0.0.1:6379
#
# Prints: redis-benchmark LPUSH/RPOP (the floor of what a list-based queue could do: one plain
# command per round trip, 50 and 8 connections), then `cargo bench --bench queue_redis`, whose
# summary gives items/s and Redis calls/s (each item is 3 EVALSHA: enqueue, claim, ack).
set -euo pipefail
cd "$(dirname "$0")/.."
HOST=${REDIS_HOST:-127.0.0.1}
PORT=${REDIS_PORT:-6379}
export HG_TEST_REDIS_URL="redis://$HOST:$PORT"

redis-cli -h "$HOST" -p "$PORT" ping >/dev/null || { echo "no Redis at $HOST:$PORT" >&2; exit 1; }

# redis-benchmark -q still draws progress with carriage returns: keep the final lines only.
summary() { tr '\r' '\n' | grep "requests per second"; }

# redis-benchmark's keys ("mylist") are its own; it leaves them behind, so delete them after.
echo "== redis-benchmark ceiling (100000 requests) =="
echo "-- 50 connections (default)"
redis-benchmark -h "$HOST" -p "$PORT" -t lpush,rpop -n 100000 -q | summary
echo "-- 8 connections (as many as the 8 claimers)"
redis-benchmark -h "$HOST" -p "$PORT" -t lpush,rpop -n 100000 -c 8 -q | summary
echo "-- 1 connection (as the single claimer)"
redis-benchmark -h "$HOST" -p "$PORT" -t lpush,rpop -n 100000 -c 1 -q | summary
redis-cli -h "$HOST" -p "$PORT" del mylist >/dev/null

echo "== RedisQueue (enqueue -> claim -> ack) =="
cargo bench -p hybridgrid-benches --bench queue_redis 2>&1 | grep -vE "^(Benchmarking|Found|  [0-9]+ \()" 
