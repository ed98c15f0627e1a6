/**
 * Failure results the engine makes itself, when a task did not finish on its own: the worker or
 * manager was lost, the walltime ran out, or the task was cancelled. The user sees them as a
 * remote error with this name (and `error_details.code`).
 *
 * @module
 */
import {
  ActorName,
  errorToInfo,
  nowNs,
  type ResultMessage,
  serialize,
  TaskState,
  type TaskTransition,
} from "../../sdk/protocol/mod.ts";

/** Names of the failures the engine reports. */
export type EngineFailure =
  | "WorkerLost"
  | "ManagerLost"
  | "TaskCancelled"
  | "TaskWalltimeExceeded"
  | "ContainerUnavailable"
  /** (multi-user endpoint) the submitter has no usable local account. */
  | "IdentityMappingFailed"
  /** (multi-user endpoint) the values sent for the user endpoint template are refused. */
  | "UserEndpointConfigInvalid"
  /** (multi-user endpoint) the user endpoint could not start, or died. */
  | "UserEndpointFailed"
  /** An `MPIFunction` reached an endpoint without MPI mode (`engine.mpi`). */
  | "MPIModeRequired"
  /** An MPI task's resource specification is malformed, or larger than a block. */
  | "MPIResourcesExceeded"
  /** The MPI launcher is not on the PATH of the manager's tasks. */
  | "MPILauncherNotFound"
  /** An MPI task's launcher exited non-zero: a rank failed. */
  | "MPIRankFailed";

/** A failed result named `name`, with `statuses` followed by a `failed` transition. */
export function failureResult(
  taskId: string,
  name: EngineFailure,
  message: string,
  statuses: readonly TaskTransition[] = [],
  actor: ActorName = ActorName.MANAGER,
): ResultMessage {
  const err = new Error(message);
  err.name = name;
  // The stack of this helper means nothing to the user; the message says it all.
  err.stack = `${name}: ${message}`;
  return {
    task_id: taskId,
    data: serialize(errorToInfo(err)),
    error_details: { code: name, user_message: `remote error: ${message}` },
    task_statuses: [...statuses, { timestamp: nowNs(), state: TaskState.FAILED, actor }],
  };
}
