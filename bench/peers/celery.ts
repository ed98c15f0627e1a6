/**
 * Celery measured the way bench/roundtrip.ts measures funcX, for `deno task bench --peers`: on
 * the same private RabbitMQ node (a vhost of its own), with a private Redis as result backend,
 * the same number of prefork workers, no-op tasks, `acks_late`. This driver installs Debian's
 * packages when missing (as root), starts `redis-server` and the Celery worker in process groups
 * of their own, runs the client of `celery_bench.py` (which does the measuring and prints one
 * JSON line), and stops everything, also on failure.
 *
 * @module
 */
import { join } from "node:path";
import { aptInstall, freePorts, randomHex } from "../../tests/harness/_os.ts";
import type { RabbitBroker } from "../../tests/harness/rabbitmq.ts";
import { brokerAccess, createVhost, deleteVhost } from "../../tests/harness/stack.ts";
import { ProcessGroup } from "./_process_group.ts";
import type { PeerFigures } from "./side_by_side.ts";

/** Debian's packages are built for the system interpreter, not for a pyenv one on `PATH`. */
const PYTHON = "/usr/bin/python3";
const REDIS_SERVER = "/usr/bin/redis-server";
const PACKAGES = ["python3-celery", "python3-redis", "redis-server"] as const;
const HERE = new URL(".", import.meta.url).pathname;
const READY_TIMEOUT_MS = 60_000;

/**
 * The `worker_prefetch_multiplier` used unless told otherwise: Celery's default, 4, so each
 * prefork child reserves 4 messages (a worker of 2 holds 8 unacknowledged tasks). It is what a
 * user gets untuned, as funcX is measured with its executor's settings. For no-op tasks a larger
 * value helps Celery a little (on this 2-core machine, 5,000 tasks under load: 1 → 514/s,
 * 4 → 529/s, 16 → 617/s, 64 → 629/s; p50 3.0, 2.6, 2.4, 1.6 ms), since the client's and the
 * worker's CPU, not the broker's round trips, bound it; `--celery-prefetch` changes it.
 */
export const CELERY_DEFAULT_PREFETCH = 4;

/** Options of {@linkcode runCelery}. */
export interface CeleryBenchOptions {
  /** No-op tasks of the throughput run. */
  tasks: number;
  /** Prefork worker processes (`--concurrency`). */
  workers: number;
  /** Sequential round trips. */
  rounds: number;
  /** `worker_prefetch_multiplier`. @default {@linkcode CELERY_DEFAULT_PREFETCH} */
  prefetch?: number;
}

/** What `celery_bench.py client` measured (CPU by client, workers, broker, result backend). */
export interface CeleryFigures extends PeerFigures {
  celery: string;
  kombu: string;
  python: string;
  prefetch_multiplier: number;
}

async function succeeds(cmd: string, args: string[]): Promise<boolean> {
  const opts = { args, stdin: "null", stdout: "null", stderr: "null" } as const;
  return await new Deno.Command(cmd, opts).output().then((o) => o.success, () => false);
}

async function celeryInstalled(): Promise<boolean> {
  return await succeeds(PYTHON, ["-c", "import celery, redis"]) &&
    await succeeds(REDIS_SERVER, ["--version"]);
}

/**
 * Ensures Celery, its Redis client and `redis-server` are installed. As root, installs Debian's
 * packages with apt-get (progress on stderr); otherwise throws an error that names them.
 */
export async function ensureCeleryInstalled(): Promise<void> {
  if (await celeryInstalled()) return;
  const list = PACKAGES.join(" ");
  if (Deno.uid() !== 0) {
    throw new Error(
      `Cannot run the Celery peer benchmark: install Debian's packages with "sudo apt-get install ${list}"`,
    );
  }
  console.error(`Celery is not installed; installing ${list} with apt-get`);
  await aptInstall(PACKAGES);
  if (!await celeryInstalled()) {
    throw new Error(`Cannot find Celery or redis-server after installing ${list}`);
  }
}

/** Pids of the broker node's Erlang VM (the same rule bench/roundtrip.ts uses). */
function brokerPids(broker: RabbitBroker): number[] {
  const pids: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const cmd = Deno.readTextFileSync(`/proc/${e.name}/cmdline`);
      if (cmd.includes("beam.smp") && cmd.includes(broker.info.dir)) pids.push(Number(e.name));
    } catch {
      // exited
    }
  }
  return pids;
}

/**
 * Runs Celery's benchmark against `broker` (a vhost of its own, deleted afterwards) and returns
 * its figures. Every process it starts is stopped before it returns or throws.
 */
export async function runCelery(
  broker: RabbitBroker,
  options: CeleryBenchOptions,
): Promise<CeleryFigures> {
  const prefetch = options.prefetch ?? CELERY_DEFAULT_PREFETCH;
  for (const [name, n] of Object.entries({ ...options, prefetch })) {
    if (!Number.isInteger(n) || n < 1) {
      throw new RangeError(
        `Cannot run Celery's benchmark: "${name}" must be a positive integer (got "${n}")`,
      );
    }
  }
  const access = brokerAccess(broker);
  const dir = await Deno.makeTempDir({ prefix: "funcx-bench-celery-" });
  const vhost = `celery-${randomHex(8)}`;
  const groups: ProcessGroup[] = [];
  try {
    const brokerUrl = await createVhost(access, vhost);
    const [redisPort] = freePorts(1) as [number];
    const redis = ProcessGroup.spawn(REDIS_SERVER, [
      ...["--bind", "127.0.0.1", "--port", String(redisPort), "--dir", dir],
      ...["--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", ""],
    ], {
      name: "redis-server",
      cwd: dir,
      logFile: join(dir, "redis.log"),
      removeDirIfOrphaned: dir,
    });
    groups.push(redis);
    await redis.waitForLine((l) => l.includes("Ready to accept connections"), {
      timeoutMs: READY_TIMEOUT_MS,
      what: "its ready line",
    });

    const env = {
      CELERY_BENCH_BROKER: brokerUrl,
      CELERY_BENCH_BACKEND: `redis://127.0.0.1:${redisPort}/0`,
      CELERY_BENCH_PREFETCH: String(prefetch),
      PYTHONDONTWRITEBYTECODE: "1",
    };
    const worker = ProcessGroup.spawn(PYTHON, [
      ...["-m", "celery", "-A", "celery_bench", "worker", "--pool", "prefork"],
      ...["--concurrency", String(options.workers), "--hostname", `bench-${randomHex(6)}@%h`],
      ...["--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel", "WARNING"],
    ], { name: "Celery worker", cwd: HERE, env, logFile: join(dir, "worker.log") });
    groups.push(worker);
    await worker.waitForLine((l) => l.startsWith(`{"event": "ready"`), {
      timeoutMs: READY_TIMEOUT_MS,
      what: "its ready line",
    });

    const cpuPids = {
      workers: [`g${worker.pgid}`],
      broker: brokerPids(broker),
      "result backend": [`g${redis.pgid}`],
    };
    const client = ProcessGroup.spawn(PYTHON, [
      ...["celery_bench.py", "client", "--tasks", String(options.tasks)],
      ...["--rounds", String(options.rounds), "--cpu-pids", JSON.stringify(cpuPids)],
    ], { name: "Celery client", cwd: HERE, env, logFile: join(dir, "client.log") });
    groups.push(client);
    const line = await client.waitForLine(
      (l) => l.startsWith(`{"event": "figures"`),
      {
        timeoutMs: READY_TIMEOUT_MS + options.tasks * 10 + options.rounds * 100,
        what: "its figures",
      },
    );
    const figures = JSON.parse(line) as Omit<CeleryFigures, "workers" | "name" | "label"> & {
      event?: string;
    };
    delete figures.event;
    return {
      ...figures,
      name: "Celery",
      label: `Celery ${figures.celery} (RabbitMQ broker, Redis results, ${options.workers} ` +
        `prefork workers, acks_late, prefetch ${figures.prefetch_multiplier})`,
      workers: options.workers,
    };
  } finally {
    for (const g of groups.reverse()) await g.stop();
    await deleteVhost(access, vhost).catch(() => {});
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}
