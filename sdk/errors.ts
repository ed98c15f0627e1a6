/**
 * The SDK's named errors, the ones callers catch: {@linkcode FuncxAPIError} for an error answer
 * of the service, {@linkcode TaskPending} while a task has no result, and
 * {@linkcode TaskExecutionFailed} when the function failed on the endpoint.
 *
 * @module
 */
import { deserialize, type RemoteErrorInfo } from "./protocol/mod.ts";

export type { RemoteErrorInfo };

/**
 * A future's deadline (the executor's `resultTimeoutMs`) passed before its task's outcome
 * arrived. The task itself may still run and finish: read it later with `getResult`.
 *
 * @example
 * ```ts
 * import { ResultTimeoutError } from "@funcx/sdk";
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

/**
 * An error answer of the service, with its stable string code.
 *
 * @example Tell a refusal from a service that is away
 * ```ts
 * import assert from "node:assert/strict";
 * import { FuncxAPIError, isTransientError } from "@funcx/sdk";
 * const err: unknown = new FuncxAPIError(404, "task_not_found", 'Task "t1" was not found', ["t1"]);
 * assert.ok(err instanceof FuncxAPIError && err.codeName === "task_not_found");
 * assert.ok(!isTransientError(err));
 * ```
 */
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
   * import assert from "node:assert/strict";
   * import { FuncxAPIError } from "@funcx/sdk";
   * const err = new FuncxAPIError(404, "task_not_found", 'Task "x" was not found');
   * assert.ok(err.codeName === "task_not_found");
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

/**
 * Thrown by `getResult` while the task has not finished.
 *
 * @example Poll until a task has a result
 * ```ts
 * import assert from "node:assert/strict";
 * import { TaskPending } from "@funcx/sdk";
 * let calls = 0;
 * async function getResult(taskId: string): Promise<number> {
 *   if (++calls < 3) throw new TaskPending(taskId, "running");
 *   return 42;
 * }
 * let result: number;
 * for (;;) {
 *   try {
 *     result = await getResult("t1");
 *     break;
 *   } catch (e) {
 *     if (!(e instanceof TaskPending)) throw e;
 *   }
 * }
 * assert.equal(result, 42);
 * ```
 */
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
   * import assert from "node:assert/strict";
   * import { TaskPending } from "@funcx/sdk";
   * const err = new TaskPending("3f0c1a9e-0000-4000-8000-000000000000", "running");
   * assert.ok(err.status === "running");
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
 *
 * @example The remote error, as the endpoint saw it
 * ```ts
 * import assert from "node:assert/strict";
 * import { TaskExecutionFailed } from "@funcx/sdk";
 * const err = new TaskExecutionFailed("t1", "RemoteExecutionError", {
 *   name: "ZeroDivisionError",
 *   message: "division by zero",
 *   stack: "ZeroDivisionError: division by zero\n    at f (<task>:1:1)",
 * });
 * assert.equal(err.remote.name, "ZeroDivisionError");
 * assert.ok(err.cause instanceof Error && err.cause.name === "ZeroDivisionError");
 * assert.match(err.message, /division by zero/);
 * ```
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
   * import assert from "node:assert/strict";
   * import { TaskExecutionFailed } from "@funcx/sdk";
   * const err = new TaskExecutionFailed("t1", "RemoteExecutionError", {
   *   name: "RangeError",
   *   message: "too big",
   *   stack: "RangeError: too big\n    at f (<task>:1:20)",
   * });
   * assert.ok(err.remote.name === "RangeError");
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
 * import assert from "node:assert/strict";
 * import { MaxResultSizeExceeded, TaskExecutionFailed } from "@funcx/sdk";
 * const err = new MaxResultSizeExceeded("t1", "MaxResultSizeExceeded", {
 *   name: "MaxResultSizeExceeded",
 *   message: "too big",
 *   stack: "",
 * });
 * assert.ok(err instanceof TaskExecutionFailed);
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
 * import assert from "node:assert/strict";
 * import { MaxResultSizeExceeded } from "@funcx/sdk";
 * import { taskFailure } from "./errors.ts";
 * const err = taskFailure("t1", "MaxResultSizeExceeded", {
 *   name: "MaxResultSizeExceeded",
 *   message: "Task result of 20971520B exceeded current limit of 10485760B",
 *   stack: "",
 * });
 * assert.ok(err instanceof MaxResultSizeExceeded);
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

/**
 * Decodes the serialized remote error of a failed task (or keeps a plain-text reason).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { serialize } from "@funcx/sdk/protocol";
 * import { remoteErrorOf } from "./errors.ts";
 * const info = remoteErrorOf(serialize({ name: "TypeError", message: "bad", stack: "..." }));
 * assert.equal(info.name, "TypeError");
 * assert.equal(remoteErrorOf("plain reason").message, "plain reason");
 * ```
 */
export function remoteErrorOf(exception: string | undefined): RemoteErrorInfo {
  if (!exception) return { name: "Error", message: "Task failed with no error details", stack: "" };
  try {
    const v = deserialize(exception) as Partial<RemoteErrorInfo> | null;
    if (v && typeof v === "object" && typeof v.message === "string") {
      return {
        name: typeof v.name === "string" ? v.name : "Error",
        message: v.message,
        stack: typeof v.stack === "string" ? v.stack : "",
      };
    }
  } catch {
    // Not serialized data: a plain text reason from the service or endpoint.
  }
  return { name: "Error", message: exception, stack: exception };
}
