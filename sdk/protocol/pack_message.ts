/**
 * Packing and unpacking one message: a version byte ({@linkcode PROTOCOL_VERSION}) followed by the
 * CBOR of `{message_type, data}`, checked on both sides.
 *
 * @module
 */
import { decodeCbor } from "./_cbor_decode.ts";
import { encodeCbor } from "./_cbor_encode.ts";
import { type Message, PROTOCOL_VERSION } from "./messages.ts";
import { InvalidMessageError, UnrecognizedProtocolVersion } from "./message_errors.ts";
import { isPlainObject as isRecord } from "./_plain_object.ts";
import { failer, MESSAGE_TYPES, quote, validateData } from "./_validate_message.ts";

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
