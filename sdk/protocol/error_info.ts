/**
 * What a task threw, as the plain {@linkcode RemoteErrorInfo} record that a failed task's result
 * carries: the worker calls {@linkcode errorToInfo}, the SDK rebuilds the error from it.
 *
 * @module
 */

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
