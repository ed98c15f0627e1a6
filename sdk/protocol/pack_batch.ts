/**
 * Batches: one `task_batch` or `result_batch` message around tasks or results encoded one by one
 * ({@linkcode encodeTask}, {@linkcode encodeResult}), so that each is encoded once (for the
 * service's outbox, or the endpoint's journal) and the envelope is written around the bytes as
 * they are.
 *
 * @module
 */
import { encodeCbor } from "./_cbor_encode.ts";
import { PROTOCOL_VERSION, type ResultMessage, type TaskMessage } from "./messages.ts";
import { isPlainObject as isRecord } from "./_plain_object.ts";
import { failer, resultData, taskData } from "./_validate_message.ts";

/**
 * The CBOR of one task, checked, without an envelope: what the service's outbox keeps, so that
 * {@linkcode packTaskBatch} can put many into one message without encoding them again.
 *
 * @throws {TypeError} When a field is missing or has the wrong type.
 *
 * @example
 * ```ts
 * import { encodeTask, packTaskBatch, unpackMessage } from "@funcx/sdk/protocol";
 * const one = encodeTask({ task_id: "t1", container_id: null, task_buffer: "x" });
 * const msg = unpackMessage(packTaskBatch([one, one]));
 * if (msg.message_type !== "task_batch" || msg.data.tasks.length !== 2) throw new Error("bad");
 * ```
 */
export function encodeTask(task: TaskMessage): Uint8Array {
  const fail = failer("task", (m) => new TypeError(m));
  if (!isRecord(task)) fail("data", "an object");
  return encodeCbor(taskData(task as unknown as Record<string, unknown>, "", fail));
}

/** Envelopes with an empty list, but for its last byte (the empty array's header), by type. */
const batchPrefixes = new Map<string, Uint8Array>();

/** `{message_type: type, data: {[field]: [...items]}}` around items already encoded. */
function wrapEncoded(
  type: "task_batch" | "result_batch",
  field: "tasks" | "results",
  items: readonly Uint8Array[],
): Uint8Array {
  let prefix = batchPrefixes.get(type);
  if (!prefix) {
    prefix = encodeCbor({ message_type: type, data: { [field]: [] } }, PROTOCOL_VERSION)
      .slice(0, -1);
    batchPrefixes.set(type, prefix);
  }
  const n = items.length;
  const header = n < 24
    ? [0x80 | n]
    : n < 256
    ? [0x98, n]
    : n < 65536
    ? [0x99, n >> 8, n & 0xff]
    : [0x9a, (n >>> 24) & 0xff, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff];
  let size = prefix.byteLength + header.length;
  for (const t of items) size += t.byteLength;
  const out = new Uint8Array(size);
  out.set(prefix, 0);
  out.set(header, prefix.byteLength);
  let pos = prefix.byteLength + header.length;
  for (const t of items) {
    out.set(t, pos);
    pos += t.byteLength;
  }
  return out;
}

/**
 * A `task_batch` message around tasks encoded with {@linkcode encodeTask}: the envelope is written
 * around their bytes as they are.
 */
export function packTaskBatch(encodedTasks: readonly Uint8Array[]): Uint8Array {
  return wrapEncoded("task_batch", "tasks", encodedTasks);
}

/**
 * The CBOR of one result, checked, without an envelope, for {@linkcode packResultBatch}: the
 * endpoint encodes each result once, for its journal and for the batch that carries it.
 *
 * @throws {TypeError} When a field is missing or has the wrong type.
 *
 * @example
 * ```ts
 * import { encodeResult, packResultBatch, unpackMessage } from "@funcx/sdk/protocol";
 * const one = encodeResult({ task_id: "t1", data: "js\n1", error_details: null, task_statuses: null });
 * const msg = unpackMessage(packResultBatch([one]));
 * if (msg.message_type !== "result_batch" || msg.data.results[0]?.task_id !== "t1") {
 *   throw new Error("bad");
 * }
 * ```
 */
export function encodeResult(result: ResultMessage): Uint8Array {
  const fail = failer("result", (m) => new TypeError(m));
  if (!isRecord(result)) fail("data", "an object");
  return encodeCbor(resultData(result as unknown as Record<string, unknown>, "", fail));
}

/** A `result_batch` message around results encoded with {@linkcode encodeResult}. */
export function packResultBatch(encodedResults: readonly Uint8Array[]): Uint8Array {
  return wrapEncoded("result_batch", "results", encodedResults);
}
