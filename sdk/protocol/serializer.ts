/**
 * The header-tagged serializer: how functions, arguments and results travel inside task buffers
 * and result messages. The SDK serializes a function once at registration and the arguments of
 * every submit; the service concatenates them into a task buffer; the worker unpacks it with
 * `unpackTask` and serializes the result (or `errorToInfo` of the error).
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
 * Beside it: `packBuffers` (`pack_buffers.ts`) frames payloads, `packArgs` and
 * `unpackTask` (`task_payload.ts`) make and read task buffers, and
 * `errorToInfo` (`error_info.ts`) turns what a task threw into a plain record.
 *
 * @module
 */
import { decodeCbor } from "./_cbor_decode.ts";
import { encodeCborBase64 } from "./_cbor_encode.ts";
import { decodeBase64 } from "./_encoding.ts";
import { DeserializationError, SerializationError } from "./serialization_errors.ts";

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
        bytes = decodeBase64(payload.slice(3));
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
