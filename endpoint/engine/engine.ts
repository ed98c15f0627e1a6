/**
 * What the endpoint daemon needs from an execution engine: take a task buffer, eventually give
 * back its result message (a failure is a result too), cancel a task, report counts for status
 * reports, and close. The daemon knows nothing else about how tasks are run.
 *
 * @module
 */
import type { ResultMessage, TaskMessage } from "../../sdk/protocol/mod.ts";
import type { ResourceSpecificationWire } from "../../sdk/protocol/resource_specification.ts";

/** Blocks of managers by state, in the endpoint's status reports. */
export interface BlockCounts {
  /** Submitted, not yet running (queued at the scheduler). */
  pending: number;
  /** Running at the provider. */
  running: number;
  /** Ended as asked (scaled in, or exited cleanly), since the engine started. */
  completed: number;
  /** Ended unexpectedly (failed, timed out, cancelled from outside, manager lost), since start. */
  failed: number;
}

/** Counts an engine reports in the endpoint's status reports. */
export interface EngineStatus {
  /** Managers connected and ready. */
  managers: number;
  /** Live workers, over all managers. */
  total_workers: number;
  /** Workers with no task. */
  idle_workers: number;
  /** Tasks waiting in the interchange for a manager. */
  pending_tasks: number;
  /** Blocks by state (absent from engines without blocks). */
  blocks?: BlockCounts;
  /** The provider (`"local"`, `"slurm"`). */
  provider?: string;
  /** The last error of the provider (a failed `sbatch` with its stderr); null once one works. */
  provider_error?: string | null;
}

/** What an engine may want to know of a task besides its buffer (a multi-user engine does). */
export interface SubmitContext {
  /** The task message as the service sent it (its user and template values). */
  task?: TaskMessage;
  /** Hears the local account the task will run as (null: refused before one was known). */
  onAccount?: (account: string | null) => void;
  /** What an MPI task asked for (a user endpoint gets it without the task message). */
  resourceSpecification?: ResourceSpecificationWire | undefined;
}

/** An execution engine. */
export interface Engine {
  /**
   * Runs a task. Resolves with its result; rejects (with {@linkcode PoolClosed}) only when the
   * engine closed before the task finished (the daemon then returns the task to the broker).
   */
  submit(
    taskId: string,
    buffer: string,
    container?: string,
    context?: SubmitContext,
  ): Promise<ResultMessage>;
  /**
   * Cancels a task: a queued one never runs, a running one has its worker killed; either way its
   * `submit` resolves with a `TaskCancelled` failure. Returns `false` when the task is unknown or
   * already finished.
   */
  cancel(taskId: string): boolean;
  /** Current counts. */
  status(): EngineStatus;
  /** Stops the engine; tasks not yet finished are rejected; idempotent. */
  close(): Promise<void>;
}

/** The rejection of a task that had not finished when the engine closed. */
export class PoolClosed extends Error {
  /** Always `"PoolClosed"`. */
  override name = "PoolClosed";
  /** The task that did not finish. */
  readonly taskId: string;
  /** Makes the rejection for `taskId`. */
  constructor(taskId: string) {
    super(`Engine closed before task "${taskId}" finished`);
    this.taskId = taskId;
  }
}
