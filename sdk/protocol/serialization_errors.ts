/**
 * The serializer's errors: {@linkcode SerializationError} for a value that cannot travel as data,
 * {@linkcode DeserializationError} for a payload that cannot be read back.
 *
 * @module
 */

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
