/**
 * The Slurm provider: each block is a batch job. `start` writes `<run_dir>/block_<id>.sbatch`
 * (mode 0700: it carries the endpoint's secret for the manager) and submits it with
 * `sbatch --parsable`; `status` asks `squeue` (then `sacct`) for all blocks at once; `stop` runs
 * `scancel` and waits until the job has left. The job's output goes to `<run_dir>/block_<id>.log`.
 * A scheduler command that fails is retried with backoff unless its error is permanent (a bad
 * partition); the final error carries the command's stderr.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import {
  BATCH_DEFAULTS,
  BatchJobBlock,
  type BatchProviderOptions,
  blockLogPath,
  cancelAndWait,
  jobScript,
  pollLive,
  schedulerCommand,
  SchedulerCommandError,
  shellQuote,
  writeJobScript,
} from "./batch_job.ts";
import type { BlockHandle, BlockState, BlockStatus, Provider } from "./provider.ts";

const log = getLogger(["funcx", "endpoint", "engine", "slurm"]);

/** Options of {@linkcode SlurmProvider}. */
export interface SlurmProviderOptions extends BatchProviderOptions {
  /** `--partition`. @default null (the cluster's default) */
  partition?: string | null;
  /** `--account`. @default null */
  account?: string | null;
  /** `--qos`. @default null */
  qos?: string | null;
  /** `--time`, `HH:MM:SS` (or any Slurm time). @default null (the partition's limit) */
  walltime?: string | null;
  /** `--exclusive`. @default false */
  exclusive?: boolean;
  /** How managers start: `srun` runs one per node; `none` runs one in the batch step. @default "srun" when nodesPerBlock > 1 */
  launcher?: "srun" | "none";
}

export { SchedulerCommandError };

const PERMANENT = /invalid|not permitted|unrecognized|denied|not exist|unknown|requested node/i;

/** Runs each block as a Slurm batch job. */
export class SlurmProvider implements Provider {
  /** Always `"slurm"`. */
  readonly label = "slurm";
  readonly #o: Required<SlurmProviderOptions>;

  /** A provider with `options`. */
  constructor(options: SlurmProviderOptions) {
    const nodes = options.nodesPerBlock ?? 1;
    this.#o = {
      partition: null,
      account: null,
      qos: null,
      walltime: null,
      exclusive: false,
      ...BATCH_DEFAULTS,
      ...options,
      nodesPerBlock: nodes,
      launcher: options.launcher ?? (nodes > 1 ? "srun" : "none"),
    };
  }

  /** The batch script of a block (exported for tests and debugging). */
  script(blockId: string, command: readonly string[], env: Record<string, string>): string {
    const o = this.#o;
    const directives = [
      `--job-name=funcx-block-${blockId}`,
      `--output=${blockLogPath(o.runDir, blockId)}`,
      "--open-mode=append",
      `--chdir=${o.runDir}`,
      `--nodes=${o.nodesPerBlock}`,
      "--ntasks-per-node=1",
      ...(o.partition ? [`--partition=${o.partition}`] : []),
      ...(o.account ? [`--account=${o.account}`] : []),
      ...(o.qos ? [`--qos=${o.qos}`] : []),
      ...(o.walltime ? [`--time=${o.walltime}`] : []),
      ...(o.exclusive ? ["--exclusive"] : []),
    ];
    const cmd = command.map(shellQuote).join(" ");
    const run = o.launcher === "srun"
      ? `srun --nodes=${o.nodesPerBlock} --ntasks-per-node=1 --kill-on-bad-exit=0 bash -c ` +
        `'export FUNCX_MANAGER_ID_SUFFIX=".$SLURM_PROCID"; exec "$@"' funcx-manager ${cmd}`
      : `exec ${cmd}`;
    return jobScript(blockId, {
      ...{ prefix: "#SBATCH", directives, schedulerOptions: o.schedulerOptions },
      ...{ workerInit: o.workerInit, env, scheduler: "Slurm", jobIdVar: "SLURM_JOB_ID" },
      run: [run],
    });
  }

  /** Writes the block's script and submits it with `sbatch --parsable`. */
  async start(
    blockId: string,
    command: readonly string[],
    env: Record<string, string>,
  ): Promise<BlockHandle> {
    const script = this.script(blockId, command, env);
    const path = await writeJobScript(this.#o.runDir, `block_${blockId}.sbatch`, script);
    const out = await this.#command("sbatch", ["--parsable", path], `submit block ${blockId}`);
    const jobId = out.trim().split(";")[0]!.trim();
    if (!/^\d+(_\d+)?$/.test(jobId)) {
      throw new SchedulerCommandError(`Cannot submit block ${blockId}: sbatch said "${out}"`, true);
    }
    log.info("Block {block} submitted as Slurm job {job}", { block: blockId, job: jobId });
    return new BatchJobBlock(blockId, jobId, blockLogPath(this.#o.runDir, blockId));
  }

  /** Asks `squeue` for all blocks at once; jobs it no longer lists are asked of `sacct`. */
  status(handles: readonly BlockHandle[]): Promise<BlockStatus[]> {
    return pollLive(handles, async (live) => {
      const states = await this.#squeue(live.map((b) => b.jobId));
      for (const b of live) {
        const s = states.get(b.jobId) ?? await this.#sacct(b.jobId);
        b.update(s);
      }
    });
  }

  /** `scancel`, then waits (bounded) until the job has left the node. */
  async stop(handle: BlockHandle): Promise<void> {
    const block = BatchJobBlock.of(handle);
    await cancelAndWait(
      block,
      () => this.#command("scancel", [block.jobId], `cancel block ${block.blockId}`),
      () => this.status([block]),
      this.#o.cancelWaitS,
    );
  }

  async #squeue(jobIds: string[]): Promise<Map<string, BlockStatus>> {
    const states = new Map<string, BlockStatus>();
    const ask = async (ids: string[]) => {
      const out = await this.#command(
        "squeue",
        ["-h", "--states=all", "-j", ids.join(","), "-o", "%i|%T|%r"],
        "poll blocks",
      );
      for (const line of out.split("\n")) {
        const [id, state, reason] = line.trim().split("|");
        if (id && state) states.set(id, slurmState(state, reason));
      }
    };
    try {
      await ask(jobIds);
    } catch (err) {
      // squeue refuses the whole list when one id has been purged: ask one at a time.
      if (!(err instanceof SchedulerCommandError && /invalid job id/i.test(err.message))) throw err;
      for (const id of jobIds) await ask([id]).catch(() => {});
    }
    return states;
  }

  async #sacct(jobId: string): Promise<BlockStatus> {
    try {
      const out = await this.#command(
        "sacct",
        ["-n", "-X", "-P", "-j", jobId, "-o", "JobID,State,ExitCode"],
        "poll a finished block",
        1,
      );
      const [, state, code] = out.trim().split("\n")[0]?.split("|") ?? [];
      if (state) return slurmState(state.split(" ")[0]!, code ? `exit code ${code}` : "");
    } catch {
      // no accounting on this cluster
    }
    return { state: "completed", message: "no longer known to the scheduler" };
  }

  #command(cmd: string, args: string[], what: string, attempts?: number): Promise<string> {
    const once = attempts === undefined ? {} : { attempts };
    return schedulerCommand([cmd, ...args], what, { ...this.#o, permanent: PERMANENT, ...once });
  }
}

/** Maps a Slurm job state (`squeue %T`, `sacct State`) to a block state. */
export function slurmState(state: string, reason = ""): BlockStatus {
  const s = state.toUpperCase().replace(/\+$/, "");
  const message = reason && reason !== "None" ? { message: reason } : {};
  const map: Record<string, BlockState> = {
    PENDING: "pending",
    CONFIGURING: "pending",
    REQUEUED: "pending",
    REQUEUE_HOLD: "pending",
    REQUEUE_FED: "pending",
    RESIZING: "pending",
    SUSPENDED: "pending",
    RUNNING: "running",
    COMPLETING: "running",
    SIGNALING: "running",
    STAGE_OUT: "running",
    COMPLETED: "completed",
    CANCELLED: "cancelled",
    TIMEOUT: "timeout",
    DEADLINE: "timeout",
    FAILED: "failed",
    NODE_FAIL: "failed",
    BOOT_FAIL: "failed",
    OUT_OF_MEMORY: "failed",
    PREEMPTED: "failed",
    REVOKED: "failed",
    SPECIAL_EXIT: "failed",
  };
  return { state: map[s] ?? "unknown", ...message };
}
