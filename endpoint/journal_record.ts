/**
 * The on-disk format of the result journal's segments (`result_journal.ts`): records
 * `[u32 length][u32 crc32][kind][payload]`, little-endian, where the payload is a *result*
 * (`[u16 id length][task id][packed result message]`) or a *confirmed* marker (`[task id]`).
 * Reading a segment stops at the first torn or corrupt record, which is how a crash mid-write
 * shows up.
 *
 * @module
 */
import { crc32 } from "node:zlib";

const KIND_RESULT = 1;
const KIND_CONFIRMED = 2;
const HEADER = 8;
/** A length beyond this is a corrupt header, not a record. */
const MAX_RECORD = 1 << 30;
/** Segment file names: `<n>.log`, `n` zero-padded to 12 digits. */
export const SEGMENT_NAME = /^(\d{12})\.log$/;

const enc = new TextEncoder();
const dec = new TextDecoder();

/** One record: a result when `packed` is given, else a confirmed marker. */
function record(kind: number, taskId: string, packed?: Uint8Array): Uint8Array {
  const id = enc.encode(taskId);
  const payloadLen = 1 + (packed ? 2 + id.byteLength + packed.byteLength : id.byteLength);
  const out = new Uint8Array(HEADER + payloadLen);
  const view = new DataView(out.buffer);
  view.setUint32(0, payloadLen, true);
  out[HEADER] = kind;
  if (packed) {
    view.setUint16(HEADER + 1, id.byteLength, true);
    out.set(id, HEADER + 3);
    out.set(packed, HEADER + 3 + id.byteLength);
  } else {
    out.set(id, HEADER + 1);
  }
  view.setUint32(4, crc32(out.subarray(HEADER)), true);
  return out;
}

/** One record read back from a segment. */
export type JournalRecord =
  | { kind: "result"; taskId: string; packed: Uint8Array }
  | { kind: "confirmed"; taskId: string };

/** The whole records of a segment, in order; stops at the first torn or corrupt one. */
export function* parseSegment(bytes: Uint8Array): Generator<JournalRecord> {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let off = 0;
  while (off + HEADER <= bytes.byteLength) {
    const len = view.getUint32(off, true);
    if (len < 2 || len > MAX_RECORD || off + HEADER + len > bytes.byteLength) return;
    const payload = bytes.subarray(off + HEADER, off + HEADER + len);
    if (crc32(payload) !== view.getUint32(off + 4, true)) return;
    off += HEADER + len;
    if (payload[0] === KIND_RESULT) {
      const idLen = payload[1]! | (payload[2]! << 8);
      if (3 + idLen > len) return;
      yield {
        kind: "result",
        taskId: dec.decode(payload.subarray(3, 3 + idLen)),
        packed: payload.slice(3 + idLen),
      };
    } else if (payload[0] === KIND_CONFIRMED) {
      yield { kind: "confirmed", taskId: dec.decode(payload.subarray(1)) };
    } else {
      return;
    }
  }
}

/** The file name of segment `n`. */
export function segmentName(n: number): string {
  return `${String(n).padStart(12, "0")}.log`;
}

/** A result record: the task's packed `result` message. */
export function resultRecord(taskId: string, packed: Uint8Array): Uint8Array {
  return record(KIND_RESULT, taskId, packed);
}

/** A confirmed marker: the broker confirmed the task's result. */
export function confirmedRecord(taskId: string): Uint8Array {
  return record(KIND_CONFIRMED, taskId);
}
