/**
 * MPI tasks in a manager. In MPI mode (`engine.mpi`) each block runs one manager, which reads
 * its block's nodes ({@link ./mpi_nodes.ts}); the manager hands every `MPIFunction` task to an
 * {@linkcode MpiRunner} instead of its worker pool. The runner queues tasks in order, starts the
 * first as soon as the {@linkcode SlotAllocator} has the nodes and slots its resource
 * specification asks for (so tasks that together need more than the block has run one after
 * another), and runs its command with `$FUNCX_MPI_PREFIX` set for those nodes
 * ({@link ./mpi_launcher.ts}). The launcher is only a small process per task, so it runs from
 * the manager rather than taking a worker; the ranks are what use the nodes.
 *
 * A task that cannot run fails with a named error saying what to do: `MPIModeRequired` (no MPI
 * mode), `MPIResourcesExceeded` (larger than a block), `MPILauncherNotFound`, `MPIRankFailed`
 * (the launcher's exit code and the end of stderr).
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import {
  ActorName,
  errorToInfo,
  nowNs,
  type ResultMessage,
  serialize,
  serializeData,
  TaskState,
  type TaskTransition,
  unpackTask,
} from "../../sdk/protocol/mod.ts";
import {
  resolveResourceSpecification,
  type ResourceSpecificationWire,
} from "../../sdk/protocol/resource_specification.ts";
import { MPI_FUNCTION_NAME, type MPIResult } from "../../sdk/mpi_function.ts";
import type { ShellSpec } from "../../sdk/shell_function.ts";
import { type EngineFailure, failureResult } from "./failure.ts";
import { findOnPath, type MpiConfig, mpiEnv, type MpiPlacement } from "./mpi_launcher.ts";
import { blockNodes, type MpiNode, type SlotAllocation, SlotAllocator } from "./mpi_nodes.ts";
import { lastLines, runShell } from "./shell.ts";

const log = getLogger(["funcx", "endpoint", "mpi"]);

/** Lines of stderr an `MPIRankFailed` error quotes. */
const STDERR_LINES = 15;

/** An MPI task as the manager holds it. */
export interface MpiTask {
  /** The task's id. */
  task_id: string;
  /** The task buffer (an `MPIFunction` and its arguments). */
  buffer: string;
  /** Transitions recorded so far. */
  statuses: TaskTransition[];
  /** What it asks for; absent for the default (one node, one rank). */
  resource_specification?: ResourceSpecificationWire | undefined;
}

const MPI_PREFIX = `st\n${MPI_FUNCTION_NAME}:`;

/**
 * Whether a task buffer holds an `MPIFunction` (read from its first bytes, without decoding it).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { isMpiTask } from "./mpi_runner.ts";
 * assert.equal(isMpiTask("40\nst\n__funcx_mpi__:function __funcx_mpi__() {}"), true);
 * assert.equal(isMpiTask("30\nst\n__funcx_shell__:function x() {}"), false);
 * ```
 */
export function isMpiTask(buffer: string): boolean {
  const nl = buffer.indexOf("\n");
  return nl > 0 && nl < 16 && buffer.startsWith(MPI_PREFIX, nl + 1);
}

/** The failure of an `MPIFunction` task sent to an endpoint without MPI mode. */
export function mpiModeRequired(task: MpiTask): ResultMessage {
  return failureResult(
    task.task_id,
    "MPIModeRequired",
    `Task "${task.task_id}" is an MPIFunction, but this endpoint has no MPI mode: set engine.mpi ` +
      "in its config.yaml (launcher: mpiexec, mpirun or srun; flavor: openmpi or mpich), or " +
      "send the task to an endpoint that has it",
    task.statuses,
  );
}

/**
 * The ShellSpec of an MPIFunction, read as data from the source text `MPIFunction.source()`
 * makes (never evaluated: the manager runs with the endpoint's rights, not the workers').
 */
export function mpiSpecOf(source: string): ShellSpec {
  const m = /^function __funcx_mpi__\(\) \{ return (\{.*\}); \}$/s.exec(source.trim());
  let spec: unknown;
  try {
    spec = m ? JSON.parse(m[1]!) : undefined;
  } catch {
    spec = undefined;
  }
  if (typeof (spec as ShellSpec | undefined)?.cmd !== "string") {
    throw new TypeError(
      "MPIFunction source is not as MPIFunction.source() makes it: register MPI functions " +
        "with FuncXClient.registerShellFunction(new MPIFunction(...))",
    );
  }
  return spec as ShellSpec;
}

/** Options of {@linkcode MpiRunner}. */
export interface MpiRunnerOptions {
  /** The `engine.mpi` section. */
  config: MpiConfig;
  /** The block's nodes. */
  nodes: readonly MpiNode[];
  /** The tasks' environment (the manager's after `worker_init`). */
  env: Record<string, string>;
  /** Seconds a task may run, or null. */
  walltimeS: number | null;
  /** Hears each finished task's result (failures included). */
  onResult: (result: ResultMessage) => void;
}

interface Running {
  task: MpiTask;
  allocation: SlotAllocation;
  abort: AbortController;
  why: { name: EngineFailure; message: string } | undefined;
}

/** Queues MPI tasks until their nodes are free and runs them under the MPI launcher. */
export class MpiRunner {
  readonly #o: MpiRunnerOptions;
  readonly #slots: SlotAllocator;
  readonly #queue: { task: MpiTask; spec: ResourceSpecificationWire }[] = [];
  readonly #running = new Map<string, Running>();
  readonly #done = new Set<Promise<void>>();
  #closed = false;

  /** A runner for a block's nodes. */
  constructor(options: MpiRunnerOptions) {
    this.#o = options;
    this.#slots = new SlotAllocator(options.nodes);
  }

  /** Tasks waiting for nodes. */
  get queued(): number {
    return this.#queue.length;
  }

  /** Tasks running. */
  get running(): number {
    return this.#running.size;
  }

  /** Queues a task; its result goes to `onResult`. */
  submit(task: MpiTask): void {
    const fail = (name: EngineFailure, message: string) =>
      this.#o.onResult(failureResult(task.task_id, name, message, task.statuses));
    if (this.#closed) return fail("WorkerLost", "Manager is shutting down");
    let spec: ResourceSpecificationWire;
    try {
      spec = resolveResourceSpecification(task.resource_specification ?? {});
    } catch (err) {
      return fail("MPIResourcesExceeded", `Task "${task.task_id}": ${(err as Error).message}`);
    }
    const tooLarge = this.#slots.tooLarge(spec);
    if (tooLarge) {
      return fail(
        "MPIResourcesExceeded",
        `Task "${task.task_id}" cannot run on this endpoint: ${tooLarge}. Ask for fewer nodes ` +
          "or ranks per node in its resource specification, or raise engine.nodes_per_block " +
          "(or engine.mpi.slots_per_node) in the endpoint's config.yaml",
      );
    }
    this.#queue.push({ task, spec });
    this.#pump();
  }

  /** Cancels a queued or running task; `false` when the runner does not have it. */
  cancel(taskId: string): boolean {
    const running = this.#running.get(taskId);
    if (running) {
      running.why ??= { name: "TaskCancelled", message: `Task "${taskId}" was cancelled` };
      running.abort.abort();
      return true;
    }
    const i = this.#queue.findIndex((q) => q.task.task_id === taskId);
    if (i < 0) return false;
    const { task } = this.#queue.splice(i, 1)[0]!;
    this.#o.onResult(
      failureResult(taskId, "TaskCancelled", `Task "${taskId}" was cancelled`, task.statuses),
    );
    this.#pump();
    return true;
  }

  /** Fails queued tasks, kills running ones and waits for them; idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const { task } of this.#queue.splice(0)) {
      this.#o.onResult(
        failureResult(task.task_id, "WorkerLost", "Manager shut down", task.statuses),
      );
    }
    for (const r of this.#running.values()) {
      r.why ??= { name: "WorkerLost", message: "Manager shut down while the task ran" };
      r.abort.abort();
    }
    await Promise.all(this.#done);
  }

  /** Starts queued tasks in order while the first one's nodes are free (no overtaking). */
  #pump(): void {
    while (!this.#closed && this.#queue.length > 0) {
      const { task, spec } = this.#queue[0]!;
      const allocation = this.#slots.allocate(spec);
      if (!allocation) return;
      this.#queue.shift();
      const running: Running = { task, allocation, abort: new AbortController(), why: undefined };
      this.#running.set(task.task_id, running);
      const done: Promise<void> = this.#run(running, spec).finally(() => {
        this.#done.delete(done);
        this.#running.delete(task.task_id);
        this.#slots.release(allocation);
        this.#pump();
      });
      this.#done.add(done);
    }
  }

  async #run(r: Running, spec: ResourceSpecificationWire): Promise<void> {
    const { task, allocation } = r;
    const statuses = task.statuses;
    statuses.push({ timestamp: nowNs(), state: TaskState.RUNNING, actor: ActorName.MANAGER });
    const walltime = this.#o.walltimeS;
    const timer = walltime === null ? undefined : setTimeout(() => {
      r.why ??= {
        name: "TaskWalltimeExceeded",
        message: `Task "${task.task_id}" exceeded its walltime of ${walltime} s; it was killed`,
      };
      r.abort.abort();
    }, walltime * 1000);
    let result: ResultMessage;
    try {
      result = await this.#execute(r, spec);
    } finally {
      clearTimeout(timer);
    }
    if (r.why) result = failureResult(task.task_id, r.why.name, r.why.message, statuses);
    log.info("MPI task {id} on {hosts}: {outcome}", {
      id: task.task_id,
      hosts: allocation.hosts.join(","),
      outcome: result.error_details?.code ?? "done",
    });
    this.#o.onResult(result);
  }

  async #execute(r: Running, spec: ResourceSpecificationWire): Promise<ResultMessage> {
    const { task, allocation } = r;
    const { config, env } = this.#o;
    const path = env["PATH"] ?? "";
    if (!findOnPath(config.launcher, path)) {
      return failureResult(
        task.task_id,
        "MPILauncherNotFound",
        `MPI launcher "${config.launcher}" not found on the PATH of this endpoint's tasks ` +
          `(${path || "empty"}): install it on the nodes, add its folder to PATH in ` +
          "engine.worker_init (e.g. module load openmpi), or choose another engine.mpi.launcher",
        task.statuses,
      );
    }
    const placement: MpiPlacement = {
      hosts: allocation.hosts,
      ranksPerNode: spec.ranks_per_node,
      numRanks: spec.num_ranks,
    };
    const statuses = task.statuses;
    statuses.push({
      timestamp: nowNs(),
      state: TaskState.EXECUTION_START,
      actor: ActorName.WORKER,
    });
    let data: string;
    let errorDetails: ResultMessage["error_details"] = null;
    try {
      const payload = unpackTask(task.buffer);
      const shell = mpiSpecOf(payload.fn.source);
      const out = await runShell(
        { ...shell, fail_on_nonzero: false },
        payload.args,
        payload.kwargs,
        { env: { ...env, ...mpiEnv(config, placement) }, signal: r.abort.signal },
      );
      if (out.returncode !== 0 && shell.fail_on_nonzero !== false && !r.why) {
        return failureResult(
          task.task_id,
          "MPIRankFailed",
          rankFailure(out.cmd, out.returncode, out.stderr, allocation.hosts),
          [...statuses, {
            timestamp: nowNs(),
            state: TaskState.EXECUTION_END,
            actor: ActorName.WORKER,
          }],
        );
      }
      const value: MPIResult = { ...out, nodes: [...allocation.hosts] };
      data = serializeData(value);
    } catch (err) {
      data = serialize(errorToInfo(err));
      errorDetails = {
        code: "RemoteExecutionError",
        user_message: "An error occurred during the execution of this task",
      };
    }
    statuses.push({ timestamp: nowNs(), state: TaskState.EXECUTION_END, actor: ActorName.WORKER });
    return { task_id: task.task_id, data, error_details: errorDetails, task_statuses: statuses };
  }
}

/**
 * Words for an MPI command that exited non-zero: which rank failed and with what code when
 * the launcher says so (OpenMPI's "Process name: [[job,1],RANK] / Exit code: N"), the
 * launcher's exit code, the hosts, and the end of stderr.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { rankFailure } from "./mpi_runner.ts";
 * const stderr = "boom\n  Process name: [[8468,1],1]\n  Exit code:    3\n";
 * assert.match(rankFailure("mpiexec ./a", 3, stderr, ["n1"]), /rank 1 exited with code 3/);
 * ```
 */
export function rankFailure(
  cmd: string,
  code: number,
  stderr: string,
  hosts: readonly string[],
): string {
  const m = /Process name:\s*\[\[\d+,\d+\],(\d+)\]\s*\n\s*Exit code:\s*(\d+)/.exec(stderr);
  const which = m ? `rank ${m[1]} exited with code ${m[2]}; ` : "";
  const tail = lastLines(stderr, STDERR_LINES).trim();
  return `MPI command "${cmd}" failed on ${hosts.join(",")}: ${which}the launcher exited with ` +
    `code ${code}. Its stderr ends:\n${tail || "(empty)"}`;
}

/**
 * A manager's MPI runner: reads the block's nodes from the manager's environment `env` (after
 * `worker_init`) and runs tasks with it.
 */
export async function startMpiRunner(
  mpi: { config: MpiConfig; nodes_per_block: number },
  env: Record<string, string>,
  walltimeS: number | null,
  onResult: (result: ResultMessage) => void,
): Promise<MpiRunner> {
  const nodes = await blockNodes({
    env,
    nodesPerBlock: mpi.nodes_per_block,
    slotsPerNode: mpi.config.slots_per_node,
  });
  log.info("MPI mode: {launcher} on {nodes}", {
    launcher: mpi.config.launcher,
    nodes: nodes.map((n) => `${n.host}:${n.slots}`).join(","),
  });
  return new MpiRunner({ config: mpi.config, nodes, env: { ...env }, walltimeS, onResult });
}
