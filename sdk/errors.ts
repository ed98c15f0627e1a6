/**
 * The SDK's named errors, the ones callers catch: {@linkcode FuncxAPIError} for an error answer
 * of the service, {@linkcode TaskPending} while a task has no result, and
 * {@linkcode TaskExecutionFailed} when the function failed on the endpoint.
 *
 * @module
 */
import type { RemoteErrorInfo } from "./protocol/mod.ts";

export type { RemoteErrorInfo };

/**
 * A future's deadline (the executor's `resultTimeoutMs`) passed before its task's outcome
 * arrived. The task itself may still run and finish: read it later with `getResult`.
 *
 * @example
 * ```ts
 * import { ResultTimeoutError } from "./errors.ts";
 * const err = new ResultTimeoutError("t1", 5000);
 * if (err.taskId !== "t1" || err.name !== "ResultTimeoutError") throw new Error("wrong fields");
 * ```
 */
export class ResultTimeoutError extends Error {
  /** Always `"ResultTimeoutError"`. */
  override name = "ResultTimeoutError";
  /** The task, when it was sent (undefined: it was never sent, and will not run). */
  readonly taskId: string | undefined;

  /** Builds the error for a task whose outcome did not come within `timeoutMs`. */
  constructor(taskId: string | undefined, timeoutMs: number) {
    super(
      taskId === undefined
        ? `No answer from the service within ${timeoutMs} ms: the task was not sent and will ` +
          "not run"
        : `Task "${taskId}" had no outcome within ${timeoutMs} ms; it may still finish: read ` +
          "it later with getResult",
    );
    this.taskId = taskId;
  }
}

/** An error answer of the service, with its stable string code. */
export class FuncxAPIError extends Error {
  /** Always `"FuncxAPIError"`. */
  override name = "FuncxAPIError";
  /** The HTTP status of the answer. */
  readonly httpStatus: number;
  /** The stable error code, for example `"task_not_found"`. */
  readonly codeName: string;
  /** The values the error is about. */
  readonly errorArgs: unknown[];

  /**
   * Builds the error from the service's error envelope.
   *
   * @example Catch an unknown task
   * ```ts
   * import { FuncxAPIError } from "./errors.ts";
   * const err = new FuncxAPIError(404, "task_not_found", 'Task "x" was not found');
   * console.assert(err.codeName === "task_not_found");
   * ```
   */
  constructor(
    httpStatus: number,
    codeName: string,
    reason: string,
    errorArgs: unknown[] = [],
    options?: ErrorOptions,
  ) {
    super(reason, options);
    this.httpStatus = httpStatus;
    this.codeName = codeName;
    this.errorArgs = errorArgs;
  }
}

/** Thrown by `getResult` while the task has not finished. */
export class TaskPending extends Error {
  /** Always `"TaskPending"`. */
  override name = "TaskPending";
  /** The task's current state, for example `"waiting-for-ep"`. */
  readonly status: string;
  /** The task id. */
  readonly taskId: string;

  /**
   * Builds the error for a task in state `status`.
   *
   * @example
   * ```ts
   * import { TaskPending } from "./errors.ts";
   * const err = new TaskPending("3f0c1a9e-0000-4000-8000-000000000000", "running");
   * console.assert(err.status === "running");
   * ```
   */
  constructor(taskId: string, status: string) {
    super(`Task "${taskId}" is pending (${status})`);
    this.taskId = taskId;
    this.status = status;
  }
}

/**
 * Thrown by `getResult` when the task failed. `remote` holds the remote error's name, message
 * and stack; `cause` is an `Error` rebuilt from them.
 */
export class TaskExecutionFailed extends Error {
  /** Always `"TaskExecutionFailed"`. */
  override name = "TaskExecutionFailed";
  /** The task id. */
  readonly taskId: string;
  /** The error code from the endpoint, for example `"RemoteExecutionError"`. */
  readonly errorCode: string;
  /** The remote error. */
  readonly remote: RemoteErrorInfo;
  /** When the task completed, in seconds since the epoch, if known. */
  readonly completionT: number | undefined;

  /**
   * Builds the error from the remote error's details.
   *
   * @example
   * ```ts
   * import { TaskExecutionFailed } from "./errors.ts";
   * const err = new TaskExecutionFailed("t1", "RemoteExecutionError", {
   *   name: "RangeError",
   *   message: "too big",
   *   stack: "RangeError: too big\n    at f (<task>:1:20)",
   * });
   * console.assert(err.remote.name === "RangeError");
   * ```
   */
  constructor(
    taskId: string,
    errorCode: string,
    remote: RemoteErrorInfo,
    completionT?: number,
  ) {
    const cause = new Error(remote.message);
    cause.name = remote.name;
    cause.stack = remote.stack;
    super(`Task "${taskId}" failed: ${remote.name}: ${remote.message}\n${indent(remote.stack)}`, {
      cause,
    });
    this.taskId = taskId;
    this.errorCode = errorCode;
    this.remote = remote;
    this.completionT = completionT;
  }
}

function indent(text: string): string {
  return text.split("\n").map((l) => `    ${l}`).join("\n");
}

/**
 * A task whose result was over the size limit (on the endpoint or at the service).
 *
 * @example
 * ```ts
 * import { MaxResultSizeExceeded, TaskExecutionFailed } from "./errors.ts";
 * const err = new MaxResultSizeExceeded("t1", "MaxResultSizeExceeded", {
 *   name: "MaxResultSizeExceeded",
 *   message: "too big",
 *   stack: "",
 * });
 * console.assert(err instanceof TaskExecutionFailed);
 * ```
 */
export class MaxResultSizeExceeded extends TaskExecutionFailed {
  /** Always `"MaxResultSizeExceeded"`. */
  override name = "MaxResultSizeExceeded";
}

/**
 * The error for a failed task: {@linkcode MaxResultSizeExceeded} for an oversized result, else
 * {@linkcode TaskExecutionFailed}.
 *
 * @example
 * ```ts
 * import { MaxResultSizeExceeded, taskFailure } from "./errors.ts";
 * const err = taskFailure("t1", "MaxResultSizeExceeded", {
 *   name: "MaxResultSizeExceeded",
 *   message: "Task result of 20971520B exceeded current limit of 10485760B",
 *   stack: "",
 * });
 * console.assert(err instanceof MaxResultSizeExceeded);
 * ```
 */
export function taskFailure(
  taskId: string,
  errorCode: string,
  remote: RemoteErrorInfo,
  completionT?: number,
): TaskExecutionFailed {
  return errorCode === "MaxResultSizeExceeded"
    ? new MaxResultSizeExceeded(taskId, errorCode, remote, completionT)
    : new TaskExecutionFailed(taskId, errorCode, remote, completionT);
}
