/**
 * The errors of unpacking a message: {@linkcode UnrecognizedProtocolVersion} for a version byte
 * this side does not know, {@linkcode InvalidMessageError} for a body that is not a valid message.
 *
 * @module
 */
import { PROTOCOL_VERSION } from "./messages.ts";

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
