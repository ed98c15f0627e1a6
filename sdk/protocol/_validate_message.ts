/**
 * Checks of message bodies, shared by `packMessage`, `unpackMessage` and the
 * batch encoders: each check returns a fresh value with only the known fields, and a failure
 * names the message type and the field.
 *
 * @module
 */
import { isPlainObject as isRecord } from "./_plain_object.ts";
import { resolveResourceSpecification } from "./resource_specification.ts";
import type {
  Message,
  MessageType,
  ResultErrorDetails,
  ResultMessage,
  TaskMessage,
  TaskTransition,
} from "./messages.ts";
import { isActorName, isTaskState } from "./task_state.ts";

// Hand-written checks: this runs for every task and result, so no schema library here. Each
// check returns a fresh value with only the known fields, so unknown fields are dropped.

export type Fail = (field: string, expected: string) => never;

export function failer(
  type: string,
  make: (message: string) => Error,
): Fail {
  return (field, expected) => {
    throw make(`Invalid "${type}" message: field "${field}" must be ${expected}`);
  };
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

export function resultData(
  data: Record<string, unknown>,
  prefix: string,
  fail: Fail,
): ResultMessage {
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
  const tp = data.traceparent;
  if (tp !== undefined && tp !== null) result.traceparent = str(data, "traceparent", prefix, fail);
  return result;
}

export function taskData(data: Record<string, unknown>, prefix: string, fail: Fail): TaskMessage {
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
  const rs = data.resource_specification;
  if (rs !== undefined && rs !== null) {
    try {
      task.resource_specification = resolveResourceSpecification(rs);
    } catch (err) {
      fail(`${prefix}resource_specification`, `a valid one (${(err as Error).message})`);
    }
  }
  const tp = data.traceparent;
  if (tp !== undefined && tp !== null) task.traceparent = str(data, "traceparent", prefix, fail);
  const rr = data.result_route;
  if (rr !== undefined && rr !== null) task.result_route = str(data, "result_route", prefix, fail);
  return task;
}

export function validateData(type: string, data: unknown, fail: Fail): Message {
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

export function quote(value: unknown): string {
  return typeof value === "string" ? JSON.stringify(value) : `(${typeof value})`;
}

export const MESSAGE_TYPES: ReadonlySet<string> = new Set<MessageType>([
  "task",
  "task_batch",
  "result",
  "result_batch",
  "ep_status_report",
  "task_transition",
  "task_cancel",
  "command",
]);
