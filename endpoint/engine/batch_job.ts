/**
 * What the batch-system providers (Slurm, Grid Engine) share: the handle of a block that is a
 * batch job, the job script's layout and file, polling the live blocks, running a scheduler
 * command with retries and a clear error, and quoting for the job scripts they write.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { backoffDelay } from "../../sdk/_backoff.ts";
import { type BlockHandle, type BlockStatus, TERMINAL_STATES } from "./provider.ts";

const log = getLogger(["funcx", "endpoint", "engine", "batch"]);

/** A failed scheduler command, with its stderr in the message. */
export class SchedulerCommandError extends Error {
  /** Always `"SchedulerCommandError"`. */
  override name = "SchedulerCommandError";
  /** Whether trying again cannot help (bad partition or queue, bad option). */
  readonly permanent: boolean;
  /** Makes the error. */
  constructor(message: string, permanent: boolean) {
    super(message);
    this.permanent = permanent;
  }
}

/** A block that is a batch job; `ended` resolves once `update` sees a terminal state. */
export class BatchJobBlock implements BlockHandle {
  /** The engine's block id. */
  readonly blockId: string;
  /** The scheduler's job id. */
  readonly jobId: string;
  /** The job's output file. */
  readonly logPath: string;
  /** Resolves with a reason once the job has ended. */
  readonly ended: Promise<string>;
  readonly #end: (reason: string) => void;
  /** The last state seen. */
  last: BlockStatus = { state: "pending" };

  /** A block submitted as `jobId`. */
  constructor(blockId: string, jobId: string, logPath: string) {
    this.blockId = blockId;
    this.jobId = jobId;
    this.logPath = logPath;
    const { promise, resolve } = Promise.withResolvers<string>();
    this.ended = promise;
    this.#end = resolve;
  }

  /** Records a state; a terminal state is final. */
  update(s: BlockStatus): void {
    if (TERMINAL_STATES.has(this.last.state)) return;
    this.last = s;
    if (TERMINAL_STATES.has(s.state)) {
      this.#end(`job ${this.jobId} ${s.state}${s.message ? ` (${s.message})` : ""}`);
    }
  }

  /** `handle` as a block of a batch provider, or a `TypeError`. */
  static of(handle: BlockHandle): BatchJobBlock {
    if (!(handle instanceof BatchJobBlock)) throw new TypeError("Not a block of this provider");
    return handle;
  }
}

/** Options every batch provider takes (each adds its scheduler's own). */
export interface BatchProviderOptions {
  /** Folder of the job scripts and job output (created; shared with the compute nodes). */
  runDir: string;
  /** Nodes per block; one manager runs on each. @default 1 */
  nodesPerBlock?: number;
  /** Extra lines of the script header, with or without the scheduler's prefix. @default [] */
  schedulerOptions?: readonly string[];
  /** Shell lines run in the job before the manager starts (`module load ...`). @default [] */
  workerInit?: readonly string[];
  /** Environment of the scheduler commands, added to this process's. @default {} */
  commandEnv?: Record<string, string>;
  /** Attempts of a scheduler command with a transient error. @default 3 */
  attempts?: number;
  /** Seconds a scheduler command may take. @default 30 */
  commandTimeoutS?: number;
  /** Seconds `stop` waits for a cancelled job to leave. @default 30 */
  cancelWaitS?: number;
}

/** The defaults of {@linkcode BatchProviderOptions}. */
export const BATCH_DEFAULTS: Required<Omit<BatchProviderOptions, "runDir">> = {
  nodesPerBlock: 1,
  schedulerOptions: [],
  workerInit: [],
  commandEnv: {},
  attempts: 3,
  commandTimeoutS: 30,
  cancelWaitS: 30,
};

/** What {@linkcode schedulerCommand} reads of a provider's options. */
export type SchedulerCommandOptions = Required<
  Pick<BatchProviderOptions, "commandEnv" | "attempts" | "commandTimeoutS">
>;

/**
 * Runs a scheduler command and returns its stdout; retries with backoff (`attempts`, default
 * the options') unless its output matches `permanent` (a bad queue, a bad option). The final
 * {@linkcode SchedulerCommandError} says what was being done (`what`), the command line, its
 * exit code and its output.
 */
export async function schedulerCommand(
  command: readonly string[],
  what: string,
  options: SchedulerCommandOptions & { permanent: RegExp; attempts?: number },
): Promise<string> {
  const [cmd, ...args] = command as [string, ...string[]];
  for (let attempt = 1;; attempt++) {
    let err: SchedulerCommandError;
    try {
      const out = await new Deno.Command(cmd, {
        args,
        env: options.commandEnv,
        stdin: "null",
        signal: AbortSignal.timeout(options.commandTimeoutS * 1000),
      }).output();
      const stdout = new TextDecoder().decode(out.stdout);
      if (out.code === 0) return stdout;
      // Some commands (qdel) write their refusals to stdout.
      const said = new TextDecoder().decode(out.stderr).trim() || stdout.trim();
      err = new SchedulerCommandError(
        `Cannot ${what}: "${command.join(" ")}" exited with code ${out.code}: ${said}`,
        options.permanent.test(said),
      );
    } catch (e) {
      err = new SchedulerCommandError(
        `Cannot ${what}: "${cmd}" failed: ${(e as Error).message}`,
        e instanceof Deno.errors.NotFound,
      );
    }
    if (err.permanent || attempt >= options.attempts) throw err;
    log.warn("{message}; trying again", { message: err.message });
    await delay(backoffDelay(attempt, { minMs: 1000, maxMs: 30_000 }));
  }
}

/** Where a block's job writes its output: `<runDir>/block_<id>.log`. */
export function blockLogPath(runDir: string, blockId: string): string {
  return join(runDir, `block_${blockId}.log`);
}

/** The parts of a job script that differ between schedulers (see {@linkcode jobScript}). */
export interface JobScriptOptions {
  /** The scheduler's directive prefix (`#SBATCH`, `#$`). */
  prefix: string;
  /** The provider's directives, without the prefix. */
  directives: readonly string[];
  /** The user's extra directives, with or without the prefix. */
  schedulerOptions: readonly string[];
  /** Shell lines run before the manager starts. */
  workerInit: readonly string[];
  /** Environment exported to the manager. */
  env: Record<string, string>;
  /** The provider in the script's comment (`Slurm`). */
  scheduler: string;
  /** The shell variable holding the job id (`SLURM_JOB_ID`). */
  jobIdVar: string;
  /** The lines that start the manager(s). */
  run: readonly string[];
}

/**
 * A block's job script: directives, the user's directives, worker init, the exported
 * environment, a line on stderr naming the job and host, then the lines that start the managers.
 */
export function jobScript(blockId: string, o: JobScriptOptions): string {
  const prefix = (l: string) => l.startsWith(o.prefix) ? l : `${o.prefix} ${l}`;
  return [
    "#!/bin/bash",
    ...o.directives.map((l) => `${o.prefix} ${l}`),
    ...o.schedulerOptions.map(prefix),
    `# funcX endpoint block ${blockId}: written by the ${o.scheduler} provider; holds a secret ` +
    "(mode 0700)",
    ...o.workerInit,
    ...Object.entries(o.env).map(([k, v]) => `export ${k}=${shellQuote(v)}`),
    `echo "funcX block ${blockId}: job $${o.jobIdVar} on $(hostname)" >&2`,
    ...o.run,
    "",
  ].join("\n");
}

/**
 * Writes a block's job script to `<runDir>/<name>` (the folder is created) with mode 0700, as it
 * carries the endpoint's secret for the manager, and returns its path.
 */
export async function writeJobScript(runDir: string, name: string, text: string): Promise<string> {
  await Deno.mkdir(runDir, { recursive: true });
  const path = join(runDir, name);
  await Deno.remove(path).catch(() => {}); // mode applies only to a new file
  await Deno.writeTextFile(path, text, { mode: 0o700 });
  await Deno.chmod(path, 0o700);
  return path;
}

/**
 * Polls the blocks of `handles` that have not ended with `poll` (which updates them), and
 * returns every block's last state.
 */
export async function pollLive(
  handles: readonly BlockHandle[],
  poll: (live: BatchJobBlock[]) => Promise<void>,
): Promise<BlockStatus[]> {
  const blocks = handles.map(BatchJobBlock.of);
  const live = blocks.filter((b) => !TERMINAL_STATES.has(b.last.state));
  if (live.length > 0) await poll(live);
  return blocks.map((b) => b.last);
}

/**
 * Cancels a block with `cancel`, then polls `poll` until the block is in a terminal state or
 * `waitS` seconds have passed, and marks it cancelled.
 */
export async function cancelAndWait(
  block: BatchJobBlock,
  cancel: () => Promise<unknown>,
  poll: () => Promise<unknown>,
  waitS: number,
): Promise<void> {
  if (TERMINAL_STATES.has(block.last.state)) return;
  await cancel();
  const deadline = Date.now() + waitS * 1000;
  while (!TERMINAL_STATES.has(block.last.state) && Date.now() < deadline) {
    await delay(500);
    await poll().catch(() => {});
  }
  block.update({ state: "cancelled", message: "cancelled by the endpoint" });
}

/** `s` quoted for a POSIX shell (unchanged when it needs no quotes). */
export function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replaceAll("'", `'\\''`)}'`;
}
