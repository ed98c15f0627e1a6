/**
 * Dask measured the way bench/roundtrip.ts measures funcX, for `deno task bench --peers`: Debian's
 * Dask distributed, a `dask-scheduler` and a `dask-worker` with as many one-thread worker
 * processes as funcX has workers, no-op tasks. This driver installs the package when missing (as
 * root), starts the scheduler and the workers in process groups of their own, runs the client of
 * `dask_bench.py` (which does the measuring and prints one JSON line), and stops everything,
 * also on failure. Dask needs no broker: its scheduler hands tasks to the workers itself and
 * keeps results in their memory, with no durable record of either.
 *
 * @module
 */
import { join } from "node:path";
import { aptInstall } from "../../tests/harness/_os.ts";
import type { PeerFigures } from "./side_by_side.ts";
import { ProcessGroup } from "./_process_group.ts";

const PYTHON = "/usr/bin/python3";
const PACKAGES = ["python3-distributed"] as const;
const HERE = new URL(".", import.meta.url).pathname;
const READY_TIMEOUT_MS = 60_000;

/** Options of {@linkcode runDask}. */
export interface DaskBenchOptions {
  /** No-op tasks of the throughput run. */
  tasks: number;
  /** Worker processes, one thread each. */
  workers: number;
  /** Sequential round trips. */
  rounds: number;
}

async function daskInstalled(): Promise<boolean> {
  const command = new Deno.Command(PYTHON, {
    args: ["-c", "import distributed"],
    stdout: "null",
    stderr: "null",
  });
  return await command.output().then((o) => o.success, () => false);
}

/**
 * Ensures Dask distributed is installed (its client shares `_peer_bench.py` with Celery's, which
 * needs only the standard library). As root, installs Debian's packages with apt-get; otherwise throws an error that names them.
 */
export async function ensureDaskInstalled(): Promise<void> {
  if (await daskInstalled()) return;
  const list = PACKAGES.join(" ");
  if (Deno.uid() !== 0) {
    throw new Error(
      `Cannot run the Dask peer benchmark: install Debian's packages with "sudo apt-get install ${list}"`,
    );
  }
  console.error(`Dask is not installed; installing ${list} with apt-get`);
  await aptInstall(PACKAGES);
  if (!await daskInstalled()) throw new Error(`Cannot import distributed after installing ${list}`);
}

/** Runs Dask's benchmark and returns its figures; every process it starts is stopped. */
export async function runDask(options: DaskBenchOptions): Promise<PeerFigures> {
  for (const [name, n] of Object.entries(options)) {
    if (!Number.isInteger(n) || n < 1) {
      throw new RangeError(
        `Cannot run Dask's benchmark: "${name}" must be a positive integer (got "${n}")`,
      );
    }
  }
  const dir = await Deno.makeTempDir({ prefix: "funcx-bench-dask-" });
  const schedulerFile = join(dir, "scheduler.json");
  const groups: ProcessGroup[] = [];
  const env = { PYTHONDONTWRITEBYTECODE: "1" };
  try {
    const scheduler = ProcessGroup.spawn(PYTHON, [
      ...["-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0"],
      ...["--dashboard-address", ":0", "--scheduler-file", schedulerFile],
    ], { name: "Dask scheduler", cwd: dir, env, logFile: join(dir, "scheduler.log") });
    groups.push(scheduler);
    const deadline = Date.now() + READY_TIMEOUT_MS;
    while (!(await Deno.stat(schedulerFile).then(() => true, () => false))) {
      if (scheduler.exited || Date.now() > deadline) {
        throw new Error(`The Dask scheduler did not start\n${await scheduler.logTail()}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    const workers = ProcessGroup.spawn(PYTHON, [
      ...["-m", "distributed.cli.dask_worker", "--scheduler-file", schedulerFile],
      ...["--nworkers", String(options.workers), "--nthreads", "1", "--no-dashboard"],
      ...["--local-directory", dir],
    ], { name: "Dask workers", cwd: dir, env, logFile: join(dir, "workers.log") });
    groups.push(workers);
    const cpuPids = { scheduler: [`g${scheduler.pgid}`], workers: [`g${workers.pgid}`] };
    const client = ProcessGroup.spawn(PYTHON, [
      ...["dask_bench.py", "client", "--scheduler-file", schedulerFile],
      ...["--workers", String(options.workers), "--tasks", String(options.tasks)],
      ...["--rounds", String(options.rounds), "--cpu-pids", JSON.stringify(cpuPids)],
    ], { name: "Dask client", cwd: HERE, env, logFile: join(dir, "client.log") });
    groups.push(client);
    const line = await client.waitForLine((l) => l.startsWith(`{"event": "figures"`), {
      timeoutMs: READY_TIMEOUT_MS + options.tasks * 10 + options.rounds * 100,
      what: "its figures",
    });
    const f = JSON.parse(line);
    return {
      name: "Dask",
      label: `Dask distributed ${f.version} (${options.workers} one-thread worker processes)`,
      workers: options.workers,
      roundtrip_ms: f.roundtrip_ms,
      throughput: f.throughput,
    };
  } finally {
    for (const g of groups.reverse()) await g.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}
