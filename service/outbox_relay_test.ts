import assert from "node:assert/strict";
import { OutboxRelay, type RelayMessage } from "./outbox_relay.ts";
import type { OutboxMessage, Store } from "./store.ts";
import { until } from "../tests/harness/until.ts";

const EP = "0b7e3c1a-2f4d-4e5a-9b6c-7d8e9f0a1b2c";

function message(taskId: string): RelayMessage {
  return { taskId, endpointId: EP, body: new Uint8Array([1, 2, 3]) };
}

/** An outbox whose sweeps find `left`, recording each delete. */
function outboxOf(): Store & { deletes: string[][]; left: OutboxMessage[] } {
  const outbox = {
    deletes: [] as string[][],
    left: [] as OutboxMessage[],
    claimOutbox: () => Promise.resolve(outbox.left),
    releaseOutbox: () => Promise.resolve(),
    deleteOutbox: (ids: readonly string[]) => {
      outbox.deletes.push([...ids]);
      return Promise.resolve();
    },
  };
  return outbox as unknown as Store & { deletes: string[][]; left: OutboxMessage[] };
}

/** A broker that confirms every publish at once, counting the tasks it was given. */
function brokerOf() {
  const published: number[] = [];
  return {
    published,
    connected: true,
    publishToEndpoints: (messages: ReadonlyArray<{ endpointId: string; body: Uint8Array }>) => {
      published.push(messages.length);
      return Promise.resolve();
    },
  };
}

Deno.test("OutboxRelay: tasks confirmed one after another leave the outbox in one delete", async () => {
  const store = outboxOf();
  const broker = brokerOf();
  const relay = new OutboxRelay(store, broker, { sweepMs: 60_000, deleteDelayMs: 2000 });
  try {
    for (const [i, id] of ["a", "b", "c"].entries()) {
      relay.push([message(id)]);
      await until(`the publish of ${id}`, () => broker.published.length === i + 1);
    }
    assert.deepEqual(store.deletes, [], "each waits for the others");
    await until("the delete", () => store.deletes.length > 0);
    assert.deepEqual(store.deletes, [["a", "b", "c"]]);
  } finally {
    await relay.close();
  }
});

Deno.test("OutboxRelay: a sweep does not publish again what waits to be deleted", async () => {
  const store = outboxOf();
  const broker = brokerOf();
  const relay = new OutboxRelay(store, broker, { sweepMs: 60_000, deleteDelayMs: 60_000 });
  try {
    relay.push([message("b")]);
    await until("the publish of b", () => broker.published.length === 1);
    // Confirmed, and still in the outbox until the delete: a sweep finds it there.
    store.left = [message("b")];
    relay.sweep();
    relay.push([message("c")]);
    await until("the publish of c", () => broker.published.length === 2);
    assert.deepEqual(broker.published, [1, 1], "b went once, then c");
    assert.deepEqual(store.deletes, [], "nothing deleted before the delay");
  } finally {
    await relay.close();
  }
  // Closing deletes what was confirmed at once, without waiting out the delay.
  assert.deepEqual(store.deletes.flat().sort(), ["b", "c"]);
});

Deno.test("OutboxRelay: a full batch of confirmed tasks is deleted without waiting", async () => {
  const store = outboxOf();
  const broker = brokerOf();
  const relay = new OutboxRelay(store, broker, {
    sweepMs: 60_000,
    deleteDelayMs: 60_000,
    maxBatch: 2,
  });
  try {
    relay.push([message("a"), message("b")]);
    await until("the delete", () => store.deletes.length > 0);
    assert.deepEqual(store.deletes, [["a", "b"]]);
  } finally {
    await relay.close();
  }
});
