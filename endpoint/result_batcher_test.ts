import assert from "node:assert/strict";
import { encodeResult, unpackMessage } from "../sdk/protocol/mod.ts";
import { ResultBatcher } from "./result_batcher.ts";

function result(id: string, data = "js\n1"): Uint8Array {
  return encodeResult({ task_id: id, data, error_details: null, task_statuses: null });
}

function ids(body: Uint8Array): string[] {
  const m = unpackMessage(body);
  if (m.message_type === "result") return [m.data.task_id];
  if (m.message_type === "result_batch") return m.data.results.map((r) => r.task_id);
  throw new Error(`unexpected ${m.message_type}`);
}

Deno.test("ResultBatcher sends the results of one turn as one message", async () => {
  const sent: string[][] = [];
  const b = new ResultBatcher((body) => {
    sent.push(ids(body));
    return Promise.resolve();
  });
  await Promise.all([b.add(result("a")), b.add(result("b")), b.add(result("c"))]);
  await b.add(result("d"));
  assert.deepEqual(sent, [["a", "b", "c"], ["d"]]);
});

Deno.test("ResultBatcher splits at the count and size limits", async () => {
  const sent: string[][] = [];
  const b = new ResultBatcher((body) => {
    sent.push(ids(body));
    return Promise.resolve();
  }, { maxResults: 2, maxBytes: 250 }); // about 51 bytes a small result, 202 the big one
  await Promise.all([
    b.add(result("a")),
    b.add(result("b")),
    b.add(result("c")),
    b.add(result("big", "x".repeat(150))),
    b.add(result("e")),
  ]);
  assert.deepEqual(sent, [["a", "b"], ["c"], ["big"], ["e"]]);
});

Deno.test("ResultBatcher rejects every result of a batch whose publish failed", async () => {
  const b = new ResultBatcher(() => Promise.reject(new Error("not confirmed")));
  const outcomes = await Promise.allSettled([b.add(result("a")), b.add(result("b"))]);
  assert.deepEqual(outcomes.map((o) => o.status), ["rejected", "rejected"]);
});

Deno.test("ResultBatcher grows the next batch while one awaits its confirm", async () => {
  const sent: string[][] = [];
  const confirms: Array<() => void> = [];
  const b = new ResultBatcher((body) => {
    sent.push(ids(body));
    return new Promise<void>((r) => confirms.push(r));
  });
  const first = b.add(result("a"));
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(sent, [["a"]]);
  const rest = [b.add(result("b")), b.add(result("c"))];
  await new Promise((r) => setImmediate(r));
  // Still one message on the wire: b and c wait for a's confirm.
  assert.deepEqual(sent, [["a"]]);
  confirms[0]!();
  await first;
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(sent, [["a"], ["b", "c"]]);
  confirms[1]!();
  await Promise.all(rest);
});

Deno.test("ResultBatcher says it is idle only once nothing waits and the last batch is confirmed", async () => {
  const confirms: Array<() => void> = [];
  let idle = 0;
  const b = new ResultBatcher(
    () => new Promise<void>((resolve) => confirms.push(resolve)),
    { onIdle: () => idle++ },
  );
  const first = b.add(result("a"));
  await new Promise((r) => setTimeout(r, 0)); // the turn ends: "a" is on the wire
  const second = b.add(result("b")); // waits for "a"'s confirm
  assert.equal(confirms.length, 1);
  confirms[0]!();
  await first;
  // "b" went out when "a" was confirmed: not idle yet.
  while (confirms.length < 2) await new Promise((r) => setTimeout(r, 0));
  assert.equal(idle, 0);
  confirms[1]!();
  await second;
  while (idle === 0) await new Promise((r) => setTimeout(r, 0));
  assert.equal(idle, 1);
});
