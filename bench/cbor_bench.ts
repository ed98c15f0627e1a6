/**
 * Is the hand-written CBOR fast path (`sdk/protocol/_cbor_encode.ts`, `_cbor_decode.ts`) worth its
 * code? `Deno.bench` of encode and decode on the shapes that cross every hop (a task message, a
 * result message with its transitions, a batch of 100 results, a task's packed arguments), against
 * `cbor2` (the general codec the dialect falls back on). `cbor-x` is left out: its optional native
 * dependency (`cbor-extract` 2.2.3) is not served by the registry these machines reach, so it
 * cannot be installed here.
 *
 * Usage: `deno bench -A bench/cbor_bench.ts`
 *
 * @module
 */
import { decode as cbor2Decode, encode as cbor2Encode } from "cbor2";
import { decodeCbor } from "../sdk/protocol/_cbor_decode.ts";
import { encodeCbor } from "../sdk/protocol/_cbor_encode.ts";

const ns = (i: number) => (1_780_000_000_000_000_000n + BigInt(i) * 1000n).toString();
const taskId = () => crypto.randomUUID();

const task = {
  message_type: "task",
  data: {
    task_id: taskId(),
    container_id: null,
    container: null,
    task_buffer: "01\nst\nfunction noop(x) { return x; }\n" + "cb\n" + "oWFhgQE=".repeat(4),
  },
};
const result = (i: number) => ({
  task_id: taskId(),
  data: "cb\ngQE=",
  error_details: null,
  task_statuses: ["received", "running", "execution-start", "execution-end"].map((state, k) => ({
    timestamp: ns(i * 4 + k),
    state,
    actor: k < 2 ? "endpoint" : "worker",
  })),
});
const shapes: Record<string, unknown> = {
  "task message": task,
  "result message": { message_type: "result", data: result(0) },
  "100 results": {
    message_type: "result_batch",
    data: { results: Array.from({ length: 100 }, (_, i) => result(i)) },
  },
  "arguments": { args: [1, "two", [3, 4], { five: 5 }], kwargs: { when: new Date(0) } },
};

for (const [name, value] of Object.entries(shapes)) {
  const ours = encodeCbor(value);
  const theirs = cbor2Encode(value);
  Deno.bench(`encode ${name}: fast path`, { group: `encode ${name}`, baseline: true }, () => {
    encodeCbor(value);
  });
  Deno.bench(`encode ${name}: cbor2`, { group: `encode ${name}` }, () => {
    cbor2Encode(value);
  });
  Deno.bench(`decode ${name}: fast path`, { group: `decode ${name}`, baseline: true }, () => {
    decodeCbor(ours);
  });
  Deno.bench(`decode ${name}: cbor2`, { group: `decode ${name}` }, () => {
    cbor2Decode(theirs);
  });
}
