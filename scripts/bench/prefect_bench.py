"""Prefect 3 side of scripts/bench-flow-prefect.sh: no-op @tasks on the local ephemeral server
(SQLite), submitted at once. Prints `prefect: ...` lines.

- flow call -> first task: a flow of one no-op task, called again and again (after a warm-up
  call that starts the ephemeral server); p50 of the time from the call to the task's body.
- tasks/s: one flow submitting N no-op tasks at once (`task.submit`), then waiting for all.
"""
import os
import statistics
import sys
import time

N = int(os.environ.get("PREFECT_BENCH_TASKS", "1000"))
CALLS = int(os.environ.get("PREFECT_BENCH_CALLS", "20"))

t_import = time.perf_counter()
from prefect import flow, task  # noqa: E402
import prefect  # noqa: E402

first = {"at": None}


@task
def noop(i):
    if first["at"] is None:
        first["at"] = time.perf_counter()
    return i


@flow
def one():
    return noop(0)


@flow
def fan(n):
    futures = [noop.submit(i) for i in range(n)]
    return [f.result() for f in futures]


def main():
    print(f"prefect: version {prefect.__version__}, import {time.perf_counter() - t_import:.2f}s",
          flush=True)
    t = time.perf_counter()
    fan(10)  # starts the ephemeral server, creates the database
    print(f"prefect: warm-up flow (ephemeral server start) {time.perf_counter() - t:.2f}s", flush=True)
    lat = []
    for _ in range(CALLS):
        first["at"] = None
        t = time.perf_counter()
        one()
        lat.append(first["at"] - t)
    lat.sort()
    p50 = statistics.median(lat)
    p90 = lat[int(len(lat) * 0.9) - 1] if len(lat) >= 10 else lat[-1]
    print(f"prefect: flow call -> first task: p50 {p50 * 1000:.1f} ms, p90 {p90 * 1000:.1f} ms "
          f"({CALLS} calls)", flush=True)
    t = time.perf_counter()
    out = fan(N)
    dt = time.perf_counter() - t
    assert len(out) == N
    print(f"prefect: {N} no-op tasks submitted at once: {N / dt:.0f} tasks/s ({dt:.2f}s)", flush=True)


if __name__ == "__main__":
    sys.exit(main())
