/**
 * The messages between the service and endpoints over RabbitMQ (funcX's `messagepack`, protocol
 * v1): the service publishes `task` messages to `<endpoint_id>.tasks`; the endpoint publishes
 * `result` and `ep_status_report` messages to `results`.
 *
 * A packed message is one version byte ({@linkcode PROTOCOL_VERSION}) followed by the CBOR of
 * `{message_type, data}`. funcX used JSON here; CBOR keeps nanosecond `bigint` timestamps exact
 * and carries task buffers without escaping. Optional fields are present as `null`.
 *
 * This file holds the shapes; `packMessage` and `unpackMessage`
 * (`pack_message.ts`) turn them into bytes and back, and `pack_batch.ts` wraps many encoded tasks
 * or results into one message.
 *
 * @module
 */
import type { ActorName, TaskState } from "./task_state.ts";
import type { ResourceSpecificationWire } from "./resource_specification.ts";

/**
 * The version byte that starts every packed message.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { packMessage, PROTOCOL_VERSION } from "@funcx/sdk/protocol";
 * const bytes = packMessage({ message_type: "task_cancel", data: { task_id: "t1" } });
 * assert.ok(bytes[0] === PROTOCOL_VERSION);
 * ```
 */
export const PROTOCOL_VERSION = 1;

/**
 * One step of a task's life: when, which state, recorded by whom.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ActorName, nowNs, type TaskTransition, TaskState } from "@funcx/sdk/protocol";
 * const t: TaskTransition = { timestamp: nowNs(), state: TaskState.RUNNING, actor: ActorName.MANAGER };
 * assert.ok(typeof t.timestamp === "bigint");
 * ```
 */
export interface TaskTransition {
  /** Nanoseconds since the Unix epoch. */
  timestamp: bigint;
  /** The state entered. */
  state: TaskState;
  /** Who recorded it. */
  actor: ActorName;
}

/**
 * A task for an endpoint (`message_type: "task"`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { TaskMessage } from "@funcx/sdk/protocol";
 * const task: TaskMessage = { task_id: "t1", container_id: null, task_buffer: "" };
 * assert.ok(task.container_id === null);
 * ```
 */
export interface TaskMessage {
  /** The task's id (a UUID). */
  task_id: string;
  /** Container to run in, or `null` for none. */
  container_id: string | null;
  /** What the endpoint needs to start that container; absent or `null` for none. */
  container?: TaskContainer | null;
  /** The function's packed code followed by the packed arguments. */
  task_buffer: string;
  /** The function's id (absent from senders older than the multi-user endpoint). */
  function_id?: string;
  /**
   * Name of the service user who submitted the task: a multi-user endpoint maps it to a local
   * account (absent from older senders).
   */
  user?: string;
  /**
   * Values the user sent for the template of their user endpoint (partition, walltime, ...);
   * absent when none were sent.
   */
  user_endpoint_config?: Record<string, unknown>;
  /**
   * What an MPI task asks for (nodes, ranks per node, ranks), complete; absent or `null` for
   * the endpoint's default (one node, one rank).
   */
  resource_specification?: ResourceSpecificationWire | null;
  /**
   * W3C trace context (`traceparent`) of the hop that sent the task, when the task is traced;
   * absent otherwise. Tasks travel many to a broker message, so the context is the task's own.
   */
  traceparent?: string;
  /**
   * The routing key of the task group's result streams (`user-<user_id>.<task_group_id>`). An
   * endpoint that knows it publishes the task's result with the key `<endpoint_id>.results.<route>`
   * on the `results` exchange, which takes it in one broker hop both to the service's `results`
   * queue and to every result stream of the group; absent: `<endpoint_id>.results`, and the
   * service forwards the result to the streams.
   */
  result_route?: string;
}

/**
 * The container a task runs in, as the service sends it with the task.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { TaskContainer } from "@funcx/sdk/protocol";
 * const c: TaskContainer = { container_id: "c1", container_type: "apptainer", location: "/s/a.sif" };
 * assert.ok(c.container_type === "apptainer");
 * ```
 */
export interface TaskContainer {
  /** The container's id. */
  container_id: string;
  /** The runtime its image is for (`docker`, `podman`, `apptainer`, `singularity`, `custom`). */
  container_type: string;
  /** The image, as the runtime names it. */
  location: string;
}

/**
 * Why a task failed, in a `result` message: a stable code and a message for the user.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { ResultErrorDetails } from "@funcx/sdk/protocol";
 * const details: ResultErrorDetails = {
 *   code: "RemoteExecutionError",
 *   user_message: "An error occurred during the execution of this task",
 * };
 * assert.ok(details.code.length > 0);
 * ```
 */
export interface ResultErrorDetails {
  /** Stable code, for example `"RemoteExecutionError"` or `"MaxResultSizeExceeded"`. */
  code: string;
  /** Message for the user. */
  user_message: string;
}

/**
 * A task's outcome (`message_type: "result"`). On success `data` is the serialized result; on
 * failure `error_details` is set and `data` is the serialized remote error.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { type ResultMessage, serialize } from "@funcx/sdk/protocol";
 * const result: ResultMessage = {
 *   task_id: "t1",
 *   data: serialize(42),
 *   error_details: null,
 *   task_statuses: null,
 * };
 * assert.ok(result.error_details === null);
 * ```
 */
export interface ResultMessage {
  /** The task's id. */
  task_id: string;
  /** The serialized result, or the serialized remote error when `error_details` is set. */
  data: string;
  /** Set when the task failed. */
  error_details: ResultErrorDetails | null;
  /** Transitions recorded on the endpoint, oldest first. */
  task_statuses: TaskTransition[] | null;
  /**
   * Times the task was started, when more than once: a task whose worker, manager or block was
   * lost runs again up to the engine's `max_retries_on_system_failure`. Absent means one.
   */
  attempts?: number;
  /** W3C trace context (`traceparent`) of the hop that sent the result, when traced. */
  traceparent?: string;
}

/**
 * An endpoint's periodic status (`message_type: "ep_status_report"`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { EPStatusReport } from "@funcx/sdk/protocol";
 * const report: EPStatusReport = {
 *   endpoint_id: "e1",
 *   global_state: { managers: 1, idle_workers: 4 },
 *   task_statuses: {},
 * };
 * assert.ok(report.global_state.managers === 1);
 * ```
 */
export interface EPStatusReport {
  /** The endpoint's id. */
  endpoint_id: string;
  /** Free-form endpoint state: managers, workers, pending tasks and so on. */
  global_state: Record<string, unknown>;
  /** New transitions since the last report, by task id. */
  task_statuses: Record<string, TaskTransition[]>;
}

/**
 * Transitions of one task, reported outside a result (`message_type: "task_transition"`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { nowNs, type TaskTransitionMessage } from "@funcx/sdk/protocol";
 * const msg: TaskTransitionMessage = {
 *   task_id: "t1",
 *   transitions: [{ timestamp: nowNs(), state: "waiting-for-nodes", actor: "interchange" }],
 * };
 * assert.ok(msg.transitions.length === 1);
 * ```
 */
export interface TaskTransitionMessage {
  /** The task's id. */
  task_id: string;
  /** The transitions, oldest first. */
  transitions: TaskTransition[];
}

/**
 * Many results in one broker message (`message_type: "result_batch"`): the endpoint sends the
 * results that finish together this way, and the service forwards them to users the same way,
 * so the broker carries one message per batch instead of one per task.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { ResultBatchMessage } from "@funcx/sdk/protocol";
 * const batch: ResultBatchMessage = {
 *   results: [{ task_id: "t1", data: "js\n1", error_details: null, task_statuses: null }],
 * };
 * assert.ok(batch.results.length === 1);
 * ```
 */
export interface ResultBatchMessage {
  /** The results, each as in a `result` message. */
  results: ResultMessage[];
}

/**
 * Many tasks for one endpoint in one broker message (`message_type: "task_batch"`): the service's
 * outbox relay sends the tasks it has for an endpoint together, so the broker carries, delivers
 * and has acked one message per batch instead of one per task. The endpoint acks the message once
 * every task in it is safe.
 *
 * @example
 * ```ts
 * import type { TaskBatchMessage } from "@funcx/sdk/protocol";
 * const batch: TaskBatchMessage = {
 *   tasks: [{ task_id: "t1", container_id: null, task_buffer: "" }],
 * };
 * if (batch.tasks.length !== 1) throw new Error("one task expected");
 * ```
 */
export interface TaskBatchMessage {
  /** The tasks, each as in a `task` message. */
  tasks: TaskMessage[];
}

/**
 * Asks an endpoint to cancel a task (`message_type: "task_cancel"`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { TaskCancelMessage } from "@funcx/sdk/protocol";
 * const cancel: TaskCancelMessage = { task_id: "t1" };
 * assert.ok(cancel.task_id === "t1");
 * ```
 */
export interface TaskCancelMessage {
  /** The task to cancel. */
  task_id: string;
}

/**
 * A command for an endpoint (`message_type: "command"`), for example a shutdown.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { CommandMessage } from "@funcx/sdk/protocol";
 * const cmd: CommandMessage = { command: "shutdown", args: { graceful: true } };
 * assert.ok(cmd.command === "shutdown");
 * ```
 */
export interface CommandMessage {
  /** The command's name. */
  command: string;
  /** Its arguments. */
  args: Record<string, unknown>;
}

/**
 * Every message between the service and endpoints, discriminated by `message_type`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { Message } from "@funcx/sdk/protocol";
 * function describe(m: Message): string {
 *   return m.message_type === "result" ? `result of ${m.data.task_id}` : m.message_type;
 * }
 * assert.ok(describe({ message_type: "task_cancel", data: { task_id: "t" } }) === "task_cancel");
 * ```
 */
export type Message =
  | { message_type: "task"; data: TaskMessage }
  | { message_type: "task_batch"; data: TaskBatchMessage }
  | { message_type: "result"; data: ResultMessage }
  | { message_type: "result_batch"; data: ResultBatchMessage }
  | { message_type: "ep_status_report"; data: EPStatusReport }
  | { message_type: "task_transition"; data: TaskTransitionMessage }
  | { message_type: "task_cancel"; data: TaskCancelMessage }
  | { message_type: "command"; data: CommandMessage };

/**
 * The `message_type` strings.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { MessageType } from "@funcx/sdk/protocol";
 * const type: MessageType = "ep_status_report";
 * assert.ok(type.length > 0);
 * ```
 */
export type MessageType = Message["message_type"];
