import assert from "node:assert/strict";
import { ResultStore } from "./result_store.ts";
import { IdleTracker } from "./idle_tracker.ts";

Deno.test("ResultStore keeps results on disk in a private directory until discarded", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const store = await ResultStore.open(dir);
    assert.equal((await Deno.stat(store.dir)).mode! & 0o777, 0o700);
    assert.deepEqual(await store.keys(), []);
    await store.put("a1", new Uint8Array([1, 2, 3]));
    await store.put("b2", new Uint8Array([4]));
    assert.ok(await store.has("a1"));
    assert.deepEqual(await store.get("a1"), new Uint8Array([1, 2, 3]));
    assert.equal(await store.get("zz"), undefined);
    // A second open (after a crash) sees what the first wrote.
    const again = await ResultStore.open(dir);
    assert.deepEqual((await again.keys()).sort(), ["a1", "b2"]);
    await again.discard("a1");
    await again.discard("a1");
    assert.deepEqual(await again.keys(), ["b2"]);
    await again.clear();
    assert.equal(await again.size(), 0);
    await assert.rejects(store.put("../escape", new Uint8Array()), TypeError);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ResultStore.open fails with the directory named when it cannot write", async () => {
  if (Deno.uid() === 0) return; // root writes anywhere
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${dir}/unacked_results`, { mode: 0o500 });
    await assert.rejects(ResultStore.open(dir), /unacked_results/);
  } finally {
    await Deno.chmod(`${dir}/unacked_results`, 0o700);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("IdleTracker stops after soft idle beats once work is done, or hard ones anyway", () => {
  const soft = new IdleTracker(2, 10);
  assert.equal(soft.beat(0, 0, 0), undefined);
  assert.equal(soft.beat(3, 3, 0), undefined); // work moved
  assert.equal(soft.beat(3, 3, 0), undefined);
  assert.match(soft.beat(3, 3, 0)!, /after its work was done/);
  const busy = new IdleTracker(1, 10);
  assert.equal(busy.beat(3, 2, 1), undefined);
  assert.equal(busy.beat(3, 2, 1), undefined); // a task still out: never idle
  const hard = new IdleTracker(0, 2);
  assert.equal(hard.beat(0, 0, 0), undefined);
  assert.equal(hard.beat(0, 0, 0), undefined);
  assert.match(hard.beat(0, 0, 0)!, /idle for 3 heartbeats/);
});
