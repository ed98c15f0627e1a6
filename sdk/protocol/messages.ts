/**
 * The messages between the service and endpoints over RabbitMQ (funcX's `messagepack`, protocol
 * v1): the service publishes `task` messages to `<endpoint_id>.tasks`; the endpoint publishes
 * `result` and `ep_status_report` messages to `results`.
 *
 * A packed message is one version byte ({@linkcode PROTOCOL_VERSION}) followed by the CBOR of
 * `{message_type, data}`. funcX used JSON here; CBOR keeps nanosecond `bigint` timestamps exact
 * and carries task buffers without escaping. Optional fields are present as `null`.
 *
 * @module
 */
import { decodeCbor, encodeCbor } from "./_cbor.ts";
import { type ActorName, isActorName, isTaskState, type TaskState } from "./task_state.ts";

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

/**
 * A packed message starts with a version byte this side does not know.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { UnrecognizedProtocolVersion, unpackMessage } from "@funcx/sdk/protocol";
 * try {
 *   unpackMessage(new Uint8Array([2, 0xa0]));
 * } catch (err) {
 *   assert.ok(err instanceof UnrecognizedProtocolVersion && err.version === 2);
 * }
 * ```
 */
export class UnrecognizedProtocolVersion extends Error {
  /** Always `"UnrecognizedProtocolVersion"`. */
  override name = "UnrecognizedProtocolVersion";
  /** The version byte found. */
  readonly version: number;

  /**
   * Makes the error, with a message that names the version found and the one expected.
   *
   * @param version The version byte found.
   * @param options `cause`, if any.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { UnrecognizedProtocolVersion } from "@funcx/sdk/protocol";
   * assert.ok(new UnrecognizedProtocolVersion(7).message.includes("7"));
   * ```
   */
  constructor(version: number, options?: ErrorOptions) {
    super(
      `Cannot unpack message: unrecognized protocol version ${version} (expected ${PROTOCOL_VERSION})`,
      options,
    );
    this.version = version;
  }
}

/**
 * A message is not valid: not CBOR, not an envelope, an unknown `message_type`, or a field that is
 * missing or of the wrong type (the message names the field).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { InvalidMessageError, unpackMessage } from "@funcx/sdk/protocol";
 * try {
 *   unpackMessage(new Uint8Array([1, 0xff]));
 * } catch (err) {
 *   assert.ok(err instanceof InvalidMessageError);
 * }
 * ```
 */
export class InvalidMessageError extends Error {
  /** Always `"InvalidMessageError"`. */
  override name = "InvalidMessageError";

  /**
   * Makes the error.
   *
   * @param message What is wrong, naming the message type and field.
   * @param options `cause`, if any.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { InvalidMessageError } from "@funcx/sdk/protocol";
   * const err = new InvalidMessageError('Invalid "task" message: field "task_id" must be a string');
   * assert.ok(err.name === "InvalidMessageError");
   * ```
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
  }
}

// --- Validation ----------------------------------------------------------------------------
// Hand-written checks: this runs for every task and result, so no schema library here. Each
// check returns a fresh value with only the known fields, so unknown fields are dropped.

type Fail = (field: string, expected: string) => never;

function failer(
  type: string,
  make: (message: string) => Error,
): Fail {
  return (field, expected) => {
    throw make(`Invalid "${type}" message: field "${field}" must be ${expected}`);
  };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  if (typeof value !== "object" || value === null) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function str(obj: Record<string, unknown>, key: string, path: string, fail: Fail): string {
  const v = obj[key];
  if (typeof v !== "string") fail(path + key, "a string");
  return v;
}

function nullableStr(
  obj: Record<string, unknown>,
  key: string,
  path: string,
  fail: Fail,
): string | null {
  const v = obj[key];
  if (v === null || v === undefined) return null;
  if (typeof v !== "string") fail(path + key, "a string or null");
  return v;
}

function record(
  obj: Record<string, unknown>,
  key: string,
  path: string,
  fail: Fail,
): Record<string, unknown> {
  const v = obj[key];
  if (!isRecord(v)) fail(path + key, "an object");
  return v;
}

function transition(value: unknown, path: string, fail: Fail): TaskTransition {
  if (!isRecord(value)) fail(path, "an object");
  const raw = value.timestamp;
  let timestamp: bigint;
  if (typeof raw === "bigint") timestamp = raw;
  else if (typeof raw === "number" && Number.isSafeInteger(raw)) timestamp = BigInt(raw);
  else fail(`${path}.timestamp`, "an integer (nanoseconds since the epoch)");
  const state = value.state;
  if (!isTaskState(state)) fail(`${path}.state`, "a task state");
  const actor = value.actor;
  if (!isActorName(actor)) fail(`${path}.actor`, "an actor name");
  return { timestamp, state, actor };
}

function transitions(value: unknown, path: string, fail: Fail): TaskTransition[] {
  if (!Array.isArray(value)) fail(path, "an array of task transitions");
  const out = new Array<TaskTransition>(value.length);
  for (let i = 0; i < value.length; i++) out[i] = transition(value[i], `${path}[${i}]`, fail);
  return out;
}

function resultData(data: Record<string, unknown>, prefix: string, fail: Fail): ResultMessage {
  const task_id = str(data, "task_id", prefix, fail);
  const payload = str(data, "data", prefix, fail);
  let error_details: ResultErrorDetails | null = null;
  const details = data.error_details;
  if (details !== null && details !== undefined) {
    if (!isRecord(details)) fail(`${prefix}error_details`, "an object or null");
    error_details = {
      code: str(details, "code", `${prefix}error_details.`, fail),
      user_message: str(details, "user_message", `${prefix}error_details.`, fail),
    };
  }
  const statuses = data.task_statuses;
  const result: ResultMessage = {
    task_id,
    data: payload,
    error_details,
    task_statuses: statuses === null || statuses === undefined
      ? null
      : transitions(statuses, `${prefix}task_statuses`, fail),
  };
  const attempts = data.attempts;
  if (attempts !== undefined && attempts !== null) {
    if (typeof attempts !== "number" || !Number.isInteger(attempts) || attempts < 1) {
      fail(`${prefix}attempts`, "a whole number of at least 1");
    }
    result.attempts = attempts;
  }
  return result;
}

function taskData(data: Record<string, unknown>, prefix: string, fail: Fail): TaskMessage {
  const task: TaskMessage = {
    task_id: str(data, "task_id", prefix, fail),
    container_id: nullableStr(data, "container_id", prefix, fail),
    task_buffer: str(data, "task_buffer", prefix, fail),
  };
  const c = data.container;
  if (c !== null && c !== undefined) {
    if (!isRecord(c)) fail(`${prefix}container`, "an object or null");
    task.container = {
      container_id: str(c, "container_id", `${prefix}container.`, fail),
      container_type: str(c, "container_type", `${prefix}container.`, fail),
      location: str(c, "location", `${prefix}container.`, fail),
    };
  }
  // Optional fields are carried only when present, so older messages encode as they did.
  if (data.function_id !== undefined && data.function_id !== null) {
    task.function_id = str(data, "function_id", prefix, fail);
  }
  if (data.user !== undefined && data.user !== null) task.user = str(data, "user", prefix, fail);
  const uec = data.user_endpoint_config;
  if (uec !== undefined && uec !== null) {
    task.user_endpoint_config = record(data, "user_endpoint_config", prefix, fail);
  }
  return task;
}

function validateData(type: string, data: unknown, fail: Fail): Message {
  if (!isRecord(data)) fail("data", "an object");
  switch (type) {
    case "task":
      return { message_type: "task", data: taskData(data, "", fail) };
    case "task_batch": {
      const list = data.tasks;
      if (!Array.isArray(list)) fail("tasks", "an array of tasks");
      const tasks = new Array<TaskMessage>(list.length);
      for (let i = 0; i < list.length; i++) {
        const item = list[i];
        if (!isRecord(item)) fail(`tasks[${i}]`, "an object");
        tasks[i] = taskData(item, `tasks[${i}].`, fail);
      }
      return { message_type: "task_batch", data: { tasks } };
    }
    case "result":
      return { message_type: "result", data: resultData(data, "", fail) };
    case "result_batch": {
      const list = data.results;
      if (!Array.isArray(list)) fail("results", "an array of results");
      const results = new Array<ResultMessage>(list.length);
      for (let i = 0; i < list.length; i++) {
        const item = list[i];
        if (!isRecord(item)) fail(`results[${i}]`, "an object");
        results[i] = resultData(item, `results[${i}].`, fail);
      }
      return { message_type: "result_batch", data: { results } };
    }
    case "ep_status_report": {
      const endpoint_id = str(data, "endpoint_id", "", fail);
      // funcX-common 0.0.18 spelled global_state "ep_status_report"; accept both when reading.
      const global_state = data.global_state === undefined && data.ep_status_report !== undefined
        ? record(data, "ep_status_report", "", fail)
        : record(data, "global_state", "", fail);
      const byTask = record(data, "task_statuses", "", fail);
      const entries: [string, TaskTransition[]][] = [];
      for (const [taskId, list] of Object.entries(byTask)) {
        entries.push([taskId, transitions(list, `task_statuses.${taskId}`, fail)]);
      }
      return {
        message_type: "ep_status_report",
        data: { endpoint_id, global_state, task_statuses: Object.fromEntries(entries) },
      };
    }
    case "task_transition":
      return {
        message_type: "task_transition",
        data: {
          task_id: str(data, "task_id", "", fail),
          transitions: transitions(data.transitions, "transitions", fail),
        },
      };
    case "task_cancel":
      return { message_type: "task_cancel", data: { task_id: str(data, "task_id", "", fail) } };
    case "command":
      return {
        message_type: "command",
        data: { command: str(data, "command", "", fail), args: record(data, "args", "", fail) },
      };
    default:
      throw new Error(`unreachable: message type "${type}"`);
  }
}

function quote(value: unknown): string {
  return typeof value === "string" ? JSON.stringify(value) : `(${typeof value})`;
}

const MESSAGE_TYPES: ReadonlySet<string> = new Set<MessageType>([
  "task",
  "task_batch",
  "result",
  "result_batch",
  "ep_status_report",
  "task_transition",
  "task_cancel",
  "command",
]);

/**
 * Packs a message: the version byte, then the CBOR of `{message_type, data}`. The message is
 * checked first, so a malformed one fails here rather than at the peer.
 *
 * @param message The message.
 * @returns The bytes to publish.
 * @throws {TypeError} When the message is malformed (same wording as
 *   {@linkcode InvalidMessageError}), or holds a value CBOR cannot carry.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { packMessage, unpackMessage } from "@funcx/sdk/protocol";
 * const bytes = packMessage({
 *   message_type: "task",
 *   data: { task_id: "t1", container_id: null, task_buffer: "..." },
 * });
 * const back = unpackMessage(bytes);
 * assert.ok(back.message_type === "task" && back.data.task_id === "t1");
 * ```
 */
export function packMessage(message: Message): Uint8Array {
  if (!isRecord(message) || !MESSAGE_TYPES.has(message.message_type)) {
    throw new TypeError(
      `Cannot pack message: unknown message_type ${
        quote(isRecord(message) ? message.message_type : undefined)
      }`,
    );
  }
  const checked = validateData(
    message.message_type,
    message.data,
    failer(message.message_type, (m) => new TypeError(m)),
  );
  return encodeCbor(checked, PROTOCOL_VERSION);
}

/**
 * Unpacks and validates a message. Unknown fields are ignored (and dropped); optional fields
 * that are missing become `null`.
 *
 * @param buffer The bytes as received (a `Buffer` works too).
 * @returns The message.
 * @throws {UnrecognizedProtocolVersion} When the version byte is not {@linkcode PROTOCOL_VERSION}.
 * @throws {InvalidMessageError} When the body is not valid CBOR, not an envelope, has an unknown
 *   `message_type`, or a field is missing or has the wrong type, for example
 *   `Invalid "result" message: field "task_id" must be a string`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { nowNs, packMessage, unpackMessage } from "@funcx/sdk/protocol";
 * const ts = nowNs();
 * const msg = unpackMessage(packMessage({
 *   message_type: "task_transition",
 *   data: { task_id: "t1", transitions: [{ timestamp: ts, state: "running", actor: "manager" }] },
 * }));
 * assert.ok(msg.message_type === "task_transition" && msg.data.transitions[0]?.timestamp === ts);
 * ```
 */
export function unpackMessage(buffer: Uint8Array): Message {
  if (!(buffer instanceof Uint8Array)) {
    throw new InvalidMessageError("Cannot unpack message: expected a Uint8Array");
  }
  if (buffer.byteLength === 0) throw new InvalidMessageError("Cannot unpack message: it is empty");
  const version = buffer[0]!;
  if (version !== PROTOCOL_VERSION) throw new UnrecognizedProtocolVersion(version);
  let envelope: unknown;
  try {
    envelope = decodeCbor(buffer.subarray(1));
  } catch (err) {
    throw new InvalidMessageError(
      `Cannot unpack message: body is not valid CBOR (${
        err instanceof Error ? err.message : String(err)
      })`,
      { cause: err },
    );
  }
  if (!isRecord(envelope)) {
    throw new InvalidMessageError("Cannot unpack message: body is not a {message_type, data} map");
  }
  const type = envelope.message_type;
  if (typeof type !== "string" || !MESSAGE_TYPES.has(type)) {
    throw new InvalidMessageError(
      `Cannot unpack message: unknown message_type ${quote(type)}`,
    );
  }
  return validateData(type, envelope.data, failer(type, (m) => new InvalidMessageError(m)));
}

/**
 * The CBOR of one task, checked, without an envelope: what the service's outbox keeps, so that
 * {@linkcode packTaskBatch} can put many into one message without encoding them again.
 *
 * @throws {TypeError} When a field is missing or has the wrong type.
 *
 * @example
 * ```ts
 * import { encodeTask, packTaskBatch, unpackMessage } from "@funcx/sdk/protocol";
 * const one = encodeTask({ task_id: "t1", container_id: null, task_buffer: "x" });
 * const msg = unpackMessage(packTaskBatch([one, one]));
 * if (msg.message_type !== "task_batch" || msg.data.tasks.length !== 2) throw new Error("bad");
 * ```
 */
export function encodeTask(task: TaskMessage): Uint8Array {
  const fail = failer("task", (m) => new TypeError(m));
  if (!isRecord(task)) fail("data", "an object");
  return encodeCbor(taskData(task as unknown as Record<string, unknown>, "", fail));
}

/** Envelopes with an empty list, but for its last byte (the empty array's header), by type. */
const batchPrefixes = new Map<string, Uint8Array>();

/** `{message_type: type, data: {[field]: [...items]}}` around items already encoded. */
function wrapEncoded(
  type: "task_batch" | "result_batch",
  field: "tasks" | "results",
  items: readonly Uint8Array[],
): Uint8Array {
  let prefix = batchPrefixes.get(type);
  if (!prefix) {
    prefix = encodeCbor({ message_type: type, data: { [field]: [] } }, PROTOCOL_VERSION)
      .slice(0, -1);
    batchPrefixes.set(type, prefix);
  }
  const n = items.length;
  const header = n < 24
    ? [0x80 | n]
    : n < 256
    ? [0x98, n]
    : n < 65536
    ? [0x99, n >> 8, n & 0xff]
    : [0x9a, (n >>> 24) & 0xff, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff];
  let size = prefix.byteLength + header.length;
  for (const t of items) size += t.byteLength;
  const out = new Uint8Array(size);
  out.set(prefix, 0);
  out.set(header, prefix.byteLength);
  let pos = prefix.byteLength + header.length;
  for (const t of items) {
    out.set(t, pos);
    pos += t.byteLength;
  }
  return out;
}

/**
 * A `task_batch` message around tasks encoded with {@linkcode encodeTask}: the envelope is written
 * around their bytes as they are.
 */
export function packTaskBatch(encodedTasks: readonly Uint8Array[]): Uint8Array {
  return wrapEncoded("task_batch", "tasks", encodedTasks);
}

/**
 * The CBOR of one result, checked, without an envelope, for {@linkcode packResultBatch}: the
 * endpoint encodes each result once, for its journal and for the batch that carries it.
 *
 * @throws {TypeError} When a field is missing or has the wrong type.
 *
 * @example
 * ```ts
 * import { encodeResult, packResultBatch, unpackMessage } from "@funcx/sdk/protocol";
 * const one = encodeResult({ task_id: "t1", data: "js\n1", error_details: null, task_statuses: null });
 * const msg = unpackMessage(packResultBatch([one]));
 * if (msg.message_type !== "result_batch" || msg.data.results[0]?.task_id !== "t1") {
 *   throw new Error("bad");
 * }
 * ```
 */
export function encodeResult(result: ResultMessage): Uint8Array {
  const fail = failer("result", (m) => new TypeError(m));
  if (!isRecord(result)) fail("data", "an object");
  return encodeCbor(resultData(result as unknown as Record<string, unknown>, "", fail));
}

/** A `result_batch` message around results encoded with {@linkcode encodeResult}. */
export function packResultBatch(encodedResults: readonly Uint8Array[]): Uint8Array {
  return wrapEncoded("result_batch", "results", encodedResults);
}
