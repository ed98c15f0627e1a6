/**
 * A manager: one per node or block. It connects to the endpoint's interchange over TCP, proves it
 * knows the endpoint's secret, runs `worker_init`, starts its pool of worker subprocesses and
 * advertises their number as its capacity. It then runs the tasks it is sent, returns results in
 * batches and exchanges heartbeats; when the interchange goes silent past the threshold, it
 * stops its workers and exits, so no orphan keeps running.
 *
 * Its core ({@linkcode Manager.serve}) is apart from its transport: a manager process on a compute
 * node (a batch block) reaches the interchange over TCP ({@linkcode Manager.run}); a local block
 * is the same core run inside the daemon over an in-memory link (`in_process_provider.ts`), so it
 * keeps everything a manager does (`WorkerLost`, walltime, the memory limit, cancel, accelerators,
 * containers and warm routing, MPI) with one process and one hop fewer.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { hostname } from "node:os";
import { join } from "node:path";
import type { ResultMessage } from "../../sdk/protocol/mod.ts";
import {
  isCompiledBinary,
  permissionFlags,
  WORKER_PERMISSIONS_ENV,
  type WorkerPermissions,
} from "./command.ts";
import { type Link, tcpLink } from "./manager_link.ts";
import { IdleReclaimer } from "./idle_reclaimer.ts";
import {
  type FromManager,
  MANAGER_PROTOCOL_VERSION,
  proveSecret,
  type ToManager,
} from "./manager_protocol.ts";
import { WorkerPool } from "./worker_pool.ts";
import { workerCommand } from "./worker_bundle.ts";
import { SEND_AHEAD } from "./send_ahead.ts";
import { containerCommand, type ContainerConfig } from "./container.ts";
import type { MpiConfig } from "./mpi_launcher.ts";
import { isMpiTask, mpiModeRequired, type MpiRunner, startMpiRunner } from "./mpi_runner.ts";

const log = getLogger(["funcx", "endpoint", "manager"]);

/** Environment variable that carries the per-endpoint secret to a manager. */
export const SECRET_ENV = "FUNCX_MANAGER_SECRET";
/** Environment variable that carries a manager's {@linkcode ManagerOptions} as JSON. */
export const OPTIONS_ENV = "FUNCX_MANAGER_OPTIONS";

/** Everything a manager needs, passed from the engine (JSON in {@linkcode OPTIONS_ENV}). */
export interface ManagerOptions {
  /** Interchange host. */
  interchange_host: string;
  /** Interchange port. */
  interchange_port: number;
  /** This manager's id; names its log folder. */
  manager_id: string;
  /** The block (provider job) it belongs to. */
  block_id: string;
  /** Upper bound on workers. */
  max_workers_per_node: number;
  /** Cores each worker takes. */
  cores_per_worker: number;
  /** GB of memory each worker may use, or `null` for no limit. */
  mem_per_worker: number | null;
  /** Accelerator ids; one worker per id when not empty. */
  available_accelerators: string[];
  /** Shell commands run before the workers start; their environment changes reach workers. */
  worker_init: string;
  /** Deno permissions of the workers. */
  permissions: WorkerPermissions;
  /** Seconds a task may run, or `null`. */
  task_walltime_s: number | null;
  /** Tasks a busy worker may be sent ahead (`engine.worker_send_ahead`). @default {@linkcode SEND_AHEAD} */
  worker_send_ahead?: number | undefined;
  /** Whether workers may have transparent huge pages (`engine.worker_huge_pages`). @default false */
  worker_huge_pages?: boolean | undefined;
  /** Seconds between heartbeats. */
  heartbeat_period: number;
  /** Seconds of silence from the interchange before the manager gives up. */
  heartbeat_threshold: number;
  /** Root of the log folders. */
  run_dir: string;
  /** Worker command line override (tests). */
  worker_command: string[] | null;
  /** How workers in containers start; absent or `container_type: null` for none. */
  container?: ContainerConfig | undefined;
  /** MPI mode (`engine.mpi`) and the block's node count; absent or null for none. */
  mpi?: { config: MpiConfig; nodes_per_block: number } | null | undefined;
}

/** What decides how many workers a node runs. */
export type WorkerLimits = Pick<
  ManagerOptions,
  "max_workers_per_node" | "cores_per_worker" | "mem_per_worker" | "available_accelerators"
>;

/** How many workers a node gets: the tightest of the count, cores, memory and accelerators. */
export function workerCount(o: WorkerLimits, cores: number, memAvailableBytes: number): number {
  return workerPlan(o, cores, memAvailableBytes).count;
}

/**
 * How many workers a node gets and, in words, why: `min(max_workers_per_node, floor(cores /
 * cores_per_worker))`, then memory (`mem_per_worker`), and one per accelerator when there are any.
 * A count lower than `max_workers_per_node` says which limit won and how to raise it.
 *
 * @example
 * ```ts
 * import { workerPlan } from "./manager.ts";
 * const plan = workerPlan({
 *   max_workers_per_node: 64,
 *   cores_per_worker: 1,
 *   mem_per_worker: null,
 *   available_accelerators: [],
 * }, 2, 8 * 1024 ** 3);
 * if (plan.count !== 2 || !plan.why.includes("cores_per_worker")) throw new Error(plan.why);
 * ```
 */
export function workerPlan(
  o: WorkerLimits,
  cores: number,
  memAvailableBytes: number,
): { count: number; why: string } {
  if (o.available_accelerators.length > 0) {
    const count = o.available_accelerators.length;
    return { count, why: `one per accelerator (${o.available_accelerators.join(", ")})` };
  }
  const byCores = Math.floor(cores / o.cores_per_worker);
  let count = Math.min(o.max_workers_per_node, byCores);
  let why = byCores < o.max_workers_per_node
    ? `max_workers_per_node is ${o.max_workers_per_node}, but ${cores} cores at ` +
      `cores_per_worker ${o.cores_per_worker} make ${byCores}; for tasks that mostly wait ` +
      "(I/O, the network, a service), set engine.cores_per_worker below 1 (0.1: up to ten " +
      "workers a core)"
    : `max_workers_per_node ${o.max_workers_per_node} (${cores} cores at cores_per_worker ` +
      `${o.cores_per_worker} allow ${byCores})`;
  if (o.mem_per_worker !== null) {
    const byMem = Math.floor(memAvailableBytes / (o.mem_per_worker * 1024 ** 3));
    if (byMem < count) {
      count = byMem;
      why = `${(memAvailableBytes / 1024 ** 3).toFixed(1)} GB available at mem_per_worker ` +
        `${o.mem_per_worker} GB`;
    }
  }
  if (count < 1) {
    throw new RangeError(
      `Cannot start a worker on this node: ${cores} cores, ` +
        `${(memAvailableBytes / 1024 ** 3).toFixed(1)} GB available, cores_per_worker ` +
        `${o.cores_per_worker}, mem_per_worker ${o.mem_per_worker ?? "unset"}`,
    );
  }
  return { count, why };
}

/** Runs `worker_init` in a shell and returns the environment it leaves. */
export async function runWorkerInit(script: string): Promise<Record<string, string>> {
  const env = Deno.env.toObject();
  if (script.trim() === "") return env;
  const marker = "__FUNCX_WORKER_INIT_ENV__";
  const out = await new Deno.Command("/bin/sh", {
    args: ["-c", `set -e\n${script}\nprintf '\\0${marker}\\0'\nenv -0`],
    stdin: "null",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  const at = text.lastIndexOf(`\0${marker}\0`);
  if (!out.success || at < 0) {
    const err = new TextDecoder().decode(out.stderr).trim().slice(-1000);
    throw new Error(`worker_init failed with exit code ${out.code}: ${err || "(no output)"}`);
  }
  const result: Record<string, string> = {};
  for (const entry of text.slice(at + marker.length + 2).split("\0")) {
    const eq = entry.indexOf("=");
    if (eq > 0) result[entry.slice(0, eq)] = entry.slice(eq + 1);
  }
  return result;
}

/** The manager's side of the TCP handshake: `hello`, `register` with the proof, `welcome`. */
async function handshake(
  link: Link<FromManager, ToManager>,
  o: ManagerOptions,
  secret: string,
): Promise<void> {
  const hello = (await link.messages.next()).value;
  if (hello?.type !== "hello" || hello.protocol !== MANAGER_PROTOCOL_VERSION) {
    throw new Error(`Interchange failed the handshake (${JSON.stringify(hello?.type)})`);
  }
  link.send({
    type: "register",
    protocol: MANAGER_PROTOCOL_VERSION,
    manager_id: o.manager_id,
    block_id: o.block_id,
    hmac: await proveSecret(secret, hello.nonce),
    hostname: hostname(),
    pid: Deno.pid,
  });
  const answer = (await link.messages.next()).value;
  if (answer?.type !== "welcome") {
    const why = answer?.type === "refused" ? answer.reason : "connection closed";
    throw new Error(`Interchange refused manager "${o.manager_id}": ${why}`);
  }
}

/** Lifecycle of a manager. */
export type ManagerState = "connecting" | "starting" | "running" | "draining" | "stopped";

/** A manager process's work; {@linkcode Manager.run} returns when it is done. */
export class Manager {
  readonly #o: ManagerOptions;
  #state: ManagerState = "connecting";
  #pool: WorkerPool | undefined;
  #mpi: MpiRunner | undefined;
  #batch: ResultMessage[] = [];
  #lastHeard = Date.now();
  readonly #reclaimer = new IdleReclaimer();

  private constructor(options: ManagerOptions) {
    this.#o = options;
  }

  /**
   * Connects over TCP, proves the secret, and serves until told to stop (or `signal` aborts or
   * the interchange is lost): a manager process (a batch block on a compute node).
   */
  static async run(options: ManagerOptions, secret: string, signal?: AbortSignal): Promise<void> {
    const conn = await Deno.connect({
      hostname: options.interchange_host,
      port: options.interchange_port,
    });
    conn.setNoDelay(true);
    const link = tcpLink<FromManager, ToManager>(conn);
    const onAbort = () => link.abort();
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      await handshake(link, options, secret);
    } catch (err) {
      link.abort();
      throw err;
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
    await Manager.serve(options, link, signal);
  }

  /**
   * Serves over a link already accepted by the interchange, until told to stop (or `signal`
   * aborts or the link ends): a manager in the daemon's process (a local block) is this alone.
   */
  static async serve(
    options: ManagerOptions,
    link: Link<FromManager, ToManager>,
    signal?: AbortSignal,
  ): Promise<void> {
    await new Manager(options).#serve(link, signal);
  }

  async #serve(link: Link<FromManager, ToManager>, signal: AbortSignal | undefined): Promise<void> {
    const o = this.#o;
    const onAbort = () => this.#stop(link);
    if (signal?.aborted) return link.abort();
    signal?.addEventListener("abort", onAbort, { once: true });
    let heartbeat: ReturnType<typeof setInterval> | undefined;
    try {
      this.#state = "starting";
      try {
        this.#pool = await this.#startPool();
      } catch (err) {
        link.send({ type: "fatal", message: (err as Error).message });
        await link.drain();
        throw err;
      }
      if (this.#state !== "starting") return;
      this.#state = "running";
      const ready = this.#pool.readyCount;
      link.send({ type: "ready", workers: ready });
      log.info("Manager {id} ready with {n} of {total} workers", {
        id: o.manager_id,
        n: ready,
        total: this.#pool.workerCount + this.#pool.startingCount,
      });
      this.#lastHeard = Date.now();
      heartbeat = setInterval(() => {
        if (Date.now() - this.#lastHeard > o.heartbeat_threshold * 1000) {
          log.error("Interchange silent for over {s} s; manager {id} stops", {
            s: o.heartbeat_threshold,
            id: o.manager_id,
          });
          this.#stop(link);
        } else {
          link.send({ type: "heartbeat" });
        }
      }, Math.min(o.heartbeat_period, o.heartbeat_threshold / 2) * 1000);
      this.#link = link;
      for await (const msg of link.messages) {
        this.#lastHeard = Date.now();
        if (msg.type === "tasks") {
          this.#reclaimer.touch();
          for (const t of msg.tasks) {
            const task = { ...t, statuses: [] };
            if (!isMpiTask(t.buffer)) this.#pool.submit(task);
            else if (this.#mpi) this.#mpi.submit(task);
            else this.#onResult(mpiModeRequired(task));
          }
        } else if (msg.type === "cancel") {
          if (!this.#mpi?.cancel(msg.task_id)) this.#pool.cancel(msg.task_id);
        } else if (msg.type === "shutdown") {
          break;
        }
      }
    } catch (err) {
      if (this.#state !== "draining") throw err;
    } finally {
      clearInterval(heartbeat);
      this.#reclaimer.close();
      signal?.removeEventListener("abort", onAbort);
      this.#state = "draining";
      await this.#mpi?.close();
      await this.#pool?.close();
      this.#flush();
      await link.close();
      this.#state = "stopped";
    }
  }

  #link: Link<FromManager, ToManager> | undefined;

  #onResult(result: ResultMessage): void {
    this.#batch.push(result);
    if (this.#batch.length === 1) queueMicrotask(() => this.#flush());
  }

  #flush(): void {
    if (this.#batch.length === 0) return;
    const results = this.#batch;
    this.#batch = [];
    this.#reclaimer.touch();
    this.#link?.send({ type: "results", results });
  }

  #stop(link: Link<FromManager, ToManager>): void {
    if (this.#state === "draining" || this.#state === "stopped") return;
    this.#state = "draining";
    // Ending the link ends the read loop; `finally` then stops the workers.
    link.abort();
  }

  async #startPool(): Promise<WorkerPool> {
    const o = this.#o;
    const env = await runWorkerInit(o.worker_init);
    if (o.mpi) {
      this.#mpi = await startMpiRunner(o.mpi, env, o.task_walltime_s, (r) => this.#onResult(r));
    }
    // A compiled binary's worker cannot be started with narrower permissions: it runs its tasks
    // in a Web Worker with this permission set instead (`worker_main.ts`).
    if (isCompiledBinary() && !(o.permissions.all ?? true)) {
      env[WORKER_PERMISSIONS_ENV] = JSON.stringify(o.permissions);
    } else {
      delete env[WORKER_PERMISSIONS_ENV];
    }
    const plan = workerPlan(o, navigator.hardwareConcurrency, Deno.systemMemoryInfo().available);
    const workers = plan.count;
    log.info("Starting {n} workers: {why}", { n: workers, why: plan.why });
    const memLimitMb = o.mem_per_worker === null ? null : Math.floor(o.mem_per_worker * 1024);
    const flags = permissionFlags(o.permissions);
    // `gc` in the worker's global scope lets the idle reclaimer collect without loading
    // node:v8 and node:vm and building a context for it (~20 ms of CPU and a few MiB a worker).
    const v8 = ["--expose-gc"];
    if (memLimitMb !== null) v8.push(`--max-old-space-size=${memLimitMb}`);
    flags.push(`--v8-flags=${v8.join(",")}`);
    return await WorkerPool.start({
      workers,
      command: o.worker_command ?? await workerCommand(flags),
      logDir: join(o.run_dir, o.manager_id),
      onResult: (r) => this.#onResult(r),
      env,
      accelerators: o.available_accelerators,
      walltimeS: o.task_walltime_s,
      sendAhead: o.worker_send_ahead ?? SEND_AHEAD,
      hugePages: o.worker_huge_pages ?? false,
      memLimitMb,
      containerCommand: o.container?.container_type
        ? (location: string) => containerCommand(o.container!, location)
        : undefined,
      // Until `ready` there is no writer, and no container worker either.
      onWarmKinds: (kinds) => this.#link?.send({ type: "warm", kinds }),
      // Ready with the first wave of workers; the interchange hears of the others as they come
      // (the count `ready` carries includes those up by then).
      readyWorkers: WorkerPool.startWave,
      onWorkers: (ready) => this.#link?.send({ type: "workers", workers: ready }),
      onAheadSlots: (slots) => this.#link?.send({ type: "ahead", slots }),
    });
  }
}
