import assert from "node:assert/strict";
import { packMessage, type ResultMessage, serialize, unpackMessage } from "../sdk/protocol/mod.ts";
import { ResultProcessor } from "./result_processor.ts";
import type { ResultBatch, ResultRoute, Store } from "./store.ts";

const EP = "0b7e3c1a-2f4d-4e5a-9b6c-7d8e9f0a1b2c";
const QUEUE = "user-u1.g1";

function result(id: string): ResultMessage {
  return { task_id: id, data: serialize(1), error_details: null, task_statuses: null };
}

/** A store of routes only, recording what it was asked to apply. */
function storeOf(routes: Record<string, ResultRoute>): Store & { applied: ResultBatch[] } {
  const applied: ResultBatch[] = [];
  return {
    applied,
    resultRoutesOf: (ids: readonly string[]) =>
      Promise.resolve(new Map(ids.filter((id) => routes[id]).map((id) => [id, routes[id]!]))),
    applyResults: (batch: ResultBatch) => {
      applied.push(batch);
      return Promise.resolve(batch.completions.length);
    },
  } as unknown as Store & { applied: ResultBatch[] };
}

function route(createdAt: number, streamAttachedAt: number | undefined): ResultRoute {
  return { queue: QUEUE, streamAttachedAt, endpointId: EP, createdAt, finished: false };
}

/** What the processor forwarded and stored of one message of results `ids` on `routingKey`. */
async function handled(
  routes: Record<string, ResultRoute>,
  routingKey: string,
  ids: string[],
): Promise<{ forwarded: string[]; stored: string[] }> {
  const forwarded: string[] = [];
  const store = storeOf(routes);
  const broker = {
    forward(messages: ReadonlyArray<{ routingKey: string; body: Uint8Array }>) {
      for (const m of messages) {
        assert.equal(m.routingKey, QUEUE);
        const msg = unpackMessage(m.body);
        if (msg.message_type === "result") forwarded.push(msg.data.task_id);
        if (msg.message_type === "result_batch") {
          forwarded.push(...msg.data.results.map((r) => r.task_id));
        }
      }
      return Promise.resolve();
    },
  };
  const body = packMessage({ message_type: "result_batch", data: { results: ids.map(result) } });
  await new ResultProcessor(store, broker).handle([{ routingKey, body, deliveryTag: 1 }]);
  return { forwarded, stored: store.applied.flatMap((b) => b.completions.map((c) => c.taskId)) };
}

Deno.test("ResultProcessor forwards a result without a route to its group's streams", async () => {
  const r = await handled({ a: route(100, 50) }, `${EP}.results`, ["a"]);
  assert.deepEqual(r, { forwarded: ["a"], stored: ["a"] });
});

Deno.test("ResultProcessor does not forward again a result that came with its group's route", async () => {
  // The stream attached (t=50) before the task was submitted (t=100): its queue had the result.
  const r = await handled({ a: route(100, 50) }, `${EP}.results.${QUEUE}`, ["a"]);
  assert.deepEqual(r, { forwarded: [], stored: ["a"] });
});

Deno.test("ResultProcessor forwards a routed result when a stream attached after its task", async () => {
  // Attached at t=200, after the submit at t=100: that stream's queue may have missed it; and
  // an attach time the store does not know (a group from an older version) forwards too.
  for (const attached of [200, undefined]) {
    const r = await handled({ a: route(100, attached) }, `${EP}.results.${QUEUE}`, ["a"]);
    assert.deepEqual(r, { forwarded: ["a"], stored: ["a"] }, `attached at ${attached}`);
  }
});

Deno.test("ResultProcessor drops a result from another endpoint than its task's", async () => {
  const other = "ffffffff-2f4d-4e5a-9b6c-7d8e9f0a1b2c";
  const p = new ResultProcessor(storeOf({ a: route(100, 50), b: route(100, 50) }));
  const body = packMessage({ message_type: "result_batch", data: { results: [result("a")] } });
  await p.handle([{ routingKey: `${other}.results`, body, deliveryTag: 1 }]);
  assert.equal(p.stats.invalid, 1);
  assert.equal(p.stats.results, 0);
});
