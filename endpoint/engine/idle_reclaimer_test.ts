import assert from "node:assert/strict";
import { IdleReclaimer, reclaimMemory } from "./idle_reclaimer.ts";

/** Resolves once `check()` is true (polling), or rejects after a generous time. */
async function until(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 1000 && !check(); i++) await new Promise((r) => setTimeout(r, 10));
  if (!check()) throw new Error(`Timed out waiting for ${what}`);
}

Deno.test("reclaimMemory shrinks a heap that garbage grew", async () => {
  let garbage: unknown[] = [];
  for (let i = 0; i < 500_000; i++) garbage.push({ i, s: `item ${i}` });
  garbage = [];
  const before = Deno.memoryUsage().heapTotal;
  const done = await reclaimMemory();
  assert.equal(done.gc, true);
  assert.equal(garbage.length, 0);
  assert.ok(
    Deno.memoryUsage().heapTotal < before,
    `heap ${Deno.memoryUsage().heapTotal} not below ${before}`,
  );
});

Deno.test("IdleReclaimer reclaims once after a quiet period, only when the process grew", async () => {
  let rss = 100;
  let rssReads = 0;
  let reclaims = 0;
  const reclaimer = new IdleReclaimer({
    quietMs: 10,
    minGrowthBytes: 50,
    baselineBytes: 0,
    reclaim: () => {
      reclaims++;
      rss = 110; // what is left after the reclaim becomes the new baseline
      return Promise.resolve();
    },
    rss: () => (rssReads++, rss),
  });
  reclaimer.touch();
  await until(() => reclaims === 1, "the first reclaim");
  // Grown by 20 since: under the 50 asked for, so the next quiet period does nothing.
  rss = 130;
  const reads = rssReads;
  reclaimer.touch();
  await until(() => rssReads > reads, "the second quiet period");
  assert.equal(reclaims, 1);
  rss = 200;
  reclaimer.touch();
  await until(() => reclaims === 2, "the reclaim after growth");
  reclaimer.close();
});

Deno.test("IdleReclaimer.close stops the timer of a quiet period under way", () => {
  let reclaims = 0;
  const reclaimer = new IdleReclaimer({
    quietMs: 60_000,
    baselineBytes: 0,
    reclaim: () => Promise.resolve(reclaims++),
  });
  assert.equal(reclaimer.waiting, false);
  reclaimer.touch();
  assert.equal(reclaimer.waiting, true);
  reclaimer.close();
  assert.equal(reclaimer.waiting, false);
  reclaimer.touch(); // arms nothing once closed
  assert.equal(reclaimer.waiting, false);
  assert.equal(reclaims, 0);
});

Deno.test("IdleReclaimer waits while the process is busy, however quiet", async () => {
  let busy = true;
  let reclaims = 0;
  let checks = 0;
  const reclaimer = new IdleReclaimer({
    quietMs: 5,
    jitterMs: 5,
    minGrowthBytes: 0,
    baselineBytes: 0,
    busy: () => (checks++, busy),
    reclaim: () => (reclaims++, Promise.resolve()),
    rss: () => 100,
  });
  reclaimer.touch();
  // Several quiet periods pass while busy: each is checked, none reclaims.
  await until(() => checks >= 3, "three quiet periods");
  assert.equal(reclaims, 0);
  busy = false;
  await until(() => reclaims === 1, "the reclaim once the work ended");
  reclaimer.close();
});
