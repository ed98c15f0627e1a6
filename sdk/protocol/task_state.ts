/**
 * Task states and the actors that record them, as in funcX 1.0's `TaskState` and `ActorName`
 * string enums, plus the nanosecond clock that stamps each transition.
 *
 * @module
 */

/**
 * The states a task passes through, with funcX's wire strings. Every task starts as
 * `waiting-for-ep`; only `success` and `failed` are terminal.
 *
 * @example Compare a state read from the wire
 * ```ts
 * import assert from "node:assert/strict";
 * import { TaskState } from "@funcx/sdk/protocol";
 * const state: string = "waiting-for-nodes";
 * assert.ok(state === TaskState.WAITING_FOR_NODES);
 * ```
 */
export const TaskState: {
  /** Received by the web service. */
  readonly RECEIVED: "received";
  /** Initial state: waiting for the endpoint to take the task or come online. */
  readonly WAITING_FOR_EP: "waiting-for-ep";
  /** Queued in the endpoint's interchange, waiting for a manager and worker. */
  readonly WAITING_FOR_NODES: "waiting-for-nodes";
  /** Handed to a manager, not yet on a worker. */
  readonly WAITING_FOR_LAUNCH: "waiting-for-launch";
  /** Sent to a worker. */
  readonly RUNNING: "running";
  /** The worker is about to call the user function. */
  readonly EXECUTION_START: "execution-start";
  /** The user function returned or threw. */
  readonly EXECUTION_END: "execution-end";
  /** Terminal: the function returned a result. */
  readonly SUCCESS: "success";
  /** Terminal: the task failed. */
  readonly FAILED: "failed";
  /** The service received the result. */
  readonly RESULT_RECEIVED: "result-received";
  /** The service queued the result for the user. */
  readonly RESULT_ENQUEUED: "result-enqueued";
} = {
  RECEIVED: "received",
  WAITING_FOR_EP: "waiting-for-ep",
  WAITING_FOR_NODES: "waiting-for-nodes",
  WAITING_FOR_LAUNCH: "waiting-for-launch",
  RUNNING: "running",
  EXECUTION_START: "execution-start",
  EXECUTION_END: "execution-end",
  SUCCESS: "success",
  FAILED: "failed",
  RESULT_RECEIVED: "result-received",
  RESULT_ENQUEUED: "result-enqueued",
} as const;

/**
 * One of the {@linkcode TaskState} strings.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { TaskState } from "@funcx/sdk/protocol";
 * const state: TaskState = "running";
 * assert.ok(state.length > 0);
 * ```
 */
export type TaskState = typeof TaskState[keyof typeof TaskState];

/**
 * Who recorded a task transition, with funcX's wire strings.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ActorName, TaskState } from "@funcx/sdk/protocol";
 * const transition = { state: TaskState.RUNNING, actor: ActorName.MANAGER };
 * assert.ok(transition.actor === "manager");
 * ```
 */
export const ActorName: {
  /** A worker process, around the user function. */
  readonly WORKER: "worker";
  /** A manager, when it hands a task to a worker. */
  readonly MANAGER: "manager";
  /** The endpoint's interchange, when it queues and dispatches tasks. */
  readonly INTERCHANGE: "interchange";
  /** The endpoint daemon. */
  readonly ENDPOINT: "endpoint";
  /** The service's result processor. */
  readonly RESULT_PROCESSOR: "result-processor";
  /** The service's web front end. */
  readonly WEB_SERVICE: "web-service";
} = {
  WORKER: "worker",
  MANAGER: "manager",
  INTERCHANGE: "interchange",
  ENDPOINT: "endpoint",
  RESULT_PROCESSOR: "result-processor",
  WEB_SERVICE: "web-service",
} as const;

/**
 * One of the {@linkcode ActorName} strings.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { ActorName } from "@funcx/sdk/protocol";
 * const actor: ActorName = "worker";
 * assert.ok(actor === "worker");
 * ```
 */
export type ActorName = typeof ActorName[keyof typeof ActorName];

const TASK_STATES: ReadonlySet<string> = new Set(Object.values(TaskState));
const ACTOR_NAMES: ReadonlySet<string> = new Set(Object.values(ActorName));

/**
 * Whether a status string is terminal: `success` or `failed`, in any letter case, as the funcX
 * SDK decides when to stop polling.
 *
 * @param state A status string, as the service reports it.
 * @returns `true` for `success` and `failed`, `false` for anything else.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { isTerminalState } from "@funcx/sdk/protocol";
 * assert.ok(isTerminalState("SUCCESS"));
 * assert.ok(!isTerminalState("running"));
 * ```
 */
export function isTerminalState(state: string): boolean {
  if (typeof state !== "string") return false;
  const s = state.toLowerCase();
  return s === "success" || s === "failed";
}

/**
 * Whether a value is one of the {@linkcode TaskState} strings (exact, lower case).
 *
 * @param value Any value, for example a field read from a message.
 * @returns `true` when `value` is a known task state.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { isTaskState } from "@funcx/sdk/protocol";
 * assert.ok(isTaskState("execution-start"));
 * assert.ok(!isTaskState("done"));
 * ```
 */
export function isTaskState(value: unknown): value is TaskState {
  return typeof value === "string" && TASK_STATES.has(value);
}

/**
 * Whether a value is one of the {@linkcode ActorName} strings.
 *
 * @param value Any value, for example a field read from a message.
 * @returns `true` when `value` is a known actor name.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { isActorName } from "@funcx/sdk/protocol";
 * assert.ok(isActorName("interchange"));
 * assert.ok(!isActorName("scheduler"));
 * ```
 */
export function isActorName(value: unknown): value is ActorName {
  return typeof value === "string" && ACTOR_NAMES.has(value);
}

// The origin in whole microseconds is exact in a double (~1.8e15 < 2**53); adding `now()` in
// nanoseconds separately keeps sub-microsecond steps that a single `timeOrigin + now()` sum
// (ulp ~0.24 µs at today's epoch) would round away.
const ORIGIN_NS: bigint = BigInt(Math.round(performance.timeOrigin * 1000)) * 1000n;

/**
 * The current time in nanoseconds since the Unix epoch, for task transition timestamps (funcX
 * uses Python's `time.time_ns()`).
 *
 * It is the process's time origin plus the monotonic `performance.now()`, so it never goes
 * backwards within a process and has sub-millisecond precision; over a long-running process it
 * can drift from the wall clock by as much as the system clock is adjusted (NTP).
 *
 * @returns Nanoseconds since the epoch.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { nowNs } from "@funcx/sdk/protocol";
 * const a = nowNs();
 * const b = nowNs();
 * assert.ok(b >= a);
 * assert.ok(a > 1_600_000_000_000_000_000n);
 * ```
 */
export function nowNs(): bigint {
  return ORIGIN_NS + BigInt(Math.round(performance.now() * 1e6));
}
