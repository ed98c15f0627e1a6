"""Dask's side of `deno task bench --peers` (driven by bench/peers/dask.ts).

The client of a Dask distributed cluster the driver started (`dask-scheduler` and `dask-worker`
with one-thread worker processes, each in a process group of its own), measured the way
bench/roundtrip.ts measures funcX and celery_bench.py measures Celery (_peer_bench.py):

- round trip: `--rounds` sequential `client.submit(noop, pure=False).result()`;
- throughput: `--tasks` no-op tasks submitted at once with `client.map`, then every result
  gathered;
- CPU per task during the throughput run for the process groups the driver names in
  `--cpu-pids` (scheduler, workers) and for this client.

It prints one JSON line on stdout: `{"event": "figures", ...}`.
"""

from distributed import Client

from _peer_bench import client_parser, measure, print_figures, python_version


def noop(_i=None):
    return None


def client(args):
    with Client(scheduler_file=args.scheduler_file, timeout=60) as c:
        c.wait_for_workers(args.workers, timeout=60)
        # Held until the CPU has been read, so that releasing the futures is not counted.
        held = []

        def many(n):
            held.append(c.map(noop, range(n), pure=False))
            return c.gather(held[-1])

        measured = measure(args, lambda: c.submit(noop, pure=False).result(timeout=60), many)
        held.clear()

    import distributed

    print_figures({"version": distributed.__version__, "python": python_version(), **measured})


def main():
    parser, c = client_parser(__doc__)
    c.add_argument("--scheduler-file", required=True)
    c.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if args.command == "client":
        client(args)


if __name__ == "__main__":
    main()
