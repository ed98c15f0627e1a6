"""What the peers' clients (celery_bench.py, dask_bench.py) share: the command line, the
measurement and the figures, taken the way bench/roundtrip.ts takes them of funcX.

- round trip: `--rounds` sequential calls, after 20 to warm up, p50/p95/p99 in milliseconds,
  the sorted sample at index floor(n * p);
- throughput: `--tasks` no-op tasks submitted at once, then every result awaited; tasks per
  second of wall time from the first submit to the last result;
- CPU per task during the throughput run, from /proc, for the processes and process groups the
  driver names in `--cpu-pids` and for this client.
"""

import argparse
import json
import os
import sys
import time


def percentile(ordered, p):
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


def cpu_by_part(parts):
    """CPU seconds by part; a part is a list of pids and of process groups ("g<pgid>")."""
    out = {}
    for part, members in parts.items():
        pids = []
        for m in members:
            pids.extend(_group_pids(int(m[1:])) if isinstance(m, str) else [m])
        out[part] = sum(_cpu_seconds(p) for p in pids)
    return out


def measure(args, one, many):
    """The figures' "roundtrip_ms" and "throughput" of a peer.

    `one()` runs one no-op task and waits for its result; `many(n)` submits `n` at once and
    returns their results, which must all be None.
    """
    parts = json.loads(args.cpu_pids)
    parts["client"] = [os.getpid()]

    # Warm up: connections, the result consumer's subscription, the pool's first tasks.
    for _ in range(20):
        one()

    latencies = []
    for _ in range(args.rounds):
        start = time.perf_counter()
        one()
        latencies.append((time.perf_counter() - start) * 1000)
    latencies.sort()

    before = cpu_by_part(parts)
    start = time.perf_counter()
    values = many(args.tasks)
    total_s = time.perf_counter() - start
    after = cpu_by_part(parts)
    if len(values) != args.tasks or any(v is not None for v in values):
        raise SystemExit(f"Expected {args.tasks} results of None, got {len(values)}")

    return {
        "roundtrip_ms": {
            "rounds": args.rounds,
            "p50": round(percentile(latencies, 0.5), 2),
            "p95": round(percentile(latencies, 0.95), 2),
            "p99": round(percentile(latencies, 0.99), 2),
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


def python_version():
    return sys.version.split()[0]


def client_parser(doc):
    """The command line (`client --tasks N --rounds N --cpu-pids JSON`) and its `client` part,
    to which a peer adds its own options."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("client", help="measure round trip and throughput, print JSON")
    c.add_argument("--tasks", type=int, default=20000)
    c.add_argument("--rounds", type=int, default=300)
    c.add_argument(
        "--cpu-pids",
        default="{}",
        help='JSON: part name -> pids, or "g<pgid>" for a whole process group',
    )
    return parser, c


def print_figures(figures):
    print(json.dumps({"event": "figures", **figures}), flush=True)
