import assert from "node:assert/strict";
import {
  confirmedRecord,
  parseSegment,
  resultRecord,
  SEGMENT_NAME,
  segmentName,
} from "./journal_record.ts";

const packed = new Uint8Array([1, 2, 3, 250]);

Deno.test("parseSegment reads back result and confirmed records in order", () => {
  const bytes = new Uint8Array([...resultRecord("task-1", packed), ...confirmedRecord("task-1")]);
  const records = [...parseSegment(bytes)];
  assert.deepEqual(records, [
    { kind: "result", taskId: "task-1", packed },
    { kind: "confirmed", taskId: "task-1" },
  ]);
});

Deno.test("parseSegment stops at a torn or corrupt record", () => {
  const first = resultRecord("a", packed);
  const second = resultRecord("b", packed);
  const torn = new Uint8Array([...first, ...second.subarray(0, second.length - 1)]);
  assert.deepEqual([...parseSegment(torn)].map((r) => r.taskId), ["a"]);
  const corrupt = new Uint8Array([...first, ...second]);
  corrupt[corrupt.length - 1]! ^= 0xff;
  assert.deepEqual([...parseSegment(corrupt)].map((r) => r.taskId), ["a"]);
});

Deno.test("segmentName pads to 12 digits and SEGMENT_NAME reads it back", () => {
  assert.equal(segmentName(42), "000000000042.log");
  assert.equal(SEGMENT_NAME.exec(segmentName(42))?.[1], "000000000042");
  assert.equal(SEGMENT_NAME.exec("42.log"), null);
});
