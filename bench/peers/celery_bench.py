"""Celery's side of `deno task bench --peers` (driven by bench/peers/celery.ts).

One module is both the Celery app the worker loads (`python3 -m celery -A celery_bench worker`)
and the client that measures it (`python3 celery_bench.py client ...`). The figures are the
ones bench/roundtrip.ts takes of funcX, in the same order:

- round trip: `--rounds` sequential `noop.delay().get()`, p50/p95/p99 in milliseconds, with
  the same percentile rule (the sorted sample at index floor(n * p));
- throughput: `--tasks` no-op tasks submitted at once as one `group(...).apply_async()`, then
  every result awaited; tasks per second of wall time from the first submit to the last result;
- CPU per task during the throughput run, from /proc, for the process groups the driver names
  in `--cpu-pids` (worker, broker, result backend) and for this client.

The client prints one JSON line on stdout: `{"event": "figures", ...}`.

Settings (the driver passes them through the environment):
- CELERY_BENCH_BROKER: AMQP URL, a vhost of the same private RabbitMQ node funcX uses;
- CELERY_BENCH_BACKEND: Redis URL of a private, non-persistent redis-server;
- CELERY_BENCH_PREFETCH: worker_prefetch_multiplier (see celery.ts for the default and why).
"""

import argparse
import json
import os
import sys
import time

from celery import Celery, group
from celery.signals import worker_ready

app = Celery(
    "celery_bench",
    broker=os.environ.get("CELERY_BENCH_BROKER", "amqp://guest:guest@127.0.0.1:5672//"),
    backend=os.environ.get("CELERY_BENCH_BACKEND", "redis://127.0.0.1:6379/0"),
)
app.conf.update(
    # Acknowledge after the task ran, as funcX does: a task is not lost if a worker dies.
    task_acks_late=True,
    worker_prefetch_multiplier=int(os.environ.get("CELERY_BENCH_PREFETCH", "4")),
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    # The ready line must reach the driver's stdout, not the worker's logger.
    worker_redirect_stdouts=False,
    worker_hijack_root_logger=False,
)


@app.task(name="celery_bench.noop")
def noop():
    return None


@worker_ready.connect
def _announce_ready(**_kwargs):
    print(json.dumps({"event": "ready", "pid": os.getpid()}), flush=True)


def _percentile(ordered, p):
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def _cpu_seconds(pid):
    """User + system CPU seconds of one process; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _group_pids(pgid):
    """Processes in process group `pgid` (a worker's pool children come and go)."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2 :].split()[2]) == pgid:
            pids.append(int(name))
    return pids


def _cpu_by_part(parts):
    """CPU seconds by part; a part is a list of pids and of process groups ("g<pgid>")."""
    out = {}
    for part, members in parts.items():
        pids = []
        for m in members:
            pids.extend(_group_pids(int(m[1:])) if isinstance(m, str) else [m])
        out[part] = sum(_cpu_seconds(p) for p in pids)
    return out


def client(args):
    parts = json.loads(args.cpu_pids)
    parts["client"] = [os.getpid()]
    timeout = 600

    # Warm up: connections, the result consumer's subscription, the pool's first tasks.
    for _ in range(20):
        noop.delay().get(timeout=60)

    latencies = []
    for _ in range(args.rounds):
        start = time.perf_counter()
        noop.delay().get(timeout=60)
        latencies.append((time.perf_counter() - start) * 1000)
    latencies.sort()

    before = _cpu_by_part(parts)
    start = time.perf_counter()
    results = group(noop.s() for _ in range(args.tasks)).apply_async()
    values = results.get(timeout=timeout)
    total_s = time.perf_counter() - start
    after = _cpu_by_part(parts)
    if len(values) != args.tasks or any(v is not None for v in values):
        raise SystemExit(f"Expected {args.tasks} results of None, got {len(values)}")

    import celery
    import kombu

    figures = {
        "event": "figures",
        "celery": celery.__version__,
        "kombu": kombu.__version__,
        "python": sys.version.split()[0],
        "prefetch_multiplier": app.conf.worker_prefetch_multiplier,
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
