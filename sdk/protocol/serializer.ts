/**
 * The header-tagged serializer: how functions, arguments and results travel inside task buffers
 * and result messages. The SDK serializes a function once at registration and the arguments of
 * every submit; the service concatenates them into a task buffer; the worker unpacks it with
 * {@linkcode unpackTask} and serializes the result (or {@linkcode errorToInfo} of the error).
 *
 * Every serialized value is a 2-character method identifier, a newline, then the body:
 *
 * | header | body |
 * |---|---|
 * | `st\n` | function source, unencoded: `<name>:<fn.toString()>` (as Globus Compute's `st`) |
 * | `cb\n` | standard base64 (no line breaks) of CBOR, RFC 8949 |
 * | `js\n` | `JSON.stringify` text |
 *
 * The CBOR method keeps `Date`, `Map`, `Set`, `bigint`, typed arrays, `ArrayBuffer`, `DataView`,
 * `undefined`, `NaN`, `-0` and `Error` objects (name, message, stack, cause and own properties;
 * private CBOR tag 40500).
 *
 * @module
 */
import { decodeCbor, encodeCborBase64 } from "./_cbor.ts";

/**
 * The 2-character identifiers that start every serialized value.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { serialize, SerializerMethod } from "@funcx/sdk/protocol";
 * assert.ok(serialize(42).startsWith(SerializerMethod.CBOR + "\n"));
 * ```
 */
export const SerializerMethod: {
  /** Function source text. */
  readonly SOURCE: "st";
  /** Structured data as base64 of CBOR. */
  readonly CBOR: "cb";
  /** Plain JSON. */
  readonly JSON: "js";
} = { SOURCE: "st", CBOR: "cb", JSON: "js" } as const;

/**
 * How {@linkcode serialize} encodes a value that is not a function.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { type DataMethod, serialize } from "@funcx/sdk/protocol";
 * const method: DataMethod = "json";
 * assert.ok(serialize({ a: 1 }, { method }) === 'js\n{"a":1}');
 * ```
 */
export type DataMethod = "cbor" | "json";

/**
 * Options of {@linkcode serialize} and {@linkcode packArgs}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { type SerializeOptions, serialize } from "@funcx/sdk/protocol";
 * const options: SerializeOptions = { method: "json" };
 * assert.ok(serialize([1, 2], options) === "js\n[1,2]");
 * ```
 */
export interface SerializeOptions {
  /**
   * The data method: `"cbor"` keeps JavaScript types; `"json"` is for callers that want
   * interoperability and accept JSON's losses.
   *
   * @default {"cbor"}
   */
  method?: DataMethod;
}

/**
 * What a function payload deserializes to: its source text, never a callable (the SDK never
 * evaluates code; the worker does).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { deserializeFunction, type FunctionSource, serialize } from "@funcx/sdk/protocol";
 * const fn: FunctionSource = deserializeFunction(serialize(function double(n: number) {
 *   return n * 2;
 * }));
 * assert.ok(fn.kind === "function-source" && fn.name === "double");
 * ```
 */
export interface FunctionSource {
  /** Discriminant, always `"function-source"`. */
  readonly kind: "function-source";
  /** The function's name, `""` when it is anonymous. */
  readonly name: string;
  /** The function's source text, as `fn.toString()` gave it. */
  readonly source: string;
}

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
 * An error, as a plain record that result messages carry.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { errorToInfo, type RemoteErrorInfo } from "@funcx/sdk/protocol";
 * const info: RemoteErrorInfo = errorToInfo(new RangeError("too big"));
 * assert.ok(info.name === "RangeError" && info.message === "too big");
 * ```
 */
export interface RemoteErrorInfo {
  /** The error's name, for example `"TypeError"`. */
  name: string;
  /** The error's message. */
  message: string;
  /** The error's stack trace, followed by `Caused by:` sections for its causes. */
  stack: string;
}

/**
 * A payload could not be deserialized: unknown header, malformed body, or a task buffer of the
 * wrong shape.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DeserializationError, deserialize } from "@funcx/sdk/protocol";
 * try {
 *   deserialize("zz\nbody");
 * } catch (err) {
 *   assert.ok(err instanceof DeserializationError);
 * }
 * ```
 */
export class DeserializationError extends Error {
  /** Always `"DeserializationError"`. */
  override name = "DeserializationError";

  /**
   * Makes the error.
   *
   * @param message What could not be deserialized, and why.
   * @param options `cause`: the underlying error, if any.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { DeserializationError } from "@funcx/sdk/protocol";
   * const err = new DeserializationError("Bad body", { cause: new SyntaxError("x") });
   * assert.ok(err.cause instanceof SyntaxError);
   * ```
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
  }
}

/**
 * A value could not be serialized as data: it is (or holds) a function, a class instance the
 * data method cannot carry, a cycle, or it has no JSON form. Functions travel only as a task's
 * function, never as an argument or a result. A `TypeError`, since the caller gave a value of
 * the wrong kind.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SerializationError, serializeData } from "@funcx/sdk/protocol";
 * assert.throws(() => serializeData(() => 1), SerializationError);
 * assert.throws(() => serializeData(() => 1), TypeError);
 * ```
 */
export class SerializationError extends TypeError {
  /** Always `"SerializationError"`. */
  override name = "SerializationError";

  /**
   * Makes the error.
   *
   * @param message What could not be serialized, and why.
   * @param options `cause`: the underlying error, if any.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { SerializationError } from "@funcx/sdk/protocol";
   * const err = new SerializationError("Cannot serialize x", { cause: new RangeError("deep") });
   * assert.ok(err.cause instanceof RangeError);
   * ```
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
  }
}

const NATIVE_SOURCE = /\{\s*\[native code\]\s*\}\s*$/;
const CLASS_SOURCE = /^class[\s{]/;

function serializeFunction(fn: (...args: never[]) => unknown): string {
  const source = Function.prototype.toString.call(fn);
  const rawName = typeof fn.name === "string" ? fn.name : "";
  if (NATIVE_SOURCE.test(source)) {
    throw new TypeError(
      `Cannot serialize function "${rawName}": its source is not available (native or bound function)`,
    );
  }
  if (CLASS_SOURCE.test(source)) {
    throw new TypeError(`Cannot serialize class "${rawName}": only functions can be sent`);
  }
  // The body splits at the first ":", so a name must not hold one (names are informational).
  const name = rawName.includes(":") ? rawName.replaceAll(":", "_") : rawName;
  return `st\n${name}:${source}`;
}

/**
 * Serializes a value with its header: functions as their source text (`st`), anything else with
 * the data method (`cb` by default, or `js`).
 *
 * @param value A function, or any value the data method can carry.
 * @param options The data method.
 * @returns The header-tagged string.
 * @throws {TypeError} For native, bound or class functions (no usable source), for values the
 *   data method cannot carry (a function nested in data, a cycle, a `bigint` in JSON, a top-level
 *   `undefined` in JSON), or an unknown method.
 *
 * @example Data, and a function
 * ```ts
 * import assert from "node:assert/strict";
 * import { deserialize, serialize } from "@funcx/sdk/protocol";
 * const payload = serialize({ when: new Date(0), ids: new Set([1n, 2n]) });
 * assert.ok(payload.startsWith("cb\n"));
 * const back = deserialize(payload) as { when: Date; ids: Set<bigint> };
 * assert.ok(back.ids.has(2n));
 * assert.ok(serialize((x: number) => x + 1).startsWith("st\n:"));
 * ```
 */
export function serialize(value: unknown, options?: SerializeOptions): string {
  if (typeof value === "function") {
    return serializeFunction(value as (...args: never[]) => unknown);
  }
  return serializeData(value, options);
}

/**
 * Serializes data (a task's arguments or result) with its header, `cb` by default or `js`.
 * Unlike {@linkcode serialize} it refuses a function, so that a function value never passes
 * for data: a task that returns a function fails with this error instead of handing back its
 * source text.
 *
 * @param value Any value the data method can carry.
 * @param options The data method.
 * @returns The header-tagged string.
 * @throws {SerializationError} For a function (at the top or nested), a cycle, a value the
 *   data method cannot carry, or an unknown method.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { deserializeData, SerializationError, serializeData } from "@funcx/sdk/protocol";
 * assert.deepEqual(deserializeData(serializeData([1n, new Date(0)])), [1n, new Date(0)]);
 * assert.throws(() => serializeData(() => () => 1), SerializationError);
 * assert.throws(() => serializeData({ callback() {} }), /holds a function/);
 * ```
 */
export function serializeData(value: unknown, options?: SerializeOptions): string {
  if (typeof value === "function") {
    throw new SerializationError(
      `Cannot serialize function "${
        (value as { name?: unknown }).name || "anonymous"
      }" as data: a function travels only as the task's function, never as an argument or ` +
        "a result (return its result, or its source text as a string)",
    );
  }
  const method = options?.method ?? "cbor";
  if (method === "cbor") {
    let body: string;
    try {
      body = encodeCborBase64(value);
    } catch (err) {
      throw new SerializationError(`Cannot serialize value as CBOR: ${encodeFailure(err)}`, {
        cause: err,
      });
    }
    return "cb\n" + body;
  }
  if (method === "json") {
    let text: string | undefined;
    try {
      text = JSON.stringify(value);
    } catch (err) {
      throw new SerializationError(`Cannot serialize value as JSON: ${encodeFailure(err)}`, {
        cause: err,
      });
    }
    if (text === undefined) {
      throw new SerializationError(
        `Cannot serialize value as JSON: JSON has no ${typeof value} value`,
      );
    }
    return "js\n" + text;
  }
  throw new SerializationError(
    `Cannot serialize value: unknown method ${JSON.stringify(method)} (expected "cbor" or "json")`,
  );
}

function encodeFailure(err: unknown): string {
  if (err instanceof RangeError && /call stack/i.test(err.message)) {
    return "it is cyclic or nested too deeply";
  }
  if (err instanceof Error && /type: function/i.test(err.message)) {
    return "it holds a function; a function travels only as the task's function, never inside " +
      "an argument or a result";
  }
  return err instanceof Error ? err.message : String(err);
}

function headerOf(payload: string, what: string): string {
  if (typeof payload !== "string") {
    throw new DeserializationError(
      `Cannot deserialize ${what}: expected a string, got ${typeof payload}`,
    );
  }
  if (payload.length < 3 || payload.charCodeAt(2) !== 10) {
    throw new DeserializationError(
      `Cannot deserialize ${what}: it does not start with a 2-character header and a newline`,
    );
  }
  return payload.slice(0, 2);
}

function parseFunction(payload: string): FunctionSource {
  const sep = payload.indexOf(":", 3);
  if (sep < 0) {
    throw new DeserializationError(`Cannot deserialize function: "st" body has no "name:" prefix`);
  }
  const source = payload.slice(sep + 1);
  if (source.length === 0) {
    throw new DeserializationError("Cannot deserialize function: the source text is empty");
  }
  return { kind: "function-source", name: payload.slice(3, sep), source };
}

/**
 * Deserializes a header-tagged string. A function payload (`st`) becomes a
 * {@linkcode FunctionSource} descriptor, never a callable.
 *
 * @param payload A string made by {@linkcode serialize}.
 * @returns The value (or function descriptor).
 * @throws {DeserializationError} On an unknown header or a malformed body.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { deserialize, serialize } from "@funcx/sdk/protocol";
 * const m = deserialize(serialize(new Map([[1, "one"]]))) as Map<number, string>;
 * assert.ok(m.get(1) === "one");
 * ```
 */
export function deserialize(payload: string): unknown {
  const header = headerOf(payload, "payload");
  switch (header) {
    case "cb": {
      let bytes: Uint8Array;
      try {
        bytes = Uint8Array.fromBase64(payload.slice(3));
      } catch (err) {
        throw new DeserializationError(
          'Cannot deserialize "cb" payload: body is not valid base64',
          {
            cause: err,
          },
        );
      }
      try {
        return decodeCbor(bytes);
      } catch (err) {
        throw new DeserializationError(
          `Cannot deserialize "cb" payload: body is not valid CBOR (${messageOf(err)})`,
          { cause: err },
        );
      }
    }
    case "js":
      try {
        return JSON.parse(payload.slice(3));
      } catch (err) {
        throw new DeserializationError(
          `Cannot deserialize "js" payload: body is not valid JSON (${messageOf(err)})`,
          { cause: err },
        );
      }
    case "st":
      return parseFunction(payload);
    default:
      throw new DeserializationError(
        `Cannot deserialize payload: unknown header ${JSON.stringify(header)}`,
      );
  }
}

/**
 * Deserializes data (a task's arguments or result): like {@linkcode deserialize}, but a
 * function payload (`st`) is refused, since data never is one.
 *
 * @param payload A string made by {@linkcode serializeData}.
 * @returns The value.
 * @throws {DeserializationError} On a function payload, an unknown header or a malformed body.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DeserializationError, deserializeData, serialize } from "@funcx/sdk/protocol";
 * assert.equal(deserializeData(serialize(42)), 42);
 * assert.throws(() => deserializeData(serialize(() => 1)), DeserializationError);
 * ```
 */
export function deserializeData(payload: string): unknown {
  if (headerOf(payload, "data") === "st") {
    throw new DeserializationError(
      "Cannot deserialize data: the payload is a function's source text, and a function is " +
        "never data (was a function returned as a result?)",
    );
  }
  return deserialize(payload);
}

/**
 * Deserializes a function payload (`st`) into its source descriptor.
 *
 * @param payload A string made by {@linkcode serialize} from a function.
 * @returns The function's name and source text.
 * @throws {DeserializationError} When the payload is not a well-formed `st` payload.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { deserializeFunction, serialize } from "@funcx/sdk/protocol";
 * const fn = deserializeFunction(serialize(async function fetchIt() {}));
 * assert.ok(fn.name === "fetchIt" && fn.source.startsWith("async function"));
 * ```
 */
export function deserializeFunction(payload: string): FunctionSource {
  const header = headerOf(payload, "function");
  if (header !== "st") {
    throw new DeserializationError(
      `Cannot deserialize function: expected an "st" payload, got ${JSON.stringify(header)}`,
    );
  }
  return parseFunction(payload);
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Packs strings into one: each as `<length>\n<string>`, concatenated (funcX's `pack_buffers`).
 *
 * The length is the JavaScript string length in UTF-16 code units, not bytes or code points:
 * an emoji counts 2. Python's funcX counts code points; the two agree for the ASCII that `cb`
 * and `js` payloads (and most function sources) are made of.
 *
 * @param buffers The strings to pack.
 * @returns The packed string.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { packBuffers } from "@funcx/sdk/protocol";
 * assert.ok(packBuffers(["ab", "🙂"]) === "2\nab2\n🙂");
 * ```
 */
export function packBuffers(buffers: readonly string[]): string {
  let out = "";
  for (const buf of buffers) {
    if (typeof buf !== "string") {
      throw new TypeError(`Cannot pack buffers: expected strings, got ${typeof buf}`);
    }
    out += `${buf.length}\n${buf}`;
  }
  return out;
}

/**
 * Splits a string made by {@linkcode packBuffers} back into its parts.
 *
 * @param packed The packed string; `""` gives no parts.
 * @returns The strings, in order.
 * @throws {DeserializationError} On a missing or non-decimal length, or a truncated part.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { packBuffers, unpackBuffers } from "@funcx/sdk/protocol";
 * const parts = unpackBuffers(packBuffers(["a\nb", ""]));
 * assert.ok(parts.length === 2 && parts[0] === "a\nb" && parts[1] === "");
 * ```
 */
export function unpackBuffers(packed: string): string[] {
  if (typeof packed !== "string") {
    throw new DeserializationError(
      `Cannot unpack buffers: expected a string, got ${typeof packed}`,
    );
  }
  const out: string[] = [];
  let pos = 0;
  const total = packed.length;
  while (pos < total) {
    const nl = packed.indexOf("\n", pos);
    if (nl < 0) {
      throw new DeserializationError(
        `Cannot unpack buffers: buffer ${out.length} has no length line at offset ${pos}`,
      );
    }
    if (nl === pos || nl - pos > 15) {
      throw new DeserializationError(
        `Cannot unpack buffers: buffer ${out.length} has a bad length ${
          JSON.stringify(packed.slice(pos, Math.min(nl, pos + 20)))
        }`,
      );
    }
    let len = 0;
    for (let i = pos; i < nl; i++) {
      const d = packed.charCodeAt(i) - 48;
      if (d < 0 || d > 9) {
        throw new DeserializationError(
          `Cannot unpack buffers: buffer ${out.length} has a bad length ${
            JSON.stringify(packed.slice(pos, nl))
          }`,
        );
      }
      len = len * 10 + d;
    }
    const start = nl + 1;
    const end = start + len;
    if (end > total) {
      throw new DeserializationError(
        `Cannot unpack buffers: buffer ${out.length} is truncated (length ${len}, ${
          total - start
        } left)`,
      );
    }
    out.push(packed.slice(start, end));
    pos = end;
  }
  return out;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== "object" || value === null) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
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

const isError: (value: unknown) => value is Error =
  typeof (Error as { isError?: unknown }).isError === "function"
    ? (Error as unknown as { isError: (value: unknown) => value is Error }).isError
    : (value: unknown): value is Error => value instanceof Error;

const MAX_CAUSES = 8;
const MAX_DESCRIPTION = 2000;

function describe(value: unknown): string {
  switch (typeof value) {
    case "string":
      return value;
    case "bigint":
      return `${value}n`;
    case "symbol":
      return value.toString();
    case "function":
      return `[function ${value.name || "(anonymous)"}]`;
    case "object": {
      if (value === null) return "null";
      let text: string | undefined;
      try {
        text = JSON.stringify(value);
      } catch {
        // cyclic, or holds a bigint
      }
      if (text === undefined || text === "{}") text = Object.prototype.toString.call(value);
      return text.length > MAX_DESCRIPTION ? text.slice(0, MAX_DESCRIPTION) + "…" : text;
    }
    default:
      return String(value);
  }
}

function stackOf(err: Error, name: string, message: string): string {
  let stack: unknown;
  try {
    stack = err.stack;
  } catch {
    // a throwing getter: fall back to the header line
  }
  return typeof stack === "string" && stack.length > 0 ? stack : `${name}: ${message}`;
}

function nameAndMessage(err: Error): [string, string] {
  let name = "Error";
  let message = "";
  try {
    name = typeof err.name === "string" && err.name !== "" ? err.name : "Error";
    message = typeof err.message === "string" ? err.message : String(err.message);
  } catch {
    // throwing getters: keep the defaults
  }
  return [name, message];
}

/**
 * Turns anything thrown into a plain {@linkcode RemoteErrorInfo} for a result message. An
 * `Error` gives its name, message and stack, with each `cause` appended as a `Caused by:` section
 * (at most 8). Any other thrown value gives name `"Error"` and a readable message: a string as
 * is, other values as JSON or their `toString`.
 *
 * @param error The thrown value.
 * @returns The error's name, message and stack.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { errorToInfo } from "@funcx/sdk/protocol";
 * const info = errorToInfo(new Error("outer", { cause: new TypeError("inner") }));
 * assert.ok(info.stack.includes("Caused by: TypeError: inner"));
 * assert.ok(errorToInfo("boom").message === "boom");
 * ```
 */
export function errorToInfo(error: unknown): RemoteErrorInfo {
  if (!isError(error)) {
    const message = describe(error);
    return { name: "Error", message, stack: `Error: ${message}` };
  }
  const [name, message] = nameAndMessage(error);
  let stack = stackOf(error, name, message);
  const seen = new Set<unknown>([error]);
  let current: unknown = error;
  for (let depth = 0; depth < MAX_CAUSES; depth++) {
    if (!isError(current) || !Object.hasOwn(current, "cause")) break;
    const cause: unknown = current.cause;
    if (seen.has(cause)) {
      stack += "\nCaused by: [circular]";
      break;
    }
    seen.add(cause);
    if (isError(cause)) {
      const [cName, cMessage] = nameAndMessage(cause);
      stack += `\nCaused by: ${stackOf(cause, cName, cMessage)}`;
    } else {
      stack += `\nCaused by: ${describe(cause)}`;
    }
    current = cause;
  }
  return { name, message, stack };
}
