"""Celery's side of `deno task bench --peers` (driven by bench/peers/celery.ts).

One module is both the Celery app the worker loads (`python3 -m celery -A celery_bench worker`)
and the client that measures it (`python3 celery_bench.py client ...`). The figures are the
ones bench/roundtrip.ts takes of funcX, measured by _peer_bench.py:

- round trip: `--rounds` sequential `noop.delay().get()`;
- throughput: `--tasks` no-op tasks submitted at once as one `group(...).apply_async()`, then
  every result awaited;
- CPU per task during the throughput run for the process groups the driver names in
  `--cpu-pids` (worker, broker, result backend) and for this client.

The client prints one JSON line on stdout: `{"event": "figures", ...}`.

Settings (the driver passes them through the environment):
- CELERY_BENCH_BROKER: AMQP URL, a vhost of the same private RabbitMQ node funcX uses;
- CELERY_BENCH_BACKEND: Redis URL of a private, non-persistent redis-server;
- CELERY_BENCH_PREFETCH: worker_prefetch_multiplier (see celery.ts for the default and why).
"""

import json
import os

from celery import Celery, group
from celery.signals import worker_ready

from _peer_bench import client_parser, measure, print_figures, python_version

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


def client(args):
    timeout = 600

    def many(n):
        return group(noop.s() for _ in range(n)).apply_async().get(timeout=timeout)

    measured = measure(args, lambda: noop.delay().get(timeout=60), many)

    import celery
    import kombu

    figures = {
        "celery": celery.__version__,
        "kombu": kombu.__version__,
        "python": python_version(),
        "prefetch_multiplier": app.conf.worker_prefetch_multiplier,
        **measured,
    }
    print_figures(figures)


def main():
    parser, _ = client_parser(__doc__)
    args = parser.parse_args()
    if args.command == "client":
        client(args)


if __name__ == "__main__":
    main()
