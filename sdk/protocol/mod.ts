/**
 * The wire protocol every part of funcX for Deno shares: task states, the header-tagged
 * serializer, and the service <-> endpoint messages.
 *
 * Where it sits in the data flow:
 * - the SDK {@linkcode serialize}s a function once (registration, `st` payload) and
 *   {@linkcode packArgs} for every submit (`cb` payloads);
 * - the service appends the arguments to the function's packed code, making a task buffer, and
 *   publishes it in a `task` message made by {@linkcode packMessage};
 * - the endpoint {@linkcode unpackMessage}s it and hands the task buffer to a worker, which calls
 *   {@linkcode unpackTask}, runs the function and {@linkcode serialize}s the result (or
 *   {@linkcode errorToInfo} of what it threw);
 * - the endpoint publishes a `result` message with the task's {@linkcode TaskTransition}s
 *   (nanosecond timestamps from {@linkcode nowNs}); the service stores it and the SDK
 *   {@linkcode deserialize}s the data.
 *
 * ```ts
 * import assert from "node:assert/strict";
 * import { deserialize, packArgs, packBuffers, serialize, unpackTask } from "@funcx/sdk/protocol";
 *
 * const taskBuffer = packBuffers([serialize(function add(a: number, b: number) {
 *   return a + b;
 * })]) + packArgs([1n, 2n]);
 * const task = unpackTask(taskBuffer);
 * assert.ok(task.fn.name === "add" && task.args[1] === 2n);
 * assert.ok(deserialize(serialize(new Date(0))) instanceof Date);
 * ```
 *
 * @module
 */
export {
  ActorName,
  isActorName,
  isTaskState,
  isTerminalState,
  nowNs,
  TaskState,
} from "./task_state.ts";
export {
  type DataMethod,
  deserialize,
  deserializeData,
  deserializeFunction,
  type FunctionSource,
  serialize,
  serializeData,
  type SerializeOptions,
  SerializerMethod,
} from "./serializer.ts";
export { DeserializationError, SerializationError } from "./serialization_errors.ts";
export { packBuffers, unpackBuffers } from "./pack_buffers.ts";
export { packArgs, type TaskPayload, unpackTask } from "./task_payload.ts";
export { errorToInfo, type RemoteErrorInfo } from "./error_info.ts";
export {
  type CommandMessage,
  type EPStatusReport,
  type Message,
  type MessageType,
  PROTOCOL_VERSION,
  type ResultBatchMessage,
  type ResultErrorDetails,
  type ResultMessage,
  type TaskBatchMessage,
  type TaskCancelMessage,
  type TaskContainer,
  type TaskMessage,
  type TaskTransition,
  type TaskTransitionMessage,
} from "./messages.ts";
export { InvalidMessageError, UnrecognizedProtocolVersion } from "./message_errors.ts";
export {
  resolveResourceSpecification,
  type ResourceSpecificationWire,
} from "./resource_specification.ts";
export { packMessage, unpackMessage } from "./pack_message.ts";
export { encodeResult, encodeTask, packResultBatch, packTaskBatch } from "./pack_batch.ts";
export { decodeCbor } from "./_cbor_decode.ts";
export { encodeCbor } from "./_cbor_encode.ts";
