/**
 * The Grid Engine provider (Son of Grid Engine, Univa/Altair, Open Cluster Scheduler): each block
 * is a batch job. `start` writes `<run_dir>/block_<id>.qsub` (mode 0700: it carries the
 * endpoint's secret for the manager) and submits it with `qsub -terse`; `status` asks
 * `qstat -xml` for all blocks at once, and `qacct` for jobs that have left it; `stop` runs `qdel`
 * and waits until the job has left. The job's output goes to `<run_dir>/block_<id>.log`.
 *
 * A block of several nodes asks a parallel environment for one slot per node (`-pe <pe> N`, a
 * PE with `allocation_rule 1` on a real cluster) and starts one manager per host of
 * `$PE_HOSTFILE` with `qrsh -inherit` (tight integration: Grid Engine accounts for and ends them
 * with the job). A scheduler command that fails is retried with backoff unless its error is
 * permanent (an unknown queue or project); the final error carries the command's output.
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
import { type BlockHandle, type BlockStatus, type Provider, TERMINAL_STATES } from "./provider.ts";

const log = getLogger(["funcx", "endpoint", "engine", "gridengine"]);

/** Options of {@linkcode GridEngineProvider}. */
export interface GridEngineProviderOptions extends BatchProviderOptions {
  /** `-q`: the queue (or queue list). @default null (any queue the job fits) */
  queue?: string | null;
  /** `-P`: the project the blocks are accounted to. @default null */
  project?: string | null;
  /** `-l h_rt=`: the hard walltime, `HH:MM:SS` or seconds. @default null (the queue's limit) */
  walltime?: string | null;
  /**
   * `-pe <name> <nodesPerBlock>`: needed when `nodesPerBlock` > 1, and best with
   * `allocation_rule 1` (one slot per host). @default null (no parallel environment)
   */
  parallelEnvironment?: string | null;
  /**
   * How managers start: `qrsh` runs one per host of `$PE_HOSTFILE` with `qrsh -inherit`;
   * `none` runs one in the job script. @default "qrsh" when nodesPerBlock > 1, else "none"
   */
  launcher?: "qrsh" | "none";
  /**
   * Seconds a job may be gone from `qstat` while `qacct` does not know it yet (accounting is
   * written every `flush_time`, 15 s by default) before the block counts as completed.
   * @default 60
   */
  accountingWaitS?: number;
}

/** `qsub`'s and `qdel`'s words for a request that cannot succeed as written. */
const PERMANENT =
  /rejected|does not exist|unknown|invalid|not a .* value|denied|not allowed|no suitable queue/i;

/** Runs each block as a Grid Engine batch job. */
export class GridEngineProvider implements Provider {
  /** Always `"gridengine"`. */
  readonly label = "gridengine";
  readonly #o: Required<GridEngineProviderOptions>;
  /** When each job was first missing from `qstat`, by job id. */
  readonly #goneSince = new Map<string, number>();

  /** A provider with `options`; a multi-node block without a parallel environment is refused. */
  constructor(options: GridEngineProviderOptions) {
    const nodes = options.nodesPerBlock ?? 1;
    this.#o = {
      queue: null,
      project: null,
      walltime: null,
      parallelEnvironment: null,
      accountingWaitS: 60,
      ...BATCH_DEFAULTS,
      ...options,
      nodesPerBlock: nodes,
      launcher: options.launcher ?? (nodes > 1 ? "qrsh" : "none"),
    };
    if ((nodes > 1 || this.#o.launcher === "qrsh") && !this.#o.parallelEnvironment) {
      throw new RangeError(
        `Cannot use the Grid Engine provider with ${nodes} node(s) per block and launcher ` +
          `"${this.#o.launcher}": set "parallel_environment" to a parallel environment of the ` +
          `cluster (one with allocation_rule 1 gives one slot per host)`,
      );
    }
  }

  /** The job script of a block (exported for tests and debugging). */
  script(blockId: string, command: readonly string[], env: Record<string, string>): string {
    const o = this.#o;
    const directives = [
      `-N funcx-block-${blockId}`,
      `-o ${blockLogPath(o.runDir, blockId)}`,
      "-j y",
      `-wd ${o.runDir}`,
      "-S /bin/bash",
      // The job sees the endpoint's environment (PATH, HOME...), as sbatch gives it by default.
      "-V",
      ...(o.parallelEnvironment ? [`-pe ${o.parallelEnvironment} ${o.nodesPerBlock}`] : []),
      ...(o.queue ? [`-q ${o.queue}`] : []),
      ...(o.project ? [`-P ${o.project}`] : []),
      ...(o.walltime ? [`-l h_rt=${o.walltime}`] : []),
    ];
    // qrsh -inherit joins its arguments and a shell on the host splits them again: quote twice.
    const remote = command.map((a) => shellQuote(shellQuote(a))).join(" ");
    const run = o.launcher === "qrsh"
      ? [
        "n=0",
        `while read -r host _; do`,
        `  FUNCX_MANAGER_ID_SUFFIX=".$n" qrsh -inherit -V "$host" ${remote} &`,
        "  n=$((n + 1))",
        `done < "$PE_HOSTFILE"`,
        "wait",
      ]
      : [`exec ${command.map(shellQuote).join(" ")}`];
    return jobScript(blockId, {
      ...{ prefix: "#$", directives, schedulerOptions: o.schedulerOptions },
      ...{ workerInit: o.workerInit, env, scheduler: "Grid Engine", jobIdVar: "JOB_ID", run },
    });
  }

  /** Writes the block's script and submits it with `qsub -terse`. */
  async start(
    blockId: string,
    command: readonly string[],
    env: Record<string, string>,
  ): Promise<BlockHandle> {
    const script = this.script(blockId, command, env);
    const path = await writeJobScript(this.#o.runDir, `block_${blockId}.qsub`, script);
    const out = await this.#command(["qsub", "-terse", path], `submit block ${blockId}`);
    const jobId = /^\s*(\d+)/.exec(out)?.[1];
    if (jobId === undefined) {
      throw new SchedulerCommandError(`Cannot submit block ${blockId}: qsub said "${out}"`, true);
    }
    log.info("Block {block} submitted as Grid Engine job {job}", { block: blockId, job: jobId });
    return new BatchJobBlock(blockId, jobId, blockLogPath(this.#o.runDir, blockId));
  }

  /** Asks `qstat -xml` for all blocks at once; jobs it no longer lists are asked of `qacct`. */
  status(handles: readonly BlockHandle[]): Promise<BlockStatus[]> {
    return pollLive(handles, async (live) => {
      const states = parseQstatXml(await this.#command(["qstat", "-xml"], "poll blocks"));
      for (const b of live) {
        const letters = states.get(b.jobId);
        if (letters !== undefined) {
          const s = gridEngineState(letters);
          // A job in error state never runs: delete it so that it does not stay queued.
          if (s.state === "failed") await this.#qdel(b).catch(() => {});
          b.update(s);
        } else {
          const s = await this.#qacct(b.jobId);
          if (s) b.update(s);
        }
        if (TERMINAL_STATES.has(b.last.state)) this.#goneSince.delete(b.jobId);
      }
    });
  }

  /** `qdel`, then waits (bounded) until the job has left the node. */
  async stop(handle: BlockHandle): Promise<void> {
    const block = BatchJobBlock.of(handle);
    await cancelAndWait(
      block,
      () => this.#qdel(block),
      () => this.status([block]),
      this.#o.cancelWaitS,
    );
    this.#goneSince.delete(block.jobId);
  }

  async #qdel(block: BatchJobBlock): Promise<void> {
    try {
      await this.#command(["qdel", block.jobId], `cancel block ${block.blockId}`);
    } catch (err) {
      // A job that finished meanwhile is fine.
      if (!(err instanceof SchedulerCommandError && /does not exist/i.test(err.message))) {
        throw err;
      }
    }
  }

  /** A finished job's state from `qacct`, or undefined while accounting has no record yet. */
  async #qacct(jobId: string): Promise<BlockStatus | undefined> {
    try {
      const out = await this.#command(["qacct", "-j", jobId], "poll a finished block", 1);
      const s = qacctState(out);
      if (s) return s;
    } catch {
      // not written yet, or no accounting on this cluster
    }
    const since = this.#goneSince.get(jobId) ?? Date.now();
    this.#goneSince.set(jobId, since);
    if (Date.now() - since < this.#o.accountingWaitS * 1000) return undefined;
    return { state: "completed", message: "no longer known to the scheduler" };
  }

  #command(command: readonly string[], what: string, attempts?: number): Promise<string> {
    const once = attempts === undefined ? {} : { attempts };
    return schedulerCommand(command, what, { ...this.#o, permanent: PERMANENT, ...once });
  }
}

/** Job number → state letters (`qw`, `r`, `Eqw`...) of every job in a `qstat -xml` answer. */
export function parseQstatXml(xml: string): Map<string, string> {
  const jobs = new Map<string, string>();
  for (const [, body] of xml.matchAll(/<job_list\b[^>]*>([\s\S]*?)<\/job_list>/g)) {
    const id = /<JB_job_number>\s*(\d+)\s*<\/JB_job_number>/.exec(body!)?.[1];
    const state = /<state>\s*([^<\s]*)\s*<\/state>/.exec(body!)?.[1];
    // An array job lists one entry per task; the block's job is never one, keep the first.
    if (id && state !== undefined && !jobs.has(id)) jobs.set(id, state);
  }
  return jobs;
}

/** Maps Grid Engine's state letters (`qstat`) to a block state. */
export function gridEngineState(letters: string): BlockStatus {
  if (letters.includes("E")) {
    return { state: "failed", message: `error state (${letters}); see "qstat -j" for why` };
  }
  if (/[rtR]/.test(letters)) {
    return { state: "running", ...(letters === "r" ? {} : { message: letters }) };
  }
  // qw, hqw, suspended (s, S, T), deleting while pending (dqw): not running yet.
  return { state: "pending", ...(letters === "qw" ? {} : { message: letters }) };
}

/**
 * A finished job's block state from `qacct -j` output (`failed` and `exit_status` lines), or
 * undefined when it has neither.
 */
export function qacctState(out: string): BlockStatus | undefined {
  const failed = /^failed\s+(\d+)\s*(?::\s*(.*?))?\s*$/m.exec(out);
  const exit = /^exit_status\s+(\d+)/m.exec(out);
  if (!failed || !exit) return undefined;
  const code = Number(failed[1]);
  const status = Number(exit[1]);
  const why = failed[2] ?? "";
  if (code === 0 && status === 0) return { state: "completed" };
  if (code === 0) return { state: "failed", message: `exit status ${status}` };
  // 37: the qmaster ended the job at a hard limit (h_rt; also h_cpu, h_vmem).
  if (code === 37 || /h_rt/.test(why)) return { state: "timeout", message: why || "h_rt" };
  // 100 with a kill (137): ended by qdel or a signal.
  if (code === 100 && status === 137) return { state: "cancelled", message: "killed (qdel)" };
  return { state: "failed", message: `failed ${code}${why ? `: ${why}` : ""}` };
}
