"""Dask's side of `deno task bench --peers` (driven by bench/peers/dask.ts).

The client of a Dask distributed cluster the driver started (`dask-scheduler` and `dask-worker`
with one-thread worker processes, each in a process group of its own), measured the way
bench/roundtrip.ts measures funcX and celery_bench.py measures Celery:

- round trip: `--rounds` sequential `client.submit(noop, pure=False).result()`, p50/p95/p99 in
  milliseconds, the sorted sample at index floor(n * p);
- throughput: `--tasks` no-op tasks submitted at once with `client.map`, then every result
  gathered; tasks per second of wall time from the first submit to the last result;
- CPU per task during the throughput run, from /proc, for the process groups the driver names
  in `--cpu-pids` (scheduler, workers) and for this client.

It prints one JSON line on stdout: `{"event": "figures", ...}`.
"""

import argparse
import json
import os
import sys
import time

from distributed import Client

from celery_bench import _cpu_by_part, _percentile


def noop(_i=None):
    return None


def client(args):
    parts = json.loads(args.cpu_pids)
    parts["client"] = [os.getpid()]
    with Client(scheduler_file=args.scheduler_file, timeout=60) as c:
        c.wait_for_workers(args.workers, timeout=60)
        for _ in range(20):
            c.submit(noop, pure=False).result(timeout=60)

        latencies = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            c.submit(noop, pure=False).result(timeout=60)
            latencies.append((time.perf_counter() - start) * 1000)
        latencies.sort()

        before = _cpu_by_part(parts)
        start = time.perf_counter()
        futures = c.map(noop, range(args.tasks), pure=False)
        values = c.gather(futures)
        total_s = time.perf_counter() - start
        after = _cpu_by_part(parts)
        del futures
        if len(values) != args.tasks or any(v is not None for v in values):
            raise SystemExit(f"Expected {args.tasks} results of None, got {len(values)}")

    import distributed

    figures = {
        "event": "figures",
        "version": distributed.__version__,
        "python": sys.version.split()[0],
        "roundtrip_ms": {
            "rounds": args.rounds,
            "p50": round(_percentile(latencies, 0.5), 2),
            "p95": round(_percentile(latencies, 0.95), 2),
            "p99": round(_percentile(latencies, 0.99), 2),
            "max": round(latencies[-1], 2),
        },
        "throughput": {
            "tasks": args.tasks,
            "tasks_per_s": round(args.tasks / total_s),
            "total_s": round(total_s, 2),
            "cpu_us_per_task": {
                k: round((after[k] - before[k]) / args.tasks * 1e6) for k in parts
            },
        },
    }
    print(json.dumps(figures), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("client", help="measure round trip and throughput, print JSON")
    c.add_argument("--scheduler-file", required=True)
    c.add_argument("--workers", type=int, default=2)
    c.add_argument("--tasks", type=int, default=20000)
    c.add_argument("--rounds", type=int, default=300)
    c.add_argument(
        "--cpu-pids",
        default="{}",
        help='JSON: part name -> pids, or "g<pgid>" for a whole process group',
    )
    args = parser.parse_args()
    if args.command == "client":
        client(args)


if __name__ == "__main__":
    main()
