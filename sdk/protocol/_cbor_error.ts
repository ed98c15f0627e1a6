/**
 * How the project's CBOR dialect carries an `Error`: private tag 40500 around a map
 * `{name, message, stack?, cause?, errors?, props?}` (`errors` for AggregateError, `props` the
 * error's own enumerable properties such as `code`). The cbor2 dialect (`_cbor_dialect.ts`) and
 * the encoding fast path (`_cbor_encode.ts`) both write it; decoding rebuilds the built-in error
 * class by name, and any other name as an `Error` carrying that name.
 *
 * @module
 */
import type { ITag, TaggedValue } from "cbor2";

/** Private CBOR tag of an `Error`. */
export const ERROR_TAG = 40500;

const ERROR_CTORS: ReadonlyMap<string, new (message?: string, options?: ErrorOptions) => Error> =
  new Map<string, new (message?: string, options?: ErrorOptions) => Error>([
    ["Error", Error],
    ["TypeError", TypeError],
    ["RangeError", RangeError],
    ["SyntaxError", SyntaxError],
    ["ReferenceError", ReferenceError],
    ["EvalError", EvalError],
    ["URIError", URIError],
  ]);

const RESERVED_ERROR_KEYS: ReadonlySet<string> = new Set(["name", "message", "stack", "cause"]);

/**
 * The tag and contents an `Error` encodes as.
 *
 * @param err The error.
 * @returns Tag 40500 and {@linkcode errorBody}.
 */
export function encodeError(err: Error): TaggedValue {
  return [ERROR_TAG, errorBody(err)];
}

/**
 * The contents of an Error's tag 40500: `{name, message, stack?, cause?, errors?, props?}`.
 *
 * @param err The error.
 * @returns A plain object to encode after the tag.
 */
export function errorBody(err: Error): Record<string, unknown> {
  const body: Record<string, unknown> = {
    name: safeString(() => err.name, "Error"),
    message: safeString(() => err.message, ""),
  };
  const stack = safeString(() => err.stack, undefined);
  if (stack !== undefined) body.stack = stack;
  if (Object.hasOwn(err, "cause")) body.cause = err.cause;
  if (err instanceof AggregateError && Array.isArray(err.errors)) body.errors = err.errors;
  let props: Record<string, unknown> | undefined;
  for (const key of Object.keys(err)) {
    if (RESERVED_ERROR_KEYS.has(key)) continue;
    props ??= {};
    defineValue(props, key, (err as unknown as Record<string, unknown>)[key], true);
  }
  if (props !== undefined) body.props = props;
  return body;
}

function safeString<T>(get: () => unknown, fallback: T): string | T {
  try {
    const v = get();
    return typeof v === "string" ? v : v === undefined || v === null ? fallback : String(v);
  } catch {
    return fallback;
  }
}

function defineValue(target: object, key: string, value: unknown, enumerable: boolean): void {
  Object.defineProperty(target, key, { value, writable: true, configurable: true, enumerable });
}

/**
 * Rebuilds an error from tag 40500.
 *
 * @param tag The tag, with its contents decoded.
 * @returns The error.
 * @throws {TypeError} When the contents are not a map.
 */
export function decodeError(tag: ITag): Error {
  const c = tag.contents;
  if (typeof c !== "object" || c === null || Array.isArray(c) || c instanceof Map) {
    throw new TypeError(`CBOR tag ${ERROR_TAG} (Error) must hold a map`);
  }
  const body = c as Record<string, unknown>;
  const name = typeof body.name === "string" ? body.name : "Error";
  const message = typeof body.message === "string" ? body.message : "";
  const options: ErrorOptions | undefined = Object.hasOwn(body, "cause")
    ? { cause: body.cause }
    : undefined;
  let err: Error;
  if (name === "AggregateError") {
    err = new AggregateError(Array.isArray(body.errors) ? body.errors : [], message, options);
  } else {
    const ctor = ERROR_CTORS.get(name);
    err = ctor === undefined ? new Error(message, options) : new ctor(message, options);
    if (ctor === undefined) defineValue(err, "name", name, false);
  }
  defineValue(
    err,
    "stack",
    typeof body.stack === "string" ? body.stack : `${name}: ${message}`,
    false,
  );
  const props = body.props;
  if (typeof props === "object" && props !== null && !Array.isArray(props)) {
    for (const [key, value] of Object.entries(props)) {
      if (!RESERVED_ERROR_KEYS.has(key)) defineValue(err, key, value, true);
    }
  }
  return err;
}
