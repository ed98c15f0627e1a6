/**
 * How the engine gets managers: a provider submits a block (a local subprocess, a Slurm job...)
 * that runs the manager command, reports the state of its blocks when polled, and cancels them.
 * The engine never starts managers another way, and its scaling strategy only sees block states,
 * so a new batch system only has to implement this interface.
 *
 * Adding a provider (PBS Pro, LSF, Kubernetes...), in the shape of `slurm_provider.ts` or
 * `gridengine_provider.ts`:
 * 1. `start(blockId, command, env)` writes whatever the system needs (a batch script with
 *    `#PBS` lines in the engine's run directory, mode 0700 because `env` holds the endpoint's
 *    secret), submits it (`qsub`), and returns a {@linkcode BlockHandle} whose `jobId` is the
 *    scheduler's id and whose `ended` resolves once a later `status()` sees the job finished.
 *    A failed submission throws an error carrying the command's stderr; the engine logs it,
 *    shows it in its status and tries again later with backoff.
 * 2. `status(handles)` maps the scheduler's states (`qstat -x -f -F json`) to
 *    {@linkcode BlockState}s, one per handle, in one scheduler call for all of them.
 * 3. `stop(handle)` cancels the job (`qdel`) and waits (bounded) until it has left the node.
 * 4. Add a `{type: "pbspro", ...}` schema to `ProviderConfigSchema` in `provider_config.ts`
 *    and a case building the provider from it to `providerFromConfig` beside it.
 *
 * `batch_job.ts` holds what batch providers share (the block handle, scheduler commands with
 * retries and `SchedulerCommandError`, cancel-and-wait, shell quoting);
 * `gridengine_provider.ts` is the shortest complete provider built on it.
 *
 * @module
 */

/** What a provider knows about a block. */
export type BlockState =
  | "pending"
  | "running"
  | "completed"
  | "failed"
  | "cancelled"
  | "timeout"
  | "unknown";

/** States after which a block never runs again. */
export const TERMINAL_STATES: ReadonlySet<BlockState> = new Set([
  "completed",
  "failed",
  "cancelled",
  "timeout",
]);

/** A started block. */
export interface BlockHandle {
  /** The block's id, as the engine numbered it. */
  readonly blockId: string;
  /** The scheduler's id of the block (a Slurm job id), when there is one. */
  readonly jobId?: string;
  /**
   * Resolves when the block has ended (its manager exited, the job finished), with a short
   * reason for the log; a provider that cannot tell may leave it pending.
   */
  readonly ended: Promise<string>;
  /** A local file with the block's output, when there is one. */
  readonly logPath?: string;
}

/** The state of a block and, when the provider has one, a reason. */
export interface BlockStatus {
  /** The state. */
  state: BlockState;
  /** Why (a scheduler reason such as "Resources", an exit code). */
  message?: string;
}

/** Submits, polls and cancels blocks of managers. */
export interface Provider {
  /** Short name for logs and status reports (`"local"`, `"slurm"`). */
  readonly label: string;
  /** Starts (submits) a block that runs `command` with `env` added to its environment. */
  start(blockId: string, command: readonly string[], env: Record<string, string>): Promise<
    BlockHandle
  >;
  /**
   * The current state of each block, in the order given. A block that reaches a terminal state
   * has its `ended` resolved. Rejects when the scheduler cannot be asked (the caller retries).
   */
  status(handles: readonly BlockHandle[]): Promise<BlockStatus[]>;
  /** Stops (cancels) a block and waits until it is gone; idempotent. */
  stop(handle: BlockHandle): Promise<void>;
}
