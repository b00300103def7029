#!/usr/bin/env bash
# RedisQueue beside BullMQ (npm `bullmq`, one Node process) on the same Redis, in the same run:
# same job count, no-op processing, processed jobs/s.
#
#   bash scripts/bench-redis-queue.sh                 # Redis at 127.0.0.1:6379
#   JOBS=100000 ROUNDS=3 bash scripts/bench-redis-queue.sh    # ROUNDS: repeat the whole table
#
# RedisQueue rows: `claimers` concurrent tasks in one process, each looping on `ack_and_claim`
# (ack what it processed + claim up to `batch` more, one script call), after `enqueue_many`.
# BullMQ rows: one Worker with `concurrency` = claimers × batch (the jobs it keeps in flight),
# after `addBulk` with removeOnComplete (RedisQueue deletes acked items too).
# BullMQ is installed on demand into $BULLMQ_DIR (default ~/.cache/hybridgrid/bullmq).
set -euo pipefail
cd "$(dirname "$0")/.."
HOST=${REDIS_HOST:-127.0.0.1}
PORT=${REDIS_PORT:-6379}
JOBS=${JOBS:-50000}
ROUNDS=${ROUNDS:-1}
URL="redis://$HOST:$PORT"
BULLMQ_DIR=${BULLMQ_DIR:-$HOME/.cache/hybridgrid/bullmq}

redis-cli -h "$HOST" -p "$PORT" ping >/dev/null || { echo "no Redis at $HOST:$PORT" >&2; exit 1; }

if [ ! -d "$BULLMQ_DIR/node_modules/bullmq" ]; then
  mkdir -p "$BULLMQ_DIR"
  (cd "$BULLMQ_DIR" && npm init -y >/dev/null && npm install --no-audit --no-fund bullmq@5 >/dev/null)
fi
cat > "$BULLMQ_DIR/bench.mjs" <<'JS'
import { Queue, Worker } from 'bullmq';
const [host, port, jobs, concurrency] = [process.argv[2], +process.argv[3], +process.argv[4], +process.argv[5]];
const connection = { host, port, maxRetriesPerRequest: null };
const name = `hgbench-${process.pid}-${Date.now()}`;
const queue = new Queue(name, { connection });
const t0 = performance.now();
for (let i = 0; i < jobs; i += 1000) {
  const n = Math.min(1000, jobs - i);
  await queue.addBulk(Array.from({ length: n }, (_, k) => ({
    name: 'job', data: `job-${i + k}`, opts: { removeOnComplete: true } })));
}
const added = performance.now() - t0;
let done = 0;
const t1 = performance.now();
await new Promise((resolve) => {
  const worker = new Worker(name, async () => {}, { connection, concurrency });
  worker.on('completed', () => { if (++done === jobs) { worker.close().then(resolve); } });
});
const took = performance.now() - t1;
console.log(`BullMQ      concurrency=${String(concurrency).padEnd(3)} jobs=${done}  processed ${(done / took * 1000).toFixed(0).padStart(8)} jobs/s  (addBulk ${(jobs / added * 1000).toFixed(0).padStart(8)} jobs/s)`);
await queue.obliterate({ force: true });
await queue.close();
JS

BULLMQ_VERSION=$(node -p "require('$BULLMQ_DIR/node_modules/bullmq/package.json').version")
echo "== $JOBS jobs each, Redis $(redis-cli -h "$HOST" -p "$PORT" info server | grep redis_version | tr -d '\r'), bullmq $BULLMQ_VERSION, node $(node --version)"
cargo build -q --release -p hybridgrid-queue --features redis --example bench_redis_queue
BIN=target/release/examples/bench_redis_queue
for round in $(seq "$ROUNDS"); do
  [ "$ROUNDS" -gt 1 ] && echo "-- round $round"
  for run in "1 1" "8 1" "1 50" "8 50"; do
    set -- $run
    "$BIN" --url "$URL" --jobs "$JOBS" --claimers "$1" --batch "$2"
    node "$BULLMQ_DIR/bench.mjs" "$HOST" "$PORT" "$JOBS" $(( $1 * $2 ))
  done
done
