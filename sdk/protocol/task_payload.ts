/**
 * Task buffers: {@linkcode packArgs} packs a submit's arguments, which the service appends to the
 * function's packed code; the worker reads the whole buffer back with {@linkcode unpackTask}.
 *
 * @module
 */
import { isPlainObject } from "./_plain_object.ts";
import { packBuffers, unpackBuffers } from "./pack_buffers.ts";
import { DeserializationError } from "./serialization_errors.ts";
import {
  deserializeData,
  deserializeFunction,
  type FunctionSource,
  serializeData,
  type SerializeOptions,
} from "./serializer.ts";

/**
 * A task buffer, unpacked: the function's source and the arguments to call it with.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { packArgs, packBuffers, serialize, type TaskPayload, unpackTask } from "@funcx/sdk/protocol";
 * const fnCode = packBuffers([serialize((a: number, b: number) => a + b)]);
 * const task: TaskPayload = unpackTask(fnCode + packArgs([1, 2]));
 * assert.ok(task.args.length === 2);
 * ```
 */
export interface TaskPayload {
  /** The function to run. */
  fn: FunctionSource;
  /** Positional arguments. */
  args: unknown[];
  /** Keyword arguments (funcX's `kwargs`), `{}` when none were given. */
  kwargs: Record<string, unknown>;
}

/**
 * Packs a task's arguments, as the SDK submits them:
 * `packBuffers([serialize(args), serialize(kwargs)])`. The service appends this to the
 * function's packed code to make the task buffer.
 *
 * @param args Positional arguments.
 * @param kwargs Keyword arguments (funcX's `kwargs`); `{}` when left out.
 * @param options The data method.
 * @returns The packed arguments.
 * @throws {TypeError} When `args` is not an array or `kwargs` not a plain object;
 *   {@linkcode SerializationError} (a `TypeError`) when a value (a function, say) cannot
 *   be serialized.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { packArgs, unpackBuffers } from "@funcx/sdk/protocol";
 * const payload = packArgs([21], { scale: 2 });
 * assert.ok(unpackBuffers(payload).length === 2);
 * ```
 */
export function packArgs(
  args: readonly unknown[],
  kwargs?: Record<string, unknown>,
  options?: SerializeOptions,
): string {
  if (!Array.isArray(args)) throw new TypeError("Cannot pack arguments: args must be an array");
  const kw = kwargs ?? {};
  if (!isPlainObject(kw)) {
    throw new TypeError("Cannot pack arguments: kwargs must be a plain object");
  }
  return packBuffers([serializeData(args, options), serializeData(kw, options)]);
}

/**
 * Unpacks a task buffer on the worker: exactly three packed buffers, the function, its
 * positional arguments and its keyword arguments.
 *
 * @param taskBuffer The function's packed code followed by {@linkcode packArgs}'s output.
 * @returns The function source and the deserialized arguments.
 * @throws {DeserializationError} When there are not 3 buffers ("Unpack expects 3 buffers, got
 *   N"), the first is not a function, args is not an array or kwargs not a plain object.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { packArgs, packBuffers, serialize, unpackTask } from "@funcx/sdk/protocol";
 * const buffer = packBuffers([serialize(function greet(who: string) {
 *   return `hi ${who}`;
 * })]) + packArgs(["ada"]);
 * const task = unpackTask(buffer);
 * assert.ok(task.fn.name === "greet" && task.args[0] === "ada");
 * ```
 */
export function unpackTask(taskBuffer: string): TaskPayload {
  const buffers = unpackBuffers(taskBuffer);
  if (buffers.length !== 3) {
    throw new DeserializationError(`Unpack expects 3 buffers, got ${buffers.length}`);
  }
  const fn = deserializeFunction(buffers[0]!);
  const args = deserializeData(buffers[1]!);
  if (!Array.isArray(args)) {
    throw new DeserializationError(
      `Cannot unpack task: args must be an array, got ${kindOf(args)}`,
    );
  }
  const kwargs = deserializeData(buffers[2]!);
  if (!isPlainObject(kwargs)) {
    throw new DeserializationError(
      `Cannot unpack task: kwargs must be a plain object, got ${kindOf(kwargs)}`,
    );
  }
  return { fn, args, kwargs };
}

function kindOf(value: unknown): string {
  if (value === null) return "null";
  if (typeof value !== "object") return typeof value;
  return Array.isArray(value) ? "an array" : (value.constructor?.name ?? "an object");
}
