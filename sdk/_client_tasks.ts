/**
 * The task routes of `FuncXClient`: submitting tasks (one, many, a `Batch`), reading their state
 * and results, cancelling them. Results come back serialized; this module turns them into values
 * or into the task's failure (`TaskExecutionFailed`, `TaskPending`).
 *
 * @module
 */
import type { ClientTransport, RequestOptions } from "./_client_transport.ts";
import type { Batch } from "./batch.ts";
import { type ResourceSpecification, toResourceSpecificationWire } from "./mpi_function.ts";
import type { ResourceSpecificationWire } from "./protocol/resource_specification.ts";
import { type SubmitEntry, submitEntry } from "./_submit_entry.ts";
import {
  FuncxAPIError,
  remoteErrorOf,
  TaskExecutionFailed,
  taskFailure,
  TaskPending,
} from "./errors.ts";
import {
  DeserializationError,
  deserializeData,
  isTerminalState,
  packArgs,
  SerializerMethod,
} from "./protocol/mod.ts";

export { type SubmitEntry, submitEntry };

/**
 * Options of {@linkcode FuncXClient.submit}.
 *
 * @example Results forwarded to result streams, and a key that makes a resend safe
 * ```ts
 * import assert from "node:assert/strict";
 * import type { SubmitOptions } from "@funcx/sdk";
 * const options: SubmitOptions = { createQueue: true, idempotencyKey: crypto.randomUUID() };
 * assert.equal(options.createQueue, true);
 * ```
 */
export interface SubmitOptions extends RequestOptions {
  /** Whether the service also forwards the group's results to its result streams. @default false */
  createQueue?: boolean;
  /**
   * The request's idempotency key: a resend with the same key adds no task twice.
   * @default a new one per call
   */
  idempotencyKey?: string;
  /** Values for a multi-user endpoint's user endpoint template. @default none */
  userEndpointConfig?: Record<string, unknown>;
}

/**
 * Options of {@linkcode FuncXClient.run}.
 *
 * @example Arguments, keyword arguments and a task group
 * ```ts
 * import assert from "node:assert/strict";
 * import type { RunOptions } from "@funcx/sdk";
 * const options: RunOptions = {
 *   args: [21],
 *   kwargs: { scale: 2 },
 *   taskGroupId: crypto.randomUUID(),
 * };
 * assert.deepEqual(options.args, [21]);
 * ```
 */
export interface RunOptions extends RequestOptions {
  /** Positional arguments. @default [] */
  args?: readonly unknown[];
  /** Keyword arguments, passed to the function as a last argument when not empty. @default {} */
  kwargs?: Record<string, unknown>;
  /** Task group to submit into. @default the client's session task group */
  taskGroupId?: string;
  /** Values for a multi-user endpoint's user endpoint template. @default none */
  userEndpointConfig?: Record<string, unknown>;
  /**
   * What an `MPIFunction` task asks for (nodes, ranks per node, ranks). @default none: the
   * endpoint's default, one node and one rank
   */
  resourceSpecification?: ResourceSpecification;
}

/**
 * A task's state as the service reports it.
 *
 * @example Read a task's state
 * ```ts
 * import assert from "node:assert/strict";
 * import type { TaskInfo } from "@funcx/sdk";
 * function describe(t: TaskInfo): string {
 *   return t.pending ? `still ${t.status}` : `finished: ${t.status}`;
 * }
 * assert.equal(describe({ task_id: "t1", status: "running", pending: true }), "still running");
 * ```
 */
export interface TaskInfo {
  /** The task id. */
  task_id: string;
  /** The task's state, for example `"running"` or `"success"`. */
  status: string;
  /** Whether the task has not finished. */
  pending: boolean;
  /** The serialized result, once successful. */
  result?: string;
  /** The serialized remote error, once failed. */
  exception?: string;
  /** The error code of a failed task, for example `"RemoteExecutionError"`. */
  error_code?: string;
  /** When the task completed, in seconds since the epoch. */
  completion_t?: number;
  /** What an MPI task asked for (absent for other tasks). */
  resource_specification?: ResourceSpecificationWire;
}

/**
 * The service's answer to a submit.
 *
 * @example Task ids, or why a task was refused
 * ```ts
 * import assert from "node:assert/strict";
 * import type { SubmitResponse } from "@funcx/sdk";
 * function taskIds(res: SubmitResponse): Array<string | null> {
 *   return res.results.map((r) => (r.status === "Success" ? r.task_uuid : null));
 * }
 * const res: SubmitResponse = {
 *   response: "batch",
 *   task_group_id: "g1",
 *   results: [
 *     { status: "Success", task_uuid: "t1", http_status_code: 200 },
 *     {
 *       code: "function_not_found",
 *       reason: "Function f2 was not found",
 *       http_status_code: 404,
 *       error_args: ["f2"],
 *       task_uuid: null,
 *     },
 *   ],
 * };
 * assert.deepEqual(taskIds(res), ["t1", null]);
 * ```
 */
export interface SubmitResponse {
  /** Always `"batch"`. */
  response: "batch";
  /** The task group the tasks went into. */
  task_group_id: string;
  /** One entry per submitted task, in order: its id, or the error that refused it. */
  results: Array<
    { status: "Success"; task_uuid: string; http_status_code: number } | {
      status?: undefined;
      code: string;
      reason: string;
      http_status_code: number;
      error_args: unknown[];
      task_uuid: string | null;
    }
  >;
}

/**
 * One task's entry in {@linkcode FuncXClient.getBatchResult}.
 *
 * @example Sort a batch's outcomes
 * ```ts
 * import assert from "node:assert/strict";
 * import type { BatchResult } from "@funcx/sdk";
 * function describe(r: BatchResult): string {
 *   if (r.pending) return `${r.taskId}: ${r.status}`;
 *   return r.error ? `${r.taskId} failed: ${r.error.message}` : `${r.taskId} = ${r.result}`;
 * }
 * assert.equal(describe({ taskId: "t1", status: "success", pending: false, result: 42 }), "t1 = 42");
 * ```
 */
export interface BatchResult {
  /** The task id. */
  taskId: string;
  /** The task's state; `"unknown"` when the service does not know it (or it is not yours). */
  status: string;
  /** Whether it has not finished. */
  pending: boolean;
  /** The endpoint the task was sent to, when the service says (it does for every known task). */
  endpointId?: string;
  /** The result, when it succeeded. */
  result?: unknown;
  /** Why it has no result: the remote failure, or `task_not_found`. */
  error?: TaskExecutionFailed | FuncxAPIError;
}

/** The task routes, over the client's transport. */
export class TaskRoutes {
  readonly #transport: ClientTransport;
  /** The task group tasks go into unless told otherwise. */
  readonly #sessionTaskGroupId: string;

  /** Routes over `transport`; tasks go into `sessionTaskGroupId` unless told otherwise. */
  constructor(transport: ClientTransport, sessionTaskGroupId: string) {
    this.#transport = transport;
    this.#sessionTaskGroupId = sessionTaskGroupId;
  }

  /** `POST v2/submit`: tasks in one request. */
  async submit(
    tasks: readonly SubmitEntry[],
    taskGroupId?: string,
    options: SubmitOptions = {},
  ): Promise<SubmitResponse> {
    return await this.#transport.request<SubmitResponse>("post", "v2/submit", {
      task_group_id: taskGroupId ?? this.#sessionTaskGroupId,
      create_websocket_queue: options.createQueue ?? false,
      tasks,
      ...(options.userEndpointConfig ? { user_endpoint_config: options.userEndpointConfig } : {}),
    }, options);
  }

  /** One task; its id, or the refusal as a `FuncxAPIError`. */
  async run(functionId: string, endpointId: string, options: RunOptions = {}): Promise<string> {
    const payload = packArgs(options.args ?? [], options.kwargs ?? {});
    const spec = options.resourceSpecification
      ? toResourceSpecificationWire(options.resourceSpecification)
      : undefined;
    const entry = submitEntry(functionId, endpointId, payload, spec);
    const res = await this.submit([entry], options.taskGroupId, {
      ...(options.userEndpointConfig ? { userEndpointConfig: options.userEndpointConfig } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    });
    const r = res.results[0];
    if (!r) {
      throw new FuncxAPIError(500, "internal_error", "Service answered a submit with no result");
    }
    if (r.status !== "Success") {
      throw new FuncxAPIError(r.http_status_code, r.code, r.reason, r.error_args);
    }
    return r.task_uuid;
  }

  /** `POST v2/tasks/:id/cancel`: whether the task was cancelled. */
  async cancelTask(taskId: string, options: RequestOptions = {}): Promise<boolean> {
    const res = await this.#transport.request<{ cancelled: boolean }>(
      "post",
      `v2/tasks/${taskId}/cancel`,
      {},
      options,
    );
    return res.cancelled;
  }

  /** `GET v2/tasks/:id`, with `pending` worked out from the state. */
  async getTask(taskId: string, options: RequestOptions = {}): Promise<TaskInfo> {
    const t = await this.#transport.request<Omit<TaskInfo, "pending">>(
      "get",
      `v2/tasks/${taskId}`,
      undefined,
      options,
    );
    return { ...t, pending: !isTerminalState(t.status) };
  }

  /** A task's result, or `TaskPending`, or its failure. */
  async getResult(taskId: string, options: RequestOptions = {}): Promise<unknown> {
    const t = await this.getTask(taskId, options);
    if (t.pending) throw new TaskPending(taskId, t.status);
    if (t.status === "success") return resultValue(taskId, t.result ?? "");
    throw taskFailure(
      taskId,
      t.error_code ?? "RemoteExecutionError",
      remoteErrorOf(t.exception),
      t.completion_t,
    );
  }

  /** A batch in one submit; the task ids, or the first refusal (with the ids in `errorArgs`). */
  async batchRun(batch: Batch, options: RequestOptions = {}): Promise<string[]> {
    const res = await this.submit(batch.tasks(), batch.taskGroupId, {
      createQueue: batch.createQueue,
      ...(batch.userEndpointConfig ? { userEndpointConfig: batch.userEndpointConfig } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    });
    const ids = res.results.map((r) => (r.status === "Success" ? r.task_uuid : null));
    const bad = res.results.findIndex((r) => r.status !== "Success");
    if (bad >= 0) {
      const r = res.results[bad]!;
      if (r.status !== "Success") {
        throw new FuncxAPIError(
          r.http_status_code,
          r.code,
          `Task ${bad} of the batch was refused: ${r.reason}`,
          [bad, ids],
        );
      }
    }
    return ids as string[];
  }

  /** `POST v2/batch_status`, 1,024 ids per request: an entry for every id. */
  async getBatchResult(
    taskIds: readonly string[],
    options: RequestOptions = {},
  ): Promise<Map<string, BatchResult>> {
    const out = new Map<string, BatchResult>();
    for (let i = 0; i < taskIds.length; i += 1024) {
      const chunk = taskIds.slice(i, i + 1024);
      const res = await this.#transport.request<
        { results: Record<string, Record<string, unknown>> }
      >(
        "post",
        "v2/batch_status",
        { task_ids: chunk },
        options,
      );
      for (const id of chunk) {
        const t = res.results[id];
        out.set(id, batchEntry(id, t));
      }
    }
    return out;
  }
}

function batchEntry(id: string, t: Record<string, unknown> | undefined): BatchResult {
  const entry = outcomeOf(id, t);
  const endpoint = t?.["endpoint_id"];
  return typeof endpoint === "string" ? { ...entry, endpointId: endpoint } : entry;
}

function outcomeOf(id: string, t: Record<string, unknown> | undefined): BatchResult {
  if (!t || t["reason"] === "Unknown task id") {
    return {
      taskId: id,
      status: "unknown",
      pending: false,
      error: new FuncxAPIError(404, "task_not_found", `Task "${id}" was not found`, [id]),
    };
  }
  const status = String(t["status"]);
  if (!isTerminalState(status)) return { taskId: id, status, pending: true };
  if (status === "success") {
    try {
      return {
        taskId: id,
        status,
        pending: false,
        result: resultValue(id, String(t["result"] ?? "")),
      };
    } catch (err) {
      return { taskId: id, status: "failed", pending: false, error: err as TaskExecutionFailed };
    }
  }
  return {
    taskId: id,
    status,
    pending: false,
    error: taskFailure(
      id,
      typeof t["error_code"] === "string" ? t["error_code"] : "RemoteExecutionError",
      remoteErrorOf(typeof t["exception"] === "string" ? t["exception"] : undefined),
      typeof t["completion_t"] === "number" ? t["completion_t"] : undefined,
    ),
  };
}

/**
 * The value of a successful task's serialized result. A result that is not data (the source
 * text of a function the task returned, from a worker that let it pass) is the task's failure.
 */
export function resultValue(taskId: string, payload: string): unknown {
  try {
    return deserializeData(payload);
  } catch (err) {
    if (!(err instanceof DeserializationError) || !payload.startsWith(SerializerMethod.SOURCE)) {
      throw err;
    }
    throw new TaskExecutionFailed(taskId, "SerializationError", {
      name: "SerializationError",
      message: "The task returned a function; a task's result must be data",
      stack: "",
    });
  }
}
